"""Explanations of recommended slates: which history items and profile aspects made each item score high.

``agent.explain(obs, slate, context=...)`` returns one :class:`SlateExplanation` per observation row with,
per recommended item, the evidence sorted by absolute contribution. Two attribution methods:

* **Scorer agents** (PPO, DQN, CTR; any agent whose ``explain_scorer()`` returns a module with the
  :class:`~recgym.agents.scorer.CandidateScorer` forward, which is how SlateQ plugs in): *gradient x
  input* of the item's score ``s`` with respect to the user's history vector ``h`` and profile vector
  ``p`` (through the user tower and the cosine interaction features alike). Because the history vector is
  a weighted sum of consumed items' LM embeddings, ``h = sum_j w_j e_j``, the gradient x input
  ``grad_h s . h`` splits exactly into one term per history item: ``w_j grad_h s . e_j``.
* **LM-similarity**: the score ``cos(q, e_i)`` with ``q = p + w h`` is linear in ``p`` and ``h`` before
  normalisation, so it splits exactly: profile ``p . e_i / |q|`` and history item ``j``
  ``w w_j e_j . e_i / |q|`` (the terms sum to the score).

Naming history items honestly. An observation carries only the history *summary* ``h``, not item ids. The
ids come from :class:`HistoryLedger`, which replays what the platform itself saw: the user's prior history
(``Population.history``, the items whose mean embedding starts ``h``) and the clicks in each step's info,
with the env's EMA weights (``h <- (1 - a) h + a * mean(clicked embeddings)``). The ledger's weighted sum is
checked against the observed ``h``; on a mismatch, or without a ledger, the history is decomposed onto
its nearest catalogue items by least squares and every such item is marked ``approximate`` with the
relative residual of the fit.

Profile aspects. The profile vector is an LM embedding of the profile text, not a sum of parts; aspects
(demographic fields, the "Likes ...", "Dislikes ...", "Recently watched ..." sentences) are scored by
*occlusion*: the score with the profile re-encoded without that aspect (``context.aspect_profiles``,
built by :func:`recgym.experiments.explain.profile_aspects`), ``contribution = s(p) - s(p without a)``.
Without aspects the profile is one piece of evidence (gradient x input of ``p``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from recgym.agents.base import as_batched_obs

__all__ = ["Evidence", "ExplainContext", "HistoryLedger", "ItemExplanation", "SlateExplanation", "explain_agent",
           "history_from_catalogue"]

SCORER_ACCESSORS = {  # agent name -> its CandidateScorer (agents may instead define explain_scorer())
    "ppo": lambda a: a.policy.scorer,
    "dqn": lambda a: a.q_net.scorer,
    "ctr": lambda a: a.net,
}
LEDGER_TOLERANCE = 1e-3  # max |ledger sum - observed history| (float32 EMA arithmetic differs in order only)


@dataclass(frozen=True)
class Evidence:
    """One piece of evidence: ``kind`` ``"history"`` (a consumed item, ``item`` its id) or ``"profile"``
    (an aspect of the profile text, or the whole profile); ``weight`` its additive contribution to the
    score; ``approximate``: the history item comes from a least-squares decomposition, not the ledger."""

    kind: str
    name: str
    weight: float
    item: int | None = None
    approximate: bool = False


@dataclass(frozen=True)
class ItemExplanation:
    position: int
    candidate: int
    item: int
    score: float
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class SlateExplanation:
    """Explanations of one row's slate, best position first. ``history_source``: ``"ledger"``,
    ``"catalogue (approximate, residual r)"`` or ``"none"`` (no history)."""

    method: str
    items: tuple[ItemExplanation, ...]
    history_source: str = "none"

    def format(self, top: int = 3) -> str:
        lines = [f"({self.method}; history items from {self.history_source})"]
        for e in self.items:
            ev = "; ".join(f"{x.name} {x.weight:+.3f}{' ~' if x.approximate else ''}" for x in e.evidence[:top])
            lines.append(f"  {e.position + 1}. {e.item} (score {e.score:.3f}) <- {ev or 'no evidence'}")
        return "\n".join(lines)


@dataclass
class ExplainContext:
    """What the observation lacks, per row ``b`` of the batch.

    Attributes:
        history_items: ``(B, H)`` int64 consumed item ids, ``-1`` padded; history_weights: ``(B, H)`` float
            ``w_j`` with ``h = sum_j w_j e_j`` (from :class:`HistoryLedger`).
        aspect_names: per row, the profile aspects' names; aspect_profiles: per row ``(A, d)`` float32 profile
            vectors re-encoded without each aspect.
        item_names: display names by item id (e.g. the catalogue titles), for evidence names.
    """

    history_items: np.ndarray | None = None
    history_weights: np.ndarray | None = None
    aspect_names: list[list[str]] | None = None
    aspect_profiles: list[np.ndarray] | None = None
    item_names: Sequence[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class HistoryLedger:
    """The consumed items behind each row's history vector, replayed from public information.

    Args:
        prior_history: ``(U, H)`` int64 ``Population.history`` (-1 padded). history_ema: ``EnvConfig.observation.history_ema``.
    """

    def __init__(self, prior_history: np.ndarray, history_ema: float) -> None:
        self.prior = np.asarray(prior_history, dtype=np.int64)
        self.ema = float(history_ema)
        self.rows: list[tuple[list[int], list[float]]] = []

    def start(self, users: Sequence[int]) -> None:
        """New sessions for ``users`` ``(B,)`` (one per row)."""
        self.rows = []
        for u in users:
            items = [int(i) for i in self.prior[int(u)] if i >= 0] if self.prior.size else []
            if not items:
                self.rows.append(([], []))
                continue
            self.rows.append((items, [1.0 / len(items)] * len(items)))  # [] for a cold user

    def observe(self, slate_items: np.ndarray, clicks: np.ndarray) -> None:
        """One step's ``info["slate_items"]`` ``(B, K)`` and ``info["clicks"]`` ``(B, K)``."""
        for b, (items, weights) in enumerate(self.rows):
            clicked = [int(i) for i, c in zip(slate_items[b], clicks[b], strict=True) if c]
            if clicked:
                weights[:] = [w * (1.0 - self.ema) for w in weights]
                items += clicked
                weights += [self.ema / len(clicked)] * len(clicked)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(B, H)`` item ids (-1 padded) and weights."""
        h = max((len(r[0]) for r in self.rows), default=0)
        ids = np.full((len(self.rows), max(h, 1)), -1, dtype=np.int64)
        w = np.zeros(ids.shape)
        for b, (items, weights) in enumerate(self.rows):
            ids[b, : len(items)], w[b, : len(items)] = items, weights
        return ids, w


def history_from_catalogue(history: np.ndarray, item_embeddings: np.ndarray, n: int = 10) -> tuple[np.ndarray, np.ndarray, float]:
    """Approximate ``h`` ``(d,)`` by ``sum_j w_j e_j`` over its ``n`` nearest catalogue items (least squares,
    negative weights dropped and refitted). Returns ``(ids (n',), weights (n',), relative residual)``."""
    h = np.asarray(history, dtype=np.float64)
    if not np.any(h):
        return np.zeros(0, np.int64), np.zeros(0), 0.0
    e = np.asarray(item_embeddings, dtype=np.float64)
    unit = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    ids = np.argsort(-(unit @ (h / np.linalg.norm(h))), kind="stable")[:n]
    for _ in range(n):
        w = np.linalg.lstsq(e[ids].T, h, rcond=None)[0]
        if (w >= 0).all() or len(ids) == 1:
            break
        ids = ids[w > 0] if (w > 0).any() else ids[:1]
    w = np.linalg.lstsq(e[ids].T, h, rcond=None)[0]
    resid = float(np.linalg.norm(e[ids].T @ w - h) / np.linalg.norm(h))
    return ids.astype(np.int64), w, resid


# ------------------------------------------------------------------------------------------- helpers
def _history_terms(batch: Mapping[str, np.ndarray], emb: np.ndarray, ctx: ExplainContext
                   ) -> tuple[list[np.ndarray], list[np.ndarray], list[bool], list[str]]:
    """Per row: history item ids, weights, approximate flag, source label (ledger checked against h)."""
    ids_l, w_l, approx_l, src_l = [], [], [], []
    for b, h in enumerate(batch["history"].astype(np.float64)):
        if ctx.history_items is not None and ctx.history_weights is not None:
            ids, w = ctx.history_items[b], ctx.history_weights[b]
            keep = ids >= 0
            ids, w = ids[keep], w[keep]
            recon = (emb[ids].astype(np.float64) * w[:, None]).sum(0) if len(ids) else np.zeros_like(h)
            if np.abs(recon - h).max() <= LEDGER_TOLERANCE:
                ids_l.append(ids)
                w_l.append(w)
                approx_l.append(False)
                src_l.append("ledger" if len(ids) else "none")
                continue
        ids, w, resid = history_from_catalogue(h, emb)
        ids_l.append(ids)
        w_l.append(w)
        approx_l.append(True)
        src_l.append(f"catalogue (approximate, residual {resid:.2f})" if len(ids) else "none")
    return ids_l, w_l, approx_l, src_l


def _name(ctx: ExplainContext, item: int) -> str:
    names = ctx.item_names
    return f"{names[item]!s} [{item}]" if names is not None else f"item {item}"


def _evidence(hist: list[tuple[int, float, bool]], prof: list[tuple[str, float]], ctx: ExplainContext,
              top: int | None) -> tuple[Evidence, ...]:
    ev = [Evidence("history", _name(ctx, i), float(w), i, a) for i, w, a in hist]
    ev += [Evidence("profile", n, float(w)) for n, w in prof]
    ev.sort(key=lambda x: -abs(x.weight))
    return tuple(ev[:top] if top else ev)


# ------------------------------------------------------------------------------------------- methods
def _scorer_of(agent: Any) -> torch.nn.Module | None:
    fn = getattr(agent, "explain_scorer", None)
    if callable(fn):
        return fn()
    acc = SCORER_ACCESSORS.get(getattr(agent, "name", ""))
    return acc(agent) if acc is not None else None


def _per_item_obs(batch: Mapping[str, np.ndarray], slate: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    """One row per (user, slate position): ``(B*K, ...)`` with the single slate item as the candidate."""
    b, k = slate.shape
    items = np.take_along_axis(batch["candidates"], slate, axis=1).reshape(-1, 1)

    def rep(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.repeat(np.asarray(x, dtype=np.float32), k, axis=0), device=device)

    return {"profile": rep(batch["profile"]), "history": rep(batch["history"]), "context": rep(batch["context"]),
            "candidates": torch.as_tensor(items, device=device), "mask": torch.ones((b * k, 1), device=device)}


def _explain_scorer(scorer: torch.nn.Module, batch: Mapping[str, np.ndarray], slate: np.ndarray,
                    emb: np.ndarray, ctx: ExplainContext, top: int | None) -> list[SlateExplanation]:
    b, k = slate.shape
    dev = next(scorer.parameters()).device
    was_training = scorer.training
    scorer.eval()
    try:
        obs = _per_item_obs(batch, slate, dev)
        obs["profile"].requires_grad_(True)
        obs["history"].requires_grad_(True)
        with torch.enable_grad():
            scores = scorer(obs)[0][:, 0]
            g_p, g_h = torch.autograd.grad(scores.sum(), [obs["profile"], obs["history"]])
        scores_np = scores.detach().cpu().numpy().reshape(b, k)
        g_p, g_h = g_p.cpu().numpy().reshape(b, k, -1), g_h.cpu().numpy().reshape(b, k, -1)
        occl = _occlusion(scorer, obs, ctx, b, k, scores_np) if ctx.aspect_profiles is not None else None
    finally:
        scorer.train(was_training)
    ids_l, w_l, approx_l, src_l = _history_terms(batch, emb, ctx)
    out = []
    for r in range(b):
        e_hist = emb[ids_l[r]].astype(np.float64)  # (H, d)
        items = []
        for j in range(k):
            hist = [(int(i), float(w * (e @ g_h[r, j])), approx_l[r])
                    for i, w, e in zip(ids_l[r], w_l[r], e_hist, strict=True)]
            if occl is not None:
                prof = list(zip(ctx.aspect_names[r], occl[r][:, j], strict=True))  # type: ignore[index]
            else:
                prof = [("whole profile text", float(g_p[r, j] @ batch["profile"][r]))]
            cand = int(slate[r, j])
            items.append(ItemExplanation(j, cand, int(batch["candidates"][r, cand]), float(scores_np[r, j]),
                                         _evidence(hist, prof, ctx, top)))
        out.append(SlateExplanation("gradient x input of the scorer", tuple(items), src_l[r]))
    return out


@torch.no_grad()
def _occlusion(scorer: torch.nn.Module, obs: dict[str, torch.Tensor], ctx: ExplainContext, b: int, k: int,
               scores: np.ndarray) -> list[np.ndarray]:
    """Per row ``(A, K)``: score with the full profile minus score with the profile without aspect ``a``."""
    out = []
    for r in range(b):
        alt = np.asarray(ctx.aspect_profiles[r], dtype=np.float32)  # type: ignore[index]
        a = len(alt)
        if a == 0:
            out.append(np.zeros((0, k)))
            continue
        rows = slice(r * k, (r + 1) * k)
        sub = {key: v[rows].detach().repeat(a, *([1] * (v.dim() - 1))) for key, v in obs.items()}
        sub["profile"] = torch.as_tensor(np.repeat(alt, k, axis=0), device=sub["profile"].device)
        s_alt = scorer(sub)[0][:, 0].cpu().numpy().reshape(a, k)
        out.append(scores[r][None, :] - s_alt)
    return out


def _explain_lm_similarity(agent: Any, batch: Mapping[str, np.ndarray], slate: np.ndarray, ctx: ExplainContext,
                           top: int | None) -> list[SlateExplanation]:
    from recgym.agents.baselines import unit_rows

    wh = float(agent.config.history_weight)
    emb = np.asarray(agent.spec.item_embeddings, dtype=np.float64)
    unit = agent.item_unit.astype(np.float64)
    ids_l, w_l, approx_l, src_l = _history_terms(batch, emb, ctx)
    out = []
    for r in range(len(slate)):
        p, h = batch["profile"][r].astype(np.float64), batch["history"][r].astype(np.float64)
        norm = max(np.linalg.norm(p + wh * h), 1e-12)
        items = []
        for j, cand in enumerate(slate[r]):
            item = int(batch["candidates"][r, cand])
            u = unit[item]
            hist = [(int(i), float(wh * w * (emb[i] @ u) / norm), approx_l[r])
                    for i, w in zip(ids_l[r], w_l[r], strict=True)]
            if ctx.aspect_profiles is not None and len(ctx.aspect_profiles[r]):
                alt = ctx.aspect_profiles[r].astype(np.float64)
                full = float(unit_rows(p + wh * h) @ u)
                prof = [(n, full - float(unit_rows(a + wh * h) @ u))
                        for n, a in zip(ctx.aspect_names[r], alt, strict=True)]  # type: ignore[index]
            else:
                prof = [("whole profile text", float(p @ u / norm))]
            items.append(ItemExplanation(j, int(cand), item, float(unit_rows(p + wh * h) @ u),
                                         _evidence(hist, prof, ctx, top)))
        out.append(SlateExplanation("exact decomposition of the cosine", tuple(items), src_l[r]))
    return out


def explain_agent(agent: Any, obs: Mapping[str, Any], slate: np.ndarray, context: ExplainContext | None = None,
                  top: int | None = 5) -> list[SlateExplanation]:
    """Explain ``slate`` ``(B, K)`` (candidate positions, as returned by ``agent.rank``) for ``obs``.

    Returns one :class:`SlateExplanation` per row with at most ``top`` pieces of evidence per item
    (``None`` = all). Raises ``NotImplementedError`` for agents with no attribution method.
    """
    batch, _ = as_batched_obs(obs)
    slate = np.asarray(slate, dtype=np.int64).reshape(len(batch["candidates"]), -1)
    ctx = context or ExplainContext()
    emb = np.asarray(agent.spec.item_embeddings, dtype=np.float32)
    if getattr(agent, "name", "") == "lm_similarity":
        return _explain_lm_similarity(agent, batch, slate, ctx, top)
    scorer = _scorer_of(agent)
    if scorer is None:
        raise NotImplementedError(
            f"explain: agent {getattr(agent, 'name', type(agent).__name__)!r} has no attribution method; "
            f"supported: lm_similarity, {', '.join(SCORER_ACCESSORS)} and agents defining explain_scorer()")
    return _explain_scorer(scorer, batch, slate, emb, ctx, top)
