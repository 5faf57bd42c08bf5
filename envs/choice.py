"""Choice models: how a user reacts to a ranked slate, given the hidden per-item click logits.

Each model maps logits ``(B, K)`` float32 of the slate (position 0 first) to per-position marginal click
probabilities; clicks are sampled from those marginals with uniforms drawn by the caller (so all randomness
stays in the env's generator): for single-click models the marginals *are* the distribution of the clicked
position (the remainder is no click), for multi-click models clicks are independent. Swap one in with
``RankingCore(..., choice_model=...)``.

- :class:`MultinomialLogit`: at most one click; ``P(j) = e^{v_j} / (e^{v_0} + sum_k e^{v_k})``.
- :class:`Cascade`: examine top-down, click with ``sigma(v_j)``, stop at the first click.
- :class:`PositionBased`: independent clicks with ``P(j) = theta_j * sigma(v_j)``, ``theta_j = (j+1)^-eta``.
"""

from __future__ import annotations

from typing import Protocol

import torch

__all__ = ["ChoiceModel", "MultinomialLogit", "Cascade", "PositionBased", "make_choice_model", "sample_clicks"]


def sample_clicks(probs: torch.Tensor, uniforms: torch.Tensor, multi_click: bool) -> torch.Tensor:
    """``(B, K)`` marginal click probabilities + ``(B, K)`` U(0,1) draws -> ``(B, K)`` bool clicks.

    Single-click: one uniform per user picks a position on the cumulative marginals (beyond = no click).
    Multi-click: independent Bernoulli draws per position.
    """
    if multi_click:
        return uniforms < probs
    # The clicked position is the number of cumulative marginals at or below the draw (K: no click).
    pos = (torch.cumsum(probs, dim=1) <= uniforms[:, :1]).sum(dim=1, keepdim=True)
    return torch.arange(probs.shape[1], device=probs.device) == pos


class ChoiceModel(Protocol):
    """Click model over a slate. ``multi_click`` says whether more than one click per slate is possible
    (then clicks are sampled independently per position, else as one categorical draw)."""

    multi_click: bool

    def click_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` logits -> ``(B, K)`` marginal click probability of each position."""
        ...




class MultinomialLogit:
    """Multinomial logit with a no-click option of utility ``no_click_logit``; one click at most."""

    multi_click = False

    def __init__(self, no_click_logit: float = 0.0) -> None:
        self.no_click_logit = float(no_click_logit)

    def click_probs(self, logits: torch.Tensor) -> torch.Tensor:
        # Softmax over [logits, no_click] without building the (B, K+1) block (a short last dim is slow).
        top = logits.amax(dim=1, keepdim=True).clamp_min(self.no_click_logit)
        e = torch.exp(logits - top)
        return e / (e.sum(dim=1, keepdim=True) + torch.exp(self.no_click_logit - top))



class Cascade:
    """Cascade model: the user examines positions in order and stops at the first click."""

    multi_click = False

    def click_probs(self, logits: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        survive = torch.cumprod(1.0 - p, dim=1)
        before = torch.cat([torch.ones_like(p[:, :1]), survive[:, :-1]], dim=1)
        return p * before



class PositionBased:
    """Position-based model: examination ``theta_j = (j+1)^-eta`` times attractiveness ``sigma(v_j)``."""

    multi_click = True

    def __init__(self, eta: float = 1.0) -> None:
        self.eta = float(eta)
        self._theta: torch.Tensor | None = None

    def _examination(self, logits: torch.Tensor) -> torch.Tensor:
        k = logits.shape[1]
        th = self._theta
        if th is None or th.shape[0] != k or th.device != logits.device:
            th = torch.arange(1, k + 1, device=logits.device, dtype=logits.dtype).pow(-self.eta)
            self._theta = th
        return th

    def click_probs(self, logits: torch.Tensor) -> torch.Tensor:
        return self._examination(logits) * torch.sigmoid(logits)



def make_choice_model(name: str, *, no_click_logit: float = 0.0, pbm_eta: float = 1.0) -> ChoiceModel:
    """Build a choice model by config name (``mnl``, ``cascade``, ``pbm``)."""
    if name == "mnl":
        return MultinomialLogit(no_click_logit)
    if name == "cascade":
        return Cascade()
    if name == "pbm":
        return PositionBased(pbm_eta)
    raise ValueError(f"choice_model: expected one of 'mnl', 'cascade', 'pbm', received {name!r}")
