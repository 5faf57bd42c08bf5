"""The :class:`Recommender` contract, the agent registry and the :func:`make_agent` factory.

Every agent - RL (PPO, DQN) or baseline - ranks through one batched call::

    slate = agent.rank(obs, k)      # obs: dict of (B, ...) arrays -> (B, k) int64 candidate positions

The slate holds distinct, unmasked positions into ``obs["candidates"]``, best first. Agents that learn
from logs implement :meth:`Recommender.fit` (``learns_offline``); online learners implement
:meth:`Recommender.update` (``learns_online``); RL agents train on an environment with ``learn``.
:meth:`Recommender.save` / :func:`load_agent` round-trip an agent in one file (atomic write, with the agent
name, its typed config, the package version and a hash of the item table it was built on).
"""

from __future__ import annotations

import hashlib
import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from recgym.common.config import ConfigError, StrictModel, suggest
from recgym.common.device import resolve_device
from recgym.common.io import atomic_write_bytes

__all__ = [
    "AgentConfig",
    "EnvSpec",
    "Recommender",
    "IncompatibleEnvError",
    "AGENTS",
    "register",
    "make_agent",
    "load_agent",
    "check_compatible",
    "masked_top_k",
    "slate_to_action",
    "as_batched_obs",
]

FORMAT = "recgym-agent"
FORMAT_VERSION = 1
OBS_KEYS = ("profile", "history", "context", "candidates", "mask")


class IncompatibleEnvError(ConfigError):
    """An agent cannot train on the env's action space; the message names the compatible variant."""


