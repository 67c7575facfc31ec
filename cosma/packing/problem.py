"""Allocation-only problems: buffers with fixed lifetimes and sizes, one capacity.

This is the scratchpad-allocation subproblem on its own (what MiniMalloc, TFLite's
arena planner and XLA's heap simulator solve), in MiniMalloc's CSV format::

    id,lower,upper,size          (input; lifetimes half-open [lower, upper))
    id,lower,upper,size,offset   (solution)

``check_packing`` is the independent overlap check every packer's output goes through;
``best_fit`` (from ``cosma.core.fit``) is the one best-fit placement rule (TFLite's arena
planner, XLA's heap simulator) that every packer and the exact solvers' packing checks call;
``PackResult`` is what every packer returns.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cosma.core.errors import UsageError
from cosma.core.fit import best_fit
from cosma.core.interface import Status
from cosma.core.paths import write_atomically

BufferId = str


@dataclass(frozen=True)
class Buffer:
    id: BufferId
    lower: int  # first time unit alive
    upper: int  # one past the last time unit alive (half-open)
    size: int  # bytes


@dataclass(frozen=True)
class PackingProblem:
    buffers: tuple[Buffer, ...]
    capacity: int  # offset + size must not exceed it
    alignment: int = 1  # offsets must be multiples of it

    def max_load(self) -> int:
        """Largest total size alive at one time: a lower bound on any packing's height."""
        events: list[tuple[int, int]] = []
        for b in self.buffers:
            events.append((b.lower, b.size))
            events.append((b.upper, -b.size))
        events.sort(key=lambda e: (e[0], e[1]))  # frees before allocations at the same time
        load = best = 0
        for _, delta in events:
            load += delta
            best = max(best, load)
        return best


@dataclass
class PackResult:
    """What a packer returns.

    ``status``: OPTIMAL = a packing within the capacity was found (packing is a
    feasibility problem; for ``minimize_height``: its height is proven minimal);
    FEASIBLE = a packing that is not proven good enough (a greedy packing over the
    capacity, or a height not proven minimal); INFEASIBLE = proven that nothing fits
    (``message`` says why); TIMEOUT = gave up (time limit or Ctrl-C) without an answer.
    """

    status: Status
    offsets: dict[BufferId, int] | None  # byte offset per buffer id; None without a packing
    height: int | None  # highest byte used + 1 (max offset + size); None without a packing
    seconds: float = 0.0  # wall time
    stats: dict[str, Any] = field(default_factory=dict)  # method, nodes, restarts, greedy height...
    message: str = ""  # why infeasible / what stopped the search
    bound: int | None = None  # proven lower bound on the height (max load, or better)
    order: str = ""  # greedy packers: which buffer order gave these offsets

    @property
    def fits(self) -> bool:
        """A packing within the capacity was found."""
        return self.status is Status.OPTIMAL and self.offsets is not None


def read_csv(path: str | Path, capacity: int | None = None, alignment: int = 1) -> PackingProblem:
    """Read a MiniMalloc CSV. Capacity defaults to the number in the file name
    (``A.1048576.csv`` -> 1048576), as in the MiniMalloc benchmark."""
    path = Path(path)
    if capacity is None:
        digits = [part for part in path.name.split(".") if part.isdigit()]
        if not digits:
            raise UsageError(f"{path}: no capacity given and none in the file name; pass --capacity")
        capacity = int(digits[-1])
    if capacity <= 0:
        raise UsageError(f"{path}: capacity must be a positive number of bytes, got {capacity}")
    if alignment <= 0:
        raise UsageError(f"{path}: alignment must be a positive number of bytes, got {alignment}")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a CSV file") from None
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"{path}: not a text CSV file ({type(e).__name__}: {e})") from None
    missing = [c for c in ("id", "lower", "upper", "size") if c not in header]
    if missing:
        raise UsageError(
            f"{path}: not a MiniMalloc CSV: expected columns id,lower,upper,size (missing {','.join(missing)})"
        )
    if not rows:
        raise UsageError(f"{path}: no buffers to pack (the CSV has a header and no rows)")
    buffers = []
    for line, row in enumerate(rows, start=2):
        try:
            b = Buffer(str(row["id"]), int(row["lower"]), int(row["upper"]), int(row["size"]))
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"{path}:{line}: expected integer columns id,lower,upper,size") from None
        if b.lower >= b.upper or b.size <= 0:
            raise UsageError(f"{path}:{line}: buffer {b.id} has an empty lifetime or size")
        buffers.append(b)
    return PackingProblem(tuple(buffers), capacity, alignment)


def read_solution(path: str | Path) -> dict[BufferId, int]:
    with Path(path).open(newline="") as f:
        return {str(row["id"]): int(row["offset"]) for row in csv.DictReader(f)}


def write_csv(path: str | Path, problem: PackingProblem, offsets: Mapping[BufferId, int]) -> None:
    """Write the buffers with their offsets (written to a temporary file and renamed:
    nothing half-written; ``UsageError`` naming the path on failure)."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "lower", "upper", "size", "offset"])
            for b in problem.buffers:
                w.writerow([b.id, b.lower, b.upper, b.size, offsets[b.id]])

    write_atomically(path, write)


def height(problem: PackingProblem, offsets: Mapping[BufferId, int]) -> int:
    return max((offsets[b.id] + b.size for b in problem.buffers), default=0)


def check_packing(problem: PackingProblem, offsets: Mapping[BufferId, int]) -> list[str]:
    """Every broken rule of a packing, checked pairwise the obvious way; empty when valid."""
    errors = []
    for b in problem.buffers:
        if b.id not in offsets:
            errors.append(f"buffer {b.id} has no offset")
            continue
        o = offsets[b.id]
        if o < 0 or o + b.size > problem.capacity:
            errors.append(f"buffer {b.id} at [{o}, {o + b.size}) is outside capacity {problem.capacity}")
        if o % problem.alignment:
            errors.append(f"buffer {b.id} at {o} is not a multiple of {problem.alignment}")
    placed = [b for b in problem.buffers if b.id in offsets]
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            if a.lower < b.upper and b.lower < a.upper:
                oa, ob = offsets[a.id], offsets[b.id]
                if oa < ob + b.size and ob < oa + a.size:
                    errors.append(f"buffers {a.id} and {b.id} overlap in time and address")
    return errors


__all__ = [
    "PackResult",
    "best_fit",
    "Buffer",
    "PackingProblem",
    "read_csv",
    "read_solution",
    "write_csv",
    "height",
    "check_packing",
]
