"""``signals``: a generated set of 1-D signals, the built-in feature-vector dataset.

Each example is 40 samples of a noisy periodic signal; its class (10 of them) fixes the
frequency (1 to 5 periods over the window) and the wave shape (sine for even classes, a
clipped, square-like sine for odd ones). Phase, amplitude and offset are drawn per example and
Gaussian noise is added, so neither a single sample nor the mean tells the class. 4000 training
and 1000 test examples, the same on every call (a fixed generator seed). Vectors are stored the
way `SSLClassifier` stores N x D arrays (`metassl.data.vectors.VectorEncoder`), so runs on it
take the feature-vector path: vector views for augmentation, and predict/export read N x 40.
"""
from __future__ import annotations

import numpy as np

SIGNAL_LENGTH = 40
SIGNAL_CLASSES = 10
SIGNAL_TRAIN, SIGNAL_TEST = 4000, 1000
SIGNAL_SEED = 0
SIGNAL_NOISE = 0.8


def make_signals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` signals (float64, n x 40) and their classes, balanced and in random order."""
    y = rng.permutation(np.arange(n) % SIGNAL_CLASSES)
    t = np.arange(SIGNAL_LENGTH) / SIGNAL_LENGTH
    periods = 1 + y // 2
    phase = rng.uniform(0, 2 * np.pi, n)
    wave = np.sin(2 * np.pi * periods[:, None] * t[None, :] + phase[:, None])
    square = np.clip(3.0 * wave, -1.0, 1.0)
    shape = np.where((y % 2 == 1)[:, None], square, wave)
    amplitude = rng.uniform(0.6, 1.4, n)[:, None]
    offset = rng.normal(0.0, 0.5, n)[:, None]
    x = amplitude * shape + offset + rng.normal(0.0, SIGNAL_NOISE, (n, SIGNAL_LENGTH))
    return x, y.astype(np.int64)


def load_signals():
    from metassl.data.vectors import from_vectors

    rng = np.random.default_rng(SIGNAL_SEED)
    x_train, y_train = make_signals(SIGNAL_TRAIN, rng)
    x_test, y_test = make_signals(SIGNAL_TEST, rng)
    return from_vectors("signals", x_train, y_train, x_test, y_test,
                        classes=[str(c) for c in range(SIGNAL_CLASSES)])
