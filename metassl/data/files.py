"""The user's own data on disk: image folders, CSV lists, `.npz` arrays and ImageNet.

Layouts, each found at the config key `data_root`:

  imagefolder  labeled/<class>/<image>   one folder per class, images at any depth below it
               unlabeled/<image>         optional, any depth
               test/<class>/<image>      optional
  csv          a CSV file of `path,label[,split]` rows; an empty label marks an unlabeled
               image, split is `train` (the default) or `test`; paths are relative to the
               CSV's folder; an optional header row names the columns (others are ignored).
               Or a table of feature vectors: numbers in every column but the label (the
               column a header names `label`, else the last) and an optional `split` column
  npz          an `.npz` archive with `x` (N,C,H,W or N,H,W; uint8 or float 0..1; or N,D
               feature vectors), `y` (-1 marks unlabeled), optional `x_test`, `y_test` and
               `classes` (names)
  imagenet     ILSVRC2012 as train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (val sorted into
               class folders); `imagenet_fraction` reads that share of each class

Image files (PNG, JPEG and what else Pillow reads) are decoded with Pillow, turned upright
by their EXIF orientation and resized to image_size x image_size (the whole image,
squashed, not cropped); `channels` null makes a dataset RGB if any image has colour, else
grayscale. Arrays keep their size. Class names are folder names, CSV labels or the npz
`classes`, ordered numerically when all are integers and alphabetically otherwise.

Data without a test set gets one: a fixed share (`test_fraction`) of each class's labeled
examples, chosen with a fixed seed, is held out, and the dataset says so (`test_held_out`).

Everything is held in memory as uint8: N x C x S x S bytes, e.g. 3.9 GB for all 1.28M
ImageNet training images at 32 x 32 (15.7 GB at 64, 63 GB at 128).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from metassl.data.sources import ArrayDataset, as_images, from_arrays, stratified_split
from metassl.data.vectors import check_vectors, from_vectors
from metassl.errors import CheckpointError, ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# The held-out test set and the ImageNet subset must not change with the run's seed, so that
# runs of different seeds are scored on the same images.
HOLDOUT_SEED = 0
IMAGENET_SEED = 0
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Options of each dataset; every one is also a TrainConfig key of the same name.
OPTIONS = {
    "imagefolder": ("image_size", "channels", "test_fraction"),
    "csv": ("image_size", "channels", "test_fraction"),
    "npz": ("test_fraction",),
    "imagenet": ("image_size", "channels", "imagenet_fraction"),
}
_ROOT_WHAT = {"imagefolder": "a folder", "csv": "a .csv file", "npz": "an .npz file",
              "imagenet": "the ImageNet folder"}
_READ_CHUNK = 1024


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
    loader = {"imagefolder": load_imagefolder, "csv": load_csv, "npz": load_npz,
              "imagenet": load_imagenet}[name]
    return loader(Path(data_root), **options)


# --------------------------------------------------------------------------- images


def to_array(img: Image.Image, hw: Optional[tuple[int, int]], channels: Optional[int]) -> np.ndarray:
    """A Pillow image as uint8 C,H,W resized to `hw`; `channels` None keeps gray images 1-channel."""
    if img.mode.startswith("I;16"):
        # Pillow's own conversion of 16-bit images to 8 bits clips instead of scaling.
        img = Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8))
    mode = {1: "L", 3: "RGB"}.get(channels, "L" if img.mode in ("1", "L", "LA", "I", "F") else "RGB")
    img = img.convert(mode)
    if hw is not None and img.size != (hw[1], hw[0]):
        img = img.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
    a = np.asarray(img)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if channels is None and len(a) == 3 and (a[0] == a[1]).all() and (a[1] == a[2]).all():
        a = a[:1]
    return np.ascontiguousarray(a)


def read_image(path: Path, hw: Optional[tuple[int, int]], channels: Optional[int]) -> np.ndarray:
    """Decode one image file as uint8 C,H,W (see `to_array`); a bad file is a one-line DataError."""
    try:
        with Image.open(path) as img:
            if hw is not None:
                # JPEGs then decode at a reduced scale that is still at least hw: much faster.
                img.draft({1: "L", 3: "RGB"}.get(channels), (hw[1], hw[0]))
            img.load()
            upright = ImageOps.exif_transpose(img)
            return to_array(upright, hw, channels)
    except FileNotFoundError:
        raise DataError(f"data: {path} does not exist") from None
    except UnidentifiedImageError:
        raise DataError(f"data: {path} is not a readable image (not in a format Pillow knows, "
                        "or damaged at the start)") from None
    except OSError as exc:
        if exc.strerror:
            raise DataError(f"data: cannot read {path}: {exc.strerror}") from None
        raise DataError(f"data: {path} is not a readable image ({_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - damaged files make Pillow raise nearly any type
        raise DataError(f"data: {path} is not a readable image ({type(exc).__name__}: "
                        f"{_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_images(paths: Sequence[Path], hw: Optional[tuple[int, int]],
                channels: Optional[int]) -> np.ndarray:
    """Decode `paths` into one uint8 N,C,H,W array, on `torch.get_num_threads()` threads.

    With `channels` None the result is RGB if any image has colour (gray ones are repeated
    over the three channels), else one channel. Without `hw` all images must share a size.
    """
    out: Optional[np.ndarray] = None
    color = False
    workers = max(1, torch.get_num_threads())

    def read(path: Path) -> np.ndarray:
        return read_image(path, hw, channels)

    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(paths), _READ_CHUNK):
            chunk = paths[start:start + _READ_CHUNK]
            for i, (path, a) in enumerate(zip(chunk, pool.map(read, chunk)), start):
                if out is None:
                    # Gray images broadcast into the three channels when the set turns out RGB.
                    out = np.empty((len(paths), channels or 3, *a.shape[1:]), np.uint8)
                    first = path
                if a.shape[1:] != out.shape[2:]:
                    raise DataError(
                        f"data: {path} is {a.shape[2]}x{a.shape[1]} but {first} is "
                        f"{out.shape[3]}x{out.shape[2]}; set image_size to resize them all")
                out[i] = a
                color |= len(a) == 3
    if out is None:
        raise DataError("data: no images to read")
    if channels is None and not color:
        out = np.ascontiguousarray(out[:, :1])
    return out


def _listing(names: Sequence[str], limit: int = 10) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _natural(names: Sequence[str]) -> list[str]:
    if all(re.fullmatch(r"-?\d+", n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def images_under(folder: Path) -> list[Path]:
    """Image files anywhere below `folder` (hidden ones skipped), sorted."""
    found = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root, n) for n in names
                  if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES]
    return sorted(found)


def _class_folders(folder: Path, known: Optional[Sequence[str]] = None) -> list[tuple[str, list[Path]]]:
    """(class, images) for each class folder in `folder`; with `known`, only those classes."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    stray = sorted(p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if stray:
        raise DataError(f"data: {stray[0]} lies directly in {folder}; put each image in "
                        f"{folder}{os.sep}<class>{os.sep}")
    names = _natural([p.name for p in entries if p.is_dir()])
    if not names:
        raise DataError(f"data: {folder} has no class folders; expected "
                        f"{folder}{os.sep}<class>{os.sep}<image>")
    out = []
    for name in names:
        if known is not None and name not in known:
            raise DataError(f"data: {folder / name} is a class that has no labeled training images "
                            f"(known classes: {_listing(known)})")
        images = images_under(folder / name)
        if not images:
            raise DataError(f"data: class folder {folder / name} holds no images "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        out.append((name, images))
    return out


def _flatten(folders: list[tuple[str, list[Path]]], classes: Sequence[str]) -> tuple[list[Path], list[int]]:
    index = {name: c for c, name in enumerate(classes)}
    paths = [p for _, ps in folders for p in ps]
    labels = [index[name] for name, ps in folders for _ in ps]
    return paths, labels


# --------------------------------------------------------------------------- held-out test


def holdout(y: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: `fraction` of each class's labeled examples (y >= 0) go to test."""
    labeled = np.flatnonzero(y >= 0)
    _, test = stratified_split(y[labeled], fraction, HOLDOUT_SEED)
    test_idx = labeled[test]
    return np.setdiff1d(np.arange(len(y)), test_idx), test_idx


def _say_held_out(source: str, n: int, fraction: float) -> None:
    print(f"metassl: {source} has no test set; held out {n} labeled images ({fraction:.0%} of each "
          f"class, fixed seed {HOLDOUT_SEED}) as the test set (test_fraction)", file=sys.stderr)


def _row_classes(path: Path, rows: list) -> tuple[list[str], dict[str, int]]:
    """The class names of a table's labeled training rows (line, x, label, split), naturally sorted,
    and each name's index."""
    classes = _natural(sorted({label for _, _, label, split in rows if split == "train" and label}))
    if not classes:
        raise DataError(f"data: {path} has no labeled training rows")
    return classes, {name: c for c, name in enumerate(classes)}


def _hold_out_arrays(source: str, x, y, x_test, y_test, test_fraction: float):
    """Where a source has no test split, hold out ``test_fraction`` of each class's labeled rows as
    one; returns (x, y, x_test, y_test, held_out)."""
    if x_test is not None or test_fraction <= 0:
        return x, y, x_test, y_test, False
    train_idx, test_idx = holdout(y, test_fraction)
    if not len(test_idx):
        return x, y, x_test, y_test, False
    _say_held_out(source, len(test_idx), test_fraction)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx], True


def _from_paths(source: str, classes: list[str], paths: list[Path], y: Sequence[int],
                test_paths: list[Path], test_y: Sequence[int], image_size: Optional[int],
                channels: Optional[int], test_fraction: float, *, hflip: bool = False,
                mean: Optional[Sequence[float]] = None,
                std: Optional[Sequence[float]] = None) -> ArrayDataset:
    """Read train (y -1: unlabeled) and test images in one pass, so both get the same channels."""
    y = np.asarray(y, dtype=np.int64)
    test_y = np.asarray(test_y, dtype=np.int64)
    held_out = False
    if not test_paths and test_fraction > 0:
        train_idx, test_idx = holdout(y, test_fraction)
        if len(test_idx):
            held_out = True
            test_paths, test_y = [paths[i] for i in test_idx], y[test_idx]
            paths, y = [paths[i] for i in train_idx], y[train_idx]
            _say_held_out(source, len(test_idx), test_fraction)
    hw = None if image_size is None else (image_size, image_size)
    x = read_images(paths + test_paths, hw, channels)
    n = len(paths)
    test = (x[n:], test_y) if test_paths else (None, None)
    ds = from_arrays(source, x[:n], y, *test, classes=classes, hflip=hflip, mean=mean, std=std,
                     allow_unlabeled=True)
    ds.test_held_out = held_out
    return ds


# --------------------------------------------------------------------------- layouts


def load_imagefolder(root: Path, image_size: Optional[int] = 32, channels: Optional[int] = None,
                     test_fraction: float = 0.2) -> ArrayDataset:
    if not (root / "labeled").is_dir():
        what = "does not exist" if not root.exists() else "has no labeled/ folder"
        raise DataError(f"data: {root} {what}; expected labeled/<class>/<image>, optionally "
                        "unlabeled/<image> and test/<class>/<image>")
    folders = _class_folders(root / "labeled")
    classes = [name for name, _ in folders]
    paths, y = _flatten(folders, classes)
    unlabeled = images_under(root / "unlabeled")
    test_paths: list[Path] = []
    test_y: list[int] = []
    if (root / "test").is_dir():
        test_paths, test_y = _flatten(_class_folders(root / "test", classes), classes)
    return _from_paths(str(root), classes, paths + unlabeled, y + [-1] * len(unlabeled),
                       test_paths, test_y, image_size, channels, test_fraction)


def load_csv(path: Path, image_size: Optional[int] = 32, channels: Optional[int] = None,
             test_fraction: float = 0.2) -> ArrayDataset:
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often write a BOM
    except OSError as exc:
        raise DataError(f"data: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"data: {path} is not a UTF-8 text file") from None
    layout = _table_layout(text)
    if layout is not None:
        return _load_table(path, text, *layout, test_fraction=test_fraction)
    reader = csv.reader(io.StringIO(text))
    header: Optional[dict[str, int]] = None
    rows: list[tuple[int, Path, str, str]] = []  # line, file, label, split
    try:
        for row in reader:
            line = reader.line_num
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            if not rows and header is None and "path" in [c.lower() for c in cells]:
                names = [c.lower() for c in cells]
                if "label" not in names:
                    raise DataError(f"data: {path} line {line}: the header has no 'label' column")
                header = {k: names.index(k) for k in ("path", "label", "split") if k in names}
                continue
            if header is None and len(cells) not in (2, 3):
                raise DataError(f"data: {path} line {line}: expected path,label[,split], "
                                f"got {len(cells)} fields (a table of feature vectors has numbers in "
                                "every column but its label column)")
            columns = header or dict(zip(("path", "label", "split"), range(len(cells))))
            if len(cells) <= max(columns.values()):
                raise DataError(f"data: {path} line {line}: expected {max(columns.values()) + 1} "
                                f"fields, got {len(cells)}")
            name, label = cells[columns["path"]], cells[columns["label"]]
            split = _row_split(path, line, cells[columns["split"]] if "split" in columns else "", label)
            file = path.parent / name
            if not name or not file.is_file():
                raise DataError(f"data: {path} line {line}: image {name!r} does not exist "
                                f"(looked for {file})")
            rows.append((line, file, label, split))
    except csv.Error as exc:
        raise DataError(f"data: {path} line {reader.line_num}: {exc}") from None
    classes, index = _row_classes(path, rows)
    paths, y, test_paths, test_y = [], [], [], []
    for line, file, label, split in rows:
        if split == "test":
            if label not in index:
                raise DataError(f"data: {path} line {line}: class {label!r} has no labeled training "
                                f"rows (known classes: {_listing(classes)})")
            test_paths.append(file)
            test_y.append(index[label])
        else:
            paths.append(file)
            y.append(index[label] if label else -1)
    return _from_paths(str(path), classes, paths, y, test_paths, test_y, image_size, channels,
                       test_fraction)


def _row_split(path: Path, line: int, split: str, label: str, what: str = "image") -> str:
    """A CSV row's split (train by default), checked with its label ('' marks an unlabeled `what`)."""
    split = split.lower() or "train"
    if split not in ("train", "test"):
        raise DataError(f"data: {path} line {line}: split {split!r} is not train or test")
    if split == "test" and not label:
        raise DataError(f"data: {path} line {line}: a test {what} needs a label")
    if label.lower() == "nan":
        raise DataError(f"data: {path} line {line}: label {label!r} is a missing value, not a class; "
                        f"leave the label empty for an unlabeled {what}")
    return split


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _table_layout(text: str) -> Optional[tuple[Optional[list[str]], int, Optional[int]]]:
    """(header, label column, split column) of a CSV table of feature vectors, or None for a list
    of image paths. A table's first data row holds numbers in every column but the label and split
    columns; the label column is the one a header names `label`, else the last column."""
    first: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text)):
            cells = [c.strip() for c in row]
            if any(cells):
                first.append(cells)
                if len(first) == 2:
                    break
    except csv.Error:
        return None  # load_csv names the line
    if not first or "path" in [c.lower() for c in first[0]]:
        return None
    head = first[0]
    if len(head) >= 2 and all(_is_number(c) for c in head[:-1]):
        return None, len(head) - 1, None
    names = [c.lower() for c in head]
    label = names.index("label") if "label" in names else len(names) - 1
    split = names.index("split") if "split" in names else None
    if len(first) == 2 and len(head) >= 2 and len(first[1]) == len(head) and all(
            _is_number(c) for j, c in enumerate(first[1]) if j not in (label, split)):
        return head, label, split
    return None


