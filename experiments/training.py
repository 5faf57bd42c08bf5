"""RL training of one (agent, seed) cell with verified atomic checkpoints, resume with fallback, NaN guard
and learning curves.

Training runs in chunks of ``checkpoint_every`` env steps (rounded up to whole PPO rollouts by SB3). After
every chunk: the parameters are checked for NaN/inf (a NaN stops the run with a diagnostic, and the last
good checkpoint stays in place), a learning-curve point is measured (mean session return of
``curve_users`` held-out users, deterministic ranking, fixed seed) and a checkpoint is written.

Checkpoint folder (``checkpoints/<label>__seed<s>/``, format ``recgym-checkpoint`` version 3):

* ``step_<N>.pt`` - the agent file :meth:`~recgym.agents.base.Recommender.save` writes (one save format for
  agents and checkpoints: a zip of a manifest with the payload's sha256 and a payload of tensors and plain
  data), with a ``training`` section (:meth:`~recgym.agents.base.TrainableRecommender.training_state`: SB3
  policy and optimizer state, RNG states of the agent, the policy's sampler, the rollout/replay buffer,
  torch and the env core, plus the step count, the learning curve so far and the config hash). numpy RNG
  states are plain dicts of ``str``/``int``, which the weights-only unpickler accepts; nothing in the file
  needs code to load, and ``load_agent(step_<N>.pt)`` gives the agent as it was at that step.
* ``step_<N>.json`` - its manifest (step, file name, size, sha256, config hash), written after the ``.pt``.
* ``latest.json`` - a copy of the newest manifest, written last: the completion marker.

All three are written atomically. Loading never runs code: the manifest is plain JSON, its ``file`` must be
a ``step_<10 digits>.pt`` name in the same folder (no ``..``, no absolute path, no symlink leading out), the
bytes must match its size and sha256 and the config hash must match the run, and only then is the file read
with ``torch.load(weights_only=True)`` and its fields checked (a missing or malformed field is named).

``--resume`` takes the newest checkpoint on disk that passes every check. When that is not the one
``latest.json`` names (a flipped byte, a truncated file, a corrupt ``latest.json``), it says which one it
resumes from and why the newer ones were refused; refused files are renamed ``*.rejected`` (kept for
inspection, never loaded). With no valid checkpoint it says so and trains from step 0. A checkpoint written
by a different config stops the resume with :class:`CheckpointMismatchError`. Leftover temp files of a
killed write are removed when the folder is opened. Version-1 folders (``latest.json`` without per-step
manifests) still resume from the file ``latest.json`` names, under the same checks.

On resume the learning curve comes from the verified checkpoint and ``train_log.csv`` is rewritten to it,
then only the remaining budget is trained. Resume is exact: the checkpoint also holds the training env's
state (``sim``: :meth:`~recgym.envs.vector.RankingVectorEnv.state_dict` - users' tables, clock, random
streams) and the learner state (``learner``: :func:`~recgym.experiments.resume.learner_state` - rollout
position, episode statistics, counters, DQN's replay buffer), so a run killed mid-training and resumed
trains the same trajectories and writes the same metrics as one that was never interrupted. Checkpoints
without them (written before exact resume) still resume approximately: the env is reseeded from
``(seed, step)`` and DQN starts with an empty replay buffer (a notice says so). The state of a training-env
wrapper (``wrap_env``, e.g. the fairness reward's exposure tracker) is not part of it.

A full disk while writing a checkpoint raises :class:`~recgym.common.errors.DiskFullError` (the previous
checkpoint stays the newest valid one).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from recgym.agents.base import MANIFEST_MEMBER, read_agent_payload
from recgym.common.errors import CorruptFileError, UnsafeFileError
from recgym.common.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    clean_stale_temp_files,
    load_torch_weights_only,
    path_inside,
    read_json_file,
    sha256_bytes,
)
from recgym.envs.config import EnvConfig
from recgym.envs.sb3 import RankingSB3VecEnv
from recgym.envs.world import World
from recgym.experiments.resume import check_learner_state, learner_state, load_learner_state

if TYPE_CHECKING:  # annotations only; this module never imports the run's cell glue (cells imports it)
    from stable_baselines3.common.base_class import BaseAlgorithm

    from recgym.agents._sb3 import SB3Recommender

__all__ = ["CheckpointMismatchError", "NaNLossError", "train_rl", "train_agent", "find_resume_checkpoint",
           "ProgressCallback", "write_checkpoint", "write_curve_log"]

log = logging.getLogger(__name__)

CURVE_FIELDS = ("step", "eval_return", "train_ep_return", "train_ep_length")
CKPT_FORMAT = "recgym-checkpoint"
CKPT_VERSION = 3  # 3: the checkpoint file is an agent file (recgym-agent) with a "training" section
LATEST = "latest.json"
_STEP_FILE = re.compile(r"step_(\d{10})\.pt")
_STEP_MANIFEST = re.compile(r"step_(\d{10})\.json")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class CheckpointMismatchError(ValueError):
    """An intact checkpoint was written by a different config than the run resuming it."""


class NaNLossError(RuntimeError):
    """Training produced NaN/inf parameters or losses; the last good checkpoint is kept."""


class ProgressCallback(BaseCallback):
    """SB3 callback: calls ``advance(num_timesteps)`` at each rollout end (absolute count of env steps)."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        super().__init__()
        self.advance = advance
        self.last = 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.advance(self.num_timesteps)


