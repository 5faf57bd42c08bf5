"""Atomic file writes, stale-temp-file cleanup, safe JSON reads, path containment and content hashes.

A write goes to a temporary file ``.<name>.<8 random chars>.tmp`` in the destination folder, is flushed and
fsync'ed, then moved over the destination with :func:`os.replace`. A process killed mid-write leaves the
previous file (or nothing), never a half-written one - but it can leave the temporary file, which
:func:`clean_stale_temp_files` removes on the next start (it matches that exact name pattern only).

A full disk (ENOSPC, or EDQUOT for a quota) during a write raises
:class:`~recgym.common.errors.DiskFullError` naming the path, the bytes needed and the bytes free; the
temporary file is removed and the destination keeps its previous content.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import unicodedata
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from recgym.common.errors import (
    CorruptFileError,
    DiskFullError,
    UnsafeFileError,
    UnsafePathError,
    is_disk_full,
)

__all__ = [
    "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "clean_stale_temp_files", "read_json_file",
    "path_inside", "unsafe_name_reason", "load_torch_weights_only", "load_npz_arrays", "sha256_bytes", "sha256_file", "sha256_texts", "TEMP_SUFFIX",
]

TEMP_SUFFIX = ".tmp"
# What tempfile.mkstemp(prefix=".<name>.", suffix=".tmp") produces: 8 chars of [a-z0-9_] between the dots.
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")
MAX_JSON_BYTES = 64 * 2**20
MAX_NAME_CHARS = 100
_FORBIDDEN_NAME_CHARS = '/\\:*?"<>|'


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``).

    Raises:
        DiskFullError: the disk or quota is full (the temp file is removed, ``path`` is unchanged).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(path, needed=len(data), code=exc.errno) from exc
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(path, needed=len(data), code=exc.errno) from exc
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def clean_stale_temp_files(folder: str | os.PathLike[str], *, recursive: bool = False, min_age_s: float = 0.0,
                           include_dirs: bool = False) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write_bytes` leaves when a process is killed mid-write.

    Only names of the exact form ``.<name>.<8 chars of [a-z0-9_]>.tmp`` are touched (what ``atomic_write_bytes``
    creates); every other file is left alone. Symbolic links are never followed (a matching link is removed
    as a link). Call it where no other process writes at the same time, or pass ``min_age_s`` so that a
    temp file modified within the last ``min_age_s`` seconds (a concurrent writer's) is kept.

    Args:
        folder: the folder to clean; a missing folder is fine (nothing to do).
        recursive: also clean every sub-folder (not following symlinked folders).
        min_age_s: keep temp files whose modification time is more recent than this.
        include_dirs: also remove matching *folders* (temporary extraction folders), with their content.

    Returns:
        The paths removed.
    """
    root = Path(folder)
    if not root.is_dir() or root.is_symlink():
        return []
    now = time.time()
    removed: list[Path] = []
    walker = os.walk(root, followlinks=False) if recursive else [(str(root), None, None)]
    for dirpath, subdirs, _files in walker:
        try:
            entries = list(os.scandir(dirpath))
        except OSError:
            continue
        for entry in entries:
            if not _TEMP_NAME.fullmatch(entry.name):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                if is_dir and not include_dirs:
                    continue
                if min_age_s > 0 and now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                    continue
                if is_dir:
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue  # removed by someone else meanwhile
            removed.append(Path(entry.path))
            if is_dir and subdirs is not None and entry.name in subdirs:
                subdirs.remove(entry.name)
    return removed


