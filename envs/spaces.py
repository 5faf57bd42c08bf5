"""Observation/action spaces and strict action validation shared by every shell.

Observation (``Dict``): ``profile`` ``(d,)`` and ``history`` ``(d,)`` float32 in [-1, 1]; ``context`` ``(C,)``
float32 in [0, 1] (C = 4: :data:`~recgym.envs.core.CONTEXT_FEATURES`; C = 7 with returning users, plus
:data:`~recgym.envs.sessions.SESSION_CONTEXT`); ``candidates`` ``(N,)`` int64 item indices into the env's
``item_embeddings`` table; ``mask`` ``(N,)`` int8, 1 = may be recommended; with ``feedback.enabled``,
``item_feedback`` ``(3N,)`` float32: the platform's impressions, clicks and mean dwell of each candidate, an
``(N, 3)`` block flattened row by row (1-D, as SB3's checker asks; ``reshape(N, 3)`` to read it).
Memory per step is O(d + N): policies look candidate vectors up in the table themselves.

Actions: ``scores`` ``Box(-1, 1, (N,))`` (any finite float is accepted; the env takes the top-K unmasked
scores; equal scores: the lower position first); ``slate`` ``MultiDiscrete([N] * K)`` (distinct, unmasked positions, best first);
``item`` ``Discrete(N)`` (slate of one).

Action dtypes: every integer dtype (signed or unsigned, numpy or torch) for every action type; for ``scores``
also every float dtype — float32 ranked in float32, float64 and integer scores ranked exactly as given (the
slate is the ranking of the values passed, even where float32 would round two of them to one value or
overflow), float16/bfloat16 widened exactly. Floats for ``slate``/``item``, booleans, complex
numbers, strings, objects, ``None`` and ragged nested lists raise :class:`InvalidActionError` in either mode.

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

__all__ = ["InvalidActionError", "observation_space", "context_dim", "action_space", "actions_to_slate"]


class InvalidActionError(ValueError):
    """An action was rejected; nothing in the env changed."""


def context_dim(config: EnvConfig) -> int:
    """Length of ``obs["context"]`` under the default dynamics: 4, plus 3 session features with returning users
    (``sessions.count > 1``; :data:`~recgym.envs.sessions.SESSION_CONTEXT`)."""
    return 4 + (3 if config.sessions.count > 1 else 0)


def observation_space(config: EnvConfig, dim: int, num_items: int, context: int | None = None) -> spaces.Dict:
    """The ``Dict`` space (module docstring); ``context``: length of ``obs["context"]`` (default
    :func:`context_dim`). With ``feedback.enabled`` it holds ``item_feedback`` ``(3N,)`` float32 >= 0
    (impressions, clicks, mean dwell per click of each candidate: :mod:`recgym.envs.feedback`)."""
    n = config.num_candidates
    keys = {
        "profile": spaces.Box(-1.0, 1.0, (dim,), np.float32),
        "history": spaces.Box(-1.0, 1.0, (dim,), np.float32),
        "context": spaces.Box(0.0, 1.0, (context_dim(config) if context is None else context,), np.float32),
        "candidates": spaces.Box(0, num_items - 1, (n,), np.int64),
        "mask": spaces.Box(0, 1, (n,), np.int8),
    }
    if config.feedback.enabled:
        # Counts and mean dwell are finite and non-negative; no tighter bound holds for every response model.
        keys["item_feedback"] = spaces.Box(0.0, np.finfo(np.float32).max, (3 * n,), np.float32)
    return spaces.Dict(keys)


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

    Accepted dtypes (numpy or torch, or anything ``np.asarray`` turns into one): every integer dtype
    (int8..int64, uint8..uint64) for all action types, and for ``scores`` also every float dtype. float32 scores
    are ranked in float32 (the fast path), float64 and integer scores exactly as given (so the slate is the
    ranking of the values passed, even where float32 would round or overflow), float16/bfloat16 widened
    exactly. Booleans,
    complex numbers, strings, objects, ``None`` and ragged nested lists are refused whatever the mode.

    Args:
        action: single env: scores ``(N,)``, slate ``(K,)`` or an item index; batched: with a leading ``B``.
        mask: ``(B, N)`` bool, True = may be recommended.
        strict: validate range, duplicates, finiteness and the mask (shape and dtype are always checked).
    Raises:
        InvalidActionError: names the offending index, what was expected and what was received.
    """
    b, n = mask.shape
    k = config.slate_size
    kind = config.action_type
    a = _as_tensor(action, mask.device, kind)
    expected = {"scores": (n,), "slate": (k,), "item": ()}[kind]
    shape = ((b, *expected) if batched else expected)
    if tuple(a.shape) != shape:
        if not (kind == "item" and not batched and tuple(a.shape) == (1,)):
            raise InvalidActionError(f"action: expected shape {shape} for action_type={kind!r}, received {tuple(a.shape)}")
    a = a.reshape(b, *expected) if kind != "item" else a.reshape(b, 1)
    if kind == "scores":
        return _scores_to_slate(a, mask, k, batched, strict)
    if not strict:
        return _repair(a, mask, k)
    bad = ((a < 0) | (a >= n)).nonzero()
    if len(bad):
        i, j = bad[0].tolist()
        jj = j if kind == "slate" else None
        raise InvalidActionError(
            f"{_where(batched, i, jj)}: expected a candidate index in [0, {n}), received {a[i, j].item()}"
        )
    slate = a
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
            f"(already shown or a duplicate); expected an index with mask == 1, received one with mask == 0"
        )
    return slate


