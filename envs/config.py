"""Typed configuration of the ranking environment (:class:`EnvConfig`), nested by simulator component.

Top level: the episode and API settings (``num_candidates``, ``slate_size``, ``action_type``, ``max_steps``,
``cohort``, ``strict``, ``info_candidate_relevance``). One section per component of the user model::

    env:
      slate_size: 10
      choice:     {model: mnl, no_click_logit: 0.0, pbm_eta: 1.0}        # or the shorthand  choice: pbm
      reward:     {name: mix, weights: {clicks: 1, engagement: 0.5, satisfaction: 1, retention: 0,
                   tail_exposure: 0, tail_clicks: 0}}   # or  reward: clicks
      response:   {dwell_scale, dwell_noise, quality_threshold}
      dynamics:   {initial_budget, step_cost, budget_gain, interest_drift, fatigue_decay, item_fatigue_decay,
                   item_fatigue_weight, genre_fatigue_weight, exposure_fatigue}
      candidates: {pool_size, mix: {nearest, popular, random}, similarity_temperature, mask_window,
                   pool_lifetime}
      new_items:  {per_step, slots, window}
      observation: {history_ema}
      sessions:   {count, session_steps, horizon_days, base_rate, satisfaction_weight, ...}   # or  sessions: 5
      feedback:   {enabled, warmup_users, warmup_steps}

Every field is range-checked at construction; unknown keys are rejected with their full path and a
suggestion (``env.dynamics.initial_budgt: unknown key (did you mean 'initial_budget'?)``); a key of the old
flat schema says where it moved (``env.initial_budget: moved to env.dynamics.initial_budget``). Sections
merge deeply: :meth:`EnvConfig.merged` (and ``gym.make(..., dynamics={"initial_budget": 5})``) changes only
the keys given. Cross-field rules: ``slate_size <= num_candidates - new_items.slots``, ``candidates.pool_size
>= num_candidates``, ``action_type="item"`` needs ``slate_size == 1``, ``reward.weights.retention != 0``
needs ``sessions.count >= 2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from recgym.common.config import ConfigError, StrictModel, suggest

__all__ = [
    "EnvConfig", "ChoiceConfig", "RewardConfig", "RewardWeights", "ResponseConfig", "DynamicsConfig",
    "CandidatesConfig", "CandidateMix", "NewItemsConfig", "ObservationConfig", "SessionsConfig", "FeedbackConfig",
    "MOVED_KEYS", "deep_merge",
]

ActionType = Literal["scores", "slate", "item"]
Cohort = Literal["train", "test", "all"]


class _Section(StrictModel):
    """A nested section: unknown keys name their full path (``env.dynamics.x``) with a suggestion."""

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = set(cls.model_fields)
            for key in data:
                if key not in known:
                    raise ConfigError(
                        f"{cls.config_path}.{key}: unknown key{suggest(str(key), known)}; "
                        f"expected one of: {', '.join(sorted(known))}"
                    )
        return data


class ChoiceConfig(_Section):
    """Choice model over a slate (:mod:`recgym.envs.choice`). Shorthand: ``choice: cascade``."""

    config_path: ClassVar[str] = "env.choice"
    model: Literal["mnl", "cascade", "pbm"] = Field("mnl", description="multinomial logit, cascade, position-based")
    no_click_logit: float = Field(0.0, description="MNL utility of not clicking")
    pbm_eta: float = Field(1.0, ge=0, description="PBM examination decay: theta_j = (j+1)^-eta")


class RewardWeights(_Section):
    """Weights of the reward terms (:mod:`recgym.envs.response`). The ``mix`` reward is ``clicks * n_clicks +
    engagement * dwell + satisfaction * sat``; the other names (``clicks``, ...) use their one term.

    Added to every reward name (each 0 by default):

    * ``tail_exposure`` times the share of the slate's K items in the long tail (outside the catalogue's
      head: the 20 % most popular initial items; the ``tail_share`` metric's mask), per step;
    * ``tail_clicks`` per click on a long-tail item;
    * ``retention`` per return of the user for another session (``env.sessions.count > 1``):
      ``retention * 1[returned]``, or ``retention * P(return)`` with ``sessions.retention_reward: expected``.
      With one session there is no return to reward: a retention weight other than 0 is rejected there."""

    config_path: ClassVar[str] = "env.reward.weights"
    clicks: float = 1.0
    engagement: float = 0.5
    satisfaction: float = 1.0
    retention: float = Field(0.0, description="per return visit (env.sessions.count > 1; any reward name)")
    tail_exposure: float = Field(0.0, description="times the slate's long-tail share of items, per step (any reward name)")
    tail_clicks: float = Field(0.0, description="per click on a long-tail item (any reward name)")


class RewardConfig(_Section):
    """Reward as a function of the responses. Shorthand: ``reward: mix``."""

    config_path: ClassVar[str] = "env.reward"
    name: Literal["clicks", "engagement", "satisfaction", "mix"] = "clicks"
    weights: RewardWeights = RewardWeights()


class ResponseConfig(_Section):
    """Responses to clicked items (:class:`~recgym.envs.response.QualityResponse`)."""

    config_path: ClassVar[str] = "env.response"
    dwell_scale: float = Field(1.0, gt=0, description="dwell = dwell_scale * quality * exp(dwell_noise * eps)")
    dwell_noise: float = Field(0.3, ge=0)
    quality_threshold: float = Field(0.5, ge=0, le=1, description="satisfaction = sum of (quality - threshold)")


class DynamicsConfig(_Section):
    """User dynamics of :class:`~recgym.envs.dynamics.SessionDynamics`: time budget and leaving, interest
    drift, item and genre fatigue. The budget starts at ``initial_budget``, loses ``step_cost`` per slate,
    gains ``budget_gain * satisfaction`` and is capped at ``2 * initial_budget``; the user leaves at 0."""

    config_path: ClassVar[str] = "env.dynamics"
    initial_budget: float = Field(20.0, gt=0)
    step_cost: float = Field(1.0, ge=0)
    budget_gain: float = Field(3.0, ge=0)
    interest_drift: float = Field(0.05, ge=0, le=1, description="step toward consumed items' latent factors")
    fatigue_decay: float = Field(0.8, ge=0, le=1, description="per-slate decay of genre fatigue")
    item_fatigue_decay: float = Field(0.9, ge=0, le=1, description="per-slate decay of a consumed item's fatigue")
    item_fatigue_weight: float = Field(2.0, ge=0, description="logit penalty for an item consumed just now")
    genre_fatigue_weight: float = Field(0.3, ge=0, description="logit penalty per unit of genre fatigue")
    exposure_fatigue: float = Field(0.2, ge=0, description="genre fatigue added by a shown, unclicked item")


class CandidateMix(_Section):
    """Mixture weights of the retrieval pool: LM-nearest to the user, popular, uniformly random items."""

    config_path: ClassVar[str] = "env.candidates.mix"
    nearest: float = Field(0.5, ge=0)
    popular: float = Field(0.3, ge=0)
    random: float = Field(0.2, ge=0)

    @model_validator(mode="after")
    def _positive_total(self) -> CandidateMix:
        if self.nearest + self.popular + self.random <= 0:
            raise ConfigError("env.candidates.mix: expected a positive total weight, received all zeros")
        return self


class CandidatesConfig(_Section):
    """Candidate generation (:mod:`recgym.envs.candidates`): per-user retrieval pools and the step window."""

    config_path: ClassVar[str] = "env.candidates"
    pool_size: int = Field(300, ge=2, description="items in a user's retrieval pool")
    mix: CandidateMix = CandidateMix()
    similarity_temperature: float = Field(0.05, gt=0, description="softmax temperature of LM-nearest retrieval")
    mask_window: int = Field(5, ge=0, description="mask candidates shown in the last mask_window slates (0: never)")
    pool_lifetime: int = Field(
        20, ge=0, description="env steps a user's retrieval pool lives: episodes of a user starting in the same "
        "lifetime share its item set, each in its own order (0: a new pool every episode)"
    )


class NewItemsConfig(_Section):
    """Cold-start items: held-back items released during a run and reserved candidate slots for them."""

    config_path: ClassVar[str] = "env.new_items"
    per_step: float = Field(0.05, ge=0, description="release rate of held-back items (items per env step)")
    slots: int = Field(5, ge=0, description="candidate slots reserved for recently released items")
    window: int = Field(200, ge=1, description="env steps a released item counts as new")


class ObservationConfig(_Section):
    """What the platform observes beyond the raw vectors."""

    config_path: ClassVar[str] = "env.observation"
    history_ema: float = Field(0.3, gt=0, le=1, description="weight of new clicks in the history summary")


class SessionsConfig(_Section):
    """Returning users (:class:`~recgym.envs.sessions.MultiSessionDynamics`). ``count: 1`` (default): one
    session per episode, today's dynamics bit for bit. ``count > 1``: a session ends when the time budget runs
    out or after ``session_steps`` slates; the user then returns after a gap of ``Exponential(rate)`` days,

        rate = base_rate * exp(satisfaction_weight * mean satisfaction per slate of the session
                               - disappointment_weight * accumulated disappointment),

    or churns (``terminated``) when that gap exceeds ``horizon_days``. The episode ends (``truncated``) at the
    return after the ``count``-th session. Across a gap, genre fatigue and disappointment decay per day and the
    interest reverts toward the user's long-run taste with a random walk."""

    config_path: ClassVar[str] = "env.sessions"
    count: int = Field(1, ge=1, le=10_000, description="sessions per episode (1: single-session dynamics)")
    session_steps: int = Field(20, ge=1, description="slates after which a session ends (the user closes the app)")
    horizon_days: float = Field(14.0, gt=0, description="no return within this many days = churn (terminated)")
    base_rate: float = Field(0.5, gt=0, description="returns per day at zero satisfaction and disappointment")
    satisfaction_weight: float = Field(8.0, ge=0, description="log-rate per unit of mean satisfaction per slate")
    disappointment_weight: float = Field(0.5, ge=0, description="log-rate lost per unit of disappointment")
    disappointment_decay: float = Field(0.9, ge=0, le=1, description="per-day decay of accumulated disappointment")
    fatigue_recovery: float = Field(0.5, ge=0, le=1, description="per-day decay of genre fatigue between sessions")
    interest_reversion: float = Field(0.1, ge=0, description="per-day rate of interest reverting to the long-run taste")
    interest_noise: float = Field(0.05, ge=0, description="interest random walk per sqrt(day) between sessions")
    retention_reward: Literal["sampled", "expected"] = Field(
        "sampled", description="retention reward: 1 per sampled return, or the return probability (lower variance)")


