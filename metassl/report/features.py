"""Penultimate-layer features of a run's validation-selected model."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from metassl.engine.rundir import load_run
from metassl.engine.setup import RunSetup
from metassl.methods.mixing import mix

BATCH = 512


def load_selected(run: Path) -> RunSetup:
    """The run's data, split and model, with the weights of ``best.pt`` loaded."""
    return load_run(run, "selected")[0]


@torch.no_grad()
def _forward(s: RunSetup, batches: Iterator[torch.Tensor]) -> np.ndarray:
    outs = []
    with s.autocast():
        for x in batches:
            outs.append(s.model.forward_features(x).float().cpu())
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), dtype=np.float32)


def features(s: RunSetup, images: torch.Tensor) -> np.ndarray:
    """(N, D) features of uint8 images, without augmentation."""
    return _forward(s, (s.augmenter.normalize(images[k:k + BATCH]) for k in range(0, len(images), BATCH)))


def mixed_features(s: RunSetup, i: np.ndarray, j: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Features of λ·x_i + (1-λ)·x_j for training-set indices i, j, mixed after normalisation
    as the mixing methods do."""
    i, j = torch.as_tensor(i, device=s.device), torch.as_tensor(j, device=s.device)
    lam = torch.as_tensor(lam, dtype=torch.float32, device=s.device)

    def batches():
        for k in range(0, len(i), BATCH):
            sl = slice(k, k + BATCH)
            yield mix(s.augmenter.normalize(s.x[i[sl]]), s.augmenter.normalize(s.x[j[sl]]), lam[sl])

    return _forward(s, batches())
