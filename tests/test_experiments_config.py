"""Experiment config schema: unknown keys with paths and suggestions, ranges, cross-field checks, --set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recgym.common.config import ConfigError
from recgym.experiments.config import apply_overrides, config_diff, config_hash, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"
BASE = {"name": "t", "agents": [{"name": "random"}, {"name": "ppo"}]}


def _load(raw=None, sets=()):
    return load_config(raw=raw if raw is not None else BASE, overrides=list(sets))


@pytest.mark.parametrize(
    ("sets", "pattern"),
    [
        (["agents[1].hyperparams.lerning_rate=0.1"],
         r"agents\[1\]\.hyperparams\.lerning_rate: unknown key .*did you mean 'learning_rate'"),
        (["trainig.total_timesteps=5"], r"^trainig: unknown key \(did you mean 'training'\?\)"),
        (["training.chekpoint_every=5"], r"training\.chekpoint_every: unknown key \(did you mean 'checkpoint_every'\?\)"),
        (["env.slate_sise=5"], r"env\.slate_sise: unknown key \(did you mean 'slate_size'\?\)"),
        (["env.slate_size=99"], r"env\.slate_size: expected <= num_candidates - new_items\.slots"),
        (["env.dynamics.initial_budgt=5"], r"env\.dynamics\.initial_budgt: unknown key \(did you mean 'initial_budget'\?\)"),
        (["env.candidates.mix.nearst=1"], r"env\.candidates\.mix\.nearst: unknown key \(did you mean 'nearest'\?\)"),
        (["env.initial_budget=5"], r"env\.initial_budget: moved to env\.dynamics\.initial_budget"),
        (["env.candidate_mix={nearest: 1}"], r"env\.candidate_mix: moved to env\.candidates\.mix"),
        (["agents[1].hyperparams.gamma=1.5"], r"agents\[1\]\.hyperparams\.gamma: .*less than or equal to 1"),
        (["evaluation.seeds=[0, 1, 1]"], r"evaluation\.seeds: expected distinct seeds, received duplicates \[1\]"),
        (["evaluation.seeds=[-1, 2]"], r"evaluation\.seeds: expected non-negative seeds"),
        (["agents[0].name=popularty"], r"agents\[0\]\.name: unknown agent 'popularty' \(did you mean 'popularity'\?\)"),
        (["world=synthtic"], r"world: expected one of .*did you mean 'synthetic'"),
        (["agents[1].hyperparams.seed=3"], r"agents\[1\]\.hyperparams\.seed: set by the runner"),
        (["training.total_timesteps=-1"], r"training\.total_timesteps: .*greater than or equal to 0"),
    ],
)
def test_config_errors_name_the_path(sets, pattern):
    with pytest.raises(ConfigError, match=pattern):
        _load(sets=sets)


def test_agent_action_space_compatibility_checked_before_any_work():
    raw = {"name": "t", "agents": [{"name": "dqn"}]}
    with pytest.raises(ConfigError, match=r"agents\[0\]\.env: agent 'dqn' cannot train on action_type='slate'"):
        _load(raw)
    ok = _load({"name": "t", "agents": [{"name": "dqn", "env": {"action_type": "item", "slate_size": 1}}]})
    assert ok.train_env(0).action_type == "item" and ok.eval_env().slate_size == 10


def test_duplicate_labels_and_rl_only_fields():
    with pytest.raises(ConfigError, match=r"agents: expected distinct labels, received duplicates \['random'\]"):
        _load({"name": "t", "agents": [{"name": "random"}, {"name": "random"}]})
    with pytest.raises(ConfigError, match=r"agents\[0\]: 'env', 'total_timesteps' and 'reward_fairness' apply to RL agents only"):
        _load({"name": "t", "agents": [{"name": "random", "total_timesteps": 5}]})


def test_overrides_are_yaml_typed_and_support_indices():
    cfg = _load(sets=["training.total_timesteps=123", "evaluation.seeds=[3, 4]", "agents.1.hyperparams.hidden=8",
                      "agents[0].label=rnd", "env.reward=mix"])
    assert cfg.training.total_timesteps == 123 and cfg.evaluation.seeds == [3, 4]
    assert cfg.agents[1].hyperparams == {"hidden": 8} and cfg.agents[0].key == "rnd"
    assert apply_overrides({"a": {"b": 1}}, ["a.c=true"]) == {"a": {"b": 1, "c": True}}
    with pytest.raises(ConfigError, match=r"--set: expected key=value"):
        _load(sets=["training.total_timesteps"])


def test_hash_ignores_output_and_diff_names_keys():
    a, b = _load(), _load(sets=["output.dir=/tmp/x"])
    assert config_hash(a) == config_hash(b)
    c = _load(sets=["training.total_timesteps=7", "env.slate_size=5"])
    assert config_diff(a.to_dict(), c.to_dict()) == ["env.slate_size", "training.total_timesteps"]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_valid_documented_and_seeded(path):
    cfg = load_config(path)
    assert len(cfg.evaluation.seeds) >= 5
    text = path.read_text()
    assert text.startswith("# " + path.stem), "each shipped config is documented at the top"
    assert re.search(r"ppo", text)


def test_shipped_set_is_complete():
    assert {p.stem for p in CONFIGS.glob("*.yaml")} >= {"quickstart", "rl_vs_supervised", "cold_start", "long_tail"}


def test_unknown_config_file_suggests_shipped():
    with pytest.raises(ConfigError, match=r"does not exist.*did you mean 'quickstart.yaml'"):
        load_config("quikstart.yaml")
