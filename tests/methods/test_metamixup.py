"""metamixup: the meta-gradient of the mixing weights (exact and first order) against finite
differences, the step that uses it, what the look-ahead leaves alone, the lambdas.jsonl record, and
digits against mixup."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metassl import config
from metassl.bench.speed import method_spec
from metassl.engine.trainer import Trainer
from metassl.errors import ConfigError
from metassl.methods import Batch, TrainContext
from metassl.methods.lam_record import BINS, LamRecorder
from metassl.methods.metamixup import MetaMixup
from metassl.report.lambdas import read_lambdas
from tests.methods.conftest import mean_test_error

B, CLASSES = 8, 4


def convnet(smooth: bool = False, dropout: float = 0.0) -> nn.Module:
    """Conv-BN-ReLU-MaxPool, or with ``smooth`` Softplus and average pooling: the λ-gradient of a
    ReLU/max-pool net jumps where a unit or a pooling winner switches, which plain finite
    differences in θ see and derivatives do not."""
    torch.manual_seed(0)
    act, pool = (nn.Softplus, nn.AvgPool2d) if smooth else (nn.ReLU, nn.MaxPool2d)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), act(), pool(2),
        nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), act(), nn.Dropout(dropout),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, CLASSES),
    )
    with torch.no_grad():
        net(torch.randn(32, 1, 8, 8))  # running statistics away from their initial values
    net.train()
    return net


def data(seed=1):
    g = torch.Generator().manual_seed(seed)
    x, x_v = torch.randn(B, 1, 8, 8, generator=g), torch.randn(12, 1, 8, 8, generator=g)
    y, y_v = torch.randint(0, CLASSES, (B,), generator=g), torch.randint(0, CLASSES, (12,), generator=g)
    perm = torch.randperm(B, generator=g)
    z = torch.randn(B, generator=g)
    return Batch(x=x, raw=None, y=y), Batch(x=x_v, raw=None, y=y_v), perm, z


def make(net, val, *overrides, lr=0.5):
    cfg = config.load_config(None, ["method=metamixup"] + [f"metamixup.{o}" for o in overrides]).method_cfg
    ctx = TrainContext(num_classes=CLASSES, total_steps=100, augment=None, normalize=None,
                       device=torch.device("cpu"), lr=lambda: lr, sample_val=lambda: val)
    return MetaMixup(net, torch.optim.SGD(net.parameters(), lr=lr), cfg, ctx)


def soft_target_loss(logits, x_target):
    return -(x_target * F.log_softmax(logits, 1)).sum(1).mean()


def loss_of_for(labeled, perm):
    """Eq. 4's mixed loss written independently of the method: soft cross-entropy against the
    mixed one-hot targets."""
    x, y = labeled.x, F.one_hot(labeled.y, CLASSES).to(labeled.x.dtype)

    def loss_of(forward, lam):
        lam_x = lam.view(-1, 1, 1, 1)
        target = lam[:, None] * y + (1 - lam[:, None]) * y[perm]
        return soft_target_loss(forward(lam_x * x + (1 - lam_x) * x[perm]), target)

    return loss_of


def meta_objective(net, bn, loss_of, val, eta):
    """M(z) = CE(f(x_v; θ - η ∇_θ ℓ_mix(θ, sigmoid(z))), y_v), by plain autograd and functional_call."""
    names = [n for n, _ in net.named_parameters()]

    def run(params, x):
        buffers = {n: b.clone() for n, b in net.named_buffers()}
        net.train(bn == "train")
        try:
            return torch.func.functional_call(net, (params, buffers), (x,))
        finally:
            net.train()

    def m(z):
        theta = dict(net.named_parameters())
        inner = loss_of(lambda x: run(theta, x), torch.sigmoid(z))
        grads = torch.autograd.grad(inner, [theta[n] for n in names])
        stepped = {n: theta[n].detach() - eta * g for n, g in zip(names, grads)}
        return F.cross_entropy(run(stepped, val.x), val.y).detach()

    return m


def central_differences(m, z, h=1e-5):
    out = torch.zeros_like(z)
    for i in range(len(z)):
        e = torch.zeros_like(z)
        e[i] = h
        out[i] = (m(z + e) - m(z - e)) / (2 * h)
    return out


@pytest.mark.parametrize("bn", ["train", "eval"])
def test_exact_lam_gradient_matches_central_differences(float64, bn):
    labeled, val, perm, z = data()
    net = convnet()
    method = make(net, val, f"meta_bn={bn}")
    loss_of = loss_of_for(labeled, perm)
    dz, meta_loss = method.learned_lam.hypergradient(loss_of, z, val)
    m = meta_objective(net, bn, loss_of, val, eta=0.5)
    reference = central_differences(m, z)
    assert reference.abs().max() > 1e-4  # a gradient worth comparing
    assert torch.allclose(dz, reference, rtol=1e-6, atol=1e-9 * reference.abs().max().item())
    assert torch.allclose(meta_loss, m(z))


@pytest.mark.parametrize("bn", ["train", "eval"])
def test_first_order_forward_mode_lam_gradient_is_the_exact_one(float64, bn):
    labeled, val, perm, z = data()
    net = convnet()
    loss_of = loss_of_for(labeled, perm)
    exact, _ = make(net, val, f"meta_bn={bn}").learned_lam.hypergradient(loss_of, z, val)
    first, _ = make(net, val, f"meta_bn={bn}", "grad=first_order",
                    "directional=jvp").learned_lam.hypergradient(loss_of, z, val)
    assert F.cosine_similarity(first, exact, dim=0) >= 0.95
    assert torch.allclose(first, exact, rtol=1e-6, atol=1e-9)  # the derivation is exact


def counting(loss_of):
    calls = []

    def counted(forward, lam):
        calls.append(1)
        return loss_of(forward, lam)

    return counted, calls


@pytest.mark.parametrize("bn", ["train", "eval"])
@pytest.mark.parametrize("net_kind", ["relu", "smooth", "relu+dropout"])
@pytest.mark.parametrize("directional", ["fd", "fd_onesided"])
def test_first_order_differences_match_the_exact_gradient(float64, bn, net_kind, directional):
    """Central differences differ from the exact derivative by O(ε²), one-sided ones by O(ε): on a
    smooth net as they are, on a ReLU/max-pool net because the difference passes replay the
    look-ahead's unit pattern and pooling winners (``meta.Kinks``), and with dropout because they
    also replay its masks. The one-sided difference takes its base from the look-ahead's backward
    pass: one pass of the mixed loss fewer."""
    labeled, val, perm, z = data()
    net = convnet(smooth=net_kind == "smooth", dropout=0.3 if net_kind == "relu+dropout" else 0.0)
    loss_of, calls = counting(loss_of_for(labeled, perm))
    torch.manual_seed(7)  # the same dropout masks in both look-aheads
    exact, _ = make(net, val, f"meta_bn={bn}").learned_lam.hypergradient(loss_of, z, val)
    torch.manual_seed(7)
    calls.clear()
    first, _ = make(net, val, f"meta_bn={bn}", "grad=first_order",
                    f"directional={directional}").learned_lam.hypergradient(loss_of, z, val)
    assert len(calls) == (3 if directional == "fd" else 2)
    assert exact.abs().max() > 1e-4
    assert F.cosine_similarity(first, exact, dim=0) >= 0.95
    tol = 1e-3 if directional == "fd" else 1e-2
    assert torch.allclose(first, exact, rtol=tol, atol=0.1 * tol * exact.abs().max().item())


def test_one_sided_difference_under_autocast_falls_back_to_the_central_one():
    """Under autocast the look-ahead runs in bfloat16, too coarse a base for a float32 difference
    of relative size ε: the one-sided variant then takes the central difference's two passes."""
    labeled, val, perm, z = data()
    net = convnet()
    loss_of = loss_of_for(labeled, perm)
    results = {}
    for directional in ("fd", "fd_onesided"):
        torch.manual_seed(7)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results[directional], _ = make(net, val, "grad=first_order", f"directional={directional}"
                                           ).learned_lam.hypergradient(loss_of, z, val)
    assert torch.equal(results["fd"], results["fd_onesided"])
    torch.manual_seed(7)
    plain, _ = make(net, val, "grad=first_order").learned_lam.hypergradient(loss_of, z, val)
    assert not torch.equal(plain, results["fd"])  # without autocast, the one-sided difference