def _finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def _losses_finite(model: BaseAlgorithm) -> tuple[bool, dict[str, float]]:
    vals = {k: float(v) for k, v in getattr(model.logger, "name_to_value", {}).items()
            if k.startswith("train/") and isinstance(v, (int, float))}
    return all(math.isfinite(v) for v in vals.values()), vals


def _apply_checkpoint(agent: SB3Recommender, ckpt: dict[str, Any], where: Path) -> None:
    """Load a verified checkpoint's training state into the freshly built agent; a mismatch names the field."""
    try:
        agent.load_training_state({k: ckpt[k] for k in ("policy", "optimizer", "rng", "learner") if k in ckpt})
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CorruptFileError(f"{where}: field {_failing_part(agent, ckpt)!r}: does not fit this agent's network "
                               f"({detail})") from None


def _restore_training_state(ckpt: dict[str, Any], model: BaseAlgorithm, venv: RankingSB3VecEnv, menv: VecMonitor,
                            where: Path, notify: Callable[[str], None] | None) -> None:
    """The env and learner state of an exact checkpoint (the run continues bit-identically); an older
    checkpoint without them resumes on a reseeded env, with a notice."""
    if "learner" not in ckpt and not _exact_resume_supported(model):
        return  # a lean learner's checkpoint never holds them (see _exact_resume_supported)
    if "learner" not in ckpt:
        (notify or log.warning)(f"{where}: written before exact resume (no env or learner state): training continues "
                                "on a reseeded env" + (" with an empty replay buffer" if hasattr(model, "replay_buffer")
                                                       else ""))
        return
    try:
        venv.load_state_dict(ckpt["sim"])
        load_learner_state(model, ckpt["learner"], menv)
    except ValueError as exc:
        raise CorruptFileError(f"{where}: {str(exc).removeprefix('load_state_dict: ')} (does not fit this run's "
                               "training env or agent)") from None


def _failing_part(agent: SB3Recommender, ckpt: dict[str, Any]) -> str:
    """Which part of a checkpoint does not load into ``agent`` (to name it in the error)."""
    model = agent.model
    for key, target in (("policy", model.policy), ("optimizer", model.policy.optimizer)):
        try:
            target.load_state_dict(ckpt[key])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError):
            return key
    return "rng"


def write_curve_log(path: Path, rows: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CURVE_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, float("nan")) for k in CURVE_FIELDS})
    atomic_write_text(path, buf.getvalue())


