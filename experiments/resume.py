"""Exact resume of SB3 training: the learner state between two ``learn`` calls, as tensors and plain data.

A checkpoint of ``recgym run`` holds the network, optimiser and RNG states (see
:mod:`recgym.experiments.training`) plus what this module captures, so that a run killed mid-training and
resumed continues bit-identically (same trajectories, same updates, same metrics):

* the rollout position: SB3's ``_last_obs`` (the observation the next action is chosen on) and
  ``_last_episode_starts``; checkpoints are written between ``learn`` calls, when a PPO rollout buffer is
  consumed (it is refilled from scratch), so nothing else of the rollout is in flight;
* the episode statistics: SB3's ``ep_info_buffer`` / ``ep_success_buffer`` (they feed the learning curve's
  ``train_ep_return``) and :class:`~stable_baselines3.common.vec_env.VecMonitor`'s running per-user
  returns and lengths;
* counters: ``_episode_num``, ``_n_updates`` and, for DQN, ``_n_calls`` (the target-update clock) and
  ``exploration_rate``;
* DQN's replay buffer: the filled rows of every array, ``pos`` and ``full``. Its size is about
  ``2 x filled transitions x observation bytes`` (observations and next observations; ~8 KB per transition
  at d = 384, N = 100), so a full buffer of 50,000 transitions weighs ~0.4 GB per checkpoint: lower
  ``buffer_size`` or ``keep_checkpoints`` where disk is short.

The env's own state (:meth:`~recgym.envs.vector.RankingVectorEnv.state_dict`) is saved beside it. numpy
arrays become tensors (``torch.from_numpy``) and come back with their dtype, so restored values are the same
bits; scalars keep their numpy type (SB3 averages ``np.float32`` returns in float32).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["learner_state", "load_learner_state", "check_learner_state"]

_COUNTERS = ("_episode_num", "_n_updates", "_n_calls")
_REPLAY_ARRAYS = ("actions", "rewards", "dones", "timeouts")


def _tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr, copy=True))


def _obs_state(obs: Any) -> dict[str, torch.Tensor]:
    if isinstance(obs, Mapping):
        return {str(k): _tensor(np.asarray(v)) for k, v in obs.items()}
    return {"": _tensor(np.asarray(obs))}


def _obs_value(state: Mapping[str, torch.Tensor]) -> Any:
    if set(state) == {""}:
        return state[""].numpy().copy()
    return {k: v.numpy().copy() for k, v in state.items()}


def learner_state(model: Any, monitor: Any = None) -> dict[str, Any]:
    """The state of SB3 algorithm ``model`` (PPO, DQN) and its ``monitor`` (a ``VecMonitor``) between two
    ``learn`` calls that the network/optimiser/RNG states do not hold (see the module docstring)."""
    infos = list(model.ep_info_buffer or [])
    state: dict[str, Any] = {
        "last_obs": _obs_state(model._last_obs) if model._last_obs is not None else None,
        "last_episode_starts": _tensor(np.asarray(model._last_episode_starts)),
        "ep_info": {"r": _tensor(np.array([e["r"] for e in infos], dtype=np.float32)),
                    "l": _tensor(np.array([e["l"] for e in infos], dtype=np.int32)),
                    "t": _tensor(np.array([e["t"] for e in infos], dtype=np.float64))},
        "ep_success": [bool(x) for x in (model.ep_success_buffer or [])],
        "counters": {k: int(getattr(model, k)) for k in _COUNTERS if hasattr(model, k)},
    }
    if hasattr(model, "exploration_rate"):
        state["exploration_rate"] = float(model.exploration_rate)
    if monitor is not None:
        state["monitor"] = {"episode_returns": _tensor(monitor.episode_returns),
                            "episode_lengths": _tensor(monitor.episode_lengths),
                            "episode_count": int(monitor.episode_count)}
    buf = getattr(model, "replay_buffer", None)
    if buf is not None:
        n = buf.buffer_size if buf.full else buf.pos
        state["replay"] = {
            "pos": int(buf.pos), "full": bool(buf.full),
            "observations": {k: _tensor(v[:n]) for k, v in buf.observations.items()},
            "next_observations": {k: _tensor(v[:n]) for k, v in buf.next_observations.items()},
            **{k: _tensor(getattr(buf, k)[:n]) for k in _REPLAY_ARRAYS},
        }
    return state


def _fail(field: str, expected: str, received: Any) -> None:
    raise ValueError(f"field 'learner.{field}': expected {expected}, received {received}")


def _describe(v: Any) -> str:
    return f"{v.dtype} {tuple(v.shape)}" if isinstance(v, (torch.Tensor, np.ndarray)) else type(v).__name__


def _check_tensors(field: str, value: Any) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in value.items()):
        _fail(field, "a dict of named tensors", _describe(value))


def check_learner_state(state: Any) -> None:
    """Structure check of :func:`learner_state` output read from a file (types only; shapes are checked
    against the model by :func:`load_learner_state`). Raises ``ValueError`` naming the field."""
    if not isinstance(state, Mapping):
        _fail("", "a dict", type(state).__name__)
    if state.get("last_obs") is not None:
        _check_tensors("last_obs", state["last_obs"])
    if not isinstance(state.get("last_episode_starts"), torch.Tensor):
        _fail("last_episode_starts", "a bool tensor", _describe(state.get("last_episode_starts")))
    _check_tensors("ep_info", state.get("ep_info"))
    if set(state["ep_info"]) != {"r", "l", "t"} or len({len(v) for v in state["ep_info"].values()}) != 1:
        _fail("ep_info", "tensors r, l, t of one length", {k: _describe(v) for k, v in state["ep_info"].items()})
    if not isinstance(state.get("ep_success"), list):
        _fail("ep_success", "a list of bools", type(state.get("ep_success")).__name__)
    counters = state.get("counters")
    if not isinstance(counters, Mapping) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                    for v in counters.values()):
        _fail("counters", "a dict of non-negative ints", counters)
    if "monitor" in state:
        mon = state["monitor"]
        if not isinstance(mon, Mapping) or not {"episode_returns", "episode_lengths", "episode_count"} <= set(mon):
            _fail("monitor", "episode_returns, episode_lengths and episode_count", mon if not isinstance(mon, Mapping)
                  else sorted(mon))
    if "replay" in state:
        rep = state["replay"]
        if not isinstance(rep, Mapping) or not isinstance(rep.get("pos"), int) or not isinstance(rep.get("full"), bool):
            _fail("replay", "a dict with int 'pos' and bool 'full'", _describe(rep))
        for key in ("observations", "next_observations"):
            _check_tensors(f"replay.{key}", rep.get(key))
        for key in _REPLAY_ARRAYS:
            if not isinstance(rep.get(key), torch.Tensor):
                _fail(f"replay.{key}", "a tensor", _describe(rep.get(key)))


def _like(field: str, got: torch.Tensor, want: np.ndarray, rows: int | None = None) -> np.ndarray:
    """``got`` as a numpy array after checking it has ``want``'s dtype and shape (leading size ``rows``)."""
    arr = got.numpy()
    shape = want.shape if rows is None else (rows, *want.shape[1:])
    if arr.dtype != want.dtype or arr.shape != shape:
        _fail(field, f"{want.dtype} {shape}", _describe(arr))
    return arr


