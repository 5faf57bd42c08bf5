"""SB3 plumbing shared by the PPO and DQN agents: their base class :class:`SB3Recommender`, seeded buffers,
seeded weight init, obs conversion.

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
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import DictReplayBuffer, DictRolloutBuffer
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, DictRolloutBufferSamples

from recgym.agents.base import AgentConfig, EnvSpec, TrainableRecommender

__all__ = ["SB3Recommender", "SeededDictRolloutBuffer", "SeededDictReplayBuffer", "seeded_init", "obs_to_torch"]


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


class SB3Recommender(TrainableRecommender):
    """Base of the agents trained by Stable-Baselines3 (like SB3's ``BaseAlgorithm``, for recgym agents).

    Subclasses build the ranking network in ``__init__`` (available before any training), and implement
    :meth:`_build_model` (the SB3 algorithm for an env) and :meth:`_adopt_model` (point the ranking network at
    the model's after training). This class owns the rest, once for all:

    * :meth:`learn`: the prologue (:meth:`check_train_env`), the model built lazily on the first env and
      rebuilt when the env changes - seeded, with the current weights carried over - and the step count;
    * :meth:`training_state` / :meth:`load_training_state`: the SB3 policy and optimiser state and every RNG
      of the training machinery (the agent's, torch's, the policy sampler's, the rollout/replay buffer's, the
      exploration's), for checkpoints that resume where training stopped.
    """

    model: BaseAlgorithm | None

    def __init__(self, spec: EnvSpec, config: AgentConfig | None = None) -> None:
        super().__init__(spec, config)
        self.model = None

    # ------------------------------------------------------------------ subclass hooks
    def _build_model(self, env: Any) -> BaseAlgorithm:
        """The SB3 algorithm for ``env`` (called under :func:`seeded_init`)."""
        raise NotImplementedError

    def _carry_weights(self, model: BaseAlgorithm) -> None:
        """Copy the current ranking network's weights into a freshly built ``model``."""
        raise NotImplementedError

    def _adopt_model(self) -> None:
        """Point the ranking network at the model's after training."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def learn(self, env: Any, total_timesteps: int, callback: Any = None, progress_bar: bool = False) -> SB3Recommender:
        """Train (or continue training) on an SB3 VecEnv over the recgym core for ``total_timesteps`` env steps
        (summed over users). The env is checked before anything is built."""
        self.check_train_env(env)
        if self.model is None or self.model.env is not env:
            with seeded_init(self.config.seed):
                model = self._build_model(env)
            self._carry_weights(model)
            model.num_timesteps = self.num_timesteps
            self.model = model
        self.model.learn(total_timesteps, callback=callback, reset_num_timesteps=False, progress_bar=progress_bar)
        self.sync_from_model()
        return self

    def sync_from_model(self) -> None:
        """After training steps ran on the model: adopt its network and step count."""
        if self.model is not None:
            self._adopt_model()
            self.num_timesteps = int(self.model.num_timesteps)

    def _require_model(self, what: str) -> BaseAlgorithm:
        if self.model is None:
            raise RuntimeError(f"{what}: the agent has no training model yet; call learn(env, 0) first")
        return self.model

    def training_state(self) -> dict[str, Any]:
        model = self._require_model("training_state")
        rng: dict[str, Any] = {"agent": self.rng.bit_generator.state, "torch": torch.get_rng_state()}
        sampler = getattr(model.policy, "sample_generator", None)
        if sampler is not None:
            rng["sampler"] = sampler.get_state()
        for name in ("rollout_buffer", "replay_buffer"):
            buf = getattr(model, name, None)
            if buf is not None and hasattr(buf, "np_rng"):
                rng[name] = buf.np_rng.bit_generator.state
        if hasattr(model, "explore_rng"):
            rng["explore"] = model.explore_rng.bit_generator.state
        return {"policy": model.policy.state_dict(), "optimizer": model.policy.optimizer.state_dict(), "rng": rng}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        model = self._require_model("load_training_state")
        model.policy.load_state_dict(state["policy"])
        model.policy.optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]
        self.rng.bit_generator.state = rng["agent"]
        torch.set_rng_state(rng["torch"])
        if "sampler" in rng:
            model.policy.sample_generator.set_state(rng["sampler"])
        for name in ("rollout_buffer", "replay_buffer"):
            buf = getattr(model, name, None)
            if name in rng and buf is not None and hasattr(buf, "np_rng"):
                buf.np_rng.bit_generator.state = rng[name]
        if "explore" in rng:
            model.explore_rng.bit_generator.state = rng["explore"]
        target = getattr(model.policy, "q_net_target", None)
        if target is not None and "learner" not in state:
            # Without a learner state (an approximate resume) DQN's target restarts from the online net; an
            # exact checkpoint's policy state holds the target as it was, loaded above.
            target.load_state_dict(model.policy.q_net.state_dict())
        self.sync_from_model()