# ------------------------------------------------------------------------------------------- loading
def _field(where: Any, data: dict[str, Any], key: str, kind: type | tuple[type, ...], expected: str) -> Any:
    """``data[key]`` if present and of ``kind`` (bools are not ints), else a :class:`CorruptFileError`."""
    if key not in data:
        raise CorruptFileError(f"{where}: field {key!r}: expected {expected}, received nothing (missing)")
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise CorruptFileError(f"{where}: field {key!r}: expected {expected}, received {type(value).__name__}")
    return value


def _read_manifest(path: Path, ckpt_dir: Path) -> dict[str, Any]:
    """A checkpoint manifest (``latest.json`` or ``step_<N>.json``), every field checked; its ``file`` must
    name a checkpoint inside ``ckpt_dir``."""
    meta = read_json_file(path, what="checkpoint manifest")
    if not isinstance(meta, dict):
        raise CorruptFileError(f"{path}: expected a JSON object (checkpoint manifest), received {type(meta).__name__}")
    if "format" in meta and meta["format"] != CKPT_FORMAT:
        raise CorruptFileError(f"{path}: field 'format': expected {CKPT_FORMAT!r}, received {meta['format']!r}")
    version = meta.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= CKPT_VERSION:
        raise CorruptFileError(f"{path}: field 'version': expected 1..{CKPT_VERSION}, received {version!r}")
    name = _field(path, meta, "file", str, "a checkpoint file name step_<10 digits>.pt")
    match = _STEP_FILE.fullmatch(name)
    if not match:
        raise UnsafeFileError(f"{path}: field 'file': expected a checkpoint file name step_<10 digits>.pt in the "
                              f"same folder, received {name!r}; refusing to follow it")
    try:
        path_inside(ckpt_dir, name)
    except ValueError as exc:
        raise UnsafeFileError(f"{path}: field 'file': {exc}") from None
    step = _field(path, meta, "step", int, "a non-negative int")
    if step < 0 or step != int(match.group(1)):
        raise CorruptFileError(f"{path}: field 'step': expected {int(match.group(1))} (from {name}), received {step}")
    digest = _field(path, meta, "sha256", str, "a 64-hex-digit sha256")
    if not _HEX64.fullmatch(digest):
        raise CorruptFileError(f"{path}: field 'sha256': expected 64 lowercase hex digits, received {digest[:80]!r}")
    _field(path, meta, "config_hash", str, "the run's config hash")
    if "size" in meta:
        _field(path, meta, "size", int, "the file size in bytes")
    return {**meta, "version": version}


