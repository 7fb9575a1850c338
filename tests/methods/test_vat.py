import copy
import math

import pytest
import torch

from metassl.methods.losses import kl_to_target
from metassl.methods.pseudo import frozen_bn_stats
from metassl.methods.vat import adversarial_direction, l2_normalize
from tests.methods.conftest import MARGIN, small_net


def bn(model):
    return next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))


def test_frozen_bn_stats_uses_batch_statistics_and_keeps_running_ones():
    net = small_net().train()
    x = torch.randn(32, 1, 8, 8) * 3 + 1
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with frozen_bn_stats(net):
        out = net(x)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert bn(net).momentum == 0.1
    assert torch.allclose(out, copy.deepcopy(net)(x))  # the same train-mode output as an unfrozen pass
    net(x)
    assert not torch.equal(before["2.running_mean"], net.state_dict()["2.running_mean"])


def test_adversarial_direction_raises_the_kl_far_more_than_a_random_one():
    torch.manual_seed(0)
    net = small_net().eval()
    x = torch.randn(64, 1, 8, 8)
    p = net(x).softmax(1).detach()
    d_adv = adversarial_direction(net, x, p, xi=1e-6, iterations=1)
    assert torch.allclose(d_adv.flatten(1).norm(dim=1), torch.ones(64), atol=1e-5)
    d_rand = l2_normalize(torch.randn_like(x))
    eps = 0.5
    with torch.no_grad():
        kl_adv = kl_to_target(net(x + eps * d_adv), p)
        kl_rand = kl_to_target(net(x + eps * d_rand), p)
    assert kl_adv > 5 * kl_rand


def test_perturbed_passes_leave_running_stats_to_the_clean_ones(make_method):
    method, batches = make_method("vat", "eps=2.0")
    labeled, unlabeled = batches()
    reference = copy.deepcopy(method.model).train()
    reference(labeled.x)
    reference(unlabeled.x)
    out = method.train_step(labeled, unlabeled, step=0)
    assert out["lds"] > 0
    assert torch.allclose(bn(method.model).running_mean, bn(reference).running_mean)
    assert torch.allclose(bn(method.model).running_var, bn(reference).running_var)
    assert bn(method.model).num_batches_tracked == 2


def test_vat_em_adds_the_prediction_entropy(make_method):
    method, batches = make_method("vat_em", "alpha=1.0")
    out = method.train_step(*batches(), step=40)  # past the ramp-up: 40% of 100 steps
    assert out["entropy"] > 0
    assert torch.allclose(out["loss"], out["loss_l"] + out["lds"] + out["entropy"])
    assert "entropy" not in make_method("vat")[0].train_step(*batches(), step=0)


@pytest.mark.parametrize("overrides, step, weight", [
    ((), 0, math.exp(-5.0)),  # sigmoid ramp over the first 40% of the run
    ((), 20, math.exp(-5.0 * 0.25)),
    ((), 40, 1.0),
    (("entropy_rampup_fraction=0",), 0, 1.0),  # Miyato et al.: weight 1 from the first step
    (("entropy_rampup_steps=10", "entropy_weight=0.5"), 5, 0.5 * math.exp(-5.0 * 0.25)),
])
def test_vat_em_ramps_its_entropy_weight_over_the_run(make_method, overrides, step, weight):
    method, batches = make_method("vat_em", "alpha=1.0", *overrides, total_steps=100)
    out = method.train_step(*batches(), step=step)
    assert torch.allclose(out["loss"], out["loss_l"] + out["lds"] + weight * out["entropy"])


# ε for 8x8 digits (configs/vat.yaml): CIFAR-10's 6 scaled by the input norm, √64 against √3072.
def test_vat_beats_supervised_on_digits(digits_error, supervised_error):
    assert digits_error("vat", "vat.eps=1.0") < supervised_error - MARGIN


def test_vat_em_beats_supervised_on_digits(digits_error, supervised_error):
    assert digits_error("vat_em", "vat_em.eps=1.0") < supervised_error - MARGIN


def test_default_eps_scales_with_the_input_size():
    from metassl.methods.vat import size_scaled_eps

    assert size_scaled_eps(None, torch.zeros(2, 3, 32, 32)) == pytest.approx(6.0)
    assert size_scaled_eps(None, torch.zeros(2, 1, 28, 28)) == pytest.approx(6.0 * 28 / 55.4256, rel=1e-4)
    assert size_scaled_eps(None, torch.zeros(2, 1, 8, 8)) == pytest.approx(6.0 / (48 ** 0.5))
    assert size_scaled_eps(2.5, torch.zeros(2, 1, 8, 8)) == 2.5



def test_the_step_perturbs_by_the_scaled_eps(make_method, monkeypatch):
    import metassl.methods.vat as vat

    seen = []
    real = vat.size_scaled_eps
    monkeypatch.setattr(vat, "size_scaled_eps", lambda eps, x: seen.append(real(eps, x)) or seen[-1])
    method, batches = make_method("vat")
    method.train_step(*batches(), step=0)
    assert seen == [pytest.approx(6.0 * (64 / 3072) ** 0.5)]
    method, batches = make_method("vat", "eps=2.0")
    method.train_step(*batches(), step=0)
    assert seen[-1] == 2.0


def test_a_sample_whose_prediction_does_not_move_keeps_its_direction():
    """Where the gradient at r = ξd is exactly zero (the prediction did not change in floating
    point), the sample keeps its random start rather than getting no perturbation at all."""
    torch.manual_seed(0)
    net = small_net().eval()
    mask = torch.ones(8, 1, 1, 1)
    mask[0] = 0.0  # sample 0's prediction does not depend on its input

    def masked(x):
        return net(x * mask)

    x = torch.randn(8, 1, 8, 8)
    p = masked(x).softmax(1).detach()
    torch.manual_seed(1)
    start = torch.randn_like(x)
    torch.manual_seed(1)
    d = adversarial_direction(masked, x, p, xi=1e-6, iterations=2)
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.ones(8), atol=1e-5)
    assert torch.allclose(d[0], l2_normalize(start)[0], atol=1e-6)
    assert not torch.allclose(d[1], l2_normalize(start)[1], atol=1e-2)
