"""Shared-machine measurements: run a benchmark beside a CPU-bound helper process and report the slowdown.

    with busy_cores(1):
        figures = run_env_benchmark(8192)

:func:`busy_cores` starts ``n`` processes that spin in a tight loop (each holds one core) and stops them
on exit, whatever happens inside the block. :func:`contention_report` measures quiet, then contended, and
returns both figures with ``slowdown = quiet / contended`` per throughput key.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["busy_cores", "contention_report", "load_average", "thread_settings"]

_SPIN = "import signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\nwhile True: pass"


@contextlib.contextmanager
def busy_cores(n: int = 1) -> Iterator[list[int]]:
    """Hold ``n`` cores with CPU-bound helper processes for the duration of the block (their pids)."""
    procs = [subprocess.Popen([sys.executable, "-c", _SPIN], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(n)]
    try:
        time.sleep(0.5)  # let the scheduler see them running
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where the OS does not report them)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def thread_settings() -> dict[str, Any]:
    """What decides how torch's threads behave here: counts and the OpenMP wait policy."""
    import torch

    return {"torch_threads": torch.get_num_threads(), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


def contention_report(run: Callable[[], dict[str, Any]], keys: list[str], helpers: int = 1) -> dict[str, Any]:
    """``run()`` on the machine as it is, then beside ``helpers`` CPU-bound processes; returns ``{"quiet": ...,
    "contended": ..., "slowdown": {key: quiet / contended}}`` for the throughput ``keys`` of ``run``'s dict."""
    quiet = run()
    quiet["load_average"] = load_average()
    with busy_cores(helpers):
        busy = run()
        busy["load_average"] = load_average()
    slowdown = {k: round(quiet[k] / busy[k], 2) for k in keys if quiet.get(k) and busy.get(k)}
    return {"quiet": quiet, "contended": busy, "helpers": helpers, "slowdown": slowdown,
            "max_slowdown": max(slowdown.values()) if slowdown else None, "threads": thread_settings()}
