"""SB3 plumbing shared by the PPO and DQN agents: seeded buffers, seeded weight init, obs conversion.

SB3 draws minibatch permutations and replay samples from the *global* ``np.random`` and seeds the global
RNGs when given ``seed``. recgym agents keep one RNG each, so these buffers take their own
``numpy.random.Generator`` and the algorithms are built with ``seed=None``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.buffers import DictReplayBuffer, DictRolloutBuffer
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, DictRolloutBufferSamples

__all__ = ["SeededDictRolloutBuffer", "SeededDictReplayBuffer", "seeded_init", "obs_to_torch"]


class SeededDictRolloutBuffer(DictRolloutBuffer):
    """:class:`DictRolloutBuffer` whose minibatch permutation comes from its own seeded Generator.

    ``features``: optional ``f(observations) -> {key: (T, ...) array}`` evaluated once on the flattened
    rollout for the keys that :meth:`add` did not receive as ``extras``; its arrays are served with every
    minibatch as extra observation keys. ``add(..., extras={key: (n_envs, ...) array})`` stores per-step
    extra observation arrays (e.g. the cosine features the policy already computed while acting).
    """

    def __init__(self, *args: Any, seed: int = 0, features: Callable[[dict], dict] | None = None, **kwargs: Any) -> None:
        self.extras: dict[str, np.ndarray] = {}
        super().__init__(*args, **kwargs)
        self.np_rng = np.random.default_rng(seed)
        self.features = features

    def reset(self) -> None:
        super().reset()
        self._extras_added: set[str] = set()  # arrays are kept and overwritten step by step

    def add(self, obs: dict, action: np.ndarray, reward: np.ndarray, episode_start: np.ndarray,  # type: ignore[override]
            value: torch.Tensor, log_prob: torch.Tensor, extras: Mapping[str, np.ndarray] | None = None) -> None:
        pos = self.pos
        for key, arr in (extras or {}).items():
            if key not in self.extras or self.extras[key].shape[2:] != arr.shape[1:]:
                self.extras[key] = np.zeros((self.buffer_size, self.n_envs, *arr.shape[1:]), dtype=arr.dtype)
            self.extras[key][pos] = arr
            self._extras_added.add(key)
        super().add(obs, action, reward, episode_start, value, log_prob)

    def get(self, batch_size: int | None = None) -> Generator[DictRolloutBufferSamples, None, None]:  # type: ignore[override]
        assert self.full, "the rollout buffer must be full before sampling"
        total = self.buffer_size * self.n_envs
        indices = self.np_rng.permutation(total)
        if not self.generator_ready:
            for key, obs in self.observations.items():
                self.observations[key] = self.swap_and_flatten(obs)
            stored = {k: self.swap_and_flatten(v) for k, v in self.extras.items() if k in self._extras_added}
            if self.features is not None:  # parameter-free features, computed once per rollout
                missing = self.features(self.observations, skip=tuple(stored))
                stored.update({k: v for k, v in missing.items() if k not in stored})
            self.observations.update(stored)
            for name in ("actions", "values", "log_probs", "advantages", "returns"):
                self.__dict__[name] = self.swap_and_flatten(self.__dict__[name])
            self.generator_ready = True
        batch_size = total if batch_size is None else batch_size
        for start in range(0, total, batch_size):
            yield self._get_samples(indices[start : start + batch_size])


class SeededDictReplayBuffer(DictReplayBuffer):
    """:class:`DictReplayBuffer` sampling with its own seeded Generator."""

    def __init__(self, *args: Any, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.np_rng = np.random.default_rng(seed)

    def sample(self, batch_size: int, env: Any = None) -> DictReplayBufferSamples:  # type: ignore[override]
        upper = self.buffer_size if self.full else self.pos
        batch_inds = self.np_rng.integers(0, upper, size=batch_size)
        return self._get_samples(batch_inds, env)

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> DictReplayBufferSamples:  # type: ignore[override]
        env_ind = self.np_rng.integers(0, self.n_envs, size=len(batch_inds))
        obs = {k: self.to_torch(v[batch_inds, env_ind]) for k, v in self.observations.items()}
        nxt = {k: self.to_torch(v[batch_inds, env_ind]) for k, v in self.next_observations.items()}
        dones = self.dones[batch_inds, env_ind] * (1 - self.timeouts[batch_inds, env_ind])
        return DictReplayBufferSamples(
            observations=obs,
            actions=self.to_torch(self.actions[batch_inds, env_ind]),
            next_observations=nxt,
            dones=self.to_torch(dones).reshape(-1, 1),
            rewards=self.to_torch(self.rewards[batch_inds, env_ind].reshape(-1, 1)),
        )


@contextmanager
def seeded_init(seed: int) -> Generator[None, None, None]:
    """Initialise weights from ``seed`` without touching the caller's global torch RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def obs_to_torch(obs: Mapping[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Batched numpy observation -> tensors on ``device`` (dtypes kept)."""
    return {k: torch.as_tensor(np.asarray(v), device=device) for k, v in obs.items()}
