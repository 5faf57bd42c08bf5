"""Outputs of a run: ``metrics.json`` / ``metrics.csv``, PNG plots, ``report.md`` and the summary table.

Every number in the report is a mean over seeds with its Student-t confidence interval
(:func:`~recgym.experiments.stats.summarise`). A comparison is stated as a difference only when the two
intervals do not overlap (:func:`~recgym.experiments.stats.ci_separated`); otherwise the report says the
intervals overlap and claims nothing.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from recgym.common.errors import CorruptFileError
from recgym.common.io import atomic_write_json, atomic_write_text, load_npz_arrays, read_json_file
from recgym.experiments.cells import cell_path
from recgym.experiments.config import ExperimentConfig
from recgym.experiments.fairness_report import fairness_plots, fairness_section
from recgym.experiments.stats import ci_separated, summarise

__all__ = ["write_outputs", "HEADLINE"]

SEGMENTS = ("all", "warm_users", "cold_users", "head_items", "tail_items", "new_items")
HEADLINE = ("return", "ctr", "ndcg", "session_length", "satisfaction", "coverage", "gini", "tail_share")
BAR_METRICS = ("return", "ctr", "ndcg", "coverage", "gini", "tail_share", "novelty", "ild")
CLAIM_METRICS = ("return", "ctr", "ndcg", "coverage", "tail_share")
LOWER_IS_BETTER = {"gini"}


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def _load_cells(cfg: ExperimentConfig, out: Path) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, np.ndarray]]]]:
    records: list[dict[str, Any]] = []
    arrays: dict[str, list[dict[str, np.ndarray]]] = {}
    for spec in cfg.agents:
        arrays[spec.key] = []
        for s in cfg.evaluation.seeds:
            path = cell_path(out, spec.key, s)
            cell = _read_cell(path)
            for seg, metrics in cell["metrics"].items():
                records.append({"agent": spec.key, "seed": s, "segment": seg,
                                **{k: (float("nan") if v is None else float(v)) for k, v in metrics.items()}})
            arrays[spec.key].append(load_npz_arrays(path.with_suffix(".npz"), what="evaluation cell arrays"))
    return records, arrays


def _read_cell(path: Path) -> dict[str, Any]:
    """A cell's JSON with its ``metrics`` checked (segment -> metric -> number or null), else a clear error."""
    cell = read_json_file(path, what="evaluation cell")
    metrics = cell.get("metrics") if isinstance(cell, dict) else None
    if not isinstance(metrics, dict) or not all(
            isinstance(m, dict) and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                                        for v in m.values()) for m in metrics.values()):
        raise CorruptFileError(f"{path}: field 'metrics': expected segment -> metric -> number, received "
                               f"{type(metrics).__name__}; delete the cell and run again with --resume")
    return cell


def _metric_names(records: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for r in records:
        for k in r:
            if k not in ("agent", "seed", "segment"):
                names[k] = None
    return list(names)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in cols})
    atomic_write_text(path, buf.getvalue())


def _row(summary: list[dict[str, Any]], agent: str, metric: str, segment: str = "all") -> dict[str, Any] | None:
    for r in summary:
        if r["agent"] == agent and r["metric"] == metric and r["segment"] == segment:
            return r
    return None


def _fmt(r: dict[str, Any] | None, digits: int = 3) -> str:
    if r is None or not math.isfinite(r["mean"]):
        return "n/a"
    if math.isfinite(r["half_width"]):
        return f"{r['mean']:.{digits}f} ± {r['half_width']:.{digits}f}"
    return f"{r['mean']:.{digits}f} (n=1)"


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    n = min(len(r) for r in rows)
    return np.stack([np.asarray(r[:n], dtype=np.float64) for r in rows])


