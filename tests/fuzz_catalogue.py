"""A catalogue of hostile, careless and valid inputs at recgym's edges, and the classifier that judges them.

Shared by ``tests/test_fuzz_catalogue.py`` (every case must end as ``clean_error`` or ``accepted_valid``) and
``benchmarks/fuzz_report.py`` (prints the outcome counts). Areas: env keyword arguments, reset seeds and
options, actions, experiment configs (YAML files and ``--set`` overrides, agent hyper-parameters and world
configs) and interaction-log files. Field-level cases are generated from the config schemas, so configs
added later are fuzzed too.

A case is *valid* (recgym must accept it and the result must be right: finite rewards and observations, the
slate the values rank to, the value that was written) or *invalid* (recgym must raise one of its own error
classes, :data:`RECGYM_ERRORS`, with a message naming what was expected and what was received).
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import math
import shutil
import signal
import tempfile
import time
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
import gymnasium as gym
import numpy as np
import torch
from pydantic import BaseModel

import recgym  # noqa: F401 - registers recgym/Ranking-v0
from recgym.common.config import ConfigError
from recgym.common.errors import DataError
from recgym.envs.spaces import InvalidActionError, actions_to_slate

RECGYM_ERRORS = (ConfigError, InvalidActionError, DataError)
OUTCOMES = ("clean_error", "accepted_valid", "unclear_error", "foreign_exception", "silent_accept", "false_reject",
            "wrong_result", "hang")
"""clean_error: invalid input refused with a recgym error naming expected and received. accepted_valid: valid
input accepted with a correct result. unclear_error: a recgym error class whose message lacks expected or
received. foreign_exception: any other exception (a deep traceback from numpy/torch/yaml/pandas or a bare
ValueError/TypeError). silent_accept: invalid input accepted. false_reject: valid input refused. wrong_result:
valid input accepted with a wrong result. hang: over the time limit."""

ENV_BASE = {"num_candidates": 40, "candidates": {"pool_size": 120}, "slate_size": 5}
N, K = ENV_BASE["num_candidates"], ENV_BASE["slate_size"]


@dataclass(frozen=True)
class Case:
    area: str
    name: str
    valid: bool
    run: Callable[[], object]

    @property
    def id(self) -> str:
        return f"{self.area}:{self.name}"


class _TimeLimit(BaseException):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    if not seconds:
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise _TimeLimit

    # Save and restore an outer timer (pytest-timeout's), so the two can nest.
    start = time.monotonic()
    old = signal.signal(signal.SIGALRM, _raise)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 1e-3))


def clear_message(msg: str) -> bool:
    """Does an error message say what was expected and what was received (an unknown key or name names
    itself: "unknown key 'x' ...; expected one of: ...")?"""
    low = msg.lower()
    return "expected" in low and ("received" in low or "unknown " in low)


def classify(case: Case, time_limit: float | None = None) -> tuple[str, str]:
    """Run one case; return ``(outcome, detail)`` with outcome in :data:`OUTCOMES`."""
    try:
        with _time_limit(time_limit):
            case.run()
    except _TimeLimit:
        return "hang", f"no answer within {time_limit} s"
    except RECGYM_ERRORS as exc:
        msg = f"{type(exc).__name__}: {exc}"
        if case.valid:
            return "false_reject", msg
        return ("clean_error" if clear_message(str(exc)) else "unclear_error"), msg
    except AssertionError as exc:
        return ("wrong_result" if case.valid else "silent_accept"), f"AssertionError: {exc}"
    except Exception as exc:  # noqa: BLE001 - classifying every other exception is the point
        return "foreign_exception", f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    return ("accepted_valid" if case.valid else "silent_accept"), ""


# ============================================================================================ helpers
_TMP: list[Path] = []


def tmp_dir() -> Path:
    if not _TMP:
        _TMP.append(Path(tempfile.mkdtemp(prefix="recgym-fuzz-")))
        atexit.register(shutil.rmtree, _TMP[0], True)
    return _TMP[0]


@cache
def world() -> Any:
    from conftest import random_world

    return random_world()


def _make(**kwargs: Any) -> gym.Env:
    from recgym.envs.config import deep_merge

    return gym.make("recgym/Ranking-v0", **deep_merge({"world": world(), **ENV_BASE}, kwargs))


def _check_episode(env: gym.Env, steps: int = 3, action: Any = None) -> None:
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs), "reset observation outside the observation space"
    for _ in range(steps):
        a = action if action is not None else _valid_action(env.unwrapped.config, obs)
        obs, reward, term, trunc, info = env.step(a)
        assert math.isfinite(reward), f"non-finite reward {reward}"
        assert all(np.isfinite(v).all() for v in obs.values()), "non-finite observation"
        assert env.observation_space.contains(obs), "observation outside the observation space"
        if term or trunc:
            obs, _ = env.reset()


def _valid_action(cfg: Any, obs: dict[str, np.ndarray]) -> np.ndarray:
    allowed = np.flatnonzero(obs["mask"])
    if cfg.action_type == "scores":
        return np.linspace(1.0, -1.0, cfg.num_candidates, dtype=np.float32)
    if cfg.action_type == "item":
        return np.int64(allowed[0])
    return allowed[: cfg.slate_size].astype(np.int64)


# ------------------------------------------------------------------------------- schema-driven values
def _leaves(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """``(path, annotation, FieldInfo)`` of every scalar field of ``model`` and its nested models."""
    for name, info in model.model_fields.items():
        ann = info.annotation
        sub = _nested_model(ann)
        if sub is not None:
            yield from _leaves(sub, (*path, name))
        else:
            yield (*path, name), ann, info


def _nested_model(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    return None


def _kind(ann: Any) -> tuple[str, bool, tuple[Any, ...]]:
    """(base kind, optional?, literal options) of an annotation."""
    optional = False
    origin = typing.get_origin(ann)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        optional = len(args) < len(typing.get_args(ann))
        ann = args[0] if len(args) == 1 else ann
        origin = typing.get_origin(ann)
    if origin is Literal:
        return "literal", optional, typing.get_args(ann)
    if ann is bool:
        return "bool", optional, ()
    if ann is int:
        return "int", optional, ()
    if ann is float:
        return "float", optional, ()
    if ann is str:
        return "str", optional, ()
    if origin is list:
        return "list", optional, ()
    return "other", optional, ()


def _bounds(info: Any) -> dict[str, Any]:
    out = {}
    for m in info.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                out[attr] = getattr(m, attr)
    return out


def bad_values(ann: Any, info: Any) -> list[tuple[str, Any]]:
    """Python values a field of this type must refuse, with a short label each."""
    kind, optional, options = _kind(ann)
    out: list[tuple[str, Any]] = []
    if kind == "float":
        out = [("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf), ("1e308", 1e308), ("-1e16", -1e16),
               ("bool", True), ("str", "1.5"), ("str-nan", "nan"), ("list", [1.0]), ("complex", 1 + 0j)]
    elif kind == "int":
        out = [("true", True), ("false", False), ("str", "3"), ("float", 3.5), ("float-integral", 3.0),
               ("2**64", 2**64), ("-2**70", -(2**70)), ("nan", math.nan), ("list", [3])]
    elif kind == "bool":
        out = [("int-1", 1), ("int-0", 0), ("str", "true"), ("str-yes", "yes"), ("float", 1.0)]
    elif kind == "literal":
        first = str(options[0])
        out = [("typo", first + "x"), ("int", 1), ("bool", True), ("empty", ""), ("list", [first])]
    elif kind == "str":
        out = [("int", 3), ("list", ["a"]), ("bool", True)]
    if not optional and kind in ("float", "int", "bool", "literal", "str"):
        out.append(("null", None))
    b = _bounds(info)
    step = 1 if kind == "int" else 0.5
    if "ge" in b:
        out.append(("below-ge", b["ge"] - step))
    if "gt" in b:
        out.append(("at-gt", b["gt"]))
    if "le" in b:
        out.append(("above-le", b["le"] + step))
    if "lt" in b:
        out.append(("at-lt", b["lt"]))
    return out


def good_values(ann: Any, info: Any) -> list[tuple[str, Any, Any]]:
    """``(label, value given, value expected after validation)`` a field must accept."""
    kind, optional, _ = _kind(ann)
    default = info.default
    out: list[tuple[str, Any, Any]] = []
    if kind == "float" and isinstance(default, float):
        out.append(("np.float64", np.float64(default), default))
        if default == int(default):
            out.append(("int-for-float", int(default), default))
    elif kind == "int" and isinstance(default, int):
        out += [("np.int64", np.int64(default), default), ("np.int32", np.int32(default), default)]
    elif kind == "bool" and isinstance(default, bool):
        out.append(("np.bool_", np.bool_(default), default))
    if optional and default is None:
        out.append(("null", None, None))
    return out


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: Any = value
    for p in reversed(path):
        out = {p: out}
    return out


def _yaml(value: Any) -> str:
    """The YAML spelling of a Python value for ``--set``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        mantissa, _, exponent = repr(value).partition("e")
        if "." not in mantissa:
            mantissa += ".0"  # YAML 1.1 needs the dot to read 1e+16 as a float
        return f"{mantissa}e{exponent}" if exponent else mantissa
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, complex):
        return "'1+0j'"
    return str(value).replace("'", "")


