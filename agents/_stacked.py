"""The candidate scorer of S independent agents as one module of stacked parameters (seed-batched training).

:class:`StackedScorer` holds the parameters of S :class:`~recgym.agents.scorer.CandidateScorer` networks of
the same shape as ``(S, ...)`` tensors (one leading seed axis; S = 1 is one agent) and evaluates all S on
their own observations ``(S, B, ...)`` with batched matrix products - "grouped modules" rather than
``torch.func.vmap``, which measured slower on CPU than S separate module calls (352 vs 222 ms for a 1,024-row
forward and backward of S = 5, one thread). It computes exactly :meth:`CandidateScorer.forward` for every
seed (tested against the module), so its state loads into / comes from plain scorers (:meth:`from_scorers`,
:meth:`scorer_state`) and the saved agent is the usual one.

Speed: the per-candidate layer ``z = relu(u_a + P_a[c] + u_g * P_g[c] + W_x x)`` over ``(S, B, N, h)`` is the
memory-bound core of a PPO update. :class:`_CandidateLayer` computes it with a hand-written backward
that makes fewer passes over ``(S, B, N, h)`` than autograd's (one product forms ``dL/dz`` from the score
and value-pool gradients; the gather's gradient is one accumulating ``index_put_``), and the whole item
table is projected once per forward (per rollout when no gradient is needed: :meth:`project`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from recgym.agents.scorer import COS_KEY, FEEDBACK_KEY, CandidateScorer, feedback_features

__all__ = ["StackedScorer"]

# CandidateScorer's parameter names (its state_dict keys), in the order StackedScorer keeps them.
_PARAMS = (
    "user.0.weight", "user.0.bias", "user.2.weight", "user.2.bias", "item.weight", "item.bias", "inter.weight",
    "out.weight", "out.bias", "value.0.weight", "value.0.bias", "value.2.weight", "value.2.bias",
)
# The feedback-table input of a scorer built for an env with env.feedback.enabled (CandidateScorer.feedback).
_FEEDBACK_PARAMS = ("feedback.weight", "feedback.bias")


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x`` ``(S, R, in)`` through S linear layers ``weight`` ``(S, out, in)``, ``bias`` ``(S, out)``."""
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class _CandidateLayer(torch.autograd.Function):
    """``scores (S, B, N)`` and the masked mean ``pooled (S, B, h)`` of ``z = relu(ua + Pa[c] + ug * Pg[c] +
    x Wx^T)``, with ``scores = z w + b``. Inputs: ``ua``/``ug`` ``(S, B, h)``, ``proj`` ``(S * M, 2h)`` (the
    seeds' item projections stacked), ``rows`` ``(S * B * N,)`` int64 rows of ``proj``, ``x`` ``(S, B, N, f)``,
    ``wx`` ``(S, h, f)``, ``w`` ``(S, h)``, ``b`` ``(S, 1)``, ``pool_w`` ``(S, B, N)`` (mask / count) and ``q``
    ``(S, B, N, 2h)`` or ``None``: the feedback part ``[Q_a, Q_g]`` added to the candidates' ``[P_a[c], P_g[c]]``.
    No gradient flows to ``rows``, ``x`` or ``pool_w`` (data)."""

    @staticmethod
    def forward(ctx, ua, ug, proj, rows, x, wx, w, b, pool_w, q=None):  # noqa: ANN001, ANN205 - autograd signature
        s, bsz, h = ua.shape
        n, f = x.shape[2], x.shape[3]
        pc = proj.index_select(0, rows).view(s, bsz, n, 2 * h)
        if q is not None:
            pc = pc + q
        pg = pc[..., h:]
        z = torch.bmm(x.reshape(s, bsz * n, f), wx.transpose(1, 2)).view(s, bsz, n, h)
        z += pc[..., :h]
        z += ua.unsqueeze(2)
        z.addcmul_(ug.unsqueeze(2), pg)
        z.relu_()
        zf = z.view(s, bsz * n, h)
        scores = torch.baddbmm(b.unsqueeze(1), zf, w.unsqueeze(2)).view(s, bsz, n)
        pooled = torch.bmm(pool_w.reshape(s * bsz, 1, n), z.view(s * bsz, n, h)).view(s, bsz, h)
        ctx.save_for_backward(ug, pc, rows, x, w, pool_w, z)
        ctx.num_rows = proj.shape[0]
        ctx.has_q = q is not None
        return scores, pooled

    @staticmethod
    def backward(ctx, g_scores, g_pooled):  # noqa: ANN001, ANN205
        ug, pc, rows, x, w, pool_w, z = ctx.saved_tensors
        s, bsz, n, h = z.shape
        f = x.shape[3]
        # dL/dz = g_scores (x) w + pool_w (x) g_pooled: one (S*B, N, 2) x (S*B, 2, h) product, then the ReLU mask.
        left = torch.stack([g_scores, pool_w], dim=3).view(s * bsz, n, 2)
        right = torch.stack([w.unsqueeze(1).expand(s, bsz, h), g_pooled], dim=2).view(s * bsz, 2, h)
        gz = torch.ops.aten.threshold_backward(torch.bmm(left, right).view(s, bsz, n, h), z, 0.0)
        g_ua = gz.sum(2)
        g_ug = torch.mul(gz, pc[..., h:]).sum(2)
        g_pa = torch.zeros((ctx.num_rows, h), dtype=gz.dtype, device=gz.device)
        g_pa.index_put_((rows,), gz.view(-1, h), accumulate=True)
        g_pg = torch.zeros_like(g_pa)
        gz_g = torch.mul(gz, ug.unsqueeze(2))  # dL/dP_g[c] = dL/dQ_g per candidate
        g_pg.index_put_((rows,), gz_g.view(-1, h), accumulate=True)
        g_proj = torch.cat([g_pa, g_pg], dim=1)
        g_q = torch.cat([gz, gz_g], dim=3) if ctx.has_q else None
        gzf = gz.view(s, bsz * n, h)
        g_wx = torch.bmm(x.reshape(s, bsz * n, f).transpose(1, 2), gzf).transpose(1, 2)  # (f, R) x (R, h): fast layout
        zf = z.view(s, bsz * n, h)
        g_w = torch.bmm(g_scores.reshape(s, 1, bsz * n), zf).squeeze(1)
        g_b = g_scores.sum((1, 2)).unsqueeze(1)
        return g_ua, g_ug, g_proj, None, None, g_wx, g_w, g_b, None, g_q


