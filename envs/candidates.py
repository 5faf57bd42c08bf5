"""Candidate generation: a per-user retrieval pool built at reset, and N distinct candidates per step.

Pool (at reset, for the users being reset): ``pool_size`` distinct items sampled without replacement
(Gumbel top-k) from the mixture ``nearest * softmax(cos(query, e_i) / T) + popular * pop_i + random / M``
over the items released so far, where ``query`` is the user's normalised profile + history vector. This
is the retrieval stage of a two-stage recommender: the policy ranks N << M candidates.

Per step: N pool entries at positions ``(offset + stride * j) mod P`` with a random offset and a random
stride coprime with P, so the N candidates are distinct and every pool item has the same chance N/P; then
the last ``new_item_slots`` columns are overwritten by items injected within the last ``new_item_window``
steps (uniformly), when there are any.
"""

from __future__ import annotations

import math

import torch

__all__ = ["build_pools", "coprime_strides", "rotate_candidates"]


def coprime_strides(pool_size: int) -> torch.Tensor:
    """``(S,)`` int64 strides in [1, P) coprime with ``pool_size``."""
    return torch.tensor([s for s in range(1, max(pool_size, 2)) if math.gcd(s, pool_size) == 1] or [1])


def build_pools(
    query: torch.Tensor,
    item_emb: torch.Tensor,
    popularity: torch.Tensor,
    released: torch.Tensor,
    *,
    pool_size: int,
    mix: tuple[float, float, float],
    temperature: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Sample retrieval pools.

    Args:
        query: ``(R, d)`` float32 user query vectors.
        item_emb: ``(M, d)`` float32 item LM embeddings.
        popularity: ``(M,)`` float32 popularity prior.
        released: ``(M,)`` bool, items available now (at least ``pool_size`` of them).
        pool_size: P.
        mix: weights of (nearest, popular, random).
    Returns:
        ``(R, P)`` int64 distinct item indices per row.
    """
    n_released = int(released.sum())
    if n_released < pool_size:
        raise ValueError(f"pool_size: expected <= released items ({n_released}), received {pool_size}")
    neg_inf = torch.finfo(item_emb.dtype).min
    sim = (query @ item_emb.T) / temperature
    sim = sim.masked_fill(~released, neg_inf)
    near = torch.softmax(sim, dim=1)
    pop = torch.where(released, popularity, torch.zeros_like(popularity))
    pop = pop / pop.sum().clamp_min(1e-12)
    rand = released.to(item_emb.dtype) / n_released
    w_near, w_pop, w_rand = mix
    total = w_near + w_pop + w_rand
    probs = (w_near * near + (w_pop * pop + w_rand * rand)) / total
    u = torch.rand(probs.shape, generator=generator, device=probs.device).clamp_(1e-20, 1.0)
    gumbel = -torch.log(-torch.log(u))
    keys = torch.log(probs.clamp_min(1e-30)) + gumbel
    keys = keys.masked_fill(~released, neg_inf)
    return torch.topk(keys, pool_size, dim=1, sorted=False).indices


def rotate_candidates(
    pool: torch.Tensor, num: int, strides: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """``(B, P)`` pool -> ``(B, num)`` distinct pool items (random offset, random coprime stride)."""
    b, p = pool.shape
    dev = pool.device
    offset = torch.randint(0, p, (b, 1), generator=generator, device=dev)
    stride = strides[torch.randint(0, len(strides), (b, 1), generator=generator, device=dev)]
    pos = (offset + stride * torch.arange(num, device=dev)) % p
    return pool.gather(1, pos)
