"""The platform's observable feedback: per item, impressions, clicks and dwell accumulated over every user.

What a real platform knows about its items beyond their texts is its own logs. With ``env.feedback.enabled``
the simulation keeps one *shared* table in the state (not per user: every simulated user adds to it)::

    state.item_feedback   (M, 3) float64   [impressions, clicks, summed dwell of the clicks]

updated inside the batched step, on the env's device: one ``index_add_`` of the slate's items, ``[1, click,
dwell]`` per shown slot. Rows that a vector env steps only as a placeholder (a slot waiting for its
autoreset) add nothing. Float64 counts are exact up to 2^53.

Observation (read-only, never an ``(M, ...)`` block per step): ``obs["item_feedback"]`` ``(3N,)`` float32 —
an ``(N, 3)`` block flattened row by row (a 1-D key, as SB3 asks) — the table's row of each candidate as ``[impressions, clicks, mean dwell per click (0 without clicks)]``;
the env's ``item_feedback`` property gives the whole ``(M, 3)`` table the same way (a copy). Agents read the
candidates' rows from the observation, so what they see is the table as it was at that step — stored with the
observation in rollout and replay buffers, identical for every env an agent is evaluated on.

Reset rules: the table belongs to a *run* of the simulation. A seeded ``reset`` (``init_state``) starts a new
table: empty, or — with ``warmup_users`` and ``warmup_steps`` > 0 — the table left by that many users shown
uniformly random slates for that many steps (the platform's history before the run; deterministic in the
seed, so every agent evaluated with a seed starts from the same table; items not yet released at clock 0
are cleared). Unseeded resets (new users in a running simulation) keep it; clones and forks
(:meth:`~recgym.envs.state.SimState.clone`, ``repeat``, ``take``) carry a copy. In training the table keeps
growing over the whole run; the evaluation protocol reseeds every episode, so each evaluation starts from the
warm-up table.

Several tables in one state (seed-batched training, :func:`~recgym.agents.ppo_fast.train_seeds`): the rows of
S separate simulations stacked into one state keep S separate tables, stacked as ``(S * M, 3)``, and a batched
``item_feedback_offset`` ``(B,)`` int64 field gives each row the first table row of its simulation (``s * M``);
every read and write here goes through it, so each simulation's table is the one it would have alone. States
without that field (every env's own) have one table.

Hidden truth stays hidden: impressions and clicks are counts of what happened; mean dwell is the mean of the
observed dwell samples, which depend on the item's hidden quality — as real dwell time does.
"""

from __future__ import annotations

import torch

from recgym.envs import rng
from recgym.envs.state import SimState

__all__ = ["FEEDBACK_FEATURES", "FEEDBACK_FIELD", "FEEDBACK_OFFSET_FIELD", "feedback_fields", "record_feedback",
           "feedback_view", "candidate_feedback", "WARMUP_DRAWS"]

FEEDBACK_FEATURES = ("impressions", "clicks", "mean_dwell")
FEEDBACK_FIELD = "item_feedback"
FEEDBACK_OFFSET_FIELD = "item_feedback_offset"  # optional (B,) int64: first table row of each row's simulation
WARMUP_DRAWS = 1 << 21  # draw index of the warm-up's random slate scores within an event
_GOLDEN32 = 0x9E3779B9 - (1 << 32)


def feedback_fields(num_items: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The shared field: ``item_feedback`` ``(M, 3)`` float64 zeros."""
    return {FEEDBACK_FIELD: torch.zeros(num_items, 3, dtype=torch.float64, device=device)}


def record_feedback(state: SimState, items: torch.Tensor, clicks: torch.Tensor, dwell: torch.Tensor,
                    active: torch.Tensor | None = None) -> None:
    """Add one step to the table, in place: ``items`` ``(B, K)`` int64 shown, ``clicks`` ``(B, K)`` bool,
    ``dwell`` ``(B, K)`` float32 (0 where not clicked); ``active`` ``(B,)`` bool rows that count (None: all)."""
    src = torch.stack([torch.ones_like(dwell), clicks.to(dwell.dtype), dwell], dim=2).to(torch.float64)
    if active is not None:
        src.mul_(active.to(torch.float64).view(-1, 1, 1))
    state.item_feedback.index_add_(0, _table_rows(state, items).reshape(-1), src.view(-1, 3))


def _table_rows(state: SimState, items: torch.Tensor) -> torch.Tensor:
    """Rows of ``state.item_feedback`` of ``items`` ``(B, X)``: the items themselves, or shifted by each row's
    :data:`FEEDBACK_OFFSET_FIELD` in a state holding several simulations' tables."""
    if FEEDBACK_OFFSET_FIELD not in state.names():
        return items
    return items + state.item_feedback_offset.unsqueeze(1)


def feedback_view(table: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` float32 ``[impressions, clicks, mean dwell per click]`` of table rows ``(..., 3)`` float64."""
    clicks = table[..., 1]
    mean = torch.where(clicks > 0, table[..., 2] / clicks.clamp_min(1.0), torch.zeros_like(clicks))
    return torch.stack([table[..., 0], clicks, mean], dim=-1).to(torch.float32)


def candidate_feedback(state: SimState) -> torch.Tensor:
    """``(B, N, 3)`` float32 :func:`feedback_view` of each row's candidates."""
    cand = state.candidates
    rows = _table_rows(state, cand).reshape(-1)
    return feedback_view(state.item_feedback.index_select(0, rows)).view(*cand.shape, 3)


def warm_table(core, seed: int, users: int, steps: int) -> torch.Tensor:  # noqa: ANN001 - RankingCore
    """``(M, 3)`` float64: the table after ``users`` users (drawn from the core's cohort) saw ``steps``
    uniformly random slates each, from an empty table; rows of items unreleased at clock 0 zeroed."""
    state = core.init_state(batch_size=users, seed=seed, warmup=False)
    k = core.config.slate_size
    for _ in range(steps):
        bases = rng.event_bases(state.rng) + WARMUP_DRAWS * _GOLDEN32
        scores = rng.uniform(rng.hash_words(bases, state.candidates.shape[1]))
        scores.masked_fill_(~state.mask, -1.0)
        slate = torch.topk(scores, k, dim=1).indices
        _, terminated, truncated, _ = core.step(state, slate)
        done = (terminated | truncated).nonzero().flatten()
        if len(done):
            core.reset_rows(state, done)
    table = state.item_feedback.clone()
    table[~core.released(0)] = 0.0
    return table
