import copy

import pytest

import torch

from metassl.methods.pseudo import sharpen
from tests.methods.conftest import MARGIN


def entropy(p):
    return -(p * p.clamp_min(1e-12).log()).sum(1)


def test_sharpening_sums_to_one_and_lowers_entropy():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(32, 10), 1)
    q = sharpen(p, 0.5)
    assert torch.allclose(q.sum(1), torch.ones(32))
    assert (entropy(q) < entropy(p)).all()
    assert torch.equal(q.argmax(1), p.argmax(1))
    assert torch.allclose(q, p ** 2 / (p ** 2).sum(1, keepdim=True), atol=1e-6)
    assert torch.allclose(sharpen(p, 1.0), p, atol=1e-6)
    assert torch.allclose(sharpen(torch.tensor([[0.2, 0.5, 0.3]]), 0.05), torch.tensor([[0.0, 1.0, 0.0]]),
                          atol=1e-4)


def test_lambda_prime_keeps_each_mix_closer_to_its_own_example(make_method):
    method, _ = make_method("mixmatch", "alpha=0.75")
    torch.manual_seed(0)
    lam = method.draw_lam(4000)
    assert lam.min() >= 0.5 and lam.max() <= 1.0
    assert lam.std() > 0.1 and lam.unique().numel() > 1000  # one λ per example


def test_label_guess_averages_the_views_sharpens_and_leaves_bn_alone(make_method):
    method, batches = make_method("mixmatch", "temperature=0.5")
    _, unlabeled = batches(n_u=8)
    views = torch.cat([unlabeled.x, method.ctx.augment(unlabeled.raw)])
    before = copy.deepcopy(method.model.state_dict())
    q, logs = method.guess_labels(views, k=2, labeled=None)
    assert all(torch.equal(before[k], v) for k, v in method.model.state_dict().items())
    assert not q.requires_grad and q.shape == (8, 4) and logs == {}
    with torch.no_grad():
        p = copy.deepcopy(method.model)(views).softmax(1)
    mean = (p[:8] + p[8:]) / 2
    assert torch.allclose(q, mean ** 2 / (mean ** 2).sum(1, keepdim=True), atol=1e-5)


def test_lambda_u_ramps_linearly(make_method):
    method, batches = make_method("mixmatch", "lambda_u=75", "rampup_fraction=0.4", total_steps=100)
    for step, weight in ((10, 75 * 10 / 40), (40, 75.0)):
        out = method.train_step(*batches(seed=step), step=step)
        assert ((out["loss"] - out["loss_x"]) / out["loss_u"]).item() == pytest.approx(weight, rel=1e-4)


def test_mixmatch_beats_supervised_on_digits(digits_error, supervised_error):
    assert digits_error("mixmatch") < supervised_error - MARGIN
