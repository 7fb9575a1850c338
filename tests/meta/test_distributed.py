"""Two CPU ranks (gloo): gradients taken with torch.autograd.grad are averaged across ranks, and
the exact hypergradient of each rank's own variables equals that of the global objective, as
does the one-sided difference built on ``grad_and``."""
import os
import socket

import torch
import torch.distributed as td
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

WORLD = 2
LR = 0.3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_data(rank: int):
    g = torch.Generator().manual_seed(10 + rank)
    x_u, x_l = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    return x_u, torch.randint(0, 3, (6,), generator=g), x_l, torch.randint(0, 3, (4,), generator=g)


def worker(rank: int, port: int, out: str) -> None:
    from metassl import meta

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    td.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).double()
    theta = meta.params(net)
    data = [rank_data(r) for r in range(WORLD)]
    h_all = torch.rand(WORLD, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def inner(r, h):
        x_u, y_u, _, _ = data[r]
        return (h * F.cross_entropy(meta.forward(net, theta, x_u), y_u, reduction="none")).mean()

    def outer(r, params):
        _, _, x_l, y_l = data[r]
        return F.cross_entropy(meta.forward(net, params, x_l), y_l)

    # This rank's share, through the primitives.
    h = h_all[rank].clone().requires_grad_()
    g = meta.grad(inner(rank, h), theta, create_graph=True)
    theta2 = meta.lookahead(theta, meta.detached_mean(g), LR)
    hyper = meta.hypergradient(g, h, meta.grad(outer(rank, theta2), theta2), LR)
    reduced = meta.grad(outer(rank, theta), theta)

    # First order: the one-sided difference from the look-ahead's own backward pass (``grad_and``).
    h1 = h_all[rank].clone().requires_grad_()
    g1, base = meta.grad_and(inner(rank, h1), theta, h1)
    theta1 = meta.lookahead(theta, g1, LR)
    v = meta.grad(outer(rank, theta1), theta1)

    def h_grad(p):
        with torch.enable_grad():
            hh = h_all[rank].clone().requires_grad_()
            x_u, y_u, _, _ = data[rank]
            loss = (hh * F.cross_entropy(meta.forward(net, p, x_u), y_u, reduction="none")).mean()
            return torch.autograd.grad(loss, hh)[0]

    _, d = meta.directional_fd(h_grad, theta, v, radius=1e-6, base=base)
    first_order = d * (-LR / meta.world_size())

    # The global objective in one process: every rank's batch, plain autograd.
    h_ref = h_all.clone().requires_grad_()
    names = list(theta)
    g_ref = torch.autograd.grad(sum(inner(r, h_ref[r]) for r in range(WORLD)) / WORLD, [theta[n] for n in names],
                                create_graph=True)
    theta_ref = {n: theta[n] - LR * gr for n, gr in zip(names, g_ref)}
    (hyper_ref,) = torch.autograd.grad(sum(outer(r, theta_ref) for r in range(WORLD)) / WORLD, h_ref)
    mean_grad = torch.autograd.grad(sum(outer(r, theta) for r in range(WORLD)) / WORLD, [theta[n] for n in names])
    torch.save({"hyper": hyper.detach(), "hyper_ref": hyper_ref[rank], "first_order": first_order,
                "base": base.detach(), "base_ref": torch.autograd.grad(inner(rank, h_ref[rank]), h_ref)[0][rank],
                "step": [g1[n] for n in names],
                "reduced": [reduced[n].detach() for n in names], "mean": list(mean_grad)}, f"{out}/{rank}.pt")
    td.destroy_process_group()


def test_gradients_are_reduced_and_hypergradients_match_the_global_objective(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    for rank in range(WORLD):
        r = torch.load(tmp_path / f"{rank}.pt")
        for got, want in zip(r["reduced"], r["mean"]):
            assert torch.allclose(got, want, rtol=1e-12, atol=1e-14)
        assert r["hyper_ref"].abs().max() > 1e-4
        assert torch.allclose(r["hyper"], r["hyper_ref"], rtol=1e-10, atol=1e-13)
        # grad_and: the parameter gradients reduced like grad's, the extra one this rank's own.
        step_ref = torch.load(tmp_path / f"{1 - rank}.pt")["step"]
        assert all(torch.equal(a, b) for a, b in zip(r["step"], step_ref))
        assert torch.allclose(r["base"], r["base_ref"], rtol=1e-12)  # d(own loss)/dh, not averaged
        assert torch.allclose(r["first_order"], r["hyper_ref"], rtol=1e-4, atol=1e-4 * r["hyper_ref"].abs().max())
