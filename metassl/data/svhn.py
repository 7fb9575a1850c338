"""SVHN cropped digits (format 2): MATLAB v5 `.mat` files, read with scipy."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from metassl.data.arrays import ArrayDataset, _dims, from_files
from metassl.data.idx import DIGIT_CLASSES
from metassl.data.locate import _find_dir, _not_found, _root_text, search_dirs
from metassl.errors import DataError

# rather than recomputed ones so that normalisation does not depend on which subset or
# copy of the files was loaded.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)


SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
_SVHN_HOW = (
    "download train_32x32.mat and test_32x32.mat (and extra_32x32.mat for svhn_extra) "
    "of SVHN format 2 (cropped digits) into {root}"
)


def read_svhn_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN format-2 file: uint8 images N,3,32,32 and labels 0..9 (10 means 0)."""
    import scipy.io  # deferred: only SVHN needs scipy, and it is slow to import

    path = Path(path)
    if not path.is_file():
        raise DataError(f"data: {path} does not exist")
    try:
        with open(path, "rb") as f:  # opened here: scipy reports a file it cannot open as a bad name
            mat = scipy.io.loadmat(f, variable_names=["X", "y"])
    except OSError as e:
        if e.errno is None:  # scipy's own: the file ends before its contents do
            raise DataError(f"data: {path} is truncated or damaged ({e}); download it again") from None
        raise DataError(f"data: cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - scipy reports damaged files with many types
        raise DataError(
            f"data: {path} is not a readable MATLAB v5 file ({type(e).__name__}: {e})"
        ) from None
    for key in ("X", "y"):
        if key not in mat:
            raise DataError(f"data: {path} has no variable {key!r}")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3:
        raise DataError(
            f"data: {path} variable X holds {x.dtype} of shape {_dims(x.shape)}; "
            "expected uint8 H x W x 3 x N"
        )
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"data: {path} variable y holds {y.dtype}; expected numeric labels 1..10")
    y = y.reshape(-1)
    if len(y) != x.shape[3]:
        raise DataError(f"data: {path} has {x.shape[3]} images in X but {len(y)} labels in y")
    bad = np.flatnonzero((y < 1) | (y > 10) | (y != np.round(y)))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"data: {path} label y[{i}] = {y[i]} is outside 1..10")
    labels = y.astype(np.int64) % 10  # SVHN writes digit 0 as 10
    # MATLAB stores each image as X(:, :, :, n) = rows x cols x channels.
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))
    return images, labels


def load_svhn(data_root: str | Path | None, extra: bool = False) -> ArrayDataset:
    """SVHN train/test; with `extra`, the 531k 'extra' images are appended to train."""
    dirs = search_dirs("svhn", data_root)
    files = [[SVHN_FILES["train"]], [SVHN_FILES["test"]]]
    found = _find_dir(dirs, files)
    if found is None:
        root = _root_text(None) if data_root is None else str(Path(data_root) / "svhn")
        hint = _SVHN_HOW.format(root=root)
        raise _not_found("svhn", dirs, "train_32x32.mat, test_32x32.mat", files, hint)
    d, (train_p, test_p) = found
    x_train, y_train = read_svhn_mat(train_p)
    if extra:
        extra_p = d / SVHN_FILES["extra"]
        if not extra_p.is_file():
            raise DataError(
                f"data: svhn_extra is set but {extra_p} is missing; download extra_32x32.mat "
                f"of SVHN format 2 next to {train_p.name}"
            )
        x_extra, y_extra = read_svhn_mat(extra_p)
        x_train = np.concatenate([x_train, x_extra])
        y_train = np.concatenate([y_train, y_extra])
    x_test, y_test = read_svhn_mat(test_p)
    return from_files(
        d,         "svhn", x_train, y_train, x_test, y_test,
        classes=DIGIT_CLASSES, hflip=False, mean=SVHN_MEAN, std=SVHN_STD,
    )
