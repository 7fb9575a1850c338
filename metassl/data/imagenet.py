"""The `imagenet` dataset: ILSVRC2012 as train/<wnid>/*.JPEG and val/<wnid>/*.JPEG.

`data_root` is the folder holding train/ and val/ (val sorted into class folders); val is the
test set, and `imagenet_fraction` reads that share of each class's training images, a subset
fixed by `IMAGENET_SEED`. Everything is held in memory as uint8: N x C x S x S bytes, e.g.
3.9 GB for all 1.28M training images at 32 x 32 (15.7 GB at 64, 63 GB at 128).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from metassl.data.arrays import ArrayDataset
from metassl.data.images import _class_folders, _flatten, _from_paths
from metassl.errors import DataError

# The ImageNet subset must not change with the run's seed, so that runs of different seeds
# are scored on the same images.
IMAGENET_SEED = 0
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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
