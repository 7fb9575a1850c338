"""`metassl predict`: class probabilities of image files, folders of images, .npz arrays or CSV
tables of feature vectors."""
from __future__ import annotations

import csv
import io
import os
import sys
import zipfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from PIL import Image

from metassl.api.inference import check_output_file, load_run, output_temp
from metassl.data.arrays import as_images
from metassl.data.csvfile import read_table_vectors
from metassl.data.images import _listing, images_under, read_image, say_skipped, to_array
from metassl.data.npz import not_npz
from metassl.data.vectors import check_vectors
from metassl.engine.setup import pick_device
from metassl.errors import ConfigError, DataError, out_of_memory_as
from metassl.files import storage_errors


class _Reader:
    """Turns each input into what the run's classifier takes, the way training read its data."""

    def __init__(self, run: Path, info: dict, forced_channels: Optional[int]):
        self.run, self.info = run, info
        self.channels = int(info["in_channels"])
        self.hw = tuple(int(d) for d in info["image_hw"])
        self.vectors = info.get("vectors")
        # A run that converted colour images to gray (channels=1) does so here too; gray images
        # are repeated into RGB as in training; colour into a grayscale-only run is a mistake.
        self.read_channels = forced_channels if forced_channels == 1 else (3 if self.channels == 3 else None)

    def _wrong_channels(self, what: str, have: int) -> DataError:
        return DataError(f"data: {what} has {have}-channel images but run {self.run} was trained on "
                         f"{self.channels}-channel images")

    def image(self, path: Path) -> torch.Tensor:
        if self.vectors is not None:
            raise DataError(f"data: run {self.run} was trained on feature vectors; pass them as an .npz "
                            f"with x of N x {len(self.vectors['mean'])} or a CSV table, not the image {path}")
        a = read_image(path, self.hw, self.read_channels)
        if len(a) != self.channels and self.channels == 1:
            raise DataError(f"data: {path} is a colour image but run {self.run} was trained on "
                            "grayscale images")
        if len(a) != self.channels:  # 2- or 4-channel arrays: no image file holds them as trained
            raise DataError(f"data: {path} is an image file, read as {len(a)} channel{'s' if len(a) > 1 else ''}, "
                            f"but run {self.run} was trained on {self.channels}-channel arrays; pass them as "
                            f"an .npz with x of N x {self.channels} x H x W")
        # Pillow's buffer is read-only, and torch warns about tensors over one.
        return torch.from_numpy(np.array(a))

    def npz(self, path: Path) -> torch.Tensor:
        try:
            with np.load(path, allow_pickle=False) as archive:
                keys = archive.files
                key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise DataError(f"data: {path} has no array 'x' (it has: {', '.join(keys) or 'none'})")
                x = archive[key]
                if x.ndim == 0 or len(x) == 0:
                    raise DataError(f"data: {path} {key} holds no rows (shape {x.shape})")
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, TypeError) as exc:
            if path.is_file() and not zipfile.is_zipfile(path):
                raise not_npz(path) from None
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"data: {path} is not a readable .npz file ({reason})") from None
        if self.vectors is not None:
            features = len(self.vectors["mean"])
            if x.ndim != 2 or x.shape[1] != features or not np.issubdtype(x.dtype, np.number):
                raise DataError(f"data: {path} x has shape {'x'.join(map(str, x.shape))}; run {self.run} "
                                f"takes feature vectors N x {features}")
            return torch.from_numpy(check_vectors(str(path), key, x))
        images = as_images(x, key, str(path))
        if images.shape[1] != self.channels:
            raise self._wrong_channels(f"{path} {key}", int(images.shape[1]))
        if tuple(images.shape[2:]) != self.hw:
            images = torch.from_numpy(np.stack([_resize(a, self.hw) for a in images.numpy()]))
        return images

    def table(self, path: Path) -> torch.Tensor:
        """A CSV table's rows as feature vectors, read as training read its table: by the
        training header's column names where both have a header, else by position."""
        if self.vectors is None:
            raise DataError(f"data: {path} is a CSV table; run {self.run} was trained on images "
                            "(pass image files, folders or an .npz of images)")
        features, columns = len(self.vectors["mean"]), self.vectors.get("columns")
        x = read_table_vectors(path, features, columns, f"run {self.run}")
        return torch.from_numpy(x.astype(np.float64))


