"""``recgym run`` with PPO ``trainer: fast``: the seeds of the cell train as one batched job (issue 15 hook)."""

from __future__ import annotations

import json

from test_experiments_run import ANALYTIC, TINY, _sets, recgym


def test_run_trains_fast_ppo_seeds_batched(tmp_path):
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("name: fast_ppo\nworld: analytic\nthreads: 1\nagents:\n  - name: ppo\n"
                   "    hyperparams: {trainer: fast, n_steps: 4, batch_size: 32}\n  - name: random\n")
    out = tmp_path / "out"
    res = recgym("run", str(cfg), "--out", str(out), *_sets(TINY + ANALYTIC))
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    ppo = [r for r in metrics["records"] if r["agent"] == "first" and r["segment"] == "all"]
    assert len(ppo) == 2 and all(r["return"] == r["return"] for r in ppo)  # both seeds evaluated, finite
    assert all((out / "checkpoints" / f"first__seed{s}" / "latest.json").is_file() for s in (0, 1))
    res = recgym("explain", str(out), "--user", "0", "--agent", "first", "--steps", "2")  # from its checkpoint
    assert res.returncode == 0, res.stderr[-3000:]
    assert "step 1:" in res.stdout
