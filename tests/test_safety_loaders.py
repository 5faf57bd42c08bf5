"""No loader runs code: every file recgym reads is refused with a recgym error when it holds a pickle whose
``__reduce__`` would create a marker file, and the marker never appears. Plus schema checks per loader."""

from __future__ import annotations

import io
import json
import logging
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from recgym.agents import LoggedData, load_agent, make_agent
from recgym.agents.base import FORMAT
from recgym.common.errors import CorruptFileError, UnsafeFileError
from recgym.common.io import load_npz_arrays, load_torch_weights_only, read_json_file, sha256_bytes
from recgym.envs.ranking import RankingEnv
from recgym.experiments.cells import cell_finished
from recgym.experiments.config import load_config
from recgym.experiments.runner import RunError, prepare_run_dir
from recgym.experiments.training import find_resume_checkpoint


class Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a loader ran the pickle's code"


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_the_payload_really_runs_code_when_unpickled(tmp_path):
    target = tmp_path / "proof"
    pickle.loads(pickle.dumps(Payload(target)))
    assert target.exists()  # so the marker assertions below mean something


# ------------------------------------------------------------------------------------------- generic loaders
def test_torch_and_npz_helpers_refuse_pickles(marker):
    for data in (_torch_bytes({"x": Payload(marker)}), pickle.dumps(Payload(marker))):
        with pytest.raises(UnsafeFileError, match=r"f\.pt: refusing to load this thing.*could run code"):
            load_torch_weights_only(data, path="f.pt", what="thing")
    buf = io.BytesIO()
    np.savez(buf, a=np.array([Payload(marker)], dtype=object))
    for data in (buf.getvalue(), pickle.dumps(Payload(marker))):
        with pytest.raises(UnsafeFileError, match=r"x\.npz: refusing to load this log: it holds pickled"):
            load_npz_arrays(data, path="x.npz", what="log")


def test_torch_and_npz_helpers_name_truncation():
    data = _torch_bytes({"w": torch.zeros(100)})
    with pytest.raises(CorruptFileError, match=r"c\.pt: expected a checkpoint \(torch file\), received truncated"):
        load_torch_weights_only(data[: len(data) // 2], path="c.pt", what="checkpoint")
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.arange(10_000))
    with pytest.raises(CorruptFileError, match=r"x\.npz: expected a log \(\.npz arrays\), received truncated"):
        load_npz_arrays(buf.getvalue()[:300], path="x.npz", what="log")


def test_json_reader_turns_garbage_into_a_named_error(tmp_path, marker):
    p = tmp_path / "latest.json"
    for content in (pickle.dumps(Payload(marker)), b'{"step": 1', b"\xff\xfe\x00x", b"[" * 100_000):
        p.write_bytes(content)
        with pytest.raises(CorruptFileError, match=r"latest\.json: expected a checkpoint manifest"):
            read_json_file(p, what="checkpoint manifest")


# ------------------------------------------------------------------------------------------- checkpoints
def _manifest(name: str, data: bytes, step: int, cfg_hash: str = "h") -> dict:
    return {"format": "recgym-checkpoint", "version": 2, "step": step, "file": name, "size": len(data),
            "config_hash": cfg_hash, "sha256": sha256_bytes(data)}


@pytest.mark.parametrize("kind", ["torch-zip", "raw-pickle"])
def test_checkpoint_with_code_is_refused_even_with_a_valid_manifest(tmp_path, marker, kind):
    ck = tmp_path / "ck"
    ck.mkdir()
    obj = {"format": "recgym-checkpoint", "step": 64, "policy": Payload(marker)}
    data = _torch_bytes(obj) if kind == "torch-zip" else pickle.dumps(obj)
    name = "step_0000000064.pt"
    (ck / name).write_bytes(data)
    (ck / "step_0000000064.json").write_text(json.dumps(_manifest(name, data, 64)))
    (ck / "latest.json").write_text(json.dumps(_manifest(name, data, 64)))
    notes: list[str] = []
    assert find_resume_checkpoint(ck, "h", notes.append) is None
    assert len(notes) == 1 and "could run code" in notes[0] and "training this cell from step 0" in notes[0]
    assert (ck / f"{name}.rejected").is_file() and not (ck / name).exists()


def test_latest_json_holding_a_pickle_is_a_named_error(tmp_path, marker):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "latest.json").write_bytes(pickle.dumps(Payload(marker)))
    notes: list[str] = []
    assert find_resume_checkpoint(ck, "h", notes.append) is None
    assert "latest.json: expected a checkpoint manifest" in notes[0]


