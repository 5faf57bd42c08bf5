"""The simulation state as a value: snapshots, forks, serialisation, random streams, swappable components."""

from __future__ import annotations

import io
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import recgym  # noqa: F401  (registers the ids)
from recgym.envs import EnvConfig, RankingCore, RankingEnv, RankingVectorEnv, SimState, rng
from recgym.envs.spaces import actions_to_slate

CFG = EnvConfig(num_candidates=30, slate_size=4, max_steps=12, candidates={"pool_size": 90},
                new_items={"per_step": 0.5, "slots": 3, "window": 10}, dynamics={"initial_budget": 6.0})


@pytest.fixture(scope="module")
def core(small_world) -> RankingCore:
    return RankingCore(small_world, CFG)


def play(core: RankingCore, state: SimState, actions: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Step ``state`` in place with scores ``actions``; finished rows start new episodes (so resets, with
    their pool draws, are part of the trajectory). Returns each step's outputs."""
    out = []
    for scores in actions:
        slate = actions_to_slate(scores, state.mask, core.config, batched=True, strict=False)
        reward, term, trunc, info = core.step(state, slate)
        done = (term | trunc).nonzero().squeeze(1)
        users = core.reset_rows(state, done)
        out.append({"reward": reward, "done": term | trunc, "new_users": users, **info,
                    "obs": torch.cat([v.float().flatten(1) for v in core.observe(state).values()], 1)})
    return out


def assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        for key in x:
            assert torch.equal(x[key], y[key]), f"step {t}: {key} differs"


def scores(seed: int, n: int, b: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, CFG.num_candidates, generator=g) for _ in range(n)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**40), b=st.integers(1, 6), n=st.integers(1, 30), at=st.integers(0, 30),
       action_seed=st.integers(0, 1000))
def test_a_clone_is_a_complete_snapshot(core, seed, b, n, at, action_seed):
    """Clone at a random step: the clone and the original, stepped with the same actions, give bit-identical
    trajectories, and stepping the clone never changes the original."""
    state = core.init_state(batch_size=b, seed=seed)
    acts = scores(action_seed, n + at, b)
    play(core, state, acts[: min(at, n)])
    snap = state.clone()
    before = state.state_dict()
    rest = acts[min(at, n):]
    original = play(core, state, rest)
    assert snap.equal(SimState.from_state_dict(before))  # stepping the original left the clone alone
    assert_same(play(core, snap, rest), original)  # same actions: bit-identical trajectories
    assert snap.equal(state)


def test_state_dict_round_trip_through_torch_load_weights_only(core):
    state = core.init_state(batch_size=5, seed=3)
    play(core, state, scores(0, 7, 5))
    buf = io.BytesIO()
    torch.save(state.state_dict(), buf)
    buf.seek(0)
    loaded = SimState.from_state_dict(torch.load(buf, weights_only=True))
    assert loaded.equal(state) and loaded.t == state.t == 7
    rest = scores(1, 10, 5)
    assert_same(play(core, loaded, rest), play(core, state, rest))
    with pytest.raises(ValueError, match="expected format 1"):
        SimState.from_state_dict({"t": torch.tensor(0)})


def test_repeat_forks_users_with_shared_or_split_streams(core):
    state = core.init_state(batch_size=3, seed=11)
    play(core, state, scores(2, 4, 3))
    f = 4
    same = state.repeat(f)
    assert same.batch_size == 12 and same.t == state.t
    for name, v in state.batched():
        assert torch.equal(getattr(same, name), v.repeat_interleave(f, 0)), name  # row b * F + c = copy c of b
    acts = [a.repeat_interleave(f, 0) for a in scores(3, 15, 3)]
    out = play(core, same, acts)
    for step in out:  # shared streams, same actions: the copies of a user never diverge
        assert torch.equal(step["clicks"].view(3, f, -1), step["clicks"][::f].unsqueeze(1).expand(3, f, -1))
    split = state.repeat(f, split_rng=True)
    assert torch.equal(split.rng[::f], state.rng)  # copy 0 keeps the original's stream ...
    out_split = play(core, split, acts)
    assert_same([{k: s[k][::f] for k in ("clicks", "reward", "obs")} for s in out_split],
                play(core, state, [a[::f] for a in acts]))  # ... and so its trajectory
    clicks = torch.stack([s["clicks"] for s in out_split]).view(15, 3, f, -1)
    assert not torch.equal(clicks[:, :, 1], clicks[:, :, 2])  # the other copies draw their own luck
    with pytest.raises(ValueError, match="positive int"):
        state.repeat(0)


