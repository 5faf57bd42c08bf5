"""recgym.experiments."""
