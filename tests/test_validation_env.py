"""gym.make keyword arguments and reset seeds/options: bad values are ConfigErrors naming expected and received."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from recgym.common.config import ConfigError
from recgym.envs import RankingEnv
from recgym.envs.vector import RankingVectorEnv

BASE = {"num_candidates": 40, "candidates": {"pool_size": 120}, "slate_size": 5}


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"choice": {"no_click_logit": math.nan}}, r"env\.choice\.no_click_logit: expected a finite number, received nan"),
    ({"dynamics": {"initial_budget": 1e308}}, r"env\.dynamics\.initial_budget: expected a finite number, 0 or of magnitude"),
    ({"num_candidates": "100"}, r"env\.num_candidates: expected an integer, received '100' \(str\)"),
    ({"strict": 1}, r"env\.strict: expected true or false, received 1 \(int\)"),
    ({"max_steps": True}, r"env\.max_steps: expected an integer, received True \(bool\)"),
    ({"reward": {"weights": {"clicks": math.inf}}}, r"env\.reward\.weights\.clicks: expected a finite number"),
    ({"slate_sise": 3}, r"unknown key 'slate_sise' for EnvConfig \(did you mean 'slate_size'\?\)"),
    ({"config": "slate_size=3"}, r"config: expected an EnvConfig, a mapping or None, received str"),
    ({"world": "analytic", "world_config": {"n_itemz": 30}}, r"unknown key 'n_itemz' for AnalyticWorldConfig \(did you mean 'n_items'\?\)"),
    ({"world": "analytic", "world_config": [30]}, r"world_config: expected a mapping or None, received list"),
    ({"world": 123}, r"world: expected one of .* received 123"),
    ({"device": "tpu"}, r"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', received 'tpu'"),
    ({"candidates": {"pool_size": 400}}, r"env\.candidates\.pool_size: expected <= the 300 initial items"),
])
def test_bad_env_kwargs_are_config_errors(small_world, kwargs, pattern):
    kw = {"world": small_world, **BASE, **kwargs}
    with pytest.raises(ConfigError, match=pattern):
        gym.make("recgym/Ranking-v0", **kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="refusal of CUDA on a machine without it")
def test_cuda_without_cuda_is_a_config_error(small_world):
    with pytest.raises(ConfigError, match="received 'cuda' but torch sees no CUDA device"):
        RankingEnv(small_world, device="cuda", **BASE)


def test_bad_render_mode_is_a_config_error(small_world):
    with pytest.raises(ConfigError, match=r"render_mode: expected None or 'ansi', received 'human'"):
        RankingEnv(small_world, render_mode="human", **BASE)


def test_numpy_scalars_and_ints_for_floats_are_accepted(small_world):
    env = gym.make("recgym/Ranking-v0", world=small_world, num_candidates=np.int64(40),
                   candidates={"pool_size": np.int32(120)}, slate_size=5, choice={"no_click_logit": -1},
                   dynamics={"initial_budget": np.float32(10.0)})
    cfg = env.unwrapped.config
    assert cfg.choice.no_click_logit == -1.0 and type(cfg.num_candidates) is int and cfg.candidates.pool_size == 120
    env.reset(seed=0)
    _, reward, *_ = env.step(np.linspace(1, -1, 40, dtype=np.float32))
    assert math.isfinite(reward)


@pytest.mark.parametrize(("seed", "pattern"), [
    (2**63, r"seed: expected None or a non-negative int, received 9223372036854775808 \(a seed is at most 2\*\*63 - 1\)"),
    (-1, r"received -1"),
    (True, r"received True \(bool\)"),
    ("3", r"received '3' \(str\)"),
    (2.0, r"received 2.0 \(float\)"),
])
def test_reset_seed_bounds(small_world, seed, pattern):
    env = RankingEnv(small_world, **BASE)
    with pytest.raises(ConfigError, match=pattern):
        env.reset(seed=seed)
    venv = RankingVectorEnv(2, world=small_world, **BASE)
    with pytest.raises(ConfigError, match=pattern):
        venv.reset(seed=seed)
    env.reset(seed=2**63 - 1)
    env.reset(seed=np.uint64(5))


@pytest.mark.parametrize(("options", "pattern"), [
    ({"user_index": 40}, r"reset\(options\['user_index'\]\): expected 0 <= index < 40, received 40"),
    ({"user_index": 1.5}, r"expected an integer user index, 0 <= index < 40, received 1.5 \(float\)"),
    ({"user_index": True}, r"received True \(bool\)"),
    ({"user_idx": 3}, r"unknown key 'user_idx' \(did you mean 'user_index'\?\)"),
    ([1], r"reset\(options\): expected a dict or None, received list"),
])
def test_reset_options_validated(small_world, options, pattern):
    env = RankingEnv(small_world, **BASE)
    with pytest.raises(ConfigError, match=pattern):
        env.reset(options=options)
    assert env.reset(options={"user_index": np.int32(39)})[1]["user"] == 39


def test_vector_reset_user_indices_validated(small_world):
    venv = RankingVectorEnv(2, world=small_world, **BASE)
    with pytest.raises(ConfigError, match=r"expected 2 users \(one per env\), received 3"):
        venv.reset(options={"user_indices": [0, 1, 2]})
    with pytest.raises(ConfigError, match=r"user_indices'\]\)\[1\]: expected 0 <= index < 40, received 40"):
        venv.reset(options={"user_indices": [0, 40]})
    with pytest.raises(ConfigError, match=r"expected a 1-D sequence of user indices, received shape \(2, 1\)"):
        venv.reset(options={"user_indices": np.zeros((2, 1), np.int64)})
    with pytest.raises(ConfigError, match=r"seed: expected one int seed for all users .* received a list"):
        venv.reset(seed=[1, 2])
    for users in ([3, 4], (3, 4), np.array([3, 4], np.uint8), torch.tensor([3, 4]), range(3, 5)):
        _, info = venv.reset(options={"user_indices": users})
        assert info["user"].tolist() == [3, 4]


def test_extreme_valid_dwell_noise_gives_finite_rewards(small_world):
    """Found by the property fuzzer: dwell_noise=35 made exp() overflow float32 and 0 * inf = NaN rewards."""
    env = RankingEnv(small_world, reward="engagement", response={"dwell_noise": 35.0}, **BASE)
    env.reset(seed=0)
    for _ in range(20):
        _, reward, term, trunc, info = env.step(np.linspace(1, -1, 40, dtype=np.float32))
        assert math.isfinite(reward) and np.isfinite(info["engagement"]).all()
        if term or trunc:
            env.reset()
