"""The ``recgym`` command line (also ``python -m recgym``). Heavy imports happen inside each command."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    help="recgym: a reinforcement-learning recommendation simulator with language-model users and items.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks: print figures (--json: one JSON object on the last line).", no_args_is_help=True)
data_app = typer.Typer(help="Real datasets: download MovieLens for use as RECGYM_DATA.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")

EncoderOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional on 3.10
    typer.Option("--encoder", help="'hashing', or a local HF model directory (default: bundled MiniLM)."),
]


def _encoder(spec: str | None):  # noqa: ANN202 - returns a TextEncoder
    from recgym.encoders import HashingEncoder, TransformerEncoder

    if spec == "hashing":
        return HashingEncoder()
    return TransformerEncoder(spec)


def _fail(exc: BaseException) -> None:
    """Print ``error: <message>`` as one line on stderr and exit with status 2 (no traceback)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    typer.secho(f"error: {text}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


@app.command()
def encode(
    world: Annotated[str, typer.Option(help="a named world whose texts to encode: synthetic")] = "synthetic",
    texts: Annotated[Optional[Path], typer.Option(help="a UTF-8 file, one text per line (instead of a world)")] = None,  # noqa: UP045
    encoder: EncoderOpt = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="cache folder (default $RECGYM_CACHE or ~/.cache/recgym)")] = None,  # noqa: UP045
    batch_size: Annotated[int, typer.Option(min=1, help="encoder batch size")] = 64,
) -> None:
    """Encode texts (a file, or a world's item and profile texts) into the verified embedding cache."""
    from recgym.common.errors import DiskFullError
    from recgym.encoders import encode_with_cache

    try:
        if texts is not None:
            if not texts.is_file():
                raise FileNotFoundError(f"--texts: expected a file, {texts} does not exist")
            lines = [ln for ln in texts.read_text(encoding="utf-8").splitlines() if ln.strip()]
            jobs = {texts.stem: lines}
        elif world == "synthetic":
            from recgym.envs.worlds.synthetic import make_synthetic_texts

            items, users = make_synthetic_texts()
            jobs = {"synthetic-items": [i.text for i in items], "synthetic-profiles": [u.text for u in users]}
        else:
            raise ValueError(f"--world: expected 'synthetic' (real-data worlds encode when built), received {world!r}")
        enc = _encoder(encoder)
        if hasattr(enc, "batch_size"):
            enc.batch_size = batch_size
        for name, job in jobs.items():
            t0 = time.perf_counter()
            res = encode_with_cache(enc, job, cache_dir, name=name, progress=True)
            dt = time.perf_counter() - t0
            state = "cache hit" if res.hit else "encoded"
            typer.echo(
                f"{name}: {len(job)} texts, dim {res.vectors.shape[1]}, {dt:.1f} s ({state}), "
                f"truncated {res.truncated}, cache {res.path}"
            )
    except (ValueError, FileNotFoundError, TypeError, DiskFullError) as exc:
        _fail(exc)


