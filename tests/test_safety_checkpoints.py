"""Checkpoint pointers and resume fallback: ``latest.json`` is a verified pointer inside its folder, a corrupt
newest checkpoint (or ``latest.json``) falls back to the newest valid one and says so, missing fields are
named, and a real resume continues from the fallback. Trained once on the analytic world (a few seconds)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from recgym.agents import make_agent
from recgym.common.errors import CorruptFileError, UnsafeFileError
from recgym.common.io import sha256_bytes
from recgym.envs import make_world
from recgym.envs.sb3 import RankingSB3VecEnv
from recgym.experiments.config import load_config
from recgym.experiments.training import (
    CheckpointMismatchError,
    _read_manifest,
    find_resume_checkpoint,
    train_rl,
)

SETS = ["world=analytic", "world_config={n_items: 60, n_users: 16}", "env.num_candidates=20", "env.slate_size=3",
        "env.new_items.slots=0", "env.candidates.pool_size=40", "env.max_steps=5", "evaluation.cohort=all"]
STEPS = (64, 128, 192)


def _agent():
    cfg = load_config(raw={"name": "t", "agents": [{"name": "ppo", "hyperparams": {"n_steps": 8}}]}, overrides=SETS)
    world = make_world("analytic", world_config=cfg.world_config)
    probe = RankingSB3VecEnv(1, seed=0, world=world, config=cfg.train_env(0))
    return cfg, world, make_agent("ppo", probe, seed=0, n_steps=8)


def _train(ckpt: Path, log: Path, budget: int, notes: list[str] | None = None) -> list[dict[str, float]]:
    cfg, world, agent = _agent()
    return train_rl(agent, world=world, train_env_cfg=cfg.train_env(0), budget=budget, num_envs=8, seed=0,
                    checkpoint_every=64, ckpt_dir=ckpt, log_path=log, tb_dir=None, cfg_hash="h",
                    curve_fn=lambda a: 0.0, keep=3, notify=(notes.append if notes is not None else None))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ck")
    _train(root / "ck", root / "curve.csv", STEPS[-1])
    return root / "ck"


@pytest.fixture
def ck(trained, tmp_path) -> Path:
    dst = tmp_path / "ck"
    shutil.copytree(trained, dst)
    return dst


def _name(step: int) -> str:
    return f"step_{step:010d}.pt"


def _rewrite_payload(ck: Path, step: int, edit) -> None:
    """Change a checkpoint's payload and re-sign it (valid manifest), as a careless tool would."""
    payload = torch.load(io.BytesIO((ck / _name(step)).read_bytes()), weights_only=True)
    edit(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    (ck / _name(step)).write_bytes(data)
    for m in (ck / f"step_{step:010d}.json", ck / "latest.json"):
        meta = json.loads(m.read_text())
        if meta["step"] == step:
            m.write_text(json.dumps({**meta, "size": len(data), "sha256": sha256_bytes(data)}))


def test_layout_and_weights_only(trained):
    latest = json.loads((trained / "latest.json").read_text())
    assert latest["step"] == 192 and latest["version"] == 2 and latest["file"] == _name(192)
    for step in STEPS:
        meta = json.loads((trained / f"step_{step:010d}.json").read_text())
        data = (trained / _name(step)).read_bytes()
        assert meta["sha256"] == sha256_bytes(data) and meta["size"] == len(data)
        payload = torch.load(io.BytesIO(data), weights_only=True)  # the numpy RNG states are plain data
        assert payload["rng"]["agent"]["bit_generator"] == "PCG64" and payload["step"] == step


def test_intact_folder_resumes_from_latest_silently(ck):
    notes: list[str] = []
    payload = find_resume_checkpoint(ck, "h", notes.append)
    assert payload["step"] == 192 and notes == []


@pytest.mark.parametrize("damage, reason", [
    ("flip", "sha256 does not match its manifest"),
    ("truncate", "truncated or altered"),
    ("delete", "received no such file"),
])
def test_corrupt_newest_checkpoint_falls_back_and_says_so(ck, damage, reason):
    path = ck / _name(192)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 3]))
    else:
        path.unlink()
    notes: list[str] = []
    payload = find_resume_checkpoint(ck, "h", notes.append)
    assert payload["step"] == 128
    assert len(notes) == 1 and f"resuming from {_name(128)} (step 128), the newest valid checkpoint" in notes[0]
    assert reason in notes[0] and _name(192) in notes[0]
    assert json.loads((ck / "latest.json").read_text())["step"] == 128
    assert not (ck / "step_0000000192.json").exists()  # refused files are set aside, never loaded again
    assert (ck / "step_0000000192.json.rejected").is_file()


