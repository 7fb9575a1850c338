"""scikit-learn's bundled 8x8 digits (no files needed), with a fixed stratified test split."""
from __future__ import annotations

import numpy as np

from metassl.data.arrays import ArrayDataset, from_arrays
from metassl.data.holdout import stratified_split
from metassl.data.idx import DIGIT_CLASSES

# sklearn digits has no official test split: this fraction of each class, chosen by a
# generator seeded with DIGITS_SPLIT_SEED, is held out, so the split never changes.
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def load_digits() -> ArrayDataset:
    """scikit-learn's bundled 8x8 digits (1797 images), scaled from 0..16 to 0..255.

    There is no official test split, so a stratified 20% is held out: within each class
    the images are permuted by `np.random.default_rng(DIGITS_SPLIT_SEED)` (seed 0, classes
    visited in order 0..9) and the first round(20%) go to test. Both splits keep the
    original order, so they are identical on every run.
    """
    from sklearn.datasets import load_digits as sk_load_digits  # deferred: slow import

    bunch = sk_load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    return from_arrays(
        "digits", images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
        classes=DIGIT_CLASSES, hflip=False,
    )