# ------------------------------------------------------------------------------------------- agent files
@pytest.fixture(scope="module")
def env(small_world):
    return RankingEnv(world=small_world, num_candidates=10, slate_size=3, candidates={"pool_size": 60})


def _container(payload_bytes: bytes, **over) -> bytes:
    manifest = {"format": FORMAT, "format_version": 2, "agent": "random", "payload": "agent.pt",
                "payload_size": len(payload_bytes), "payload_sha256": sha256_bytes(payload_bytes), **over}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        zf.writestr("agent.pt", payload_bytes)
    return out.getvalue()


@pytest.mark.parametrize("kind", ["v2-container", "v1-bare-torch", "raw-pickle"])
def test_agent_file_with_code_is_refused(tmp_path, marker, kind):
    evil = {"format": FORMAT, "format_version": 1, "agent": "random", "config": {}, "state": Payload(marker)}
    data = {"v2-container": lambda: _container(_torch_bytes(evil)), "v1-bare-torch": lambda: _torch_bytes(evil),
            "raw-pickle": lambda: pickle.dumps(evil)}[kind]()
    path = tmp_path / "agent.pt"
    path.write_bytes(data)
    with pytest.raises(CorruptFileError, match=r"agent\.pt"):  # UnsafeFileError is a CorruptFileError
        load_agent(path)


def test_agent_file_round_trip_has_a_verified_manifest(tmp_path, env):
    agent = make_agent("popularity", env, seed=3)
    agent.clicks[:5] = 7.0
    path = agent.save(tmp_path / "pop.agent")
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["payload_sha256"] == sha256_bytes(zf.read("agent.pt"))
    assert manifest["format_version"] == 2 and manifest["agent"] == "popularity"
    assert np.array_equal(load_agent(path).clicks, agent.clicks)


