"""``recgym tune CONFIG --agent NAME --trials N [--backend local|ray]``: hyper-parameter and reward-weight
search with Optuna over the run protocol.

A trial is a small run (:func:`~recgym.experiments.runner.run_experiment`) of the tuned agent alone, with the
trial's hyper-parameters (and reward weights), on the ``tune.seeds`` replicates, in ``trials/<number>/``;
its objective values are the means over those seeds of the ``tune.objectives`` metrics (all users). One
objective: TPE sampler and a median pruner fed by the learning-curve points of the first seed after step 0 (a trial
whose curve is below the median of earlier trials at the same step stops). Several objectives: NSGA-II and
the Pareto front (no pruning: Optuna does not prune multi-objective studies). The first trial is the
agent's configured hyper-parameters (where they lie in the space), so the defaults are always on the chart.

The study lives in ``study.db`` (SQLite through Optuna's storage) in the tune folder: a killed tune resumes
with the same command, keeps every finished trial and re-runs only the trial(s) the kill interrupted. At the
end: ``best.json`` (best hyper-parameters; the Pareto front for several objectives), ``best_config.yaml`` (the
original config plus the tuned agent as ``<label>_tuned`` next to the configured one, ready for ``recgym
run`` with the full seed protocol: :func:`best_run_config`),
Optuna's matplotlib plots (optimisation history, parameter importances, parallel coordinates; Pareto front)
and ``tune.md``. Optuna is an optional extra: ``pip install -e ".[tune]"``.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from recgym.common.io import atomic_write_json, atomic_write_text
from recgym.experiments.config import ExperimentConfig, config_hash
from recgym.experiments.tune_config import ParamSpec, TuneConfig
from recgym.experiments.tune_report import tune_markdown, tune_plots

if TYPE_CHECKING:  # Optuna and Ray are optional extras, imported when a tune starts
    from types import ModuleType

    from optuna import Study, Trial

    from recgym.experiments.cells import Cell

__all__ = ["run_tune", "TuneError", "require_optuna", "trial_config", "best_run_config"]

INSTALL_HINT = 'pip install -e ".[tune]"  (or: pip install optuna)'
MARKER = "tune.json"


class TuneError(RuntimeError):
    """The tune cannot start (no Optuna, a bad agent or space, a folder of another tune); says what to do."""


def require_optuna() -> ModuleType:
    try:
        import optuna
    except ImportError:
        raise TuneError(f"recgym tune needs Optuna, which is not installed; install it with: {INSTALL_HINT}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# --------------------------------------------------------------------------------------------- the space
def _tuned_index(cfg: ExperimentConfig, agent: str | None) -> int:
    label = agent or (cfg.tune.agent if cfg.tune else None)
    labels = [a.key for a in cfg.agents]
    if label is None:
        raise TuneError(f"--agent: expected the label of the agent to tune (one of {labels}), received none")
    if label not in labels:
        from recgym.common.config import suggest

        raise TuneError(f"--agent: expected one of {labels}, received {label!r}{suggest(label, labels)}")
    return labels.index(label)


def check_space(cfg: ExperimentConfig, index: int) -> None:
    """The searched names must be hyper-parameters of the tuned agent; reward weights need an RL agent."""
    from recgym.agents import AGENTS
    from recgym.common.config import suggest

    tune = cfg.tune
    if tune is None:
        raise TuneError("config: expected a 'tune:' section (the search space), received none; see "
                        "recgym.experiments.tune_config for its keys")
    spec = cfg.agents[index]
    cls = AGENTS[spec.name]
    fields = set(cls.Config.model_fields) - {"seed", "device"}
    for key in tune.space:
        if key not in fields:
            raise TuneError(f"tune.space.{key}: not a hyper-parameter of agent {spec.name!r}{suggest(key, fields)}; "
                            f"expected one of: {', '.join(sorted(fields))}")
    if tune.reward_weights and cls.train_action_types is None:
        raise TuneError(f"tune.reward_weights: agent {spec.name!r} does not train on the reward; search reward weights "
                        "for an RL agent (ppo, dqn)")
    if "retention" in tune.reward_weights and cfg.train_env(index).sessions.count == 1:
        raise TuneError("tune.reward_weights.retention: expected a world of returning users (env.sessions.count "
                        ">= 2) to search a retention weight, received env.sessions.count=1 (no user returns: every "
                        "trial with retention > 0 would be rejected); set env.sessions (e.g. sessions: {count: 6, "
                        "session_steps: 8}) or drop retention from the searched weights")


def _suggest(trial: Trial, name: str, spec: ParamSpec) -> Any:
    if spec.type == "categorical":
        return trial.suggest_categorical(name, spec.choices)
    if spec.type == "int":
        return trial.suggest_int(name, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log)
    return trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log)


def _sample(trial: Trial, tune: TuneConfig) -> dict[str, Any]:
    params = {name: _suggest(trial, name, spec) for name, spec in tune.space.items()}
    params.update({f"reward.{k}": _suggest(trial, f"reward.{k}", spec) for k, spec in tune.reward_weights.items()})
    return params


def trial_config(cfg: ExperimentConfig, index: int, params: dict[str, Any]) -> ExperimentConfig:
    """The run of one trial: the tuned agent alone with ``params`` (``reward.<term>`` = a mix-reward weight),
    on the tune seeds, without plots or TensorBoard."""
    tune = cfg.tune
    assert tune is not None
    spec = cfg.agents[index]
    hp = {**spec.hyperparams, **{k: v for k, v in params.items() if not k.startswith("reward.")}}
    d = cfg.to_dict()
    d["agents"] = [{**spec.model_dump(), "hyperparams": hp}]
    weights = {k.removeprefix("reward."): v for k, v in params.items() if k.startswith("reward.")}
    if weights:
        d["env"]["reward"] = {"name": "mix", "weights": {**d["env"]["reward"]["weights"], **weights}}
    d["evaluation"] = {**d["evaluation"], "seeds": list(tune.seeds)}
    d["output"] = {**d["output"], "plots": False, "tensorboard": False, "dir": None}
    d["name"] = f"{cfg.name}-trial"
    d.pop("tune", None)
    return ExperimentConfig.model_validate(d)


def _defaults(cfg: ExperimentConfig, index: int) -> dict[str, Any]:
    """The agent's configured hyper-parameters (and reward weights) that lie in the space: trial 0."""
    from recgym.agents import AGENTS

    tune = cfg.tune
    assert tune is not None
    spec = cfg.agents[index]
    current = AGENTS[spec.name].Config(**spec.hyperparams).model_dump()
    out = {k: current[k] for k, s in tune.space.items() if s.contains(current.get(k))}
    w = cfg.env.reward.weights.model_dump()
    out.update({f"reward.{k}": w[k] for k, s in tune.reward_weights.items() if s.contains(w[k])})
    return out


