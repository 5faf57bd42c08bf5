"""recgym side by side with RecSim and SARDINE, interleaved window by window in one run; prints the ratios.

Run it with recgym's Python; each peer runs in its own venv (they pin old gym / numpy versions), found by
``--recsim-python`` / ``--sardine-python`` (defaults: ``$RECGYM_PEER_RECSIM`` / ``$RECGYM_PEER_SARDINE``, else
``/tmp/peer-recsim/bin/python`` / ``/tmp/peer-sardine/bin/python``). A peer whose Python is missing or cannot
import its package is skipped with a line saying why. Make the venvs once:

    python -m venv /tmp/peer-recsim  && /tmp/peer-recsim/bin/pip install recsim-no-tf six
    python -m venv /tmp/peer-sardine && /tmp/peer-sardine/bin/pip install sardine-rec
    python benchmarks/peers/compare.py --rounds 5 --json

The OpenMP wait policy is the CLI's (``OMP_WAIT_POLICY=PASSIVE`` unless set). Each round times, back to back: recgym's single env (``RankingEnv``, what ``gym.make`` gives, default
settings; B = 1), recgym's core at ``--num-envs`` users, then one window of each peer (a ``--serve``
process that stays blocked on stdin, idle, while the others run). So every figure sees the same machine
load, and the ratios (recgym / peer, median over rounds of the per-round ratio) are what to quote; the
absolute figures move with the load. Same sizes: ``--candidates`` (100) and ``--slate-size`` (10) for
RecSim's interest evolution and for SARDINE at ``num_items = candidates`` (it has no candidate stage), plus
SARDINE at its own default (1,000 items).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = {  # name -> (module to import, script, default python, env var)
    "recsim": ("recsim", "recsim_bench.py", "/tmp/peer-recsim/bin/python", "RECGYM_PEER_RECSIM"),
    "sardine": ("sardine", "sardine_bench.py", "/tmp/peer-sardine/bin/python", "RECGYM_PEER_SARDINE"),
}


class Peer:
    """A peer benchmark in ``--serve`` mode: :meth:`window` times ``n`` of its steps."""

    def __init__(self, label: str, python: str, script: str, args: list[str]) -> None:
        self.label = label
        self.proc = subprocess.Popen([python, str(HERE / script), "--serve", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=HERE)
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"{label}: the peer script exited before it was ready")
        self.settings = json.loads(line)

    def window(self, n: int) -> float:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return float(json.loads(self.proc.stdout.readline())["steps_per_s"])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def available(name: str, python_arg: str | None) -> tuple[str | None, str]:
    """The peer's Python, or ``None`` and why not."""
    module, _, default, var = PEERS[name]
    python = python_arg or os.environ.get(var) or default
    if not Path(python).is_file():
        return None, f"{name}: skipped, no Python at {python} (make its venv, see --help, or pass --{name}-python)"
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"{name}: skipped, {python} cannot import {module} ({last})"
    return python, ""


def recgym_steppers(candidates: int, slate_size: int, num_envs: int, world: str) -> dict[str, Any]:
    """``label -> (step(i), user-steps per call)`` for recgym's single env and core (the steps of
    ``recgym bench env``), warmed up past one episode."""
    import numpy as np
    import torch

    from recgym.benchmarks.env import core_stepper, single_stepper
    from recgym.envs import RankingEnv
    from recgym.envs.vector import RankingVectorEnv

    single = RankingEnv(world, num_candidates=candidates, slate_size=slate_size)
    single.reset(seed=0)
    rng = np.random.default_rng(0)
    single_step = single_stepper(single, [rng.uniform(-1, 1, candidates).astype(np.float32) for _ in range(8)])
    core = RankingVectorEnv(num_envs, world, num_candidates=candidates, slate_size=slate_size).core
    gen = torch.Generator().manual_seed(0)
    core_step = core_stepper(core, core.init_state(batch_size=num_envs, seed=0),
                             [torch.rand(num_envs, candidates, generator=gen) * 2 - 1 for _ in range(8)])
    for i in range(60):  # past one episode: steady state
        single_step(i)
        core_step(i)
    return {"recgym_single": (single_step, 1), f"recgym_core_B{num_envs}": (core_step, num_envs)}


def timed(step: Any, per_call: int, n: int) -> float:
    import time

    t0 = time.perf_counter()
    for i in range(n):
        step(i)
    return per_call * n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2000, help="single-user steps per window (recgym single and peers)")
    p.add_argument("--core-steps", type=int, default=30, help="batched steps per window of recgym's core")
    p.add_argument("--num-envs", type=int, default=8192)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--slate-size", type=int, default=10)
    p.add_argument("--world", default="synthetic")
    p.add_argument("--recsim-python")
    p.add_argument("--sardine-python")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # the CLI's policy (recgym.cli.shared_machine_defaults), before torch
    from recgym.benchmarks.contention import load_average, thread_settings

    notes: list[str] = []
    peers: list[Peer] = []
    for name in PEERS:
        python, why = available(name, getattr(a, f"{name}_python"))
        if python is None:
            notes.append(why)
            continue
        if name == "recsim":
            peers.append(Peer("recsim", python, PEERS[name][1],
                              ["--candidates", str(a.candidates), "--slate-size", str(a.slate_size)]))
        else:
            peers.append(Peer(f"sardine_items{a.candidates}", python, PEERS[name][1],
                              ["--items", str(a.candidates), "--slate-size", str(a.slate_size)]))
            peers.append(Peer("sardine_default", python, PEERS[name][1], ["--slate-size", str(a.slate_size)]))
    load_before = load_average()
    try:
        ours = recgym_steppers(a.candidates, a.slate_size, a.num_envs, a.world)
        runs: dict[str, list[float]] = {k: [] for k in [*ours, *(pe.label for pe in peers)]}
        for _ in range(a.rounds):
            for label, (step, per_call) in ours.items():
                runs[label].append(timed(step, per_call, a.steps if per_call == 1 else a.core_steps))
            for pe in peers:
                runs[pe.label].append(pe.window(a.steps))
    finally:
        for pe in peers:
            pe.close()
    ratios = {f"{ours_label}/{pe.label}": statistics.median(o / x for o, x in zip(runs[ours_label], runs[pe.label],
                                                                                    strict=True))
              for ours_label in ours for pe in peers}
    result = {"candidates": a.candidates, "slate_size": a.slate_size, "num_envs": a.num_envs, "rounds": a.rounds,
              "median_steps_per_s": {k: statistics.median(v) for k, v in runs.items()},
              "runs": {k: [round(x) for x in v] for k, v in runs.items()}, "ratios": ratios,
              "peer_settings": {pe.label: pe.settings for pe in peers}, "skipped": notes,
              "load_average_before": load_before, "load_average_after": load_average(),
              "thread_settings": thread_settings()}
    if a.json:
        print(json.dumps(result))
        return
    for line in notes:
        print(line, file=sys.stderr)
    for k, v in result["median_steps_per_s"].items():
        print(f"{k:>24}: {v:>12,.0f} user-steps/s (median of {a.rounds} interleaved windows)")
    for k, v in ratios.items():
        print(f"{k:>44}: {v:8.1f}x")
    print(f"load average before {load_before}, after {result['load_average_after']}")


if __name__ == "__main__":
    main()
