"""Frozen parameters of a simulation: the world's arrays as device tensors (:class:`WorldTensors`), and
:class:`SlateView`, the shown items with their parameters, which every component reads."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from recgym.envs.config import EnvConfig
from recgym.envs.world import World

__all__ = ["WorldTensors", "SlateView", "take_rows", "weighted_row_sum", "NEVER_RELEASED"]

NEVER_RELEASED = np.iinfo(np.int64).max // 4  # release step of items that are never injected


def take_rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` for an index tensor of any shape: one ``embedding`` call for float tables (a fused
    ``index_select``), ``index_select`` otherwise (both several times faster on CPU than advanced indexing)."""
    if table.is_floating_point() and table.dim() == 2:
        return torch.nn.functional.embedding(idx, table)
    if table.dim() == 1 and idx.numel() <= _TAKE_MAX:
        return table.take(idx)  # one op: what counts for small batches
    return table.index_select(0, idx.reshape(-1)).view(*idx.shape, *table.shape[1:])


_TAKE_MAX = 4_096  # up to this many indices, take (one op) beats index_select + views
_OFFSETS: dict[tuple[int, int, str], torch.Tensor] = {}


def weighted_row_sum(table: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` float32 ``sum_j weights[b, j] * table[idx[b, j]]`` for ``idx``/``weights`` ``(B, X)``: one fused
    gather-and-sum (``embedding_bag``), never materialising the ``(B, X, D)`` rows."""
    b, x = idx.shape
    key = (b, x, str(idx.device))
    offsets = _OFFSETS.get(key)
    if offsets is None:
        if len(_OFFSETS) > 64:
            _OFFSETS.clear()
        offsets = _OFFSETS[key] = torch.arange(0, b * x, x, device=idx.device)
    return torch.embedding_bag(table, idx.reshape(-1), offsets, False, 0, False, weights.reshape(-1), False)[0]


@dataclass(frozen=True, eq=False)
class WorldTensors:
    """The world's arrays on the core's device. Hidden fields feed the simulator only.

    Per-item numbers a slate needs are separate contiguous tables, gathered lazily by :class:`SlateView`:
    ``item_static`` is the state-independent part of the click logit, ``popularity_weight * log(M * pop) +
    appeal_weight * appeal + bias``.
    """

    item_emb: torch.Tensor  # (M, d) float32, observable
    item_latent: torch.Tensor  # (M, k) float32, hidden
    item_static: torch.Tensor  # (M,) float32, hidden
    item_quality: torch.Tensor  # (M,) float32, hidden
    item_genre: torch.Tensor  # (M,) int64
    item_popularity: torch.Tensor  # (M,) float32
    item_new: torch.Tensor  # (M,) bool
    item_head: torch.Tensor  # (M,) bool, the 20 % most popular initial items
    item_release: torch.Tensor  # (M,) int64 env step of release (0 initial; NEVER_RELEASED if never)
    new_order: torch.Tensor  # (n_new,) int64 injected items in release order
    new_rank: torch.Tensor  # (M,) int64 position of an item in new_order (-1 for initial items)
    user_emb: torch.Tensor  # (U, d) float32, observable
    user_latent: torch.Tensor  # (U, k) float32, hidden
    user_bias: torch.Tensor  # (U,) float32, hidden
    user_history: torch.Tensor  # (U, H) int64, -1 padded
    user_cold: torch.Tensor  # (U,) bool
    history0: torch.Tensor  # (U, d) float32 mean LM embedding of each user's prior history (0 if none)
    affinity_scale: float
    num_genres: int

    @property
    def latent_dim(self) -> int:
        return int(self.user_latent.shape[1])

    @property
    def num_items(self) -> int:
        return int(self.item_emb.shape[0])

    @property
    def num_users(self) -> int:
        return int(self.user_emb.shape[0])

    @property
    def device(self) -> torch.device:
        return self.item_emb.device

    @classmethod
    def from_world(cls, world: World, config: EnvConfig, device: torch.device) -> WorldTensors:
        c, p, pref = world.catalog, world.population, world.preference
        m = c.num_items
        static = (
            pref.popularity_weight * np.log(np.maximum(c.popularity, 1e-12) * m)
            + pref.appeal_weight * c.appeal
            + pref.bias
        ).astype(np.float32)
        new_idx = np.flatnonzero(c.is_new)
        release = np.zeros(m, dtype=np.int64)
        rate = config.new_items.per_step
        if rate > 0:
            # Item j is out once floor(t * rate) > j (the count candidates.released_new_count uses); the
            # epsilon keeps float rounding (1 / 0.05 = 20.000000000000004) from delaying it a step.
            release[new_idx] = np.ceil((np.arange(len(new_idx)) + 1 - 1e-9) / rate).astype(np.int64)
        else:
            release[new_idx] = NEVER_RELEASED
        new_rank = np.full(m, -1, dtype=np.int64)
        new_rank[new_idx] = np.arange(len(new_idx))
        hist = p.history
        valid = (hist >= 0)[..., None]
        history0 = (c.embeddings[np.maximum(hist, 0)] * valid).sum(1) / np.maximum(valid.sum(1), 1)

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), device=device)

        return cls(
            item_emb=t(c.embeddings), item_latent=t(c.latent), item_static=t(static), item_quality=t(c.quality),
            item_genre=t(c.genres), item_popularity=t(c.popularity), item_new=t(c.is_new),
            item_head=t(c.head_mask()), item_release=t(release), new_order=t(new_idx), new_rank=t(new_rank),
            user_emb=t(p.embeddings), user_latent=t(p.latent), user_bias=t(p.bias), user_history=t(hist),
            user_cold=t(p.cold), history0=t(history0.astype(np.float32)),
            affinity_scale=float(pref.affinity_scale), num_genres=len(c.genre_names),
        )


class SlateView:
    """Items shown (or scored) in this step, ``X`` per user (a slate: ``X = K``; every candidate: ``N``), with
    their parameters gathered on first use (each once).

    Attributes:
        positions: ``(B, X)`` int64 candidate positions.
        items: ``(B, X)`` int64 catalogue indices.
        keys: ``(B, X)`` int64 episode slot of each item (see :mod:`recgym.envs.candidates`): the column of
            per-slot tables such as ``slot_shown`` / ``slot_consumed``.
        latent ``(B, X, k)``, static, quality ``(B, X)`` float32, genre ``(B, X)`` int64, is_new, is_head
        ``(B, X)`` bool: the items' rows of the :class:`WorldTensors` tables.
    """

    def __init__(self, params: WorldTensors, positions: torch.Tensor, items: torch.Tensor,
                 keys: torch.Tensor) -> None:
        self.params, self.positions, self.items, self.keys = params, positions, items, keys

    def _take(self, table: torch.Tensor) -> torch.Tensor:
        return take_rows(table, self.items)

    @functools.cached_property
    def latent(self) -> torch.Tensor:
        return self._take(self.params.item_latent)

    @functools.cached_property
    def static(self) -> torch.Tensor:
        return self._take(self.params.item_static)

    @functools.cached_property
    def quality(self) -> torch.Tensor:
        return self._take(self.params.item_quality)

    @functools.cached_property
    def genre(self) -> torch.Tensor:
        return self._take(self.params.item_genre)

    @functools.cached_property
    def is_new(self) -> torch.Tensor:
        return self._take(self.params.item_new)

    @functools.cached_property
    def is_head(self) -> torch.Tensor:
        return self._take(self.params.item_head)
