"""Replay error and click distributions of a fitted world against the held-out real interactions.

**Logging-policy replay** (:func:`replay`): each warm user's held-out rows on warm items (``split.test_eval``),
in time order, are the slates — what the real logging policy showed and the user consumed. The env's click
model gives each logged item a click probability: ``P(click | shown)`` when the world's exposure correction is
on (:mod:`recgym.envs.worlds.fitted_exposure`; the default), else the interaction model. Clicks are independent
(no position effect and no session dynamics: the env's MNL choice allows at most one click per slate, so it cannot
replay a log with several positives per slate). Real clicks are the rows' positive flags (ratings >= 4 on
MovieLens; on an implicit log every logged row is a click, so the replay only checks the level). Reported:

* per user: simulated (expected) minus real clicks — bias (mean), MAE and spread (standard deviation);
* per item-popularity decile (deciles of the catalogue's items by train count, D1 most popular): real and
  simulated share of clicks, relative error of each share, real clicks, the sampling error of each real share
  (user bootstrap, relative to the share), Jensen–Shannon distance of the two histograms;
* the same figures for a **shuffled-data reference**: the held-out items permuted across all users
  (each user keeps their slate size, each item its frequency) and scored by the same model — what a
  simulator that knows the level and the item mix but nothing about who likes what would score.

**Free choice** (:func:`free_choice`, the interaction model ``FittedWorld.interaction``: organic choice, no
slate): every user with held-out positives clicks by one Bernoulli draw per
catalogue item (minus their train items) with the level matched to the real mean; clicks by popularity
decile and by primary genre ("n/a" when the data has no categories) against the real held-out positives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recgym.envs.worlds.fitted import FittedWorld, pair_logits, world_logits
from recgym.envs.worlds.fitted_exposure import popularity_deciles_of, user_decile_sums

__all__ = ["replay", "free_choice", "js_distance", "popularity_deciles"]


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]) between two non-negative ``(n,)`` histograms (normalised here)."""
    p = np.asarray(p, np.float64) / max(float(np.sum(p)), 1e-300)
    q = np.asarray(q, np.float64) / max(float(np.sum(q)), 1e-300)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.sqrt(max(0.5 * kl(p) + 0.5 * kl(q), 0.0)))