# --------------------------------------------------------------------------------------------- one trial
def evaluate_trial(cfg_dict: dict[str, Any], index: int, params: dict[str, Any], folder: str,
                   report: Callable[[int, float], None] | None = None) -> list[float]:
    """Run one trial (in this process or a Ray worker); returns the objective values. ``report(step, value)``
    receives the learning-curve points of the first seed after training started (not step 0) and may raise
    ``optuna.TrialPruned``."""
    import optuna
    from rich.console import Console

    from recgym.common.progress import Progress
    from recgym.experiments.runner import run_experiment

    cfg = ExperimentConfig.model_validate(cfg_dict)
    tune = cfg.tune
    assert tune is not None
    run_cfg = trial_config(cfg, index, params)
    first = run_cfg.evaluation.seeds[0]

    def on_curve(cell: Cell, step: int, value: float) -> None:
        # Step 0 is the untrained policy: its return says how the network was initialised (it varies with
        # the width), not how the trial learns, so the pruner never sees it (it pruned untrained trials).
        if report is not None and cell.seed == first and step > 0:
            report(step, value)

    quiet = Console(file=io.StringIO())
    summary = run_experiment(run_cfg, Path(folder), console=quiet, progress=Progress(enabled=False),
                             overwrite=Path(folder, ".recgym-run.json").is_file(),
                             on_curve=on_curve, reraise=(optuna.TrialPruned,))
    values = []
    for metric in tune.objectives:
        rows = [r for r in summary["summary"] if r["metric"] == metric and r["segment"] == "all"]
        if not rows or not math.isfinite(rows[0]["mean"]):
            known = sorted({r["metric"] for r in summary["summary"] if r["segment"] == "all"})
            raise TuneError(f"tune.objectives: metric {metric!r} was not measured; measured: {known}")
        values.append(float(rows[0]["mean"]))
    return values


