"""The "Fairness of exposure" part of a run's report: tables, exposure-vs-merit plot, trade-off curve.

Reads the summary rows of :func:`~recgym.experiments.stats.summarise` (mean and CI over seeds) and the
cells' per-item ``fair_exposure`` / ``fair_merit`` arrays written by
:func:`~recgym.experiments.evaluation.evaluate_cell`. Definitions: :mod:`recgym.experiments.fairness`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recgym.experiments.plots import _mean_band, _new_figure, _save

__all__ = ["fairness_plots", "fairness_section", "plot_exposure_merit", "plot_tradeoff", "tradeoff_series"]

ITEM_COLUMNS = ("eoa_unfairness", "treatment_gap_popularity", "treatment_gap_genre", "treatment_gap_new",
                "parity_gap_popularity")


def _row(summary: Sequence[Mapping[str, Any]], agent: str, metric: str, segment: str = "all") -> Mapping[str, Any] | None:
    for r in summary:
        if r["agent"] == agent and r["metric"] == metric and r["segment"] == segment:
            return r
    return None


def tradeoff_series(cfg: Any) -> dict[str, list[tuple[float, str]]]:
    """``{base agent name: [(lam, label), ...]}`` sorted by lam: agents of one name re-ranked with the
    ``exposure`` method at several lambdas (an un-reranked agent of that name counts as lam = 0). Only
    names with at least two points form a series."""
    series: dict[str, list[tuple[float, str]]] = {}
    for spec in cfg.agents:
        r = spec.rerank
        if r is None:
            series.setdefault(spec.name, []).append((0.0, spec.key))
        elif r.method == "exposure":
            series.setdefault(spec.name, []).append((float(r.lam), spec.key))
    return {name: sorted(pts) for name, pts in series.items()
            if len(pts) >= 2 and any(cfg_spec.rerank is not None for cfg_spec in cfg.agents if cfg_spec.name == name)}


def plot_tradeoff(summary: Sequence[Mapping[str, Any]], agents: Sequence[str],
                  series: Mapping[str, Sequence[tuple[float, str]]], path: Path,
                  y_metrics: Sequence[str] = ("eoa_unfairness", "treatment_gap_popularity")) -> Path:
    """Relevance (NDCG, x) vs unfairness (y, lower = fairer) per agent with CI error bars; the lambda series
    of each re-ranked base agent joined by a line and labelled with lambda."""
    fig, axes = _new_figure(len(y_metrics))
    for ax, ym in zip(axes, y_metrics, strict=True):
        plotted = False
        for a in agents:
            rx, ry = _row(summary, a, "ndcg"), _row(summary, a, ym)
            if rx is None or ry is None or not (math.isfinite(rx["mean"]) and math.isfinite(ry["mean"])):
                continue
            hx = rx["half_width"] if math.isfinite(rx["half_width"]) else 0.0
            hy = ry["half_width"] if math.isfinite(ry["half_width"]) else 0.0
            ax.errorbar(rx["mean"], ry["mean"], xerr=hx, yerr=hy, fmt="o", ms=4, capsize=2, alpha=0.8)
            ax.annotate(a, (rx["mean"], ry["mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            plotted = True
        for name, pts in series.items():
            xs = [_row(summary, label, "ndcg") for _, label in pts]
            ys = [_row(summary, label, ym) for _, label in pts]
            ok = [(lam, x["mean"], y["mean"]) for (lam, _), x, y in zip(pts, xs, ys, strict=True)
                  if x is not None and y is not None and math.isfinite(x["mean"]) and math.isfinite(y["mean"])]
            if len(ok) >= 2:
                ax.plot([o[1] for o in ok], [o[2] for o in ok], "-", lw=1.2, label=f"{name}: lambda series")
                for lam, x, y in ok:
                    ax.annotate(f"λ={lam:g}", (x, y), fontsize=7, xytext=(3, -9), textcoords="offset points")
        if not plotted:
            raise ValueError(f"plot_tradeoff: no agent has finite ndcg and {ym}")
        ax.set(xlabel="NDCG@K (hidden relevance; higher = more relevant)", ylabel=f"{ym} (lower = fairer)",
               title=f"Relevance vs {ym}")
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=8)
    return _save(fig, Path(path))


def plot_exposure_merit(per_agent: Mapping[str, tuple[np.ndarray, np.ndarray]], deciles: np.ndarray, path: Path,
                        confidence: float = 0.95) -> Path:
    """Exposure share / merit share per popularity decile (1 = exposure proportional to true relevance).

    ``per_agent``: ``{agent: (exposure (n_seeds, M), merit (n_seeds, M))}``; ``deciles`` ``(M,)`` int, -1 =
    in no decile. Deciles with no merit are left out (nan)."""
    if not per_agent:
        raise ValueError("plot_exposure_merit: expected at least one agent")
    n_bins = int(deciles.max()) + 1
    keep = deciles >= 0
    fig, (ax,) = _new_figure()
    for agent, (exp, mer) in per_agent.items():
        ratios = []
        for e, m in zip(np.atleast_2d(exp), np.atleast_2d(mer), strict=True):
            ge = np.bincount(deciles[keep], weights=e[keep], minlength=n_bins)
            gm = np.bincount(deciles[keep], weights=m[keep], minlength=n_bins)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratios.append(np.where(gm > 0, (ge / max(ge.sum(), 1e-300)) / (gm / max(gm.sum(), 1e-300)), np.nan))
        mean, half = _mean_band(np.array(ratios), confidence)
        x = np.arange(n_bins)
        (line,) = ax.plot(x, mean, marker="o", ms=3, label=agent)
        if half is not None:
            ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set(xlabel="popularity decile of the prior (0 = least popular)", ylabel="exposure share / merit share",
           title="Exposure relative to true relevance by popularity decile")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def fairness_plots(cfg: Any, world: Any, out: Path, summary: Sequence[Mapping[str, Any]],
                   arrays: Mapping[str, Sequence[Mapping[str, np.ndarray]]],
                   attempt: Callable[..., None]) -> None:
    """Draw the fairness plots through the report's ``attempt(key, fn, *args)`` (a failing plot is noted)."""
    from recgym.experiments.fairness import item_groupings

    d = out / "plots"
    per_agent = {a: (np.stack([c["fair_exposure"] for c in cs]), np.stack([c["fair_merit"] for c in cs]))
                 for a, cs in arrays.items() if cs and all("fair_exposure" in c for c in cs)}
    if per_agent:
        dec = item_groupings(world.catalog)["popularity"].groups
        attempt("exposure_vs_merit", plot_exposure_merit, per_agent, dec, d / "exposure_vs_merit.png",
                cfg.evaluation.confidence)
    attempt("fairness_tradeoff", plot_tradeoff, summary, [s.key for s in cfg.agents], tradeoff_series(cfg),
            d / "fairness_tradeoff.png")


