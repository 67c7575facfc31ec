"""Operator orders for the greedy baselines.

Two schedules, as in COSMA's baselines:

* ``file_order``: the framework's order (the ONNX file's node order), what a compiler
  that does not reorder runs;
* ``memory_aware_schedule``: a list scheduler that, among the ready operators, runs the
  one that keeps the live bytes lowest. It stands in for COSMA's "MPMF" schedule (the
  exact minimum-peak order) until an exact scheduler exists, and gives the baselines'
  estimate of ``M_P``.

Both return tuples of operator names in a topological order. "Live" follows
``cosma.core.analysis.live_intervals``: a managed tensor is live from its first use (or the
step producing it) to its last use, so a weight or graph input becomes live at the
first operator that reads it.
"""

from __future__ import annotations

from typing import Callable

from cosma.core.errors import ModelError
from cosma.core.ir import Bytes, OpName, Problem, TensorName


def file_order(problem: Problem) -> tuple[OpName, ...]:
    """The operators in the order the graph lists them (the framework's order)."""
    return tuple(op.name for op in problem.graph.operators)


def memory_aware_schedule(problem: Problem) -> tuple[OpName, ...]:
    """A greedy list schedule that keeps live bytes low.

    At each step, among the ready operators (every producer of their inputs already
    run), pick the one with the smallest net change of live bytes: bytes it makes live
    (its outputs, and inputs or weights read for the first time) minus bytes it frees
    (inputs it is the last reader of, and outputs nobody reads). Ties go to the one
    making fewer bytes live during its own step (a lower transient peak), then to file
    order, so a chain runs exactly in file order.

    Greedy, not optimal: an operator that frees a large tensor only after its siblings
    ran looks no better than them until then. The exact minimum-peak order comes from
    the exact scheduler; this one is what a memory-aware compiler pass does in one sweep.
    """
    graph = problem.graph
    footprint = {t: problem.footprint(t) for t in problem.managed_tensors}
    # Readers still to run, per managed tensor (an operator reads a tensor at most once).
    readers_left: dict[TensorName, int] = {t: len(graph.consumers[t]) for t in footprint}
    live: set[TensorName] = set()
    # Operators still waiting for at least one producer.
    waiting_on = {op.name: len(graph.predecessors(op.name)) for op in graph.operators}
    successors: dict[OpName, list[OpName]] = {op.name: [] for op in graph.operators}
    for op in graph.operators:
        for pred in graph.predecessors(op.name):
            successors[pred].append(op.name)
    ready = {name for name, n in waiting_on.items() if n == 0}

    def score(name: OpName) -> tuple[Bytes, Bytes, int]:
        op = graph.operators[graph.op_index[name]]
        made = freed = 0
        for t in op.inputs:
            if t not in footprint:
                continue
            if t not in live:
                made += footprint[t]
            if readers_left[t] == 1:
                freed += footprint[t]
        for t in op.outputs:
            if t not in footprint:
                continue
            made += footprint[t]
            if readers_left[t] == 0:
                freed += footprint[t]
        return made - freed, made, graph.op_index[name]

    order: list[OpName] = []
    while ready:
        name = min(ready, key=score)
        ready.remove(name)
        order.append(name)
        op = graph.operators[graph.op_index[name]]
        for t in op.inputs:
            if t in footprint:
                readers_left[t] -= 1
                if readers_left[t] == 0:
                    live.discard(t)
                else:
                    live.add(t)
        for t in op.outputs:
            if t in footprint and readers_left[t] > 0:
                live.add(t)
        for succ in successors[name]:
            waiting_on[succ] -= 1
            if waiting_on[succ] == 0:
                ready.add(succ)
    if len(order) != len(graph.operators):
        raise ModelError(f"graph {graph.name!r} has a cycle: no topological order exists")
    return tuple(order)


# Named schedules the baselines combine with allocation policies.
SCHEDULES: dict[str, Callable[[Problem], tuple[OpName, ...]]] = {
    "file": file_order,
    "memory": memory_aware_schedule,
}


__all__ = ["file_order", "memory_aware_schedule", "SCHEDULES"]
