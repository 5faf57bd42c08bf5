"""Faults and hostile inputs outside the loaders: a full disk ends in one line with the path, the space and the
resume command (nothing half-written loadable); download size caps (zip bomb); ``choice_model="cascade"``
in every shell; recgym errors printed as one ``error:`` line by the CLI."""

from __future__ import annotations

import errno
import io
import json
import os
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from typer.testing import CliRunner

import recgym  # noqa: F401 - registers the env ids
from recgym.cli import app
from recgym.common.errors import DiskFullError
from recgym.common.io import atomic_write_bytes
from recgym.envs.choice import Cascade, MultinomialLogit
from recgym.envs.datasets.registry import DownloadError, download_dataset
from recgym.envs.sb3 import RankingSB3VecEnv

RUN_SETS = ["world=analytic", "world_config={n_items: 60, n_users: 16}", "env.num_candidates=20", "env.slate_size=3",
            "env.new_items.slots=0", "env.candidates.pool_size=40", "env.max_steps=3", "evaluation.cohort=all",
            "evaluation.seeds=[0]", "evaluation.users_per_seed=4", "output.tensorboard=false"]


# ------------------------------------------------------------------------------------------- full disk
def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_write_on_a_full_disk_names_path_and_space_and_keeps_the_old_file(tmp_path, monkeypatch):
    dest = tmp_path / "latest.json"
    dest.write_text("previous")
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(DiskFullError) as info:
        atomic_write_bytes(dest, b"x" * 5000)
    monkeypatch.undo()
    msg = str(info.value)
    assert msg.startswith(f"disk full writing {dest} (4.9 KiB needed, ") and "free on that filesystem" in msg
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert dest.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["latest.json"]


def test_quota_exceeded_is_reported_too(tmp_path, monkeypatch):
    def edquot(*_a):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(os, "fsync", edquot)
    with pytest.raises(DiskFullError, match=r"disk quota exceeded writing"):
        atomic_write_bytes(tmp_path / "f", b"x")


def _failing_writer(real, fail_on: str):
    """``atomic_write_bytes`` that fills the disk when it writes a file whose name contains ``fail_on``."""
    def write(path, data):
        if fail_on in Path(path).name:
            orig = os.fsync
            os.fsync = _enospc
            try:
                return real(path, data)
            finally:
                os.fsync = orig
        return real(path, data)
    return write


def _run_cli(tmp_path: Path, agent: str, extra: list[str] | None = None):
    cfg = tmp_path / "c.yaml"
    hp = "\n    hyperparams: {n_steps: 8}" if agent == "ppo" else ""
    cfg.write_text(f"name: t\nagents:\n  - name: {agent}{hp}\n")
    sets = RUN_SETS + (extra or [])
    args = ["run", str(cfg), "--out", str(tmp_path / "run"), *[x for s in sets for x in ("--set", s)]]
    return CliRunner().invoke(app, args), args


def _assert_one_disk_full_line(res, args, path_part: str):
    assert res.exit_code == 2, res.output
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in res.output, res.output
    line = err[0]
    assert line.startswith("error: disk full writing ") and path_part in line and "free on that filesystem" in line
    assert f"free space, then resume with: recgym run {args[1]} --out {args[3]} --resume --set " in line


