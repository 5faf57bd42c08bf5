"""Typed experiment configuration: YAML -> :class:`ExperimentConfig`, validated before any heavy work.

Everything here is cheap (no world, encoder, data or network is touched), so a typo in a YAML file or a
``--set`` override fails in milliseconds with a message naming the path of the offending key, e.g.
``agents[1].hyperparams.lerning_rate: unknown key (did you mean 'learning_rate'?)``.

Schema (every section optional except ``name`` and ``agents``)::

    name: quickstart                  # run name; default output folder runs/<name>
    seed: 0                           # root of the seed tree every random stream derives from
    threads: 1                        # torch intra-op threads (null = torch's default)
    device: cpu                       # cpu | cuda | auto
    world: synthetic                  # synthetic | analytic | movielens-100k | ml-latest-small | log
    world_config: {}                  # the world's own settings (e.g. SyntheticWorldConfig fields)
    data_dir: null                    # real-data worlds (default $RECGYM_DATA)
    encoder: null                     # null = bundled MiniLM, "hashing", or a local model folder
    env: {slate_size: 10, dynamics: {initial_budget: 20}, ...}   # EnvConfig, nested by component
    agents:                           # one entry per compared agent
      - name: ppo                     # a registered agent (recgym.agents.AGENTS)
        label: ppo                    # unique label in tables and plots (default: name)
        hyperparams: {hidden: 16}     # the agent's typed Config fields (seed/device are set by the runner)
        total_timesteps: null         # RL only: overrides training.total_timesteps
        env: {}                       # RL only: training-env overrides (e.g. DQN: {action_type: item, slate_size: 1})
        fit_on_logs: null             # offline learners: fit on the logging policy's data (default: yes)
        rerank: null                  # fairness-aware re-ranker around the agent: {method: exposure, lam: 0.5}
                                      #   or {method: fair, protected: tail, p: 0.5} (recgym.agents.rerank)
        reward_fairness: null         # RL only: training reward + weight * protected attention share
                                      #   {weight: 0.5, protected: tail} (recgym.envs.fairness)
    training: {total_timesteps, num_envs, checkpoint_every, curve_users, logging: {policy, epsilon, steps, num_envs}}
    evaluation: {cohort, users_per_seed, episodes_per_user, seeds, confidence}
    output: {dir, plots, tensorboard}
    tune: {agent, trials, objectives, seeds, space, reward_weights, ...}   # recgym tune (TuneConfig)
    text: {enrich: none}              # LM enrichment of item/user texts: none | items | users | both
                                      #   (+ model, max_new_tokens, batch_size, dtype, history_titles)
    features: {fuse: all}             # item modalities fused with the text vector: all | text | [names]
                                      #   (+ weights: {text: 1, image: 1}, max_dim: 32; recgym.experiments.multimodal)
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

from pydantic import BaseModel, Field, field_validator, model_validator

from recgym.agents.rerank import RerankConfig
from recgym.common.config import ConfigError, StrictModel, suggest
from recgym.common.device import check_device
from recgym.common.yamlio import load_yaml_file, load_yaml_text
from recgym.envs.config import EnvConfig
from recgym.envs.factory import KNOWN_WORLDS, REAL_WORLDS
from recgym.envs.fairness import FairRewardConfig
from recgym.experiments.enrichment import TextConfig
from recgym.experiments.multimodal import FeaturesConfig
from recgym.experiments.tune_config import TuneConfig

__all__ = [
    "AgentSpec", "EvaluationConfig", "ExperimentConfig", "LoggingConfig", "OutputConfig", "TrainingConfig",
    "apply_overrides", "config_diff", "config_hash", "load_config",
]

EVAL_SEED_MAX = 2**32 - 1
"""Largest evaluation seed: each seed ``s`` also makes per-episode env seeds ``s * 1000 + e`` (and the agents'
seeds ``s + 1``), which must stay within what numpy and torch accept."""


def world_config_model(world: str) -> type[StrictModel]:
    """The typed model that validates ``world_config`` of ``world`` (imported lazily: cheap, no data)."""
    if world == "synthetic":
        from recgym.envs.worlds.synthetic import SyntheticWorldConfig

        return SyntheticWorldConfig
    if world == "analytic":
        from recgym.envs.worlds.analytic import AnalyticWorldConfig

        return AnalyticWorldConfig
    from recgym.envs.worlds.fitted import FitConfig

    return FitConfig


class LoggingConfig(StrictModel):
    """The logging policy whose epsilon-mixed slates make the offline learners' training data."""

    config_path: ClassVar[str] = "training.logging"
    policy: str = Field("popularity", description="registered agent used as the logger (not 'oracle')")
    epsilon: float = Field(0.2, ge=0, le=1, description="share of uniformly random slates")
    steps: int = Field(100, ge=1, description="vector steps of logging per seed")
    num_envs: int = Field(64, ge=1, description="users logged in parallel (train cohort)")


