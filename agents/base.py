"""The :class:`Recommender` contract, the agent registry and the :func:`make_agent` factory.

Every agent - RL (PPO, DQN) or baseline - ranks through one batched call::

    slate = agent.rank(obs, k)      # obs: dict of (B, ...) arrays -> (B, k) int64 candidate positions

The slate holds distinct, unmasked positions into ``obs["candidates"]``, best first. Agents that learn
from logs implement :meth:`Recommender.fit` (``learns_offline``); online learners implement
:meth:`Recommender.update` (``learns_online``); RL agents train on an environment with ``learn``.
:meth:`Recommender.save` / :func:`load_agent` round-trip an agent in one file (atomic write, with the agent
name, its typed config, the package version and a hash of the item table it was built on).

Agent file format ``recgym-agent`` version 2: an uncompressed zip holding ``manifest.json`` (format, version,
agent name, recgym version, size and sha256 of the payload) and ``agent.pt`` (torch file of tensors and plain
data only). :func:`load_agent` reads the manifest, checks the payload's size and sha256 *before* unpickling
it with ``torch.load(weights_only=True)`` (a pickle that would build any other object - and so could run
code - is refused with :class:`~recgym.common.errors.UnsafeFileError`), then checks every field it uses;
truncated files, flipped bytes and missing or malformed fields raise
:class:`~recgym.common.errors.CorruptFileError` naming the file and the field. Version-1 files (a bare torch
file, no checksum) still load, weights-only and with the same field checks.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator

from recgym.agents.observations import as_batched_obs
from recgym.common.config import SEED_MAX, ConfigError, StrictModel, suggest
from recgym.common.device import check_device, resolve_device
from recgym.common.errors import CorruptFileError
from recgym.common.io import atomic_write_bytes, load_torch_weights_only, sha256_bytes

__all__ = [
    "AgentConfig",
    "EnvSpec",
    "Recommender",
    "TrainableRecommender",
    "IncompatibleEnvError",
    "AGENTS",
    "register",
    "make_agent",
    "load_agent",
    "check_compatible",
    "masked_top_k",
    "slate_to_action",
    "as_batched_obs",
    "agent_file_bytes",
    "read_agent_payload",
]

FORMAT = "recgym-agent"
FORMAT_VERSION = 2
MANIFEST_MEMBER = "manifest.json"
PAYLOAD_MEMBER = "agent.pt"


class IncompatibleEnvError(ConfigError):
    """An agent cannot train on the env's action space; the message names the compatible variant."""


