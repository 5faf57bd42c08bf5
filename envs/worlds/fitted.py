"""Worlds fitted to real interaction logs (MovieLens 100K, ml-latest-small, a user's own log).

Hidden preference model (fitted on the train split only; positives per ``InteractionData.positive_rule``,
``negatives`` uniformly sampled warm items per positive, binary cross-entropy)::

    logit(u, i) = <z_u, x_i> + w_pop * log(M * pop_i) + appeal_i + b + bias_u
    z_u = P_u e_u + r_u        x_i = P_i e_i + q_i
    bias_u = c_u . e_u + s_u   appeal_i = c_i . e_i + a_i

``e_u``/``e_i`` are frozen LM profile/item embeddings (``(U, d)``/``(M, d)`` float32), ``P``/``c`` small linear
text towers, ``r, q, s, a`` per-user/per-item residuals (L2-regularised; randomly hidden with probability
``residual_dropout`` during training so the text towers alone learn to rank — that is what cold users and
cold items get, their residuals being exactly 0). ``pop_i`` is the smoothed train-count popularity prior.

The fitted world maps onto :class:`~recgym.envs.world.World` with ``PreferenceParams(affinity_scale=1,
popularity_weight=w_pop, appeal_weight=1, bias=b)``, ``Population.latent = z``, ``Population.bias = bias_u``,
``Catalog.latent = x``, ``Catalog.appeal = appeal``, so the env's click logit equals the fitted one
(:func:`world_logits`). Hidden quality is the item's train mean rating shrunk toward the global mean, scaled to
[0, 1] (0.5 everywhere for implicit data). Cold items are ``Catalog.is_new``; cold users ``Population.cold``.

Results are cached under ``<cache_dir>/worlds/<name>-<key[:16]>/`` (``arrays.npz`` then ``manifest.json``
last, both atomic; the manifest carries the arrays' sha256 and is verified on load).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from recgym.common import (
    StrictModel,
    atomic_write_bytes,
    atomic_write_json,
    clean_stale_temp_files,
    read_json_file,
    resolve_device,
    sha256_bytes,
    sha256_texts,
)
from recgym.common.io import load_npz_arrays
from recgym.encoders.base import TextEncoder
from recgym.envs.datasets import (
    InteractionData,
    Split,
    SplitConfig,
    assert_no_leakage,
    canonical_name,
    load_dataset,
    profile_texts,
    split_interactions,
)
from recgym.envs.datasets.split import train_history
from recgym.envs.world import Catalog, Population, PreferenceParams, World

__all__ = ["FitConfig", "FittedWorld", "fit_world", "build_fitted_world", "load_world", "make_fitted_world", "world_logits",
           "popularity_prior", "hidden_quality"]

log = logging.getLogger(__name__)
FIT_VERSION = "1"


class FitConfig(StrictModel):
    """Hyperparameters of the hidden-model fit (and the split it uses)."""

    config_path = "fit"
    latent_dim: int = Field(32, ge=1, le=512, description="k, hidden latent dim")
    negatives: int = Field(4, ge=1, le=100, description="sampled negatives per positive")
    epochs: int = Field(25, ge=1, le=1000)
    batch_size: int = Field(4096, ge=16)
    lr: float = Field(0.01, gt=0.0, le=1.0)
    l2: float = Field(1e-4, ge=0.0, description="L2 on residuals (per batch row)")
    residual_dropout: float = Field(0.25, ge=0.0, lt=1.0, description="share of rows trained without residuals")
    popularity_smoothing: float = Field(1.0, gt=0.0, description="pseudo-count added to every item's train count")
    quality_shrinkage: float = Field(10.0, ge=0.0, description="pseudo-ratings at the global mean")
    history_length: int = Field(20, ge=0, le=1000)
    max_seconds: float = Field(120.0, gt=0.0, description="stop training (logged) when exceeded")
    seed: int = Field(0, ge=0)
    device: str = "cpu"
    torch_threads: int = Field(1, ge=0, description="intra-op threads while fitting (restored after); 0 = torch default")
    split: SplitConfig = SplitConfig()


@dataclass(frozen=True, eq=False)
class FittedWorld:
    """A fitted world plus what the fidelity report needs: the data, the split, the manifest and timings."""

    world: World
    data: InteractionData
    split: Split
    manifest: dict[str, Any]
    cache_hit: bool


def popularity_prior(data: InteractionData, split: Split, smoothing: float) -> np.ndarray:
    """``(M,)`` float32, sums to 1: ``(train_count + smoothing) / (N_train + smoothing * M)``."""
    counts = np.bincount(data.interactions["item"].to_numpy()[split.train], minlength=data.num_items)
    p = (counts + smoothing) / (counts.sum() + smoothing * data.num_items)
    return (p / p.sum()).astype(np.float32)


def hidden_quality(data: InteractionData, split: Split, shrinkage: float) -> np.ndarray:
    """``(M,)`` float32 in [0, 1]: train mean rating shrunk toward the global mean, min-max scaled by the rating
    scale. Implicit data (no ratings): 0.5 everywhere."""
    if data.rating_range is None:
        return np.full(data.num_items, 0.5, np.float32)
    tr = data.interactions.iloc[split.train]
    r = tr["rating"].to_numpy(np.float64)
    mu = float(r.mean()) if len(r) else float(np.mean(data.rating_range))
    s = np.bincount(tr["item"].to_numpy(), weights=r, minlength=data.num_items)
    n = np.bincount(tr["item"].to_numpy(), minlength=data.num_items)
    mean = (s + shrinkage * mu) / np.maximum(n + shrinkage, 1e-9)
    mean = np.where(n + shrinkage > 0, mean, mu)
    lo, hi = data.rating_range
    return np.clip((mean - lo) / max(hi - lo, 1e-9), 0.0, 1.0).astype(np.float32)


class _Model(torch.nn.Module):
    def __init__(self, d: int, k: int, n_users: int, n_items: int, gen: torch.Generator) -> None:
        super().__init__()
        std = 1.0 / np.sqrt(d)
        self.pu = torch.nn.Parameter(torch.randn(d, k, generator=gen) * std)
        self.pi = torch.nn.Parameter(torch.randn(d, k, generator=gen) * std)
        self.cu = torch.nn.Parameter(torch.zeros(d))
        self.ci = torch.nn.Parameter(torch.zeros(d))
        self.r = torch.nn.Parameter(torch.randn(n_users, k, generator=gen) * 0.01)
        self.q = torch.nn.Parameter(torch.randn(n_items, k, generator=gen) * 0.01)
        self.s = torch.nn.Parameter(torch.zeros(n_users))
        self.a = torch.nn.Parameter(torch.zeros(n_items))
        self.w_pop = torch.nn.Parameter(torch.tensor(0.5))
        self.b = torch.nn.Parameter(torch.tensor(0.0))

    def towers(self, eu: torch.Tensor, ei: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return eu @ self.pu, ei @ self.pi, eu @ self.cu, ei @ self.ci

    def forward(self, u, i, eu, ei, logpop, keep_u, keep_i):  # noqa: ANN001, ANN201 — internal
        zu, xi, bu, ai = self.towers(eu[u], ei[i])
        zu = zu + keep_u[:, None] * self.r[u]
        xi = xi + keep_i[:, None] * self.q[i]
        logit = (zu * xi).sum(1) + self.w_pop * logpop[i] + ai + keep_i * self.a[i] + bu + keep_u * self.s[u] + self.b
        reg = (self.r[u] ** 2).sum(1) + (self.q[i] ** 2).sum(1) + self.s[u] ** 2 + self.a[i] ** 2
        return logit, reg


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (a small model is fastest, and robust to a busy machine, on 1)."""
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _train(data: InteractionData, split: Split, eu_np: np.ndarray, ei_np: np.ndarray, logpop_np: np.ndarray,
           cfg: FitConfig, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    device = resolve_device(cfg.device)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    tr = data.interactions.iloc[split.train]
    tr = tr[tr["positive"].to_numpy()]
    pu, pi, pw = tr["user"].to_numpy(), tr["item"].to_numpy(), tr["weight"].to_numpy(np.float32)
    warm_items = np.flatnonzero(~split.cold_items)
    model = _Model(eu_np.shape[1], cfg.latent_dim, data.num_users, data.num_items, gen).to(device)
    eu, ei = torch.from_numpy(eu_np).to(device), torch.from_numpy(ei_np).to(device)
    logpop = torch.from_numpy(logpop_np).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    n_pos, neg = len(pu), cfg.negatives
    t0, losses, epochs_done = time.perf_counter(), [], 0
    for _epoch in range(cfg.epochs):
        u = np.concatenate([pu, np.repeat(pu, neg)])
        i = np.concatenate([pi, rng.choice(warm_items, size=n_pos * neg)])
        y = np.concatenate([np.ones(n_pos, np.float32), np.zeros(n_pos * neg, np.float32)])
        w = np.concatenate([pw, np.repeat(pw, neg)]).astype(np.float32)
        keep_u = (rng.random(len(u)) >= cfg.residual_dropout).astype(np.float32)
        keep_i = (rng.random(len(u)) >= cfg.residual_dropout).astype(np.float32)
        perm = rng.permutation(len(u))
        tensors = [torch.from_numpy(a[perm]).to(device) for a in (u, i, y, w, keep_u, keep_i)]
        total = 0.0
        for s in range(0, len(u), cfg.batch_size):
            bu, bi, by, bw, ku, ki = (t[s:s + cfg.batch_size] for t in tensors)
            logit, reg = model(bu, bi, eu, ei, logpop, ku, ki)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, by, weight=bw)
            loss = bce + cfg.l2 * reg.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(bce.detach()) * len(by)
        losses.append(total / len(u))
        epochs_done += 1
        if not np.isfinite(losses[-1]):
            raise FloatingPointError(f"fit: expected a finite loss, received {losses[-1]} at epoch {epochs_done}")
        if time.perf_counter() - t0 > cfg.max_seconds:
            log.warning("fit: stopped after %d/%d epochs (max_seconds=%s)", epochs_done, cfg.epochs, cfg.max_seconds)
            break
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        zu, xi, bu, ai = (t.cpu().numpy() for t in model.towers(eu, ei))
        cold_u = split.cold_users.astype(np.float32)
        cold_i = split.cold_items.astype(np.float32)
        arrays = {
            "user_latent": zu + (1 - cold_u)[:, None] * model.r.detach().cpu().numpy(),
            "user_bias": bu + (1 - cold_u) * model.s.detach().cpu().numpy(),
            "item_latent": xi + (1 - cold_i)[:, None] * model.q.detach().cpu().numpy(),
            "item_appeal": ai + (1 - cold_i) * model.a.detach().cpu().numpy(),
            "scalars": np.array([float(model.w_pop), float(model.b)], np.float64),
        }
    arrays = {k: (v.astype(np.float32) if k != "scalars" else v) for k, v in arrays.items()}
    info = {"fit_seconds": round(seconds, 3), "epochs": epochs_done, "train_positives": int(n_pos),
            "final_loss": round(losses[-1], 5), "device": str(device)}
    return arrays, info


