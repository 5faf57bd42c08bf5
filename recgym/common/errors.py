"""Error classes for files recgym reads and writes.

:class:`DataError` is the base of every "this file's content is unusable" error: malformed data files
(interaction logs, item and user tables: ``SchemaError``, unknown datasets) and corrupt or unsafe files
(:class:`CorruptFileError`, :class:`UnsafeFileError`). :class:`~recgym.common.config.ConfigError` covers
settings. Both are ``ValueError`` subclasses whose messages name where, what was expected and what was
received.

Every loader turns what can go wrong with a file it did not write itself in this process - truncation,
flipped bytes, missing fields, content that would need code execution (pickles), paths that lead out of
their folder - into one of these, with a message naming the file and the field. The CLI prints them as one
``error: ...`` line (exit status 2), never as a traceback.
"""

from __future__ import annotations

import errno as _errno
import os
import shutil
from pathlib import Path

__all__ = ["DataError", "CorruptFileError", "UnsafeFileError", "UnsafePathError", "DiskFullError", "is_disk_full",
           "free_bytes"]

DISK_FULL_ERRNOS = frozenset({_errno.ENOSPC, getattr(_errno, "EDQUOT", _errno.ENOSPC)})


class DataError(ValueError):
    """A file recgym reads is malformed or unusable (message: file, column/field, line, expected vs received)."""


class CorruptFileError(DataError):
    """A file is truncated, fails its checksum, is not in the expected format or misses a field.

    The message names the file, the field and what was expected vs received.
    """


class UnsafeFileError(CorruptFileError):
    """A file would need code execution to load (a pickle) or points outside the folder that holds it.

    It is refused before any of its content is used.
    """


class UnsafePathError(ValueError):
    """A path built from user input (a label, a name) would lead outside the folder it belongs in."""


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Free bytes on the filesystem holding ``path`` (its nearest existing ancestor); ``None`` if unknown."""
    p = Path(path).absolute()
    for cand in (p, *p.parents):
        if cand.exists():
            try:
                return shutil.disk_usage(cand).free
            except OSError:
                return None
    return None


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class DiskFullError(OSError):
    """A write failed because the disk (or the user's quota) is full. Nothing half-written was left behind.

    Attributes: ``path`` (the file being written), ``needed`` (bytes the write needed, when known), ``free``
    (bytes free on that filesystem, when known), ``advice`` (what to do next, e.g. the resume command). It is an :class:`OSError` with ``errno`` ENOSPC/EDQUOT, so
    code that handles ``OSError`` still sees it.
    """

    def __init__(self, path: str | os.PathLike[str], *, needed: int | None = None, free: int | None = None,
                 code: int = _errno.ENOSPC, advice: str | None = None) -> None:
        self.path = Path(path)
        self.needed = needed
        self.free = free_bytes(self.path) if free is None else free
        self.advice = advice
        super().__init__(code, os.strerror(code), str(self.path))

    def __str__(self) -> str:
        need = f"{_size(self.needed)} needed, " if self.needed is not None else ""
        what = "disk quota exceeded" if self.errno != _errno.ENOSPC else "disk full"
        tail = f"; {self.advice}" if self.advice else ""
        where = f"under {self.path}" if self.path.is_dir() else str(self.path)
        return f"{what} writing {where} ({need}{_size(self.free)} free on that filesystem){tail}"


def is_disk_full(exc: BaseException) -> bool:
    """True for an ``OSError`` meaning "no space left on device" or "disk quota exceeded"."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS
