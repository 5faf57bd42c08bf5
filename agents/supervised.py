"""Baselines fitted on logged clicks (:class:`~recgym.agents.logging.LoggedData`): a CTR model on frozen LM
embeddings with a trainable adapter, and BPR matrix factorisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from recgym.agents._sb3 import obs_to_torch, seeded_init
from recgym.agents.base import AgentConfig, EnvSpec, Recommender, register
from recgym.agents.scorer import CandidateScorer

__all__ = ["CTRConfig", "CTRRecommender", "MFConfig", "MFRecommender", "ColdItemError"]


class ColdItemError(ValueError):
    """MF was asked to rank an item (or user) absent from its training log and ``cold_policy='error'``."""


def _require_rows(logged: Any, who: str) -> None:
    if len(logged) == 0:
        raise ValueError(f"{who}.fit: expected a log with at least one row, received 0")
    if float(np.asarray(logged.clicks).sum()) == 0:
        raise ValueError(f"{who}.fit: expected at least one click in the log, received none")


class CTRConfig(AgentConfig):
    hidden: int = Field(32, ge=4, le=4096)
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)


@register
class CTRRecommender(Recommender):
    """Click model ``P(click | user, item) = sigmoid(scorer(...))``: the shared
    :class:`~recgym.agents.scorer.CandidateScorer` (frozen LM item table; trainable item adapter, user tower,
    cosine interaction weights and head) fitted by binary cross-entropy on every logged (slate item, click).
    Position and slate context are ignored (a pointwise model), so it learns clicks as the logger showed them.
    """

    name: ClassVar[str] = "ctr"
    Config: ClassVar[type[AgentConfig]] = CTRConfig
    learns_offline: ClassVar[bool] = True
    config: CTRConfig

    def __init__(self, spec: EnvSpec, config: AgentConfig | None = None) -> None:
        super().__init__(spec, config)
        with seeded_init(self.config.seed):
            self.net = CandidateScorer(spec.item_embeddings, hidden=self.config.hidden, value_head=False,
                                       context_dim=spec.context_dim, feedback_dim=spec.feedback_dim).to(self.device)
        self.losses: list[float] = []

    def fit(self, logged: Any) -> CTRRecommender:
        _require_rows(logged, self.name)
        c, dev = self.config, self.device
        obs = {k: torch.as_tensor(getattr(logged, k)) for k in ("profile", "history", "context", "candidates", "mask")}
        if self.spec.feedback_dim:
            if logged.item_feedback is None:
                raise ValueError("ctr.fit: the env observes item_feedback but the logs hold none; collect the logs "
                                 "on an env with the same feedback setting")
            obs["item_feedback"] = torch.as_tensor(logged.item_feedback)
        slate = torch.as_tensor(logged.slate)
        clicks = torch.as_tensor(logged.clicks).to(torch.float32)
        opt = torch.optim.Adam(self.net.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)
        self.net.train()
        for _ in range(c.epochs):
            total, count = 0.0, 0
            for idx in np.array_split(self.rng.permutation(len(logged)), max(1, len(logged) // c.batch_size)):
                i = torch.as_tensor(idx)
                scores, _ = self.net({k: v[i].to(dev) for k, v in obs.items()})
                logits = scores.gather(1, slate[i].to(dev))
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, clicks[i].to(dev))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, count = total + float(loss.detach()) * len(idx), count + len(idx)
            self.losses.append(total / count)
        self.net.eval()
        return self

    @torch.no_grad()
    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.net(obs_to_torch(obs, self.device))[0].cpu().numpy()

    def _get_state(self) -> dict[str, Any]:
        return {"net": {k: v.detach().cpu() for k, v in self.net.state_dict().items()}}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self.net.load_state_dict(state["net"])


class MFConfig(AgentConfig):
    factors: int = Field(32, ge=1, le=1024)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(1024, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    l2: float = Field(1e-4, ge=0)
    cold_policy: Literal["last", "error"] = Field(
        "last", description="items unseen in the log: 'last' = ranked after every warm item, in random order; "
        "'error' = raise ColdItemError when one is rankable"
    )


@register
class MFRecommender(Recommender):
    """BPR matrix factorisation on logged clicks: ``s(u, i) = <p_u, q_i> + b_i``. Positives are clicked
    (user, item) pairs; each is contrasted with a shown-but-not-clicked item of the same slate (or a random
    logged item when every slot was clicked).

    Users are identified by their profile vector (observations carry no user id): a profile seen in the
    log maps to its user; an unseen (cold) user gets the mean user factor (so ranks by item factors' mean
    affinity + bias). Items never shown in the log are *cold*: MF cannot score them; see ``cold_policy``.
    :attr:`cold_stats` counts cold candidates and users seen by :meth:`score` - report it.
    """

    name: ClassVar[str] = "mf"
    Config: ClassVar[type[AgentConfig]] = MFConfig
    learns_offline: ClassVar[bool] = True
    config: MFConfig

    def __init__(self, spec: EnvSpec, config: AgentConfig | None = None) -> None:
        super().__init__(spec, config)
        self.item_warm = np.zeros(spec.num_items, dtype=bool)
        self.item_factors = np.zeros((spec.num_items, self.config.factors), dtype=np.float32)
        self.item_bias = np.zeros(spec.num_items, dtype=np.float32)
        self.user_factors = np.zeros((0, self.config.factors), dtype=np.float32)
        self.user_index: dict[bytes, int] = {}
        self.cold_stats = {"candidates": 0, "cold_candidates": 0, "users": 0, "cold_users": 0}
        self.fitted = False

    @property
    def cold_candidate_fraction(self) -> float:
        """Fraction of unmasked candidates scored so far that were cold (never in the log)."""
        return self.cold_stats["cold_candidates"] / max(self.cold_stats["candidates"], 1)

    def fit(self, logged: Any) -> MFRecommender:
        _require_rows(logged, self.name)
        c = self.config
        keys = [np.ascontiguousarray(p).tobytes() for p in logged.profile]
        for key in keys:
            self.user_index.setdefault(key, len(self.user_index))
        rows_user = np.array([self.user_index[key] for key in keys], dtype=np.int64)
        self.item_warm[np.unique(logged.slate_items)] = True
        # triples (user, positive item, negative item)
        r, j = np.nonzero(logged.clicks)
        shown = logged.slate_items
        neg_slot = np.argsort(np.where(logged.clicks[r] > 0, 2.0, self.rng.random((len(r), shown.shape[1]))), axis=1)[:, 0]
        neg = shown[r, neg_slot]
        all_clicked = logged.clicks[r, neg_slot] > 0
        warm_items = np.flatnonzero(self.item_warm)
        neg[all_clicked] = self.rng.choice(warm_items, int(all_clicked.sum()))
        users, pos = rows_user[r], shown[r, j]
        gen = torch.Generator().manual_seed(c.seed)
        p = torch.nn.Parameter(0.1 * torch.randn(len(self.user_index), c.factors, generator=gen))
        q = torch.nn.Parameter(0.1 * torch.randn(self.spec.num_items, c.factors, generator=gen))
        bias = torch.nn.Parameter(torch.zeros(self.spec.num_items))
        opt = torch.optim.Adam([p, q, bias], lr=c.learning_rate)
        u_t, i_t, j_t = (torch.as_tensor(a) for a in (users, pos, neg))
        for _ in range(c.epochs):
            for idx in np.array_split(self.rng.permutation(len(users)), max(1, len(users) // c.batch_size)):
                u, i, jj = u_t[idx], i_t[idx], j_t[idx]
                diff = (p[u] * (q[i] - q[jj])).sum(1) + bias[i] - bias[jj]
                reg = c.l2 * (p[u].pow(2).sum() + q[i].pow(2).sum() + q[jj].pow(2).sum()) / len(idx)
                loss = -torch.nn.functional.logsigmoid(diff).mean() + reg
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.user_factors = p.detach().numpy().astype(np.float32)
        self.item_factors = q.detach().numpy().astype(np.float32)
        self.item_bias = bias.detach().numpy().astype(np.float32)
        self.fitted = True
        return self

    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("mf: call fit(logged) before ranking; MF has no scores without a log")
        cand = obs["candidates"]
        allowed = np.asarray(obs["mask"]).astype(bool)
        rows = np.array([self.user_index.get(np.ascontiguousarray(pr, np.float32).tobytes(), -1) for pr in obs["profile"]])
        mean_user = self.user_factors.mean(0)
        users = np.where((rows >= 0)[:, None], self.user_factors[np.maximum(rows, 0)], mean_user[None])
        warm = self.item_warm[cand]
        cold_rankable = allowed & ~warm
        self.cold_stats["candidates"] += int(allowed.sum())
        self.cold_stats["cold_candidates"] += int(cold_rankable.sum())
        self.cold_stats["users"] += len(rows)
        self.cold_stats["cold_users"] += int((rows < 0).sum())
        if self.config.cold_policy == "error" and cold_rankable.any():
            b, i = np.argwhere(cold_rankable)[0]
            raise ColdItemError(
                f"mf: candidate {i} of row {b} (item {cand[b, i]}) never appeared in the training log; MF cannot "
                "score it. Expected warm items only (cold_policy='error'); use cold_policy='last' to rank cold "
                "items after warm ones"
            )
        scores = np.einsum("bnf,bf->bn", self.item_factors[cand], users) + self.item_bias[cand]
        cold_score = -1e6 + self.rng.random(cand.shape)  # below every warm item, random order among cold
        return np.where(warm, scores, cold_score)

    def _get_state(self) -> dict[str, Any]:
        keys = np.frombuffer(b"".join(self.user_index), dtype=np.float32).reshape(len(self.user_index), self.spec.dim)
        return {
            "item_warm": torch.as_tensor(self.item_warm), "item_factors": torch.as_tensor(self.item_factors),
            "item_bias": torch.as_tensor(self.item_bias), "user_factors": torch.as_tensor(self.user_factors),
            "user_profiles": torch.as_tensor(keys.copy()), "fitted": self.fitted,
        }

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self.item_warm = state["item_warm"].numpy().copy()
        self.item_factors = state["item_factors"].numpy().copy()
        self.item_bias = state["item_bias"].numpy().copy()
        self.user_factors = state["user_factors"].numpy().copy()
        self.user_index = {np.ascontiguousarray(p).tobytes(): i for i, p in enumerate(state["user_profiles"].numpy())}
        self.fitted = bool(state["fitted"])