class AgentConfig(StrictModel):
    """Fields every agent accepts. ``seed`` feeds the agent's own RNG (never the global ones)."""

    config_path: ClassVar[str] = "agent"
    seed: int = Field(0, ge=0, description="seed of the agent's one RNG (numpy Generator / torch Generator)")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:N'")


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about an env. ``item_embeddings`` ``(M, d)`` float32 read-only;
    ``item_features`` ``(M, F)`` float32 public per-item features (the env's ``item_features``: popularity
    percentile of the prior, new-item flag) or ``None`` when the env has none."""

    item_embeddings: np.ndarray
    num_candidates: int
    slate_size: int
    action_type: str
    oracle: Callable[[], np.ndarray] | None = None
    item_features: np.ndarray | None = None

    @property
    def num_items(self) -> int:
        return int(self.item_embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.item_embeddings.shape[1])

    @property
    def table_hash(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.item_embeddings).tobytes()).hexdigest()[:16]

    @classmethod
    def from_env(cls, env: Any) -> EnvSpec:
        """Read the spec from a ``RankingEnv``, ``RankingVectorEnv``, ``RankingSB3VecEnv`` or a wrapper of one."""
        base = env
        for _ in range(16):  # unwrap gymnasium wrappers and SB3 VecEnv wrappers
            if hasattr(base, "config") and hasattr(base, "item_embeddings") and hasattr(base, "oracle_scores"):
                break
            nxt = getattr(base, "venv", None) or getattr(base, "env", None) or getattr(base, "unwrapped", None)
            if nxt is None or nxt is base:
                break
            base = nxt
        if not (hasattr(base, "config") and hasattr(base, "item_embeddings")):
            raise TypeError(
                f"env: expected a recgym ranking env (RankingEnv, RankingVectorEnv, RankingSB3VecEnv or a "
                f"wrapper of one), received {type(env).__name__}"
            )
        cfg = base.config
        emb = np.asarray(base.item_embeddings, dtype=np.float32)
        feats = getattr(base, "item_features", None)
        feats = None if feats is None else np.asarray(feats, dtype=np.float32)
        return cls(
            emb, int(cfg.num_candidates), int(cfg.slate_size), str(cfg.action_type), base.oracle_scores, feats
        )

    def meta(self) -> dict[str, Any]:
        return {
            "num_items": self.num_items, "dim": self.dim, "num_candidates": self.num_candidates,
            "slate_size": self.slate_size, "action_type": self.action_type, "table_hash": self.table_hash,
        }


# ------------------------------------------------------------------------------------------- helpers
def as_batched_obs(obs: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
    """Validate an observation dict; add a batch dim to a single-env observation.

    Returns ``(obs with (B, ...) numpy arrays, was_single)``.
    """
    missing = [k for k in OBS_KEYS if k not in obs]
    if missing:
        raise KeyError(f"obs: expected keys {OBS_KEYS}, missing {missing}")
    out = {k: np.asarray(obs[k]) if not isinstance(obs[k], torch.Tensor) else obs[k].cpu().numpy() for k in OBS_KEYS}
    single = out["candidates"].ndim == 1
    if single:
        out = {k: v[None] for k, v in out.items()}
    b, n = out["candidates"].shape
    if out["mask"].shape != (b, n):
        raise ValueError(f"obs['mask']: expected shape {(b, n)} like obs['candidates'], received {out['mask'].shape}")
    out["candidates"] = out["candidates"].astype(np.int64, copy=False)
    return out, single


def masked_top_k(scores: np.ndarray | torch.Tensor, mask: np.ndarray, k: int) -> np.ndarray:
    """``(B, k)`` int64 positions of the k highest scores among unmasked candidates; ties by lower index.

    Raises ``ValueError`` when a row has fewer than ``k`` unmasked candidates or a NaN score.
    """
    s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    s = s.astype(np.float64, copy=True)
    if np.isnan(s).any():
        raise ValueError("scores: expected no NaN, received NaN (check the agent's inputs)")
    allowed = np.asarray(mask).astype(bool)
    avail = allowed.sum(1)
    if (avail < k).any():
        row = int(np.flatnonzero(avail < k)[0])
        raise ValueError(f"obs['mask'][{row}]: expected at least k={k} unmasked candidates, received {avail[row]}")
    s[~allowed] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order.astype(np.int64)


def slate_to_action(slate: np.ndarray, action_type: str, num_candidates: int) -> np.ndarray:
    """Turn ``(B, K)`` slate positions into the env's action: ``slate`` as is, ``item`` ``(B,)``, ``scores``
    ``(B, N)`` float32 in [-1, 1] whose top-K (ties by lower index) is exactly the slate in order."""
    slate = np.asarray(slate, dtype=np.int64)
    if action_type == "slate":
        return slate
    if action_type == "item":
        return slate[:, 0].copy()
    if action_type == "scores":
        b, k = slate.shape
        act = np.full((b, num_candidates), -1.0, dtype=np.float32)
        np.put_along_axis(act, slate, (1.0 - np.arange(k, dtype=np.float32) / k)[None].repeat(b, 0), axis=1)
        return act
    raise ValueError(f"action_type: expected 'scores', 'slate' or 'item', received {action_type!r}")


# ------------------------------------------------------------------------------------------- contract
class Recommender(ABC):
    """One contract for every agent. Subclasses set ``name``, ``Config`` and implement :meth:`score` (or
    :meth:`rank`) plus ``_get_state`` / ``_set_state`` for persistence.

    Class attributes: ``learns_offline`` (implements :meth:`fit`), ``learns_online`` (implements
    :meth:`update`), ``train_action_types`` (action types its ``learn`` accepts; ``None`` = no env training),
    ``compatible_hint`` (the variant to use instead, for error messages).
    """

    name: ClassVar[str] = "recommender"
    Config: ClassVar[type[AgentConfig]] = AgentConfig
    learns_offline: ClassVar[bool] = False
    learns_online: ClassVar[bool] = False
    train_action_types: ClassVar[tuple[str, ...] | None] = None
    compatible_hint: ClassVar[str] = ""

    def __init__(self, spec: EnvSpec, config: AgentConfig | None = None) -> None:
        self.spec = spec
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(f"config: expected {self.Config.__name__}, received {type(self.config).__name__}")
        self.rng = np.random.default_rng(self.config.seed)

    @property
    def device(self) -> torch.device:
        return resolve_device(self.config.device)

    # ------------------------------------------------------------------ ranking
    @abstractmethod
    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """``(B, N)`` float scores of the candidates of a batched observation (higher = better)."""

    def rank(self, obs: Mapping[str, Any], k: int | None = None) -> np.ndarray:
        """``(B, k)`` int64 distinct unmasked candidate positions, best first (``k`` defaults to the env's
        slate size). A single-env observation (no batch dim) gives ``(1, k)``."""
        k = self.spec.slate_size if k is None else int(k)
        if k < 1 or k > self.spec.num_candidates:
            raise ValueError(f"k: expected 1 <= k <= num_candidates ({self.spec.num_candidates}), received {k}")
        batch, _ = as_batched_obs(obs)
        n = batch["candidates"].shape[1]
        if n != self.spec.num_candidates:
            raise ValueError(
                f"obs['candidates']: expected {self.spec.num_candidates} candidates (the env {self.name} was built "
                f"for), received {n}"
            )
        return masked_top_k(self.score(batch), batch["mask"], k)

    def explain(self, obs: Mapping[str, Any], slate: np.ndarray, context: Any = None, top: int | None = 5) -> list:
        """Evidence per recommended item of ``slate`` ``(B, K)``: the history items and profile aspects that
        contributed most (:func:`recgym.agents.explain.explain_agent`; ``context`` an ``ExplainContext``)."""
        from recgym.agents.explain import explain_agent

        return explain_agent(self, obs, slate, context, top)

    # ------------------------------------------------------------------ learning hooks
    def fit(self, logged: Any) -> Recommender:
        """Learn from logged interactions (:class:`~recgym.agents.logging.LoggedData`)."""
        raise NotImplementedError(f"agent {self.name!r} does not learn from logs (learns_offline=False)")

    def update(self, obs: Mapping[str, Any], slate: np.ndarray, feedback: Mapping[str, Any]) -> None:  # noqa: B027
        """Online feedback after showing ``slate`` ``(B, K)`` for ``obs``; ``feedback`` is the env's step
        info (needs ``clicks`` ``(B, K)``). A no-op for agents that do not learn online."""

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        return None

    def save(self, path: str | Path) -> Path:
        """Write the agent to one file atomically (torch format, tensors only, loadable with
        ``weights_only=True``). Returns the path."""
        from recgym import __version__

        payload = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "recgym_version": __version__,
            "agent": self.name, "config": self.config.model_dump(), "env": self.spec.meta(),
            "item_embeddings": torch.as_tensor(np.array(self.spec.item_embeddings)),
            "item_features": (
                None if self.spec.item_features is None else torch.as_tensor(np.array(self.spec.item_features))
            ),
            "state": self._get_state(),
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={self.config!r})"


# ------------------------------------------------------------------------------------------- registry
AGENTS: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: add an agent to :data:`AGENTS` under ``cls.name``."""
    if cls.name in AGENTS and AGENTS[cls.name] is not cls:
        raise ValueError(f"agent name {cls.name!r} is already registered by {AGENTS[cls.name].__name__}")
    AGENTS[cls.name] = cls
    return cls


