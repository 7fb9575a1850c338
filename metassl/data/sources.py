"""The one entry point to every dataset: `load_dataset(name, data_root, **options)`.

Every dataset ends up as an `ArrayDataset` (`metassl.data.arrays`). Each on-disk format has
its own module:

  idx          IDX files (MNIST, Fashion-MNIST), gzipped or raw, recognised by magic bytes
  cifar        CIFAR-10/100 "python version" pickle batches
  svhn         SVHN cropped digits (format 2) MATLAB v5 `.mat` files
  digits       scikit-learn's bundled 8x8 digits (no files needed)
  signals      a generated set of 1-D signals (feature vectors; no files needed)
  imagefolder  the user's own images in class folders
  csvfile      the user's own CSV: a list of image paths or a table of feature vectors
  npz          the user's own `.npz` arrays: images or feature vectors
  imagenet     the ImageNet folder layout

They share `locate` (where the built-in datasets' files are looked for), `images` (decoding
image files), `holdout` (test sets fixed by a seed) and `vectors` (feature vectors encoded as
images); `runinfo` writes and reads what a trained run needs to read new inputs.

All problems with files or arrays raise `DataError` with a one-line message naming the
file and what is wrong with it.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from metassl.data.arrays import ArrayDataset
from metassl.data.cifar import load_cifar10, load_cifar100
from metassl.data.digits import load_digits
from metassl.data.idx import _check_root_complete, load_mnist_like
from metassl.data.locate import check_root, search_dirs
from metassl.data.svhn import load_svhn
from metassl.errors import ConfigError, DataError

DATASETS = ("digits", "signals", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn",
            "imagefolder", "csv", "npz", "imagenet", "arrays")
# Made here, from no files: data_root means nothing to them.
BUILT_IN = ("digits", "signals", "arrays")
# The user's own files; their options are config keys (see `dataset_options`).
FILE_DATASETS = ("imagefolder", "csv", "npz", "imagenet")
# Read from every image under their data_root folder.
FOLDER_DATASETS = ("imagefolder", "imagenet")

# Options of each file dataset; every one is also a TrainConfig key of the same name.
OPTIONS = {
    "imagefolder": ("image_size", "channels", "test_fraction"),
    "csv": ("image_size", "channels", "test_fraction"),
    "npz": ("test_fraction",),
    "imagenet": ("image_size", "channels", "imagenet_fraction"),
}
_ROOT_WHAT = {"imagefolder": "a folder", "csv": "a .csv file", "npz": "an .npz file",
              "imagenet": "the ImageNet folder"}
# Options of the built-in datasets.
_OPTIONS = {"cifar100": {"coarse"}, "svhn": {"svhn_extra"}}


def load_files(name: str, data_root: str | Path | None, **options: Any) -> ArrayDataset:
    """Load file dataset `name` (a key of `OPTIONS`) from `data_root` with all its options.

    Every option is required: they decide the pixels and the train/test division, so a run
    re-read with a default in place of its own setting would silently get other data.
    """
    for key in options:
        if key not in OPTIONS[name]:
            raise ConfigError(f"data: option {key!r} does not apply to {name} "
                              f"(its options: {', '.join(OPTIONS[name])})")
    missing = [key for key in OPTIONS[name] if key not in options]
    if missing:
        raise ConfigError(f"data: dataset {name} needs the options {', '.join(missing)} "
                          "(config keys; metassl.data.sources.dataset_options(cfg) gives them)")
    if data_root is None:
        raise ConfigError(f"config: dataset={name!r} needs data_root=<{_ROOT_WHAT[name]}>")
    # Deferred: the readers of image files import Pillow.
    from metassl.data.csvfile import load_csv
    from metassl.data.imagefolder import load_imagefolder
    from metassl.data.imagenet import load_imagenet
    from metassl.data.npz import load_npz

    loader = {"imagefolder": load_imagefolder, "csv": load_csv, "npz": load_npz,
              "imagenet": load_imagenet}[name]
    check_root(name, data_root, {"csv": ".csv", "npz": ".npz"}.get(name, "folder"))
    with unreadable_as_data_error(data_root):
        return loader(Path(data_root), **options)


@contextmanager
def unreadable_as_data_error(data_root: str | Path | None) -> Iterator[None]:
    """A folder or file a reader could not open (no permission, an I/O error) as one line naming it."""
    try:
        yield
    except OSError as exc:
        raise DataError(f"data: cannot read {exc.filename or data_root}: {exc.strerror or exc}") from None


def load_dataset(name: str, data_root: str | Path | None = None, **options: Any) -> ArrayDataset:
    """Load a built-in dataset by name (see `DATASETS`).

    `data_root` is searched first (see `metassl.data.locate.search_dirs`); MNIST and
    Fashion-MNIST also fall back to `metassl.data.locate.SYSTEM_DATA_DIR`. Options: `coarse`
    (cifar100), `svhn_extra` (svhn); the file datasets take those listed in `OPTIONS`
    (see `load_files`).
    """
    if name not in DATASETS:
        raise ConfigError(f"data: unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if name in FILE_DATASETS:
        return load_files(name, data_root, **options)
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
    with unreadable_as_data_error(data_root):
        return _load_built_in(name, data_root, options)


def _load_built_in(name: str, data_root: str | Path | None, options: dict[str, Any]) -> ArrayDataset:
    check_root(name, data_root)
    if name in ("mnist", "fashion_mnist"):
        _check_root_complete(name, data_root)
        return load_mnist_like(search_dirs(name, data_root), name)
    if name == "cifar10":
        return load_cifar10(data_root)
    if name == "cifar100":
        return load_cifar100(data_root, coarse=options.get("coarse", False))
    return load_svhn(data_root, extra=options.get("svhn_extra", False))


def key_datasets() -> dict[str, tuple[str, ...]]:
    """Each data key of TrainConfig and the datasets that read it."""
    keys: dict[str, tuple[str, ...]] = {"svhn_extra": ("svhn",), "cifar100_coarse": ("cifar100",),
                                        "data_root": tuple(d for d in DATASETS if d not in BUILT_IN)}
    for name, options in OPTIONS.items():
        for key in options:
            keys[key] = keys.get(key, ()) + (name,)
    return keys


def dataset_options(cfg: Any) -> dict[str, Any]:
    """The `load_dataset` options that a run's TrainConfig sets for its dataset."""
    options: dict[str, Any] = {"svhn_extra": True} if cfg.svhn_extra else {}
    if cfg.cifar100_coarse:
        options["coarse"] = True
    if cfg.dataset in FILE_DATASETS:
        options.update({key: getattr(cfg, key) for key in OPTIONS[cfg.dataset]})
    return options