def _check_payload(payload: Any, where: Path, step: int) -> dict[str, Any]:
    """Check every field a resume uses, so a malformed checkpoint fails here (and is skipped), not mid-resume."""
    if not isinstance(payload, dict):
        raise CorruptFileError(f"{where}: expected a checkpoint dict, received {type(payload).__name__}")
    fmt = _field(where, payload, "format", str, repr(CKPT_FORMAT))
    if fmt != CKPT_FORMAT:
        raise CorruptFileError(f"{where}: field 'format': expected {CKPT_FORMAT!r}, received {fmt!r}")
    if _field(where, payload, "step", int, "an int") != step:
        raise CorruptFileError(f"{where}: field 'step': expected {step} (its manifest), received {payload['step']}")
    _field(where, payload, "config_hash", str, "the run's config hash")
    policy = _field(where, payload, "policy", dict, "the policy state dict")
    bad = [k for k, v in policy.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad or not policy:
        raise CorruptFileError(f"{where}: field 'policy': expected a non-empty dict of named tensors, received "
                               f"{'an empty dict' if not policy else f'non-tensor entries {bad[:3]}'}")
    if payload.get("trainer") == "fast":  # a seed of a batched fast-PPO job (recgym.experiments.seed_batch)
        from recgym.agents.ppo_fast import check_training_state

        try:
            check_training_state(payload)
        except ValueError as exc:
            raise CorruptFileError(f"{where}: {exc}") from None
        _field(where, payload, "sim", dict, "the training env's state")
        return _check_curve(payload, where)
    opt = _field(where, payload, "optimizer", dict, "the optimizer state dict")
    for key in ("state", "param_groups"):
        if key not in opt:
            raise CorruptFileError(f"{where}: field 'optimizer.{key}': expected a value, received nothing (missing)")
    rng = _field(where, payload, "rng", dict, "the RNG states")
    for key in ("agent", "torch", "env"):
        if key not in rng:
            raise CorruptFileError(f"{where}: field 'rng.{key}': expected an RNG state, received nothing (missing)")
    for key in ("agent", "rollout_buffer", "replay_buffer", "explore"):
        if key in rng:
            try:
                np.random.PCG64(0).state = rng[key]  # a throwaway local generator, only to validate the state
            except (TypeError, ValueError, KeyError) as exc:
                raise CorruptFileError(f"{where}: field 'rng.{key}': expected a numpy PCG64 state, received an "
                                       f"invalid one ({exc})") from None
    env_state = rng["env"]  # the env core's generator may live on CUDA: only its type is checked (never restored)
    if not (isinstance(env_state, torch.Tensor) and env_state.dtype == torch.uint8 and env_state.ndim == 1):
        raise CorruptFileError(f"{where}: field 'rng.env': expected a uint8 generator state tensor, received "
                               f"{type(env_state).__name__}")
    for key in ("torch", "sampler"):  # CPU generators (the global torch one, PPO's slate sampler)
        if key in rng:
            try:
                torch.Generator().set_state(rng[key])
            except (TypeError, RuntimeError, ValueError) as exc:
                raise CorruptFileError(f"{where}: field 'rng.{key}': expected a torch generator state, received an "
                                       f"invalid one ({str(exc)[:120]})") from None
    if ("sim" in payload) != ("learner" in payload):
        raise CorruptFileError(f"{where}: fields 'sim' and 'learner': expected both (exact resume) or neither, "
                               f"received only {'sim' if 'sim' in payload else 'learner'}")
    if "learner" in payload:
        _field(where, payload, "sim", dict, "the training env's state")
        try:
            check_learner_state(payload["learner"])
        except ValueError as exc:
            raise CorruptFileError(f"{where}: {exc}") from None
    return _check_curve(payload, where)


def _check_curve(payload: dict[str, Any], where: Path) -> dict[str, Any]:
    curve = _field(where, payload, "curve", list, "the learning curve rows")
    for i, row in enumerate(curve):
        if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)) or \
                not all(isinstance(v, (int, float)) for v in row.values()):
            raise CorruptFileError(f"{where}: field 'curve[{i}]': expected a dict of numbers with 'step', received {row!r:.80}")
    return payload


def _load_verified(ckpt_dir: Path, meta: dict[str, Any], cfg_hash: str) -> dict[str, Any]:
    """The checkpoint ``meta`` names, after its size, sha256 and config hash are checked; loaded weights-only."""
    path = path_inside(ckpt_dir, meta["file"])
    if not path.is_file():
        raise CorruptFileError(f"{path}: expected the checkpoint its manifest names, received no such file")
    if meta["config_hash"] != cfg_hash:
        raise CheckpointMismatchError(
            f"{path}: written by a different config (hash {meta['config_hash'][:12]} != {cfg_hash[:12]}); resume "
            "with the config that made it, or start again with --overwrite")
    if "size" in meta and path.stat().st_size != meta["size"]:
        raise CorruptFileError(f"{path}: expected {meta['size']} bytes (its manifest), received "
                               f"{path.stat().st_size} (truncated or altered)")
    data = path.read_bytes()
    if sha256_bytes(data) != meta["sha256"]:
        raise CorruptFileError(f"{path}: sha256 does not match its manifest (corrupt or altered checkpoint)")
    payload = _check_payload(_read_checkpoint(data, path), path, meta["step"])
    if payload["config_hash"] != cfg_hash:
        raise CheckpointMismatchError(f"{path}: field 'config_hash': written by a different config "
                                      f"({payload['config_hash'][:12]} != {cfg_hash[:12]})")
    return payload