def popularity_deciles(fw: FittedWorld) -> np.ndarray:
    """``(M,)`` int64 decile 0..9 of every item by train count (0 = the most popular tenth of the catalogue)."""
    items = fw.data.interactions["item"].to_numpy()[fw.split.train]
    return popularity_deciles_of(np.bincount(items, minlength=fw.data.num_items))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def _pair_probs(fw: FittedWorld, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The env's click probabilities of logged pairs: ``P(click | shown)`` when the exposure correction is on."""
    return _sigmoid(pair_logits(fw.world, users, items))


def _errors(users: np.ndarray, real: np.ndarray, sim: np.ndarray, deciles: np.ndarray) -> dict[str, Any]:
    uniq, row = np.unique(users, return_inverse=True)
    r_u = np.bincount(row, weights=real, minlength=uniq.size)
    s_u = np.bincount(row, weights=sim, minlength=uniq.size)
    err = s_u - r_u
    r_d = np.bincount(deciles, weights=real, minlength=10)
    s_d = np.bincount(deciles, weights=sim, minlength=10)
    r_share, s_share = r_d / max(r_d.sum(), 1e-12), s_d / max(s_d.sum(), 1e-12)
    rel = np.where(r_share > 0, s_share / np.maximum(r_share, 1e-12) - 1.0, np.nan)
    return {
        "per_user": {"bias": float(err.mean()), "mae": float(np.abs(err).mean()), "spread": float(err.std()),
                     "real_mean": float(r_u.mean()), "sim_mean": float(s_u.mean())},
        "per_decile": {"real_share": r_share.tolist(), "sim_share": s_share.tolist(), "real_clicks": r_d.tolist(),
                       "relative_error": [None if np.isnan(x) else float(x) for x in rel],
                       "bias": (s_d / uniq.size - r_d / uniq.size).tolist()},
        "js_distance": js_distance(r_d, s_d),
        "max_abs_relative_error": float(np.nanmax(np.abs(rel))) if np.isfinite(rel).any() else None,
    }


def _share_rel_se(users: np.ndarray, real: np.ndarray, deciles: np.ndarray, rng: np.random.Generator,
                  n_boot: int = 200) -> list[float | None]:
    """Sampling error of each decile's real click share, relative to the share (``None`` where it is 0): the
    standard deviation over ``n_boot`` resamples of the users (clicks of one user are not independent; about
    ``1 / sqrt(clicks)`` when they are)."""
    uniq, row = np.unique(users, return_inverse=True)
    per = user_decile_sums(row, deciles, real, uniq.size)
    tot = rng.multinomial(uniq.size, np.full(uniq.size, 1.0 / uniq.size), size=n_boot) @ per
    shares = tot / np.maximum(tot.sum(1, keepdims=True), 1e-12)
    base = per.sum(0) / max(per.sum(), 1e-12)
    return [None if b <= 0 else float(shares[:, k].std(ddof=1) / b) for k, b in enumerate(base)]


def replay(fw: FittedWorld, rng: np.random.Generator) -> dict[str, Any]:
    """Logging-policy replay of the held-out rows of warm users on warm items (see the module docstring)."""
    data, split = fw.data, fw.split
    inter = data.interactions
    u_all, i_all = inter["user"].to_numpy(), inter["item"].to_numpy()
    te = split.test_eval
    te = te[~split.cold_users[u_all[te]] & ~split.cold_items[i_all[te]]]
    if te.size == 0:
        return {"note": "no held-out rows of warm users on warm items"}
    users, items = u_all[te], i_all[te]
    real = inter["positive"].to_numpy()[te].astype(np.float64)
    deciles = popularity_deciles(fw)
    out = _errors(users, real, _pair_probs(fw, users, items), deciles[items])
    shuffled = rng.permutation(items)
    out["shuffled_reference"] = _errors(users, real, _pair_probs(fw, users, shuffled), deciles[shuffled])
    out["per_decile"]["real_share_rel_se"] = _share_rel_se(users, real, deciles[items], rng)
    out.update(rows=int(te.size), users=int(np.unique(users).size), real_click_rate=float(real.mean()),
               implicit=bool(data.rating_range is None and real.min() == 1.0))
    return out


def free_choice(fw: FittedWorld, rng: np.random.Generator) -> dict[str, Any]:
    """Level-matched Bernoulli clicks over the whole catalogue vs real held-out positives (module docstring)."""
    data, split, world = fw.data, fw.split, fw.world
    inter = data.interactions
    users, items = inter["user"].to_numpy(), inter["item"].to_numpy()
    te = split.test_eval[inter["positive"].to_numpy()[split.test_eval]]
    real_u, real_i = users[te], items[te]
    eval_users = np.unique(real_u)
    if eval_users.size == 0:
        return {"note": "no held-out positives"}
    logits = world_logits(fw.interaction, eval_users).astype(np.float64)  # organic choice: P(interact)
    tr = split.train
    rows = np.searchsorted(eval_users, users[tr])
    hit = (rows < eval_users.size) & (eval_users[np.minimum(rows, eval_users.size - 1)] == users[tr])
    logits[rows[hit], items[tr][hit]] = -np.inf
    target = real_u.size / eval_users.size
    lo, hi = -30.0, 30.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _sigmoid(logits + mid).sum(1).mean() < target else (lo, mid)
    clicks = rng.random(logits.shape) < _sigmoid(logits + 0.5 * (lo + hi))
    sim_i = np.nonzero(clicks)[1]
    deciles = popularity_deciles(fw)
    out: dict[str, Any] = {"users": int(eval_users.size), "real_clicks": int(real_u.size),
                           "simulated_clicks": int(sim_i.size), "logit_offset": float(0.5 * (lo + hi))}
    hists = {"popularity_decile": (np.bincount(deciles[real_i], minlength=10), np.bincount(deciles[sim_i], minlength=10),
                                   [f"D{k + 1}" for k in range(10)])}
    genre_names = list(world.catalog.genre_names)
    if len(genre_names) > 1:
        g = world.catalog.genres
        hists["genre_share"] = (np.bincount(g[real_i], minlength=len(genre_names)),
                                np.bincount(g[sim_i], minlength=len(genre_names)), genre_names)
    else:
        out["genre_share"] = {"note": "n/a: the data has no categories", "js_distance": None}
    for name, (r, s, labels) in hists.items():
        out[name] = {"labels": labels, "real": (r / max(r.sum(), 1)).tolist(), "simulated": (s / max(s.sum(), 1)).tolist(),
                     "js_distance": js_distance(r, s)}
    return out
