"""``max_pool2x2`` against ``F.max_pool2d``: values, indices, gradients, second derivatives."""
import pytest
import torch
import torch.nn.functional as F

from metassl.models.pool import MaxPool2x2, max_pool2x2

SHAPES = [(3, 4, 8, 8), (2, 3, 7, 7), (2, 2, 6, 9), (1, 2, 5, 4)]


def inputs(shape, seed):
    g = torch.Generator().manual_seed(seed)
    relu = torch.randn(shape, generator=g, dtype=torch.float64).relu()  # ties at zero
    ties = torch.randint(0, 3, shape, generator=g).double()              # ties everywhere
    # -inf (as padding is) and ties among them, in border windows too
    infs = torch.where(torch.rand(shape, generator=g) < 0.6, float("-inf"), ties)
    return [relu, ties, infs]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_values_and_indices_match_native(shape, ceil_mode):
    for x in inputs(shape, 0):
        out, idx = max_pool2x2(x, ceil_mode, return_indices=True)
        ref, ref_idx = F.max_pool2d(x, 2, ceil_mode=ceil_mode, return_indices=True)
        assert out.shape == ref.shape
        assert torch.equal(out, ref)
        assert torch.equal(idx, ref_idx)
        assert torch.equal(max_pool2x2(x, ceil_mode), ref)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_gradients_match_native_with_ties(shape, ceil_mode):
    for x in inputs(shape, 1):
        a = x.clone().requires_grad_()
        b = x.clone().requires_grad_()
        out = max_pool2x2(a, ceil_mode)
        w = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(2))
        (ga,) = torch.autograd.grad((out * w).sum(), a)
        (gb,) = torch.autograd.grad((F.max_pool2d(b, 2, ceil_mode=ceil_mode) * w).sum(), b)
        assert torch.equal(ga, gb)


def test_second_derivative_matches_native():
    # d/dv of <grad_x <pool(x), v>, u> through a parameterised input: the double backward that the
    # exact meta-gradients take through the network.
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    u = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    results = []
    for pool in (lambda t: max_pool2x2(t, True), lambda t: F.max_pool2d(t, 2, ceil_mode=True)):
        s = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
        xi = (x * s).requires_grad_()
        out = pool(xi)
        v = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        vv = (v * s)
        (g,) = torch.autograd.grad((out * vv).sum(), xi, create_graph=True)
        (h,) = torch.autograd.grad((g * u).sum(), s)
        results.append(h)
    assert torch.allclose(results[0], results[1], rtol=0, atol=1e-12)
    assert results[0].abs() > 0


def test_module_and_gradcheck():
    m = MaxPool2x2(ceil_mode=True)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))
    assert "ceil_mode=True" in repr(m)


def test_falls_back_where_native_is_used():
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    assert torch.equal(max_pool2x2(x), F.max_pool2d(x, 2))


def test_odd_maps_in_ceil_mode_take_the_corner_path(monkeypatch):
    calls = []
    native = F.max_pool2d
    monkeypatch.setattr(F, "max_pool2d", lambda *a, **k: calls.append(a[0].shape) or native(*a, **k))
    x = torch.randn(2, 3, 7, 7, requires_grad=True)
    max_pool2x2(x, True).sum().backward()
    max_pool2x2(x.detach(), True, return_indices=True)
    assert calls == []
    max_pool2x2(x.detach().contiguous(memory_format=torch.channels_last), True)  # the spy sees fallbacks
    assert len(calls) == 1


def _order(model):
    return [type(m).__name__ for m in model.modules() if isinstance(m, (MaxPool2x2, torch.nn.MaxPool2d, torch.nn.ReLU,
                                                                      torch.nn.LeakyReLU))]


