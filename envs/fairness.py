"""A fairness term for the training reward: position-weighted exposure of a protected item group.

:class:`FairExposureReward` wraps an SB3 ``VecEnv`` over the recgym core (training only: evaluation keeps
the plain reward, so a fairness-shaped agent is judged on the true objective plus the fairness metrics).
After each step it adds

``weight * (sum_j v_j [item_j protected] / sum_j v_j - target)``,  ``v_j = 1 / log2(j + 2)``,

to every user's reward: the slate's attention share on the protected group minus a target share. With
``target`` at the protected group's share of the catalogue, a slate that gives the group its
per-item-equal share of attention is neither rewarded nor penalised (no bonus just for staying longer).

The protected group is read from the env's *public* item features only (``item_features[:, 0]`` = the
popularity percentile of the prior, ``item_features[:, 1]`` = the new-item flag): ``tail`` = items outside
the ``head_fraction`` most popular initial items (new items included: they have no popularity yet),
``new`` = injected items.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from recgym.common.config import StrictModel

__all__ = ["FairRewardConfig", "FairExposureReward", "protected_items"]

Protected = Literal["tail", "new"]


def protected_items(item_features: np.ndarray, group: str = "tail", head_fraction: float = 0.2) -> np.ndarray:
    """``(M,)`` bool protected items from the public ``(M, F)`` item features (see the module docstring)."""
    f = np.asarray(item_features)
    if f.ndim != 2 or f.shape[1] < 2:
        raise ValueError(f"item_features: expected (M, F >= 2) [popularity percentile, new flag, ...], received {f.shape}")
    if group == "tail":
        return f[:, 0] <= 1.0 - head_fraction + 1e-9
    if group == "new":
        return f[:, 1] > 0.5
    raise ValueError(f"protected group: expected 'tail' or 'new', received {group!r}")


class FairRewardConfig(StrictModel):
    """The reward's fairness term (RL training only)."""

    config_path: ClassVar[str] = "agents[].reward_fairness"
    weight: float = Field(0.5, ge=0, description="weight of the protected group's attention share in the reward")
    protected: Protected = Field("tail", description="tail (outside the head of the prior, new items included) or new")
    head_fraction: float = Field(0.2, gt=0, lt=1, description="share of initial items that are the head")
    target: float | None = Field(None, ge=0, le=1,
                                 description="attention share paying 0 (null: the group's share of the catalogue)")


class FairExposureReward(VecEnvWrapper):
    """``reward += weight * (protected attention share of the slate - target)``; see the module docstring.

    Args:
        venv: an SB3 VecEnv over the recgym core (``RankingSB3VecEnv`` or a wrapper of it) whose actions are
            slates ``(B, K)`` (``action_type='slate'``) or single items ``(B,)`` (``'item'``).
        config: :class:`FairRewardConfig`.
    """

    def __init__(self, venv: VecEnv, config: FairRewardConfig | None = None) -> None:
        super().__init__(venv)
        self.fair_config = config or FairRewardConfig()
        self.protected = protected_items(venv.item_features, self.fair_config.protected, self.fair_config.head_fraction)
        self.target = float(self.protected.mean()) if self.fair_config.target is None else float(self.fair_config.target)
        self._cand: np.ndarray | None = None
        self._items: np.ndarray | None = None

    def term(self, items: np.ndarray) -> np.ndarray:
        """``(B,)`` float32 fairness term of slates of item ids ``(B, K)``."""
        v = 1.0 / np.log2(np.arange(2, items.shape[1] + 2, dtype=np.float64))
        share = (self.protected[items] * v).sum(1) / v.sum()
        return (self.fair_config.weight * (share - self.target)).astype(np.float32)

    def reset(self) -> Any:
        obs = self.venv.reset()
        self._cand = np.array(obs["candidates"], dtype=np.int64)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        if self._cand is None:
            raise RuntimeError("FairExposureReward: step before reset")
        a = np.asarray(actions)
        if a.dtype.kind not in "iu":
            raise TypeError(f"FairExposureReward: expected integer slate or item actions, received dtype {a.dtype} "
                            "(action_type='scores' is not supported; train on 'slate' or 'item')")
        pos = a.astype(np.int64).reshape(len(self._cand), -1)
        self._items = np.take_along_axis(self._cand, pos, axis=1)
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        obs, reward, done, infos = self.venv.step_wait()
        reward = reward + self.term(self._items)  # type: ignore[arg-type]
        self._cand = np.array(obs["candidates"], dtype=np.int64)
        return obs, reward.astype(np.float32), done, infos
