"""Solvers behind one interface (``cosma.core.interface``): greedy baselines live here; the
exact, divide-and-conquer and learned solvers register from their own packages."""