@pytest.mark.parametrize("scale", ["batch", "pair"])
def test_train_step_remixes_with_the_learned_lam(float64, monkeypatch, scale):
    """Algorithm 1 end to end: λ* = sigmoid(z - α s dM/dz), then one SGD step on the batch mixed
    with λ*; s = 1 for ``scale=batch``, n/η (n pairs, learning rate η) for ``scale=pair``."""
    labeled, val, perm, z = data()
    net = convnet()
    eta, alpha = 0.5, 40.0
    factor = 1.0 if scale == "batch" else len(z) / eta
    method = make(net, val, f"alpha={alpha / factor}", f"scale={scale}", lr=eta)
    monkeypatch.setattr("metassl.methods.metamixup.sample_lam", lambda *args: torch.sigmoid(z))
    monkeypatch.setattr(torch, "randperm", lambda n, **kw: perm.clone())
    loss_of = loss_of_for(labeled, perm)
    lam_star = torch.sigmoid(z - alpha * central_differences(meta_objective(net, "train", loss_of, val, eta), z))
    assert (lam_star - torch.sigmoid(z)).abs().max() > 1e-3  # the meta step moved λ
    theta = {n: p.detach().clone() for n, p in net.named_parameters()}
    grads = torch.autograd.grad(loss_of(net, lam_star), list(net.parameters()))
    logs = method.train_step(labeled, None, step=0)
    for (name, p), g in zip(net.named_parameters(), grads):
        assert torch.allclose(p, theta[name] - eta * g, atol=1e-10), name
    assert torch.allclose(logs["lam_mean"], lam_star.mean(), atol=1e-8)


