"""Worlds fitted to real interaction logs (MovieLens 100K, ml-latest-small, a user's own log).

Hidden preference model (fitted on ``split.fit_rows`` — the train split minus its latest ``validation_fraction``
per user; positives per ``InteractionData.positive_rule``; negatives: ``negatives`` sampled warm items per
positive, uniformly or partly by popularity (``popularity_negatives``), and with ``observed_negatives`` the
logged non-positive rows, e.g. ratings below 4 — off by default: a film watched and rated 3 is still a likely
interaction, and training it as a non-click lowered ml-100k warm AUC from 0.881 to 0.854; binary
cross-entropy)::

    logit(u, i) = <z_u, x_i> + w_pop * log(M * pop_i) + appeal_i + b + bias_u
    z_u = P_u e_u + r_u        x_i = P_i e_i + q_i
    bias_u = c_u . e_u + s_u   appeal_i = c_i . e_i + a_i

``e_u``/``e_i`` are frozen LM profile/item embeddings (``(U, d)``/``(M, d)`` float32), ``P``/``c`` small linear
text towers, ``r, q, s, a`` per-user/per-item residuals (L2-regularised; randomly hidden with probability
``residual_dropout`` during training so the text towers alone learn to rank — that is what cold users and
cold items get, their residuals being exactly 0). ``pop_i`` is the smoothed train-count popularity prior.

**Cold users** (no residual) are the average user nudged by their text, with the popularity prior blended in:
``z_u = mean_warm(z) + cold_text_weight * (P_u e_u - mean_warm(P_u e_u))`` (likewise ``bias_u``) and
``logit += delta * log(M * pop_i)``. Why not the text tower alone: it sees one unique profile text per warm
user and memorises them, so on a new text it adds noise (ml-100k: cold-user NDCG@10 0.20 vs popularity 0.34).
``delta`` is chosen from ``{0, 0.5, 1, 2}`` on the validation rows of warm users scored as if they were cold
(AUC + NDCG@10), never on the held-out cold users. ``delta`` is carried exactly by one extra latent dimension
(``z_u[k] = delta`` for cold users, 0 otherwise; ``x_i[k] = log(M * pop_i)``). Cold users also reveal their
first ``split.onboarding`` interactions, which become their profile text (see
:mod:`recgym.envs.datasets.split`), so no two cold users are clones.

**Calibration.** Platt scaling ``sigmoid(alpha * logit + beta [+ gamma * log(M * pop_i)])`` fitted on the
validation rows (positives and ``negatives`` sampled items each) is folded in: ``z_u``, ``bias_u``, ``appeal_i``
times ``alpha``, ``w_pop -> alpha * w_pop + gamma``, ``b -> alpha * b + beta``. ``gamma`` (``calibrate_popularity``)
is on by default with ``exposure_model``, whose slope absorbs it in the env's clicks (ml-100k interaction ECE
0.027 instead of 0.035); without the correction it made the env overrate popular items. This is the
**interaction world** (``FittedWorld.interaction``, ``P(interact)``), compared with organic held-out interactions.

**Exposure** (``exposure_model``, default on): the env's world (``FittedWorld.world``) clicks by
``P(click | shown)``, the interaction world corrected for exposure on the validation rows as logged — see
:mod:`recgym.envs.worlds.fitted_exposure` (ml-100k replay: the least popular deciles were 32-93 % short of their
real click share without it).

**Budget.** The fit runs ``epochs`` passes, at most ``max_steps`` gradient steps in all: a fixed amount of
work, so the fitted (cached) world never depends on the machine's speed; the time taken is reported.

The interaction world maps onto :class:`~recgym.envs.world.World` with ``PreferenceParams(affinity_scale=1,
popularity_weight=alpha * w_pop, appeal_weight=1, bias=alpha * b + beta)``, ``Population.latent = z``,
``Population.bias = bias_u``, ``Catalog.latent = x``, ``Catalog.appeal = appeal``; the env's world folds the
exposure correction into the same fields, so the env's click logit equals the fitted, calibrated, corrected one
(:func:`world_logits`). Hidden quality: :mod:`recgym.envs.worlds.fitted_quality`.
Cold items are ``Catalog.is_new``; cold users ``Population.cold``. The env sizes its candidate pool to the world
(:func:`recgym.envs.factory.world_env_defaults`: a 100-item log cannot fill the default 300-item pool).

Results are cached under ``<cache_dir>/worlds/<name>-<key[:16]>/`` (``arrays.npz`` then ``manifest.json``
last, both atomic; the manifest carries the arrays' sha256 and is verified on load).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sys
import time
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
    resolve_device,
    sha256_bytes,
    sha256_texts,
)
from recgym.common.device import torch_threads
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
from recgym.envs.worlds.fitted_cache import _data_fingerprint, _load_cached
from recgym.envs.worlds.fitted_calibration import choose_cold_popularity, platt_scale
from recgym.envs.worlds.fitted_exposure import Exposure, fit_exposure, fold_exposure, popularity_deciles_of
from recgym.envs.worlds.fitted_quality import hidden_quality, quality_source

__all__ = ["FitConfig", "FittedWorld", "fit_world", "build_fitted_world", "load_world", "make_fitted_world", "world_logits",
           "popularity_prior", "hidden_quality", "platt_scale", "pair_logits", "Exposure"]

log = logging.getLogger(__name__)
FIT_VERSION = "5"  # 5: the exposure tail term chosen by the decile click-share criterion


class FitConfig(StrictModel):
    """Hyperparameters of the hidden-model fit (and the split it uses)."""

    config_path = "fit"
    latent_dim: int = Field(32, ge=1, le=512, description="k, hidden latent dim")
    negatives: int = Field(4, ge=1, le=100, description="sampled negatives per positive")
    popularity_negatives: float = Field(0.0, ge=0.0, le=1.0, description="share of negatives drawn by popularity (else uniform)")
    observed_negatives: bool = Field(False, description="also train on logged non-positive rows (e.g. ratings < 4) as 0")
    epochs: int = Field(25, ge=1, le=1000)
    max_steps: int = Field(30_000, ge=1, description="cap on gradient steps over all epochs (a work budget, not a clock)")
    batch_size: int = Field(4096, ge=16)
    lr: float = Field(0.01, gt=0.0, le=1.0)
    l2: float = Field(1e-4, ge=0.0, description="L2 on residuals (per batch row)")
    residual_dropout: float = Field(0.25, ge=0.0, lt=1.0, description="share of rows trained without residuals")
    cold_text_weight: float = Field(0.25, ge=0.0, le=1.0, description="weight of the text tower for users without residual")
    cold_popularity: bool = Field(True, description="choose an extra popularity weight for cold users on validation")
    calibrate: bool = Field(True, description="Platt-scale the logits on the validation rows (needs split.validation_fraction > 0)")
    calibrate_popularity: bool | None = Field(None, description="give the Platt scaling a log-popularity term of its "
                                              "own; None: on when exposure_model is on (the env's clicks are then unchanged)")
    exposure_model: bool = Field(True, description="env clicks are P(click | shown): correct the interaction model "
                                 "for exposure on the validation rows as logged (see fitted_exposure)")
    popularity_smoothing: float = Field(1.0, gt=0.0, description="pseudo-count added to every item's train count")
    quality_shrinkage: float = Field(10.0, ge=0.0, description="pseudo-observations at the global mean of the quality signal")
    history_length: int = Field(20, ge=0, le=1000)
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
    interaction_world: World | None = None
    exposure: Exposure | None = None

    @property
    def interaction(self) -> World:
        """The ``P(interact)`` world (no exposure correction; ``world`` when there is none)."""
        return self.world if self.interaction_world is None else self.interaction_world


def popularity_prior(data: InteractionData, split: Split, smoothing: float) -> np.ndarray:
    """``(M,)`` float32, sums to 1: ``(train_count + smoothing) / (N_train + smoothing * M)``."""
    counts = np.bincount(data.interactions["item"].to_numpy()[split.train], minlength=data.num_items)
    p = (counts + smoothing) / (counts.sum() + smoothing * data.num_items)
    return (p / p.sum()).astype(np.float32)


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


def negative_probs(data: InteractionData, split: Split, popularity_share: float) -> np.ndarray:
    """``(n_warm,)`` float64 sampling distribution of negatives over the warm items: ``popularity_share`` of the
    mass proportional to train counts, the rest uniform."""
    warm = np.flatnonzero(~split.cold_items)
    counts = np.bincount(data.interactions["item"].to_numpy()[split.train], minlength=data.num_items)[warm]
    p = (1.0 - popularity_share) / warm.size + popularity_share * counts / max(counts.sum(), 1)
    return p / p.sum()


def _labelled_rows(data: InteractionData, rows: np.ndarray, warm_items: np.ndarray, negatives: int, observed: bool,
                   rng: np.random.Generator, neg_p: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """``(users, items, labels, weights)`` for ``rows``: positives (their ``weight``), ``negatives`` warm items per
    positive drawn from ``neg_p`` (default uniform; weight of the positive) and, with ``observed``, the logged
    non-positive rows (weight 1)."""
    inter = data.interactions.iloc[rows]
    pos = inter["positive"].to_numpy()
    pu, pi = inter["user"].to_numpy()[pos], inter["item"].to_numpy()[pos]
    pw = inter["weight"].to_numpy(np.float32)[pos]
    parts_u, parts_i = [pu, np.repeat(pu, negatives)], [pi, rng.choice(warm_items, size=pu.size * negatives, p=neg_p)]
    parts_y = [np.ones(pu.size, np.float32), np.zeros(pu.size * negatives, np.float32)]
    parts_w = [pw, np.repeat(pw, negatives)]
    if observed and (~pos).any():
        parts_u.append(inter["user"].to_numpy()[~pos])
        parts_i.append(inter["item"].to_numpy()[~pos])
        parts_y.append(np.zeros(int((~pos).sum()), np.float32))
        parts_w.append(np.ones(int((~pos).sum()), np.float32))
    return tuple(np.concatenate(p) for p in (parts_u, parts_i, parts_y, parts_w))


def _train(data: InteractionData, split: Split, eu_np: np.ndarray, ei_np: np.ndarray, logpop_np: np.ndarray,
           cfg: FitConfig, rng: np.random.Generator, progress: bool | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from recgym.common.progress import progress_bar

    device = resolve_device(cfg.device)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    warm_items = np.flatnonzero(~split.cold_items)
    neg_p = negative_probs(data, split, cfg.popularity_negatives) if cfg.popularity_negatives > 0 else None
    fit_rows = split.fit_rows
    model = _Model(eu_np.shape[1], cfg.latent_dim, data.num_users, data.num_items, gen).to(device)
    eu, ei = torch.from_numpy(eu_np).to(device), torch.from_numpy(ei_np).to(device)
    logpop = torch.from_numpy(logpop_np).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    pos = data.interactions["positive"].to_numpy()[fit_rows]
    n_rows = int(pos.sum()) * (1 + cfg.negatives) + (int((~pos).sum()) if cfg.observed_negatives else 0)
    steps_per_epoch = -(-n_rows // cfg.batch_size)
    total_steps = min(cfg.epochs * steps_per_epoch, cfg.max_steps)
    t0, losses, steps = time.perf_counter(), [], 0
    with progress_bar(total_steps, f"fit {data.name}", unit="steps", enabled=progress) as advance:
        while steps < total_steps:
            u, i, y, w = _labelled_rows(data, fit_rows, warm_items, cfg.negatives, cfg.observed_negatives, rng, neg_p)
            keep_u = (rng.random(len(u)) >= cfg.residual_dropout).astype(np.float32)
            keep_i = (rng.random(len(u)) >= cfg.residual_dropout).astype(np.float32)
            perm = rng.permutation(len(u))
            tensors = [torch.from_numpy(a[perm]).to(device) for a in (u, i, y, w, keep_u, keep_i)]
            total, seen = 0.0, 0
            for s in range(0, len(u), cfg.batch_size):
                if steps >= total_steps:
                    break
                bu, bi, by, bw, ku, ki = (t[s:s + cfg.batch_size] for t in tensors)
                logit, reg = model(bu, bi, eu, ei, logpop, ku, ki)
                bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, by, weight=bw)
                loss = bce + cfg.l2 * reg.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(bce.detach()) * len(by)
                seen += len(by)
                steps += 1
                advance(1)
            losses.append(total / max(seen, 1))
            if not np.isfinite(losses[-1]):
                raise FloatingPointError(f"fit: expected a finite loss, received {losses[-1]} at epoch {len(losses)}")
    if steps < cfg.epochs * steps_per_epoch:
        log.warning("fit %s: stopped at max_steps=%d (%.1f of %d epochs)", data.name, cfg.max_steps,
                    steps / steps_per_epoch, cfg.epochs)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        zu, xi, bu, ai = (t.cpu().numpy().astype(np.float64) for t in model.towers(eu, ei))
        r, s_, q, a = (t.detach().cpu().numpy().astype(np.float64) for t in (model.r, model.s, model.q, model.a))
    cold_u, cold_i = split.cold_users, split.cold_items
    warm_u = ~cold_u
    lam = cfg.cold_text_weight
    z_cold = (zu + r)[warm_u].mean(0) + lam * (zu - zu[warm_u].mean(0))
    b_cold = (bu + s_)[warm_u].mean() + lam * (bu - bu[warm_u].mean())
    user_latent = np.where(cold_u[:, None], z_cold, zu + r)
    user_bias = np.where(cold_u, b_cold, bu + s_)
    item_latent = np.concatenate([xi + (~cold_i)[:, None] * q, logpop_np[:, None]], axis=1)
    item_appeal = ai + (~cold_i) * a
    w_pop, b = model.w_pop.item(), model.b.item()
    delta = (choose_cold_popularity(data, split, z_cold, b_cold, item_latent, item_appeal, w_pop, rng)
             if cfg.cold_popularity else 0.0)
    arrays = {"user_latent": np.concatenate([user_latent, (delta * cold_u)[:, None]], axis=1),
              "user_bias": user_bias, "item_latent": item_latent, "item_appeal": item_appeal}
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    alpha, beta, gamma, n_val = 1.0, 0.0, 0.0, 0
    if cfg.calibrate and split.val.size:
        # Validation pairs as in training; cold-user rows do not exist here (val rows are warm users' rows).
        u, i, y, w = _labelled_rows(data, split.val, warm_items, cfg.negatives, cfg.observed_negatives, rng, neg_p)
        raw = _raw_logits(arrays, w_pop, b, u, i)
        with_pop = cfg.exposure_model if cfg.calibrate_popularity is None else cfg.calibrate_popularity
        alpha, beta, gamma = platt_scale(raw, y, w, extra=logpop_np[i] if with_pop else None)
        n_val = int(len(y))
    arrays["scalars"] = np.array([w_pop, b, alpha, beta, delta, gamma], np.float64)
    exposure = Exposure(note="off (exposure_model: false)")
    if cfg.exposure_model:
        exposure = _fit_exposure(data, split, arrays, logpop_np, w_pop, b, (alpha, beta, gamma), cfg.seed)
    arrays["exposure"] = exposure.to_array()
    info = {"fit_seconds": round(seconds, 3), "epochs": round(steps / steps_per_epoch, 3), "steps": int(steps),
            "train_positives": int(data.interactions["positive"].to_numpy()[fit_rows].sum()),
            "final_loss": round(losses[-1], 5), "device": str(device), "platt_alpha": round(alpha, 5),
            "platt_beta": round(beta, 5), "platt_gamma": round(gamma, 5), "calibration_pairs": n_val, "cold_popularity_delta": round(delta, 5),
            "exposure": exposure.describe()}
    return arrays, info


def _fit_exposure(data: InteractionData, split: Split, arrays: dict[str, np.ndarray], logpop: np.ndarray, w_pop: float,
                  b: float, platt: tuple[float, float, float], seed: int) -> Exposure:
    """The exposure correction on the validation rows as logged (warm items; label: the row's positive flag)."""
    inter = data.interactions
    u_all, i_all = inter["user"].to_numpy(), inter["item"].to_numpy()
    rows = split.val[~split.cold_items[i_all[split.val]]]
    u, i = u_all[rows], i_all[rows]
    alpha, beta, gamma = platt
    logits = alpha * _raw_logits(arrays, w_pop, b, u, i) + beta + gamma * logpop[i]
    # its own stream: switching the correction on or off leaves the interaction fit unchanged
    deciles = popularity_deciles_of(np.bincount(i_all[split.train], minlength=data.num_items))
    return fit_exposure(logits, logpop[i], inter["positive"].to_numpy()[rows], u, deciles[i], logpop[~split.cold_items],
                        np.random.default_rng([seed, 7]))


def _raw_logits(arrays: dict[str, np.ndarray], w_pop: float, b: float, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Uncalibrated logits of pairs ``(u, i)`` from the fitted arrays (``(N,)`` float64)."""
    lat = (arrays["user_latent"][u].astype(np.float64) * arrays["item_latent"][i]).sum(1)
    logpop = arrays["item_latent"][i, -1].astype(np.float64)
    return lat + w_pop * logpop + arrays["item_appeal"][i] + b + arrays["user_bias"][u]


def _encode(encoder: TextEncoder, texts: list[str], cache_dir: Path | None, name: str, progress: bool | None) -> np.ndarray:
    from recgym.encoders.cache import encode_with_cache

    t0 = time.perf_counter()
    res = encode_with_cache(encoder, texts, cache_dir, name=name, progress=bool(progress) and sys.stderr.isatty())
    if not res.hit and progress is not False:
        log.info("encoded %d %s texts in %.1f s", len(texts), name, time.perf_counter() - t0)
        if progress and not sys.stderr.isatty():
            print(f"encode {name}: {len(texts)} texts in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return res.vectors


def build_fitted_world(
    data: InteractionData,
    encoder: TextEncoder,
    config: FitConfig | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: bool | None = None,
) -> FittedWorld:
    """Split ``data``, encode texts, fit the hidden model (or load it from the cache) and build the World.

    One ``np.random.Generator(config.seed)`` drives the split, negative sampling and the torch init.
    ``progress``: ``True`` shows encoding/fitting progress (a bar on a terminal, periodic lines otherwise),
    ``None`` only on a terminal, ``False`` never.
    """
    from recgym.encoders.cache import default_cache_dir

    cfg = config or FitConfig()
    rng = np.random.default_rng(cfg.seed)
    split = split_interactions(data, cfg.split, rng)
    ptexts = profile_texts(data, split)
    _warn_cloned_cold_users(data, split, ptexts)
    itexts = list(data.items["text"])
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    t0 = time.perf_counter()
    ei = _encode(encoder, itexts, root, f"{data.name}-items", progress)
    eu = _encode(encoder, ptexts, root, f"{data.name}-profiles", progress)
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
        with torch_threads(cfg.torch_threads):
            arrays, info = _train(data, split, eu, ei, logpop, cfg, rng, progress)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        raw = buf.getvalue()
        manifest = {
            "key": key, "fit_version": FIT_VERSION, "dataset": data.name, "positive_rule": data.positive_rule,
            "encoder": encoder.describe(), "encoder_fingerprint": encoder.fingerprint,
            "config": cfg.model_dump(mode="json"), "arrays_sha256": sha256_bytes(raw),
            "encode_seconds": round(encode_seconds, 3), "quality_source": quality_source(data, split), **info,
        }
        if use_cache:
            clean_stale_temp_files(folder, min_age_s=600)  # leftovers of a killed write (not a live writer's)
            (folder / "manifest.json").unlink(missing_ok=True)
            atomic_write_bytes(folder / "arrays.npz", raw)
            atomic_write_json(folder / "manifest.json", manifest)
    w_pop, bias, alpha, beta, _delta, gamma = (float(x) for x in arrays["scalars"])
    ex_info = manifest.get("exposure", {})
    exposure = Exposure.from_array(arrays["exposure"], str(ex_info.get("note", "")), ex_info.get("selection"))
    history = train_history(data, split, cfg.history_length)
    assert_no_leakage(data, split, history)
    catalog = Catalog(
        item_ids=np.asarray(list(data.items["item_id"])), titles=[str(t) for t in data.items["title"]],
        texts=itexts, embeddings=np.ascontiguousarray(ei, np.float32), genres=data.primary_genres(),
        genre_names=tuple(data.genre_names), popularity=pop,
        quality=hidden_quality(data, split, cfg.quality_shrinkage),
        appeal=(alpha * arrays["item_appeal"]).astype(np.float32), latent=arrays["item_latent"],
        is_new=split.cold_items.copy(), modalities=dict(data.item_modalities),
    )
    population = Population(
        user_ids=np.asarray(list(data.users["user_id"])), texts=ptexts, embeddings=np.ascontiguousarray(eu, np.float32),
        latent=(alpha * arrays["user_latent"]).astype(np.float32), bias=(alpha * arrays["user_bias"]).astype(np.float32),
        history=history, cold=split.cold_users.copy(), test=split.test_users.copy(),
    )
    interaction = World(
        name=data.name, catalog=catalog, population=population,
        preference=PreferenceParams(affinity_scale=1.0, popularity_weight=alpha * w_pop + gamma, appeal_weight=1.0,
                                    bias=alpha * bias + beta),
        source={"dataset": data.name, "fit_key": key, "encoder": encoder.fingerprint, "positive_rule": data.positive_rule,
                "cache": str(folder), "clicks": "P(interact)"},
    )
    world = interaction if exposure.identity else fold_exposure(interaction, exposure, logpop)
    return FittedWorld(world=world, data=data, split=split, manifest=manifest, cache_hit=cached is not None,
                       interaction_world=interaction, exposure=exposure)


def _warn_cloned_cold_users(data: InteractionData, split: Split, texts: list[str]) -> None:
    cold = np.flatnonzero(split.cold_users)
    n_distinct = len({texts[u] for u in cold})
    if cold.size > 1 and n_distinct < 0.5 * cold.size:
        log.warning("%s: %d cold users share only %d distinct profile texts (no user attributes and no onboarding "
                    "rows); they are near-clones. Set split.onboarding > 0 or give a users.csv", data.name,
                    cold.size, n_distinct)


def fit_world(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    encoder: TextEncoder | None = None,
    config: FitConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: bool | None = None,
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
    return build_fitted_world(data, encoder, cfg, cache_dir=cache_dir, use_cache=use_cache, progress=progress)


def load_world(name: str, data_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> World:
    """:func:`fit_world` returning only the :class:`World` (what ``gym.make(..., world=name)`` needs)."""
    return fit_world(name, data_dir, **kwargs).world


def make_fitted_world(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    encoder: TextEncoder | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    **config: Any,
) -> World:
    """Entry point of :mod:`recgym.envs.factory`: ``config`` holds :class:`FitConfig` fields (``world_config``),
    validated (unknown keys rejected with a suggestion) before any data is read."""
    cfg = FitConfig.model_validate(config)
    return fit_world(name, data_dir, encoder=encoder, config=cfg, cache_dir=cache_dir, progress=progress).world


def pair_logits(world: World, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Hidden click logits of pairs, ``(N,)`` float64 for ``users`` and ``items`` ``(N,)`` int64 (the formula of
    :func:`world_logits`, without building the ``(B, M)`` matrix)."""
    c, p, w = world.catalog, world.population, world.preference
    lat = (p.latent[users].astype(np.float64) * c.latent[items]).sum(1)
    return (w.affinity_scale * lat + w.popularity_weight * np.log(c.num_items * np.maximum(c.popularity[items], 1e-12))
            + w.appeal_weight * c.appeal[items].astype(np.float64) + w.bias + p.bias[users])


def world_logits(world: World, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
    """Hidden click logits without dynamics (no fatigue/drift): ``(B, M')`` float32 for ``users`` ``(B,)`` int64
    and ``items`` ``(M',)`` (default all ``M``) — the same formula as the env's click logit at reset."""
    c, p, w = world.catalog, world.population, world.preference
    idx = np.arange(c.num_items) if items is None else np.asarray(items)
    item_term = (w.popularity_weight * np.log(c.num_items * np.maximum(c.popularity[idx], 1e-12))
                 + w.appeal_weight * c.appeal[idx] + w.bias)
    out = w.affinity_scale * (p.latent[users] @ c.latent[idx].T) + item_term[None, :] + p.bias[users][:, None]
    return out.astype(np.float32)
