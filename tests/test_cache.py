"""Embedding cache: round trip, verification on load, rebuild-or-refuse, interrupted writes."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recgym.common import UnsafeFileError
from recgym.common.io import sha256_file
from recgym.encoders import CacheError, HashingEncoder, cache_key, encode_with_cache, load_cache
from recgym.encoders import cache as cache_mod
from recgym.encoders.cache import UnsafeCacheError

TEXTS = [f"item {i}: a story about {w} and {v}" for i, (w, v) in
         enumerate(zip(["space", "love", "war", "food", "music", "crime"] * 3, ["ships", "loss", "peace"] * 6, strict=True))]


@pytest.fixture
def enc() -> HashingEncoder:
    return HashingEncoder(dim=32)


@pytest.fixture
def built(enc: HashingEncoder, tmp_path: Path) -> cache_mod.CachedEmbeddings:
    return encode_with_cache(enc, TEXTS, tmp_path, name="items")


def test_round_trip(enc: HashingEncoder, tmp_path: Path, built: cache_mod.CachedEmbeddings) -> None:
    assert not built.hit and built.truncated == 0
    assert built.path == tmp_path / "embeddings" / f"items-{cache_key(enc, TEXTS)[:16]}"
    assert sorted(p.name for p in built.path.iterdir()) == ["manifest.json", "vectors.npy"]
    np.testing.assert_array_equal(built.vectors, enc.encode(TEXTS))
    m = json.loads((built.path / "manifest.json").read_text())
    assert (m["n"], m["dim"], m["dtype"], m["fingerprint"]) == (len(TEXTS), 32, "float32", enc.fingerprint)
    for field in ("model", "revision", "pooling", "normalization", "texts_sha256", "vectors_sha256",
                  "recgym_version", "truncated", "max_length"):
        assert field in m
    again = encode_with_cache(enc, TEXTS, tmp_path, name="items")
    assert again.hit and again.path == built.path
    np.testing.assert_array_equal(again.vectors, built.vectors)
    assert again.vectors.dtype == np.float32


def test_default_dir_from_env(enc: HashingEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECGYM_CACHE", str(tmp_path / "rc"))
    res = encode_with_cache(enc, TEXTS[:3])
    assert res.path.parent == tmp_path / "rc" / "embeddings"


def test_new_key_for_changed_order_or_encoder(enc: HashingEncoder, tmp_path: Path,
                                              built: cache_mod.CachedEmbeddings) -> None:
    rev = encode_with_cache(enc, TEXTS[::-1], tmp_path, name="items")
    assert not rev.hit and rev.path != built.path
    np.testing.assert_array_equal(rev.vectors, built.vectors[::-1])
    other = encode_with_cache(HashingEncoder(dim=32, seed=7), TEXTS, tmp_path, name="items")
    assert not other.hit and other.path != built.path


# --- detection: each corruption is named ------------------------------------------------------------------


def _resave(path: Path, arr: np.ndarray) -> None:
    np.save(path / "vectors.npy", arr, allow_pickle=False)


def test_truncated_vectors_file(built: cache_mod.CachedEmbeddings) -> None:
    f = built.path / "vectors.npy"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CacheError, match=r"vectors\.npy truncated or corrupt"):
        load_cache(built.path)


def test_nan_row_named(built: cache_mod.CachedEmbeddings) -> None:
    v = built.vectors.copy()
    v[5, 3] = np.nan
    v[9, 0] = np.inf
    _resave(built.path, v)
    with pytest.raises(CacheError, match=r"non-finite values \(NaN/inf\) in 2 row\(s\), first bad row 5"):
        load_cache(built.path)


def test_wrong_dim(enc: HashingEncoder, built: cache_mod.CachedEmbeddings) -> None:
    with pytest.raises(CacheError, match=r"dim: expected 16 \(from the encoder\), found 32"):
        load_cache(built.path, encoder=HashingEncoder(dim=16))
    _resave(built.path, built.vectors[:, :31].copy())
    with pytest.raises(CacheError, match=rf"shape: expected \({len(TEXTS)}, 32\) from the manifest, found "
                                         rf"\({len(TEXTS)}, 31\)"):
        load_cache(built.path, encoder=enc)


def test_wrong_dtype(built: cache_mod.CachedEmbeddings) -> None:
    _resave(built.path, built.vectors.astype(np.float64))
    with pytest.raises(CacheError, match=r"dtype: expected float32, found float64"):
        load_cache(built.path)


def test_changed_text_order(built: cache_mod.CachedEmbeddings) -> None:
    with pytest.raises(CacheError, match=r"texts_sha256: expected [0-9a-f]{64}, found [0-9a-f]{64} "
                                         r"\(texts changed or reordered\)"):
        load_cache(built.path, texts=TEXTS[::-1])
    with pytest.raises(CacheError, match=rf"n: expected {len(TEXTS) - 1} texts, found {len(TEXTS)}"):
        load_cache(built.path, texts=TEXTS[:-1])


def test_different_model(built: cache_mod.CachedEmbeddings) -> None:
    with pytest.raises(CacheError, match=r"seed: expected 3 \(from the encoder\), found 0"):
        load_cache(built.path, encoder=HashingEncoder(dim=32, seed=3))
    with pytest.raises(CacheError, match=r"ngram: expected \[1, 1\] \(from the encoder\), found \[1, 2\]"):
        load_cache(built.path, encoder=HashingEncoder(dim=32, ngram=(1, 1)))


def test_content_changed_behind_the_manifest(built: cache_mod.CachedEmbeddings) -> None:
    v = built.vectors.copy()
    v[0] = -v[0]  # still finite, right shape and dtype
    _resave(built.path, v)
    with pytest.raises(CacheError, match=r"vectors_sha256: expected [0-9a-f]{64}, found [0-9a-f]{64}"):
        load_cache(built.path)


def test_unreadable_manifest(built: cache_mod.CachedEmbeddings) -> None:
    (built.path / "manifest.json").write_text('{"n": 3, "dim"')
    with pytest.raises(CacheError, match=r"manifest\.json unreadable or incomplete"):
        load_cache(built.path)


def test_missing_folder_is_partial(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match=r"partial cache: manifest missing \(folder empty or missing\)"):
        load_cache(tmp_path / "nothing-here")


# --- rebuild or refuse ------------------------------------------------------------------------------------


def test_stale_cache_rebuilt_with_warning(enc: HashingEncoder, tmp_path: Path, built: cache_mod.CachedEmbeddings,
                                          caplog: pytest.LogCaptureFixture) -> None:
    v = built.vectors.copy()
    v[2] = np.nan
    _resave(built.path, v)
    with caplog.at_level(logging.WARNING, logger="recgym.encoders.cache"):
        res = encode_with_cache(enc, TEXTS, tmp_path, name="items")
    assert not res.hit
    assert "first bad row 2; rebuilding it" in caplog.text
    np.testing.assert_array_equal(res.vectors, built.vectors)
    assert load_cache(res.path, encoder=enc, texts=TEXTS).hit


def test_stale_cache_refused_without_rebuild(enc: HashingEncoder, tmp_path: Path,
                                             built: cache_mod.CachedEmbeddings) -> None:
    (built.path / "vectors.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CacheError, match=r"truncated or corrupt.*refusing to use it \(rebuild_stale=False\)"):
        encode_with_cache(enc, TEXTS, tmp_path, name="items", rebuild_stale=False)


# --- interrupted writes -----------------------------------------------------------------------------------


class _Crash(BaseException):
    """Stands for the process being killed (not an Exception, so nothing may swallow it)."""


def _crash_on_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(path: Any, obj: Any) -> None:
        raise _Crash(f"killed before writing {path}")

    monkeypatch.setattr(cache_mod, "atomic_write_json", crash)


def test_interrupted_first_write_publishes_nothing(enc: HashingEncoder, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _crash_on_manifest(monkeypatch)
    with pytest.raises(_Crash):
        encode_with_cache(enc, TEXTS, tmp_path, name="items")
    folder = tmp_path / "embeddings" / f"items-{cache_key(enc, TEXTS)[:16]}"
    assert not folder.exists()  # built in the staging area, never published
    with pytest.raises(CacheError, match=r"partial cache: manifest missing \(folder empty or missing\)"):
        load_cache(folder)
    monkeypatch.undo()
    res = encode_with_cache(enc, TEXTS, tmp_path, name="items")  # next run rebuilds
    assert not res.hit
    assert encode_with_cache(enc, TEXTS, tmp_path, name="items").hit


def test_interrupted_rebuild_leaves_the_stale_entry_refused(enc: HashingEncoder, tmp_path: Path,
                                                            built: cache_mod.CachedEmbeddings,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _resave(built.path, np.full_like(built.vectors, np.nan))  # stale: forces a rebuild
    _crash_on_manifest(monkeypatch)
    with pytest.raises(_Crash):
        encode_with_cache(enc, TEXTS, tmp_path, name="items")
    with pytest.raises(CacheError, match=r"non-finite values"):
        load_cache(built.path)
    monkeypatch.undo()
    res = encode_with_cache(enc, TEXTS, tmp_path, name="items")
    assert not res.hit and res.path == built.path
    np.testing.assert_array_equal(load_cache(built.path, encoder=enc, texts=TEXTS).vectors, built.vectors)


def test_interrupted_vectors_write_keeps_no_half_file(enc: HashingEncoder, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def crash_fsync(fd: int) -> None:
        raise _Crash("killed mid-write")

    monkeypatch.setattr("recgym.common.io.os.fsync", crash_fsync)  # dies after the bytes, before the rename
    with pytest.raises(_Crash):
        encode_with_cache(enc, TEXTS, tmp_path, name="items")
    emb = tmp_path / "embeddings"
    assert sorted(p.name for p in emb.iterdir()) == [".staging"]
    assert [p.name for p in (emb / ".staging").rglob("*") if not p.name.endswith(".lock")] == []
    with pytest.raises(CacheError, match=r"partial cache"):
        load_cache(emb / f"items-{cache_key(enc, TEXTS)[:16]}")


# --- killed writers, leftovers, concurrent writers (issue 10) ----------------------------------------------

_KILL_AT = {
    # SIGKILL (no cleanup handlers run) at a point inside the cache write.
    "vectors-fsync": "import recgym.common.io as m; m.os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)",
    "manifest": "cache.atomic_write_json = lambda *a: os.kill(os.getpid(), signal.SIGKILL)",
    "publish": "cache._publish = lambda *a: os.kill(os.getpid(), signal.SIGKILL)",
}


def _run_killed(kill_at: str, cache_dir: Path) -> None:
    code = (
        "import os, signal\n"
        "from recgym.encoders import HashingEncoder, cache\n"
        f"{_KILL_AT[kill_at]}\n"
        f"cache.encode_with_cache(HashingEncoder(dim=32), {TEXTS!r}, {str(cache_dir)!r}, name='items')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


@pytest.mark.parametrize("kill_at", sorted(_KILL_AT))
def test_killed_write_leftovers_cleaned_on_next_start(enc: HashingEncoder, tmp_path: Path, kill_at: str) -> None:
    _run_killed(kill_at, tmp_path)
    emb = tmp_path / "embeddings"
    entry = f"items-{cache_key(enc, TEXTS)[:16]}"
    leftovers = [p for p in (emb / ".staging" / entry).rglob("*.tmp")]
    assert leftovers, "the kill should have left a build folder or temp file behind"
    with pytest.raises(CacheError, match=r"partial cache"):
        load_cache(emb / entry)  # nothing published
    (emb / ".staging" / "notes.txt").write_text("not ours")  # names outside recgym's temp pattern are kept
    res = encode_with_cache(enc, TEXTS, tmp_path, name="items")  # the next start
    assert not res.hit
    np.testing.assert_array_equal(res.vectors, enc.encode(TEXTS))
    assert not [p for p in emb.rglob("*.tmp")]
    assert (emb / ".staging" / "notes.txt").read_text() == "not ours"


def test_leftovers_of_a_live_builder_are_kept(tmp_path: Path) -> None:
    area = tmp_path / "embeddings" / ".staging" / "items-0123456789abcdef"
    (area / ".build.abcd1234.tmp").mkdir(parents=True)
    (area / ".build.abcd1234.tmp" / "vectors.npy").write_bytes(b"in progress")
    with cache_mod._entry_lock(area.parent / f"{area.name}.lock"):  # another builder holds this entry
        assert cache_mod.clean_cache_leftovers(tmp_path) == []
        assert (area / ".build.abcd1234.tmp" / "vectors.npy").is_file()
    assert cache_mod.clean_cache_leftovers(tmp_path) == [area / ".build.abcd1234.tmp"]
    assert not area.exists()


def test_old_protocol_temp_files_in_entries_cleaned_only_when_old(built: cache_mod.CachedEmbeddings,
                                                                 tmp_path: Path) -> None:
    fresh, old = built.path / ".vectors.npy.fresh123.tmp", built.path / ".vectors.npy.old12345.tmp"
    fresh.write_bytes(b"x")
    old.write_bytes(b"x")
    os.utime(old, (1.0, 1.0))
    assert cache_mod.clean_cache_leftovers(tmp_path) == [old]
    assert fresh.exists() and load_cache(built.path).hit


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def test_pickled_vectors_file_refused_and_never_run(enc: HashingEncoder, tmp_path: Path,
                                                    built: cache_mod.CachedEmbeddings) -> None:
    marker = tmp_path / "pwned"
    evil = np.empty((len(TEXTS), 32), dtype=object)
    evil[0, 0] = _Marker(str(marker))
    np.save(built.path / "vectors.npy", evil, allow_pickle=True)
    manifest = json.loads((built.path / "manifest.json").read_text())  # a consistent, crafted manifest
    manifest["vectors_sha256"] = sha256_file(built.path / "vectors.npy")
    (built.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnsafeCacheError, match=r"vectors\.npy holds pickled Python objects; refused unread"):
        load_cache(built.path, encoder=enc, texts=TEXTS)
    assert isinstance(UnsafeCacheError("x"), (CacheError, UnsafeFileError))
    res = encode_with_cache(enc, TEXTS, tmp_path, name="items")  # rebuilt, not loaded
    assert not res.hit
    np.testing.assert_array_equal(res.vectors, built.vectors)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [({"n": True}, r"n: expected an int >= 1, found True"),
     ({"dim": "32"}, r"dim: expected an int >= 1, found '32'"),
     ({"truncated": "many"}, r"truncated: expected an int in \[0, 18\], found 'many'"),
     ({"encoder_fields": [1]}, r"encoder_fields: expected an object, found \[1\]"),
     ({"format_version": 99}, r"format_version: expected 1, found 99")],
)
def test_crafted_manifest_fields_named(built: cache_mod.CachedEmbeddings, edit: dict[str, Any], pattern: str) -> None:
    manifest = json.loads((built.path / "manifest.json").read_text())
    (built.path / "manifest.json").write_text(json.dumps({**manifest, **edit}))
    with pytest.raises(CacheError, match=pattern):
        load_cache(built.path)


def test_oversized_vectors_file_refused_unread(built: cache_mod.CachedEmbeddings) -> None:
    with (built.path / "vectors.npy").open("ab") as fh:
        fh.write(b"\0" * (cache_mod._NPY_HEADER_SLACK + 1))
    with pytest.raises(CacheError, match=r"vectors\.npy: expected at most \d+ bytes for \(18, 32\) float32"):
        load_cache(built.path)


def _stress_worker(cache_dir: str, worker: int, calls: int) -> int:
    """Encode through the cache over shared text sets; every 7th call, corrupt an entry behind the
    manifest (forcing the others to rebuild while they read). Returns the number of calls verified."""
    from recgym.common import atomic_write_bytes

    enc = HashingEncoder(dim=32)
    sets = [TEXTS[i:] + TEXTS[:i] for i in range(3)]
    rng = np.random.default_rng(worker)
    for call in range(calls):
        texts = sets[int(rng.integers(len(sets)))]
        res = encode_with_cache(enc, texts, cache_dir, name="stress")
        if not np.array_equal(res.vectors, enc.encode(texts)):
            raise AssertionError(f"worker {worker} call {call}: wrong vectors served from {res.path}")
        if call % 7 == worker % 7:
            buf = io.BytesIO()
            np.save(buf, np.full((len(texts), 32), np.nan, dtype=np.float32))
            atomic_write_bytes(res.path / "vectors.npy", buf.getvalue())
    return calls


def test_concurrent_writers_serve_correct_vectors(tmp_path: Path) -> None:
    workers, calls = 4, 40
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        done = list(pool.map(_stress_worker, [str(tmp_path)] * workers, range(workers), [calls] * workers))
    assert done == [calls] * workers  # no worker crashed or got a wrong vector
    emb = tmp_path / "embeddings"
    assert len([p for p in emb.iterdir() if not p.name.startswith(".")]) == 3
    assert not [p for p in emb.rglob("*.tmp")]


# --- bad input --------------------------------------------------------------------------------------------


class _BadEncoder:
    dim = 4
    fingerprint = "bad"

    def __init__(self, out: np.ndarray) -> None:
        self.out = out

    def encode(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        return self.out

    def describe(self) -> dict[str, Any]:
        return {"model": "bad", "dim": 4}


@pytest.mark.parametrize(
    ("out", "pattern"),
    [(np.zeros((2, 4), dtype=np.float64), r"expected ndarray float32 of shape \(2, 4\)"),
     (np.zeros((3, 4), dtype=np.float32), r"expected ndarray float32 of shape \(2, 4\)"),
     (np.array([[1, 0, 0, 0], [np.nan, 0, 0, 0]], dtype=np.float32), r"non-finite values, first bad row 1")],
)
def test_bad_encoder_output_is_not_cached(tmp_path: Path, out: np.ndarray, pattern: str) -> None:
    with pytest.raises(CacheError, match=pattern):
        encode_with_cache(_BadEncoder(out), ["a", "b"], tmp_path)
    assert not any(tmp_path.rglob("manifest.json"))


def test_bad_arguments(enc: HashingEncoder, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"name: expected 1-64 characters"):
        encode_with_cache(enc, TEXTS, tmp_path, name="../escape")
    with pytest.raises(ValueError, match=r"texts\[1\]: expected a non-empty text"):
        encode_with_cache(enc, ["ok", ""], tmp_path)
    with pytest.raises(TypeError, match=r"texts\[0\]: expected str, received bytes"):
        encode_with_cache(enc, [b"raw"], tmp_path)  # type: ignore[list-item]


def test_full_disk_while_building_is_one_clear_error(enc: HashingEncoder, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from recgym.common import DiskFullError

    def full(*args: Any, **kwargs: Any) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cache_mod.tempfile, "mkdtemp", full)
    with pytest.raises(DiskFullError, match=r"disk full writing under .*\.staging"):
        encode_with_cache(enc, TEXTS, tmp_path, name="items")
    monkeypatch.undo()
    assert not encode_with_cache(enc, TEXTS, tmp_path, name="items").hit
