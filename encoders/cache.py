"""Embedding cache: one verified, immutable folder per (encoder fingerprint, ordered texts).

Layout under ``<cache_dir>/embeddings/``::

    <name>-<key[:16]>/             a published entry: vectors.npy ((n, d) float32) and manifest.json
    .staging/<name>-<key[:16]>.lock    advisory lock held by the one process building that entry
    .staging/<name>-<key[:16]>/    that entry's build area: .build.XXXXXXXX.tmp/ (a build in progress, or
                                   left by a killed one), .old.XXXXXXXX.tmp (a replaced entry being deleted)

``key = sha256(encoder.fingerprint + sha256_texts(texts))``.

Write protocol (:func:`encode_with_cache`): under the entry's lock, encode, write both files into a fresh
build folder (each atomically and fsync'ed, the manifest last), then publish the folder with one
``rename``. A stale entry is first renamed away (into the build area), then replaced. A published folder is
never modified in place. So a reader sees a complete entry or none, whatever is killed when; concurrent
builders of one entry are serialised (the others wait, then read the winner's result); builders of
different entries never wait for each other. Leftovers of killed builds are deleted at the next call, for
every entry whose lock nobody holds (their names match recgym's temp pattern only; nothing else is touched).
Locks are ``flock`` advisory locks (released by the kernel when a process dies); where ``fcntl`` is missing
(Windows) builders are not serialised - the rename still keeps entries whole - and leftovers older than a
day are deleted.

Read protocol (:func:`load_cache`): through one directory handle (so a concurrent replacement cannot mix an
old manifest with new vectors): manifest present, parseable and sane, vectors file of the size the manifest
implies, loaded with ``allow_pickle=False`` (a file holding pickled objects is refused unread), shape
``(n, dim)``, dtype float32, every value finite, file sha256 as recorded, and - given an encoder and/or texts -
every identity field equal to the encoder's and the texts' hash equal. Any failure raises :class:`CacheError`
naming the field with expected vs found; :func:`encode_with_cache` then rebuilds (``rebuild_stale=True``,
logging a warning) or re-raises. A bad cache is never used silently.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recgym.common import (
    atomic_write_bytes,
    atomic_write_json,
    clean_stale_temp_files,
    sha256_bytes,
    sha256_texts,
)
from recgym.common.errors import CorruptFileError, DiskFullError, UnsafeFileError, is_disk_full
from recgym.common.io import load_npz_arrays
from recgym.encoders.base import TextEncoder, validate_texts

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["CacheError", "UnsafeCacheError", "CachedEmbeddings", "default_cache_dir", "cache_key", "encode_with_cache", "load_cache"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
STAGING = ".staging"
FORMAT_VERSION = 1
# describe() fields that are informative only and never make a cache stale.
_VOLATILE = frozenset({"last_truncated", "model_path"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAX_MANIFEST_BYTES = 1 << 20
_NPY_HEADER_SLACK = 64 * 1024  # a .npy header is < 64 KiB; a larger file than the data needs is refused unread
_UNLOCKED_LEFTOVER_AGE_S = 24 * 3600.0
# Temp files inside a *published* entry can only come from an older recgym that wrote entries in place; one
# may still be running, so its temp files are left alone until they are this old.
_IN_ENTRY_LEFTOVER_AGE_S = 600.0


class CacheError(CorruptFileError, RuntimeError):
    """An embedding cache is missing, partial, corrupt or stale. The message names the field, expected vs found.

    A :class:`~recgym.common.errors.CorruptFileError` (so the CLI reports it as one line), and still a
    ``RuntimeError`` for code written against earlier versions.
    """


class UnsafeCacheError(CacheError, UnsafeFileError):
    """A cache file would need code execution to load (a pickle); it is refused unread."""


@dataclass(frozen=True)
class CachedEmbeddings:
    """Result of :func:`encode_with_cache` / :func:`load_cache`.

    Attributes:
        vectors: ``(n, d)`` float32, row ``i`` embeds ``texts[i]``.
        manifest: the verified manifest (see module docstring).
        path: the cache folder.
        hit: ``True`` when read from disk, ``False`` when just encoded.
        truncated: number of texts the tokenizer truncated when the cache was built.
    """

    vectors: np.ndarray
    manifest: dict[str, Any]
    path: Path
    hit: bool
    truncated: int


def default_cache_dir() -> Path:
    """``$RECGYM_CACHE`` if set, else ``~/.cache/recgym``."""
    env = os.environ.get("RECGYM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recgym"


def cache_key(encoder: TextEncoder, texts: Sequence[str]) -> str:
    """Hex ``sha256(encoder.fingerprint + sha256_texts(texts))``."""
    return hashlib.sha256((encoder.fingerprint + sha256_texts(texts)).encode("utf-8")).hexdigest()


def _recgym_version() -> str:
    try:
        from recgym import __version__

        return str(__version__)
    except Exception:  # pragma: no cover - partially installed package
        return "unknown"


def _fail(path: Path, what: str) -> CacheError:
    return CacheError(f"embedding cache {path}: {what}")


def _read_limited(fd: int, limit: int | None) -> bytes:
    with os.fdopen(fd, "rb") as fh:
        return fh.read() if limit is None else fh.read(limit + 1)


class _Snapshot:
    """Read files of one cache folder through one directory handle (``openat``): if the folder is renamed
    away and replaced while we read, we keep reading the old one, never a mix. Falls back to plain paths
    where ``dir_fd`` is unsupported."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        if os.open in os.supports_dir_fd:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        self.exists = self.fd is not None or (os.open not in os.supports_dir_fd and path.is_dir())

    def open(self, name: str) -> int:
        if self.fd is not None:
            return os.open(name, os.O_RDONLY, dir_fd=self.fd)
        return os.open(self.path / name, os.O_RDONLY)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