class TrainingConfig(StrictModel):
    """RL training budget (per agent and seed) and checkpointing."""

    config_path: ClassVar[str] = "training"
    total_timesteps: int = Field(20_000, ge=0, description="env steps summed over users, per RL agent and seed")
    num_envs: int = Field(64, ge=1, description="users simulated in parallel while training")
    checkpoint_every: int = Field(5_000, ge=1, description="env steps between checkpoints / curve points")
    curve_users: int = Field(64, ge=1, description="held-out users evaluated at each learning-curve point")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept per agent and seed")
    batch_seeds: bool | Literal["auto"] = Field(
        "auto", description="PPO trainer 'fast': train the seeds of an agent as one batched job (true), or one job "
        "per seed (false: Ray spreads them over workers); auto = batched on CUDA only (on CPU a batch of S seeds "
        "costs S single seeds' time or more, so separate jobs lose nothing and can run in parallel)")
    logging: LoggingConfig = LoggingConfig()


class EvaluationConfig(StrictModel):
    """Evaluation protocol: every agent sees the same users, seeds and injected items."""

    config_path: ClassVar[str] = "evaluation"
    cohort: Literal["test", "cold", "warm", "all"] = Field(
        "test", description="test = held-out users (warm and cold); cold/warm = held-out users of that kind"
    )
    users_per_seed: int | None = Field(None, ge=1, description="users per seed (null = the whole cohort)")
    episodes_per_user: int = Field(1, ge=1, le=100)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], min_length=1)
    confidence: float = Field(0.95, gt=0, lt=1)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        neg = [s for s in v if s < 0]
        if neg:
            raise ConfigError(f"evaluation.seeds: expected non-negative seeds, received {neg}")
        big = [s for s in v if s > EVAL_SEED_MAX]
        if big:
            raise ConfigError(f"evaluation.seeds: expected seeds <= 2**32 - 1 = {EVAL_SEED_MAX} (each seed also "
                              f"makes per-episode seeds seed * 1000 + episode), received {big}")
        dup = sorted({s for s in v if v.count(s) > 1})
        if dup:
            raise ConfigError(f"evaluation.seeds: expected distinct seeds, received duplicates {dup}")
        return v


class OutputConfig(StrictModel):
    config_path: ClassVar[str] = "output"
    dir: str | None = Field(None, description="run folder (default runs/<name>); --out overrides")
    plots: bool = True
    tensorboard: bool = True


