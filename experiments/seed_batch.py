"""The cells of PPO ``trainer: fast`` train their seeds as one batched job, with checkpoints and exact resume.

:func:`train_seed_batch` trains the given seeds of one agent as one
:class:`~recgym.agents.ppo_fast.SeedBatch` (``training.batch_seeds: false``: the runner passes one seed at a
time) in chunks of ``checkpoint_every`` env steps (rounded up to whole rollouts), like
:func:`~recgym.experiments.training.train_agent` does for one cell. After every chunk, for each seed: a NaN
check, a learning-curve point (``curves/<label>__seed<s>.csv``) and a checkpoint in the seed's own folder
``checkpoints/<label>__seed<s>/`` - the same agent-file format, manifests, verification, ``*.rejected``
fallback and pruning as every other cell (:mod:`recgym.experiments.training`), so ``load_agent(step_<N>.pt)``
gives that seed's agent. Its ``training`` section is marked ``trainer: "fast"`` and holds the seed's scorer
(``policy``), its Adam moments and step count (``optimizer``), its Gumbel and minibatch generators (``rng``),
the rollout position (``last_done``) and its training env's state (``sim``). The curve points of all seeds
are measured first, then the checkpoints of all seeds are written back to back, so a kill almost always
leaves every seed at the same step.

Resume: each seed resumes from its newest valid checkpoint; seeds at the same step train on as one batch
(exactly the trajectories and updates of the run never interrupted), a seed that is already complete loads
its final weights and trains nothing. Seeds left at different steps (a kill between two seeds' checkpoint
writes, or a corrupt checkpoint) train as one batch per step: each is still its own PPO run with its own
streams, equal to the uninterrupted one up to float summation order.

Not for batched cells: TensorBoard logs, ``train_ep_return``/``train_ep_length`` in the curve (NaN) and
``reward_fairness`` (the fast trainer steps the simulator core, not a wrapped env: such a cell fails with
an error saying so; use ``trainer: sb3``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recgym.agents.base import make_agent
from recgym.common.io import clean_stale_temp_files, path_inside
from recgym.envs.sb3 import RankingSB3VecEnv
from recgym.experiments.training import (
    NaNLossError,
    find_resume_checkpoint,
    write_checkpoint,
    write_curve_log,
)

__all__ = ["train_seed_batch", "train_env_seed", "SeedCell"]


def train_env_seed(train_seed: int, step: int) -> int:
    """The training env's seed of a cell resumed at ``step`` (as :func:`~recgym.experiments.training.train_agent`)."""
    return int(np.random.SeedSequence([train_seed, step]).generate_state(1)[0] % (2**31))


@dataclass(frozen=True)
class SeedCell:
    """One seed's cell as the batch needs it (built by :mod:`recgym.experiments.cells`)."""

    seed: int
    name: str  # <label>__seed<s>: its checkpoint folder
    log_path: Path  # its curves/<label>__seed<s>.csv
    curve_fn: Callable[[Any], float]  # a learning-curve point of its agent


@dataclass
class _Seed:
    cell: SeedCell
    ckpt_dir: Path
    log_path: Path
    env: RankingSB3VecEnv
    agent: Any
    start: int
    training: dict[str, Any] | None
    curve: list[dict[str, float]] = field(default_factory=list)


