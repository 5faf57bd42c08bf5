"""Loaders on the shared MovieLens data, the generic log format and its schema errors, the split and leakage."""

from __future__ import annotations

import io
import os
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest

from recgym.common import ConfigError
from recgym.envs.datasets import (
    DatasetNotFoundError,
    DownloadError,
    LeakageError,
    SchemaError,
    SplitConfig,
    assert_no_leakage,
    download_dataset,
    load_dataset,
    load_log,
    profile_texts,
    split_interactions,
)
from recgym.envs.datasets.split import Split, train_history

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "logs"


def data_dir() -> Path:
    """Shared data: ``$RECGYM_DATA`` else ``<repo>/../shared/data``. Missing data fails the test (no skip)."""
    path = Path(os.environ.get("RECGYM_DATA", REPO.parent / "shared" / "data"))
    assert path.is_dir(), f"shared data not found at {path}; set RECGYM_DATA"
    return path


@pytest.fixture(scope="module")
def ml100k():
    return load_dataset("movielens-100k", data_dir())


@pytest.fixture(scope="module")
def mlsmall():
    return load_dataset("ml-latest-small", data_dir())


def test_ml100k_counts_and_texts(ml100k):
    d = ml100k
    assert (d.num_interactions, d.num_users, d.num_items) == (100_000, 943, 1_682)
    assert d.interactions["rating"].between(1, 5).all()
    assert d.items["text"].iloc[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert d.interactions["positive"].sum() == 34_174 + 21_201  # ratings 4 and 5
    assert set(d.profile_fields) == {"age", "gender", "occupation"}
    assert d.interactions["user"].dtype == np.int64 and d.interactions["item"].max() == 1_681


def test_ml_latest_small_counts_and_tags(mlsmall):
    d = mlsmall
    assert (d.num_interactions, d.num_users, d.num_items) == (100_836, 610, 9_742)
    assert d.interactions["item"].nunique() == 9_724
    assert "Tags: pixar" in d.items["text"].iloc[0]
    assert not any("\r" in t for t in d.items["text"])  # CRLF handled


def test_alias_and_env_var(monkeypatch):
    monkeypatch.setenv("RECGYM_DATA", str(data_dir()))
    assert load_dataset("ml-100k").num_users == 943


def test_unknown_name_suggests_closest():
    with pytest.raises(DatasetNotFoundError, match=r"movielens-100k.*ml-latest-small.*received 'movielens-10k'.*did you mean 'movielens-100k'"):
        load_dataset("movielens-10k", data_dir())


def test_missing_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("RECGYM_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError, match=r"RECGYM_DATA"):
        load_dataset("ml-100k")
    with pytest.raises(FileNotFoundError, match=r"expected files \['u.data'.*recgym data download"):
        load_dataset("ml-100k", tmp_path)


def test_valid_log_with_string_ids_and_mixed_timestamps():
    d = load_log(FIXTURES / "valid")
    assert (d.num_users, d.num_items, d.num_interactions) == (3, 3, 5)
    assert list(d.users["user_id"]) == ["alice", "bob", "carol"]
    assert d.interactions["timestamp"].tolist()[:3] == [1609495200, 1609581600, 1609600000]
    assert d.items["text"].iloc[2] == "Third, With Comma (2005). Quiet and slow."
    assert d.positive_rule == "rating >= 4" and d.interactions["positive"].tolist() == [True, False, True, False, True]


def test_implicit_log_two_columns():
    d = load_log(FIXTURES / "implicit_two_columns")
    assert d.interactions["positive"].all() and not d.has_timestamps and d.rating_range is None


@pytest.mark.parametrize(
    ("folder", "pattern"),
    [
        ("missing_column", r"interactions\.csv: expected columns \['user_id', 'item_id'\] \(missing \['user_id'\]\)"),
        ("wrong_type", r"column 'rating', line 3: expected a finite number, received 'five'"),
        ("duplicate_item_ids", r"items\.csv, column 'item_id', line 4: expected unique ids, received duplicate id 'a'"),
        ("duplicate_user_ids", r"users\.csv, column 'user_id', line 4: expected unique ids, received duplicate id '2'"),
        ("empty_text", r"items\.csv, column 'title/description', line 3: expected a non-empty text.*received an empty text"),
        ("no_text_column", r"items\.csv: expected at least one text column"),
        ("unknown_item", r"column 'item_id', line 3: expected an item_id listed in items\.csv, received unknown item 'zzz'"),
        ("unknown_user", r"column 'user_id', line 5: expected a user_id listed in users\.csv, received unknown user '3'"),
        ("bad_timestamp", r"column 'timestamp', line 3: expected Unix seconds or an ISO-8601.*unparsable timestamp 'yesterday'"),
    ],
)
def test_schema_failures(folder, pattern):
    with pytest.raises(SchemaError, match=pattern):
        load_log(FIXTURES / folder)


def test_missing_log_folder(tmp_path):
    with pytest.raises(SchemaError, match=r"expected a folder with interactions\.csv"):
        load_log(tmp_path / "nope")


def test_split_cold_and_no_leakage(ml100k):
    sp = split_interactions(ml100k, SplitConfig(), np.random.default_rng(0))
    assert sp.train.size + sp.test.size == 100_000
    assert sp.cold_users.sum() >= 90 and sp.cold_items.sum() >= 80
    assert (sp.test_users >= sp.cold_users).all()
    hist = train_history(ml100k, sp, 20)
    assert (hist[sp.cold_users] == -1).all()
    assert_no_leakage(ml100k, sp, hist)
    again = split_interactions(ml100k, SplitConfig(), np.random.default_rng(0))
    assert np.array_equal(again.test, sp.test)


def test_leakage_is_detected(ml100k):
    sp = split_interactions(ml100k, SplitConfig(), np.random.default_rng(1))
    inter = ml100k.interactions
    # a held-out row of a warm user on a warm item moved into train breaks temporal order
    warm = sp.test[~sp.cold_users[inter["user"].to_numpy()[sp.test]] & ~sp.cold_items[inter["item"].to_numpy()[sp.test]]]
    ts = inter["timestamp"].to_numpy()
    users = inter["user"].to_numpy()
    r = next(int(x) for x in warm if ts[x] > ts[sp.train[users[sp.train] == users[x]]].min())
    # moving the latest train row of that user into test instead: "held-out earlier than train"
    with pytest.raises(LeakageError, match=r"held-out row"):
        last = sp.train[users[sp.train] == users[r]]
        assert_no_leakage(ml100k, Split(np.sort(np.r_[np.setdiff1d(sp.train, last[:1]), r]), np.sort(np.r_[sp.test[sp.test != r], last[:1]]),
                                        sp.cold_users, sp.cold_items, sp.test_users, True))
    cold_u = int(np.flatnonzero(sp.cold_users)[0])
    row = int(np.flatnonzero(users == cold_u)[0])
    with pytest.raises(LeakageError, match=r"no train rows for cold users"):
        assert_no_leakage(ml100k, Split(np.sort(np.r_[sp.train, row]), sp.test[sp.test != row], sp.cold_users,
                                        sp.cold_items, sp.test_users, True))
    bad_hist = np.full((ml100k.num_users, 1), -1, np.int64)
    u0 = int(np.flatnonzero(~sp.cold_users)[0])
    bad_hist[u0, 0] = int(inter["item"].to_numpy()[sp.test[users[sp.test] == u0][0]])
    with pytest.raises(LeakageError, match=r"history: expected only train items"):
        assert_no_leakage(ml100k, sp, bad_hist)


def test_profiles_use_train_history_only(mlsmall):
    sp = split_interactions(mlsmall, SplitConfig(), np.random.default_rng(0))
    texts = profile_texts(mlsmall, sp)
    cold = np.flatnonzero(sp.cold_users)
    # a cold user lists only the titles they revealed at sign-up (onboarding rows), so cold users differ
    titles = mlsmall.items["title"].to_numpy()
    users, items = mlsmall.interactions["user"].to_numpy(), mlsmall.interactions["item"].to_numpy()
    for u in cold:
        revealed = {str(t) for t in titles[items[sp.onboarding][users[sp.onboarding] == u]]}
        assert set(texts[u].removeprefix("Recently watched: ").removesuffix(".").split("; ")) == revealed
    assert len({texts[u] for u in cold}) >= 0.9 * cold.size  # two sign-ups may reveal the same first films
    no_onboarding = split_interactions(mlsmall, SplitConfig(onboarding=0), np.random.default_rng(0))
    assert all(profile_texts(mlsmall, no_onboarding)[u] == "A user with no stated profile." for u in cold)
    inter = mlsmall.interactions
    u = int(np.flatnonzero(~sp.cold_users)[0])
    train_titles = set(mlsmall.items["title"].to_numpy()[inter["item"].to_numpy()[sp.train][inter["user"].to_numpy()[sp.train] == u]])
    listed = texts[u].removeprefix("Recently watched: ").removesuffix(".").split("; ")
    assert listed and set(listed) <= train_titles


def test_random_split_without_timestamps():
    d = load_log(FIXTURES / "implicit_two_columns")
    sp = split_interactions(d, SplitConfig(cold_user_fraction=0.0, cold_item_fraction=0.0), np.random.default_rng(0))
    assert not sp.temporal and sp.train.size + sp.test.size == 4


def test_split_config_rejects_typos():
    with pytest.raises(ConfigError, match=r"did you mean 'holdout_fraction'"):
        SplitConfig(holdout_fraktion=0.3)


def _zip(folder: str, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(f"{folder}/{name}", data)
    return buf.getvalue()


class _Resp(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_offline_message(tmp_path):
    def offline(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    with pytest.raises(DownloadError, match=r"ml-100k\.zip.*network error.*offline.*RECGYM_DATA"):
        download_dataset("ml-100k", tmp_path, opener=offline)
    assert not (tmp_path / "ml-100k").exists()


def test_download_checksum_and_success(tmp_path):
    src = data_dir() / "ml-latest-small"
    names = ["ratings.csv", "movies.csv", "tags.csv", "links.csv", "README.txt"]
    good = {n: (src / n).read_bytes() for n in names}
    ok = download_dataset("ml-latest-small", tmp_path, opener=lambda url, timeout: _Resp(_zip("ml-latest-small", good)))
    assert load_dataset("ml-latest-small", ok.parent).num_interactions == 100_836
    bad = {**good, "movies.csv": b"movieId,title,genres\r\n"}
    with pytest.raises(DownloadError, match=r"checksum mismatch for ml-latest-small/movies\.csv: expected sha256 5a5f"):
        download_dataset("ml-latest-small", tmp_path / "b", opener=lambda url, timeout: _Resp(_zip("ml-latest-small", bad)))
    assert not (tmp_path / "b" / "ml-latest-small").exists()
    with pytest.raises(DatasetNotFoundError, match=r"download: expected one of"):
        download_dataset("log", tmp_path)
