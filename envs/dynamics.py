"""User dynamics: how a user changes after each slate, and when they leave.

A :class:`UserDynamics` is a small stateless object (its settings only). Its per-user tables live in the
:class:`~recgym.envs.state.SimState` under the names it declares; every method takes the frozen world
parameters and the state explicitly. The core calls, per step: ``logit_offset`` (state-dependent change
of the hidden click logit, e.g. fatigue; ``None`` for none), then — after clicks and responses are drawn
— ``update`` (in place), then ``leaving`` (``terminated``). ``remaining`` is the first observation context
feature (how much of the session is left, in [0, 1]). Swap one in with ``RankingCore(..., user_dynamics=...)``
or ``gym.make(..., user_dynamics=...)``.

The default, :class:`SessionDynamics` (settings: :class:`~recgym.envs.config.DynamicsConfig`):

* **time budget and leaving**: ``budget`` starts at ``initial_budget``, changes by ``budget_gain *
  satisfaction - step_cost`` per slate (satisfaction = sum of ``quality - threshold`` over clicks, so
  clickbait drains it), capped at ``2 * initial_budget``; the user leaves when it reaches 0;
* **genre fatigue**: ``genre_fatigue`` ``(B, G)`` decays by ``fatigue_decay`` per slate and grows by 1 per
  clicked and ``exposure_fatigue`` per shown-but-unclicked item of the genre; logit ``-=
  genre_fatigue_weight * fatigue``;
* **item fatigue**: ``slot_consumed`` ``(B, S)`` int32 remembers the env clock when each slot's item was last
  consumed (``NEVER``: not in this episode); logit ``-= item_fatigue_weight * item_fatigue_decay ** (slates
  since)``;
* **interest drift**: ``interest`` (the preference's field) moves ``interest_drift`` of the way toward the
  mean latent factors of the clicked items, keeping its norm.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from recgym.envs.config import DynamicsConfig
from recgym.envs.params import SlateView, WorldTensors, weighted_row_sum
from recgym.envs.response import Responses
from recgym.envs.state import NEVER, SimState

__all__ = ["UserDynamics", "SessionDynamics"]


@runtime_checkable
class UserDynamics(Protocol):
    """Within-session user dynamics (see the module docstring). Optional attribute ``requires``: names of
    state fields of other components it reads or writes (checked when the core is built).

    Shapes: ``rows``/``users`` ``(R,)`` int64; ``view`` the slate (``X = K``); ``logit_offset`` ``(B, K)``
    float32 or ``None``; ``leaving`` ``(B,)`` bool; ``remaining`` ``(B,)`` float32 in [0, 1]. ``slots``:
    width of per-slot tables (see :mod:`recgym.envs.candidates`; the last column is a write sink).
    """

    def fields(self, params: WorldTensors, batch: int, slots: int) -> dict[str, torch.Tensor]: ...

    def reset(self, params: WorldTensors, state: SimState, rows: torch.Tensor, users: torch.Tensor) -> None: ...

    def logit_offset(self, params: WorldTensors, state: SimState, view: SlateView) -> torch.Tensor | None: ...

    def update(self, params: WorldTensors, state: SimState, view: SlateView, responses: Responses) -> None: ...

    def leaving(self, params: WorldTensors, state: SimState) -> torch.Tensor: ...

    def remaining(self, params: WorldTensors, state: SimState) -> torch.Tensor: ...


class SessionDynamics:
    """Budget, leaving, genre and item fatigue, interest drift (see the module docstring)."""

    def __init__(self, config: DynamicsConfig | None = None) -> None:
        self.config = c = config or DynamicsConfig()
        self.budget_cap = 2.0 * c.initial_budget
        self.requires = ("interest",) if c.interest_drift > 0 else ()

    def fields(self, params: WorldTensors, batch: int, slots: int) -> dict[str, torch.Tensor]:
        dev = params.device
        out = {"budget": torch.zeros(batch, device=dev),
               "genre_fatigue": torch.zeros(batch, params.num_genres, device=dev)}
        if self.config.item_fatigue_weight > 0:
            out["slot_consumed"] = torch.full((batch, slots), NEVER, dtype=torch.int32, device=dev)
        return out

    def reset(self, params: WorldTensors, state: SimState, rows: torch.Tensor, users: torch.Tensor) -> None:
        state.budget.index_fill_(0, rows, self.config.initial_budget)
        state.genre_fatigue.index_fill_(0, rows, 0.0)
        if self.config.item_fatigue_weight > 0:
            state.slot_consumed.index_fill_(0, rows, NEVER)

    def logit_offset(self, params: WorldTensors, state: SimState, view: SlateView) -> torch.Tensor | None:
        c = self.config
        off = None
        if c.genre_fatigue_weight > 0:
            off = state.genre_fatigue.gather(1, view.genre).mul_(-c.genre_fatigue_weight)
        if c.item_fatigue_weight > 0:
            # -weight * decay ** (slates since the item was last consumed); never consumed: decay ** 2^30 = 0
            consumed = state.slot_consumed.gather(1, view.keys)
            age = torch.sub(state.t, consumed).to(torch.float32)  # env clock minus the stamp
            item = torch.pow(c.item_fatigue_decay, age)
            if c.item_fatigue_decay >= 1.0:  # no decay: 1 ** age is 1 for never-consumed slots too
                item.masked_fill_(consumed == NEVER, 0.0)
            off = item.mul_(-c.item_fatigue_weight) if off is None else off.sub_(item, alpha=c.item_fatigue_weight)
        return off

    def update(self, params: WorldTensors, state: SimState, view: SlateView, responses: Responses) -> None:
        c = self.config
        clicks, cf = responses.clicks, responses.clicks_f
        if c.item_fatigue_weight > 0:
            sink = state.slot_consumed.shape[1] - 1
            state.slot_consumed.scatter_(1, torch.where(clicks, view.keys, sink), state.t)
        state.budget.add_(responses.satisfaction, alpha=c.budget_gain).sub_(c.step_cost).clamp_(max=self.budget_cap)
        # 1 per click, exposure_fatigue per shown-but-unclicked item: e + (1 - e) * click
        state.genre_fatigue.mul_(c.fatigue_decay).scatter_add_(
            1, view.genre, torch.mul(cf, 1.0 - c.exposure_fatigue).add_(c.exposure_fatigue)
        )
        if c.interest_drift > 0:
            # Mean latent of the clicked items; a weight of 0 keeps z as it is in rows without clicks
            # (z + 0 * (0 - z) == z).
            mean_lat = weighted_row_sum(params.item_latent, view.items, responses.click_shares)
            z = state.interest
            norm = torch.linalg.vector_norm(z, dim=1, keepdim=True)
            z.lerp_(mean_lat, responses.any_click * c.interest_drift)
            z.mul_(norm.div_(torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_min_(1e-8)))

    def leaving(self, params: WorldTensors, state: SimState) -> torch.Tensor:
        return state.budget <= 0

    def remaining(self, params: WorldTensors, state: SimState) -> torch.Tensor:
        return (state.budget / self.budget_cap).clamp_(0.0, 1.0)
