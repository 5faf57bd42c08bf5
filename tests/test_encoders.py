"""TransformerEncoder (tiny random BERT + bundled MiniLM) and HashingEncoder: contracts and bad input."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from recgym.common.device import torch_threads
from recgym.encoders import (
    HashingEncoder,
    ModelNotFoundError,
    TextEncoder,
    TransformerEncoder,
    auto_threads,
    cpu_has_native_bf16,
    encode_with_cache,
    load_cache,
    vector_agreement,
    weights_digest,
)
from recgym.encoders.cache import CacheError

WORDS = ["a", "the", "space", "opera", "science", "fiction", "adventure", "in", "cook", "##ing", "show", "star",
         "war", "love", "story", "drama", "comedy", "night", "city", "old"]
TEXTS = [
    "a space opera",
    "science fiction adventure in space",
    "a cooking show",
    "the old city at night",
    "love story",
    "a comedy drama about the war in the old city and a star",
    "star",
]


def _build_tiny_bert(directory: Path, seed: int, max_positions: int = 32, intermediate: int = 32) -> Path:
    """A random 1-layer BERT (hidden 16) with a hand-written WordPiece vocab, saved to ``directory``."""
    from transformers import BertConfig, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n", encoding="utf-8")
    BertTokenizer(str(vocab)).save_pretrained(directory)  # positional: `vocab_file` (v4) / `vocab` (v5)
    cfg = BertConfig(
        vocab_size=5 + len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=intermediate, max_position_embeddings=max_positions,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        BertModel(cfg).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> TransformerEncoder:
    return TransformerEncoder(tiny_dir, max_length=32, device="cpu")


@pytest.fixture(scope="module")
def minilm() -> TransformerEncoder:
    return TransformerEncoder(device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def minilm_bf16() -> TransformerEncoder:
    return TransformerEncoder(device="cpu", precision="bf16")


def _assert_unit_float32(v: np.ndarray, n: int, d: int) -> None:
    assert v.dtype == np.float32
    assert v.shape == (n, d)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


# --- tiny random BERT -------------------------------------------------------------------------------------


def test_tiny_bert_shape_norm_determinism(tiny: TransformerEncoder, tiny_dir: Path) -> None:
    assert isinstance(tiny, TextEncoder)
    assert tiny.dim == 16
    v = tiny.encode(TEXTS)
    _assert_unit_float32(v, len(TEXTS), 16)
    np.testing.assert_array_equal(v, tiny.encode(TEXTS))
    again = TransformerEncoder(str(tiny_dir), max_length=32, device="cpu")
    assert again.fingerprint == tiny.fingerprint
    np.testing.assert_array_equal(v, again.encode(TEXTS))


def test_tiny_bert_input_order_kept(tiny: TransformerEncoder) -> None:
    v = tiny.encode(TEXTS)
    perm = np.arange(len(TEXTS))[::-1]
    np.testing.assert_allclose(tiny.encode([TEXTS[i] for i in perm]), v[perm], atol=1e-6)
    assert not np.allclose(v[0], v[2], atol=1e-3)  # different texts, different vectors


@pytest.mark.parametrize("which", ["tiny", "minilm", "minilm_bf16"])
def test_batch_size_does_not_change_results(which: str, request: pytest.FixtureRequest) -> None:
    enc: TransformerEncoder = request.getfixturevalue(which)
    texts = TEXTS * 3
    np.testing.assert_allclose(enc.encode(texts, batch_size=1), enc.encode(texts, batch_size=64), atol=1e-5)


def test_truncation_counted_warned_or_refused(tiny_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    enc = TransformerEncoder(tiny_dir, max_length=6, device="cpu")  # 4 words + [CLS] + [SEP]
    texts = ["a space opera", "the old city at night", "science fiction adventure in space", "star"]
    with caplog.at_level(logging.WARNING, logger="recgym.encoders.transformer"):
        v = enc.encode(texts)
    assert enc.last_truncated == 2
    assert enc.describe()["last_truncated"] == 2
    assert re.search(r"2 of 4 texts exceed max_length=6", caplog.text)
    _assert_unit_float32(v, 4, 16)
    enc.encode(["star"])
    assert enc.last_truncated == 0
    strict = TransformerEncoder(tiny_dir, max_length=6, device="cpu", on_truncation="error")
    with pytest.raises(ValueError, match=r"1 of 1 texts exceed max_length=6.*index 0, 7 tokens"):
        strict.encode(["science fiction adventure in space"])


def test_fingerprint_tracks_settings_and_weights(tiny: TransformerEncoder, tiny_dir: Path, tmp_path: Path) -> None:
    assert TransformerEncoder(tiny_dir, max_length=16, device="cpu").fingerprint != tiny.fingerprint
    other = TransformerEncoder(_build_tiny_bert(tmp_path / tiny_dir.name, seed=1), max_length=32, device="cpu")
    assert other.model_name == tiny.model_name  # same basename: only the weights differ
    assert other.weights_sha256 != tiny.weights_sha256
    assert other.fingerprint != tiny.fingerprint


def test_cache_refuses_other_transformer_weights(tiny: TransformerEncoder, tiny_dir: Path, tmp_path: Path) -> None:
    res = encode_with_cache(tiny, TEXTS, tmp_path / "cache")
    assert res.manifest["weights_sha256"] == tiny.weights_sha256
    other = TransformerEncoder(_build_tiny_bert(tmp_path / tiny_dir.name, seed=1), max_length=32, device="cpu")
    with pytest.raises(CacheError, match=r"weights_sha256: expected '[0-9a-f]{64}' \(from the encoder\), found"):
        load_cache(res.path, encoder=other, texts=TEXTS)
    np.testing.assert_array_equal(load_cache(res.path, encoder=tiny, texts=TEXTS).vectors, res.vectors)


def test_weights_edited_in_place_change_the_fingerprint(tmp_path: Path) -> None:
    folder = _build_tiny_bert(tmp_path / "wide", seed=0, intermediate=40_000)
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    assert size > 4 * 2**20  # the byte flipped below lies more than 1 MiB from either end of the file
    before = TransformerEncoder(folder, max_length=32, device="cpu")
    st = weights.stat()
    with weights.open("r+b") as fh:
        fh.seek(size // 2)
        byte = fh.read(1)[0]
        fh.seek(size // 2)
        fh.write(bytes([byte ^ 0x01]))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same modification time
    assert weights.stat().st_size == size and weights.stat().st_mtime_ns == st.st_mtime_ns
    after = TransformerEncoder(folder, max_length=32, device="cpu")
    assert after.weights_sha256 != before.weights_sha256
    assert after.fingerprint != before.fingerprint


def test_weight_files_hashed_once_per_version(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recgym.encoders import modelfiles

    calls: list[str] = []
    real = modelfiles.sha256_file
    monkeypatch.setenv("RECGYM_CACHE", str(tmp_path))
    monkeypatch.setattr(modelfiles, "_DIGESTS", {})
    monkeypatch.setattr(modelfiles, "_RACY_S", -1.0)  # the files were written moments ago
    monkeypatch.setattr(modelfiles, "sha256_file", lambda path: calls.append(Path(path).name) or real(path))
    first = weights_digest(tiny_dir)
    assert sorted(calls) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                             "vocab.txt"]
    assert weights_digest(tiny_dir) == first and len(calls) == 5  # memoised in memory: nothing re-read
    monkeypatch.setattr(modelfiles, "_DIGESTS", {})  # a new process: the memo on disk serves
    assert weights_digest(tiny_dir) == first and len(calls) == 5
    memo = tmp_path / "model-file-digests.json"
    assert len(json.loads(memo.read_text())) == 5
    memo.write_text('{"broken": ')  # a corrupt memo is ignored, the files re-hashed, the memo rewritten
    monkeypatch.setattr(modelfiles, "_DIGESTS", {})
    assert weights_digest(tiny_dir) == first and len(calls) == 10
    assert len(json.loads(memo.read_text())) == 5


def test_recently_changed_files_are_not_memoised(tiny_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from recgym.encoders import modelfiles

    calls: list[str] = []
    real = modelfiles.sha256_file
    monkeypatch.setenv("RECGYM_CACHE", str(tmp_path))
    monkeypatch.setattr(modelfiles, "_DIGESTS", {})
    monkeypatch.setattr(modelfiles, "_RACY_S", 3600.0)  # every file counts as just written
    monkeypatch.setattr(modelfiles, "sha256_file", lambda path: calls.append(Path(path).name) or real(path))
    assert weights_digest(tiny_dir) == weights_digest(tiny_dir)
    assert len(calls) == 10 and not (tmp_path / "model-file-digests.json").exists()


def test_precision_auto_follows_the_cpu(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recgym.encoders import transformer

    monkeypatch.setattr(transformer, "cpu_has_native_bf16", lambda: False)
    assert TransformerEncoder(tiny_dir, max_length=32, device="cpu").precision == "fp32"
    monkeypatch.setattr(transformer, "cpu_has_native_bf16", lambda: True)
    auto = TransformerEncoder(tiny_dir, max_length=32, device="cpu")
    assert auto.precision == "bf16" and auto.describe()["precision"] == "bf16"
    assert auto.fingerprint == TransformerEncoder(tiny_dir, max_length=32, device="cpu", precision="bf16").fingerprint
    fp32 = TransformerEncoder(tiny_dir, max_length=32, device="cpu", precision="fp32")
    assert fp32.fingerprint != auto.fingerprint
    assert "precision='bf16'" in repr(auto)


def test_native_bf16_detection_agrees_with_cpuinfo() -> None:
    info = Path("/proc/cpuinfo")
    flags = set(re.findall(r"\b(avx512_bf16|amx_bf16)\b", info.read_text())) if info.is_file() else set()
    assert cpu_has_native_bf16() is bool(flags)


def test_bf16_cache_never_served_for_fp32(tiny_dir: Path, tmp_path: Path) -> None:
    bf16 = TransformerEncoder(tiny_dir, max_length=32, device="cpu", precision="bf16")
    fp32 = TransformerEncoder(tiny_dir, max_length=32, device="cpu", precision="fp32")
    rb = encode_with_cache(bf16, TEXTS, tmp_path)
    assert rb.manifest["precision"] == "bf16" and rb.manifest["encoder_fields"]["precision"] == "bf16"
    rf = encode_with_cache(fp32, TEXTS, tmp_path)
    assert not rf.hit and rf.path != rb.path and rf.manifest["precision"] == "fp32"
    np.testing.assert_array_equal(rf.vectors, fp32.encode(TEXTS))
    assert not np.array_equal(rf.vectors, rb.vectors)
    with pytest.raises(CacheError, match=r"precision: expected 'fp32' \(from the encoder\), found 'bf16'"):
        load_cache(rb.path, encoder=fp32, texts=TEXTS)
    assert encode_with_cache(bf16, TEXTS, tmp_path).hit


def test_truncated_text_encodes_as_its_kept_prefix(tiny_dir: Path) -> None:
    enc = TransformerEncoder(tiny_dir, max_length=6, device="cpu", on_truncation="ignore")  # 4 words kept
    v = enc.encode(["science fiction adventure in space", "star", "science fiction adventure in"])
    assert enc.last_truncated == 1
    np.testing.assert_allclose(v[0], v[2], atol=1e-6)


def test_auto_threads_backs_off_on_a_busy_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    from recgym.encoders import transformer

    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    busy = float(os.cpu_count() or 1) * 4

    def unknown() -> tuple[float, float, float]:
        raise OSError("no load average here")

    with torch_threads(2):
        for load, elsewhere, expected in [
            (0.0, 0, min(2, allowed)),  # idle
            (busy, None, 1),  # busy, instant count unknown
            (busy, 8, 1),  # busy now and over the last minute
            (busy, 0, min(2, allowed)),  # the load average is this process's own earlier calls
            (None, 8, 1),  # no load average, busy now
            (None, None, 2),  # nothing known: torch's count
        ]:
            monkeypatch.setattr(os, "getloadavg", unknown if load is None else lambda v=load: (v, 0.0, 0.0))
            monkeypatch.setattr(transformer, "runnable_elsewhere", lambda v=elsewhere: v)
            assert auto_threads() == expected, (load, elsewhere)
    assert torch.get_num_threads() == 1  # conftest's count restored


def test_runnable_elsewhere_excludes_this_process() -> None:
    from recgym.encoders.transformer import runnable_elsewhere

    if not Path("/proc/loadavg").is_file():
        assert runnable_elsewhere() is None
        return
    n = runnable_elsewhere()
    total = int(Path("/proc/loadavg").read_text().split()[3].split("/")[1])
    assert isinstance(n, int) and 0 <= n < total


def test_vector_agreement_known_cases() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 8)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    same = vector_agreement(a, a.copy(), k=5)
    assert same["cos_min"] == pytest.approx(1.0) and same["topk_overlap"] == 1.0 and same["k"] == 5
    shuffled = vector_agreement(a, a[rng.permutation(40)], k=5)
    assert shuffled["cos_min"] < 0.5 and shuffled["topk_overlap"] < 0.5
    assert vector_agreement(a[:3], a[:3], k=10)["k"] == 2
    with pytest.raises(ValueError, match=r"expected two \(n, d\) arrays of one shape"):
        vector_agreement(a, a[:5])


# --- bundled MiniLM ---------------------------------------------------------------------------------------


def test_minilm_semantics_and_contract(minilm: TransformerEncoder) -> None:
    v = minilm.encode(["a space opera", "science fiction adventure in space", "a cooking show"])
    _assert_unit_float32(v, 3, 384)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.1
    np.testing.assert_array_equal(v, minilm.encode(["a space opera", "science fiction adventure in space",
                                                    "a cooking show"]))
    d = minilm.describe()
    assert d["pooling"] == "mean" and d["normalization"] == "l2" and d["dim"] == 384 and d["max_length"] == 256
    assert re.fullmatch(r"[0-9a-f]{64}", d["weights_sha256"]) and re.fullmatch(r"[0-9a-f]{64}", minilm.fingerprint)


def _default_world_item_texts() -> list[str]:
    from recgym.envs.worlds.synthetic import make_synthetic_texts

    items, _ = make_synthetic_texts()
    return [it.text for it in items]


def _assert_bf16_close_to_fp32(minilm: TransformerEncoder, minilm_bf16: TransformerEncoder, texts: list[str]) -> None:
    assert minilm.precision == "fp32" and minilm_bf16.precision == "bf16"
    q = vector_agreement(minilm.encode(texts), minilm_bf16.encode(texts), k=10)
    assert q["cos_min"] >= 0.999, q  # on every text
    assert q["topk_overlap"] >= 0.99, q


def test_bf16_matches_fp32_on_a_default_world_sample(minilm: TransformerEncoder,
                                                     minilm_bf16: TransformerEncoder) -> None:
    texts = _default_world_item_texts()[::8]  # 250 of the 2,000 item texts, every genre and length
    assert len(texts) == 250
    _assert_bf16_close_to_fp32(minilm, minilm_bf16, texts)


@pytest.mark.slow
def test_bf16_matches_fp32_on_every_default_world_item(minilm: TransformerEncoder,
                                                       minilm_bf16: TransformerEncoder) -> None:
    texts = _default_world_item_texts()
    assert len(texts) == 2000
    _assert_bf16_close_to_fp32(minilm, minilm_bf16, texts)


@pytest.mark.parametrize("which", ["minilm", "minilm_bf16"])
def test_vectors_do_not_depend_on_the_thread_count(which: str, request: pytest.FixtureRequest) -> None:
    enc: TransformerEncoder = request.getfixturevalue(which)
    texts = _default_world_item_texts()[:24]
    runs = []
    for threads in (1, 2, 1):
        enc.threads = threads
        runs.append(enc.encode(texts, batch_size=8))
        assert enc.last_threads == threads
    enc.threads = None
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])
    assert torch.get_num_threads() == 1
    # a world built again (a fresh encoder, e.g. in a new process) gets the very same vectors
    fresh = TransformerEncoder(device="cpu", precision=enc.precision, threads=2)
    np.testing.assert_array_equal(fresh.encode(texts, batch_size=8), runs[0])


# --- bad input --------------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.usefixtures("no_network")
def test_missing_model_directory_names_path_and_never_downloads(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such-model"
    for arg in (missing, str(missing)):
        with pytest.raises(ModelNotFoundError, match=re.escape(str(missing)) + r".*does not exist.*never downloads"):
            TransformerEncoder(arg)


def _copy_model(src: Path, dst: Path, drop: tuple[str, ...] = ()) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name not in drop:
            shutil.copy2(f, dst / f.name)
    return dst


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    ("drop", "pattern"),
    [
        (("config.json",), r"missing config\.json\. Found: model\.safetensors, tokenizer\.json"),
        (("vocab.txt", "tokenizer.json"), r"missing tokenizer files \(tokenizer\.json, or vocab\.txt"),
        (("model.safetensors",), r"missing weights \(model\.safetensors or pytorch_model\.bin"),
        (("config.json", "model.safetensors"), r"missing config\.json; weights"),
    ],
)
def test_incomplete_model_directory_refused_at_construction(tiny_dir: Path, tmp_path: Path, drop: tuple[str, ...],
                                                            pattern: str) -> None:
    folder = _copy_model(tiny_dir, tmp_path / "model", drop)
    with pytest.raises(ModelNotFoundError, match=re.escape(repr(str(folder))) + r" is not a complete Hugging Face "
                       r"model directory: " + pattern):
        TransformerEncoder(folder, device="cpu")


@pytest.mark.usefixtures("no_network")
def test_model_directory_weights_other_framework_or_missing_shards(tiny_dir: Path, tmp_path: Path) -> None:
    tf_only = _copy_model(tiny_dir, tmp_path / "tf", ("model.safetensors",))
    (tf_only / "tf_model.h5").write_bytes(b"\x89HDF")
    with pytest.raises(ModelNotFoundError, match=r"found only tf_model\.h5, which torch cannot load"):
        TransformerEncoder(tf_only, device="cpu")
    sharded = _copy_model(tiny_dir, tmp_path / "sharded", ("model.safetensors",))
    (sharded / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    shutil.copy2(tiny_dir / "model.safetensors", sharded / "model-00001-of-00002.safetensors")
    with pytest.raises(ModelNotFoundError, match=r"missing weight shards named by model\.safetensors\.index\.json: "
                       r"model-00002-of-00002\.safetensors"):
        TransformerEncoder(sharded, device="cpu")


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(("name", "content"), [("config.json", b'{"model_type": "bert", "hidden'),
                                               ("model.safetensors", b"\x00" * 64)])
def test_corrupt_model_file_is_one_clear_error(tiny_dir: Path, tmp_path: Path, name: str, content: bytes) -> None:
    folder = _copy_model(tiny_dir, tmp_path / "model")
    (folder / name).write_bytes(content)
    with pytest.raises(ModelNotFoundError, match=r"could not load the model in " + re.escape(repr(str(folder)))):
        TransformerEncoder(folder, device="cpu")


@pytest.mark.usefixtures("no_network")
def test_uncached_hub_name_says_what_to_do() -> None:
    with pytest.raises(ModelNotFoundError, match=r"not found locally.*recgym never downloads at run time.*hf download .* pass the directory"):
        TransformerEncoder("recgym-tests/definitely-not-a-cached-model")


@pytest.mark.parametrize(
    ("texts", "exc", "pattern"),
    [
        ([], ValueError, r"expected at least one text"),
        (["ok", ""], ValueError, r"texts\[1\]: expected a non-empty text"),
        (["ok", "   "], ValueError, r"texts\[1\]: expected a non-empty text"),
        (["ok", 3], TypeError, r"texts\[1\]: expected str, received int"),
        (["ok", None], TypeError, r"texts\[1\]: expected str, received NoneType"),
        ("a single string", TypeError, r"expected a sequence of strings, received a single str"),
        (None, TypeError, r"texts: expected a sequence of strings, received NoneType"),
        (["ok", float("nan")], TypeError, r"texts\[1\]: expected str, received float \(nan\)"),
        (["ok", b"raw"], TypeError, r"texts\[1\]: expected str, received bytes"),
        (["ok", "bad \ud800 surrogate"], ValueError, r"texts\[1\]: expected text encodable as UTF-8, received a "
                                                    r"lone surrogate '\\ud800' at character 4"),
    ],
)
def test_bad_texts_rejected(tiny: TransformerEncoder, texts: object, exc: type, pattern: str) -> None:
    for enc in (tiny, HashingEncoder(dim=8)):
        with pytest.raises(exc, match=pattern):
            enc.encode(texts)  # type: ignore[arg-type]


def test_bad_constructor_arguments(tiny_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"batch_size: expected an int >= 1, received 0"):
        TransformerEncoder(tiny_dir, batch_size=0)
    with pytest.raises(ValueError, match=r"max_length: expected <= 32 \(max_position_embeddings"):
        TransformerEncoder(tiny_dir, max_length=64)
    with pytest.raises(ValueError, match=r"batch_size: expected an int >= 1, received True \(bool\)"):
        TransformerEncoder(tiny_dir, batch_size=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_length: expected an int >= 2, received '8' \(str\)"):
        TransformerEncoder(tiny_dir, max_length="8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"threads: expected an int >= 1, received 0"):
        TransformerEncoder(tiny_dir, threads=0)
    with pytest.raises(ValueError, match=r"'fp16' is for CUDA; on cpu use 'fp32' or 'bf16'"):
        TransformerEncoder(tiny_dir, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match=r"precision: expected one of 'auto', 'fp32', 'bf16', 'fp16', received 'fp8'"):
        TransformerEncoder(tiny_dir, precision="fp8")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"model: expected a directory \(str or Path\), a hub name or None, received int"):
        TransformerEncoder(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"on_truncation: expected"):
        TransformerEncoder(tiny_dir, on_truncation="truncate")  # type: ignore[arg-type]
    tiny = TransformerEncoder(tiny_dir, max_length=32, device="cpu")
    with pytest.raises(ValueError, match=r"encode: batch_size: expected an int >= 1, received False"):
        tiny.encode(TEXTS, batch_size=False)  # type: ignore[arg-type]


# --- HashingEncoder ---------------------------------------------------------------------------------------


def test_hashing_deterministic_normalised_and_stable() -> None:
    enc = HashingEncoder(dim=64, ngram=(1, 2), seed=0)
    assert isinstance(enc, TextEncoder)
    v = enc.encode(TEXTS + ["!!!"])
    _assert_unit_float32(v, len(TEXTS) + 1, 64)
    np.testing.assert_array_equal(v, HashingEncoder(dim=64, ngram=(1, 2), seed=0).encode(TEXTS + ["!!!"]))
    # Golden value: blake2b buckets, not Python's per-process salted hash().
    one = HashingEncoder(dim=64, ngram=(1, 1)).encode(["space"])[0]
    assert np.flatnonzero(one).tolist() == [int(np.argmax(np.abs(one)))]
    assert (int(np.argmax(np.abs(one))), float(one.max() + one.min())) == (_GOLDEN_SPACE_BUCKET, _GOLDEN_SPACE_SIGN)


_GOLDEN_SPACE_BUCKET = 28  # blake2b(b"0\x00space", digest_size=8) little-endian % 64
_GOLDEN_SPACE_SIGN = -1.0  # top bit of that hash is 0


def test_hashing_similarity_and_settings() -> None:
    enc = HashingEncoder()
    a, b, c = enc.encode(["A space opera!", "a SPACE opera", "a cooking show"])
    assert float(a @ b) == pytest.approx(1.0, abs=1e-6)  # case and punctuation do not matter
    assert float(a @ c) < 0.9
    assert not np.allclose(HashingEncoder(seed=1).encode(["a space opera"])[0], a)
    fps = {HashingEncoder().fingerprint, HashingEncoder(seed=1).fingerprint, HashingEncoder(dim=128).fingerprint,
           HashingEncoder(ngram=(1, 1)).fingerprint}
    assert len(fps) == 4


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [({"dim": 0}, r"dim: expected an int >= 1"), ({"ngram": (2, 1)}, r"ngram: expected"),
     ({"ngram": (0, 1)}, r"ngram: expected"), ({"seed": 1.5}, r"seed: expected an int")],
)
def test_hashing_bad_arguments(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        HashingEncoder(**kwargs)


def test_encode_benchmark_reports_every_precision_and_agreement() -> None:
    from recgym.benchmarks.encode import default_world_texts, run_encode_benchmark, summary_lines

    texts, source = default_world_texts(24)
    assert len(texts) == 24 and "synthetic" in source
    res = run_encode_benchmark(texts, batch_sizes=[8], precisions=["fp32", "bf16"], repeats=2, threads=1,
                               warm_cache=False)
    for p in ("fp32", "bf16"):
        fig = res["minilm"][p]["8"]
        assert len(fig["texts_per_s_runs"]) == 2 and fig["threads_runs"] == [1, 1]
        assert min(fig["texts_per_s_runs"]) <= fig["texts_per_s"] <= max(fig["texts_per_s_runs"])
    q = res["agreement_vs_fp32"]["bf16"]
    assert q["cos_min"] >= 0.999 and q["topk_overlap"] >= 0.99 and q["k"] == 10
    assert set(res["load_avg_1min"]) == {"before", "after"} and res["n_texts"] == 24
    lines = summary_lines({**res, "texts_source": source})
    assert any(line.startswith("MiniLM bf16 batch 8 (threads [1])") for line in lines)
    assert any("bf16 vs fp32: cosine min" in line for line in lines)


def test_bench_encode_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from recgym.benchmarks import encode as bench_encode
    from recgym.cli import app

    monkeypatch.setattr(bench_encode, "time_warm_cache_load", lambda: None)  # timed in its own test
    bad = CliRunner().invoke(app, ["bench", "encode", "--precision", "fp8"])
    assert bad.exit_code == 2 and "--precision: expected 'fp32' or 'bf16', received 'fp8'" in bad.output
    ok = CliRunner().invoke(app, ["bench", "encode", "--n-items", "12", "--repeats", "1", "--precision", "fp32",
                                  "--batch-size", "4", "--threads", "1"])
    assert ok.exit_code == 0, ok.output
    assert "MiniLM fp32 batch 4 (threads [1])" in ok.output
    res = json.loads(ok.output.strip().splitlines()[-1])
    assert res["n_texts"] == 12 and res["minilm"]["fp32"]["4"]["threads_runs"] == [1]