class AgentConfig(StrictModel):
    """Fields every agent accepts. ``seed`` feeds the agent's own RNG (never the global ones)."""

    config_path: ClassVar[str] = "agent"
    seed: int = Field(0, ge=0, le=SEED_MAX - 1, description="seed of the agent's one RNG (numpy Generator / "
                      "torch Generator); agents derive seed + 1, so at most 2**63 - 2")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:N'")

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        # The name is checked here; whether this machine has the device is checked when the agent is built
        # (an agent file saved on a GPU machine still loads its config on a CPU one).
        return check_device(v, where=f"{cls.config_path}.device", available=False)


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about an env. ``item_embeddings`` ``(M, d)`` float32 read-only;
    ``item_features`` ``(M, F)`` float32 public per-item features (the env's ``item_features``: popularity
    percentile of the prior, new-item flag) or ``None`` when the env has none. ``context_dim``: length of
    ``obs["context"]`` (4; 7 with returning users); ``feedback_dim``: width of ``obs["item_feedback"]`` (3 when
    the env observes its feedback table, else 0). ``simulator``: ``() -> (core, live state)`` of the env, for
    planning agents that fork the hidden model (the lookahead oracle); ``None`` without a live env."""

    item_embeddings: np.ndarray
    num_candidates: int
    slate_size: int
    action_type: str
    oracle: Callable[[], np.ndarray] | None = None
    item_features: np.ndarray | None = None
    oracle_view: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    """``() -> (candidates (B, N) int64, hidden logits (B, N))`` of the live env (env-bound agents only)."""
    context_dim: int = 4
    feedback_dim: int = 0
    simulator: Callable[[], Any] | None = None

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
        space = getattr(base, "single_observation_space", None) or base.observation_space
        fb = space.spaces.get("item_feedback")
        return cls(
            emb, int(cfg.num_candidates), int(cfg.slate_size), str(cfg.action_type), base.oracle_scores, feats,
            getattr(base, "oracle_view", None),
            context_dim=int(space["context"].shape[0]), feedback_dim=0 if fb is None else 3,
            simulator=getattr(base, "simulator", None),
        )

    def observation_space(self, action_type: str | None = None) -> Any:
        """The single-env observation space of envs of this spec (``gymnasium.spaces.Dict``)."""
        from recgym.envs.config import EnvConfig
        from recgym.envs.spaces import observation_space

        n = self.num_candidates
        cfg = EnvConfig(num_candidates=n, slate_size=1, new_items={"slots": 0}, candidates={"pool_size": max(n, 2)},
                        feedback={"enabled": self.feedback_dim > 0})
        return observation_space(cfg, self.dim, self.num_items, self.context_dim)

    def scorer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~recgym.agents.scorer.CandidateScorer` that follow the env: public item
        features, context length, feedback width."""
        return {"item_features": self.item_features, "context_dim": self.context_dim,
                "feedback_dim": self.feedback_dim}

    def meta(self) -> dict[str, Any]:
        return {
            "num_items": self.num_items, "dim": self.dim, "num_candidates": self.num_candidates,
            "slate_size": self.slate_size, "action_type": self.action_type, "table_hash": self.table_hash,
            "context_dim": self.context_dim, "feedback_dim": self.feedback_dim,
        }


