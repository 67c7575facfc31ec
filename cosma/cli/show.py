"""Memory maps: time (steps) on the x axis, scratchpad address on the y axis, one
rectangle per residency. Spills are marked where a residency ends (red, down), reloads
where one starts (green, up), so the traffic a plan pays is visible at a glance."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from cosma.core.ir import Plan, Problem, TensorKind
from cosma.core.units import format_bytes

KIND_COLORS = {
    TensorKind.INPUT: "#4c72b0",
    TensorKind.WEIGHT: "#8c8c8c",
    TensorKind.ACTIVATION: "#dd8452",
    TensorKind.OUTPUT: "#55a868",
}


def draw_memory_map(problem: Problem, plan: Plan, ax, title: str = "") -> None:
    """Draw ``plan`` on a matplotlib ``Axes``."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    graph = problem.graph
    first_start = {}
    by_tensor = defaultdict(list)
    for r in plan.residencies:
        by_tensor[r.tensor].append(r)
    for t, rs in by_tensor.items():
        first_start[t] = min(r.start for r in rs)

    spills_x, spills_y, reloads_x, reloads_y = [], [], [], []
    for r in plan.residencies:
        kind = graph.tensors[r.tensor].kind
        height = problem.footprint(r.tensor)
        ax.add_patch(
            Rectangle(
                (r.start, r.offset),
                r.end - r.start,
                height,
                facecolor=KIND_COLORS[kind],
                edgecolor="black",
                linewidth=0.2,
                alpha=0.85,
            )
        )
        if r.spilled:
            spills_x.append(r.end)
            spills_y.append(r.offset + height / 2)
        if r.start != first_start[r.tensor]:
            reloads_x.append(r.start)
            reloads_y.append(r.offset + height / 2)
    ax.scatter(spills_x, spills_y, marker="v", color="red", s=14, zorder=3, label="spill")
    ax.scatter(reloads_x, reloads_y, marker="^", color="green", s=14, zorder=3, label="reload")
    ax.axhline(problem.capacity, color="black", linestyle="--", linewidth=0.8)
    ax.set_xlim(0, max(1, len(plan.schedule)))
    ax.set_ylim(0, problem.capacity * 1.02)
    ax.set_xlabel("step")
    unit, scale = address_unit(problem.capacity)
    ax.set_ylabel(f"address ({unit})")
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    ax.yaxis.set_major_locator(MultipleLocator(nice_step(problem.capacity / scale / 8) * scale))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v / scale:g}"))
    if title:
        ax.set_title(title, fontsize=9)
    handles = [Patch(color=c, label=k.value) for k, c in KIND_COLORS.items()]
    handles += [
        ax.scatter([], [], marker="v", color="red", label="spilled when evicted"),
        ax.scatter([], [], marker="^", color="green", label="reload"),
        Line2D([], [], color="black", linestyle="--", linewidth=0.8, label="capacity"),
    ]
    # Below the axes, outside them: the legend never covers a block.
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=len(handles),
        fontsize=6,
        frameon=False,
        borderaxespad=0.0,
    )


def address_unit(span: float) -> tuple[str, int]:
    """The unit an address axis spanning ``span`` bytes is labelled in: MiB, KiB or B."""
    if span >= 2 * 1024**2:
        return "MiB", 1024**2
    if span >= 2 * 1024:
        return "KiB", 1024
    return "B", 1


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is at least ``raw`` (a tick spacing)."""
    if raw <= 0:
        return 1.0
    p = 10 ** math.floor(math.log10(raw))
    return next(m * p for m in (1, 2, 2.5, 5, 10) if m * p >= raw)


def save_memory_map(problem: Problem, plan: Plan, path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = min(24.0, max(6.0, len(plan.schedule) / 20))
    fig, ax = plt.subplots(figsize=(width, 4.5))
    draw_memory_map(problem, plan, ax, title or f"{problem.graph.name}: capacity {format_bytes(problem.capacity)}")
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


__all__ = ["KIND_COLORS", "draw_memory_map", "save_memory_map", "address_unit", "nice_step"]
