"""The meta-gradient family and Pseudo-Label at their defaults: only the data and ``steps`` set (digits, 5 labels and
5 validation images per class, the MLP, 600 steps), mean test error over seeds 0-2 against
supervised training at the same defaults. The full table (every method, 600 and 3000 steps, the
signals set) is the ``defaults`` suite."""
from tests.methods.conftest import MARGIN, mean_test_error

DEFAULTS = ["dataset=digits", "model=mlp", "labels_per_class=5", "val_per_class=5", "steps=600",
            "tensorboard=false", "threads=1"]


def test_the_meta_family_and_pseudo_label_beat_supervised_training_at_their_defaults():
    supervised = mean_test_error(DEFAULTS, "supervised")
    errors = {m: mean_test_error(DEFAULTS, m) for m in ("meta_pl", "meta_pl_mixup", "pseudo_label")}
    summary = f"supervised {supervised:.2f}%, " + ", ".join(f"{m} {e:.2f}%" for m, e in errors.items())
    assert all(e < supervised - MARGIN for e in errors.values()), summary
