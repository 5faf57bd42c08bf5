"""Seed-batched PPO ``trainer: fast`` cells checkpoint per seed and resume exactly (issue 15): a batched job
interrupted at a checkpoint and resumed equals the job never interrupted, bit for bit; the checkpoints are agent
files; malformed fields are named and skipped; ``training.batch_seeds: false`` trains each seed alone."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from test_exact_resume import SETS, _resign, _same

from recgym.agents import load_agent
from recgym.agents.base import read_agent_payload
from recgym.agents.ppo_fast import FastPPOTrainer
from recgym.common.progress import Progress
from recgym.envs import make_world
from recgym.experiments.cells import RunContext
from recgym.experiments.config import load_config
from recgym.experiments.seed_batch import SeedCell, train_seed_batch
from recgym.experiments.training import find_resume_checkpoint

SEEDS = [0, 1]
BUDGET, EVERY = 256, 64  # 8 users x 8 steps per rollout: a checkpoint after every rollout


class Interrupted(Exception):
    """Stands for the kill: raised from a learning-curve point, after the previous chunk's checkpoints."""


def _config(sets: tuple[str, ...] = (), **training):
    raw = {"name": "t", "agents": [{"name": "ppo", "hyperparams": {"trainer": "fast", "n_steps": 8, "batch_size": 32}}],
           "training": {"total_timesteps": BUDGET, "num_envs": 8, "checkpoint_every": EVERY, "batch_seeds": True,
                        **training}}
    return load_config(raw=raw, overrides=[*SETS, *sets])


def _batch(out: Path, stop_at: int | None = None, lag: dict[int, int] | None = None, notes: list[str] | None = None,
           cfg=None):
    """Train the seeds of agent 0 as train_seed_batch does in a run; the curve point is the step (cheap)."""
    cfg = cfg or _config()
    world = make_world("analytic", world_config=cfg.world_config)
    ctx = RunContext.create(cfg, world, out, "h", Progress(enabled=False), (notes if notes is not None else []).append)
    (out / "curves").mkdir(parents=True, exist_ok=True)

    def point(agent) -> float:
        if stop_at is not None and agent.num_timesteps >= stop_at:
            raise Interrupted
        return float(agent.num_timesteps)

    cells = [SeedCell(s, f"ppo__seed{s}", out / "curves" / f"ppo__seed{s}.csv", point) for s in SEEDS]
    return train_seed_batch(ctx, 0, cells)


def _final(out: Path, seed: int) -> dict:
    return read_agent_payload(out / "checkpoints" / f"ppo__seed{seed}" / f"step_{BUDGET:010d}.pt")["training"]


def test_batched_training_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    whole = _batch(tmp_path / "whole")
    with pytest.raises(Interrupted):
        _batch(tmp_path / "cut", stop_at=192)  # both seeds checkpointed at 128, killed in the next chunk's curve
    for s in SEEDS:
        assert json.loads((tmp_path / "cut" / "checkpoints" / f"ppo__seed{s}" / "latest.json").read_text())["step"] == 128
    resumed = _batch(tmp_path / "cut")
    for s in SEEDS:
        assert [r["step"] for r in resumed[s][1]] == [0, 64, 128, 192, 256]
        assert json.dumps(resumed[s][1]) == json.dumps(whole[s][1])
        a, b = _final(tmp_path / "whole", s), _final(tmp_path / "cut", s)
        assert a["trainer"] == "fast"
        for part in ("policy", "optimizer", "rng", "last_done", "sim"):
            assert _same(a[part], b[part]), (s, part)
        wa, wb = whole[s][0].policy.scorer.state_dict(), resumed[s][0].policy.scorer.state_dict()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # The checkpoint is the usual agent file: load_agent gives the seed's trained agent.
    agent = load_agent(tmp_path / "cut" / "checkpoints" / "ppo__seed1" / f"step_{BUDGET:010d}.pt")
    sd = agent.policy.scorer.state_dict()
    assert agent.num_timesteps == BUDGET and all(torch.equal(sd[k], wb[k].cpu()) for k in sd)
    # The seeds are separate runs: their weights differ.
    assert not torch.equal(whole[0][0].policy.scorer.state_dict()["out.weight"],
                           whole[1][0].policy.scorer.state_dict()["out.weight"])


def test_resume_without_the_trainer_state_diverges(tmp_path, monkeypatch):
    """The test above can fail: a resume that drops the optimiser and generator states gives other weights."""
    whole = _batch(tmp_path / "whole")
    with pytest.raises(Interrupted):
        _batch(tmp_path / "cut", stop_at=192)
    monkeypatch.setattr(FastPPOTrainer, "load_training_state", lambda self, state, seed_index=0: None)
    resumed = _batch(tmp_path / "cut")
    wa, wb = whole[0][0].policy.scorer.state_dict(), resumed[0][0].policy.scorer.state_dict()
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_complete_batch_resumes_without_training(tmp_path, monkeypatch):
    whole = _batch(tmp_path / "run")
    monkeypatch.setattr(FastPPOTrainer, "learn", lambda *a, **k: pytest.fail("a complete batch trained again"))
    again = _batch(tmp_path / "run")
    for s in SEEDS:
        wa, wb = whole[s][0].policy.scorer.state_dict(), again[s][0].policy.scorer.state_dict()
        assert all(torch.equal(wa[k], wb[k]) for k in wa) and json.dumps(again[s][1]) == json.dumps(whole[s][1])


