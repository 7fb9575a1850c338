"""2x2 max pooling with stride 2, the pool of ``cnn3`` and ``convlarge``, made cheap on a CPU.

PyTorch's CPU kernel for ``max_pool2d`` on NCHW tensors computes an index per window even where
no gradient is wanted; three elementwise ``maximum`` of the window's strided corners give the same
maxima for less. ``max_pool2x2`` is that: the four corners a, b, c, d of each window
(row-major), their maximum, and, when a gradient is wanted, which corner won, the first in
row-major order on ties as the native kernel picks it. Values, gradients, second derivatives
and returned indices equal ``F.max_pool2d(x, 2, ceil_mode=...)``'s (``tests/models/test_pool.py``).

Elsewhere (CUDA, channels_last or other non-contiguous inputs, inputs that are not N x C x H x W
or smaller than 2x2, not floating point, under ``torch.compile`` or a ``torch.func`` transform,
forward-mode AD) it is ``F.max_pool2d``. In ceil mode an odd map is padded with -inf to even. It
takes part in ``__torch_function__`` overrides, so ``meta.Kinks`` can record and replay its
windows as it does ``F.max_pool2d``'s.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import handle_torch_function, has_torch_function_unary


def _native(x: torch.Tensor) -> bool:
    return (x.device.type != "cpu" or x.dim() != 4 or not x.is_contiguous() or not x.is_floating_point()
            or torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active()
            or torch.autograd.forward_ad._current_level >= 0
            or min(x.shape[-2:]) < 2)


def _even(x: torch.Tensor, ceil_mode: bool) -> torch.Tensor:
    """``x`` with even height and width: floor mode drops an odd last row or column; ceil mode
    pads it with -inf, which never wins a window (its first corner, the top left, is always in
    the map and wins ties)."""
    h, w = x.shape[-2:]
    if not (h % 2 or w % 2):
        return x
    if ceil_mode:
        return F.pad(x, (0, w % 2, 0, h % 2), value=float("-inf"))
    return x[..., : h - h % 2, : w - w % 2]


def _corners(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    n, c, h, w = x.shape
    v = x.view(n, c, h // 2, 2, w // 2, 2)
    return v[:, :, :, 0, :, 0], v[:, :, :, 0, :, 1], v[:, :, :, 1, :, 0], v[:, :, :, 1, :, 1]


def _maxima(x: torch.Tensor, ceil_mode: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    corners = _corners(_even(x, ceil_mode))
    a, b, c, d = corners
    return torch.maximum(torch.maximum(a, b), torch.maximum(c, d)), corners


def _winner(corners: tuple[torch.Tensor, ...], out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which corner of each window holds its maximum, the first in row-major order on ties, as
    two masks: the bottom row won, the right column won."""
    a, b, c, _ = corners
    not_a = a != out
    bottom = not_a & (b != out)
    right = not_a & (~bottom | (c != out))  # b on the top row, d on the bottom one
    return bottom, right


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, ceil_mode):
        out, corners = _maxima(x, ceil_mode)
        idx = _indices(x, ceil_mode, corners, out)
        ctx.save_for_backward(x, idx)
        ctx.ceil_mode = ceil_mode
        ctx.mark_non_differentiable(idx)
        return out, idx

    @staticmethod
    def backward(ctx, grad, _):
        # The native kernel's backward (cheap, unlike its NCHW forward), which autograd
        # differentiates again for the exact meta-gradients as it does after ``F.max_pool2d``.
        x, idx = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [2, 2], [2, 2], [0, 0], [1, 1],
                                                               ctx.ceil_mode, idx), None


def _indices(x: torch.Tensor, ceil_mode: bool, corners: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d``'s ``return_indices``: each winner's flat position in the input's map. A
    window holding NaN is won by its last NaN in the native kernel; such maps take its indices."""
    if torch.isnan(out).any():
        return F.max_pool2d(x.detach(), 2, ceil_mode=ceil_mode, return_indices=True)[1]
    h, w = out.shape[-2:]
    width = x.shape[-1]
    window = torch.arange(h, device=x.device).view(h, 1) * (2 * width) + torch.arange(w, device=x.device) * 2
    bottom, right = _winner(corners, out)
    # In place on one int64 tensor: window + width * bottom + right.
    return bottom.to(torch.int64).mul_(width).add_(right).add_(window)


def max_pool2x2(x: torch.Tensor, ceil_mode: bool = False, return_indices: bool = False):
    """``F.max_pool2d(x, 2, ceil_mode=ceil_mode, return_indices=return_indices)``."""
    if has_torch_function_unary(x):
        return handle_torch_function(max_pool2x2, (x,), x, ceil_mode=ceil_mode, return_indices=return_indices)
    if _native(x):
        return F.max_pool2d(x, 2, ceil_mode=ceil_mode, return_indices=return_indices)
    if torch.is_grad_enabled() and x.requires_grad:
        out, idx = _MaxPool2x2.apply(x, ceil_mode)
        return (out, idx) if return_indices else out
    out, corners = _maxima(x, ceil_mode)
    if not return_indices:
        return out
    return out, _indices(x, ceil_mode, corners, out)


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2, ceil_mode=ceil_mode)`` through ``max_pool2x2``."""

    def __init__(self, ceil_mode: bool = False):
        super().__init__()
        self.ceil_mode = ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool2x2(x, self.ceil_mode)

    def extra_repr(self) -> str:
        return f"kernel_size=2, stride=2, ceil_mode={self.ceil_mode}"


def use_stock_pools(model: nn.Module) -> nn.Module:
    """Swap every ``MaxPool2x2`` of ``model`` for the ``nn.MaxPool2d`` it equals, in place (no
    parameters change), after the ReLU that follows it (cnn3 pools first, an equivalent order):
    the network as PyTorch's own layers usually build it."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        keys = list(seq._modules)
        layers = list(seq._modules.values())
        for i in range(len(layers) - 1):
            if isinstance(layers[i], MaxPool2x2) and isinstance(layers[i + 1], nn.ReLU):
                layers[i], layers[i + 1] = layers[i + 1], layers[i]
        for key, layer in zip(keys, layers):
            seq._modules[key] = layer
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, MaxPool2x2):
                setattr(module, child_name, nn.MaxPool2d(2, ceil_mode=child.ceil_mode))
    return model