@bench_app.command("env")
def bench_env(
    num_envs: Annotated[list[int], typer.Option("--num-envs", help="batch sizes B (repeatable)")] = [1, 64, 1024, 8192],  # noqa: B006
    candidates: Annotated[int, typer.Option(min=2, help="candidates N")] = 100,
    slate_size: Annotated[int, typer.Option(min=1, help="slate size K")] = 10,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "cpu",
    threads: Annotated[Optional[int], typer.Option(help="torch intra-op threads (default: torch's)")] = None,  # noqa: UP045
    world: Annotated[str, typer.Option(help="world name")] = "synthetic",
    repeats: Annotated[int, typer.Option(min=1, help="timed windows per figure; the median is reported")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per B; the last line is the last B")] = False,
) -> None:
    """User-steps/s of the batched simulator (candidate generation, choice, dynamics, observation)."""
    from recgym.experiments.bench_env import run_env_benchmark

    for b in num_envs:
        r = run_env_benchmark(b, candidates, slate_size, device, world=world, threads=threads, repeats=repeats)
        if as_json:
            typer.echo(json.dumps(r))
        else:
            typer.echo(
                f"B={b:6d} N={candidates} K={slate_size} d={r['dim']} {r['device']} threads={r['threads']}: "
                f"core {r['core_user_steps_per_s']:>12,.0f} user-steps/s   vector env {r['vector_user_steps_per_s']:>12,.0f} "
                f"(same_step autoreset {r['vector_same_step_user_steps_per_s']:>10,.0f})"
            )


@bench_app.command("encode")
def bench_encode(
    n_items: Annotated[int, typer.Option(min=1, help="item texts of the default world")] = 2000,
    batch_sizes: Annotated[list[int], typer.Option("--batch-size", help="MiniLM batch sizes (repeatable)")] = [64, 256],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Encoding throughput (MiniLM, hashing) and warm-cache load time."""
    from recgym.experiments.bench_encode import default_world_texts, run_encode_benchmark

    texts, source = default_world_texts(n_items)
    res = {"texts_source": source, **run_encode_benchmark(texts, batch_sizes=batch_sizes)}
    if not as_json:
        for bs, tps in res["minilm_texts_per_s"].items():
            typer.echo(f"MiniLM batch {bs}: {tps:,.0f} texts/s")
        typer.echo(f"HashingEncoder: {res['hashing_texts_per_s']:,.0f} texts/s")
        typer.echo(f"warm cache 10k x 384 load: {res['warm_cache']['load_cache_s'] * 1000:.0f} ms")
    typer.echo(json.dumps(res, sort_keys=True))


@bench_app.command("train")
def bench_train(
    agent: Annotated[str, typer.Option(help="ppo or dqn")] = "ppo",
    total_steps: Annotated[int, typer.Option(min=1, help="timed env steps (after one untimed warm-up update)")] = 100_000,
    num_envs: Annotated[int, typer.Option(min=1, help="simulated users stepped together")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="torch intra-op threads (default: torch's)")] = None,  # noqa: UP045
    world: Annotated[str, typer.Option(help="world name")] = "synthetic",
    seed: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="the last line is one JSON object")] = False,
) -> None:
    """RL training throughput: env-steps/s including policy updates."""
    from recgym.experiments.bench_train import run_train_benchmark

    try:
        r = run_train_benchmark(agent, total_steps, num_envs, device, seed, world, threads)
    except ValueError as exc:
        _fail(exc)
    if not as_json:
        typer.echo(f"{agent} on {r['world']}: {r['env_steps_per_s']:,.0f} env-steps/s "
                   f"({r['env_steps']} steps, {r['num_envs']} envs, {r['device']}, {r['torch_threads']} threads)")
    typer.echo(json.dumps(r, default=str))


@data_app.command("download")
def data_download(
    name: Annotated[str, typer.Argument(help="ml-100k or ml-latest-small")],
    dest: Annotated[Path, typer.Option(help="folder to hold the dataset (then export RECGYM_DATA=DEST)")] = Path("data"),
) -> None:
    """Download a MovieLens archive from GroupLens and verify every file's sha256."""
    from recgym.envs.datasets import download_dataset

    try:
        path = download_dataset(name, dest)
    except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
        _fail(exc)
    typer.echo(f"{name}: ready in {path}; export RECGYM_DATA={Path(dest).resolve()}")


@app.command()
def fidelity(
    world: Annotated[str, typer.Option(help="movielens-100k, ml-latest-small or log")],
    out: Annotated[Path, typer.Option(help="output folder for fidelity.md, fidelity.json and PNGs")],
    data_dir: Annotated[Optional[str], typer.Option(help="data folder (default $RECGYM_DATA)")] = None,  # noqa: UP045
    encoder: EncoderOpt = None,
) -> None:
    """Fidelity report card of a real-data world: would it rank your policies as your data does (a panel of
    recommenders, real vs simulated), replay error, held-out ranking, calibration, distributions. The last
    line is the JSON of the bars."""
    from recgym.common.errors import DiskFullError
    from recgym.experiments.fidelity import cached_fidelity_report

    try:
        report, hit = cached_fidelity_report(world, data_dir, out, encoder=_encoder(encoder) if encoder else None,
                                             progress=True)
    except (ValueError, FileNotFoundError, DiskFullError) as exc:
        _fail(exc)
    typer.echo(f"fidelity report for {world}{' (cached)' if hit else ''}: {Path(out) / 'fidelity.md'}")
    typer.echo(report["verdict"])
    typer.echo(json.dumps(report["bar"], default=str))


@app.command()
def run(
    config: Annotated[str, typer.Argument(help="experiment YAML (a path, or the name of a shipped config)")],
    out: Annotated[Optional[Path], typer.Option(help="run folder (default: output.dir or runs/<name>)")] = None,  # noqa: UP045
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in the folder (same config)")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="delete the run in the folder and start again")] = False,
    set_: Annotated[list[str], typer.Option("--set", help="override a config key: a.b=value (YAML value; repeatable)")] = [],  # noqa: B006
) -> None:
    """Run an experiment: train / fit the agents, evaluate them on the same held-out users and seeds, and
    write metrics, plots and report.md into the run folder."""
    import shlex

    from recgym.common.config import ConfigError
    from recgym.common.errors import CorruptFileError, DiskFullError, UnsafePathError, is_disk_full
    from recgym.experiments.config import load_config

    try:
        cfg = load_config(config, set_)
    except ConfigError as exc:
        _fail(exc)
    from recgym.experiments.runner import RunError, run_experiment
    from recgym.experiments.training import CheckpointMismatchError, NaNLossError

    folder = out or (Path(cfg.output.dir).expanduser() if cfg.output.dir else Path("runs") / cfg.name)
    resume_cmd = shlex.join(["recgym", "run", config, "--out", str(folder), "--resume",
                             *[x for item in set_ for x in ("--set", item)]])
    try:
        run_experiment(cfg, folder, resume=resume, overwrite=overwrite)
    except (RunError, ConfigError, NaNLossError, FileNotFoundError, CorruptFileError, UnsafePathError,
            CheckpointMismatchError) as exc:
        _fail(exc)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        if not isinstance(exc, DiskFullError):
            exc = DiskFullError(exc.filename or folder, code=exc.errno)
        exc.advice = f"free space, then resume with: {resume_cmd}"
        _fail(exc)


@app.command()
def diagnose(
    config: Annotated[Optional[str], typer.Argument(help="experiment YAML whose world, env and evaluation protocol to use")] = None,  # noqa: UP045
    world: Annotated[Optional[str], typer.Option(help="world name (default: the config's, else synthetic)")] = None,  # noqa: UP045
    out: Annotated[Optional[Path], typer.Option(help="folder for planning_gain.json (e.g. a run folder; default runs/diagnose-<world>)")] = None,  # noqa: UP045
    seeds: Annotated[Optional[list[int]], typer.Option("--seed", help="evaluation seeds (repeatable; default: the config's, else 0..4)")] = None,  # noqa: UP045
    users: Annotated[Optional[int], typer.Option(min=1, help="users per seed (default: the config's, else 64)")] = None,  # noqa: UP045
    horizon: Annotated[Optional[int], typer.Option(min=1, help="lookahead horizon H (slates simulated per candidate; default: to the episode's end, env max_steps)")] = None,  # noqa: UP045
    rollouts: Annotated[int, typer.Option(min=1, help="lookahead futures F per user")] = 2,
    horizons: Annotated[list[int], typer.Option("--sweep-horizon", help="horizons of the sweep (repeatable)")] = [1, 5],  # noqa: B006
    gammas: Annotated[list[float], typer.Option("--sweep-gamma", help="discounts of the sweep (repeatable)")] = [0.9],  # noqa: B006
    sweep_seeds: Annotated[int, typer.Option(min=0, help="seeds the sweep runs on (0: no sweep)")] = 2,
    set_: Annotated[list[str], typer.Option("--set", help="override a config key: a.b=value (repeatable)")] = [],  # noqa: B006
    data_dir: Annotated[Optional[str], typer.Option(help="real-data folder (default $RECGYM_DATA)")] = None,  # noqa: UP045
    threads: Annotated[int, typer.Option(min=1, help="torch intra-op threads")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="the last line is one JSON object")] = False,
) -> None:
    """Does planning pay in this world? Random, the myopic oracle, a quality-aware heuristic and the lookahead
    oracle on the same users and seeds; writes planning_gain.json (lookahead / myopic - 1 with its CI)."""
    import torch

    from recgym.common.config import ConfigError
    from recgym.experiments.config import load_config

    torch.set_num_threads(threads)
    try:
        raw = {"name": "diagnose", "agents": [{"name": "oracle"}], "world": world or "synthetic"}
        cfg = load_config(config, set_) if config else load_config(raw=raw, overrides=set_)
        if world is not None and world != cfg.world:
            cfg = load_config(raw={**cfg.to_dict(), "world": world})
        if data_dir is not None:
            cfg = load_config(raw={**cfg.to_dict(), "data_dir": data_dir})
    except ConfigError as exc:
        _fail(exc)
    from recgym.envs import make_world
    from recgym.experiments.diagnose import (
        PLANNING_GAIN_FILE,
        DiagnoseSettings,
        run_diagnose,
        write_planning_gain,
    )

    try:
        w = make_world(cfg.world, world_config=cfg.world_config, data_dir=cfg.data_dir, encoder=cfg.encoder,
                       progress=not as_json)
        env_cfg = cfg.env
        if config is None and cfg.world == "analytic":
            from recgym.envs.worlds.analytic import analytic_config

            env_cfg = analytic_config(w, action_type="slate")
        ev = cfg.evaluation
        settings = DiagnoseSettings(
            seeds=list(seeds) if seeds else (list(ev.seeds) if config else [0, 1, 2, 3, 4]),
            users_per_seed=users or (ev.users_per_seed if config else 64), cohort=ev.cohort,
            confidence=ev.confidence, lookahead={"rollouts": rollouts, **({"horizon": horizon} if horizon else {})},
            horizons=list(horizons), gammas=list(gammas), sweep_seeds=sweep_seeds, device=cfg.device,
        )
        if cfg.world == "analytic" and settings.cohort == "test" and not w.population.test.any():
            settings.cohort = "all"
        result = run_diagnose(w, env_cfg, settings, notify=None if as_json else typer.echo)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    folder = out or Path("runs") / f"diagnose-{cfg.world}"
    folder.mkdir(parents=True, exist_ok=True)
    path = write_planning_gain(folder / PLANNING_GAIN_FILE, result)
    r = result["returns"]
    if not as_json:
        for name in ("random", "oracle", "quality", "lookahead"):
            typer.echo(f"{name:>10}: return {r[name]['mean']:.3f} [{r[name]['low']:.3f}, {r[name]['high']:.3f}]")
        for row in result["sweep"]:
            typer.echo(f"  lookahead H={row['horizon']:<3} gamma={row['gamma']:<5g}: return {row['mean']:.3f}")
        typer.echo(f"planning gain {result['planning_gain']:+.1%} (95% CI [{result['low']:+.1%}, {result['high']:+.1%}])"
                   f" -> {path}")
    summary = {"planning_gain": result["planning_gain"], "planning_gain_ci": result["planning_gain_ci"],
               "returns": {k: v["mean"] for k, v in r.items()}, "world": result["world"], "file": str(path)}
    typer.echo(json.dumps(summary, default=lambda x: None))


def main() -> None:
    """Console entry point."""
    app(prog_name="recgym")


if __name__ == "__main__":
    sys.exit(main())
