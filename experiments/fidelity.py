"""Fidelity report card for worlds fitted to real logs.

``fidelity_report(world_name, data_dir, out_dir)`` fits (or loads from cache) the world, then writes
``fidelity.md``, ``fidelity.json`` and PNGs to ``out_dir``:

1. **Held-out ranking** — AUC and NDCG@K of the world's hidden click model (:func:`world_logits`) on the held-out
   positives, next to a BPR-MF and a popularity model fitted on the same train split, for three segments:
   warm users (warm candidate items), cold users (warm items; MF has no factors for them) and cold items
   (candidates = cold items only; MF has no factors for them, popularity ties at the prior floor). AUC is per
   user (positives vs never-interacted candidates), then averaged; NDCG@K ranks candidates minus the user's
   train items. Popularity ties are broken by one seeded random order.
2. **Calibration** — predicted click probability vs observed positive rate by predicted-probability decile, on
   the warm-user/warm-item held-out positives plus uniformly sampled warm-item negatives at the training ratio (``negatives`` per
   positive), i.e. the distribution the model was trained for; plus the expected calibration error.
3. **Simulated vs real** — for every user with held-out positives, one Bernoulli click draw per catalogue item
   (minus their train items) from ``sigmoid(logit + delta)``, ``delta`` set by bisection so the mean simulated
   clicks per user equals the real mean (level-matched: the shapes are compared, not the level). Distributions:
   clicks by item-popularity decile (train counts), primary-genre shares, per-user activity (binned counts).
   Jensen–Shannon distance (base 2, in [0, 1]) per distribution.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from recgym.common import StrictModel, atomic_write_json, atomic_write_text
from recgym.encoders.base import TextEncoder
from recgym.envs.worlds.fitted import FitConfig, FittedWorld, fit_world, world_logits

__all__ = ["FidelityConfig", "fidelity_report", "fit_bpr", "js_distance"]

_ACTIVITY_EDGES = np.array([0, 1, 2, 3, 5, 9, 17, 33, 65, 129, 257, 513, 1025, np.inf])


class FidelityConfig(StrictModel):
    """Settings of the report (the fit's own settings are in ``fit``)."""

    config_path = "fidelity"
    fit: FitConfig = FitConfig()
    bpr_dim: int = Field(64, ge=1)
    bpr_epochs: int = Field(30, ge=1)
    bpr_lr: float = Field(0.01, gt=0.0)
    bpr_l2: float = Field(1e-4, ge=0.0)
    bpr_batch_size: int = Field(4096, ge=16)
    k: int = Field(10, ge=1, description="NDCG cut-off")
    seed: int = Field(0, ge=0, description="seed of the report's own randomness (BPR, ties, simulation)")
    cache_dir: str | None = None
    use_cache: bool = True


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]) between two non-negative ``(n,)`` histograms (normalised here)."""
    p = np.asarray(p, np.float64) / max(float(np.sum(p)), 1e-300)
    q = np.asarray(q, np.float64) / max(float(np.sum(q)), 1e-300)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.sqrt(max(0.5 * kl(p) + 0.5 * kl(q), 0.0)))


def fit_bpr(fw: FittedWorld, cfg: FidelityConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BPR-MF on the same train positives: returns user factors ``(U, k)``, item factors ``(M, k)``, item bias
    ``(M,)`` (float32). Negatives uniform over warm items. Cold users/items keep untrained rows (never scored)."""
    data, split = fw.data, fw.split
    tr = data.interactions.iloc[split.train]
    tr = tr[tr["positive"].to_numpy()]
    pu, pi = tr["user"].to_numpy(), tr["item"].to_numpy()
    warm = np.flatnonzero(~split.cold_items)
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    U = torch.nn.Parameter(torch.randn(data.num_users, cfg.bpr_dim, generator=g) * 0.1)
    V = torch.nn.Parameter(torch.randn(data.num_items, cfg.bpr_dim, generator=g) * 0.1)
    B = torch.nn.Parameter(torch.zeros(data.num_items))
    opt = torch.optim.Adam([U, V, B], lr=cfg.bpr_lr)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(cfg.bpr_epochs):
            perm = rng.permutation(len(pu))
            u_all = torch.from_numpy(pu[perm])
            i_all = torch.from_numpy(pi[perm])
            j_all = torch.from_numpy(rng.choice(warm, size=len(pu)))
            for s in range(0, len(pu), cfg.bpr_batch_size):
                u, i, j = (t[s:s + cfg.bpr_batch_size] for t in (u_all, i_all, j_all))
                x = (U[u] * (V[i] - V[j])).sum(1) + B[i] - B[j]
                reg = (U[u] ** 2).sum(1) + (V[i] ** 2).sum(1) + (V[j] ** 2).sum(1) + B[i] ** 2 + B[j] ** 2
                loss = -torch.nn.functional.logsigmoid(x).mean() + cfg.bpr_l2 * reg.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(old)
    return U.detach().numpy(), V.detach().numpy(), B.detach().numpy()