def _resize(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A uint8 C,H,W array resized to ``hw`` channel by channel, whatever its channel count."""
    return np.stack([to_array(Image.fromarray(channel), hw, 1)[0] for channel in a])


def _items(inputs: list[Path], reader: _Reader) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, one input) for every image or array row named by `inputs`, in order."""
    for path in inputs:
        if not path.exists():
            raise DataError(f"data: {path} does not exist")
        if path.is_dir():
            skipped: list[Path] = []
            unreadable: list[Path] = []
            images = images_under(path, skipped, unreadable)
            say_skipped(path, skipped)
            if unreadable:
                print(f"metassl: {len(unreadable)} folder{'s' if len(unreadable) > 1 else ''} under {path} "
                      f"could not be read, their images not predicted "
                      f"({_listing(sorted(str(p.relative_to(path)) for p in unreadable), 3)})",
                      file=sys.stderr)
            if not images:
                raise DataError(f"data: folder {path} holds no images")
            for image in images:
                yield str(image), reader.image(image)
        elif path.suffix.lower() == ".npz":
            for i, row in enumerate(reader.npz(path)):
                yield f"{path}:{i}", row
        elif path.suffix.lower() == ".csv" and path.is_file():
            for i, row in enumerate(reader.table(path)):
                yield f"{path}:{i}", row
        else:
            yield str(path), reader.image(path)


def predict_to_csv(run: Path, inputs: list[Path], out: Path, batch_size: int = 256,
                   device: str = "auto") -> str:
    """Write one CSV row per input: its path (or file.npz:row, file.csv:row), the predicted class and
    p_<class> probability columns. The file appears only once every input was read."""
    if batch_size < 1:
        raise ConfigError(f"predict: --batch-size must be >= 1, got {batch_size}")
    check_output_file(out, "predict", run, inputs)
    loaded = load_run(run, pick_device(device))
    classes = loaded.info["classes"]
    reader = _Reader(run, loaded.info, loaded.cfg.channels)
    tmp = output_temp(out, "predict")
    count = 0
    try:
        with open(tmp, "wb", buffering=0) as fh:
            def emit(rows: list[list]) -> None:
                # Written unbuffered under storage_errors alone: a full disk names --out (and leaves
                # nothing for the close to write), while an input that cannot be read keeps its own error.
                text = io.StringIO()
                csv.writer(text, lineterminator="\n").writerows(rows)
                data = memoryview(text.getvalue().encode())
                with storage_errors(out, "predict"):
                    while data:
                        data = data[fh.write(data):]

            emit([["path", "prediction", *(f"p_{c}" for c in classes)]])
            names: list[str] = []
            batch: list[torch.Tensor] = []

            def flush() -> None:
                with out_of_memory_as(lambda asked: (
                        f"predict: out of memory predicting a batch of {len(batch)} inputs (an allocation of "
                        f"{asked} failed): lower --batch-size (now {batch_size}); nothing was written to {out}")):
                    probs = loaded.classifier.predict(torch.stack(batch), batch_size)
                emit([[name, classes[int(np.argmax(p))], *(f"{v:.6g}" for v in p)]
                      for name, p in zip(names, probs.tolist())])
                names.clear()
                batch.clear()

            for name, x in _items(inputs, reader):
                names.append(name)
                batch.append(x)
                count += 1
                if len(batch) == batch_size:
                    flush()
            if batch:
                flush()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return f"metassl: wrote {count} predictions ({len(classes)} classes) to {out}"
