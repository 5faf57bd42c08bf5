"""SlateQ (Ie et al., IJCAI 2019): slate values decomposed into item-wise long-term values and a learned
conditional choice model.

Model. Two :class:`~recgym.agents.scorer.CandidateScorer` s with value heads (shared architecture, separate
weights), both permutation-equivariant over candidates and reading the env's public item features:

* the Q-network: per-candidate head ``Q(s, i)`` ``(B, N)``, the long-term value of the user *consuming*
  item ``i`` in state ``s``; value head ``Q(s, ⊥)`` ``(B,)``, the value of no click (the null item);
* the choice model: per-candidate head ``u(s, i)`` ``(B, N)`` and value head ``u(s, ⊥)`` ``(B,)``, the
  utilities of a multinomial logit with a null item, ``P(i | s, A) = e^{u(s,i)} / (e^{u(s,⊥)} + sum_{j in A}
  e^{u(s,j)})``, fitted by maximum likelihood to the *observed* clicks of the replay buffer (``info["clicks"]``;
  the env's hidden ``click_probs`` are never read).

The slate value is the paper's decomposition ``Q(s, A) = sum_{i in A ∪ {⊥}} P(i | s, A) Q(s, i)``.

Learning (:class:`SlateQConfig`). For a stored transition ``(s, A, c, r, s', A')`` with clicked item ``c``
(``c = ⊥`` for no click): ``Q(s, c) <- r + gamma * sum_{j in A'' ∪ {⊥}} P(j | s', A'') Q_target(s', j)``, with a
Huber loss, a target network and a replay buffer; ``A''`` is

* ``td_rule="q_learning"`` (default): the slate the optimiser picks at ``s'`` under ``Q_target`` (the
  paper's Q-learning variant; it learns the optimal policy's values);
* ``td_rule="sarsa"``: the slate ``A'`` actually shown at ``s'`` (the paper's SARSA variant, the values of
  the behaviour policy); at a time-limit truncation ``s'`` had no slate and the optimiser's is used.

At ``terminated`` (the user left) there is no bootstrap. The choice model's negative log-likelihood is
added to the loss (``choice_loss_coef``); both networks share one Adam optimizer.

Slates (:meth:`SlateQRecommender.rank` and acting): ``slate_optimizer="greedy"`` (default; the paper's
greedy rule), ``"topk"`` (the paper's top-K rule, by ``e^{u(s,i)} Q(s,i)``) or ``"exact"`` (Dinkelbach's
method on the linear-fractional problem, the optimum the paper computes by LP); see
:mod:`recgym.agents._slateq_math`. Exploration: epsilon-greedy over slates (a uniformly random ordered
slate of unmasked candidates), epsilon decaying linearly over ``exploration_steps`` env steps.

Assumptions (the paper's): at most one click per slate (single choice) - a multi-click env (the
position-based model, ``choice: {model: pbm}``) is refused; reward and transition depend on the clicked item
only. The learned choice model ignores positions (as the paper's), so on a cascade env it is misspecified.

Training env: ``action_type="slate"`` (any K >= 1), a :class:`~recgym.envs.vector.RankingVectorEnv` (fastest)
or the SB3 adapter (what the experiments runner passes); see :mod:`recgym.agents._slateq_learner`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from recgym.agents._sb3 import obs_to_torch, seeded_init
from recgym.agents._slateq_learner import SlateQLearner, steppable_env
from recgym.agents._slateq_math import (
    choice_nll,
    optimise_slates,
    random_slates,
    slate_value,
    td_targets,
)
from recgym.agents.base import (
    AgentConfig,
    EnvSpec,
    IncompatibleEnvError,
    TrainableRecommender,
    register,
)
from recgym.agents.scorer import COS_KEY, CandidateScorer, cosine_features
from recgym.common.config import ConfigError

__all__ = ["SlateQConfig", "SlateQNetworks", "SlateQRecommender"]


class SlateQConfig(AgentConfig):
    """SlateQ hyper-parameters. Step counts are env steps summed over users (as SB3's), except
    ``train_freq`` (vector steps between updates)."""

    hidden: int = Field(32, ge=4, le=4096, description="per-candidate width h of both scorers")
    learning_rate: float = Field(1e-3, gt=0, le=1)
    buffer_size: int = Field(50_000, ge=100, description="replay capacity in transitions")
    learning_starts: int = Field(1_000, ge=0, description="env steps before the first update")
    batch_size: int = Field(256, ge=1)
    gamma: float = Field(0.95, ge=0, le=1)
    train_freq: int = Field(1, ge=1, description="vector steps between updates")
    gradient_steps: int = Field(2, ge=1, description="updates per train_freq")
    target_update_interval: int = Field(1_000, ge=1, description="env steps between target-network updates")
    tau: float = Field(1.0, gt=0, le=1, description="target update rate (1: hard copy)")
    exploration_steps: int = Field(20_000, ge=0, description="env steps over which epsilon decays linearly")
    exploration_initial_eps: float = Field(1.0, ge=0, le=1)
    exploration_final_eps: float = Field(0.05, ge=0, le=1)
    max_grad_norm: float = Field(10.0, gt=0, description="gradient-norm clip, per network")
    td_rule: Literal["q_learning", "sarsa"] = Field("q_learning", description="next slate of the TD target")
    slate_optimizer: Literal["greedy", "topk", "exact"] = Field("greedy", description="slate optimisation rule")
    choice_loss_coef: float = Field(1.0, gt=0, description="weight of the choice model's NLL in the loss")

    @model_validator(mode="after")
    def _batch_fits(self) -> SlateQConfig:
        if self.batch_size > self.buffer_size:
            raise ConfigError(
                f"agent.batch_size: expected <= buffer_size ({self.buffer_size}), received {self.batch_size}"
            )
        return self


class SlateQNetworks(nn.Module):
    """The Q-network, its target copy and the choice model, with one Adam ``optimizer`` over the trainable
    two (``q_target`` is updated by copying). ``spec``: the env's :class:`EnvSpec`."""

    def __init__(self, spec: EnvSpec, config: SlateQConfig) -> None:
        super().__init__()

        def scorer() -> CandidateScorer:
            # The env's context length and feedback width (returning users, the feedback table) included.
            return CandidateScorer(spec.item_embeddings, hidden=config.hidden, value_head=True, **spec.scorer_kwargs())

        self.q = scorer()
        self.choice = scorer()
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer = torch.optim.Adam([*self.q.parameters(), *self.choice.parameters()], lr=config.learning_rate)

    def values(self, obs: Mapping[str, torch.Tensor], target: bool = False) -> tuple[torch.Tensor, ...]:
        """``(u (B, N), u0 (B,), q (B, N), q0 (B,))``: choice utilities of the candidates and of no click,
        item-wise values of the candidates and of no click (``target``: from ``q_target``).

        ``obs``: batched observation tensors (``profile``/``history`` ``(B, d)``, ``context`` ``(B, 4)``,
        ``candidates`` ``(B, N)`` int, ``mask`` ``(B, N)``)."""
        if COS_KEY not in obs:  # the cosine features are shared by both scorers: compute them once
            unit = self.q.item_unit
            obs = {**obs, COS_KEY: cosine_features(unit, obs["profile"], obs["history"], obs["candidates"])}
        u, u0 = self.choice(obs)
        q, q0 = (self.q_target if target else self.q)(obs)
        return u, u0, q, q0

    def losses(self, batch: Mapping[str, torch.Tensor], *, gamma: float, td_rule: str,
               slate_optimizer: str) -> dict[str, torch.Tensor]:
        """``td_loss`` (Huber), ``choice_nll`` (mean MNL negative log-likelihood) and ``q_mean`` of a replay
        batch (keys of :mod:`recgym.agents._slateq_buffer`)."""
        obs = {k[4:]: v for k, v in batch.items() if k.startswith("obs/")}
        nxt = {k[9:]: v for k, v in batch.items() if k.startswith("next_obs/")}
        slate, click = batch["slate"], batch["click"]
        k = slate.shape[1]
        u, u0, q, q0 = self.values(obs)
        q_slate = q.gather(1, slate)
        chosen = torch.where(click < k, q_slate.gather(1, click.clamp(max=k - 1).unsqueeze(1)).squeeze(1), q0)
        nll = choice_nll(u.gather(1, slate), u0, click).mean()
        with torch.no_grad():
            target = self.td_target(nxt, batch, gamma=gamma, td_rule=td_rule, slate_optimizer=slate_optimizer)
        td = nn.functional.smooth_l1_loss(chosen, target)
        return {"td_loss": td, "choice_nll": nll, "q_mean": chosen.detach().mean()}

    def update(self, batch: Mapping[str, torch.Tensor], config: SlateQConfig) -> dict[str, float]:
        """One gradient step on a replay batch: ``td_loss + choice_loss_coef * choice_nll``, gradients clipped
        per network to ``max_grad_norm``. Returns the batch's losses as floats. ``q_target`` is untouched."""
        losses = self.losses(batch, gamma=config.gamma, td_rule=config.td_rule, slate_optimizer=config.slate_optimizer)
        loss = losses["td_loss"] + config.choice_loss_coef * losses["choice_nll"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for module in (self.q, self.choice):
            nn.utils.clip_grad_norm_(module.parameters(), config.max_grad_norm)
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def sync_target(self, tau: float = 1.0) -> None:
        """``q_target <- tau * q + (1 - tau) * q_target`` (``tau = 1``: copy)."""
        with torch.no_grad():
            for p, t in zip(self.q.parameters(), self.q_target.parameters(), strict=True):
                t.mul_(1.0 - tau).add_(p, alpha=tau)

    @torch.no_grad()
    def td_target(self, nxt: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor], *, gamma: float,
                  td_rule: str, slate_optimizer: str) -> torch.Tensor:
        """``(B,)`` TD targets ``r + gamma * bootstrap * sum_{j in A'' ∪ {⊥}} P(j | s', A'') Q_target(s', j)``
        for the next observations ``nxt`` (see the module docstring for ``A''``)."""
        k = batch["slate"].shape[1]
        bootstrap = batch["bootstrap"]
        u, u0, q, q0 = self.values(nxt, target=True)
        # rows without bootstrap need no slate: let them pass the availability check whatever their mask
        mask = (nxt["mask"] > 0) | ~bootstrap.unsqueeze(1)
        nxt_slate = optimise_slates(u, q, u0, q0, mask, k, slate_optimizer)
        if td_rule == "sarsa":
            nxt_slate = torch.where(batch["has_next_slate"].unsqueeze(1), batch["next_slate"], nxt_slate)
        return td_targets(batch["reward"], bootstrap, gamma, u.gather(1, nxt_slate), q.gather(1, nxt_slate), u0, q0)

    @torch.no_grad()
    def slate_values(self, obs: Mapping[str, torch.Tensor], slate: torch.Tensor) -> torch.Tensor:
        """``(B,)`` decomposed value ``Q(s, A)`` of ``slate`` ``(B, K)`` under the online network."""
        u, u0, q, q0 = self.values(obs)
        return slate_value(u.gather(1, slate), q.gather(1, slate), u0, q0)


def topk_key(u: torch.Tensor, u0: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` ``e^{u(s,i) - u(s,⊥)} Q(s, i)`` (the paper's top-K ranking key) from ``u``, ``q`` ``(B, N)`` and
    ``u0`` ``(B,)``; the exponent is clamped to +-60 so a wild utility cannot overflow."""
    return torch.exp((u - u0.unsqueeze(1)).clamp(-60.0, 60.0)) * q


class _TopKKey(nn.Module):
    """SlateQ's top-K key with a candidate scorer's forward signature (for explanations); keeps the networks'
    train/eval mode as found."""

    def __init__(self, networks: SlateQNetworks) -> None:
        super().__init__()
        self.networks = networks
        self.train(networks.training)

    def forward(self, obs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, None]:
        u, u0, q, _ = self.networks.values(obs)
        return topk_key(u, u0, q), None


@register
class SlateQRecommender(TrainableRecommender):
    """SlateQ over candidates (see the module docstring). Train with :meth:`learn` on ``action_type="slate"``;
    :meth:`rank` builds slates of any ``k`` with the configured slate optimiser.

    Training surface (what the experiments runner calls; the contract of env-trained agents): ``learn``,
    ``num_timesteps``, ``model`` (the :class:`~recgym.agents._slateq_learner.SlateQLearner`, with ``policy``,
    ``policy.optimizer``, ``logger``, ``ep_info_buffer``), :meth:`check_train_env`, :meth:`sync_from_model`,
    :meth:`training_state` / :meth:`load_training_state`."""

    name: ClassVar[str] = "slateq"
    Config: ClassVar[type[AgentConfig]] = SlateQConfig
    train_action_types: ClassVar[tuple[str, ...]] = ("slate",)
    compatible_hint: ClassVar[str] = (
        "SlateQ builds whole slates itself (slate optimisation over item-wise values and a learned choice "
        "model): build the training env with action_type='slate' (any slate_size >= 1, also 1); a trained "
        "SlateQ agent still ranks any env of the same world through rank(obs, k)."
    )
    config: SlateQConfig

    def __init__(self, spec: EnvSpec, config: AgentConfig | None = None) -> None:
        super().__init__(spec, config)
        c = self.config
        with seeded_init(c.seed):
            self.policy = SlateQNetworks(spec, c).to(self.device)
        self.policy.eval()
        seeds = np.random.SeedSequence([c.seed, 0x51A7E]).generate_state(2)
        # CPU generators: reproducible on every device (draws are moved to the agent's device)
        self.explore_generator = torch.Generator().manual_seed(int(seeds[0]))
        self.replay_generator = torch.Generator().manual_seed(int(seeds[1]))
        self.model: SlateQLearner | None = None
        self.num_timesteps = 0

    # ------------------------------------------------------------------ training
    def learn(self, env: Any, total_timesteps: int, callback: Any = None, progress_bar: bool = False) -> SlateQRecommender:
        """Train (or continue) for ``total_timesteps`` env steps (summed over users) on ``env``: a
        :class:`~recgym.envs.vector.RankingVectorEnv` (reset with the agent's seed at the first call), a
        Gymnasium vector wrapper of one, or an SB3 ``VecEnv`` over :class:`~recgym.envs.sb3.RankingSB3VecEnv`
        (reset through SB3, then stepped underneath; see :mod:`recgym.agents._slateq_learner`).
        ``callback``: an SB3 ``BaseCallback`` (or a list / callable). Checked before anything is built."""
        self.check_train_env(env)
        if self.model is None or self.model.env is not env:
            self.model = SlateQLearner(self, env)
        self.model.learn(int(total_timesteps), callback=callback, progress_bar=progress_bar)
        self.sync_from_model()
        return self

    def check_train_env(self, env: Any) -> EnvSpec:
        """The learn prologue: ``env``'s spec, after checking it can train this agent - slate actions, the
        agent's item table and candidate count, a steppable env type and a single-choice click model."""
        spec = super().check_train_env(env)
        venv, _ = steppable_env(env)
        choice = getattr(getattr(venv.unwrapped, "core", None), "choice", None)
        if getattr(choice, "multi_click", False):
            raise IncompatibleEnvError(
                f"agent 'slateq' assumes at most one click per slate (single choice), but the env's choice model "
                f"{type(choice).__name__} allows several; set env.choice.model to 'mnl' or 'cascade'"
            )
        return spec

    def sync_from_model(self) -> None:
        """Adopt the learner's step count (the networks are shared with it: nothing else to copy)."""
        if self.model is not None:
            self.num_timesteps = int(self.model.num_timesteps)

    @torch.no_grad()
    def _act(self, obs: Mapping[str, torch.Tensor], k: int, epsilon: float) -> torch.Tensor:
        """``(B, k)`` int64 slates for acting: the optimiser's, replaced by a random slate with prob.
        ``epsilon`` per user (draws from ``explore_generator``, every step, so runs are reproducible)."""
        slate = self._optimal(obs, k)
        mask = obs["mask"] > 0
        explore = (torch.rand(slate.shape[0], generator=self.explore_generator) < epsilon).to(slate.device)
        rnd = random_slates(mask, k, self.explore_generator)
        return torch.where(explore.unsqueeze(1), rnd, slate)

    def _optimal(self, obs: Mapping[str, torch.Tensor], k: int) -> torch.Tensor:
        u, u0, q, q0 = self.policy.values(obs)
        return optimise_slates(u, q, u0, q0, obs["mask"] > 0, k, self.config.slate_optimizer)

    # ------------------------------------------------------------------ ranking
    @torch.no_grad()
    def rank(self, obs: Mapping[str, Any], k: int | None = None) -> np.ndarray:
        """``(B, k)`` int64 distinct unmasked candidate positions from the configured slate optimiser, best
        first (``k`` defaults to the env's slate size; a single-env observation gives ``(1, k)``)."""
        batch, k = self._rank_input(obs, k)
        return self._optimal(obs_to_torch(batch, self.device), k).cpu().numpy()

    @torch.no_grad()
    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """``(B, N)`` float64 top-K key ``(v(s, i) / v(s, ⊥)) * Q(s, i)`` of each candidate (what the ``topk``
        optimiser ranks by; ``rank`` uses the configured optimiser)."""
        u, u0, q, _ = self.policy.values(obs_to_torch(obs, self.device))
        return topk_key(u.double(), u0.double(), q.double()).cpu().numpy()

    def explain_scorer(self) -> nn.Module:
        """The module :meth:`explain` differentiates (the scorer hook of :mod:`recgym.agents.explain`): its
        forward maps an observation batch to ``((B, N) top-K key of :meth:`score`, None)``, so an
        explanation says which history items and profile aspects raised an item's appeal times its value."""
        return _TopKKey(self.policy)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, Any]:
        """Everything training needs to continue: the three networks, the optimizer, both generators and the
        step count (tensors and plain values: loadable with ``weights_only=True``). Not the replay buffer."""
        return {
            "networks": {k: v.detach().cpu() for k, v in self.policy.state_dict().items()},
            "optimizer": self.policy.optimizer.state_dict(),
            "explore_generator": self.explore_generator.get_state(),
            "replay_generator": self.replay_generator.get_state(),
            "num_timesteps": self.num_timesteps,
        }

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self.policy.load_state_dict(state["networks"])
        self.policy.optimizer.load_state_dict(state["optimizer"])
        self.explore_generator.set_state(state["explore_generator"])
        self.replay_generator.set_state(state["replay_generator"])
        self.num_timesteps = int(state["num_timesteps"])
        if self.model is not None:
            self.model.num_timesteps = self.num_timesteps

    def training_state(self) -> dict[str, Any]:
        """The training section of a runner checkpoint (the ``TrainableRecommender`` contract): ``policy`` (the
        three networks), ``optimizer`` and ``rng`` (``agent``: numpy PCG64 state; ``torch``: the global CPU
        generator; ``slateq_explore`` / ``slateq_replay``: the exploration and replay-sampling generators).
        Tensors and plain data only (``torch.load(weights_only=True)`` reads it). Not the replay buffer: a
        resumed run refills it, so it continues from the same networks and RNG streams but not bit-identically."""
        return {
            "policy": {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items()},
            "optimizer": copy.deepcopy(self.policy.optimizer.state_dict()),
            "rng": {"agent": self.rng.bit_generator.state, "torch": torch.get_rng_state(),
                    "slateq_explore": self.explore_generator.get_state(),
                    "slateq_replay": self.replay_generator.get_state()},
        }

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`training_state`. All or nothing: on a mismatch (``KeyError`` / ``RuntimeError`` /
        ``ValueError`` / ``TypeError``, naming the field) the agent is left as it was."""
        before = self.training_state()
        try:
            self._load_training_state(state)
        except Exception:
            self._load_training_state(before)
            raise
        self.sync_from_model()

    def _load_training_state(self, state: Mapping[str, Any]) -> None:
        for key in ("policy", "optimizer", "rng"):
            if key not in state:
                raise KeyError(f"training state: expected field {key!r}, received fields {sorted(state)}")
        rng = state["rng"]
        for key in ("agent", "torch", "slateq_explore", "slateq_replay"):
            if key not in rng:
                raise KeyError(f"training state: expected field 'rng.{key}', received fields {sorted(rng)}")
        self.policy.load_state_dict(state["policy"])
        self.policy.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = rng["agent"]
        torch.set_rng_state(rng["torch"])
        self.explore_generator.set_state(rng["slateq_explore"])
        self.replay_generator.set_state(rng["slateq_replay"])
