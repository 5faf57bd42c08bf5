"""Action dtypes: every integer dtype and (for scores) every float dtype is accepted where it is unambiguous and
ranked exactly; everything else is a clean InvalidActionError; the float32/int64 fast path stays a view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recgym.envs import RankingEnv
from recgym.envs.config import EnvConfig
from recgym.envs.spaces import InvalidActionError, _as_tensor, actions_to_slate
from recgym.envs.vector import RankingVectorEnv

N, K = 40, 5
CFG = EnvConfig(num_candidates=N, candidates={"pool_size": 120}, slate_size=K)
ALL = torch.ones((1, N), dtype=torch.bool)


def _slate(action, cfg=CFG, mask=ALL, **kw):
    return actions_to_slate(action, mask, cfg, batched=False, **kw)[0].tolist()


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32"])
def test_every_integer_dtype_is_accepted_for_slates_and_scores(small_world, dtype):
    assert _slate(np.arange(N).astype(dtype)) == [39, 38, 37, 36, 35]  # integer scores: ranked exactly
    assert _slate(torch.as_tensor(np.arange(N).astype(dtype))) == [39, 38, 37, 36, 35]
    env = RankingEnv(small_world, num_candidates=N, candidates={"pool_size": 120}, slate_size=K, action_type="slate")
    obs, _ = env.reset(seed=0)
    allowed = np.flatnonzero(obs["mask"])[:K][::-1]
    _, reward, *_ = env.step(allowed.astype(dtype))  # was: "lt_cpu" not implemented for 'UInt16'
    assert np.isfinite(reward)
    np.testing.assert_array_equal(env._last["slate_items"], obs["candidates"][allowed])


def test_float64_scores_are_ranked_in_float64():
    big = np.linspace(1, -1, N)
    big[7] = 1e39  # finite in float64, inf in float32: was refused as "inf"
    assert _slate(big)[0] == 7
    close = np.full(N, 0.5)
    close[30], close[10] = 1.0 + 1e-12, 1.0  # equal in float32 (which would put 10 first), distinct in float64
    assert _slate(close)[:2] == [30, 10]
    assert _slate(torch.tensor(close))[:2] == [30, 10]
    assert _slate(close.astype(np.longdouble))[:2] == [30, 10]


def test_integer_scores_are_ranked_exactly_beyond_float_precision():
    scores = -np.arange(N, dtype=np.int64)
    scores[0], scores[30] = 2**60, 2**60 + 1  # one value in float64
    assert _slate(scores)[:2] == [30, 0]
    u = np.arange(N, dtype=np.uint64) + np.uint64(2**63)  # above int64: order-preserving map, still exact
    assert _slate(u) == [39, 38, 37, 36, 35]


def test_ties_and_mask_follow_the_float32_rule_for_every_dtype():
    mask = ALL.clone()
    mask[0, [0, 2]] = False
    scores = np.zeros(N)
    scores[[0, 2]] = 5.0  # masked: never above allowed ones
    scores[5] = -0.0
    for arr in (scores.astype(np.float32), scores, scores.astype(np.int64), scores.astype(np.float16)):
        assert _slate(arr, mask=mask) == [1, 3, 4, 5, 6], arr.dtype


@pytest.mark.parametrize(("action", "pattern"), [
    (np.ones(N, bool), r"expected real-valued scores \(an integer or float dtype\).*received dtype bool"),
    (np.ones(N, np.complex128), r"received dtype complex128"),
    (np.array([1.0] * (N - 1) + [None], dtype=object), r"received dtype object"),
    (np.array(["1"] * N), r"received dtype <U1"),
    (None, r"received dtype object"),
    ("abc", r"received dtype <U3"),
    ([[1.0, 2.0], [3.0]], r"expected a rectangular array of numbers, received a list"),
    (np.zeros(N, "datetime64[s]"), r"received dtype datetime64\[s\]"),
    (torch.ones(N, dtype=torch.complex64), r"received dtype complex64"),
    (np.r_[np.zeros(N - 1), np.nan], r"action\[39\]: expected a finite score, received nan"),
    (np.zeros(N - 1), r"expected shape \(40,\) for action_type='scores', received \(39,\)"),
])
def test_unusable_score_actions_are_clean_errors(action, pattern):
    with pytest.raises(InvalidActionError, match=pattern):
        _slate(action)
    if not (isinstance(action, np.ndarray) and action.dtype.kind == "f" and action.shape == (N,)):
        with pytest.raises(InvalidActionError, match="expected"):
            _slate(action, strict=False)  # repair mode repairs values (NaN), never a type or a shape


@pytest.mark.parametrize(("action", "pattern"), [
    (np.array([0, 1, 2, 3, 4], np.float64), r"expected integer candidate indices for action_type='slate', received dtype float64"),
    (np.array([0, 1, 2, 3, 2**64 - 1], np.uint64), r"expected candidate indices \(far\) below 2\*\*63"),
    (np.array([0, 1, 2, 3, -128], np.int8), r"action\[4\]: expected a candidate index in \[0, 40\), received -128"),
    ([0, 1, 2, 3, 2**70], r"received dtype object"),
])
def test_unusable_slate_actions_are_clean_errors(action, pattern):
    cfg = CFG.replace(action_type="slate")
    with pytest.raises(InvalidActionError, match=pattern):
        _slate(action, cfg=cfg)


def test_fast_path_is_a_view_and_odd_layouts_are_copied():
    scores = np.linspace(1, -1, N, dtype=np.float32)
    t = _as_tensor(scores, torch.device("cpu"), "scores")
    assert t.dtype == torch.float32 and t.data_ptr() == scores.ctypes.data  # no copy, no conversion
    idx = np.arange(K, dtype=np.int64)
    assert _as_tensor(idx, torch.device("cpu"), "slate").data_ptr() == idx.ctypes.data
    assert _slate(scores[::-1].copy()[::-1]) == [0, 1, 2, 3, 4]  # negative strides
    assert _slate(scores.astype(">f8")) == [0, 1, 2, 3, 4]  # big-endian


def test_vector_env_accepts_float64_and_uint_batches(small_world):
    venv = RankingVectorEnv(3, world=small_world, num_candidates=N, candidates={"pool_size": 120}, slate_size=K)
    venv.reset(seed=0)
    _, reward, *_ = venv.step(np.tile(np.linspace(1, -1, N), (3, 1)))
    assert np.isfinite(reward).all()
    _, reward, *_ = venv.step(np.tile(np.arange(N, dtype=np.uint16), (3, 1)))
    assert np.isfinite(reward).all()
    with pytest.raises(InvalidActionError, match=r"expected a rectangular array of numbers"):
        venv.step([list(range(N))] * 2 + [list(range(N - 1))])
