"""Wall time of `recgym run CONFIG` with the sequential backend and with `--backend ray --workers N`, side by
side in one invocation (same machine state), and whether their evaluation records are identical.

    HF_HUB_OFFLINE=1 python benchmarks/ray_vs_sequential.py                       # the quickstart, N=2
    HF_HUB_OFFLINE=1 python benchmarks/ray_vs_sequential.py --repeats 2 --set training.total_timesteps=30000

Each run is a fresh `recgym run` process into a fresh folder (world build, Ray start-up and report writing
included: the wall a user waits). With ``--repeats R`` the two backends alternate (seq, ray, ray, seq, ...)
so a drift in the machine's load hits both alike; the figure is the ratio of the median walls. Prints one
line per run, then one JSON line (the last) with the walls, the ratio, the load averages and whether every
run's ``metrics.json`` records equal the first sequential run's (Issue 14's bar: ratio <= 0.7 on a 2-core
machine, records identical).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(config: str, out: Path, sets: list[str], ray_workers: int | None) -> float:
    cmd = [sys.executable, "-m", "recgym", "run", config, "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    if ray_workers is not None:
        cmd += ["--backend", "ray", "--workers", str(ray_workers)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with exit status {res.returncode}:\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="experiments/configs/quickstart.yaml")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1, help="runs per backend (alternating order)")
    p.add_argument("--set", dest="sets", action="append", default=[], help="passed on to recgym run")
    a = p.parse_args()
    load_before = os.getloadavg()
    walls: dict[str, list[float]] = {"sequential": [], "ray": []}
    records: dict[str, list[list[dict]]] = {"sequential": [], "ray": []}
    with tempfile.TemporaryDirectory(prefix="ray_vs_seq_") as tmp:
        for r in range(a.repeats):
            order = ("sequential", "ray") if r % 2 == 0 else ("ray", "sequential")
            for backend in order:
                out = Path(tmp) / f"{backend}{r}"
                wall = _run(a.config, out, a.sets, a.workers if backend == "ray" else None)
                walls[backend].append(wall)
                records[backend].append(json.loads((out / "metrics.json").read_text())["records"])
                print(f"run {r} {backend:10s} wall {wall:7.1f} s  load {os.getloadavg()[0]:.2f}", flush=True)
    reference = records["sequential"][0]
    identical = all(rec == reference for runs in records.values() for rec in runs)
    seq, ray = statistics.median(walls["sequential"]), statistics.median(walls["ray"])
    print(json.dumps({
        "config": a.config, "sets": a.sets, "workers": a.workers, "repeats": a.repeats,
        "wall_sequential_s": [round(w, 1) for w in walls["sequential"]], "wall_ray_s": [round(w, 1) for w in walls["ray"]],
        "ratio_ray_over_sequential": round(ray / seq, 3), "records_identical": identical,
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }))


if __name__ == "__main__":
    main()
