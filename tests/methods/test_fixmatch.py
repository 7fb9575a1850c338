import torch

from metassl.methods.pseudo import masked_cross_entropy
from tests.conftest import FAST
from tests.methods.conftest import MARGIN


def test_unlabeled_loss_trains_the_strong_view_on_confident_weak_predictions(make_method):
    method, batches = make_method("fixmatch", "threshold=0.0")
    labeled, unlabeled = batches()
    torch.manual_seed(3)
    strong = method.ctx.strong_augment(unlabeled.raw)
    assert not torch.allclose(strong, unlabeled.x)
    with torch.no_grad():
        logits = method.model(torch.cat([labeled.x, unlabeled.x, strong]))
    b, bu = labeled.x.shape[0], unlabeled.x.shape[0]
    weak, strong_logits = logits[b:b + bu], logits[b + bu:]
    expected = masked_cross_entropy(strong_logits, weak.argmax(1), torch.ones(bu))
    torch.manual_seed(3)  # the same strong view inside the step
    out = method.train_step(labeled, unlabeled, step=0)
    assert out["mask"] == 1.0 and torch.allclose(out["loss_u"], expected, atol=1e-5)


def test_nothing_above_the_threshold_leaves_only_the_labeled_loss(make_method):
    method, batches = make_method("fixmatch", "threshold=0.95")
    out = method.train_step(*batches(), step=0)
    assert out["mask"] == 0.0 and out["loss_u"] == 0.0 and torch.equal(out["loss"], out["loss_x"])


def test_ssl_method_without_unlabeled_data_is_a_one_line_config_error(cli, tmp_path):
    proc = cli("train", "--out", str(tmp_path / "run"), *FAST, "method=fixmatch", "labels_per_class=null")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line == ("metassl: error: config: method='fixmatch' needs unlabeled data, but labels_per_class=null "
                    "and val_per_class=5 cover the whole training set; keep fewer labels (labels_per_class=N) or "
                    "train method=supervised")
    assert not (tmp_path / "run").exists()


def test_fixmatch_beats_supervised_on_digits(digits_error, supervised_error):
    assert digits_error("fixmatch") < supervised_error - MARGIN
