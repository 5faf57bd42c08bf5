"""``recgym run`` with PPO ``trainer: fast``: the seeds of the cell train as one batched job (issue 15 hook) with
``training.batch_seeds: true``, one job per seed by default on CPU (``auto``)."""

from __future__ import annotations

import json

import pytest
from test_experiments_run import ANALYTIC, TINY, _sets, recgym


@pytest.mark.parametrize(("batch", "trained"), [("true", ["seeds 0, 1 trained as one batched job"]),
                                               ("auto", ["seed 0 trained", "seed 1 trained"])])
def test_run_trains_fast_ppo_seeds_batched(tmp_path, batch, trained):
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("name: fast_ppo\nworld: analytic\nthreads: 1\nagents:\n  - name: ppo\n"
                   "    hyperparams: {trainer: fast, n_steps: 4, batch_size: 32}\n  - name: random\n"
                   f"training: {{batch_seeds: {batch}}}\n")
    out = tmp_path / "out"
    res = recgym("run", str(cfg), "--out", str(out), *_sets(TINY + ANALYTIC))
    assert res.returncode == 0, res.stderr[-3000:]
    said = " ".join((res.stdout + res.stderr).split())
    assert all(f"first: {t}" in said for t in trained), said[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    ppo = [r for r in metrics["records"] if r["agent"] == "first" and r["segment"] == "all"]
    assert len(ppo) == 2 and all(r["return"] == r["return"] for r in ppo)  # both seeds evaluated, finite
    assert all((out / "checkpoints" / f"first__seed{s}" / "latest.json").is_file() for s in (0, 1))
    res = recgym("explain", str(out), "--user", "0", "--agent", "first", "--steps", "2")  # from its checkpoint
    assert res.returncode == 0, res.stderr[-3000:]
    assert "step 1:" in res.stdout
