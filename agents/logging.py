"""Logged interaction data: the ``.npz`` format the offline baselines ``fit`` on, and a logging runner.

Format (``recgym-log`` version 1; one row per shown slate, ``T`` rows, ``K`` slots, ``N`` candidates):

============== ============ ========= ====================================================================
key            shape        dtype     meaning
============== ============ ========= ====================================================================
user           (T,)         int64     user id (any stable id; real logs: your ids mapped to 0..U-1)
profile        (T, d)       float32   the user's LM profile vector at that step
history        (T, d)       float32   the user's history summary (zeros for a new user)
context        (T, C)       float32   budget fraction, step fraction, last click rate, cold flag (+ session
                                      features with returning users: C = 7)
candidates     (T, N)       int64     item indices (rows of ``item_embeddings``) offered to the logger
mask           (T, N)       int8      1 = could be recommended
slate          (T, K)       int64     positions into ``candidates``, in display order
slate_items    (T, K)       int64     item indices shown (``candidates[slate]``)
clicks         (T, K)       int8      1 = clicked
propensity     (T, K)       float32   P(logging policy puts this item at this position | context)
reward         (T,)         float32   the env reward of the step
item_feedback  (T, 3N)     float32   optional: the platform's feedback of each candidate (impressions, clicks,
                                      mean dwell; envs with ``feedback.enabled``)
item_embeddings (M, d)      float32   the item table (optional: the env's table)
meta           ()           str       JSON: format, version, logging agent, epsilon, seed, env config
============== ============ ========= ====================================================================

Real logs without candidates/propensities: set ``candidates = slate_items`` padded as needed, ``mask`` ones,
``propensity`` nan.

Values are checked on construction and on :meth:`LoggedData.load`: profiles, histories, contexts, rewards
and item embeddings finite; propensities in (0, 1] (or NaN = unknown); clicks and mask 0/1; ids
non-negative. :meth:`LoggedData.load` reads with ``allow_pickle=False`` (an object array is refused with
:class:`~recgym.common.errors.UnsafeFileError`, nothing is unpickled) and raises
:class:`~recgym.common.errors.CorruptFileError` naming the file and the field for a missing array, a wrong
dtype or shape, a bad value, a bad ``meta`` or a truncated archive. The logging policy used here is epsilon-mixed: with probability ``epsilon`` a row's
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
from recgym.common.errors import CorruptFileError
from recgym.common.io import atomic_write_bytes, load_npz_arrays
from recgym.envs.core import CONTEXT_FEATURES
from recgym.envs.sessions import SESSION_CONTEXT

# obs['context'] widths: one-session envs, and envs with returning users (session features appended)
_CONTEXT_WIDTHS = (len(CONTEXT_FEATURES), len(CONTEXT_FEATURES) + len(SESSION_CONTEXT))

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
    item_feedback: np.ndarray | None = None

    def __post_init__(self) -> None:
        for key, dtype in _ARRAYS.items():
            setattr(self, key, np.asarray(getattr(self, key)).astype(dtype, copy=False))
        t = len(self.user)
        k = self.slate.shape[1] if self.slate.ndim == 2 else -1
        n = self.candidates.shape[1] if self.candidates.ndim == 2 else -1
        c = self.context.shape[1] if self.context.ndim == 2 else -1
        shapes = {
            "user": (t,), "context": (t, c if c in _CONTEXT_WIDTHS else _CONTEXT_WIDTHS[0]), "candidates": (t, n),
            "mask": (t, n), "slate": (t, k),
            "slate_items": (t, k), "clicks": (t, k), "propensity": (t, k), "reward": (t,),
        }
        for key, shape in shapes.items():
            if getattr(self, key).shape != shape:
                raise ValueError(f"LoggedData.{key}: expected shape {shape}, received {getattr(self, key).shape}")
        if self.item_feedback is not None:
            self.item_feedback = np.asarray(self.item_feedback).astype(np.float32, copy=False)
            if self.item_feedback.shape != (t, 3 * n):
                raise ValueError(f"LoggedData.item_feedback: expected shape {(t, 3 * n)} (N x 3 per row), received "
                                 f"{self.item_feedback.shape}")
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
            self.item_embeddings = np.asarray(self.item_embeddings)
            emb = self.item_embeddings
            if emb.ndim != 2 or (t and emb.shape[1] != self.profile.shape[1]):
                raise ValueError(f"LoggedData.item_embeddings: expected shape (M, {self.profile.shape[1]}) like the "
                                 f"profiles, received {emb.shape}")
            m = len(emb)
            if t and (self.candidates.min() < 0 or self.candidates.max() >= m):
                raise ValueError(f"LoggedData.candidates: expected item indices in [0, {m}), received out-of-range ids")
        self._check_values()

    def _check_values(self) -> None:
        """Values a learner would silently mis-train on: non-finite vectors/rewards, impossible propensities."""
        def first_row(bad: np.ndarray) -> int:
            return int(np.flatnonzero(bad.reshape(len(bad), -1).any(1))[0])

        finite = ["profile", "history", "context", "reward"]
        if self.item_embeddings is not None:
            finite.append("item_embeddings")
        if self.item_feedback is not None:
            finite.append("item_feedback")
        for key in finite:
            arr = np.asarray(getattr(self, key))
            if arr.size and not np.isfinite(arr).all():
                raise ValueError(f"LoggedData.{key}: expected finite values, received NaN/inf "
                                 f"(first at row {first_row(~np.isfinite(arr))})")
        p = self.propensity
        bad = ~np.isnan(p) & ((p <= 0) | (p > 1))
        if bad.any():
            r = first_row(bad)
            raise ValueError(f"LoggedData.propensity: expected values in (0, 1] or NaN (unknown), received "
                             f"{float(p[r][bad[r]][0])} at row {r}")
        for key in ("clicks", "mask"):
            arr = getattr(self, key)
            if arr.size and ((arr < 0) | (arr > 1)).any():
                raise ValueError(f"LoggedData.{key}: expected 0/1 values, received {sorted(set(np.unique(arr).tolist()))[:5]}")
        for key in ("user", "candidates"):
            arr = getattr(self, key)
            if arr.size and arr.min() < 0:
                raise ValueError(f"LoggedData.{key}: expected non-negative ids, received {int(arr.min())}")

    def __len__(self) -> int:
        return len(self.user)

    def save(self, path: str | Path) -> Path:
        """Write the ``.npz`` atomically (meta last in the archive; nothing visible until complete)."""
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        if self.item_embeddings is not None:
            arrays["item_embeddings"] = np.asarray(self.item_embeddings, np.float32)
        if self.item_feedback is not None:
            arrays["item_feedback"] = self.item_feedback
        meta = {"format": LOG_FORMAT, "version": LOG_VERSION, **self.meta}
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays, meta=np.array(json.dumps(meta, sort_keys=True, default=str)))
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> LoggedData:
        """Read a ``recgym-log`` ``.npz`` without unpickling anything; every field is checked (see the module
        docstring). Raises ``FileNotFoundError``, :class:`UnsafeFileError` or :class:`CorruptFileError`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"LoggedData.load: expected a {LOG_FORMAT} .npz file, {path} does not exist")
        z = load_npz_arrays(path, what=f"{LOG_FORMAT} file")
        where = f"LoggedData.load({path})"
        if "meta" not in z:
            raise CorruptFileError(f"{where}: field 'meta': expected a JSON string, received nothing (missing); "
                                   f"not a {LOG_FORMAT} file")
        raw_meta = z["meta"]
        if raw_meta.ndim != 0 or raw_meta.dtype.kind != "U":
            raise CorruptFileError(f"{where}: field 'meta': expected a 0-d string array, received dtype "
                                   f"{raw_meta.dtype} shape {raw_meta.shape}")
        try:
            meta = json.loads(str(raw_meta))
        except (ValueError, RecursionError) as exc:
            raise CorruptFileError(f"{where}: field 'meta': expected JSON, received unreadable text ({exc})") from None
        if not isinstance(meta, dict):
            raise CorruptFileError(f"{where}: field 'meta': expected a JSON object, received {type(meta).__name__}")
        version = meta.get("version", 0)
        if meta.get("format") != LOG_FORMAT or not isinstance(version, int) or not 1 <= version <= LOG_VERSION:
            raise CorruptFileError(
                f"{where}: field 'meta': expected format {LOG_FORMAT!r} version 1..{LOG_VERSION}, "
                f"received {meta.get('format')!r:.60} version {version!r:.20}"
            )
        missing = [k for k in _ARRAYS if k not in z]
        if missing:
            raise CorruptFileError(f"{where}: fields {missing}: expected arrays, received nothing (missing)")
        for key, dtype in {**_ARRAYS, "item_embeddings": np.float32, "item_feedback": np.float32}.items():
            if key not in z:
                continue
            kind = z[key].dtype.kind
            allowed = "f" if np.dtype(dtype).kind == "f" else ("iub" if key in ("clicks", "mask") else "iu")
            if kind not in allowed:
                raise CorruptFileError(f"{where}: field {key!r}: expected a {np.dtype(dtype).name}-compatible array, "
                                       f"received dtype {z[key].dtype}")
        try:
            return cls(**{k: z[k] for k in _ARRAYS}, item_embeddings=z.get("item_embeddings"), meta=meta,
                       item_feedback=z.get("item_feedback"))
        except ValueError as exc:
            raise CorruptFileError(f"{where}: {exc}") from None


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
    if "item_feedback" in obs:
        rows["item_feedback"] = []
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
        if "item_feedback" in obs:
            step["item_feedback"] = obs["item_feedback"]
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
