"""mixmatch_metamixup and meta_pl_metamixup: with a zero meta step they are their parents, the
learned λ is the meta-gradient of the parent's own mixed loss, and the pairs are recorded."""
import json

import pytest
import torch
from torch import nn

from metassl import config
from metassl.data.augment import Augmenter
from metassl.methods import METHODS, Batch, TrainContext

CLASSES = 4
PARENT = {"mixmatch_metamixup": "mixmatch", "meta_pl_metamixup": "meta_pl_mixup"}


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Linear(32, CLASSES))


def batches(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    raw = [torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8) for _ in range(3)]
    aug = Augmenter((0.5,), (0.25,), flip=False, translate=0, noise=0.0, device="cpu")
    y = [torch.randint(0, CLASSES, (n,), generator=g) for _ in range(2)]
    idx = torch.randperm(100, generator=g)
    return (aug, Batch(x=aug(raw[0]), raw=raw[0], y=y[0], idx=idx[:n]),
            Batch(x=aug(raw[1]), raw=raw[1], idx=idx[n:2 * n]), Batch(x=aug(raw[2]), raw=raw[2], y=y[1]))


def make(name, *overrides, lr=0.5):
    aug, labeled, unlabeled, val = batches()
    cfg = config.load_config(None, [f"method={name}"] + [f"{name}.{o}" for o in overrides]).method_cfg
    ctx = TrainContext(num_classes=CLASSES, total_steps=100, augment=aug, normalize=aug.normalize,
                       device=torch.device("cpu"), lr=lambda: lr, sample_val=lambda: val)
    model = net()
    return METHODS.get(name)(model, torch.optim.SGD(model.parameters(), lr=lr), cfg, ctx), labeled, unlabeled


@pytest.mark.parametrize("name", list(PARENT))
def test_a_zero_meta_step_is_the_parent_method(name):
    child, labeled, unlabeled = make(name, "lam.alpha=0")
    parent, _, _ = make(PARENT[name])
    torch.manual_seed(3)
    a = parent.train_step(labeled, unlabeled, step=5)
    torch.manual_seed(3)
    b = child.train_step(labeled, unlabeled, step=5)
    assert torch.allclose(a["loss"], b["loss"], rtol=1e-5)
    for p, q in zip(parent.model.parameters(), child.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert b["lam_shift"] < 1e-6


@pytest.mark.parametrize("name", list(PARENT))
def test_the_meta_step_moves_lam_and_records_the_pairs(name, tmp_path):
    method, labeled, unlabeled = make(name, "lam.alpha=2000")
    logs = method.train_step(labeled, unlabeled, step=5)
    assert logs["lam_shift"] > 1e-3 and torch.isfinite(logs["meta_loss"])
    out = method.on_evaluate(5, tmp_path)
    rows = 3 * len(labeled.x) if name == "mixmatch_metamixup" else len(labeled.x)  # X̂ and K=2 views of Û
    assert out["lam_count"] == rows
    record = json.loads((tmp_path / "lambdas.jsonl").read_text())
    assert (record["alpha"] is None) == (name == "mixmatch_metamixup")
    assert len(record["samples"]) == rows
    seen = set(labeled.idx.tolist()) | set(unlabeled.idx.tolist())
    assert all(i in seen and j in seen for i, j, _ in record["samples"])
    if name == "mixmatch_metamixup":
        assert 0.5 <= out["lam_mean"] <= 1  # λ' = max(λ, 1-λ) stays part of MixMatch's mixing


@pytest.mark.parametrize("name", list(PARENT))
def test_learned_lam_follows_the_parents_loss(name):
    """The exact (double backward), forward-mode and difference meta-gradients agree on the
    parent's loss (the differences replay the look-ahead's kinks through every forward it makes):
    to O(ε²) for the central difference, to O(ε) for the one-sided one."""
    grads = []
    variants = ("jvp", "fd", "fd_onesided")
    for extra in [[]] + [["lam.grad=first_order", f"lam.directional={d}"] for d in variants]:
        method, labeled, unlabeled = make(name, *extra)
        z = torch.linspace(-2, 2, 3 * len(labeled.x) if name == "mixmatch_metamixup" else len(labeled.x))

        def learn(loss_of, start, meta_lam=method.learned_lam, z=z):
            grads.append(meta_lam.hypergradient(loss_of, z, meta_lam.ctx.sample_val())[0])
            return torch.sigmoid(z), {}

        method.learned_lam = learn
        torch.manual_seed(3)
        method.train_step(labeled, unlabeled, step=50)
    assert grads[0].abs().max() > 0
    largest = grads[0].abs().max().item()
    for other, directional in zip(grads[1:], variants):
        if directional == "fd_onesided":
            assert (other - grads[0]).abs().max() <= 1e-2 * largest
        else:
            assert torch.allclose(grads[0], other, rtol=1e-3, atol=1e-4 * largest)
