"""Responses (click, dwell/engagement, satisfaction) and the reward function.

Engagement depends on the item's hidden *quality*, never on its *appeal*: clickbait earns clicks but little
dwell and negative satisfaction. Swap in your own with ``RankingCore(..., response_model=..., reward_fn=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from recgym.envs.config import RewardWeights

__all__ = ["Responses", "ResponseModel", "QualityResponse", "RewardFn", "WeightedReward", "make_reward"]


@dataclass(frozen=True)
class Responses:
    """Per-slate feedback. ``clicks`` ``(B, K)`` bool, ``engagement`` ``(B, K)`` float32 dwell of clicked items
    (0 elsewhere), ``satisfaction`` ``(B,)`` float32 sum over clicked items of ``quality - threshold``."""

    clicks: torch.Tensor
    engagement: torch.Tensor
    satisfaction: torch.Tensor


class ResponseModel(Protocol):
    def __call__(self, clicks: torch.Tensor, quality: torch.Tensor, noise: torch.Tensor) -> Responses:
        """``clicks`` ``(B,K)`` bool, ``quality`` ``(B,K)`` of the slate items, ``noise`` ``(B,K)`` N(0,1)."""
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
        c = clicks.to(quality.dtype)
        dwell = self.dwell_scale * quality * torch.exp((self.dwell_noise * noise).clamp(max=_MAX_LOG_DWELL)) * c
        satisfaction = ((quality - self.quality_threshold) * c).sum(dim=1)
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
        wc, we, ws = self.w
        r = torch.zeros_like(responses.satisfaction)
        if wc:
            r = r + wc * responses.clicks.sum(dim=1).to(r.dtype)
        if we:
            r = r + we * responses.engagement.sum(dim=1)
        if ws:
            r = r + ws * responses.satisfaction
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
