"""Strict config types and finite numbers, for every config recgym has (StrictModel), and the checks that
must happen at validation: seeds, devices, world configs, agent hyper-parameters — before any run folder."""

from __future__ import annotations

import importlib
import math
import os
import pkgutil
import subprocess
import sys
import typing

import numpy as np
import pytest
import torch

from recgym.common.config import ConfigError, StrictModel
from recgym.envs.config import EnvConfig
from recgym.experiments.config import load_config

BASE = {"name": "t", "agents": [{"name": "random"}, {"name": "ppo"}]}


def _load(*sets: str, raw: dict | None = None):
    return load_config(raw=raw or BASE, overrides=list(sets))


@pytest.mark.parametrize(("sets", "message"), [
    (["threads=true"], "threads: expected an integer, received True (bool)"),
    (["evaluation.seeds=[true]"], "evaluation.seeds[0]: expected an integer, received True (bool)"),
    (["agents[1].hyperparams.batch_size=true"], "agents[1].hyperparams.batch_size: expected an integer, received True (bool)"),
    (["env.num_candidates='100'"], "env.num_candidates: expected an integer, received '100' (str)"),
    (["training.total_timesteps=2.0e+4"], "training.total_timesteps: expected an integer, received 20000.0 (float)"),
    (["output.plots=1"], "output.plots: expected true or false, received 1 (int)"),
    (["env.choice.model=mlnl"], "env.choice.model: expected 'mnl', 'cascade' or 'pbm', received 'mlnl' (did you mean 'mnl'?)"),
    (["env.choice.no_click_logit=.nan"], "env.choice.no_click_logit: expected a finite number, received nan"),
    (["env.dynamics.initial_budget=1.0e+308"], "env.dynamics.initial_budget: expected a finite number, 0 or of magnitude in [1e-12, 1e+15], received 1e+308"),
    (["env.reward.weights.clicks=-.inf"], "env.reward.weights.clicks: expected a finite number, received -inf"),
    (["env.candidates.similarity_temperature=1.0e-300"], "env.candidates.similarity_temperature: expected a finite number, 0 or of magnitude in [1e-12, 1e+15], received 1e-300"),
    (["agents[1].hyperparams.ent_coef=.nan"], "agents[1].hyperparams.ent_coef: expected a finite number"),
    (["agents[1].env.choice.no_click_logit=.inf"], "agents[1].env.choice.no_click_logit: expected a finite number"),
    (["env.pool_size=120"], "env.pool_size: moved to env.candidates.pool_size"),
    (["world_config.appeal_std=.nan"], "world_config.appeal_std: expected a finite number"),
    (["world_config.n_items=true"], "world_config.n_items: expected an integer, received True (bool)"),
    (["world_config.n_itemz=3"], "world_config: unknown key 'n_itemz' for SyntheticWorldConfig (did you mean 'n_items'?)"),
])
def test_strict_types_and_finite_numbers_name_path_expected_received(sets, message):
    with pytest.raises(ConfigError) as exc:
        _load(*sets)
    assert message in str(exc.value)


def test_popularity_tie_noise_and_reward_weights_nan_refused():
    with pytest.raises(ConfigError, match=r"agents\[0\]\.hyperparams\.tie_noise: expected a finite number"):
        load_config(raw={"name": "t", "agents": [{"name": "popularity", "hyperparams": {"tie_noise": math.inf}}]})
    with pytest.raises(ConfigError, match=r"env\.reward\.weights\.satisfaction: expected a finite number"):
        EnvConfig(reward={"name": "mix", "weights": {"satisfaction": math.nan}})


