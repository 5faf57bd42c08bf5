"""Fairness-aware re-ranking that wraps any agent: amortised exposure (lambda-weighted) or FA*IR.

:class:`FairReranker` takes the wrapped agent's candidate scores ``s`` ``(B, N)`` and re-ranks them; it
reads only what a platform knows (the public item features and the exposure it has itself given), never
the hidden relevance.

``method="exposure"`` (amortised, in the spirit of Biega et al. 2018): scores are standardised per row over
the unmasked candidates, ``z = (s - mean) / std``, and penalised by the exposure each item has received
from this re-ranker so far::

    s' = z - lam * log(1 + E_i / mean(E))

``E_i`` adds the position attention ``v_j = 1 / log2(j + 2)`` of every slate position item ``i`` was
*shown* at, learnt from the feedback (:meth:`FairReranker.update`, the step info's ``slate_items``), so
the wrapper is an online learner (the runner calls ``update`` after each step; call it yourself in your
own loop, else no exposure is counted and the ranking stays the base ranking). ``lam = 0`` is the base
ranking; large ``lam`` spreads exposure over items regardless of their predicted relevance.

``method="fair"`` (FA*IR, Zehlike et al. 2017): a ranked group fairness constraint for the protected group
(``tail`` or ``new`` items, from the public features, see :func:`~recgym.envs.fairness.protected_items`):
every prefix of length ``k`` holds at least ``m(k)`` protected items, ``m(k)`` the ``alpha``-quantile of
Binomial(``k``, ``p``) (no multiple-testing adjustment of ``alpha``). Within that constraint the greedy
choice is the higher base score, so ``p = 0`` is the base ranking.

Configured per agent in an experiment config: ``agents: [{name: lm_similarity, rerank: {method: exposure,
lam: 0.5}}]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from recgym.agents.base import as_batched_obs, masked_top_k
from recgym.common.config import StrictModel
from recgym.envs.fairness import protected_items

__all__ = ["FairReranker", "RerankConfig", "fair_min_protected"]


class RerankConfig(StrictModel):
    """A fairness-aware re-ranker around an agent."""

    config_path: ClassVar[str] = "agents[].rerank"
    method: Literal["exposure", "fair"] = Field("exposure", description="exposure: lambda-weighted amortised "
                                                "exposure; fair: FA*IR prefix constraint on a protected group")
    lam: float = Field(0.5, ge=0, description="exposure: weight of the exposure penalty")
    protected: Literal["tail", "new"] = Field("tail", description="fair: the protected group")
    head_fraction: float = Field(0.2, gt=0, lt=1, description="share of initial items that are the head")
    p: float = Field(0.5, ge=0, lt=1, description="fair: target share of protected items in every prefix")
    alpha: float = Field(0.1, gt=0, lt=1, description="fair: significance of the binomial test")


def fair_min_protected(k: int, p: float, alpha: float) -> np.ndarray:
    """``(k,)`` int64 FA*IR table: entry ``n - 1`` = minimum protected items in the top ``n``,
    ``m(n) = F^-1(alpha; n, p)``, the smallest ``m`` with ``P(Binomial(n, p) <= m) >= alpha``."""
    out = np.zeros(k, dtype=np.int64)
    for n in range(1, k + 1):
        cdf, m = 0.0, 0
        while m <= n:
            cdf += math.comb(n, m) * p**m * (1 - p) ** (n - m)
            if cdf >= alpha - 1e-12:
                break
            m += 1
        out[n - 1] = m
    return out


class FairReranker:
    """Wrap ``base`` (any :class:`~recgym.agents.base.Recommender`) with a fairness-aware re-ranking.

    Implements the ranking side of the contract (``rank``, ``score``, ``update``, ``explain``); it is not
    registered and not saved (save the base agent). ``learns_online`` is always True: the exposure
    counter learns from the step feedback; the base's ``update`` is forwarded when the base learns online.
    """

    learns_online: ClassVar[bool] = True
    learns_offline = False
    train_action_types = None

    def __init__(self, base: Any, config: RerankConfig | None = None) -> None:
        self.base = base
        self.config = config or RerankConfig()
        self.spec = base.spec
        self.name = f"{base.name}+{self.config.method}"
        feats = self.spec.item_features
        if feats is None:
            raise ValueError("FairReranker: the env has no public item features (popularity percentile, new flag)")
        self.protected = protected_items(feats, self.config.protected, self.config.head_fraction)
        self.exposure = np.zeros(self.spec.num_items, dtype=np.float64)

    def __getattr__(self, name: str) -> Any:  # fit, model, policy ... of the wrapped agent
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    # ------------------------------------------------------------------ ranking
    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """``(B, N)`` re-ranking scores of the ``exposure`` method (``fair`` re-ranks in :meth:`rank`)."""
        batch, _ = as_batched_obs(obs)
        s = np.asarray(self.base.score(batch), dtype=np.float64)
        if self.config.method != "exposure" or self.config.lam == 0:
            return s
        allowed = batch["mask"].astype(bool)
        n = np.maximum(allowed.sum(1, keepdims=True), 1)
        mean = np.where(allowed, s, 0.0).sum(1, keepdims=True) / n
        std = np.sqrt(np.where(allowed, (s - mean) ** 2, 0.0).sum(1, keepdims=True) / n)
        z = (s - mean) / np.maximum(std, 1e-8)
        avg = self.exposure.mean()
        penalty = np.log1p(self.exposure[batch["candidates"]] / avg) if avg > 0 else 0.0
        return z - self.config.lam * penalty

    def rank(self, obs: Mapping[str, Any], k: int | None = None) -> np.ndarray:
        """``(B, k)`` int64 candidate positions, best first (see the module docstring)."""
        k = self.spec.slate_size if k is None else int(k)
        batch, _ = as_batched_obs(obs)
        if self.config.method == "exposure":
            return masked_top_k(self.score(batch), batch["mask"], k)
        return self._fair_rank(np.asarray(self.base.score(batch), dtype=np.float64), batch, k)

    def _fair_rank(self, s: np.ndarray, batch: Mapping[str, np.ndarray], k: int) -> np.ndarray:
        allowed = batch["mask"].astype(bool)
        prot = self.protected[batch["candidates"]] & allowed
        need = fair_min_protected(k, self.config.p, self.config.alpha)
        b = len(s)
        rows = np.arange(b)
        # Each queue's order is the base order restricted to it; pick heads by pointer.
        s_p = np.where(prot, s, -np.inf)
        s_q = np.where(allowed & ~prot, s, -np.inf)
        order_p = np.argsort(-s_p, axis=1, kind="stable")
        order_q = np.argsort(-s_q, axis=1, kind="stable")
        n_p, n_q = prot.sum(1), (allowed & ~prot).sum(1)
        ip, iq = np.zeros(b, dtype=np.int64), np.zeros(b, dtype=np.int64)
        out = np.empty((b, k), dtype=np.int64)
        for j in range(k):
            has_p, has_q = ip < n_p, iq < n_q
            if not (has_p | has_q).all():
                raise ValueError(f"obs['mask']: expected at least k={k} unmasked candidates in every row")
            head_p = order_p[rows, np.minimum(ip, s.shape[1] - 1)]
            head_q = order_q[rows, np.minimum(iq, s.shape[1] - 1)]
            forced = has_p & (ip < need[j])
            take_p = has_p & (forced | ~has_q | (s[rows, head_p] >= s[rows, head_q]))
            out[:, j] = np.where(take_p, head_p, head_q)
            ip += take_p
            iq += ~take_p
        return out

    # ------------------------------------------------------------------ feedback
    def update(self, obs: Mapping[str, Any], slate: np.ndarray, feedback: Mapping[str, Any]) -> None:
        """Count the exposure of the shown slates (``feedback['slate_items']`` ``(B, K)``; rows that are False
        in ``feedback['_clicks']`` are skipped) and forward the feedback to a base that learns online."""
        items = np.asarray(feedback["slate_items"], dtype=np.int64)
        valid = feedback.get("_clicks")
        if valid is not None:
            items = items[np.asarray(valid, dtype=bool)]
        v = 1.0 / np.log2(np.arange(2, items.shape[1] + 2, dtype=np.float64))
        np.add.at(self.exposure, items.ravel(), np.broadcast_to(v, items.shape).ravel())
        if getattr(self.base, "learns_online", False):
            self.base.update(obs, slate, feedback)

    def explain(self, obs: Mapping[str, Any], slate: np.ndarray, context: Any = None, top: int | None = 5) -> Any:
        """The base agent's explanation of ``slate`` (the re-ranking adds no evidence of its own)."""
        return self.base.explain(obs, slate, context, top)

    def __repr__(self) -> str:
        return f"FairReranker(base={self.base!r}, config={self.config!r})"
