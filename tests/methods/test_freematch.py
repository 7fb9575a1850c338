"""FreeMatch: self-adaptive global and local thresholds, and the self-adaptive fairness term."""
import math

import pytest
import torch

from metassl.methods import Batch

UNLABELED = Batch(x=torch.zeros(4, 1, 8, 8), raw=None)
Q = torch.tensor([[0.70, 0.10, 0.10, 0.10],
                  [0.20, 0.20, 0.25, 0.35],    # below τ_t, above its class's τ_t(3): in
                  [0.33, 0.27, 0.20, 0.20],    # below τ_t(0) = τ_t: out
                  [0.10, 0.60, 0.20, 0.10]])


def test_thresholds_are_the_emas_of_confidence_scaled_per_class(make_method):
    method, _ = make_method("freematch", "ema_decay=0.5", "ema_horizon_steps=1000")
    assert method.decay == 0.5
    targets, mask, logs = method.pseudo_targets(Q, UNLABELED, step=0)
    tau = 0.5 * 0.25 + 0.5 * Q.max(1).values.mean()              # τ_0 = 1/C
    p_local = 0.5 * 0.25 + 0.5 * Q.mean(0)                        # p̃_0 = 1/C
    thresholds = p_local / p_local.max() * tau                    # (0.37, 0.35, 0.28, 0.28)
    assert torch.allclose(logs["tau"], tau) and torch.allclose(method.p_local, p_local)
    assert torch.equal(targets, Q.argmax(1))
    expected = (Q.max(1).values >= thresholds[Q.argmax(1)]).float()
    assert torch.equal(mask, expected) and torch.equal(mask, torch.tensor([1.0, 1.0, 0.0, 1.0]))
    # The next batch moves both averages again, from where this one left them.
    method.pseudo_targets(Q[:2], UNLABELED, step=1)
    assert torch.allclose(method.tau, 0.5 * tau + 0.5 * Q[:2].max(1).values.mean())


def test_the_average_is_capped_at_the_horizon_of_a_short_run(make_method):
    assert make_method("freematch", total_steps=100)[0].decay == pytest.approx(1 - 1 / 5)   # 5% of 100
    assert make_method("freematch", total_steps=400_000)[0].decay == 0.999


def test_fairness_is_the_negative_entropy_of_the_mean_probability_over_the_histogram(make_method):
    from metassl.methods.freematch import fairness

    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1],
                          [0.2, 0.6, 0.1, 0.1],
                          [0.1, 0.1, 0.1, 0.7]])      # masked out
    mask = torch.tensor([1.0, 1.0, 0.0])
    # p̄ = (0.45, 0.35, 0.1, 0.1), h̄ = (0.5, 0.5, 0, 0): ratio (0.9, 0.7) -> (0.5625, 0.4375).
    b = torch.tensor([0.5625, 0.4375])
    assert fairness(probs.log(), mask).item() == pytest.approx((b * b.log()).sum().item(), rel=1e-5)
    assert fairness(probs.log(), torch.zeros(3)).item() == 0.0
    # Descent on it evens out the classes: the lower ratio's probability is raised.
    logits = probs.log().requires_grad_()
    fairness(logits, mask).backward()
    assert logits.grad[1, 1] < 0 and logits.grad[0, 0] > 0


def test_the_fairness_term_enters_the_loss_with_its_weight(make_method):
    method, batches = make_method("freematch", "fairness_weight=0.5", "ema_horizon_steps=0")
    out = method.train_step(*batches(), step=0)
    assert out["mask"] > 0 and out["loss_fair"] < 0
    assert torch.allclose(out["loss"], out["loss_x"] + out["loss_u"] + 0.5 * out["loss_fair"])


def test_the_thresholds_survive_a_state_dict_round_trip(make_method):
    method, _ = make_method("freematch", "ema_decay=0.5", "ema_horizon_steps=1000")
    method.pseudo_targets(Q, UNLABELED, step=0)
    fresh, _ = make_method("freematch", "ema_decay=0.5", "ema_horizon_steps=1000")
    fresh.load_state_dict(method.state_dict())
    assert torch.equal(fresh.tau, method.tau) and torch.equal(fresh.p_local, method.p_local)
    assert math.isclose(fresh.pseudo_targets(Q, UNLABELED, 1)[2]["tau"].item(),
                        method.pseudo_targets(Q, UNLABELED, 1)[2]["tau"].item())
