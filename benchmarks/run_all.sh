#!/usr/bin/env bash
# Re-run every benchmark recorded in benchmarks/RESULTS.md; prints one JSON line per figure set.
# Run on a quiet machine (other CPU load distorts every number); `uptime` is printed before and after.
# The CLI sets OMP_WAIT_POLICY=PASSIVE unless the environment sets OMP_WAIT_POLICY or GOMP_SPINCOUNT.
set -euo pipefail
export HF_HUB_OFFLINE=1
uptime
echo "# env throughput (issue 17 bars: B=8192 core >= 1M, vector >= 700k; B=1 >= 3k), torch's threads and 1"
recgym bench env --num-envs 1 --num-envs 64 --num-envs 1024 --num-envs 8192 --json
recgym bench env --num-envs 1 --num-envs 64 --num-envs 1024 --num-envs 8192 --threads 1 --json
echo "# shared machine: the same beside one CPU-bound process (bar: slowdown <= 2.5x)"
recgym bench env --num-envs 1 --num-envs 8192 --contention --json
recgym bench train --agent ppo --contention --json | tail -n 1
echo "# peers interleaved with recgym (skips a peer whose venv is missing; see benchmarks/peers/compare.py)"
python "$(dirname "$0")/peers/compare.py" --rounds 5 --json
echo "# encoding"
recgym bench encode --json | tail -n 1
echo "# PPO training throughput"
recgym bench train --agent ppo --threads 1 --json | tail -n 1
recgym bench train --agent ppo --threads 2 --json | tail -n 1
uptime