# ============================================================================================ env kwargs
def env_kwarg_cases() -> list[Case]:
    from recgym.envs.config import EnvConfig

    cases: list[Case] = []
    for path, ann, info in _leaves(EnvConfig):
        name = ".".join(path)
        for label, value in bad_values(ann, info):
            kw = _nest(path, value)
            cases.append(Case("env-kwargs", f"{name}={label}", False, lambda kw=kw: _make(**kw)))
        for label, value, _ in good_values(ann, info):
            kw = _nest(path, value)
            cases.append(Case("env-kwargs", f"{name}={label}", True, lambda kw=kw: _check_episode(_make(**kw))))

    def bad(name: str, **kw: Any) -> None:
        cases.append(Case("env-kwargs", name, False, lambda: _make(**kw)))

    def good(name: str, **kw: Any) -> None:
        cases.append(Case("env-kwargs", name, True, lambda: _check_episode(_make(**kw))))

    good("choice_model-keyword-cascade", choice_model="cascade")
    bad("choice_model-keyword-typo", choice_model="mnlx")
    bad("choice_model-keyword-int", choice_model=1)
    bad("reward_fn-keyword-str", reward_fn="mix")
    bad("typo-slate_sise", slate_sise=3)
    bad("unknown-empty-key", **{"": 1})
    bad("unknown-foo", foo=1)
    bad("slate>candidates", slate_size=39, new_items={"slots": 5})
    bad("pool<candidates", candidates={"pool_size": 20})
    bad("item-with-k5", action_type="item")
    bad("pool>world-items", candidates={"pool_size": 400}, num_candidates=40)
    bad("flat-key-moved", pool_size=120)
    bad("section-not-mapping", dynamics=3)
    bad("section-typo", dynamics={"initial_budgt": 5})
    bad("world-typo", world="synthtic")
    bad("world-int", world=123)
    bad("world-none", world=None)
    bad("world-list", world=["synthetic"])
    bad("device-tpu", device="tpu")
    bad("device-int", device=3)
    bad("device-empty", device="")
    bad("device-meta", device="meta")
    if not torch.cuda.is_available():
        bad("device-cuda-absent", device="cuda")
        bad("device-cuda1-absent", device="cuda:1")
    bad("render-human", render_mode="human")
    cases.append(Case("env-kwargs", "render-int-direct", False, lambda: _ranking_env(render_mode=1)))
    bad("config-str", config="not a mapping")
    bad("config-int", config=123)
    bad("config-list", config=[1, 2])
    bad("config-nan", config={"choice": {"no_click_logit": math.nan}})
    bad("config-typo", config={"slate_sise": 3})
    bad("world_config-analytic-typo", world="analytic", world_config={"n_itemz": 10})
    bad("world_config-analytic-nan", world="analytic", world_config={"n_items": math.nan})
    bad("world_config-analytic-bool", world="analytic", world_config={"n_items": True})
    bad("world_config-list", world="analytic", world_config=[1])
    bad("world_config-str", world="analytic", world_config="n_items=3")
    bad("world_config-synthetic-nan", world="synthetic", world_config={"appeal_std": math.nan})
    bad("world_config-synthetic-typo", world="synthetic", world_config={"n_itemz": 5})
    bad("world_config-synthetic-seed-2**64", world="synthetic", world_config={"seed": 2**64})
    bad("log-missing-folder", world="log", data_dir=str(tmp_dir() / "no-such-folder"), encoder="hashing")
    good("config-dict", config={"choice": {"no_click_logit": 1}})
    good("int-for-float-no_click_logit", choice={"no_click_logit": -1})
    good("np-int-candidates", num_candidates=np.int64(40), candidates={"pool_size": np.int32(120)})
    good("device-cpu", device="cpu")
    good("device-auto", device="auto")
    good("render-ansi", render_mode="ansi")
    good("slate-action", action_type="slate")
    good("item-action", action_type="item", slate_size=1)
    good("reward-mix-int-weights", reward={"name": "mix", "weights": {"clicks": 1, "engagement": 0.5, "satisfaction": 2}})
    good("choice-shorthand", choice="pbm")
    good("analytic-world", world="analytic", world_config={"n_items": 150, "n_users": 8},
         num_candidates=40, candidates={"pool_size": 120}, new_items={"slots": 0, "per_step": 0.0})
    return cases