def test_take_selects_rows_and_shares_nothing(core):
    state = core.init_state(batch_size=4, seed=0)
    sub = state.take([2, 0])
    assert torch.equal(sub.user, state.user[[2, 0]]) and sub.t == state.t
    sub.budget.fill_(-1.0)
    assert (state.budget > 0).all()


def test_a_row_does_not_depend_on_the_rest_of_the_batch(core):
    """Row 0 of a batch of 6 and a batch of 1 with the same seed live the same trajectory."""
    big, one = core.init_state(batch_size=6, seed=5), core.init_state(batch_size=1, seed=5)
    acts = scores(4, 25, 6)
    a, b = play(core, big, acts), play(core, one, [x[:1] for x in acts])
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        assert torch.equal(x["clicks"][:1], y["clicks"]) and torch.equal(x["done"][:1], y["done"]), t
        torch.testing.assert_close(x["obs"][:1], y["obs"])


def test_streams_match_a_numpy_reference_of_the_hash():
    """lowbias32 on int32 tensors (masked shifts, wrapping products) equals the unsigned reference."""
    words = rng.seed_streams(123, 4)
    bases = rng.event_bases(words).numpy().astype(np.uint32)
    with np.errstate(over="ignore"):
        x = bases[:, None] + np.arange(9, dtype=np.uint32) * np.uint32(0x9E3779B9)
        x ^= x >> np.uint32(16)
        x *= np.uint32(0x7FEB352D)
        x ^= x >> np.uint32(15)
        x *= np.uint32(0x846CA68B)
        x ^= x >> np.uint32(16)
    got = rng.hash_words(torch.as_tensor(bases.astype(np.int64)).to(torch.int32), 9)
    np.testing.assert_array_equal(got.numpy().view(np.uint32), x)
    u = rng.uniform(rng.hash_words(rng.event_bases(rng.seed_streams(0, 64)), 4096)).flatten()
    assert 0 < float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.005
    z = rng.normal_from_uniform(u.clone())
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
    assert torch.equal(rng.seed_streams(7, 1, offset=3), rng.seed_streams(7, 5)[3:4])


# ---------------------------------------------------------------------------------------- components
class FixedLengthSessions:
    """A user-written dynamics: every session lasts ``length`` slates, no fatigue."""

    def __init__(self, length: int = 3) -> None:
        self.length = length

    def fields(self, params, batch, slots):
        return {"left": torch.zeros(batch, device=params.device)}

    def reset(self, params, state, rows, users):
        state.left.index_fill_(0, rows, float(self.length))

    def logit_offset(self, params, state, view):
        return None

    def update(self, params, state, view, responses):
        state.left.sub_(1.0)

    def leaving(self, params, state):
        return state.left <= 0

    def remaining(self, params, state):
        return state.left / self.length


class QualityPreference:
    """A user-written preference: everybody likes good items, ``logit = 6 * (quality - 0.5) - 1``."""

    def fields(self, params, batch):
        return {}

    def reset(self, params, state, rows, users):
        pass

    def logits(self, params, state, view):
        return 6.0 * (view.quality - 0.5) - 1.0


@pytest.mark.parametrize("action_type,k", [("scores", 4), ("slate", 4), ("item", 1)])
def test_user_written_components_pass_both_env_checkers(small_world, action_type, k):
    kw = dict(world=small_world, action_type=action_type, slate_size=k, num_candidates=30,
              candidates={"pool_size": 90}, strict=False, user_dynamics=FixedLengthSessions(3),
              preference_model=QualityPreference())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(gym.make("recgym/Ranking-v0", **kw).unwrapped)
        sb3_check_env(RankingEnv(**kw))
    env = RankingEnv(**kw)
    env.reset(seed=0)
    lengths = 0
    while True:
        obs, r, term, trunc, _ = env.step(env.action_space.sample())
        lengths += 1
        if term or trunc:
            break
    assert term and lengths == 3 and obs["context"][0] == 0.0  # the toy's leaving rule and context feature


