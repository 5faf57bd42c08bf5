"""Oracles that plan with the hidden model: a quality-aware heuristic and the lookahead oracle (MPC).

Both are *oracles*: they read the env's hidden state (latent interests, item quality, the true click model)
through ``EnvSpec.simulator`` — ``() -> (core, live state)`` of the env they were built on — and exist to
bound what a learner could reach, never to be deployed. They rank only the observation the env currently
shows (like the myopic ``oracle``), and never step the live state: every look ahead runs on forks.

**Quality-aware heuristic** (``quality_oracle``): scores candidate ``i`` by its expected immediate reward
plus ``tradeoff`` times its satisfaction, both weighted by its click probability ``p_i = sigmoid(logit_i)``::

    score_i = p_i * (E[reward | click i] + tradeoff * (quality_i - threshold))
    E[reward | click i] = w_clicks + w_engagement * dwell_scale * quality_i * exp(dwell_noise^2 / 2)
                          + w_satisfaction * (quality_i - threshold)

``tradeoff = 0`` is the one-step reward-greedy ranking (the myopic oracle ranks by ``p_i`` alone, the
one-step optimum for the click reward only); ``tradeoff > 0`` also values the time budget and the return
visits that satisfaction buys - the long-term term a myopic policy ignores.

**Lookahead oracle** (``lookahead``): model-predictive control on forked simulator states over a library
of ``C`` candidate policies — the base policy (the heuristic with ``continuation_tradeoff``), the myopic
oracle, and the heuristic at every trade-off of ``tradeoffs``. At every step, for each user:

1. the state is forked into ``F = rollouts`` futures with fresh random streams (independent of the live
   env's: the oracle knows the model, not the dice), and each future into ``C`` copies that share its
   stream (:meth:`~recgym.envs.state.SimState.repeat`: *common random numbers* — the candidates are compared
   under the same luck);
2. copy ``c`` shows candidate ``c``'s slate, then (``continuation: same``, the default) keeps following
   policy ``c`` — *parallel rollout* (Chang, Givan & Chong 2004): whole policies are compared from this
   state, so the value of consistently avoiding clickbait is seen — or (``continuation: base``) follows the
   base policy, a one-step rollout algorithm (Bertsekas); for ``horizon - 1`` more steps;
3. its value is the discounted *expected* reward (the click probabilities of each shown slate times the
   reward of a click, and the return probability for the retention reward, instead of the sampled clicks and
   returns: same mean, far less noise; the transitions stay sampled), summed until the horizon, the end of the
   episode or, with ``sessions_ahead`` > 0, the end of that many sessions from now;
4. the base policy's slate is shown unless another candidate's value beats it in a paired one-sided t-test
   over the ``F`` futures (``switch_confidence``, Bonferroni over the alternatives; at least ``switch_margin``
   standard errors): noisy estimates must not talk it into a worse slate. With few futures it therefore
   rarely leaves the base policy — it is the base policy plus the improvements it is sure of.

With a horizon that reaches the end of the episode, exact values would make it at least as good as every
policy of the library from every state on; sampled values leave noise, which the switch margin bounds.
Cost per step: at most ``B * F * C * horizon`` simulated user-steps (finished rollouts leave the batch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from recgym.agents.base import AgentConfig, EnvSpec, Recommender, as_batched_obs, register
from recgym.envs import rng as rng_mod

__all__ = ["QualityOracleConfig", "QualityOracleRecommender", "LookaheadConfig", "LookaheadRecommender",
           "heuristic_scores", "myopic_scores", "policy_scores", "top_k_slates"]

_NEG = -1e30


def _simulator(spec: EnvSpec, name: str) -> Any:
    if spec.simulator is None:
        raise ValueError(f"{name}: needs a live env (make_agent({name!r}, env) on a RankingEnv or RankingVectorEnv); "
                         "it plans with the env's hidden model")
    return spec.simulator


def myopic_scores(core: Any, state: Any) -> torch.Tensor:
    """``(B, N)`` hidden click logits of the current candidates, ``-1e30`` where masked."""
    return core.candidate_logits(state).masked_fill_(~state.mask, _NEG)


def _reward_weights(core: Any) -> tuple[float, float, float]:
    w = core.config.reward.weights
    return {"clicks": (1.0, 0.0, 0.0), "engagement": (0.0, 1.0, 0.0), "satisfaction": (0.0, 0.0, 1.0),
            "mix": (w.clicks, w.engagement, w.satisfaction)}[core.config.reward.name]


def policy_scores(core: Any, state: Any, tradeoff: torch.Tensor | float,
                  myopic: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, N)`` scores of the current candidates, ``-1e30`` where masked: the quality-aware heuristic with
    ``tradeoff`` (a float, or ``(B,)`` per row), or the hidden logits in rows where ``myopic`` ``(B,)`` bool."""
    r = core.config.response
    wc, we, ws = _reward_weights(core)
    p = core.params
    quality = p.item_quality.index_select(0, state.candidates.reshape(-1))
    quality = quality.view(state.candidates.shape)
    sat = quality - r.quality_threshold
    t = tradeoff.unsqueeze(1) if isinstance(tradeoff, torch.Tensor) else tradeoff
    gain = (sat * (ws + t)).add_(wc).add_(quality, alpha=we * r.dwell_scale * math.exp(r.dwell_noise**2 / 2))
    logits = core.candidate_logits(state)
    scores = torch.sigmoid(logits).mul_(gain)
    if myopic is not None:
        scores = torch.where(myopic.unsqueeze(1), logits, scores)
    return scores.masked_fill_(~state.mask, _NEG)


