"""Run folders: ``--overwrite`` deletes only what recgym marked as its run (never ``.``, a parent of the working
directory, home, a root, a symlink or a git work tree), labels and derived paths stay inside the run folder,
one process per folder, and temp files of killed writes are cleaned on the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recgym.cli import app
from recgym.common.errors import UnsafePathError
from recgym.common.io import atomic_write_bytes, clean_stale_temp_files, path_inside
from recgym.experiments.cells import cell_path
from recgym.experiments.config import AgentSpec, load_config
from recgym.experiments.runner import (
    RUN_MARKER,
    RunError,
    RunLock,
    _refuse_to_delete,
    prepare_run_dir,
    read_run_marker,
)

RUN_SETS = ["world=analytic", "world_config={n_items: 60, n_users: 16}", "env.num_candidates=20", "env.slate_size=3",
            "env.new_items.slots=0", "env.candidates.pool_size=40", "env.max_steps=3", "evaluation.cohort=all",
            "evaluation.seeds=[0]", "evaluation.users_per_seed=4", "output.plots=false", "output.tensorboard=false"]


def _cfg(**raw):
    return load_config(raw={"name": "t", "agents": [{"name": "random"}], **raw})


def _new_run(path: Path) -> Path:
    prepare_run_dir(_cfg(), path, resume=False, overwrite=False)
    (path / "config.yaml").write_text("name: t\n")
    (path / "cells").mkdir()
    (path / "cells" / "x.json").write_text("{}")
    return path


# ------------------------------------------------------------------------------------------- ownership
def test_new_run_gets_a_marker_with_a_run_id(tmp_path):
    run = _new_run(tmp_path / "run")
    marker = read_run_marker(run)
    assert marker["format"] == "recgym-run" and len(marker["run_id"]) == 32 and marker["name"] == "t"


def test_overwrite_deletes_a_marked_run_and_gives_a_new_id(tmp_path):
    run = _new_run(tmp_path / "run")
    old_id = read_run_marker(run)["run_id"]
    prepare_run_dir(_cfg(), run, resume=False, overwrite=True)
    assert not (run / "cells").exists() and read_run_marker(run)["run_id"] != old_id


def test_overwrite_refuses_an_old_run_without_marker_and_says_how_to_remove_it(tmp_path):
    run = _new_run(tmp_path / "run")
    (run / RUN_MARKER).unlink()
    with pytest.raises(RunError, match=r"looks like a run of an older recgym .*rm -r .*run"):
        prepare_run_dir(_cfg(), run, resume=False, overwrite=True)
    assert (run / "cells" / "x.json").is_file()


@pytest.mark.parametrize("content", ['{"format": "recgym-run", "run_id": "../x"}', "garbage", '{"format": "x"}', ""])
def test_overwrite_refuses_an_invalid_marker(tmp_path, content):
    run = _new_run(tmp_path / "run")
    (run / RUN_MARKER).write_text(content)
    with pytest.raises(RunError, match=r"refusing to delete|older recgym"):
        prepare_run_dir(_cfg(), run, resume=False, overwrite=True)
    assert (run / "cells" / "x.json").is_file()


def test_overwrite_of_a_git_repository_with_a_config_yaml_deletes_nothing(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".git").mkdir()
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / "config.yaml").write_text("name: t\n")
    monkeypatch.chdir(repo)
    with pytest.raises(RunError, match=r"refusing to delete \.: it is the current working directory"):
        prepare_run_dir(_cfg(), Path("."), resume=False, overwrite=True)
    assert (repo / ".git" / "HEAD").is_file() and (repo / "config.yaml").is_file()


def test_overwrite_never_deletes_the_working_directory_or_its_parents_even_when_marked(tmp_path, monkeypatch):
    run = _new_run(tmp_path / "run")
    (run / "sub").mkdir()
    monkeypatch.chdir(run / "sub")
    for target in (run, Path(".."), Path("../..")):
        with pytest.raises(RunError, match=r"current working directory or a parent of it"):
            prepare_run_dir(_cfg(), target, resume=False, overwrite=True)
    assert read_run_marker(run) is not None


def test_overwrite_never_deletes_home_even_when_marked(tmp_path, monkeypatch):
    run = _new_run(tmp_path / "home")
    monkeypatch.setenv("HOME", str(run))
    with pytest.raises(RunError, match=r"your home directory"):
        prepare_run_dir(_cfg(), run, resume=False, overwrite=True)
    monkeypatch.setenv("HOME", str(run / "cells"))
    with pytest.raises(RunError, match=r"your home directory or a parent of it"):
        prepare_run_dir(_cfg(), run, resume=False, overwrite=True)
    assert (run / "cells" / "x.json").is_file()


def test_filesystem_root_is_never_deletable():
    assert _refuse_to_delete(Path("/")) in ("it is the current working directory or a parent of it",
                                            "it is your home directory or a parent of it",
                                            "it is a filesystem root or mount point")


@pytest.mark.parametrize("where", [".git", "nested/.git"])
def test_overwrite_refuses_a_marked_run_holding_a_git_work_tree(tmp_path, where):
    run = _new_run(tmp_path / "run")
    (run / where).parent.mkdir(parents=True, exist_ok=True)
    (run / where).write_text("gitdir: elsewhere\n")
    with pytest.raises(RunError, match=r"git work tree"):
        prepare_run_dir(_cfg(), run, resume=False, overwrite=True)
    assert (run / where).is_file()


def test_overwrite_refuses_a_symlink_to_a_run(tmp_path):
    run = _new_run(tmp_path / "run")
    (tmp_path / "link").symlink_to(run)
    with pytest.raises(RunError, match=r"symbolic link"):
        prepare_run_dir(_cfg(), tmp_path / "link", resume=False, overwrite=True)
    assert (run / "cells" / "x.json").is_file()


def test_plain_folders_are_refused_with_a_clear_message(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match=r"not empty and holds no recgym run"):
        prepare_run_dir(_cfg(), tmp_path / "stuff", resume=False, overwrite=False)
    with pytest.raises(RunError, match=r"does not hold a recgym run .*refusing to delete"):
        prepare_run_dir(_cfg(), tmp_path / "stuff", resume=False, overwrite=True)
    assert (tmp_path / "stuff" / "notes.txt").read_text() == "mine"


def test_resume_adopts_an_old_run_without_marker(tmp_path):
    import yaml

    cfg = _cfg()
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    assert prepare_run_dir(cfg, run, resume=True, overwrite=False) is True
    assert read_run_marker(run) is not None


def test_resume_of_a_marked_run_that_never_wrote_its_config_starts_it_afresh(tmp_path):
    run = tmp_path / "run"
    prepare_run_dir(_cfg(), run, resume=False, overwrite=False)
    run_id = read_run_marker(run)["run_id"]
    assert prepare_run_dir(_cfg(), run, resume=True, overwrite=False) is False
    assert read_run_marker(run)["run_id"] == run_id


def test_one_process_per_run_folder(tmp_path):
    run = _new_run(tmp_path / "run")
    with RunLock(run):
        with pytest.raises(RunError, match=r"in use by another recgym process"):
            RunLock(run).__enter__()
        with pytest.raises(RunError, match=r"--overwrite: run folder .* is in use"):
            prepare_run_dir(_cfg(), run, resume=False, overwrite=True)
    assert (run / "cells" / "x.json").is_file()
    with RunLock(run):  # released
        pass


# ------------------------------------------------------------------------------------------- labels / paths
@pytest.mark.parametrize("label", ["../../x", "/tmp/x", "a/b", "a\\b", "", ".", "..", "x\x00y", "x\ny", "x" * 101,
                                   ".hidden", " padded "])
def test_bad_labels_fail_at_config_time_before_any_folder(tmp_path, monkeypatch, label):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"name": "t", "agents": [{"name": "random", "label": label}]}))
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "label: expected a file-name-safe label" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_good_labels_pass():
    for label in ("ppo", "PPO big (lr=3e-4)", "dqn-2_b", "é→ü"):
        assert AgentSpec(name="random", label=label).key == label


@pytest.mark.parametrize("part", ["..", "../x", "/etc", "a/b", "", "."])
def test_path_inside_refuses_escapes(tmp_path, part):
    with pytest.raises(UnsafePathError):
        path_inside(tmp_path, part)


def test_path_inside_refuses_a_symlink_leading_out(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "cells").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError, match=r"outside"):
        path_inside(tmp_path / "root", "cells", "x.json")
    assert path_inside(tmp_path / "root", "ok.json") == tmp_path / "root" / "ok.json"


def test_cell_paths_are_checked_even_if_validation_was_bypassed(tmp_path):
    spec = AgentSpec.model_construct(name="random", label="../../escape")
    with pytest.raises(UnsafePathError, match=r"escape"):
        cell_path(tmp_path, spec.key, 0)
    assert cell_path(tmp_path, "ppo", 3, "curves", ".csv") == tmp_path / "curves" / "ppo__seed3.csv"


# ------------------------------------------------------------------------------------------- temp files
_KILLED_WRITER = """
import os, sys, time
from recgym.common.io import atomic_write_bytes
def stall(fd):
    print("writing", flush=True)
    time.sleep(60)
