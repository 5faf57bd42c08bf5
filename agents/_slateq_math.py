"""SlateQ's slate algebra (Ie et al., IJCAI 2019), as pure batched torch functions without parameters.

Notation (shapes for a batch of ``B`` states, ``N`` candidates, slates of ``K``):

* ``u`` ``(B, N)`` float: the conditional choice model's item utilities, ``v(s, i) = exp(u(s, i))``;
  ``u0`` ``(B,)`` the no-click ("null item" ``⊥``) utility. Multinomial logit with a null item:
  ``P(i | s, A) = v(s, i) / (v(s, ⊥) + sum_{j in A} v(s, j))`` for ``i in A``, and the rest is ``P(⊥ | s, A)``.
* ``q`` ``(B, N)`` float: item-wise long-term values ``Q(s, i)`` (the value of the user consuming ``i``);
  ``q0`` ``(B,)`` the value of no click, ``Q(s, ⊥)``.
* Decomposition (the paper's Eq. 3 with the null item): ``Q(s, A) = sum_{i in A ∪ {⊥}} P(i | s, A) Q(s, i)``.

Slate optimisers (:func:`optimise_slates`), all exact-size ``K`` and restricted to unmasked candidates:

* ``"topk"`` - the paper's top-K rule: the K candidates with the largest ``v(s, i) Q(s, i)``.
* ``"greedy"`` - the paper's greedy rule: add, K times, the candidate that maximises ``Q(s, A ∪ {i})``.
* ``"exact"`` - the optimal slate of the linear-fractional problem ``max_{|A| = K} Q(s, A)`` by Dinkelbach's
  method: ``A_{t+1} = top-K of v_i (Q_i - λ_t)`` with ``λ_t = Q(s, A_t)``; ``λ`` rises strictly until no
  slate does better, which happens after finitely many steps (the paper solves the same problem as an LP).

Utilities enter only through ``v_i / v_⊥ = exp(u_i - u0)``, clamped to ``exp(±60)`` so float32 never
overflows; the returned slates list positions into the candidate axis, best first.
"""

from __future__ import annotations

import torch

__all__ = [
    "SLATE_OPTIMIZERS", "choice_probs", "slate_value", "optimise_slates", "random_slates", "td_targets",
    "choice_nll", "click_index",
]

SLATE_OPTIMIZERS = ("topk", "greedy", "exact")
_CLAMP = 60.0
_EXACT_MAX_ITERS = 64


def choice_probs(u_slate: torch.Tensor, u0: torch.Tensor) -> torch.Tensor:
    """``(B, K + 1)`` conditional choice probabilities: column ``j < K`` is slot ``j``, column ``K`` is no click.

    ``u_slate`` ``(B, K)`` utilities of the shown items, ``u0`` ``(B,)`` the no-click utility."""
    return torch.softmax(torch.cat([u_slate, u0.unsqueeze(1)], dim=1), dim=1)


def slate_value(u_slate: torch.Tensor, q_slate: torch.Tensor, u0: torch.Tensor, q0: torch.Tensor) -> torch.Tensor:
    """``(B,)`` decomposed slate value ``Q(s, A) = sum_{i in A ∪ {⊥}} P(i | s, A) Q(s, i)``.

    ``u_slate``/``q_slate`` ``(B, K)`` of the slate's items, ``u0``/``q0`` ``(B,)`` of the null item."""
    p = choice_probs(u_slate, u0)
    return (p[:, :-1] * q_slate).sum(1) + p[:, -1] * q0


def _check_available(mask: torch.Tensor, k: int) -> None:
    avail = mask.sum(1)
    if bool((avail < k).any()):
        row = int(torch.nonzero(avail < k)[0, 0])
        raise ValueError(f"obs['mask'][{row}]: expected at least k={k} unmasked candidates, received {int(avail[row])}")


def _weights(u: torch.Tensor, u0: torch.Tensor) -> torch.Tensor:
    """``v_i / v_⊥`` ``(B, N)`` in float64 (the optimisers compare sums of products of these)."""
    return torch.exp((u.double() - u0.double().unsqueeze(1)).clamp(-_CLAMP, _CLAMP))