def test_full_disk_in_tensorboard_writer_thread_is_one_line(tmp_path, monkeypatch):
    from tensorboard.summary.writer.record_writer import RecordWriter

    calls = {"n": 0}
    real = RecordWriter.write

    def write(self, data):
        calls["n"] += 1
        if calls["n"] > 3:  # the event file header and the first scalars go through
            _enospc()
        return real(self, data)

    monkeypatch.setattr(RecordWriter, "write", write)
    res, args = _run_cli(tmp_path, "ppo", ["output.tensorboard=true", "training.total_timesteps=256",
                                           "training.checkpoint_every=64", "training.num_envs=8",
                                           "training.curve_users=4"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "Exception in thread" not in res.output, res.output
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and err[0].startswith("error: disk full writing ") and "--resume" in err[0]


@pytest.mark.parametrize("stage, module, fail_on, agent", [
    ("training checkpoint", "recgym.experiments.training", "step_", "ppo"),
    ("evaluation cell", "recgym.experiments.runner", "__seed0.npz", "random"),
    ("report", "recgym.experiments.report", "report.md", "random"),
    ("plot", "recgym.experiments.plots", ".png", "random"),
])
def test_full_disk_during_a_run_is_one_line_with_the_resume_command(tmp_path, monkeypatch, stage, module, fail_on,
                                                                     agent):
    import importlib

    mod = importlib.import_module(module)
    real = atomic_write_bytes
    if hasattr(mod, "atomic_write_bytes"):
        monkeypatch.setattr(mod, "atomic_write_bytes", _failing_writer(real, fail_on))
    if hasattr(mod, "atomic_write_text"):
        monkeypatch.setattr(mod, "atomic_write_text",
                            lambda p, t: _failing_writer(real, fail_on)(p, t.encode("utf-8")))
    res, args = _run_cli(tmp_path, agent, ["training.total_timesteps=128", "training.checkpoint_every=64",
                                           "training.num_envs=8", "training.curve_users=4"])
    _assert_one_disk_full_line(res, args, fail_on.strip("_"))
    run = tmp_path / "run"
    assert not list(run.rglob("*.tmp"))  # nothing half-written
    if stage == "training checkpoint":
        ck = run / "checkpoints" / "ppo__seed0"
        assert not (ck / "latest.json").exists() and not list(ck.glob("step_*.json"))
    monkeypatch.undo()
    resumed = CliRunner().invoke(app, [*args, "--resume"])  # after freeing space, the printed command works
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "metrics.json").read_text())["records"]


def _log_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "log"
    folder.mkdir()
    items = [f"it{k}" for k in range(40)]
    (folder / "items.csv").write_text("item_id,title,genres\n" + "".join(f"{i},Item {k},g{k % 3}\n" for k, i in enumerate(items)))
    rows = [f"user{u},{items[j]}\n" for u in range(30) for j in rng.choice(40, size=8, replace=False)]
    (folder / "interactions.csv").write_text("user_id,item_id\n" + "".join(rows))
    return folder


def test_full_disk_while_writing_the_world_cache(tmp_path, monkeypatch):
    import recgym.envs.worlds.fitted as fitted

    monkeypatch.setattr(fitted, "atomic_write_bytes", _failing_writer(atomic_write_bytes, "arrays.npz"))
    monkeypatch.setenv("RECGYM_CACHE", str(tmp_path / "cache"))
    folder = _log_folder(tmp_path)
    res, args = _run_cli(tmp_path, "random", ["world=log", f"data_dir={folder}", "encoder=hashing",
                                              "world_config={epochs: 1, latent_dim: 4}", "env.num_candidates=10",
                                              "env.candidates.pool_size=20", "evaluation.cohort=test"])
    _assert_one_disk_full_line(res, args, "arrays.npz")
    worlds = list((tmp_path / "cache" / "worlds").iterdir())
    assert worlds and not list(worlds[0].glob("manifest.json")) and not list(worlds[0].glob(".*.tmp"))


# ------------------------------------------------------------------------------------------- downloads
class _Stream(io.BytesIO):
    def __init__(self, data: bytes, headers: dict | None = None) -> None:
        super().__init__(data)
        self.headers = headers or {}
        self.read_total = 0

    def read(self, n=-1):
        chunk = super().read(n)
        self.read_total += len(chunk)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_zip_bomb_member_is_refused_before_it_is_expanded(tmp_path):
    bomb = _zip({"ml-latest-small/ratings.csv": b"\0" * (80 * 2**20)})  # 80 MiB of zeros, ~80 KB compressed
    assert len(bomb) < 200_000
    with pytest.raises(DownloadError, match=r"'ml-latest-small/ratings\.csv' declares 83886080 bytes uncompressed, "
                                            r"expected at most 67108864 \(zip bomb"):
        download_dataset("ml-latest-small", tmp_path, opener=lambda url, timeout: _Stream(bomb))
    with pytest.raises(DownloadError, match=r"zip bomb"):
        download_dataset("ml-latest-small", tmp_path, opener=lambda url, timeout: _Stream(bomb),
                         max_member_bytes=2**20)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no extraction folder left


