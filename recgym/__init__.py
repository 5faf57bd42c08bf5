"""recgym: a reinforcement-learning recommendation simulator.

Importing ``recgym`` registers the Gymnasium id ``recgym/Ranking-v0`` (single env and native vector env).
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]


def _register_envs() -> None:
    from gymnasium.envs.registration import register, registry

    if "recgym/Ranking-v0" not in registry:
        register(
            id="recgym/Ranking-v0",
            entry_point="recgym.envs.ranking:RankingEnv",
            vector_entry_point="recgym.envs.vector:RankingVectorEnv",
            disable_env_checker=False,
        )


_register_envs()
