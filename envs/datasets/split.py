"""Train/test split with cold users and cold items, the leakage check, and train-only profile texts.

Procedure (:func:`split_interactions`):

1. ``cold_user_fraction`` of the users and ``cold_item_fraction`` of the interacted items are drawn (seeded);
   every interaction touching them goes to test.
2. For each remaining (warm) user, interactions are ordered by timestamp (ties and timestamp-free data broken by a
   seeded random key) and the latest ``holdout_fraction`` (at least one, keeping ``min_train`` in train) are
   held out.
3. Cold users/items are then *defined* as those with no train interaction (so items only seen in held-out rows
   are cold too), and :func:`assert_no_leakage` checks it.
4. Validation: the latest ``validation_fraction`` of each warm user's *train* rows (keeping ``min_train``) form
   ``Split.val``, a subset of train: the hidden model is fitted on ``train \\ val`` and calibrated on ``val``.
5. Onboarding: each cold user reveals their first ``onboarding`` interactions (time order; at most all but one),
   as a new user of a real service is asked to rate a few items when signing up. Those rows (``Split.onboarding``,
   a subset of test) feed the cold user's profile text only, never a fit, and are excluded from evaluation
   (``Split.test_eval``). Without it, cold users of a log without user attributes would all share one profile
   text: one cloned user.

``test_users`` (``Population.test``) is the held-out cohort: every cold user plus a seeded
``test_user_fraction`` of the warm users.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from recgym.common import StrictModel
from recgym.encoders.text import profile_text
from recgym.envs.datasets.logs import InteractionData

__all__ = ["SplitConfig", "Split", "LeakageError", "split_interactions", "assert_no_leakage", "profile_texts",
           "train_history"]


class LeakageError(AssertionError):
    """Held-out information reached the training side of a split."""


class SplitConfig(StrictModel):
    """How to split interactions. All fractions in [0, 1)."""

    config_path = "split"
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="latest share of each warm user's rows held out")
    min_train: int = Field(1, ge=1, description="train rows kept per warm user")
    cold_user_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="users held out entirely (cold start)")
    cold_item_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="interacted items held out entirely")
    test_user_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="warm users added to the test cohort")
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0,
                                       description="latest share of each warm user's train rows used for calibration")
    onboarding: int = Field(3, ge=0, le=100, description="first interactions a cold user reveals (profile text only)")


@dataclass(frozen=True, eq=False)
class Split:
    """Attributes:
    train: ``(N_train,)`` int64 sorted row indices into ``data.interactions``.
    test: ``(N_test,)`` int64 sorted row indices (disjoint from ``train``, together all rows).
    cold_users: ``(U,)`` bool, no train interaction. cold_items: ``(M,)`` bool, no train interaction.
    test_users: ``(U,)`` bool, the held-out cohort (all cold users + some warm ones).
    temporal: whether the per-user holdout followed timestamps.
    val: ``(N_val,)`` int64 sorted train rows held out of the fit for calibration (subset of ``train``).
    onboarding: ``(N_on,)`` int64 sorted test rows a cold user revealed at sign-up (subset of ``test``).
    """

    train: np.ndarray
    test: np.ndarray
    cold_users: np.ndarray
    cold_items: np.ndarray
    test_users: np.ndarray
    temporal: bool
    val: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    onboarding: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def fit_rows(self) -> np.ndarray:
        """``(N,)`` int64 train rows the hidden model is fitted on: ``train`` minus ``val``."""
        return np.setdiff1d(self.train, self.val, assume_unique=True)

    @property
    def test_eval(self) -> np.ndarray:
        """``(N,)`` int64 held-out rows every evaluation uses: ``test`` minus ``onboarding``."""
        return np.setdiff1d(self.test, self.onboarding, assume_unique=True)


def _pick(mask_candidates: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    cand = np.flatnonzero(mask_candidates)
    k = int(round(fraction * len(cand)))
    out = np.zeros(len(mask_candidates), dtype=bool)
    if k:
        out[rng.choice(cand, size=k, replace=False)] = True
    return out


def split_interactions(data: InteractionData, config: SplitConfig, rng: np.random.Generator) -> Split:
    """Split ``data`` as described in the module docstring; deterministic given ``rng``'s state."""
    inter = data.interactions
    users = inter["user"].to_numpy()
    items = inter["item"].to_numpy()
    n = len(inter)
    active_users = np.bincount(users, minlength=data.num_users) > 0
    active_items = np.bincount(items, minlength=data.num_items) > 0
    cold_u = _pick(active_users, config.cold_user_fraction, rng)
    cold_i = _pick(active_items, config.cold_item_fraction, rng)
    is_test = cold_u[users] | cold_i[items]
    warm_rows = np.flatnonzero(~is_test)
    tie = rng.random(n)
    ts = inter["timestamp"].to_numpy() if data.has_timestamps else np.zeros(n, np.int64)
    order = warm_rows[np.lexsort((tie[warm_rows], ts[warm_rows], users[warm_rows]))]
    u_sorted = users[order]
    starts = np.flatnonzero(np.r_[True, u_sorted[1:] != u_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)]
    for s, e in zip(starts, ends, strict=True):
        cnt = e - s
        hold = min(max(1, int(round(config.holdout_fraction * cnt))), cnt - config.min_train)
        if hold > 0:
            is_test[order[e - hold:e]] = True
    train = np.flatnonzero(~is_test).astype(np.int64)
    test = np.flatnonzero(is_test).astype(np.int64)
    cold_users = np.bincount(users[train], minlength=data.num_users) == 0
    cold_items = np.bincount(items[train], minlength=data.num_items) == 0
    test_users = cold_users | _pick(~cold_users, config.test_user_fraction, rng)
    val = _latest_per_user(train, users, ts, tie, config.validation_fraction, config.min_train, latest=True)
    cold_rows = test[cold_users[users[test]]]
    onboarding = _first_per_user(cold_rows, users, ts, tie, config.onboarding)
    split = Split(train, test, cold_users, cold_items, test_users, temporal=data.has_timestamps, val=val,
                  onboarding=onboarding)
    assert_no_leakage(data, split)
    return split


