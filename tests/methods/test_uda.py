"""UDA: sharpened, confidence-masked targets and training-signal annealing of the labeled loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from metassl.methods import Batch


def test_targets_are_sharpened_where_the_weak_view_is_confident(make_method):
    method, _ = make_method("uda")
    q = torch.tensor([[0.85, 0.05, 0.05, 0.05],
                      [0.60, 0.20, 0.10, 0.10]])
    targets, mask, _ = method.pseudo_targets(q, Batch(x=torch.zeros(2, 1, 8, 8), raw=None), step=0)
    sharp = q ** (1 / 0.4)
    assert torch.allclose(targets, sharp / sharp.sum(1, keepdim=True), atol=1e-6)
    assert torch.equal(mask, torch.tensor([1.0, 0.0]))   # β = 0.8


@pytest.mark.parametrize("schedule, alpha", [("exp", lambda t: math.exp(5 * (t - 1))),
                                             ("log", lambda t: 1 - math.exp(-5 * t)),
                                             ("linear", lambda t: t)])
def test_tsa_threshold_rises_from_one_over_k_to_one_over_the_run(make_method, schedule, alpha):
    method, _ = make_method("uda", f"tsa={schedule}", total_steps=200)
    for step in (0, 50, 100, 200, 300):
        t = min(1.0, step / 200)
        assert method.tsa_threshold(step) == pytest.approx(alpha(t) * 0.75 + 0.25)
    assert make_method("uda", "tsa=none")[0].tsa_threshold(0) == 1.0
    assert make_method("uda", "tsa=linear", "tsa_steps=10", total_steps=200)[0].tsa_threshold(5) == pytest.approx(
        0.5 * 0.75 + 0.25)


def test_tsa_drops_labeled_examples_the_model_already_fits(make_method):
    method, _ = make_method("uda", "tsa=linear", total_steps=100)
    y = torch.tensor([0, 1, 2, 3])
    # Correct-class probabilities 0.7, 0.5, 0.3 and 0.25; η at step 50 is 0.5·0.75 + 0.25 = 0.625.
    probs = torch.tensor([[0.70, 0.10, 0.10, 0.10],
                          [0.20, 0.50, 0.20, 0.10],
                          [0.40, 0.20, 0.30, 0.10],
                          [0.25, 0.25, 0.25, 0.25]])
    logits = probs.log()
    loss, logs = method.supervised_loss(logits, y, step=50)
    ce = F.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(loss, ce[1:].mean()) and logs["tsa_kept"] == 0.75
    # At the end of the schedule every example is kept: plain cross-entropy.
    assert torch.allclose(method.supervised_loss(logits, y, step=100)[0], ce.mean())
    # None kept: zero, not NaN.
    early = method.supervised_loss(torch.tensor([[9.0, 0.0, 0.0, 0.0]]), torch.tensor([0]), step=0)[0]
    assert early == 0.0
