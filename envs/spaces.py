"""Observation/action spaces and strict action validation shared by every shell.

Observation (``Dict``): ``profile`` ``(d,)`` and ``history`` ``(d,)`` float32 in [-1, 1]; ``context`` ``(4,)``
float32 in [0, 1] (:data:`~recgym.envs.core.CONTEXT_FEATURES`); ``candidates`` ``(N,)`` int64 item indices
into the env's ``item_embeddings`` table; ``mask`` ``(N,)`` int8, 1 = may be recommended. Memory per step is
O(d + N): policies look candidate vectors up in the table themselves.

Actions: ``scores`` ``Box(-1, 1, (N,))`` (any finite float is accepted; the env takes the top-K unmasked
scores; equal scores: the lower position first); ``slate`` ``MultiDiscrete([N] * K)`` (distinct, unmasked positions, best first);
``item`` ``Discrete(N)`` (slate of one).

``strict=True`` (default) rejects an invalid action with :class:`InvalidActionError` naming the offending
index. ``strict=False`` *repairs* it instead: non-finite scores rank below every finite one (masked
candidates stay out); out-of-range, duplicate or
masked slots are replaced, in slot order, by the lowest-index unused valid candidates. Random samples of a
``MultiDiscrete`` space are usually invalid slates, so the environment checkers run in repair mode.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from recgym.envs.config import EnvConfig

__all__ = ["InvalidActionError", "observation_space", "action_space", "actions_to_slate"]


class InvalidActionError(ValueError):
    """An action was rejected; nothing in the env changed."""


def observation_space(config: EnvConfig, dim: int, num_items: int) -> spaces.Dict:
    n = config.num_candidates
    return spaces.Dict(
        {
            "profile": spaces.Box(-1.0, 1.0, (dim,), np.float32),
            "history": spaces.Box(-1.0, 1.0, (dim,), np.float32),
            "context": spaces.Box(0.0, 1.0, (4,), np.float32),
            "candidates": spaces.Box(0, num_items - 1, (n,), np.int64),
            "mask": spaces.Box(0, 1, (n,), np.int8),
        }
    )


def action_space(config: EnvConfig) -> spaces.Space:
    n, k = config.num_candidates, config.slate_size
    if config.action_type == "scores":
        return spaces.Box(-1.0, 1.0, (n,), np.float32)
    if config.action_type == "slate":
        return spaces.MultiDiscrete(np.full(k, n, dtype=np.int64))
    return spaces.Discrete(n)


def _where(batched: bool, b: int, j: int | None = None) -> str:
    if batched:
        return f"action[{b}]" if j is None else f"action[{b}, {j}]"
    return "action" if j is None else f"action[{j}]"


def actions_to_slate(
    action: np.ndarray | torch.Tensor, mask: torch.Tensor, config: EnvConfig, *, batched: bool, strict: bool = True
) -> torch.Tensor:
    """Turn a (batch of) action(s) into a ``(B, K)`` int64 slate of candidate positions.

    Args:
        action: single env: scores ``(N,)``, slate ``(K,)`` or an item index; batched: with a leading ``B``.
        mask: ``(B, N)`` bool, True = may be recommended.
        strict: validate shape, dtype, range, duplicates, finiteness and the mask.
    Raises:
        InvalidActionError: names the offending index, what was expected and what was received.
    """
    b, n = mask.shape
    k = config.slate_size
    dev = mask.device
    a = torch.as_tensor(np.asarray(action) if not isinstance(action, torch.Tensor) else action, device=dev)
    kind = config.action_type
    expected = {"scores": (n,), "slate": (k,), "item": ()}[kind]
    shape = ((b, *expected) if batched else expected)
    if strict and tuple(a.shape) != shape:
        if not (kind == "item" and not batched and tuple(a.shape) == (1,)):
            raise InvalidActionError(f"action: expected shape {shape} for action_type={kind!r}, received {tuple(a.shape)}")
    a = a.reshape(b, *expected) if kind != "item" else a.reshape(b, 1)
    if not strict:
        if kind != "scores":
            return _repair(a, mask, k)
        # Non-finite scores rank below every finite one (and masked candidates below those).
        low = torch.finfo(torch.float32).min
        return _top_k(torch.nan_to_num(a.to(torch.float32), nan=low, posinf=low, neginf=low), mask, k)
    if kind == "scores":
        if a.dtype == torch.bool or a.is_complex():
            raise InvalidActionError(f"action: expected real-valued scores, received dtype {a.dtype}")
        scores = a.to(torch.float32)
        if not bool(torch.isfinite(scores.abs().amax())):  # amax propagates NaN; one reduction, no (B, N) bools
            i, j = (~torch.isfinite(scores)).nonzero()[0].tolist()
            raise InvalidActionError(f"{_where(batched, i, j)}: expected a finite score, received {scores[i, j].item()}")
        return _top_k(scores, mask, k)
    if strict:
        if a.dtype == torch.bool or a.is_floating_point() or a.is_complex():
            raise InvalidActionError(
                f"action: expected integer candidate indices for action_type={kind!r}, received dtype {a.dtype}"
            )
        bad = ((a < 0) | (a >= n)).nonzero()
        if len(bad):
            i, j = bad[0].tolist()
            jj = j if kind == "slate" else None
            raise InvalidActionError(
                f"{_where(batched, i, jj)}: expected a candidate index in [0, {n}), received {a[i, j].item()}"
            )
    slate = a.to(torch.int64)
    if strict:
        if k > 1:
            srt = torch.sort(slate, dim=1).values
            dup = (srt[:, 1:] == srt[:, :-1]).nonzero()
            if len(dup):
                i, j = dup[0].tolist()
                v = srt[i, j].item()
                first, second = (slate[i] == v).nonzero().flatten()[:2].tolist()
                raise InvalidActionError(
                    f"{_where(batched, i, second)}: expected distinct candidates, received {v} again "
                    f"(also at slot {first})"
                )
        masked = (~mask.gather(1, slate)).nonzero()
        if len(masked):
            i, j = masked[0].tolist()
            jj = j if kind == "slate" else None
            raise InvalidActionError(
                f"{_where(batched, i, jj)}: candidate {slate[i, j].item()} is masked "
                f"(already shown or a duplicate); expected an index with mask == 1"
            )
    return slate


_INT32_MIN = -(2**31)
_INT64_MIN = -(2**63)
_ROUNDS_MAX_K = 32  # up to this K (and from _ROUNDS_MIN_SIZE scores), K max-reductions beat topk on CPU
_ROUNDS_MIN_SIZE = 32_768  # below, per-op overhead dominates: one topk call is cheaper
_SORT_MAX_SIZE = 4_096  # up to this many scores, one stable sort (3 ops) beats packing keys (~15 ops)


def _top_k(scores: torch.Tensor, mask: torch.Tensor, k: int, rounds: bool | None = None) -> torch.Tensor:
    """Positions ``(B, K)`` int64 of the K highest unmasked ``scores`` ``(B, N)`` float32 (finite), best
    first; equal scores rank the lower position first (on every device).

    Up to ``_SORT_MAX_SIZE`` scores: a stable descending sort of the scores with -inf at masked positions.
    Otherwise each score's float bits are mapped to an int32 of the same order (masked: the lowest value). For
    small batches those keys are packed with ``N - 1 - position`` into unique int64 keys and one ``topk``
    call ranks them. For large batches the top-K is K max-reductions (``amax`` is ~10x faster than
    ``argmax`` or ``topk`` on CPU): with ``N <= 128`` over int32 keys whose 7 low bits are replaced by the
    reversed position (half the bytes of int64 keys; rows where two of the first K + 1 picks share the
    truncated key — near-ties, rare — are redone exactly), else over the int64 keys. ``rounds`` forces
    (True) or forbids (False) the max-reduction path; every path gives the same slate.
    """
    b, n = scores.shape
    if rounds is None:
        rounds = k <= _ROUNDS_MAX_K and b * n >= _ROUNDS_MIN_SIZE
    if not rounds and b * n <= _SORT_MAX_SIZE:
        # Small batches: per-op overhead dominates, and a stable sort is three ops (scores are finite, so
        # -inf marks the masked ones; -0.0 == +0.0 in comparisons).
        masked = torch.where(mask, scores, float("-inf"))
        return torch.sort(masked, dim=1, descending=True, stable=True).indices[:, :k]
    # In-place ops on two fresh buffers: at B = 8,192 every fresh (B, N) temporary costs more than its op.
    key32 = torch.add(scores, 0.0).view(torch.int32)  # a copy; + 0.0 turns -0.0 into +0.0
    flip = torch.bitwise_right_shift(key32, 31).bitwise_and_(0x7FFFFFFF)
    key32.bitwise_xor_(flip)  # negative floats: flip the magnitude bits so order holds
    # Masked entries get the lowest key (bit ops: masked_fill and where are ~3x slower on CPU).
    keep = flip.copy_(mask).neg_()  # all ones where allowed, 0 where masked
    key32.bitwise_and_(keep).bitwise_or_(keep.bitwise_not_().bitwise_and_(_INT32_MIN))
    if rounds and k < n <= 128:
        return _top_k_rounds32(key32, scores, mask, k)
    keys = key32.to(torch.int64).bitwise_left_shift_(32)
    keys.bitwise_or_(torch.arange(n - 1, -1, -1, device=scores.device))
    if not rounds:
        return torch.topk(keys, k, dim=1, sorted=True).indices
    slate = torch.empty((b, k), dtype=torch.int64, device=scores.device)
    for j in range(k):
        pos = (n - 1) - (keys.amax(dim=1, keepdim=True) & 0xFFFFFFFF)
        slate[:, j : j + 1] = pos
        keys.scatter_(1, pos, _INT64_MIN)
    return slate


def _top_k_rounds32(key32: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`_top_k`'s max-reductions over int32 keys (``key32`` is consumed) for ``N <= 128``."""
    b, n = key32.shape
    packed = key32.bitwise_and_(~0x7F).bitwise_or_(torch.arange(n - 1, -1, -1, dtype=torch.int32,
                                                                device=key32.device))
    slate = torch.empty((b, k), dtype=torch.int64, device=key32.device)
    near_tie = torch.zeros((b, 1), dtype=torch.bool, device=key32.device)
    prev = None
    for j in range(k + 1):  # one extra pick: a near-tie at the K-th place decides who is in the slate
        best = packed.amax(dim=1, keepdim=True)
        bucket = best >> 7
        if prev is not None:
            near_tie |= bucket == prev
        prev = bucket
        if j < k:
            pos = ((n - 1) - (best & 0x7F)).long()
            slate[:, j : j + 1] = pos
            packed.scatter_(1, pos, _INT32_MIN)
    redo = near_tie.squeeze(1).nonzero().squeeze(1)
    if len(redo):
        slate[redo] = _top_k(scores[redo], mask[redo], k, rounds=False)
    return slate


def _repair(a: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Keep valid slots (in range, unmasked, first occurrence); fill the others with unused valid candidates."""
    b, n = mask.shape
    a = torch.nan_to_num(a.to(torch.float64), nan=-1.0).to(torch.int64) if a.is_floating_point() else a.to(torch.int64)
    in_range = (a >= 0) & (a < n)
    a = a.clamp(0, n - 1)
    used = torch.zeros_like(mask)
    ok = torch.zeros_like(in_range)
    rows = torch.arange(b, device=mask.device)
    for j in range(a.shape[1]):  # K slots, not users
        okj = in_range[:, j] & mask[rows, a[:, j]] & ~used[rows, a[:, j]]
        used[rows, a[:, j]] |= okj
        ok[:, j] = okj
    free = torch.sort((~(mask & ~used)).to(torch.int8), dim=1, stable=True).indices
    rank = (torch.cumsum((~ok).to(torch.int64), dim=1) - 1).clamp_min(0)
    return torch.where(ok, a, free.gather(1, rank))[:, :k].contiguous()