def _rank_metrics(scores: np.ndarray, users: np.ndarray, cand: np.ndarray, pos: dict[int, np.ndarray],
                  seen: dict[int, np.ndarray], train: dict[int, np.ndarray], k: int) -> dict[str, float]:
    """Mean per-user AUC and NDCG@k. ``scores`` ``(B, M)`` rows for ``users``; ``cand`` ``(M,)`` bool."""
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
        top = idx[np.argsort(-s[idx], kind="stable")[:k]]
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


def _ranking(fw: FittedWorld, cfg: FidelityConfig, rng: np.random.Generator) -> dict[str, Any]:
    data, split, world = fw.data, fw.split, fw.world
    inter = data.interactions
    users, items = inter["user"].to_numpy(), inter["item"].to_numpy()
    te = split.test[inter["positive"].to_numpy()[split.test]]
    pos = _groups(users[te], items[te], data.num_users)
    seen = _groups(users, items, data.num_users)
    train = _groups(users[split.train], items[split.train], data.num_users)
    U, V, B = fit_bpr(fw, cfg, rng)
    pop_score = np.log(world.catalog.popularity) + 1e-6 * rng.random(data.num_items)  # seeded tie-break
    warm_items = ~split.cold_items
    has_pos = np.array([pos[u].size > 0 for u in range(data.num_users)])
    segments = {
        "warm_users": (np.flatnonzero(~split.cold_users & has_pos), warm_items, True),
        "cold_users": (np.flatnonzero(split.cold_users & has_pos), warm_items, False),
        "cold_items": (np.flatnonzero(has_pos), split.cold_items, False),
    }
    out: dict[str, Any] = {}
    for seg, (us, cand, mf_ok) in segments.items():
        res: dict[str, Any] = {}
        if us.size == 0 or not cand.any():
            out[seg] = {"note": "no held-out positives in this segment"}
            continue
        res["hidden_model"] = _rank_metrics(world_logits(world, us), us, cand, pos, seen, train, cfg.k)
        res["bpr_mf"] = (_rank_metrics(U[us] @ V.T + B[None, :], us, cand, pos, seen, train, cfg.k) if mf_ok else
                         {"auc": None, "ndcg": None, "note": "MF cannot score users/items unseen in train"})
        res["popularity"] = _rank_metrics(np.broadcast_to(pop_score, (us.size, data.num_items)), us, cand, pos, seen,
                                          train, cfg.k)
        out[seg] = res
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def _calibration(fw: FittedWorld, cfg: FidelityConfig, rng: np.random.Generator) -> dict[str, Any]:
    data, split, world = fw.data, fw.split, fw.world
    inter = data.interactions
    te = split.test[inter["positive"].to_numpy()[split.test]]
    pu, pi = inter["user"].to_numpy()[te], inter["item"].to_numpy()[te]
    keep = ~split.cold_users[pu] & ~split.cold_items[pi]  # the segment the model was trained for
    pu, pi = pu[keep], pi[keep]
    warm = np.flatnonzero(~split.cold_items)
    nu = np.repeat(pu, cfg.fit.negatives)
    ni = rng.choice(warm, size=nu.size)
    u = np.concatenate([pu, nu])
    i = np.concatenate([pi, ni])
    y = np.concatenate([np.ones(pu.size), np.zeros(nu.size)])
    c, p, w = world.catalog, world.population, world.preference
    logit = ((p.latent[u] * c.latent[i]).sum(1) * w.affinity_scale + w.popularity_weight * np.log(c.num_items * c.popularity[i])
             + w.appeal_weight * c.appeal[i] + w.bias + p.bias[u])
    prob = _sigmoid(logit.astype(np.float64))
    edges = np.quantile(prob, np.linspace(0, 1, 11))
    b = np.clip(np.searchsorted(edges, prob, "right") - 1, 0, 9)
    rows = []
    for d in range(10):
        m = b == d
        rows.append({"decile": d + 1, "n": int(m.sum()), "predicted": float(prob[m].mean()) if m.any() else None,
                     "observed": float(y[m].mean()) if m.any() else None})
    ece = float(sum(r["n"] * abs(r["predicted"] - r["observed"]) for r in rows if r["n"]) / len(y))
    return {"bins": rows, "ece": ece, "pairs": int(len(y)), "negatives_per_positive": cfg.fit.negatives}


