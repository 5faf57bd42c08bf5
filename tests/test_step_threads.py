"""Thread policy of the shells' steps: one thread for small batches, and for large CPU batches torch's count
lowered to the free CPUs while some but not all CPUs are busy elsewhere (issue 17: a 2-thread step beside
one CPU-bound process ran 4x slower; on a fully busy machine one thread showed no consistent gain), re-checked
at most once per period, never above the user's setting, always restored."""

from __future__ import annotations

import numpy as np
import torch

from recgym.envs import RankingVectorEnv, _shell
from recgym.envs._shell import AdaptiveThreads, step_thread_count, step_threads, threads_beside


def test_the_rule_lowers_threads_only_on_a_partly_busy_machine():
    assert threads_beside(2, 0.2, 2) == 2  # quiet
    assert threads_beside(2, 1.1, 2) == 1  # one CPU-bound process beside us: the free core
    assert threads_beside(2, 2.0, 2) == 2  # every core busy: fair share per thread, keep the count
    assert threads_beside(2, 9.0, 2) == 2
    assert threads_beside(8, 3.0, 16) == 8  # never above the setting
    assert threads_beside(16, 3.0, 16) == 13
    assert threads_beside(2, None, 2) == 2  # unknown (no /proc): the setting


def test_large_cpu_batches_follow_the_free_cpus_and_restore_the_setting(monkeypatch):
    busy = {"n": 1.0}
    calls = []
    clock = {"t": 100.0}

    def fake_busy() -> float:
        calls.append(torch.get_num_threads())
        return busy["n"]

    monkeypatch.setattr(_shell, "busy_elsewhere", fake_busy)
    monkeypatch.setattr(_shell, "_cpus", lambda: 2)
    monkeypatch.setattr(_shell.time, "monotonic", lambda: clock["t"])
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        policy = step_thread_count(8192, 100, torch.device("cpu"))
        assert isinstance(policy, AdaptiveThreads)
        with step_threads(policy):
            assert torch.get_num_threads() == 1  # another process holds a core: one thread
        assert torch.get_num_threads() == 2
        busy["n"] = 0.0
        with step_threads(policy):  # within the re-check period: the cached answer
            assert torch.get_num_threads() == 1
        clock["t"] += policy.recheck_s
        with step_threads(policy):  # the machine is free again
            assert torch.get_num_threads() == 2
        torch.set_num_threads(1)  # the user lowers the count: asked again at once, and never exceeded
        with step_threads(policy):
            assert torch.get_num_threads() == 1
        assert calls == [2, 2, 1]
    finally:
        torch.set_num_threads(old)


def test_small_and_device_batches_keep_their_rules():
    assert step_thread_count(1, 100, torch.device("cpu")) == 1
    assert step_thread_count(8192, 100, torch.device("cuda")) is None


def test_a_large_vector_env_steps_under_the_adaptive_policy(small_world, monkeypatch):
    monkeypatch.setattr(_shell, "busy_elsewhere", lambda: 1.0)
    monkeypatch.setattr(_shell, "_cpus", lambda: 2)
    env = RankingVectorEnv(200, small_world, num_candidates=100, slate_size=5)
    assert isinstance(env._threads, AdaptiveThreads)
    seen = []
    step = env.core.step

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return step(*a, **k)

    monkeypatch.setattr(env.core, "step", spy)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        env.reset(seed=0)
        env.step(np.random.default_rng(0).random((200, 100), dtype=np.float32))
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)
        env.close()
