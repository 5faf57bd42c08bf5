"""Non-parametric and online baselines: random, popularity, LM-similarity, LinUCB and the myopic oracle.

All rank through :meth:`~recgym.agents.base.Recommender.rank` (masked top-k of :meth:`score`, ties by lower
index). Each keeps one seeded ``numpy.random.Generator`` (``self.rng``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from recgym.agents.base import AgentConfig, EnvSpec, Recommender, as_batched_obs, register

__all__ = [
    "RandomRecommender",
    "PopularityRecommender",
    "PopularityConfig",
    "LMSimilarityRecommender",
    "LMSimilarityConfig",
    "LinUCBRecommender",
    "LinUCBConfig",
    "OracleRecommender",
    "unit_rows",
]


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). ``(..., d)`` float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(norm > 0, x / np.maximum(norm, 1e-12), 0.0).astype(np.float32)


def _clicked_items(obs: Mapping[str, Any], slate: np.ndarray, feedback: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(items (B, K) int64, clicks (B, K) float)`` of a shown slate; rows absent from ``feedback['_clicks']``
    (vector env autoreset placeholders) get zero clicks."""
    batch, _ = as_batched_obs(obs)
    slate = np.asarray(slate, dtype=np.int64).reshape(batch["candidates"].shape[0], -1)
    items = np.take_along_axis(batch["candidates"], slate, axis=1)
    if "clicks" not in feedback:
        raise KeyError("feedback: expected the env's step info with a 'clicks' (B, K) array")
    clicks = np.asarray(feedback["clicks"], dtype=np.float64).reshape(items.shape)
    valid = feedback.get("_clicks")
    if valid is not None:
        clicks = clicks * np.asarray(valid, dtype=np.float64).reshape(-1, 1)
    return items, clicks


@register
class RandomRecommender(Recommender):
    """Uniformly random slate among unmasked candidates (scores ~ U(0, 1) from the agent's RNG)."""

    name: ClassVar[str] = "random"

    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.rng.random(np.shape(obs["candidates"]))

    def _get_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class PopularityConfig(AgentConfig):
    tie_noise: float = Field(1e-6, ge=0, description="random tie-break scale (0 = ties by lower position)")


@register
class PopularityRecommender(Recommender):
    """Ranks by click counts, learnt online through :meth:`update` from zero (no prior). Ties (e.g. before
    any click) are broken at random. Also :meth:`fit` on logs (counts the logged clicks)."""

    name: ClassVar[str] = "popularity"
    Config: ClassVar[type[AgentConfig]] = PopularityConfig
    learns_online: ClassVar[bool] = True
    learns_offline: ClassVar[bool] = True

    def __init__(self, spec: EnvSpec, config: AgentConfig | None = None) -> None:
        super().__init__(spec, config)
        self.clicks = np.zeros(spec.num_items, dtype=np.float64)

    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        base = self.clicks[obs["candidates"]]
        return base + self.config.tie_noise * self.rng.random(base.shape)

    def update(self, obs: Mapping[str, Any], slate: np.ndarray, feedback: Mapping[str, Any]) -> None:
        items, clicks = _clicked_items(obs, slate, feedback)
        np.add.at(self.clicks, items.ravel(), clicks.ravel())

    def fit(self, logged: Any) -> PopularityRecommender:
        np.add.at(self.clicks, logged.slate_items.ravel(), logged.clicks.ravel().astype(np.float64))
        return self

    def _get_state(self) -> dict[str, Any]:
        return {"clicks": torch.as_tensor(self.clicks)}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self.clicks = state["clicks"].numpy().astype(np.float64)


class LMSimilarityConfig(AgentConfig):
    history_weight: float = Field(1.0, ge=0, description="weight of the history vector in the query")


@register
class LMSimilarityRecommender(Recommender):
    """Cosine between ``normalise(profile + history_weight * history)`` and the candidates' LM embeddings.
    Needs no interactions, so it serves cold users and new items alike."""

    name: ClassVar[str] = "lm_similarity"
    Config: ClassVar[type[AgentConfig]] = LMSimilarityConfig

    def __init__(self, spec: EnvSpec, config: AgentConfig | None = None) -> None:
        super().__init__(spec, config)
        self.item_unit = unit_rows(spec.item_embeddings)

    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        q = unit_rows(obs["profile"] + self.config.history_weight * obs["history"])  # (B, d)
        return np.einsum("bnd,bd->bn", self.item_unit[obs["candidates"]], q)


class LinUCBConfig(AgentConfig):
    alpha: float = Field(1.0, ge=0, description="width of the upper confidence bonus")
    ridge: float = Field(1.0, gt=0, description="L2 prior: A starts at ridge * I")
    pca_dim: int = Field(16, ge=1, le=512, description="r: PCA dimensions of the LM features")