def _load_table(path: Path, text: str, header: Optional[list[str]], label_col: int,
                split_col: Optional[int], test_fraction: float) -> ArrayDataset:
    """A CSV table of feature vectors: one row per example, numbers in every column but the label
    (empty: unlabeled) and the optional split column."""
    width = len(header) if header is not None else None
    names = header or []
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, list[float], str, str]] = []  # line, features, label, split
    skip_header = header is not None
    try:
        for row in reader:
            line = reader.line_num
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            if skip_header:
                skip_header = False
                continue
            width = width or len(cells)
            if len(cells) != width:
                raise DataError(f"data: {path} line {line}: expected {width} fields, got {len(cells)}")
            label = cells[label_col]
            split = _row_split(path, line, cells[split_col] if split_col is not None else "", label, "row")
            features = []
            for j, cell in enumerate(cells):
                if j in (label_col, split_col):
                    continue
                value = float(cell) if _is_number(cell) else None
                if value is None or not np.isfinite(value):
                    column = f"{names[j]!r}" if names else str(j + 1)
                    raise DataError(f"data: {path} line {line} column {column}: {cell!r} is not a finite "
                                    "number (every column but the label holds a feature)")
                features.append(value)
            rows.append((line, features, label, split))
    except csv.Error as exc:
        raise DataError(f"data: {path} line {reader.line_num}: {exc}") from None
    classes, index = _row_classes(path, rows)
    for line, _, label, split in rows:
        if split == "test" and label not in index:
            raise DataError(f"data: {path} line {line}: class {label!r} has no labeled training "
                            f"rows (known classes: {_listing(classes)})")
    train = [r for r in rows if r[3] == "train"]
    test = [r for r in rows if r[3] == "test"]
    x = np.array([r[1] for r in train], dtype=np.float64)
    y = np.array([index[r[2]] if r[2] else -1 for r in train], dtype=np.int64)
    x_test = np.array([r[1] for r in test], dtype=np.float64) if test else None
    y_test = np.array([index[r[2]] for r in test], dtype=np.int64) if test else None
    x, y, x_test, y_test, held_out = _hold_out_arrays(str(path), x, y, x_test, y_test, test_fraction)
    ds = from_vectors(str(path), x, y, x_test, y_test, classes=classes)
    ds.test_held_out = held_out
    return ds


