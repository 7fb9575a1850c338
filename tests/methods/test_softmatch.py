"""SoftMatch: truncated-Gaussian weights from EMAs of the confidence, after uniform alignment."""
import torch

from metassl.methods import Batch

UNLABELED = Batch(x=torch.zeros(4, 1, 8, 8), raw=None)
Q = torch.tensor([[0.90, 0.04, 0.03, 0.03],
                  [0.38, 0.37, 0.15, 0.10],    # argmax 0, but the alignment favours class 1
                  [0.05, 0.80, 0.10, 0.05],
                  [0.30, 0.20, 0.25, 0.25]])


def aligned_confidence(q, p_hat):
    a = q / p_hat
    return (a / a.sum(1, keepdim=True)).max(1).values


def test_weights_are_a_gaussian_below_the_mean_confidence_and_one_above(make_method):
    method, _ = make_method("softmatch", "ema_decay=0.5", "ema_horizon_steps=1000")
    targets, weight, logs = method.pseudo_targets(Q, UNLABELED, step=0)
    p_hat = 0.5 * 0.25 + 0.5 * Q.mean(0)
    conf = aligned_confidence(Q, p_hat)
    mu = 0.5 * 0.25 + 0.5 * conf.mean()                  # μ_0 = 1/C
    var = 0.5 * 1.0 + 0.5 * conf.var()                   # σ²_0 = 1, unbiased batch variance
    expected = torch.where(conf < mu, torch.exp(-(conf - mu) ** 2 / (2 * var)), torch.ones(4))
    assert torch.allclose(method.shares.p_hat, p_hat) and torch.allclose(logs["mu"], mu) and torch.allclose(method.var, var)
    assert torch.allclose(weight, expected)
    assert (weight[conf >= mu] == 1).all() and (weight[conf < mu] < 1).all() and (conf < mu).any()
    # The labels are the argmax of q itself, not of the aligned distribution.
    a = Q / p_hat
    assert a[1].argmax() == 1 and torch.equal(targets, torch.tensor([0, 0, 1, 0]))


def test_uniform_alignment_lifts_the_confidence_of_rare_classes(make_method):
    method, _ = make_method("softmatch", "ema_decay=0.0", "ema_horizon_steps=1000")
    method.pseudo_targets(torch.tensor([[0.9, 0.05, 0.03, 0.02]] * 3 + [[0.1, 0.7, 0.1, 0.1]]), UNLABELED, 0)
    # p̂ now says class 0 is predicted most: an even row leans away from it after alignment.
    a = torch.full((1, 4), 0.25) / method.shares.p_hat
    assert (a / a.sum()).argmax() != 0


def test_the_estimates_survive_a_state_dict_round_trip(make_method):
    method, _ = make_method("softmatch", "ema_decay=0.5", "ema_horizon_steps=1000")
    method.pseudo_targets(Q, UNLABELED, step=0)
    fresh, _ = make_method("softmatch", "ema_decay=0.5", "ema_horizon_steps=1000")
    fresh.load_state_dict(method.state_dict())
    assert torch.equal(fresh.shares.p_hat, method.shares.p_hat)
    for name in ("mu", "var"):
        assert torch.equal(getattr(fresh, name), getattr(method, name))
    assert torch.equal(fresh.pseudo_targets(Q, UNLABELED, 1)[1], method.pseudo_targets(Q, UNLABELED, 1)[1])