def _all_strict_models() -> list[type[StrictModel]]:
    for name in ("recgym.common", "recgym.envs", "recgym.agents", "recgym.encoders", "recgym.experiments"):
        pkg = importlib.import_module(name)
        for mod in pkgutil.walk_packages(pkg.__path__, f"{name}."):
            importlib.import_module(mod.name)
    seen, todo = [], list(StrictModel.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls not in seen and cls.__module__.startswith("recgym."):
            seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen


def _float_fields(cls: type[StrictModel]) -> list[str]:
    out = []
    for name, info in cls.model_fields.items():
        ann = info.annotation
        args = typing.get_args(ann) or (ann,)
        if float in args and info.default is not None and not isinstance(info.default, bool):
            out.append(name)
    return out


def test_every_config_in_recgym_refuses_non_finite_and_bool_values():
    """Generic: every StrictModel subclass (nested models and agent Configs included) gets the rules."""
    models = _all_strict_models()
    names = {m.__name__ for m in models}
    assert {"EnvConfig", "RewardWeights", "ExperimentConfig", "PPOConfig", "SyntheticWorldConfig", "FitConfig",
            "SplitConfig", "AgentConfig", "AnalyticWorldConfig"} <= names
    checked = 0
    for cls in models:
        for field in _float_fields(cls):
            for bad in (math.nan, math.inf, -math.inf, 1e308, True, "1.0"):
                with pytest.raises(ConfigError, match=field):
                    cls.model_validate({field: bad})
            checked += 1
        for name, info in cls.model_fields.items():
            if info.annotation is int:
                for bad in (True, "3", 3.5, 2**64):
                    with pytest.raises(ConfigError, match=name):
                        cls.model_validate({name: bad})
                checked += 1
    assert checked > 100


def test_valid_shapes_of_input_are_still_accepted():
    cfg = EnvConfig.model_validate({"reward": {"weights": {"clicks": 2}}, "choice": "pbm", "num_candidates": np.int64(50),
                                    "dynamics": {"step_cost": np.float32(0.5)}, "strict": np.bool_(False)})
    assert cfg.reward.weights.clicks == 2.0 and type(cfg.reward.weights.clicks) is float and cfg.choice.model == "pbm"
    assert type(cfg.num_candidates) is int and cfg.dynamics.step_cost == 0.5 and cfg.strict is False
    exp = load_config(raw={"name": "t", "agents": [{"name": "ppo", "hyperparams": {"target_kl": None}}],
                           "threads": None, "evaluation": {"seeds": (0, 1), "users_per_seed": None}})
    assert exp.evaluation.seeds == [0, 1] and exp.threads is None
    assert load_config(raw={**BASE, "evaluation": {"seeds": np.arange(3)}}).evaluation.seeds == [0, 1, 2]


def test_free_form_mappings_are_stored_as_their_typed_values():
    cfg = load_config(raw={"name": "t", "world": "movielens-100k", "world_config": {"lr": 1, "split": {"min_train": 2}},
                           "agents": [{"name": "dqn", "hyperparams": {"tau": 1},
                                       "env": {"action_type": "item", "slate_size": 1, "choice": {"no_click_logit": 1}}}]})
    assert cfg.agents[0].hyperparams == {"tau": 1.0} and type(cfg.agents[0].hyperparams["tau"]) is float
    assert type(cfg.agents[0].env["choice"]["no_click_logit"]) is float
    assert cfg.world_config == {"lr": 1.0, "split": {"min_train": 2}} and type(cfg.world_config["lr"]) is float


@pytest.mark.parametrize(("raw_update", "sets", "message"), [
    ({}, ["evaluation.seeds=[4294967296]"], "evaluation.seeds: expected seeds <= 2**32 - 1"),
    ({}, ["evaluation.seeds=[18446744073709551616]"], "evaluation.seeds[0]: expected an integer in the int64 range"),
    ({"world": "analytic"}, ["world_config.seed=-1"], "world_config.seed: expected a value greater than or equal to 0"),
    ({"world": "movielens-100k"}, ["world_config.seed=18446744073709551616"], "world_config.seed: expected an integer in the int64 range"),
    ({}, ["device=tpu"], "device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', received 'tpu'"),
    ({}, ["device=cuda:99"], "device:"),
])
def test_seeds_and_devices_checked_at_validation(raw_update, sets, message):
    with pytest.raises(ConfigError) as exc:
        _load(*sets, raw={**BASE, **raw_update})
    assert message in str(exc.value)


def test_agent_config_seed_and_device_bounds():
    from recgym.agents.ppo import PPOConfig

    assert PPOConfig(seed=2**63 - 2).seed == 2**63 - 2  # the agent derives seed + 1 for its sampler
    for bad in (2**63 - 1, 2**64, -1, True):
        with pytest.raises(ConfigError, match="agent.seed"):
            PPOConfig(seed=bad)
    with pytest.raises(ConfigError, match="agent.device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', received 'tpu'"):
        PPOConfig(device="tpu")
    assert PPOConfig(device="cuda").device == "cuda"  # a GPU-trained agent's config still loads on a CPU machine


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of CUDA on a machine without it")
def test_cuda_refused_at_validation_without_cuda():
    with pytest.raises(ConfigError, match="device: expected a device this machine has, received 'cuda'"):
        _load("device=cuda")


def test_cli_refuses_a_bad_device_or_seed_before_creating_the_run_folder(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\nagents: [{name: random}]\ndevice: tpu\nevaluation: {seeds: [0]}\n", encoding="utf-8")
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "recgym", "run", str(cfg), "--out", str(out),
                          "--set", "evaluation.seeds=[18446744073709551616]"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2 and "device: expected" in res.stderr and "evaluation.seeds[0]" in res.stderr
    assert not out.exists()
