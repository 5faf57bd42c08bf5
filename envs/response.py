"""Responses (click, dwell/engagement, satisfaction) and the reward function.

Engagement depends on the item's hidden *quality*, never on its *appeal*: clickbait earns clicks but little
dwell and negative satisfaction. Swap in your own with ``RankingCore(..., response_model=..., reward_fn=...)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

import torch

from recgym.envs.config import RewardWeights

__all__ = ["Responses", "ResponseModel", "QualityResponse", "RewardFn", "WeightedReward", "make_reward"]


@dataclass(frozen=True)
class Responses:
    """Per-slate feedback. ``clicks`` ``(B, K)`` bool, ``engagement`` ``(B, K)`` float32 dwell of clicked items
    (0 elsewhere), ``satisfaction`` ``(B,)`` float32 sum over clicked items of ``quality - threshold``.
    ``clicks_f`` ``(B, K)`` and ``n_clicks`` ``(B,)`` float32 are computed once, on first use."""

    clicks: torch.Tensor
    engagement: torch.Tensor
    satisfaction: torch.Tensor

    @functools.cached_property
    def clicks_f(self) -> torch.Tensor:
        return self.clicks.to(torch.float32)

    @functools.cached_property
    def n_clicks(self) -> torch.Tensor:
        return self.clicks_f.sum(dim=1)

    @functools.cached_property
    def click_shares(self) -> torch.Tensor:
        """``(B, K)`` float32: ``1 / n_clicks`` at clicked positions, 0 elsewhere (weights of a mean over clicks)."""
        return self.clicks_f / self.n_clicks.unsqueeze(1).clamp_min(1.0)

    @functools.cached_property
    def any_click(self) -> torch.Tensor:
        """``(B, 1)`` float32: 1 where the user clicked something."""
        return (self.n_clicks > 0).unsqueeze(1).to(torch.float32)


class ResponseModel(Protocol):
    def __call__(self, clicks: torch.Tensor, quality: torch.Tensor, noise: torch.Tensor) -> Responses:
        """``clicks`` ``(B,K)`` bool, ``quality`` ``(B,K)`` of the slate items, ``noise`` N(0,1) draws broadcastable
        to ``(B,K)``: ``(B,K)``, or ``(B,1)`` for single-click choice models (one click at most per slate, so
        one draw per user serves it)."""
        ...


_MAX_LOG_DWELL = 10.0


class QualityResponse:
    """Dwell ``= dwell_scale * quality * exp(min(dwell_noise * eps, 10))`` for clicked items; satisfaction
    ``= sum_clicked (quality - quality_threshold)``. The exponent is capped (e^10: a dwell 22,000x the median;
    with the default ``dwell_noise=0.3`` a 33-sigma draw) so a large ``dwell_noise`` cannot overflow float32."""

    def __init__(self, dwell_scale: float = 1.0, dwell_noise: float = 0.3, quality_threshold: float = 0.5) -> None:
        self.dwell_scale = dwell_scale
        self.dwell_noise = dwell_noise
        self.quality_threshold = quality_threshold

    def __call__(self, clicks: torch.Tensor, quality: torch.Tensor, noise: torch.Tensor) -> Responses:
        q = quality * clicks
        # The exponent is capped so a large valid dwell_noise cannot overflow float32 (noise may be (B, 1)).
        dwell = q * torch.exp((noise * self.dwell_noise).clamp_(max=_MAX_LOG_DWELL)).mul_(self.dwell_scale)
        satisfaction = (quality - self.quality_threshold).mul_(clicks).sum(dim=1)
        return Responses(clicks=clicks, engagement=dwell, satisfaction=satisfaction)


class RewardFn(Protocol):
    def __call__(self, responses: Responses) -> torch.Tensor:
        """-> ``(B,)`` float32 reward."""
        ...


class WeightedReward:
    """``clicks * n_clicks + engagement * sum(dwell) + satisfaction * satisfaction``."""

    def __init__(self, clicks: float = 1.0, engagement: float = 0.0, satisfaction: float = 0.0) -> None:
        self.w = (float(clicks), float(engagement), float(satisfaction))

    def __call__(self, responses: Responses) -> torch.Tensor:
        terms = [(w, f) for w, f in zip(self.w, (lambda: responses.n_clicks, lambda: responses.engagement.sum(dim=1),
                                                  lambda: responses.satisfaction), strict=True) if w]
        if not terms:
            return torch.zeros_like(responses.satisfaction)
        (w0, f0), rest = terms[0], terms[1:]
        r = f0() * w0 if w0 != 1.0 or rest else f0().clone()  # a fresh tensor: callers may keep it
        for w, f in rest:
            r.add_(f(), alpha=w)
        return r


def make_reward(name: str, weights: RewardWeights | None = None) -> WeightedReward:
    """Reward by config name: ``clicks``, ``engagement``, ``satisfaction`` or ``mix`` (uses ``weights``)."""
    if name == "clicks":
        return WeightedReward(1.0, 0.0, 0.0)
    if name == "engagement":
        return WeightedReward(0.0, 1.0, 0.0)
    if name == "satisfaction":
        return WeightedReward(0.0, 0.0, 1.0)
    if name == "mix":
        w = weights or RewardWeights()
        return WeightedReward(w.clicks, w.engagement, w.satisfaction)
    raise ValueError(f"reward: expected 'clicks', 'engagement', 'satisfaction' or 'mix', received {name!r}")
