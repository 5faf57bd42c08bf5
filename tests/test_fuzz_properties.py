"""Property-based fuzzing (hypothesis) of recgym's edges: any action array, any value for any config field,
any YAML text or ``--set`` override, any seed or reset option, any log-file cell.

Every outcome must be either an acceptance whose result is right (the slate the values rank to, a config
holding the value given, finite rewards and observations) or a recgym error (ConfigError,
InvalidActionError, DataError) whose message names what was expected and what was received. Never another
exception, never a hang (each test is time-bounded).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
import yaml
from fuzz_catalogue import ENV_BASE, _bounds, _kind, _leaves, _nest, clear_message, world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recgym.common.config import FLOAT_LIMIT, FLOAT_TINY, INT_MAX, INT_MIN, ConfigError
from recgym.common.errors import DataError
from recgym.common.yamlio import load_yaml_text
from recgym.envs.config import EnvConfig, deep_merge
from recgym.envs.spaces import InvalidActionError, actions_to_slate

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.timeout(300)

N, K = 12, 4
CFG = EnvConfig(num_candidates=N, candidates={"pool_size": N}, slate_size=K, new_items={"slots": 0})

any_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6), st.lists(st.integers(-3, 3), max_size=2), st.just(1 + 2j), st.just({"a": 1}),
    st.sampled_from([np.int64(3), np.float32(0.5), np.bool_(True), np.uint64(2**64 - 1), np.float64("nan")]),
)


def _bounded(x: float) -> bool:
    return math.isfinite(x) and (x == 0 or FLOAT_TINY <= abs(x) <= FLOAT_LIMIT)


def _clean(exc: BaseException) -> None:
    assert clear_message(str(exc)), f"unclear message: {exc}"


# ------------------------------------------------------------------------------------------- actions
dtypes = st.one_of(
    hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes(),
    hnp.complex_number_dtypes(), hnp.datetime64_dtypes(), hnp.unicode_string_dtypes(max_len=3),
)


@FUZZ
@given(
    arr=dtypes.flatmap(lambda dt: hnp.arrays(dt, st.sampled_from([(N,), (N - 1,), (1, N), (), (0,)]))),
    mask_bits=st.lists(st.booleans(), min_size=N, max_size=N),
    strict=st.booleans(),
)
def test_any_scores_array_ranks_exactly_or_is_refused_cleanly(arr, mask_bits, strict):
    mask = torch.tensor([mask_bits])
    mask[0, :K] = True  # the env always leaves at least K candidates
    try:
        slate = actions_to_slate(arr, mask, CFG, batched=False, strict=strict)
    except InvalidActionError as exc:
        _clean(exc)
        return
    assert arr.shape == (N,) and arr.dtype.kind in "iuf", f"accepted {arr.dtype} {arr.shape}"
    got = slate[0].tolist()
    assert len(set(got)) == K and all(0 <= j < N for j in got)
    # Exact values: Python ints / floats (float16/32/64 are exact in float64), long doubles kept as they are.
    values = list(arr) if arr.dtype.kind == "f" and arr.dtype.itemsize > 8 else arr.tolist()
    allowed = mask[0].tolist()
    if strict:
        assert all(math.isfinite(v) for v in values), "non-finite scores accepted in strict mode"
        ref = sorted(range(N), key=lambda j: (not allowed[j], -values[j], j))[:K]
        assert got == ref, f"slate {got} is not the ranking of {values}"
    else:  # non-finite scores rank last; masked never above an allowed one
        assert all(allowed[j] for j in got), "a masked candidate was picked in repair mode"


@FUZZ
@given(action=st.one_of(any_scalar, st.lists(any_scalar, min_size=0, max_size=N + 1),
                        st.lists(st.lists(st.integers(0, N), max_size=3), max_size=K)),
       kind=st.sampled_from(["scores", "slate", "item"]))
def test_any_python_action_is_accepted_validly_or_refused_cleanly(action, kind):
    cfg = CFG.replace(action_type=kind, slate_size=1 if kind == "item" else K)
    mask = torch.ones((1, N), dtype=torch.bool)
    try:
        slate = actions_to_slate(action, mask, cfg, batched=False)
    except InvalidActionError as exc:
        _clean(exc)
        return
    got = slate[0].tolist()
    assert len(set(got)) == len(got) == cfg.slate_size and all(0 <= j < N for j in got)


# ------------------------------------------------------------------------------------------- configs
ENV_LEAVES = list(_leaves(EnvConfig))


def _walk_numbers(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _walk_numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _walk_numbers(v)]
    return [obj]


@FUZZ
@given(leaf=st.sampled_from(ENV_LEAVES), value=any_scalar)
def test_any_value_for_any_env_field_is_typed_finite_or_refused(leaf, value):
    path, ann, _ = leaf
    try:
        cfg = EnvConfig.model_validate(_nest(path, value))
    except ConfigError as exc:
        _clean(exc)
        assert str(exc).startswith("env"), f"path missing: {exc}"
        return
    got: Any = cfg
    for p in path:
        got = getattr(got, p)
    kind, optional, options = _kind(ann)
    if kind == "int":
        assert type(got) is int and not isinstance(value, (bool, np.bool_, str, float)), (value, got)
        assert got == value
    elif kind == "float":
        assert type(got) is float and _bounded(got), (value, got)
        assert not isinstance(value, (bool, np.bool_, str)) and got == float(value)
    elif kind == "bool":
        assert type(got) is bool and isinstance(value, (bool, np.bool_)), (value, got)
    elif kind == "literal":
        assert got in options and got == value
    for x in _walk_numbers(cfg.model_dump()):
        if isinstance(x, float):
            assert _bounded(x)
        elif isinstance(x, int):
            assert INT_MIN <= x <= INT_MAX


def _agent_leaves() -> list[tuple[str, str, Any]]:
    from recgym.agents import AGENTS

    return [(name, f, info.annotation) for name, cls in sorted(AGENTS.items())
            for f, info in cls.Config.model_fields.items()]


@FUZZ
@given(leaf=st.sampled_from(_agent_leaves()), value=any_scalar)
def test_any_value_for_any_agent_hyperparameter_is_typed_finite_or_refused(leaf, value):
    from recgym.agents import AGENTS

    name, field, ann = leaf
    try:
        cfg = AGENTS[name].Config(**{field: value})
    except ConfigError as exc:
        _clean(exc)
        return
    got = getattr(cfg, field)
    kind, optional, _ = _kind(ann)
    if optional and value is None:
        assert got is None
        return
    if kind in ("int", "float"):
        assert not isinstance(value, (bool, np.bool_, str)), (field, value)
    if kind == "float":
        assert type(got) is float and _bounded(got)
    if kind == "int":
        assert type(got) is int and INT_MIN <= got <= INT_MAX


yaml_scalars = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
)
yaml_data = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=20,
)


@FUZZ
@given(data=yaml_data)
def test_yaml_dumped_data_loads_back_equal(data):
    """No false rejects: any plain data PyYAML writes comes back equal (NaN compared as NaN)."""
    text = yaml.safe_dump(data)  # escaped non-ASCII: PyYAML's unicode emitter mangles NEL (\x85) itself
    back = load_yaml_text(text, "dumped")

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
            return math.isnan(b)
        if isinstance(a, dict):
            return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
        return a == b and type(a) is type(b)

    assert same(data, back)


yamlish = st.text(alphabet=st.sampled_from(list("ab:- \n[]{},&*!|>'\"#?%@`01.eE+\t\\\x00\x85\ufeffé")), max_size=80)


@FUZZ
@given(text=st.one_of(yamlish, st.text(max_size=80)))
def test_any_text_parses_or_fails_cleanly(text):
    try:
        load_yaml_text(text, "fuzz.yaml")
    except ConfigError as exc:
        _clean(exc)
        assert str(exc).startswith("fuzz.yaml"), f"source missing: {exc}"


BASE = {"name": "fuzz", "agents": [{"name": "random"}, {"name": "ppo"}]}
set_keys = st.one_of(
    st.sampled_from(["threads", "device", "name", "env.slate_size", "env.choice.no_click_logit", "env.reward.weights.clicks", "env.pool_size",
                     "evaluation.seeds", "evaluation.seeds[0]", "agents[1].hyperparams.ent_coef", "agents[0].name",
                     "training.logging.epsilon", "world_config.n_items", "output.plots", "agents[5].x", "a..b", ""]),
    st.text(alphabet="abcdefgnstv.[]0123_", max_size=20),
)


@FUZZ
@given(key=set_keys, value=st.one_of(yamlish, st.sampled_from([".nan", ".inf", "true", "'3'", "1.0e+308", "3",
                                                               "[0, 1]", "{a: 1, a: 2}", "null", "cpu", "tpu"])))
def test_any_set_override_loads_validly_or_fails_cleanly(key, value):
    from recgym.experiments.config import load_config

    try:
        cfg = load_config(raw=BASE, overrides=[f"{key}={value}"])
    except ConfigError as exc:
        _clean(exc)
        return
    for x in _walk_numbers(cfg.to_dict()):
        if isinstance(x, float):
            assert _bounded(x)


# ------------------------------------------------------------------------------------------- env
@pytest.fixture(scope="module")
def ranking_env():
    from recgym.envs.ranking import RankingEnv

    return RankingEnv(world(), **ENV_BASE)


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=any_scalar, options=st.one_of(st.none(), any_scalar,
                                          st.dictionaries(st.sampled_from(["user_index", "user_idx", "x"]),
                                                          any_scalar, max_size=2)))
def test_any_seed_and_options_reset_validly_or_fail_cleanly(ranking_env, seed, options):
    try:
        obs, info = ranking_env.reset(seed=seed, options=options)
    except ConfigError as exc:
        _clean(exc)
        return
    assert seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_))
                            and 0 <= seed < 2**63)
    if isinstance(options, dict) and "user_index" in options:
        assert info["user"] == options["user_index"]
    _, reward, *_ = ranking_env.step(np.linspace(1, -1, ENV_BASE["num_candidates"], dtype=np.float32))
    assert math.isfinite(reward)


def _valid_value(info: Any, kind: str, draw: Any) -> Any:
    """A value within the field's bounds (also extreme ones: the bounds themselves, 1e15)."""
    b = _bounds(info)
    lo = b.get("ge", b.get("gt", -FLOAT_LIMIT if kind == "float" else -(10**6)))
    hi = b.get("le", b.get("lt", FLOAT_LIMIT if kind == "float" else 10**6))
    if kind == "int":
        return draw(st.integers(int(lo) + ("gt" in b), int(hi) - ("lt" in b)))
    return draw(st.floats(lo, hi, exclude_min="gt" in b, exclude_max="lt" in b, allow_nan=False)
                .filter(lambda x: x == 0 or abs(x) >= FLOAT_TINY))