class StackedScorer(nn.Module):
    """S candidate scorers with a value head (:class:`CandidateScorer` ``value_head=True``) as stacked
    parameters; see the module docstring.

    Args:
        item_embeddings: ``(M, d)`` float32 frozen LM item table (shared by the S seeds).
        item_features: ``(M, f)`` float32 public item features or ``None``.
        states: S ``CandidateScorer`` state dicts (the initial weights of each seed).
        hidden: width h of the scorers.
    """

    def __init__(self, template: CandidateScorer, states: Sequence[Mapping[str, torch.Tensor]]) -> None:
        super().__init__()
        if template.value is None:
            raise ValueError("StackedScorer: expected a CandidateScorer with a value head (value_head=True)")
        if not states:
            raise ValueError("StackedScorer: expected the states of at least one scorer, received none")
        self.hidden = template.hidden
        self.num_item_features = template.num_item_features
        self.register_buffer("item_table", template.item_table.clone(), persistent=False)
        self.register_buffer("item_feat", template.item_feat.clone(), persistent=False)
        self.register_buffer("item_unit", template.item_unit.clone(), persistent=False)
        self.has_feedback = template.feedback is not None
        self.param_names = _PARAMS + (_FEEDBACK_PARAMS if self.has_feedback else ())  # CandidateScorer state-dict keys
        self.params = nn.ParameterDict()
        for name in self.param_names:
            stacked = torch.stack([st[name].detach().to(template.item_table.device, torch.float32) for st in states])
            self.params[name.replace(".", "_")] = nn.Parameter(stacked)

    @classmethod
    def from_scorers(cls, scorers: Sequence[CandidateScorer]) -> StackedScorer:
        """Stack ``scorers`` (same shapes, same item table) into one module (their weights are copied). A scorer
        with parameters this module does not compute is refused: it would be trained without them."""
        known = set(_PARAMS) | (set(_FEEDBACK_PARAMS) if scorers[0].feedback is not None else set())
        extra = sorted(set(scorers[0].state_dict()) - known)
        if extra:
            raise ValueError(f"trainer='fast': expected a CandidateScorer's parameters, received also {', '.join(extra)}, "
                             "which the fast trainer does not compute; use trainer='sb3'")
        return cls(scorers[0], [sc.state_dict() for sc in scorers])

    @property
    def num_seeds(self) -> int:
        return int(self.p("out.bias").shape[0])

    def p(self, name: str) -> torch.Tensor:
        """The ``(S, ...)`` parameter of the scorer parameter ``name`` (a ``CandidateScorer`` state-dict key)."""
        return self.params[name.replace(".", "_")]

    def scorer_state(self, seed: int) -> dict[str, torch.Tensor]:
        """Seed ``seed``'s weights as a ``CandidateScorer`` state dict (detached copies)."""
        return {name: self.p(name)[seed].detach().clone() for name in self.param_names}

    def load_scorer_state(self, seed: int, state: Mapping[str, torch.Tensor]) -> None:
        """Overwrite seed ``seed``'s weights with a ``CandidateScorer`` state dict."""
        missing = [k for k in self.param_names if k not in state]
        if missing:
            raise KeyError(f"scorer state: missing {missing}")
        with torch.no_grad():
            for name in self.param_names:
                self.p(name)[seed].copy_(state[name])

    # ------------------------------------------------------------------ forward
    def project(self) -> torch.Tensor:
        """``(S, M, 2h)`` per-item part of the candidate layer: the item layer over the whole table, with the
        public item features' share of the interaction layer folded into its first half (``W_x x`` splits into
        a cosine part, per candidate, and a feature part that depends on the item only)."""
        w, b = self.p("item.weight"), self.p("item.bias")
        s, h = w.shape[0], self.hidden
        proj = torch.baddbmm(b.unsqueeze(1), self.item_table.expand(s, -1, -1), w.transpose(1, 2))
        if not self.num_item_features:
            return proj
        feat_w = self.p("inter.weight")[:, :, 2:]  # (S, h, f)
        pa = torch.baddbmm(proj[..., :h], self.item_feat.expand(s, -1, -1), feat_w.transpose(1, 2))
        return torch.cat([pa, proj[..., h:]], dim=2)

    def forward(self, obs: Mapping[str, torch.Tensor],
                proj: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores (S, B, N) float32 - unmasked; value (S, B))`` of the S scorers on their observations.

        ``obs``: ``profile``/``history`` ``(S, B, d)``, ``context`` ``(S, B, 4)``, ``candidates`` ``(S, B, N)``
        int64, ``mask`` ``(S, B, N)`` and the cosine features ``obs["_cos"]`` ``(S, B, N, 2)`` (required: the
        trainer computes them once per step, :class:`~recgym.agents._rollout.CosineCache`); with the feedback input
        also ``item_feedback`` ``(S, B, 3N)`` float32. ``proj``: a precomputed :meth:`project` (valid while the
        weights do not change), else computed here.
        """
        p = self.p
        h = self.hidden
        cand = obs["candidates"]
        s, bsz, n = cand.shape
        user_in = torch.cat([obs["profile"], obs["history"], obs["context"]], dim=2).to(torch.float32)
        u = _linear(torch.relu(_linear(user_in, p("user.0.weight"), p("user.0.bias"))), p("user.2.weight"),
                    p("user.2.bias"))
        ua, ug = u.split(h, dim=2)
        proj = self.project() if proj is None else proj
        m = proj.shape[1]
        offsets = torch.arange(s, device=cand.device, dtype=torch.int64).mul_(m).view(s, 1, 1)
        rows = (cand + offsets).reshape(-1)
        cos = obs[COS_KEY].to(torch.float32).contiguous()
        allowed = (obs["mask"] > 0).to(torch.float32)
        pool_w = allowed / allowed.sum(2, keepdim=True).clamp_min(1.0)
        q = None
        if self.has_feedback:  # CandidateScorer's Q = W_q feedback_features(rows), per candidate
            if FEEDBACK_KEY not in obs:
                raise KeyError(f"obs: expected {FEEDBACK_KEY!r} (the scorer was built for an env with feedback.enabled)")
            feats = feedback_features(obs[FEEDBACK_KEY].reshape(s, bsz * n, 3))
            q = _linear(feats, p("feedback.weight"), p("feedback.bias")).view(s, bsz, n, 2 * h)
        scores, pooled = _CandidateLayer.apply(
            ua, ug, proj.reshape(s * m, 2 * h), rows, cos, p("inter.weight")[:, :, :2], p("out.weight").squeeze(1),
            p("out.bias"), pool_w, q,
        )
        hidden = torch.relu(_linear(torch.cat([ua, ug, pooled], dim=2), p("value.0.weight"), p("value.0.bias")))
        value = _linear(hidden, p("value.2.weight"), p("value.2.bias")).squeeze(2)
        return scores, value
