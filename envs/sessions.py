"""Returning users: an episode of several sessions with a return model between them.

:class:`MultiSessionDynamics` wraps a within-session :class:`~recgym.envs.dynamics.UserDynamics` (default
:class:`~recgym.envs.dynamics.SessionDynamics`) and turns "the user leaves" into "the session ends":

* **session end**: the inner dynamics' ``leaving`` (default: the time budget ran out) or
  ``sessions.session_steps`` slates in the session (the user closes the app);
* **return model** (KuaiSim-style retention, in continuous days): the gap to the next session is
  ``Exponential(rate)`` with ``rate = base_rate * exp(satisfaction_weight * s - disappointment_weight * D)``,
  where ``s`` is the session's mean satisfaction per slate and ``D`` the accumulated disappointment (the sum of
  every slate's negative satisfaction, decaying by ``disappointment_decay`` per day). So a satisfied user
  returns sooner — ``E[gap | return]`` falls and ``P(return)`` rises with ``s`` — and one who clicked on
  clickbait returns later or not at all. ``P(return) = 1 - exp(-rate * horizon_days)``;
* **churn**: no return within ``horizon_days`` ends the episode (``terminated``). The return after the
  ``count``-th session ends it too, as a time limit (``truncated``: the user would come back);
* **across the gap**: a new session starts with a fresh time budget; genre fatigue decays by
  ``fatigue_recovery ** gap``; the interest reverts toward the user's long-run taste (their population latent)
  by ``1 - exp(-interest_reversion * gap)`` and takes a random-walk step of ``interest_noise * sqrt(gap)``
  (norm kept); item fatigue keeps its per-slate decay (a consumed item stays consumed).

Random numbers: the return gap and the interest noise of a row come from the row's current event (the step's
stream word, :mod:`recgym.envs.rng`) at draw indices ``SESSION_DRAWS + j``, far above every index the core
uses, so adding sessions never changes the core's draws and forks with common random numbers see the same
returns.

Signals: :meth:`MultiSessionDynamics.update` returns ``{"session_end", "returned", "return_gap",
"return_prob", "session_index"}`` ``(B,)`` tensors; the core adds ``reward.weights.retention`` times
``returned`` (or ``return_prob``) to the reward and puts the signals in the step's info. The observation's
context gains :data:`SESSION_CONTEXT` (``session_index / count``, ``days since the last session /
horizon_days`` (0 in the first session, capped at 1), ``slates in this session / session_steps``).
"""

from __future__ import annotations

import math

import torch

from recgym.envs import rng
from recgym.envs.config import SessionsConfig
from recgym.envs.dynamics import UserDynamics
from recgym.envs.params import SlateView, WorldTensors
from recgym.envs.response import Responses
from recgym.envs.state import SimState

__all__ = ["MultiSessionDynamics", "SESSION_CONTEXT", "SESSION_DRAWS", "return_probability", "expected_gap"]

SESSION_CONTEXT = ("session_fraction", "days_since_last_session", "session_step_fraction")
SESSION_DRAWS = 1 << 20  # first draw index of the session component within a step's event
_GOLDEN32 = 0x9E3779B9 - (1 << 32)


def return_rate(config: SessionsConfig, mean_satisfaction: torch.Tensor, disappointment: torch.Tensor) -> torch.Tensor:
    """``(B,)`` returns per day of the return model (see the module docstring)."""
    c = config
    log_rate = mean_satisfaction * c.satisfaction_weight - disappointment * c.disappointment_weight
    return torch.exp(log_rate.clamp(-30.0, 30.0)).mul_(c.base_rate)


def return_probability(config: SessionsConfig, mean_satisfaction: torch.Tensor,
                       disappointment: torch.Tensor) -> torch.Tensor:
    """``(B,)`` probability of returning within ``horizon_days``: ``1 - exp(-rate * horizon)``."""
    rate = return_rate(config, mean_satisfaction, disappointment)
    return -torch.expm1(-rate * config.horizon_days)