@register
class LinUCBRecommender(Recommender):
    """Shared-parameter LinUCB on LM features, updated online (one linear model for all items).

    Features ``x`` of (user, item), length ``2r + 3``: the item's top-``r`` PCA coordinates ``P e``, their
    elementwise product with the user query's ``P q`` (``q = normalise(profile + history)``),
    ``cos(profile, e)``, ``cos(history, e)`` and 1. Score ``= theta . x + alpha sqrt(x' A^-1 x)`` with
    ``A = ridge I + sum x x'``, ``theta = A^-1 sum r x``. Every shown item is one observation, reward = its
    click (position effects ignored). ``update`` solves once per call (batched, not per observation).
    """

    name: ClassVar[str] = "linucb"
    Config: ClassVar[type[AgentConfig]] = LinUCBConfig
    learns_online: ClassVar[bool] = True
    config: LinUCBConfig

    def __init__(self, spec: EnvSpec, config: AgentConfig | None = None) -> None:
        super().__init__(spec, config)
        emb = spec.item_embeddings.astype(np.float64)
        self.mean = emb.mean(0)
        r = min(self.config.pca_dim, spec.dim, spec.num_items)
        _, _, vt = np.linalg.svd(emb - self.mean, full_matrices=False)
        self.components = vt[:r].astype(np.float32)  # (r, d), deterministic
        self.item_pca = ((emb - self.mean) @ vt[:r].T).astype(np.float32)  # (M, r)
        self.item_pca /= max(float(np.abs(self.item_pca).max()), 1e-12)
        self.item_unit = unit_rows(spec.item_embeddings)
        p = 2 * r + 3
        self.A = np.eye(p) * self.config.ridge
        self.b = np.zeros(p)
        self._refresh()

    def _refresh(self) -> None:
        self.A_inv = np.linalg.inv(self.A)
        self.theta = self.A_inv @ self.b

    def features(self, obs: Mapping[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        """``(B, L, 2r + 3)`` float64 features of ``items`` ``(B, L)`` for each row's user."""
        q = unit_rows(obs["profile"] + obs["history"])
        q_pca = (q - self.mean.astype(np.float32)) @ self.components.T  # (B, r)
        q_pca = q_pca / np.maximum(np.linalg.norm(q_pca, axis=1, keepdims=True), 1e-12)
        e = self.item_pca[items]  # (B, L, r)
        u = self.item_unit[items]
        cos_p = np.einsum("bld,bd->bl", u, unit_rows(obs["profile"]))
        cos_h = np.einsum("bld,bd->bl", u, unit_rows(obs["history"]))
        ones = np.ones_like(cos_p)
        return np.concatenate([e, e * q_pca[:, None], cos_p[..., None], cos_h[..., None], ones[..., None]], axis=2)

    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        x = self.features(obs, obs["candidates"])
        mean = x @ self.theta
        width = np.sqrt(np.maximum(np.einsum("bnp,pq,bnq->bn", x, self.A_inv, x), 0.0))
        return mean + self.config.alpha * width

    def update(self, obs: Mapping[str, Any], slate: np.ndarray, feedback: Mapping[str, Any]) -> None:
        batch, _ = as_batched_obs(obs)
        items, clicks = _clicked_items(batch, slate, feedback)
        valid = feedback.get("_clicks")
        x = self.features(batch, items)
        if valid is not None:
            x = x[np.asarray(valid, dtype=bool)]
            clicks = clicks[np.asarray(valid, dtype=bool)]
        x2 = x.reshape(-1, x.shape[-1])
        self.A += x2.T @ x2
        self.b += x2.T @ clicks.reshape(-1)
        self._refresh()

    def _get_state(self) -> dict[str, Any]:
        return {"A": torch.as_tensor(self.A), "b": torch.as_tensor(self.b)}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self.A, self.b = state["A"].numpy().copy(), state["b"].numpy().copy()
        self._refresh()


@register
class OracleRecommender(Recommender):
    """Myopic oracle: ranks the current candidates by the env's hidden click logits
    (``env.oracle_scores()``: preference, popularity, appeal and the current fatigue), i.e. the best one-step
    slate. It ignores ``obs`` except for the mask and must be called on the observation the env currently shows
    (it reads the env's live state).

    What it bounds: the expected clicks of the *next* slate given the current state and candidates (for MNL,
    cascade and PBM alike, top-K by logit maximises them). It does not bound the return of a session: clicks
    on low-quality items drain the user's time budget, so a policy that clicks slightly less but on better
    items keeps users longer and can earn more in total. On fitted real-data worlds the MNL choice is nearly
    saturated (ml-100k: 0.953 clicks per slate for the oracle, 0.944 for popularity), so the one-step edge is
    about 1 % and session length decides the return (oracle 43.1, popularity 43.3 per session); popularity,
    PPO or a quality-aware ranking can beat it there. It is the upper reference for per-step CTR, not for
    return.
    """

    name: ClassVar[str] = "oracle"

    def __init__(self, spec: EnvSpec, config: AgentConfig | None = None) -> None:
        super().__init__(spec, config)
        if spec.oracle is None:
            raise ValueError("oracle: needs a live env (make_agent('oracle', env) or load_agent(path, env=env))")

    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        logits = np.asarray(self.spec.oracle(), dtype=np.float64)  # type: ignore[misc]
        logits = logits.reshape(-1, logits.shape[-1])
        if logits.shape != np.shape(obs["candidates"]):
            raise ValueError(
                f"oracle: env logits have shape {logits.shape}, obs candidates {np.shape(obs['candidates'])}; "
                "call rank() on the env's current observation"
            )
        return logits
