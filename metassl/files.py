"""Files written whole or not at all: a run's records survive a kill or a full disk mid-write."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from metassl.errors import STORAGE_ERRNOS, ConfigError, MetasslError, StorageError, os_error_in


@contextmanager
def storage_errors(path, command: str = "") -> Iterator[None]:
    """A full disk, a read-only file system or a file without permission while writing ``path``
    (an OSError, or a writer's own error caused by one, as torch's RuntimeError) becomes a
    StorageError naming ``path``: ``[COMMAND: ]cannot write PATH: No space left on device``.
    Anything else, our own errors included, passes unchanged."""
    try:
        yield
    except MetasslError:
        raise
    except Exception as exc:  # noqa: BLE001 - writers wrap the OSError in their own types
        cause = os_error_in(exc)
        if cause is None or cause.errno not in STORAGE_ERRNOS:
            raise
        prefix = f"{command}: " if command else ""
        other = cause.filename
        if other is not None and not Path(os.fsdecode(other)).resolve().is_relative_to(Path(path).resolve().parent):
            # a file elsewhere (not `path`, its temporary sibling or a file inside it), which the
            # writer may have been reading: named as it is, not as `path`
            raise StorageError(f"{prefix}{os.fsdecode(other)}: {cause.strerror}") from None
        raise StorageError(f"{prefix}cannot write {path}: {cause.strerror}") from None


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``write(fh)`` into a temporary file beside ``path``, flushed to disk, then renamed over
    ``path``: a reader sees the old file or the new one, never a part. A full disk or a folder
    without permission is a StorageError naming ``path``; the temporary file never stays. A
    symbolic link at ``path`` is written through, as ``open`` would: its target gets the file."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with storage_errors(path):
            with open(tmp, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))


def append_line(path: Path, line: str) -> None:
    """Append ``line`` and a newline to ``path`` (a run's metrics.jsonl, lambdas.jsonl); a full
    disk or no permission is a StorageError naming the file."""
    with storage_errors(path), open(path, "a") as fh:
        fh.write(line + "\n")


def check_out_folder(path: Path, what: str) -> None:
    """Refuse ``path`` as a folder to write into (``what``: how the user gave it, ``bench: --out
    DIR``) when it, or a folder above it, is a file: found before any work, not at the end."""
    for where in (path, *path.parents):
        if where.exists():
            if where.is_dir():
                return
            if where == path:
                raise ConfigError(f"{what} is a file; give a folder")
            raise ConfigError(f"{what}: {where} is a file, not a folder")
