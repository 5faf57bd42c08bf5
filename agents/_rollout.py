"""On-device rollouts of the fast PPO trainer: S seeds x B users stepped through one simulator core.

The env is the simulator core itself (:class:`~recgym.envs.core.RankingCore` over a
:class:`~recgym.envs.state.SimState`): no Gymnasium shell, no numpy, no per-step host copies. The S seeds'
users are the rows of one state, seed-major (rows ``s * B .. (s + 1) * B - 1`` belong to seed ``s``), so one
core step serves every seed; each seed's rows keep their own random streams (built from the seed's own
env state), so a seed's env trajectory is the one it would have alone, given the same actions.

Semantics follow SB3's ``OnPolicyAlgorithm.collect_rollouts`` + ``RolloutBuffer`` (as :class:`SlatePPO`):

* a finished user's row is reset inside the step that ends it (SB3's same-step autoreset); the stored
  ``episode_start`` of step t is "the row's previous step ended an episode";
* a time-limit truncation is bootstrapped: ``reward += gamma * V(final observation)`` (SB3 does the same
  with ``infos[i]["terminal_observation"]``), a user leaving is a true terminal;
* GAE(lambda) over the rollout with the value of the observation after the last step (:func:`gae`).

Buffer layout: every tensor is ``(T, S, B, ...)`` on the core's device; :meth:`Rollout.flat` gives the
``(S, T * B, ...)`` view the update samples minibatches from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from recgym.agents.scorer import COS_KEY, cosine_features, masked_logits, pl_log_prob

__all__ = ["Rollout", "RolloutCollector", "CosineCache", "gae", "gumbel_top_k", "OBS_FIELDS"]

OBS_FIELDS = ("profile", "history", "context", "candidates", "mask", COS_KEY)

ValueFn = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Rollout:
    """``(T, S, B, ...)`` device tensors of one rollout. ``obs``: :data:`OBS_FIELDS`; ``slate`` int64
    ``(T, S, B, K)`` candidate positions; the rest float32 ``(T, S, B)``."""

    obs: dict[str, torch.Tensor]
    slate: torch.Tensor
    log_prob: torch.Tensor
    value: torch.Tensor
    reward: torch.Tensor
    episode_start: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    def flat(self) -> dict[str, torch.Tensor]:
        """Every field as ``(S, T * B, ...)`` (contiguous copies, sample index ``t * B + b``)."""
        def f(x: torch.Tensor) -> torch.Tensor:
            t, s, b = x.shape[:3]
            return x.transpose(0, 1).reshape(s, t * b, *x.shape[3:])

        out = {k: f(v) for k, v in self.obs.items()}
        out.update(slate=f(self.slate), log_prob=f(self.log_prob), value=f(self.value),
                   advantages=f(self.advantages), returns=f(self.returns))
        return out


class CosineCache:
    """The cosine features ``(R, N, 2)`` of a step (:func:`~recgym.agents.scorer.cosine_features`), cheaper.

    Why: the ``(2R, d) x (d, M)`` product is the largest cost of a CPU rollout step. The profile half needs no
    product per step: a user's profile is the world's ``user_emb`` row (the core copies it at reset and never
    changes it), so ``cos(profile, item)`` is read from a ``(U, M)`` table computed once, when it holds at most
    ``max_entries`` values. Each step checks that the observed profiles are those rows (``torch.equal``; a
    user-written component that rewrites ``state.profile`` falls back to the full product), so the features
    equal :func:`cosine_features`'s up to float summation order.
    """

    def __init__(self, core, item_unit: torch.Tensor, max_entries: int = 1 << 25) -> None:  # noqa: ANN001
        self.item_unit = item_unit
        self.user_emb = core.params.user_emb
        num_users, num_items = self.user_emb.shape[0], item_unit.shape[0]
        self.table: torch.Tensor | None = None
        if num_users * num_items <= max_entries:
            unit_users = torch.nn.functional.normalize(self.user_emb.to(torch.float32), dim=1)
            self.table = torch.cat([u @ item_unit.T for u in unit_users.split(4096)]).reshape(-1)  # (U * M,)

    def __call__(self, state, obs: dict[str, torch.Tensor]) -> torch.Tensor:  # noqa: ANN001 - SimState
        profile, history, cand = obs["profile"], obs["history"], obs["candidates"]
        if self.table is None or not torch.equal(profile, self.user_emb.index_select(0, state.user)):
            return cosine_features(self.item_unit, profile, history, cand)
        m = self.item_unit.shape[0]
        cos_p = self.table.index_select(0, (state.user.unsqueeze(1) * m + cand).reshape(-1)).view(cand.shape)
        q = torch.nn.functional.normalize(history.to(torch.float32), dim=1)
        cos_h = torch.matmul(q, self.item_unit.T).gather(1, cand)
        return torch.stack([cos_p, cos_h], dim=2)


def gumbel_top_k(logits: torch.Tensor, k: int, generators: list[torch.Generator]) -> torch.Tensor:
    """Plackett-Luce slates ``(S, B, k)`` int64 for ``logits`` ``(S, B, N)`` (``-inf`` = masked): Gumbel top-k
    with seed ``s``'s noise from ``generators[s]`` — the same draws as :func:`~recgym.agents.scorer.pl_sample`
    with that generator on ``(B, N)``."""
    u = torch.empty_like(logits)
    for s, gen in enumerate(generators):
        u[s].uniform_(generator=gen)
    u.clamp_(1e-12, 1.0 - 1e-7).log_().neg_().log_().neg_()
    return torch.topk(logits + u, k, dim=2, sorted=True).indices


@torch.no_grad()
def gae(reward: torch.Tensor, value: torch.Tensor, episode_start: torch.Tensor, last_value: torch.Tensor,
        last_done: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(advantages, returns)`` ``(T, ...)`` by GAE(lambda), as SB3's ``compute_returns_and_advantage``:
    ``reward``/``value``/``episode_start`` ``(T, ...)``, ``last_value``/``last_done`` ``(...)`` after the last
    step (float32)."""
    adv = torch.empty_like(reward)
    last = torch.zeros_like(last_value)
    steps = reward.shape[0]
    for t in reversed(range(steps)):
        if t == steps - 1:
            nonterminal, next_value = 1.0 - last_done, last_value
        else:
            nonterminal, next_value = 1.0 - episode_start[t + 1], value[t + 1]
        delta = reward[t] + gamma * next_value * nonterminal - value[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv, adv + value


class RolloutCollector:
    """Steps ``core`` on ``state`` (``S * B`` rows, seed-major) with a policy, filling a :class:`Rollout`.

    Args:
        core: the simulator core (its device is the trainer's).
        state: the live state, updated in place (it is the env's state: training moves the env on).
        num_seeds: S.
        item_unit: ``(M, d)`` unit-norm item table (cosine features).
        samplers: S ``torch.Generator`` on the core's device (Gumbel noise of each seed).
    """

    def __init__(self, core, state, num_seeds: int, item_unit: torch.Tensor,  # noqa: ANN001 - RankingCore, SimState
                 samplers: list[torch.Generator]) -> None:
        if state.batch_size % num_seeds:
            raise ValueError(f"RolloutCollector: expected S * B rows for S = {num_seeds}, received {state.batch_size}")
        self.core, self.state, self.num_seeds = core, state, num_seeds
        self.users = state.batch_size // num_seeds
        self.cosines = CosineCache(core, item_unit)
        self.samplers = samplers
        self.slate_size = int(core.config.slate_size)
        # SB3 starts with every row at an episode start (after reset).
        self.last_done = torch.ones(num_seeds, self.users, device=core.device)

    def observe(self) -> dict[str, torch.Tensor]:
        """The current observation as ``(S, B, ...)`` views (aliases of the state: copy before stepping),
        with the cosine features."""
        obs = self.core.observe(self.state, copy=False)
        obs[COS_KEY] = self.cosines(self.state, obs)
        s, b = self.num_seeds, self.users
        return {k: v.view(s, b, *v.shape[1:]) for k, v in obs.items()}

    @torch.no_grad()
    def collect(self, policy: ValueFn, n_steps: int, gamma: float, lam: float) -> Rollout:
        """Run ``n_steps`` steps of every row. ``policy(obs) -> (masked logits (S, B, N), value (S, B))``."""
        s, b, k = self.num_seeds, self.users, self.slate_size
        dev = self.core.device
        obs = self.observe()
        buf = {key: torch.empty((n_steps, *v.shape), dtype=v.dtype, device=dev) for key, v in obs.items()}
        slate_buf = torch.empty((n_steps, s, b, k), dtype=torch.int64, device=dev)
        scalars = {name: torch.empty((n_steps, s, b), device=dev)
                   for name in ("log_prob", "value", "reward", "episode_start")}
        for t in range(n_steps):
            for key, v in obs.items():
                buf[key][t].copy_(v)
            cur = {key: v[t] for key, v in buf.items()}
            logits, value = policy(cur)
            slate = gumbel_top_k(logits, k, self.samplers)
            scalars["log_prob"][t] = pl_log_prob(logits.view(s * b, -1), slate.view(s * b, k)).view(s, b)
            scalars["value"][t] = value
            scalars["episode_start"][t] = self.last_done
            slate_buf[t] = slate
            reward, terminated, truncated, _ = self.core.step(self.state, slate.view(s * b, k))
            done = terminated | truncated
            if bool(truncated.any()):  # bootstrap time-limit ends with V(final observation), before the reset
                _, v_final = policy(self.observe())
                reward = reward + gamma * v_final.reshape(-1) * truncated.to(reward.dtype)
            rows = done.nonzero().squeeze(1)
            if len(rows):
                self.core.reset_rows(self.state, rows)
            scalars["reward"][t] = reward.view(s, b)
            self.last_done = done.view(s, b).to(torch.float32)
            obs = self.observe()
        _, last_value = policy(obs)
        adv, ret = gae(scalars["reward"], scalars["value"], scalars["episode_start"], last_value, self.last_done,
                       gamma, lam)
        return Rollout(buf, slate_buf, scalars["log_prob"], scalars["value"], scalars["reward"],
                       scalars["episode_start"], adv, ret)


def act(scorer, obs: dict[str, torch.Tensor], proj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    """``(masked logits (S, B, N), value (S, B))`` of a :class:`~recgym.agents._stacked.StackedScorer` with the
    item projection ``proj`` (fixed during a rollout)."""
    scores, value = scorer(obs, proj)
    return masked_logits(scores, obs["mask"]), value
