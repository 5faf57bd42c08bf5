"""recgym.envs: worlds, the batched simulator core, choice models, dynamics and the Gymnasium/SB3 shells."""

from recgym.envs.config import CandidateMix, EnvConfig, RewardWeights
from recgym.envs.core import RankingCore, SimState
from recgym.envs.factory import KNOWN_WORLDS, make_world
from recgym.envs.ranking import RankingEnv
from recgym.envs.spaces import InvalidActionError
from recgym.envs.vector import RankingVectorEnv
from recgym.envs.world import Catalog, Population, PreferenceParams, World

__all__ = [
    "CandidateMix", "EnvConfig", "RewardWeights", "RankingCore", "SimState", "KNOWN_WORLDS", "make_world",
    "RankingEnv", "RankingVectorEnv", "InvalidActionError", "Catalog", "Population", "PreferenceParams", "World",
]