def _ranking_env(**kwargs: Any) -> Any:
    from recgym.envs.ranking import RankingEnv

    return RankingEnv(world(), **{**ENV_BASE, **kwargs})


# ============================================================================================ reset
# A fresh env per case: Gymnasium 1.4's passive checker (added by gym.make) fails with its own TypeError on
# the first step after a *first* reset that raised, so a shared env would blame one case on the next.
def _single_env() -> gym.Env:
    return _make()


def _vector_env() -> Any:
    from recgym.envs.vector import RankingVectorEnv

    return RankingVectorEnv(2, world=world(), **ENV_BASE)


def _reset_then_step(seed: Any = None, options: Any = None) -> None:
    env = _single_env()
    obs, info = env.reset(seed=seed, options=options)
    if isinstance(options, dict) and "user_index" in options:
        assert info["user"] == int(options["user_index"]), "reset did not start the requested user"
    _, reward, *_ = env.step(np.linspace(1, -1, N, dtype=np.float32))
    assert math.isfinite(reward)


def _vector_reset(seed: Any = None, options: Any = None) -> None:
    env = _vector_env()
    _, info = env.reset(seed=seed, options=options)
    if isinstance(options, dict) and "user_indices" in options:
        want = np.asarray(options["user_indices"] if not isinstance(options["user_indices"], torch.Tensor)
                          else options["user_indices"].numpy())
        assert np.array_equal(info["user"], want), "reset did not start the requested users"
    _, reward, *_ = env.step(np.tile(np.linspace(1, -1, N, dtype=np.float32), (2, 1)))
    assert np.isfinite(reward).all()


def reset_cases() -> list[Case]:
    n_users = world().population.num_users
    cases: list[Case] = []
    seeds_bad = {"-1": -1, "2**63": 2**63, "2**64": 2**64, "float": 1.5, "float-integral": 2.0, "str": "3",
                 "bool": True, "np.float64": np.float64(1), "list": [1, 2], "dict": {"a": 1}}
    seeds_good = {"none": None, "zero": 0, "max": 2**63 - 1, "np.int64": np.int64(5), "np.uint64": np.uint64(7)}
    for label, s in seeds_bad.items():
        cases.append(Case("reset", f"seed={label}", False, lambda s=s: _reset_then_step(seed=s)))
        cases.append(Case("reset-vector", f"seed={label}", False, lambda s=s: _vector_reset(seed=s)))
    for label, s in seeds_good.items():
        cases.append(Case("reset", f"seed={label}", True, lambda s=s: _reset_then_step(seed=s)))
        cases.append(Case("reset-vector", f"seed={label}", True, lambda s=s: _vector_reset(seed=s)))
    opts_bad = {"user_index=n": {"user_index": n_users}, "user_index=-1": {"user_index": -1},
                "user_index=1.5": {"user_index": 1.5}, "user_index=true": {"user_index": True},
                "user_index=str": {"user_index": "1"}, "user_index=none": {"user_index": None},
                "user_index=2**70": {"user_index": 2**70}, "user_index=list": {"user_index": [1]},
                "typo": {"user_idx": 1}, "options-list": [1], "options-str": "x",
                "user_indices-on-single": {"user_indices": [1]}}
    opts_good = {"none": None, "empty": {}, "user_index=0": {"user_index": 0},
                 "user_index=last": {"user_index": n_users - 1}, "user_index=np.int32": {"user_index": np.int32(3)},
                 "user_index=np.uint8": {"user_index": np.uint8(4)}}
    for label, o in opts_bad.items():
        cases.append(Case("reset", f"options={label}", False, lambda o=o: _reset_then_step(options=o)))
    for label, o in opts_good.items():
        cases.append(Case("reset", f"options={label}", True, lambda o=o: _reset_then_step(options=o)))
    vec_bad = {"wrong-length": {"user_indices": [0]}, "2d": {"user_indices": np.zeros((2, 1), np.int64)},
               "str": {"user_indices": ["a", "b"]}, "out-of-range": {"user_indices": [0, n_users]},
               "bool": {"user_indices": [0, True]}, "float": {"user_indices": [0.0, 1.0]},
               "scalar": {"user_indices": 3}, "string": {"user_indices": "01"}, "typo": {"user_indice": [0, 1]},
               "negative": {"user_indices": np.array([-1, 0])}}
    vec_good = {"list": {"user_indices": [0, 1]}, "tuple": {"user_indices": (2, 3)},
                "array": {"user_indices": np.array([4, 5], np.int32)}, "range": {"user_indices": range(2)},
                "tensor": {"user_indices": torch.tensor([6, 7])}, "repeat": {"user_indices": [3, 3]}}
    for label, o in vec_bad.items():
        cases.append(Case("reset-vector", f"options={label}", False, lambda o=o: _vector_reset(options=o)))
    for label, o in vec_good.items():
        cases.append(Case("reset-vector", f"options={label}", True, lambda o=o: _vector_reset(options=o)))
    return cases


# ============================================================================================ actions
_MASK = torch.ones((1, N), dtype=torch.bool)
_MASK[0, [3, 11, 17]] = False


def _check_scores(values: Any, expected_from: np.ndarray | None = None) -> None:
    """``values`` (any dtype) must give the slate their exact values rank to."""
    from recgym.envs.config import EnvConfig

    cfg = EnvConfig(**ENV_BASE)
    slate = actions_to_slate(values, _MASK, cfg, batched=False)
    ref_values = expected_from if expected_from is not None else np.asarray(values)
    exact = [int(v) if isinstance(v, (int, np.integer)) else float(v) for v in ref_values.tolist()]
    mask = _MASK[0].numpy()
    order = sorted(range(N), key=lambda j: (not mask[j], -exact[j], j))[:K]
    assert slate[0].tolist() == order, f"slate {slate[0].tolist()} != ranking of the values {order}"


def _env_step(action: Any, **kw: Any) -> None:
    env = _make(**kw)
    env.reset(seed=0)
    _, reward, *_ = env.step(action)
    assert math.isfinite(reward)