def _data_fingerprint(data: InteractionData) -> str:
    h = hashlib.sha256(data.name.encode())
    inter = data.interactions
    for col in ("user", "item", "rating", "weight", "timestamp", "positive"):
        h.update(np.ascontiguousarray(inter[col].to_numpy()).tobytes())
    h.update(sha256_texts(list(data.items["text"])).encode())
    h.update(sha256_texts([str(x) for x in data.users["user_id"]]).encode())
    return h.hexdigest()


def _encode(encoder: TextEncoder, texts: list[str], cache_dir: Path | None, name: str) -> np.ndarray:
    from recgym.encoders.cache import encode_with_cache

    return encode_with_cache(encoder, texts, cache_dir, name=name).vectors


_CACHE_ARRAYS = ("user_latent", "user_bias", "item_latent", "item_appeal", "scalars")


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


def build_fitted_world(
    data: InteractionData,
    encoder: TextEncoder,
    config: FitConfig | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> FittedWorld:
    """Split ``data``, encode texts, fit the hidden model (or load it from the cache) and build the World.

    One ``np.random.Generator(config.seed)`` drives the split, negative sampling and the torch init.
    """
    from recgym.encoders.cache import default_cache_dir

    cfg = config or FitConfig()
    rng = np.random.default_rng(cfg.seed)
    split = split_interactions(data, cfg.split, rng)
    ptexts = profile_texts(data, split)
    itexts = list(data.items["text"])
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    t0 = time.perf_counter()
    ei = _encode(encoder, itexts, root, f"{data.name}-items")
    eu = _encode(encoder, ptexts, root, f"{data.name}-profiles")
    encode_seconds = time.perf_counter() - t0
    pop = popularity_prior(data, split, cfg.popularity_smoothing)
    logpop = np.log(data.num_items * pop).astype(np.float32)
    key = hashlib.sha256(json.dumps({
        "v": FIT_VERSION, "data": _data_fingerprint(data), "encoder": encoder.fingerprint,
        "items": sha256_texts(itexts), "profiles": sha256_texts(ptexts), "config": cfg.model_dump(mode="json"),
    }, sort_keys=True).encode()).hexdigest()
    folder = root / "worlds" / f"{data.name}-{key[:16]}"
    cached = _load_cached(folder, key) if use_cache else None
    if cached is not None:
        arrays, manifest = cached
    else:
        with _threads(cfg.torch_threads):
            arrays, info = _train(data, split, eu, ei, logpop, cfg, rng)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        raw = buf.getvalue()
        manifest = {
            "key": key, "fit_version": FIT_VERSION, "dataset": data.name, "positive_rule": data.positive_rule,
            "encoder": encoder.describe(), "encoder_fingerprint": encoder.fingerprint,
            "config": cfg.model_dump(mode="json"), "arrays_sha256": sha256_bytes(raw),
            "encode_seconds": round(encode_seconds, 3), **info,
        }
        if use_cache:
            clean_stale_temp_files(folder, min_age_s=600)  # leftovers of a killed write (not a live writer's)
            (folder / "manifest.json").unlink(missing_ok=True)
            atomic_write_bytes(folder / "arrays.npz", raw)
            atomic_write_json(folder / "manifest.json", manifest)
    w_pop, bias = (float(x) for x in arrays["scalars"])
    catalog = Catalog(
        item_ids=np.asarray(list(data.items["item_id"])), titles=[str(t) for t in data.items["title"]],
        texts=itexts, embeddings=np.ascontiguousarray(ei, np.float32), genres=data.primary_genres(),
        genre_names=tuple(data.genre_names), popularity=pop,
        quality=hidden_quality(data, split, cfg.quality_shrinkage), appeal=arrays["item_appeal"],
        latent=arrays["item_latent"], is_new=split.cold_items.copy(),
    )
    history = train_history(data, split, cfg.history_length)
    assert_no_leakage(data, split, history)
    population = Population(
        user_ids=np.asarray(list(data.users["user_id"])), texts=ptexts, embeddings=np.ascontiguousarray(eu, np.float32),
        latent=arrays["user_latent"], bias=arrays["user_bias"], history=history, cold=split.cold_users.copy(),
        test=split.test_users.copy(),
    )
    world = World(
        name=data.name, catalog=catalog, population=population,
        preference=PreferenceParams(affinity_scale=1.0, popularity_weight=w_pop, appeal_weight=1.0, bias=bias),
        source={"dataset": data.name, "fit_key": key, "encoder": encoder.fingerprint,
                "positive_rule": data.positive_rule, "cache": str(folder)},
    )
    return FittedWorld(world=world, data=data, split=split, manifest=manifest, cache_hit=cached is not None)


def fit_world(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    encoder: TextEncoder | None = None,
    config: FitConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> FittedWorld:
    """Load dataset ``name`` (see :func:`recgym.envs.datasets.load_dataset`) and build its fitted world.

    ``encoder`` defaults to :class:`recgym.encoders.transformer.TransformerEncoder` (bundled MiniLM, offline).
    """
    canonical_name(name)  # fail fast on an unknown name, before touching data or the encoder
    cfg = config or FitConfig()
    data = load_dataset(name, data_dir)
    if encoder is None:
        from recgym.encoders.transformer import TransformerEncoder

        encoder = TransformerEncoder()
    return build_fitted_world(data, encoder, cfg, cache_dir=cache_dir, use_cache=use_cache)


def load_world(name: str, data_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> World:
    """:func:`fit_world` returning only the :class:`World` (what ``gym.make(..., world=name)`` needs)."""
    return fit_world(name, data_dir, **kwargs).world


def make_fitted_world(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    encoder: TextEncoder | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    **config: Any,
) -> World:
    """Entry point of :mod:`recgym.envs.factory`: ``config`` holds :class:`FitConfig` fields (``world_config``),
    validated (unknown keys rejected with a suggestion) before any data is read."""
    cfg = FitConfig.model_validate(config)
    return fit_world(name, data_dir, encoder=encoder, config=cfg, cache_dir=cache_dir).world


def world_logits(world: World, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
    """Hidden click logits without dynamics (no fatigue/drift): ``(B, M')`` float32 for ``users`` ``(B,)`` int64
    and ``items`` ``(M',)`` (default all ``M``) — the same formula as the env's click logit at reset."""
    c, p, w = world.catalog, world.population, world.preference
    idx = np.arange(c.num_items) if items is None else np.asarray(items)
    item_term = (w.popularity_weight * np.log(c.num_items * np.maximum(c.popularity[idx], 1e-12))
                 + w.appeal_weight * c.appeal[idx] + w.bias)
    out = w.affinity_scale * (p.latent[users] @ c.latent[idx].T) + item_term[None, :] + p.bias[users][:, None]
    return out.astype(np.float32)