# ------------------------------------------------------------------------------------------- plots
def _plots(cfg: ExperimentConfig, out: Path, summary: list[dict[str, Any]], arrays: dict[str, Any],
           world: Any) -> dict[str, str]:
    from recgym.experiments import plots

    d = out / "plots"
    made: dict[str, str] = {}

    def attempt(key: str, fn: Any, *args: Any, **kw: Any) -> None:
        try:
            made[key] = str(fn(*args, **kw).relative_to(out))
        except ValueError as exc:  # a plot with no data must not sink the run; the report says so
            made[key] = f"!{exc}"

    curves = {a: (_stack([c["curve_step"] for c in cs])[0], _stack([c["curve_return"] for c in cs]))
              for a, cs in arrays.items() if cs and all("curve_step" in c for c in cs)}
    if curves:
        attempt("learning_curves", plots.plot_learning_curves, curves, d / "learning_curves.png",
                ylabel="held-out session return")
    all_rows = [r for r in summary if r["segment"] == "all" and math.isfinite(r["mean"])]
    for m in BAR_METRICS:
        if any(r["metric"] == m for r in all_rows):
            attempt(f"bars_{m}", plots.plot_agent_bars, all_rows, m, d / f"bars_{m}.png")
    seg_rows = [r for r in summary if r["segment"] in ("warm_users", "cold_users") and math.isfinite(r["mean"])]
    if seg_rows:
        attempt("bars_ctr_segments", plots.plot_agent_bars, seg_rows, "ctr", d / "bars_ctr_segments.png",
                group_key="segment", title="CTR of warm vs cold users (mean, CI over seeds)")
    item_rows = [r for r in summary if r["segment"] in ("head_items", "tail_items", "new_items")
                 and math.isfinite(r["mean"])]
    if item_rows:
        attempt("bars_exposure_segments", plots.plot_agent_bars, item_rows, "exposure_share",
                d / "bars_exposure_segments.png", group_key="segment",
                title="Exposure share of head / tail / new items (mean, CI over seeds)")
    attempt("lorenz", plots.plot_lorenz, {a: np.stack([c["exposure"] for c in cs]) for a, cs in arrays.items()},
            d / "lorenz.png")
    attempt("ctr_by_decile", plots.plot_ctr_by_decile,
            {a: np.stack([c["ctr_by_decile"] for c in cs]) for a, cs in arrays.items()}, d / "ctr_by_decile.png",
            allow_missing=True)
    cold: dict[str, dict[str, Any]] = {}
    for a, cs in arrays.items():
        entry: dict[str, Any] = {"new_user_ctr": np.stack([c["cold_user_ctr"] for c in cs])}
        if all("new_item_share" in c for c in cs):
            share = _stack([c["new_item_share"] for c in cs])
            entry["new_item_share"] = (_stack([c["new_item_share_steps"] for c in cs])[0], share)
            entry["time_to_first_exposure"] = np.concatenate([c["time_to_first_exposure"] for c in cs])
            entry["time_to_first_click"] = np.concatenate([c["time_to_first_click"] for c in cs])
        cold[a] = entry
    attempt("cold_start", plots.plot_cold_start_curves, cold, d / "cold_start.png", allow_missing=True)
    fairness_plots(cfg, world, out, summary, arrays, attempt)
    return made


# ------------------------------------------------------------------------------------------- claims
def conclusions(summary: list[dict[str, Any]], agents: list[str], confidence: float) -> list[str]:
    """Sentences supported by the numbers: a difference only where the CIs do not overlap."""
    lines = []
    for m in CLAIM_METRICS:
        rows = {a: _row(summary, a, m) for a in agents}
        rows = {a: r for a, r in rows.items() if r is not None and math.isfinite(r["mean"])}
        if len(rows) < 2:
            continue
        low_better = m in LOWER_IS_BETTER
        order = sorted(rows, key=lambda a: rows[a]["mean"], reverse=not low_better)
        best = order[0]
        sep = [a for a in order[1:] if ci_separated(rows[best], rows[a])]
        ovl = [a for a in order[1:] if a not in sep]
        text = f"**{m}**: highest mean is {best} ({_fmt(rows[best])})."
        if sep:
            text += f" {best}'s {m} exceeds that of {', '.join(sep)}: the {confidence:.0%} CIs do not overlap."
        if ovl:
            text += (f" Against {', '.join(ovl)} the CIs overlap, so no difference is claimed.")
        lines.append(text)
    return lines


