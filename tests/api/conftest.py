"""Runs shared by the API tests: trained once per session, on tiny data, in a few seconds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli

COLORS = {"red": (210, 40, 40), "green": (40, 190, 60), "blue": (40, 60, 210)}


def noisy(color, size, rng) -> Image.Image:
    w, h = size
    return Image.fromarray(np.clip(np.array(color) + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """labeled/<colour>/ (PNG and JPEG, assorted sizes) and unlabeled/, no test/."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name, color in COLORS.items():
        (root / "labeled" / name).mkdir(parents=True)
        for i in range(8):
            noisy(color, (14 + i, 12), rng).save(root / "labeled" / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    (root / "unlabeled").mkdir()
    for i in range(12):
        noisy(list(COLORS.values())[i % 3], (16, 16), rng).save(root / "unlabeled" / f"u{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def photo_run(photos, tmp_path_factory) -> Path:
    """A `metassl train` run on the photos, with EMA, so best.pt holds averaged weights."""
    out = tmp_path_factory.mktemp("runs") / "photos"
    proc = run_cli("train", "--out", str(out), "dataset=imagefolder", f"data_root={photos}", "image_size=12",
                   "model=cnn3", "method=mixup", "labels_per_class=null", "val_per_class=2", "steps=20",
                   "eval_every=10", "ema_decay=0.9", "tensorboard=false", "batch_size=16", check=True)
    assert "has no test set; held out 6 labeled images" in proc.stderr
    return out
