import math

import pytest

from tests.methods.conftest import MARGIN


def test_consistency_vanishes_without_noise_and_its_weight_ramps_up(make_method):
    deterministic, batches = make_method("pi_model", augment=lambda raw: (raw.float() / 255 - 0.5) / 0.25)
    out = deterministic.train_step(*batches(), step=0)
    assert out["loss_cons"] < 1e-6  # both evaluations see the same input and the same batch statistics

    method, batches = make_method("pi_model", "w_max=100", "rampup_fraction=0.5", total_steps=100)
    for step, weight in ((0, 100 * math.exp(-5)), (25, 100 * math.exp(-5 * 0.25)), (50, 100.0), (90, 100.0)):
        out = method.train_step(*batches(seed=step), step=step)
        assert out["loss_cons"] > 0  # two augmentations disagree
        w = (out["loss"] - out["loss_l"]) / out["loss_cons"]
        assert w.item() == pytest.approx(weight, rel=1e-3)


def test_consistency_gradient_flows_through_both_evaluations(make_method):
    method, batches = make_method("pi_model", "rampup_fraction=0.0")
    labeled, unlabeled = batches()
    grads = []

    def keep_grad(module, inputs, output):
        output.register_hook(grads.append)

    method.model.register_forward_hook(keep_grad)
    method.train_step(labeled, unlabeled, step=0)
    (g,) = grads  # one forward pass over both evaluations
    n = labeled.x.shape[0] + unlabeled.x.shape[0]
    assert g.shape[0] == 2 * n
    assert g[labeled.x.shape[0]:n].abs().sum() > 0 and g[n:].abs().sum() > 0  # no stop-gradient on z̃


def test_pi_model_beats_supervised_on_digits(digits_error, supervised_error):
    assert digits_error("pi_model") < supervised_error - MARGIN
