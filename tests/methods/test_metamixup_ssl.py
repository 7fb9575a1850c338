"""The pseudo-label + mixup family (mixup_pl, mixup_apl, metamixup_ssl): the APL schedule, the
pairing of pseudo-labeled examples, the loss of Algorithm 2, the learned λ, and digits."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metassl import config
from metassl.methods import METHODS, Batch, TrainContext
from metassl.methods.pl_mix import apl_threshold, confident_pairing
from tests.methods.conftest import DIGITS_SSL, mean_test_error

CLASSES = 4


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Linear(32, CLASSES))


def batches(n_l=8, n_u=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    x_l, x_u, x_v = (torch.randn(n, 1, 8, 8, generator=g) for n in (n_l, n_u, 10))
    y_l, y_v = torch.randint(0, CLASSES, (n_l,), generator=g), torch.randint(0, CLASSES, (10,), generator=g)
    idx = torch.randperm(100, generator=g)
    return (Batch(x=x_l, raw=None, y=y_l, idx=idx[:n_l]), Batch(x=x_u, raw=None, idx=idx[n_l:n_l + n_u]),
            Batch(x=x_v, raw=None, y=y_v))


def make(name, *overrides, model=None, val=None, lr=0.5, total_steps=100):
    cfg = config.load_config(None, [f"method={name}"] + [f"{name}.{o}" for o in overrides]).method_cfg
    model = model if model is not None else net()
    ctx = TrainContext(num_classes=CLASSES, total_steps=total_steps, augment=None, normalize=None,
                       device=torch.device("cpu"), lr=lambda: lr, sample_val=lambda: val)
    return METHODS.get(name)(model, torch.optim.SGD(model.parameters(), lr=lr), cfg, ctx)


def test_apl_threshold_drops_by_sigma_d_every_period():
    cfg = make("metamixup_ssl", val=batches()[2], total_steps=1000).cfg
    assert (cfg.sigma0, cfg.sigma_d, cfg.apl_period_fraction) == (0.95, 0.05, 0.15)  # the paper's 30 of 200 epochs
    sigma = [apl_threshold(s, 1000, cfg) for s in (0, 149, 150, 299, 300, 999)]
    assert sigma == pytest.approx([0.95, 0.95, 0.90, 0.90, 0.85, 0.65])
    cfg.apl_period_steps = 100
    assert apl_threshold(250, 1000, cfg) == pytest.approx(0.85)
    cfg.sigma_d = 0.5
    assert apl_threshold(999, 1000, cfg) == 0.0  # never below 0
    # MixUp+PL keeps σ fixed; MixUp+APL and MetaMixUp+APL lower it.
    assert make("mixup_pl").cfg.sigma_d == 0 and make("mixup_apl").cfg.sigma_d == 0.05


def test_confident_pairing_mixes_pseudo_labeled_examples_only_with_each_other():
    torch.manual_seed(0)
    for mask in ([1, 0, 1, 1, 0, 0, 1, 1], [0, 0, 0], [0, 1, 0], [1, 1], [1] * 9):
        mask = torch.tensor(mask, dtype=torch.float)
        perm = confident_pairing(mask)
        assert sorted(perm.tolist()) == list(range(len(mask)))  # a permutation
        sure = mask.bool()
        assert sure[perm][sure].all()  # confident rows get confident partners...
        assert torch.equal(perm[~sure], torch.arange(len(mask))[~sure])  # ...the others themselves
        if sure.sum() > 1:
            assert (perm[sure] != torch.arange(len(mask))[sure]).all()


def capture_loss_of(method):
    """Make ``method`` mix with fixed λ and keep the loss function it builds."""
    kept = {}

    def mixing_weights(loss_of, n):
        kept["loss_of"] = loss_of
        kept["lam"] = torch.linspace(0.1, 0.9, n)
        return kept["lam"], {}

    method.mixing_weights = mixing_weights
    return kept


def test_loss_is_mixed_cross_entropy_and_examples_under_sigma_contribute_nothing():
    labeled, unlabeled, _ = batches()
    method = make("mixup_pl", "sigma0=0.3", "unlabeled_weight=2.0")
    y_u, mask = method.pseudo_labels(unlabeled.x, 0.3)
    assert 0 < mask.sum() < len(mask)
    kept = capture_loss_of(method)
    torch.manual_seed(5)
    logs = method.train_step(labeled, unlabeled, step=0)
    seen = {}

    def forward(x_mixed):
        seen["x"] = x_mixed.detach().requires_grad_()
        return torch.flatten(seen["x"], 1)[:, :CLASSES] * 3.0  # any function of each row alone

    lam = kept["lam"]
    loss = kept["loss_of"](forward, lam)
    grad_x = torch.autograd.grad(loss, seen["x"])[0].flatten(1).abs().sum(1)
    b = labeled.x.shape[0]
    assert (grad_x[:b] > 0).all() and (grad_x[b:][mask.bool()] > 0).all()
    assert (grad_x[b:][~mask.bool()] == 0).all()  # below σ: no gradient at all
    # Each mixed row is λ x_i + (1-λ) x_j; find j and check the loss formula against soft targets.
    x = torch.cat([labeled.x, unlabeled.x]).flatten(1)
    mixed = seen["x"].detach().flatten(1)
    partner = ((mixed - lam[:, None] * x)[:, None, :] - (1 - lam[:, None, None]) * x[None]).abs().sum(2).argmin(1)
    y = F.one_hot(torch.cat([labeled.y, y_u]), CLASSES).float()
    target = lam[:, None] * y + (1 - lam[:, None]) * y[partner]
    per_row = -(target * F.log_softmax(forward(seen["x"]).detach(), 1)).sum(1)
    assert torch.allclose(loss, per_row[:b].mean() + 2.0 * (per_row[b:] * mask).mean(), atol=1e-6)
    assert (partner[:b] < b).all() and (partner[b:] >= b).all()  # within each batch
    assert mask[partner[b:] - b][mask.bool()].all()
    assert logs["mask"] == mask.mean()


def test_learned_lam_exact_and_forward_mode_agree_and_skip_unlabeled_under_sigma(float64):
    """On Algorithm 2's loss the double-backward and forward-over-reverse meta-gradients agree, and
    an unlabeled example under σ, absent from the loss, keeps its random λ (BatchNorm in eval mode
    in the meta passes, so that it does not reach the loss through the batch statistics either)."""
    labeled, unlabeled, val = batches()
    b, n = len(labeled.x), len(labeled.x) + len(unlabeled.x)
    z = torch.randn(n)
    grads = []
    for extra in ([], ["grad=first_order", "directional=jvp"]):
        method = make("metamixup_ssl", "sigma0=0.3", "meta_bn=eval", *extra, val=val)

        def mixing_weights(loss_of, n, method=method):
            grads.append(method.learned_lam.hypergradient(loss_of, z, val)[0])
            return torch.sigmoid(z), {}

        method.mixing_weights = mixing_weights
        _, mask = method.pseudo_labels(unlabeled.x, 0.3)
        torch.manual_seed(5)
        method.train_step(labeled, unlabeled, step=0)
    assert torch.allclose(grads[0], grads[1], rtol=1e-6, atol=1e-10)
    assert mask.sum() >= 2
    torch.manual_seed(5)  # the pairs train_step drew
    perm = torch.cat([torch.randperm(b), b + confident_pairing(mask)])
    under = torch.cat([torch.zeros(b, dtype=torch.bool), ~mask.bool()])
    assert (grads[0][under] == 0).all()
    assert (grads[0][~under & (perm != torch.arange(n))] != 0).all()


def test_step_leaves_statistics_to_the_real_update_and_records_used_lam(tmp_path):
    labeled, unlabeled, val = batches()
    method = make("metamixup_ssl", "sigma0=0.3", val=val)
    model = method.model
    _, mask = method.pseudo_labels(unlabeled.x, 0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logs = method.train_step(labeled, unlabeled, step=0)
    after = model.state_dict()
    # One train-mode pass moved the running statistics once: the meta passes and the pseudo labels did not.
    assert after["2.num_batches_tracked"] == before["2.num_batches_tracked"] + 1
    assert 0 <= logs["lam_mean"] <= 1 and logs["lam_shift"] > 0
    out = method.on_evaluate(10, tmp_path)
    assert out["sigma"] == 0.3 and out["lam_count"] == len(labeled.x) + int(mask.sum())
    record = json.loads((tmp_path / "lambdas.jsonl").read_text())
    assert sum(record["hist_counts"]) == out["lam_count"] == sum(map(sum, record["pair_count"]))
    assert len(record["samples"]) == out["lam_count"]
    state = method.state_dict()
    assert set(state) == {"lam_log"}


def test_digits_metamixup_ssl_beats_mixup_pl_at_the_same_budget():
    meta_error = mean_test_error(DIGITS_SSL, "metamixup_ssl")
    mixup_error = mean_test_error(DIGITS_SSL, "mixup_pl")
    assert meta_error < mixup_error, (meta_error, mixup_error)