class FeedbackConfig(_Section):
    """The platform's observable feedback table (:mod:`recgym.envs.feedback`): per item, impressions, clicks
    and dwell accumulated over every simulated user. ``enabled`` adds ``item_feedback`` ``(3N,)`` (``(N, 3)`` flattened) to
    the observation and ``env.item_feedback`` ``(M, 3)``; the table starts from ``warmup_steps`` slates of
    ``warmup_users`` users under random slates (the platform's history) at every seeded reset."""

    config_path: ClassVar[str] = "env.feedback"
    enabled: bool = Field(False, description="track the table and observe it (obs['item_feedback'])")
    warmup_users: int = Field(256, ge=0, description="users of the warm-up history (0: start from an empty table)")
    warmup_steps: int = Field(20, ge=0, description="random slates per warm-up user")


# Keys of the flat schema (recgym <= 0.1) and where they live now (relative to ``env``).
MOVED_KEYS: dict[str, str] = {
    "choice_model": "choice.model", "no_click_logit": "choice.no_click_logit", "pbm_eta": "choice.pbm_eta",
    "reward_weights": "reward.weights",
    "dwell_scale": "response.dwell_scale", "dwell_noise": "response.dwell_noise",
    "quality_threshold": "response.quality_threshold",
    **{k: f"dynamics.{k}" for k in DynamicsConfig.model_fields},
    "pool_size": "candidates.pool_size", "candidate_mix": "candidates.mix",
    "similarity_temperature": "candidates.similarity_temperature", "mask_window": "candidates.mask_window",
    "new_items_per_step": "new_items.per_step", "new_item_slots": "new_items.slots",
    "new_item_window": "new_items.window", "history_ema": "observation.history_ema",
}


