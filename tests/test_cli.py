"""Smoke tests of the command line through a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.smoke  # subprocess runs of the CLI (the smoke tier, run by CI)


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
    res = run("bench", "env", "--num-envs", "16", "--candidates", "20", "--slate-size", "3",
              "--threads", "1", "--json")
    rec = json.loads(res.stdout.strip().splitlines()[-1])
    assert rec["user_steps_per_s"] > 0 and rec["num_envs"] == 16
    assert "bench env B=16: done, 15 timed windows in " in res.stderr  # progress lines on stderr, off a terminal


@pytest.mark.parametrize("name", ["ml-1m"])
def test_data_download_unknown_name_suggests(name, tmp_path):
    res = run("data", "download", name, "--dest", str(tmp_path), check=False)
    assert res.returncode == 2 and "ml-100k" in res.stderr