def _prepare(ctx: Any, index: int, cell: SeedCell, resume: bool) -> _Seed:
    """The seed's agent and env, restored from its newest valid checkpoint (``resume``) or fresh."""
    cfg, out, seed = ctx.cfg, ctx.out, cell.seed
    spec = cfg.agents[index]
    ckpt_dir = path_inside(out / "checkpoints", cell.name)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        ckpt = find_resume_checkpoint(ckpt_dir, ctx.run_hash, ctx.notify)
    else:
        clean_stale_temp_files(ckpt_dir)
        ckpt = None
    if ckpt is not None and ckpt.get("trainer") != "fast":
        ctx.notify(f"resume {ckpt_dir}: the newest checkpoint was not written by trainer 'fast'; training this "
                   "cell from step 0")
        ckpt = None
    start = int(ckpt["step"]) if ckpt else 0
    env = RankingSB3VecEnv(cfg.training.num_envs, world=ctx.world, config=cfg.train_env(index), device=cfg.device,
                           seed=train_env_seed(ctx.seeds.seed("train", seed), start))
    agent = make_agent(spec.name, env, **{**spec.hyperparams, "seed": ctx.agent_seed(seed), "device": cfg.device})
    job = _Seed(cell, ckpt_dir, cell.log_path, env, agent, start, None)
    if ckpt is not None:
        where = ckpt_dir / f"step_{start:010d}.pt"
        try:
            agent.policy.scorer.load_state_dict(ckpt["policy"])
            env.load_state_dict(ckpt["sim"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ValueError(f"{where}: does not fit this cell's agent or training env "
                             f"({' '.join(str(exc).split())[:300]})") from None
        agent.num_timesteps = start
        job.training = {k: ckpt[k] for k in ("optimizer", "rng", "last_done")}
        job.curve = [dict(r) for r in ckpt["curve"] if r["step"] <= start]
    return job


def train_seed_batch(ctx: Any, index: int, cells: list[SeedCell],
                     resume: bool = True) -> dict[int, tuple[Any, list[dict[str, float]]]]:
    """Train the seeds of ``cells`` of agent ``index`` (PPO ``trainer: fast``) as one batched job with
    checkpoints, curves and resume (see the module docstring); each seed gets the agent and env seeds its own
    cell would use. ``ctx``: the run's :class:`~recgym.experiments.cells.RunContext`. Returns ``{seed: (trained
    agent, curve rows)}``.

    Raises:
        NaNLossError: NaN/inf losses or parameters (each seed's last good checkpoint is kept).
        ValueError: a cell of this agent asks for ``reward_fairness``, or a checkpoint does not fit.
    """
    cfg = ctx.cfg
    spec = cfg.agents[index]
    if spec.reward_fairness is not None:
        raise ValueError(f"agents[{index}] ({spec.key}): reward_fairness is not supported by trainer 'fast' (it "
                         "steps the simulator core, not a wrapped env); use trainer: sb3 for this agent")
    budget = cfg.budget(index)
    jobs = [_prepare(ctx, index, c, resume) for c in cells]
    for job in jobs:
        if not job.curve:
            job.curve = [{"step": 0.0, "eval_return": job.cell.curve_fn(job.agent)}]
        write_curve_log(job.log_path, job.curve)
    by_start: dict[int, list[_Seed]] = defaultdict(list)
    for job in jobs:
        by_start[job.start].append(job)
    for start in sorted(by_start):
        group = by_start[start]
        if start < budget:
            _train_group(ctx, group, start, budget)
            ctx.notify(f"{spec.key}: " + (f"seeds {', '.join(str(j.cell.seed) for j in group)} trained as one "
                                          "batched job" if len(group) > 1 else f"seed {group[0].cell.seed} trained")
                       + f" (trainer 'fast', env steps {start} to {budget})")
    return {job.cell.seed: (job.agent, job.curve) for job in jobs}


def _train_group(ctx: Any, group: list[_Seed], start: int, budget: int) -> None:
    """Train the seeds of ``group`` (all at step ``start``) as one batch up to ``budget``, checkpointing."""
    from recgym.agents.ppo_fast import SeedBatch

    cfg = ctx.cfg
    batch = SeedBatch([j.agent for j in group], [j.env for j in group], [j.training for j in group])
    names = ", ".join(j.cell.name for j in group)
    step = start
    label = f"train {names}" + (" (one batched job)" if len(group) > 1 else "")
    with ctx.progress.task(label, budget, unit="env steps") as bar:
        bar.update(min(step, budget))
        while step < budget:
            chunk = min(cfg.training.checkpoint_every, budget - step)
            try:
                batch.learn(chunk, callback=lambda n: bar.update(min(n, budget)))
            except RuntimeError as exc:
                if "nan" in str(exc).lower():
                    raise NaNLossError(f"{names}: {exc}; the last good checkpoints (step {step}) are kept") from exc
                raise
            step = batch.num_timesteps
            for job in group:  # every curve point first, then every checkpoint back to back
                job.curve.append({"step": float(step), "eval_return": job.cell.curve_fn(job.agent),
                                  "train_ep_return": float("nan"), "train_ep_length": float("nan")})
            for s, job in enumerate(group):
                write_curve_log(job.log_path, job.curve)
                training = {"trainer": "fast",
                            "policy": {k: v.detach().cpu() for k, v in job.agent.policy.scorer.state_dict().items()},
                            **batch.training_state(s), "sim": job.env.state_dict()}
                write_checkpoint(job.ckpt_dir, job.agent, training, step, ctx.run_hash, job.curve,
                                 cfg.training.keep_checkpoints)
