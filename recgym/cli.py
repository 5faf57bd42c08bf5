"""The ``recgym`` command line (also ``python -m recgym``). Heavy imports happen inside each command."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from recgym.common.progress import Progress

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
    from recgym.envs.factory import make_encoder

    return make_encoder(spec)


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
    steps: Annotated[Optional[int], typer.Option(min=1, help="env steps per window (default: 1M / B, within "  # noqa: UP045
                                                  "100..2,000)")] = None,
    contention: Annotated[bool, typer.Option("--contention", help="measure again beside one CPU-bound process "
                                             "and report the slowdown factor")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per B; the last line is the last B")] = False,
) -> None:
    """User-steps/s of the batched simulator (candidate generation, choice, dynamics, observation)."""
    from recgym.benchmarks.env import describe, run_env_benchmark, run_env_contention

    for b in num_envs:
        kw = dict(candidates=candidates, slate_size=slate_size, device=device, world=world, threads=threads,
                  repeats=repeats, steps=steps, progress=Progress())
        if contention:
            r = run_env_contention(b, **kw)
            if not as_json:
                typer.echo(f"quiet:     {describe(r['quiet'])}\ncontended: {describe(r['contended'])}\n"
                           f"slowdown beside one CPU-bound process: {r['slowdown']}")
        else:
            r = run_env_benchmark(b, **kw)
            if not as_json:
                typer.echo(describe(r))
        if as_json:
            typer.echo(json.dumps(r))


@bench_app.command("encode")
def bench_encode(
    n_items: Annotated[int, typer.Option(min=1, help="item texts of the default world")] = 2000,
    batch_sizes: Annotated[list[int], typer.Option("--batch-size", min=1, help="MiniLM batch sizes (repeatable)")] = [64],  # noqa: B006
    precisions: Annotated[Optional[list[str]], typer.Option("--precision", help="fp32 / bf16 (repeatable); default: fp32, and bf16 where the CPU has native bf16")] = None,  # noqa: UP045
    repeats: Annotated[int, typer.Option(min=1, help="timed windows (full passes) per figure; the median is reported")] = 5,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch intra-op threads (default: the encoder's load-aware choice)")] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Encoding throughput per precision (MiniLM), bf16-vs-fp32 agreement, hashing, warm-cache load time."""
    from recgym.benchmarks.encode import default_world_texts, run_encode_benchmark, summary_lines

    for p in precisions or []:
        if p not in ("fp32", "bf16"):
            _fail(ValueError(f"--precision: expected 'fp32' or 'bf16', received {p!r}"))
    texts, source = default_world_texts(n_items)
    res = {"texts_source": source, "date": time.strftime("%Y-%m-%d"),
           **run_encode_benchmark(texts, batch_sizes, precisions, repeats, threads)}
    if not as_json:
        for line in summary_lines(res):
            typer.echo(line)
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
    contention: Annotated[bool, typer.Option("--contention", help="measure again beside one CPU-bound process "
                                             "and report the slowdown factor")] = False,
    trainer: Annotated[str, typer.Option(help="PPO trainer: sb3 or fast (on-device)")] = "sb3",
    seeds: Annotated[int, typer.Option(min=1, help="fast trainer: seeds trained as one batched job")] = 1,
    compile_: Annotated[bool, typer.Option("--compile", help="fast trainer: torch.compile (in the warm-up)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the last line is one JSON object")] = False,
) -> None:
    """RL training throughput: env-steps/s including policy updates."""
    from recgym.benchmarks.contention import contention_report
    from recgym.benchmarks.train import run_train_benchmark

    def once() -> dict:
        return run_train_benchmark(agent, total_steps, num_envs, device, seed, world, threads, progress=Progress(),
                                   trainer=trainer, seeds=seeds, **({"compile": True} if compile_ else {}))

    try:
        r = contention_report(once, ["env_steps_per_s"]) if contention else once()
    except ValueError as exc:
        _fail(exc)
    if not as_json:
        for label, x in ((("quiet", r["quiet"]), ("contended", r["contended"])) if contention else (("", r),)):
            typer.echo(f"{label + ': ' if label else ''}{agent} on {x['world']}: {x['env_steps_per_s']:,.0f} env-steps/s "
                       f"({x['env_steps']} steps, {x['num_envs']} envs x {x['seeds']} seeds, {x['device']}, "
                       f"{x['torch_threads']} threads, trainer {x['trainer']})")
        if contention:
            typer.echo(f"slowdown beside one CPU-bound process: {r['slowdown']}")
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
    backend: Annotated[str, typer.Option(help="sequential (this process) or ray (each cell a Ray task; needs the ray extra)")] = "sequential",
    workers: Annotated[Optional[int], typer.Option(min=1, help="ray: CPUs of the local Ray cluster (default: all)")] = None,  # noqa: UP045
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="ray: join this cluster (HOST:PORT) instead of starting one")] = None,  # noqa: UP045
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
        run_experiment(cfg, folder, resume=resume, overwrite=overwrite, backend=backend, workers=workers,
                       ray_address=ray_address)
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
def tune(
    config: Annotated[str, typer.Argument(help="experiment YAML with a 'tune:' section (the search space)")],
    agent: Annotated[Optional[str], typer.Option(help="label of the agent to tune (default: tune.agent)")] = None,  # noqa: UP045
    trials: Annotated[Optional[int], typer.Option(min=1, help="finished trials wanted (default: tune.trials)")] = None,  # noqa: UP045
    out: Annotated[Optional[Path], typer.Option(help="tune folder (default: runs/<name>-tune-<agent>)")] = None,  # noqa: UP045
    backend: Annotated[str, typer.Option(help="local (trials one after the other) or ray (trials in parallel)")] = "local",
    workers: Annotated[Optional[int], typer.Option(min=1, help="ray: CPUs of the local Ray cluster")] = None,  # noqa: UP045
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="ray: join this cluster")] = None,  # noqa: UP045
    overwrite: Annotated[bool, typer.Option("--overwrite", help="start the tune in the folder again")] = False,
    set_: Annotated[list[str], typer.Option("--set", help="override a config key: a.b=value (repeatable)")] = [],  # noqa: B006
) -> None:
    """Search hyper-parameters (and reward weights) with Optuna: TPE + median pruning, or NSGA-II for several
    objectives; the study (SQLite) resumes after a kill. Writes best.json, best_config.yaml, plots, tune.md."""
    from recgym.common.config import ConfigError
    from recgym.experiments.config import load_config
    from recgym.experiments.ray_backend import RayUnavailableError
    from recgym.experiments.runner import RunError
    from recgym.experiments.tune import TuneError, run_tune

    try:
        cfg = load_config(config, set_)
        label = agent or (cfg.tune.agent if cfg.tune else None) or "agent"
        folder = out or Path("runs") / f"{cfg.name}-tune-{label}"
        summary = run_tune(cfg, folder, agent=agent, trials=trials, backend=backend, workers=workers,
                           ray_address=ray_address, overwrite=overwrite, notify=lambda m: typer.echo(m, err=True))
    except (ConfigError, TuneError, RunError, RayUnavailableError) as exc:
        _fail(exc)
    typer.echo(f"tune: {folder / 'tune.md'}; re-run the best with: recgym run {folder / 'best_config.yaml'}")
    typer.echo(json.dumps(summary["best"], default=str))


