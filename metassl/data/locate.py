"""Where the built-in datasets' files are looked for, and the error when they are not found.

`search_dirs` lists a dataset's folders under `data_root` and, for MNIST and Fashion-MNIST,
under `SYSTEM_DATA_DIR`; `_find_dir` picks the first that holds every file; `_not_found` is
the one-line error saying where it looked, which places came close and how to get the data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from metassl.errors import ConfigError, DataError

# Where distribution packages put datasets (Debian's dataset-fashion-mnist, for one).
# Module-level so tests can point it somewhere empty.
SYSTEM_DATA_DIR = Path("/usr/share/datasets")


def search_dirs(name: str, data_root: str | Path | None) -> list[Path]:
    """The directories searched for dataset `name`, in order."""
    roots: dict[str, list[str]] = {
        "mnist": ["mnist", "MNIST/raw", "."],
        "fashion_mnist": ["fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "."],
        "cifar10": ["cifar-10-batches-py", "cifar10/cifar-10-batches-py", "."],
        "cifar100": ["cifar-100-python", "cifar100/cifar-100-python", "."],
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


def check_root(name: str, data_root: str | Path | None, reads: str = "folder") -> None:
    """A `data_root` given for a dataset read from files must exist and be what the dataset reads
    (``reads``: "folder", or the suffix of its file, ".csv"): a misspelt one would otherwise read
    as 'holds nothing' (and MNIST and Fashion-MNIST would go on to the system copy)."""
    if data_root is None:
        return
    root = Path(data_root)
    if not root.exists():
        raise DataError(f"data: data_root {root} does not exist (dataset {name}); if the data has moved, give its "
                        "new place: data_root=PATH (also with train --resume), --data-root PATH with eval")
    if reads == "folder" and not root.is_dir():
        raise DataError(f"data: data_root {root} is a file; dataset {name} reads a folder")
    if reads != "folder" and root.is_dir():
        raise DataError(f"data: data_root {root} is a folder; dataset {name} reads a {reads} file")


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
