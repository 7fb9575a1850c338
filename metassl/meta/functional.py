"""Meta-gradient primitives: functional passes, one-step look-ahead, hypergradients and
directional derivatives of a network's output along a parameter direction.

See the package docstring (``metassl.meta``) for the API and its guarantees.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Literal, Optional, Union

import torch
import torch.distributed as td
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp
from torch.overrides import TorchFunctionMode

from metassl.engine.dist import all_reduce_mean, unwrap
from metassl.models.pool import max_pool2x2

Params = dict[str, torch.Tensor]
Output = Union[torch.Tensor, tuple[torch.Tensor, ...]]
BNPolicy = Literal["eval", "train"]


def world_size() -> int:
    return td.get_world_size() if td.is_available() and td.is_initialized() else 1


def params(model: nn.Module) -> Params:
    """The trainable parameters by name (a DDP wrapper is looked through): the module's own
    tensors, so that passes run with them are differentiable in the parameters the optimizer steps."""
    return {name: p for name, p in unwrap(model).named_parameters() if p.requires_grad}


@contextmanager
def _mode(module: nn.Module, training: bool) -> Iterator[None]:
    flags = [(m, m.training) for m in module.modules()]
    module.train(training)
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _batch_norm_elementwise(input, running_mean, running_var, weight=None, bias=None, training=False,
                            momentum=0.1, eps=1e-5):
    """``F.batch_norm`` with batch statistics, as plain reductions and elementwise ops (in at least
    float32), the running statistics left alone. The same numbers to rounding; what differs is
    autograd's second derivative: through these ops it costs a fraction of the native kernel's
    double backward, which on a CPU took half of an exact hypergradient's time on cnn3."""
    dims = [0, *range(2, input.dim())]
    shape = [1, -1] + [1] * (input.dim() - 2)
    x = input.to(torch.promote_types(input.dtype, torch.float32))
    centred = x - x.mean(dims, keepdim=True)
    scale = torch.rsqrt((centred * centred).mean(dims, keepdim=True) + eps)
    if weight is not None:
        scale = scale * weight.view(shape)
    out = centred * scale
    if bias is not None:
        out = out + bias.view(shape)
    return out.to(input.dtype)


