"""A run directory's `data_info.json`: what reading new inputs like the training data needs.

Classes, per-channel normalisation, channel count and image size, whether the test set was
held out, and for feature-vector runs the encoder's per-feature mean and std (`vectors`).
Every run writes it (`metassl train`, `SSLClassifier`); predict and export read it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metassl.data.arrays import ArrayDataset
from metassl.data.images import _first_line
from metassl.errors import CheckpointError
from metassl.files import atomic_write_text

DATA_INFO = "data_info.json"
_INFO_KEYS = ("classes", "mean", "std", "in_channels", "image_hw")


def data_info(data: ArrayDataset, **extra: Any) -> dict:
    """What reading new inputs like `data` needs: classes, normalisation, shape."""
    return {"classes": data.classes, "mean": list(data.mean), "std": list(data.std),
            "in_channels": data.in_channels, "image_hw": list(data.image_hw),
            "test_held_out": data.test_held_out,
            **({"vectors": data.vectors} if data.vectors else {}), **extra}


def write_data_info(run_dir: Path, info: dict) -> None:
    atomic_write_text(run_dir / DATA_INFO, json.dumps(info, indent=2) + "\n")


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
