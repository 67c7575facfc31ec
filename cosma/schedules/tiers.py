"""The budget tiers of COSMA's evaluation protocol, per model and setting:

* ``M_R``: the tightest feasible capacity: the largest operator's resident operands;
* ``M_P``: the minimum over schedules of the peak live bytes, so zero spills are possible
  at ``M_P`` up to fragmentation (exact when a proving scheduler finishes, else the best
  schedule known);
* ``M_H = (M_R + M_P) / 2``, rounded down to the alignment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from cosma.core.analysis import is_topological, min_capacity, peak_live_bytes
from cosma.core.ir import Bytes, Graph, Hardware, OpName, Problem


@dataclass(frozen=True)
class Tiers:
    m_r: Bytes
    m_h: Bytes
    m_p: Bytes
    m_p_proven: bool  # True when M_P is the proven minimum over all schedules
    m_p_schedule: tuple[OpName, ...]  # a schedule whose peak live bytes is M_P
    m_p_source: str  # which scheduler found it

    def capacity(self, tier: str) -> Bytes:
        return {"M_R": self.m_r, "M_H": self.m_h, "M_P": self.m_p}[tier]


def candidate_schedules(
    problem: Problem, time_limit: float | None = 10.0
) -> list[tuple[str, tuple[OpName, ...], bool]]:
    """``(source, schedule, proven_min_peak)`` from every scheduler available, cheapest first."""
    out: list[tuple[str, tuple[OpName, ...], bool]] = [
        ("file order", tuple(op.name for op in problem.graph.operators), False)
    ]
    deadline = None if time_limit is None else time.monotonic() + time_limit

    def left() -> float | None:
        return None if deadline is None else max(0.1, deadline - time.monotonic())

    try:
        from cosma.schedules.orders import memory_aware_schedule

        out.append(("memory-aware list scheduler", tuple(memory_aware_schedule(problem)), False))
    except ImportError:
        pass
    try:
        from cosma.schedules.minpeak import min_peak_schedule

        schedule, _, proven = min_peak_schedule(problem, time_limit=left())
        out.append(("memory-minimizing scheduler", tuple(schedule), bool(proven)))
    except ImportError:
        pass
    if not any(proven for _, _, proven in out):
        try:
            from cosma.schedules.mpmf import min_peak

            result = min_peak(problem, time_limit=left())
            out.append(("exact MPMF (CP-SAT)", tuple(result.schedule), bool(result.proven)))
        except ImportError:
            pass
    return [c for c in out if is_topological(problem, c[1])]


def compute_tiers(graph: Graph, hardware: Hardware, weights_counted: bool, *, time_limit: float | None = 10.0) -> Tiers:
    problem = Problem(graph, capacity=hardware.capacity, hardware=hardware, weights_counted=weights_counted)
    m_r = min_capacity(problem)
    best = None
    for source, schedule, proven in candidate_schedules(problem, time_limit):
        peak = peak_live_bytes(problem, schedule)
        if best is None or peak < best[0] or (peak == best[0] and proven and not best[2]):
            best = (peak, source, proven, schedule)
    m_p, source, proven, schedule = best
    a = hardware.alignment
    m_h = ((m_r + m_p) // 2) // a * a
    return Tiers(m_r=m_r, m_h=max(m_r, m_h), m_p=m_p, m_p_proven=proven, m_p_schedule=schedule, m_p_source=source)


def with_capacity(problem: Problem, capacity: Bytes) -> Problem:
    return replace(problem, capacity=capacity)


__all__ = ["Tiers", "candidate_schedules", "compute_tiers", "with_capacity"]
