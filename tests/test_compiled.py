"""Opt-in compiled kernels (``RECGYM_COMPILE``): the compiled top-K gives the eager path's slate bit for bit,
and a simulation stepped with compile on follows the eager trajectory exactly."""

from __future__ import annotations

import warnings

import pytest
import torch

from recgym.envs import EnvConfig, RankingCore, compiled
from recgym.envs import spaces as spaces_module
from recgym.envs.spaces import _top_k, actions_to_slate

B, N, K = 512, 100, 10  # B * N >= the max-reduction path's minimum: what a large batch takes


@pytest.fixture
def compile_on():
    compiled.set_compile(True)
    yield
    compiled.set_compile(None)


def _hard_scores(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores full of exact ties, +-0.0, extremes and near-ties (a few ulps apart), and a mask with few allowed."""
    g = torch.Generator().manual_seed(seed)
    special = torch.tensor([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 1e-30, -1e-30, 3e38, -3e38])
    scores = torch.rand(B, N, generator=g) * 2 - 1
    pick = torch.rand(B, N, generator=g) < 0.4
    scores[pick] = special[torch.randint(len(special), (int(pick.sum()),), generator=g)]
    near = torch.rand(B, N, generator=g) < 0.2
    ulps = torch.randint(-3, 4, (B, N), generator=g, dtype=torch.int32)
    bits = scores.view(torch.int32).clone()
    bits[near] += ulps[near]
    scores = torch.where(near & (scores.abs() > 1e-20), bits.view(torch.float32), scores)
    mask = torch.rand(B, N, generator=g) < torch.rand(B, 1, generator=g)
    mask[:, :K] |= True  # the env guarantees at least K allowed candidates
    return scores, mask


def test_compiled_top_k_equals_every_eager_path(compile_on):
    for seed in range(6):
        scores, mask = _hard_scores(seed)
        expected = torch.sort((scores + 0.0).masked_fill(~mask, float("-inf")), dim=1, descending=True,
                              stable=True).indices[:, :K]
        got = _top_k(scores, mask, K, rounds=True)
        assert torch.equal(got, expected), f"seed {seed}: compiled top-K differs from a stable sort"
        compiled.set_compile(False)
        assert torch.equal(_top_k(scores, mask, K, rounds=True), got)
        compiled.set_compile(True)
    assert spaces_module._ROUNDS32_KERNEL._compiled is not None and not spaces_module._ROUNDS32_KERNEL._broken


def test_a_failed_compile_warns_once_and_runs_eagerly(compile_on, monkeypatch):
    kernel = compiled.CompiledKernel(spaces_module._rounds32_pure)
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    scores, mask = _hard_scores(0)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        first = kernel(scores, mask, K)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = kernel(scores, mask, K)
    eager = spaces_module._rounds32_pure(scores, mask, K)
    for a, b, c in zip(first, second, eager, strict=True):
        assert torch.equal(a, c) and torch.equal(b, c)


def test_the_switch_reads_the_environment_and_rejects_bad_values(monkeypatch):
    try:
        for raw, want in (("1", True), ("on", True), ("0", False), ("", False), (" TRUE ", True)):
            monkeypatch.setenv(compiled.ENV_VAR, raw)
            compiled.set_compile(None)
            assert compiled.compile_enabled() is want
        monkeypatch.setenv(compiled.ENV_VAR, "maybe")
        compiled.set_compile(None)
        with pytest.raises(ValueError, match="RECGYM_COMPILE.*received 'maybe'"):
            compiled.compile_enabled()
        with pytest.raises(TypeError):
            compiled.set_compile(1)  # type: ignore[arg-type]
    finally:
        compiled.set_compile(None)
        monkeypatch.delenv(compiled.ENV_VAR)


def test_a_trajectory_is_bit_identical_with_compile_on(small_world, compile_on):
    """B users stepped through resets with compile on and off: same slates, clicks, rewards and state."""
    cfg = EnvConfig(num_candidates=N, slate_size=K, max_steps=8, candidates={"pool_size": 150})
    core = RankingCore(small_world, cfg)
    g = torch.Generator().manual_seed(3)
    actions = [torch.rand(B, N, generator=g) * 2 - 1 for _ in range(12)]

    def run(on: bool) -> tuple[list[torch.Tensor], object]:
        compiled.set_compile(on)
        state = core.init_state(batch_size=B, seed=11)
        out = []
        for a in actions:
            slate = actions_to_slate(a, state.mask, cfg, batched=True, strict=False)
            reward, term, trunc, info = core.step(state, slate)
            core.reset_rows(state, (term | trunc).nonzero().squeeze(1))
            out += [slate, reward, info["clicks"]]
        return out, state

    eager, s_eager = run(False)
    fast, s_fast = run(True)
    assert all(torch.equal(a, b) for a, b in zip(eager, fast, strict=True))
    assert s_eager.equal(s_fast)
