"""The README's readable experiment runs top to bottom on a tiny budget (smoke tier)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.smoke
REPO = Path(__file__).resolve().parents[1]


def test_ppo_vs_popularity_example_runs(tmp_path):
    script = REPO / "examples" / "ppo_vs_popularity.py"
    assert len(script.read_text().splitlines()) <= 300  # readable in one sitting
    res = subprocess.run(
        [sys.executable, str(script), "--total-timesteps", "1024", "--num-envs", "16", "--eval-seeds", "2",
         "--eval-users", "12", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| ppo |" in res.stdout and "| popularity |" in res.stdout and "| oracle |" in res.stdout
    assert "PPO vs popularity on return" in res.stdout or "PPO beats popularity" in res.stdout \
        or "PPO is below popularity" in res.stdout
    png = tmp_path / "return.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
