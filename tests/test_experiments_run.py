"""The main job through the real CLI in a subprocess: smoke runs of every shipped config on a tiny budget,
run-folder contents, refusal of existing folders and changed configs, SIGKILL + --resume."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "configs"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "160"}

TINY = ["training.total_timesteps=256", "training.num_envs=16", "training.checkpoint_every=128",
        "training.curve_users=8", "training.logging.steps=10", "training.logging.num_envs=16",
        "evaluation.seeds=[0, 1]", "evaluation.users_per_seed=12", "evaluation.episodes_per_user=1",
        "env.max_steps=6", "agents[0].label=first"]
ANALYTIC = ["world=analytic", "world_config={n_items: 60, n_users: 16}", "env.num_candidates=20",
            "env.slate_size=3", "env.new_items.slots=0", "env.candidates.pool_size=40", "evaluation.cohort=all"]


def recgym(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recgym", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout, cwd=REPO)


def _sets(items: list[str]) -> list[str]:
    return [x for s in items for x in ("--set", s)]


def _check_folder(out: Path, n_agents: int) -> dict:
    for name in ("config.yaml", "run.json", "world.json", "metrics.json", "metrics.csv", "metrics_summary.csv",
                 "report.md"):
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text())
    assert len(run["config_sha256"]) == 64 and run["world_fingerprint"] and run["system"]["versions"]["recgym"]
    metrics = json.loads((out / "metrics.json").read_text())
    agents = {r["agent"] for r in metrics["records"]}
    assert len(agents) == n_agents
    segs = {r["segment"] for r in metrics["records"]}
    assert {"all", "warm_users", "cold_users"} <= segs
    rec = next(r for r in metrics["records"] if r["segment"] == "all")
    for key in ("return", "ctr", "ndcg", "session_length", "satisfaction", "engagement", "coverage", "gini",
                "ild", "novelty"):
        assert key in rec, key
    assert {r["metric"] for r in metrics["summary"]} >= {"return", "ctr"}
    assert all({"mean", "low", "high"} <= set(r) for r in metrics["summary"])
    pngs = sorted((out / "plots").glob("*.png"))
    assert {"lorenz.png", "ctr_by_decile.png", "bars_return.png", "cold_start.png"} <= {p.name for p in pngs}
    assert all(p.stat().st_size > 1000 for p in pngs)
    report = (out / "report.md").read_text()
    assert "![lorenz](plots/lorenz.png)" in report and "## Conclusions supported by the numbers" in report
    return metrics


@pytest.mark.parametrize("name", ["long_tail", "rl_vs_supervised"])
def test_shipped_config_smoke_analytic(tmp_path, name):
    out = tmp_path / name
    res = recgym("run", str(CONFIGS / f"{name}.yaml"), "--out", str(out), *_sets(TINY + ANALYTIC))
    assert res.returncode == 0, res.stderr[-3000:]
    n = len([ln for ln in (CONFIGS / f"{name}.yaml").read_text().splitlines() if ln.startswith("  - name:")])
    _check_folder(out, n)
    assert list((out / "tensorboard").rglob("events.out.tfevents*"))
    assert (out / "plots" / "learning_curves.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "## Fairness of exposure" in report and "## Explained slates" in report
    assert (out / "plots" / "exposure_vs_merit.png").stat().st_size > 1000
    if name == "long_tail":  # the lambda series of re-ranked LM-similarity agents
        assert "![fairness_tradeoff](plots/fairness_tradeoff.png)" in report
    res = recgym("explain", str(out), "--user", "0", "--agent", "ppo", "--steps", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "gradient x input" in res.stdout and "step 1:" in res.stdout
    bad = recgym("explain", str(out), "--user", "0", "--agent", "nope")
    assert bad.returncode == 2 and "--agent: expected one of" in bad.stderr


def test_quickstart_and_cold_start_smoke_on_default_world(tmp_path):
    """The default synthetic world (MiniLM-encoded; a cache hit after its first build)."""
    out = tmp_path / "qs"
    res = recgym("run", "experiments/configs/quickstart.yaml", "--out", str(out), *_sets(TINY), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    _check_folder(out, 5)
    ck = json.loads((out / "checkpoints" / "ppo__seed0" / "latest.json").read_text())
    assert ck["step"] >= 256 and (out / "checkpoints" / "ppo__seed0" / ck["file"]).is_file()
    # an existing run folder is refused; resuming a finished run re-runs nothing; a changed config is refused
    res = recgym("run", "experiments/configs/quickstart.yaml", "--out", str(out), *_sets(TINY))
    assert res.returncode == 2 and "already holds a run" in res.stderr and "--resume" in res.stderr
    res = recgym("run", "experiments/configs/quickstart.yaml", "--out", str(out), "--resume",
                 *_sets(TINY + ["env.slate_size=5"]))
    assert res.returncode == 2 and re.search(r"config differs .* in: env\.slate_size", res.stderr)
    before = (out / "cells" / "ppo__seed1.json").stat().st_mtime_ns
    res = recgym("run", "experiments/configs/quickstart.yaml", "--out", str(out), "--resume", *_sets(TINY))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "10 finished evaluation cells skipped, 0 to run" in res.stderr
    assert (out / "cells" / "ppo__seed1.json").stat().st_mtime_ns == before

    out2 = tmp_path / "cold"
    res = recgym("run", "cold_start.yaml", "--out", str(out2), *_sets(TINY + ["evaluation.users_per_seed=8"]))
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = _check_folder(out2, 7)
    cold = [r for r in metrics["records"] if r["segment"] == "cold_users"]
    assert cold and all(r["n_slates"] > 0 for r in cold)


def test_bad_config_fails_fast_with_path(tmp_path):
    t0 = time.perf_counter()
    res = recgym("run", "quickstart.yaml", "--out", str(tmp_path / "x"), "--set", "agents[3].hyperparams.lerning_rate=1")
    assert res.returncode == 2
    assert re.search(r"agents\[3\]\.hyperparams\.lerning_rate: unknown key .*did you mean 'learning_rate'", res.stderr)
    assert not (tmp_path / "x").exists() and time.perf_counter() - t0 < 30


def test_unwritable_folder_reported_before_training(tmp_path):
    if os.geteuid() == 0:
        target = Path("/proc/recgym-run")  # not creatable even for root
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "run"
    res = recgym("run", "quickstart.yaml", "--out", str(target), *_sets(TINY + ANALYTIC))
    assert res.returncode == 2 and "cannot write" in res.stderr and "world" not in res.stdout


def test_sigkill_after_first_checkpoint_then_resume(tmp_path):
    out = tmp_path / "run"
    budget, every = 4096, 256
    sets = _sets(ANALYTIC + ["training.num_envs=16", f"training.total_timesteps={budget}",
                             f"training.checkpoint_every={every}", "training.curve_users=8",
                             "evaluation.seeds=[0]", "evaluation.users_per_seed=8", "env.max_steps=6"])
    cfg = tmp_path / "one.yaml"
    cfg.write_text("name: one\nagents:\n  - name: ppo\n    hyperparams: {n_steps: 16}\n")
    proc = subprocess.Popen([sys.executable, "-m", "recgym", "run", str(cfg), "--out", str(out), *sets],
                            env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = out / "checkpoints" / "ppo__seed0" / "latest.json"
    deadline = time.time() + 120
    while not marker.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.is_file(), proc.stderr.read()[-2000:]
    killed_at = json.loads(marker.read_text())["step"]
    assert killed_at < budget, "the run finished before it could be killed"
    assert not (out / "metrics.json").exists()
    res = subprocess.run([sys.executable, "-m", "recgym", "run", str(cfg), "--out", str(out), "--resume", *sets],
                         env=ENV, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    final = json.loads(marker.read_text())["step"]
    assert final == budget
    with (out / "curves" / "ppo__seed0.csv").open() as fh:
        steps = [int(float(r["step"])) for r in csv.DictReader(fh)]
    assert steps == list(range(0, budget + 1, every)), steps  # continuous: no gap, no duplicate
    assert json.loads((out / "metrics.json").read_text())["records"]



