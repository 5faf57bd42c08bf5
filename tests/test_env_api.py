"""Contract tests of the Gymnasium/SB3 shells: checkers, determinism, parity, bad input."""

from __future__ import annotations

import copy
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.utils.env_match import check_environments_match
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import VecCheckNan

import recgym  # noqa: F401  (registers the ids)
from recgym.common.config import ConfigError
from recgym.envs import EnvConfig, InvalidActionError, RankingEnv, RankingVectorEnv
from recgym.envs.sb3 import RankingSB3VecEnv
from recgym.envs.spaces import _top_k, actions_to_slate

ACTION_TYPES = [("scores", 5), ("slate", 5), ("item", 1)]


def make(world, action_type="scores", k=5, **kw):
    settings = dict(num_candidates=40, candidates={"pool_size": 120}, new_items={"slots": 3, "per_step": 0.5},
                    max_steps=30)
    settings.update(kw)
    return gym.make("recgym/Ranking-v0", world=world, action_type=action_type, slate_size=k, **settings)


@pytest.mark.parametrize("action_type,k", ACTION_TYPES)
def test_checkers_pass_with_warnings_as_errors(small_world, action_type, k):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = make(small_world, action_type, k, strict=False, render_mode="ansi")
        gym_check_env(env.unwrapped, skip_render_check=False)
        sb3_check_env(RankingEnv(small_world, action_type=action_type, slate_size=k, num_candidates=40,
                                 candidates={"pool_size": 120}, strict=False))


def test_registered_id_default_world_passes_checkers():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("recgym/Ranking-v0", strict=False)
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    assert obs["profile"].shape == (384,) and env.unwrapped.world.catalog.num_items >= 2000


def test_same_seed_matches_over_500_steps(small_world):
    check_environments_match(make(small_world), make(small_world), num_steps=500, seed=7, info_comparison="equivalence")


def test_different_seeds_give_different_users(small_world):
    env = make(small_world)
    users = {env.reset(seed=s)[1]["user"] for s in range(10)}
    assert len(users) > 3
    a, _ = env.reset(seed=1)
    b, _ = env.reset(seed=2)
    assert not np.array_equal(a["candidates"], b["candidates"])


def test_parity_make_vs_make_vec_vs_sb3(small_world):
    """Same seed, same actions: one user through the three shells gives identical trajectories."""
    kw = dict(world=small_world, num_candidates=40, candidates={"pool_size": 120},
              new_items={"slots": 3, "per_step": 0.5}, max_steps=15, slate_size=5)
    single = gym.make("recgym/Ranking-v0", **kw).unwrapped
    vec = gym.make_vec("recgym/Ranking-v0", num_envs=1, vectorization_mode="vector_entry_point",
                       autoreset_mode="same_step", **kw)
    sb3 = RankingSB3VecEnv(1, seed=3, **kw)
    rng = np.random.default_rng(0)
    o1, _ = single.reset(seed=3)
    o2, _ = vec.reset(seed=3)
    o3 = sb3.reset()
    episodes = 0
    for _ in range(120):
        for key in o1:
            np.testing.assert_array_equal(o1[key], o2[key][0], err_msg=key)
            np.testing.assert_array_equal(o1[key], o3[key][0], err_msg=key)
        a = rng.uniform(-1, 1, 40).astype(np.float32)
        o1, r1, te1, tr1, i1 = single.step(a)
        o2, r2, te2, tr2, i2 = vec.step(a[None])
        o3, r3, d3, i3 = sb3.step(a[None])
        assert r1 == pytest.approx(r2[0]) == pytest.approx(r3[0])
        assert (te1, tr1) == (te2[0], tr2[0]) and (te1 or tr1) == d3[0]
        if te1 or tr1:
            episodes += 1
            # Gymnasium's same-step convention: the ending step's info and observation are in final_*, the
            # slot's own info is its reset info (the new user; step keys masked out).
            assert i2["_final_obs"][0] and i2["_final_info"][0] and not i2["_slate_items"][0]
            assert i2["final_info"]["_slate_items"][0] and i2["final_info"]["user"][0] == i1["user"]
            np.testing.assert_array_equal(i1["slate_items"], i2["final_info"]["slate_items"][0])
            for key in o1:
                np.testing.assert_array_equal(o1[key], i2["final_obs"][0][key])
                np.testing.assert_array_equal(o1[key], i3[0]["terminal_observation"][key])
            assert i3[0]["TimeLimit.truncated"] == (tr1 and not te1)
            o1, reset_info = single.reset()
            assert i2["_user"][0] and i2["user"][0] == reset_info["user"]
        else:
            assert "final_obs" not in i2 or not i2["_final_obs"][0]
            np.testing.assert_array_equal(i1["slate_items"], i2["slate_items"][0])
    assert episodes >= 3


