"""Benchmark of the latency objective: writes ``results/latency.md`` (a command, never a timed test).

    python -m cosma.harness.bench_latency [--models models/zoo/*.onnx] [--hardware mcu] [--time-limit 20] [--out ...]

Tables:

1. the share of compute-bound operators (``cosma.core.analysis.compute_bound_share``) per
   zoo model and hardware preset: only at compute-bound steps can a load be hidden, so where
   the share is near 0 or 1 latency and bytes rank plans alike by construction;
2. per zoo model x tier (``M_R``, ``M_H``) x setting (activations only / with weights), on
   one preset: latency (cycles) and non-compulsory bytes of ``best-greedy``, ``xla-msa``
   without and with prefetch (``prefetch=on``), and ``exact`` (bytes-optimal, free order)
   without and with the prefetch pass (``cosma.core.prefetch``), and ``exact`` under
   ``objective="latency"`` for the bytes-optimal plan's order (``cosma.exact.latency``: the
   latency-optimal plan for that fixed order, its status and seconds); the cell's latency of
   the bytes-optimal plan over that latency optimum; and ``muzero`` under ``objective="latency"``
   (the shipped checkpoint, the solver's default budget: the agent playing the latency game,
   where the start of each load is a decision of the env's timing phase);
3. per model: that ratio's geometric mean and maximum over its cells, how many cells the
   latency optimum was proven in, and the issue's target: xla-msa with prefetch strictly
   faster than without on every cell where it moves bytes (non-compulsory, or any
   weight/input load it could retime).
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from cosma.core.analysis import compute_bound_share
from cosma.core.cost import Cost, evaluate
from cosma.core.hardware import PRESETS, get_hardware
from cosma.core.interface import RunOptions, run
from cosma.core.ir import Hardware, Problem
from cosma.core.paths import RESULTS_DIR, write_text_atomically
from cosma.core.prefetch import prefetch
from cosma.exact.solver import ExactParams
from cosma.harness.tables import output_path
from mallocgame.solver import DEFAULT_CHECKPOINT, MuZeroParams
from solvers.baselines import BestGreedyParams
from solvers.xla import XlaParams

SETTINGS = ((False, "activations"), (True, "acts+weights"))
TIERS = ("M_R", "M_H")
COLUMNS = ("best-greedy", "best-greedy+pf", "xla-msa", "xla-msa+pf", "exact", "exact+pf", "exact-latency", "muzero")


@dataclass
class Cell:
    model: str
    setting: str
    tier: str
    capacity: int
    costs: dict[str, Cost]  # column -> cost
    exact_status: str
    seconds: float
    latency_status: str  # exact under objective="latency" for the bytes-optimal plan's order
    latency_seconds: float
    agent_seconds: float = 0.0  # the muzero solver's wall time
    agent_winner: str = ""  # which of its games it returned ("player@order")

    def best_latency(self) -> int:
        return min(c.latency_cycles for c in self.costs.values())

    def heuristic_latency(self) -> int:
        """The fastest of the greedy baselines with prefetch: what the agent should beat."""
        return min(self.costs["best-greedy+pf"].latency_cycles, self.costs["xla-msa+pf"].latency_cycles)

    def ratio(self) -> float:
        """Latency of the bytes-optimal plan (no prefetch) over the latency optimum for its order."""
        best = self.costs["exact-latency"].latency_cycles
        return self.costs["exact"].latency_cycles / best if best else 1.0

    def never_slower(self) -> bool:
        """The latency optimum is no slower than the bytes-optimal plan, prefetched or not."""
        return self.costs["exact-latency"].latency_cycles <= self.costs["exact+pf"].latency_cycles

    def xla_moves_bytes(self) -> bool:
        c = self.costs["xla-msa"]
        return c.non_compulsory_bytes > 0

    def xla_target_met(self) -> bool:
        return self.costs["xla-msa+pf"].latency_cycles < self.costs["xla-msa"].latency_cycles


def bench_cell(
    problem: Problem, name: str, setting: str, tier: str, time_limit: float, threads: int, latency_limit: float,
    agent_limit: float | None = None, checkpoint: str = DEFAULT_CHECKPOINT,
) -> Cell:  # fmt: skip
    options = RunOptions(time_limit=time_limit)
    costs: dict[str, Cost] = {}
    costs["best-greedy"] = run(problem, "best-greedy", BestGreedyParams(prefetch="off"), options).cost
    latency = replace(problem, objective="latency")
    costs["best-greedy+pf"] = run(latency, "best-greedy", BestGreedyParams(prefetch="on"), options).cost
    costs["xla-msa"] = run(problem, "xla-msa", XlaParams(prefetch="off"), options).cost
    costs["xla-msa+pf"] = run(problem, "xla-msa", XlaParams(prefetch="on"), options).cost
    exact = run(problem, "exact", ExactParams(), RunOptions(time_limit=time_limit, threads=threads))
    costs["exact"] = exact.cost
    costs["exact+pf"] = evaluate(problem, prefetch(problem, exact.plan))
    fixed = RunOptions(time_limit=latency_limit, threads=threads, schedule=exact.plan.schedule)
    optimum = run(latency, "exact", ExactParams(), fixed)
    costs["exact-latency"] = optimum.cost
    # The agent: the muzero solver under objective=latency (default: the shipped checkpoint, its default budget).
    params = MuZeroParams(checkpoint=checkpoint)
    agent = run(latency, "muzero", params, RunOptions(time_limit=agent_limit, threads=threads))
    costs["muzero"] = agent.cost
    return Cell(
        name, setting, tier, problem.capacity, costs, exact.status.value, exact.seconds,
        optimum.status.value, optimum.seconds, agent.seconds, agent.stats.get("winner", ""),
    )  # fmt: skip


def bench_zoo(
    paths: list[str], hw: Hardware, time_limit: float, threads: int, say, latency_limit: float = 60.0,
    agent_limit: float | None = None, checkpoint: str = DEFAULT_CHECKPOINT,
) -> list[Cell]:  # fmt: skip
    from cosma.core.onnx_lower import load_model
    from cosma.schedules.tiers import compute_tiers

    cells = []
    for path in paths:
        graph = load_model(path, dtype_bytes=hw.element_bytes)
        for weights_counted, setting in SETTINGS:
            tiers = compute_tiers(graph, hw, weights_counted, time_limit=10)
            for tier in TIERS:
                problem = Problem(graph, tiers.capacity(tier), hw, weights_counted=weights_counted)
                cell = bench_cell(
                    problem, graph.name, setting, tier, time_limit, threads, latency_limit, agent_limit, checkpoint
                )
                cells.append(cell)
                c = cell.costs
                say(
                    f"{graph.name:28s} {setting:13s} {tier} xla {c['xla-msa'].latency_cycles:>12,} ->"
                    f" {c['xla-msa+pf'].latency_cycles:>12,}  exact {c['exact'].latency_cycles:>12,} ->"
                    f" {c['exact+pf'].latency_cycles:>12,} -> {c['exact-latency'].latency_cycles:>12,}"
                    f" ({cell.latency_status}, {cell.latency_seconds:.1f} s)  ratio {cell.ratio():.3f}"
                    f"  muzero {c['muzero'].latency_cycles:>12,} ({cell.agent_winner}, {cell.agent_seconds:.1f} s)"
                )
    return cells


def share_table(paths: list[str]) -> list[tuple[str, dict[str, float]]]:
    from cosma.core.onnx_lower import load_model

    rows = []
    for path in paths:
        shares = {}
        for name, hw in PRESETS.items():
            graph = load_model(path, dtype_bytes=hw.element_bytes)
            shares[name] = compute_bound_share(Problem(graph, hw.capacity, hw))
        rows.append((Path(path).stem, shares))
    return rows


def _geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else 1.0


def summary_lines(cells: list[Cell]) -> list[str]:
    moving = [c for c in cells if c.xla_moves_bytes()]
    met = sum(c.xla_target_met() for c in moving)
    faster_any = sum(c.xla_target_met() for c in cells)
    ratios = [c.ratio() for c in cells]
    pf_gain = [c.costs["exact"].latency_cycles / c.costs["exact+pf"].latency_cycles for c in cells]
    proven = [c for c in cells if c.latency_status == "optimal"]
    slowest = max((c.latency_seconds for c in proven), default=0.0)
    slower = sum(not c.never_slower() for c in cells)
    beaten = sum(c.costs["exact-latency"].latency_cycles > c.best_latency() for c in cells)
    agent = [c.costs["muzero"].latency_cycles for c in cells]
    heuristic = [c.heuristic_latency() for c in cells]
    wins = sum(a < h for a, h in zip(agent, heuristic))
    ties = sum(a == h for a, h in zip(agent, heuristic))
    optimum = [c.costs["exact-latency"].latency_cycles for c in cells]
    agent_ratio = [a / o for a, o in zip(agent, optimum) if o]
    return [
        f"- exact latency-optimal for the bytes-optimal plan's order: proven on {len(proven)} of {len(cells)} cells"
        f" (slowest proof {slowest:.1f} s); slower than the bytes-optimal plan after the prefetch pass on {slower}"
        f" cells; slower than some other column (another order, or a search cut short) on {beaten} cells.",
        f"- xla-msa with prefetch strictly faster than without on {met} of {len(moving)} cells where it moves"
        f" non-compulsory bytes ({faster_any} of {len(cells)} cells in all, counting retimed weight and input loads).",
        f"- latency of the bytes-optimal plan over the latency optimum for its order: geometric mean"
        f" {_geomean(ratios):.3f},"
        f" max {max(ratios, default=1.0):.3f} over {len(cells)} cells.",
        f"- the prefetch pass on the bytes-optimal plan: latency divided by {_geomean(pf_gain):.3f} on average"
        f" (geometric mean), at most {max(pf_gain, default=1.0):.3f}; bytes unchanged.",
        f"- the agent (muzero, latency game) against the faster of best-greedy+pf and xla-msa+pf: faster on {wins},"
        f" as fast on {ties}, slower on {len(cells) - wins - ties} of {len(cells)} cells; its latency over"
        f" exact-latency's: geometric mean {_geomean(agent_ratio):.3f}, max {max(agent_ratio, default=1.0):.3f}"
        f" (mean {sum(c.agent_seconds for c in cells) / max(1, len(cells)):.1f} s per plan).",
    ]


def write_report(
    path: str, hw: Hardware, time_limit: float, shares, cells: list[Cell], command: str, latency_limit: float = 60.0,
    agent_limit: float | None = None, checkpoint: str = DEFAULT_CHECKPOINT,
) -> None:  # fmt: skip
    lines = [
        "# Latency: two objectives on one cost model",
        "",
        f"Generated by `{command}`. Hardware for the cells: `{hw.name}` ({hw.description});"
        f" ({hw.element_bytes} B per element), exact time limit {time_limit:g} s per cell (bytes),"
        f" {latency_limit:g} s for `exact-latency`. Timings on a shared 2-core machine.",
        "",
        "Latency is the cost model's per-step roofline (`cosma.core.cost`): a load is charged to the step its"
        " residency starts at, so a load started earlier, at a compute-bound step where it has room, costs no"
        " time. `+pf` = the same plan after the prefetch pass (`cosma.core.prefetch`), which moves the start of"
        " loaded residencies (and, where a load's own range is taken, its offset, or one blocking residency's):"
        " bytes are unchanged. `best-greedy+pf` is best-greedy under"
        " `objective=latency` (each candidate retimed, then the fastest kept). `exact` is bytes-optimal"
        " (free order). `exact-latency` is `exact` under `objective=latency` with the schedule fixed to `exact`'s:"
        " the latency-optimal plan for that order (`cosma.exact.latency`: keep/evict, the start of every load and"
        " the step of every spill as decisions, warm-started with `exact+pf`), ties broken by bytes; its status"
        " says whether that optimum is proven within the limit. `muzero` is the agent playing the latency game"
        " (`mallocgame.env` under `objective=latency`: keep/evict decisions, then a timing phase that chooses"
        " the start of each load; rewards are the cost model's latency changes) through the `muzero` solver:"
        + (
            " the shipped checkpoint (trained on the bytes game)"
            if checkpoint == DEFAULT_CHECKPOINT
            else f" the checkpoint `{checkpoint}`"
        )
        + " with the solver's default budget"
        f"{'' if agent_limit is None else f' cut to {agent_limit:g} s'}, the fastest of its games"
        " (agent, greedy rule, lookahead rule) on two orders.",
        "",
        "## Summary",
        "",
        *summary_lines(cells),
        "",
        "## Share of compute-bound operators per model and preset",
        "",
        "An operator is compute-bound when MACs / MAC rate >= its operand bytes (inputs and outputs) / DRAM"
        " bandwidth (`cosma.core.analysis.compute_bound`). Only at such steps can a copy hide behind compute:"
        " a share of 0 makes latency a function of bytes (and of when loads are made only through their"
        " own steps).",
        "",
        "| model | " + " | ".join(PRESETS) + " |",
        "|---|" + "---:|" * len(PRESETS),
    ]
    for model, row in shares:
        lines.append(f"| {model} | " + " | ".join(f"{100 * row[n]:.0f}%" for n in PRESETS) + " |")
    lines += [
        "",
        "## Per cell: latency (cycles) / non-compulsory bytes",
        "",
        "| model | setting | tier | capacity | "
        + " | ".join(COLUMNS)
        + " | exact status | exact-latency status | exact-latency s | exact / exact-latency |",
        "|---|---|---|---:|" + "---:|" * len(COLUMNS) + "---|---|---:|---:|",
    ]
    for c in cells:
        figures = " | ".join(f"{c.costs[k].latency_cycles:,} / {c.costs[k].non_compulsory_bytes:,}" for k in COLUMNS)
        lines.append(
            f"| {c.model} | {c.setting} | {c.tier} | {c.capacity:,} | {figures} | {c.exact_status}"
            f" | {c.latency_status} | {c.latency_seconds:.1f} | {c.ratio():.3f} |"
        )
    lines += ["", "## Per model: latency of the bytes-optimal plan over the latency optimum for its order", ""]
    lines += ["| model | cells | geometric mean | max | latency optimum proven | xla+pf faster (cells moving bytes) |"]
    lines += ["|---|---:|---:|---:|---|---|"]
    for model in dict.fromkeys(c.model for c in cells):
        mine = [c for c in cells if c.model == model]
        ratios = [c.ratio() for c in mine]
        moving = [c for c in mine if c.xla_moves_bytes()]
        met = sum(c.xla_target_met() for c in moving)
        proven = sum(c.latency_status == "optimal" for c in mine)
        lines.append(
            f"| {model} | {len(mine)} | {_geomean(ratios):.3f} | {max(ratios):.3f} | {proven} of {len(mine)}"
            f" | {met} of {len(moving)} |"
        )
    write_text_atomically(path, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cosma.harness.bench_latency", description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=None, help="ONNX files (default: models/zoo/*.onnx)")
    ap.add_argument("--hardware", default="mcu", help="hardware preset for the cells (mcu: the most compute-bound)")
    ap.add_argument("--time-limit", type=float, default=20.0, help="seconds per exact solve (bytes)")
    ap.add_argument("--latency-time-limit", type=float, default=60.0, help="seconds per exact-latency solve")
    ap.add_argument(
        "--agent-time-limit",
        type=float,
        default=None,
        help=f"seconds per muzero plan (default: the solver's own, {MuZeroParams().time_limit:g} s)",
    )
    ap.add_argument(
        "--agent-checkpoint", default=DEFAULT_CHECKPOINT, help="the muzero column's checkpoint (default: the shipped)"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="markdown file to write (default: results/latency.md for a full run)")
    ap.add_argument("--update", action="store_true", help="let a run on some models replace results/latency.md")
    args = ap.parse_args(argv)
    hw = get_hardware(args.hardware)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    paths = args.models if args.models is not None else sorted(glob.glob("models/zoo/*.onnx"))
    shares = share_table(paths)
    command = "python -m cosma.harness.bench_latency " + " ".join(argv if argv is not None else sys.argv[1:])
    out = output_path(args.out, RESULTS_DIR / "latency.md", partial=args.models is not None, update=args.update)
    # A long run leaves its cells so far beside the table it will write: in ``out`` itself when that is
    # not the tracked table, else in its -partial twin.
    tracked = RESULTS_DIR / "latency.md"
    so_far = out if out != tracked else tracked.with_name("latency-partial.md")
    cells: list[Cell] = []
    for i, path in enumerate(paths):
        agent = (args.agent_time_limit, args.agent_checkpoint)
        cells += bench_zoo([path], hw, args.time_limit, args.threads, say, args.latency_time_limit, *agent)
        if i + 1 < len(paths):
            write_report(
                str(so_far), hw, args.time_limit, shares[: i + 1], cells, command.strip(), args.latency_time_limit,
                *agent,
            )  # fmt: skip
    write_report(
        str(out), hw, args.time_limit, shares, cells, command.strip(), args.latency_time_limit,
        args.agent_time_limit, args.agent_checkpoint,
    )  # fmt: skip
    for line in summary_lines(cells):
        say(line)
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
