"""What ``recgym tune`` shows: Optuna's matplotlib plots and ``tune.md`` (the best trial, or the Pareto front
as a table with one column per objective and per searched parameter)."""

from __future__ import annotations

import functools
import io
import itertools
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recgym.common.io import atomic_write_bytes

if TYPE_CHECKING:
    from types import ModuleType

    from optuna import Study

    from recgym.experiments.tune_config import TuneConfig

__all__ = ["tune_plots", "tune_markdown"]


def tune_plots(optuna: ModuleType, study: Study, out: Path, tune: TuneConfig) -> dict[str, str]:
    """Draw the study's plots into ``out/plots``; returns ``{key: relative path}``, or ``{key: "!reason"}`` for a
    plot Optuna could not draw (e.g. importances need 2+ complete trials).

    Several objectives: the history, importance and parallel-coordinate charts are of the first objective;
    the Pareto front is one chart for 2 or 3 objectives, and for more one 2-D projection per pair of
    objectives (``pareto_front_<a>_vs_<b>``), each marking the trials of the full-dimensional front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    objectives = tune.objectives
    multi = len(objectives) > 1
    target = None if not multi else (lambda t: t.values[0])
    name = f"{objectives[0]} (mean over the tune seeds)"
    jobs = {"optimization_history": lambda: ovm.plot_optimization_history(study, target=target, target_name=name),
            "param_importances": lambda: ovm.plot_param_importances(study, target=target, target_name=name),
            "parallel_coordinate": lambda: ovm.plot_parallel_coordinate(study, target=target, target_name=name)}
    if multi and len(objectives) <= 3:
        jobs["pareto_front"] = lambda: ovm.plot_pareto_front(study, target_names=objectives)
    elif multi:  # Optuna draws 2 or 3 axes; the front it marks is computed on every objective
        for i, j in itertools.combinations(range(len(objectives)), 2):
            jobs[f"pareto_front_{objectives[i]}_vs_{objectives[j]}"] = functools.partial(
                ovm.plot_pareto_front, study, targets=lambda t, i=i, j=j: (t.values[i], t.values[j]),
                target_names=[objectives[i], objectives[j]])
    made: dict[str, str] = {}
    (out / "plots").mkdir(exist_ok=True)
    for key, make in jobs.items():
        try:
            with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental; we pin its version
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = make()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
            plt.close(fig)
            atomic_write_bytes(out / "plots" / f"{key}.png", buf.getvalue())
            made[key] = f"plots/{key}.png"
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            made[key] = f"!{' '.join(str(exc).split())[:200]}"
    return made


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def tune_markdown(summary: dict[str, Any], plots: dict[str, str], out: Path) -> str:
    """``tune.md`` from the summary of :func:`~recgym.experiments.tune.write_tune_outputs`."""
    objectives = summary["objectives"]
    lines = [f"# recgym tune: {summary['agent']}", "",
             f"{summary['trials']} trials ({summary['complete']} complete, {summary['pruned']} pruned); objectives "
             + ", ".join(f"{m} ({d})" for m, d in zip(objectives, summary["directions"], strict=True))
             + ", each the mean over the tune seeds.", ""]
    if summary["defaults"] is not None:
        lines += [f"Trial 0 starts from the configured hyper-parameters (those inside the space): "
                  f"{summary['defaults']['params']} -> "
                  f"{summary['defaults']['values']}.", ""]
    title = "Pareto front" if len(objectives) > 1 else "Best trial"
    params = list(dict.fromkeys(k for b in summary["best"] for k in b["params"]))  # reward.<term> = a reward weight
    lines += [f"## {title}", "", "| trial | " + " | ".join(objectives + params) + " |",
              "|---|" + "---|" * (len(objectives) + len(params))]
    for b in summary["best"]:
        cells = [_cell(v) for v in b["values"]] + [_cell(b["params"].get(k)) for k in params]
        lines.append(f"| {b['number']} | " + " | ".join(cells) + " |")
    peer = summary.get("best_config_compares")
    both = (f"it runs `{peer[1]}` (the best trial) next to `{peer[0]}` (as configured) on the same users and "
            "seeds" if peer else "the reward weights change every agent's reward, so it runs the tuned agent "
            "in place of the configured one")
    lines += ["", "A tune compares trials on few seeds: before claiming the best beats the configured "
              f"hyper-parameters, re-run with the full protocol and compare the 95 % CIs ({both}):",
              "", f"    recgym run {out / 'best_config.yaml'}", "", "## Plots", ""]
    for key, rel in plots.items():
        lines.append(f"- {key}: not drawn ({rel[1:]})" if rel.startswith("!") else f"![{key}]({rel})")
    return "\n".join(lines) + "\n"
