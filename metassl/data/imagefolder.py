"""The `imagefolder` dataset: a folder of class folders, found at `data_root`.

  labeled/<class>/<image>   one folder per class, images at any depth below it
  unlabeled/<image>         optional, any depth
  test/<class>/<image>      optional

Another folder beside them is not read: a misspelt one (unlabelled/, Test/) is an error, another
holding images is named on stderr, and so are files in the three that are not images by their
suffix (a file without one, notes.txt). Without test/, a share (`test_fraction`) of each class's labeled images is held out as the
test set (`metassl.data.holdout`).
"""
from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Optional

from metassl.data.arrays import ArrayDataset
from metassl.data.images import _class_folders, _flatten, _from_paths, images_under, say_skipped
from metassl.errors import DataError

def load_imagefolder(root: Path, image_size: Optional[int] = 32, channels: Optional[int] = None,
                     test_fraction: float = 0.2) -> ArrayDataset:
    if not (root / "labeled").is_dir():
        what = "does not exist" if not root.exists() else "has no labeled/ folder"
        raise DataError(f"data: {root} {what}; expected labeled/<class>/<image>, optionally "
                        "unlabeled/<image> and test/<class>/<image>")
    _check_top_level(root)
    if (root / "labeled" / "unlabeled").is_dir() and not (root / "unlabeled").exists():
        raise DataError(f"data: {root / 'labeled' / 'unlabeled'} would be read as a class named 'unlabeled'; "
                        f"unlabeled images go in {root / 'unlabeled'}/, beside labeled/")
    skipped: list[Path] = []
    folders = _class_folders(root / "labeled", skipped=skipped)
    classes = [name for name, _ in folders]
    paths, y = _flatten(folders, classes)
    unlabeled = images_under(root / "unlabeled", skipped)
    test_paths: list[Path] = []
    test_y: list[int] = []
    if (root / "test").is_dir():
        test_paths, test_y = _flatten(_class_folders(root / "test", classes, skipped), classes)
    say_skipped(root, skipped)
    return _from_paths(str(root), classes, paths + unlabeled, y + [-1] * len(unlabeled),
                       test_paths, test_y, image_size, channels, test_fraction)


FOLDERS = ("labeled", "unlabeled", "test")


def _check_top_level(root: Path) -> None:
    """A folder beside labeled/ that looks like a misspelt one of FOLDERS (unlabelled/, Test/) is
    an error; another that holds images is read by nothing, which is said on stderr."""
    for entry in sorted(root.iterdir()):
        if not entry.is_dir() or entry.name.startswith(".") or entry.name in FOLDERS:
            continue
        close = [n for n in FOLDERS if n == entry.name.lower()] or difflib.get_close_matches(
            entry.name.lower(), FOLDERS, n=1, cutoff=0.75)
        if close:
            raise DataError(f"data: {entry} is not read: data_root's folders are {', '.join(f + '/' for f in FOLDERS)} "
                            f"(did you mean {close[0]}/?)")
        if images_under(entry):
            print(f"metassl: {entry} is not read (data_root's folders are "
                  f"{', '.join(f + '/' for f in FOLDERS)})", file=sys.stderr)
