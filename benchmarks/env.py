"""Env throughput benchmark: user-steps per second of the batched simulator.

One user-step = one slate shown to one user, including candidate generation, the choice model, the
dynamics and the observation. Levels: ``core`` (torch tensors in and out, what a device-resident agent
uses: slates from scores, ``RankingCore.step``, new episodes for the finished rows, the observation),
``vector`` (the Gymnasium VectorEnv: numpy in/out, strict action validation, info arrays, autoreset) in both
autoreset modes — ``next_step`` (the default; ``vector_user_steps_per_s``) and ``same_step``
(``vector_same_step_user_steps_per_s``: it also copies the final observations of the users whose episodes
end) — and, for ``num_envs == 1``, ``single`` (``RankingEnv``, what ``gym.make`` gives, default settings).
Actions are random scores generated before timing. Timing starts after ``warmup`` steps (default 60, more
than one episode), so the users' episodes have desynchronised and the figure is the steady state, new
episodes included. The timed steps run as ``repeats`` (default 5) consecutive windows and the figure is
the median window: on a shared 2-core VM, interference from other tenants moves single windows by ±20 %;
every window is kept in ``*_runs``, with the load average before and after.

    python -m recgym.benchmarks.env --num-envs 8192 --json
    recgym bench env --num-envs 8192 --json
    recgym bench env --num-envs 8192 --contention     # beside one CPU-bound process: the slowdown
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from recgym.benchmarks.contention import contention_report, load_average, thread_settings
from recgym.common.progress import Progress

__all__ = ["run_env_benchmark", "run_env_contention", "THROUGHPUT_KEYS"]

THROUGHPUT_KEYS = ["core_user_steps_per_s", "vector_user_steps_per_s", "vector_same_step_user_steps_per_s",
                   "single_env_steps_per_s"]


def core_stepper(core, state, scores: list[torch.Tensor]) -> Callable[[int], None]:  # noqa: ANN001 - RankingCore, SimState
    """``step(i)``: one step of ``core`` on ``state`` (in place) with the pre-generated ``scores[i % len]``
    ``(B, N)``, new episodes for the finished rows, and the observation - what a device-resident agent does."""
    from recgym.envs.spaces import actions_to_slate

    def step(i: int) -> None:
        slate = actions_to_slate(scores[i % len(scores)], state.mask, core.config, batched=True, strict=False)
        _, term, trunc, _ = core.step(state, slate)
        rows = (term | trunc).nonzero().flatten()
        if len(rows):
            core.reset_rows(state, rows)
        core.observe(state, copy=False)

    return step


def single_stepper(env, actions: list[np.ndarray]) -> Callable[[int], None]:  # noqa: ANN001 - a Gymnasium env
    """``step(i)``: one ``env.step(actions[i % len])`` of a single-user env, resetting at episode ends."""

    def step(i: int) -> None:
        _, _, term, trunc, _ = env.step(actions[i % len(actions)])
        if term or trunc:
            env.reset()

    return step


def run_env_benchmark(
    num_envs: int = 1024,
    candidates: int = 100,
    slate_size: int = 10,
    device: str = "cpu",
    steps: int | None = None,
    world: str = "synthetic",
    threads: int | None = None,
    level: str = "all",
    seed: int = 0,
    warmup: int = 60,
    repeats: int = 5,
    progress: Progress | None = None,
) -> dict:
    """Time ``repeats`` windows of ``steps`` env steps of ``num_envs`` users, one after the other in the
    same run; return the median window's user-steps/s (and every window's, ``*_runs``) with the settings.
    ``level``: ``"core"``, ``"vector"``, ``"single"`` (``num_envs == 1`` only) or ``"all"``. ``progress``
    (default: silent) advances after each timed window, outside the timed span."""
    from recgym.common.device import resolve_device
    from recgym.envs import RankingEnv, RankingVectorEnv

    if threads is not None:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    steps = steps or max(100, min(2000, 1_000_000 // num_envs))

    def make_env(autoreset_mode: str) -> RankingVectorEnv:
        return RankingVectorEnv(num_envs, world, num_candidates=candidates, slate_size=slate_size, device=dev,
                                autoreset_mode=autoreset_mode)

    env = make_env("next_step")
    result: dict = {
        "num_envs": num_envs, "candidates": candidates, "slate_size": slate_size, "device": str(dev),
        "dim": env.core.world.catalog.dim, "items": env.core.world.catalog.num_items, "world": env.core.world.name,
        "steps": steps, "warmup": warmup, "repeats": repeats, "threads": torch.get_num_threads(),
        "thread_settings": thread_settings(), "load_average_before": load_average(),
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
    }
    gen = torch.Generator(device=dev).manual_seed(seed)
    n_actions = 8
    scores_t = [torch.rand(num_envs, candidates, generator=gen, device=dev) * 2 - 1 for _ in range(n_actions)]

    def timed(step_fn, n_steps: int) -> list[float]:
        """Warm up, then user-steps/s of each of ``repeats`` consecutive windows of ``n_steps`` steps."""
        for i in range(warmup):
            step_fn(i)
        rates = []
        for r in range(repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for i in range(n_steps):
                step_fn(warmup + r * n_steps + i)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            rates.append(num_envs * n_steps / (time.perf_counter() - t0))
            bar(1)
        return rates

    def record(key: str, rates: list[float]) -> None:
        result[key] = statistics.median(rates)
        result[key + "_runs"] = [round(x) for x in rates]

    progress = progress or Progress(enabled=False)
    kinds = {"core": 1, "vector": 2, "single": int(num_envs == 1)}
    windows = repeats * (sum(kinds.values()) if level == "all" else kinds[level])
    with progress, progress.task(f"bench env B={num_envs}", max(windows, 1), unit="timed windows") as bar:
        if level in ("all", "core"):
            core = env.core
            state = core.init_state(batch_size=num_envs, seed=seed)

            record("core_user_steps_per_s", timed(core_stepper(core, state, scores_t), steps))
        scores_np = [s.cpu().numpy() for s in scores_t]
        if level in ("all", "vector"):
            for mode, key in (("next_step", "vector_user_steps_per_s"), ("same_step", "vector_same_step_user_steps_per_s")):
                venv = env if mode == "next_step" else make_env(mode)
                venv.reset(seed=seed)
                record(key, timed(lambda i, venv=venv: venv.step(scores_np[i % n_actions]), max(50, steps // 2)))
        if level in ("all", "single") and num_envs == 1:
            single = RankingEnv(world, num_candidates=candidates, slate_size=slate_size, device=dev)
            single.reset(seed=seed)
            record("single_env_steps_per_s", timed(single_stepper(single, [np.ascontiguousarray(a[0]) for a in scores_np]),
                                                   steps))
    result["load_average_after"] = load_average()
    result["user_steps_per_s"] = result.get("core_user_steps_per_s", result.get("vector_user_steps_per_s"))
    return result


def run_env_contention(num_envs: int = 8192, helpers: int = 1, **kwargs) -> dict:
    """:func:`run_env_benchmark` on the machine as it is, then beside ``helpers`` CPU-bound processes; the
    result holds both and ``slowdown`` (quiet / contended) per figure."""
    return contention_report(lambda: run_env_benchmark(num_envs, **kwargs), THROUGHPUT_KEYS, helpers)


def describe(r: dict) -> str:
    """One line of figures of a :func:`run_env_benchmark` result (the CLI's text output)."""
    line = (f"B={r['num_envs']:6d} N={r['candidates']} K={r['slate_size']} d={r['dim']} {r['device']} "
            f"threads={r['threads']}: core {r.get('core_user_steps_per_s', 0):>12,.0f} user-steps/s   vector env "
            f"{r.get('vector_user_steps_per_s', 0):>12,.0f} (same_step autoreset "
            f"{r.get('vector_same_step_user_steps_per_s', 0):>10,.0f})")
    if "single_env_steps_per_s" in r:
        line += f"   single env (gym.make) {r['single_env_steps_per_s']:>8,.0f} steps/s"
    return line + f"   load {r['load_average_before']}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-envs", type=int, nargs="+", default=[1, 64, 1024, 8192])
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--slate-size", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--world", default="synthetic")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    for b in a.num_envs:
        r = run_env_benchmark(b, a.candidates, a.slate_size, a.device, world=a.world, threads=a.threads,
                              repeats=a.repeats)
        print(json.dumps(r) if a.json else describe(r))


if __name__ == "__main__":
    main()
