"""The shared candidate scorer and the Plackett-Luce slate distribution.

:class:`CandidateScorer` maps a batched observation to one score per candidate with the *same* weights for
every candidate, so it is permutation-equivariant over candidates and has no parameter that depends on the
catalogue size ``M`` or the candidate count ``N``. Per forward pass:

1. user tower: ``u = MLP([profile, history, context])`` -> additive part ``u_a`` and gate ``u_g`` ``(B, h)``;
2. item tower: the whole item table is projected once, ``P = [E, F] @ W`` ``(M, 2h)`` (``E`` frozen LM
   table ``(M, d)``, ``F`` the env's public item features ``(M, f)``: popularity percentile, new flag),
   then gathered at the candidates ``(B, N, 2h)`` - never a flat MLP over an ``(N, d)`` block. Without
   gradients (rollouts, ranking) ``P`` is cached until the weights change;
3. interaction features ``x`` ``(B, N, 2 + f)``: ``cos(profile, item)``, ``cos(history, item)`` and the
   candidate's public features ``F[c]``;
4. ``z = relu(u_a + P_a[c] + u_g * P_g[c] + W_x x)``; score ``= w . z + b``;
5. value (optional): ``MLP([u, masked-mean_N z])``.

The user tower sees the context (budget fraction, step fraction, last click rate, cold flag), so the gate
``u_g`` can weigh popularity / clickbait-looking items differently late in a session.

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
        item_features: ``(M, f)`` float32 public item features (``EnvSpec.item_features``) or ``None`` (f = 0).
    """

    def __init__(
        self, item_embeddings: np.ndarray | torch.Tensor, hidden: int = 64, context_dim: int = 4, value_head: bool = True,
        item_features: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        table = torch.as_tensor(np.array(item_embeddings, dtype=np.float32))
        if table.ndim != 2:
            raise ValueError(f"item_embeddings: expected shape (M, d), received {tuple(table.shape)}")
        m, d = table.shape
        feats = torch.zeros((m, 0)) if item_features is None else torch.as_tensor(np.array(item_features, dtype=np.float32))
        if feats.ndim != 2 or feats.shape[0] != m:
            raise ValueError(f"item_features: expected shape ({m}, f) like item_embeddings, received {tuple(feats.shape)}")
        self.num_item_features = int(feats.shape[1])
        self.register_buffer("item_table", torch.cat([table, feats], dim=1), persistent=False)
        self.register_buffer("item_feat", feats, persistent=False)
        self.register_buffer("item_unit", nn.functional.normalize(table, dim=1), persistent=False)
        self.hidden = hidden
        wide = max(2 * hidden, 64)
        self.user = nn.Sequential(nn.Linear(2 * d + context_dim, wide), nn.ReLU(), nn.Linear(wide, 2 * hidden))
        self.item = nn.Linear(d + self.num_item_features, 2 * hidden)
        self.inter = nn.Linear(2 + self.num_item_features, hidden, bias=False)
        self._proj_cache: tuple[tuple, torch.Tensor] | None = None
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
        flat = cand.reshape(-1)
        pc = self.item_projection().index_select(0, flat).view(b, n, 2 * h)  # (B, N, 2h)
        pa, pg = pc.split(h, dim=2)  # split (not slicing): its backward is one cat, not zero-filled copies
        cos = obs[COS_KEY] if COS_KEY in obs else cosine_features(self.item_unit, profile, history, cand)
        if self.num_item_features:
            x = torch.cat([_f32(cos), self.item_feat.index_select(0, flat).view(b, n, -1)], dim=2)
        else:
            x = _f32(cos)
        z = torch.relu(ua.unsqueeze(1) + pa + ug.unsqueeze(1) * pg + self.inter(x))
        scores = self.out(z).squeeze(-1)
        value = None
        if self.value is not None:
            allowed = (obs["mask"] > 0).to(z.dtype).unsqueeze(-1)
            pooled = (z * allowed).sum(1) / allowed.sum(1).clamp_min(1.0)
            value = self.value(torch.cat([ua, ug, pooled], dim=1)).squeeze(-1)
        return scores, value

    def clear_cache(self) -> None:
        """Drop the cached item projection. Needed after weights are written through ``.data`` (SB3's
        ``polyak_update`` does so for target networks), which leaves the version counters that key the
        cache unchanged: the cache would keep serving the projection of the old weights."""
        self._proj_cache = None

    def item_projection(self) -> torch.Tensor:
        """``(M, 2h)`` projection of the whole item table (once per forward). Without gradients it is cached
        and reused until the weights change (their in-place version counters or storage move)."""
        w, b = self.item.weight, self.item.bias
        if torch.is_grad_enabled():
            self._proj_cache = None
            return self.item(self.item_table)
        key = (w.data_ptr(), w._version, b.data_ptr(), b._version, w.device)
        if self._proj_cache is None or self._proj_cache[0] != key:
            self._proj_cache = (key, self.item(self.item_table))
        return self._proj_cache[1]


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
    ``sum_j [s(a_j) - logsumexp(s over unmasked candidates not in a_<j)]``.

    Computed exactly in ``O(B (N + K))``: with ``R = logsumexp(s over unmasked candidates not in the slate)``
    the slot-j denominator is ``logsumexp(R, s(a_j), ..., s(a_{K-1}))``, a reversed cumulative logsumexp over
    K + 1 terms (no ``(B, K, N)`` tensor, no subtraction of probability masses)."""
    chosen = logits.gather(1, slate)  # (B, K)
    rest = logits.scatter(1, slate, float("-inf"))
    # a finite floor keeps R's gradient finite when every unmasked candidate is in the slate (exp(floor) = 0)
    rest_lse = torch.logsumexp(rest.clamp_min(-1e30), dim=1, keepdim=True)  # (B, 1)
    cum = torch.logcumsumexp(torch.cat([rest_lse, chosen.flip(1)], dim=1), dim=1)  # [R, s(a_{K-1}), ..., s(a_0)]
    denom = cum[:, 1:].flip(1)  # slot j: logsumexp(R, s(a_j), ..., s(a_{K-1}))
    return (chosen - denom).sum(1)


def first_slot_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``(B,)`` entropy of the first slot's softmax over unmasked candidates (the PL entropy has no closed
    form; this is its first term, used as the exploration bonus)."""
    logp = torch.log_softmax(logits, dim=1)
    p = logp.exp()
    return -(p * logp.masked_fill(~torch.isfinite(logp), 0.0)).sum(1)
