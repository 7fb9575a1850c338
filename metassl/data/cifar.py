"""CIFAR-10 and CIFAR-100: the "python version" pickle batches.

A pickle can run arbitrary code when loaded, so the batches are read by an unpickler that
accepts plain containers and numpy arrays only.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from metassl.data.arrays import ArrayDataset, _check_file_labels, _dims, from_files
from metassl.data.locate import _find_dir, _not_found, _root_text, search_dirs
from metassl.errors import DataError

# rather than recomputed ones so that normalisation does not depend on which subset or
# copy of the files was loaded.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


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
    data = _array(batch, b"data", path)
    labels = _array(batch, label_key, path)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"data: {path} key b'data' holds {data.dtype} of shape {_dims(data.shape)}; "
            "expected uint8 N x 3072"
        )
    if labels.ndim != 1:
        raise DataError(f"data: {path} key {label_key!r} holds an array of shape {_dims(labels.shape)}; "
                        "expected a list of N labels")
    if len(labels) != len(data):
        raise DataError(
            f"data: {path} key {label_key!r} holds {labels.size} labels for {len(data)} images"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"data: {path} key {label_key!r} holds {labels.dtype}, not integer labels")
    _check_file_labels(path, labels, num_classes, key=f"key {label_key!r}")
    # Each row is the red plane, then green, then blue, each 32x32 row-major.
    return data.reshape(-1, 3, 32, 32), labels


def _array(batch: dict, key: bytes, path: Path) -> np.ndarray:
    """``batch[key]`` as one numpy array; a ragged list or a value of mixed types is named."""
    value = _key(batch, key, path)
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        raise DataError(f"data: {path} key {key!r} holds a {type(value).__name__} that is not one array "
                        "(rows of different lengths or mixed types)") from None


def _cifar_names(path: Path, key: bytes) -> list[str]:
    names = _key(read_cifar_pickle(path), key, path)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"data: {path} key {key!r} holds {type(names).__name__}"
                        f"{'' if not isinstance(names, (list, tuple)) else ' with an entry that is not a name'}; "
                        "expected a list of class names")
    return [n.decode() if isinstance(n, bytes) else n for n in names]


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
    folder, paths = found
    classes = _cifar_names(paths[6], b"label_names")
    train = [_cifar_batch(p, b"labels", len(classes)) for p in paths[:5]]
    x_test, y_test = _cifar_batch(paths[5], b"labels", len(classes))
    return from_files(
        folder,         "cifar10",
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
    folder, (train_p, test_p, meta_p) = found
    kind = b"coarse" if coarse else b"fine"
    classes = _cifar_names(meta_p, kind + b"_label_names")
    x_train, y_train = _cifar_batch(train_p, kind + b"_labels", len(classes))
    x_test, y_test = _cifar_batch(test_p, kind + b"_labels", len(classes))
    return from_files(
        folder,         "cifar100", x_train, y_train, x_test, y_test,
        classes=classes, hflip=True, mean=CIFAR100_MEAN, std=CIFAR100_STD,
    )
