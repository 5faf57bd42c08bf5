"""PNG figures of the fidelity report: policy-ranking scatter, reliability diagram, replayed and free-choice
click shares by popularity decile, genre shares. Each file is written atomically; returns the file names."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_plots"]


def _save(fig: Any, path: Path, plt: Any) -> str:
    from recgym.common import atomic_write_bytes

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path.name


def _bars(ax: Any, labels: list[str], series: dict[str, list[float]]) -> None:
    x = np.arange(len(labels))
    width = 0.8 / len(series)
    for j, (name, vals) in enumerate(series.items()):
        ax.bar(x - 0.4 + width * (j + 0.5), vals, width, label=name)
    ax.set_xticks(x, labels, rotation=60 if len(labels) > 10 else 0, fontsize=7)
    ax.legend(fontsize=7)


def write_plots(out: Path, r: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    pr = r["policy_ranking"]
    if "panel" in pr:
        fig, ax = plt.subplots(figsize=(5, 4))
        xs, ys = [t["ndcg"] for t in pr["panel"]], [t["sim_ctr"] for t in pr["panel"]]
        ax.scatter(xs, ys)
        for t, x, y in zip(pr["panel"], xs, ys, strict=True):
            ax.annotate(t["name"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        lo, hi = pr["spearman_ci"]
        ax.set(xlabel=f"real {pr['real_metric']} (held-out)", ylabel=pr["sim_metric"],
               title=f"Policy ranking: rho {pr['spearman']:.2f} [{lo:.2f}, {hi:.2f}]")
        files.append(_save(fig, out / "policy_ranking.png", plt))
    cal = r["calibration"]
    if cal.get("bins"):
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        for key, label in (("raw_bins", f"before (ECE {cal['raw_ece']:.3f})"), ("bins", f"after calibration (ECE {cal['ece']:.3f})")):
            b = [x for x in cal[key] if x["n"]]
            ax.plot([x["predicted"] for x in b], [x["observed"] for x in b], "o-", label=label)
        ax.set(xlabel="predicted click probability", ylabel="observed positive rate",
               title="Reliability: P(click | shown)" if cal.get("exposure_corrected") else "Reliability diagram")
        ax.legend(fontsize=7)
        files.append(_save(fig, out / "calibration.png", plt))
    rp = r["replay"]
    if "per_decile" in rp:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        _bars(ax, [f"D{k + 1}" for k in range(10)], {"real": rp["per_decile"]["real_share"],
                                                    "replayed": rp["per_decile"]["sim_share"],
                                                    "shuffled ref.": rp["shuffled_reference"]["per_decile"]["sim_share"]})
        ax.set(ylabel="share of clicks", title=f"Replay by popularity decile (JS {rp['js_distance']:.3f})")
        files.append(_save(fig, out / "replay_deciles.png", plt))
    for name in ("popularity_decile", "genre_share"):
        d = r["distributions"].get(name, {})
        if "labels" not in d:
            continue
        fig, ax = plt.subplots(figsize=(max(5, 0.35 * len(d["labels"])), 3.5))
        _bars(ax, d["labels"], {"real (held-out)": d["real"], "simulated": d["simulated"]})
        ax.set(ylabel="share", title=f"free choice: {name} (JS distance {d['js_distance']:.3f})")
        files.append(_save(fig, out / f"{name}.png", plt))
    return files
