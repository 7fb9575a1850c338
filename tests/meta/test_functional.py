"""The meta-gradient primitives against each other and against plain autograd, in float64."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metassl import meta


pytestmark = pytest.mark.usefixtures("float64")


def small_convnet(seed: int = 0, smooth: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    act, pool = (nn.Tanh, nn.AvgPool2d) if smooth else (nn.ReLU, nn.MaxPool2d)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), act(), pool(2),
        nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), act(), nn.Dropout(0.3),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5),
    ).double()
    # Running statistics away from their initial values, so eval and train passes differ.
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, 1, 8, 8))
    return net


def snapshot(net: nn.Module) -> dict:
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return {"state": state, "flags": [m.training for m in net.modules()]}


def assert_unchanged(net: nn.Module, before: dict) -> None:
    for k, v in net.state_dict().items():
        assert torch.equal(v, before["state"][k]), k
    assert [m.training for m in net.modules()] == before["flags"]


@pytest.fixture
def data():
    torch.manual_seed(1)
    return torch.randn(12, 1, 8, 8), torch.randint(0, 5, (12,)), torch.randn(10, 1, 8, 8)


def exact_pseudo_label_grad(net, x_l, y_l, x_u, lr, score, bn):
    """Eq. 5 by differentiating the labeled loss through the look-ahead with autograd; and the
    d of Eq. 8 computed from it, ∇ỹ·B_u/α."""
    theta = meta.params(net)
    logits_u = meta.forward(net, theta, x_u, bn=bn)
    y_tilde = F.softmax(logits_u, 1).detach().requires_grad_()
    if score == "mse":
        inner = (F.softmax(logits_u, 1) - y_tilde).pow(2).sum(1).mean()
    else:
        inner = (torch.xlogy(y_tilde, y_tilde) - y_tilde * F.log_softmax(logits_u, 1)).sum(1).mean()
    g = meta.grad(inner, theta, create_graph=True)
    outer = F.cross_entropy(meta.forward(net, meta.lookahead(theta, g, lr), x_l, bn=bn), y_l)
    (hyper,) = torch.autograd.grad(outer, y_tilde)
    return hyper * x_u.shape[0] / lr


def cosine(a, b):
    return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


@pytest.mark.parametrize("bn", ["eval", "train"])
@pytest.mark.parametrize("phi", ["mse", "kl"])
def test_finite_difference_and_jvp_equal_the_autograd_meta_gradient(data, phi, bn):
    """In train mode dropout is on: the pair must share its masks, and the autograd reference
    draws the same masks as the jvp only when it is switched off, so it is."""
    x_l, y_l, x_u = data
    net = small_convnet()
    if bn == "train":
        net.apply(lambda m: setattr(m, "p", 0.0) if isinstance(m, nn.Dropout) else None)
    exact = exact_pseudo_label_grad(net, x_l, y_l, x_u, lr=0.1, score=phi, bn=bn)
    theta = meta.params(net)
    g = meta.grad(F.cross_entropy(meta.forward(net, theta, x_l, bn=bn), y_l), theta)

    def score(p):
        logits = meta.forward(net, p, x_u, bn=bn)
        return 2 * F.softmax(logits, 1) if phi == "mse" else F.log_softmax(logits, 1)

    _, d_fd = meta.directional_fd(score, theta, g, radius=0.01)
    _, d_jvp = meta.directional_jvp(score, theta, g)
    assert exact.abs().max() > 1e-3  # not trivially zero
    assert cosine(d_fd, exact) >= 0.999 and cosine(d_jvp, exact) >= 0.999
    assert torch.allclose(d_jvp, exact, rtol=1e-8, atol=1e-10)
    assert abs(d_fd.norm() / exact.norm() - 1) < 0.02  # the same scale, not only the direction


def test_fd_error_is_second_order_and_its_centre_is_the_value(data):
    x_l, _, x_u = data
    net = small_convnet(smooth=True)  # ReLU kinks would add first-order error at some radii
    theta = meta.params(net)
    torch.manual_seed(3)
    v = {n: torch.randn_like(p) for n, p in theta.items()}

    def fn(p):
        return F.softmax(meta.forward(net, p, x_u), 1)

    value, exact = meta.directional_jvp(fn, theta, v)
    errors, centre_errors = [], []
    for radius in (1e-1, 1e-2):
        centre, d = meta.directional_fd(fn, theta, v, radius=radius)
        errors.append((d - exact).norm().item())
        centre_errors.append((centre - value).norm().item())
    # Central differences and the pair's midpoint both shrink with the square of the radius.
    assert errors[1] < errors[0] / 50 and centre_errors[1] < centre_errors[0] / 50
    assert centre_errors[1] < 1e-4


def test_fd_from_a_given_base_is_one_pass_first_order_and_returns_the_base(data):
    x_l, _, x_u = data
    net = small_convnet(smooth=True)
    theta = meta.params(net)
    torch.manual_seed(3)
    v = {n: torch.randn_like(p) for n, p in theta.items()}
    calls = []

    def fn(p):
        calls.append(1)
        return F.softmax(meta.forward(net, p, x_u), 1)

    value, exact = meta.directional_jvp(fn, theta, v)
    errors = []
    for radius in (1e-2, 1e-3):
        calls.clear()
        centre, d = meta.directional_fd(fn, theta, v, radius=radius, base=value)
        assert len(calls) == 1 and centre is value
        errors.append((d - exact).norm().item())
    # Forward differences: a tenth of the radius, a tenth of the error (central ones: a hundredth).
    assert 5 < errors[0] / errors[1] < 20
    assert errors[1] < 1e-3 * exact.norm().item()


def test_fd_along_a_zero_direction_is_zero_not_nan(data):
    net = small_convnet()
    theta = meta.params(net)
    zero = {n: torch.zeros_like(p) for n, p in theta.items()}
    _, d = meta.directional_fd(lambda p: meta.forward(net, p, data[2]), theta, zero)
    assert torch.equal(d, torch.zeros_like(d))


def test_hypergradient_equals_autograd_through_the_lookahead(data):
    """Away from the special point of Algorithm 1 (where the inner gradient vanishes): learned
    per-sample weights h of an inner loss, as MetaMixUp-style methods use them."""
    x_l, y_l, x_u = data
    net = small_convnet()
    theta = meta.params(net)
    y_u = torch.randint(0, 5, (x_u.shape[0],))
    h = torch.rand(x_u.shape[0]).requires_grad_()
    lr = 0.3

    def inner():
        torch.manual_seed(5)  # the same dropout masks in both computations
        return (h * F.cross_entropy(meta.forward(net, theta, x_u, bn="train"), y_u, reduction="none")).mean()

    def outer(params):
        return F.cross_entropy(meta.forward(net, params, x_l), y_l)

    g = meta.grad(inner(), theta, create_graph=True)
    (naive,) = torch.autograd.grad(outer(meta.lookahead(theta, g, lr)), h)
    g = meta.grad(inner(), theta, create_graph=True)
    theta2 = meta.lookahead(theta, meta.detached_mean(g), lr)
    vjp = meta.hypergradient(g, h, meta.grad(outer(theta2), theta2), lr)
    assert naive.abs().max() > 1e-4
    assert torch.allclose(vjp, naive, rtol=1e-10, atol=1e-13)
    # The look-ahead moved: the derivative is not the first-order one at theta.
    assert any(not torch.equal(theta2[n], theta[n]) for n in theta)


def test_every_pass_leaves_parameters_statistics_and_flags_bit_identical(data):
    x_l, y_l, x_u = data
    net = small_convnet()
    net.train()
    net[3].eval()  # a deliberately mixed set of flags must come back as it was
    before = snapshot(net)
    theta = meta.params(net)
    for bn in ("eval", "train"):
        loss = F.cross_entropy(meta.forward(net, theta, x_l, bn=bn), y_l)
        g = meta.grad(loss, theta, create_graph=True)
        theta2 = meta.lookahead(theta, g, 0.5)
        torch.autograd.grad(meta.forward(net, theta2, x_u, bn=bn).sum(), list(theta.values()))
        fn = lambda p: meta.forward(net, p, x_u, bn=bn)  # noqa: E731
        meta.directional_fd(fn, theta, meta.detached_mean(g))
        meta.directional_jvp(fn, theta, meta.detached_mean(g))
    assert_unchanged(net, before)
    # ...while a plain train-mode call does move the running statistics (the check can fail).
    net(x_u)
    assert not all(torch.equal(v, before["state"][k]) for k, v in net.state_dict().items())


def test_train_policy_uses_batch_statistics_and_eval_policy_running_ones(data):
    net = small_convnet()
    net.apply(lambda m: setattr(m, "p", 0.0) if isinstance(m, nn.Dropout) else None)
    theta = meta.params(net)
    x = data[2]
    net.eval()
    assert torch.equal(meta.forward(net, theta, x, bn="eval"), net(x))
    net.train()
    reference = net(x)
    assert torch.allclose(meta.forward(net, theta, x, bn="train"), reference)
    assert not torch.allclose(meta.forward(net, theta, x, bn="eval"), reference)


def test_grad_returns_zeros_for_parameters_the_loss_does_not_use(data):
    net = small_convnet()
    theta = meta.params(net)
    g = meta.grad(theta["10.bias"].sum(), theta)
    assert set(g) == set(theta) and g["0.weight"].abs().sum() == 0 and torch.equal(g["10.bias"], torch.ones(5))


def test_fd_pair_in_train_mode_shares_its_dropout_masks(data):
    net = small_convnet(smooth=True)
    theta = meta.params(net)
    g = meta.grad(F.cross_entropy(meta.forward(net, theta, data[0], bn="train"), data[1]), theta)

    def fn(p):
        return F.softmax(meta.forward(net, p, data[2], bn="train"), 1)

    torch.manual_seed(11)
    _, exact = meta.directional_jvp(fn, theta, g)
    torch.manual_seed(11)  # the plus pass draws the jvp's masks; the minus pass must draw them again
    _, d = meta.directional_fd(fn, theta, g)
    assert cosine(d, exact) >= 0.999


def test_second_order_pass_is_the_same_function_with_the_same_two_derivatives(data):
    """``second_order=True`` swaps batch-statistics BatchNorm for elementwise ops: value, gradient
    and the hypergradient through a look-ahead must equal the native pass's."""
    x_l, y_l, x_u = data
    net = small_convnet()
    before = snapshot(net)
    theta = meta.params(net)
    y_u = torch.randint(0, 5, (x_u.shape[0],))
    h = torch.rand(x_u.shape[0]).requires_grad_()
    results = []
    for second_order in (False, True):
        torch.manual_seed(5)  # the same dropout masks
        logits = meta.forward(net, theta, x_u, bn="train", second_order=second_order)
        g = meta.grad((h * F.cross_entropy(logits, y_u, reduction="none")).mean(), theta, create_graph=True)
        theta2 = meta.lookahead(theta, meta.detached_mean(g), 0.3)
        v = meta.grad(F.cross_entropy(meta.forward(net, theta2, x_l, bn="train"), y_l), theta2)
        results.append((logits.detach(), meta.detached_mean(g), meta.hypergradient(g, h, v, 0.3)))
    (native_out, native_g, native_h), (out, g, hyper) = results
    assert torch.allclose(out, native_out, rtol=1e-10, atol=1e-12)
    for n in native_g:
        assert torch.allclose(g[n], native_g[n], rtol=1e-9, atol=1e-12), n
    assert native_h.abs().max() > 1e-4
    assert torch.allclose(hyper, native_h, rtol=1e-8, atol=1e-12)
    assert_unchanged(net, before)


