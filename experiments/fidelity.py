"""Fidelity report card for worlds fitted to real logs: would this simulator rank your policies as your data does?

``fidelity_report(world_name, data_dir, out_dir)`` fits (or loads from cache) the world, then writes
``fidelity.md``, ``fidelity.json`` and PNGs to ``out_dir``. The report leads with a one-glance verdict (the
policy-ranking agreement with its confidence interval, and the checks that failed, with why), then:

1. **Policy-ranking fidelity** (``policy_ranking``): a fixed panel of recommenders fitted on the train split,
   each evaluated on the real held-out interactions (NDCG@K, recall@K) and in the fitted world on the same
   users, candidates and top-K lists (simulated CTR@K) and in full env sessions (return); Spearman's rho,
   Kendall's tau (bootstrap 95 % CIs over users), top-1 agreement and pairwise sign accuracy
   (:mod:`~recgym.experiments.fidelity_panel`, :mod:`~recgym.experiments.fidelity_stats`).
2. **Replay error** (``replay``): held-out logged sessions replayed through the world's click model, per user
   and per popularity decile, next to a shuffled-data reference (:mod:`~recgym.experiments.fidelity_replay`).
3. **Held-out ranking** of the hidden model vs BPR-MF and popularity for warm users, cold users and cold
   items; **calibration** before/after post-hoc Platt scaling with a reliability diagram; **free-choice**
   click distributions (:mod:`~recgym.experiments.fidelity_sections`).

Bars (``bar``): policy ranking rho >= 0.8; warm-user AUC within 0.02 of BPR-MF; cold items above popularity
+ 0.05 AUC; cold users at least as good as popularity in AUC and NDCG@K; ECE <= 0.03 after calibration;
replay JS distance over popularity deciles <= 0.15; every decile's replayed click share within +-25 %
(relative) of the real share (deciles with fewer than ``MIN_DECILE_CLICKS`` real held-out clicks are reported but
not counted: their share cannot be measured to +-25 %).

Reports are cached per (world fingerprint, report version, report config) under
``$RECGYM_CACHE/fidelity/`` (:func:`cached_fidelity_report`), so ``recgym run`` reuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from recgym.common import StrictModel, atomic_write_json, atomic_write_text
from recgym.common.progress import progress_bar
from recgym.encoders.base import TextEncoder
from recgym.envs.worlds.fitted import FitConfig, FittedWorld, fit_world
from recgym.experiments import fidelity_sections as sections
from recgym.experiments.fidelity_panel import fit_bpr, panel_data
from recgym.experiments.fidelity_plots import write_plots
from recgym.experiments.fidelity_replay import free_choice, js_distance, replay

__all__ = ["FidelityConfig", "fidelity_report", "cached_fidelity_report", "js_distance", "verdict_line",
           "REPORT_VERSION", "BARS"]

REPORT_VERSION = "4"
BARS = {"policy_rho": 0.8, "warm_auc_gap": 0.02, "cold_item_auc_gain": 0.05, "ece": 0.03, "replay_js": 0.15,
        "tail_share_rel": 0.25}
# A decile's share is measured on its real clicks: below 50 the sampling error of the share alone (~1/sqrt(n),
# > 14 %) is too close to the +-25 % bar to judge it; such deciles are reported, and named, but not counted.
MIN_DECILE_CLICKS = 50


class FidelityConfig(StrictModel):
    """Settings of the report (the fit's own settings are in ``fit``)."""

    config_path = "fidelity"
    fit: FitConfig = FitConfig()
    bpr_dim: int = Field(64, ge=1, description="BPR-MF reference of the held-out ranking section")
    bpr_epochs: int = Field(30, ge=1)
    k: int = Field(10, ge=1, description="cut-off of NDCG@K, recall@K and simulated CTR@K")
    n_boot: int = Field(1000, ge=10, description="bootstrap resamples of users for the rank-agreement CIs")
    max_panel_users: int | None = Field(None, ge=3, description="users the panel is evaluated on (None: all)")
    seed: int = Field(0, ge=0, description="seed of the report's own randomness (panel, ties, simulation)")
    cache_dir: str | None = None
    use_cache: bool = True


def _env_config(fw: FittedWorld) -> Any:
    from recgym.envs.config import EnvConfig
    from recgym.envs.factory import adapt_env_config

    return adapt_env_config(EnvConfig(), int((~fw.world.catalog.is_new).sum()))


def _auc(res: dict[str, Any], model: str, key: str = "auc") -> float | None:
    v = res.get(model, {}).get(key) if isinstance(res.get(model), dict) else None
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def _bars(r: dict[str, Any]) -> dict[str, Any]:
    warm, cold_u, cold_i = (r["ranking"].get(s, {}) for s in ("warm_users", "cold_users", "cold_items"))
    wh, wb = _auc(warm, "hidden_model"), _auc(warm, "bpr_mf")
    ch, cp = _auc(cold_i, "hidden_model"), _auc(cold_i, "popularity")
    uh, up = _auc(cold_u, "hidden_model"), _auc(cold_u, "popularity")
    nh, npop = _auc(cold_u, "hidden_model", "ndcg"), _auc(cold_u, "popularity", "ndcg")
    pr, rp, cal = r["policy_ranking"], r["replay"], r["calibration"]
    rho = pr.get("spearman")
    dec = rp.get("per_decile", {})
    errs, clicks = dec.get("relative_error", []), dec.get("real_clicks") or [np.inf] * len(dec.get("relative_error", []))
    rel = [abs(x) for x, n in zip(errs, clicks, strict=True) if x is not None and n >= MIN_DECILE_CLICKS]
    too_few = [f"D{k + 1}" for k, (x, n) in enumerate(zip(errs, clicks, strict=True)) if x is not None and n < MIN_DECILE_CLICKS]
    return {
        "policy_rho": rho, "policy_pass": bool(rho is not None and np.isfinite(rho) and rho >= BARS["policy_rho"]),
        "warm_hidden_auc": wh, "warm_bpr_auc": wb,
        "warm_pass": bool(wh is not None and wb is not None and wh >= wb - BARS["warm_auc_gap"]),
        "cold_item_hidden_auc": ch, "cold_item_pop_auc": cp,
        "cold_item_pass": bool(ch is not None and cp is not None and ch >= cp + BARS["cold_item_auc_gain"]),
        "cold_user_hidden_auc": uh, "cold_user_pop_auc": up, "cold_user_hidden_ndcg": nh, "cold_user_pop_ndcg": npop,
        "cold_user_pass": bool(None not in (uh, up, nh, npop) and uh >= up and nh >= npop),
        "ece": cal.get("ece"), "ece_pass": bool(cal.get("ece") is not None and cal["ece"] <= BARS["ece"]),
        "replay_js": rp.get("js_distance"),
        "replay_js_pass": bool(rp.get("js_distance") is not None and rp["js_distance"] <= BARS["replay_js"]),
        "tail_share_max_rel_error": max(rel) if rel else None, "tail_share_too_few_clicks": too_few,
        "tail_share_max_rel_error_all_deciles": max((abs(x) for x in errs if x is not None), default=None),
        "tail_share_pass": bool(rel and max(rel) <= BARS["tail_share_rel"]),
    }


def _fmt(x: Any, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def verdict_line(r: dict[str, Any]) -> str:
    """The one-glance answer: ``would this simulator rank your policies as your data does? rho = ... [CI]``."""
    pr = r["policy_ranking"]
    if "spearman" not in pr:
        return f"would this simulator rank your policies as your data does? unknown ({pr.get('note', 'no panel')})"
    lo, hi = pr["spearman_ci"]
    answer = "yes" if r["bar"]["policy_pass"] else ("partly" if pr["spearman"] >= 0.5 else "no")
    return (f"would this simulator rank your policies as your data does? {answer}: Spearman rho = {_fmt(pr['spearman'], 2)} "
            f"[{_fmt(lo, 2)}, {_fmt(hi, 2)}] over {len(pr['panel'])} recommenders ({pr['real_metric']} vs "
            f"{pr['sim_metric']}, {pr['users']} users); best in reality: {pr['real_best']}, in simulation: {pr['sim_best']}")


def _weak_points(r: dict[str, Any]) -> list[str]:
    b, pr, rp = r["bar"], r["policy_ranking"], r["replay"]
    out = []
    if not b["policy_pass"] and "panel" in pr:
        real = sorted(pr["panel"], key=lambda t: -t["ndcg"])
        sim = sorted(pr["panel"], key=lambda t: -t["sim_ctr"])
        out.append(f"policy ranking below rho {BARS['policy_rho']}: real order {', '.join(t['name'] for t in real)}; "
                   f"simulated order {', '.join(t['name'] for t in sim)}")
    sess = pr.get("ndcg_vs_sim_return", {}).get("spearman")
    if sess is not None and np.isfinite(sess) and sess < BARS["policy_rho"]:
        out.append(f"full env sessions rank the panel less faithfully (rho {_fmt(sess, 2)}): the env offers each policy "
                   "only its retrieval candidates and adds fatigue, masking and leaving, which the offline metric lacks")
    if not b["cold_user_pass"]:
        out.append(f"cold users: hidden model AUC {_fmt(b['cold_user_hidden_auc'])} / NDCG {_fmt(b['cold_user_hidden_ndcg'])} "
                   f"vs popularity {_fmt(b['cold_user_pop_auc'])} / {_fmt(b['cold_user_pop_ndcg'])}")
    if not b["ece_pass"]:
        out.append(f"calibration error {_fmt(b['ece'])} > {BARS['ece']} after Platt scaling")
    if not b["replay_js_pass"] or not b["tail_share_pass"]:
        out.append(f"replayed clicks by popularity decile: JS {_fmt(b['replay_js'])}, worst relative share error "
                   f"{_fmt(b['tail_share_max_rel_error'], 2)} (bars {BARS['replay_js']}, {BARS['tail_share_rel']})")
    d = rp.get("per_decile", {})
    errs, clicks = d.get("relative_error", []), d.get("real_clicks", [])
    ses = d.get("real_share_rel_se") or [None] * len(errs)
    thin = [f"D{k + 1} {_fmt(e, 2)} on {n:.0f} clicks (sampling error of the real share {_fmt(s, 2)})"
            for k, (e, n, s) in enumerate(zip(errs, clicks, ses, strict=True)) if e is not None and n < MIN_DECILE_CLICKS]
    if thin:
        detail = ", ".join(thin)
        out.append(f"replayed click share not judged where a popularity decile has fewer than {MIN_DECILE_CLICKS} real "
                   f"held-out clicks ({detail})")
    if rp.get("implicit"):
        out.append("implicit log: every logged row is a click, so the replay checks the click level only")
    if not b["warm_pass"]:
        out.append(f"warm users: hidden AUC {_fmt(b['warm_hidden_auc'])} below BPR-MF {_fmt(b['warm_bpr_auc'])} - 0.02")
    return out


def _markdown(r: dict[str, Any]) -> str:
    from recgym.experiments.fidelity_markdown import sections_markdown

    lines = [f"# Fidelity report: {r['world']}", "", f"**{verdict_line(r)}**", ""]
    weak = _weak_points(r)
    lines += (["Where it is weak, and why:", ""] + [f"- {w}" for w in weak] if weak
              else ["Every check below meets its bar."]) + [""]
    return "\n".join(lines + sections_markdown(r, BARS))


def fidelity_report(
    world_name: str,
    data_dir: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    encoder: TextEncoder | None = None,
    *,
    config: FidelityConfig | None = None,
    fitted: FittedWorld | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Fit (or load) ``world_name`` and write ``fidelity.md``, ``fidelity.json`` and PNGs into ``out_dir``.

    Returns the JSON content: ``verdict``, ``setup``, ``policy_ranking``, ``replay``, ``ranking`` (segment ->
    model -> auc/ndcg/users), ``calibration``, ``distributions``, ``bar``, ``files``. ``fitted`` reuses an
    already fitted world.
    """
    cfg = config or FidelityConfig()
    t0 = time.perf_counter()
    fw = fitted or fit_world(world_name, data_dir, encoder=encoder, config=cfg.fit, cache_dir=cfg.cache_dir,
                             use_cache=cfg.use_cache, progress=progress)
    rng = np.random.default_rng(cfg.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"world": fw.world.name, "k": cfg.k, "report_version": REPORT_VERSION}
    timings: dict[str, float] = {}

    # the sections after the fit (panel, replay, BPR, ranking, calibration, distributions, plots) take minutes
    with progress_bar(7, f"fidelity report {fw.world.name}", unit="sections", enabled=progress) as bar:
        def timed(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            res = fn(*args, **kwargs)
            timings[name] = round(time.perf_counter() - t, 2)
            bar(1)
            return res

        env_cfg = _env_config(fw)
        report["policy_ranking"] = timed("policy_ranking", sections.policy_ranking, fw, cfg.k,
                                         np.random.default_rng([cfg.seed, 1]), env_cfg, n_boot=cfg.n_boot,
                                         max_users=cfg.max_panel_users, session_seed=cfg.seed)
        report["replay"] = timed("replay", replay, fw, np.random.default_rng([cfg.seed, 2]))
        bpr = timed("bpr_fit", fit_bpr, panel_data(fw).x, ~fw.split.cold_items, np.random.default_rng([cfg.seed, 3]),
                    dim=cfg.bpr_dim, epochs=cfg.bpr_epochs)
        report["ranking"] = timed("ranking", sections.heldout_ranking, fw, cfg.k, rng, bpr)
        report["calibration"] = timed("calibration", sections.calibration, fw, FitConfig.model_validate(fw.manifest["config"]), rng)
        report["distributions"] = timed("distributions", free_choice, fw, rng)
        report["bar"] = _bars(report)
        report["verdict"] = verdict_line(report)
        report["weak_points"] = _weak_points(report)
        sp, m = fw.split, fw.manifest
        report["setup"] = {
            "dataset": fw.data.name, "positive_rule": fw.data.positive_rule, "train_rows": int(sp.train.size),
            "validation_rows": int(sp.val.size), "test_rows": int(sp.test.size), "onboarding_rows": int(sp.onboarding.size),
            "temporal": bool(sp.temporal), "cold_users": int(sp.cold_users.sum()), "cold_items": int(sp.cold_items.sum()),
            "test_users": int(sp.test_users.sum()), "items": int(fw.data.num_items), "users": int(fw.data.num_users),
            "encoder": str(m.get("encoder", {}).get("model", m.get("encoder_fingerprint", "?"))),
            "fit_seconds": m.get("fit_seconds"), "epochs": m.get("epochs"), "steps": m.get("steps"),
            "quality_source": m.get("quality_source"), "cache_hit": fw.cache_hit,
            "world_fingerprint": fw.world.fingerprint(), "section_seconds": timings,
        }
        report["files"] = timed("plots", write_plots, out, report)
    report["setup"]["report_seconds"] = round(time.perf_counter() - t0, 2)
    atomic_write_text(out / "fidelity.md", _markdown(report))
    report["files"] += ["fidelity.md", "fidelity.json"]
    atomic_write_json(out / "fidelity.json", report)
    return report


def cached_fidelity_report(world_name: str, data_dir: str | os.PathLike[str] | None, out_dir: str | os.PathLike[str],
                           encoder: TextEncoder | None = None, *, config: FidelityConfig | None = None,
                           progress: bool | None = None) -> tuple[dict[str, Any], bool]:
    """:func:`fidelity_report`, reused from ``<cache>/fidelity/<world>-<key>/`` when the world fingerprint, the
    report version and the report config match. Returns ``(report, cache_hit)``; ``out_dir`` gets the files."""
    from recgym.encoders.cache import default_cache_dir

    cfg = config or FidelityConfig()
    fw = fit_world(world_name, data_dir, encoder=encoder, config=cfg.fit, cache_dir=cfg.cache_dir,
                   use_cache=cfg.use_cache, progress=progress)
    key = hashlib.sha256(json.dumps({"world": fw.world.fingerprint(), "v": REPORT_VERSION,
                                     "config": cfg.model_dump(mode="json", exclude={"cache_dir", "use_cache"})},
                                    sort_keys=True).encode()).hexdigest()
    root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    folder = root / "fidelity" / f"{fw.world.name}-{key[:16]}"
    out = Path(out_dir)
    done = folder / "fidelity.json"
    if cfg.use_cache and done.is_file():
        try:
            report = json.loads(done.read_text())
            if report.get("cache_key") == key and all((folder / f).is_file() for f in report.get("files", [])):
                out.mkdir(parents=True, exist_ok=True)
                for f in report["files"]:
                    shutil.copy2(folder / f, out / f)
                return report, True
        except (OSError, ValueError):
            pass  # a broken cache entry is rebuilt below
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    report = fidelity_report(world_name, data_dir, tmp, config=cfg, fitted=fw)
    report["cache_key"] = key
    atomic_write_json(tmp / "fidelity.json", report)
    if cfg.use_cache:
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        src = folder
    else:
        src = tmp
    out.mkdir(parents=True, exist_ok=True)
    for f in report["files"]:
        shutil.copy2(src / f, out / f)
    if not cfg.use_cache:
        shutil.rmtree(tmp, ignore_errors=True)
    return report, False
