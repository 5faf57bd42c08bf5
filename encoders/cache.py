"""Embedding cache: one verified file set per (encoder fingerprint, ordered texts).

Layout: ``<cache_dir>/embeddings/<name>-<key[:16]>/`` holding ``vectors.npy`` (``(n, d)`` float32) and
``manifest.json``. ``key = sha256(encoder.fingerprint + sha256_texts(texts))``.

Write protocol: delete any old manifest, write ``vectors.npy`` atomically, then write ``manifest.json``
atomically and *last* (it carries the sha256 of the vectors file). A process killed at any point therefore
leaves either a complete cache or a folder without a valid manifest, which :func:`load_cache` refuses.

Read protocol (:func:`load_cache`): manifest present and parseable, vectors file readable, shape ``(n, dim)``,
dtype float32, every value finite, file sha256 as recorded, and - given an encoder and/or texts - every
identity field equal to the encoder's and the texts' hash equal. Any failure raises :class:`CacheError`
naming the field with expected vs found; :func:`encode_with_cache` then rebuilds (``rebuild_stale=True``,
logging a warning) or re-raises. A bad cache is never used silently.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recgym.common import atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_texts
from recgym.encoders.base import TextEncoder, validate_texts

__all__ = ["CacheError", "CachedEmbeddings", "default_cache_dir", "cache_key", "encode_with_cache", "load_cache"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
FORMAT_VERSION = 1
# describe() fields that are informative only and never make a cache stale.
_VOLATILE = frozenset({"last_truncated", "model_path"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class CacheError(RuntimeError):
    """An embedding cache is missing, partial, corrupt or stale. The message names the field, expected vs found."""


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


def load_cache(
    path: str | os.PathLike[str], encoder: TextEncoder | None = None, texts: Sequence[str] | None = None
) -> CachedEmbeddings:
    """Load and verify the cache folder ``path``; with ``encoder``/``texts`` also check it belongs to them.

    Returns:
        :class:`CachedEmbeddings` with ``hit=True``.

    Raises:
        CacheError: partial (manifest missing), unreadable or truncated files, wrong shape/dtype, non-finite
            rows (first bad row named), content hash mismatch, or a manifest field that differs from the
            encoder/texts (field named, expected vs found).
    """
    path = Path(path)
    mpath, vpath = path / MANIFEST, path / VECTORS
    if not mpath.is_file():
        state = "vectors.npy present" if vpath.exists() else "folder empty or missing"
        raise _fail(path, f"partial cache: manifest missing ({state}); it was never completed or was interrupted")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        n, dim = int(manifest["n"]), int(manifest["dim"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _fail(path, f"manifest.json unreadable or incomplete: {type(exc).__name__}: {exc}") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _fail(path, f"format_version: expected {FORMAT_VERSION}, found {manifest.get('format_version')!r}")
    try:
        data = vpath.read_bytes()
        vectors = np.load(io.BytesIO(data), allow_pickle=False)
    except FileNotFoundError:
        raise _fail(path, "vectors.npy missing although the manifest exists") from None
    except (ValueError, OSError, EOFError) as exc:
        raise _fail(path, f"vectors.npy truncated or corrupt: {exc}") from None
    if vectors.ndim != 2 or vectors.shape != (n, dim):
        raise _fail(path, f"shape: expected ({n}, {dim}) from the manifest, found {vectors.shape}")
    if vectors.dtype != np.float32:
        raise _fail(path, f"dtype: expected float32, found {vectors.dtype}")
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise _fail(path, f"non-finite values (NaN/inf) in {bad.size} row(s), first bad row {int(bad[0])}")
    found_sha = sha256_bytes(data)
    if manifest.get("vectors_sha256") != found_sha:
        raise _fail(path, f"vectors_sha256: expected {manifest.get('vectors_sha256')}, found {found_sha}")
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

    Args:
        encoder: any :class:`TextEncoder`.
        texts: ``n`` non-empty strings (order matters: row ``i`` embeds ``texts[i]``).
        cache_dir: root folder; default :func:`default_cache_dir`.
        name: a readable prefix for the cache folder (``[A-Za-z0-9._-]``, e.g. ``"synthetic-items"``).
        rebuild_stale: rebuild a partial/corrupt/stale cache (warning logged, field named) instead of raising.
        progress: passed to ``encoder.encode``.

    Returns:
        :class:`CachedEmbeddings`: ``vectors`` ``(n, d)`` float32, ``hit`` tells whether it came from disk.

    Raises:
        CacheError: the cache exists but fails verification and ``rebuild_stale`` is False; or the encoder
            returned a wrong shape/dtype or non-finite values (nothing is written then).
        ValueError / TypeError: bad ``texts`` or ``name``.
    """
    texts = validate_texts(texts, where="encode_with_cache: texts")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"encode_with_cache: name: expected 1-64 characters from [A-Za-z0-9._-] starting alphanumeric, "
            f"received {name!r}"
        )
    key = cache_key(encoder, texts)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = root / "embeddings" / f"{name}-{key[:16]}"
    if path.exists():
        try:
            return load_cache(path, encoder=encoder, texts=texts)
        except CacheError as exc:
            if not rebuild_stale:
                raise CacheError(f"{exc}; refusing to use it (rebuild_stale=False): delete {path} to rebuild") from None
            logger.warning("%s; rebuilding it", exc)
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
        "n": len(texts),
        "dim": int(vectors.shape[1]),
        "dtype": "float32",
        "texts_sha256": sha256_texts(texts),
        "vectors_sha256": sha256_bytes(data),
        "truncated": truncated,
        "encode_seconds": round(seconds, 3),
        "recgym_version": _recgym_version(),
    }
    (path / MANIFEST).unlink(missing_ok=True)  # an old manifest must never vouch for new vectors
    atomic_write_bytes(path / VECTORS, data)
    atomic_write_json(path / MANIFEST, manifest)  # last: its presence marks a complete cache
    return CachedEmbeddings(vectors, manifest, path, hit=False, truncated=truncated)


def _check_output(vectors: Any, n: int, dim: int) -> None:
    if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32 or vectors.shape != (n, dim):
        got = (type(vectors).__name__, getattr(vectors, "dtype", None), getattr(vectors, "shape", None))
        raise CacheError(f"encoder output: expected ndarray float32 of shape ({n}, {dim}), received {got}")
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        raise CacheError(f"encoder output: non-finite values, first bad row {int(np.flatnonzero(~finite)[0])}")
