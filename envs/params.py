"""Frozen parameters of a simulation: the world's arrays as device tensors (:class:`WorldTensors`), and
:class:`SlateView`, the shown items with their parameters, which every component reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recgym.envs.config import EnvConfig
from recgym.envs.world import World

__all__ = ["WorldTensors", "SlateView", "take_rows", "NEVER_RELEASED"]

NEVER_RELEASED = np.iinfo(np.int64).max // 4  # release step of items that are never injected


def take_rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` for an index tensor of any shape, via ``index_select`` (several times faster on CPU
    than advanced indexing)."""
    return table.index_select(0, idx.reshape(-1)).view(*idx.shape, *table.shape[1:])


@dataclass(frozen=True, eq=False)
class WorldTensors:
    """The world's arrays on the core's device. Hidden fields feed the simulator only.

    ``items`` fuses every per-item number a slate needs into one ``(M, k + 5)`` float32 row — the latent
    factors, then ``static`` (the state-independent click logit ``popularity_weight * log(M * pop) +
    appeal_weight * appeal + bias``), ``quality``, ``genre``, ``new`` and ``head`` — so a slate costs one
    gather (column indices: :attr:`STATIC` .. :attr:`HEAD` counted after the ``k`` latent columns).
    """

    item_emb: torch.Tensor  # (M, d) float32, observable
    items: torch.Tensor  # (M, k + 5) float32 fused [latent | static, quality, genre, new, head], hidden
    item_genre: torch.Tensor  # (M,) int64
    item_popularity: torch.Tensor  # (M,) float32
    item_new: torch.Tensor  # (M,) bool
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

    STATIC, QUALITY, GENRE, NEW, HEAD = range(5)

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
    def item_latent(self) -> torch.Tensor:
        """``(M, k)`` view of the hidden item factors."""
        return self.items[:, : self.latent_dim]

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
        fused = np.concatenate(
            [c.latent, np.stack([static, c.quality, c.genres, c.is_new, c.head_mask()], 1)], axis=1
        ).astype(np.float32)

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), device=device)

        return cls(
            item_emb=t(c.embeddings), items=t(fused), item_genre=t(c.genres), item_popularity=t(c.popularity),
            item_new=t(c.is_new), item_release=t(release), new_order=t(new_idx), new_rank=t(new_rank),
            user_emb=t(p.embeddings), user_latent=t(p.latent), user_bias=t(p.bias), user_history=t(hist),
            user_cold=t(p.cold), history0=t(history0.astype(np.float32)),
            affinity_scale=float(pref.affinity_scale), num_genres=len(c.genre_names),
        )


@dataclass(frozen=True, eq=False)
class SlateView:
    """Items shown (or scored) in this step, ``X`` per user (a slate: ``X = K``; every candidate: ``N``).

    Attributes:
        positions: ``(B, X)`` int64 candidate positions.
        items: ``(B, X)`` int64 catalogue indices.
        keys: ``(B, X)`` int64 episode slot of each item (see :mod:`recgym.envs.candidates`): the column of
            per-slot tables such as ``slot_shown`` / ``slot_consumed``.
        rows: ``(B, X, k + 5)`` float32 rows of :attr:`WorldTensors.items`.
    """

    positions: torch.Tensor
    items: torch.Tensor
    keys: torch.Tensor
    rows: torch.Tensor
    latent_dim: int

    @property
    def latent(self) -> torch.Tensor:
        """``(B, X, k)`` hidden item factors."""
        return self.rows[..., : self.latent_dim]

    def column(self, j: int) -> torch.Tensor:
        """``(B, X)`` float32 fused column ``j`` (:attr:`WorldTensors.STATIC` .. :attr:`WorldTensors.HEAD`)."""
        return self.rows[..., self.latent_dim + j]

    @property
    def static(self) -> torch.Tensor:
        return self.column(WorldTensors.STATIC)

    @property
    def quality(self) -> torch.Tensor:
        return self.column(WorldTensors.QUALITY)

    @property
    def genre(self) -> torch.Tensor:
        """``(B, X)`` int64 genre indices."""
        return self.column(WorldTensors.GENRE).long()