class _ElementwiseBatchNorm(TorchFunctionMode):
    """Routes every batch-statistics ``F.batch_norm`` inside the block to ``_batch_norm_elementwise``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm and _bn_training(*args, **kwargs):
            return _batch_norm_elementwise(*args, **kwargs)
        return func(*args, **kwargs)


def _bn_training(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                 eps=1e-5) -> bool:
    return training


def forward(model: nn.Module, theta: Params, x: torch.Tensor, *, bn: BNPolicy = "eval",
            second_order: bool = False) -> torch.Tensor:
    """f(x; theta) by ``functional_call``, leaving the module's parameters, buffers and train/eval
    flags as they were.

    ``bn="eval"``: running statistics, dropout off. ``bn="train"``: batch statistics and dropout;
    the running-statistic updates land in copies made inside the call, which also keeps the pass
    legal under ``torch.func`` transforms (they refuse in-place writes to captured tensors).

    ``second_order=True`` says the pass will be differentiated twice (a ``create_graph`` gradient,
    then a ``hypergradient`` through it): batch-statistics BatchNorm then runs as elementwise ops
    (``_batch_norm_elementwise``), the same function with a far cheaper second derivative. Passes
    differentiated once are faster with the native kernel, the default."""
    module = unwrap(model)
    with _mode(module, bn == "train"):
        if bn == "eval":
            return functional_call(module, theta, (x,))
        buffers = {name: b.clone() for name, b in module.named_buffers()}
        if second_order:
            with _ElementwiseBatchNorm():
                return functional_call(module, (theta, buffers), (x,))
        return functional_call(module, (theta, buffers), (x,))


def grad(loss: torch.Tensor, theta: Params, *, create_graph: bool = False) -> Params:
    """d loss / d theta by name.

    Without ``create_graph`` the gradients are averaged across data-parallel ranks (DDP does not
    reduce gradients taken this way). With it they stay local and differentiable: reducing them
    in place would cut the graph, so ``hypergradient`` reduces the outer gradient instead."""
    return _grads(loss, theta, (), create_graph)


def grad_and(loss: torch.Tensor, theta: Params, also: torch.Tensor) -> tuple[Params, torch.Tensor]:
    """(d loss / d theta, d loss / d also) from one backward pass: the first as ``grad`` gives it
    (rank-averaged), the second local to this rank, like the tensor ``also`` itself."""
    return _grads(loss, theta, (also,), False)


def _grads(loss, theta, also, create_graph):
    names = list(theta)
    inputs = [theta[n] for n in names] + list(also)
    grads = torch.autograd.grad(loss, inputs, create_graph=create_graph, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads)]
    out = dict(zip(names, grads))
    if not create_graph:
        all_reduce_mean(list(out.values()))
    return (out, grads[-1]) if also else out


def detached_mean(grads: Params) -> Params:
    """Detached copies of (local) gradients, averaged across ranks: the step a look-ahead takes
    when the gradients themselves must keep their graph."""
    out = {n: g.detach().clone() for n, g in grads.items()}
    all_reduce_mean(list(out.values()))
    return out


def lookahead(theta: Params, grads: Params, lr: float) -> Params:
    """theta' = theta - lr * grads: one plain SGD step (no momentum, no weight decay), as in the
    inner problem of both papers. Differentiable in ``grads`` when they carry a graph."""
    return {n: p - lr * grads[n] for n, p in theta.items()}


def global_norm(tensors: Params) -> torch.Tensor:
    """The L2 norm over all tensors together, as a tensor (no host synchronisation), in at least
    float32."""
    norms = [torch.linalg.vector_norm(t, dtype=torch.promote_types(t.dtype, torch.float32)) for t in tensors.values()]
    return torch.linalg.vector_norm(torch.stack(norms))


def hypergradient(inner_grads: Params, wrt: torch.Tensor, outer_grads: Params, lr: float) -> torch.Tensor:
    """The exact derivative of an outer loss through one SGD step of an inner loss,

        d/dh  L_out(theta - lr * g(h))  =  -lr * (dg/dh)^T  grad L_out(theta'),

    where ``inner_grads`` = g(h) was taken with ``create_graph=True`` and ``outer_grads`` is the
    (rank-averaged) gradient of the outer loss at theta' = ``lookahead(theta, detached_mean(g), lr)``.
    This vector-Jacobian form equals differentiating L_out through the look-ahead parameters with
    autograd, but needs no graph through the outer pass and stays correct under data parallelism:
    the global inner gradient is the mean over ranks, hence the 1/world_size."""
    names = list(inner_grads)
    (out,) = torch.autograd.grad([inner_grads[n] for n in names], [wrt],
                                 grad_outputs=[outer_grads[n] for n in names], allow_unused=True)
    if out is None:
        return torch.zeros_like(wrt)
    return out * (-lr / world_size())


class Kinks(TorchFunctionMode):
    """The kinks of a piecewise-linear network, frozen: ``record()`` notes, in call order, which
    ReLU / LeakyReLU units are on and which element wins each max-pool window in one pass;
    ``replay()`` makes later passes of the same shapes use that pattern instead of recomputing it,
    so they run the network linearised around the recorded pass (the function whose derivative
    autograd takes there). A finite difference of replayed passes then converges to the exact
    derivative at O(eps^2) even where eps crosses unit switches, which on a ReLU net it always does
    (see ``methods.lam_meta``). Activations and pools other than these pass through unchanged."""

    _TRACKED = (F.relu, torch.relu, F.leaky_relu, F.max_pool2d, max_pool2x2)

    def __init__(self):
        super().__init__()
        self._saved: list[torch.Tensor] = []
        self._replaying = False
        self._next = 0

    @contextmanager
    def record(self) -> Iterator[None]:
        self._saved, self._replaying = [], False
        with self:
            yield

    @contextmanager
    def replay(self) -> Iterator[None]:
        self._replaying, self._next = True, 0
        try:
            with self:
                yield
        finally:
            self._replaying = False

    def _pattern(self) -> torch.Tensor:
        if self._next >= len(self._saved):
            raise RuntimeError("Kinks.replay: the pass has more activations than the recorded one")
        self._next += 1
        return self._saved[self._next - 1]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in self._TRACKED:
            return func(*args, **kwargs)
        if func is F.max_pool2d:
            return self._max_pool2d(*args, **kwargs)
        if func is max_pool2x2:
            return self._max_pool2d(args[0], 2, ceil_mode=kwargs.get("ceil_mode", False),
                                    return_indices=kwargs.get("return_indices", False), pool=max_pool2x2)
        x = args[0] if args else kwargs["input"]
        if func is F.leaky_relu:
            slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
        else:
            slope = 0.0
        if not self._replaying:
            # The slope of each unit, 1 or the negative slope, in at least float32: a replayed unit
            # is one multiplication (a select is several times slower on the CPU), so non-finite
            # inputs give NaN there as they would further on in the network.
            dtype = torch.promote_types(x.dtype, torch.float32)
            on = (x > 0).detach().to(dtype)
            self._saved.append(on if not slope else on * (1 - slope) + slope)
            return func(*args, **kwargs)
        return x * self._pattern()

    def _max_pool2d(self, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                    return_indices=False, pool=None):
        if self._replaying:
            idx = self._pattern()
            out = input.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
        else:
            if pool is not None:  # max_pool2x2
                out, idx = pool(input, ceil_mode=ceil_mode, return_indices=True)
            else:
                out, idx = F.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode,
                                        return_indices=True)
            self._saved.append(idx)
        return (out, idx) if return_indices else out


def _combine(fn, a: Output, b: Output):
    return tuple(fn(x, y) for x, y in zip(a, b)) if isinstance(a, tuple) else fn(a, b)


def rng_state(device: torch.device) -> torch.Tensor:
    """The state of the generator that dropout on ``device`` draws from."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng_state(state: torch.Tensor, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def directional_fd(fn: Callable[[Params], Output], theta: Params, v: Params,
                   radius: float = 0.01, start: Optional[torch.Tensor] = None,
                   base: Optional[Output] = None) -> tuple[Output, Output]:
    """Central finite difference of ``fn`` along ``v``: returns (centre, derivative) with

        eps = radius / ||v||,   derivative = (fn(theta + eps v) - fn(theta - eps v)) / (2 eps),
        centre = (fn(theta + eps v) + fn(theta - eps v)) / 2 = fn(theta) + O(radius^2),

    so two passes give both the value and J v (Eq. 10, with eps = 0.01/||v|| as in the paper).
    ``fn`` maps a parameter dict to a tensor or a tuple of tensors. No graph is kept. Both passes
    draw the same random numbers (dropout masks), or their difference would be noise. They run
    in float32 even under autocast: a relative change of 1e-2/||theta|| vanishes in bfloat16.
    ``start``: a generator state (``rng_state``) both passes start from, e.g. that of an earlier
    pass whose dropout masks they must share; the generator is put back afterwards.
    ``base``: fn(theta) when the caller already has it (computed in float32, from ``start``, with
    no autocast): then one pass, the forward difference (fn(theta + eps v) - base) / eps, exact to
    O(radius) instead of O(radius^2), and the centre is ``base``."""
    eps = radius / global_norm(v).clamp_min(1e-12)
    device = next(iter(theta.values())).device
    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        resume = rng_state(device) if start is not None else None
        state = start if start is not None else rng_state(device)
        _set_rng_state(state, device)
        plus = fn({n: p.detach() + eps * v[n] for n, p in theta.items()})
        if base is None:
            _set_rng_state(state, device)
            minus = fn({n: p.detach() - eps * v[n] for n, p in theta.items()})
        if resume is not None:
            _set_rng_state(resume, device)
    if base is not None:
        return base, _combine(lambda a, b: (a - b) / eps, plus, base)
    centre = _combine(lambda a, b: (a + b) / 2, plus, minus)
    derivative = _combine(lambda a, b: (a - b) / (2 * eps), plus, minus)
    return centre, derivative


def directional_jvp(fn: Callable[[Params], Output], theta: Params, v: Params) -> tuple[Output, Output]:
    """(fn(theta), J v) exactly, in one forward-mode pass (``torch.func.jvp``); no graph is kept.
    About three forward passes' worth of work on a convnet, against two for ``directional_fd``."""
    with torch.no_grad():
        value, derivative = jvp(fn, ({n: p.detach() for n, p in theta.items()},),
                                ({n: t.detach() for n, t in v.items()},))
    return value, derivative
