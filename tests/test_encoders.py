"""TransformerEncoder (tiny random BERT + bundled MiniLM) and HashingEncoder: contracts and bad input."""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from recgym.encoders import (
    HashingEncoder,
    ModelNotFoundError,
    TextEncoder,
    TransformerEncoder,
    encode_with_cache,
    load_cache,
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


def _build_tiny_bert(directory: Path, seed: int, max_positions: int = 32) -> Path:
    """A random 1-layer BERT (hidden 16) with a hand-written WordPiece vocab, saved to ``directory``."""
    from transformers import BertConfig, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n", encoding="utf-8")
    BertTokenizer(str(vocab)).save_pretrained(directory)  # positional: `vocab_file` (v4) / `vocab` (v5)
    cfg = BertConfig(
        vocab_size=5 + len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=max_positions,
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
    return TransformerEncoder(device="cpu")


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


@pytest.mark.parametrize("which", ["tiny", "minilm"])
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


@pytest.mark.usefixtures("no_network")
def test_directory_without_config(tmp_path: Path) -> None:
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(ModelNotFoundError, match=r"not a Hugging Face model directory: expected config.json"):
        TransformerEncoder(tmp_path)


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
    with pytest.raises(ValueError, match=r"'float16' is for CUDA"):
        TransformerEncoder(tiny_dir, device="cpu", dtype="float16")
    with pytest.raises(ValueError, match=r"dtype: expected 'auto'"):
        TransformerEncoder(tiny_dir, dtype="fp8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"on_truncation: expected"):
        TransformerEncoder(tiny_dir, on_truncation="truncate")  # type: ignore[arg-type]


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
