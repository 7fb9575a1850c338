"""The learned mixing coefficients a MetaMixUp run logs in ``lambdas.jsonl``, and the
manifold-intrusion distances of MetaMixUp's Figure 5.

Each line: ``step``, ``alpha`` (the Beta α a mixup baseline would use, or null),
``hist_edges`` (21) / ``hist_counts`` (20) of the λ learned since the last evaluation,
``pair_mean`` / ``pair_count`` (C×C, mean λ per (class of x_i, class of x_j)) and
``samples`` (``[i, j, lam]`` triples of training-set indices and the learned λ).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from metassl.engine.setup import RunSetup
from metassl.errors import CheckpointError
from metassl.report.features import features, mixed_features
from metassl.report.records import number, read_jsonl

FILE = "lambdas.jsonl"
# The paper's Figure 6 compares against mixup with α = 1 when a run names no α.
DEFAULT_ALPHA = 1.0
MAX_SAMPLES = 4096
MAX_REAL = 5000


@dataclass
class LambdaLog:
    steps: list[int]
    alpha: Optional[float]           # the last α logged, None when every line has null
    edges: np.ndarray                # (21,)
    counts: np.ndarray               # (E, 20): one histogram per evaluation
    pair_mean: list[np.ndarray]      # E arrays (C, C), NaN where no pair was seen
    pair_count: list[np.ndarray]
    samples: np.ndarray              # (S, 3): i, j, lam over all evaluations

    @property
    def baseline_alpha(self) -> float:
        return self.alpha if self.alpha is not None else DEFAULT_ALPHA


def _matrix(value, name: str, where: str) -> np.ndarray:
    try:
        m = np.array([[np.nan if v is None else float(v) for v in row] for row in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckpointError(f"report: {where}: {name} must be a square list of lists of numbers") from None
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise CheckpointError(f"report: {where}: {name} must be a square list of lists of numbers")
    return m


def read_lambdas(path: Path) -> LambdaLog:
    records = read_jsonl(path)
    if not records:
        raise CheckpointError(f"report: {path} holds no records")
    steps, counts, means, pair_counts, samples = [], [], [], [], []
    alpha, edges = None, None
    for line, r in enumerate(records, 1):
        where = f"{path} line {line}"
        e, c = r.get("hist_edges"), r.get("hist_counts")
        if not (isinstance(e, list) and isinstance(c, list) and len(e) == len(c) + 1 and len(c) >= 1):
            raise CheckpointError(f"report: {where}: hist_edges must hold one more value than hist_counts")
        try:
            e, c = np.asarray(e, dtype=np.float64), np.asarray(c, dtype=np.float64)
        except (TypeError, ValueError):
            raise CheckpointError(f"report: {where}: histogram values must be numbers") from None
        if edges is not None and (e.shape != edges.shape or not np.allclose(e, edges)):
            raise CheckpointError(f"report: {where}: hist_edges differ from the first line's")
        edges = e
        mean = _matrix(r.get("pair_mean", []), "pair_mean", where)
        count = np.nan_to_num(_matrix(r.get("pair_count", []), "pair_count", where))
        if mean.shape != count.shape or (means and mean.shape != means[0].shape):
            raise CheckpointError(f"report: {where}: pair_mean and pair_count must be C×C for one C")
        try:
            s = np.asarray(r.get("samples") or [], dtype=np.float64).reshape(-1, 3)
        except (TypeError, ValueError):
            raise CheckpointError(f"report: {where}: samples must be a list of [i, j, lam]") from None
        a = number(r.get("alpha"))
        alpha = a if a is not None else alpha
        steps.append(r["step"])
        counts.append(c)
        means.append(mean)
        pair_counts.append(count)
        samples.append(s)
    return LambdaLog(steps, alpha, edges, np.stack(counts), means, pair_counts, np.concatenate(samples))


def snapshots(log: LambdaLog, most: int = 4) -> list[int]:
    """Indices of up to ``most`` evaluations, first and last included, spread over training,
    among those that saw any pair."""
    seen = [k for k, c in enumerate(log.pair_count) if c.sum() > 0]
    if len(seen) <= most:
        return seen
    picks = np.linspace(0, len(seen) - 1, most).round().astype(int)
    return [seen[p] for p in dict.fromkeys(picks)]


@dataclass
class Distances:
    mixup: np.ndarray      # one distance per mixed sample with λ ~ Beta(α, α)
    metamixup: np.ndarray  # the same pairs with the learned λ
    alpha: float
    real: int              # real samples searched


def _nearest_other_class(mixed: np.ndarray, classes: np.ndarray, real: np.ndarray,
                         real_y: np.ndarray) -> np.ndarray:
    """Distance from each mixed feature to the nearest real feature whose class is neither
    of the two mixed classes (``classes``: (S, 2))."""
    d = torch.cdist(torch.as_tensor(mixed), torch.as_tensor(real))
    ry = torch.as_tensor(real_y)
    cy = torch.as_tensor(classes)
    same = (ry[None, :] == cy[:, :1]) | (ry[None, :] == cy[:, 1:])
    return d.masked_fill(same, float("inf")).min(dim=1).values.numpy()


def mixing_distances(s: RunSetup, log: LambdaLog, path: Path, seed: int = 0) -> Distances:
    """MetaMixUp Figure 5: how close mixed samples come, in the selected model's feature space,
    to a real labeled sample of another class; learned λ against λ ~ Beta(α, α) on the same pairs."""
    rng = np.random.RandomState(seed)
    samples = log.samples[-MAX_SAMPLES:]
    i, j, lam = samples[:, 0].astype(np.int64), samples[:, 1].astype(np.int64), samples[:, 2]
    n_train = len(s.y)
    if len(samples) and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n_train):
        raise CheckpointError(f"report: {path} names samples outside the training set of {n_train}")
    if len(samples) and (lam.min() < 0 or lam.max() > 1):
        raise CheckpointError(f"report: {path} holds sample λ outside [0, 1]")
    alpha = log.baseline_alpha
    beta_lam = rng.beta(alpha, alpha, len(samples))
    labeled = s.split.labeled.numpy()
    if len(labeled) > MAX_REAL:
        labeled = np.sort(rng.choice(labeled, MAX_REAL, replace=False))
    pick = torch.as_tensor(labeled, device=s.device)
    real, real_y = features(s, s.x[pick]), s.y[pick].cpu().numpy()
    y = s.y.cpu().numpy()
    classes = np.stack([y[i], y[j]], axis=1)
    out = []
    for lams in (beta_lam, lam):
        d = _nearest_other_class(mixed_features(s, i, j, lams), classes, real, real_y)
        out.append(d[np.isfinite(d)])
    return Distances(out[0], out[1], alpha, len(labeled))