def test_lam_stays_in_the_unit_interval_and_the_meta_step_lowers_the_meta_loss(float64):
    labeled, val, perm, z = data()
    net = convnet()
    loss_of = loss_of_for(labeled, perm)
    m = meta_objective(net, "train", loss_of, val, eta=0.5)
    method = make(net, val, "scale=batch")
    lam, logs = method.learned_lam(loss_of, torch.sigmoid(z))
    assert m(torch.logit(lam)) < m(z)  # one descent step of size α = 5 on z
    assert logs["lam_shift"] > 0
    huge = make(net, val, "alpha=1e9")
    lam, _ = huge.learned_lam(loss_of, torch.sigmoid(z))
    assert ((lam >= 0) & (lam <= 1)).all() and ((lam < 1e-6) | (lam > 1 - 1e-6)).all()


@pytest.mark.parametrize("overrides", [[], ["meta_bn=eval"], ["grad=first_order"],
                                       ["grad=first_order", "directional=jvp"]])
def test_lookahead_leaves_parameters_statistics_and_gradients_alone(overrides):
    labeled, val, perm, z = data()
    net = convnet()
    method = make(net, val, *overrides)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lam, _ = method.learned_lam(loss_of_for(labeled, perm), torch.sigmoid(z))
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(m.training for m in net.modules())
    assert all(p.grad is None for p in net.parameters())