def action_cases() -> list[Case]:
    cases: list[Case] = []
    base = np.linspace(1.0, -1.0, N)  # distinct, descending: position order
    rng = np.random.default_rng(0)
    mixed = rng.permutation(N).astype(np.float64) - 20  # distinct integers, some negative

    def good(name: str, fn: Callable[[], object]) -> None:
        cases.append(Case("actions", name, True, fn))

    def bad(name: str, fn: Callable[[], object]) -> None:
        cases.append(Case("actions", name, False, fn))

    for dt in ("float16", "float32", "float64", "longdouble"):
        good(f"scores-{dt}", lambda dt=dt: _check_scores(mixed.astype(dt)))
    for dt in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        vals = mixed + 20 if dt.startswith("u") else mixed
        good(f"scores-{dt}", lambda dt=dt, vals=vals: _check_scores(vals.astype(dt), vals))
        good(f"scores-{dt}-env-step", lambda dt=dt, vals=vals: _env_step(vals.astype(dt)))
    for tdt in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.int16, torch.int32,
                torch.int64, torch.uint8, torch.uint16, torch.uint32, torch.uint64):
        vals = mixed + 20 if tdt in (torch.uint8, torch.uint16, torch.uint32, torch.uint64) else mixed
        good(f"scores-torch-{tdt}", lambda tdt=tdt, vals=vals: _check_scores(torch.tensor(vals).to(tdt), vals))
    big = base.copy()
    big[7] = 1e39  # finite in float64, inf in float32
    good("scores-float64-overflows-float32", lambda: _check_scores(big))
    close = np.full(N, 0.5)
    close[30], close[10] = 1.0 + 1e-12, 1.0  # equal once rounded to float32, distinct in float64
    good("scores-float64-distinct-only-in-float64", lambda: _check_scores(close))
    huge = -np.arange(N, dtype=np.int64) * 2**40
    huge[0], huge[30] = 2**60, 2**60 + 1  # equal once in float64: 30 must still come first
    good("scores-int64-beyond-2**53", lambda: _check_scores(huge))
    u64 = np.arange(N, dtype=np.uint64) + np.uint64(2**63)
    good("scores-uint64-above-2**63", lambda: _check_scores(u64))
    good("scores-python-list", lambda: _check_scores(base.tolist()))
    good("scores-python-int-list", lambda: _check_scores([int(v) for v in mixed]))
    good("scores-negative-stride", lambda: _check_scores(base[::-1].astype(np.float32)))
    good("scores-non-contiguous", lambda: _check_scores(np.repeat(base, 2).astype(np.float32)[::2]))
    ro = base.astype(np.float32)
    ro.flags.writeable = False
    good("scores-read-only", lambda: _check_scores(ro))
    good("scores-minus-zero-ties", lambda: _check_scores(np.r_[-0.0, 0.0, np.zeros(N - 2)]))
    good("scores-float64-env-step", lambda: _env_step(big))
    good("scores-list-env-step", lambda: _env_step(base.tolist()))

    def scores_bad(name: str, action: Any) -> None:
        bad(f"scores-{name}", lambda: _env_step(action))

    scores_bad("bool", np.ones(N, bool))
    scores_bad("complex", np.ones(N, np.complex64))
    scores_bad("torch-complex", torch.ones(N, dtype=torch.complex64))
    scores_bad("torch-bool", torch.ones(N, dtype=torch.bool))
    scores_bad("object", np.array([1.0] * (N - 1) + [None], dtype=object))
    scores_bad("object-numbers", np.array([1.0] * N, dtype=object))
    scores_bad("str", np.array(["1"] * N))
    scores_bad("bytes", np.array([b"1"] * N))
    scores_bad("none", None)
    scores_bad("string", "abc")
    scores_bad("dict", {"a": 1})
    scores_bad("ragged", [[1.0, 2.0], [3.0]])
    scores_bad("ragged-deep", [1.0, [2.0, 3.0]] + [0.0] * (N - 2))
    scores_bad("scalar", 1.0)
    scores_bad("wrong-length", np.zeros(N - 1, np.float32))
    scores_bad("2d", np.zeros((1, N), np.float32))
    scores_bad("empty", np.zeros(0, np.float32))
    scores_bad("nan-float32", np.r_[np.zeros(N - 1), np.nan].astype(np.float32))
    scores_bad("inf-float64", np.r_[np.zeros(N - 1), np.inf])
    scores_bad("neg-inf-float16", np.r_[np.zeros(N - 1), -np.inf].astype(np.float16))
    scores_bad("datetime", np.array(["2020-01-01"] * N, dtype="datetime64[D]"))
    scores_bad("timedelta", np.zeros(N, dtype="timedelta64[s]"))
    scores_bad("structured", np.zeros(N, dtype=[("a", "f4")]))
    scores_bad("generator", (float(x) for x in range(N)))
    scores_bad("set", set(range(N)))

    slate_ok = np.array([0, 1, 2, 4, 5])
    for dt in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        good(f"slate-{dt}", lambda dt=dt: _env_step(slate_ok.astype(dt), action_type="slate"))
    good("slate-list", lambda: _env_step([0, 1, 2, 4, 5], action_type="slate"))
    good("slate-torch-int32", lambda: _env_step(torch.tensor([0, 1, 2, 4, 5], dtype=torch.int32), action_type="slate"))

    def slate_bad(name: str, action: Any) -> None:
        bad(f"slate-{name}", lambda: _env_step(action, action_type="slate"))

    slate_bad("float", slate_ok.astype(np.float32))
    slate_bad("float64-integral", slate_ok.astype(np.float64))
    slate_bad("bool", np.array([True, False, True, False, True]))
    slate_bad("out-of-range", np.array([0, 1, 2, 3, N]))
    slate_bad("negative", np.array([0, 1, -1, 3, 4]))
    slate_bad("duplicate", np.array([0, 1, 1, 3, 4]))
    slate_bad("uint64-huge", np.array([0, 1, 2, 3, 2**64 - 1], np.uint64))
    slate_bad("int8-negative", np.array([0, 1, 2, 3, -128], np.int8))
    slate_bad("too-short", np.array([0, 1, 2]))
    slate_bad("str", np.array(["0", "1", "2", "3", "4"]))
    slate_bad("object", np.array([0, 1, 2, 3, None], dtype=object))
    slate_bad("none", None)
    slate_bad("ragged", [[0, 1], [2]])
    slate_bad("torch-float", torch.tensor([0.0, 1, 2, 3, 4]))
    slate_bad("python-huge-int", [0, 1, 2, 3, 2**70])

    item_kw = {"action_type": "item", "slate_size": 1}
    for name, a in {"python-int": 3, "np.uint8": np.uint8(3), "np.int16": np.int16(3), "shape-1": np.array([3]),
                    "torch-0d": torch.tensor(3), "torch-shape-1": torch.tensor([3])}.items():
        good(f"item-{name}", lambda a=a: _env_step(a, **item_kw))
    for name, a in {"out-of-range": N, "negative": -1, "bool": True, "float": 2.0, "str": "1", "none": None,
                    "list2": [1, 2], "nan": math.nan, "complex": 1j}.items():
        bad(f"item-{name}", lambda a=a: _env_step(a, **item_kw))

    def vec(action: Any) -> None:
        env = _vector_env()
        env.reset(seed=0)
        _, reward, *_ = env.step(action)
        assert np.isfinite(reward).all()

    good("vector-float64", lambda: vec(np.tile(big, (2, 1))))
    good("vector-uint16", lambda: vec(np.tile(mixed + 20, (2, 1)).astype(np.uint16)))
    bad("vector-single-shape", lambda: vec(base.astype(np.float32)))
    bad("vector-ragged", lambda: vec([base.tolist(), base.tolist()[:-1]]))
    bad("vector-object", lambda: vec(np.array([base.tolist(), [None] * N], dtype=object)))
    bad("vector-nan-row-1", lambda: vec(np.stack([base, np.r_[base[:-1], np.nan]]).astype(np.float32)))
    return cases