def test_second_order_batch_norm_keeps_a_half_precision_dtype():
    bn = nn.BatchNorm2d(3).float().train()
    x = torch.randn(8, 3, 4, 4, dtype=torch.float32)
    ref = bn(x)
    out = meta.forward(bn, meta.params(bn), x.to(torch.bfloat16), bn="train", second_order=True)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), ref, atol=0.05)


def leaky_convnet() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 16, 5),
    ).double()


@pytest.mark.parametrize("make_net", [small_convnet, leaky_convnet])
def test_replayed_kinks_make_differences_of_a_relu_net_exact(data, make_net):
    """A radius that crosses unit switches: plain differences pick up the jumps, differences of
    passes replaying the centre's kinks converge to the forward-mode derivative."""
    net = make_net()
    net.apply(lambda m: setattr(m, "p", 0.0) if isinstance(m, nn.Dropout) else None)
    theta, x = meta.params(net), data[2]
    kinks = meta.Kinks()
    with kinks.record():
        centre = meta.forward(net, theta, x, bn="train")
    with kinks.replay():
        assert torch.allclose(meta.forward(net, theta, x, bn="train"), centre, rtol=1e-12, atol=1e-12)
    torch.manual_seed(3)
    v = {n: torch.randn_like(p) for n, p in theta.items()}

    def fn(p):
        return meta.forward(net, p, x, bn="train")

    def replayed(p):
        with kinks.replay():
            return fn(p)

    _, exact = meta.directional_jvp(fn, theta, v)
    _, plain = meta.directional_fd(fn, theta, v, radius=0.1)
    _, frozen = meta.directional_fd(replayed, theta, v, radius=0.1)
    err_plain, err_frozen = (plain - exact).abs().max(), (frozen - exact).abs().max()
    assert err_plain > 1e-3 * exact.abs().max()  # the radius does cross kinks
    assert err_frozen < err_plain / 10
    # ...and at second order: a tenth of the radius, a hundredth of the error.
    errors = [(meta.directional_fd(replayed, theta, v, radius=r)[1] - exact).abs().max() for r in (1e-2, 1e-3)]
    assert errors[1] < 1e-5 * exact.abs().max() and errors[0] / errors[1] > 50