class AgentSpec(StrictModel):
    config_path: ClassVar[str] = "agents[]"
    name: str
    label: str | None = None
    hyperparams: dict[str, Any] = Field(default_factory=dict)
    total_timesteps: int | None = Field(None, ge=0)
    env: dict[str, Any] = Field(default_factory=dict)
    fit_on_logs: bool | None = None
    rerank: RerankConfig | None = None
    reward_fairness: FairRewardConfig | None = None

    @field_validator("label")
    @classmethod
    def _safe_label(cls, v: str | None) -> str | None:
        # The label names files and folders of the run (cells/<label>__seed<s>.json, checkpoints/, curves/,
        # tensorboard/): it must be one plain file name, checked here before any folder exists.
        from recgym.common.io import unsafe_name_reason

        reason = None if v is None else unsafe_name_reason(v)
        if reason:
            raise ConfigError(f"expected a file-name-safe label ({reason}), received {v!r}")
        return v

    @property
    def key(self) -> str:
        return self.label or self.name


class ExperimentConfig(StrictModel):
    config_path: ClassVar[str] = ""
    name: str = Field(min_length=1)
    description: str = ""
    seed: int = Field(0, ge=0, description="root of the run's seed tree (evaluation.seeds are replicate ids)")
    threads: int | None = Field(1, ge=1, le=256)
    device: str = "cpu"
    world: str = "synthetic"
    world_config: dict[str, Any] = Field(default_factory=dict)
    data_dir: str | None = None
    encoder: str | None = None
    env: EnvConfig = EnvConfig(action_type="slate")
    agents: list[AgentSpec] = Field(min_length=1)
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    output: OutputConfig = OutputConfig()
    tune: TuneConfig | None = None
    text: TextConfig = TextConfig()
    features: FeaturesConfig = FeaturesConfig()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", v):
            raise ConfigError(f"name: expected letters, digits, '_', '-' or '.', received {v!r}")
        return v

    @field_validator("world")
    @classmethod
    def _known_world(cls, v: str) -> str:
        if v not in KNOWN_WORLDS:
            raise ConfigError(f"world: expected one of {', '.join(KNOWN_WORLDS)}, received {v!r}{suggest(v, KNOWN_WORLDS)}")
        return v

    @field_validator("device")
    @classmethod
    def _device_here(cls, v: str) -> str:
        return check_device(v, where="device", available=True)

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        from recgym.agents import AGENTS, check_compatible

        model = world_config_model(self.world)
        try:
            typed = model.model_validate(self.world_config)
        except ConfigError as exc:
            raise ConfigError(_rebase(str(exc), model.config_path, "world_config")) from None
        _store_typed(self, "world_config", typed)
        labels = [a.key for a in self.agents]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ConfigError(f"agents: expected distinct labels, received duplicates {dup} (set 'label' to tell them apart)")
        if self.training.logging.policy not in AGENTS or self.training.logging.policy == "oracle":
            known = sorted(set(AGENTS) - {"oracle"})
            raise ConfigError(f"training.logging.policy: expected one of {known}, received "
                              f"{self.training.logging.policy!r}{suggest(self.training.logging.policy, known)}")
        for i, spec in enumerate(self.agents):
            where = f"agents[{i}]"
            if spec.name not in AGENTS:
                raise ConfigError(f"{where}.name: unknown agent {spec.name!r}{suggest(spec.name, AGENTS)}; "
                                  f"expected one of: {', '.join(sorted(AGENTS))}")
            cls = AGENTS[spec.name]
            fields = set(cls.Config.model_fields) - {"seed", "device"}
            for key in spec.hyperparams:
                if key in ("seed", "device"):
                    raise ConfigError(f"{where}.hyperparams.{key}: set by the runner (evaluation.seeds / device); "
                                      f"expected it absent here, received {spec.hyperparams[key]!r}")
                if key not in fields:
                    raise ConfigError(f"{where}.hyperparams.{key}: unknown key for agent {spec.name!r}"
                                      f"{suggest(key, fields)}; expected one of: {', '.join(sorted(fields))}")
            try:
                _store_typed(spec, "hyperparams", cls.Config(**spec.hyperparams))
            except ConfigError as exc:
                raise ConfigError(_rebase(str(exc), cls.Config.config_path, f"{where}.hyperparams")) from None
            rl = cls.train_action_types is not None
            if not rl and (spec.env or spec.total_timesteps is not None or spec.reward_fairness is not None):
                raise ConfigError(f"{where}: 'env', 'total_timesteps' and 'reward_fairness' apply to RL agents "
                                  f"only; {spec.name!r} does not train on an env")
            if spec.fit_on_logs and not cls.learns_offline:
                raise ConfigError(f"{where}.fit_on_logs: agent {spec.name!r} does not learn from logs")
            if rl:
                tenv = self.train_env(i)
                _store_typed(spec, "env", tenv)
                if tenv.num_candidates != self.env.num_candidates:
                    raise ConfigError(f"{where}.env.num_candidates: expected the evaluation env's "
                                      f"{self.env.num_candidates} (the agent ranks that env), received {tenv.num_candidates}")
                try:
                    check_compatible(spec.name, tenv.action_type, tenv.slate_size)
                except ConfigError as exc:
                    raise type(exc)(f"{where}.env: {exc}") from None
        return self

    # ------------------------------------------------------------------ helpers
    def train_env(self, i: int) -> EnvConfig:
        """Training env of agent ``i``: ``env`` + the agent's overrides, on the train cohort."""
        try:
            return self.env.merged({"cohort": "train", **self.agents[i].env})
        except ConfigError as exc:
            raise ConfigError(f"agents[{i}].env: {exc}") from None

    def budget(self, i: int) -> int:
        spec = self.agents[i]
        return self.training.total_timesteps if spec.total_timesteps is None else spec.total_timesteps

    def eval_env(self) -> EnvConfig:
        """Evaluation env: ``env`` with slate actions and hidden candidate relevance in ``info``."""
        return self.env.merged({"action_type": "slate", "info_candidate_relevance": True})

    @property
    def is_real_world(self) -> bool:
        return self.world in REAL_WORLDS

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())