@app.command()
def enrich(
    world: Annotated[str, typer.Option(help="world whose texts to enrich (synthetic, movielens-100k, ...)")] = "synthetic",
    which: Annotated[str, typer.Option(help="items, users or both")] = "items",
    model: Annotated[Optional[str], typer.Option(help="local causal-LM directory or .gguf (default: SmolLM2-135M)")] = None,  # noqa: UP045
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 24,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16")] = "auto",
    limit: Annotated[Optional[int], typer.Option(min=1, help="only the first N texts (timing runs)")] = None,  # noqa: UP045
    data_dir: Annotated[Optional[str], typer.Option(help="data folder of real-data worlds")] = None,  # noqa: UP045
    cache_dir: Annotated[Optional[Path], typer.Option(help="cache folder (default $RECGYM_CACHE)")] = None,  # noqa: UP045
    show: Annotated[int, typer.Option(min=0, help="print this many example generations")] = 3,
    threads: Annotated[Optional[int], typer.Option(help="torch threads (default 1: safe on a busy machine; "  # noqa: UP045
                                                   "2 is faster on an idle 2-core one)")] = 1,
    decode_threads: Annotated[int, typer.Option(min=1, help="torch threads of the token-by-token decoding (1: "
                                                "tiny ops; a second thread mostly waits on a shared box)")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="the last line is one JSON object per kind")] = False,
) -> None:
    """Generate LM enrichments (item keywords, user interest summaries) into the verified cache; prints
    texts, tokens generated, seconds and throughput."""
    import os as _os

    from recgym.encoders.enrich import ITEM_PROMPT, USER_PROMPT, CausalLMEnricher, enrich_with_cache
    from recgym.envs import make_world
    from recgym.experiments.enrichment import user_prompt_texts

    try:
        if which not in ("items", "users", "both"):
            raise ValueError(f"--which: expected items, users or both, received {which!r}")
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        enricher = CausalLMEnricher(model, max_new_tokens=max_new_tokens, batch_size=batch_size, dtype=dtype,
                                    decode_threads=decode_threads)
        w = make_world(world, data_dir=data_dir)
        jobs = {}
        if which in ("items", "both"):
            jobs["items"] = (list(w.catalog.texts), ITEM_PROMPT)
        if which in ("users", "both"):
            jobs["users"] = (user_prompt_texts(w), USER_PROMPT)
        for kind, (texts, template) in jobs.items():
            texts = texts[:limit] if limit else texts
            name = f"{w.name}-{kind}" + (f"-first{limit}" if limit else "")
            res = enrich_with_cache(enricher, texts, template, cache_dir, name=name, progress=True)
            m = res.manifest
            secs = float(m["seconds"])
            fig = {"kind": kind, "texts": m["n"], "tokens": m["tokens"], "seconds": secs, "cache_hit": res.hit,
                   "texts_per_s": round(m["n"] / max(secs, 1e-9), 3), "tokens_per_s": round(m["tokens"] / max(secs, 1e-9), 2),
                   "model": m["model"], "dtype": m["dtype"], "batch_size": m["batch_size"],
                   "max_new_tokens": m["max_new_tokens"], "load_avg_1min": round(_os.getloadavg()[0], 2),
                   "threads": threads, "decode_threads": decode_threads,
                   "cache": str(res.path)}
            if not res.hit and enricher.last_stats is not None:  # the work done: prompt and decoded row-tokens
                st = enricher.last_stats
                fig.update(prefill_tokens=st.prefill_tokens, decode_passes=st.steps, row_tokens_decoded=st.row_steps)
            if not as_json:
                typer.echo(f"{kind}: {fig['texts']} texts, {fig['tokens']} tokens in {secs:.1f} s "
                           f"({fig['texts_per_s']:.2f} texts/s, {fig['tokens_per_s']:.1f} tokens/s; "
                           f"{'cache hit, built' if res.hit else 'generated'}; {fig['model']} {fig['dtype']}, "
                           f"load avg {fig['load_avg_1min']}), cache {res.path}")
                for t, g in list(zip(texts, res.texts, strict=True))[:show]:
                    typer.echo(f"  {t[:90]}{'...' if len(t) > 90 else ''}\n    -> {g}")
            if as_json:
                typer.echo(json.dumps(fig))
    except (ValueError, FileNotFoundError, ImportError) as exc:
        _fail(exc)


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="baseline run folder (e.g. without enrichment)")],
    run_b: Annotated[Path, typer.Argument(help="treatment run folder (same agents and seeds)")],
    metric: Annotated[list[str], typer.Option("--metric", help="segment:metric, repeatable (default: cold users, "
                                              "new and tail items, all)")] = [],  # noqa: B006
    label_a: Annotated[str, typer.Option(help="name of run A in the table")] = "A",
    label_b: Annotated[str, typer.Option(help="name of run B in the table")] = "B",
    as_json: Annotated[bool, typer.Option("--json", help="the last line is a JSON list of rows")] = False,
) -> None:
    """Ablation table of two runs, paired by seed: B - A per agent and metric with a confidence interval;
    '*' marks differences whose interval excludes 0."""
    from recgym.experiments.ablation import DEFAULT_METRICS, compare_runs, comparison_markdown

    try:
        pairs = DEFAULT_METRICS
        if metric:
            bad = [m for m in metric if m.count(":") != 1]
            if bad:
                raise ValueError(f"--metric: expected segment:metric (e.g. cold_users:ctr), received {bad[0]!r}")
            pairs = tuple(tuple(m.split(":")) for m in metric)  # type: ignore[assignment]
        rows = compare_runs(run_a, run_b, pairs)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    typer.echo(comparison_markdown(rows, label_a, label_b))
    if as_json:
        typer.echo(json.dumps(rows))


