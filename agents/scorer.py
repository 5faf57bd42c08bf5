"""The shared candidate scorer and the Plackett-Luce slate distribution.

:class:`CandidateScorer` maps a batched observation to one score per candidate with the *same* weights for
every candidate, so it is permutation-equivariant over candidates and has no parameter that depends on the
catalogue size ``M`` or the candidate count ``N``. Per forward pass:

1. user tower: ``u = MLP([profile, history, context])`` -> additive part ``u_a`` and gate ``u_g`` ``(B, h)``;
2. item tower: the whole item table is projected once, ``P = E @ W`` ``(M, 2h)`` (``E`` frozen ``(M, d)``),
   then gathered at the candidates ``(B, N, 2h)`` - never a flat MLP over an ``(N, d)`` block;
3. interaction features: ``cos(profile, item)`` and ``cos(history, item)`` ``(B, N, 2)``;
4. ``z = relu(u_a + P_a[c] + u_g * P_g[c] + W_c cos)``; score ``= w . z + b``;
5. value (optional): ``MLP([u, masked-mean_N z])``.

The cosines have no parameters; a training buffer may precompute them once per rollout with
:func:`cosine_features` and pass them as ``obs["_cos"]`` (PPO does), saving the ``(B, 2, d) x (d, M)``
product in every epoch.

Masked candidates get score ``-inf`` (no probability) from :func:`masked_logits`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

__all__ = [
    "CandidateScorer", "cosine_features", "masked_logits", "pl_sample", "pl_log_prob", "first_slot_entropy", "COS_KEY",
]

COS_KEY = "_cos"  # optional precomputed (B, N, 2) cosine features in an observation dict


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float32 else x.to(torch.float32)


class CandidateScorer(nn.Module):
    """Shared per-candidate scorer over ``(user features, LM item embedding, interaction features)``.

    Args:
        item_embeddings: ``(M, d)`` float32 frozen LM item table (a non-persistent buffer).
        hidden: width ``h`` of the per-candidate layer (the user tower is ``max(2h, 64)`` wide).
        context_dim: length of ``obs["context"]``.
        value_head: also return a state value ``(B,)``.
    """

    def __init__(
        self, item_embeddings: np.ndarray | torch.Tensor, hidden: int = 64, context_dim: int = 4, value_head: bool = True
    ) -> None:
        super().__init__()
        table = torch.as_tensor(np.array(item_embeddings, dtype=np.float32))
        if table.ndim != 2:
            raise ValueError(f"item_embeddings: expected shape (M, d), received {tuple(table.shape)}")
        self.register_buffer("item_table", table, persistent=False)
        self.register_buffer("item_unit", nn.functional.normalize(table, dim=1), persistent=False)
        d = table.shape[1]
        self.hidden = hidden
        wide = max(2 * hidden, 64)
        self.user = nn.Sequential(nn.Linear(2 * d + context_dim, wide), nn.ReLU(), nn.Linear(wide, 2 * hidden))
        self.item = nn.Linear(d, 2 * hidden)
        self.inter = nn.Linear(2, hidden, bias=False)
        self.out = nn.Linear(hidden, 1)
        self.value = (
            nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)) if value_head else None
        )

    def forward(self, obs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(scores (B, N) float32 - unmasked, raw; value (B,) or None)``.

        ``obs``: ``profile``/``history`` ``(B, d)``, ``context`` ``(B, 4)``, ``candidates`` ``(B, N)`` (any
        numeric dtype holding item indices), ``mask`` ``(B, N)`` (nonzero = allowed).
        """
        profile, history, context = _f32(obs["profile"]), _f32(obs["history"]), _f32(obs["context"])
        cand = obs["candidates"].long()
        b, n = cand.shape
        h = self.hidden
        ua, ug = self.user(torch.cat([profile, history, context], dim=1)).split(h, dim=1)
        proj = self.item(self.item_table)  # (M, 2h): the table is projected once per forward
        pc = proj[cand]  # (B, N, 2h)
        pa, pg = pc[..., :h], pc[..., h:]
        cos = obs[COS_KEY] if COS_KEY in obs else cosine_features(self.item_unit, profile, history, cand)
        z = torch.relu(ua.unsqueeze(1) + pa + ug.unsqueeze(1) * pg + self.inter(cos))
        scores = self.out(z).squeeze(-1)
        value = None
        if self.value is not None:
            allowed = (obs["mask"] > 0).to(z.dtype).unsqueeze(-1)
            pooled = (z * allowed).sum(1) / allowed.sum(1).clamp_min(1.0)
            value = self.value(torch.cat([ua, ug, pooled], dim=1)).squeeze(-1)
        return scores, value


def cosine_features(
    item_unit: torch.Tensor, profile: torch.Tensor, history: torch.Tensor, candidates: torch.Tensor
) -> torch.Tensor:
    """``(B, N, 2)`` float32 ``[cos(profile, item), cos(history, item)]`` of each candidate (0 for a zero
    history). ``item_unit`` ``(M, d)`` unit rows; ``profile``/``history`` ``(B, d)``; ``candidates`` ``(B, N)``."""
    cand = candidates.long()
    b, n = cand.shape
    q = nn.functional.normalize(torch.stack([_f32(profile), _f32(history)], dim=1), dim=2)  # (B, 2, d)
    m = item_unit.shape[0]
    if m <= 64 * n:  # one (2B, d) x (d, M) product beats gathering (B, N, d) rows (measured on CPU)
        cos = torch.matmul(q.reshape(2 * b, -1), item_unit.T)  # (2B, M)
        return cos.gather(1, cand.repeat_interleave(2, 0)).reshape(b, 2, n).transpose(1, 2).contiguous()
    return torch.matmul(item_unit[cand], q.transpose(1, 2))


def masked_logits(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``scores`` with ``-inf`` where ``mask`` is 0 (those candidates get probability 0)."""
    return scores.masked_fill(~(mask > 0), float("-inf"))


def pl_sample(logits: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample ``(B, k)`` int64 slates from the Plackett-Luce distribution by Gumbel top-k (without
    replacement). ``logits`` ``(B, N)`` with ``-inf`` for masked candidates."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(1e-12, 1.0 - 1e-7)
    gumbel = -torch.log(-torch.log(u))
    return torch.topk(logits + gumbel, k, dim=1, sorted=True).indices


def pl_log_prob(logits: torch.Tensor, slate: torch.Tensor) -> torch.Tensor:
    """``(B,)`` log-probability of ordered ``slate`` ``(B, K)`` under Plackett-Luce:
    ``sum_j [s(a_j) - logsumexp(s over unmasked candidates not in a_<j)]``."""
    b, n = logits.shape
    k = slate.shape[1]
    chosen = torch.zeros((b, k, n), dtype=logits.dtype, device=logits.device)
    chosen.scatter_(2, slate.unsqueeze(2), 1.0)
    before = (chosen.cumsum(1) - chosen) > 0  # (B, K, N): picked at an earlier slot
    remaining = logits.unsqueeze(1).masked_fill(before, float("-inf"))
    return (logits.gather(1, slate) - torch.logsumexp(remaining, dim=2)).sum(1)


def first_slot_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``(B,)`` entropy of the first slot's softmax over unmasked candidates (the PL entropy has no closed
    form; this is its first term, used as the exploration bonus)."""
    logp = torch.log_softmax(logits, dim=1)
    p = logp.exp()
    return -(p * logp.masked_fill(~torch.isfinite(logp), 0.0)).sum(1)