def test_swapped_preference_drives_the_clicks(small_world):
    """With QualityPreference the true click probabilities are a function of item quality alone."""
    env = RankingVectorEnv(16, small_world, num_candidates=30, slate_size=4, candidates={"pool_size": 90},
                           preference_model=QualityPreference(), dynamics={"interest_drift": 0.0,
                                                                          "item_fatigue_weight": 0.0,
                                                                          "genre_fatigue_weight": 0.0})
    obs, _ = env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros((16, 30), np.float32))
    q = torch.as_tensor(small_world.catalog.quality[info["slate_items"]])
    logits = 6.0 * (q - 0.5) - 1.0
    expected = torch.exp(logits) / (1 + torch.exp(logits).sum(1, keepdim=True))  # MNL with no-click 0
    torch.testing.assert_close(torch.as_tensor(info["click_probs"]), expected, rtol=1e-5, atol=1e-6)


def test_component_errors_say_what_is_missing(small_world):
    with pytest.raises(TypeError, match=r"user_dynamics: expected an object implementing UserDynamics.*missing: .*leaving"):
        RankingCore(small_world, CFG, user_dynamics=object())
    with pytest.raises(ValueError, match=r"user_dynamics: SessionDynamics needs state fields \['interest'\]"):
        RankingCore(small_world, CFG, preference_model=QualityPreference())  # interest drift needs interest
    RankingCore(small_world, CFG.merged({"dynamics": {"interest_drift": 0.0}}), preference_model=QualityPreference())


# ---------------------------------------------------------------------------------------- config
def test_nested_config_paths_moves_shorthands_and_deep_merge(small_world):
    from recgym.common.config import ConfigError

    with pytest.raises(ConfigError, match=r"env\.initial_budget: moved to env\.dynamics\.initial_budget"):
        EnvConfig(initial_budget=3.0)
    with pytest.raises(ConfigError, match=r"env\.new_item_slots: moved to env\.new_items\.slots"):
        RankingEnv(small_world, new_item_slots=2)
    with pytest.raises(ConfigError, match=r"env\.dynamics\.step_cots: unknown key \(did you mean 'step_cost'\?\)"):
        EnvConfig(dynamics={"step_cots": 1.0})
    with pytest.raises(ConfigError, match=r"env\.candidates\.mix\.nearst: unknown key"):
        EnvConfig(candidates={"mix": {"nearst": 1.0}})
    with pytest.raises(ConfigError, match=r"env\.dynamics\.initial_budget: .*greater than 0"):
        EnvConfig(dynamics={"initial_budget": -1})
    cfg = EnvConfig(choice="pbm", reward="mix")
    assert cfg.choice.model == "pbm" and cfg.reward.name == "mix" and cfg.reward.weights.engagement == 0.5
    merged = cfg.merged({"dynamics": {"step_cost": 0.5}, "candidates": {"mix": {"random": 1.0}}, "reward": "clicks"})
    assert merged.dynamics.step_cost == 0.5 and merged.dynamics.initial_budget == 20.0
    assert merged.candidates.mix.random == 1.0 and merged.candidates.mix.nearest == 0.5
    assert merged.reward.name == "clicks" and merged.choice.model == "pbm"
    env = RankingEnv(small_world, config=cfg, num_candidates=30, candidates={"pool_size": 90})
    assert env.config.choice.model == "pbm" and env.config.candidates.pool_size == 90


def test_a_pool_lives_pool_lifetime_steps_and_each_episode_orders_it(small_world):
    core = RankingCore(small_world, CFG.merged({"candidates": {"pool_lifetime": 10}}))
    state = core.init_state(torch.tensor([3, 3, 5]), seed=0)
    a, b, other = (state.pool[i].tolist() for i in range(3))
    assert set(a) == set(b) and a != b and set(a) != set(other)  # one item set per user, own orders
    state.t = 9
    core.reset_rows(state, torch.tensor([2]), torch.tensor([3]))
    assert set(state.pool[2].tolist()) == set(a)  # same lifetime
    state.t = 10
    core.reset_rows(state, torch.tensor([2]), torch.tensor([3]))
    assert set(state.pool[2].tolist()) != set(a)  # a new lifetime draws a new pool
    fresh = RankingCore(small_world, CFG.merged({"candidates": {"pool_lifetime": 0}}))
    state = fresh.init_state(torch.tensor([3, 3]), seed=0)
    assert set(state.pool[0].tolist()) != set(state.pool[1].tolist())  # 0: a pool per episode
