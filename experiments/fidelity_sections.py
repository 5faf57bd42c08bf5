"""Sections of the fidelity report: held-out ranking of the hidden model, calibration, policy-ranking fidelity.

* :func:`heldout_ranking` — AUC and NDCG@K of the world's interaction model (``FittedWorld.interaction``,
  :func:`world_logits`: organic interactions, so ``P(interact)``, not the env's ``P(click | shown)``) on the
  held-out positives (``split.test_eval``: onboarding rows excluded), next to BPR-MF and popularity fitted on the
  same train split, for warm users (warm candidate items), cold users (warm items; MF has no factors for them)
  and cold items (candidates = cold items only). AUC per user (positives vs never-interacted candidates), then
  averaged; NDCG@K ranks candidates minus the user's train items. Popularity ties: one seeded random order.
* :func:`calibration` — predicted click probability vs observed rate by predicted-probability decile, before
  and after the post-hoc steps fitted on the validation split, and the expected calibration error (ECE) of
  each: the env's clicks (``P(click | shown)``) on the warm-user/warm-item held-out rows as logged, and the
  interaction model on the held-out positives and ``negatives`` sampled warm items per positive (plus their
  logged non-positives with ``observed_negatives``: the distribution it was trained and Platt-scaled on).
* :func:`policy_ranking` — the panel of :mod:`recgym.experiments.fidelity_panel` evaluated for real and in
  simulation, agreement by :func:`~recgym.experiments.fidelity_stats.rank_agreement`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from recgym.envs.worlds.fitted import FittedWorld, _labelled_rows, negative_probs, pair_logits, world_logits
from recgym.experiments import fidelity_panel as fp
from recgym.experiments.fidelity_stats import rank_agreement

__all__ = ["heldout_ranking", "calibration", "policy_ranking"]

log = logging.getLogger(__name__)


def _rank_metrics(scores: np.ndarray, users: np.ndarray, cand: np.ndarray, pos: dict[int, np.ndarray],
                  seen: dict[int, np.ndarray], train: dict[int, np.ndarray], k: int,
                  tie_break: np.ndarray | None = None) -> dict[str, float]:
    """Mean per-user AUC and NDCG@k. ``scores`` ``(B, M)`` rows for ``users``; ``cand`` ``(M,)`` bool. AUC counts
    tied scores as half; the NDCG top-k breaks ties by ``tie_break`` ``(M,)`` (a seeded order), else by index."""
    aucs, ndcgs = [], []
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    for row, u in enumerate(users.tolist()):
        s = scores[row]
        p = pos[u][cand[pos[u]]]
        if p.size == 0:
            continue
        neg_mask = cand.copy()
        neg_mask[seen[u]] = False
        sn = np.sort(s[neg_mask])
        if sn.size:
            sp = s[p]
            lo, hi = np.searchsorted(sn, sp, "left"), np.searchsorted(sn, sp, "right")
            aucs.append(float(np.mean((lo + 0.5 * (hi - lo)) / sn.size)))
        rank_mask = cand.copy()
        rank_mask[train[u]] = False
        idx = np.flatnonzero(rank_mask)
        key = s[idx] if tie_break is None else s[idx] + tie_break[idx]
        top = idx[np.argsort(-key, kind="stable")[:k]]
        rel = np.isin(top, p).astype(np.float64)
        ndcgs.append(float((rel * disc[: len(rel)]).sum() / disc[: min(k, p.size)].sum()))
    return {"auc": float(np.mean(aucs)) if aucs else float("nan"),
            "ndcg": float(np.mean(ndcgs)) if ndcgs else float("nan"), "users": len(ndcgs)}


def _groups(users: np.ndarray, items: np.ndarray, n_users: int) -> dict[int, np.ndarray]:
    out = {u: np.empty(0, np.int64) for u in range(n_users)}
    order = np.argsort(users, kind="stable")
    us, its = users[order], items[order]
    cuts = np.flatnonzero(np.r_[True, us[1:] != us[:-1]]) if len(us) else np.empty(0, np.int64)
    for s, e in zip(cuts, np.r_[cuts[1:], len(us)], strict=True):
        out[int(us[s])] = np.unique(its[s:e])
    return out


def heldout_ranking(fw: FittedWorld, k: int, rng: np.random.Generator, bpr: tuple[np.ndarray, ...]) -> dict[str, Any]:
    data, split, world = fw.data, fw.split, fw.interaction  # organic held-out interactions: P(interact)
    inter = data.interactions
    users, items = inter["user"].to_numpy(), inter["item"].to_numpy()
    te = split.test_eval[inter["positive"].to_numpy()[split.test_eval]]
    pos = _groups(users[te], items[te], data.num_users)
    seen = _groups(users, items, data.num_users)
    train = _groups(users[split.train], items[split.train], data.num_users)
    U, V, B = bpr
    pop_score = np.log(world.catalog.popularity).astype(np.float64)
    tie = 1e-6 * rng.random(data.num_items)  # one seeded order among equally popular items (NDCG only)
    warm_items = ~split.cold_items
    has_pos = np.array([pos[u].size > 0 for u in range(data.num_users)])
    segments = {
        "warm_users": (np.flatnonzero(~split.cold_users & has_pos), warm_items, True),
        "cold_users": (np.flatnonzero(split.cold_users & has_pos), warm_items, False),
        "cold_items": (np.flatnonzero(has_pos), split.cold_items, False),
    }
    out: dict[str, Any] = {}
    for seg, (us, cand, mf_ok) in segments.items():
        if us.size == 0 or not cand.any():
            out[seg] = {"note": "no held-out positives in this segment"}
            continue
        res: dict[str, Any] = {"hidden_model": _rank_metrics(world_logits(world, us), us, cand, pos, seen, train, k)}
        res["bpr_mf"] = (_rank_metrics(U[us] @ V.T + B[None, :], us, cand, pos, seen, train, k) if mf_ok else
                         {"auc": None, "ndcg": None, "note": "MF cannot score users/items unseen in train"})
        res["popularity"] = _rank_metrics(np.broadcast_to(pop_score, (us.size, data.num_items)), us, cand, pos, seen,
                                          train, k, tie_break=tie)
        out[seg] = res
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def _bins(prob: np.ndarray, y: np.ndarray, n_bins: int = 10) -> tuple[list[dict[str, Any]], float]:
    edges = np.quantile(prob, np.linspace(0, 1, n_bins + 1))
    b = np.clip(np.searchsorted(edges, prob, "right") - 1, 0, n_bins - 1)
    rows = []
    for d in range(n_bins):
        m = b == d
        rows.append({"decile": d + 1, "n": int(m.sum()), "predicted": float(prob[m].mean()) if m.any() else None,
                     "observed": float(y[m].mean()) if m.any() else None})
    ece = float(sum(r["n"] * abs(r["predicted"] - r["observed"]) for r in rows if r["n"]) / max(len(y), 1))
    return rows, ece


def calibration(fw: FittedWorld, fit: Any, rng: np.random.Generator) -> dict[str, Any]:
    """Reliability of the env's click probabilities (top level: ``ece``, ``bins``, ``raw_ece``, ``raw_bins``,
    ``target``) and of the interaction model (``interaction``).

    With the exposure correction on, the env's clicks are ``P(click | shown)``, checked on the held-out rows as
    logged (label: the row's positive flag); "raw" is the uncalibrated hidden model on the same rows. Without it
    the env's clicks are ``P(interact)``, checked on held-out positives and sampled negatives as in training.
    """
    data, split = fw.data, fw.split
    inter = data.interactions
    te = split.test_eval
    te = te[~split.cold_users[inter["user"].to_numpy()[te]] & ~split.cold_items[inter["item"].to_numpy()[te]]]
    if te.size == 0:
        return {"note": "no held-out rows of warm users on warm items", "ece": None, "bins": []}
    alpha, beta = float(fw.manifest.get("platt_alpha", 1.0)), float(fw.manifest.get("platt_beta", 0.0))
    gamma = float(fw.manifest.get("platt_gamma", 0.0))
    c = fw.world.catalog
    logpop = np.log(c.num_items * c.popularity)

    def uncalibrated(logit: np.ndarray, items: np.ndarray) -> np.ndarray:
        return _sigmoid((logit - beta - gamma * logpop[items]) / alpha)

    neg_p = negative_probs(data, split, fit.popularity_negatives) if fit.popularity_negatives > 0 else None
    u, i, y, _w = _labelled_rows(data, te, np.flatnonzero(~split.cold_items), fit.negatives, fit.observed_negatives,
                                 rng, neg_p)
    logit = pair_logits(fw.interaction, u, i)
    bins, ece = _bins(_sigmoid(logit), y)
    raw_bins, raw_ece = _bins(uncalibrated(logit, i), y)
    interaction = {"target": f"P(interact): held-out positives and {fit.negatives} sampled warm items per positive",
                   "bins": bins, "ece": ece, "raw_bins": raw_bins, "raw_ece": raw_ece, "pairs": int(len(y))}
    out = {"platt_alpha": alpha, "platt_beta": beta, "platt_gamma": gamma, "negatives_per_positive": fit.negatives,
           "calibration_pairs": fw.manifest.get("calibration_pairs", 0), "interaction": interaction,
           "exposure": fw.exposure.describe() if fw.exposure is not None else None}
    if fw.exposure is None or fw.exposure.identity:
        return {**out, **interaction, "exposure_corrected": False}
    users, items = inter["user"].to_numpy()[te], inter["item"].to_numpy()[te]
    labels = inter["positive"].to_numpy()[te].astype(np.float64)
    bins, ece = _bins(_sigmoid(pair_logits(fw.world, users, items)), labels)
    raw_bins, raw_ece = _bins(uncalibrated(pair_logits(fw.interaction, users, items), items), labels)
    return {**out, "target": "P(click | shown): held-out rows as logged, label = positive", "bins": bins, "ece": ece,
            "raw_bins": raw_bins, "raw_ece": raw_ece, "pairs": int(te.size), "exposure_corrected": True}


def policy_ranking(fw: FittedWorld, k: int, rng: np.random.Generator, env_config: Any, *, n_boot: int,
                   max_users: int | None, session_seed: int) -> dict[str, Any]:
    """Fit the panel, evaluate it for real and in simulation, and compare the rankings (see the module doc)."""
    pd = fp.panel_data(fw)
    users = pd.users
    if users.size == 0:
        return {"note": "no warm users with held-out positives on warm items"}
    rows = np.arange(users.size)
    if max_users is not None and users.size > max_users:
        rows = np.sort(rng.choice(users.size, max_users, replace=False))
    members = [m for m in fp.PANEL if m != "als" or fp.implicit_available()]
    skipped = [] if "als" in members else [{"name": "als", "why": "the implicit library is not installed"}]
    cols = {key: [] for key in ("ndcg", "recall", "sim_ctr", "sim_return")}
    table = []
    for name in members:
        t0 = time.perf_counter()
        scorer = fp.fit_member(name, fw, pd, np.random.default_rng([int(rng.integers(2**31)), len(table)]))
        scores = np.asarray(scorer(users[rows]), np.float64)
        top, real = fp.real_values(scores, rows, pd, k)
        del scores
        sim_ctr = fp.simulated_ctr(fw, users[rows], top)
        sim_ret = fp.simulated_returns(fw, users[rows], scorer, env_config, session_seed)
        for key, v in (("ndcg", real["ndcg"]), ("recall", real["recall"]), ("sim_ctr", sim_ctr), ("sim_return", sim_ret)):
            cols[key].append(v)
        table.append({"name": name, "ndcg": float(real["ndcg"].mean()), "recall": float(real["recall"].mean()),
                      "sim_ctr": float(sim_ctr.mean()), "sim_return": float(sim_ret.mean()),
                      "seconds": round(time.perf_counter() - t0, 2)})
        log.info("panel %s: %s", name, table[-1])
    arr = {key: np.stack(v, 1) for key, v in cols.items()}
    names = [t["name"] for t in table]
    head = rank_agreement(arr["ndcg"], arr["sim_ctr"], names, n_boot=n_boot, rng=rng)
    return {
        **head, "real_metric": f"NDCG@{k}", "sim_metric": f"simulated CTR@{k}",
        "recall_vs_sim_ctr": rank_agreement(arr["recall"], arr["sim_ctr"], names, n_boot=n_boot, rng=rng),
        "ndcg_vs_sim_return": rank_agreement(arr["ndcg"], arr["sim_return"], names, n_boot=n_boot, rng=rng),
        "panel": table, "skipped": skipped, "users": int(rows.size), "k": k,
        "protocol": (f"{rows.size} warm users with held-out positives; candidates: warm items minus the user's train "
                     f"items; real: NDCG@{k}/recall@{k} of each member's top-{k} vs held-out positives; simulated: mean "
                     f"hidden click probability of the same top-{k} (sim_ctr), and one env session per user with the "
                     f"env's retrieval candidates and dynamics (sim_return)"),
    }
