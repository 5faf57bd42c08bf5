"""SlateQ's training loop over the native batched env (``agent.model`` of a :class:`SlateQRecommender`).

Why not SB3's DQN loop: SlateQ learns from *which* item was clicked, and the SB3 adapter
(:class:`~recgym.envs.sb3.RankingSB3VecEnv`) drops the step info that carries ``clicks``. So the learner steps
the :class:`~recgym.envs.vector.RankingVectorEnv` itself - directly, or the one inside an SB3 adapter (reset
once through the SB3 wrappers, which are then bypassed: episode statistics are kept here, in
``ep_info_buffer``; any SB3 wrapper but ``VecMonitor`` is refused, since bypassing it would lose what it
changes, e.g. a reward term). Both Gymnasium autoreset modes are handled: ``next_step`` (the step after an episode's
end only resets its slot and is not a transition) and ``same_step`` (the final observation of an ended
episode comes from ``info["final_obs"]``).

Per vector step: act on ``B`` users (slate optimiser, epsilon-greedy over slates), step, store the previous
step's transitions now that their next slate is known (SARSA needs it), then every ``train_freq`` vector
steps run ``gradient_steps`` updates once ``learning_starts`` env steps and a batch are in the buffer.

Surface used by callers (the experiments runner checkpoints through it; SB3 callbacks read it):
``num_timesteps`` (env steps, summed over users), ``policy`` (the agent's :class:`SlateQNetworks`, with
``optimizer``), ``logger`` / ``set_logger`` (SB3 ``Logger``; ``train/*`` values are recorded, never dumped
here), ``ep_info_buffer`` (last 100 episodes' ``{"r": return, "l": length}``), ``get_env()``,
``replay_buffer``. The full training state (networks, target, optimizer, generators, step count) is the
agent's ``_get_state()``; the replay buffer is not saved (a resumed run refills it).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    ConvertCallback,
    ProgressBarCallback,
)
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor

from recgym.agents._slateq_buffer import SlateReplayBuffer
from recgym.agents._slateq_math import click_index
from recgym.agents.base import IncompatibleEnvError
from recgym.agents.observations import OBS_KEYS
from recgym.agents.scorer import COS_KEY, cosine_features

if TYPE_CHECKING:
    from recgym.agents.slateq import SlateQRecommender

__all__ = ["SlateQLearner", "steppable_env"]

def steppable_env(env: Any) -> tuple[Any, bool]:
    """``(env to step, reset_through_sb3)``: a Gymnasium vector env (a :class:`RankingVectorEnv` or a vector
    wrapper of one) is stepped as given; an SB3 ``VecEnv`` is unwrapped to its :class:`RankingVectorEnv`."""
    from recgym.envs.vector import RankingVectorEnv  # lazy: agents import without building env modules

    if not isinstance(env, VecEnv):
        base = getattr(env, "unwrapped", env)
        if not isinstance(base, RankingVectorEnv):
            raise TypeError(
                f"env: SlateQ trains on a RankingVectorEnv, a Gymnasium vector wrapper of one or a RankingSB3VecEnv "
                f"(or an SB3 wrapper of one), received {type(env).__name__}"
            )
        return env, False
    inner: Any = env
    for _ in range(16):
        if isinstance(inner, RankingVectorEnv):
            return inner, True
        if isinstance(inner, VecEnvWrapper) and not isinstance(inner, VecMonitor):
            # stepping underneath would bypass it: a reward term or normalisation silently lost
            raise IncompatibleEnvError(
                f"env: SlateQ steps the RankingVectorEnv under the SB3 adapter (the adapter drops info['clicks']), "
                f"so the SB3 wrapper {type(inner).__name__} would be bypassed and what it changes lost; expected "
                f"no SB3 wrapper but VecMonitor, received {type(inner).__name__} (e.g. a config's reward_fairness "
                f"is not supported for slateq)")
        inner = getattr(inner, "venv", None)
    raise TypeError(f"env: expected an SB3 VecEnv over a RankingSB3VecEnv, received {type(env).__name__}")


def _step_clicks(info: Mapping[str, Any], b: int, k: int) -> np.ndarray:
    """``(B, K)`` bool clicks of a vector step; ended slots (same-step autoreset) read ``final_info``."""
    if "clicks" not in info:
        raise KeyError("env step info: expected 'clicks' (B, K); SlateQ learns its choice model from the clicks")
    clicks = np.array(info["clicks"], dtype=bool).reshape(b, k)
    rows = info.get("_final_info")
    if rows is not None and "clicks" in info.get("final_info", {}):
        clicks[rows] = np.asarray(info["final_info"]["clicks"], dtype=bool).reshape(b, k)[rows]
    return clicks


def _as_callback(callback: Any, progress_bar: bool) -> BaseCallback | None:
    cbs = list(callback) if isinstance(callback, (list, tuple)) else ([] if callback is None else [callback])
    cbs = [c if isinstance(c, BaseCallback) else ConvertCallback(c) for c in cbs]
    if progress_bar:
        cbs.append(ProgressBarCallback())
    return None if not cbs else (cbs[0] if len(cbs) == 1 else CallbackList(cbs))


class SlateQLearner:
    """Training state bound to one env (see the module docstring). Built by ``SlateQRecommender.learn``."""

    def __init__(self, agent: SlateQRecommender, env: Any) -> None:
        self.agent = agent
        self.policy = agent.policy
        self.config = agent.config
        self.env = env
        self.venv, self._reset_through_sb3 = steppable_env(env)
        self.num_envs = int(self.venv.num_envs)
        self.slate_size = int(self.venv.unwrapped.config.slate_size)
        self.same_step = str(self.venv.metadata.get("autoreset_mode", "")).lower().endswith("same_step")
        self.device = agent.device
        self.replay_buffer = SlateReplayBuffer(self.config.buffer_size, self.device)
        self.logger = Logger(folder=None, output_formats=[])
        self.ep_info_buffer: collections.deque = collections.deque(maxlen=100)
        self.num_timesteps = int(agent.num_timesteps)
        self.n_updates = 0
        self._target_syncs = self.num_timesteps // self.config.target_update_interval
        self._obs_t: dict[str, torch.Tensor] | None = None
        self._pending: dict[str, torch.Tensor] | None = None
        self._skip = np.zeros(self.num_envs, dtype=bool)  # next_step autoreset: slots resetting this step
        self._ep_return = np.zeros(self.num_envs)
        self._ep_length = np.zeros(self.num_envs, dtype=np.int64)

    # ------------------------------------------------------------------ SB3-callback surface
    def get_env(self) -> Any:
        return self.env

    def set_logger(self, logger: Logger) -> None:
        self.logger = logger

    def exploration_rate(self) -> float:
        """Linear epsilon schedule over the first ``exploration_steps`` env steps (absolute, so chunked
        training and resumed runs follow one schedule)."""
        c = self.config
        frac = min(1.0, self.num_timesteps / max(c.exploration_steps, 1))
        return c.exploration_initial_eps + frac * (c.exploration_final_eps - c.exploration_initial_eps)

    # ------------------------------------------------------------------ loop
    def learn(self, total_timesteps: int, callback: Any = None, progress_bar: bool = False) -> None:
        """Step the env until ``total_timesteps`` more env steps are done (whole vector steps)."""
        if total_timesteps < 0:
            raise ValueError(f"total_timesteps: expected >= 0, received {total_timesteps}")
        if self._obs_t is None:
            self._reset()
        cb = _as_callback(callback, progress_bar)
        total_timesteps = self.num_timesteps + int(total_timesteps)  # absolute target, as SB3's locals
        if cb is not None:
            cb.init_callback(self)  # type: ignore[arg-type]
            cb.on_training_start(locals(), globals())
        c = self.config
        running = True
        while running and self.num_timesteps < total_timesteps:
            if cb is not None:
                cb.on_rollout_start()
            for _ in range(c.train_freq):
                running = self._env_step(cb)
                if not running or self.num_timesteps >= total_timesteps:
                    break
            if cb is not None:
                cb.on_rollout_end()
            if running and self.num_timesteps >= c.learning_starts and len(self.replay_buffer) >= c.batch_size:
                self._train(c.gradient_steps)
            self._maybe_sync_target()
        self.logger.record("rollout/exploration_rate", self.exploration_rate())
        if self.ep_info_buffer:
            self.logger.record("rollout/ep_rew_mean", float(np.mean([e["r"] for e in self.ep_info_buffer])))
        if cb is not None:
            cb.on_training_end()

    def _reset(self) -> None:
        if self._reset_through_sb3:
            obs = self.env.reset()  # the SB3 adapter's own seed, as SB3 algorithms do
        else:
            obs, _ = self.env.reset(seed=self.config.seed)
        self._set_obs(obs)

    def _set_obs(self, obs: Mapping[str, np.ndarray]) -> None:
        """Every key of the observation is kept (and stored with the transitions), so public features an env
        adds beside the five standard keys reach the scorers. Copies: the transition keeps this observation
        for a step, and a wrapper may reuse its arrays."""
        missing = [k for k in OBS_KEYS if k not in obs]
        if missing:
            raise KeyError(f"env observation: expected keys {OBS_KEYS}, missing {missing}")
        self._obs_t = {k: torch.tensor(np.asarray(v), device=self.device) for k, v in obs.items()}

    def _cosines(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(B, N, 2)`` parameter-free cosine features of ``obs`` (stored with the transitions, so updates
        never recompute them: they are the largest single cost of a forward on a big catalogue)."""
        return cosine_features(self.policy.q.item_unit, obs["profile"], obs["history"], obs["candidates"])

    def _env_step(self, cb: BaseCallback | None) -> bool:
        assert self._obs_t is not None
        obs_t = {**self._obs_t, COS_KEY: self._cosines(self._obs_t)}
        slate = self.agent._act(obs_t, self.slate_size, self.exploration_rate())
        self._store_pending(slate, obs_t[COS_KEY])
        new_obs, reward, terminated, truncated, info = self.venv.step(slate.cpu().numpy())
        b, k = slate.shape
        self.num_timesteps += b
        dev = self.device
        done = np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool)
        valid = ~self._skip
        clicks = _step_clicks(info, b, k)
        clicks[~valid] = False  # reset steps (next_step autoreset) are not transitions
        self._set_obs(new_obs)
        pending = {
            **{f"obs/{key}": v for key, v in obs_t.items()},
            **{f"next_obs/{key}": v for key, v in self._obs_t.items()},
            "slate": slate,
            "click": click_index(torch.as_tensor(clicks, device=dev)),
            "reward": torch.as_tensor(np.asarray(reward, dtype=np.float32), device=dev),
            "bootstrap": torch.as_tensor(~np.asarray(terminated, dtype=bool), device=dev),
            "continues": torch.as_tensor(~done, device=dev),
            "valid": torch.as_tensor(valid, device=dev),
        }
        if self.same_step and done.any():  # the ended slots' s' is their final observation, not the new user's
            rows = np.flatnonzero(done)
            final = {key: torch.as_tensor(np.stack([np.asarray(info["final_obs"][i][key]) for i in rows]), device=dev)
                     for key in self._obs_t}
            rows_t = torch.as_tensor(rows, device=dev)
            for key in final:
                pending[f"next_obs/{key}"] = pending[f"next_obs/{key}"].index_copy(0, rows_t, final[key])
            pending["_final_rows"], pending["_final_cos"] = rows_t, self._cosines(final)
        self._pending = pending
        self._track_episodes(np.asarray(reward, dtype=np.float64), valid, done)
        self._skip = done if not self.same_step else np.zeros_like(done)
        if cb is None:
            return True
        cb.update_locals(locals())
        return bool(cb.on_step())

    def _store_pending(self, next_slate: torch.Tensor, next_cos: torch.Tensor) -> None:
        """Add the previous step's valid transitions, with the slate (and cosine features) now computed at
        their ``s'`` - the observation acted on now, except the final observations of same-step resets."""
        p = self._pending
        if p is None:
            return
        self._pending = None
        cont = p.pop("continues")
        rows = p.pop("valid").nonzero().squeeze(1)
        if "_final_rows" in p:
            next_cos = next_cos.index_copy(0, p.pop("_final_rows"), p.pop("_final_cos"))
        p[f"next_obs/{COS_KEY}"] = next_cos
        p["next_slate"] = torch.where(cont.unsqueeze(1), next_slate, torch.zeros_like(next_slate))
        p["has_next_slate"] = cont
        self.replay_buffer.add({key: v.index_select(0, rows) for key, v in p.items()})

    def _track_episodes(self, reward: np.ndarray, valid: np.ndarray, done: np.ndarray) -> None:
        self._ep_return += np.where(valid, reward, 0.0)
        self._ep_length += valid
        for i in np.flatnonzero(done & valid):
            self.ep_info_buffer.append({"r": float(self._ep_return[i]), "l": int(self._ep_length[i])})
        self._ep_return[done] = 0.0
        self._ep_length[done] = 0

    # ------------------------------------------------------------------ updates
    def _train(self, gradient_steps: int) -> None:
        policy = self.policy
        policy.train()
        stats = collections.defaultdict(list)
        for _ in range(gradient_steps):
            batch = self.replay_buffer.sample(self.config.batch_size, self.agent.replay_generator)
            for key, val in policy.update(batch, self.config).items():
                stats[key].append(val)
            self.n_updates += 1
        policy.eval()
        for key, vals in stats.items():
            self.logger.record(f"train/{key}", float(np.mean(vals)))
        self.logger.record("train/n_updates", self.n_updates)

    def _maybe_sync_target(self) -> None:
        syncs = self.num_timesteps // self.config.target_update_interval
        if syncs > self._target_syncs:
            self._target_syncs = syncs
            self.policy.sync_target(self.config.tau)
