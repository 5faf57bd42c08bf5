"""Smoke tests of the command line through a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, env_extra: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "recgym", *args], capture_output=True, text=True, env=env,
                          timeout=300, check=check)


def test_help_lists_every_command():
    out = run("--help").stdout
    for cmd in ("encode", "bench", "data", "fidelity"):
        assert cmd in out


def test_encode_a_texts_file_then_hit_the_cache(tmp_path):
    texts = tmp_path / "items.txt"
    texts.write_text("a space opera\na cooking show\n\nthe history of rome\n", encoding="utf-8")
    first = run("encode", "--texts", str(texts), "--encoder", "hashing", "--cache-dir", str(tmp_path / "c")).stdout
    assert "items: 3 texts, dim 384" in first and "(encoded)" in first
    second = run("encode", "--texts", str(texts), "--encoder", "hashing", "--cache-dir", str(tmp_path / "c")).stdout
    assert "(cache hit)" in second


def test_encode_missing_file_fails_clearly(tmp_path):
    res = run("encode", "--texts", str(tmp_path / "nope.txt"), "--encoder", "hashing", check=False)
    assert res.returncode == 2 and "expected a file" in res.stderr


def test_bench_env_json_last_line(tmp_path):
    out = run("bench", "env", "--num-envs", "16", "--candidates", "20", "--slate-size", "3",
              "--threads", "1", "--repeats", "2", "--steps", "50", "--json").stdout
    rec = json.loads(out.strip().splitlines()[-1])
    assert rec["user_steps_per_s"] > 0 and rec["num_envs"] == 16
    assert rec["steps"] == 50 and len(rec["core_user_steps_per_s_runs"]) == 2


def test_bench_env_contention_reports_slowdown_and_leaves_no_helper(tmp_path):
    """--contention measures beside a CPU-bound process and stops it; the CLI sleeps idle OpenMP threads."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-m", "recgym", "bench", "env", "--num-envs", "1", "--candidates", "20",
                          "--slate-size", "3", "--repeats", "1", "--steps", "50", "--contention", "--json"], capture_output=True,
                         text=True, env={**env, "HF_HUB_OFFLINE": "1"}, timeout=600, check=True).stdout
    rec = json.loads(out.strip().splitlines()[-1])
    assert rec["helpers"] == 1 and rec["slowdown"]["core_user_steps_per_s"] > 0
    assert set(rec["slowdown"]) >= {"core_user_steps_per_s", "vector_user_steps_per_s", "single_env_steps_per_s"}
    assert rec["threads"]["OMP_WAIT_POLICY"] == "PASSIVE"

    leftovers = [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).endswith("while True: pass")]
    assert not leftovers


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@pytest.mark.parametrize("name", ["ml-1m"])
def test_data_download_unknown_name_suggests(name, tmp_path):
    res = run("data", "download", name, "--dest", str(tmp_path), check=False)
    assert res.returncode == 2 and "ml-100k" in res.stderr
