"""Candidate generation: a per-user retrieval pool built at reset, and N distinct candidates per step.

Pool (at reset, for the users being reset): ``pool_size`` distinct items sampled without replacement
(Gumbel top-k) from the mixture ``nearest * softmax(cos(query, e_i) / T) + popular * pop_i + random / M``
over the items released so far, where ``query`` is the user's normalised profile + history vector. This
is the retrieval stage of a two-stage recommender: the policy ranks N << M candidates.

Each pool is shuffled when it is built. Per step every user gets the window of N pool positions starting
at ``(t * N) mod P`` (``t`` = the env step; one shared index, so it costs one ``index_select``): the N
candidates are distinct, each pool item comes back every ``P / N`` steps, and the shuffle makes the
window's content random per user. Then the last ``new_item_slots`` columns are overwritten by items
injected within the last ``new_item_window`` steps (uniformly), when there are any.
"""

from __future__ import annotations

import torch

__all__ = ["build_pools", "window_candidates"]


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
    pool = torch.topk(keys, pool_size, dim=1, sorted=False).indices
    shuffle = torch.argsort(torch.rand(pool.shape, generator=generator, device=pool.device), dim=1)
    return pool.gather(1, shuffle)


def window_candidates(pool: torch.Tensor, num: int, step: int) -> torch.Tensor:
    """``(B, P)`` shuffled pools -> ``(B, num)`` the window of positions ``(step * num + j) mod P``."""
    p = pool.shape[1]
    start = (step * num) % p
    if start + num <= p:  # contiguous slices copy far faster than a strided index_select
        return pool[:, start : start + num].clone()
    return torch.cat([pool[:, start:], pool[:, : start + num - p]], dim=1)
