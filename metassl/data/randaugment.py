"""RandAugment with a random magnitude per sample, plus Cutout: FixMatch's strong augmentation
(Sohn et al. 2020, Table 12; Cubuk et al. 2020), as batched tensor ops.

Every op maps float images in [0, 1], shape (N, C, H, W), and a per-sample magnitude m in [-1, 1]
to images of the same shape and range. Signed ops (rotate, shear, translate, the enhance ops) use
m's sign as the direction; the others use |m|. m = 0 leaves an image unchanged.

``rand_augment`` gives each sample ``num_ops`` ops in turn, each with its own magnitude. The five
geometric ops only choose an affine matrix, so one resampling serves all of them.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

FILL = 0.5          # grey, what RandAugment fills uncovered pixels and Cutout's square with
MAX_ROTATE = 30.0   # degrees
MAX_SHEAR = 0.3
MAX_TRANSLATE = 0.3  # fraction of the image side
MAX_ENHANCE = 0.9   # enhance factors span [0.1, 1.9]


def _col(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance: degenerate + f·(x - degenerate), f = 1 + 0.9·m, clipped to [0, 1]."""
    factor = _col(1.0 + MAX_ENHANCE * m)
    return (degenerate + factor * (x - degenerate)).clamp(0.0, 1.0)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * weights).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


# -- pixel ops ---------------------------------------------------------------------------

def identity(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return x


def autocontrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Stretch each channel to span [0, 1]; constant channels stay as they are."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-6), x)


def equalize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per channel on 256 levels: each level maps to the share of pixels
    at or below it, the darkest level to 0 (PIL's rounding is not reproduced)."""
    n, c, h, w = x.shape
    levels = (x * 255.0).round().long().clamp(0, 255).flatten(2)
    hist = torch.zeros(n, c, 256, device=x.device, dtype=x.dtype)
    hist.scatter_add_(2, levels, torch.ones_like(levels, dtype=x.dtype))
    cdf = hist.cumsum(2)
    darkest = cdf.gather(2, levels.amin(2, keepdim=True))
    span = h * w - darkest
    out = (cdf.gather(2, levels) - darkest) / span.clamp_min(1.0)
    return torch.where(span > 0, out, x.flatten(2)).view_as(x)


def posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Keep the top 8 - round(4|m|) bits of each 8-bit value (between 8 and 4 bits)."""
    step = _col(2.0 ** (4.0 * m.abs()).round())
    return torch.floor((x * 255.0).round() / step) * step / 255.0


def solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Invert the pixels above 1 - |m|."""
    return torch.where(x > _col(1.0 - m.abs()), 1.0 - x, x)


def brightness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return _blend(torch.zeros_like(x), x, m)


def color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Saturation: blend with the greyscale image (a no-op on one channel)."""
    return _blend(_gray(x).expand_as(x), x, m)


def contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return _blend(_gray(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), x, m)


def sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Blend with PIL's 3x3 SMOOTH filter (centre 5, ring 1): m > 0 sharpens, m < 0 blurs."""
    c = x.shape[1]
    kernel = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    smooth = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)
    return _blend(smooth, x, m)


# -- geometric ops: an affine matrix each, in affine_grid's normalised coordinates -------

def _affine(a: torch.Tensor, b: torch.Tensor, tx: torch.Tensor,
            c: torch.Tensor, d: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.stack([a, b, tx], 1), torch.stack([c, d, ty], 1)], 1)


def rotate_theta(m: torch.Tensor) -> torch.Tensor:
    angle = m * math.radians(MAX_ROTATE)
    cos, sin = angle.cos(), angle.sin()
    zero = torch.zeros_like(m)
    return _affine(cos, -sin, zero, sin, cos, zero)


def shear_x_theta(m: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _affine(one, MAX_SHEAR * m, zero, zero, one, zero)


def shear_y_theta(m: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _affine(one, zero, zero, MAX_SHEAR * m, one, zero)


def translate_x_theta(m: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _affine(one, zero, 2.0 * MAX_TRANSLATE * m, zero, one, zero)  # the grid spans 2 units


def translate_y_theta(m: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _affine(one, zero, zero, zero, one, 2.0 * MAX_TRANSLATE * m)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling under per-sample affine maps; uncovered pixels become FILL."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x - FILL, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + FILL


PIXEL_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "identity": identity, "autocontrast": autocontrast, "equalize": equalize, "posterize": posterize,
    "solarize": solarize, "brightness": brightness, "color": color, "contrast": contrast,
    "sharpness": sharpness,
}
AFFINE_OPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "rotate": rotate_theta, "shear_x": shear_x_theta, "shear_y": shear_y_theta,
    "translate_x": translate_x_theta, "translate_y": translate_y_theta,
}
OPS = tuple(PIXEL_OPS) + tuple(AFFINE_OPS)


def apply_op(name: str, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """One op on the whole batch (per-sample magnitudes)."""
    if name in AFFINE_OPS:
        return warp(x, AFFINE_OPS[name](m))
    return PIXEL_OPS[name](x, m)


def rand_augment(x: torch.Tensor, num_ops: int = 2) -> torch.Tensor:
    """``num_ops`` rounds; in each, every sample gets one op of OPS, uniformly at random, with a
    magnitude drawn uniformly from [-1, 1].

    Ops are dealt out rather than drawn independently: a random permutation of the batch is cut
    into len(OPS) near-equal parts and the parts are given the ops in random order. Each sample's
    op is still uniform, but every op runs on its own part only, the part sizes are known without
    reading anything off the device, and the geometric parts share one resampling."""
    n = x.shape[0]
    for _ in range(num_ops):
        m = torch.rand(n, device=x.device) * 2.0 - 1.0
        parts = torch.tensor_split(torch.randperm(n, device=x.device), len(OPS))
        out = torch.empty_like(x)
        warped, thetas = [], []
        for k, idx in zip(torch.randperm(len(OPS)).tolist(), parts):
            if not idx.numel():
                continue
            name = OPS[k]
            if name in AFFINE_OPS:
                warped.append(idx)
                thetas.append(AFFINE_OPS[name](m[idx]))
            else:
                out[idx] = PIXEL_OPS[name](x[idx], m[idx])
        if warped:
            idx = torch.cat(warped)
            out[idx] = warp(x[idx], torch.cat(thetas))
        x = out
    return x


def cutout(x: torch.Tensor, max_size: float = 0.5) -> torch.Tensor:
    """Fill one square per image with FILL; its side is a uniform fraction in [0, max_size] of the
    shorter image side, its centre uniform over the image (the square may be clipped)."""
    n, _, h, w = x.shape
    side = torch.rand(n, device=x.device) * max_size * min(h, w)
    cy = torch.rand(n, device=x.device) * h
    cx = torch.rand(n, device=x.device) * w
    rows = torch.arange(h, device=x.device, dtype=x.dtype) + 0.5
    cols = torch.arange(w, device=x.device, dtype=x.dtype) + 0.5
    inside_r = (rows.view(1, h) - cy.view(n, 1)).abs() < side.view(n, 1) / 2
    inside_c = (cols.view(1, w) - cx.view(n, 1)).abs() < side.view(n, 1) / 2
    box = (inside_r.view(n, 1, h, 1) & inside_c.view(n, 1, 1, w))
    return torch.where(box, torch.full_like(x, FILL), x)
