"""CPU-vs-CUDA parity of the batched core: ``python -m pytest -m gpu tests/test_env_devices.py`` on a machine
with CUDA (deselected by default, like the slow tier).

``RECGYM_PARITY_DEVICE`` names the second device (default ``cuda``). ``RECGYM_PARITY_DEVICE=cpu`` runs the
same checks against a second CPU core: that exercises the tests themselves, and says nothing about CUDA.

The random streams are integer hashes of the state (:mod:`recgym.envs.rng`), the same on every device, so
parity is checked exactly: one state, moved to the device, stepped with the same slates on both cores,
gives the same clicks and the same state (floats within tolerance); and statistically (mean return and
session length of the myopic oracle over many users agree within their standard errors).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from recgym.envs import EnvConfig, RankingCore, SimState
from recgym.envs.spaces import actions_to_slate

pytestmark = pytest.mark.gpu

CONFIG = EnvConfig(num_candidates=40, slate_size=5, max_steps=40, candidates={"pool_size": 120},
                   new_items={"per_step": 0.5, "slots": 3, "window": 20})


@pytest.fixture(scope="module")
def device() -> torch.device:
    dev = torch.device(os.environ.get("RECGYM_PARITY_DEVICE", "cuda"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.fail("-m gpu needs a CUDA device (or RECGYM_PARITY_DEVICE=cpu to exercise the tests on CPU)")
    return dev


def assert_states_close(a: SimState, b: SimState, step: int) -> None:
    assert a.names() == b.names() and a.t == b.t
    for name in a.names():
        x, y = getattr(a, name), getattr(b, name).cpu()
        if x.is_floating_point():
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"step {step} {n}: {m}")
        else:
            assert torch.equal(x, y), f"step {step}: {name} differs"


def test_one_state_gives_the_same_trajectory_on_both_devices(small_world, device):
    cfg = CONFIG.merged({"dynamics": {"initial_budget": 1000.0}})  # nobody leaves: no pool resampling
    cpu = RankingCore(small_world, cfg)
    other = RankingCore(small_world, cfg, device=device)
    state = cpu.init_state(batch_size=512, seed=0)
    remote = state.to(device)
    assert_states_close(state, other.init_state(batch_size=512, seed=0), -1)  # seeding agrees too
    scores = torch.Generator().manual_seed(2)
    clicks = 0
    for t in range(cfg.max_steps):
        torch.testing.assert_close(cpu.candidate_logits(state), other.candidate_logits(remote).cpu(),
                                   rtol=1e-4, atol=1e-4)
        action = torch.rand(state.batch_size, cfg.num_candidates, generator=scores)
        slate = actions_to_slate(action, state.mask, cfg, batched=True)
        r1, te1, tr1, i1 = cpu.step(state, slate)
        r2, te2, tr2, i2 = other.step(remote, slate.to(device))
        torch.testing.assert_close(i1["click_probs"], i2["click_probs"].cpu(), rtol=1e-4, atol=1e-6)
        assert torch.equal(i1["clicks"], i2["clicks"].cpu()), f"step {t}: clicks differ"
        torch.testing.assert_close(r1, r2.cpu())
        assert torch.equal(te1, te2.cpu()) and torch.equal(tr1, tr2.cpu())
        assert_states_close(state, remote, t)
        clicks += int(i1["clicks"].sum())
    assert clicks > 100 and bool(tr1.all())


def rollout_stats(core: RankingCore, users: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return and length of one episode per user under the myopic oracle (top-K hidden logits)."""
    state = core.init_state(batch_size=users, seed=seed)
    total = torch.zeros(users, device=core.device)
    length = torch.zeros(users, device=core.device)
    alive = torch.ones(users, dtype=torch.bool, device=core.device)
    while bool(alive.any()):
        logits = core.candidate_logits(state).masked_fill(~state.mask, -torch.inf)
        reward, term, trunc, _ = core.step(state, logits.topk(core.config.slate_size, dim=1).indices)
        total += reward * alive
        length += alive
        alive &= ~(term | trunc)
    return total.cpu().numpy(), length.cpu().numpy()


def test_each_devices_own_stream_gives_the_same_statistics(small_world, device):
    cpu_seed, other_seed = 0, 1  # two seeds: two independent samples of users and luck
    # A pool per episode: with pool_lifetime > 0 the episodes of a user share one pool per seed, so they
    # are not independent and the standard error below would be too small.
    cfg = CONFIG.merged({"candidates": {"pool_lifetime": 0}})
    a = rollout_stats(RankingCore(small_world, cfg), 4096, cpu_seed)
    b = rollout_stats(RankingCore(small_world, cfg, device=device), 4096, other_seed)
    for x, y, what in zip(a, b, ("return", "session length"), strict=True):
        se = np.sqrt(x.var() / len(x) + y.var() / len(y))
        assert abs(x.mean() - y.mean()) < 4 * se, (what, x.mean(), y.mean(), se)
        assert x.std() > 0  # episodes differ: the check has something to compare