def rl_comparisons(summary: list[dict[str, Any]], rl: list[str], others: list[str], confidence: float,
                   metric: str = "return") -> list[str]:
    """Each RL agent against each other agent on ``metric``: a direction only when the CIs are separated."""
    lines = []
    for a in rl:
        ra = _row(summary, a, metric)
        for b in others:
            rb = _row(summary, b, metric)
            if ra is None or rb is None or not (math.isfinite(ra["mean"]) and math.isfinite(rb["mean"])):
                continue
            if ci_separated(ra, rb):
                hi, lo = (a, b) if ra["mean"] > rb["mean"] else (b, a)
                lines.append(f"{hi}'s {metric} exceeds {lo}'s ({_fmt(ra)} vs {_fmt(rb)} for {a} vs {b}): "
                             f"the {confidence:.0%} CIs do not overlap.")
            else:
                lines.append(f"{a} vs {b} on {metric}: {_fmt(ra)} vs {_fmt(rb)}; the CIs overlap, so no "
                             "difference is claimed.")
    return lines


def _table_md(summary: list[dict[str, Any]], agents: list[str], metrics: tuple[str, ...], segment: str) -> str:
    head = "| agent | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics) + "\n"
    body = "".join("| " + a + " | " + " | ".join(_fmt(_row(summary, a, m, segment)) for m in metrics) + " |\n"
                   for a in agents)
    return head + body


def _report_md(cfg: ExperimentConfig, chash: str, summary: list[dict[str, Any]], made: dict[str, str],
               world: Any, n_users: int, explained: list[str] | None = None) -> str:
    agents = [s.key for s in cfg.agents]
    conf = cfg.evaluation.confidence
    ev = cfg.evaluation
    lines = [
        f"# recgym run: {cfg.name}", "",
        (cfg.description.strip() + "\n") if cfg.description else "",
        f"Config sha256 `{chash[:16]}`; world `{cfg.world}` (fingerprint `{world.fingerprint()[:16]}`), "
        f"{world.catalog.num_items} items, {world.population.num_users} users.", "",
        "## Protocol", "",
        f"Every agent is evaluated on the same {n_users} users of the `{ev.cohort}` cohort (held out from "
        f"training and logging), with the same {len(ev.seeds)} seeds {ev.seeds}, {ev.episodes_per_user} "
        f"session(s) per user, and the same new-item release schedule. Numbers are means over seeds ± the "
        f"half-width of the {conf:.0%} Student-t confidence interval. Slates of {cfg.env.slate_size} from "
        f"{cfg.env.num_candidates} candidates; reward `{cfg.env.reward.name}`; sessions of at most "
        f"{cfg.env.max_steps} steps. NDCG@{cfg.env.slate_size} uses the hidden true relevance of every "
        "unmasked candidate. Online learners keep updating during evaluation; RL agents are trained on "
        "the train cohort; offline learners fit on the logging policy's data.", "",
    ]
    if len(ev.seeds) < 5:
        lines += [f"> Only {len(ev.seeds)} seed(s): intervals are wide (or undefined for one seed).", ""]
    lines += ["## Conclusions supported by the numbers", ""]
    lines += [f"- {c}" for c in conclusions(summary, agents, conf)] or ["- (fewer than two agents to compare)"]
    from recgym.agents import AGENTS

    rl = [s.key for s in cfg.agents if AGENTS[s.name].train_action_types is not None]
    others = [s.key for s in cfg.agents if s.key not in rl]
    if rl and others:
        lines += ["", "RL agents against the others (session return):", ""]
        lines += [f"- {c}" for c in rl_comparisons(summary, rl, others, conf)]
    lines += ["", "## All users", "", _table_md(summary, agents, HEADLINE, "all")]
    lines += ["## Warm vs cold users", "", "Warm users:", "",
              _table_md(summary, agents, ("return", "ctr", "ndcg", "session_length"), "warm_users"),
              "Cold users (no history):", "",
              _table_md(summary, agents, ("return", "ctr", "ndcg", "session_length"), "cold_users")]
    lines += ["## Head / tail / new items", "",
              _table_md(summary, agents, ("exposure_share", "ctr", "coverage"), "head_items"),
              "Tail items:", "", _table_md(summary, agents, ("exposure_share", "ctr", "coverage"), "tail_items"),
              "New (injected) items:", "", _table_md(summary, agents, ("exposure_share", "ctr", "coverage"), "new_items")]
    lines += fairness_section(summary, agents, _fmt)
    lines += explained or []
    lines += ["## Plots", ""]
    for key, rel in made.items():
        if rel.startswith("!"):
            lines.append(f"- {key}: not drawn ({rel[1:]})")
        else:
            lines.append(f"![{key}]({rel})")
    lines += ["", "Files: `metrics.json`, `metrics.csv` (agent × seed × segment), `metrics_summary.csv` "
              "(mean and CI), `curves/` (learning curves), `tensorboard/`, `checkpoints/`, `run.json`."]
    if cfg.is_real_world:
        lines += ["", "Fidelity of the real-data world: [fidelity/fidelity.md](fidelity/fidelity.md)."]
    return "\n".join(lines) + "\n"


