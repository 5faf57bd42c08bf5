"""recgym.envs.worlds: world builders. :mod:`~recgym.envs.worlds.synthetic` is the offline default world."""

from recgym.envs.worlds.synthetic import (
    GENRE_VOCABULARY,
    ItemRecord,
    SyntheticWorldConfig,
    UserRecord,
    clickbait_mask,
    make_synthetic_texts,
    make_synthetic_world,
)

__all__ = [
    "GENRE_VOCABULARY",
    "ItemRecord",
    "SyntheticWorldConfig",
    "UserRecord",
    "clickbait_mask",
    "make_synthetic_texts",
    "make_synthetic_world",
]