def load_npz(path: Path, test_fraction: float = 0.2) -> ArrayDataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise DataError(f"data: cannot read {path}: {exc.strerror or _first_line(exc)}") from None
    except (ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"data: {path} is not a readable .npz file ({_first_line(exc)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"data: {path} holds a single array; expected an .npz archive with x and y")
    with archive:
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
            raise DataError(f"data: {path} has no array {key!r} (it has: {', '.join(arrays) or 'none'})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"data: {path} must hold x_test and y_test together")
    classes = None
    if "classes" in arrays:
        names = arrays["classes"]
        classes = [str(c) for c in names.reshape(-1)]
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
    if classes is None:
        top = max(int(v.max()) if len(v) else -1 for v in (y, y_test) if v is not None)
        classes = [str(c) for c in range(max(top, 0) + 1)]
    x, y, x_test, y_test, held_out = _hold_out_arrays(str(path), x, y, x_test, y_test, test_fraction)
    if vectors:
        ds = from_vectors(str(path), x, y, x_test, y_test, classes=classes)
    else:
        ds = from_arrays(str(path), x, y, x_test, y_test, classes=classes, allow_unlabeled=True)
    ds.test_held_out = held_out
    return ds


def _npz_labels(path: Path, key: str, y: np.ndarray, lowest: int,
                classes: Optional[list[str]]) -> np.ndarray:
    if y.ndim != 1:
        raise DataError(f"data: {path} key {key!r} has shape {'x'.join(map(str, y.shape))}; "
                        "expected N labels")
    if np.issubdtype(y.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise DataError(f"data: {path} {key}[{bad[0]}] = {y[bad[0]]} is not a whole number")
    elif not np.issubdtype(y.dtype, np.integer):
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


def _check_count(path: Path, xkey: str, x: torch.Tensor, ykey: str, y: np.ndarray) -> None:
    if len(x) != len(y):
        raise DataError(f"data: {path} has {len(x)} images in {xkey} but {len(y)} labels in {ykey}")


def load_imagenet(root: Path, image_size: Optional[int] = 32, channels: Optional[int] = None,
                  imagenet_fraction: float = 1.0) -> ArrayDataset:
    for sub in ("train", "val"):
        if not (root / sub).is_dir():
            raise DataError(f"data: {root / sub} does not exist; expected ILSVRC2012 as "
                            f"{root}{os.sep}train{os.sep}<wnid>{os.sep}*.JPEG and "
                            f"{root}{os.sep}val{os.sep}<wnid>{os.sep}*.JPEG")
    folders = _class_folders(root / "train")
    if imagenet_fraction < 1.0:
        rng = np.random.default_rng(IMAGENET_SEED)
        kept = []
        for name, ps in folders:
            keep = np.sort(rng.permutation(len(ps))[:max(1, round(imagenet_fraction * len(ps)))])
            kept.append((name, [ps[i] for i in keep]))
        folders = kept
    classes = [name for name, _ in folders]
    paths, y = _flatten(folders, classes)
    test_paths, test_y = _flatten(_class_folders(root / "val", classes), classes)
    channels = channels or 3  # ImageNet is an RGB dataset even where a few images are gray
    if image_size is not None:
        gib = (len(paths) + len(test_paths)) * channels * image_size ** 2 / 2 ** 30
        print(f"metassl: reading {len(paths)} training and {len(test_paths)} validation images "
              f"from {root} into {gib:.1f} GiB of memory", file=sys.stderr)
    rgb = channels == 3
    return _from_paths(str(root), classes, paths, y, test_paths, test_y, image_size, channels, 0.0,
                       hflip=True, mean=IMAGENET_MEAN if rgb else None, std=IMAGENET_STD if rgb else None)


# --------------------------------------------------------------------------- run directories

DATA_INFO = "data_info.json"
_INFO_KEYS = ("classes", "mean", "std", "in_channels", "image_hw")


def data_info(data: ArrayDataset, **extra: Any) -> dict:
    """What reading new inputs like `data` needs: classes, normalisation, shape."""
    return {"classes": data.classes, "mean": list(data.mean), "std": list(data.std),
            "in_channels": data.in_channels, "image_hw": list(data.image_hw),
            "test_held_out": data.test_held_out,
            **({"vectors": data.vectors} if data.vectors else {}), **extra}


def write_data_info(run_dir: Path, info: dict) -> None:
    tmp = run_dir / f".{DATA_INFO}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, run_dir / DATA_INFO)


def save_data_info(run_dir: Path, data: ArrayDataset, **extra: Any) -> None:
    write_data_info(run_dir, data_info(data, **extra))


def load_data_info(run_dir: Path) -> dict:
    path = run_dir / DATA_INFO
    if not path.is_file():
        raise CheckpointError(f"run: {path} does not exist; the run predates data_info.json or is not "
                              "a metassl run directory")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"run: cannot read {path}: {_first_line(exc)}") from None
    missing = [k for k in _INFO_KEYS if not isinstance(info, dict) or k not in info]
    if missing:
        raise CheckpointError(f"run: {path} lacks {', '.join(missing)}")
    return info
