"""recgym.agents: the Recommender contract, SB3 PPO/DQN ranking policies, SlateQ and baselines.

    from recgym.agents import make_agent
    agent = make_agent("ppo", sb3_env, hidden=64, seed=0)   # names: see AGENTS
    slate = agent.rank(obs, k)                              # (B, k) int64 candidate positions
"""

from recgym.agents.base import (
    AGENTS,
    AgentConfig,
    EnvSpec,
    IncompatibleEnvError,
    Recommender,
    check_compatible,
    load_agent,
    make_agent,
    masked_top_k,
    register,
    slate_to_action,
)
from recgym.agents.baselines import (
    ORACLE_BOUND,
    LinUCBRecommender,
    LMSimilarityRecommender,
    OracleRecommender,
    PopularityRecommender,
    RandomRecommender,
    WrongEnvError,
)
from recgym.agents.dqn import DQNRecommender
from recgym.agents.logging import LoggedData, collect_logs
from recgym.agents.lookahead import LookaheadRecommender, QualityOracleRecommender
from recgym.agents.ppo import PPORecommender
from recgym.agents.slateq import SlateQRecommender
from recgym.agents.supervised import ColdItemError, CTRRecommender, MFRecommender

__all__ = [
    "AGENTS",
    "AgentConfig",
    "EnvSpec",
    "IncompatibleEnvError",
    "Recommender",
    "check_compatible",
    "load_agent",
    "make_agent",
    "masked_top_k",
    "register",
    "slate_to_action",
    "PPORecommender",
    "DQNRecommender",
    "SlateQRecommender",
    "RandomRecommender",
    "PopularityRecommender",
    "LMSimilarityRecommender",
    "LinUCBRecommender",
    "OracleRecommender",
    "ORACLE_BOUND",
    "WrongEnvError",
    "LookaheadRecommender",
    "QualityOracleRecommender",
    "CTRRecommender",
    "MFRecommender",
    "ColdItemError",
    "LoggedData",
    "collect_logs",
]