def _console_table(summary: list[dict[str, Any]], agents: list[str], console: Any, title: str) -> None:
    from rich.table import Table

    cols = ("return", "ctr", "ndcg", "coverage", "gini", "tail_share")
    t = Table(title=title, caption="value = mean±CI half-width; full tables in report.md")
    t.add_column("agent")
    for m in cols:
        t.add_column(m, justify="right")
    t.add_column("cold ctr", justify="right")
    for a in agents:
        cells = [_fmt(_row(summary, a, m)).replace(" ± ", "±") for m in cols]
        t.add_row(a, *cells, _fmt(_row(summary, a, "ctr", "cold_users")).replace(" ± ", "±"))
    console.print(t)


def write_outputs(cfg: ExperimentConfig, out: Path, chash: str, world: Any, console: Any) -> dict[str, Any]:
    records, arrays = _load_cells(cfg, out)
    metrics = _metric_names(records)
    conf = cfg.evaluation.confidence
    summary = summarise(records, by=["agent", "segment"], metric=metrics, confidence=conf, nan_policy="omit",
                        skip_missing=True, replicate_key="seed")
    n_users = _read_cell(cell_path(out, cfg.agents[0].key, cfg.evaluation.seeds[0])).get("n_users", 0)
    atomic_write_json(out / "metrics.json", _clean({
        "config_sha256": chash, "confidence": conf, "seeds": cfg.evaluation.seeds,
        "agents": [s.key for s in cfg.agents], "records": records, "summary": summary}))
    _write_csv(out / "metrics.csv", records)
    _write_csv(out / "metrics_summary.csv", summary)
    made = _plots(cfg, out, summary, arrays, world) if cfg.output.plots else {}
    from recgym.experiments.explain import report_examples

    explained = report_examples(cfg, world, chash, out)
    atomic_write_text(out / "report.md", _report_md(cfg, chash, summary, made, world, n_users, explained))
    _console_table(summary, [s.key for s in cfg.agents], console,
                   f"{cfg.name}: mean ± {conf:.0%} CI half-width over {len(cfg.evaluation.seeds)} seeds (all users)")
    return {"summary": summary, "plots": made}