# ------------------------------------------------------------------------------------------- helpers
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
    ``compatible_hint`` (the variant to use instead, for error messages), ``env_bound`` (reads the live hidden
    state of the env it was built on, like the oracle: it ranks only that env's current observation, and an
    evaluation rebuilds it on its own env).
    """

    name: ClassVar[str] = "recommender"
    Config: ClassVar[type[AgentConfig]] = AgentConfig
    learns_offline: ClassVar[bool] = False
    learns_online: ClassVar[bool] = False
    train_action_types: ClassVar[tuple[str, ...] | None] = None
    compatible_hint: ClassVar[str] = ""
    env_bound: ClassVar[bool] = False

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
        batch, k = self._rank_input(obs, k)
        return masked_top_k(self.score(batch), batch["mask"], k)

    def _rank_input(self, obs: Mapping[str, Any], k: int | None) -> tuple[dict[str, np.ndarray], int]:
        """``(batched obs, k)`` for :meth:`rank`, after checking ``k`` and the candidate count (raises
        ``ValueError`` with what was expected)."""
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
        return batch, k

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

    def save(self, path: str | Path, *, training: Mapping[str, Any] | None = None) -> Path:
        """Write the agent to one file atomically (format version 2, see the module docstring: a manifest with
        the payload's sha256 + a torch payload of tensors and plain data only). Returns the path.

        ``training``: an optional ``training`` section (tensors and plain data) - the runner's checkpoints are
        agent files with the state needed to resume training; :func:`load_agent` ignores it.
        """
        atomic_write_bytes(Path(path), self.to_bytes(training=training))
        return Path(path)

    def to_bytes(self, *, training: Mapping[str, Any] | None = None) -> bytes:
        """The bytes :meth:`save` writes."""
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
        if training is not None:
            payload["training"] = dict(training)
        return agent_file_bytes(payload)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={self.config!r})"


class TrainableRecommender(Recommender):
    """Base of agents that train on an environment (RL): the SB3 agents (PPO, DQN, through
    :class:`~recgym.agents._sb3.SB3Recommender`) and lean learners that step the native vector env themselves.

    What they share:

    * the learn prologue, :meth:`check_train_env`: the env's action type is checked against
      ``train_action_types`` and its item table and candidate count against the agent's, before anything
      is built;
    * ``num_timesteps`` (env steps trained so far, summed over users) and the ranking network ``network``
      (a module whose ``scorer`` ranks candidates), saved as ``{"scorer", "num_timesteps"}``;
    * one save format: :meth:`save` writes the agent file, and a training checkpoint is the same file with a
      ``training`` section (:meth:`training_state`: optimiser, full policy and RNG states), so any checkpoint
      loads with :func:`load_agent` and resumes with :meth:`load_training_state`.
    """

    train_action_types: ClassVar[tuple[str, ...] | None] = ()

    def __init__(self, spec: EnvSpec, config: AgentConfig | None = None) -> None:
        super().__init__(spec, config)
        self.num_timesteps = 0

    @property
    def network(self) -> torch.nn.Module:
        """The module whose ``scorer`` ranks candidates (PPO: the policy; DQN: the Q-network)."""
        raise NotImplementedError

    def check_train_env(self, env: Any) -> EnvSpec:
        """The learn prologue: the env's spec, after checking it can train this agent (raises otherwise)."""
        spec = EnvSpec.from_env(env)
        check_compatible(self.name, spec.action_type, spec.slate_size)
        if spec.table_hash != self.spec.table_hash or spec.num_candidates != self.spec.num_candidates:
            raise ValueError(
                f"learn: the env's item table ({spec.table_hash}, N={spec.num_candidates}) differs from the one "
                f"agent {self.name!r} was built for ({self.spec.table_hash}, N={self.spec.num_candidates})")
        return spec

    def learn(self, env: Any, total_timesteps: int, callback: Any = None,
              progress_bar: bool = False) -> TrainableRecommender:
        """Train (or continue) for ``total_timesteps`` env steps summed over users."""
        raise NotImplementedError

    @torch.no_grad()
    def score(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        net = self.network
        net.train(False)
        device = next(net.parameters()).device
        batch = {k: torch.as_tensor(np.asarray(v), device=device) for k, v in obs.items()}
        return net.scorer(batch)[0].cpu().numpy()

    def training_state(self) -> dict[str, Any]:
        """What a checkpoint needs beyond :meth:`_get_state` to resume training exactly where it stopped
        (tensors and plain data only)."""
        return {}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`training_state` into an agent whose training machinery is built (after ``learn(env,
        0)``); a mismatch raises ``ValueError``/``RuntimeError`` naming the field. A checkpoint's ``learner``
        entry, when passed, marks an exact resume (the env and learner state follow)."""

    def _get_state(self) -> dict[str, Any]:
        return {"scorer": {k: v.detach().cpu() for k, v in self.network.scorer.state_dict().items()},
                "num_timesteps": self.num_timesteps}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self.network.scorer.load_state_dict(state["scorer"])
        self.num_timesteps = int(state["num_timesteps"])


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

    Raises:
        FileNotFoundError: no such file.
        UnsafeFileError: the payload would need code execution to load (it is never unpickled).
        CorruptFileError: not an agent file, truncated, checksum mismatch, newer format, or a missing or
            malformed field (named).
        ValueError: ``env`` differs from the env the agent was saved with.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_agent: expected a saved agent file, {path} does not exist")
    payload = read_agent_payload(path)
    cls = _agent_class(payload["agent"])
    try:
        config = cls.Config(**payload["config"])
    except (ConfigError, TypeError) as exc:
        raise CorruptFileError(f"{path}: field 'config': not a valid {cls.__name__} config ({exc})") from None
    meta = payload["env"]
    if env is not None:
        spec = EnvSpec.from_env(env)
        if spec.table_hash != meta["table_hash"] or spec.num_candidates != meta["num_candidates"]:
            raise ValueError(
                f"load_agent({path}): the env differs from the one the agent was saved with: expected item "
                f"table {meta['table_hash']} and N={meta['num_candidates']}, received {spec.table_hash} and "
                f"N={spec.num_candidates}"
            )
        saved = (int(meta.get("context_dim", 4)), int(meta.get("feedback_dim", 0)))
        if saved != (spec.context_dim, spec.feedback_dim):
            raise ValueError(
                f"load_agent({path}): the env's observation differs from the one the agent was saved with: expected "
                f"context length {saved[0]} and item_feedback width {saved[1]}, received {spec.context_dim} and "
                f"{spec.feedback_dim} (env.sessions / env.feedback settings)"
            )
    else:
        feats = payload.get("item_features")
        spec = EnvSpec(
            payload["item_embeddings"].numpy(), meta["num_candidates"], meta["slate_size"], meta["action_type"],
            item_features=None if feats is None else feats.numpy(),
            context_dim=int(meta.get("context_dim", 4)), feedback_dim=int(meta.get("feedback_dim", 0)),
        )
    try:
        agent = cls(spec, config)
        agent._set_state(payload["state"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CorruptFileError(f"{path}: field 'state': does not fit agent {payload['agent']!r} "
                               f"({type(exc).__name__}: {detail})") from None
    return agent


def agent_file_bytes(payload: Mapping[str, Any]) -> bytes:
    """Serialise an agent payload (a dict of tensors and plain data with ``format``/``agent``) into the agent
    file format: an uncompressed zip of ``manifest.json`` (with the payload's size and sha256) and ``agent.pt``."""
    from recgym import __version__

    buf = io.BytesIO()
    torch.save(dict(payload), buf)
    data = buf.getvalue()
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "recgym_version": __version__,
                "agent": payload["agent"], "payload": PAYLOAD_MEMBER, "payload_size": len(data),
                "payload_sha256": sha256_bytes(data)}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(MANIFEST_MEMBER, json.dumps(manifest, sort_keys=True))
        zf.writestr(PAYLOAD_MEMBER, data)
    return out.getvalue()


def read_agent_payload(source: str | Path | bytes, where: str | Path | None = None) -> dict[str, Any]:
    """The checked payload of an agent file (a path or its bytes): manifest checksum verified before the
    payload is unpickled weights-only, then every field :func:`load_agent` uses checked.

    Raises:
        UnsafeFileError / CorruptFileError: as :func:`load_agent`.
    """
    path = Path(where if where is not None else source if not isinstance(source, bytes) else "<bytes>")
    data = _read_payload(source if isinstance(source, bytes) else Path(source), path)
    return _validate_payload(load_torch_weights_only(data, path=path, what="agent file"), path)


def _read_payload(source: Path | bytes, path: Path | None = None) -> bytes:
    """The torch payload of an agent file (a path, or its bytes with ``path`` naming it in errors), its size
    and sha256 checked against the manifest (version 2), or the whole file (version 1, a bare torch zip
    without checksum)."""
    path = path if path is not None else source if isinstance(source, Path) else Path("<bytes>")
    try:
        zf = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CorruptFileError(f"{path}: expected a {FORMAT!r} file (zip), received truncated or other content "
                               f"({exc})") from None
    with zf:
        names = zf.namelist()
        if MANIFEST_MEMBER not in names:  # version 1: a bare torch file, validated field by field after loading
            return source if isinstance(source, bytes) else source.read_bytes()
        try:
            info = zf.getinfo(MANIFEST_MEMBER)
            if info.file_size > 1 << 16:
                raise CorruptFileError(f"{path}: {MANIFEST_MEMBER}: expected at most 64 KiB, received {info.file_size} bytes")
            manifest = json.loads(zf.read(MANIFEST_MEMBER).decode("utf-8"))
        except CorruptFileError:
            raise
        except (ValueError, zipfile.BadZipFile, OSError, EOFError, RecursionError) as exc:
            raise CorruptFileError(f"{path}: {MANIFEST_MEMBER}: unreadable ({type(exc).__name__}: {exc})") from None
        if not isinstance(manifest, dict):
            raise CorruptFileError(f"{path}: {MANIFEST_MEMBER}: expected a JSON object, received {type(manifest).__name__}")
        _check_format(manifest, path)
        for key, kind in (("payload_size", int), ("payload_sha256", str)):
            if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
                raise CorruptFileError(f"{path}: {MANIFEST_MEMBER}: field {key!r}: expected {kind.__name__}, received "
                                       f"{manifest.get(key)!r:.60}")
        if PAYLOAD_MEMBER not in names:
            raise CorruptFileError(f"{path}: expected a member {PAYLOAD_MEMBER!r}, received none (truncated file?)")
        pinfo = zf.getinfo(PAYLOAD_MEMBER)
        if pinfo.compress_type != zipfile.ZIP_STORED or pinfo.file_size != manifest["payload_size"]:
            raise CorruptFileError(f"{path}: {PAYLOAD_MEMBER}: expected {manifest['payload_size']} stored bytes, "
                                   f"received {pinfo.file_size} (compression {pinfo.compress_type})")
        try:
            data = zf.read(PAYLOAD_MEMBER)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise CorruptFileError(f"{path}: {PAYLOAD_MEMBER}: truncated or corrupt ({exc})") from None
    if sha256_bytes(data) != manifest["payload_sha256"]:
        raise CorruptFileError(f"{path}: {PAYLOAD_MEMBER}: sha256 does not match the manifest (corrupt or altered)")
    return data


def _check_format(d: Mapping[str, Any], path: Path) -> None:
    if d.get("format") != FORMAT:
        raise CorruptFileError(f"{path}: field 'format': expected {FORMAT!r}, received {d.get('format')!r:.60}")
    version = d.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CorruptFileError(f"{path}: field 'format_version': expected a positive int, received {version!r:.60}")
    if version > FORMAT_VERSION:
        raise CorruptFileError(f"{path}: field 'format_version': {version} is newer than this recgym supports "
                               f"({FORMAT_VERSION}); upgrade recgym")


def _validate_payload(payload: Any, path: Path) -> dict[str, Any]:
    """Check every field :func:`load_agent` uses; the first problem is raised naming the field."""
    if not isinstance(payload, dict):
        raise CorruptFileError(f"{path}: expected a {FORMAT!r} payload (dict), received {type(payload).__name__}")
    _check_format(payload, path)

    def need(key: str, ok: Callable[[Any], bool], expected: str, where: Mapping[str, Any] = payload,
             prefix: str = "") -> Any:
        if key not in where:
            raise CorruptFileError(f"{path}: field '{prefix}{key}': expected {expected}, received nothing (missing)")
        if not ok(where[key]):
            raise CorruptFileError(f"{path}: field '{prefix}{key}': expected {expected}, received "
                                   f"{type(where[key]).__name__}")
        return where[key]

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    need("agent", lambda v: isinstance(v, str), "a registered agent name")
    try:
        _agent_class(payload["agent"])
    except ConfigError as exc:
        raise CorruptFileError(f"{path}: field 'agent': {exc}") from None
    need("config", lambda v: isinstance(v, dict), "the agent's config (dict)")
    need("state", lambda v: isinstance(v, dict), "the agent's state (dict)")
    meta = need("env", lambda v: isinstance(v, dict), "the env summary (dict)")
    need("table_hash", lambda v: isinstance(v, str), "a hash string", meta, "env.")
    for key in ("num_candidates", "slate_size"):
        need(key, is_int, "a positive int", meta, "env.")
    need("action_type", lambda v: v in ("scores", "slate", "item"), "'scores', 'slate' or 'item'", meta, "env.")
    emb = need("item_embeddings", lambda v: isinstance(v, torch.Tensor) and v.ndim == 2 and v.is_floating_point(),
               "an (M, d) float tensor")
    if not bool(torch.isfinite(emb).all()):
        raise CorruptFileError(f"{path}: field 'item_embeddings': expected finite values, received NaN/inf")
    feats = payload.get("item_features")
    if feats is not None and not (isinstance(feats, torch.Tensor) and feats.ndim == 2 and feats.shape[0] == emb.shape[0]):
        raise CorruptFileError(f"{path}: field 'item_features': expected None or an ({emb.shape[0]}, F) tensor, "
                               f"received {getattr(feats, 'shape', type(feats).__name__)}")
    if meta["num_candidates"] > emb.shape[0] or meta["slate_size"] > meta["num_candidates"]:
        raise CorruptFileError(f"{path}: field 'env': expected slate_size <= num_candidates <= {emb.shape[0]} items, "
                               f"received slate_size={meta['slate_size']}, num_candidates={meta['num_candidates']}")
    return payload
