"""DQN whose Q-network is the shared candidate scorer: ``Q(s, a) = scorer(s)[a]`` for each candidate ``a``.

Training: SB3 DQN on ``action_type="item"`` (``Discrete(N)``, ``slate_size=1``), through
:class:`~recgym.envs.sb3.RankingSB3VecEnv`. Masked candidates get ``Q = -1e9`` (finite, so the target
``max_a' Q`` never multiplies ``-inf`` by a zero ``done`` flag). Exploration is per-user epsilon-greedy over
*unmasked* candidates from the agent's own RNG (SB3's default samples the whole action space from the
global RNG, which would pick masked items).

Slates of K > 1 (:meth:`DQNRecommender.rank`): the top-K candidates by Q ("Q-ranking"). This is exact when
rewards of items are additive and independent of the rest of the slate, and a myopic approximation
otherwise; it is *not* SlateQ (no choice-model decomposition of the slate value).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from pydantic import Field
from stable_baselines3 import DQN
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.dqn.policies import DQNPolicy

from recgym.agents._sb3 import SeededDictReplayBuffer, obs_to_torch, seeded_init
from recgym.agents.base import AgentConfig, EnvSpec, Recommender, check_compatible, register
from recgym.agents.scorer import CandidateScorer

__all__ = ["CandidateQNetwork", "CandidateDQNPolicy", "MaskedDQN", "DQNConfig", "DQNRecommender"]

MASKED_Q = -1e9


class CandidateQNetwork(BasePolicy):
    """Q-values ``(B, N)`` from :class:`CandidateScorer` (no value head); ``-1e9`` on masked candidates."""

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Discrete, *, item_embeddings: np.ndarray, hidden: int,
                 item_features: np.ndarray | None = None) -> None:
        super().__init__(observation_space, action_space)
        self.scorer = CandidateScorer(
            item_embeddings, hidden=hidden, value_head=False, item_features=item_features
        )

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        q, _ = self.scorer(obs)
        return q.masked_fill(~(obs["mask"] > 0), MASKED_Q)

    def _predict(self, observation: Mapping[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:  # type: ignore[override]
        return self(observation).argmax(dim=1)


class CandidateDQNPolicy(DQNPolicy):
    """SB3 DQN policy with :class:`CandidateQNetwork` as online and target network."""

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Discrete, lr_schedule: Any, *,
                 item_embeddings: np.ndarray, hidden: int = 64, item_features: np.ndarray | None = None,
                 **kwargs: Any) -> None:
        self._item_embeddings, self._hidden, self._item_features = item_embeddings, hidden, item_features
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def make_q_net(self) -> CandidateQNetwork:  # type: ignore[override]
        return CandidateQNetwork(
            self.observation_space, self.action_space, item_embeddings=self._item_embeddings, hidden=self._hidden,
            item_features=self._item_features,
        ).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(item_embeddings=self._item_embeddings, hidden=self._hidden, item_features=self._item_features)
        return data


class MaskedDQN(DQN):
    """SB3 DQN with masked, per-user epsilon-greedy exploration drawn from its own ``explore_rng``."""

    explore_rng: np.random.Generator

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False):  # type: ignore[override]
        action, state = self.policy.predict(observation, state, episode_start, deterministic)
        if deterministic:
            return action, state
        return self._explore(observation, np.asarray(action), self.exploration_rate), state

    def _explore(self, observation: Mapping[str, np.ndarray], action: np.ndarray, eps: float) -> np.ndarray:
        mask = np.asarray(observation["mask"]).astype(bool).reshape(action.shape[0], -1)
        rnd = np.argmax(np.where(mask, self.explore_rng.random(mask.shape), -1.0), axis=1)
        pick = self.explore_rng.random(action.shape[0]) < eps
        return np.where(pick, rnd, action)

    def _on_step(self) -> None:
        super()._on_step()
        # The target update writes through .data (version counters unchanged): its projection cache is stale.
        self.q_net_target.scorer.clear_cache()

    def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1):  # type: ignore[override]
        if self.num_timesteps < learning_starts:
            action = self._explore(self._last_obs, np.zeros(n_envs, dtype=np.int64), 1.0)  # type: ignore[arg-type]
        else:
            action, _ = self.predict(self._last_obs, deterministic=False)
        return action, action


class DQNConfig(AgentConfig):
    """DQN hyper-parameters (SB3 names); ``train_freq`` / ``learning_starts`` count vector steps x envs."""

    hidden: int = Field(64, ge=4, le=4096)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    buffer_size: int = Field(50_000, ge=100)
    learning_starts: int = Field(1_000, ge=0)
    batch_size: int = Field(256, ge=1)
    gamma: float = Field(0.9, ge=0, le=1)
    train_freq: int = Field(1, ge=1, description="vector steps between updates")
    gradient_steps: int = Field(4, ge=1)
    target_update_interval: int = Field(1_000, ge=1)
    tau: float = Field(1.0, gt=0, le=1)
    exploration_fraction: float = Field(0.3, gt=0, le=1)
    exploration_initial_eps: float = Field(1.0, ge=0, le=1)
    exploration_final_eps: float = Field(0.05, ge=0, le=1)
    max_grad_norm: float = Field(10.0, gt=0)


@register
class DQNRecommender(Recommender):
    """DQN over candidates. Train with :meth:`learn` on ``action_type="item"`` (``slate_size=1``); ranks
    K > 1 slates by Q-values (see the module docstring)."""

    name: ClassVar[str] = "dqn"
    Config: ClassVar[type[AgentConfig]] = DQNConfig
    train_action_types: ClassVar[tuple[str, ...]] = ("item",)
    compatible_hint: ClassVar[str] = (
        "DQN picks one candidate per step: build the training env with action_type='item' and slate_size=1; "
        "the trained agent ranks K > 1 slates by Q-values through rank(obs, k) (use 'ppo' to train on slates)."
    )
    config: DQNConfig

    def __init__(self, spec: EnvSpec, config: AgentConfig | None = None) -> None:
        super().__init__(spec, config)
        self.model: MaskedDQN | None = None
        with seeded_init(self.config.seed):
            self.q_net = CandidateQNetwork(
                self._obs_space(), spaces.Discrete(spec.num_candidates), item_embeddings=spec.item_embeddings,
                hidden=self.config.hidden, item_features=spec.item_features,
            ).to(self.device)
        self.num_timesteps = 0

    def _obs_space(self) -> spaces.Dict:
        from recgym.envs.config import EnvConfig
        from recgym.envs.spaces import observation_space

        n = self.spec.num_candidates
        cfg = EnvConfig(num_candidates=n, slate_size=1, action_type="item", new_items={"slots": 0},
                        candidates={"pool_size": max(n, 2)})
        return observation_space(cfg, self.spec.dim, self.spec.num_items)

    def learn(self, env: Any, total_timesteps: int, callback: Any = None, progress_bar: bool = False) -> DQNRecommender:
        """Train (or continue) on an SB3 VecEnv with ``action_type='item'``; checked before anything is built."""
        spec = EnvSpec.from_env(env)
        check_compatible(self.name, spec.action_type, spec.slate_size)
        if spec.table_hash != self.spec.table_hash or spec.num_candidates != self.spec.num_candidates:
            raise ValueError("learn: env item table / num_candidates differ from the ones the agent was built for")
        if self.model is None or self.model.env is not env:
            c = self.config
            with seeded_init(c.seed):
                self.model = MaskedDQN(
                    CandidateDQNPolicy, env, learning_rate=c.learning_rate, buffer_size=c.buffer_size,
                    learning_starts=c.learning_starts, batch_size=c.batch_size, gamma=c.gamma, tau=c.tau,
                    train_freq=c.train_freq, gradient_steps=c.gradient_steps,
                    target_update_interval=c.target_update_interval, exploration_fraction=c.exploration_fraction,
                    exploration_initial_eps=c.exploration_initial_eps, exploration_final_eps=c.exploration_final_eps,
                    max_grad_norm=c.max_grad_norm, replay_buffer_class=SeededDictReplayBuffer,
                    replay_buffer_kwargs={"seed": c.seed}, optimize_memory_usage=False,
                    policy_kwargs={
                        "item_embeddings": self.spec.item_embeddings, "hidden": c.hidden,
                        "item_features": self.spec.item_features,
                    },
                    device=self.device, seed=None, verbose=0,
                )
            self.model.explore_rng = np.random.default_rng(c.seed + 1)
            self.model.policy.q_net.load_state_dict(self.q_net.state_dict())
            self.model.policy.q_net_target.load_state_dict(self.q_net.state_dict())
            self.model.num_timesteps = self.num_timesteps
        self.model.learn(total_timesteps, callback=callback, reset_num_timesteps=False, progress_bar=progress_bar)
        self.q_net = self.model.policy.q_net
        self.num_timesteps = int(self.model.num_timesteps)
        return self

    @torch.no_grad()
    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        self.q_net.set_training_mode(False)
        return self.q_net.scorer(obs_to_torch(obs, self.q_net.device))[0].cpu().numpy()

    def _get_state(self) -> dict[str, Any]:
        return {
            "scorer": {k: v.detach().cpu() for k, v in self.q_net.scorer.state_dict().items()},
            "num_timesteps": self.num_timesteps,
        }

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self.q_net.scorer.load_state_dict(state["scorer"])
        self.num_timesteps = int(state["num_timesteps"])