# ============================================================================================ configs
BASE_CONFIG = {"name": "fuzz", "agents": [{"name": "random"}, {"name": "ppo"}]}


def _load(sets: list[str], raw: dict[str, Any] | None = None) -> Any:
    from recgym.experiments.config import load_config

    return load_config(raw=raw if raw is not None else BASE_CONFIG, overrides=sets)


def _lookup(cfg: Any, path: str) -> Any:
    node = cfg.to_dict()
    for part in path.replace("[", ".").replace("]", "").split("."):
        node = node[int(part)] if part.isdigit() else node[part]
    return node


def _check_set(path: str, text: str, expected: Any, raw: dict[str, Any] | None = None) -> None:
    cfg = _load([f"{path}={text}"], raw)
    got = _lookup(cfg, path)
    assert got == expected and type(got) is type(expected), f"{path}: got {got!r}, expected {expected!r}"


def config_set_cases() -> list[Case]:
    from recgym.agents import AGENTS
    from recgym.experiments.config import ExperimentConfig

    cases: list[Case] = []
    skip = {"name", "description", "world", "data_dir", "encoder", "device", "dir"}
    for path, ann, info in _leaves(ExperimentConfig):
        if path[-1] in skip or path == ("agents",):
            continue
        key = ".".join(path)
        for label, value in bad_values(ann, info):
            text = _yaml(value)
            cases.append(Case("config-set", f"{key}={label}", False, lambda k=key, t=text: _load([f"{k}={t}"])))
        for label, value, expected in good_values(ann, info):
            text = _yaml(value.item() if hasattr(value, "item") else value)
            cases.append(Case("config-set", f"{key}={label}", True,
                              lambda k=key, t=text, e=expected: _check_set(k, t, e)))
    # agent hyper-parameters: every registered agent's typed Config
    for agent, cls in sorted(AGENTS.items()):
        entry: dict[str, Any] = {"name": agent}
        if agent == "dqn":
            entry["env"] = {"action_type": "item", "slate_size": 1}
        raw = {"name": "fuzz", "agents": [entry]}
        for fname, info in cls.Config.model_fields.items():
            if fname in ("seed", "device"):
                continue
            key = f"agents[0].hyperparams.{fname}"
            for label, value in bad_values(info.annotation, info):
                text = _yaml(value)
                cases.append(Case("config-hyperparams", f"{agent}.{fname}={label}", False,
                                  lambda k=key, t=text, r=raw: _load([f"{k}={t}"], r)))
            for label, value, expected in good_values(info.annotation, info):
                text = _yaml(value.item() if hasattr(value, "item") else value)
                cases.append(Case("config-hyperparams", f"{agent}.{fname}={label}", True,
                                  lambda k=key, t=text, e=expected, r=raw: _check_set(k, t, e, r)))
    # world configs, validated into their typed models before any world is built
    from recgym.experiments.config import world_config_model

    for world_name in ("synthetic", "analytic", "movielens-100k"):
        model = world_config_model(world_name)
        raw = {**BASE_CONFIG, "world": world_name}
        for path, ann, info in _leaves(model):
            key = "world_config." + ".".join(path)
            for label, value in bad_values(ann, info):
                cases.append(Case("config-world", f"{world_name}.{'.'.join(path)}={label}", False,
                                  lambda k=key, t=_yaml(value), r=raw: _load([f"{k}={t}"], r)))
        cases.append(Case("config-world", f"{world_name}.typo", False,
                          lambda r=raw: _load(["world_config.n_itemz=3"], r)))

    def bad(name: str, *sets: str) -> None:
        cases.append(Case("config-set", name, False, lambda: _load(list(sets))))

    def good(name: str, sets: list[str], path: str, expected: Any) -> None:
        cases.append(Case("config-set", name, True,
                          lambda: _lookup(_load(sets), path) == expected or _fail(f"{path} != {expected!r}")))

    bad("threads-is-true", "threads=true")
    bad("seeds=[true]", "evaluation.seeds=[true]")
    bad("seeds=[2**32]", "evaluation.seeds=[4294967296]")
    bad("seeds=[2**64]", "evaluation.seeds=[18446744073709551616]")
    bad("seeds=[-1]", "evaluation.seeds=[-1]")
    bad("seeds=[1.5]", "evaluation.seeds=[1.5]")
    bad("seeds=[]", "evaluation.seeds=[]")
    bad("seeds=dup", "evaluation.seeds=[1, 1]")
    bad("seeds=scalar", "evaluation.seeds=3")
    bad("seeds=nested", "evaluation.seeds=[[1]]")
    bad("batch_size=True", "agents[1].hyperparams.batch_size=true")
    bad("num_candidates='100'", "env.num_candidates='100'")
    bad("ent_coef=.nan", "agents[1].hyperparams.ent_coef=.nan")
    bad("hyperparams-seed", "agents[1].hyperparams.seed=3")
    bad("hyperparams-device", "agents[1].hyperparams.device=cpu")
    bad("hyperparams-list", "agents[1].hyperparams=[1]")
    bad("agent-env-nan", "agents[1].env.choice.no_click_logit=.nan")
    bad("agent-env-typo", "agents[1].env.slate_sise=3")
    bad("device=tpu", "device=tpu")
    bad("device=3", "device=3")
    bad("device=null", "device=null")
    if not torch.cuda.is_available():
        bad("device=cuda-absent", "device=cuda")
    bad("name-list", "name=[a]")
    bad("name-path", "name=../x")
    bad("name-empty", "name=''")
    bad("world-typo", "world=synthtic")
    bad("world_config-list", "world_config=[1]")
    bad("agents-empty", "agents=[]")
    bad("agents-mapping", "agents={}")
    bad("agents-strings", "agents=[ppo]")
    bad("agent-name-typo", "agents[0].name=popularty")
    bad("logging-policy-oracle", "training.logging.policy=oracle")
    bad("no-equals", "threads")
    bad("empty-key", "=3")
    bad("empty-segment", "training..num_envs=3")
    bad("index-out-of-range", "agents[9].name=random")
    bad("index-into-mapping", "training[0]=1")
    bad("scalar-for-section", "training=5")
    bad("into-scalar", "threads.x=1")
    bad("duplicate-key-in-value", "env={slate_size: 5, slate_size: 6}")
    bad("undefined-alias", "description=*a")
    bad("python-tag", "name=!!python/object/apply:os.system ['true']")
    bad("unknown-tag", "name=!foo bar")
    bad("unclosed-flow", "evaluation.seeds=[1, 2")
    bad("two-documents", "name=a\n---\nb")
    bad("big-int-digits", "threads=" + "9" * 5000)
    bad("alias-bomb", "description=" + _bomb_flow(9))
    good("seeds-max", ["evaluation.seeds=[0, 4294967295]"], "evaluation.seeds", [0, 4294967295])
    good("int-for-float", ["env.choice.no_click_logit=2"], "env.choice.no_click_logit", 2.0)
    good("yes-for-bool", ["output.plots=no"], "output.plots", False)
    good("null-optional", ["threads=null"], "threads", None)
    good("quoted-name", ["name='abc'"], "name", "abc")
    good("dotted-index", ["agents.1.hyperparams.hidden=8"], "agents[1].hyperparams.hidden", 8)
    good("target_kl-null", ["agents[1].hyperparams.target_kl=null"], "agents[1].hyperparams.target_kl", None)
    good("last-wins-across-sets", ["threads=2", "threads=3"], "threads", 3)
    good("device-cpu", ["device=cpu"], "device", "cpu")
    good("device-auto", ["device=auto"], "device", "auto")
    good("anchor-in-value", ["env={slate_size: &k 4, max_steps: *k}"], "env.max_steps", 4)
    return cases


