"""OmniMalloc's allocators as peers for the allocation-only comparison (optional extra:
``pip install -e '.[peers]'``). Imported only when ``omnimalloc`` is installed."""

from __future__ import annotations

from typing import Callable

from cosma.packing.problem import BufferId, PackingProblem

# Allocators worth a row: the greedy family, the searches and the exact ones.
PEERS = ("best_fit", "greedy_by_size", "greedy_by_conflict", "hill_climb", "simulated_annealing", "minimalloc", "omni")


def omnimalloc_packers() -> dict[str, Callable[[PackingProblem], dict[BufferId, int] | None]]:
    import omnimalloc

    available = set(omnimalloc.available_allocators())

    def packer(name: str):
        def run(problem: PackingProblem) -> dict[BufferId, int] | None:
            allocs = [omnimalloc.Allocation(id=b.id, size=b.size, start=b.lower, end=b.upper) for b in problem.buffers]
            placed = omnimalloc.allocate(allocs, name)
            return {str(a.id): int(a.offset) for a in placed}

        return run

    return {f"omnimalloc {n}": packer(n) for n in PEERS if n in available}
