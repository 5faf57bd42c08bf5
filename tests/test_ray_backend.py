"""``recgym run --backend ray``: the same run folder and bit-identical metrics as the sequential backend, a
worker killed mid-cell has its cell retried, --resume across backends, a clear error without Ray, and a
two-node cluster on one machine (slow tier)."""

from __future__ import annotations

import builtins
import io
import json
import os
import re
from pathlib import Path

import pytest
from rich.console import Console

from recgym.experiments.config import load_config
from recgym.experiments.runner import RunError, run_experiment

RAW = {"name": "ray", "world": "analytic", "world_config": {"n_items": 40, "n_users": 12},
       "agents": [{"name": "random"}, {"name": "popularity"}, {"name": "ppo", "hyperparams": {"n_steps": 8}},
                  {"name": "oracle"}],
       "training": {"total_timesteps": 256, "num_envs": 8, "checkpoint_every": 128, "curve_users": 4,
                    "logging": {"steps": 10, "num_envs": 8}},
       "evaluation": {"cohort": "all", "users_per_seed": 6, "seeds": [0, 1]},
       "output": {"plots": False, "tensorboard": False}}
KILLED = "ppo__seed1"  # the cell whose worker is killed once (see the ray fixture)


def _ray():
    if os.environ.get("RECGYM_REQUIRE_EXTRAS"):  # CI installs the extras: a missing Ray is a failure there
        import ray
        return ray
    return pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")


def _run(out: Path, **kw):
    return run_experiment(load_config(raw=RAW), out, console=Console(file=io.StringIO()), **kw)


def _records(out: Path) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())["records"]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    ray = _ray()
    marker = tmp_path_factory.mktemp("fault") / "killed"
    os.environ["RECGYM_FAULT_KILL_CELL"] = f"{KILLED}:{marker}"  # forwarded to the workers at init
    from recgym.experiments.ray_backend import start_ray

    start_ray(2, None)
    yield marker
    ray.shutdown()
    del os.environ["RECGYM_FAULT_KILL_CELL"]


@pytest.mark.smoke
def test_ray_backend_is_bit_identical_and_retries_a_killed_worker(tmp_path, local_ray):
    _run(tmp_path / "seq")
    _run(tmp_path / "ray", backend="ray")
    assert local_ray.is_file(), "the fault was not injected: the retry path was not exercised"
    assert _records(tmp_path / "ray") == _records(tmp_path / "seq")  # evaluation bit-identical
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run["sessions"][-1]["backend"] == "ray" and run["sessions"][-1]["failed_cells"] == []
    ck = json.loads((tmp_path / "ray" / "checkpoints" / KILLED / "latest.json").read_text())
    assert ck["step"] >= 256  # the retried cell trained its whole budget
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(p.name for p in (tmp_path / "seq").iterdir())


@pytest.mark.smoke
def test_resume_works_across_backends(tmp_path, local_ray):
    out = tmp_path / "run"
    _run(out)  # sequential
    before = _records(out)
    for p in (out / "cells").glob("random__seed1.*"):
        p.unlink()  # one cell lost
    untouched = (out / "cells" / "oracle__seed0.json").stat().st_mtime_ns
    _run(out, resume=True, backend="ray")
    assert _records(out) == before
    assert (out / "cells" / "oracle__seed0.json").stat().st_mtime_ns == untouched  # only the lost cell re-ran


def test_without_ray_the_error_names_the_install_command(tmp_path, monkeypatch):
    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RunError, match=r"needs Ray.*pip install -e \"\.\[ray\]\""):
        _run(tmp_path / "run", backend="ray")
    assert not (tmp_path / "run").exists()  # refused before any folder


@pytest.mark.slow
def test_two_node_cluster_on_one_machine(tmp_path):
    """A head and a worker node (Ray's test cluster utilities); the run joins it with --ray-address."""
    ray = _ray()
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        _run(tmp_path / "seq")
        log = io.StringIO()
        run_experiment(load_config(raw=RAW), tmp_path / "ray", console=Console(file=log), backend="ray",
                       ray_address=cluster.address)
        assert "Ray: 8 cells ran on 2 nodes" in log.getvalue()  # both nodes worked
        assert not ray.is_initialized()  # the run's connection to the cluster closed with it
        assert _records(tmp_path / "ray") == _records(tmp_path / "seq")
    finally:
        ray.shutdown()
        cluster.shutdown()


FAST = {**RAW, "agents": [{"name": "ppo", "label": "fast", "hyperparams": {"trainer": "fast", "n_steps": 8}},
                          {"name": "random"}],
        "training": {**RAW["training"], "batch_seeds": True},
        "evaluation": {**RAW["evaluation"], "seeds": [0, 1, 2]}}


def _trained_seeds(text: str) -> list[str]:
    """The seeds each batched job trained, from the run's notices (one per job)."""
    return re.findall(r"fast: seeds ([\d, ]+) trained as one batched job", text)


@pytest.mark.smoke
def test_ray_trains_a_seed_batched_agent_once_in_one_task(tmp_path, local_ray):
    """PPO trainer 'fast': one Ray task trains the three seeds as one batch (each seed exactly once) and the
    metrics equal the sequential backend's."""
    logs = {}
    for backend in ("sequential", "ray"):
        buf = io.StringIO()
        run_experiment(load_config(raw=FAST), tmp_path / backend, console=Console(file=buf, width=400), backend=backend)
        logs[backend] = buf.getvalue()
    assert _trained_seeds(logs["ray"]) == ["0, 1, 2"], logs["ray"][-3000:]
    assert _trained_seeds(logs["sequential"]) == ["0, 1, 2"]
    assert _records(tmp_path / "ray") == _records(tmp_path / "sequential")
    for s in (0, 1, 2):
        assert json.loads((tmp_path / "ray" / "checkpoints" / f"fast__seed{s}" / "latest.json").read_text())["step"] >= 256


def test_ray_task_groups_follow_training_batch_seeds():
    import torch

    from recgym.experiments.cells import pending_cells
    from recgym.experiments.ray_backend import task_groups

    one_per_seed = [[0], [1], [2], [0], [1], [2]]
    # auto: batched on CUDA only (on CPU separate seed jobs cost no more and run in parallel)
    auto = [[0, 1, 2], [0], [1], [2]] if torch.cuda.is_available() else one_per_seed
    for batch, expected in ((True, [[0, 1, 2], [0], [1], [2]]), (False, one_per_seed), ("auto", auto)):
        cfg = load_config(raw={**FAST, "training": {**FAST["training"], "batch_seeds": batch}})
        groups = task_groups(cfg, pending_cells(cfg, Path("/nonexistent"), "h"))
        assert [[c.seed for c in g] for g in groups] == expected
        assert [{c.spec.key for c in g} for g in groups][0] == {"fast"}