def _agent_class(name: str) -> type[Recommender]:
    if name not in AGENTS:
        raise ConfigError(
            f"agent: unknown name {name!r}{suggest(name, AGENTS)}; expected one of: {', '.join(sorted(AGENTS))}"
        )
    return AGENTS[name]


def check_compatible(name: str, action_type: str, slate_size: int | None = None) -> None:
    """Raise :class:`IncompatibleEnvError` when agent ``name`` cannot train on ``action_type``.

    Cheap: call it from a config, before building any world or model.
    """
    cls = _agent_class(name)
    allowed = cls.train_action_types
    if allowed is None or action_type in allowed:
        return
    raise IncompatibleEnvError(
        f"agent {name!r} cannot train on action_type={action_type!r} (slate_size={slate_size}); expected "
        f"action_type in {list(allowed)}. {cls.compatible_hint}"
    )


def make_agent(name: str, env: Any, **hyperparams: Any) -> Recommender:
    """Build agent ``name`` for ``env`` with typed hyper-parameters (unknown keys raise with a suggestion).

    RL agents are checked against the env's action type here, before any network is built.
    """
    cls = _agent_class(name)
    config = cls.Config(**hyperparams)
    spec = EnvSpec.from_env(env)
    check_compatible(name, spec.action_type, spec.slate_size)
    return cls(spec, config)


def load_agent(path: str | Path, env: Any | None = None) -> Recommender:
    """Rebuild an agent saved with :meth:`Recommender.save`.

    ``env`` is needed by the oracle (and to rank on a live env whose item table must match the saved one);
    without it the saved item table is used.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_agent: expected a saved agent file, {path} does not exist")
    payload = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"load_agent({path}): expected a {FORMAT!r} file, received something else")
    if payload["format_version"] > FORMAT_VERSION:
        raise ValueError(
            f"load_agent({path}): format_version {payload['format_version']} is newer than this recgym "
            f"supports ({FORMAT_VERSION})"
        )
    cls = _agent_class(payload["agent"])
    config = cls.Config(**payload["config"])
    meta = payload["env"]
    if env is not None:
        spec = EnvSpec.from_env(env)
        if spec.table_hash != meta["table_hash"] or spec.num_candidates != meta["num_candidates"]:
            raise ValueError(
                f"load_agent({path}): the env differs from the one the agent was saved with: expected item "
                f"table {meta['table_hash']} and N={meta['num_candidates']}, received {spec.table_hash} and "
                f"N={spec.num_candidates}"
            )
    else:
        feats = payload.get("item_features")
        spec = EnvSpec(
            payload["item_embeddings"].numpy(), meta["num_candidates"], meta["slate_size"], meta["action_type"],
            item_features=None if feats is None else feats.numpy(),
        )
    agent = cls(spec, config)
    agent._set_state(payload["state"])
    return agent