def _trial_task(cfg_dict: dict[str, Any], index: int, params: dict[str, Any], folder: str, storage: str,
                study_name: str, trial_id: int) -> dict[str, Any]:
    """A trial in a Ray worker: intermediate values go to the shared study storage, which decides pruning."""
    optuna = require_optuna()
    study = optuna.load_study(study_name=study_name, storage=storage)
    trial = optuna.trial.Trial(study, trial_id)

    def report(step: int, value: float) -> None:
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")

    single = len(study.directions) == 1  # Optuna takes intermediate values of single-objective studies only
    try:
        return {"values": evaluate_trial(cfg_dict, index, params, folder, report if single else None)}
    except optuna.TrialPruned:
        return {"pruned": True}


# --------------------------------------------------------------------------------------------- the study
def _open_folder(out: Path, cfg: ExperimentConfig, index: int, overwrite: bool) -> str:
    """Create or re-open the tune folder; returns the study name. A folder of another tune is refused."""
    tune = cfg.tune
    assert tune is not None
    key = {"config_sha256": config_hash(cfg), "tune": tune.model_dump(), "agent": cfg.agents[index].key}
    name = f"{cfg.name}-{cfg.agents[index].key}-{config_hash({**key, 'name': cfg.name})[:12]}"
    marker = out / MARKER
    if marker.is_file():
        old = json.loads(marker.read_text())
        if old.get("key") != key:
            if not overwrite:
                raise TuneError(f"--out {out}: holds a tune of another config, agent or search space; use another "
                                "--out or --overwrite")
        else:
            return old["study"]
    if out.exists() and any(out.iterdir()):
        if not overwrite or not marker.is_file():
            raise TuneError(f"--out {out}: not empty and not this tune's folder; choose an empty or new --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"format": "recgym-tune", "key": key, "study": name,
                               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return name


def _study(optuna: ModuleType, out: Path, name: str, tune: TuneConfig) -> Study:
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    multi = len(tune.objectives) > 1
    sampler = (optuna.samplers.NSGAIISampler(seed=tune.sampler_seed) if multi else
               optuna.samplers.TPESampler(seed=tune.sampler_seed, n_startup_trials=tune.startup_trials))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=tune.startup_trials) if tune.pruning and not multi
              else optuna.pruners.NopPruner())
    return optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                               directions=tune.directions_resolved, load_if_exists=True)


def _recover(optuna: ModuleType, study: Study, out: Path, notify: Callable[[str], None]) -> None:
    """Trials left running by a killed tune: marked failed, their folders removed, their parameters queued
    again (so the interrupted trial re-runs; finished trials are never repeated)."""
    state = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, state.FAIL)
        shutil.rmtree(out / "trials" / f"{t.number:04d}", ignore_errors=True)
        study.enqueue_trial(t.params, skip_if_exists=False)
        notify(f"trial {t.number} was interrupted by a kill: it runs again")


