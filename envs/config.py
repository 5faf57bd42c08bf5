"""Typed configuration of the ranking environment (:class:`EnvConfig`).

Every field is range-checked at construction and unknown keys are rejected with a suggestion, before any
world is built. Cross-field rules: ``slate_size <= num_candidates - new_item_slots``, ``pool_size >=
num_candidates``, ``action_type="item"`` needs ``slate_size == 1``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from recgym.common.config import ConfigError, StrictModel

__all__ = ["EnvConfig", "RewardWeights", "CandidateMix"]

ActionType = Literal["scores", "slate", "item"]
ChoiceName = Literal["mnl", "cascade", "pbm"]
RewardName = Literal["clicks", "engagement", "satisfaction", "mix"]
Cohort = Literal["train", "test", "all"]


class RewardWeights(StrictModel):
    """Weights of the ``mix`` reward: ``clicks * n_clicks + engagement * dwell + satisfaction * sat``."""

    config_path: ClassVar[str] = "env.reward_weights"
    clicks: float = 1.0
    engagement: float = 0.5
    satisfaction: float = 1.0


class CandidateMix(StrictModel):
    """Mixture weights of the retrieval pool: LM-nearest to the user, popular, uniformly random items."""

    config_path: ClassVar[str] = "env.candidate_mix"
    nearest: float = Field(0.5, ge=0)
    popular: float = Field(0.3, ge=0)
    random: float = Field(0.2, ge=0)

    @model_validator(mode="after")
    def _positive_total(self) -> CandidateMix:
        if self.nearest + self.popular + self.random <= 0:
            raise ConfigError("env.candidate_mix: expected a positive total weight, received all zeros")
        return self


class EnvConfig(StrictModel):
    """Settings of the simulator. Defaults are the ``recgym/Ranking-v0`` dynamics.

    Episode: ``max_steps`` slates at most (then ``truncated``); the user leaves (``terminated``) when the time
    budget reaches 0. Budget: starts at ``initial_budget``, loses ``step_cost`` per slate and gains
    ``budget_gain * (quality - quality_threshold)`` per clicked item, capped at ``2 * initial_budget``.
    """

    config_path: ClassVar[str] = "env"

    num_candidates: int = Field(100, ge=2, le=10_000, description="candidates N shown to the policy per step")
    slate_size: int = Field(10, ge=1, le=100, description="items K per slate")
    action_type: ActionType = Field("scores", description="scores: Box(N) -> top-K; slate: K indices; item: 1 index")
    choice_model: ChoiceName = "mnl"
    no_click_logit: float = Field(0.0, description="MNL utility of not clicking")
    pbm_eta: float = Field(1.0, ge=0, description="PBM examination decay: theta_j = (j+1)^-eta")
    reward: RewardName = "clicks"
    reward_weights: RewardWeights = RewardWeights()
    max_steps: int = Field(50, ge=1, le=100_000)
    cohort: Cohort = Field("train", description="which users are sampled at reset")
    strict: bool = Field(True, description="validate every action; invalid slates raise before any state change")

    # Candidate generation
    pool_size: int = Field(300, ge=2, description="per-user retrieval pool built at reset")
    candidate_mix: CandidateMix = CandidateMix()
    similarity_temperature: float = Field(0.05, gt=0, description="softmax temperature of LM-nearest retrieval")
    mask_window: int = Field(5, ge=0, description="mask candidates shown in the last mask_window slates (0: never)")

    # Cold start: new items
    new_items_per_step: float = Field(0.05, ge=0, description="injection rate of held-back items (per env step)")
    new_item_slots: int = Field(5, ge=0, description="candidate slots reserved for recently injected items")
    new_item_window: int = Field(200, ge=1, description="steps an injected item counts as new")

    # User dynamics
    initial_budget: float = Field(20.0, gt=0)
    step_cost: float = Field(1.0, ge=0)
    budget_gain: float = Field(3.0, ge=0)
    quality_threshold: float = Field(0.5, ge=0, le=1)
    interest_drift: float = Field(0.05, ge=0, le=1, description="step toward consumed items' latent factors")
    fatigue_decay: float = Field(0.8, ge=0, le=1, description="per-slate decay of genre fatigue")
    item_fatigue_decay: float = Field(0.9, ge=0, le=1, description="per-slate decay of a consumed item's fatigue")
    item_fatigue_weight: float = Field(2.0, ge=0, description="logit penalty for an item consumed just now")
    genre_fatigue_weight: float = Field(0.3, ge=0, description="logit penalty per unit of genre fatigue")
    exposure_fatigue: float = Field(0.2, ge=0, description="genre fatigue added by a shown, unclicked item")
    history_ema: float = Field(0.3, gt=0, le=1, description="weight of new clicks in the history summary")
    dwell_scale: float = Field(1.0, gt=0)
    dwell_noise: float = Field(0.3, ge=0)

    info_candidate_relevance: bool = Field(False, description="add true click probs of all candidates to info")

    @model_validator(mode="after")
    def _consistent(self) -> EnvConfig:
        if self.new_item_slots >= self.num_candidates:
            raise ConfigError(
                f"env.new_item_slots: expected < num_candidates ({self.num_candidates}), received {self.new_item_slots}"
            )
        if self.slate_size > self.num_candidates - self.new_item_slots:
            raise ConfigError(
                f"env.slate_size: expected <= num_candidates - new_item_slots "
                f"({self.num_candidates} - {self.new_item_slots}), received {self.slate_size}"
            )
        if self.pool_size < self.num_candidates:
            raise ConfigError(
                f"env.pool_size: expected >= num_candidates ({self.num_candidates}), received {self.pool_size}"
            )
        if self.action_type == "item" and self.slate_size != 1:
            raise ConfigError(
                f"env.action_type: 'item' picks one item but slate_size={self.slate_size}; "
                "use action_type='slate' (K indices) or 'scores' (top-K of N scores)"
            )
        return self