@pytest.mark.parametrize("content", [b"", b"{\"step\": 19", b"\x00\xff garbage", b"[]", b'{"file": "step_0000000192.pt"}'])
def test_corrupt_latest_json_falls_back_to_the_newest_valid_manifest(ck, content):
    (ck / "latest.json").write_bytes(content)
    notes: list[str] = []
    payload = find_resume_checkpoint(ck, "h", notes.append)
    assert payload["step"] == 192 and len(notes) == 1 and "latest.json" in notes[0]
    assert json.loads((ck / "latest.json").read_text())["step"] == 192  # repaired


@pytest.mark.parametrize("file", ["../../../etc/passwd", "/etc/passwd", "sub/step_0000000192.pt", "step_192.pt",
                                  "step_0000000192.pt/..", "..", ""])
def test_latest_json_pointing_outside_is_refused(ck, file):
    meta = json.loads((ck / "latest.json").read_text())
    (ck / "latest.json").write_text(json.dumps({**meta, "file": file}))
    with pytest.raises(UnsafeFileError, match=r"field 'file': expected a checkpoint file name step_<10 digits>\.pt"):
        _read_manifest(ck / "latest.json", ck)
    notes: list[str] = []
    assert find_resume_checkpoint(ck, "h", notes.append)["step"] == 192  # the step manifests are still valid
    assert "refusing to follow it" in notes[0]


def test_symlink_leading_out_of_the_folder_is_refused(ck, tmp_path):
    outside = tmp_path / "outside.pt"
    shutil.copy(ck / _name(192), outside)
    (ck / _name(192)).unlink()
    (ck / _name(192)).symlink_to(outside)
    with pytest.raises(UnsafeFileError, match=r"outside .*refusing"):
        _read_manifest(ck / "latest.json", ck)
    notes: list[str] = []
    assert find_resume_checkpoint(ck, "h", notes.append)["step"] == 128
    assert outside.is_file()  # the link is removed, never its target


@pytest.mark.parametrize("field, expected", [
    ("optimizer", r"field 'optimizer': expected the optimizer state dict, received nothing \(missing\)"),
    ("policy", r"field 'policy': expected the policy state dict, received nothing \(missing\)"),
    ("curve", r"field 'curve': expected the learning curve rows"),
    ("rng.env", r"field 'rng\.env': expected an RNG state, received nothing"),
    ("rng.agent=bad", r"field 'rng\.agent': expected a numpy PCG64 state"),
    ("step=1", r"field 'step': expected 192 \(its manifest\), received 1"),
])
def test_missing_or_malformed_fields_are_named_and_skipped(ck, field, expected):
    def edit(p):
        if field == "rng.env":
            del p["rng"]["env"]
        elif field == "rng.agent=bad":
            p["rng"]["agent"] = {"bit_generator": "PCG64", "state": "nope"}
        elif field == "step=1":
            p["step"] = 1
        else:
            del p[field]

    _rewrite_payload(ck, 192, edit)
    notes: list[str] = []
    assert find_resume_checkpoint(ck, "h", notes.append)["step"] == 128
    import re
    assert re.search(expected, notes[0]), notes[0]