def _per_user_order(rows: np.ndarray, users: np.ndarray, ts: np.ndarray, tie: np.ndarray):  # noqa: ANN202
    order = rows[np.lexsort((tie[rows], ts[rows], users[rows]))]
    u_sorted = users[order]
    starts = np.flatnonzero(np.r_[True, u_sorted[1:] != u_sorted[:-1]]) if len(order) else np.empty(0, np.int64)
    return order, starts, np.r_[starts[1:], len(order)].astype(np.int64)


def _latest_per_user(rows: np.ndarray, users: np.ndarray, ts: np.ndarray, tie: np.ndarray, fraction: float,
                     keep: int, *, latest: bool) -> np.ndarray:
    """Sorted int64 subset of ``rows``: per user, the latest ``round(fraction * n)`` rows, keeping ``keep``."""
    if fraction <= 0 or rows.size == 0:
        return np.empty(0, np.int64)
    order, starts, ends = _per_user_order(rows, users, ts, tie)
    out = []
    for s, e in zip(starts, ends, strict=True):
        take = min(int(round(fraction * (e - s))), e - s - keep)
        if take > 0:
            out.append(order[e - take:e] if latest else order[s:s + take])
    return np.sort(np.concatenate(out)).astype(np.int64) if out else np.empty(0, np.int64)


def _first_per_user(rows: np.ndarray, users: np.ndarray, ts: np.ndarray, tie: np.ndarray, k: int) -> np.ndarray:
    """Sorted int64 subset of ``rows``: per user, the first ``k`` rows in time order (at most all but one)."""
    if k <= 0 or rows.size == 0:
        return np.empty(0, np.int64)
    order, starts, ends = _per_user_order(rows, users, ts, tie)
    out = [order[s:s + min(k, e - s - 1)] for s, e in zip(starts, ends, strict=True) if e - s > 1]
    return np.sort(np.concatenate(out)).astype(np.int64) if out else np.empty(0, np.int64)


def train_history(data: InteractionData, split: Split, length: int) -> np.ndarray:
    """``(U, length)`` int64 train item indices per user in time order, most recent last, ``-1`` left-padded."""
    inter = data.interactions.iloc[split.train]
    hist = np.full((data.num_users, length), -1, dtype=np.int64)
    if length == 0:
        return hist
    ordered = inter.sort_values(["user", "timestamp"], kind="stable")
    for u, grp in ordered.groupby("user", sort=False)["item"]:
        tail = grp.to_numpy()[-length:]
        hist[int(u), length - len(tail):] = tail
    return hist


