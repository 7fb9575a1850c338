"""Methods at their defaults: only the data and ``steps`` set (digits, 5 labels and 5 validation
images per class, 600 steps), mean test error over seeds 0-2 against supervised training at the
same defaults. The full table (every method, 600 and 3000 steps, the signals set) is the
``defaults`` suite."""
from tests.methods.conftest import MARGIN, mean_test_error

DEFAULTS = ["dataset=digits", "model=mlp", "labels_per_class=5", "val_per_class=5", "steps=600",
            "tensorboard=false", "threads=1"]


def _beat_supervised(settings, methods):
    supervised = mean_test_error(settings, "supervised")
    errors = {m: mean_test_error(settings, m) for m in methods}
    summary = f"supervised {supervised:.2f}%, " + ", ".join(f"{m} {e:.2f}%" for m, e in errors.items())
    assert all(e < supervised - MARGIN for e in errors.values()), summary


def test_meta_pl_mixup_and_pseudo_label_beat_supervised_training_at_their_defaults():
    _beat_supervised(DEFAULTS, ("meta_pl_mixup", "pseudo_label"))


def test_meta_pl_beats_supervised_training_on_the_mlp_with_dropout():
    """Without mixup, meta_pl's unlabeled term needs a stochastic layer (``mlp_dropout``)."""
    _beat_supervised([o for o in DEFAULTS if o != "model=mlp"] + ["model=mlp_dropout"], ("meta_pl",))
