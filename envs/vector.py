"""Native batched ``gymnasium.vector.VectorEnv`` for ``recgym/Ranking-v0`` (B users on one core).

``gym.make_vec("recgym/Ranking-v0", num_envs=B, vectorization_mode="vector_entry_point")`` builds it.

Autoreset (Gymnasium 1.x, ``metadata["autoreset_mode"]``):

* ``"next_step"`` (default, what Gymnasium's vector wrappers expect): the step that ends a user's episode
  returns that final observation; the *next* ``step`` starts a new user in that slot, ignores its action
  there and returns the first observation with reward 0 and both flags False; its info is the reset info
  (``user`` is the new user, the step keys are masked out).
* ``"same_step"``: the slot is reset inside the step that ends it and the returned observation is the new
  user's first one. As in Gymnasium's ``SyncVectorEnv``: ``info["final_obs"]`` is a ``(B,)`` object array
  holding the final observation (a dict) of each ending slot and ``None`` elsewhere; ``info["final_info"]``
  holds the ending step's info of those slots (its ``_key`` masks are the ending slots); in ``info`` itself
  an ending slot carries its reset info: ``user`` is the new user and the step keys are masked out there.
  ``_final_obs`` / ``_final_info`` mark the ending slots. The SB3 adapter (:mod:`recgym.envs.sb3`) builds
  on this mode.

``info`` follows the vector convention: every key is a ``(B, ...)`` array with a boolean ``"_key"`` mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recgym.common.config import ConfigError
from recgym.envs._shell import (
    OBS_FRESH,
    CoreShell,
    check_options,
    check_seed,
    step_thread_count,
    step_threads,
    to_numpy,
)
from recgym.envs.config import EnvConfig
from recgym.envs.spaces import action_space, actions_to_slate, observation_space
from recgym.envs.state import SimState
from recgym.envs.world import World

__all__ = ["RankingVectorEnv"]

_MODES = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}


def _final_observations(obs: Mapping[str, torch.Tensor], rows: torch.Tensor) -> np.ndarray:
    """``(B,)`` object array: a dict of fresh numpy rows of ``obs`` where ``rows`` ``(B,)`` bool, else ``None``
    (one batched copy per key; the per-row dicts are views into those copies)."""
    idx = rows.nonzero().squeeze(1)
    taken = {k: v.detach().index_select(0, idx).cpu().numpy() for k, v in obs.items()}
    out = np.full(len(rows), None, dtype=object)
    for j, row in enumerate(idx.tolist()):
        out[row] = {k: v[j] for k, v in taken.items()}
    return out


class RankingVectorEnv(CoreShell, VectorEnv):
    """B simulated users stepped together. Arguments as :class:`~recgym.envs.ranking.RankingEnv`, plus
    ``num_envs`` and ``autoreset_mode`` (``"next_step"`` or ``"same_step"``)."""

    def __init__(
        self,
        num_envs: int = 1,
        world: str | World = "synthetic",
        config: EnvConfig | Mapping[str, Any] | None = None,
        *,
        autoreset_mode: str = "next_step",
        world_config: Mapping[str, Any] | None = None,
        data_dir: str | None = None,
        encoder: str | None = None,
        device: str | torch.device = "cpu",
        preference_model: Any = None,
        user_dynamics: Any = None,
        choice_model: Any = None,
        response_model: Any = None,
        reward_fn: Any = None,
        render_mode: str | None = None,
        **config_overrides: Any,
    ) -> None:
        if not isinstance(num_envs, (int, np.integer)) or isinstance(num_envs, bool) or num_envs < 1:
            raise ConfigError(f"num_envs: expected a positive int, received {num_envs!r}")
        if autoreset_mode not in _MODES:
            raise ConfigError(f"autoreset_mode: expected 'next_step' or 'same_step', received {autoreset_mode!r}")
        if render_mode is not None:
            raise ConfigError(f"render_mode: the vector env does not render, received {render_mode!r}")
        components = {"preference_model": preference_model, "user_dynamics": user_dynamics, "choice_model": choice_model,
                      "response_model": response_model, "reward_fn": reward_fn}
        self._build_core(world, config, config_overrides, world_config=world_config, data_dir=data_dir,
                         encoder=encoder, device=device, components=components)
        self.num_envs = int(num_envs)
        self.metadata = {"autoreset_mode": _MODES[autoreset_mode]}
        self.render_mode = None
        cat = self.core.world.catalog
        self.single_observation_space = observation_space(self.config, cat.dim, cat.num_items)
        self.single_action_space = action_space(self.config)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._pending_reset = torch.zeros(self.num_envs, dtype=torch.bool, device=self.core.device)
        self._all_rows = torch.arange(self.num_envs, device=self.core.device)
        self._threads = step_thread_count(self.num_envs, self.config.num_candidates, self.core.device)

    def oracle_scores(self) -> np.ndarray:
        """``(B, N)`` hidden click logits of the current candidates (myopic oracle and metrics only)."""
        self._require_reset("oracle_scores")
        return self._oracle_batch()

    def state_dict(self) -> dict[str, Any]:
        """Everything this env needs to continue bit-identically, as tensors and plain data (``torch.save``
        then ``torch.load(..., weights_only=True)`` reads it back): ``sim`` (:meth:`SimState.state_dict`: the
        users' tables, the clock and the random streams), ``pending_reset`` ``(B,)`` bool (``next_step``
        autoresets due at the next step) and ``np_random`` (the seeding generator's state, a plain dict).
        Copies: later steps do not change it."""
        self._require_reset("state_dict")
        return {"sim": self._state.state_dict(), "pending_reset": self._pending_reset.detach().cpu().clone(),
                "np_random": self.np_random.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` of an env built with the same world, config and ``num_envs`` (also
        before any ``reset``). A state that does not fit raises ``ValueError`` naming the field, expected and
        received; nothing is changed then."""
        if not isinstance(state, Mapping) or not {"sim", "pending_reset"} <= set(state):
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"load_state_dict: expected a mapping with 'sim' and 'pending_reset', received {got}")
        try:
            sim = SimState.from_state_dict(state["sim"], device=self.core.device)
        except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as exc:
            raise ValueError(f"load_state_dict: field 'sim': {exc}") from None
        ref = self.core.init_state(batch_size=1, seed=0)
        if sim.names() != ref.names():
            raise ValueError(f"load_state_dict: field 'sim': expected the fields {list(ref.names())} of this env's "
                             f"components, received {list(sim.names())}")
        batched_names = {n for n, _ in ref.batched()}
        for name in ref.names():
            want, got = getattr(ref, name), getattr(sim, name)
            batched = name in batched_names
            want_shape = (self.num_envs, *want.shape[1:]) if batched else tuple(want.shape)
            if got.dtype != want.dtype or tuple(got.shape) != want_shape:
                raise ValueError(f"load_state_dict: field 'sim.{name}': expected {want.dtype} {want_shape}, received "
                                 f"{got.dtype} {tuple(got.shape)} (another world, config or num_envs?)")
        pending = state["pending_reset"]
        if not isinstance(pending, torch.Tensor) or pending.dtype != torch.bool or tuple(pending.shape) != (self.num_envs,):
            got = f"{pending.dtype} {tuple(pending.shape)}" if isinstance(pending, torch.Tensor) else type(pending).__name__
            raise ValueError(f"load_state_dict: field 'pending_reset': expected bool ({self.num_envs},), received {got}")
        if "np_random" in state:
            gen = np.random.Generator(np.random.PCG64())
            try:
                gen.bit_generator.state = state["np_random"]
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(f"load_state_dict: field 'np_random': expected a numpy PCG64 state ({exc})") from None
            self._np_random = gen
        self._state = sim
        self._pending_reset = pending.to(self.core.device, copy=True)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if isinstance(seed, (list, tuple)):
            raise ConfigError("seed: expected one int seed for all users (the native vector env seeds them from one "
                              f"stream), received a {type(seed).__name__}")
        seed = check_seed(seed)
        opts = check_options(options, ("user_indices",), num_users=self.core.world.population.num_users,
                             num_envs=self.num_envs)
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        users = None
        if "user_indices" in opts:
            users = self.core.validate_users(opts["user_indices"])
            if len(users) != self.num_envs:
                raise ConfigError(f"reset(options['user_indices']): expected {self.num_envs} users, received {len(users)}")
        with step_threads(self._threads):
            if seed is not None or self._state is None:
                # Row i's stream depends on (this seed, i) only; later resets continue the streams.
                stream_seed = int(self.np_random.integers(0, 2**63 - 1))
                self._state = self.core.init_state(users, batch_size=self.num_envs, seed=stream_seed)
            else:
                self.core.reset_rows(self._state, self._all_rows, users)
            self._pending_reset.zero_()
            obs = to_numpy(self.core.observe(self._state, copy=False), fresh=OBS_FRESH)
        return obs, self._vector_info({"user": self._state.user.cpu().numpy()})

    def step(self, actions: Any):
        self._require_reset("step")
        with step_threads(self._threads):
            return self._step(actions)

    def _step(self, actions: Any):
        state, core = self._state, self.core
        pending = self._pending_reset
        any_pending = bool(pending.any())
        if any_pending:
            # Slots being reset ignore their action: substitute a valid placeholder so validation passes.
            actions = self._neutralise(actions, pending)
        slate = actions_to_slate(actions, state.mask, self.config, batched=True, strict=self.config.strict)
        reward, terminated, truncated, info_t = core.step(state, slate)
        done = terminated | truncated
        info_t["episode_step"] = state.step.to(torch.int64, copy=True)
        if self.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP:
            step_info = to_numpy(info_t, fresh=info_t)
            if not bool(done.any()):
                obs, info = to_numpy(core.observe(state, copy=False), fresh=OBS_FRESH), self._vector_info(step_info)
            else:
                final_obs = _final_observations(core.observe(state, copy=False), done)
                self._reset_slots(done)
                obs = to_numpy(core.observe(state, copy=False), fresh=OBS_FRESH)
                done_np = done.cpu().numpy()
                # The ending slots' step values are read through final_info (the same arrays, other masks).
                info = self._vector_info(step_info, valid=~done_np)
                self._put_reset_info(info)
                info["final_info"] = self._vector_info(step_info, valid=done_np)
                info["final_obs"], info["_final_obs"], info["_final_info"] = final_obs, done_np, done_np.copy()
        else:
            if any_pending:
                self._reset_slots(pending)
                reward = torch.where(pending, torch.zeros_like(reward), reward)
                terminated, truncated = terminated & ~pending, truncated & ~pending
            self._pending_reset = terminated | truncated
            obs = to_numpy(core.observe(state, copy=False), fresh=OBS_FRESH)
            info = self._vector_info(to_numpy(info_t, fresh=info_t), valid=(~pending).cpu().numpy() if any_pending else None)
            if any_pending:
                self._put_reset_info(info)
        return (
            obs,
            reward.cpu().numpy().astype(np.float64),
            terminated.cpu().numpy(),
            truncated.cpu().numpy(),
            info,
        )

    def _put_reset_info(self, info: dict) -> None:
        """Slots reset in this step carry their reset info, as in Gymnasium: ``user`` is the new user."""
        info["user"], info["_user"] = self._state.user.cpu().numpy(), np.ones(self.num_envs, dtype=bool)

    def _reset_slots(self, slots: torch.Tensor) -> None:
        rows = slots.nonzero().flatten()
        if len(rows):
            self.core.reset_rows(self._state, rows)

    def _neutralise(self, actions: Any, pending: torch.Tensor) -> Any:
        kind = self.config.action_type
        a = np.array(actions, copy=True)
        rows = pending.cpu().numpy()
        if kind == "scores":
            a[rows] = 0.0
        else:
            valid = self._state.mask[pending]
            first = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices[:, : self.config.slate_size]
            a[rows] = first.cpu().numpy().reshape(a[rows].shape)
        return a

    def _vector_info(self, arrays: Mapping[str, np.ndarray], valid: np.ndarray | None = None) -> dict:
        """``arrays`` plus a ``_key`` mask for each: ``valid`` ``(B,)`` bool, or all True."""
        mask = np.ones(self.num_envs, dtype=bool) if valid is None else valid
        info = dict(arrays)
        for k in arrays:
            info["_" + k] = mask.copy()
        return info

    def _require_reset(self, what: str) -> None:
        if self._state is None:
            raise RuntimeError(f"{what}() called before reset(); call env.reset() first")