def test_next_step_autoreset_semantics(small_world):
    env = RankingVectorEnv(4, small_world, num_candidates=40, candidates={"pool_size": 120}, max_steps=3, slate_size=5)
    env.reset(seed=0)
    a = np.zeros((4, 40), np.float32)
    for _ in range(3):
        obs, r, te, tr, info = env.step(a)
    assert tr.all() and not te.any()
    obs, r, te, tr, info = env.step(np.full((4, 40), np.nan, np.float32) * 0 + a)  # actions ignored on reset
    assert (r == 0).all() and not (te | tr).any()
    assert (obs["context"][:, 1] == 0).all()  # step fraction of a fresh episode
    assert not info["_clicks"].any()
    assert info["_user"].all() and np.array_equal(info["user"], env._state.user.numpy())  # reset info


def test_same_step_autoreset_follows_gymnasiums_final_obs_convention(small_world):
    env = RankingVectorEnv(16, small_world, num_candidates=40, candidates={"pool_size": 120}, slate_size=5, max_steps=12,
                           dynamics={"initial_budget": 4.0}, autoreset_mode="same_step")
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    mixed = 0
    for _ in range(40):
        users_before = env._state.user.numpy().copy()
        obs, r, te, tr, info = env.step(rng.uniform(-1, 1, (16, 40)).astype(np.float32))
        done = te | tr
        if not done.any():
            assert "final_obs" not in info and info["_slate_items"].all()
            continue
        mixed += bool((~done).any())
        assert info["final_obs"].dtype == object and info["final_obs"].shape == (16,)
        np.testing.assert_array_equal(info["_final_obs"], done)
        for i in range(16):
            final = info["final_obs"][i]
            if not done[i]:
                assert final is None
                continue
            assert set(final) == set(obs) and final["context"][1] > 0 and obs["context"][i, 1] == 0
            assert env.single_observation_space.contains(final)
        np.testing.assert_array_equal(info["final_info"]["user"][done], users_before[done])
        np.testing.assert_array_equal(info["final_info"]["_clicks"], done)
        np.testing.assert_array_equal(info["_clicks"], ~done)
        np.testing.assert_array_equal(info["user"], env._state.user.numpy())  # reset info: the new users
    assert mixed >= 3


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_gymnasium_record_episode_statistics_sees_every_episode(small_world, mode):
    """Gymnasium's own vector wrapper reads our autoreset mode and reports the returns we accumulate."""
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    env = RecordEpisodeStatistics(RankingVectorEnv(8, small_world, num_candidates=40, candidates={"pool_size": 120},
                                                   slate_size=5, max_steps=6, autoreset_mode=mode))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    ours, pending = np.zeros(8), np.zeros(8, bool)
    reported, expected = [], []
    for _ in range(30):
        _, r, te, tr, info = env.step(rng.uniform(-1, 1, (8, 40)).astype(np.float32))
        ours = np.where(pending, 0.0, ours + r)  # next_step: the reset step belongs to no episode
        done = te | tr
        if done.any():
            reported += info["episode"]["r"][done].tolist()
            expected += ours[done].tolist()
            ours[done] = 0.0
        pending = done if mode == "next_step" else np.zeros(8, bool)
    assert len(reported) >= 16 and sum(expected) > 0
    np.testing.assert_allclose(reported, expected)