def _fail(msg: str) -> None:
    raise AssertionError(msg)


def _bomb_flow(depth: int) -> str:
    """A one-line YAML alias bomb: each level is a list of ten references to the previous one."""
    parts = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, depth + 1):
        parts.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "[" + ", ".join(parts) + "]"


def _bomb_block(depth: int) -> str:
    lines = ["name: bomb", "agents: [{name: random}]", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, depth + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    lines.append(f"description: *a{depth}")
    return "\n".join(lines) + "\n"


VALID_YAML = """\
name: fuzz
description: "émoji ✓ and a tab-free unicode description"
agents:
  - name: random
  - name: ppo
    hyperparams: {hidden: 8}
evaluation: {seeds: [0, 1]}
"""


def _yaml_file(name: str, data: bytes | str) -> Path:
    path = tmp_dir() / "yaml" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _load_file(path: Path) -> Any:
    from recgym.experiments.config import load_config

    return load_config(path)


def yaml_file_cases() -> list[Case]:
    from recgym.common.yamlio import MAX_BYTES

    cases: list[Case] = []

    def bad(name: str, data: bytes | str) -> None:
        cases.append(Case("config-yaml", name, False, lambda: _load_file(_yaml_file(name, data))))

    def good(name: str, data: bytes | str, check: Callable[[Any], bool]) -> None:
        def run() -> None:
            cfg = _load_file(_yaml_file(name, data))
            assert check(cfg), f"{name}: loaded config is not what the file says"

        cases.append(Case("config-yaml", name, True, run))

    bad("duplicate-top-key", VALID_YAML + "name: other\n")
    bad("duplicate-nested-key", VALID_YAML + "env:\n  slate_size: 5\n  slate_size: 6\n")
    bad("duplicate-key-in-agent", "name: t\nagents:\n  - name: random\n    name: ppo\n")
    bad("duplicate-bool-int-key", "name: t\nagents: [{name: random}]\nenv: {1: a, true: b}\n")
    for depth in (7, 9, 20):
        bad(f"alias-bomb-depth-{depth}", _bomb_block(depth))
    bad("alias-bomb-merge", "name: t\nagents: [{name: random}]\n" + "".join(
        f"m{i}: &m{i} {{" + ", ".join(f"k{j}: *m{i - 1}" for j in range(10)) + "}\n" if i else "m0: &m0 {a: 1}\n"
        for i in range(12)))
    bad("recursive-alias", "name: t\nagents: &x [{name: random}, *x]\n")
    bad("utf-16-le-bom", VALID_YAML.encode("utf-16"))
    bad("utf-16-be-bom", codecs.BOM_UTF16_BE + VALID_YAML.encode("utf-16-be"))
    bad("utf-16-no-bom", VALID_YAML.encode("utf-16-le"))
    bad("utf-32", VALID_YAML.encode("utf-32"))
    bad("latin-1", VALID_YAML.replace("émoji ✓", "café").encode("latin-1"))
    bad("windows-1252", "name: t\ndescription: “quoted”\nagents: [{name: random}]\n".encode("cp1252"))
    bad("binary-png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    bad("random-bytes", np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes())
    bad("nul-in-middle", "name: t\x00\nagents: [{name: random}]\n")
    bad("control-char", "name: t\x07\nagents: [{name: random}]\n")
    bad("top-level-list", "- name: t\n- agents: []\n")
    bad("top-level-string", "just a string\n")
    bad("top-level-int", "42\n")
    bad("empty-file", "")
    bad("only-comments", "# nothing here\n")
    bad("two-documents", VALID_YAML + "---\nname: second\n")
    bad("python-object-tag", "name: !!python/object/apply:os.system ['touch /tmp/recgym-pwned']\nagents: [{name: random}]\n")
    bad("python-name-tag", "name: !!python/name:os.system\nagents: [{name: random}]\n")
    bad("unknown-tag", "name: !custom t\nagents: [{name: random}]\n")
    bad("binary-tag", "name: !!binary aGVsbG8=\nagents: [{name: random}]\n")
    bad("set-tag", "name: t\nagents: [{name: random}]\nevaluation: {seeds: !!set {1: null}}\n")
    bad("timestamp-name", "name: 2024-01-01\nagents: [{name: random}]\n")
    bad("too-big", VALID_YAML + "#" * (MAX_BYTES + 10) + "\n")
    bad("deep-nesting-flow", "name: t\nagents: [{name: random}]\ndescription: " + "[" * 200 + "]" * 200 + "\n")
    bad("deep-nesting-block", "name: t\nagents: [{name: random}]\nworld_config:\n" + "".join(
        "  " * (i + 1) + f"k{i}:\n" for i in range(150)) + "  " * 151 + "v\n")
    bad("huge-int", "name: t\nagents: [{name: random}]\nthreads: " + "9" * 5000 + "\n")
    bad("tab-indent", "name: t\nagents:\n\t- name: random\n")
    bad("unclosed-bracket", "name: t\nagents: [{name: random}\n")
    bad("bad-indent", "name: t\n  agents: [{name: random}]\n")
    bad("complex-key", "name: t\nagents: [{name: random}]\n? [a, b]\n: c\n")
    bad("null-key", "name: t\nagents: [{name: random}]\nnull: 3\n")
    bad("int-key", "name: t\nagents: [{name: random}]\n1: 3\n")
    bad("name-bool", "name: no\nagents: [{name: random}]\n")
    bad("agents-missing", "name: t\n")
    bad("name-missing", "agents: [{name: random}]\n")
    bad("threads-true", "name: t\nagents: [{name: random}]\nthreads: true\n")
    bad("seeds-true", "name: t\nagents: [{name: random}]\nevaluation: {seeds: [true]}\n")
    bad("nan-float", "name: t\nagents: [{name: random}]\nenv: {choice: {no_click_logit: .nan}}\n")
    bad("inf-budget", "name: t\nagents: [{name: random}]\nenv: {dynamics: {initial_budget: .inf}}\n")
    bad("1e308-weight", "name: t\nagents: [{name: random}]\nenv: {reward: {name: mix, weights: {clicks: 1.0e+308}}}\n")
    bad("flat-env-key", "name: t\nagents: [{name: random}]\nenv: {no_click_logit: 1.0}\n")
    bad("device-tpu", "name: t\nagents: [{name: random}]\ndevice: tpu\n")
    bad("seed-2**64", "name: t\nagents: [{name: random}]\nevaluation: {seeds: [18446744073709551616]}\n")
    bad("popularity-tie_noise-inf", "name: t\nagents: [{name: popularity, hyperparams: {tie_noise: .inf}}]\n")
    bad("unknown-section", "name: t\nagents: [{name: random}]\ntrainig: {num_envs: 3}\n")
    good("valid-basic", VALID_YAML, lambda c: c.agents[1].hyperparams == {"hidden": 8})
    good("utf-8-bom", codecs.BOM_UTF8 + VALID_YAML.encode(), lambda c: c.name == "fuzz")
    good("crlf", VALID_YAML.replace("\n", "\r\n"), lambda c: c.evaluation.seeds == [0, 1])
    good("anchors-and-merge", "name: t\nagents:\n  - {name: ppo, label: a, hyperparams: &hp {hidden: 8, n_epochs: 1}}\n"
         "  - {name: ppo, label: b, hyperparams: {<<: *hp, hidden: 16}}\n",
        lambda c: c.agents[0].hyperparams == {"hidden": 8, "n_epochs": 1}
        and c.agents[1].hyperparams == {"hidden": 16, "n_epochs": 1})
    good("alias-reuse-is-a-copy", "name: t\nagents:\n  - {name: ppo, label: a, hyperparams: &hp {hidden: 8}}\n"
         "  - {name: ppo, label: b, hyperparams: *hp}\n",
         lambda c: c.agents[0].hyperparams == c.agents[1].hyperparams == {"hidden": 8})
    good("flow-style", '{name: t, agents: [{name: random}], env: {slate_size: 4}}',
         lambda c: c.env.slate_size == 4)
    good("comments-and-quotes", "# a comment\n'name': \"t\"  # trailing\nagents: [{name: random}]\n",
         lambda c: c.name == "t")
    good("int-for-float", "name: t\nagents: [{name: random}]\nenv: {choice: {no_click_logit: -1}}\n",
         lambda c: c.env.choice.no_click_logit == -1.0)
    good("yes-bool", "name: t\nagents: [{name: random}]\noutput: {plots: yes}\n", lambda c: c.output.plots is True)
    good("exponent-float", "name: t\nagents: [{name: ppo, hyperparams: {learning_rate: 3.0e-4}}]\n",
         lambda c: c.agents[0].hyperparams["learning_rate"] == 3e-4)
    for shipped in sorted((Path(__file__).resolve().parents[1] / "experiments" / "configs").glob("*.yaml")):
        good(f"shipped-{shipped.stem}", shipped.read_bytes(), lambda c, s=shipped.stem: bool(c.name))
    return cases


# ============================================================================================ log files
_INTER = "user_id,item_id,rating,timestamp\nu1,i1,5,100\nu1,i2,3,200\nu2,i1,4,150\nu2,i3,2,300\n"
_ITEMS = "item_id,title,genres\ni1,Alpha,Drama|Comedy\ni2,Beta,Drama\ni3,Gamma,\n"


def _log_folder(name: str, files: dict[str, bytes | str | None]) -> Path:
    folder = tmp_dir() / "logs" / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    content = {"interactions.csv": _INTER, "items.csv": _ITEMS, **files}
    for fname, data in content.items():
        if data is not None:
            (folder / fname).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return folder


def _load_log(folder: Path, **kw: Any) -> Any:
    from recgym.envs.datasets.logs import load_log

    return load_log(folder, **kw)


def log_cases() -> list[Case]:
    cases: list[Case] = []

    def bad(name: str, files: dict[str, bytes | str | None], **kw: Any) -> None:
        cases.append(Case("logs", name, False, lambda: _load_log(_log_folder(name, files), **kw)))

    def good(name: str, files: dict[str, bytes | str | None], check: Callable[[Any], bool], **kw: Any) -> None:
        def run() -> None:
            data = _load_log(_log_folder(name, files), **kw)
            inter = data.interactions
            assert np.isfinite(inter["weight"].to_numpy()).all() and inter["positive"].any()
            assert check(data), f"{name}: loaded data is not what the files say"

        cases.append(Case("logs", name, True, run))

    def inter_with(col: str, values: list[str]) -> str:
        rows = ["u1,i1", "u1,i2", "u2,i1", "u2,i3"]
        return f"user_id,item_id,{col}\n" + "".join(f"{r},{v}\n" for r, v in zip(rows, values, strict=True))

    bad("header-only-interactions", {"interactions.csv": "user_id,item_id,rating\n"})
    bad("header-only-items", {"items.csv": "item_id,title\n"})
    bad("header-only-users", {"users.csv": "user_id,age\n"})
    bad("empty-interactions-file", {"interactions.csv": ""})
    bad("no-positives-rating", {"interactions.csv": inter_with("rating", ["1", "2", "3", "3.5"])})
    bad("no-positives-weight", {"interactions.csv": inter_with("weight", ["0", "0", "0", "0"])})
    bad("negative-weight", {"interactions.csv": inter_with("weight", ["1", "-1", "1", "1"])})
    bad("nan-weight", {"interactions.csv": inter_with("weight", ["1", "nan", "1", "1"])})
    bad("inf-weight", {"interactions.csv": inter_with("weight", ["1", "inf", "1", "1"])})
    bad("huge-weight", {"interactions.csv": inter_with("weight", ["1", "1e39", "1", "1"])})
    bad("text-weight", {"interactions.csv": inter_with("weight", ["1", "heavy", "1", "1"])})
    bad("inf-rating", {"interactions.csv": inter_with("rating", ["5", "inf", "4", "4"])})
    bad("1e30-rating", {"interactions.csv": inter_with("rating", ["5", "1e30", "4", "4"])})
    bad("-1e30-rating", {"interactions.csv": inter_with("rating", ["5", "-1e30", "4", "4"])})
    bad("empty-rating", {"interactions.csv": inter_with("rating", ["5", "", "4", "4"])})
    bad("1e30-timestamp", {"interactions.csv": inter_with("timestamp", ["1", "1e30", "3", "4"])})
    bad("inf-timestamp", {"interactions.csv": inter_with("timestamp", ["1", "inf", "3", "4"])})
    bad("-inf-timestamp", {"interactions.csv": inter_with("timestamp", ["1", "-inf", "3", "4"])})
    bad("nan-timestamp", {"interactions.csv": inter_with("timestamp", ["1", "nan", "3", "4"])})
    bad("2**63-timestamp", {"interactions.csv": inter_with("timestamp", ["1", "9223372036854775808", "3", "4"])})
    bad("text-timestamp", {"interactions.csv": inter_with("timestamp", ["1", "yesterday", "3", "4"])})
    bad("year-1e30", {"items.csv": "item_id,title,year\ni1,A,1e30\ni2,B,2000\ni3,C,\n"})
    bad("year-inf", {"items.csv": "item_id,title,year\ni1,A,inf\ni2,B,2000\ni3,C,\n"})
    bad("year-fraction", {"items.csv": "item_id,title,year\ni1,A,1999.5\ni2,B,2000\ni3,C,\n"})
    bad("utf-16-interactions", {"interactions.csv": _INTER.encode("utf-16")})
    bad("latin-1-items", {"items.csv": "item_id,title\ni1,Café\ni2,B\ni3,C\n".encode("latin-1")})
    bad("binary-items", {"items.csv": bytes(range(256)) * 4})
    bad("missing-column", {"interactions.csv": "user,item_id\nu1,i1\n"})
    bad("unknown-item", {"interactions.csv": "user_id,item_id\nu1,i9\n"})
    bad("unknown-user", {"users.csv": "user_id,age\nu1,30\n"})
    bad("duplicate-item", {"items.csv": "item_id,title\ni1,A\ni1,B\ni2,C\ni3,D\n"})
    bad("empty-item-text", {"items.csv": "item_id,title\ni1,\ni2,B\ni3,C\n"})
    bad("empty-user-id", {"interactions.csv": "user_id,item_id\n,i1\n"})
    bad("no-text-column", {"items.csv": "item_id\ni1\ni2\ni3\n"})
    bad("ragged-row", {"interactions.csv": "user_id,item_id\nu1,i1,extra,more\n"})
    bad("unterminated-quote", {"interactions.csv": 'user_id,item_id\n"u1,i1\n'})
    bad("missing-items-file", {"items.csv": None})
    bad("positive-threshold-nan", {}, positive_threshold=math.nan)
    bad("positive-threshold-str", {}, positive_threshold="4")
    cases.append(Case("logs", "missing-folder", False, lambda: _load_log(tmp_dir() / "logs" / "nope")))
    good("valid-ratings", {}, lambda d: d.num_interactions == 4 and int(d.interactions["positive"].sum()) == 2)
    good("two-columns-implicit", {"interactions.csv": "user_id,item_id\nu1,i1\nu2,i2\n"},
         lambda d: bool(d.interactions["positive"].all()))
    good("weights", {"interactions.csv": inter_with("weight", ["0", "2.5", "0", "1"])},
         lambda d: int(d.interactions["positive"].sum()) == 2)
    good("millisecond-timestamps", {"interactions.csv": inter_with("timestamp", ["1700000000000", "1700000000001",
                                                                                 "1700000000002", "3"])},
         lambda d: d.interactions["timestamp"].iloc[1] == 1700000000001)
    good("iso-timestamps", {"interactions.csv": inter_with("timestamp", ["2020-01-01", "2020-01-02T10:00:00Z",
                                                                         "1999-12-31", "2021-06-01"])},
         lambda d: d.has_timestamps and d.interactions["timestamp"].iloc[0] == 1577836800)
    good("negative-ratings", {"interactions.csv": inter_with("rating", ["-1", "1", "-1", "1"])},
         lambda d: int(d.interactions["positive"].sum()) == 2, positive_threshold=1)
    good("utf-8-bom", {"interactions.csv": codecs.BOM_UTF8 + _INTER.encode()}, lambda d: d.num_interactions == 4)
    good("crlf", {"items.csv": _ITEMS.replace("\n", "\r\n")}, lambda d: d.num_items == 3)
    good("extra-columns", {"interactions.csv": inter_with("session", ["a", "b", "c", "d"])},
         lambda d: d.num_interactions == 4)
    good("unicode-titles", {"items.csv": "item_id,title\ni1,Amélie ✓\ni2,東京\ni3,C\n"},
         lambda d: d.items["title"].iloc[1] == "東京")
    good("year-column", {"items.csv": "item_id,title,year\ni1,A,1999\ni2,B,\ni3,C,2001.0\n"},
         lambda d: d.items["year"].iloc[2] == 2001)
    return cases


# ============================================================================================ all
def all_cases() -> list[Case]:
    """Every case, in a fixed order (ids are unique)."""
    cases = (env_kwarg_cases() + reset_cases() + action_cases() + config_set_cases() + yaml_file_cases()
             + log_cases())
    ids = [c.id for c in cases]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    assert not dup, f"duplicate case ids: {dup}"
    return cases


def timed(case: Case, time_limit: float | None = None) -> tuple[str, str, float]:
    t0 = time.perf_counter()
    outcome, detail = classify(case, time_limit)
    return outcome, detail, time.perf_counter() - t0
