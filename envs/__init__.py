"""recgym.envs: worlds, the batched simulator core and its components, the Gymnasium/SB3 shells."""

from recgym.envs.config import EnvConfig
from recgym.envs.core import RankingCore
from recgym.envs.dynamics import SessionDynamics, UserDynamics
from recgym.envs.factory import KNOWN_WORLDS, make_world
from recgym.envs.preference import LatentPreference, PreferenceModel
from recgym.envs.ranking import RankingEnv
from recgym.envs.spaces import InvalidActionError
from recgym.envs.state import SimState
from recgym.envs.vector import RankingVectorEnv
from recgym.envs.world import Catalog, Population, PreferenceParams, World

__all__ = [
    "EnvConfig", "RankingCore", "SimState", "UserDynamics", "SessionDynamics", "PreferenceModel",
    "LatentPreference", "KNOWN_WORLDS", "make_world", "RankingEnv", "RankingVectorEnv", "InvalidActionError",
    "Catalog", "Population", "PreferenceParams", "World",
]