def test_archive_size_is_capped_while_streaming_and_by_content_length(tmp_path):
    stream = _Stream(b"x" * (3 * 2**20))
    with pytest.raises(DownloadError, match=r"sent more than 1048576 bytes, the cap"):
        download_dataset("ml-100k", tmp_path, opener=lambda url, timeout: stream, max_archive_bytes=2**20)
    assert stream.read_total <= 2 * 2**20  # stopped reading soon after the cap
    declared = _Stream(b"", headers={"Content-Length": str(10 * 2**30)})
    with pytest.raises(DownloadError, match=r"declares 10737418240 bytes, expected at most"):
        download_dataset("ml-100k", tmp_path, opener=lambda url, timeout: declared)
    assert declared.read_total == 0


def test_stale_extraction_folders_of_killed_downloads_are_removed(tmp_path):
    stale = tmp_path / ".ml-100k.abcd1234.tmp"
    stale.mkdir()
    (stale / "u.data").write_text("partial")
    past = os.path.getmtime(stale) - 7200
    os.utime(stale, (past, past))
    with pytest.raises(DownloadError):
        download_dataset("ml-100k", tmp_path, opener=lambda url, timeout: _Stream(_zip({"x": b"y"})))
    assert not stale.exists()


# ------------------------------------------------------------------------------------------- choice_model keyword
@pytest.fixture(scope="module")
def world(small_world):
    return small_world


def _kw(world):
    return dict(world=world, num_candidates=10, slate_size=3, candidates={"pool_size": 60})


@pytest.mark.parametrize("choice", ["cascade", "pbm", Cascade(), MultinomialLogit(no_click_logit=0.0)])
def test_choice_model_name_or_component_in_every_shell(world, choice):
    expected = type(choice).__name__ if not isinstance(choice, str) else {"cascade": "Cascade", "pbm": "PositionBased"}[choice]
    env = gym.make("recgym/Ranking-v0", choice_model=choice, **_kw(world))
    env.reset(seed=0)
    _, reward, *_ = env.step(env.action_space.sample())
    assert type(env.unwrapped.core.choice).__name__ == expected and np.isfinite(reward)
    if isinstance(choice, str):
        assert env.unwrapped.config.choice.model == choice
    venv = gym.make_vec("recgym/Ranking-v0", num_envs=3, vectorization_mode="vector_entry_point",
                        choice_model=choice, **_kw(world))
    venv.reset(seed=0)
    _, rewards, *_ = venv.step(venv.action_space.sample())
    assert type(venv.core.choice).__name__ == expected and rewards.shape == (3,)
    sb3 = RankingSB3VecEnv(2, seed=0, choice_model=choice, **_kw(world))
    sb3.reset()
    _, rewards, *_ = sb3.step(np.stack([sb3.action_space.sample() for _ in range(2)]))
    assert type(sb3.core.choice).__name__ == expected and rewards.shape == (2,)


def test_bad_component_arguments_are_clear(world):
    from recgym.common.config import ConfigError
    from recgym.envs.ranking import RankingEnv

    with pytest.raises(ConfigError, match=r"env.choice.model: .*received .cascad."):
        RankingEnv(choice_model="cascad", **_kw(world))
    with pytest.raises(TypeError, match=r"choice_model: expected a name .* or a ChoiceModel"):
        RankingEnv(choice_model=3, **_kw(world))
    with pytest.raises(TypeError, match=r"reward_fn: expected a component object .*use reward='mix'"):
        RankingEnv(reward_fn="mix", **_kw(world))


# ------------------------------------------------------------------------------------------- CLI error lines
def test_cli_prints_recgym_file_errors_as_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\nagents:\n  - name: random\n")
    out = tmp_path / "run"
    sets = [x for s in RUN_SETS for x in ("--set", s)]
    assert CliRunner().invoke(app, ["run", str(cfg), "--out", str(out), *sets]).exit_code == 0
    (out / "config.yaml").write_bytes(b"\xff\xfe\x00garbage")
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(out), "--resume", *sets])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.output
    assert res.stderr.startswith(f"error: --resume: {out / 'config.yaml'}: expected UTF-8 text")