def _read_checkpoint(data: bytes, path: Path) -> Any:
    """The training section of a checkpoint: version 3 is an agent file (checksummed manifest, weights-only
    payload; see :func:`recgym.agents.base.read_agent_payload`) whose ``training`` field holds it; versions
    1-2 were a bare torch file of the training state, still read weights-only."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            is_agent_file = MANIFEST_MEMBER in zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        is_agent_file = False
    if not is_agent_file:
        return load_torch_weights_only(data, path=path, what="checkpoint")
    training = read_agent_payload(data, path).get("training")
    if not isinstance(training, dict):
        raise CorruptFileError(f"{path}: field 'training': expected the training state of a checkpoint, received "
                               f"{type(training).__name__}")
    return training


def _quarantine(paths: list[Path]) -> list[str]:
    """Rename refused checkpoint files to ``*.rejected`` (kept for inspection, never globbed or loaded)."""
    moved = []
    for p in paths:
        if p.is_file() and not p.is_symlink():
            p.replace(p.with_name(p.name + ".rejected"))
            moved.append(p.name)
        elif p.is_symlink():
            p.unlink()
            moved.append(p.name)
    return moved


def find_resume_checkpoint(ckpt_dir: Path, cfg_hash: str,
                           notify: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The newest checkpoint in ``ckpt_dir`` that passes every check (see the module docstring), or ``None``.

    Refused checkpoints newer than the one chosen are renamed ``*.rejected``; ``notify`` receives one line
    saying which checkpoint the run resumes from and why newer ones were refused.

    Raises:
        CheckpointMismatchError: an intact checkpoint belongs to a different config.
    """
    say = notify or log.warning
    ckpt_dir = Path(ckpt_dir)
    removed = clean_stale_temp_files(ckpt_dir)
    if removed:
        say(f"{ckpt_dir}: removed {len(removed)} temp file(s) left by an interrupted write")
    problems: list[str] = []
    manifests: dict[int, dict[str, Any]] = {}
    latest_step: int | None = None
    latest = ckpt_dir / LATEST
    if latest.exists() or latest.is_symlink():
        try:
            meta = _read_manifest(latest, ckpt_dir)
            latest_step = meta["step"]
            manifests[meta["step"]] = meta
        except CorruptFileError as exc:
            problems.append(str(exc))
    for mpath in sorted(ckpt_dir.glob("step_*.json")):
        if not _STEP_MANIFEST.fullmatch(mpath.name):
            continue
        try:
            meta = _read_manifest(mpath, ckpt_dir)
        except CorruptFileError as exc:
            problems.append(str(exc))
            continue
        manifests[meta["step"]] = {**meta, "manifest": mpath.name}
    chosen: tuple[int, dict[str, Any]] | None = None
    for step in sorted(manifests, reverse=True):
        try:
            chosen = step, _load_verified(ckpt_dir, manifests[step], cfg_hash)
            break
        except CheckpointMismatchError:
            raise
        except CorruptFileError as exc:
            problems.append(str(exc))
    floor = chosen[0] if chosen else -1

    def step_of(p: Path) -> int:
        m = re.fullmatch(r"step_(\d{10})\.(?:pt|json)", p.name)
        return int(m.group(1)) if m else -1

    newer = [p for p in (*ckpt_dir.glob("step_*.pt"), *ckpt_dir.glob("step_*.json")) if step_of(p) > floor]
    problems += [f"{p.name}: no manifest (its write was interrupted)" for p in newer
                 if p.suffix == ".pt" and step_of(p) not in manifests]
    if chosen is not None and latest_step != chosen[0] and latest_step is None and not latest.exists():
        problems.append("latest.json is missing")
    elif chosen is not None and latest_step is not None and latest_step < chosen[0]:
        problems.append(f"latest.json names step {latest_step}, older than the newest complete checkpoint")
    moved = _quarantine(newer + ([latest] if chosen is None or latest_step != chosen[0] else []))
    renamed = f" (renamed to *.rejected: {', '.join(moved)})" if moved else ""
    if chosen is None:
        if problems:
            say(f"resume {ckpt_dir}: no valid checkpoint ({'; '.join(problems)}); training this cell from step 0"
                + renamed)
        return None
    step, payload = chosen
    if problems:
        say(f"resume {ckpt_dir}: resuming from step_{step:010d}.pt (step {step}), the newest valid checkpoint; "
            f"refused: {'; '.join(problems)}" + renamed)
    if latest_step != step:
        atomic_write_json(latest, {k: v for k, v in manifests[step].items() if k != "manifest"})
    return payload


