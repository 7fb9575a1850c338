"""Tests for the model registry and the backbones."""
from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn

from metassl.errors import ConfigError
from metassl.models import MODELS, create_model
from metassl.models.shakeshake import shake

HEAVY = {"wrn28_10", "shakeshake26"}
ALL = MODELS.names()
# (input shape, classes); heavy models only run the first, tiny one.
CASES = [((2, 1, 8, 8), 10), ((2, 1, 28, 28), 10), ((2, 3, 32, 32), 100)]


@pytest.fixture(autouse=True, scope="module")
def _module_resources():
    # These batches are tiny: intra-op threads add only synchronisation, and their spin-waits make
    # the file several times slower when other processes share the 2 cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    _built.cache_clear()  # the cached models hold ~0.4 GB; free them for the rest of the session


@functools.lru_cache(maxsize=None)
def _built(name: str, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, in_channels, num_classes, image_size)


def _model(name: str, shape: tuple[int, ...], num_classes: int) -> nn.Module:
    # Shared between tests to avoid rebuilding 36M-parameter models; every test sets the mode it needs.
    return _built(name, shape[1], num_classes, shape[-1])


def _cases():
    for name in ALL:
        for shape, classes in CASES[:1] if name in HEAVY else CASES:
            yield pytest.param(name, shape, classes, id=f"{name}-{'x'.join(map(str, shape))}")


# ---------------------------------------------------------------------------------------------
# Parameter counts, derived by hand from each architecture's layer list.

def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k


def bn(c: int) -> int:
    return 2 * c


def linear(i: int, o: int) -> int:
    return i * o + o


def _wrn28(k: int, cin: int = 3, classes: int = 10) -> int:
    total, c = conv(cin, 16, 3), 16
    for width in (16 * k, 32 * k, 64 * k):
        for _ in range(4):
            total += bn(c) + conv(c, width, 3) + bn(width) + conv(width, width, 3)
            total += conv(c, width, 1) if c != width else 0
            c = width
    return total + bn(c) + linear(c, classes)


def _resnet18(cin: int = 3, classes: int = 1000) -> int:
    total, c = conv(cin, 64, 7) + bn(64), 64
    for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for i in range(2):
            total += conv(c, width, 3) + bn(width) + conv(width, width, 3) + bn(width)
            total += conv(c, width, 1) + bn(width) if (c != width or (stride > 1 and i == 0)) else 0
            c = width
    return total + linear(c, classes)


def _preact_resnet18(cin: int = 3, classes: int = 10) -> int:
    total, c = conv(cin, 64, 3), 64
    for width in (64, 128, 256, 512):
        for _ in range(2):
            total += bn(c) + conv(c, width, 3) + bn(width) + conv(width, width, 3)
            total += conv(c, width, 1) if c != width else 0
            c = width
    return total + bn(c) + linear(c, classes)