def profile_texts(data: InteractionData, split: Split) -> list[str]:
    """One profile text per user from demographics and the first liked titles of the *train* history only.

    Up to ``data.history_titles_in_profile`` titles: the user's earliest train positives (then earliest train
    interactions if fewer positives). A cold user lists the titles of their onboarding rows (``split.onboarding``,
    what they revealed at sign-up), so cold users of a log without user attributes are still distinct users;
    a cold user without onboarding rows gets demographics only (or the generic no-profile text).
    """
    titles_by_user: dict[int, list[str]] = {}
    titles = data.items["title"].to_numpy()
    for rows, k in ((split.train, data.history_titles_in_profile), (split.onboarding, len(split.onboarding))):
        if k <= 0 or rows.size == 0:
            continue
        inter = data.interactions.iloc[rows]
        ordered = inter.sort_values(["user", "positive", "timestamp"], ascending=[True, False, True], kind="stable")
        for u, grp in ordered.groupby("user", sort=False)["item"]:
            titles_by_user[int(u)] = [str(titles[i]) for i in grp.to_numpy()[:k]]
    out = []
    cols = list(data.profile_fields)
    records = data.users[cols].to_dict("records") if cols else [{}] * data.num_users
    for u in range(data.num_users):
        out.append(profile_text(demographics=records[u] or None, history_titles=titles_by_user.get(u, [])))
    return out


def assert_no_leakage(data: InteractionData, split: Split, history: np.ndarray | None = None) -> None:
    """Check the split (and optionally a ``(U, H)`` history built from it) leaks no held-out interaction.

    Raises:
        LeakageError: rows in both sides or in neither; a cold user/item with a train row; a warm user's train
        row later than one of their held-out rows (temporal splits, warm items); a history item that is not one
        of the user's train items.
    """
    n = data.num_interactions
    if np.intersect1d(split.train, split.test).size:
        raise LeakageError("split: expected disjoint train/test rows, received overlapping row indices")
    if split.train.size + split.test.size != n:
        raise LeakageError(f"split: expected train+test to cover {n} rows, received {split.train.size + split.test.size}")
    inter = data.interactions
    users, items = inter["user"].to_numpy(), inter["item"].to_numpy()
    tu, ti = users[split.train], items[split.train]
    if split.cold_users[tu].any():
        raise LeakageError(f"split: expected no train rows for cold users, received user {int(tu[split.cold_users[tu]][0])}")
    if split.cold_items[ti].any():
        raise LeakageError(f"split: expected no train rows for cold items, received item {int(ti[split.cold_items[ti]][0])}")
    seen_u = np.bincount(tu, minlength=data.num_users) > 0
    seen_i = np.bincount(ti, minlength=data.num_items) > 0
    if (seen_u == split.cold_users).any() or (seen_i == split.cold_items).any():
        raise LeakageError("split: expected cold == unseen in train for every user and item, received a mismatch")
    if np.setdiff1d(split.val, split.train).size:
        raise LeakageError("split: expected validation rows to be train rows, received held-out rows")
    if np.setdiff1d(split.onboarding, split.test).size or (~split.cold_users[users[split.onboarding]]).any():
        raise LeakageError("split: expected onboarding rows to be held-out rows of cold users, received others")
    if split.temporal:
        ts = inter["timestamp"].to_numpy()
        last_train = np.full(data.num_users, np.iinfo(np.int64).min)
        np.maximum.at(last_train, tu, ts[split.train])
        te = split.test[~split.cold_users[users[split.test]] & ~split.cold_items[items[split.test]]]
        late = ts[te] < last_train[users[te]]
        if late.any():
            r = int(te[late][0])
            raise LeakageError(f"split: expected every held-out row after the user's train rows, received row {r} "
                               f"(user {int(users[r])}) earlier than a train row")
    if history is not None:
        pairs = set(zip(tu.tolist(), ti.tolist(), strict=True))
        for u, i in zip(*np.nonzero(history >= 0), strict=True):
            if (int(u), int(history[u, i])) not in pairs:
                raise LeakageError(f"history: expected only train items, received item {int(history[u, i])} for user {int(u)}")