def test_seeds_left_at_different_steps_resume_each_from_its_own(tmp_path):
    with pytest.raises(Interrupted):
        _batch(tmp_path / "run", stop_at=192)
    ck1 = tmp_path / "run" / "checkpoints" / "ppo__seed1"
    for p in (ck1 / "step_0000000128.pt", ck1 / "step_0000000128.json"):
        p.unlink()  # seed 1's last checkpoint lost (killed between the two seeds' writes)
    notes: list[str] = []
    res = _batch(tmp_path / "run", notes=notes)
    assert [r["step"] for r in res[0][1]] == [r["step"] for r in res[1][1]] == [0, 64, 128, 192, 256]
    assert all(res[s][0].num_timesteps == BUDGET for s in SEEDS)
    assert [n for n in notes if "trained" in n] == ["ppo: seed 1 trained (trainer 'fast', env steps 64 to 256)",
                                                    "ppo: seed 0 trained (trainer 'fast', env steps 128 to 256)"], notes


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda t: t.pop("last_done"), r"field 'last_done': expected a float32 \(B,\) tensor"),
    (lambda t: t["optimizer"].update(exp_avg=[]), r"field 'optimizer\.exp_avg': expected a list of \(1, \.\.\.\) tensors"),
    (lambda t: t["rng"].update(sampler="x"), r"field 'rng\.sampler': expected a uint8 generator state tensor"),
    (lambda t: t.pop("sim"), r"field 'sim': expected the training env's state"),
])
def test_malformed_fast_checkpoint_fields_are_named_and_the_checkpoint_skipped(tmp_path, edit, expected):
    with pytest.raises(Interrupted):
        _batch(tmp_path, stop_at=192)
    ck = tmp_path / "checkpoints" / "ppo__seed0"
    _resign(ck, 128, edit)
    notes: list[str] = []
    assert find_resume_checkpoint(ck, "h", notes.append)["step"] == 64
    assert re.search(expected, notes[0]), notes[0]


def test_batch_seeds_false_trains_each_seed_alone(tmp_path):
    notes: list[str] = []
    cfg = _config(batch_seeds=False)
    world = make_world("analytic", world_config=cfg.world_config)
    ctx = RunContext.create(cfg, world, tmp_path, "h", Progress(enabled=False), notes.append)
    from recgym.experiments.cells import Cell, _batched_result, cell_path

    for s in SEEDS:
        agent, curve = _batched_result(ctx, Cell(0, cfg.agents[0], s, cell_path(tmp_path, "ppo", s)))
        assert agent.num_timesteps == BUDGET and [r["step"] for r in curve][-1] == BUDGET
    assert [re.search(r"seeds? ([\d, ]+) trained", n).group(1) for n in notes] == ["0", "1"], notes


FAST_CONFIG = """name: exact_fast
agents:
  - name: ppo
    hyperparams: {trainer: fast, n_steps: 8, batch_size: 32}
training: {batch_seeds: true}
"""


@pytest.mark.slow  # ~2-3 min on the loaded 2-core machine (three CLI processes)
def test_run_sigkilled_mid_batched_training_and_resumed_gives_identical_metrics(tmp_path):
    import subprocess

    from test_exact_resume import CLI_SETS, ENV, REPO, _kill_after_a_checkpoint

    cfg = tmp_path / "fast.yaml"
    cfg.write_text(FAST_CONFIG)
    sets = [*CLI_SETS, "evaluation.seeds=[0, 1]"]

    def cli(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "recgym", "run", str(cfg), "--out", str(out), *extra,
                *[x for s in sets for x in ("--set", s)]]

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    res = subprocess.run(cli(whole), env=ENV, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    at = _kill_after_a_checkpoint(cli(cut), cut / "checkpoints" / "ppo__seed1" / "latest.json")
    assert 0 < at < 1024 and not (cut / "metrics.json").exists(), at
    res = subprocess.run(cli(cut, "--resume"), env=ENV, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    for s in SEEDS:
        assert (cut / "curves" / f"ppo__seed{s}.csv").read_text() == (whole / "curves" / f"ppo__seed{s}.csv").read_text()
        a, b = (read_agent_payload(run / "checkpoints" / f"ppo__seed{s}" / "step_0000001024.pt")["training"]
                for run in (whole, cut))
        for part in ("policy", "optimizer", "rng", "last_done", "sim"):
            assert _same(a[part], b[part]), (s, part)
    assert json.loads((cut / "metrics.json").read_text()) == json.loads((whole / "metrics.json").read_text())


def test_feedback_world_batched_training_resumes_exactly_with_one_table_per_seed(tmp_path):
    """long_term's kind of env (returning users, the observed feedback table): the seeds train as one batched job
    (before: refused), each seed's checkpointed env state holds its own table, and a kill + resume equals the
    uninterrupted job bit for bit."""
    sets = ("env.feedback.enabled=true", "env.feedback.warmup_users=8", "env.feedback.warmup_steps=2",
            "env.sessions.count=2", "env.sessions.session_steps=3")
    cfg = _config(sets)
    whole = _batch(tmp_path / "whole", cfg=cfg)
    with pytest.raises(Interrupted):
        _batch(tmp_path / "cut", stop_at=192, cfg=cfg)
    resumed = _batch(tmp_path / "cut", cfg=cfg)
    tables = []
    for s in SEEDS:
        a, b = _final(tmp_path / "whole", s), _final(tmp_path / "cut", s)
        for part in ("policy", "optimizer", "rng", "last_done", "sim"):
            assert _same(a[part], b[part]), (s, part)
        assert "feedback.weight" in a["policy"]
        tables.append(a["sim"]["sim"]["shared.item_feedback"])
        wa, wb = whole[s][0].policy.scorer.state_dict(), resumed[s][0].policy.scorer.state_dict()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not torch.equal(tables[0], tables[1])
    # each table counts its own seed's training only: 8 users x 8 steps x 3 items per rollout on top of its warm-up
    assert all(float(t[:, 0].sum()) == 8 * 2 * 3 + BUDGET * 3 for t in tables)
