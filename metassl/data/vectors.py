"""Feature vectors (N x D numbers) as a dataset, the way `SSLClassifier` takes them.

The engine stores and augments every dataset as 8-bit images, so vectors are encoded by
`VectorEncoder`, fitted on the training rows (labeled and unlabeled),
into 1 x S x S images; the dataset's ``vectors`` carries the encoder's per-feature mean and
std so that predict and export read N x D inputs the same way. Read from an `.npz` whose
``x`` is N x D (`metassl.data.npz.load_npz`) or from a CSV table of numbers
(`metassl.data.csvfile.load_csv`).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metassl.data.arrays import ArrayDataset, from_arrays
from metassl.errors import DataError
from metassl.models import MIN_IMAGE_SIZE


class VectorEncoder(nn.Module):
    """Feature vectors N x D -> 1 x S x S images of 0..255 values, S = max(8, ceil(sqrt(D))).

    Each feature is standardised with the training data's mean and std, clipped to
    +-CLIP standard deviations and quantised to 256 levels (steps of 8/255 of a standard
    deviation), because the engine stores and augments every dataset as 8-bit images;
    the S*S - D unused pixels are 0.
    """

    CLIP = 4.0

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.features = len(mean)
        self.side = max(MIN_IMAGE_SIZE, math.ceil(math.sqrt(self.features)))
        # float64: a feature far from 0 with a small spread (a timestamp) keeps its levels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float64))

    @classmethod
    def fit(cls, x: np.ndarray) -> "VectorEncoder":
        # computed on each feature divided by its largest magnitude, so squares neither overflow
        # (features near 1e160) nor underflow (near 1e-160)
        scale = np.abs(x).max(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        mean, std = (x / scale).mean(axis=0) * scale, (x / scale).std(axis=0) * scale
        return cls(mean.tolist(), np.where(std > 0, std, 1.0).tolist())

    def info(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        z = ((v.double() - self.mean) / self.std).clamp(-self.CLIP, self.CLIP)
        q = torch.round((z + self.CLIP) * (255.0 / (2 * self.CLIP))).float()
        q = F.pad(q, (0, self.side * self.side - self.features))
        return q.reshape(-1, 1, self.side, self.side)


def check_vectors(source: str, what: str, x: Any) -> np.ndarray:
    """``x`` as float64 N x D, or a one-line DataError naming ``source`` and ``what``."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 2 or a.shape[1] == 0:
        raise DataError(f"data: {source} {what} has shape {'x'.join(map(str, a.shape))}; "
                        "expected feature vectors N x D")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or np.issubdtype(a.dtype, np.complexfloating):
        raise DataError(f"data: {source} {what} holds {a.dtype}; expected real numbers")
    a = a.astype(np.float64)
    bad = np.argwhere(~np.isfinite(a))
    if len(bad):
        i, j = (int(v) for v in bad[0])
        raise DataError(f"data: {source} {what}[{i}, {j}] = {a[i, j]} is not a finite number")
    return a


def from_vectors(name: str, x: Any, y: Any, x_test: Any = None, y_test: Any = None,
                 classes: Optional[Sequence[str]] = None) -> ArrayDataset:
    """An `ArrayDataset` of encoded vectors; ``y`` may mark unlabeled rows with -1."""
    x = check_vectors(name, "x", x)
    if x_test is not None:
        x_test = check_vectors(name, "x_test", x_test)
        if x_test.shape[1] != x.shape[1]:
            raise DataError(f"data: {name}: x_test has {x_test.shape[1]} features but x has {x.shape[1]}")
    encoder = VectorEncoder.fit(x)

    def encode(a: Optional[np.ndarray]) -> Optional[torch.Tensor]:
        return None if a is None else encoder(torch.from_numpy(a)).to(torch.uint8)

    data = from_arrays(name, encode(x), y, encode(x_test), y_test, classes=classes, allow_unlabeled=True)
    data.vectors = encoder.info()
    return data
