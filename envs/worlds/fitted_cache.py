"""The fitted-world cache: the data fingerprint in its key, and loading a verified entry (``arrays.npz`` whose
sha256 the ``manifest.json`` carries; a stale or corrupt entry is reported and refitted, never trusted)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from recgym.common import read_json_file, sha256_bytes, sha256_texts
from recgym.common.io import load_npz_arrays
from recgym.envs.datasets import InteractionData

log = logging.getLogger("recgym.envs.worlds.fitted")


def _data_fingerprint(data: InteractionData) -> str:
    h = hashlib.sha256(data.name.encode())
    inter = data.interactions
    for col in ("user", "item", "rating", "weight", "timestamp", "positive", "dwell"):
        if col in inter.columns:
            h.update(np.ascontiguousarray(inter[col].to_numpy()).tobytes())
    h.update(sha256_texts(list(data.items["text"])).encode())
    h.update(sha256_texts([str(x) for x in data.users["user_id"]]).encode())
    return h.hexdigest()


_CACHE_ARRAYS = ("user_latent", "user_bias", "item_latent", "item_appeal", "scalars", "exposure")


def _load_cached(folder: Path, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    mpath, apath = folder / "manifest.json", folder / "arrays.npz"
    if not mpath.exists():
        return None
    try:
        manifest = read_json_file(mpath, what="fitted-world cache manifest")
        if not isinstance(manifest, dict):
            raise ValueError(f"expected a JSON object, received {type(manifest).__name__}")
        raw = apath.read_bytes()
        if manifest.get("key") != key or manifest.get("arrays_sha256") != sha256_bytes(raw):
            raise ValueError(f"expected key {key[:16]} and arrays sha256 {str(manifest.get('arrays_sha256', ''))[:16]}")
        arrays = load_npz_arrays(raw, path=apath, what="fitted-world cache")  # allow_pickle=False
        missing = [k for k in _CACHE_ARRAYS if k not in arrays]
        if missing:
            raise ValueError(f"missing arrays {missing}")
        return arrays, manifest
    except (OSError, ValueError, KeyError) as exc:  # CorruptFileError/UnsafeFileError are ValueErrors
        log.warning("fitted-world cache %s is stale or corrupt (%s); refitting", folder, exc)
        return None


