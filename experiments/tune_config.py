"""The ``tune:`` section of an experiment config: what ``recgym tune`` searches and optimises (typed, checked
when the config loads; no Optuna import here).

    tune:
      agent: ppo                       # label of the agent to tune (``--agent`` overrides)
      trials: 20                       # finished trials wanted (complete or pruned)
      objectives: [return]             # metrics of the "all" segment; two or more = multi-objective
      directions: [maximize]           # default: maximize (minimize for gini)
      seeds: [0, 1]                    # evaluation replicates per trial (the best config re-runs the full protocol)
      space:                           # the agent's hyper-parameters
        learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
        hidden: {type: categorical, choices: [16, 32, 64]}
        n_epochs: {type: int, low: 1, high: 8}
      reward_weights:                  # searched weights of the mix reward the RL agent trains on
        satisfaction: {type: float, low: 0.0, high: 2.0}
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from recgym.common.config import ConfigError, StrictModel, suggest

__all__ = ["ParamSpec", "TuneConfig", "LOWER_IS_BETTER"]

LOWER_IS_BETTER = ("gini",)


class ParamSpec(StrictModel):
    """One search dimension: ``float`` / ``int`` in ``[low, high]`` (``log`` scale optional, ``step`` optional)
    or ``categorical`` over ``choices``."""

    config_path: ClassVar[str] = "tune.space.<name>"
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ConfigError("a categorical parameter needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.log:
                raise ConfigError("a categorical parameter takes 'choices' only (no low/high/log)")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ConfigError(f"a {self.type} parameter needs low < high, received low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ConfigError(f"a log-scale parameter needs low > 0, received low={self.low}")
        if self.log and self.step is not None:
            raise ConfigError("'log' and 'step' cannot be combined (Optuna's rule)")
        if self.choices is not None:
            raise ConfigError(f"'choices' is for categorical parameters, not {self.type}")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ConfigError(f"an int parameter needs integer bounds, received {self.low}, {self.high}")
        return self

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in this dimension (used to start the study with the defaults)."""
        if self.type == "categorical":
            return value in (self.choices or [])
        return isinstance(value, (int, float)) and not isinstance(value, bool) and \
            self.low <= value <= self.high  # type: ignore[operator]


class TuneConfig(StrictModel):
    """What ``recgym tune`` searches; see the module docstring."""

    config_path: ClassVar[str] = "tune"
    agent: str | None = Field(None, description="label of the agent to tune")
    trials: int = Field(20, ge=1, le=100_000)
    objectives: list[str] = Field(default_factory=lambda: ["return"], min_length=1)
    directions: list[Literal["maximize", "minimize"]] | None = None
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    space: dict[str, ParamSpec] = Field(default_factory=dict)
    reward_weights: dict[str, ParamSpec] = Field(default_factory=dict)
    pruning: bool = Field(True, description="median pruner on learning-curve points (single objective only)")
    sampler_seed: int = Field(0, ge=0)
    startup_trials: int = Field(5, ge=0, description="random trials before TPE / before pruning starts")

    @model_validator(mode="after")
    def _consistent(self) -> TuneConfig:
        if not self.space and not self.reward_weights:
            raise ConfigError("tune: expected a search space ('space' and/or 'reward_weights'), received none")
        if self.directions is not None and len(self.directions) != len(self.objectives):
            raise ConfigError(f"tune.directions: expected one per objective ({len(self.objectives)}), received "
                              f"{len(self.directions)}")
        if len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"tune.objectives: expected distinct metrics, received {self.objectives}")
        from recgym.envs.config import RewardWeights

        known = set(RewardWeights.model_fields)
        for key, spec in self.reward_weights.items():
            if key not in known:
                raise ConfigError(f"tune.reward_weights.{key}: unknown reward term{suggest(key, known)}; expected one "
                                  f"of: {', '.join(sorted(known))}")
            if spec.type == "categorical" or (spec.low is not None and spec.low < 0):
                raise ConfigError(f"tune.reward_weights.{key}: expected a float or int range with low >= 0")
        if self.reward_weights and "return" in self.objectives:
            raise ConfigError("tune.objectives: 'return' changes meaning with the reward weights being searched; "
                              "choose fixed metrics (e.g. ctr, satisfaction, engagement, session_length, tail_share)")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError(f"tune.seeds: expected distinct non-negative seeds, received {self.seeds}")
        return self

    @property
    def directions_resolved(self) -> list[str]:
        return list(self.directions or ["minimize" if m in LOWER_IS_BETTER else "maximize" for m in self.objectives])