@app.command()
def explain(
    run_dir: Annotated[Path, typer.Argument(help="a finished run folder (recgym run --out)")],
    user: Annotated[int, typer.Option("--user", min=0, help="population index of the user to explain")],
    agent: Annotated[Optional[str], typer.Option(help="agent label (default: every explainable agent)")] = None,  # noqa: UP045
    seed: Annotated[Optional[int], typer.Option(help="evaluation seed (default: the run's first)")] = None,  # noqa: UP045
    steps: Annotated[int, typer.Option(min=1, help="slates to play and explain")] = 3,
    top: Annotated[int, typer.Option(min=1, help="pieces of evidence per item")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON array per agent")] = False,
) -> None:
    """Explain the slates an agent of a run recommends to one user: per item, the history items and
    profile aspects that contributed most to its score."""
    from recgym.agents.explain import SCORER_ACCESSORS
    from recgym.envs import RankingVectorEnv
    from recgym.experiments.explain import (
        explain_user,
        explanations_json,
        format_steps,
        load_run,
        load_run_agent,
    )

    try:
        cfg, world, chash = load_run(run_dir)
        s = cfg.evaluation.seeds[0] if seed is None else seed
        labels = [agent] if agent else [a.key for a in cfg.agents
                                         if a.name == "lm_similarity" or a.name in SCORER_ACCESSORS]
        if not labels:
            raise ValueError(f"{run_dir}: no agent with an attribution method (lm_similarity, "
                             f"{', '.join(SCORER_ACCESSORS)})")
        env = RankingVectorEnv(1, world=world, config=cfg.eval_env(), device=cfg.device)
        for label in labels:
            a = load_run_agent(cfg, world, chash, run_dir, label, s, env)
            out, note = explain_user(a, world, cfg, user, steps=steps, seed=s, top=top)
            if as_json:
                typer.echo(explanations_json(out))
            else:
                kind = "cold" if world.population.cold[user] else "warm"
                typer.echo(f"== {label} (seed {s}), user {user} ({kind}; {note})")
                typer.echo(format_steps(out, world, top=top))
    except (ValueError, FileNotFoundError, NotImplementedError) as exc:
        _fail(exc)


def shared_machine_defaults() -> None:
    """Before torch loads: OpenMP worker threads sleep when they wait instead of spinning
    (``OMP_WAIT_POLICY=PASSIVE``), unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``. On a shared
    machine a spinning worker fights other processes (and our own main thread) for a core: with the default
    policy a 2-thread step ran up to ~10x slower beside other jobs (benchmarks/RESULTS.md)."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


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
        # With --json the progress goes to stderr: stdout's last line stays the JSON object.
        result = run_diagnose(w, env_cfg, settings, notify=lambda msg: typer.echo(msg, err=as_json))
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
    shared_machine_defaults()
    app(prog_name="recgym")


if __name__ == "__main__":
    sys.exit(main())