def _shakeshake26(cin: int = 3, classes: int = 10) -> int:
    total, c = conv(cin, 16, 3) + bn(16), 16
    for width in (96, 192, 384):
        for _ in range(4):
            total += 2 * (conv(c, width, 3) + bn(width) + conv(width, width, 3) + bn(width))
            total += 2 * conv(c, width // 2, 1) + bn(width) if c != width else 0
            c = width
    return total + linear(c, classes)


def _convlarge(cin: int = 3, classes: int = 10) -> int:
    layers = [(cin, 128, 3), (128, 128, 3), (128, 128, 3), (128, 256, 3), (256, 256, 3), (256, 256, 3),
              (256, 512, 3), (512, 256, 1), (256, 128, 1)]
    return sum(conv(i, o, k) + bn(o) for i, o, k in layers) + linear(128, classes)


# name: (classes, exact count derived above, published figure)
PARAM_COUNTS = {
    "convlarge": (10, _convlarge(), 3.1e6),
    "wrn28_2": (10, _wrn28(2), 1.47e6),
    "wrn28_10": (10, _wrn28(10), 36.5e6),
    "preact_resnet18": (10, _preact_resnet18(), 11.17e6),
    "shakeshake26": (10, _shakeshake26(), 26.2e6),
    "resnet18": (1000, _resnet18(), 11.69e6),
}


def test_derived_counts_are_the_known_values():
    # Pins the derivations themselves, so a wrong formula cannot silently agree with a wrong model.
    assert {k: v[1] for k, v in PARAM_COUNTS.items()} == {
        "convlarge": 3_121_802,
        "wrn28_2": 1_467_610,
        "wrn28_10": 36_479_194,
        "preact_resnet18": 11_172_170,
        "shakeshake26": 26_192_922,
        "resnet18": 11_689_512,
    }


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_count(name):
    classes, exact, published = PARAM_COUNTS[name]
    # Built on the meta device: counting needs shapes only, not 36M initialised weights.
    with torch.device("meta"):
        model = create_model(name, 3, classes, 32)
    count = sum(p.numel() for p in model.parameters())
    assert count == exact
    assert abs(count - published) / published < 0.03


# ---------------------------------------------------------------------------------------------
# Interface and shapes.

@pytest.mark.parametrize("name, shape, classes", list(_cases()))
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_forward_shapes(name, shape, classes, train):
    model = _model(name, shape, classes).train(train)
    assert isinstance(model.feature_dim, int) and not isinstance(model.feature_dim, bool)
    assert isinstance(model.head, nn.Linear)
    assert model.head.in_features == model.feature_dim and model.head.out_features == classes
    x = torch.randn(shape)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert feats.shape == (shape[0], model.feature_dim)
    assert logits.shape == (shape[0], classes)
    assert torch.isfinite(logits).all() and torch.isfinite(feats).all()


@pytest.mark.parametrize("name", ALL)
def test_forward_is_head_of_features(name):
    model = _model(name, *CASES[0]).eval()
    x = torch.randn(CASES[0][0])
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.head(model.forward_features(x)))


def test_unknown_model_lists_choices():
    with pytest.raises(ConfigError) as info:
        create_model("nope", 3, 10, 32)
    message = str(info.value)
    assert "'nope'" in message
    for name in ALL:
        assert name in message


def test_registry_has_every_family():
    assert set(ALL) == {"mlp", "mlp_dropout", "cnn3", "cnn3_dropout", "convlarge", "wrn28_2", "wrn28_10", "preact_resnet18",
                        "preact_resnet34", "shakeshake26", "resnet18"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "cnn3", "depth": 3}, "unknown option"),
        ({"name": "wrn28_2", "dropout": 1.5}, "dropout"),
        ({"name": "convlarge", "dropout": "high"}, "dropout"),
        ({"name": "mlp", "hidden": (256, 0)}, "hidden"),
        ({"name": "cnn3", "image_size": 4}, "image_size"),
        ({"name": "cnn3", "num_classes": 0}, "num_classes"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, match):
    args = {"in_channels": 1, "num_classes": 10, "image_size": 8} | kwargs
    with pytest.raises(ConfigError, match=match):
        create_model(**args)


def test_model_options_are_applied():
    assert create_model("mlp", 1, 10, 8, hidden=[32, 16, 8]).feature_dim == 8
    wrn = create_model("wrn28_2", 3, 10, 32, dropout=0.3)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in wrn.modules())


# ---------------------------------------------------------------------------------------------
# Shake-Shake.

