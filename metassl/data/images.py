"""Image files: decoding them, finding them in folders, and reading a dataset's images.

Image files (PNG, JPEG and what else Pillow reads) are decoded with Pillow, turned upright
by their EXIF orientation and resized to image_size x image_size (the whole image,
squashed, not cropped); `channels` null makes a dataset RGB if any image has colour, else
grayscale. Class names (folder names, CSV labels) are ordered numerically when all are
integers and alphabetically otherwise.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from metassl.data.arrays import ArrayDataset, from_arrays, integer_names
from metassl.data.holdout import _say_held_out, holdout
from metassl.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_READ_CHUNK = 1024


def to_array(img: Image.Image, hw: Optional[tuple[int, int]], channels: Optional[int]) -> np.ndarray:
    """A Pillow image as uint8 C,H,W resized to `hw`; `channels` None keeps gray images 1-channel."""
    if img.mode.startswith("I;16"):
        # Pillow's own conversion of 16-bit images to 8 bits clips instead of scaling.
        img = Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8))
    elif img.mode in ("I", "F"):
        img = Image.fromarray(_deep_to_8bit(np.asarray(img), img.mode))
    mode = {1: "L", 3: "RGB"}.get(channels, "L" if img.mode in ("1", "L", "LA", "I", "F") else "RGB")
    img = img.convert(mode)
    if hw is not None and img.size != (hw[1], hw[0]):
        img = img.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
    a = np.asarray(img)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if channels is None and len(a) == 3 and (a[0] == a[1]).all() and (a[1] == a[2]).all():
        a = a[:1]
    return np.ascontiguousarray(a)


class DeepImageError(ValueError):
    """An image whose gray levels have no 8-bit reading."""


def _deep_to_8bit(a: np.ndarray, mode: str) -> np.ndarray:
    """A 32-bit integer (mode I) or float (mode F) gray image as 8 bits, by its range: integers
    within 0..255 as they are and within 0..65535 as 16 bits; floats within 0..1 scaled by 255 and
    within 0..255 as they are. Pillow's own conversion clips, so anything else is refused."""
    low, high = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0:
        limits = None
    elif mode == "F" and high <= 1:
        limits = 1.0
    elif high <= 255:
        limits = 255.0
    elif mode == "I" and high <= 65535:
        limits = 65535.0
    else:
        limits = None
    if limits is None:
        kind = "32-bit integer" if mode == "I" else "floating-point"
        raise DeepImageError(f"a {kind} image with values {low:g}..{high:g}, outside the ranges read as gray "
                         f"levels ({'0..255 or 0..65535' if mode == 'I' else '0..1 or 0..255'})")
    return np.rint(a.astype(np.float64) * (255.0 / limits)).clip(0, 255).astype(np.uint8)


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
    except DeepImageError as exc:
        raise DataError(f"data: {path}: {exc}") from None
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
    if integer_names(names):
        return sorted(names, key=int)
    return sorted(names)


def images_under(folder: Path, skipped: Optional[list[Path]] = None,
                 unreadable: Optional[list[Path]] = None) -> list[Path]:
    """Image files anywhere below `folder` (hidden ones skipped), sorted; the other files, not
    images by their suffix, are added to `skipped` where one is given. A subfolder that cannot be
    read is an error (training data would go missing without a word), or, where `unreadable` is
    given (prediction, which reads what it can), added to it. Symbolic links are followed; one
    that leads back to a folder already read is an error (its images would count twice, or without
    end)."""
    found = []
    read: dict[str, str] = {}  # real path -> the path it was read as

    def failed(exc: OSError) -> None:
        if isinstance(exc, FileNotFoundError):  # a folder that is not there holds no images
            return
        if isinstance(exc, NotADirectoryError):
            raise DataError(f"data: {exc.filename} is a file; a folder of images was expected")
        if unreadable is not None and os.path.abspath(exc.filename) != os.path.abspath(folder):
            unreadable.append(Path(exc.filename))
            return
        raise DataError(f"data: cannot read {exc.filename}: {exc.strerror or exc}")

    for root, dirs, names in os.walk(folder, onerror=failed, followlinks=True):
        real = os.path.realpath(root)
        if real in read:
            raise DataError(f"data: {root} leads to {read[real]}, which is already read (a symbolic link); "
                            "remove the link or point it elsewhere")
        read[real] = root
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        visible = [Path(root, n) for n in names if not n.startswith(".")]
        found += [p for p in visible if p.suffix.lower() in IMAGE_SUFFIXES]
        if skipped is not None:
            skipped += [p for p in visible if p.suffix.lower() not in IMAGE_SUFFIXES]
    return sorted(found)


def say_skipped(root: Path, skipped: Sequence[Path]) -> None:
    """One line on stderr naming the files below ``root`` that were not read as images."""
    if skipped:
        names = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in sorted(skipped)]
        print(f"metassl: {len(names)} file{'s' if len(names) > 1 else ''} under {root} not read, not "
              f"images by their suffix ({_listing(names, 3)}); images end in {', '.join(IMAGE_SUFFIXES)}",
              file=sys.stderr)


def _class_folders(folder: Path, known: Optional[Sequence[str]] = None,
                   skipped: Optional[list[Path]] = None) -> list[tuple[str, list[Path]]]:
    """(class, images) for each class folder in `folder`; with `known`, only those classes; files
    that are not images are added to `skipped` where one is given."""
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
        images = images_under(folder / name, skipped)
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
