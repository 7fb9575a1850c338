"""User-facing errors: each one becomes a single line on stderr and a non-zero exit."""
from __future__ import annotations

import difflib
import errno
import re
from collections.abc import Callable
from contextlib import contextmanager
from typing import Optional


class MetasslError(Exception):
    """A problem with the user's input (config, data, checkpoint, paths)."""

    exit_code = 1


class ConfigError(MetasslError):
    """An unknown key, a wrong type or an out-of-range value in the configuration."""

    exit_code = 2


class NeedsUnlabeled(ConfigError):
    """An SSL method given a split with no unlabeled example."""


class DataError(MetasslError):
    """A missing, corrupt or malformed dataset file or array."""


class CheckpointError(MetasslError):
    """An unreadable, foreign or incompatible checkpoint or run directory."""


class StorageError(MetasslError, OSError):
    """A file that could not be written or read for a reason of the machine's (a full disk, no
    permission, a read-only file system), not of its contents. An OSError too, so that a caller's
    ``except OSError`` around a library call still catches it."""


# errno values that name the machine's storage rather than a defect of ours.
STORAGE_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO", "EFBIG", "ENAMETOOLONG") if hasattr(errno, name))


def os_error_in(exc: BaseException) -> Optional[OSError]:
    """``exc`` itself or the first OSError among its causes and the contexts it shows (torch's
    writers wrap the OSError of a full disk in a RuntimeError); None where there is none. A context
    that ``raise ... from`` suppressed is not followed: it was handled, not the cause."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ if exc.__cause__ is not None or exc.__suppress_context__ else exc.__context__
    return None


def storage_message(exc: BaseException, path=None) -> Optional[str]:
    """'PATH: No space left on device' for an error whose cause is the machine's storage (see
    ``STORAGE_ERRNOS``), naming ``path`` where the error names no file; None for any other."""
    found = os_error_in(exc)
    if found is None or found.errno not in STORAGE_ERRNOS:
        return None
    where = found.filename if found.filename is not None else path
    return f"{where}: {found.strerror}" if where is not None else str(found.strerror)


class TrainingDiverged(MetasslError):
    """The loss became NaN or infinite."""

    exit_code = 3


class OutOfMemory(MetasslError):
    """A batch, an evaluation or the data too large for the device's memory. ``then``: how a
    command-line run continues (a resume), apart from ``brief``, which holds for any caller."""

    def __init__(self, brief: str, then: str = ""):
        super().__init__(brief + then)
        self.brief = brief


_ASKED = re.compile(r"tried to allocate\s+([0-9]+ bytes|[0-9.]+\s*[KMGT]i?B)\b", re.I)


def memory_asked(exc: BaseException) -> Optional[str]:
    """For an allocator's out-of-memory error (CUDA's ``OutOfMemoryError``, the CPU allocator's
    "can't allocate memory", MPS's "out of memory"), how much the failed allocation asked for
    ("2.00 GiB"; "an unknown amount" where the message does not say); None for any other error."""
    text = str(exc)
    if not (type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in text
            or "out of memory" in text.lower()):
        return None
    found = _ASKED.search(text)
    if found is None:
        return "an unknown amount"
    amount = found.group(1)
    if amount.endswith("bytes"):
        count = int(amount.split()[0])
        return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.2f} MiB"
    return amount


@contextmanager
def out_of_memory_as(message: Callable[[str], str], then: Callable[[], str] = str):
    """Inside the block, an allocator's out-of-memory error becomes a one-line ``OutOfMemory``
    whose text is ``message(amount asked for)`` followed by ``then()`` (how a run continues);
    every other error passes unchanged."""
    try:
        yield
    except RuntimeError as exc:
        asked = memory_asked(exc)
        if asked is None:
            raise
        raise OutOfMemory(message(asked), then()) from None


def did_you_mean(name: object, choices, section: str = "") -> str:
    """" (did you mean 'fixmatch'?)" for a misspelt ``name`` close to one of ``choices`` (case,
    hyphens and small typos forgiven), or '' where none is close; a key of ``section`` is named
    whole ('mixup.alpha')."""
    def norm(text: object) -> str:
        return str(text).lower().replace("-", "_")

    by_norm = {norm(c): str(c) for c in choices}
    starting = [c for c in by_norm if c.startswith(norm(name))] if len(norm(name)) >= 3 else []
    close = starting if len(starting) == 1 else difflib.get_close_matches(norm(name), list(by_norm), n=1, cutoff=0.65)
    return f" (did you mean {(section + '.' if section else '') + by_norm[close[0]]!r}?)" if close else ""
