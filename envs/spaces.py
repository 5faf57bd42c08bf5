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


def _top_k(scores: torch.Tensor, mask: torch.Tensor, k: int, rounds: bool | None = None) -> torch.Tensor:
    """Positions ``(B, K)`` int64 of the K highest unmasked ``scores`` ``(B, N)`` float32 (finite), best
    first; equal scores rank the lower position first (on every device).

    Each score is packed with its position into one unique int64 key: the high half is the float's bits
    mapped to an int32 of the same order, the low half ``N - 1 - position``; masked entries get the lowest
    high half. Unique keys make the result independent of any sort's tie rule, and for small K the top-K is
    K max-reductions (bitwise ops instead of bool masks: both are far cheaper than topk or masked_fill on CPU).
    ``rounds`` forces (True) or forbids (False) the max-reduction path; both give the same slate.
    """
    b, n = scores.shape
    bits = (scores + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    key32 = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: flip the magnitude bits so order holds
    keep = -mask.to(torch.int32)  # all ones where allowed, 0 where masked
    key32 = (key32 & keep) | (~keep & _INT32_MIN)
    keys = (key32.to(torch.int64) << 32) | torch.arange(n - 1, -1, -1, device=scores.device)
    if rounds is None:
        rounds = k <= _ROUNDS_MAX_K and b * n >= _ROUNDS_MIN_SIZE
    if not rounds:
        return torch.topk(keys, k, dim=1, sorted=True).indices
    slate = torch.empty((b, k), dtype=torch.int64, device=scores.device)
    for j in range(k):
        pos = (n - 1) - (keys.amax(dim=1, keepdim=True) & 0xFFFFFFFF)
        slate[:, j : j + 1] = pos
        keys.scatter_(1, pos, _INT64_MIN)
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
