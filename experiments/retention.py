"""Retention metrics of returning users (``env.sessions.count > 1``), streamed from the env's step info.

Per evaluation episode (one per user and episode round) the tracker reads the session signals the core puts
in ``info`` (``session_end``, ``returned``, ``return_gap`` in days, ``session_index``; see
:mod:`recgym.envs.sessions`) and the clicks. Metrics (means over episodes unless said otherwise):

* ``sessions_per_user``: sessions the user started in the episode (1 + returns that opened a session; the
  return that closes the observation window after the last session is not a started session);
* ``retention_d1`` / ``retention_d7``: share of ended sessions followed by a return within 1 / 7 days
  (over all session ends of all users);
* ``return_gap``: mean days between a session's end and the return, over returns;
* ``churn_rate``: share of episodes that ended by churn (no return within ``horizon_days``);
* ``lifetime_clicks``: clicks per episode, over all its sessions.

``curve()`` is the retention curve: the share of episodes that reached session ``s`` (``s = 1 .. count``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["RetentionTracker", "RETENTION_METRICS", "has_sessions"]

RETENTION_METRICS = ("sessions_per_user", "retention_d1", "retention_d7", "return_gap", "churn_rate",
                     "lifetime_clicks")


def has_sessions(info: Mapping[str, Any]) -> bool:
    """Whether a step's info carries the session signals of returning users."""
    return "session_end" in info


class RetentionTracker:
    """Accumulates the retention metrics of the module docstring over batched steps of ``B`` users."""

    def __init__(self, count: int) -> None:
        self.count = int(count)
        self._episodes: list[np.ndarray] = []  # per finished round: (B, 4) sessions, churned, clicks, _
        self.ends = 0
        self.returns = 0
        self.within = {1: 0, 7: 0}
        self.gap_sum = 0.0
        self._cur: np.ndarray | None = None

    def start(self, batch: int) -> None:
        """A new round of ``batch`` episodes (one per row)."""
        self._flush()
        self._cur = np.zeros((batch, 3))
        self._cur[:, 0] = 1.0  # every episode starts its first session

    def update(self, info: Mapping[str, Any], active: np.ndarray, terminated: np.ndarray) -> None:
        """One step: ``info`` the step's info, ``active`` ``(B,)`` rows still in their episode before the
        step, ``terminated`` ``(B,)`` the step's churn flags."""
        if self._cur is None:
            raise RuntimeError("RetentionTracker.update before start()")
        a = np.asarray(active, dtype=bool)
        end = np.asarray(info["session_end"], dtype=bool) & a
        ret = np.asarray(info["returned"], dtype=bool) & a
        gap = np.asarray(info["return_gap"], dtype=np.float64)
        index = np.asarray(info["session_index"], dtype=np.int64)
        self.ends += int(end.sum())
        self.returns += int(ret.sum())
        self.gap_sum += float(gap[ret].sum())
        for d in self.within:
            self.within[d] += int((ret & (gap <= d)).sum())
        self._cur[:, 0] += ret & (index + 1 < self.count)
        self._cur[:, 1] = np.maximum(self._cur[:, 1], np.asarray(terminated, dtype=bool) & a)
        self._cur[:, 2] += np.asarray(info["clicks"], dtype=np.float64).reshape(len(a), -1).sum(1) * a

    def _flush(self) -> None:
        if self._cur is not None:
            self._episodes.append(self._cur)
            self._cur = None

    def result(self) -> dict[str, float]:
        self._flush()
        if not self._episodes:
            return {m: float("nan") for m in RETENTION_METRICS}
        ep = np.concatenate(self._episodes)
        nan = float("nan")
        return {
            "sessions_per_user": float(ep[:, 0].mean()),
            "retention_d1": self.within[1] / self.ends if self.ends else nan,
            "retention_d7": self.within[7] / self.ends if self.ends else nan,
            "return_gap": self.gap_sum / self.returns if self.returns else nan,
            "churn_rate": float(ep[:, 1].mean()),
            "lifetime_clicks": float(ep[:, 2].mean()),
        }

    def curve(self) -> np.ndarray:
        """``(count,)`` share of episodes that reached session ``1 .. count``."""
        self._flush()
        if not self._episodes:
            return np.full(self.count, np.nan)
        sessions = np.concatenate(self._episodes)[:, 0]
        return np.array([(sessions >= s).mean() for s in range(1, self.count + 1)])
