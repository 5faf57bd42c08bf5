"""recgym.benchmarks: the figures ``recgym bench ...`` prints (simulator, training, encoding throughput).

Every figure recorded in ``benchmarks/RESULTS.md`` names the machine, the date, the load and the command
that produced it; ``benchmarks/run_all.sh`` re-runs them. ``benchmarks/peers/`` (scripts, not installed)
measures RecSim and SARDINE side by side with recgym.
"""