def _table(summary: Sequence[Mapping[str, Any]], agents: Sequence[str], cols: Sequence[str], fmt: Callable,
           segment: str = "all", header: Sequence[str] | None = None) -> str:
    head = "| agent | " + " | ".join(header or cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    return head + "".join("| " + a + " | " + " | ".join(fmt(_row(summary, a, c, segment)) for c in cols) + " |\n"
                          for a in agents)


def _group_table(summary: Sequence[Mapping[str, Any]], agents: Sequence[str], prefix: str, metric: str,
                 fmt: Callable) -> str:
    segs = list(dict.fromkeys(r["segment"] for r in summary if r["segment"].startswith(prefix)))
    if not segs:
        return ""
    labels = [s[len(prefix):] for s in segs]
    head = "| agent | " + " | ".join(labels) + " |\n|---|" + "---|" * len(segs) + "\n"
    return head + "".join("| " + a + " | " + " | ".join(fmt(_row(summary, a, metric, s), 2) for s in segs) + " |\n"
                          for a in agents)


def fairness_section(summary: Sequence[Mapping[str, Any]], agents: Sequence[str], fmt: Callable) -> list[str]:
    """Markdown lines of the report's fairness section (``fmt(row, digits=3)`` formats mean ± CI)."""
    lines = [
        "## Fairness of exposure", "",
        "Item side: a slate position j gets attention 1/log2(j+2); an item's *merit* is its hidden true "
        "relevance summed over the rankings that offered it. `eoa_unfairness` is Biega et al.'s equity of "
        "attention, sum over items of |attention share − relevance share| per ranking (0 = amortised "
        "individual fairness, at most 2). `treatment_gap_<g>` is the total-variation distance between the "
        "groups' exposure shares and merit shares (Singh & Joachims' disparate treatment: 0 = exposure "
        "proportional to merit); `parity_gap_<g>` the distance to the groups' shares of offered slots "
        "(relevance ignored). Groups: popularity deciles of the prior, primary genre, new vs initial items. "
        "Lower is fairer.", "",
        _table(summary, agents, ITEM_COLUMNS, fmt),
        "Exposure share / merit share per popularity decile (1 = proportional to true relevance; "
        "d0 = least popular):", "",
        _group_table(summary, agents, "items:popularity=", "exposure_merit_ratio", fmt),
        "New vs initial items, exposure share / merit share:", "",
        _group_table(summary, agents, "items:new=", "exposure_merit_ratio", fmt),
    ]
    attrs = sorted({r["metric"][len("user_ctr_gap_"):] for r in summary if r["metric"].startswith("user_ctr_gap_")})
    if attrs:
        lines += ["User side: gaps are max − min over the groups of an attribute (groups with at least 5 "
                  "sessions); *retention* is the share of sessions the user did not leave. Demographic groups "
                  "are parsed from the profile texts; `cold` is cold vs warm users.", ""]
        for key in ("ctr", "retention", "satisfaction"):
            cols = [f"user_{key}_gap_{a}" for a in attrs]
            lines += [f"{key} gap by:", "", _table(summary, agents, cols, fmt, header=attrs)]
        for a in attrs:
            t = _group_table(summary, agents, f"users:{a}=", "ctr", fmt)
            if t:
                lines += [f"CTR by {a}:", "", t]
    return lines
