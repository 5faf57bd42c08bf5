"""Responses (click, dwell/engagement, satisfaction) and the reward function.

Engagement depends on the item's hidden *quality*, never on its *appeal*: clickbait earns clicks but little
dwell and negative satisfaction. Swap in your own with ``RankingCore(..., response_model=..., reward_fn=...)``.

Reward terms of :class:`WeightedReward` (weights: :class:`~recgym.envs.config.RewardWeights`), per step and user:
``clicks`` (number of clicks), ``engagement`` (summed dwell), ``satisfaction``, ``tail_exposure`` (the share
of the slate's K items in the long tail) and ``tail_clicks`` (clicks on long-tail items). The long tail is
every item outside the head (``Catalog.head_mask()``: the 20 % most popular initial items; injected items are
tail) — the mask the ``tail_share`` metric uses, so an episode's summed ``tail_exposure`` divided by its
slates is its tail share of impressions. ``retention`` (returning users) is added by the core, which holds
the session signals.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Protocol

import torch

from recgym.envs.config import RewardWeights

__all__ = ["Responses", "ResponseModel", "QualityResponse", "RewardFn", "WeightedReward", "make_reward"]


@dataclass(frozen=True)
class Responses:
    """Per-slate feedback. ``clicks`` ``(B, K)`` bool, ``engagement`` ``(B, K)`` float32 dwell of clicked items
    (0 elsewhere), ``satisfaction`` ``(B,)`` float32 sum over clicked items of ``quality - threshold``;
    ``slate_tail`` ``(B, K)`` bool, True where the shown item is in the long tail (set by the core with
    :meth:`with_slate_tail` when the reward may read it — any reward but a :class:`WeightedReward` without
    tail weights; ``None`` otherwise). ``clicks_f`` ``(B, K)`` and ``n_clicks`` ``(B,)`` float32
    are computed once, on first use."""

    clicks: torch.Tensor
    engagement: torch.Tensor
    satisfaction: torch.Tensor
    slate_tail: torch.Tensor | None = None

    def with_slate_tail(self, slate_tail: torch.Tensor) -> Responses:
        """A copy with ``slate_tail`` ``(B, K)`` bool (what a response model cannot know: the catalogue's head)."""
        return dataclasses.replace(self, slate_tail=slate_tail)

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
    """``clicks * n_clicks + engagement * sum(dwell) + satisfaction * satisfaction
    + tail_exposure * (tail items shown / K) + tail_clicks * (clicks on tail items)`` (see the module
    docstring). The tail terms need ``responses.slate_tail`` (the core sets it)."""

    TERMS = ("clicks", "engagement", "satisfaction", "tail_exposure", "tail_clicks")

    def __init__(self, clicks: float = 1.0, engagement: float = 0.0, satisfaction: float = 0.0,
                 tail_exposure: float = 0.0, tail_clicks: float = 0.0) -> None:
        self.w = (float(clicks), float(engagement), float(satisfaction), float(tail_exposure), float(tail_clicks))

    def __call__(self, responses: Responses) -> torch.Tensor:
        r = responses
        if (self.w[3] or self.w[4]) and r.slate_tail is None:
            raise ValueError("WeightedReward: the tail_exposure / tail_clicks terms need responses.slate_tail "
                             "((B, K) bool, set by RankingCore.step), received None")
        values = (lambda: r.n_clicks, lambda: r.engagement.sum(dim=1), lambda: r.satisfaction,
                  lambda: r.slate_tail.to(torch.float32).mean(dim=1),
                  lambda: (r.clicks & r.slate_tail).sum(dim=1, dtype=torch.float32))
        terms = [(w, f) for w, f in zip(self.w, values, strict=True) if w]
        if not terms:
            return torch.zeros_like(r.satisfaction)
        (w0, f0), rest = terms[0], terms[1:]
        out = f0() * w0 if w0 != 1.0 or rest else f0().clone()  # a fresh tensor: callers may keep it
        for w, f in rest:
            out.add_(f(), alpha=w)
        return out


def make_reward(name: str, weights: RewardWeights | None = None) -> WeightedReward:
    """Reward by config name: ``clicks``, ``engagement``, ``satisfaction`` or ``mix`` (the ``clicks`` /
    ``engagement`` / ``satisfaction`` weights of ``weights``). The tail weights of ``weights`` apply to every
    name, like ``retention``."""
    w = weights or RewardWeights()
    tail = (w.tail_exposure, w.tail_clicks)
    if name == "clicks":
        return WeightedReward(1.0, 0.0, 0.0, *tail)
    if name == "engagement":
        return WeightedReward(0.0, 1.0, 0.0, *tail)
    if name == "satisfaction":
        return WeightedReward(0.0, 0.0, 1.0, *tail)
    if name == "mix":
        return WeightedReward(w.clicks, w.engagement, w.satisfaction, *tail)
    raise ValueError(f"reward: expected 'clicks', 'engagement', 'satisfaction' or 'mix', received {name!r}")