def expected_gap(config: SessionsConfig, mean_satisfaction: torch.Tensor, disappointment: torch.Tensor) -> torch.Tensor:
    """``(B,)`` expected days to the next session given a return: the mean of ``Exponential(rate)`` truncated
    at ``horizon_days``, ``1/rate - H exp(-rate H) / (1 - exp(-rate H))`` (decreasing in ``rate``)."""
    rate = return_rate(config, mean_satisfaction, disappointment).double()
    h = config.horizon_days
    x = rate * h
    return (1.0 / rate - h * torch.exp(-x) / (-torch.expm1(-x))).float()


def _uniforms(state: SimState, n: int) -> torch.Tensor:
    """``(B, n)`` uniforms of the row's current event at draw indices ``SESSION_DRAWS .. + n - 1``."""
    bases = rng.event_bases(state.rng) + SESSION_DRAWS * _GOLDEN32
    return rng.uniform(rng.hash_words(bases, n))


class MultiSessionDynamics:
    """Sessions, return gaps and churn around a within-session dynamics (see the module docstring).

    State fields (besides the inner dynamics'): ``session`` ``(B,)`` int32 (index of the current session),
    ``session_steps`` ``(B,)`` int32, ``session_sat`` ``(B,)`` float32 (summed satisfaction of the session),
    ``disappointment`` ``(B,)`` float32, ``days_since`` ``(B,)`` float32 (gap before the current session; 0
    in the first), ``day`` ``(B,)`` float32 (day of the episode on which the current session started),
    ``churned`` and ``window_end`` ``(B,)`` bool (set by the step that ends the episode).

    Args:
        inner: the within-session dynamics (its ``leaving`` becomes a session end).
        config: :class:`~recgym.envs.config.SessionsConfig`.
        initial_budget: the budget a new session starts with (the inner dynamics' field ``budget``).
    """

    context_features = SESSION_CONTEXT

    def __init__(self, inner: UserDynamics, config: SessionsConfig, initial_budget: float | None = None) -> None:
        if config.count < 2:
            raise ValueError(f"MultiSessionDynamics: expected sessions.count >= 2, received {config.count} "
                             "(one session is the inner dynamics itself)")
        self.inner = inner
        self.config = config
        if initial_budget is None:
            initial_budget = getattr(getattr(inner, "config", None), "initial_budget", None)
        self.initial_budget = initial_budget
        self.requires = tuple(dict.fromkeys((*getattr(inner, "requires", ()), "interest")))

    def fields(self, params: WorldTensors, batch: int, slots: int) -> dict[str, torch.Tensor]:
        dev = params.device
        out = dict(self.inner.fields(params, batch, slots))
        mine = {
            "session": torch.zeros(batch, dtype=torch.int32, device=dev),
            "session_steps": torch.zeros(batch, dtype=torch.int32, device=dev),
            "session_sat": torch.zeros(batch, device=dev),
            "disappointment": torch.zeros(batch, device=dev),
            "days_since": torch.zeros(batch, device=dev),
            "day": torch.zeros(batch, device=dev),
            "churned": torch.zeros(batch, dtype=torch.bool, device=dev),
            "window_end": torch.zeros(batch, dtype=torch.bool, device=dev),
        }
        clash = set(mine) & set(out)
        if clash:
            raise ValueError(f"MultiSessionDynamics: the inner dynamics already declares {sorted(clash)}")
        out.update(mine)
        return out

    def reset(self, params: WorldTensors, state: SimState, rows: torch.Tensor, users: torch.Tensor) -> None:
        self.inner.reset(params, state, rows, users)
        for name in ("session", "session_steps"):
            getattr(state, name).index_fill_(0, rows, 0)
        for name in ("session_sat", "disappointment", "days_since", "day"):
            getattr(state, name).index_fill_(0, rows, 0.0)
        state.churned.index_fill_(0, rows, False)
        state.window_end.index_fill_(0, rows, False)

    def logit_offset(self, params: WorldTensors, state: SimState, view: SlateView) -> torch.Tensor | None:
        return self.inner.logit_offset(params, state, view)

    def remaining(self, params: WorldTensors, state: SimState) -> torch.Tensor:
        return self.inner.remaining(params, state)

    def leaving(self, params: WorldTensors, state: SimState) -> torch.Tensor:
        """Churn: the session ended and the user did not return within ``horizon_days``."""
        return state.churned.clone()

    def time_limit(self, params: WorldTensors, state: SimState) -> torch.Tensor:
        """The return after the last session: the observation window ends (``truncated``)."""
        return state.window_end.clone()

    def context(self, params: WorldTensors, state: SimState) -> torch.Tensor:
        """``(B, 3)`` float32 in [0, 1]: :data:`SESSION_CONTEXT`."""
        c = self.config
        return torch.stack([
            state.session.to(torch.float32) / c.count,
            (state.days_since / c.horizon_days).clamp_(0.0, 1.0),
            (state.session_steps.to(torch.float32) / c.session_steps).clamp_(0.0, 1.0),
        ], dim=1)

    def update(self, params: WorldTensors, state: SimState, view: SlateView,
               responses: Responses) -> dict[str, torch.Tensor]:
        c = self.config
        self.inner.update(params, state, view, responses)
        sat = responses.satisfaction
        state.session_steps.add_(1)
        state.session_sat.add_(sat)
        state.disappointment.add_(torch.relu(-sat))
        ended = self.inner.leaving(params, state) | (state.session_steps >= c.session_steps)
        mean_sat = state.session_sat / state.session_steps.clamp_min(1).to(torch.float32)
        rate = return_rate(c, mean_sat, state.disappointment)
        prob = -torch.expm1(-rate * c.horizon_days)
        gap = _uniforms(state, 1).squeeze(1).log_().neg_().div_(rate)  # Exponential(rate) days
        returned = ended & (gap <= c.horizon_days)
        state.churned.copy_(ended & ~returned)
        state.window_end.copy_(returned & (state.session + 1 >= c.count))
        index = state.session.clone()
        if bool(returned.any()):
            self._new_session(params, state, returned & ~state.window_end, gap)
        zero = torch.zeros_like(gap)
        return {"session_end": ended, "returned": returned, "return_gap": torch.where(ended, gap, zero),
                "return_prob": torch.where(ended, prob, zero), "session_index": index}

    def _new_session(self, params: WorldTensors, state: SimState, rows: torch.Tensor, gap: torch.Tensor) -> None:
        """Start the next session in the rows ``rows`` ``(B,)`` bool after ``gap`` ``(B,)`` days."""
        c = self.config
        g = torch.where(rows, gap, torch.zeros_like(gap))
        col = rows.unsqueeze(1)
        state.session.add_(rows.to(torch.int32))
        state.session_steps.masked_fill_(rows, 0)
        state.session_sat.masked_fill_(rows, 0.0)
        state.day.add_(g)
        state.days_since.copy_(torch.where(rows, gap, state.days_since))
        state.disappointment.mul_(torch.pow(c.disappointment_decay, g))
        if self.initial_budget is not None and "budget" in state.names():
            state.budget.masked_fill_(rows, float(self.initial_budget))
        if "genre_fatigue" in state.names():
            state.genre_fatigue.mul_(torch.pow(c.fatigue_recovery, g).unsqueeze(1))
        if c.interest_reversion > 0 or c.interest_noise > 0:
            z = state.interest
            norm = z.norm(dim=1, keepdim=True)
            base = params.user_latent.index_select(0, state.user)
            w = (-torch.expm1(-c.interest_reversion * g)).unsqueeze(1)
            moved = torch.lerp(z, base * (norm / base.norm(dim=1, keepdim=True).clamp_min(1e-8)), w)
            if c.interest_noise > 0:
                eps = rng.normal_from_uniform(_uniforms(state, 1 + z.shape[1])[:, 1:])
                moved.add_(eps.mul_((g.sqrt() * c.interest_noise / math.sqrt(z.shape[1])).unsqueeze(1) * norm))
            moved.mul_(norm / moved.norm(dim=1, keepdim=True).clamp_min(1e-8))
            z.copy_(torch.where(col, moved, z))