def test_agent_file_flipped_byte_and_truncation_are_caught_before_unpickling(tmp_path, env):
    path = make_agent("linucb", env, seed=0).save(tmp_path / "a.agent")
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("agent.pt")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + info.file_size // 2] ^= 0xFF
    (tmp_path / "flip.agent").write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match=r"flip\.agent: agent\.pt: (sha256 does not match|truncated or corrupt)"):
        load_agent(tmp_path / "flip.agent")
    (tmp_path / "cut.agent").write_bytes(path.read_bytes()[: info.file_size // 2])
    with pytest.raises(CorruptFileError, match=r"cut\.agent: expected a 'recgym-agent' file \(zip\)"):
        load_agent(tmp_path / "cut.agent")


@pytest.mark.parametrize("drop, field", [("state", "state"), ("config", "config"), ("item_embeddings", "item_embeddings"),
                                          ("env.table_hash", "env.table_hash"), ("agent", "agent")])
def test_agent_file_missing_field_is_named(tmp_path, env, drop, field):
    good = make_agent("random", env, seed=0).save(tmp_path / "good.agent")
    with zipfile.ZipFile(good) as zf:
        payload = torch.load(io.BytesIO(zf.read("agent.pt")), weights_only=True)
    if "." in drop:
        outer, inner = drop.split(".")
        del payload[outer][inner]
    else:
        del payload[drop]
    path = tmp_path / "bad.agent"
    path.write_bytes(_container(_torch_bytes(payload)))
    with pytest.raises(CorruptFileError, match=rf"bad\.agent: field '{field}': expected .*missing"):
        load_agent(path)


def test_agent_file_state_that_does_not_fit_is_named(tmp_path, env):
    good = make_agent("linucb", env, seed=0).save(tmp_path / "good.agent")
    with zipfile.ZipFile(good) as zf:
        payload = torch.load(io.BytesIO(zf.read("agent.pt")), weights_only=True)
    del payload["state"]["A"]
    path = tmp_path / "bad.agent"
    path.write_bytes(_container(_torch_bytes(payload)))
    with pytest.raises(CorruptFileError, match=r"bad\.agent: field 'state': does not fit agent 'linucb' \(KeyError"):
        load_agent(path)


def test_version_1_agent_files_still_load(tmp_path, env):
    agent = make_agent("popularity", env, seed=0)
    agent.clicks[2] = 5.0
    v2 = agent.save(tmp_path / "v2.agent")
    with zipfile.ZipFile(v2) as zf:
        payload = torch.load(io.BytesIO(zf.read("agent.pt")), weights_only=True)
    payload["format_version"] = 1
    (tmp_path / "v1.pt").write_bytes(_torch_bytes(payload))
    assert load_agent(tmp_path / "v1.pt").clicks[2] == 5.0


# ------------------------------------------------------------------------------------------- logged data
def _log(t: int = 6, n: int = 5, k: int = 2, d: int = 4, m: int = 20) -> LoggedData:
    rng = np.random.default_rng(0)
    cand = np.stack([rng.choice(m, n, replace=False) for _ in range(t)])
    slate = np.tile(np.arange(k), (t, 1))
    return LoggedData(
        user=np.arange(t), profile=rng.normal(size=(t, d)), history=np.zeros((t, d)), context=np.zeros((t, 4)),
        candidates=cand, mask=np.ones((t, n)), slate=slate, slate_items=np.take_along_axis(cand, slate, 1),
        clicks=np.zeros((t, k)), propensity=np.full((t, k), 0.5), reward=np.zeros(t),
        item_embeddings=rng.normal(size=(m, d)).astype(np.float32), meta={"seed": 0},
    )


def _resave(src: Path, dst: Path, **changes) -> Path:
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(dst, **arrays)
    return dst


def test_logged_data_with_code_is_refused(tmp_path, marker):
    good = _log().save(tmp_path / "log.npz")
    with np.load(good, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(tmp_path / "evil.npz", **{**arrays, "reward": np.array([Payload(marker)] * 6, dtype=object)})
    with pytest.raises(UnsafeFileError, match=r"evil\.npz: refusing to load this recgym-log file"):
        LoggedData.load(tmp_path / "evil.npz")
    (tmp_path / "raw.npz").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(UnsafeFileError, match=r"raw\.npz"):
        LoggedData.load(tmp_path / "raw.npz")


def _bad_prop(v: float) -> np.ndarray:
    p = np.full((6, 2), 0.5, np.float32)
    p[3, 1] = v
    return p


@pytest.mark.parametrize("changes, message", [
    ({"reward": None}, r"fields \['reward'\]: expected arrays, received nothing \(missing\)"),
    ({"meta": None}, r"field 'meta': expected a JSON string, received nothing"),
    ({"meta": np.array("{not json")}, r"field 'meta': expected JSON"),
    ({"meta": np.array(json.dumps({"format": "other", "version": 1}))}, r"field 'meta': expected format 'recgym-log'"),
    ({"profile": np.zeros((6, 4), np.int64)}, r"field 'profile': expected a float32-compatible array, received dtype int64"),
    ({"user": np.zeros(6, np.float64)}, r"field 'user': expected a int64-compatible array, received dtype float64"),
    ({"reward": np.array(["a"] * 6)}, r"field 'reward': expected a float32-compatible array, received dtype <U1"),
    ({"context": np.zeros((6, 3), np.float32)}, r"LoggedData\.context: expected shape \(6, 4\), received \(6, 3\)"),
    ({"profile": np.full((6, 4), np.nan, np.float32)}, r"LoggedData\.profile: expected finite values, received NaN/inf"),
    ({"reward": np.array([0, 0, np.inf, 0, 0, 0], np.float32)}, r"LoggedData\.reward: expected finite values.*row 2"),
    ({"propensity": _bad_prop(0.0)}, r"LoggedData\.propensity: expected values in \(0, 1\] or NaN.*received 0\.0 at row 3"),
    ({"propensity": _bad_prop(1.5)}, r"LoggedData\.propensity: expected values in \(0, 1\].*received 1\.5 at row 3"),
    ({"clicks": np.full((6, 2), 2, np.int8)}, r"LoggedData\.clicks: expected 0/1 values"),
    ({"item_embeddings": np.full((20, 4), np.inf, np.float32)}, r"LoggedData\.item_embeddings: expected finite"),
])
def test_logged_data_schema_errors_name_file_and_field(tmp_path, changes, message):
    good = _log().save(tmp_path / "log.npz")
    bad = _resave(good, tmp_path / "bad.npz", **changes)
    with pytest.raises(CorruptFileError, match=r"LoggedData\.load\(.*bad\.npz\): " + message):
        LoggedData.load(bad)


def test_logged_data_unknown_propensity_and_round_trip_still_load(tmp_path):
    data = _log()
    data.propensity[:] = np.nan  # real logs without propensities
    back = LoggedData.load(data.save(tmp_path / "log.npz"))
    assert np.isnan(back.propensity).all() and len(back) == 6


def test_truncated_logged_data_is_a_named_error(tmp_path):
    good = _log().save(tmp_path / "log.npz")
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:200])
    with pytest.raises(CorruptFileError, match=r"cut\.npz: expected a recgym-log file"):
        LoggedData.load(tmp_path / "cut.npz")


# ------------------------------------------------------------------------------------------- fitted-world cache
def test_fitted_world_cache_with_code_is_refused_and_refitted(tmp_path, marker, caplog):
    from recgym.envs.worlds.fitted import _load_cached

    folder = tmp_path / "worlds" / "w"
    folder.mkdir(parents=True)
    buf = io.BytesIO()
    np.savez(buf, user_latent=np.array([Payload(marker)], dtype=object))
    raw = buf.getvalue()
    (folder / "arrays.npz").write_bytes(raw)
    (folder / "manifest.json").write_text(json.dumps({"key": "k", "arrays_sha256": sha256_bytes(raw)}))
    with caplog.at_level(logging.WARNING):
        assert _load_cached(folder, "k") is None
    assert "could run code" in caplog.text and "refitting" in caplog.text


# ------------------------------------------------------------------------------------------- run metadata
def _cfg():
    return load_config(raw={"name": "t", "agents": [{"name": "random"}], "evaluation": {"seeds": [0]}})


def test_cell_arrays_with_code_are_refused_by_the_report(tmp_path, marker):
    from recgym.experiments.report import _load_cells
    from recgym.experiments.runner import save_cell

    cells = tmp_path / "cells"
    save_cell(cells / "random__seed0.json", {"all": {"ctr": 0.1}}, {"x": np.arange(3)}, {"cell_hash": "c"})
    assert cell_finished(cells / "random__seed0.json", "c")
    np.savez(cells / "random__seed0.npz", x=np.array([Payload(marker)], dtype=object))
    assert not cell_finished(cells / "random__seed0.json", "c")  # sha256 changed: the cell is re-run
    with pytest.raises(UnsafeFileError, match=r"random__seed0\.npz: refusing to load"):
        _load_cells(_cfg(), tmp_path)
    (cells / "random__seed0.json").write_bytes(pickle.dumps(Payload(marker)))
    assert not cell_finished(cells / "random__seed0.json", "c")
    with pytest.raises(CorruptFileError, match=r"random__seed0\.json: expected an evaluation cell"):
        _load_cells(_cfg(), tmp_path)


@pytest.mark.parametrize("content, message", [
    ("!!python/object/apply:os.system ['touch {marker}']\n", r"config\.yaml, line 1, column 1: expected valid YAML"),
    ("a: &a [1, 1]\nb: &b [*a, *a]\nc: [*b, *b]\n", r"the config differs"),
    (b"\xff\xfe\x00n\x00a", r"config\.yaml: expected UTF-8 text"),
    ("name: [unclosed\n", r"config\.yaml, line 2, column 1: expected valid YAML"),
    ("- a list\n", r"config\.yaml: expected a mapping"),
])
def test_run_config_yaml_is_read_safely_on_resume(tmp_path, marker, content, message):
    out = tmp_path / "run"
    out.mkdir()
    data = content.encode() if isinstance(content, str) else content
    (out / "config.yaml").write_bytes(data.replace(b"{marker}", str(marker).encode()))
    with pytest.raises(RunError, match=message):
        prepare_run_dir(_cfg(), out, resume=True, overwrite=False)
