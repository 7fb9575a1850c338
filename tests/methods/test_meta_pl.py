"""meta_pl and meta_pl_exact: the pseudo-label meta-gradient, Theorem 1, and what a step leaves alone."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metassl import config, meta
from metassl.methods import Batch, TrainContext
from metassl.methods.meta_pl import MetaPL
from metassl.methods.meta_pl_exact import MetaPLExact
from metassl.methods.meta_pl_mixup import MetaPLMixup


pytestmark = pytest.mark.usefixtures("float64")


def convnet() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )
    with torch.no_grad():
        net(torch.randn(32, 1, 8, 8))  # running statistics away from their initial values
    return net


def make(cls, model, overrides=(), lr=0.1, **opt):
    name = {MetaPL: "meta_pl", MetaPLExact: "meta_pl_exact", MetaPLMixup: "meta_pl_mixup"}[cls]
    cfg = config.load_config(None, [f"method={name}"] + [f"{name}.{o}" for o in overrides]).method_cfg
    ctx = TrainContext(num_classes=4, total_steps=1000, augment=None, normalize=None, device=torch.device("cpu"),
                       lr=lambda: lr)
    return cls(model, torch.optim.SGD(model.parameters(), lr=lr, **opt), cfg, ctx)


def batches(n_l=16, n_u=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    x_l, x_u = torch.randn(n_l, 1, 8, 8, generator=g), torch.randn(n_u, 1, 8, 8, generator=g)
    y_l = torch.randint(0, 4, (n_l,), generator=g)
    return Batch(x=x_l, raw=None, y=y_l), Batch(x=x_u, raw=None)


@pytest.mark.parametrize("phi", ["mse", "kl"])
def test_first_order_and_jvp_meta_gradients_match_the_exact_one(phi):
    labeled, unlabeled = batches()
    net = convnet()
    exact_y, exact_d = make(MetaPLExact, net, [f"consistency={phi}"]).meta_grad(labeled, unlabeled.x)
    fd_y, fd_d = make(MetaPL, net, [f"consistency={phi}"]).meta_grad(labeled, unlabeled.x)
    jvp_y, jvp_d = make(MetaPL, net, [f"consistency={phi}", "pseudo_grad=jvp"]).meta_grad(labeled, unlabeled.x)
    cos = lambda a, b: F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()  # noqa: E731
    assert exact_d.abs().max() > 1e-3
    assert cos(fd_d, exact_d) >= 0.999 and cos(jvp_d, exact_d) >= 0.999
    # The same scale too; the shared losses compute in float32, hence the tolerance.
    assert torch.allclose(jvp_d, exact_d, rtol=1e-4, atol=1e-6)
    assert torch.allclose(jvp_y, exact_y) and torch.allclose(fd_y, exact_y, atol=1e-4)


def test_exact_meta_gradient_does_not_depend_on_the_inner_learning_rate():
    """At ỹ = f(x_u; θ) the inner gradient vanishes, so Eq. 5 is linear in α_t and the rescaled d is
    the same for any α_t: the β convention means one thing for every lr."""
    labeled, unlabeled = batches()
    net = convnet()
    d1 = make(MetaPLExact, net, lr=0.1).meta_grad(labeled, unlabeled.x)[1]
    d2 = make(MetaPLExact, net, lr=0.003).meta_grad(labeled, unlabeled.x)[1]
    assert torch.allclose(d1, d2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cls, overrides", [(MetaPL, []), (MetaPL, ["pseudo_grad=jvp"]), (MetaPLExact, []),
                                            (MetaPL, ["meta_bn=train"]), (MetaPLExact, ["meta_bn=train"]),
                                            (MetaPLMixup, [])])
def test_meta_passes_leave_parameters_and_statistics_bit_identical(cls, overrides):
    labeled, unlabeled = batches()
    net = convnet()
    net.train()
    method = make(cls, net, overrides)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    method.pseudo_labels(labeled, unlabeled.x)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(m.training for m in net.modules())
    assert all(p.grad is None for p in net.parameters())


def test_meta_step_moves_labels_like_a_labeled_descent_step():
    """ŷ = ỹ - β d with d = 2 J g (MSE): the predictions one labeled SGD step of size 2β would give."""
    labeled, unlabeled = batches()
    net = convnet()
    beta = 0.05
    method = make(MetaPL, net, ["project=false", f"meta_lr={beta}", "pseudo_grad=jvp"])
    y_hat, logs = method.pseudo_labels(labeled, unlabeled.x)
    theta = meta.params(net)
    g = meta.grad(F.cross_entropy(meta.forward(net, theta, labeled.x), labeled.y), theta)
    with torch.no_grad():
        stepped = F.softmax(meta.forward(net, meta.lookahead(theta, g, 2 * beta), unlabeled.x), 1)
        start = F.softmax(meta.forward(net, theta, unlabeled.x), 1)
    moved = y_hat - start
    assert logs["pl_shift"] > 0
    assert (y_hat - stepped).norm() < 0.05 * moved.norm()


def test_without_the_meta_step_the_targets_are_the_eval_mode_predictions():
    """meta_lr=0: Table 4's "neither" row."""
    labeled, unlabeled = batches()
    net = convnet()
    y_hat, logs = make(MetaPL, net, ["meta_lr=0"]).pseudo_labels(labeled, unlabeled.x)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(y_hat, F.softmax(net(unlabeled.x), 1).float()) and logs == {}