def load_learner_state(model: Any, state: Mapping[str, Any], monitor: Any = None) -> None:
    """Restore :func:`learner_state` into ``model`` (built on an env like the one that made it, after
    ``learn(env, 0)``) and ``monitor``. Everything is checked first: a mismatch raises ``ValueError`` naming the
    field, and nothing is changed then."""
    check_learner_state(state)
    n_envs = int(model.n_envs)
    updates: dict[str, Any] = {}
    if state["last_obs"] is not None:
        ref = _obs_state(model._last_obs)
        if set(ref) != set(state["last_obs"]):
            _fail("last_obs", f"keys {sorted(ref)}", sorted(state["last_obs"]))
        obs = {k: _like(f"last_obs.{k}", v, ref[k].numpy()) for k, v in state["last_obs"].items()}
        updates["_last_obs"] = _obs_value({k: torch.from_numpy(v) for k, v in obs.items()})
    updates["_last_episode_starts"] = _like("last_episode_starts", state["last_episode_starts"],
                                            np.zeros(n_envs, dtype=np.asarray(model._last_episode_starts).dtype)).copy()
    info = state["ep_info"]
    r, ln, t = info["r"].numpy(), info["l"].numpy(), info["t"].numpy()
    maxlen = model.ep_info_buffer.maxlen if model.ep_info_buffer is not None else None
    updates["ep_info_buffer"] = deque(({"r": r[i], "l": ln[i], "t": float(t[i])} for i in range(len(r))), maxlen=maxlen)
    updates["ep_success_buffer"] = deque(state["ep_success"], maxlen=maxlen)
    for key, value in state["counters"].items():
        if not hasattr(model, key):
            _fail(f"counters.{key}", f"a counter of {type(model).__name__}", key)
        updates[key] = value
    if "exploration_rate" in state:
        updates["exploration_rate"] = float(state["exploration_rate"])
    mon_updates: dict[str, Any] = {}
    if monitor is not None and "monitor" in state:
        mon = state["monitor"]
        mon_updates = {"episode_returns": _like("monitor.episode_returns", mon["episode_returns"],
                                                monitor.episode_returns).copy(),
                       "episode_lengths": _like("monitor.episode_lengths", mon["episode_lengths"],
                                                monitor.episode_lengths).copy(),
                       "episode_count": int(mon["episode_count"])}
    buf = getattr(model, "replay_buffer", None)
    replay: dict[str, Any] | None = None
    if buf is not None:
        if "replay" not in state:
            _fail("replay", "the replay buffer of this off-policy learner", "nothing (missing)")
        rep = state["replay"]
        n = buf.buffer_size if rep["full"] else rep["pos"]
        if not 0 <= rep["pos"] < buf.buffer_size or n > buf.buffer_size:
            _fail("replay.pos", f"0 <= pos < {buf.buffer_size}", rep["pos"])
        replay = {"pos": rep["pos"], "full": rep["full"]}
        for key in ("observations", "next_observations"):
            have = getattr(buf, key)
            if set(have) != set(rep[key]):
                _fail(f"replay.{key}", f"keys {sorted(have)}", sorted(rep[key]))
            replay[key] = {k: _like(f"replay.{key}.{k}", v, have[k], n) for k, v in rep[key].items()}
        for key in _REPLAY_ARRAYS:
            replay[key] = _like(f"replay.{key}", rep[key], getattr(buf, key), n)
    # Everything checked: apply.
    for key, value in updates.items():
        setattr(model, key, value)
    for key, value in mon_updates.items():
        setattr(monitor, key, value)
    if replay is not None:
        n = buf.buffer_size if replay["full"] else replay["pos"]
        for key in ("observations", "next_observations"):
            for k, arr in replay[key].items():
                getattr(buf, key)[k][:n] = arr
        for key in _REPLAY_ARRAYS:
            getattr(buf, key)[:n] = replay[key]
        buf.pos, buf.full = replay["pos"], replay["full"]