def run_tune(cfg: ExperimentConfig, out: Path, *, agent: str | None = None, trials: int | None = None,
             backend: str = "local", workers: int | None = None, ray_address: str | None = None,
             overwrite: bool = False, notify: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the study; returns the summary written to ``best.json``. See the module docstring."""
    from recgym.experiments.runner import apply_world_defaults

    optuna = require_optuna()
    cfg = apply_world_defaults(cfg)  # the world's own env settings, before the config is copied per trial
    index = _tuned_index(cfg, agent)
    check_space(cfg, index)
    tune = cfg.tune
    assert tune is not None
    wanted = trials or tune.trials
    trial_config(cfg, index, _defaults(cfg, index))  # the trial config validates before any folder or work
    if backend not in ("local", "ray"):
        raise TuneError(f"--backend: expected 'local' or 'ray', received {backend!r}")
    if backend == "ray":
        from recgym.experiments.ray_backend import require_ray

        require_ray()
    out = Path(out)
    name = _open_folder(out, cfg, index, overwrite)
    study = _study(optuna, out, name, tune)
    if not study.trials:
        study.enqueue_trial(_defaults(cfg, index))
    _recover(optuna, study, out, notify)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    if done:
        notify(f"resume: {done} finished trial(s) kept")
    cfg_dict = cfg.to_dict()
    if backend == "ray":
        _optimize_ray(optuna, study, cfg_dict, index, out, wanted, workers, ray_address, notify)
    else:
        _optimize_local(optuna, study, cfg_dict, index, out, wanted, notify)
    return write_tune_outputs(optuna, study, cfg, index, out)


def _count(optuna: ModuleType, study: Study) -> int:
    s = optuna.trial.TrialState
    return len(study.get_trials(deepcopy=False, states=(s.COMPLETE, s.PRUNED)))


def _folder(out: Path, number: int) -> str:
    return str(out / "trials" / f"{number:04d}")


def _log(notify: Callable[[str], None], trial: Trial, result: str, wanted: int, done: int) -> None:
    notify(f"trial {trial.number}: {result} ({done}/{wanted} finished)")


MAX_FAILED_IN_A_ROW = 3


class _Failures:
    """Failed trials are recorded (state FAIL, error in the trial's folder) and the search goes on, unless
    ``MAX_FAILED_IN_A_ROW`` fail in a row: then the setup, not a parameter, is broken."""

    def __init__(self) -> None:
        self.in_a_row = 0

    def __call__(self, optuna: ModuleType, study: Study, trial: Trial, exc: BaseException, notify: Callable[[str], None]) -> None:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        notify(f"trial {trial.number} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        self.in_a_row += 1
        if self.in_a_row >= MAX_FAILED_IN_A_ROW:
            raise TuneError(f"{self.in_a_row} trials failed in a row, the last with {type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:300]}") from exc

    def ok(self) -> None:
        self.in_a_row = 0


def _optimize_local(optuna: ModuleType, study: Study, cfg_dict: dict[str, Any], index: int, out: Path, wanted: int,
                    notify: Callable[[str], None]) -> None:
    tune = TuneConfig.model_validate(cfg_dict["tune"])
    failed = _Failures()
    while _count(optuna, study) < wanted:
        trial = study.ask()
        params = _sample(trial, tune)

        def report(step: int, value: float, trial: Trial = trial) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}")

        try:
            values = evaluate_trial(cfg_dict, index, params, _folder(out, trial.number),
                                    report if len(study.directions) == 1 else None)
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            _log(notify, trial, "pruned", wanted, _count(optuna, study))
            continue
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - a failed trial is recorded; many in a row stop the tune
            failed(optuna, study, trial, exc, notify)
            continue
        failed.ok()
        study.tell(trial, values)
        _log(notify, trial, f"{values}", wanted, _count(optuna, study))


def _optimize_ray(optuna: ModuleType, study: Study, cfg_dict: dict[str, Any], index: int, out: Path, wanted: int,
                  workers: int | None, address: str | None, notify: Callable[[str], None]) -> None:
    from recgym.experiments.ray_backend import ray_session

    with ray_session(workers, address) as ray:
        _ray_trials(ray, optuna, study, cfg_dict, index, out, wanted, notify)


def _ray_trials(ray: ModuleType, optuna: ModuleType, study: Study, cfg_dict: dict[str, Any], index: int, out: Path, wanted: int,
                notify: Callable[[str], None]) -> None:
    from recgym.experiments.ray_backend import MAX_RETRIES

    tune = TuneConfig.model_validate(cfg_dict["tune"])
    task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_trial_task)
    parallel = max(1, int(ray.cluster_resources().get("CPU", 1)))
    failed = _Failures()
    running: dict[Any, Any] = {}
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    while _count(optuna, study) < wanted or running:
        while len(running) < parallel and _count(optuna, study) + len(running) < wanted:
            trial = study.ask()
            params = _sample(trial, tune)
            ref = task.remote(cfg_dict, index, params, _folder(out, trial.number), storage, study.study_name,
                              trial._trial_id)
            running[ref] = trial
        ready, _ = ray.wait(list(running), num_returns=1)
        trial = running.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 - recorded like a local failure
            failed(optuna, study, trial, exc, notify)
            continue
        failed.ok()
        if result.get("pruned"):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            _log(notify, trial, "pruned", wanted, _count(optuna, study))
        else:
            study.tell(trial, result["values"])
            _log(notify, trial, f"{result['values']}", wanted, _count(optuna, study))


# --------------------------------------------------------------------------------------------- outputs
def write_tune_outputs(optuna: ModuleType, study: Study, cfg: ExperimentConfig, index: int, out: Path) -> dict[str, Any]:
    """``best.json``, ``best_config.yaml``, plots and ``tune.md`` from the study."""
    tune = cfg.tune
    assert tune is not None
    s = optuna.trial.TrialState
    complete = study.get_trials(deepcopy=False, states=(s.COMPLETE,))
    if not complete:
        raise TuneError(f"no trial completed (all pruned or failed); see {out / 'trials'}")
    multi = len(tune.objectives) > 1
    best = study.best_trials if multi else [study.best_trial]
    defaults = complete[0] if complete[0].number == 0 else None
    summary = {"agent": cfg.agents[index].key, "objectives": tune.objectives,
               "directions": tune.directions_resolved, "trials": len(study.trials),
               "complete": len(complete), "pruned": len(study.get_trials(deepcopy=False, states=(s.PRUNED,))),
               "best": [{"number": t.number, "params": t.params, "values": t.values} for t in best],
               "defaults": None if defaults is None else {"params": defaults.params, "values": defaults.values}}
    atomic_write_json(out / "best.json", summary)
    final, peer = best_run_config(cfg, index, best[0].params)
    summary["best_config_compares"] = peer
    head = (f"# recgym tune: trial {best[0].number} of {out} - re-run with the full seed protocol:\n"
            f"#   recgym run {out / 'best_config.yaml'}\n")
    if peer:
        head += f"# '{peer[1]}' (tuned) runs next to '{peer[0]}' (as configured) on the same users and seeds.\n"
    atomic_write_text(out / "best_config.yaml", head + yaml.safe_dump(final, sort_keys=False))
    plots = tune_plots(optuna, study, out, tune)
    atomic_write_text(out / "tune.md", tune_markdown(summary, plots, out))
    return summary


def best_run_config(cfg: ExperimentConfig, index: int, params: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    """The original config with the tuned agent's best ``params``, for the full seed protocol; returns
    ``(config dict, [configured label, tuned label] or None)``.

    Hyper-parameters only: the tuned agent runs as ``<label>_tuned`` next to the agent as configured, so one
    run answers "does it beat the configured hyper-parameters, beyond the CI?" on the same users and seeds.
    With reward weights the env's reward changes for every agent, so the configured agent is not a fair peer
    under it: the tuned agent replaces it (``None``)."""
    run_cfg = trial_config(cfg, index, params).to_dict()
    final = cfg.to_dict()
    final.pop("tune", None)
    final["name"] = f"{cfg.name}-tuned"
    tuned = run_cfg["agents"][0]
    if any(k.startswith("reward.") for k in params):
        final["agents"][index] = tuned
        final["env"] = run_cfg["env"]
        return final, None
    taken = {a.key for a in cfg.agents}
    label = next(f"{cfg.agents[index].key}_tuned{n or ''}" for n in range(len(taken) + 1)
                 if f"{cfg.agents[index].key}_tuned{n or ''}" not in taken)
    final["agents"].insert(index + 1, {**tuned, "label": label})
    return final, [cfg.agents[index].key, label]
