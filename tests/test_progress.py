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


def test_bench_env_reports_each_timed_window_off_a_terminal():
    from recgym.benchmarks.env import run_env_benchmark

    out = io.StringIO()
    res = run_env_benchmark(8, candidates=12, slate_size=2, steps=3, warmup=2, repeats=2,
                            progress=Progress(out, every_s=0.0))
    lines = out.getvalue().splitlines()
    assert res["user_steps_per_s"] > 0
    assert lines[0].startswith("bench env B=8: 0/6 timed windows")
    assert lines[-1].startswith("bench env B=8: done, 6 timed windows in ")
    assert [ln.split(":")[1].split()[0] for ln in lines[1:-1]] == ["1/6", "2/6", "3/6", "4/6", "5/6"]


def test_bench_train_reports_env_steps_off_a_terminal():
    from recgym.benchmarks.train import run_train_benchmark

    out = io.StringIO()
    res = run_train_benchmark("ppo", total_steps=64, num_envs=4, device="cpu", world="analytic",
                              progress=Progress(out, every_s=0.0), n_steps=8, batch_size=16)
    lines = out.getvalue().splitlines()
    assert res["env_steps"] == 64
    assert lines[0].startswith("bench train ppo: 0/64 env steps")
    assert [ln.split(":")[1].split()[0] for ln in lines[1:-1]] == ["32/64"]  # each rollout end (8 x 4 envs)
    assert lines[-1].startswith("bench train ppo: done, 64 env steps in ")
