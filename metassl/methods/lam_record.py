"""The record of learned mixing coefficients every MetaMixUp variant keeps: ``lambdas.jsonl``.

At each evaluation one JSON object is appended to ``run_dir/lambdas.jsonl``, covering every λ
learned since the previous evaluation:

    step          the training step
    alpha         the Beta α of the comparable mixup baseline (the λ the meta step starts from), or null
    hist_edges    21 edges 0, 0.05, ..., 1
    hist_counts   20 counts of learned λ per bin (λ = 1 in the last)
    pair_mean     C×C: mean λ per (class of x_i, class of x_j), null where no such pair was mixed
    pair_count    C×C pair counts
    samples       up to 256 ``[i, j, lam]``: training-set indices of the two mixed examples
                  (x̃ = lam·x_i + (1 - lam)·x_j) and the learned λ, the latest of the interval

``metassl report`` reads this file for MetaMixUp's Figures 5 (distances of mixed samples),
6 (λ histogram) and 7 (λ per class pair). Everything accumulates on the device; the host sees
it only at ``flush``, which runs at evaluation time.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from metassl.engine.dist import all_reduce_mean
from metassl.files import append_line
from metassl.meta import world_size

FILE = "lambdas.jsonl"
BINS = 20
MAX_SAMPLES = 256


class LamRecorder:
    def __init__(self, num_classes: int, device: torch.device, alpha: Optional[float]):
        self.num_classes, self.device, self.alpha = num_classes, device, alpha
        self.reset()

    def reset(self) -> None:
        c, kw = self.num_classes, dict(device=self.device, dtype=torch.float32)
        self.hist = torch.zeros(BINS, **kw)
        self.pair_sum = torch.zeros(c * c, **kw)
        self.pair_count = torch.zeros(c * c, **kw)
        self.samples = torch.zeros(0, 4, **kw)  # i, j, lam, kept

    def add(self, lam: torch.Tensor, y_i: torch.Tensor, y_j: torch.Tensor,
            idx_i: Optional[torch.Tensor] = None, idx_j: Optional[torch.Tensor] = None,
            keep: Optional[torch.Tensor] = None) -> None:
        """Count the λ of the pairs (x_i, x_j) just mixed. ``y`` are the classes the mixing used
        (pseudo labels for unlabeled examples); ``keep`` (0/1) drops pairs that took no part in the
        loss. Filtering is done by weights, not indexing, so no step waits on the device."""
        lam = lam.detach().float()
        keep = torch.ones_like(lam) if keep is None else keep.detach().float()
        bins = (lam * BINS).long().clamp_(0, BINS - 1)
        self.hist += torch.bincount(bins, weights=keep, minlength=BINS)
        pair = y_i * self.num_classes + y_j
        self.pair_sum.index_add_(0, pair, lam * keep)
        self.pair_count.index_add_(0, pair, keep)
        if idx_i is not None and idx_j is not None:
            rows = torch.stack([idx_i.float(), idx_j.float(), lam, keep], dim=1)
            self.samples = torch.cat([self.samples, rows])[-MAX_SAMPLES:]

    def flush(self, step: int, run_dir: Optional[Path]) -> dict:
        """Append the interval's record to ``run_dir/lambdas.jsonl`` (when given), start a new
        interval, and return scalars for the metrics."""
        totals = torch.cat([self.hist, self.pair_sum, self.pair_count])
        all_reduce_mean([totals])
        totals *= world_size()
        c2 = self.num_classes ** 2
        hist = totals[:BINS].round().long().tolist()
        pair_sum = totals[BINS:BINS + c2].view(self.num_classes, -1)
        pair_count = totals[BINS + c2:].round().view(self.num_classes, -1)
        pair_mean = (pair_sum / pair_count.clamp_min(1)).tolist()
        counts = pair_count.long().tolist()
        n = sum(hist)
        lam_mean = (pair_sum.sum() / max(n, 1)).item() if n else None
        if run_dir is not None:
            kept = self.samples[self.samples[:, 3] > 0]
            record = {
                "step": step,
                "alpha": self.alpha,
                "hist_edges": [k / BINS for k in range(BINS + 1)],
                "hist_counts": hist,
                "pair_mean": [[m if k else None for m, k in zip(mrow, krow)] for mrow, krow in zip(pair_mean, counts)],
                "pair_count": counts,
                "samples": [[int(i), int(j), lam] for i, j, lam in kept[:, :3].tolist()],
            }
            append_line(Path(run_dir) / FILE, json.dumps(record))
        self.reset()
        return {"lam_mean": lam_mean, "lam_count": n}

    def state_dict(self) -> dict:
        return {"hist": self.hist, "pair_sum": self.pair_sum, "pair_count": self.pair_count,
                "samples": self.samples}

    def load_state_dict(self, state: dict) -> None:
        for key in ("hist", "pair_sum", "pair_count", "samples"):
            setattr(self, key, state[key].to(self.device))
