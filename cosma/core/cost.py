"""The one cost model: off-chip traffic and an estimated latency, from a plan alone.

Traffic (bytes of data, not footprints):

* compulsory: each managed graph input and weight loaded once, each graph output stored
  once. Weights that are not counted (``weights_counted=False``) stream from DRAM at every
  use: reported as ``streamed_weight_bytes``, part of neither figure below.
* spill: each residency flagged ``spilled`` writes its activation to DRAM once.
* reload: every residency of a tensor after its first (inputs and weights: after the
  compulsory load; activations and outputs: after the step that produced them).
* non-compulsory = spill + reload: **the default objective** (``Problem.objective ==
  "bytes"``); under ``"latency"`` the objective is ``latency_cycles``, ties broken by
  bytes (``Cost.value`` and ``Cost.key``).

Latency is a per-step roofline: step ``t`` takes ``max(compute, dma)`` cycles, where
compute is the operator's MACs over the machine's MAC rate and dma is every byte moved
for that step over the DRAM bandwidth: loads for residencies starting at ``t``, spills
of residencies ending after ``t``, graph outputs stored after the step producing them,
and streamed weights of the operator at ``t``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from cosma.core.ir import OBJECTIVES, Bytes, Plan, Problem, TensorKind


@dataclass(frozen=True)
class Cost:
    compulsory_bytes: Bytes
    spill_bytes: Bytes
    reload_bytes: Bytes
    non_compulsory_bytes: Bytes  # spill + reload: the objective
    latency_cycles: int
    streamed_weight_bytes: Bytes = 0  # uncounted weights read from DRAM at every use

    def value(self, objective: str = "bytes") -> int:
        """The figure ``objective`` minimizes: non-compulsory bytes or latency cycles."""
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; known objectives: {', '.join(OBJECTIVES)}")
        return self.non_compulsory_bytes if objective == "bytes" else self.latency_cycles

    def key(self, objective: str = "bytes") -> tuple[int, int]:
        """Sort key, lower is better: the objective's figure, then the other one."""
        other = "latency" if objective == "bytes" else "bytes"
        return (self.value(objective), self.value(other))

    def as_dict(self) -> dict[str, int]:
        return {
            "compulsory_bytes": self.compulsory_bytes,
            "spill_bytes": self.spill_bytes,
            "reload_bytes": self.reload_bytes,
            "non_compulsory_bytes": self.non_compulsory_bytes,
            "latency_cycles": self.latency_cycles,
            "streamed_weight_bytes": self.streamed_weight_bytes,
        }


def evaluate(problem: Problem, plan: Plan) -> Cost:
    """Traffic and latency of ``plan``. Assumes a valid plan (see ``cosma.core.validator``)."""
    return _evaluate(problem, plan)[0]


def step_profile(problem: Problem, plan: Plan) -> tuple[list[float], list[int]]:
    """Per step of ``plan``: compute cycles and DMA bytes, the two sides of the roofline
    (step ``t`` takes ``max(compute[t], dma[t] / dram_bytes_per_cycle)`` cycles)."""
    _, compute, dma = _evaluate(problem, plan)
    return compute, dma


def _evaluate(problem: Problem, plan: Plan) -> tuple[Cost, list[float], list[int]]:
    graph, hw = problem.graph, problem.hardware
    dma = [0] * len(plan.schedule)  # bytes moved for each step

    stays = defaultdict(list)
    for r in plan.residencies:
        stays[r.tensor].append(r)

    compulsory = spill = reload = 0
    for t, rs in stays.items():
        tensor = graph.tensors[t]
        rs.sort(key=lambda r: r.start)
        if tensor.kind in (TensorKind.INPUT, TensorKind.WEIGHT):
            compulsory += tensor.size
            dma[rs[0].start] += tensor.size
        for r in rs[1:]:
            reload += tensor.size
            dma[r.start] += tensor.size
        for r in rs:
            if r.spilled:
                spill += tensor.size
                dma[r.end - 1] += tensor.size

    step_of = {name: step for step, name in enumerate(plan.schedule)}
    for t, tensor in graph.tensors.items():
        if tensor.kind is TensorKind.OUTPUT:
            compulsory += tensor.size
            dma[step_of[graph.producer[t]]] += tensor.size

    streamed = 0
    compute = [0.0] * len(plan.schedule)
    for step, name in enumerate(plan.schedule):
        op = graph.operators[graph.op_index[name]]
        compute[step] = op.macs / hw.macs_per_cycle
        for t in op.inputs:
            if not problem.is_managed(t):
                streamed += graph.tensors[t].size
                dma[step] += graph.tensors[t].size

    latency = sum(max(c, d / hw.dram_bytes_per_cycle) for c, d in zip(compute, dma))
    cost = Cost(
        compulsory_bytes=compulsory,
        spill_bytes=spill,
        reload_bytes=reload,
        non_compulsory_bytes=spill + reload,
        latency_cycles=round(latency),
        streamed_weight_bytes=streamed,
    )
    return cost, compute, dma


__all__ = ["Cost", "evaluate", "step_profile"]
