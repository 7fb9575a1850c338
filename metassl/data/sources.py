"""Readers for the datasets' real on-disk formats, producing in-memory uint8 tensors.

Every dataset ends up as an `ArrayDataset`: images as uint8 N,C,H,W tensors and int64
labels. Everything else (normalisation, augmentation, labelled/unlabelled splits) works
on that, so the readers here only have to get the pixels and labels right.

Formats:
  * IDX (MNIST, Fashion-MNIST), gzipped or raw, recognised by magic bytes;
  * CIFAR-10/100 "python version" pickle batches;
  * SVHN cropped digits (format 2) MATLAB v5 `.mat` files;
  * scikit-learn's bundled 8x8 digits (no files needed);
  * the user's own files: image folders, CSV lists, `.npz` arrays and the ImageNet
    folder layout, read by `metassl.data.files`.

All problems with files or arrays raise `DataError` with a one-line message naming the
file and what is wrong with it.
"""
from __future__ import annotations

import gzip
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from metassl.errors import ConfigError, DataError

DATASETS = ("digits", "signals", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn",
            "imagefolder", "csv", "npz", "imagenet", "arrays")
# Read by metassl.data.files; their options are config keys (see `dataset_options`).
FILE_DATASETS = ("imagefolder", "csv", "npz", "imagenet")

# Where distribution packages put datasets (Debian's dataset-fashion-mnist, for one).
# Module-level so tests can point it somewhere empty.
SYSTEM_DATA_DIR = Path("/usr/share/datasets")

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
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)

# sklearn digits has no official test split: this fraction of each class, chosen by a
# generator seeded with DIGITS_SPLIT_SEED, is held out, so the split never changes.
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


# --------------------------------------------------------------------------- container


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
    # Feature vectors encoded as images (metassl.api.inference.VectorEncoder): the encoder's
    # per-feature {"mean": [...], "std": [...]}; None for images.
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
        lo, hi = float(a.min()), float(a.max())
        # Written so that NaN fails too.
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


# --------------------------------------------------------------------------- IDX

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
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
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


# --------------------------------------------------------------------------- MNIST-like

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


def search_dirs(name: str, data_root: str | Path | None) -> list[Path]:
    """The directories searched for dataset `name`, in order."""
    roots: dict[str, list[str]] = {
        "mnist": ["mnist", "MNIST/raw", "."],
        "fashion_mnist": ["fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "."],
        "cifar10": ["cifar-10-batches-py", "cifar10/cifar-10-batches-py"],
        "cifar100": ["cifar-100-python", "cifar100/cifar-100-python"],
        "svhn": ["svhn", "."],
    }
    system: dict[str, list[str]] = {"mnist": ["mnist"], "fashion_mnist": ["fashion-mnist"]}
    if name not in roots:
        raise ConfigError(f"data: no search path for dataset {name!r}")
    dirs = []
    if data_root is not None:
        root = Path(data_root)
        dirs += [root if sub == "." else root / sub for sub in roots[name]]
    dirs += [SYSTEM_DATA_DIR / sub for sub in system.get(name, [])]
    return dirs


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
    return from_arrays(
        name, x_train, y_train, x_test, y_test, classes=classes, hflip=False, mean=mean, std=std
    )


def _check_root_complete(name: str, data_root: str | Path | None) -> None:
    """A `data_root` holding some of the four IDX files but no complete set is an error: the
    search would otherwise go on to the system copy and train on other data without a word."""
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
                f"copy under {SYSTEM_DATA_DIR} is not used)"
            )


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


def _find_dir(
    dirs: Sequence[Path], files: Sequence[Sequence[str]]
) -> tuple[Path, list[Path]] | None:
    """First dir holding every file; each file is a list of acceptable names, best first."""
    for d in dirs:
        chosen = []
        for names in files:
            hit = next((d / n for n in names if (d / n).is_file()), None)
            if hit is None:
                break
            chosen.append(hit)
        else:
            return d, chosen
    return None