def _distributions(fw: FittedWorld, rng: np.random.Generator) -> dict[str, Any]:
    data, split, world = fw.data, fw.split, fw.world
    inter = data.interactions
    users, items = inter["user"].to_numpy(), inter["item"].to_numpy()
    te = split.test[inter["positive"].to_numpy()[split.test]]
    real_u, real_i = users[te], items[te]
    eval_users = np.unique(real_u)
    train = _groups(users[split.train], items[split.train], data.num_users)
    logits = world_logits(world, eval_users).astype(np.float64)
    for row, u in enumerate(eval_users.tolist()):
        logits[row, train[u]] = -np.inf
    target = real_u.size / eval_users.size
    lo, hi = -30.0, 30.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _sigmoid(logits + mid).sum(1).mean() < target else (lo, mid)
    probs = _sigmoid(logits + 0.5 * (lo + hi))
    clicks = rng.random(probs.shape) < probs
    sim_u_rows, sim_i = np.nonzero(clicks)
    counts = np.bincount(items[split.train], minlength=data.num_items)
    rank = np.empty(data.num_items, np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(data.num_items)
    decile = (rank * 10) // data.num_items
    genres = world.catalog.genres
    n_g = len(world.catalog.genre_names)
    real_act = np.bincount(np.searchsorted(eval_users, real_u), minlength=eval_users.size)
    sim_act = clicks.sum(1)
    hists = {
        "popularity_decile": (np.bincount(decile[real_i], minlength=10), np.bincount(decile[sim_i], minlength=10),
                              [f"D{k + 1}" for k in range(10)]),
        "genre_share": (np.bincount(genres[real_i], minlength=n_g), np.bincount(genres[sim_i], minlength=n_g),
                        list(world.catalog.genre_names)),
        "user_activity": (np.histogram(real_act, _ACTIVITY_EDGES)[0], np.histogram(sim_act, _ACTIVITY_EDGES)[0],
                          [f"{int(a)}-{'' if np.isinf(b) else int(b) - 1}" for a, b in zip(_ACTIVITY_EDGES[:-1], _ACTIVITY_EDGES[1:], strict=True)]),
    }
    out: dict[str, Any] = {"users": int(eval_users.size), "real_clicks": int(real_u.size), "simulated_clicks": int(sim_i.size),
                           "logit_offset": float(0.5 * (lo + hi))}
    for name, (r, s, labels) in hists.items():
        out[name] = {"labels": labels, "real": (r / max(r.sum(), 1)).tolist(), "simulated": (s / max(s.sum(), 1)).tolist(),
                     "js_distance": js_distance(r, s)}
    del sim_u_rows
    return out


def _plots(out_dir: Path, report: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    cal = report["calibration"]["bins"]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.plot([r["predicted"] for r in cal if r["n"]], [r["observed"] for r in cal if r["n"]], "o-")
    ax.set(xlabel="predicted click probability", ylabel="observed positive rate", title="Calibration by decile")
    files.append(_save(fig, out_dir / "calibration.png", plt))
    for name in ("popularity_decile", "genre_share", "user_activity"):
        d = report["distributions"][name]
        x = np.arange(len(d["labels"]))
        fig, ax = plt.subplots(figsize=(max(5, 0.35 * len(x)), 3.5))
        ax.bar(x - 0.2, d["real"], 0.4, label="real (held-out)")
        ax.bar(x + 0.2, d["simulated"], 0.4, label="simulated")
        ax.set_xticks(x, d["labels"], rotation=60 if len(x) > 10 else 0, fontsize=7)
        ax.set(ylabel="share", title=f"{name} (JS distance {d['js_distance']:.3f})")
        ax.legend(fontsize=7)
        files.append(_save(fig, out_dir / f"{name}.png", plt))
    return files


def _save(fig: Any, path: Path, plt: Any) -> str:
    import io

    from recgym.common import atomic_write_bytes

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path.name


def _fmt(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def _markdown(r: dict[str, Any]) -> str:
    s = r["setup"]
    lines = [f"# Fidelity report: {r['world']}", "", "## Setup", "",
             f"- positives: {s['positive_rule']}; split: {s['train_rows']} train / {s['test_rows']} held-out rows "
             f"({'temporal per user' if s['temporal'] else 'seeded random per user'}); {s['cold_users']} cold users, "
             f"{s['cold_items']} cold items, {s['test_users']} test-cohort users",
             f"- encoder: `{s['encoder']}`; fit {s['fit_seconds']} s ({s['epochs']} epochs, cache hit: {s['cache_hit']}); "
             f"report {s['report_seconds']} s", "",
             f"## Held-out ranking quality (AUC, NDCG@{r['k']})", "",
             "| segment | model | AUC | NDCG | users | note |", "|---|---|---|---|---|---|"]
    for seg, res in r["ranking"].items():
        if "note" in res:
            lines.append(f"| {seg} | – | n/a | n/a | 0 | {res['note']} |")
            continue
        for model, m in res.items():
            lines.append(f"| {seg} | {model} | {_fmt(m['auc'])} | {_fmt(m['ndcg'])} | {m.get('users', '–')} | {m.get('note', '')} |")
    cal = r["calibration"]
    lines += ["", "## Calibration", "",
              f"Warm-user, warm-item held-out positives + {cal['negatives_per_positive']} sampled warm-item negatives each ({cal['pairs']} pairs); "
              f"expected calibration error {cal['ece']:.3f}.", "", "| decile | n | predicted | observed |", "|---|---|---|---|"]
    lines += [f"| {b['decile']} | {b['n']} | {_fmt(b['predicted'])} | {_fmt(b['observed'])} |" for b in cal["bins"]]
    d = r["distributions"]
    lines += ["", "![calibration](calibration.png)", "", "## Simulated vs real distributions", "",
              f"{d['users']} users with held-out positives; {d['real_clicks']} real vs {d['simulated_clicks']} simulated clicks "
              f"(level-matched, logit offset {d['logit_offset']:+.2f}).", "", "| distribution | Jensen–Shannon distance |", "|---|---|"]
    lines += [f"| {n} | {d[n]['js_distance']:.3f} |" for n in ("popularity_decile", "genre_share", "user_activity")]
    lines += [""] + [f"![{n}]({n}.png)" for n in ("popularity_decile", "genre_share", "user_activity")]
    b = r["bar"]
    lines += ["", "## Bar", "", f"- warm users: hidden AUC {_fmt(b['warm_hidden_auc'])} vs BPR-MF {_fmt(b['warm_bpr_auc'])} "
              f"(needs >= BPR - 0.02): **{'pass' if b['warm_pass'] else 'FAIL'}**",
              f"- cold items: hidden AUC {_fmt(b['cold_item_hidden_auc'])} vs popularity {_fmt(b['cold_item_pop_auc'])} "
              f"(needs >= popularity + 0.05): **{'pass' if b['cold_item_pass'] else 'FAIL'}**", ""]
    return "\n".join(lines)


def fidelity_report(
    world_name: str,
    data_dir: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    encoder: TextEncoder | None = None,
    *,
    config: FidelityConfig | None = None,
    fitted: FittedWorld | None = None,
) -> dict[str, Any]:
    """Fit (or load) ``world_name`` and write ``fidelity.md``, ``fidelity.json`` and PNGs into ``out_dir``.

    Returns the JSON content: ``setup``, ``ranking`` (segment → model → auc/ndcg/users), ``calibration``,
    ``distributions`` (each with ``js_distance``), ``bar``, ``files``. ``fitted`` reuses an already fitted world.
    """
    cfg = config or FidelityConfig()
    t0 = time.perf_counter()
    fw = fitted or fit_world(world_name, data_dir, encoder=encoder, config=cfg.fit, cache_dir=cfg.cache_dir,
                             use_cache=cfg.use_cache)
    rng = np.random.default_rng(cfg.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"world": fw.world.name, "k": cfg.k}
    report["ranking"] = _ranking(fw, cfg, rng)
    report["calibration"] = _calibration(fw, cfg, rng)
    report["distributions"] = _distributions(fw, rng)
    warm = report["ranking"].get("warm_users", {})
    ci = report["ranking"].get("cold_items", {})

    def get(res: dict[str, Any], model: str) -> float | None:
        v = res.get(model, {}).get("auc") if isinstance(res.get(model), dict) else None
        return None if v is None or np.isnan(v) else float(v)

    wh, wb, ch, cp = get(warm, "hidden_model"), get(warm, "bpr_mf"), get(ci, "hidden_model"), get(ci, "popularity")
    report["bar"] = {"warm_hidden_auc": wh, "warm_bpr_auc": wb, "cold_item_hidden_auc": ch, "cold_item_pop_auc": cp,
                     "warm_pass": bool(wh is not None and wb is not None and wh >= wb - 0.02),
                     "cold_item_pass": bool(ch is not None and cp is not None and ch >= cp + 0.05)}
    sp, m = fw.split, fw.manifest
    report["setup"] = {
        "dataset": fw.data.name, "positive_rule": fw.data.positive_rule, "train_rows": int(sp.train.size),
        "test_rows": int(sp.test.size), "temporal": bool(sp.temporal), "cold_users": int(sp.cold_users.sum()),
        "cold_items": int(sp.cold_items.sum()), "test_users": int(sp.test_users.sum()),
        "encoder": str(m.get("encoder", {}).get("model", m.get("encoder_fingerprint", "?"))),
        "fit_seconds": m.get("fit_seconds"), "epochs": m.get("epochs"), "cache_hit": fw.cache_hit,
        "world_fingerprint": fw.world.fingerprint(),
    }
    report["files"] = _plots(out, report)
    report["setup"]["report_seconds"] = round(time.perf_counter() - t0, 2)
    atomic_write_text(out / "fidelity.md", _markdown(report))
    report["files"] += ["fidelity.md", "fidelity.json"]
    atomic_write_json(out / "fidelity.json", report)
    return report
