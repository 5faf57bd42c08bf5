"""RL training of one (agent, seed) cell with atomic checkpoints, resume, NaN guard and learning curves.

Training runs in chunks of ``checkpoint_every`` env steps (rounded up to whole PPO rollouts by SB3). After
every chunk: the parameters are checked for NaN/inf (a NaN stops the run with a diagnostic, and the last
good checkpoint stays in place), a learning-curve point is measured (mean session return of
``curve_users`` held-out users, deterministic ranking, fixed seed) and a checkpoint is written.

Checkpoint files (``checkpoints/<label>__seed<s>/``): ``step_<N>.pt`` (torch; policy and optimizer state,
step count, RNG states of the agent, the policy's sampler, the rollout/replay buffer, torch and the env
core, the learning curve so far, config hash), written atomically; then ``latest.json`` (step, file,
sha256, config hash) is replaced atomically - it is the completion marker. ``--resume`` loads the file
named by ``latest.json`` after checking its sha256 and config hash, truncates ``train_log.csv`` to that
step (so the log stays continuous) and trains only the remaining budget. The env is reseeded from
``(seed, step)`` on resume: a resumed run has the same step count and schedule, not bit-identical
trajectories (the in-flight episodes of the killed process are not restored). DQN resumes with an empty
replay buffer.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from recgym.common.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from recgym.envs.sb3 import RankingSB3VecEnv

__all__ = ["NaNLossError", "train_rl"]

CURVE_FIELDS = ("step", "eval_return", "train_ep_return", "train_ep_length")


class NaNLossError(RuntimeError):
    """Training produced NaN/inf parameters or losses; the last good checkpoint is kept."""


class _Progress(BaseCallback):
    """Advances a progress callback at each rollout end; stops training on a NaN loss."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        super().__init__()
        self.advance = advance
        self.last = 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.advance(self.num_timesteps)


def _finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def _losses_finite(model: Any) -> tuple[bool, dict[str, float]]:
    vals = {k: float(v) for k, v in getattr(model.logger, "name_to_value", {}).items()
            if k.startswith("train/") and isinstance(v, (int, float))}
    return all(math.isfinite(v) for v in vals.values()), vals


def _rng_state(agent: Any, venv: RankingSB3VecEnv) -> dict[str, Any]:
    model = agent.model
    st: dict[str, Any] = {"agent": agent.rng.bit_generator.state, "torch": torch.get_rng_state(),
                          "env": venv.core.generator.get_state()}
    gen = getattr(model.policy, "sample_generator", None)
    if gen is not None:
        st["sampler"] = gen.get_state()
    for name in ("rollout_buffer", "replay_buffer"):
        buf = getattr(model, name, None)
        if buf is not None and hasattr(buf, "np_rng"):
            st[name] = buf.np_rng.bit_generator.state
    if hasattr(model, "explore_rng"):
        st["explore"] = model.explore_rng.bit_generator.state
    return st


def _restore_rng(agent: Any, st: dict[str, Any]) -> None:
    model = agent.model
    agent.rng.bit_generator.state = st["agent"]
    torch.set_rng_state(st["torch"])
    if "sampler" in st:
        model.policy.sample_generator.set_state(st["sampler"])
    for name in ("rollout_buffer", "replay_buffer"):
        buf = getattr(model, name, None)
        if name in st and buf is not None and hasattr(buf, "np_rng"):
            buf.np_rng.bit_generator.state = st[name]
    if "explore" in st:
        model.explore_rng.bit_generator.state = st["explore"]


def _sync_agent(agent: Any) -> None:
    """After a chunk, point the agent's ranking network at the model's (what ``learn`` does itself)."""
    if hasattr(agent, "q_net"):
        agent.q_net = agent.model.policy.q_net
    else:
        agent.policy = agent.model.policy
    agent.num_timesteps = int(agent.model.num_timesteps)


def _read_log(path: Path, upto: int) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]
    return [r for r in rows if r["step"] <= upto]


def _write_log(path: Path, rows: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CURVE_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, float("nan")) for k in CURVE_FIELDS})
    atomic_write_text(path, buf.getvalue())