def _scores_to_slate(a: torch.Tensor, mask: torch.Tensor, k: int, batched: bool, strict: bool) -> torch.Tensor:
    """Top-K of ``a`` ``(B, N)`` (float32: fast path; float64 or int64: exact) among unmasked candidates."""
    if a.is_floating_point():
        if not strict:
            # Non-finite scores rank below every finite one (and masked candidates below those).
            low = torch.finfo(a.dtype).min
            a = torch.nan_to_num(a, nan=low, posinf=low, neginf=low)
        elif not bool(torch.isfinite(a.abs().amax())):  # amax propagates NaN; one reduction, no (B, N) bools
            i, j = (~torch.isfinite(a)).nonzero()[0].tolist()
            raise InvalidActionError(f"{_where(batched, i, j)}: expected a finite score, received {a[i, j].item()}")
        if a.dtype == torch.float32:
            return _top_k(a, mask, k)
        a = a + 0.0  # -0.0 == +0.0, as in the float32 path
    return _top_k_sorted(a, mask, k)


def _top_k_sorted(scores: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`_top_k` for float64 or int64 scores (same order and tie rule): a stable descending sort of the
    scores, then a stable sort that puts unmasked positions first."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    allowed_first = torch.sort(mask.gather(1, order).to(torch.int8), dim=1, descending=True, stable=True).indices
    return order.gather(1, allowed_first[:, :k])


_TORCH_FAST = (torch.float32, torch.int64, torch.float64)
_TORCH_TO_INT64 = (torch.int8, torch.int16, torch.int32, torch.uint8)
_NP_FAST = (np.dtype(np.float32), np.dtype(np.int64))
_INT64_MAX = 2**63 - 1


def _as_tensor(action: object, device: torch.device, kind: str) -> torch.Tensor:
    """The action as an int64 tensor, or (``scores`` only) a float32/float64 one; anything else is refused.

    The common cases (numpy or torch float32/int64) cost one dtype comparison."""
    if isinstance(action, np.ndarray) and action.dtype in _NP_FAST and (kind == "scores" or action.dtype == np.int64):
        return _from_numpy(action, device)
    if isinstance(action, torch.Tensor):
        if action.dtype in _TORCH_FAST:
            t = action.to(device)
        elif action.dtype in _TORCH_TO_INT64:
            t = action.to(device=device, dtype=torch.int64)
        elif action.dtype in (torch.float16, torch.bfloat16):
            t = action.to(device=device, dtype=torch.float32)
        elif action.dtype in (torch.bool, torch.complex64, torch.complex128) or action.is_complex():
            _refuse_dtype(str(action.dtype).removeprefix("torch."), kind)
        else:  # uint16/32/64 and the rest: numpy knows how to check and convert them
            return _as_tensor(action.detach().cpu().numpy(), device, kind)
        if t.is_floating_point() and kind != "scores":
            _refuse_dtype(str(t.dtype).removeprefix("torch."), kind)
        return t
    arr = action if isinstance(action, np.ndarray) else _to_array(action)
    dt = arr.dtype
    if dt.kind == "i" or (dt.kind == "u" and dt.itemsize < 8):
        arr = arr.astype(np.int64)
    elif dt.kind == "u":
        if arr.size and int(arr.max()) > _INT64_MAX:
            if kind != "scores":
                raise InvalidActionError(f"action: expected candidate indices (far) below 2**63, received "
                                         f"{int(arr.max())} ({dt})")
            # Flipping the top bit maps uint64 onto int64 in the same order: the ranking stays exact.
            arr = (arr ^ np.uint64(1 << 63)).view(np.int64)
        else:
            arr = arr.astype(np.int64)
    elif dt.kind == "f" and kind == "scores":
        if dt.itemsize <= 4:
            arr = arr.astype(np.float32)
        elif dt.itemsize > 8:  # long double: keep it only when float64 holds every value exactly
            wide = arr.astype(np.float64)
            finite = np.isfinite(arr)
            if not np.array_equal(wide[finite], arr[finite]):
                raise InvalidActionError(f"action: expected scores float64 can hold exactly, received {dt} "
                                         "values that float64 would round (the slate could change); pass float64")
            arr = wide
    else:
        _refuse_dtype(str(dt), kind)
    return _from_numpy(arr, device)


def _from_numpy(arr: np.ndarray, device: torch.device) -> torch.Tensor:
    try:
        return torch.as_tensor(arr, device=device)
    except ValueError:  # negative strides (scores[::-1]) or big-endian data: torch cannot share such memory
        return torch.as_tensor(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("=")), device=device)


def _to_array(action: object) -> np.ndarray:
    try:
        return np.asarray(action)
    except (ValueError, TypeError) as exc:  # ragged nested lists, objects numpy cannot hold as one array
        raise InvalidActionError(f"action: expected a rectangular array of numbers, received a "
                                 f"{type(action).__name__} numpy cannot turn into one ({exc})") from None


def _refuse_dtype(dtype: str, kind: str) -> None:
    if kind == "scores":
        raise InvalidActionError(f"action: expected real-valued scores (an integer or float dtype) for "
                                 f"action_type='scores', received dtype {dtype}")
    raise InvalidActionError(f"action: expected integer candidate indices for action_type={kind!r}, received "
                             f"dtype {dtype}")


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
