"""Hidden preference: how much a user wants an item now — the click logit before dynamics adjust it.

A :class:`PreferenceModel` is a small stateless object (its settings only); the per-user tables it needs
live in the :class:`~recgym.envs.state.SimState` under the names it declares, so they are cloned, forked
and saved with the rest of the state. Every method takes the frozen world parameters
(:class:`~recgym.envs.params.WorldTensors`) and the state explicitly, gymnax-style. Swap one in with
``RankingCore(..., preference_model=...)`` or ``gym.make("recgym/Ranking-v0", preference_model=...)``.

The default, :class:`LatentPreference`, is the world's bilinear model::

    logit(u, i) = affinity_scale * <z_u, x_i> + static_i + bias_u

with ``z_u`` the user's current latent interest (``state.interest``: starts at the hidden true interest,
drifts under :class:`~recgym.envs.dynamics.SessionDynamics`), ``x_i`` the item's hidden factors and
``static_i = popularity_weight * log(M * pop_i) + appeal_weight * appeal_i + bias``. The dynamics add
their state-dependent terms (fatigue) on top.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from recgym.envs.params import SlateView, WorldTensors
from recgym.envs.state import SimState

__all__ = ["PreferenceModel", "LatentPreference"]


@runtime_checkable
class PreferenceModel(Protocol):
    """Hidden click logits of shown items.

    ``fields`` declares the per-user tables (name -> fresh ``(batch, ...)`` tensor on ``params``' device);
    ``reset`` fills rows ``rows`` ``(R,)`` int64 for new episodes of population users ``users`` ``(R,)``
    int64, in place; ``logits`` returns ``(B, X)`` float32 for the items of ``view`` and must not change the
    state.
    """

    def fields(self, params: WorldTensors, batch: int) -> dict[str, torch.Tensor]: ...

    def reset(self, params: WorldTensors, state: SimState, rows: torch.Tensor, users: torch.Tensor) -> None: ...

    def logits(self, params: WorldTensors, state: SimState, view: SlateView) -> torch.Tensor: ...


class LatentPreference:
    """``affinity_scale * <interest_u, latent_i> + static_i + bias_u`` (see the module docstring).

    State fields: ``interest`` ``(B, k)`` float32 (the user's current latent interest), ``user_bias``
    ``(B,)`` float32 (hidden activity level).
    """

    def fields(self, params: WorldTensors, batch: int) -> dict[str, torch.Tensor]:
        dev = params.user_latent.device
        return {"interest": torch.zeros(batch, params.latent_dim, device=dev),
                "user_bias": torch.zeros(batch, device=dev)}

    def reset(self, params: WorldTensors, state: SimState, rows: torch.Tensor, users: torch.Tensor) -> None:
        state.interest.index_copy_(0, rows, params.user_latent.index_select(0, users))
        state.user_bias.index_copy_(0, rows, params.user_bias.index_select(0, users))

    def logits(self, params: WorldTensors, state: SimState, view: SlateView) -> torch.Tensor:
        affinity = torch.bmm(view.latent, state.interest.unsqueeze(2)).squeeze(2)
        return torch.add(view.static, affinity, alpha=params.affinity_scale).add_(state.user_bias.unsqueeze(1))
