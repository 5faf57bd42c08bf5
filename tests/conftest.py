"""Shared fixtures: a small random world (no encoder) and the data directory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from recgym.envs.world import Catalog, Population, PreferenceParams, World

REPO = Path(__file__).resolve().parents[1]

# Small tensors gain nothing from intra-op threads, and on a loaded 2-core machine OpenMP waits turn
# microsecond ops into milliseconds. Benchmarks set their thread count explicitly.
torch.set_num_threads(1)


def random_world(
    n_items: int = 300, n_users: int = 40, dim: int = 32, latent: int = 8, n_new: int = 30, seed: int = 0
) -> World:
    """A world with random unit vectors, Zipf popularity, a clickbait block and held-back new items."""
    rng = np.random.default_rng(seed)

    def unit(n: int, k: int) -> np.ndarray:
        v = rng.normal(size=(n, k)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    m = n_items + n_new
    pop = (1.0 / np.arange(1, m + 1) ** 1.1)[rng.permutation(m)].astype(np.float32)
    pop /= pop.sum()
    quality = rng.uniform(0.2, 1.0, m).astype(np.float32)
    appeal = rng.normal(0, 0.3, m).astype(np.float32)
    bait = rng.choice(n_items, n_items // 10, replace=False)
    quality[bait], appeal[bait] = 0.05, 2.0
    is_new = np.zeros(m, bool)
    is_new[n_items:] = True
    genres = rng.integers(0, 20, m).astype(np.int64)
    catalog = Catalog(
        item_ids=np.arange(m), titles=[f"t{i}" for i in range(m)], texts=[f"text {i}" for i in range(m)],
        embeddings=unit(m, dim), genres=genres, genre_names=tuple(f"g{g}" for g in range(20)), popularity=pop,
        quality=quality, appeal=appeal, latent=unit(m, latent), is_new=is_new,
    )
    history = rng.integers(0, n_items, (n_users, 5)).astype(np.int64)
    cold = np.zeros(n_users, bool)
    cold[: n_users // 4] = True
    history[cold] = -1
    test = np.zeros(n_users, bool)
    test[n_users // 2 :] = True
    population = Population(
        user_ids=np.arange(n_users), texts=[f"user {u}" for u in range(n_users)], embeddings=unit(n_users, dim),
        latent=unit(n_users, latent), bias=rng.normal(0, 0.1, n_users).astype(np.float32), history=history,
        cold=cold, test=test,
    )
    return World(name=f"random-{seed}", catalog=catalog, population=population, preference=PreferenceParams())


@pytest.fixture(scope="session")
def small_world() -> World:
    return random_world()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared MovieLens data: ``RECGYM_DATA`` or ``../shared/data`` beside the repository."""
    path = Path(os.environ.get("RECGYM_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        raise FileNotFoundError(f"RECGYM_DATA: expected the shared data folder, {path} does not exist")
    return path