SHAPE_FIELDS = {("num_candidates",), ("slate_size",), ("action_type",), ("max_steps",), ("cohort",), ("strict",),
                ("info_candidate_relevance",), ("candidates", "pool_size"), ("candidates", "mask_window"),
                ("new_items", "slots"), ("new_items", "window")}
SIM_FIELDS = [leaf for leaf in ENV_LEAVES if leaf[0] not in SHAPE_FIELDS]


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_accepted_env_config_gives_finite_rewards_and_observations(data):
    """Extreme but valid settings (1e15 weights, zero decays, the bounds themselves) never make the
    simulator emit NaN/inf."""
    from recgym.envs.ranking import RankingEnv

    chosen = data.draw(st.lists(st.sampled_from(SIM_FIELDS), min_size=1, max_size=4, unique_by=lambda x: x[0]))
    kw: dict[str, Any] = {}
    for path, ann, info in chosen:
        kind, _, options = _kind(ann)
        value = data.draw(st.sampled_from(options)) if kind == "literal" else _valid_value(info, kind, data.draw)
        node = kw
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
    try:
        env = RankingEnv(world(), config=deep_merge(ENV_BASE, kw))
    except ConfigError as exc:  # cross-field rules (e.g. a zero candidate mix)
        _clean(exc)
        return
    obs, _ = env.reset(seed=0)
    for _ in range(8):
        obs, reward, term, trunc, _ = env.step(np.linspace(1, -1, ENV_BASE["num_candidates"], dtype=np.float32))
        assert math.isfinite(reward), f"non-finite reward {reward} with {kw}"
        assert all(np.isfinite(v).all() for v in obs.values()), f"non-finite observation with {kw}"
        assert env.observation_space.contains(obs), f"observation outside its space with {kw}"
        if term or trunc:
            obs, _ = env.reset()