def _load_latest(ckpt_dir: Path, cfg_hash: str) -> dict[str, Any] | None:
    marker = ckpt_dir / "latest.json"
    if not marker.is_file():
        return None
    meta = json.loads(marker.read_text())
    if meta.get("config_hash") != cfg_hash:
        raise ValueError(f"{marker}: checkpoint was written by a different config (hash {meta.get('config_hash', '?')[:12]}"
                         f" != {cfg_hash[:12]}); use --overwrite")
    data = (ckpt_dir / meta["file"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ValueError(f"{ckpt_dir / meta['file']}: sha256 does not match latest.json (corrupt checkpoint)")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def _save(ckpt_dir: Path, agent: Any, venv: RankingSB3VecEnv, step: int, cfg_hash: str,
          curve: list[dict[str, float]], keep: int) -> None:
    model = agent.model
    payload = {"format": "recgym-checkpoint", "version": 1, "step": step, "config_hash": cfg_hash,
               "policy": model.policy.state_dict(), "optimizer": model.policy.optimizer.state_dict(),
               "rng": _rng_state(agent, venv), "curve": curve}
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    name = f"step_{step:010d}.pt"
    atomic_write_bytes(ckpt_dir / name, data)
    atomic_write_json(ckpt_dir / "latest.json", {"step": step, "file": name, "config_hash": cfg_hash,
                                                "sha256": hashlib.sha256(data).hexdigest()})
    for old in sorted(ckpt_dir.glob("step_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)


def train_rl(agent: Any, *, world: Any, train_env_cfg: Any, budget: int, num_envs: int, seed: int,
             checkpoint_every: int, ckpt_dir: Path, log_path: Path, tb_dir: Path | None, cfg_hash: str,
             curve_fn: Callable[[Any], float], keep: int = 2, device: str = "cpu",
             on_progress: Callable[[int], None] | None = None, resume: bool = True,
             wrap_env: Callable[[Any], Any] | None = None) -> list[dict[str, float]]:
    """Train ``agent`` (PPO/DQN recommender) for ``budget`` env steps; return its learning curve rows.

    ``wrap_env``: optional VecEnv wrapper of the training env (e.g. the reward's fairness term,
    :class:`~recgym.envs.fairness.FairExposureReward`); evaluation and the learning curve use the plain env.

    Already complete (``latest.json`` at ``>= budget``) and ``resume``: loads the final weights, trains nothing.
    """
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt = _load_latest(ckpt_dir, cfg_hash) if resume else None
    start = int(ckpt["step"]) if ckpt else 0
    env_seed = int(np.random.SeedSequence([seed, start]).generate_state(1)[0] % (2**31))
    venv = RankingSB3VecEnv(num_envs, seed=env_seed, world=world, config=train_env_cfg, device=device)
    menv = VecMonitor(venv if wrap_env is None else wrap_env(venv))
    agent.num_timesteps = start
    agent.learn(menv, 0)  # builds the SB3 model on this env (no steps)
    model = agent.model
    if tb_dir is not None:
        from stable_baselines3.common.logger import configure

        model.set_logger(configure(str(tb_dir), ["tensorboard"]))
    if ckpt:
        model.policy.load_state_dict(ckpt["policy"])
        model.policy.optimizer.load_state_dict(ckpt["optimizer"])
        _restore_rng(agent, ckpt["rng"])
        if hasattr(model.policy, "q_net_target"):
            model.policy.q_net_target.load_state_dict(model.policy.q_net.state_dict())
        _sync_agent(agent)
    curve = _read_log(log_path, start) if ckpt else []
    if not ckpt:
        curve = [{"step": 0.0, "eval_return": curve_fn(agent)}]
        _write_log(log_path, curve)
    progress = on_progress or (lambda _n: None)
    progress(start)
    step = start
    while step < budget:
        chunk = min(checkpoint_every, budget - step)
        try:
            agent.learn(menv, chunk, callback=_Progress(progress))
        except (ValueError, RuntimeError) as exc:
            if "nan" in str(exc).lower():
                raise NaNLossError(f"NaN during training at step ~{model.num_timesteps} ({exc}); last good "
                                   f"checkpoint kept in {ckpt_dir} (step {step})") from exc
            raise
        _sync_agent(agent)
        ok_loss, losses = _losses_finite(model)
        if not _finite(model.policy) or not ok_loss:
            raise NaNLossError(
                f"NaN/inf after step {model.num_timesteps}: losses {losses}; the last good checkpoint (step {step}) "
                f"is kept in {ckpt_dir}. Lower learning_rate or max_grad_norm.")
        step = int(model.num_timesteps)
        eps = list(model.ep_info_buffer or [])
        row = {"step": float(step), "eval_return": curve_fn(agent),
               "train_ep_return": float(np.mean([e["r"] for e in eps])) if eps else float("nan"),
               "train_ep_length": float(np.mean([e["l"] for e in eps])) if eps else float("nan")}
        curve.append(row)
        _write_log(log_path, curve)
        if model.logger is not None:
            model.logger.record("eval/return", row["eval_return"])
            model.logger.dump(step)
        _save(ckpt_dir, agent, venv, step, cfg_hash, curve, keep)
        progress(step)
    if ckpt and step >= budget and start == step:
        pass  # finished earlier: weights restored from the final checkpoint
    menv.close()
    return curve
