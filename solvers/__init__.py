"""Solvers behind one interface (``solvers.base``): greedy baselines live here; the
exact, divide-and-conquer and learned solvers register from their own packages."""