def _top(key: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` largest keys among unmasked candidates, best first; ties by lower position."""
    key = key.masked_fill(~mask, float("-inf"))
    # a stable descending sort puts the lower position first among equal keys (topk does not promise it)
    return torch.sort(key, dim=1, descending=True, stable=True).indices[:, :k]


def _ratio(w: torch.Tensor, q: torch.Tensor, q0: torch.Tensor, slate: torch.Tensor) -> torch.Tensor:
    """``(B,)`` slate value from ``v / v_⊥`` weights (float64)."""
    ws = w.gather(1, slate)
    return (q0.double() + (ws * q.double().gather(1, slate)).sum(1)) / (1.0 + ws.sum(1))


def optimise_slates(
    u: torch.Tensor, q: torch.Tensor, u0: torch.Tensor, q0: torch.Tensor, mask: torch.Tensor, k: int,
    method: str = "greedy",
) -> torch.Tensor:
    """``(B, k)`` int64 candidate positions of the best slate by ``method`` (see the module docstring).

    Args:
        u, q: ``(B, N)`` item utilities and item-wise values of the candidates.
        u0, q0: ``(B,)`` the null item's utility and value.
        mask: ``(B, N)`` bool, True = may be recommended.
        k: slate size.
        method: ``"topk"``, ``"greedy"`` or ``"exact"``.
    Raises:
        ValueError: unknown method, NaN inputs, or a row with fewer than ``k`` unmasked candidates.
    """
    if method not in SLATE_OPTIMIZERS:
        raise ValueError(f"slate_optimizer: expected one of {SLATE_OPTIMIZERS}, received {method!r}")
    mask = mask.bool()
    if bool(torch.isnan(u).any() | torch.isnan(q).any() | torch.isnan(u0).any() | torch.isnan(q0).any()):
        raise ValueError("SlateQ: expected finite utilities and values, received NaN (check the agent's inputs)")
    _check_available(mask, k)
    w, qd = _weights(u, u0), q.double()
    if method == "topk":
        return _top(w * qd, mask, k)
    if method == "greedy":
        return _greedy(w, qd, q0.double(), mask, k)
    return _exact(w, qd, q0.double(), mask, k)


def _greedy(w: torch.Tensor, q: torch.Tensor, q0: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    b = w.shape[0]
    num, den = q0.clone(), torch.ones_like(q0)  # running numerator/denominator of Q(s, A), divided by v_⊥
    free = mask.clone()
    picks = torch.empty(b, k, dtype=torch.int64, device=w.device)
    rows = torch.arange(b, device=w.device)
    for j in range(k):
        gain = ((num.unsqueeze(1) + w * q) / (den.unsqueeze(1) + w)).masked_fill(~free, float("-inf"))
        best = gain.argmax(dim=1)  # first maximum: ties go to the lower position
        picks[:, j] = best
        num += w[rows, best] * q[rows, best]
        den += w[rows, best]
        free[rows, best] = False
    return picks


def _exact(w: torch.Tensor, q: torch.Tensor, q0: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    slate = _top(w * q, mask, k)  # any start works; top-K is usually close
    lam = _ratio(w, q, q0, slate)
    for _ in range(_EXACT_MAX_ITERS):
        cand = _top(w * (q - lam.unsqueeze(1)), mask, k)
        val = _ratio(w, q, q0, cand)
        # relative tolerance: float64 round-off must not make two equal slates look like an improvement
        better = val > lam + 1e-12 * (1.0 + lam.abs())
        if not bool(better.any()):
            break
        slate = torch.where(better.unsqueeze(1), cand, slate)
        lam = torch.where(better, val, lam)
    # best first: by the Dinkelbach key at the optimum, v_i (Q_i - Q(s, A*))
    key = (w * (q - lam.unsqueeze(1))).gather(1, slate)
    return slate.gather(1, torch.sort(key, dim=1, descending=True, stable=True).indices)


def random_slates(mask: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(B, k)`` uniformly random ordered slates of distinct unmasked positions (exploration).

    ``generator`` is a CPU ``torch.Generator``; the draws are moved to ``mask``'s device."""
    mask = mask.bool()
    _check_available(mask, k)
    keys = torch.rand(mask.shape, generator=generator).to(mask.device).masked_fill(~mask, -1.0)
    return torch.topk(keys, k, dim=1).indices


def click_index(clicks: torch.Tensor) -> torch.Tensor:
    """``(B,)`` int64 clicked slot of ``clicks`` ``(B, K)`` bool, or ``K`` (the null item) for no click.

    Raises ``ValueError`` on a row with more than one click (SlateQ's single-choice assumption)."""
    n = clicks.sum(1)
    if bool((n > 1).any()):
        row = int(torch.nonzero(n > 1)[0, 0])
        raise ValueError(
            f"clicks[{row}]: SlateQ assumes at most one click per slate (the paper's single-choice assumption), "
            f"received {int(n[row])}; use a single-click choice model (env.choice.model 'mnl' or 'cascade')"
        )
    k = clicks.shape[1]
    return torch.where(n > 0, clicks.to(torch.int8).argmax(dim=1), torch.full_like(n, k)).long()


def choice_nll(u_slate: torch.Tensor, u0: torch.Tensor, click: torch.Tensor) -> torch.Tensor:
    """``(B,)`` negative log-likelihood of the observed choice ``click`` ``(B,)`` (slot, or ``K`` = no click)
    under the multinomial logit with a null item."""
    logits = torch.cat([u_slate, u0.unsqueeze(1)], dim=1)
    return torch.nn.functional.cross_entropy(logits, click, reduction="none")


def td_targets(
    reward: torch.Tensor, bootstrap: torch.Tensor, gamma: float, u_next: torch.Tensor, q_next: torch.Tensor,
    u0_next: torch.Tensor, q0_next: torch.Tensor,
) -> torch.Tensor:
    """``(B,)`` SlateQ TD targets ``r + gamma * bootstrap * sum_{j in A' ∪ {⊥}} P(j | s', A') Q(s', j)``.

    ``reward`` ``(B,)``; ``bootstrap`` ``(B,)`` (0 where the user left: ``terminated``; 1 otherwise, time-limit
    truncations included); ``u_next``/``q_next`` ``(B, K)`` the next slate ``A'``'s utilities and target-network
    values; ``u0_next``/``q0_next`` ``(B,)`` the null item's."""
    return reward + gamma * bootstrap.to(reward.dtype) * slate_value(u_next, q_next, u0_next, q0_next)
