"""Progress reporting for long CPU work (encoding, fitting, reports): a bar with a time estimate on a terminal,
periodic one-line messages otherwise (CI logs, ``nohup``), silence when disabled.

    with progress_bar(total=1700, label="fit movielens-100k", unit="steps") as advance:
        for _ in range(1700):
            ...
            advance(1)

The clock only decides *when* to print; it never changes what is computed.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = ["progress_bar", "format_eta"]


def format_eta(seconds: float) -> str:
    """``75.2`` -> ``"1m15s"``; ``3.4`` -> ``"3s"``."""
    s = max(int(round(seconds)), 0)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


@contextlib.contextmanager
def progress_bar(total: int, label: str, *, unit: str = "it", enabled: bool | None = True,
                 stream: TextIO | None = None, every_s: float = 15.0) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``. ``enabled=None`` means only on a terminal; ``False`` is silent.

    On a terminal a ``rich`` bar with elapsed and remaining time is drawn on stderr. Otherwise one line
    ``"<label>: 340/1700 steps (20%), 12s elapsed, ~48s left"`` is printed at most every ``every_s`` seconds
    and at every 25 % mark, plus a final line with the total time.
    """
    stream = stream or sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if enabled is None:
        enabled = tty
    if not enabled or total <= 0:
        yield lambda n=1: None
        return
    if tty:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                   TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
        with Progress(*columns, console=Console(file=stream), transient=False) as bar:
            task = bar.add_task(label, total=total)
            yield lambda n=1: bar.advance(task, n)
        return
    t0 = time.perf_counter()
    state = {"done": 0, "last_t": t0, "last_q": 0}

    def advance(n: int = 1) -> None:
        state["done"] += n
        now, done = time.perf_counter(), state["done"]
        quarter = 4 * done // total
        if now - state["last_t"] < every_s and quarter == state["last_q"]:
            return
        state["last_t"], state["last_q"] = now, quarter
        el = now - t0
        left = el / done * (total - done) if done else float("nan")
        print(f"{label}: {done}/{total} {unit} ({100 * done / total:.0f}%), {format_eta(el)} elapsed, "
              f"~{format_eta(left)} left", file=stream, flush=True)

    yield advance
    print(f"{label}: done, {state['done']} {unit} in {format_eta(time.perf_counter() - t0)}", file=stream, flush=True)
