"""Benchmark of the exact solver: writes ``results/exact.md`` (a command, never a timed test).

    python -m cosma.harness.bench_exact [--models models/zoo/*.onnx] [--time-limit 60] [--out results/exact.md]

Tables:

1. per zoo model x tier (``M_R``, ``M_H``, ``M_P``) x setting (activations only /
   activations + weights): the exact solver (default: optimal over every operator order)
   against the heuristics: ``best-greedy`` (the best of the four COSMA baselines),
   ``best-greedy-tflite`` (the same with TFLite's literal placement: the paper's
   reference) and ``xla-msa``: status, non-compulsory bytes, the bound over every
   schedule and its gap, seconds, reductions;
2. the fast formulation against the paper-faithful ILP on small random DAGs: same
   optimum, and the solve-time ratio;
3. the search over orders on small branchy DAGs: the order-aware search (free mode)
   against the enumeration of every topological order and the best candidate order;
4. MiniMalloc's challenging CSVs packed at their capacity by the packing path of the
   exact solver.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cosma.core.analysis import min_capacity
from cosma.core.hardware import get_hardware
from cosma.core.interface import RunOptions, SolveResult, Status, run
from cosma.core.ir import Hardware, Problem
from cosma.core.paths import RESULTS_DIR, write_text_atomically
from cosma.core.synthetic import branchy_dag as branchy
from cosma.core.synthetic import random_dag
from cosma.core.units import TIERS
from cosma.exact.ilp import IlpParams
from cosma.exact.solver import ExactParams, topological_orders
from cosma.harness.tables import add_ray_option, map_cells, output_path

SETTINGS = ((False, "activations"), (True, "acts+weights"))


@dataclass
class Row:
    model: str
    ops: int
    setting: str
    tier: str
    capacity: int
    exact: SolveResult
    heuristics: dict[str, SolveResult]  # HEURISTICS name -> result

    @property
    def greedy(self) -> SolveResult | None:
        return self.heuristics.get("best-greedy")

    def best_heuristic(self) -> tuple[str, int] | None:
        """The heuristic with the fewest non-compulsory bytes on this cell, and its bytes."""
        found = [(r.objective, name) for name, r in self.heuristics.items() if r.objective is not None]
        return None if not found else min(found)[::-1]

    def reduction_vs(self, baseline: int | None) -> float | None:
        if baseline is None or baseline == 0 or self.exact.objective is None:
            return None
        return 1 - self.exact.objective / baseline

    @property
    def reduction(self) -> float | None:
        return self.reduction_vs(None if self.greedy is None else self.greedy.objective)


# The heuristics every cell is compared with: COSMA's baselines (best of four), the same
# with TFLite's literal placement (the paper's reference) and XLA's memory-space assignment.
HEURISTICS = ("best-greedy", "best-greedy-tflite", "xla-msa")


def _fmt(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _fixed_bound(result: SolveResult) -> int | None:
    """The proven bound for the operator order the solver chose (its bound when the order was given)."""
    return result.stats.get("fixed_schedule_bound", result.bound)


def _fixed_status(result: SolveResult) -> str:
    """ "optimal" when the plan meets the bound for its own operator order."""
    bound = _fixed_bound(result)
    if result.objective is not None and bound is not None and bound >= result.objective:
        return "optimal"
    return result.status.value


def bench_zoo(
    paths: list[str], hw: Hardware, time_limit: float, threads: int, say, ray: str | None = None
) -> list[Row]:
    """Every zoo model x setting x tier (here, or as Ray tasks: ``ray``), in that order."""
    from cosma.core.onnx_lower import load_model
    from cosma.schedules.tiers import compute_tiers

    cells = []
    for path in paths:
        graph = load_model(path, dtype_bytes=1)
        for weights_counted, setting in SETTINGS:
            tiers = compute_tiers(graph, hw, weights_counted, time_limit=10)
            for tier in TIERS:
                problem = Problem(graph, tiers.capacity(tier), hw, weights_counted=weights_counted)
                cells.append((problem, setting, tier, time_limit, threads))
    order = {(c[0].graph.name, c[1], c[2]): k for k, c in enumerate(cells)}
    rows = []
    for row in map_cells(_zoo_row, cells, ray):
        rows.append(row)
        best = (row.best_heuristic() or (None, None))[1]
        say(
            f"{row.model:28s} {row.setting:13s} {row.tier} {row.exact.status.value:8s}"
            f" {_fmt(row.exact.objective):>12s} bound {_fmt(row.exact.bound):>12s} {row.exact.seconds:6.2f}s"
            f" best heuristic {_fmt(best):>12s} {_pct(row.reduction_vs(best))}"
        )
    return sorted(rows, key=lambda r: order[(r.model, r.setting, r.tier)])


def _zoo_row(cell: tuple) -> Row:
    """One zoo cell: the exact solver and every heuristic."""
    problem, setting, tier, time_limit, threads = cell
    exact = run(problem, "exact", ExactParams(), RunOptions(time_limit=time_limit, threads=threads))
    heuristics = {h: run(problem, h, options=RunOptions(time_limit=time_limit)) for h in HEURISTICS}
    graph = problem.graph
    return Row(graph.name, len(graph.operators), setting, tier, problem.capacity, exact, heuristics)


def bench_ilp(count: int, time_limit: float, say) -> list[tuple[str, int, SolveResult, SolveResult]]:
    """Exact vs ILP on random DAGs of 6 to 24 operators at M_R (fixed file order)."""
    hw = get_hardware("ideal")
    out = []
    for seed in range(count):
        n = (6, 8, 10, 12, 16, 20, 24)[seed % 7]
        graph = random_dag(seed, n, size_range=(1, 32), skip_prob=0.5)
        problem = Problem(graph, min_capacity(Problem(graph, 10**9, hw)), hw)
        sched = tuple(op.name for op in graph.operators)
        options = RunOptions(time_limit=time_limit, schedule=sched)
        exact = run(problem, "exact", ExactParams(warm_start=False), options)
        ilp = run(problem, "ilp", IlpParams(), options)
        out.append((graph.name, n, exact, ilp))
        say(f"{graph.name}: exact {exact.objective} in {exact.seconds:.3f}s, ilp {ilp.objective} in {ilp.seconds:.3f}s")
    return out


def bench_free(count: int, time_limit: float, say) -> list[tuple[str, int, SolveResult, SolveResult, SolveResult]]:
    hw = get_hardware("ideal")
    out = []
    for seed in range(count):
        graph = branchy(seed, 7)
        problem = Problem(graph, min_capacity(Problem(graph, 10**9, hw)), hw)
        options = RunOptions(time_limit=time_limit)
        fixed = run(problem, "exact", ExactParams(schedule_mode="fixed"), options)
        free = run(problem, "exact", ExactParams(schedule_mode="free"), options)
        every = run(problem, "exact", ExactParams(schedule_mode="enumerate", max_free_orders=10**5), options)
        out.append((graph.name, len(topological_orders(problem, 10**5)[0]), fixed, free, every))
        say(f"{graph.name}: best candidate {fixed.objective}, free {free.objective} ({free.status.value}),"
            f" enumeration {every.objective} ({every.status.value})")  # fmt: skip
    return out


def bench_minimalloc(
    directory: str, time_limit: float, threads: int, say
) -> list[tuple[str, int, int, str, float, str]]:
    from cosma.packing.boxes import Box, pack_boxes
    from cosma.packing.problem import check_packing, read_csv

    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*.csv"))):
        problem = read_csv(path)
        boxes = [Box(b.lower, b.upper, b.size) for b in problem.buffers]
        start = time.perf_counter()
        outcome = pack_boxes(boxes, problem.capacity, time_limit, threads)
        seconds = time.perf_counter() - start
        status = outcome.status.value
        if outcome.offsets is not None:
            offsets = {b.id: o for b, o in zip(problem.buffers, outcome.offsets)}
            if check_packing(problem, offsets):
                status = "INVALID"
        out.append((Path(path).name, len(boxes), problem.capacity, status, seconds, outcome.how))
        say(f"{Path(path).name}: {status} in {seconds:.2f}s ({outcome.how})")
    return out


def write_report(path: str, hw: Hardware, time_limit: float, rows, ilp_rows, free_rows, mm_rows, command: str) -> None:
    lines = [
        "# Exact solver benchmark",
        "",
        f"Generated by `{command}` on hardware preset `{hw.name}` (alignment {hw.alignment} B),"
        f" 8-bit tensors, time limit {time_limit:g} s per solve, 1 thread.",
        "`exact` with its defaults: the candidate orders (file, memory-aware, MPMF) solved exactly, then the",
        "order-aware model (`cosma/exact/joint.py`) closing the gap over every operator order. Heuristics:",
        "`best-greedy` = the best of the four COSMA baselines (schedule {file, memory-aware} x best-fit arena x",
        "{Belady, greedy} eviction), `best-greedy-tflite` = the same four with TFLite's literal placement (the",
        "paper's baselines), `xla-msa` = XLA-style memory-space assignment; *best heuristic* = the best of the",
        "three per cell. Non-compulsory bytes = spills + reloads.",
        "",
    ]
    if rows:
        secs = [r.exact.seconds for r in rows]
        proven = [r for r in rows if r.exact.status is Status.OPTIMAL]
        fixed_optimal = sum(_fixed_status(r.exact) == "optimal" for r in rows)
        mp_zero = sum(1 for r in rows if r.tier == "M_P" and r.exact.objective == 0)
        mp_total = sum(1 for r in rows if r.tier == "M_P")

        def mean_reduction(tier: str, baseline) -> str:
            values = [r.reduction_vs(baseline(r)) for r in rows if r.tier == tier]
            values = [v for v in values if v is not None]
            return f"{_pct(statistics.mean(values)) if values else '-'} over {len(values)} instances"

        greedy = lambda r: r.greedy.objective if r.greedy else None  # noqa: E731
        tflite = lambda r: r.heuristics["best-greedy-tflite"].objective  # noqa: E731
        best = lambda r: (r.best_heuristic() or (None, None))[1]  # noqa: E731
        lines += [
            "## Summary",
            "",
            f"- instances: {len(rows)}; **proven optimal over every schedule: {len(proven)}**"
            f" (each in at most {max((r.exact.seconds for r in proven), default=0):.1f} s);"
            f" proven optimal for the operator order of the plan: {fixed_optimal}",
            f"- solve seconds: median {statistics.median(secs):.3f}, mean {statistics.mean(secs):.3f},"
            f" max {max(secs):.3f}",
            f"- at `M_P`: zero non-compulsory bytes on {mp_zero} of {mp_total} instances",
            "- average reduction at `M_R` (instances where the baseline moves bytes): vs the TFLite-placement"
            f" baselines (the paper's kind) {mean_reduction('M_R', tflite)}; vs best-greedy"
            f" {mean_reduction('M_R', greedy)}; vs the best heuristic {mean_reduction('M_R', best)}",
            f"- the same at `M_H`: vs TFLite {mean_reduction('M_H', tflite)}; vs best-greedy"
            f" {mean_reduction('M_H', greedy)}; vs the best heuristic {mean_reduction('M_H', best)}",
            "",
            "## Zoo",
            "",
            "`status` and `bound` hold over every operator order; `order bound` is the bound for the order of the",
            "plan (`order`); `how` says what proved the bound over every order.",
            "",
            "| model | ops | setting | tier | capacity B | status | non-compulsory B | bound B | gap | order bound B"
            " | seconds | how | best-greedy B | best heuristic B | vs best-greedy | vs best heuristic | order |",
            "|---|---:|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            top = r.best_heuristic()
            heuristic = "-" if top is None else f"{_fmt(top[1])} ({top[0]})"
            gap = r.exact.gap
            lines.append(
                f"| {r.model} | {r.ops} | {r.setting} | {r.tier} | {r.capacity:,} | {r.exact.status.value}"
                f" | {_fmt(r.exact.objective)} | {_fmt(r.exact.bound)} | {_pct(gap)} | {_fmt(_fixed_bound(r.exact))}"
                f" | {r.exact.seconds:.3f} | {r.exact.stats.get('order_bound_how', '')}"
                f" | {_fmt(r.greedy.objective if r.greedy else None)} | {heuristic}"
                f" | {_pct(r.reduction)} | {_pct(r.reduction_vs(top[1] if top else None))}"
                f" | {r.exact.stats.get('schedule_source', '')} |"
            )
        lines.append("")
    if free_rows:
        agree = sum(fr.objective == ev.objective for _, _, _, fr, ev in free_rows if ev.status is Status.OPTIMAL)
        enumerated = sum(ev.status is Status.OPTIMAL for _, _, _, _, ev in free_rows)
        saved = [fx.objective - fr.objective for _, _, fx, fr, _ in free_rows]
        lines += [
            "## The search over orders on small branchy DAGs (ideal machine, `M_R`)",
            "",
            f"The order-aware search (free mode) equals the enumeration of every topological order on {agree} of"
            f" the {enumerated} graphs the enumeration finished; it beat the best candidate order on"
            f" {sum(x > 0 for x in saved)} of {len(saved)}.",
            "",
            "| graph | orders | best candidate B | free B | free status | free s | enumeration B | enumeration s |",
            "|---|---:|---:|---:|---|---:|---:|---:|",
        ]
        for name, orders, fx, fr, ev in free_rows:
            lines.append(
                f"| {name} | {orders} | {_fmt(fx.objective)} | {_fmt(fr.objective)} | {fr.status.value}"
                f" | {fr.seconds:.3f} | {_fmt(ev.objective)} | {ev.seconds:.3f} |"
            )
        lines.append("")
    if ilp_rows:
        ratios = [ilp.seconds / max(ex.seconds, 1e-6) for _, _, ex, ilp in ilp_rows if ilp.status is Status.OPTIMAL]
        same = sum(ex.objective == ilp.objective for _, _, ex, ilp in ilp_rows if ilp.status is Status.OPTIMAL)
        lines += [
            "## Fast formulation vs the paper-faithful ILP (random DAGs, ideal machine, `M_R`, file order)",
            "",
            "Both without a warm start; the ILP is PuLP + HiGHS with the trap fixes (see `cosma/ilp.py`).",
            "",
            f"Same optimum on {same} of {len(ratios)} instances the ILP solved; ILP time / exact time:"
            f" median {statistics.median(ratios) if ratios else float('nan'):.1f}x,"
            f" max {max(ratios) if ratios else float('nan'):.1f}x.",
            "",
            "| graph | ops | exact B | exact s | ILP status | ILP B | ILP s | ratio |",
            "|---|---:|---:|---:|---|---:|---:|---:|",
        ]
        for name, n, ex, ilp in ilp_rows:
            lines.append(
                f"| {name} | {n} | {_fmt(ex.objective)} | {ex.seconds:.3f} | {ilp.status.value} | {_fmt(ilp.objective)}"
                f" | {ilp.seconds:.3f} | {ilp.seconds / max(ex.seconds, 1e-6):.1f}x |"
            )
        lines.append("")
    if mm_rows:
        lines += [
            "## MiniMalloc challenging CSVs, packed at their capacity",
            "",
            "| file | buffers | capacity | status | seconds | method |",
            "|---|---:|---:|---|---:|---|",
        ]
        for name, n, cap, status, seconds, how in mm_rows:
            lines.append(f"| {name} | {n} | {cap:,} | {status} | {seconds:.2f} | {how} |")
        lines.append("")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cosma.harness.bench_exact", description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=None, help="ONNX files (default: models/zoo/*.onnx)")
    ap.add_argument("--hardware", default="edge-npu", help="hardware preset")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per solve")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="markdown file to write (default: results/exact.md for a full run)")
    ap.add_argument("--update", action="store_true", help="let a run on some models replace results/exact.md")
    add_ray_option(ap, "zoo cells", "2 CPUs")
    ap.add_argument("--ilp-instances", type=int, default=10, help="small random DAGs for the ILP comparison")
    ap.add_argument("--free-instances", type=int, default=8, help="small branchy DAGs for free mode")
    ap.add_argument("--minimalloc", default="../shared/anchors/minimalloc/challenging", help="CSV folder ('' to skip)")
    args = ap.parse_args(argv)
    hw = get_hardware(args.hardware)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    paths = args.models if args.models is not None else sorted(glob.glob("models/zoo/*.onnx"))
    rows = bench_zoo(paths, hw, args.time_limit, args.threads, say, args.ray)
    free_rows = bench_free(args.free_instances, args.time_limit, say)
    ilp_rows = bench_ilp(args.ilp_instances, args.time_limit, say)
    mm_rows = []
    if args.minimalloc and os.path.isdir(args.minimalloc):
        mm_rows = bench_minimalloc(args.minimalloc, args.time_limit, args.threads, say)
    out = output_path(args.out, RESULTS_DIR / "exact.md", partial=args.models is not None, update=args.update)
    command = "python -m cosma.harness.bench_exact " + " ".join(argv if argv is not None else sys.argv[1:])
    write_report(str(out), hw, args.time_limit, rows, ilp_rows, free_rows, mm_rows, command.strip())
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