def test_vecchecknan_10k_random_steps(small_world):
    venv = VecCheckNan(RankingSB3VecEnv(100, seed=0, world=small_world, num_candidates=40, candidates={"pool_size": 120}, max_steps=20),
                       raise_exception=True)
    venv.reset()
    rng = np.random.default_rng(0)
    space = venv.observation_space
    for _ in range(100):
        obs, r, d, _ = venv.step(rng.uniform(-1, 1, (100, 40)).astype(np.float32))
        assert np.isfinite(r).all()
        assert all(space[k].contains(obs[k][0]) for k in obs)


def test_pickle_and_deepcopy_round_trip(small_world):
    env = make(small_world).unwrapped
    env.reset(seed=5)
    for _ in range(3):
        env.step(np.linspace(-1, 1, 40, dtype=np.float32))
    for clone in (pickle.loads(pickle.dumps(env)), copy.deepcopy(env)):
        a = np.random.default_rng(1).uniform(-1, 1, 40).astype(np.float32)
        o1, r1, *_ = clone.step(a)
        snapshot = pickle.loads(pickle.dumps(env))
        o2, r2, *_ = snapshot.step(a)
        assert r1 == r2
        for key in o1:
            np.testing.assert_array_equal(o1[key], o2[key])


def test_step_before_reset_and_after_end_raise(small_world):
    env = make(small_world, max_steps=2).unwrapped
    with pytest.raises(RuntimeError, match=r"before reset\(\)"):
        env.step(np.zeros(40, np.float32))
    env.reset(seed=0)
    env.step(np.zeros(40, np.float32))
    env.step(np.zeros(40, np.float32))
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step(np.zeros(40, np.float32))


@pytest.mark.parametrize(
    "action_type,k,action,pattern",
    [
        ("slate", 5, np.array([0, 1, 2, 3, 40]), r"action\[4\]: expected a candidate index in \[0, 40\), received 40"),
        ("slate", 5, np.array([0, 1, -1, 3, 4]), r"action\[2\]: .*received -1"),
        ("slate", 5, np.array([0, 1, 2, 1, 4]), r"action\[3\]: expected distinct candidates, received 1 again \(also at slot 1\)"),
        ("slate", 5, np.array([0, 1, 2, 3]), r"expected shape \(5,\).*received \(4,\)"),
        ("slate", 5, np.array([0.0, 1, 2, 3, 4]), r"expected integer candidate indices.*float"),
        ("slate", 5, np.array([True, False, True, False, True]), r"expected integer candidate indices.*bool"),
        ("scores", 5, np.r_[np.zeros(39), np.nan].astype(np.float32), r"action\[39\]: expected a finite score, received nan"),
        ("scores", 5, np.r_[np.zeros(39), np.inf].astype(np.float32), r"action\[39\]: expected a finite score, received inf"),
        ("scores", 5, np.zeros(41, np.float32), r"expected shape \(40,\)"),
        ("item", 1, 40, r"expected a candidate index in \[0, 40\), received 40"),
        ("item", 1, 2.0, r"expected integer candidate indices"),
    ],
)
def test_invalid_actions_raise_and_change_nothing(small_world, action_type, k, action, pattern):
    env = make(small_world, action_type, k).unwrapped
    env.reset(seed=0)
    before = env.state.clone()
    with pytest.raises(InvalidActionError, match=pattern):
        env.step(action)
    assert env.state.equal(before)  # every field, the clock and the random stream