def _store_typed(owner: BaseModel, field: str, typed: BaseModel) -> None:
    """Replace the free-form mapping ``owner.<field>`` by the values its typed model validated them into
    (``tau: 1`` -> ``1.0``), keeping the keys that were given: the resolved config and its hash say what runs."""

    def like(given: dict[str, Any], dumped: dict[str, Any]) -> dict[str, Any]:
        return {k: like(v, dumped[k]) if isinstance(v, dict) and isinstance(dumped.get(k), dict) else dumped[k]
                for k, v in given.items()}

    # The config is frozen once built; this runs while it is being validated.
    object.__setattr__(owner, field, like(getattr(owner, field), typed.model_dump()))


def _rebase(msg: str, old: str, new: str) -> str:
    """Re-root the paths of a sub-config's error message (``agent.gamma`` -> ``agents[1].hyperparams.gamma``)."""
    if not old:
        return f"{new}: {msg}"
    out = re.sub(rf"(^|; ){re.escape(old)}(?=[.:\[])", lambda m: m.group(1) + new, msg)
    return out if out.startswith(new) else f"{new}: {out}"


# ---------------------------------------------------------------------------------------- key paths
def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(model class, is_list) of a field annotation, for the unknown-key walk."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found[0] is not None:
                return found
        return None, False
    if origin is list:
        inner = typing.get_args(annotation)[0]
        return (inner, True) if isinstance(inner, type) and issubclass(inner, BaseModel) else (None, False)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _check_keys(data: Any, model: type[BaseModel], path: str) -> None:
    """Reject unknown keys anywhere in the tree with the full path and a suggestion."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        moved = getattr(model, "moved_keys", {}).get(key)
        if key not in fields and moved:
            target = f"{path}.{moved}" if path else moved
            raise ConfigError(f"{where}: moved to {target}; expected {target}, received the old key {key!r}")
        if key not in fields:
            raise ConfigError(f"{where}: unknown key{suggest(str(key), fields)}; expected one of: {', '.join(sorted(fields))}")
        sub, is_list = _model_of(fields[key].annotation)
        if sub is None:
            continue
        if is_list and isinstance(value, list):
            for j, item in enumerate(value):
                _check_keys(item, sub, f"{where}[{j}]")
        elif not is_list:
            _check_keys(value, sub, where)


# ---------------------------------------------------------------------------------------- overrides
_SEG = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_PATH = re.compile(r"[^.\[\]=\s]+(\[\d+\])*(\.[^.\[\]=\s]+(\[\d+\])*)*")


def _split_path(path: str) -> list[str | int]:
    if not _PATH.fullmatch(path):
        raise ConfigError(f"--set: expected key=value with a dotted key such as training.num_envs or "
                          f"agents[0].hyperparams.hidden, received key {path!r}")
    parts: list[str | int] = []
    for name, idx in _SEG.findall(path):
        parts.append(int(idx) if idx else (int(name) if name.isdigit() else name))
    return parts


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` / ``agents[0].hyperparams.x=3`` overrides; values are parsed as YAML (same rules as
    config files: :mod:`recgym.common.yamlio`)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"--set: expected key=value, received {item!r}")
        path, text = item.split("=", 1)
        path = path.strip()
        parts = _split_path(path)
        value = load_yaml_text(text, f"--set {path}") if text.strip() else None
        node: Any = out
        for j, part in enumerate([*parts[:-1], None]):
            key = parts[j]
            where = _join(parts[: j + 1])
            if isinstance(key, int):
                if not isinstance(node, list) or key >= len(node):
                    size = f"a list of {len(node)}" if isinstance(node, list) else f"a {type(node).__name__}"
                    raise ConfigError(f"--set {path}: expected an index into a list at {where}, received [{key}] "
                                      f"for {size}")
            elif not isinstance(node, dict):
                raise ConfigError(f"--set {path}: expected a mapping above {where}, received a {type(node).__name__}")
            if part is None:
                node[key] = value
            elif isinstance(key, int):
                node = node[key]
            else:
                node = node.setdefault(key, [] if isinstance(parts[j + 1], int) else {})
    return out


def _join(parts: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(parts))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                raw: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read a YAML file (or ``raw``), apply ``--set`` overrides, validate. Raises :class:`ConfigError`."""
    if raw is None:
        p = Path(path)  # type: ignore[arg-type]
        if not p.is_file():
            shipped = Path(__file__).parent / "configs" / p.name
            if shipped.is_file():
                p = shipped
            else:
                known = sorted(x.name for x in (Path(__file__).parent / "configs").glob("*.yaml"))
                raise ConfigError(f"config: {path} does not exist{suggest(p.name, known)}; shipped configs: {known}")
        raw = load_yaml_file(p, f"config {p}")
        if raw is None:
            raise ConfigError(f"config {p}: expected a mapping with at least 'name' and 'agents', received an empty file")
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping (key: value lines) at the top level, received a "
                          f"{type(raw).__name__}: {str(raw)[:60]!r}")
    raw = apply_overrides(raw, list(overrides or []))
    env = raw.get("env")
    if isinstance(env, dict):
        raw["env"] = {"action_type": "slate", **env}
    _check_keys(raw, ExperimentConfig, "")
    return ExperimentConfig.model_validate(raw)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        out = {}
        for j, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}[{j}]"))
        return out
    return {prefix: d}


def hashed_part(cfg: ExperimentConfig | dict[str, Any]) -> dict[str, Any]:
    """What the run hash covers: everything but ``output`` (where results go does not change them) and
    ``tune`` (what ``recgym tune`` would search does not change a run)."""
    d = cfg.to_dict() if isinstance(cfg, ExperimentConfig) else dict(cfg)
    d.pop("output", None)
    d.pop("tune", None)
    return d


def config_hash(cfg: ExperimentConfig | dict[str, Any]) -> str:
    text = json.dumps(hashed_part(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two resolved configs (output excluded)."""
    a, b = _flatten(hashed_part(old)), _flatten(hashed_part(new))
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))