def _not_found(
    name: str, dirs: Sequence[Path], wanted: str, files: Sequence[Sequence[str]], hint: str
) -> DataError:
    """One line: where we looked, which places came close, how to get the data."""
    partial = []
    for d in dirs:
        have = [names[0] for names in files if any((d / n).is_file() for n in names)]
        if have and len(have) < len(files):
            lacking = [names[0] for names in files if names[0] not in have]
            partial.append(f"{d} lacks {', '.join(lacking)}")
    if dirs:
        where = f"looked in {', '.join(str(d) for d in dirs)} for {wanted}"
    else:
        where = f"no data_root given, so nowhere to look for {wanted}"
    if dirs and not any(d.is_dir() for d in dirs):
        partial.append("none of these directories exist")
    close = f" ({'; '.join(partial)})" if partial else ""
    return DataError(f"data: {name} not found: {where}{close}; {hint}")


def _root_text(data_root: str | Path | None) -> str:
    return "<data_root> (and pass data_root)" if data_root is None else str(data_root)


# --------------------------------------------------------------------------- CIFAR


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only.

    CIFAR batches are pickles, and a pickle can run arbitrary code when loaded; the real
    files only need numpy's array reconstruction, so refuse everything else.
    """

    _ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        # Pickles made with numpy 1.x (the real CIFAR files) say numpy.core.
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core"):]
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy._core") and not hasattr(np, "_core"):
            module = "numpy.core" + module[len("numpy._core"):]
        return super().find_class(module, name)


def read_cifar_pickle(path: str | Path) -> dict[bytes, Any]:
    """Load one CIFAR python-version file (a data batch or meta) as a dict with bytes keys."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            # encoding="bytes" because the real files are Python 2 pickles of str keys.
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise DataError(f"data: cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - damaged pickles raise nearly any exception type
        raise DataError(
            f"data: {path} is not a readable CIFAR pickle ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"data: {path} holds a {type(obj).__name__}, expected a dict")
    # Re-pickled copies made under Python 3 may have str keys; treat them alike.
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def _key(batch: dict[bytes, Any], key: bytes, path: Path) -> Any:
    if key not in batch:
        have = ", ".join(repr(k) for k in batch) or "none"
        raise DataError(f"data: {path} has no key {key!r} (keys: {have})")
    return batch[key]


def _cifar_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_pickle(path)
    data = np.asarray(_key(batch, b"data", path))
    labels = np.asarray(_key(batch, label_key, path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"data: {path} key b'data' holds {data.dtype} of shape {_dims(data.shape)}; "
            "expected uint8 N x 3072"
        )
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(
            f"data: {path} key {label_key!r} holds {labels.size} labels for {len(data)} images"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"data: {path} key {label_key!r} holds {labels.dtype}, not integer labels")
    _check_file_labels(path, labels, num_classes, key=f"key {label_key!r}")
    # Each row is the red plane, then green, then blue, each 32x32 row-major.
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_names(path: Path, key: bytes) -> list[str]:
    names = _key(read_cifar_pickle(path), key, path)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
CIFAR100_FILES = ["train", "test", "meta"]
_CIFAR_HOW = (
    "download the CIFAR-{n} python version (cifar-{n}-python.tar.gz) and extract it under {root}"
)


def load_cifar10(data_root: str | Path | None) -> ArrayDataset:
    dirs = search_dirs("cifar10", data_root)
    files = [[f] for f in CIFAR10_FILES]
    found = _find_dir(dirs, files)
    if found is None:
        wanted = "data_batch_1..5, test_batch, batches.meta"
        hint = _CIFAR_HOW.format(n=10, root=_root_text(data_root))
        raise _not_found("cifar10", dirs, wanted, files, hint)
    _, paths = found
    classes = _cifar_names(paths[6], b"label_names")
    train = [_cifar_batch(p, b"labels", len(classes)) for p in paths[:5]]
    x_test, y_test = _cifar_batch(paths[5], b"labels", len(classes))
    return from_arrays(
        "cifar10",
        np.concatenate([x for x, _ in train]),
        np.concatenate([y for _, y in train]),
        x_test, y_test, classes=classes, hflip=True, mean=CIFAR10_MEAN, std=CIFAR10_STD,
    )


def load_cifar100(data_root: str | Path | None, coarse: bool = False) -> ArrayDataset:
    """CIFAR-100 with its 100 fine labels, or the 20 superclasses when `coarse`."""
    dirs = search_dirs("cifar100", data_root)
    files = [[f] for f in CIFAR100_FILES]
    found = _find_dir(dirs, files)
    if found is None:
        hint = _CIFAR_HOW.format(n=100, root=_root_text(data_root))
        raise _not_found("cifar100", dirs, "train, test, meta", files, hint)
    _, (train_p, test_p, meta_p) = found
    kind = b"coarse" if coarse else b"fine"
    classes = _cifar_names(meta_p, kind + b"_label_names")
    x_train, y_train = _cifar_batch(train_p, kind + b"_labels", len(classes))
    x_test, y_test = _cifar_batch(test_p, kind + b"_labels", len(classes))
    return from_arrays(
        "cifar100", x_train, y_train, x_test, y_test,
        classes=classes, hflip=True, mean=CIFAR100_MEAN, std=CIFAR100_STD,
    )


# --------------------------------------------------------------------------- SVHN

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
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    except OSError as e:
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
    return from_arrays(
        "svhn", x_train, y_train, x_test, y_test,
        classes=DIGIT_CLASSES, hflip=False, mean=SVHN_MEAN, std=SVHN_STD,
    )


# --------------------------------------------------------------------------- digits


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


# --------------------------------------------------------------------------- entry point

_OPTIONS = {"cifar100": {"coarse"}, "svhn": {"svhn_extra"}}


def load_dataset(name: str, data_root: str | Path | None = None, **options: Any) -> ArrayDataset:
    """Load a built-in dataset by name (see `DATASETS`).

    `data_root` is searched first (see `search_dirs`); MNIST and Fashion-MNIST also fall
    back to `SYSTEM_DATA_DIR`. Options: `coarse` (cifar100), `svhn_extra` (svhn); the file
    datasets take those listed in `metassl.data.files.OPTIONS`.
    """
    if name not in DATASETS:
        raise ConfigError(f"data: unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if name in FILE_DATASETS:
        from metassl.data import files  # it builds on this module

        return files.load_files(name, data_root, **options)
    if name == "arrays":
        raise ConfigError("data: dataset 'arrays' names arrays given to the Python API "
                          "(metassl.SSLClassifier.fit); there is nothing to load from disk")
    allowed = _OPTIONS.get(name, set())
    for key, value in options.items():
        if key not in allowed:
            valid = ", ".join(sorted(allowed)) or "none"
            raise ConfigError(
                f"data: option {key!r} does not apply to {name} (its options: {valid})"
            )
        if not isinstance(value, bool):
            raise ConfigError(f"data: option {key!r} must be true or false, got {value!r}")

    if name == "digits":
        return load_digits()
    if name == "signals":
        from metassl.data.signals import load_signals

        return load_signals()
    if name in ("mnist", "fashion_mnist"):
        _check_root_complete(name, data_root)
        return load_mnist_like(search_dirs(name, data_root), name)
    if name == "cifar10":
        return load_cifar10(data_root)
    if name == "cifar100":
        return load_cifar100(data_root, coarse=options.get("coarse", False))
    return load_svhn(data_root, extra=options.get("svhn_extra", False))


def dataset_options(cfg: Any) -> dict[str, Any]:
    """The `load_dataset` options that a run's TrainConfig sets for its dataset."""
    options: dict[str, Any] = {"svhn_extra": True} if cfg.svhn_extra else {}
    if cfg.dataset in FILE_DATASETS:
        from metassl.data import files

        options.update({key: getattr(cfg, key) for key in files.OPTIONS[cfg.dataset]})
    return options
