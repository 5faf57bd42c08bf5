"""The fast PPO trainer: env core, policy, rollout buffer and update on one device, S seeds at once.

``make_agent("ppo", env, trainer="fast")`` trains the same Plackett-Luce slate policy (the
:class:`~recgym.agents.scorer.CandidateScorer` with a value head) with the same PPO loss and
hyper-parameters (:class:`~recgym.agents.ppo.PPOConfig`) as the SB3 path, without Stable-Baselines3's
per-step numpy round trip: the rollout runs on the simulator core's state (:mod:`recgym.agents._rollout`),
the buffer is device tensors, the cosine features are computed once per step and reused by every epoch.

One trainer serves one seed (S = 1) and S seeds as one batched job (:func:`train_seeds`): the S policies are
one :class:`~recgym.agents._stacked.StackedScorer` (parameters stacked on a leading seed axis), the S envs'
users are the rows of one state. Everything random or seed-dependent is per seed — initial weights (each
agent's own), env streams, the env's feedback table (one per seed, stacked), Gumbel noise (a generator
seeded ``seed + 1``, as the SB3 policy's), minibatch permutations (a generator seeded ``seed``),
advantage normalisation, gradient-norm clipping, the Adam statistics (:class:`StackedAdam`) and the
``target_kl`` early stop — so each seed is a separate PPO run sharing only the arithmetic. Row ``s`` of a
batched job equals the run of seed ``s`` alone up to float reassociation (tested on the first update's gradients).

PPO update (SB3's ``PPO.train``, per seed): for each epoch, a fresh permutation in minibatches of
``min(batch_size, n_steps * B)``; advantages normalised per minibatch (``(a - mean) / (std + 1e-8)``);
``loss = -mean(min(r A, clip(r, 1 +- clip_range) A)) - ent_coef * mean(H) + vf_coef * mse(returns, V)`` with
``H`` the first slot's entropy; with ``target_kl``, a seed whose approximate KL exceeds ``1.5 * target_kl``
stops updating until the next rollout (SB3 stops before the step); gradients clipped to ``max_grad_norm``
(global norm per seed); Adam with ``eps = 1e-5`` (SB3's default for PPO).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from recgym.agents._rollout import Rollout, RolloutCollector, act
from recgym.agents._stacked import StackedScorer
from recgym.agents.scorer import first_slot_entropy, masked_logits, pl_log_prob

__all__ = ["FastPPOTrainer", "SeedBatch", "StackedAdam", "ppo_loss", "clip_grad_norm_per_seed", "native_env",
           "train_seeds", "check_training_state"]


def native_env(env: Any) -> Any:
    """The :class:`~recgym.envs.vector.RankingVectorEnv` under ``env`` (an SB3 adapter, VecMonitor or
    Gymnasium wrappers), reset if it has no state yet."""
    base = env
    for _ in range(16):
        if hasattr(base, "core") and hasattr(base, "_state") and hasattr(base, "num_envs"):
            break
        nxt = getattr(base, "venv", None) or getattr(base, "env", None)
        if nxt is None or nxt is base:
            break
        base = nxt
    if not (hasattr(base, "core") and hasattr(base, "_state")):
        raise TypeError(f"trainer='fast': expected a recgym vector env (RankingSB3VecEnv, RankingVectorEnv or a "
                        f"wrapper of one), received {type(env).__name__}")
    if base.state is None:
        env.reset()
    return base


def ppo_loss(scorer: StackedScorer, batch: Mapping[str, torch.Tensor], clip_range: float, ent_coef: float,
             vf_coef: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SB3's PPO loss per seed: ``loss (S,)`` and stats ``(S,)`` (``policy_loss``, ``value_loss``,
    ``entropy_loss``, ``approx_kl``, ``clip_fraction``) on a minibatch ``(S, mb, ...)`` of :meth:`Rollout.flat`."""
    scores, value = scorer(batch)
    logits = masked_logits(scores, batch["mask"])
    s, mb, n = logits.shape
    slate = batch["slate"]
    log_prob = pl_log_prob(logits.reshape(s * mb, n), slate.reshape(s * mb, -1)).view(s, mb)
    entropy = first_slot_entropy(logits.reshape(s * mb, n)).view(s, mb)
    adv = batch["advantages"]
    if mb > 1:
        adv = (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + 1e-8)
    log_ratio = log_prob - batch["log_prob"]
    ratio = torch.exp(log_ratio)
    policy_loss = -torch.min(adv * ratio, adv * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean(1)
    value_loss = (batch["returns"] - value).pow(2).mean(1)
    entropy_loss = -entropy.mean(1)
    loss = policy_loss + ent_coef * entropy_loss + vf_coef * value_loss
    with torch.no_grad():
        stats = {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
                 "entropy_loss": entropy_loss.detach(),
                 "approx_kl": ((ratio - 1) - log_ratio).mean(1),
                 "clip_fraction": ((ratio - 1).abs() > clip_range).float().mean(1)}
    return loss, stats


@torch.no_grad()
def clip_grad_norm_per_seed(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` for each seed's slice of stacked parameters ``(S, ...)``: seed
    ``s``'s gradients are scaled by ``min(1, max_norm / (norm_s + 1e-6))``. Returns the norms ``(S,)``."""
    grads = [p.grad for p in params if p.grad is not None]
    s = grads[0].shape[0]
    norms = torch.stack([g.reshape(s, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp_(max=1.0)
    for g in grads:
        g.mul_(coef.view(s, *([1] * (g.dim() - 1))))
    return norms


class StackedAdam:
    """Adam (``torch.optim.Adam``'s update, no weight decay) over stacked parameters ``(S, ...)`` with a step
    count per seed and an ``active`` mask: an inactive seed's parameters and moments do not move (its
    ``target_kl`` stop), so every seed is a separate Adam."""

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-5) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        s = self.params[0].shape[0]
        self.step_count = torch.zeros(s, dtype=torch.float64, device=self.params[0].device)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """One update of the seeds in ``active`` ``(S,)`` bool (``None``: all)."""
        b1, b2 = self.betas
        on = None if active is None or bool(active.all()) else active
        self.step_count += 1 if on is None else on.to(self.step_count.dtype)
        bc1 = (1 - b1 ** self.step_count).to(torch.float32)
        bc2_sqrt = (1 - b2 ** self.step_count).sqrt().to(torch.float32)
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            g = p.grad
            if g is None:
                continue
            shape = (-1, *([1] * (p.dim() - 1)))
            if on is None:
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v.sqrt() / bc2_sqrt.view(shape)).add_(self.eps)
                p.addcdiv_(m * (self.lr / bc1).view(shape), denom, value=-1.0)
            else:
                mask = on.view(shape)
                m.copy_(torch.where(mask, torch.lerp(m, g, 1 - b1), m))
                v.copy_(torch.where(mask, v * b2 + (1 - b2) * g * g, v))
                denom = (v.sqrt() / bc2_sqrt.view(shape)).add_(self.eps)
                p.sub_(torch.where(mask, m * (self.lr / bc1.clamp_min(1e-12)).view(shape) / denom, 0.0))

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step_count.clone(), "exp_avg": [m.clone() for m in self.exp_avg],
                "exp_avg_sq": [v.clone() for v in self.exp_avg_sq]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, mine in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq)):
            theirs = state[name]
            if len(theirs) != len(mine) or any(a.shape != b.shape for a, b in zip(mine, theirs, strict=True)):
                raise ValueError(f"optimizer state: field {name!r} does not fit this network's parameters")
            for a, b in zip(mine, theirs, strict=True):
                a.copy_(b)
        self.step_count.copy_(state["step"])


class FastPPOTrainer:
    """PPO for S seeds on one state of ``S * B`` rows (see the module docstring).

    Args:
        core: the simulator core; the trainer runs on its device.
        state: the live state (``S * B`` rows, seed-major), stepped in place.
        scorers: the S initial ``CandidateScorer`` (value head) of the seeds (their weights are copied).
        config: the :class:`~recgym.agents.ppo.PPOConfig` shared by the seeds (its ``seed`` is ignored).
        seeds: the S agent seeds (Gumbel generator ``seed + 1``, permutation generator ``seed``).
    """

    def __init__(self, core: Any, state: Any, scorers: Sequence[torch.nn.Module], config: Any,
                 seeds: Sequence[int]) -> None:
        if len(scorers) != len(seeds):
            raise ValueError(f"FastPPOTrainer: expected one scorer per seed, received {len(scorers)} scorers for "
                             f"{len(seeds)} seeds")
        self.config, self.seeds = config, list(seeds)
        self.device = core.device
        self.scorer = StackedScorer.from_scorers(scorers).to(self.device)
        self.optimizer = StackedAdam(list(self.scorer.parameters()), lr=config.learning_rate)
        self.samplers = [torch.Generator(device=self.device) for _ in seeds]
        self.permuters = [torch.Generator(device=self.device) for _ in seeds]
        for s, seed in enumerate(self.seeds):
            self.samplers[s].manual_seed(seed + 1)
            self.permuters[s].manual_seed(seed)
        self.collector = RolloutCollector(core, state, len(seeds), self.scorer.item_unit, self.samplers)
        self._act, self._loss = act, ppo_loss
        if getattr(config, "compile", False):
            if self.device.type == "cpu" and not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")):
                raise RuntimeError("compile=True: torch.compile needs a C++ compiler at run time on CPU (c++, g++ "
                                   "or clang++ on PATH), found none; install one or set compile=False")
            self._act, self._loss = torch.compile(act), torch.compile(ppo_loss)
        self.num_timesteps = 0  # env steps of one seed (B users each)
        self.timings = {"rollout_s": 0.0, "update_s": 0.0}
        self.last_stats: dict[str, torch.Tensor] = {}

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    @property
    def users(self) -> int:
        return self.collector.users

    def rollout(self) -> Rollout:
        c = self.config
        self.scorer.train(False)
        with torch.no_grad():
            proj = self.scorer.project()
        return self.collector.collect(lambda obs: self._act(self.scorer, obs, proj), c.n_steps, c.gamma, c.gae_lambda)

    def minibatches(self, flat: Mapping[str, torch.Tensor]) -> Any:
        """One epoch of minibatches ``(S, mb, ...)``: a fresh permutation per seed from its generator."""
        s, total = flat["value"].shape
        mb = min(self.config.batch_size, total)
        perm = torch.stack([torch.randperm(total, generator=g, device=self.device) for g in self.permuters])
        offsets = (torch.arange(s, device=self.device) * total).unsqueeze(1)
        rows_all = perm + offsets  # (S, total) rows of the (S * total, ...) view
        for start in range(0, total, mb):
            rows = rows_all[:, start : start + mb].reshape(-1)
            size = rows.numel() // s
            yield {k: v.reshape(s * total, *v.shape[2:]).index_select(0, rows).view(s, size, *v.shape[2:])
                   for k, v in flat.items()}

    def update(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """The PPO epochs on ``rollout``; returns the last minibatch's stats ``(S,)`` per name."""
        c = self.config
        self.scorer.train(True)
        flat = rollout.flat()
        active = torch.ones(self.num_seeds, dtype=torch.bool, device=self.device)
        stats: dict[str, torch.Tensor] = {}
        for _ in range(c.n_epochs):
            for batch in self.minibatches(flat):
                loss, stats = self._loss(self.scorer, batch, c.clip_range, c.ent_coef, c.vf_coef)
                if c.target_kl is not None:
                    active &= stats["approx_kl"] <= 1.5 * c.target_kl
                    if not bool(active.any()):
                        break
                self.optimizer.zero_grad()
                loss.sum().backward()
                stats["grad_norm"] = clip_grad_norm_per_seed(self.optimizer.params, c.max_grad_norm)
                self.optimizer.step(None if c.target_kl is None else active)
                stats["loss"] = loss.detach()
            if not bool(active.any()):
                break
        self.last_stats = stats
        return stats

    def learn(self, total_timesteps: int, callback: Callable[[int], Any] | None = None) -> None:
        """Train until ``total_timesteps`` more env steps per seed (``B`` users x steps, rounded up to whole
        rollouts, as SB3). ``callback(num_timesteps)`` runs after each update; returning ``False`` stops."""
        target = self.num_timesteps + total_timesteps
        while self.num_timesteps < target:
            t0 = time.perf_counter()
            rollout = self.rollout()
            self.num_timesteps += self.config.n_steps * self.users
            t1 = time.perf_counter()
            self.update(rollout)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            t2 = time.perf_counter()
            self.timings["rollout_s"] += t1 - t0
            self.timings["update_s"] += t2 - t1
            losses = torch.stack([v for k, v in self.last_stats.items() if k != "grad_norm"])
            if not bool(torch.isfinite(losses).all()):
                raise RuntimeError(f"trainer='fast': NaN/inf loss at step {self.num_timesteps} "
                                   f"({ {k: v.tolist() for k, v in self.last_stats.items()} }); lower learning_rate")
            if callback is not None and callback(self.num_timesteps) is False:
                break

    # ------------------------------------------------------------------ state
    def scorer_state(self, seed_index: int) -> dict[str, torch.Tensor]:
        return self.scorer.scorer_state(seed_index)

    def training_state(self, seed_index: int = 0) -> dict[str, Any]:
        """Optimiser moments and generator states of seed ``seed_index`` (resume; tensors only)."""
        i = seed_index
        opt = self.optimizer.state_dict()
        return {
            "optimizer": {"step": opt["step"][i : i + 1].cpu(), "exp_avg": [m[i : i + 1].cpu() for m in opt["exp_avg"]],
                          "exp_avg_sq": [v[i : i + 1].cpu() for v in opt["exp_avg_sq"]]},
            "rng": {"sampler": self.samplers[i].get_state(), "permuter": self.permuters[i].get_state()},
            "last_done": self.collector.last_done[i].cpu().clone(),
        }

    def load_training_state(self, state: Mapping[str, Any], seed_index: int = 0) -> None:
        """Restore :meth:`training_state` (of any trainer, one seed) into seed ``seed_index`` of this one; a state
        that does not fit raises ``ValueError`` naming the field (nothing is changed then)."""
        check_training_state(state)
        i = seed_index
        opt = state["optimizer"]
        for name, mine in (("exp_avg", self.optimizer.exp_avg), ("exp_avg_sq", self.optimizer.exp_avg_sq)):
            theirs = opt[name]
            if len(theirs) != len(mine) or any(a[i : i + 1].shape != b.shape for a, b in zip(mine, theirs, strict=True)):
                raise ValueError(f"field 'optimizer.{name}': expected {len(mine)} tensors shaped like this network's "
                                 f"parameters, received {[tuple(t.shape) for t in theirs][:4]}")
        if tuple(state["last_done"].shape) != (self.users,):
            raise ValueError(f"field 'last_done': expected ({self.users},) (one flag per training user), received "
                             f"{tuple(state['last_done'].shape)}")
        for name, mine in (("exp_avg", self.optimizer.exp_avg), ("exp_avg_sq", self.optimizer.exp_avg_sq)):
            for a, b in zip(mine, opt[name], strict=True):
                a[i : i + 1].copy_(b)
        self.optimizer.step_count[i] = opt["step"].reshape(-1)[0].to(self.optimizer.step_count.dtype)
        self.samplers[i].set_state(state["rng"]["sampler"])
        self.permuters[i].set_state(state["rng"]["permuter"])
        self.collector.last_done[i].copy_(state["last_done"])


def check_training_state(state: Any) -> None:
    """Check the fields of :meth:`FastPPOTrainer.training_state` (read from a checkpoint) before any is used:
    ``ValueError`` naming the first malformed field, what it expected and what it received."""
    if not isinstance(state, Mapping):
        raise ValueError(f"expected the fast trainer's state (a dict), received {type(state).__name__}")
    opt = state.get("optimizer")
    if not isinstance(opt, Mapping):
        raise ValueError(f"field 'optimizer': expected a dict, received {type(opt).__name__}")
    step = opt.get("step")
    if not isinstance(step, torch.Tensor) or step.numel() != 1 or not step.dtype.is_floating_point or \
            not bool(step.reshape(-1)[0] >= 0):
        raise ValueError(f"field 'optimizer.step': expected one non-negative float tensor, received {step!r:.80}")
    for name in ("exp_avg", "exp_avg_sq"):
        v = opt.get(name)
        if not isinstance(v, list) or not v or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 and
                                                       t.shape[0] == 1 for t in v):
            raise ValueError(f"field 'optimizer.{name}': expected a list of (1, ...) tensors, received {v!r:.80}")
    rng = state.get("rng")
    if not isinstance(rng, Mapping):
        raise ValueError(f"field 'rng': expected a dict, received {type(rng).__name__}")
    for name in ("sampler", "permuter"):  # CPU or CUDA generator states (their sizes differ): type checked here
        gen = rng.get(name)
        if not isinstance(gen, torch.Tensor) or gen.dtype != torch.uint8 or gen.dim() != 1:
            raise ValueError(f"field 'rng.{name}': expected a uint8 generator state tensor, received {gen!r:.80}")
    done = state.get("last_done")
    if not isinstance(done, torch.Tensor) or done.dim() != 1 or done.dtype != torch.float32:
        raise ValueError(f"field 'last_done': expected a float32 (B,) tensor, received {done!r:.80}")


# ---------------------------------------------------------------------- agents
def _check_env(agent: Any, env: Any) -> Any:
    from recgym.agents.base import EnvSpec, check_compatible

    spec = EnvSpec.from_env(env)
    check_compatible(agent.name, spec.action_type, spec.slate_size)
    if spec.table_hash != agent.spec.table_hash or spec.num_candidates != agent.spec.num_candidates:
        raise ValueError("learn: env item table / num_candidates differ from the ones the agent was built for")
    return native_env(env)


def learn_fast(agent: Any, env: Any, total_timesteps: int, callback: Callable[[int], Any] | None = None) -> Any:
    """:meth:`PPORecommender.learn` with ``trainer="fast"``: train ``agent`` on ``env``'s users for
    ``total_timesteps`` env steps (summed over users, rounded up to whole rollouts). Continuing on the same
    env keeps the optimiser, generators and rollout position; another env (or a re-seeded one) starts a new
    rollout with the same optimiser. ``callback(num_timesteps)`` runs after each update (``False`` stops)."""
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected None or a callable f(num_timesteps) (trainer='fast' has no SB3 "
                        f"callbacks), received {type(callback).__name__}")
    venv = _check_env(agent, env)
    trainer: FastPPOTrainer | None = getattr(agent, "fast_trainer", None)
    if trainer is None:
        trainer = FastPPOTrainer(venv.core, venv.state, [agent.policy.scorer], agent.config, [agent.config.seed])
        agent.fast_trainer = trainer
    elif trainer.collector.state is not venv.state:
        if venv.core.device != trainer.device:
            raise ValueError(f"learn: the env runs on {venv.core.device}, the agent's trainer on {trainer.device}")
        trainer.collector = RolloutCollector(venv.core, venv.state, 1, trainer.scorer.item_unit, trainer.samplers)
    trainer.num_timesteps = agent.num_timesteps
    trainer.learn(total_timesteps, callback)
    agent.policy.scorer.load_state_dict(trainer.scorer_state(0))
    agent.num_timesteps = trainer.num_timesteps
    return agent


def _concat_states(states: Sequence[Any]) -> Any:
    """One state of the S envs' rows, seed-major. Each env's feedback table (shared by its users) stays its own:
    the tables are stacked and every row reads and writes its env's (:mod:`recgym.envs.feedback`); any other
    shared field is refused (the seeds would share it, so they would not be separate runs)."""
    from recgym.envs.feedback import FEEDBACK_FIELD, FEEDBACK_OFFSET_FIELD
    from recgym.envs.state import SimState

    first = states[0]
    if any(st.t != first.t or st.names() != first.names() for st in states):
        raise ValueError("train_seeds: expected env states at the same clock with the same fields")
    batched = {n: torch.cat([getattr(st, n) for st in states]) for n, _ in first.batched()}
    if len(states) == 1:
        return SimState(batched, {n: v.clone() for n, v in first.shared()}, first.t)
    other = [name for name, _ in first.shared() if name != FEEDBACK_FIELD]
    if other or FEEDBACK_OFFSET_FIELD in batched:
        raise ValueError(f"train_seeds: the envs' states have shared fields {other or [FEEDBACK_OFFSET_FIELD]} that "
                         "every user's step updates: in one batched state the seeds would share them, so they would not "
                         "be separate runs; train the seeds one by one (training.batch_seeds: false)")
    shared = {}
    if FEEDBACK_FIELD in first.names():
        tables = [getattr(st, FEEDBACK_FIELD) for st in states]
        m = tables[0].shape[0]
        shared[FEEDBACK_FIELD] = torch.cat(tables)
        sizes = torch.tensor([st.batch_size for st in states], device=first.device)
        batched[FEEDBACK_OFFSET_FIELD] = torch.repeat_interleave(torch.arange(len(states), device=first.device) * m,
                                                                 sizes)
    return SimState(batched, shared, first.t)


class SeedBatch:
    """S PPO agents (same config but ``seed``; each on its own env of the same world, config and ``num_envs``)
    trained as one batched job, in as many :meth:`learn` calls as wanted (the runner checkpoints between
    them). After every call each agent, its ``num_timesteps`` and its env's state are as if it had been
    trained alone by ``learn_fast`` on its env (see the module docstring), and :meth:`training_state` gives
    what a checkpoint needs beyond the agent and the env to resume that seed exactly.

    ``training_states``: one entry per seed, ``None`` or a :meth:`training_state` to resume from (the agents'
    weights, ``num_timesteps`` and the envs' states are restored by the caller before this is built)."""

    def __init__(self, agents: Sequence[Any], envs: Sequence[Any],
                 training_states: Sequence[Mapping[str, Any] | None] | None = None) -> None:
        if not agents or len(agents) != len(envs):
            raise ValueError(f"train_seeds: expected one env per agent, received {len(agents)} agents, {len(envs)} envs")
        base = agents[0].config.model_dump(exclude={"seed"})
        for a in agents[1:]:
            if a.config.model_dump(exclude={"seed"}) != base:
                raise ValueError("train_seeds: expected agents whose configs differ in 'seed' only")
        if len({a.num_timesteps for a in agents}) != 1:
            raise ValueError("train_seeds: expected agents trained for the same number of steps")
        self.agents = list(agents)
        self.venvs = [_check_env(a, e) for a, e in zip(agents, envs, strict=True)]
        core = self.venvs[0].core
        for v in self.venvs[1:]:
            if v.num_envs != self.venvs[0].num_envs or v.core.config != core.config or v.core.world is not core.world:
                raise ValueError("train_seeds: expected envs of one world object, one env config and one num_envs")
        self.state = _concat_states([v.state for v in self.venvs])
        self.trainer = FastPPOTrainer(core, self.state, [a.policy.scorer for a in agents], agents[0].config,
                                      [a.config.seed for a in agents])
        self.trainer.num_timesteps = agents[0].num_timesteps
        for i, st in enumerate(training_states or []):
            if st is not None:
                self.trainer.load_training_state(st, i)

    @property
    def num_timesteps(self) -> int:
        return self.trainer.num_timesteps

    def learn(self, total_timesteps: int, callback: Callable[[int], Any] | None = None) -> None:
        """``total_timesteps`` more env steps per seed (whole rollouts; ``callback`` as
        :meth:`FastPPOTrainer.learn`), then the agents and envs are brought up to date."""
        self.trainer.learn(total_timesteps, callback)
        b = self.trainer.users
        for s, (agent, venv) in enumerate(zip(self.agents, self.venvs, strict=True)):
            own = venv.state
            for name, v in own.batched():
                v.copy_(getattr(self.state, name)[s * b : (s + 1) * b])
            own.t = self.state.t
            for name, v in own.shared():  # the env's own feedback table (rows s * M .. of the stacked ones)
                v.copy_(getattr(self.state, name)[s * v.shape[0] : (s + 1) * v.shape[0]])
            agent.policy.scorer.load_state_dict(self.trainer.scorer_state(s))
            agent.num_timesteps = self.trainer.num_timesteps

    def training_state(self, seed_index: int) -> dict[str, Any]:
        return self.trainer.training_state(seed_index)


def train_seeds(agents: Sequence[Any], envs: Sequence[Any], total_timesteps: int) -> list[Any]:
    """Train S PPO agents as one batched job (:class:`SeedBatch`) for ``total_timesteps`` env steps each; each
    agent ends as if trained alone by ``learn_fast`` on its env. The envs' states move on as in separate runs."""
    SeedBatch(agents, envs).learn(total_timesteps)
    return list(agents)