def test_recorder_bins_pairs_and_keeps_the_latest_samples():
    rec = LamRecorder(3, torch.device("cpu"), alpha=1.0)
    lam = torch.tensor([0.0, 0.049, 0.05, 0.5, 1.0, 0.7])
    y_i, y_j = torch.tensor([0, 0, 1, 2, 2, 1]), torch.tensor([1, 1, 0, 2, 2, 0])
    idx = torch.arange(6)
    keep = torch.tensor([1.0, 1, 1, 1, 1, 0])  # the last pair took no part in the loss
    for _ in range(50):
        rec.add(lam, y_i, y_j, idx, idx.flip(0), keep)
    assert rec.hist[0] == 100 and rec.hist[1] == 50 and rec.hist[10] == 50 and rec.hist[BINS - 1] == 50
    assert rec.hist.sum() == 250 and rec.samples.shape[0] == 256
    state = rec.state_dict()
    copy = LamRecorder(3, torch.device("cpu"), alpha=1.0)
    copy.load_state_dict(state)
    out = copy.flush(7, None)
    assert out["lam_count"] == 250 and out["lam_mean"] == pytest.approx((0.049 + 0.05 + 0.5 + 1.0) / 5)
    assert copy.hist.sum() == 0  # a new interval begins


def test_lambdas_jsonl_is_written_at_every_evaluation_in_the_report_format(tmp_path):
    cfg = config.load_config(None, ["dataset=digits", "model=mlp", "method=metamixup", "labels_per_class=5",
                                    "val_per_class=3", "batch_size=16", "steps=4", "eval_every=2",
                                    "tensorboard=false", "threads=1"])
    trainer = Trainer(cfg, tmp_path)
    trainer.fit()
    lines = [json.loads(line) for line in (tmp_path / "lambdas.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4]
    y = trainer.s.y.tolist()
    for r in lines:
        assert r["alpha"] == 1.0
        assert r["hist_edges"] == pytest.approx([k / 20 for k in range(21)])
        assert len(r["hist_counts"]) == 20 and sum(r["hist_counts"]) == 2 * 16
        assert all(isinstance(c, int) for c in r["hist_counts"])
        counts, means = r["pair_count"], r["pair_mean"]
        assert len(counts) == len(means) == 10 and all(len(row) == 10 for row in counts + means)
        assert sum(map(sum, counts)) == 2 * 16
        for crow, mrow in zip(counts, means):
            for c, m in zip(crow, mrow):
                assert (m is None) == (c == 0) and (m is None or 0 <= m <= 1)
        assert len(r["samples"]) == 2 * 16
        for i, j, lam in r["samples"]:
            assert isinstance(i, int) and isinstance(j, int) and 0 <= lam <= 1
            assert counts[y[i]][y[j]] > 0  # the indices name the examples that were mixed
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= m["lam_mean"] <= 1 for m in metrics if "lam_mean" in m)
    log = read_lambdas(tmp_path / "lambdas.jsonl")
    assert log.alpha == 1.0 and log.counts.shape == (2, 20) and log.samples.shape == (64, 3)


DIGITS = ["dataset=digits", "model=mlp", "labels_per_class=20", "val_per_class=10", "steps=600",
          "batch_size=64", "lr=0.05", "eval_every=200", "augment.translate=1", "tensorboard=false", "threads=1"]


def test_digits_metamixup_beats_mixup_at_the_same_budget():
    meta_error, mixup_error = mean_test_error(DIGITS, "metamixup"), mean_test_error(DIGITS, "mixup")
    assert meta_error < mixup_error, (meta_error, mixup_error)


def test_speed_bench_times_variants_of_one_method():
    cls, cfg = method_spec("metamixup:grad=first_order,meta_bn=eval")
    assert cls is MetaMixup and (cfg.grad, cfg.meta_bn, cfg.alpha) == ("first_order", "eval", 5.0)
    assert method_spec("metamixup")[1] == MetaMixup.Config()
    with pytest.raises(ConfigError, match="metamixup.grd"):
        method_spec("metamixup:grd=exact")
