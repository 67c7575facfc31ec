"""The budget tiers of COSMA's evaluation protocol, per model and setting:

* ``M_R``: the tightest feasible capacity: the largest operator's resident operands;
* ``M_P``: the minimum over schedules of the peak live bytes, so zero spills are possible
  at ``M_P`` up to fragmentation (exact when a proving scheduler finishes, else the best
  schedule known);
* ``M_H = (M_R + M_P) / 2``, rounded down to the alignment.

This is the one place tiers are computed: both CLIs, the game's instances and the
benchmarks resolve a tier name (or a size) through ``resolve_capacity``. Which orders
``M_P`` is taken over is the caller's choice (``kinds``): every scheduler by default, the
two cheap orders where thousands of instances are sampled (the game's training sets).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from cosma.core.analysis import min_capacity, peak_live_bytes
from cosma.core.errors import UsageError
from cosma.core.ir import Bytes, Graph, Hardware, OpName, Problem
from cosma.core.units import TIERS, is_tier, normalize_tier, parse_size
from cosma.schedules.orders import PEAK_ORDERS, candidate_orders


@dataclass(frozen=True)
class Tiers:
    m_r: Bytes
    m_h: Bytes
    m_p: Bytes
    m_p_proven: bool  # True when M_P is the proven minimum over all schedules
    m_p_schedule: tuple[OpName, ...]  # a schedule whose peak live bytes is M_P
    m_p_source: str  # which scheduler found it

    def capacity(self, tier: str) -> Bytes:
        return {"M_R": self.m_r, "M_H": self.m_h, "M_P": self.m_p}[normalize_tier(tier)]

    def as_dict(self) -> dict[str, Bytes]:
        return {tier: self.capacity(tier) for tier in TIERS}


def compute_tiers(
    graph: Graph,
    hardware: Hardware,
    weights_counted: bool,
    *,
    time_limit: float | None = 10.0,
    kinds: Sequence[str] = PEAK_ORDERS,
) -> Tiers:
    """The three tiers of one graph and setting; ``M_P`` over the orders of ``kinds``
    (``cosma.schedules.orders``), found within about ``time_limit`` seconds."""
    problem = Problem(graph, capacity=hardware.capacity, hardware=hardware, weights_counted=weights_counted)
    m_r = min_capacity(problem)
    # The lowest peak; among equal peaks, a proven one (then the cheapest scheduler).
    orders = candidate_orders(problem, kinds, time_limit)
    peaks = [peak_live_bytes(problem, o.schedule) for o in orders]
    best = min(range(len(orders)), key=lambda i: (peaks[i], not orders[i].proven_min_peak, i))
    m_p, order = peaks[best], orders[best]
    a = hardware.alignment
    m_h = ((m_r + m_p) // 2) // a * a
    return Tiers(
        m_r=m_r,
        m_h=max(m_r, m_h),
        m_p=m_p,
        m_p_proven=order.proven_min_peak,
        m_p_schedule=order.schedule,
        m_p_source=order.source,
    )


def resolve_capacity(
    graph: Graph,
    hardware: Hardware,
    weights_counted: bool,
    capacity: int | str | None,
    *,
    time_limit: float | None = 10.0,
    kinds: Sequence[str] = PEAK_ORDERS,
) -> Bytes:
    """Bytes from a capacity given as bytes, a size string ("384KiB"), a tier name
    ("M_H"), or None (the hardware preset's own scratchpad). Only a tier above ``M_R``
    searches orders."""
    return resolve_budget(graph, hardware, weights_counted, capacity, time_limit=time_limit, kinds=kinds)[0]


def resolve_budget(
    graph: Graph,
    hardware: Hardware,
    weights_counted: bool,
    capacity: int | str | None,
    *,
    time_limit: float | None = 10.0,
    kinds: Sequence[str] = PEAK_ORDERS,
) -> tuple[Bytes, tuple[OpName, ...] | None]:
    """``resolve_capacity``, with the schedule that makes the capacity reachable without
    spills when it is ``M_P`` (the order whose peak live bytes set it), else None."""
    if capacity is None:
        return hardware.capacity, None
    if isinstance(capacity, str):
        if not is_tier(capacity):
            return parse_size(capacity), None
        tier = normalize_tier(capacity)
        if tier == "M_R":
            return min_capacity(Problem(graph, hardware.capacity, hardware, weights_counted)), None
        tiers = compute_tiers(graph, hardware, weights_counted, time_limit=time_limit, kinds=kinds)
        return tiers.capacity(tier), (tiers.m_p_schedule if tier == "M_P" else None)
    if isinstance(capacity, bool) or int(capacity) != capacity or int(capacity) <= 0:
        raise UsageError(f"capacity must be a positive number of bytes, got {capacity!r}")
    return int(capacity), None


def with_capacity(problem: Problem, capacity: Bytes) -> Problem:
    return replace(problem, capacity=capacity)


__all__ = ["TIERS", "Tiers", "compute_tiers", "resolve_capacity", "resolve_budget", "with_capacity"]