def test_replay_of_a_longer_pass_is_an_error(data):
    net = small_convnet()
    theta, x = meta.params(net), data[2]
    kinks = meta.Kinks()
    with kinks.record():
        net[0:3](x)  # one ReLU
    with pytest.raises(RuntimeError, match="more activations"), kinks.replay():
        meta.forward(net, theta, x)


def test_fd_from_a_given_start_shares_that_pass_masks_and_puts_the_generator_back(data):
    net = small_convnet()  # dropout 0.3 in train mode
    theta, x = meta.params(net), data[2]
    start = meta.rng_state(x.device)
    earlier = meta.forward(net, theta, x, bn="train")
    later_state = meta.rng_state(x.device)
    zero = {n: torch.zeros_like(p) for n, p in theta.items()}
    centre, _ = meta.directional_fd(lambda p: meta.forward(net, p, x, bn="train"), theta, zero, start=start)
    assert torch.allclose(centre, earlier)  # the same dropout masks as the earlier pass
    assert torch.equal(meta.rng_state(x.device), later_state)  # and the stream goes on as it was
    centre, _ = meta.directional_fd(lambda p: meta.forward(net, p, x, bn="train"), theta, zero)
    assert not torch.allclose(centre, earlier)  # without it, fresh masks (the check can fail)