def heuristic_scores(core: Any, state: Any, tradeoff: float) -> torch.Tensor:
    """``(B, N)`` quality-aware scores of the current candidates (module docstring), ``-1e30`` where masked."""
    return policy_scores(core, state, tradeoff)


def top_k_slates(scores: torch.Tensor, k: int) -> torch.Tensor:
    """``(B, k)`` int64 positions of the top-k scores (masked ones are ``-1e30``; callers keep >= k unmasked)."""
    return torch.topk(scores, k, dim=1).indices


class QualityOracleConfig(AgentConfig):
    tradeoff: float = Field(1.0, ge=0, description="weight of satisfaction (quality - threshold) beyond the reward")


@register
class QualityOracleRecommender(Recommender):
    """Quality-aware heuristic oracle (see the module docstring). Reads the env's hidden state."""

    name: ClassVar[str] = "quality_oracle"
    Config: ClassVar[type[AgentConfig]] = QualityOracleConfig
    env_bound: ClassVar[bool] = True
    config: QualityOracleConfig

    def __init__(self, spec: EnvSpec, config: AgentConfig | None = None) -> None:
        super().__init__(spec, config)
        self._sim = _simulator(spec, self.name)

    @torch.no_grad()
    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        core, state = self._sim()
        _check_live(obs, state, self.name)
        return heuristic_scores(core, state, self.config.tradeoff).cpu().numpy().astype(np.float64)


def _check_live(obs: Mapping[str, Any], state: Any, name: str) -> None:
    cand = np.asarray(obs["candidates"]).reshape(-1, state.candidates.shape[1])
    if cand.shape != tuple(state.candidates.shape) or not np.array_equal(cand, state.candidates.cpu().numpy()):
        raise ValueError(f"{name}: the observation is not the one its env currently shows; call rank() on the "
                         "env's current observation")


class LookaheadConfig(AgentConfig):
    horizon: int = Field(10, ge=1, le=1000, description="H: slates simulated per candidate (the first included)")
    rollouts: int = Field(4, ge=1, le=256, description="F: independent futures per user (common to all candidates)")
    gamma: float = Field(1.0, ge=0, le=1, description="discount inside a rollout")
    tradeoffs: list[float] = Field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 4.0, 8.0],
                                   description="heuristic trade-offs whose top-K slates are candidates")
    continuation_tradeoff: float = Field(2.0, ge=0, description="trade-off of the base policy")
    continuation: Literal["same", "base"] = Field(
        "same", description="after the first slate, each candidate follows its own policy (parallel rollout) or "
        "the base policy (one-step rollout)")
    switch_margin: float = Field(1.0, ge=0, description="standard errors by which a candidate must at least beat the "
                                 "continuation policy's slate to replace it")
    switch_confidence: float = Field(0.95, ge=0, lt=1, description="one-sided confidence of the paired t-test a "
                                     "candidate must pass to replace the base slate (Bonferroni over the C - 1 "
                                     "alternatives; 0: the margin alone)")
    sessions_ahead: int = Field(1, ge=0, description="returning users: a rollout stops after this many session "
                                "ends (their retention reward included; 0: only the horizon and the episode end)")
    chunk_rows: int = Field(16_384, ge=1, description="forked rows simulated at once (memory bound)")
    compact_below: float = Field(0.75, ge=0, le=1, description="drop finished rollouts from the simulated batch "
                                 "once the live share falls to this (0: never; results are identical either way)")

    @field_validator("tradeoffs")
    @classmethod
    def _non_negative(cls, v: list[float]) -> list[float]:
        if any(x < 0 for x in v):
            raise ValueError(f"expected non-negative trade-offs, received {v}")
        return v


