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


def test_distribution_alignment_divides_the_guess_by_the_running_class_shares(make_method):
    method, _ = make_method("mixmatch", "distribution_alignment=true", "ema_horizon_steps=0", total_steps=1000)
    assert method.shares.decay == pytest.approx(1 - 1 / 128)  # ReMixMatch's window, uncapped
    method, batches = make_method("mixmatch", "temperature=0.5", "distribution_alignment=true",
                                  "ema_horizon_steps=2", total_steps=1000)
    assert method.shares.decay == 0.5  # capped at the ema_horizon length
    _, unlabeled = batches(n_u=8)
    views = torch.cat([unlabeled.x, method.ctx.augment(unlabeled.raw)])
    with torch.no_grad():
        p = copy.deepcopy(method.model)(views).softmax(1)
    mean = (p[:8] + p[8:]) / 2
    p_hat = torch.full((4,), 0.25).lerp(mean.mean(0), 0.5)
    aligned = (mean / p_hat) / (mean / p_hat).sum(1, keepdim=True)
    q, _ = method.guess_labels(views, k=2, labeled=None)
    assert torch.allclose(method.shares.p_hat, p_hat, atol=1e-6)
    assert torch.allclose(q, aligned ** 2 / (aligned ** 2).sum(1, keepdim=True), atol=1e-5)
    assert not torch.allclose(q, mean ** 2 / (mean ** 2).sum(1, keepdim=True), atol=1e-3)


def test_alignment_turns_a_guess_away_from_the_classes_predicted_most(make_method):
    method, _ = make_method("mixmatch", "distribution_alignment=true", "ema_horizon_steps=1")
    assert method.shares.decay == 0.0  # the cap: a window of at most the ema_horizon length
    method.shares.update(torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 3 + [[0.1, 0.1, 0.1, 0.7]]))
    q = method.shares.align(torch.tensor([[0.4, 0.1, 0.1, 0.4]]))
    assert q[0, 3] > q[0, 0] and q[0, 0] < 0.4 and q[0, 1] > 0.1 and q.sum().item() == pytest.approx(1.0)


def test_without_alignment_the_default_keeps_no_state(make_method):
    method, batches = make_method("mixmatch")
    assert method.shares is None and method.state_dict() == {}


def test_the_class_shares_survive_a_resume_beside_learned_lambda(make_method):
    _, batches = make_method("mixmatch")
    val = batches(n_l=8, seed=9)[0]
    for name in ("mixmatch", "mixmatch_metamixup"):
        keys = ("distribution_alignment=true", "ema_horizon_steps=4")
        method, _ = make_method(name, *keys, sample_val=lambda: val)
        method.train_step(*batches(seed=3), step=0)
        state = method.state_dict()
        fresh, _ = make_method(name, *keys, sample_val=lambda: val)
        fresh.load_state_dict(state)
        assert not torch.equal(method.shares.p_hat, torch.full((4,), 0.25))
        assert torch.equal(fresh.shares.p_hat, method.shares.p_hat)
        if name == "mixmatch_metamixup":
            assert "lam_log" in state and "p_hat" in state