def test_no_valid_checkpoint_starts_over_and_says_so(ck):
    for step in STEPS:
        (ck / _name(step)).write_bytes(b"broken")
    notes: list[str] = []
    assert find_resume_checkpoint(ck, "h", notes.append) is None
    assert "no valid checkpoint" in notes[0] and "training this cell from step 0" in notes[0]
    assert not list(ck.glob("step_*.pt")) and not (ck / "latest.json").exists()


def test_checkpoint_of_another_config_stops_the_resume(ck):
    with pytest.raises(CheckpointMismatchError, match=r"written by a different config .*--overwrite"):
        find_resume_checkpoint(ck, "other-hash")


def test_network_mismatch_is_a_named_error(ck, tmp_path):
    _rewrite_payload(ck, 192, lambda p: p["policy"].update(
        {k: torch.zeros(3, 3) for k in list(p["policy"])[:1]}))
    with pytest.raises(CorruptFileError, match=r"step_0000000192\.pt: field 'policy': does not fit this agent's network"):
        _train(ck, tmp_path / "c.csv", 256)


def test_resume_after_fallback_continues_from_the_valid_checkpoint(ck, tmp_path):
    (ck / _name(192)).write_bytes(b"\x00" * 10)
    (ck / ".step_0000000256.pt.abcd1234.tmp").write_bytes(b"partial write of a killed process")
    notes: list[str] = []
    curve = _train(ck, tmp_path / "c.csv", 256, notes)
    assert [int(r["step"]) for r in curve] == [0, 64, 128, 192, 256]  # 192 retrained after the fallback
    assert any("resuming from step_0000000128.pt" in n for n in notes)
    assert any("removed 1 temp file" in n for n in notes)
    assert not list(ck.glob(".*.tmp"))
    assert json.loads((ck / "latest.json").read_text())["step"] == 256
    assert sorted(p.name for p in ck.glob("step_*.pt")) == [_name(128), _name(192), _name(256)]  # keep=3


def test_version_1_folder_still_resumes(ck):
    latest = json.loads((ck / "latest.json").read_text())
    for p in ck.glob("step_*.json"):
        p.unlink()
    (ck / "latest.json").write_text(json.dumps({k: latest[k] for k in ("step", "file", "config_hash", "sha256")}))
    notes: list[str] = []
    assert find_resume_checkpoint(ck, "h", notes.append)["step"] == 192 and notes == []


def test_interrupted_writes_are_named_in_the_notice(ck):
    shutil.copy(ck / _name(192), ck / _name(256))  # killed after the .pt, before its manifest
    (ck / "latest.json").unlink()
    notes: list[str] = []
    assert find_resume_checkpoint(ck, "h", notes.append)["step"] == 192
    assert "step_0000000256.pt: no manifest (its write was interrupted)" in notes[0]
    assert "latest.json is missing" in notes[0] and (ck / f"{_name(256)}.rejected").is_file()
    assert json.loads((ck / "latest.json").read_text())["step"] == 192


def test_stale_latest_json_is_repaired_to_the_newest_complete_checkpoint(ck):
    meta128 = json.loads((ck / "step_0000000128.json").read_text())
    (ck / "latest.json").write_text(json.dumps(meta128))  # killed between the step manifest and latest.json
    notes: list[str] = []
    assert find_resume_checkpoint(ck, "h", notes.append)["step"] == 192
    assert "latest.json names step 128, older than the newest complete checkpoint" in notes[0]
    assert json.loads((ck / "latest.json").read_text())["step"] == 192


def test_env_generator_state_of_a_cuda_core_is_accepted(ck):
    # A CUDA generator's state is 16 bytes, not the CPU generator's 5056: validation must not assume CPU.
    _rewrite_payload(ck, 192, lambda p: p["rng"].update(env=torch.zeros(16, dtype=torch.uint8)))
    notes: list[str] = []
    assert find_resume_checkpoint(ck, "h", notes.append)["step"] == 192 and notes == []
