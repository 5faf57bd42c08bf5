"""Greedy batched decoding for :mod:`recgym.encoders.enrich`: rows stop when their answer is settled and leave the batch.

Why not ``model.generate``: a ``generate`` batch keeps computing every row until its longest row ends, while a
keyword line is usually complete (its first line closed, or a sentence end) well before ``max_new_tokens``.
Here each row stops as soon as ``settled(generated ids)`` says its cleaned answer can no longer change, and
its rows of the KV cache are dropped, so later steps compute only the rows still running.

The logits rules are a one-prompt ``generate`` call's (greedy, repetition penalty, no repeated n-grams, both
over the row's own prompt and generated tokens) but never see the padding: ``generate`` on a padded batch
counts pad tokens as "seen" (here the pad token is SmolLM2's EOS, which the penalty would then make rarer for
short prompts only), so a row's answer would depend on its batch mates.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DecodeStats", "greedy_decode"]


@dataclass
class DecodeStats:
    """``steps``: decode forward passes; ``row_steps``: tokens those passes computed (sum of their batch sizes);
    ``prefill_tokens``: prompt tokens run through the model (padding included, shared prefix excluded);
    ``prefill_seconds`` / ``decode_seconds``: wall time of the prompt prefill and of the one-token steps."""

    steps: int = 0
    row_steps: int = 0
    prefill_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0


def greedy_decode(model: Any, prefix_cache: Any, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], *,
                  pad_id: int, stop_ids: set[int], max_new_tokens: int, repetition_penalty: float = 1.0,
                  no_repeat_ngram_size: int = 0, settled: Callable[[list[int]], bool] | None = None,
                  decode_threads: int | None = None, stats: DecodeStats | None = None) -> list[list[int]]:
    """Generated ids per row of ``prefix + suffixes[i]`` (the stop token excluded).

    Args:
        model: a causal LM taking ``input_ids (B, T) int64``, ``attention_mask (B, past + T)``, ``position_ids
            (B, T)`` and a ``DynamicCache``.
        prefix_cache: the KV cache of ``prefix`` (batch 1) or ``None`` when ``prefix`` is empty; not modified.
        suffixes: the rest of each prompt (non-empty); left-padded here, so padding sits between the prefix
            and the suffix and positions skip it.
        settled: called with a row's generated ids after each new token; ``True`` ends the row.
        decode_threads: torch threads for the one-token steps (``None``: the caller's); the prefill of the
            suffixes uses the caller's threads.
    """
    import torch

    from recgym.common.device import torch_threads

    dev = model.device
    b, p, width = len(suffixes), len(prefix), max(len(s) for s in suffixes)
    rows = [list(prefix) + list(s) for s in suffixes]  # each row's real tokens (prompt, then generated)
    ids = torch.tensor([list(prefix) + [pad_id] * (width - len(s)) + list(s) for s in suffixes], device=dev)
    mask = torch.tensor([[1] * p + [0] * (width - len(s)) + [1] * len(s) for s in suffixes], device=dev)
    cache = None
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(b)
    t0 = time.perf_counter()
    pos = (mask.cumsum(1) - 1).clamp_min(0)
    out = model(input_ids=ids[:, p:], attention_mask=mask, position_ids=pos[:, p:], past_key_values=cache,
                use_cache=True, logits_to_keep=1)
    cache, logits = out.past_key_values, out.logits[:, -1, :].float()
    vocab = logits.shape[-1]
    seen = None
    if repetition_penalty != 1.0:  # one column past the vocabulary collects the padding, then is cut off
        seen = torch.zeros((b, vocab + 1), dtype=torch.bool, device=dev)
        seen.scatter_(1, ids.masked_fill(mask == 0, vocab), True)
        seen = seen[:, :vocab].contiguous()
    ngrams = [_ngram_table(r, no_repeat_ngram_size) for r in rows] if no_repeat_ngram_size > 0 else None
    next_pos = mask.sum(1)
    live = list(range(b))  # original row of each row still in the batch
    gen: list[list[int]] = [[] for _ in range(b)]
    t1 = time.perf_counter()
    if stats is not None:
        stats.prefill_tokens += b * width
        stats.prefill_seconds += t1 - t0
    with torch_threads(decode_threads):
        for step in range(max_new_tokens):
            if seen is not None:
                logits = torch.where(seen, torch.where(logits < 0, logits * repetition_penalty,
                                                       logits / repetition_penalty), logits)
            if ngrams is not None:
                _ban_repeats(logits, [rows[i] for i in live], [ngrams[i] for i in live], no_repeat_ngram_size)
            nxt = logits.argmax(-1)
            keep = []
            for r, (i, tok) in enumerate(zip(live, nxt.tolist(), strict=True)):
                if tok in stop_ids:
                    continue
                gen[i].append(tok)
                rows[i].append(tok)
                if ngrams is not None:
                    _ngram_add(ngrams[i], rows[i], no_repeat_ngram_size)
                if step + 1 < max_new_tokens and not (settled is not None and settled(gen[i])):
                    keep.append(r)
            if not keep:
                break
            if seen is not None:
                seen[torch.arange(len(live), device=dev), nxt] = True
            if len(keep) < len(live):  # finished rows leave the batch and the cache
                idx = torch.tensor(keep, device=dev)
                cache.batch_select_indices(idx)
                mask, next_pos, nxt = mask[idx], next_pos[idx], nxt[idx]
                seen = seen[idx] if seen is not None else None
                live = [live[r] for r in keep]
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
            logits = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                           past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :].float()
            next_pos = next_pos + 1
            if stats is not None:
                stats.steps += 1
                stats.row_steps += len(live)
    if stats is not None:
        stats.decode_seconds += time.perf_counter() - t1
    return gen


def _ngram_table(row: Sequence[int], n: int) -> dict[tuple[int, ...], set[int]]:
    """Every ``(n-1)``-gram of ``row`` mapped to the tokens that followed it."""
    table: dict[tuple[int, ...], set[int]] = {}
    for k in range(len(row) - n + 1):
        table.setdefault(tuple(row[k : k + n - 1]), set()).add(row[k + n - 1])
    return table


def _ngram_add(table: dict[tuple[int, ...], set[int]], row: Sequence[int], n: int) -> None:
    if len(row) >= n:
        table.setdefault(tuple(row[-n:-1]), set()).add(row[-1])


def _ban_repeats(logits: Any, rows: Sequence[Sequence[int]], tables: Sequence[dict], n: int) -> None:
    """``-inf`` for every token that would repeat an ``n``-gram of its row (in place)."""
    for r, (row, table) in enumerate(zip(rows, tables, strict=True)):
        if len(row) + 1 < n:
            continue
        banned = table.get(tuple(row[len(row) - n + 1 :]))
        if banned:
            logits[r, list(banned)] = float("-inf")