@pytest.mark.parametrize("name,size", [("cnn3", 28), ("cnn3_dropout", 28), ("convlarge", 16)])
def test_cnn3_pools_before_its_relus_and_the_stock_network_has_the_same_derivatives(name, size):
    import copy

    from metassl.models import create_model
    from metassl.models.pool import use_stock_pools

    torch.manual_seed(0)
    model = create_model(name, 1, 10, size)
    order = _order(model)
    pools = [i for i, t in enumerate(order) if t == "MaxPool2x2"]
    if name.startswith("cnn3"):
        assert len(pools) == 3 and all(order[i + 1] == "ReLU" for i in pools)  # the ReLU on the pooled map
    else:  # leaky ReLU keeps the usual order
        assert len(pools) == 2 and all(order[i - 1] == "LeakyReLU" for i in pools)
    stock = use_stock_pools(copy.deepcopy(model))
    stock_order = _order(stock)
    assert "MaxPool2x2" not in stock_order and stock_order.count("MaxPool2d") == len(pools)
    assert all(stock_order[i - 1] in ("ReLU", "LeakyReLU") for i, t in enumerate(stock_order) if t == "MaxPool2d")
    assert list(model.state_dict()) == list(stock.state_dict())
    x = torch.randn(8, 1, size, size, requires_grad=True)
    results = []
    for m in (model, stock):
        torch.manual_seed(1)  # the same dropout masks
        out = m(x)
        grads = torch.autograd.grad(out.logsumexp(1).sum(), [x, *m.parameters()], create_graph=True)
        second = torch.autograd.grad(sum((g ** 2).sum() for g in grads[1:]), [x])[0]
        results.append((out, grads, second))
    (out_a, grads_a, second_a), (out_b, grads_b, second_b) = results
    assert torch.equal(out_a, out_b) and torch.equal(second_a, second_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))


@pytest.mark.parametrize("window", [[[float("nan"), 1.0], [2.0, 3.0]], [[1.0, float("nan")], [2.0, 3.0]],
                                    [[float("nan"), float("nan")], [2.0, 3.0]], [[1.0, 2.0], [float("nan"), 0.0]]])
def test_nan_windows_take_the_native_winner(window):
    x = torch.tensor(window).view(1, 1, 2, 2).repeat(1, 2, 2, 2)
    out, idx = max_pool2x2(x, return_indices=True)
    ref, ref_idx = F.max_pool2d(x, 2, return_indices=True)
    assert torch.equal(out.isnan(), ref.isnan()) and torch.equal(idx, ref_idx)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    (ga,) = torch.autograd.grad(max_pool2x2(a).nan_to_num().sum(), a)
    (gb,) = torch.autograd.grad(F.max_pool2d(b, 2).nan_to_num().sum(), b)
    assert torch.equal(ga, gb)


def test_forward_mode_ad_uses_the_native_kernel():
    import torch.autograd.forward_ad as fwad

    x, t = torch.ones(1, 1, 4, 4), torch.arange(16.0).view(1, 1, 4, 4)
    with fwad.dual_level():
        tangent = fwad.unpack_dual(max_pool2x2(fwad.make_dual(x, t))).tangent
        ref = fwad.unpack_dual(F.max_pool2d(fwad.make_dual(x, t), 2)).tangent
    assert torch.equal(tangent, ref)


def test_kinks_replay_keeps_a_nan_window_nan():
    from metassl.meta.functional import Kinks

    x = torch.randn(1, 1, 4, 4)
    x[0, 0, 0, 0] = float("nan")
    kinks = Kinks()
    with kinks.record():
        recorded = max_pool2x2(x)
    with kinks.replay():
        replayed = max_pool2x2(x + 1)
    assert recorded[0, 0, 0, 0].isnan() and replayed[0, 0, 0, 0].isnan()


def test_stock_pools_keep_named_layers_and_leave_other_activations_alone():
    from collections import OrderedDict

    from metassl.models.pool import use_stock_pools

    seq = torch.nn.Sequential(OrderedDict([("conv", torch.nn.Conv2d(1, 2, 3, padding=1)), ("pool", MaxPool2x2()),
                                           ("act", torch.nn.ReLU()), ("pool2", MaxPool2x2()),
                                           ("leaky", torch.nn.LeakyReLU(-0.5))]))
    x = torch.randn(2, 1, 8, 8)
    before = seq(x)
    use_stock_pools(seq)  # a Sequential given directly
    assert [(k, type(m).__name__) for k, m in seq.named_children()] == [
        ("conv", "Conv2d"), ("pool", "ReLU"), ("act", "MaxPool2d"), ("pool2", "MaxPool2d"), ("leaky", "LeakyReLU")]
    assert torch.equal(seq(x), before)
