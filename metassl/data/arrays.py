"""The in-memory dataset that every reader produces, and the checks that build it.

Every dataset ends up as an `ArrayDataset`: images as uint8 N,C,H,W tensors and int64
labels. Everything else (normalisation, augmentation, labelled/unlabelled splits) works
on that, so the readers only have to get the pixels and labels right. `from_arrays`
validates numpy/torch arrays and wraps them; `as_images` is its image check on its own.

All problems with arrays raise `DataError` with a one-line message naming the source and
what is wrong with it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from metassl.errors import DataError

@dataclass(repr=False)
class ArrayDataset:
    """A whole dataset in memory. Build it with `from_arrays`, which validates."""

    name: str
    x_train: torch.Tensor  # uint8, N,C,H,W, contiguous
    y_train: torch.Tensor  # int64, N
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    classes: list[str]
    mean: tuple[float, ...]  # per channel, 0..1 scale
    std: tuple[float, ...]
    hflip: bool  # whether a horizontal flip keeps the label (not for digits)
    test_held_out: bool = False  # the test set was carved from labeled training data
    # Feature vectors encoded as images (metassl.data.vectors.VectorEncoder): the encoder's
    # per-feature {"mean": [...], "std": [...]}, and "columns" (their names) where a CSV
    # header named them; None for images.
    vectors: dict | None = None

    @property
    def vector_features(self) -> int | None:
        return len(self.vectors["mean"]) if self.vectors else None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        """Height; the same as the width for every built-in dataset (see `image_hw`)."""
        return int(self.x_train.shape[2])

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.x_train.shape[2]), int(self.x_train.shape[3])

    def __repr__(self) -> str:
        def shape(x: torch.Tensor | None) -> str:
            return "none" if x is None else "x".join(str(d) for d in x.shape)

        return (
            f"ArrayDataset(name={self.name!r}, train={shape(self.x_train)}, "
            f"test={shape(self.x_test)}, classes={self.num_classes}, hflip={self.hflip})"
        )


def from_files(folder: Path, *args: Any, **kwargs: Any) -> "ArrayDataset":
    """``from_arrays`` for arrays a reader took from the files in ``folder``: an error names it."""
    try:
        return from_arrays(*args, **kwargs)
    except DataError as exc:
        raise DataError(f"{exc} (the files in {folder})") from None


def from_arrays(
    name: str,
    x_train: Any,
    y_train: Any,
    x_test: Any = None,
    y_test: Any = None,
    classes: Sequence[str] | None = None,
    hflip: bool = False,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    allow_unlabeled: bool = False,
) -> ArrayDataset:
    """Validate numpy/torch arrays and wrap them as an `ArrayDataset`.

    Images may be N,C,H,W or N,H,W (grayscale), uint8 0..255 or float 0..1 (rounded to
    uint8). Labels must be whole numbers in [0, num_classes), and with `allow_unlabeled`
    y_train may also hold -1 for an unlabeled example; without `classes` the
    class count is the largest label + 1 and the names are "0", "1", ... Without
    `mean`/`std` they are computed from x_train. Contiguous uint8 numpy inputs are
    wrapped, not copied, so the tensors share their memory.
    """
    if (x_test is None) != (y_test is None):
        raise DataError(f"data: {name}: x_test and y_test must be given together")
    xtr = _as_images(name, "x_train", x_train)
    ytr = _as_labels(name, "y_train", y_train)
    _check_lengths(name, "train", xtr, ytr)
    xte = yte = None
    if x_test is not None:
        xte = _as_images(name, "x_test", x_test)
        yte = _as_labels(name, "y_test", y_test)
        _check_lengths(name, "test", xte, yte)
        if xte.shape[1:] != xtr.shape[1:]:
            raise DataError(
                f"data: {name}: x_test images are {_dims(xte.shape[1:])} "
                f"but x_train images are {_dims(xtr.shape[1:])}"
            )

    if classes is None:
        top = max(int(y.max()) for y in (ytr, yte) if y is not None and len(y))
        classes = [str(i) for i in range(max(top, 0) + 1)]
    classes = [str(c) for c in classes]
    if not classes:
        raise DataError(f"data: {name}: classes is empty")
    _check_label_range(name, "y_train", ytr, len(classes), lowest=-1 if allow_unlabeled else 0)
    if yte is not None:
        _check_label_range(name, "y_test", yte, len(classes))

    channels = xtr.shape[1]
    if mean is None or std is None:
        mean, std = channel_stats(torch.from_numpy(xtr))
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != channels or len(std) != channels:
        raise DataError(
            f"data: {name}: mean/std have {len(mean)}/{len(std)} values for {channels} channels"
        )

    def tensor(a: np.ndarray | None) -> torch.Tensor | None:
        return None if a is None else torch.from_numpy(a)

    return ArrayDataset(
        name=name,
        x_train=torch.from_numpy(xtr),
        y_train=torch.from_numpy(ytr),
        x_test=tensor(xte),
        y_test=tensor(yte),
        classes=classes,
        mean=mean,
        std=std,
        hflip=bool(hflip),
    )


def as_images(x: Any, what: str = "images", source: str = "input") -> torch.Tensor:
    """Images checked and converted as `from_arrays` does, as a uint8 N,C,H,W tensor."""
    return torch.from_numpy(_as_images(source, what, x))


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 N,C,H,W images on the 0..1 scale.

    Goes through a 256-bin histogram so that even CIFAR-sized arrays need no float copy.
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        n = counts.sum()
        m = (counts * values).sum() / n
        var = (counts * values * values).sum() / n - m * m
        means.append(float(m))
        stds.append(float(var.clamp_min(0).sqrt()))
    return tuple(means), tuple(stds)


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


def _as_images(name: str, what: str, x: Any) -> np.ndarray:
    a = _to_numpy(x)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise DataError(
            f"data: {name}: {what} has shape {_dims(a.shape)}; expected N,C,H,W or N,H,W"
        )
    if a.shape[1] not in (1, 3, 4) and a.shape[3] in (1, 3, 4):
        raise DataError(
            f"data: {name}: {what} has shape {_dims(a.shape)}, which looks channels-last; "
            "expected N,C,H,W"
        )
    if a.shape[0] == 0:
        raise DataError(f"data: {name}: {what} holds no images")
    if a.dtype == np.uint8:
        pass
    elif np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise DataError(f"data: {name}: {what} holds {int(bad.sum())} NaN or infinite values "
                            f"(the first at index {first})")
        lo, hi = float(a.min()), float(a.max())
        if not (lo >= 0.0 and hi <= 1.0):
            raise DataError(
                f"data: {name}: {what} has float values from {lo} to {hi}; "
                "float images must lie in [0, 1] (or pass uint8 0..255)"
            )
        a = np.rint(a * 255.0).astype(np.uint8)
    else:
        raise DataError(
            f"data: {name}: {what} has dtype {a.dtype}; expected uint8 0..255 or float 0..1"
        )
    a = np.ascontiguousarray(a)
    # torch.from_numpy warns on read-only arrays (np.frombuffer, mmap), so own a copy.
    return a if a.flags.writeable else a.copy()


def _as_labels(name: str, what: str, y: Any) -> np.ndarray:
    a = _to_numpy(y)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise DataError(f"data: {name}: {what} has shape {_dims(a.shape)}; expected N labels")
    if np.issubdtype(a.dtype, np.floating):
        # Labels stored as floats (e.g. MATLAB doubles) are fine while they are whole.
        bad = np.flatnonzero(~np.isfinite(a) | (a != np.round(a)))
        if bad.size:
            i = int(bad[0])
            raise DataError(f"data: {name}: {what}[{i}] = {a[i]} is not a whole number")
    elif not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"data: {name}: {what} has dtype {a.dtype}; expected integer labels")
    return np.ascontiguousarray(a.astype(np.int64))


def _check_file_labels(path: Path, y: np.ndarray, k: int, key: str = "") -> None:
    """Like the from_arrays range check, but naming the file the bad label came from."""
    bad = np.flatnonzero((y < 0) | (y >= k))
    if bad.size:
        i = int(bad[0])
        where = f"{path} {key}".rstrip()
        raise DataError(f"data: {where} has label {int(y[i])} at index {i}, outside [0, {k})")


def _check_lengths(name: str, split: str, x: np.ndarray, y: np.ndarray) -> None:
    if len(x) != len(y):
        raise DataError(
            f"data: {name}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels"
        )


def _check_label_range(name: str, what: str, y: np.ndarray, k: int, lowest: int = 0) -> None:
    bad = np.flatnonzero((y < lowest) | (y >= k))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"data: {name}: {what}[{i}] = {int(y[i])} is outside [{lowest}, {k}) "
            f"({k} classes; {bad.size} bad labels in all)"
        )


def integer_names(names: Sequence[str]) -> bool:
    """Whether every class name is an integer as Python writes it (``7``, ``-1``; not ``07``):
    such names are ordered as numbers and load as integer labels, and no two of them stand for
    the same number."""
    return all(re.fullmatch(r"-?\d+", n) and str(int(n)) == n for n in names)


def first_non_integer(y: np.ndarray) -> int | None:
    """The index of the first float label that is not a whole number (NaN, inf, 0.5), or None."""
    if not np.issubdtype(y.dtype, np.floating):
        return None
    bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
    return int(bad[0]) if bad.size else None
