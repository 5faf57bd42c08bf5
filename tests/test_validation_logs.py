"""Interaction-log validation: unusable logs are refused as DataError naming file, column and line."""

from __future__ import annotations

import codecs

import pytest

from recgym.common.errors import DataError
from recgym.envs.datasets.logs import SchemaError, load_log

ITEMS = "item_id,title\ni1,Alpha\ni2,Beta\ni3,Gamma\n"


def _log(tmp_path, interactions: str | bytes, items: str = ITEMS, users: str | None = None):
    (tmp_path / "interactions.csv").write_bytes(interactions if isinstance(interactions, bytes) else interactions.encode())
    (tmp_path / "items.csv").write_text(items, encoding="utf-8")
    if users is not None:
        (tmp_path / "users.csv").write_text(users, encoding="utf-8")
    return load_log(tmp_path)


def _rows(column: str, *values: str) -> str:
    pairs = ["u1,i1", "u1,i2", "u2,i1", "u2,i3"]
    return f"user_id,item_id,{column}\n" + "".join(f"{p},{v}\n" for p, v in zip(pairs, values, strict=True))


@pytest.mark.parametrize(("interactions", "pattern"), [
    ("user_id,item_id,rating\n", r"interactions\.csv: expected at least one interaction row below the header, "
                                 r"received a header only"),
    (_rows("rating", "1", "2", "3", "3.5"), r"interactions\.csv, column 'rating': expected at least one positive row "
                                            r"\(rating >= 4\), received none \(max 3\.5\)"),
    (_rows("weight", "0", "0", "0", "0"), r"column 'weight': expected at least one positive row \(weight > 0\), "
                                          r"received none \(every weight 0\)"),
    (_rows("weight", "1", "-1", "1", "1"), r"column 'weight', line 3: expected a number in \[0, 1e\+09\], received '-1'"),
    (_rows("rating", "5", "1e30", "4", "4"), r"column 'rating', line 3: expected a number in \[-1e\+09, 1e\+09\], "
                                             r"received '1e30'"),
    (_rows("rating", "5", "inf", "4", "4"), r"column 'rating', line 3: expected a finite number, received 'inf'"),
    (_rows("timestamp", "1", "1e30", "3", "4"), r"column 'timestamp', line 3: expected Unix time as a finite number "
                                                r"with \|t\| < 2\*\*63"),
    (_rows("timestamp", "1", "inf", "3", "4"), r"column 'timestamp', line 3: expected Unix time .* received 'inf'"),
    (_rows("timestamp", "1", "-inf", "3", "4"), r"column 'timestamp', line 3: .* received '-inf'"),
    ("user_id,item_id\nu1,i1\n".encode("utf-16"), r"interactions\.csv: expected a UTF-8 CSV"),
])
def test_unusable_interactions_refused_with_file_column_line(tmp_path, interactions, pattern):
    with pytest.raises(SchemaError, match=pattern) as exc:
        _log(tmp_path, interactions)
    assert isinstance(exc.value, DataError)


def test_headers_only_items_and_users_and_bad_years(tmp_path):
    with pytest.raises(DataError, match=r"items\.csv: expected at least one item row below the header"):
        _log(tmp_path, "user_id,item_id\nu1,i1\n", items="item_id,title\n")
    with pytest.raises(DataError, match=r"users\.csv: expected at least one user row below the header"):
        _log(tmp_path, "user_id,item_id\nu1,i1\n", users="user_id,age\n")
    with pytest.raises(DataError, match=r"items\.csv, column 'year', line 2: expected an integer year in "
                                        r"\[-9999, 9999\] or an empty cell, received '1e30'"):
        _log(tmp_path, "user_id,item_id\nu1,i1\n", items="item_id,title,year\ni1,A,1e30\n")


def test_valid_variants_still_load(tmp_path):
    d = _log(tmp_path, codecs.BOM_UTF8 + _rows("timestamp", "1700000000000", "1700000000001", "2020-01-01", "5").encode())
    assert d.interactions["timestamp"].tolist() == [1700000000000, 1700000000001, 1577836800, 5]
    d = _log(tmp_path, _rows("weight", "0", "2.5", "0", "1"))
    assert d.interactions["positive"].tolist() == [False, True, False, True]


def test_positive_threshold_must_be_a_finite_number(tmp_path):
    from recgym.common.config import ConfigError

    (tmp_path / "interactions.csv").write_text(_rows("rating", "5", "4", "3", "2"), encoding="utf-8")
    (tmp_path / "items.csv").write_text(ITEMS, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"positive_threshold: expected a finite number, received nan"):
        load_log(tmp_path, positive_threshold=float("nan"))