def test_projection_keeps_rows_on_the_simplex():
    from metassl.methods.meta_labels import project_rows
    y = torch.tensor([[0.7, -0.2, 0.5], [-1.0, -2.0, -0.1], [0.2, 0.3, 0.5]])
    out = project_rows(y)
    assert torch.allclose(out[0], torch.tensor([0.7, 0.0, 0.5]) / 1.2)
    assert torch.equal(out[1], torch.zeros(3))  # a row that sums to 0 stays 0
    assert torch.allclose(out[2], y[2])


def jacobian_bound_and_smoothness(net, theta, x_u, x_l, y_l):
    """M = max_i ||J_θ f(x_i)|| (spectral) and L0 = ||∇²G|| (spectral) at θ, Theorem 1's constants."""
    names = list(theta)
    flat = torch.cat([theta[n].detach().flatten() for n in names])

    def unflatten(v):
        out, i = {}, 0
        for n in names:
            out[n] = v[i:i + theta[n].numel()].view_as(theta[n])
            i += theta[n].numel()
        return out

    def probs(v, x):
        return F.softmax(torch.func.functional_call(net, unflatten(v), (x[None],)), 1)[0]

    def labeled_loss(v):
        return F.cross_entropy(torch.func.functional_call(net, unflatten(v), (x_l,)), y_l)

    m = max(torch.linalg.matrix_norm(torch.func.jacrev(probs)(flat, x), ord=2).item() for x in x_u)
    return m, torch.linalg.matrix_norm(torch.func.hessian(labeled_loss)(flat), ord=2).item()


def test_theorem_1_labeled_loss_never_increases():
    """Algorithm 1 as boxed: MSE consistency, the update is the consistency gradient alone, all
    labeled data in every batch, plain SGD. With α_t² β_t < 1/(4 M² L0) every step lowers G."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 3))
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    y_l = torch.arange(3).repeat(4)
    x_l = centres[y_l] + 0.8 * torch.randn(12, 2)
    x_u = centres[torch.randint(0, 3, (256,))] + 0.8 * torch.randn(256, 2)
    alpha, beta, b_u = 0.1, 0.04, 8
    method = make(MetaPLExact, net, ["consistency=mse", "supervised_weight=0", "rampup_steps=0", "project=false",
                                     f"meta_lr={beta}"], lr=alpha)
    theta = meta.params(net)

    def condition():
        """α_t² β_t 4 M² L0 with the paper's β_t = β·B_u/α_t (see meta_pl_base); must stay below 1."""
        m, l0 = jacobian_bound_and_smoothness(net, theta, x_u, x_l, y_l)
        return alpha ** 2 * (beta * b_u / alpha) * 4 * m ** 2 * l0

    def labeled_loss():
        with torch.no_grad():
            return F.cross_entropy(net(x_l), y_l).item()

    assert condition() < 0.5  # a margin for M and L0 drifting along the way
    labeled = Batch(x=x_l, raw=None, y=y_l)
    losses = [labeled_loss()]
    for step in range(200):
        idx = torch.randint(0, len(x_u), (b_u,))
        method.train_step(labeled, Batch(x=x_u[idx], raw=None), step)
        losses.append(labeled_loss())
    assert condition() < 1
    increases = [b - a for a, b in zip(losses, losses[1:]) if b > a]
    assert not increases, f"G rose {len(increases)} times, by up to {max(increases):.3g}"
    assert losses[-1] < 0.9 * losses[0]  # and it did move: the update is not vacuous
