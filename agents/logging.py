"""Logged interaction data: the ``.npz`` format the offline baselines ``fit`` on, and a logging runner.

Format (``recgym-log`` version 1; one row per shown slate, ``T`` rows, ``K`` slots, ``N`` candidates):

============== ============ ========= ====================================================================
key            shape        dtype     meaning
============== ============ ========= ====================================================================
user           (T,)         int64     user id (any stable id; real logs: your ids mapped to 0..U-1)
profile        (T, d)       float32   the user's LM profile vector at that step
history        (T, d)       float32   the user's history summary (zeros for a new user)
context        (T, 4)       float32   budget fraction, step fraction, last click rate, cold flag
candidates     (T, N)       int64     item indices (rows of ``item_embeddings``) offered to the logger
mask           (T, N)       int8      1 = could be recommended
slate          (T, K)       int64     positions into ``candidates``, in display order
slate_items    (T, K)       int64     item indices shown (``candidates[slate]``)
clicks         (T, K)       int8      1 = clicked
propensity     (T, K)       float32   P(logging policy puts this item at this position | context)
reward         (T,)         float32   the env reward of the step
item_embeddings (M, d)      float32   the item table (optional: the env's table)
meta           ()           str       JSON: format, version, logging agent, epsilon, seed, env config
============== ============ ========= ====================================================================

Real logs without candidates/propensities: set ``candidates = slate_items`` padded as needed, ``mask`` ones,
``propensity`` nan. The logging policy used here is epsilon-mixed: with probability ``epsilon`` a row's
slate is a uniformly random ordered slate of unmasked candidates, otherwise the agent's slate, so
``propensity = (1 - eps) 1[item = agent's item at that slot] + eps / n_unmasked`` (exact when the wrapped
agent is deterministic given the observation; for a stochastic agent the first term is its own rank).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recgym.agents.base import Recommender, slate_to_action
from recgym.common.io import atomic_write_bytes

__all__ = ["LoggedData", "collect_logs", "LOG_FORMAT", "LOG_VERSION"]

LOG_FORMAT = "recgym-log"
LOG_VERSION = 1
_ARRAYS = {
    "user": np.int64, "profile": np.float32, "history": np.float32, "context": np.float32,
    "candidates": np.int64, "mask": np.int8, "slate": np.int64, "slate_items": np.int64, "clicks": np.int8,
    "propensity": np.float32, "reward": np.float32,
}


@dataclass
class LoggedData:
    """Validated logged interactions (see the module docstring for every field)."""

    user: np.ndarray
    profile: np.ndarray
    history: np.ndarray
    context: np.ndarray
    candidates: np.ndarray
    mask: np.ndarray
    slate: np.ndarray
    slate_items: np.ndarray
    clicks: np.ndarray
    propensity: np.ndarray
    reward: np.ndarray
    item_embeddings: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, dtype in _ARRAYS.items():
            setattr(self, key, np.asarray(getattr(self, key)).astype(dtype, copy=False))
        t = len(self.user)
        k = self.slate.shape[1] if self.slate.ndim == 2 else -1
        n = self.candidates.shape[1] if self.candidates.ndim == 2 else -1
        shapes = {
            "user": (t,), "context": (t, 4), "candidates": (t, n), "mask": (t, n), "slate": (t, k),
            "slate_items": (t, k), "clicks": (t, k), "propensity": (t, k), "reward": (t,),
        }
        for key, shape in shapes.items():
            if getattr(self, key).shape != shape:
                raise ValueError(f"LoggedData.{key}: expected shape {shape}, received {getattr(self, key).shape}")
        if self.profile.shape != self.history.shape or self.profile.ndim != 2 or len(self.profile) != t:
            raise ValueError(
                f"LoggedData.profile/history: expected equal shapes (T={t}, d), received "
                f"{self.profile.shape} and {self.history.shape}"
            )
        if t and ((self.slate < 0).any() or (self.slate >= n).any()):
            raise ValueError(f"LoggedData.slate: expected positions in [0, {n}), received out-of-range values")
        if t and not np.array_equal(np.take_along_axis(self.candidates, self.slate, 1), self.slate_items):
            raise ValueError("LoggedData.slate_items: expected candidates[slate], received different items")
        if self.item_embeddings is not None:
            m = len(self.item_embeddings)
            if t and (self.candidates.min() < 0 or self.candidates.max() >= m):
                raise ValueError(f"LoggedData.candidates: expected item indices in [0, {m}), received out-of-range ids")

    def __len__(self) -> int:
        return len(self.user)

    def save(self, path: str | Path) -> Path:
        """Write the ``.npz`` atomically (meta last in the archive; nothing visible until complete)."""
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        if self.item_embeddings is not None:
            arrays["item_embeddings"] = np.asarray(self.item_embeddings, np.float32)
        meta = {"format": LOG_FORMAT, "version": LOG_VERSION, **self.meta}
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays, meta=np.array(json.dumps(meta, sort_keys=True, default=str)))
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> LoggedData:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"LoggedData.load: expected a {LOG_FORMAT} .npz file, {path} does not exist")
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise ValueError(f"LoggedData.load({path}): missing 'meta'; not a {LOG_FORMAT} file")
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != LOG_FORMAT or int(meta.get("version", 0)) > LOG_VERSION:
                raise ValueError(
                    f"LoggedData.load({path}): expected format {LOG_FORMAT!r} version <= {LOG_VERSION}, "
                    f"received {meta.get('format')!r} version {meta.get('version')}"
                )
            missing = [k for k in _ARRAYS if k not in z.files]
            if missing:
                raise ValueError(f"LoggedData.load({path}): missing arrays {missing}")
            arrays = {k: z[k] for k in _ARRAYS}
            emb = z["item_embeddings"] if "item_embeddings" in z.files else None
        return cls(**arrays, item_embeddings=emb, meta=meta)


def collect_logs(
    agent: Recommender,
    env: Any,
    num_steps: int,
    *,
    epsilon: float = 0.1,
    seed: int = 0,
    path: str | Path | None = None,
    online_update: bool = True,
) -> LoggedData:
    """Run ``agent`` epsilon-mixed as the logging policy on a ``RankingVectorEnv`` (``next_step`` autoreset)
    for ``num_steps`` vector steps; return (and, with ``path``, save) the log.

    Rows of users being auto-reset (ignored actions) are dropped. ``online_update`` feeds the feedback to
    ``agent.update`` (e.g. popularity counts grow while logging).
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon: expected 0 <= epsilon <= 1, received {epsilon}")
    cfg = env.config
    k, n = cfg.slate_size, cfg.num_candidates
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    rows: dict[str, list[np.ndarray]] = {key: [] for key in _ARRAYS}
    for _ in range(num_steps):
        mask = obs["mask"].astype(bool)
        b = mask.shape[0]
        greedy = agent.rank(obs, k)
        keys = np.where(mask, rng.random(mask.shape), -1.0)
        random_slate = np.argsort(-keys, axis=1, kind="stable")[:, :k]
        explore = rng.random(b) < epsilon
        slate = np.where(explore[:, None], random_slate, greedy)
        n_valid = mask.sum(1, keepdims=True).astype(np.float64)
        prop = (1.0 - epsilon) * (slate == greedy) + epsilon / n_valid
        next_obs, reward, _term, _trunc, info = env.step(slate_to_action(slate, cfg.action_type, n))
        if online_update:
            agent.update(obs, slate, info)
        valid = np.asarray(info.get("_clicks", np.ones(b, bool)), dtype=bool)
        step = {
            "user": info["user"], "profile": obs["profile"], "history": obs["history"], "context": obs["context"],
            "candidates": obs["candidates"], "mask": obs["mask"], "slate": slate, "slate_items": info["slate_items"],
            "clicks": info["clicks"], "propensity": prop, "reward": reward,
        }
        for key, value in step.items():
            rows[key].append(np.asarray(value)[valid])
        obs = next_obs
    arrays: Mapping[str, np.ndarray] = {key: np.concatenate(v, axis=0) for key, v in rows.items()}
    meta = {
        "logging_agent": agent.name, "agent_config": agent.config.model_dump(), "epsilon": epsilon, "seed": seed,
        "num_steps": num_steps, "env_config": cfg.model_dump(),
    }
    data = LoggedData(**arrays, item_embeddings=np.asarray(env.item_embeddings), meta=meta)
    if path is not None:
        data.save(path)
    return data