class EnvConfig(StrictModel):
    """Settings of the simulator. Defaults are the ``recgym/Ranking-v0`` dynamics.

    Episode: ``max_steps`` slates at most (then ``truncated``); the user leaves (``terminated``) when the
    dynamics say so (default: the time budget reaches 0). Component settings live in their sections.
    """

    config_path: ClassVar[str] = "env"
    moved_keys: ClassVar[dict[str, str]] = MOVED_KEYS

    num_candidates: int = Field(100, ge=2, le=10_000, description="candidates N shown to the policy per step")
    slate_size: int = Field(10, ge=1, le=100, description="items K per slate")
    action_type: ActionType = Field("scores", description="scores: Box(N) -> top-K; slate: K indices; item: 1 index")
    max_steps: int = Field(50, ge=1, le=100_000)
    cohort: Cohort = Field("train", description="which users are sampled at reset")
    strict: bool = Field(True, description="validate every action; invalid slates raise before any state change")
    info_candidate_relevance: bool = Field(False, description="add true click probs of all candidates to info")

    choice: ChoiceConfig = ChoiceConfig()
    reward: RewardConfig = RewardConfig()
    response: ResponseConfig = ResponseConfig()
    dynamics: DynamicsConfig = DynamicsConfig()
    candidates: CandidatesConfig = CandidatesConfig()
    new_items: NewItemsConfig = NewItemsConfig()
    observation: ObservationConfig = ObservationConfig()
    sessions: SessionsConfig = SessionsConfig()
    feedback: FeedbackConfig = FeedbackConfig()

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key in data:
                if key in MOVED_KEYS and key not in cls.model_fields:
                    raise ConfigError(f"env.{key}: moved to env.{MOVED_KEYS[key]} (the env config is nested by "
                                      f"component since recgym 0.2); expected env.{MOVED_KEYS[key]}, received "
                                      f"the old flat key {key!r}")
        return super()._reject_unknown_keys(data)

    @field_validator("choice", mode="before")
    @classmethod
    def _choice_shorthand(cls, v: Any) -> Any:
        return {"model": v} if isinstance(v, str) else v

    @field_validator("reward", mode="before")
    @classmethod
    def _reward_shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("sessions", mode="before")
    @classmethod
    def _sessions_shorthand(cls, v: Any) -> Any:
        return {"count": v} if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _consistent(self) -> EnvConfig:
        slots, pool = self.new_items.slots, self.candidates.pool_size
        if slots >= self.num_candidates:
            raise ConfigError(
                f"env.new_items.slots: expected < num_candidates ({self.num_candidates}), received {slots}"
            )
        if self.slate_size > self.num_candidates - slots:
            raise ConfigError(
                f"env.slate_size: expected <= num_candidates - new_items.slots "
                f"({self.num_candidates} - {slots}), received {self.slate_size}"
            )
        if pool < self.num_candidates:
            raise ConfigError(
                f"env.candidates.pool_size: expected >= num_candidates ({self.num_candidates}), received {pool}"
            )
        retention = self.reward.weights.retention
        if retention != 0 and self.sessions.count == 1:
            raise ConfigError(
                f"env.reward.weights.retention: expected 0 with one session per episode (sessions.count=1: no user "
                f"returns, so there is no return to reward), received retention={retention}; for a retention reward "
                "set returning users (e.g. env.sessions: {count: 6, session_steps: 8}), else retention: 0"
            )
        if self.action_type == "item" and self.slate_size != 1:
            raise ConfigError(
                f"env.action_type: 'item' picks one item, so expected slate_size=1, received "
                f"slate_size={self.slate_size}; use action_type='slate' (K indices) or 'scores' (top-K of N scores)"
            )
        return self

    def merged(self, changes: Mapping[str, Any]) -> EnvConfig:
        """A validated copy with ``changes`` deep-merged in: ``{"dynamics": {"step_cost": 0}}`` changes that key
        only. Unknown and moved keys raise :class:`~recgym.common.config.ConfigError`."""
        return EnvConfig.model_validate(deep_merge(self.model_dump(), changes))


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied recursively: a mapping merges into a mapping, anything else replaces.
    A string shorthand (``reward: mix``) merges as ``{"name": "mix"}`` into a section that is a mapping."""
    out = dict(base)
    for key, value in changes.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, (str, int)) and not isinstance(value, bool) \
                and key in _SHORTHAND:
            value = {_SHORTHAND[key]: value}
        out[key] = deep_merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


_SHORTHAND = {"choice": "model", "reward": "name", "sessions": "count"}