def test_masked_candidate_is_rejected(small_world):
    env = make(small_world, "slate", 5).unwrapped
    obs, _ = env.reset(seed=0)
    while obs["mask"].all():
        obs, *_ = env.step(np.flatnonzero(obs["mask"])[:5])
    masked = np.flatnonzero(obs["mask"] == 0)
    assert masked.size >= 1
    valid = np.flatnonzero(obs["mask"] == 1)
    with pytest.raises(InvalidActionError, match=rf"action\[0\]: candidate {masked[0]} is masked"):
        env.step(np.r_[masked[0], valid[:4]])


def test_config_and_option_errors(small_world):
    with pytest.raises(ConfigError, match=r"unknown key 'slate_sise'.*did you mean 'slate_size'"):
        RankingEnv(small_world, slate_sise=3)
    with pytest.raises(ConfigError, match=r"slate_size: expected <= num_candidates"):
        RankingEnv(small_world, num_candidates=10, slate_size=9, new_items={"slots": 3}, candidates={"pool_size": 100})
    with pytest.raises(ConfigError, match="action_type: 'item' picks one item, so expected slate_size=1, received slate_size=5"):
        RankingEnv(small_world, action_type="item", slate_size=5)
    with pytest.raises(ConfigError, match=r"world: expected one of .* received 'synthtic' \(did you mean 'synthetic'\?\)"):
        RankingEnv("synthtic")
    env = make(small_world).unwrapped
    with pytest.raises(ConfigError, match=r"unknown key 'user_idx'.*did you mean 'user_index'"):
        env.reset(options={"user_idx": 1})
    with pytest.raises(ValueError, match=r"expected 0 <= index < 40, received 40"):
        env.reset(options={"user_index": 40})
    with pytest.raises(ValueError, match="seed: expected None or a non-negative int, received -1"):
        env.reset(seed=-1)
    with pytest.raises(ValueError, match="seed: expected None or a non-negative int"):
        env.reset(seed=1.5)


def test_info_holds_copies(small_world):
    env = make(small_world).unwrapped
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(40, np.float32))
    info["click_probs"][:] = 99
    assert not (env.core.params.item_static == 99).any() and not (env.core.params.item_quality == 99).any()
    obs, *_ = env.step(np.zeros(40, np.float32))
    obs["history"][:] = 5
    assert float(env._state.history.abs().max()) <= 1.0 + 1e-5


def test_repair_mode_turns_any_slate_into_a_valid_one(small_world):
    env = make(small_world, "slate", 5, strict=False).unwrapped
    env.reset(seed=0)
    mask = env._state.mask[0].numpy().astype(bool)
    while mask.all() or not mask[7]:  # pool windows come back every P / N steps, shown items masked
        env.step(np.flatnonzero(mask)[:5])
        mask = env._state.mask[0].numpy().astype(bool)
    candidates = env._state.candidates[0].numpy().copy()
    masked = np.flatnonzero(~mask)
    _, _, _, _, info = env.step(np.array([masked[0], 7, 7, 99, -3]))
    items = info["slate_items"]
    # Slot 1 (7, valid) is kept; the masked, repeated and out-of-range slots get the lowest unused valid ones.
    fill = [int(j) for j in np.flatnonzero(mask) if j != 7][:4]
    np.testing.assert_array_equal(items, candidates[[fill[0], 7, fill[1], fill[2], fill[3]]])


def test_repair_mode_ranks_non_finite_scores_last_and_never_picks_masked():
    cfg = EnvConfig(num_candidates=8, candidates={"pool_size": 16}, slate_size=3, new_items={"slots": 0})
    mask = torch.tensor([[True, True, False, True, True, False, True, True]])
    scores = torch.tensor([[float("nan"), 0.1, 9.0, float("inf"), -float("inf"), 5.0, 0.3, -0.2]])
    slate = actions_to_slate(scores, mask, cfg, batched=True, strict=False)
    assert slate[0].tolist() == [6, 1, 7]  # finite unmasked first; masked 2 and 5 never, even above them
    only_two_finite = torch.tensor([[float("nan"), 0.1, 9.0, float("inf"), float("nan"), 5.0, 0.3, float("nan")]])
    slate = actions_to_slate(only_two_finite, mask, cfg, batched=True, strict=False)
    assert slate[0, :2].tolist() == [6, 1] and mask[0, slate[0, 2]]  # then a non-finite unmasked one