def test_shakeshake_eval_is_deterministic():
    model = _model("shakeshake26", *CASES[0]).eval()
    x = torch.randn(CASES[0][0])
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(2)
        b = model(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_shakeshake_train_depends_on_seed():
    model = _model("shakeshake26", *CASES[0]).train()
    x = torch.randn(CASES[0][0])
    state = copy.deepcopy(model.state_dict())
    outputs = []
    with torch.no_grad():
        for seed in (1, 2, 1):
            model.load_state_dict(state)  # equal BN statistics for every call
            torch.manual_seed(seed)
            outputs.append(model(x))
    assert not torch.allclose(outputs[0], outputs[1])
    torch.testing.assert_close(outputs[0], outputs[2], rtol=0, atol=0)


def test_shake_forward_alpha_backward_beta():
    torch.manual_seed(0)
    b1 = torch.ones(64, 3, 2, 2, requires_grad=True)
    b2 = torch.zeros(64, 3, 2, 2, requires_grad=True)
    out = shake(b1, b2, training=True)
    out.sum().backward()
    # With b1=1 and b2=0 the output is alpha and d out / d b1 is beta, both per sample.
    alpha, beta = out.detach(), b1.grad
    for coef in (alpha, beta):
        assert ((coef >= 0) & (coef <= 1)).all()
        assert (coef == coef[:, :1, :1, :1]).all()
        assert coef[:, 0, 0, 0].unique().numel() > 1
    torch.testing.assert_close(b1.grad + b2.grad, torch.ones_like(b1))
    assert not torch.allclose(alpha, beta)

    torch.testing.assert_close(shake(b1, b2, training=False), torch.full_like(b1, 0.5))


# ---------------------------------------------------------------------------------------------
# torch.func and memory-format compatibility.

@pytest.mark.parametrize("name", ALL)
def test_functional_call_matches_module(name):
    model = _model(name, *CASES[0]).eval()
    x = torch.randn(CASES[0][0])
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    with torch.no_grad():
        expected = model(x)
        got = torch.func.functional_call(model, (params, buffers), (x,))
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", ["cnn3", "wrn28_2", "shakeshake26"])
def test_func_grad_in_train_mode(name):
    model = copy.deepcopy(_model(name, *CASES[0])).train()
    x, y = torch.randn(CASES[0][0]), torch.tensor([1, 2])
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())

    # BN updates its running statistics in place, so the buffers must be inputs of the transformed
    # function rather than captured tensors.
    def loss(p, b):
        logits = torch.func.functional_call(model, (p, b), (x,))
        return nn.functional.cross_entropy(logits, y)

    grads = torch.func.grad(loss)({k: v.detach() for k, v in params.items()}, buffers)
    assert grads.keys() == params.keys()
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert grads["head.weight"].abs().sum() > 0


@pytest.mark.parametrize("name", ALL)
def test_channels_last(name):
    shape, classes = ((2, 3, 32, 32), 10) if name not in HEAVY else CASES[0]
    model = _model(name, shape, classes).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
        cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        got = cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_func_jvp_in_train_mode():
    model = copy.deepcopy(_model("cnn3", *CASES[0])).train()
    # Forward-mode AD cannot mutate captured BN buffers; batch statistics alone are what jvp users need.
    torch.func.replace_all_batch_norm_modules_(model)
    x = torch.randn(CASES[0][0])
    params = {k: v.detach() for k, v in model.named_parameters()}
    tangents = {k: torch.randn_like(v) for k, v in params.items()}
    out, tangent = torch.func.jvp(lambda p: torch.func.functional_call(model, p, (x,)), (params,), (tangents,))
    assert out.shape == tangent.shape == (2, 10)
    assert torch.isfinite(tangent).all() and tangent.abs().sum() > 0


def test_shake_jvp_uses_backward_coefficient():
    # shake is the only non-standard op in shakeshake26; forward-mode AD must see beta, like backward.
    torch.manual_seed(0)
    ones, zeros = torch.ones(64, 3, 2, 2), torch.zeros(64, 3, 2, 2)
    alpha, tangent = torch.func.jvp(lambda a, b: shake(a, b, training=True), (ones, zeros), (ones, zeros))
    torch.manual_seed(0)
    b1 = ones.clone().requires_grad_()
    shake(b1, zeros, training=True).sum().backward()
    torch.testing.assert_close(tangent, b1.grad)
    assert not torch.allclose(alpha, tangent)


def test_cnn3_dropout_is_stochastic_in_training_and_deterministic_in_eval():
    torch.manual_seed(0)
    net = create_model("cnn3_dropout", 1, 10, 28)
    plain = create_model("cnn3", 1, 10, 28)
    assert sum(isinstance(m, torch.nn.Dropout2d) for m in net.modules()) == 2
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in plain.parameters())
    x = torch.randn(4, 1, 28, 28)
    net.train()
    assert not torch.allclose(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))
