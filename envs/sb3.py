"""Stable-Baselines3 ``VecEnv`` adapter over the batched core (SB3's same-step reset convention).

A finished user's slot is reset inside the step that ends it; the returned observation is the new user's
first, and ``infos[i]["terminal_observation"]`` holds the final one, with ``infos[i]["TimeLimit.truncated"]``
set when the episode ended by the step limit rather than by the user leaving.

    from recgym.envs.sb3 import RankingSB3VecEnv
    venv = RankingSB3VecEnv(num_envs=256, seed=0)          # same arguments as RankingVectorEnv
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from recgym.common.config import ConfigError
from recgym.envs.vector import RankingVectorEnv

__all__ = ["RankingSB3VecEnv"]


class _CoreView:
    """The adapter's core, plus ``generator.get_state()`` — the random streams of the live state as one
    uint8 tensor — for checkpoint code written when the core owned a ``torch.Generator``
    (``experiments/training.py``). Exact resume will read :meth:`SimState.state_dict` instead; remove then."""

    def __init__(self, venv: RankingVectorEnv) -> None:
        self._venv = venv

    def __getattr__(self, name: str) -> Any:
        return getattr(self._venv.core, name)

    @property
    def generator(self) -> _StreamState:
        return _StreamState(self._venv)


class _StreamState:
    def __init__(self, venv: RankingVectorEnv) -> None:
        self._venv = venv

    def get_state(self) -> torch.Tensor:
        state = self._venv.state
        words = torch.zeros(0, dtype=torch.int64) if state is None else state.rng.detach().cpu().clone()
        return words.view(torch.uint8)


class RankingSB3VecEnv(VecEnv):
    """SB3 view of a :class:`~recgym.envs.vector.RankingVectorEnv` (``autoreset_mode="same_step"``).

    Args:
        num_envs: number of simulated users B.
        seed: seed used at the first ``reset`` (``VecEnv.seed`` changes it for the next reset).
        **kwargs: everything :class:`RankingVectorEnv` accepts (world, config, device, EnvConfig fields).
    """

    def __init__(self, num_envs: int = 1, *, seed: int | None = None, **kwargs: Any) -> None:
        if "autoreset_mode" in kwargs:
            raise ConfigError("autoreset_mode: expected it absent (the SB3 adapter always uses 'same_step'), received "
                              f"{kwargs['autoreset_mode']!r}")
        self.venv = RankingVectorEnv(num_envs, autoreset_mode="same_step", **kwargs)
        self.render_mode = None
        super().__init__(num_envs, self.venv.single_observation_space, self.venv.single_action_space)
        self._seeds = [seed] * num_envs
        self._actions: np.ndarray | None = None

    @property
    def core(self) -> _CoreView:
        """The :class:`~recgym.envs.core.RankingCore` (attribute access is forwarded to it)."""
        return _CoreView(self.venv)

    @property
    def state(self):  # noqa: ANN201 - SimState | None
        """The live :class:`~recgym.envs.state.SimState` of the users (``None`` before the first reset)."""
        return self.venv.state

    @property
    def item_embeddings(self) -> np.ndarray:
        return self.venv.item_embeddings

    @property
    def item_features(self) -> np.ndarray:
        return self.venv.item_features

    def oracle_scores(self) -> np.ndarray:
        return self.venv.oracle_scores()

    def state_dict(self) -> dict[str, Any]:
        """:meth:`RankingVectorEnv.state_dict` of the wrapped env (tensors and plain data; exact resume)."""
        return self.venv.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (see :meth:`RankingVectorEnv.load_state_dict`); a pending
        ``seed`` is dropped: the restored streams replace it."""
        self.venv.load_state_dict(state)
        self._reset_seeds()

    def reset(self):
        seed = self._seeds[0]
        obs, info = self.venv.reset(seed=seed)
        self._reset_seeds()
        self.reset_infos = [{"user": int(u)} for u in info["user"]]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        done = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(done):
            infos[i]["terminal_observation"] = info["final_obs"][i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, reward.astype(np.float32), done, infos

    def close(self) -> None:
        self.venv.close()

    # SB3 plumbing: there is one underlying env, so attributes are replicated per index.
    def _count(self, indices: VecEnvIndices) -> int:
        return len(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        target = self if attr_name == "render_mode" else self.venv
        return [getattr(target, attr_name)] * self._count(indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"set_attr({attr_name!r}): the batched env shares one core; set it on .venv instead")

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result] * self._count(indices)

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * self._count(indices)

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs
