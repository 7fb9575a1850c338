"""Test sets fixed by a seed, for data that comes without one.

`stratified_split` puts a share of each class in the test set (digits' test split);
`holdout` does so for the labeled examples of the user's data that has no test set
(`test_fraction`), always with `HOLDOUT_SEED`, and the dataset then says so
(`test_held_out`).
"""
from __future__ import annotations

import sys

import numpy as np

# The held-out test set must not change with the run's seed, so that runs of different seeds
# are scored on the same images.
HOLDOUT_SEED = 0


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices with round(test_fraction * n_c) of each class in test."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        test.append(rng.permutation(members)[: int(round(test_fraction * len(members)))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def holdout(y: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: `fraction` of each class's labeled examples (y >= 0) go to test."""
    labeled = np.flatnonzero(y >= 0)
    _, test = stratified_split(y[labeled], fraction, HOLDOUT_SEED)
    test_idx = labeled[test]
    return np.setdiff1d(np.arange(len(y)), test_idx), test_idx


def _say_held_out(source: str, n: int, fraction: float, what: str = "images") -> None:
    print(f"metassl: {source} has no test set; held out {n} labeled {what} ({fraction:.0%} of each "
          f"class, fixed seed {HOLDOUT_SEED}) as the test set (test_fraction)", file=sys.stderr)


def _hold_out_arrays(source: str, x, y, x_test, y_test, test_fraction: float, what: str = "images"):
    """Where a source has no test split, hold out ``test_fraction`` of each class's labeled rows as
    one (``what`` they are, for the message); returns (x, y, x_test, y_test, held_out)."""
    if x_test is not None or test_fraction <= 0:
        return x, y, x_test, y_test, False
    train_idx, test_idx = holdout(y, test_fraction)
    if not len(test_idx):
        return x, y, x_test, y_test, False
    _say_held_out(source, len(test_idx), test_fraction, what)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx], True