def load_cache(
    path: str | os.PathLike[str], encoder: TextEncoder | None = None, texts: Sequence[str] | None = None
) -> CachedEmbeddings:
    """Load and verify the cache folder ``path``; with ``encoder``/``texts`` also check it belongs to them.

    Returns:
        :class:`CachedEmbeddings` with ``hit=True``.

    Raises:
        CacheError: partial (manifest missing), unreadable or truncated files, a vectors file holding pickled
            objects (refused, never unpickled), wrong shape/dtype, non-finite rows (first bad row named),
            content hash mismatch, or a manifest field that differs from the encoder/texts (field named,
            expected vs found).
    """
    path = Path(path)
    snap = _Snapshot(path)
    try:
        manifest, vectors, data = _read_verified(snap)
    finally:
        snap.close()
    if encoder is not None:
        _check_encoder(path, manifest, encoder)
    if texts is not None:
        texts = validate_texts(texts, where="load_cache: texts")
        if manifest.get("n") != len(texts):
            raise _fail(path, f"n: expected {len(texts)} texts, found {manifest.get('n')}")
        sha = sha256_texts(texts)
        if manifest.get("texts_sha256") != sha:
            raise _fail(
                path, f"texts_sha256: expected {sha}, found {manifest.get('texts_sha256')} "
                "(texts changed or reordered)"
            )
    return CachedEmbeddings(vectors, manifest, path, hit=True, truncated=int(manifest.get("truncated", 0)))


