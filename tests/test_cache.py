"""Embedding cache: round trip, verification on load, rebuild-or-refuse, interrupted writes."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recgym.encoders import CacheError, HashingEncoder, cache_key, encode_with_cache, load_cache
from recgym.encoders import cache as cache_mod

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


def test_interrupted_first_write_leaves_no_loadable_cache(enc: HashingEncoder, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _crash_on_manifest(monkeypatch)
    with pytest.raises(_Crash):
        encode_with_cache(enc, TEXTS, tmp_path, name="items")
    folder = tmp_path / "embeddings" / f"items-{cache_key(enc, TEXTS)[:16]}"
    assert (folder / "vectors.npy").is_file() and not (folder / "manifest.json").exists()
    assert not list(folder.glob("*.tmp"))
    with pytest.raises(CacheError, match=r"partial cache: manifest missing \(vectors\.npy present\)"):
        load_cache(folder)
    monkeypatch.undo()
    res = encode_with_cache(enc, TEXTS, tmp_path, name="items")  # next run rebuilds
    assert not res.hit
    assert encode_with_cache(enc, TEXTS, tmp_path, name="items").hit


def test_interrupted_rebuild_does_not_resurrect_old_manifest(enc: HashingEncoder, tmp_path: Path,
                                                             built: cache_mod.CachedEmbeddings,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _resave(built.path, np.full_like(built.vectors, np.nan))  # stale: forces a rebuild
    _crash_on_manifest(monkeypatch)
    with pytest.raises(_Crash):
        encode_with_cache(enc, TEXTS, tmp_path, name="items")
    with pytest.raises(CacheError, match=r"partial cache: manifest missing"):
        load_cache(built.path)


def test_interrupted_vectors_write_keeps_no_half_file(enc: HashingEncoder, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def crash_fsync(fd: int) -> None:
        raise _Crash("killed mid-write")

    monkeypatch.setattr("recgym.common.io.os.fsync", crash_fsync)  # dies after the bytes, before the rename
    with pytest.raises(_Crash):
        encode_with_cache(enc, TEXTS, tmp_path, name="items")
    folder = tmp_path / "embeddings" / f"items-{cache_key(enc, TEXTS)[:16]}"
    assert list(folder.iterdir()) == []  # temp file removed, nothing half-written
    with pytest.raises(CacheError, match=r"partial cache"):
        load_cache(folder)


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
