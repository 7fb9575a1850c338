"""Files written whole or not at all: a run's records survive a kill or a full disk mid-write."""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable

from metassl.errors import STORAGE_ERRNOS, StorageError, os_error_in


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``write(fh)`` into a temporary file beside ``path``, flushed to disk, then renamed over
    ``path``: a reader sees the old file or the new one, never a part. A full disk or a folder
    without permission is a StorageError naming ``path``; the temporary file never stays."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        cause = os_error_in(exc)
        if cause is None or cause.errno not in STORAGE_ERRNOS:
            raise
        raise StorageError(f"cannot write {path}: {cause.strerror}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))