def _read_verified(snap: _Snapshot) -> tuple[dict[str, Any], np.ndarray, bytes]:
    path = snap.path
    try:
        raw = _read_limited(snap.open(MANIFEST), _MAX_MANIFEST_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        state = "folder empty or missing"
        with contextlib.suppress(OSError):
            os.close(snap.open(VECTORS))
            state = "vectors.npy present"
        raise _fail(path, f"partial cache: manifest missing ({state}); it was never completed or was interrupted") from None
    if len(raw) > _MAX_MANIFEST_BYTES:
        raise _fail(path, f"manifest.json: expected at most {_MAX_MANIFEST_BYTES} bytes, found more")
    try:
        manifest = json.loads(raw.decode("utf-8"))
        n, dim = manifest["n"], manifest["dim"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _fail(path, f"manifest.json unreadable or incomplete: {type(exc).__name__}: {exc}") from None
    for field, value in (("n", n), ("dim", dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(path, f"manifest.json: {field}: expected an int >= 1, found {value!r}")
    if not isinstance(manifest.get("encoder_fields", {}), dict):
        raise _fail(path, f"manifest.json: encoder_fields: expected an object, found {manifest['encoder_fields']!r:.80}")
    truncated = manifest.get("truncated", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or not 0 <= truncated <= n:
        raise _fail(path, f"manifest.json: truncated: expected an int in [0, {n}], found {truncated!r:.80}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _fail(path, f"format_version: expected {FORMAT_VERSION}, found {manifest.get('format_version')!r}")
    try:
        fd = snap.open(VECTORS)
    except FileNotFoundError:
        raise _fail(path, "vectors.npy missing although the manifest exists") from None
    size, most = os.fstat(fd).st_size, n * dim * 4 + _NPY_HEADER_SLACK
    if size > most:
        os.close(fd)
        raise _fail(path, f"vectors.npy: expected at most {most} bytes for ({n}, {dim}) float32, found {size}")
    data = _read_limited(fd, None)
    try:
        loaded = load_npz_arrays(data, path=path / VECTORS, what="embedding-cache vectors file")
    except UnsafeFileError:
        raise UnsafeCacheError(f"embedding cache {path}: vectors.npy holds pickled Python objects; refused unread "
                               "(recgym never unpickles cache files)") from None
    except CorruptFileError as exc:
        raise _fail(path, f"vectors.npy truncated or corrupt: {exc}") from None
    vectors = loaded.get("")  # an .npz archive in place of the .npy has no "" key: refused as a wrong shape
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2 or vectors.shape != (n, dim):
        raise _fail(path, f"shape: expected ({n}, {dim}) from the manifest, found {getattr(vectors, 'shape', None)}")
    if vectors.dtype != np.float32:
        raise _fail(path, f"dtype: expected float32, found {vectors.dtype}")
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise _fail(path, f"non-finite values (NaN/inf) in {bad.size} row(s), first bad row {int(bad[0])}")
    found_sha = sha256_bytes(data)
    if manifest.get("vectors_sha256") != found_sha:
        raise _fail(path, f"vectors_sha256: expected {manifest.get('vectors_sha256')}, found {found_sha}")
    return manifest, vectors, data


def _check_encoder(path: Path, manifest: dict[str, Any], encoder: TextEncoder) -> None:
    expected = {k: v for k, v in encoder.describe().items() if k not in _VOLATILE}
    expected["dim"] = encoder.dim
    found_enc = manifest.get("encoder_fields", {})
    for key, value in expected.items():
        found = manifest.get("dim") if key == "dim" else found_enc.get(key, "<absent>")
        if _jsonable(found) != _jsonable(value):
            raise _fail(path, f"{key}: expected {value!r} (from the encoder), found {found!r}")
    if manifest.get("fingerprint") != encoder.fingerprint:
        raise _fail(path, f"fingerprint: expected {encoder.fingerprint}, found {manifest.get('fingerprint')}")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _npy_bytes(vectors: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, vectors, allow_pickle=False)
    return buf.getvalue()


@contextlib.contextmanager
def _entry_lock(lock_path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the exclusive advisory lock ``lock_path`` (created if needed) for the block.

    Yields ``True`` once held; with ``blocking=False`` yields ``False`` at once when another process (or
    another open of the file in this one) holds it. The kernel releases the lock when the holder dies.
    Without ``fcntl`` it yields ``True`` and locks nothing.
    """
    if fcntl is None:  # pragma: no cover - Windows
        yield True
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def clean_cache_leftovers(cache_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Delete what killed cache writes left under ``<cache_dir>/embeddings`` and return the paths removed.

    Only names matching recgym's temp pattern (``.<name>.<8 chars>.tmp``) are touched, inside an entry's
    build area while no live builder holds that entry's lock (where locks are unavailable: only leftovers
    older than a day), and temp files older than 10 minutes inside published entries (written there by
    older recgym versions, which wrote entries in place). Called by
    :func:`encode_with_cache` on every call; errors (a read-only cache) are ignored.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    emb = root / "embeddings"
    removed: list[Path] = []
    try:
        areas = [p for p in (emb / STAGING).iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        areas = []
    for area in areas:
        try:
            with _entry_lock(area.parent / f"{area.name}.lock", blocking=False) as held:
                if held:
                    age = _UNLOCKED_LEFTOVER_AGE_S if fcntl is None else 0.0
                    removed += clean_stale_temp_files(area, include_dirs=True, min_age_s=age)
                    with contextlib.suppress(OSError):
                        area.rmdir()  # only when empty; the lock file stays (deleting it would race)
        except OSError as exc:
            logger.debug("embedding cache: could not clean %s: %s", area, exc)
    try:
        entries = [p for p in emb.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]
    except OSError:
        entries = []
    for entry in entries:
        with contextlib.suppress(OSError):
            removed += clean_stale_temp_files(entry, min_age_s=_IN_ENTRY_LEFTOVER_AGE_S)
    return removed


def _fsync_dir(path: Path) -> None:
    if os.name == "posix":
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(build: Path, path: Path, area: Path) -> None:
    """Move the complete folder ``build`` to ``path``, first moving a stale ``path`` aside (caller holds the lock)."""
    trash = None
    if path.exists() or path.is_symlink():
        trash = area / f".old.{secrets.token_hex(4)}.tmp"
        try:
            os.rename(path, trash)
        except FileNotFoundError:  # deleted by hand meanwhile: nothing to move aside
            trash = None
    os.rename(build, path)
    _fsync_dir(path.parent)
    if trash is not None:
        if trash.is_dir() and not trash.is_symlink():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink(missing_ok=True)


def encode_with_cache(
    encoder: TextEncoder,
    texts: Sequence[str],
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    name: str = "texts",
    rebuild_stale: bool = True,
    progress: bool = False,
) -> CachedEmbeddings:
    """Return the embeddings of ``texts`` by ``encoder``, from the cache when a verified one exists.

    Safe with concurrent callers (threads or processes, same or different entries): see the module docstring.

    Args:
        encoder: any :class:`TextEncoder`.
        texts: ``n`` non-empty strings (order matters: row ``i`` embeds ``texts[i]``).
        cache_dir: root folder; default :func:`default_cache_dir`.
        name: a readable prefix for the cache folder (``[A-Za-z0-9._-]``, e.g. ``"synthetic-items"``).
        rebuild_stale: rebuild a partial/corrupt/stale cache (warning logged, field named) instead of raising.
        progress: passed to ``encoder.encode``.

    Returns:
        :class:`CachedEmbeddings`: ``vectors`` ``(n, d)`` float32; ``hit`` is ``True`` when read from disk
        (also when another process built it while this one waited), ``False`` when encoded by this call.

    Raises:
        CacheError: the cache exists but fails verification and ``rebuild_stale`` is False; or the encoder
            returned a wrong shape/dtype or non-finite values (nothing is written then).
        ValueError / TypeError: bad ``texts`` or ``name``.
        recgym.common.DiskFullError: the disk filled up while writing (nothing half-written is left).
    """
    texts = validate_texts(texts, where="encode_with_cache: texts")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"encode_with_cache: name: expected 1-64 characters from [A-Za-z0-9._-] starting alphanumeric, "
            f"received {name!r}"
        )
    key = cache_key(encoder, texts)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    entry = f"{name}-{key[:16]}"
    path = root / "embeddings" / entry
    clean_cache_leftovers(root)
    with contextlib.suppress(CacheError):  # the fast path: no lock for a verified hit
        return load_cache(path, encoder=encoder, texts=texts)
    staging = root / "embeddings" / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    with _entry_lock(staging / f"{entry}.lock"):
        if path.exists() or path.is_symlink():  # verified again under the lock: a concurrent builder may have won
            try:
                return load_cache(path, encoder=encoder, texts=texts)
            except CacheError as exc:
                if not rebuild_stale:
                    raise CacheError(
                        f"{exc}; refusing to use it (rebuild_stale=False): delete {path} to rebuild"
                    ) from None
                logger.warning("%s; rebuilding it", exc)
        return _build(encoder, texts, key, name, path, staging / entry, progress)


def _build(encoder: TextEncoder, texts: list[str], key: str, name: str, path: Path, area: Path,
           progress: bool) -> CachedEmbeddings:
    """Encode, write a complete folder in the entry's build area, publish it (caller holds the entry lock)."""
    t0 = time.perf_counter()
    vectors = encoder.encode(texts, progress=progress)
    seconds = time.perf_counter() - t0
    _check_output(vectors, len(texts), encoder.dim)
    truncated = int(getattr(encoder, "last_truncated", 0) or 0)
    data = _npy_bytes(vectors)
    describe = encoder.describe()
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "key": key,
        "name": name,
        "fingerprint": encoder.fingerprint,
        "encoder_fields": {k: v for k, v in describe.items() if k != "last_truncated"},
        "model": describe.get("model"),
        "revision": describe.get("revision"),
        "weights_sha256": describe.get("weights_sha256"),
        "pooling": describe.get("pooling"),
        "max_length": describe.get("max_length"),
        "normalization": describe.get("normalization"),
        "precision": describe.get("precision"),
        "n": len(texts),
        "dim": int(vectors.shape[1]),
        "dtype": "float32",
        "texts_sha256": sha256_texts(texts),
        "vectors_sha256": sha256_bytes(data),
        "truncated": truncated,
        "encode_seconds": round(seconds, 3),
        "recgym_version": _recgym_version(),
    }
    try:
        area.mkdir(parents=True, exist_ok=True)
        clean_stale_temp_files(area, include_dirs=True)  # we hold the lock: whatever is here was left by a dead build
        build = Path(tempfile.mkdtemp(prefix=".build.", suffix=".tmp", dir=area))
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(area, needed=len(data), code=exc.errno) from exc
        raise
    try:
        atomic_write_bytes(build / VECTORS, data)
        atomic_write_json(build / MANIFEST, manifest)  # last: its presence marks a complete folder
        _fsync_dir(build)
        try:
            _publish(build, path, area)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # Only without working locks: another builder published first. Use its result if it verifies.
            return load_cache(path, encoder=encoder, texts=texts)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        with contextlib.suppress(OSError):
            area.rmdir()
        raise
    with contextlib.suppress(OSError):
        area.rmdir()
    return CachedEmbeddings(vectors, manifest, path, hit=False, truncated=truncated)


def _check_output(vectors: Any, n: int, dim: int) -> None:
    if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32 or vectors.shape != (n, dim):
        got = (type(vectors).__name__, getattr(vectors, "dtype", None), getattr(vectors, "shape", None))
        raise CacheError(f"encoder output: expected ndarray float32 of shape ({n}, {dim}), received {got}")
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        raise CacheError(f"encoder output: non-finite values, first bad row {int(np.flatnonzero(~finite)[0])}")