os.fsync = stall
atomic_write_bytes(sys.argv[1], b"x" * 4096)
"""


def test_sigkill_mid_write_leaves_a_temp_file_that_the_next_start_removes(tmp_path):
    dest = tmp_path / "checkpoints" / "ppo__seed0" / "step_0000000064.pt"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(dest)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    temps = list(dest.parent.glob(".step_0000000064.pt.*.tmp"))
    assert len(temps) == 1 and not dest.exists()
    others = ["notes.tmp", ".hidden", ".x.abc.tmp", "y.abcd1234.tmp", ".z.ABCD1234.tmp", ".w.abcd1234.tmp.keep"]
    for name in others:
        (dest.parent / name).write_text("not recgym's")
    removed = clean_stale_temp_files(tmp_path, recursive=True)
    assert removed == temps and not temps[0].exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == sorted(others)


def test_a_failed_write_leaves_no_temp_file_and_the_old_content(tmp_path, monkeypatch):
    dest = tmp_path / "f.json"
    dest.write_text("old")

    def boom(src, dst):
        raise OSError("simulated failure")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(dest, b"new")
    monkeypatch.undo()
    assert dest.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_recent_temp_files_of_a_live_writer_are_kept_with_min_age(tmp_path):
    fresh = tmp_path / ".a.abcd1234.tmp"
    stale = tmp_path / ".b.abcd1234.tmp"
    fresh.write_text("live")
    stale.write_text("old")
    past = time.time() - 3600
    os.utime(stale, (past, past))
    assert clean_stale_temp_files(tmp_path, min_age_s=600) == [stale] and fresh.exists()


def test_restarting_a_run_cleans_temp_files_and_touches_nothing_else(tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\nagents:\n  - name: random\n")
    sets = [x for s in RUN_SETS for x in ("--set", s)]
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(out), *sets])
    assert res.exit_code == 0, res.output
    planted = [out / ".metrics.json.k3j4h5g6.tmp", out / "cells" / ".random__seed0.json.abcdefgh.tmp",
               out / "checkpoints" / "x__seed0" / ".step_0000000064.pt.zz_99zzz.tmp"]
    for p in planted:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial")
    keep = out / "cells" / "my-notes.tmp"
    keep.write_text("mine")
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(out), "--resume", *sets])
    assert res.exit_code == 0, res.output
    assert "removed 3 temp file(s) left by an interrupted write" in res.stderr
    assert not any(p.exists() for p in planted) and keep.read_text() == "mine"
    assert json.loads((out / "metrics.json").read_text())["records"]
