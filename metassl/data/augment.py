"""Augmentation as batched tensor ops on the training device.

Images are stored as uint8 (N, C, H, W); every op here works on a whole float batch at once
and draws its randomness from the device's default generator, so the checkpointed RNG state
fixes it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from metassl.data.randaugment import cutout, rand_augment


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Horizontal flip of a random half of the batch."""
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    return torch.where(flip, x.flip(3), x)


def random_translate(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad by ``pad`` pixels (reflect) and crop back at a random offset per sample."""
    if pad == 0:
        return x
    n, c, h, w = x.shape
    mode = "reflect" if pad < min(h, w) else "replicate"
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    oy = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device)
    rows = (oy + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
    cropped = padded.gather(2, rows)
    cols = (ox + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    return cropped.gather(3, cols)


def gaussian_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    return x + std * torch.randn_like(x) if std > 0 else x


# Feature vectors are stored as 1 x S x S images (metassl.data.vectors.VectorEncoder): feature j
# is pixel j in row-major order, standardised and mapped so that one standard deviation spans
# 1/8 of the 0..1 range and the feature mean sits at 0.5.
VECTOR_STD = 1.0 / 8.0
VECTOR_MEAN = 0.5


def vector_view(x: torch.Tensor, features: int, noise: float, dropout: float) -> torch.Tensor:
    """Gaussian noise of ``noise`` standard deviations on each of the first ``features`` pixels,
    then each feature replaced by its mean with probability ``dropout``; padding stays as it is."""
    n = x.shape[0]
    flat = x.reshape(n, -1)
    v = flat[:, :features]
    if noise > 0:
        v = v + (noise * VECTOR_STD) * torch.randn_like(v)
    if dropout > 0:
        v = torch.where(torch.rand_like(v) < dropout, torch.full_like(v, VECTOR_MEAN), v)
    return torch.cat([v, flat[:, features:]], 1).view_as(x)


class Augmenter:
    """uint8 batch -> augmented, normalised float batch (``__call__``), strongly augmented
    (``strong``) or plain normalised (``normalize``)."""

    # The strong view of a feature vector: this many times the weak view's noise and dropout.
    STRONG_VECTOR = 3.0

    def __init__(self, mean, std, *, flip: bool, translate: int, noise: float, device,
                 channels_last: bool = False, strong_ops: int = 2, cutout: float = 0.5,
                 vector_features: int | None = None, vector_noise: float = 0.0, vector_dropout: float = 0.0):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.flip, self.translate, self.noise = flip, translate, noise
        # Feature vectors: views are noise and feature dropout; flips and shifts would scramble them.
        self.vector_features, self.vector_noise, self.vector_dropout = vector_features, vector_noise, vector_dropout
        if vector_features:
            self.flip, self.translate = False, 0
        self.strong_ops, self.cutout = strong_ops, cutout
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self._finish(to_float(x))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = to_float(x)
        if self.vector_features:
            return self._finish(vector_view(x, self.vector_features, self.vector_noise, self.vector_dropout))
        if self.flip:
            x = random_flip(x)
        x = random_translate(x, self.translate)
        return self._finish(gaussian_noise(x, self.noise))

    def strong(self, x: torch.Tensor) -> torch.Tensor:
        """The weak view's flip and translation, then RandAugment and Cutout (FixMatch's strong view)."""
        x = to_float(x)
        if self.vector_features:
            k = self.STRONG_VECTOR
            return self._finish(vector_view(x, self.vector_features, k * self.vector_noise,
                                            min(0.5, k * self.vector_dropout)))
        if self.flip:
            x = random_flip(x)
        x = random_translate(x, self.translate)
        return self._finish(cutout(rand_augment(x, self.strong_ops), self.cutout))
