"""Every registered world works with default arguments: ``gym.make("recgym/Ranking-v0", world=name)`` (plus
the data folder real-data worlds need) passes Gymnasium's env checker. The analytic world used to fail
(its 20 items cannot fill the default 300-item pool); it now brings its own env settings.

The ``log`` world is sized by its catalogue in the fitted-worlds code (its own tests cover small logs)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import recgym  # noqa: F401 - registers the env
from recgym.envs import KNOWN_WORLDS
from recgym.envs.worlds.analytic import analytic_config, make_analytic_world

REAL = ("movielens-100k", "ml-latest-small")  # fitted on first use (minutes from an empty cache): smoke tier


@pytest.mark.parametrize("world", [pytest.param(w, marks=pytest.mark.smoke) if w in REAL else w
                                   for w in KNOWN_WORLDS if w != "log"])
def test_every_world_works_with_default_arguments(world, data_dir):
    kwargs = {"data_dir": str(data_dir)} if world in REAL else {}
    env = gym.make("recgym/Ranking-v0", world=world, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs["candidates"].shape == (env.unwrapped.config.num_candidates,)


def test_analytic_defaults_are_the_analytic_config_and_user_keys_win():
    world = make_analytic_world()
    env = gym.make("recgym/Ranking-v0", world="analytic")
    assert env.unwrapped.config == analytic_config(world)
    env = gym.make("recgym/Ranking-v0", world="analytic", slate_size=5, dynamics={"step_cost": 0.5})
    cfg = env.unwrapped.config
    assert cfg.slate_size == 5 and cfg.dynamics.step_cost == 0.5 and cfg.dynamics.interest_drift == 0.0
    assert cfg.candidates.pool_size == world.catalog.num_items