def read_json_file(path: str | os.PathLike[str], *, what: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read a JSON file recgym wrote earlier, or raise :class:`CorruptFileError` naming it and ``what`` it is.

    JSON never runs code; this only turns truncation, bad encodings, oversized files and syntax errors into
    one clear error instead of a ``JSONDecodeError``/``UnicodeDecodeError`` traceback.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise CorruptFileError(f"{path}: expected {_a(what)} of at most {max_bytes} bytes, received {size} bytes")
        text = path.read_bytes().decode("utf-8")
        return json.loads(text)
    except CorruptFileError:
        raise
    except FileNotFoundError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptFileError(f"{path}: expected {_a(what)} (UTF-8 JSON), received unreadable content "
                               f"({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise CorruptFileError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None


def load_torch_weights_only(data: bytes, *, path: str | os.PathLike[str], what: str) -> Any:
    """``torch.load(..., weights_only=True)`` of ``data`` (the bytes of ``path``): tensors, dicts, lists,
    tuples, strings and numbers only - a pickle that would build any other object (and so could run code) is
    refused with :class:`UnsafeFileError` before anything in it runs. Truncated or garbled bytes raise
    :class:`CorruptFileError`. Both name ``path`` and ``what`` it was meant to be."""
    import io
    import pickle

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": we refuse or accept anyway
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"(?:Trying to load )?[Uu]nsupported [^\n]*", str(exc))
        detail = found.group(0).rstrip(".") if found else _first_line(str(exc))
        raise UnsafeFileError(f"{path}: refusing to load this {what}: it is not a plain tensors-and-data torch "
                              f"file, and unpickling it could run code ({detail})") from None
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, OSError, AttributeError, TypeError) as exc:
        raise CorruptFileError(f"{path}: expected {_a(what)} (torch file), received truncated or corrupt content "
                               f"({type(exc).__name__}: {_first_line(str(exc))})") from None


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no detail"
    line = line.split(". This is an internal")[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def load_npz_arrays(source: str | os.PathLike[str] | bytes, *, path: str | os.PathLike[str] | None = None,
                    what: str) -> dict[str, Any]:
    """Every array of an ``.npz`` (or ``.npy``: key ``""``) read with ``allow_pickle=False``, fully in memory.

    Object arrays and pickles are refused with :class:`UnsafeFileError` (nothing is unpickled); truncated or
    garbled archives raise :class:`CorruptFileError`. Both name the file and ``what`` it was meant to be.
    """
    import io
    import zipfile
    import zlib

    import numpy as np

    where = path if path is not None else source
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else source
        loaded = np.load(handle, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"": loaded}
        with loaded as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UnsafeFileError(f"{where}: refusing to load this {what}: it holds pickled Python objects, which "
                                  "could run code (expected plain numeric/string arrays)") from None
        raise CorruptFileError(f"{where}: expected {_a(what)} (.npz arrays), received corrupt content ({exc})") from None
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError) as exc:
        raise CorruptFileError(f"{where}: expected {_a(what)} (.npz arrays), received truncated or corrupt content "
                               f"({type(exc).__name__}: {exc})") from None


def _a(what: str) -> str:
    return f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"


def unsafe_name_reason(name: Any, *, max_chars: int = MAX_NAME_CHARS) -> str | None:
    """Why ``name`` cannot be used as one file-name component, or ``None`` when it can.

    Refused: non-strings, empty, ``.``/``..``, a leading dot (hidden files, recgym's own temp files), leading
    or trailing spaces, path separators and characters Windows forbids (``/ \\ : * ? " < > |``), control and
    other non-printable characters, and more than ``max_chars`` characters (or 200 UTF-8 bytes).
    """
    if not isinstance(name, str):
        return f"expected a string, received {type(name).__name__}"
    if not name:
        return "expected a non-empty name"
    if name in (".", ".."):
        return f"{name!r} is a folder reference, not a name"
    bad = "".join(dict.fromkeys(c for c in name if c in _FORBIDDEN_NAME_CHARS))
    if bad:
        return f"must not contain any of {_FORBIDDEN_NAME_CHARS} (path separators and reserved characters; found {bad})"
    if name.startswith("."):
        return "must not start with '.'"
    if name != name.strip():
        return "must not start or end with spaces"
    ctrl = [c for c in name if unicodedata.category(c)[0] == "C"]
    if ctrl:
        return f"must not contain control or non-printable characters (found {ctrl[0]!r})"
    if len(name) > max_chars or len(name.encode("utf-8")) > 2 * max_chars:
        return f"expected at most {max_chars} characters, received {len(name)}"
    return None


def path_inside(root: str | os.PathLike[str], *parts: str) -> Path:
    """``root / part / ...`` after checking that each part is one safe name and the result stays in ``root``.

    The second line of defence behind config validation: symlinks are resolved, so a link leading out of
    ``root`` is refused too.

    Raises:
        UnsafePathError: a part is not a plain name (``..``, separators, absolute, control characters) or
            the resolved path is outside ``root``.
    """
    base = Path(root)
    for part in parts:
        reason = unsafe_name_reason(part, max_chars=255)
        if reason:
            raise UnsafePathError(f"path component {part!r} under {base}: {reason}")
    out = base.joinpath(*parts)
    real_root = base.resolve()
    real = out.resolve()
    if real != real_root and real_root not in real.parents:
        raise UnsafePathError(f"{out}: resolves to {real}, outside {real_root}; refusing to use it")
    return out


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_texts(texts: Iterable[str]) -> str:
    """Hex sha256 of an ordered list of texts (length-prefixed, so ``["ab","c"]`` != ``["a","bc"]``)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()
