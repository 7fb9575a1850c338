"""IDX files (MNIST, Fashion-MNIST), gzipped or raw, recognised by magic bytes.

`read_idx` reads one file; `load_mnist_like` loads the four files of the MNIST layout from
the first folder that holds them all (see `metassl.data.locate`).
"""
from __future__ import annotations

import gzip
import math
import sys
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from metassl.data import locate
from metassl.data.arrays import ArrayDataset, _check_file_labels, _dims, from_files
from metassl.data.locate import _find_dir, _not_found, search_dirs
from metassl.errors import DataError

DIGIT_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

# Per-channel statistics of the official training sets on the 0..1 scale. Fixed values
# rather than recomputed ones so that normalisation does not depend on which subset or
# copy of the files was loaded.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)


_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not, told apart by content) into a native-endian array."""
    path = Path(path)
    raw = _read_bytes(path)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"data: {path} is a damaged gzip file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(
            f"data: {path} is not an IDX file: magic bytes are {raw[:4].hex(' ') or 'missing'}, "
            "expected 00 00 <type 08/09/0b/0c/0d/0e> <ndim>"
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"data: {path} is truncated: its header needs {header} bytes for {ndim} "
            f"dimensions, file has {len(raw)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = math.prod(dims) * dtype.itemsize  # Python ints: a corrupt header's dimensions do not overflow
    actual = len(raw) - header
    if actual != expected:
        problem = "is truncated" if actual < expected else "is too long"
        raise DataError(
            f"data: {path} {problem}: header says {_describe_idx(dims)} ({expected} bytes), "
            f"file has {actual}"
        )
    data = np.frombuffer(raw, dtype, count=expected // dtype.itemsize, offset=header)
    # astype both converts to native byte order and gives a writable, owned array.
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def _describe_idx(dims: tuple[int, ...]) -> str:
    if len(dims) == 1:
        return f"{dims[0]} values"
    kind = "images" if len(dims) == 3 else "items"
    return f"{dims[0]} {kind} of {_dims(dims[1:])}"


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"data: cannot read {path}: {e.strerror or e}") from None


MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# name -> (classes, mean, std, how to get the files)
_MNIST_LIKE = {
    "mnist": (
        DIGIT_CLASSES, MNIST_MEAN, MNIST_STD,
        "download the four MNIST IDX files (train-images-idx3-ubyte.gz etc.) into {dir}",
    ),
    "fashion_mnist": (
        FASHION_CLASSES, FASHION_MEAN, FASHION_STD,
        "run `apt-get install dataset-fashion-mnist` or put the four IDX files "
        "(train-images-idx3-ubyte.gz etc.) under {dir}",
    ),
}


def load_mnist_like(dirs: Sequence[str | Path], name: str) -> ArrayDataset:
    """Load MNIST-layout IDX files (raw or .gz) from the first of `dirs` that has all four.

    `name` picks class names and normalisation constants for "mnist" and "fashion_mnist";
    any other name (KMNIST, say) gets numbered classes and statistics from the data.
    """
    dirs = [Path(d) for d in dirs]
    classes, mean, std, how = _MNIST_LIKE.get(name, (None, None, None, ""))
    alternatives = [[f, f + ".gz"] for f in MNIST_FILES]
    found = _find_dir(dirs, alternatives)
    if found is None:
        wanted = ", ".join(f + "[.gz]" for f in MNIST_FILES)
        hint = how.format(dir=dirs[0]) if how and dirs else "put the four IDX files in one of them"
        raise _not_found(name, dirs, wanted, alternatives, hint)
    d, (xtr_f, ytr_f, xte_f, yte_f) = found
    x_train, y_train = _read_idx_pair(xtr_f, ytr_f)
    x_test, y_test = _read_idx_pair(xte_f, yte_f)
    if classes is not None:
        _check_file_labels(ytr_f, y_train, len(classes))
        _check_file_labels(yte_f, y_test, len(classes))
    return from_files(
        d,         name, x_train, y_train, x_test, y_test, classes=classes, hflip=False, mean=mean, std=std
    )


def _check_root_complete(name: str, data_root: str | Path | None) -> None:
    """A `data_root` holding some of the four IDX files but no complete set is an error: the
    search would otherwise go on to the system copy and train on other data without a word.
    One holding none of them leaves the system copy to be read, which is said on stderr."""
    if data_root is None:
        return
    system = search_dirs(name, None)
    dirs = [d for d in search_dirs(name, data_root) if d not in system]
    alternatives = [[f, f + ".gz"] for f in MNIST_FILES]
    if _find_dir(dirs, alternatives) is not None or _find_dir(system, alternatives) is None:
        return  # data_root's own copy is used, or the not-found error lists what each place lacks
    for d in dirs:
        have = [names[0] for names in alternatives if any((d / n).is_file() for n in names)]
        if have:
            lacking = [names[0] + "[.gz]" for names in alternatives if names[0] not in have]
            raise DataError(
                f"data: {name}: {d} lacks {', '.join(lacking)} (it holds {', '.join(have)}); "
                f"put all four IDX files there (data_root holds part of the dataset, so the "
                f"copy under {locate.SYSTEM_DATA_DIR} is not used)"
            )
    system_copy = _find_dir(system, alternatives)[0]
    print(f"metassl: {name}: data_root {data_root} holds none of its files; reading the copy in {system_copy}",
          file=sys.stderr)


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images_path), read_idx(labels_path)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataError(
            f"data: {images_path} holds {x.dtype} of shape {_dims(x.shape)}; "
            "expected uint8 images N x H x W"
        )
    if y.ndim != 1:
        raise DataError(f"data: {labels_path} holds shape {_dims(y.shape)}; expected N labels")
    if len(x) != len(y):
        raise DataError(
            f"data: {images_path} has {len(x)} images but {labels_path.name} has {len(y)} labels"
        )
    return x, y
