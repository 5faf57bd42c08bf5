"""Progress off a terminal: one line at the start, at each quarter (or every ``every_s``) and at the end -
never blank lines, never silent; silent when disabled."""

from __future__ import annotations

import io

from recgym.common.progress import Progress, progress_bar


def test_lines_off_a_terminal_at_quarters_and_the_end():
    out = io.StringIO()
    with Progress(out, every_s=3600) as p, p.task("train x", 8, unit="steps") as bar:
        for _ in range(8):
            bar(1)
    lines = out.getvalue().splitlines()
    assert lines[0] == "train x: 0/8 steps (0%), 0s elapsed"
    assert [ln.split(":")[1].split()[0] for ln in lines[1:-1]] == ["2/8", "4/8", "6/8"]
    assert all("left" in ln for ln in lines[1:-1])  # a time estimate once something is done
    assert lines[-1].startswith("train x: done, 8 steps in ") and all(ln.strip() for ln in lines)


def test_every_s_bounds_the_silence_and_disabled_is_silent():
    out = io.StringIO()
    with progress_bar(1000, "encode", unit="texts", stream=out, every_s=0.0) as bar:
        bar(1)
        bar(1)
    assert len(out.getvalue().splitlines()) == 4  # start, two updates, end
    quiet = io.StringIO()
    with progress_bar(10, "x", stream=quiet, enabled=False) as bar:
        bar(10)
    with progress_bar(10, "x", stream=quiet, enabled=None) as bar:  # None: only on a terminal
        bar(10)
    assert quiet.getvalue() == ""
