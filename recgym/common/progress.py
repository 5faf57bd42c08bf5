"""Progress of long steps (encode, fit, train, evaluate, fidelity, bench) for people and logs.

On a terminal: live ``rich`` bars with elapsed time. Otherwise (CI logs, ``nohup``, a pipe): one line per
task when it starts, then at most every ``every_s`` seconds and at every 25 % mark, then a final line with
the time it took - never blank lines, never minutes of silence. ``enabled=False`` is silent.

    progress = Progress()                     # decides terminal vs log lines from the stream
    with progress, progress.task("train ppo__seed0", total=150_000, unit="env steps") as bar:
        ...
        bar.update(n_done)                    # absolute, or bar(k) to add k

    with progress_bar(total=1700, label="fit movielens-100k", unit="steps") as advance:   # one task
        advance(1)

The clock only decides *when* a line is printed; it never changes what is computed.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["Progress", "Bar", "progress_bar", "format_seconds", "format_eta"]


def format_seconds(seconds: float) -> str:
    """``75.2`` -> ``"1m15s"``; ``3.4`` -> ``"3s"``; ``4000`` -> ``"1h06m"``."""
    s = max(int(round(seconds)), 0)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


format_eta = format_seconds


class Bar:
    """One task's progress: ``bar(k)`` adds ``k``, ``bar.update(n)`` sets the count."""

    def __init__(self, owner: Progress, label: str, total: int, unit: str, completed: int) -> None:
        self.owner, self.label, self.total, self.unit = owner, label, max(int(total), 0), unit
        self.done = int(completed)
        self.t0 = self.last_t = time.perf_counter()
        self.last_quarter = self._quarter()
        self.rich_id: Any = None

    def _quarter(self) -> int:
        return 4 * self.done // self.total if self.total else 4

    def __call__(self, n: int = 1) -> None:
        self.update(self.done + int(n))

    def update(self, completed: int) -> None:
        self.done = min(int(completed), self.total) if self.total else int(completed)
        self.owner._changed(self)

    def line(self, final: bool = False) -> str:
        elapsed = time.perf_counter() - self.t0
        if final:
            return f"{self.label}: done, {self.done:,} {self.unit} in {format_seconds(elapsed)}"
        if not self.total:
            return f"{self.label}: {self.done:,} {self.unit}, {format_seconds(elapsed)} elapsed"
        pct = 100 * self.done / self.total
        left = f", ~{format_seconds(elapsed / self.done * (self.total - self.done))} left" if self.done else ""
        return (f"{self.label}: {self.done:,}/{self.total:,} {self.unit} ({pct:.0f}%), "
                f"{format_seconds(elapsed)} elapsed{left}")


class Progress:
    """Progress display for several consecutive or nested tasks; see the module docstring.

    Args:
        stream: where lines go (default ``sys.stderr``).
        enabled: ``False`` = silent; ``None`` = only on a terminal; ``True`` (default) = bars on a terminal,
            lines elsewhere.
        every_s: longest silence between two lines of a running task when not on a terminal.
        console: a ``rich`` console to draw the bars on (default: one on ``stream``).
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = True, every_s: float = 15.0,
                 console: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = self.tty if enabled is None else bool(enabled)
        self.every_s = float(every_s)
        self.console = console
        self._rich: Any = None
        self._depth = 0

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Progress:
        self._depth += 1
        if self._depth == 1 and self.enabled and self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            console = self.console or Console(file=self.stream)
            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), console=console,
                                      transient=False)
            self._rich.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._rich is not None:
            self._rich.__exit__(*exc)
            self._rich = None

    def print(self, message: str) -> None:
        """A one-line message that does not break the bars."""
        if self._rich is not None:
            self._rich.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream, flush=True)

    # ------------------------------------------------------------------ tasks
    @contextlib.contextmanager
    def task(self, label: str, total: int, *, unit: str = "steps", completed: int = 0) -> Iterator[Bar]:
        """A task of ``total`` units; yields its :class:`Bar`. Prints its start and end lines off a terminal."""
        bar = Bar(self, label, total, unit, completed)
        if self.enabled:
            if self._rich is not None:
                bar.rich_id = self._rich.add_task(label, total=bar.total or None, completed=bar.done, unit=unit)
            else:
                print(bar.line(), file=self.stream, flush=True)
        try:
            yield bar
        finally:
            if self.enabled:
                if self._rich is not None:
                    self._rich.update(bar.rich_id, completed=bar.done, refresh=True)
                else:
                    print(bar.line(final=True), file=self.stream, flush=True)

    def _changed(self, bar: Bar) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.update(bar.rich_id, completed=bar.done)
            return
        now, quarter = time.perf_counter(), bar._quarter()
        if now - bar.last_t >= self.every_s or quarter > bar.last_quarter:
            bar.last_t, bar.last_quarter = now, quarter
            if bar.done < bar.total or not bar.total:
                print(bar.line(), file=self.stream, flush=True)


@contextlib.contextmanager
def progress_bar(total: int, label: str, *, unit: str = "it", enabled: bool | None = True,
                 stream: TextIO | None = None, every_s: float = 15.0) -> Iterator[Bar]:
    """One task on its own display: yields its :class:`Bar` (``advance(n)``). ``enabled=None``: only on a
    terminal; ``False``: silent."""
    progress = Progress(stream, enabled=enabled, every_s=every_s)
    with progress, progress.task(label, total, unit=unit) as bar:
        yield bar
