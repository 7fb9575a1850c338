"""The `npz` dataset: an `.npz` archive (`data_root`) of images or feature vectors.

It holds `x` (N,C,H,W or N,H,W; uint8 or float 0..1; or N,D feature vectors), `y` (-1
marks unlabeled), optional `x_test`, `y_test` and `classes` (names). Arrays keep their
size. Without `x_test`, a share (`test_fraction`) of each class's labeled examples is held
out as the test set (`metassl.data.holdout`).
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from metassl.data.arrays import ArrayDataset, as_images, first_non_integer, from_arrays
from metassl.data.holdout import _hold_out_arrays
from metassl.data.images import _first_line
from metassl.data.vectors import check_vectors, from_vectors
from metassl.errors import DataError

def not_npz(path: Path) -> DataError:
    return DataError(f"data: {path} is not an .npz file (an .npz is a zip archive of arrays, as "
                     "numpy.savez writes it)")


def load_npz(path: Path, test_fraction: float = 0.2) -> ArrayDataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise DataError(f"data: cannot read {path}: {exc.strerror or _first_line(exc)}") from None
    except (ValueError, zipfile.BadZipFile, EOFError) as exc:
        if not zipfile.is_zipfile(path):
            raise not_npz(path) from None
        raise DataError(f"data: {path} is not a readable .npz file ({_first_line(exc)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"data: {path} holds a single array; expected an .npz archive with x and y")
    with archive:
        held = list(archive.files)
        arrays = {}
        for key in ("x", "y", "x_test", "y_test", "classes"):
            if key not in archive.files:
                continue
            try:
                arrays[key] = archive[key]
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
                raise DataError(f"data: {path} key {key!r} cannot be read ({_first_line(exc)})") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"data: {path} has no array {key!r} (it has: {', '.join(held) or 'none'}; the "
                            "names are lower case: x, y, optionally x_test, y_test, classes)")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"data: {path} must hold x_test and y_test together")
    classes = None
    if "classes" in arrays:
        classes = _class_names(path, arrays["classes"])
        if len(set(classes)) != len(classes):
            raise DataError(f"data: {path} key 'classes' names a class twice")
    # x of N x D is feature vectors; images are N x H x W or N x C x H x W.
    vectors = arrays["x"].ndim == 2
    read_x = check_vectors if vectors else (lambda source, key, a: as_images(a, key, source))
    x = read_x(str(path), "x", arrays["x"])
    y = _npz_labels(path, "y", arrays["y"], -1, classes)
    _check_count(path, "x", x, "y", y)
    if not (y >= 0).any():
        raise DataError(f"data: {path} has no labeled data: every label in y is -1 (unlabeled); "
                        "training needs labeled examples of every class")
    x_test = y_test = None
    if "x_test" in arrays:
        x_test = read_x(str(path), "x_test", arrays["x_test"])
        y_test = _npz_labels(path, "y_test", arrays["y_test"], 0, classes)
        _check_count(path, "x_test", x_test, "y_test", y_test)
    named = classes is not None
    if classes is None:
        top = max(int(v.max()) if len(v) else -1 for v in (y, y_test) if v is not None)
        classes = [str(c) for c in range(max(top, 0) + 1)]
    _check_every_class_labeled(path, y, y_test, classes, named)
    x, y, x_test, y_test, held_out = _hold_out_arrays(str(path), x, y, x_test, y_test, test_fraction,
                                                       "vectors" if vectors else "images")
    if vectors:
        ds = from_vectors(str(path), x, y, x_test, y_test, classes=classes)
    else:
        ds = from_arrays(str(path), x, y, x_test, y_test, classes=classes, allow_unlabeled=True)
    ds.test_held_out = held_out
    return ds


def _class_names(path: Path, names: np.ndarray) -> list[str]:
    """The ``classes`` array as text: byte strings decoded (UTF-8), an empty name refused."""
    classes = []
    for i, name in enumerate(names.reshape(-1).tolist()):
        if isinstance(name, bytes):
            try:
                name = name.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"data: {path} classes[{i}] = {name!r} is not UTF-8 text") from None
        name = str(name)
        if not name.strip():
            raise DataError(f"data: {path} classes[{i}] is {name!r}; every class needs a name")
        classes.append(name)
    return classes


def _npz_labels(path: Path, key: str, y: np.ndarray, lowest: int,
                classes: Optional[list[str]]) -> np.ndarray:
    if y.ndim != 1:
        raise DataError(f"data: {path} key {key!r} has shape {'x'.join(map(str, y.shape))}; "
                        "expected N labels")
    bad = first_non_integer(y)
    if bad is not None:
        raise DataError(f"data: {path} {key}[{bad}] = {y[bad]} is not a whole number")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"data: {path} key {key!r} holds {y.dtype}; expected integer labels")
    y = y.astype(np.int64)
    top = len(classes) if classes is not None else None
    bad = np.flatnonzero((y < lowest) | (y >= (top if top is not None else np.iinfo(np.int64).max)))
    if bad.size:
        i = int(bad[0])
        upper = f"{top})" if top is not None else "inf)"
        extra = " (-1 marks unlabeled)" if lowest < 0 else ""
        raise DataError(f"data: {path} {key}[{i}] = {y[i]} is outside [{lowest}, {upper}{extra}")
    return y


def _check_every_class_labeled(path: Path, y: np.ndarray, y_test: Optional[np.ndarray],
                               classes: list[str], named: bool) -> None:
    """Labels are class indices 0..K-1, and every class needs labeled training examples in y: a
    test label or a class index that y never holds is named here, not as a split error later."""
    present = np.unique(y[y >= 0])
    held = f"y holds {_values(present)}"
    if y_test is not None:
        unseen = np.flatnonzero(~np.isin(y_test, present))
        if unseen.size:
            i = int(unseen[0])
            raise DataError(f"data: {path} y_test[{i}] = {y_test[i]} is a class that no label in y has ({held}); "
                            "every class needs labeled training examples")
    missing = np.setdiff1d(np.arange(len(classes)), present)
    if missing.size:
        c = int(missing[0])
        what = f"class {c} ({classes[c]!r} in 'classes')" if named else f"class {c}"
        raise DataError(f"data: {path} y has no labeled example of {what}; labels are class indices "
                        f"0..{len(classes) - 1} and every class needs labeled examples ({held})")


def _values(v: np.ndarray) -> str:
    shown = ", ".join(str(int(a)) for a in v[:6])
    return f"{shown}, ... ({len(v)} values, up to {int(v[-1])})" if len(v) > 6 else shown


def _check_count(path: Path, xkey: str, x: torch.Tensor, ykey: str, y: np.ndarray) -> None:
    if len(x) != len(y):
        raise DataError(f"data: {path} has {len(x)} images in {xkey} but {len(y)} labels in {ykey}")