@pytest.mark.parametrize("world", ["movielens-100k", "ml-latest-small"])
def test_fitted_real_world_through_gym_make_passes_both_checkers(world, data_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("recgym/Ranking-v0", world=world, data_dir=str(data_dir), encoder="hashing",
                       world_config={"epochs": 1}, strict=False)
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    n_items = {"movielens-100k": 1682, "ml-latest-small": 9742}[world]
    assert env.unwrapped.world.catalog.num_items == n_items
    assert env.unwrapped.world.population.cold.any() and env.unwrapped.world.catalog.is_new.any()


def test_public_item_features_table(small_world):
    env = make(small_world).unwrapped
    feats = env.item_features
    assert feats.shape == (small_world.catalog.num_items, 2) and feats.dtype == np.float32
    assert not feats.flags.writeable
    pop, new = small_world.catalog.popularity, small_world.catalog.is_new
    np.testing.assert_array_equal(feats[:, 1], new.astype(np.float32))
    initial = np.flatnonzero(~new)
    assert np.argmax(feats[initial, 0]) == np.argmax(pop[initial]) and feats[initial, 0].max() == 1.0
    assert (feats[new, 0] == 0).all()


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_score_top_k_is_a_stable_descending_sort_of_unmasked_scores(data):
    """The packed-key top-K equals a stable sort (ties: lower position first), for small and large K."""
    n = data.draw(st.integers(2, 70))
    k = data.draw(st.integers(1, n))
    b = data.draw(st.integers(1, 4))
    pool = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 1e-30, -1e-30, 3e38, -3e38])
    values = st.one_of(pool, st.floats(-1e6, 1e6, width=32))
    scores = torch.tensor(data.draw(st.lists(st.lists(values, min_size=n, max_size=n), min_size=b, max_size=b)),
                          dtype=torch.float32)
    mask = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=b, max_size=b)))
    mask[:, :k] = True  # the env guarantees at least K allowed candidates
    ref = torch.sort((scores + 0.0).masked_fill(~mask, float("-inf")), dim=1, descending=True, stable=True).indices
    _assert_every_top_k_path(scores, mask, k, ref[:, :k])


def _assert_every_top_k_path(scores, mask, k, expected):
    """Max-reductions, one sort (small batches) and one topk over packed keys give the same slate."""
    import recgym.envs.spaces as spaces_module

    for rounds, sort_max in ((True, spaces_module._SORT_MAX_SIZE), (False, spaces_module._SORT_MAX_SIZE), (False, 0)):
        old, spaces_module._SORT_MAX_SIZE = spaces_module._SORT_MAX_SIZE, sort_max
        try:
            assert torch.equal(_top_k(scores, mask, k, rounds=rounds), expected), (rounds, sort_max)
        finally:
            spaces_module._SORT_MAX_SIZE = old


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_score_top_k_handles_near_ties_exactly(data):
    """Scores a few float32 ulps apart share the max-reduction path's truncated keys: still a stable sort."""
    n = data.draw(st.integers(12, 100))
    k = data.draw(st.integers(1, 11))
    b = data.draw(st.integers(1, 5))
    base = np.float32(data.draw(st.sampled_from([0.5, -0.25, 3.0, 1e-3])))
    steps = np.array(data.draw(st.lists(st.lists(st.integers(-40, 40), min_size=n, max_size=n),
                                        min_size=b, max_size=b)))
    scores = torch.tensor(base + steps.astype(np.float32)
                          * np.spacing(base), dtype=torch.float32)
    mask = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=b, max_size=b)))
    mask[:, :k] = True
    ref = torch.sort(scores.masked_fill(~mask, float("-inf")), dim=1, descending=True, stable=True).indices
    _assert_every_top_k_path(scores, mask, k, ref[:, :k])