def _exact_resume_supported(model: object) -> bool:
    """Exact resume captures what SB3's learners keep between ``learn`` calls; a lean learner of its own
    (SlateQ) resumes from its weights, optimiser and RNG states on a reseeded env."""
    from stable_baselines3.common.base_class import BaseAlgorithm

    return isinstance(model, BaseAlgorithm)


def _save(ckpt_dir: Path, agent: SB3Recommender, venv: RankingSB3VecEnv, menv: VecMonitor, step: int, cfg_hash: str,
          curve: list[dict[str, float]], keep: int) -> None:
    """The checkpoint of an SB3 agent's cell at ``step`` (:func:`write_checkpoint`)."""
    training = {**agent.training_state()}
    training["rng"] = {**training["rng"], "env": venv.core.generator.get_state()}  # recorded, not restored
    if _exact_resume_supported(agent.model):
        training["sim"], training["learner"] = venv.state_dict(), learner_state(agent.model, menv)
    write_checkpoint(ckpt_dir, agent, training, step, cfg_hash, curve, keep)


def write_checkpoint(ckpt_dir: Path, agent: Any, training: dict[str, Any], step: int, cfg_hash: str,
                     curve: list[dict[str, float]], keep: int) -> None:
    """``step_<N>.pt`` (the agent file with its ``training`` section: ``training`` plus format, version, step,
    config hash and curve), then its manifest ``step_<N>.json``, then ``latest.json``; all atomic. Prunes to
    ``keep``."""
    from recgym import __version__

    training = {"format": CKPT_FORMAT, "version": CKPT_VERSION, "step": step, "config_hash": cfg_hash,
                "curve": curve, **training}
    data = agent.to_bytes(training=training)
    name = f"step_{step:010d}.pt"
    atomic_write_bytes(ckpt_dir / name, data)
    meta = {"format": CKPT_FORMAT, "version": CKPT_VERSION, "step": step, "file": name, "size": len(data),
            "config_hash": cfg_hash, "sha256": sha256_bytes(data), "recgym_version": __version__}
    atomic_write_json(ckpt_dir / f"step_{step:010d}.json", meta)
    atomic_write_json(ckpt_dir / LATEST, meta)
    steps = sorted({int(m.group(1)) for p in ckpt_dir.iterdir()
                    if (m := re.fullmatch(r"step_(\d{10})\.(?:pt|json)", p.name))})
    for old in steps[:-keep]:
        (ckpt_dir / f"step_{old:010d}.json").unlink(missing_ok=True)  # manifest first: never one without its file
        (ckpt_dir / f"step_{old:010d}.pt").unlink(missing_ok=True)


def train_rl(agent: SB3Recommender, **kwargs: Any) -> list[dict[str, float]]:
    """Train an already-built ``agent`` (PPO/DQN recommender); see :func:`train_agent` for the arguments.
    Returns its learning curve rows."""
    return train_agent(lambda _env: agent, **kwargs)[1]