@register
class LookaheadRecommender(Recommender):
    """Lookahead oracle: MPC over candidate slates on forked simulator states (see the module docstring)."""

    name: ClassVar[str] = "lookahead"
    Config: ClassVar[type[AgentConfig]] = LookaheadConfig
    env_bound: ClassVar[bool] = True
    config: LookaheadConfig

    def __init__(self, spec: EnvSpec, config: AgentConfig | None = None) -> None:
        super().__init__(spec, config)
        self._sim = _simulator(spec, self.name)
        self.last_values: np.ndarray | None = None  # (B, C) mean rollout value of each candidate at the last rank

    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """``(B, N)`` scores whose top-K is the planned slate (K - slot position on it, 0 elsewhere, -1 masked)."""
        batch, _ = as_batched_obs(obs)
        slate = self.plan(batch, self.spec.slate_size)
        scores = np.where(batch["mask"].astype(bool), 0.0, -1.0)
        k = slate.shape[1]
        np.put_along_axis(scores, slate, np.arange(k, 0, -1, dtype=np.float64)[None].repeat(len(slate), 0), axis=1)
        return scores

    def rank(self, obs: Mapping[str, Any], k: int | None = None) -> np.ndarray:
        k = self.spec.slate_size if k is None else int(k)
        batch, _ = as_batched_obs(obs)
        return self.plan(batch, k)

    @torch.no_grad()
    def plan(self, obs: Mapping[str, np.ndarray], k: int) -> np.ndarray:
        """``(B, k)`` int64: the candidate slate with the highest rollout value for each user."""
        core, state = self._sim()
        _check_live(obs, state, self.name)
        c = self.config
        # Candidate 0 is the base policy; 1 the myopic oracle; then the heuristic at each trade-off.
        tradeoffs = torch.tensor([c.continuation_tradeoff, 0.0, *c.tradeoffs], device=state.device)
        myopic = torch.zeros(len(tradeoffs), dtype=torch.bool, device=state.device)
        myopic[1] = True
        candidates = [top_k_slates(policy_scores(core, state, float(t), m.view(1).expand(state.batch_size)), k)
                      for t, m in zip(tradeoffs.tolist(), myopic, strict=True)]
        slates = torch.stack(candidates, dim=1)  # (B, C, k)
        b, n_cand = slates.shape[:2]
        self._library = (tradeoffs, myopic)
        per_user = c.rollouts * n_cand
        values = torch.empty(b, c.rollouts, n_cand, dtype=torch.float64, device=state.device)
        step = max(1, c.chunk_rows // per_user)
        for lo in range(0, b, step):
            rows = torch.arange(lo, min(b, lo + step), device=state.device)
            values[rows] = self._values(core, state.take(rows), slates.index_select(0, rows))
        mean = values.mean(dim=1)
        self.last_values = mean.cpu().numpy()
        diff = values - values[:, :, :1]  # paired with the base slate under the same future
        se = diff.std(dim=1) / math.sqrt(c.rollouts) if c.rollouts > 1 else torch.zeros_like(mean)
        gain = torch.where(diff.mean(dim=1) > _switch_threshold(c, n_cand) * se, mean, torch.full_like(mean, -math.inf))
        gain[:, 0] = mean[:, 0]
        best = gain.argmax(dim=1)
        return slates[torch.arange(b, device=state.device), best].cpu().numpy().astype(np.int64)

    def _values(self, core: Any, state: Any, slates: torch.Tensor) -> torch.Tensor:
        """``(R, F, C)`` discounted expected-reward value of each candidate slate of ``R`` users in each of
        ``F`` futures."""
        c = self.config
        r, n_cand, k = slates.shape
        futures = state.repeat(c.rollouts, split_rng=True)
        # Every future on a stream of its own, none the live env's (copy 0 of a split keeps the original).
        futures.rng = rng_mod.split(futures.rng, 2)[1::2].contiguous()
        forks = futures.repeat(n_cand)  # row (u * F + f) * C + c
        first = slates.repeat_interleave(c.rollouts, dim=0).reshape(-1, k)
        total = torch.zeros(len(first), dtype=torch.float64, device=first.device)
        # Simulated row j is fork row_of[j]; finished rollouts are dropped from the batch (below).
        row_of = torch.arange(len(first), device=first.device)
        alive = torch.ones(len(first), dtype=torch.bool, device=first.device)
        ends = torch.zeros(len(first), dtype=torch.int32, device=first.device)
        discount = 1.0
        expected = _ExpectedReward.of(core)
        tradeoffs, myopic = self._library
        if c.continuation == "same":  # row (u * F + f) * C + c follows policy c
            row_t, row_m = tradeoffs.repeat(r * c.rollouts), myopic.repeat(r * c.rollouts)
        else:
            row_t, row_m = tradeoffs[:1].expand(len(first)).clone(), None
        for h in range(c.horizon):
            slate = first if h == 0 else top_k_slates(policy_scores(core, forks, row_t, row_m), k)
            reward, terminated, truncated, info = core.step(forks, slate)
            if expected is not None:
                reward = expected(info)
            total.index_add_(0, row_of, torch.where(alive, reward.to(torch.float64), 0.0) * discount)
            alive &= ~(terminated | truncated)
            if c.sessions_ahead and "session_end" in info:
                ends += info["session_end"].to(torch.int32)
                alive &= ends < c.sessions_ahead
            discount *= c.gamma
            n_alive = int(alive.sum())
            if n_alive == 0:
                break
            if n_alive <= c.compact_below * len(alive) and h + 1 < c.horizon:
                # Users leave at different times: stepping finished rollouts to the longest one's end cost
                # most of a fitted world's lookahead. Rows carry their own random streams, so the survivors'
                # futures are bit-identical either way (only the shared feedback table, which no reward reads,
                # stops counting the finished rows' impressions).
                keep = alive.nonzero().squeeze(1)
                forks, row_of, ends = forks.take(keep), row_of[keep], ends[keep]
                row_t = row_t[keep]
                row_m = None if row_m is None else row_m[keep]
                alive = alive[keep]
        return total.view(r, c.rollouts, n_cand)


def _switch_threshold(c: LookaheadConfig, n_cand: int) -> float:
    """Standard errors by which a candidate must beat the base slate: the paired one-sided Student-t quantile
    (``F - 1`` degrees of freedom, Bonferroni over the ``C - 1`` alternatives), at least ``switch_margin``.

    Why not a fixed margin: with ``F = 2`` futures the standard error has one degree of freedom, and a
    1-SE rule lets one of seven equally good alternatives through ~87 % of the time; such coin-flip switches
    made the lookahead worse than its own base policy on the long_term world (51.7 vs 55.2)."""
    if c.rollouts < 2 or c.switch_confidence == 0 or n_cand < 2:
        return c.switch_margin
    from scipy.stats import t

    alpha = (1.0 - c.switch_confidence) / (n_cand - 1)
    return max(c.switch_margin, float(t.ppf(1.0 - alpha, c.rollouts - 1)))


class _ExpectedReward:
    """The expected reward of a step given its slate — the click probabilities times the reward of a click,
    plus the tail terms and the retention weight times the return probability — for the default response and reward
    components (``None`` from :meth:`of` when the core uses others: their sampled rewards are used)."""

    def __init__(self, core: Any) -> None:
        cfg = core.config
        w, r = cfg.reward.weights, cfg.response
        self.w = {"clicks": (1.0, 0.0, 0.0), "engagement": (0.0, 1.0, 0.0), "satisfaction": (0.0, 0.0, 1.0),
                  "mix": (w.clicks, w.engagement, w.satisfaction)}[cfg.reward.name]
        self.retention = float(w.retention)
        self.tail_exposure, self.tail_clicks = float(w.tail_exposure), float(w.tail_clicks)
        self.dwell = r.dwell_scale * math.exp(r.dwell_noise**2 / 2)
        self.threshold = r.quality_threshold
        p = core.params
        self.quality = p.item_quality

    @classmethod
    def of(cls, core: Any) -> _ExpectedReward | None:
        from recgym.envs.response import QualityResponse, WeightedReward

        default = isinstance(core.response, QualityResponse) and isinstance(core.reward_fn, WeightedReward)
        return cls(core) if default and core.config.reward.name in ("clicks", "engagement", "satisfaction", "mix") else None

    def __call__(self, info: Mapping[str, torch.Tensor]) -> torch.Tensor:
        probs = info["click_probs"]
        q = self.quality.index_select(0, info["slate_items"].reshape(-1)).view(probs.shape)
        wc, we, ws = self.w
        out = (probs * (wc + we * self.dwell * q + ws * (q - self.threshold))).sum(dim=1)
        if self.tail_exposure or self.tail_clicks:  # the long tail: items outside the head (response.py)
            tail = (~info["item_head"]).to(probs.dtype)
            out = out + self.tail_exposure * tail.mean(dim=1) + self.tail_clicks * (probs * tail).sum(dim=1)
        if self.retention and "return_prob" in info:
            out = out + self.retention * info["return_prob"]
        return out
