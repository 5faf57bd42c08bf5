"""The world contract: a catalogue, a user population and the hidden preference parameters.

Every world (synthetic, MovieLens, a user's own log, the analytic test world) is built into these frozen
dataclasses; the env core (:mod:`recgym.envs.core`) consumes only them. Observable fields (LM embeddings,
texts, popularity prior) may reach agents; hidden fields (``latent``, ``quality``, ``appeal``, ``bias``) are
used by the simulator, the myopic oracle and the metrics only.

Shapes: ``M`` items, ``U`` users, ``d`` language-model dim, ``k`` hidden latent dim, ``H`` history length.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Catalog", "Population", "PreferenceParams", "World"]


def _check(cond: bool, where: str, expected: str, received: object) -> None:
    if not cond:
        raise ValueError(f"{where}: expected {expected}, received {received}")


def _check_array(arr: np.ndarray, where: str, dtype: type, shape: tuple[int | None, ...]) -> None:
    _check(isinstance(arr, np.ndarray), where, "a numpy array", type(arr).__name__)
    _check(arr.dtype == dtype, where, f"dtype {np.dtype(dtype).name}", arr.dtype)
    _check(arr.ndim == len(shape), where, f"{len(shape)} dimensions", arr.shape)
    for axis, n in enumerate(shape):
        _check(n is None or arr.shape[axis] == n, where, f"shape {shape}", arr.shape)
    if np.issubdtype(arr.dtype, np.floating):
        bad = np.argwhere(~np.isfinite(arr))
        _check(bad.size == 0, where, "finite values", f"non-finite value at index {tuple(bad[0]) if bad.size else ''}")


@dataclass(frozen=True, eq=False)
class Catalog:
    """Items of a world.

    Attributes:
        item_ids: ``(M,)`` external ids (int or str), unique.
        titles: ``M`` display titles.
        texts: ``M`` texts that were encoded into ``embeddings``.
        embeddings: ``(M, d)`` float32, L2-normalised LM vectors. Observable.
        genres: ``(M,)`` int64 primary genre index into ``genre_names``.
        genre_names: the genre vocabulary.
        popularity: ``(M,)`` float32 popularity prior, non-negative, sums to 1. Long-tailed.
        quality: ``(M,)`` float32 in [0, 1]; hidden. Drives engagement and satisfaction, not clicks.
        appeal: ``(M,)`` float32; hidden additive click logit (clickbait items: high appeal, low quality).
        latent: ``(M, k)`` float32 hidden item factors of the preference model.
        is_new: ``(M,)`` bool; items held back from the initial catalogue and injected during a run.
        modalities: observable per-item features beside the text, name -> ``(M, f)`` float32 (e.g. ``"image"``
            vectors, ``"columns"`` of items.csv, ``"vectors"`` from item_vectors.npy). Raw: agents see them only
            once :func:`recgym.experiments.multimodal.fuse_world` fuses them into ``embeddings``. Default none.
    """

    item_ids: np.ndarray
    titles: list[str]
    texts: list[str]
    embeddings: np.ndarray
    genres: np.ndarray
    genre_names: tuple[str, ...]
    popularity: np.ndarray
    quality: np.ndarray
    appeal: np.ndarray
    latent: np.ndarray
    is_new: np.ndarray
    modalities: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = len(self.item_ids)
        _check(m > 0, "Catalog.item_ids", "at least one item", 0)
        _check(len(set(self.item_ids.tolist())) == m, "Catalog.item_ids", "unique ids", "duplicates")
        _check(len(self.titles) == m, "Catalog.titles", f"{m} titles", len(self.titles))
        _check(len(self.texts) == m, "Catalog.texts", f"{m} texts", len(self.texts))
        _check_array(self.embeddings, "Catalog.embeddings", np.float32, (m, None))
        _check_array(self.genres, "Catalog.genres", np.int64, (m,))
        _check(
            bool(((self.genres >= 0) & (self.genres < len(self.genre_names))).all()),
            "Catalog.genres",
            f"indices in [0, {len(self.genre_names)})",
            f"[{self.genres.min()}, {self.genres.max()}]",
        )
        _check_array(self.popularity, "Catalog.popularity", np.float32, (m,))
        _check(bool((self.popularity >= 0).all()), "Catalog.popularity", "non-negative values", "negative")
        _check(abs(float(self.popularity.sum()) - 1.0) < 1e-3, "Catalog.popularity", "sum 1", self.popularity.sum())
        _check_array(self.quality, "Catalog.quality", np.float32, (m,))
        _check(bool(((self.quality >= 0) & (self.quality <= 1)).all()), "Catalog.quality", "values in [0, 1]", "outside")
        _check_array(self.appeal, "Catalog.appeal", np.float32, (m,))
        _check_array(self.latent, "Catalog.latent", np.float32, (m, None))
        _check_array(self.is_new, "Catalog.is_new", np.bool_, (m,))
        _check(not bool(self.is_new.all()), "Catalog.is_new", "at least one initial item", "all items new")
        _check(isinstance(self.modalities, Mapping), "Catalog.modalities", "a mapping name -> array",
               type(self.modalities).__name__)
        for name, arr in self.modalities.items():
            _check(isinstance(name, str) and name != "text", "Catalog.modalities", "names other than 'text'", name)
            _check_array(arr, f"Catalog.modalities[{name!r}]", np.float32, (m, None))

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def head_mask(self, head_fraction: float = 0.2) -> np.ndarray:
        """``(M,)`` bool: the ``head_fraction`` most popular initial items (by prior). New items are never head."""
        order = np.argsort(-self.popularity, kind="stable")
        order = order[~self.is_new[order]]
        n_head = max(1, int(round(head_fraction * len(order))))
        mask = np.zeros(self.num_items, dtype=bool)
        mask[order[:n_head]] = True
        return mask

    def public_item_features(self) -> np.ndarray:
        """``(M, 2)`` float32 what a platform knows of each item without simulated feedback: the popularity
        percentile of the prior among initial items in (0, 1] (new items 0; what view counts would tell),
        and the new-item flag (1 = injected during a run)."""
        pct = np.zeros(self.num_items, dtype=np.float32)
        initial = np.flatnonzero(~self.is_new)
        order = initial[np.argsort(self.popularity[initial], kind="stable")]
        pct[order] = (np.arange(len(order)) + 1) / len(order)
        return np.stack([pct, self.is_new.astype(np.float32)], axis=1)


@dataclass(frozen=True, eq=False)
class Population:
    """Users of a world.

    Attributes:
        user_ids: ``(U,)`` external ids, unique.
        texts: ``U`` profile texts that were encoded into ``embeddings``.
        embeddings: ``(U, d)`` float32 L2-normalised LM profile vectors. Observable.
        latent: ``(U, k)`` float32 hidden true interest vectors (the starting point of interest drift).
        bias: ``(U,)`` float32 hidden per-user click-logit offset (activity level).
        history: ``(U, H)`` int64 item indices consumed before the simulation, most recent last, ``-1`` padded
            on the left. Observable (summarised as the mean of their LM embeddings).
        cold: ``(U,)`` bool; new users with a profile text and no history.
        test: ``(U,)`` bool; the held-out evaluation cohort (never used to train agents).
    """

    user_ids: np.ndarray
    texts: list[str]
    embeddings: np.ndarray
    latent: np.ndarray
    bias: np.ndarray
    history: np.ndarray
    cold: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        u = len(self.user_ids)
        _check(u > 0, "Population.user_ids", "at least one user", 0)
        _check(len(set(self.user_ids.tolist())) == u, "Population.user_ids", "unique ids", "duplicates")
        _check(len(self.texts) == u, "Population.texts", f"{u} texts", len(self.texts))
        _check_array(self.embeddings, "Population.embeddings", np.float32, (u, None))
        _check_array(self.latent, "Population.latent", np.float32, (u, None))
        _check_array(self.bias, "Population.bias", np.float32, (u,))
        _check_array(self.history, "Population.history", np.int64, (u, None))
        _check_array(self.cold, "Population.cold", np.bool_, (u,))
        _check_array(self.test, "Population.test", np.bool_, (u,))
        has_history = (self.history >= 0).any(axis=1)
        bad = np.flatnonzero(self.cold & has_history)
        _check(bad.size == 0, "Population.history", "no history for cold users", f"history for cold user {bad[:1]}")

    @property
    def num_users(self) -> int:
        return len(self.user_ids)


@dataclass(frozen=True)
class PreferenceParams:
    """Scalar weights of the hidden click logit.

    ``logit(u, i) = affinity_scale * <z_u, x_i> + popularity_weight * log(M * pop_i) + appeal_weight * appeal_i
    + bias + bias_u`` minus fatigue terms (added by the env dynamics). ``z_u``/``x_i`` are the user's current
    latent interest and the item's latent factors.
    """

    affinity_scale: float = 4.0
    popularity_weight: float = 0.3
    appeal_weight: float = 1.0
    bias: float = -3.0


@dataclass(frozen=True, eq=False)
class World:
    """A complete world: what the env core simulates. ``source`` describes provenance (for manifests).

    ``env_defaults``: env settings this world is meant to run with (nested :class:`~recgym.envs.config.EnvConfig`
    keys, e.g. the analytic world's "every item a candidate, dynamics off"); the shells apply them under the
    keys the user sets, so ``gym.make("recgym/Ranking-v0", world=name)`` works with default arguments.
    """

    name: str
    catalog: Catalog
    population: Population
    preference: PreferenceParams = field(default_factory=PreferenceParams)
    source: dict[str, str] = field(default_factory=dict)
    env_defaults: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c, p = self.catalog, self.population
        _check(c.dim == p.embeddings.shape[1], "World", f"profile dim == item dim {c.dim}", p.embeddings.shape[1])
        _check(c.latent.shape[1] == p.latent.shape[1], "World", f"user latent dim {c.latent.shape[1]}", p.latent.shape[1])
        hist = p.history
        _check(bool((hist < c.num_items).all()), "Population.history", f"item indices < {c.num_items}", hist.max())

    def fingerprint(self) -> str:
        """sha256 over every array and text of the world (stable across processes)."""
        h = hashlib.sha256(self.name.encode())
        for arr in (
            self.catalog.embeddings, self.catalog.genres, self.catalog.popularity, self.catalog.quality,
            self.catalog.appeal, self.catalog.latent, self.catalog.is_new, self.population.embeddings,
            self.population.latent, self.population.bias, self.population.history, self.population.cold,
            self.population.test,
        ):
            h.update(np.ascontiguousarray(arr).tobytes())
        for name in sorted(self.catalog.modalities):  # absent modalities leave the fingerprint of older worlds as it was
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.catalog.modalities[name]).tobytes())
        for t in self.catalog.texts + self.population.texts:
            h.update(t.encode())
        h.update(repr(self.preference).encode())
        return h.hexdigest()
