"""Real interaction data: MovieLens loaders, the generic log format, splits and the dataset registry."""

from recgym.envs.datasets.logs import InteractionData, SchemaError, load_log
from recgym.envs.datasets.movielens import load_ml_latest_small, load_movielens_100k
from recgym.envs.datasets.registry import (
    KNOWN_DATASETS,
    DatasetNotFoundError,
    DownloadError,
    canonical_name,
    download_dataset,
    load_dataset,
    resolve_data_dir,
)
from recgym.envs.datasets.split import (
    LeakageError,
    Split,
    SplitConfig,
    assert_no_leakage,
    profile_texts,
    split_interactions,
)

__all__ = [
    "InteractionData", "SchemaError", "load_log", "load_movielens_100k", "load_ml_latest_small", "KNOWN_DATASETS",
    "DatasetNotFoundError", "DownloadError", "canonical_name", "download_dataset", "load_dataset",
    "resolve_data_dir", "LeakageError", "Split", "SplitConfig", "assert_no_leakage", "profile_texts",
    "split_interactions",
]
