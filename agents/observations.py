"""Observation helpers shared by the agents and their explanations (a leaf module: numpy and torch only,
so ``base``, ``baselines`` and ``explain`` all import it without an import cycle)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["OBS_KEYS", "OPTIONAL_OBS_KEYS", "as_batched_obs", "unit_rows"]

OBS_KEYS = ("profile", "history", "context", "candidates", "mask")
OPTIONAL_OBS_KEYS = ("item_feedback",)  # kept by as_batched_obs when the env observes them


def as_batched_obs(obs: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
    """Validate an observation dict; add a batch dim to a single-env observation.

    Returns ``(obs with (B, ...) numpy arrays, was_single)``.
    """
    missing = [k for k in OBS_KEYS if k not in obs]
    if missing:
        raise KeyError(f"obs: expected keys {OBS_KEYS}, missing {missing}")
    keys = OBS_KEYS + tuple(k for k in OPTIONAL_OBS_KEYS if k in obs)
    out = {k: np.asarray(obs[k]) if not isinstance(obs[k], torch.Tensor) else obs[k].cpu().numpy() for k in keys}
    single = out["candidates"].ndim == 1
    if single:
        out = {k: v[None] for k, v in out.items()}
    b, n = out["candidates"].shape
    if out["mask"].shape != (b, n):
        raise ValueError(f"obs['mask']: expected shape {(b, n)} like obs['candidates'], received {out['mask'].shape}")
    out["candidates"] = out["candidates"].astype(np.int64, copy=False)
    return out, single


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). ``(..., d)`` float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(norm > 0, x / np.maximum(norm, 1e-12), 0.0).astype(np.float32)
