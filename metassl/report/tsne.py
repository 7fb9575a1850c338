"""t-SNE of labeled, unlabeled and test features (Figure 3 of the meta-gradient SSL paper).

The points are a seeded, capped sample so that scikit-learn's Barnes-Hut t-SNE stays well
under a minute on one CPU core.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.manifold import TSNE

from metassl.engine.setup import RunSetup
from metassl.report.features import features

TSNE_POINTS = 1500
# Half of scikit-learn's default: the layout is settled by then and it halves the time.
TSNE_ITERATIONS = 500
SUBSETS = ("labeled", "unlabeled", "test")


@dataclass
class Embedding:
    xy: np.ndarray        # (N, 2)
    label: np.ndarray     # (N,) true class
    subset: np.ndarray    # (N,) index into SUBSETS
    counts: dict          # subset -> points drawn
    available: dict       # subset -> points the run has


def share(sizes: dict[str, int], cap: int) -> dict[str, int]:
    """Split ``cap`` points between subsets as evenly as their sizes allow."""
    out, left = {}, cap
    order = sorted(sizes, key=sizes.get)
    for k, name in enumerate(order):
        out[name] = min(sizes[name], left // (len(order) - k))
        left -= out[name]
    return out


def _iterations_kwarg() -> dict:
    # scikit-learn renamed n_iter to max_iter in 1.5.
    params = inspect.signature(TSNE).parameters
    return {"max_iter" if "max_iter" in params else "n_iter": TSNE_ITERATIONS}


def embed_run(s: RunSetup, cap: int = TSNE_POINTS, seed: int = 0) -> Embedding:
    rng = np.random.RandomState(seed)
    pools = {"labeled": (s.x[s.split.labeled.to(s.device)], s.y[s.split.labeled.to(s.device)]),
             "unlabeled": (s.x[s.split.unlabeled.to(s.device)], s.y[s.split.unlabeled.to(s.device)])}
    if s.x_test is not None:
        pools["test"] = (s.x_test, s.y_test)
    available = {name: len(pools[name][1]) for name in pools}
    counts = share(available, cap)
    feats, labels, subsets = [], [], []
    for name, (x, y) in pools.items():
        if counts[name] == 0:
            continue
        pick = torch.as_tensor(np.sort(rng.choice(len(y), counts[name], replace=False)), device=s.device)
        feats.append(features(s, x[pick]))
        labels.append(y[pick].cpu().numpy())
        subsets.append(np.full(counts[name], SUBSETS.index(name)))
    f = np.concatenate(feats).astype(np.float64)
    # Perplexity must stay below the number of points for small runs.
    perplexity = float(min(30.0, max(2.0, (len(f) - 1) / 3)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
              random_state=seed, **_iterations_kwarg()).fit_transform(f)
    return Embedding(xy, np.concatenate(labels), np.concatenate(subsets), counts, available)