# ------------------------------------------------------------------------------------------- logs
cells = st.one_of(
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e30", "-1e30", "1e39", "0", "-0", "4", "5", "2.5", "-1",
                     "abc", "1e400", "9223372036854775808", "2020-01-01", "1700000000000", " 3 ", "0x10", "1_000"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=6).filter(lambda s: "," not in s
                                                                                          and '"' not in s),
)


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(column=st.sampled_from(["rating", "weight", "timestamp"]), values=st.lists(cells, min_size=3, max_size=3))
def test_any_log_cell_loads_finite_or_fails_with_file_column_line(column, values):
    from recgym.envs.datasets.logs import load_log

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = "".join(f"u{j},i{j},{v}\n" for j, v in enumerate(values))
        (folder / "interactions.csv").write_text(f"user_id,item_id,{column}\n{rows}", encoding="utf-8")
        (folder / "items.csv").write_text("item_id,title\ni0,A\ni1,B\ni2,C\n", encoding="utf-8")
        try:
            data = load_log(folder)
        except DataError as exc:
            _clean(exc)
            assert "interactions.csv" in str(exc), f"file missing: {exc}"
            return
    inter = data.interactions
    assert len(inter) == 3 and inter["positive"].any()
    rating, weight = inter["rating"].to_numpy(), inter["weight"].to_numpy()
    assert np.isfinite(rating).all() if column == "rating" else np.isnan(rating).all()
    assert np.isfinite(weight).all() and (weight >= 0).all()
    assert inter["timestamp"].dtype == np.int64