def train_agent(make: Callable[[RankingSB3VecEnv], SB3Recommender], *, world: World, train_env_cfg: EnvConfig, budget: int, num_envs: int,
                seed: int, checkpoint_every: int, ckpt_dir: Path, log_path: Path, tb_dir: Path | None,
                cfg_hash: str, curve_fn: Callable[[SB3Recommender], float], keep: int = 2, device: str = "cpu",
                on_progress: Callable[[int], None] | None = None, resume: bool = True,
                notify: Callable[[str], None] | None = None,
                wrap_env: Callable[[VecEnv], VecEnv] | None = None) -> tuple[SB3Recommender, list[dict[str, float]]]:
    """Build the agent on its training env (``make(env)``: no separate probe env) and train it for ``budget``
    env steps; returns ``(agent, learning curve rows)``.

    Already complete (newest valid checkpoint at ``>= budget``) and ``resume``: loads the final weights,
    trains nothing. ``notify`` receives one-line notices (resume fallback, cleaned temp files). The training
    env's seed derives from ``(seed, step resumed from)``. ``wrap_env``: optional VecEnv wrapper of the training
    env (e.g. the reward's fairness term, :class:`~recgym.envs.fairness.FairExposureReward`); evaluation and the
    learning curve use the plain env.

    Raises:
        NaNLossError: NaN/inf parameters or losses (the last good checkpoint is kept).
        CheckpointMismatchError: the folder holds an intact checkpoint of a different config.
        CorruptFileError: the chosen checkpoint does not fit the agent's network (names the field).
        DiskFullError: the disk filled up while writing a checkpoint or the curve.
    """
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        ckpt = find_resume_checkpoint(ckpt_dir, cfg_hash, notify)
    else:
        clean_stale_temp_files(ckpt_dir)
        ckpt = None
    start = int(ckpt["step"]) if ckpt else 0
    env_seed = int(np.random.SeedSequence([seed, start]).generate_state(1)[0] % (2**31))
    venv = RankingSB3VecEnv(num_envs, seed=env_seed, world=world, config=train_env_cfg, device=device)
    menv = VecMonitor(venv if wrap_env is None else wrap_env(venv))
    agent = make(venv)
    agent.num_timesteps = start
    agent.learn(menv, 0)  # builds the SB3 model on this env (no steps)
    model = agent.model
    if tb_dir is not None:
        from stable_baselines3.common.logger import configure

        model.set_logger(configure(str(tb_dir), ["tensorboard"]))
    if ckpt:
        _apply_checkpoint(agent, ckpt, ckpt_dir / f"step_{start:010d}.pt")
        _restore_training_state(ckpt, model, venv, menv, ckpt_dir / f"step_{start:010d}.pt", notify)
        curve = [dict(r) for r in ckpt["curve"] if r["step"] <= start]  # verified: the log may be stale
    else:
        curve = [{"step": 0.0, "eval_return": curve_fn(agent)}]
    write_curve_log(log_path, curve)
    progress = on_progress or (lambda _n: None)
    progress(start)
    step = start
    while step < budget:
        chunk = min(checkpoint_every, budget - step)
        try:
            agent.learn(menv, chunk, callback=ProgressCallback(progress))
        except (ValueError, RuntimeError) as exc:
            if "nan" in str(exc).lower():
                raise NaNLossError(f"NaN during training at step ~{model.num_timesteps} ({exc}); last good "
                                   f"checkpoint kept in {ckpt_dir} (step {step})") from exc
            raise
        agent.sync_from_model()
        ok_loss, losses = _losses_finite(model)
        if not _finite(model.policy) or not ok_loss:
            raise NaNLossError(
                f"NaN/inf after step {model.num_timesteps}: losses {losses}; the last good checkpoint (step {step}) "
                f"is kept in {ckpt_dir}. Lower learning_rate or max_grad_norm.")
        step = int(model.num_timesteps)
        eps = list(model.ep_info_buffer or [])
        row = {"step": float(step), "eval_return": curve_fn(agent),
               "train_ep_return": float(np.mean([e["r"] for e in eps])) if eps else float("nan"),
               "train_ep_length": float(np.mean([e["l"] for e in eps])) if eps else float("nan")}
        curve.append(row)
        write_curve_log(log_path, curve)
        if model.logger is not None:
            model.logger.record("eval/return", row["eval_return"])
            model.logger.dump(step)
        _save(ckpt_dir, agent, venv, menv, step, cfg_hash, curve, keep)
        progress(step)
    if ckpt and step >= budget and start == step:
        pass  # finished earlier: weights restored from the final checkpoint
    menv.close()
    return agent, curve
