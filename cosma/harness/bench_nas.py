"""The NAS benchmark: every NAS model at ``M_R``, ``M_H`` and ``M_P``, activations only and
activations plus weights, solved by ``auto`` (exact when it proves optimality in part of the
budget, else divide and conquer) and compared with the best COSMA baseline::

    python -m cosma.harness.bench_nas [--time-limit 120] [--out results/nas.md] [--models PATTERN]

Models: ``models/nas/*.onnx`` (lowered with ``cosma.core.onnx_lower.load_model``, 8-bit data as in
the COSMA evaluation) and, always, RandWire graphs generated here (Watts-Strogatz random
graphs, as used to evaluate memory-aware schedulers such as Serenity and HMCOS).

Columns: status, non-compulsory bytes, the global lower bound and the gap to it, seconds,
and the reduction against the best COSMA baseline (``best-greedy`` when it is registered).
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from dataclasses import dataclass

from cosma.core.hardware import get_hardware
from cosma.core.ir import Graph, Problem
from cosma.core.paths import NAS_DIR, RESULTS_DIR, ZOO_DIR, write_text_atomically
from cosma.core.synthetic import randwire_graph
from cosma.core.units import TIERS
from cosma.harness.tables import add_ray_option, map_cells, output_path
from cosma.schedules.tiers import compute_tiers

NAS = NAS_DIR
ZOO = ZOO_DIR
SETTINGS = ((False, "activations only"), (True, "activations + weights"))


@dataclass
class Row:
    model: str
    setting: str
    tier: str
    capacity: int
    status: str  # the solver's status
    nc_bytes: int | None  # non-compulsory bytes of its (validated) plan
    bound: int | None  # its global lower bound
    fixed_bound: int | None  # lower bound for the schedule it used (dnc's relaxation), when known
    seconds: float
    path: str  # which answer auto returned
    baseline: int | None  # best COSMA baseline's non-compulsory bytes
    baseline_name: str
    heuristic: int | None = None  # the best heuristic's: the better of best-greedy and xla-msa
    heuristic_name: str = ""

    @property
    def reduction(self) -> float | None:
        return _reduction(self.nc_bytes, self.baseline)

    @property
    def reduction_vs_best(self) -> float | None:
        """Against the best heuristic: what exact solving adds over the best a compiler has."""
        return _reduction(self.nc_bytes, self.heuristic)


def _reduction(value: int | None, baseline: int | None) -> float | None:
    if baseline is None or value is None or baseline == 0:
        return None
    return 1 - value / baseline


def tiers_of(graph: Graph, hardware, weights_counted: bool, time_limit: float) -> dict[str, int]:
    return compute_tiers(graph, hardware, weights_counted, time_limit=time_limit).as_dict()


def load_graphs(pattern: str, log) -> list[Graph]:
    paths = sorted(p for p in NAS.glob("*.onnx") if fnmatch.fnmatch(p.stem, pattern))
    if not paths:
        log("no NAS model in models/nas matches: running on generated RandWire graphs")
        return [g for g in (randwire_graph(s, n) for n, s in ((32, 0), (64, 0))) if fnmatch.fnmatch(g.name, pattern)]
    from cosma.core.onnx_lower import load_model

    return [load_model(p, dtype_bytes=1) for p in paths]


def bench(
    graphs: list[Graph],
    hardware,
    solver: str,
    time_limit: float,
    tier_time: float,
    tiers: tuple[str, ...],
    log,
    ray: str | None = None,
    cpus: int = 2,
) -> list[Row]:
    """Every graph x setting x tier, here or as Ray tasks (``ray``); rows in that order."""
    instances = []
    for graph in graphs:
        for weights_counted, setting in SETTINGS:
            budgets = tiers_of(graph, hardware, weights_counted, tier_time)
            for tier in tiers:
                instances.append((graph, hardware, weights_counted, setting, tier, budgets[tier], solver, time_limit))
    order = {(i[0].name, i[3], i[4]): k for k, i in enumerate(instances)}
    rows = []
    for row in map_cells(_instance_row, instances, ray, cpus):
        rows.append(row)
        red = "-" if row.reduction is None else f"{row.reduction:.1%}"
        log(
            f"{row.model} | {row.setting} | {row.tier} = {row.capacity} B: {row.status} {row.nc_bytes} B"
            f" (bound {row.bound}, baseline {row.baseline}, reduction {red}) {row.seconds:.1f} s via {row.path}"
        )
    return sorted(rows, key=lambda r: order[(r.model, r.setting, r.tier)])


def _instance_row(instance: tuple) -> Row:
    """One instance: best-greedy's plan (the baseline), then the benchmarked solver's."""
    from cosma.core.interface import RunOptions, run

    graph, hardware, weights_counted, setting, tier, capacity, solver, time_limit = instance
    problem = Problem(graph, capacity, hardware, weights_counted)
    b = run(problem, "best-greedy")
    x = run(problem, "xla-msa")
    r = run(problem, solver, options=RunOptions(time_limit=time_limit))
    dnc_stats = r.stats.get("dnc", r.stats)
    heuristic = min((h for h in (b, x) if h.objective is not None), key=lambda h: h.objective, default=None)
    return Row(
        graph.name,
        setting,
        tier,
        capacity,
        r.status.value,
        r.objective,
        r.bound,
        dnc_stats.get("fixed_schedule_bound"),
        r.seconds,
        r.stats.get("path", solver),
        b.objective,
        b.stats.get("winner", "best-greedy"),
        None if heuristic is None else heuristic.objective,
        "" if heuristic is None else heuristic.solver,
    )


@dataclass
class ZooRow:
    model: str
    setting: str
    tier: str
    capacity: int
    exact_status: str
    exact_bytes: int | None
    exact_seconds: float
    dnc_bytes: int | None  # dnc on the exact solver's operator order
    dnc_seconds: float

    @property
    def excess(self) -> float | None:
        """How much more dnc moves than the exact optimum, relative to it (0 when both are 0)."""
        if self.exact_bytes is None or self.dnc_bytes is None:
            return None
        if self.exact_bytes == 0:
            return 0.0 if self.dnc_bytes == 0 else float("inf")
        return self.dnc_bytes / self.exact_bytes - 1


def zoo_check(pattern: str, hardware, tiers: tuple[str, ...], exact_time: float, dnc_time: float, log) -> list[ZooRow]:
    """dnc against the exact optimum on the human-designed zoo, on the same operator order
    (the exact solver's), where the exact solver proves optimality."""
    from cosma.core.interface import RunOptions, run
    from cosma.core.onnx_lower import load_model

    rows = []
    for path in sorted(p for p in ZOO.glob("*.onnx") if fnmatch.fnmatch(p.stem, pattern)):
        graph = load_model(path, dtype_bytes=1)
        for weights_counted, setting in SETTINGS:
            budgets = tiers_of(graph, hardware, weights_counted, 5.0)
            for tier in tiers:
                problem = Problem(graph, budgets[tier], hardware, weights_counted)
                exact = run(problem, "exact", options=RunOptions(time_limit=exact_time))
                dnc = None
                if exact.plan is not None:
                    dnc = run(problem, "dnc", options=RunOptions(time_limit=dnc_time, schedule=exact.plan.schedule))
                row = ZooRow(
                    graph.name,
                    setting,
                    tier,
                    budgets[tier],
                    exact.status.value,
                    exact.objective,
                    exact.seconds,
                    None if dnc is None else dnc.objective,
                    0.0 if dnc is None else dnc.seconds,
                )
                rows.append(row)
                log(
                    f"zoo {graph.name} | {setting} | {tier}: exact {row.exact_status} {row.exact_bytes} B,"
                    f" dnc {row.dnc_bytes} B"
                )
    return rows


def render_zoo(rows: list[ZooRow], exact_time: float, dnc_time: float) -> str:
    proven = [r for r in rows if r.exact_status == "optimal" and r.excess is not None]
    within = sum(r.excess <= 0.02 for r in proven)
    worst = max((r.excess for r in proven), default=0.0)
    out = [
        "",
        "## Human-designed zoo: divide and conquer against the exact optimum",
        "",
        f"`exact` ({exact_time:g} s limit) and then `dnc` ({dnc_time:g} s limit) on the operator order the exact",
        "solver chose, so both answer the same fixed-schedule problem. *excess* = dnc / exact - 1.",
        "",
        f"**Summary**: exact proved optimality on {len(proven)} of {len(rows)} instances; dnc is within 2% of the"
        f" optimum on {within} of them (worst excess {worst:.1%}).",
        "",
        "| model | setting | tier | capacity (B) | exact status | exact NC (B) | exact s | dnc NC (B) | dnc s"
        " | excess |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ex = "-" if r.excess is None else f"{r.excess:.1%}"
        out.append(
            f"| {r.model} | {r.setting} | {r.tier} | {r.capacity:,} | {r.exact_status} | {r.exact_bytes:,} |"
            f" {r.exact_seconds:.1f} | {'-' if r.dnc_bytes is None else format(r.dnc_bytes, ',')}"
            f" | {r.dnc_seconds:.1f} | {ex} |"
        )
    return "\n".join(out) + "\n"


def _gap(value: int | None, bound: int | None) -> str:
    if value is None or bound is None:
        return "-"
    return "0.0%" if value == 0 else f"{(value - bound) / value:.1%}"


def _heuristic(row: Row) -> str:
    return "-" if row.heuristic is None else f"{row.heuristic:,} ({row.heuristic_name})"


def _tier_summary(rows: list[Row]) -> list[str]:
    """The mean reduction where traffic is forced (``M_R``, ``M_H``): at ``M_P`` a plan that moves
    nothing scores 100% against any baseline that moves bytes, which says little."""
    out = []
    for tiers in (("M_R",), ("M_H",), ("M_R", "M_H")):
        picked = [r for r in rows if r.tier in tiers]
        reductions = [r.reduction for r in picked if r.reduction is not None]
        versus_best = [r.reduction_vs_best for r in picked if r.reduction_vs_best is not None]
        if reductions:
            out.append(
                f"- at {' and '.join(f'`{t}`' for t in tiers)}: mean reduction vs best-greedy"
                f" {sum(reductions) / len(reductions):.1%} over {len(reductions)} instances"
                + (
                    f", vs the best heuristic {sum(versus_best) / len(versus_best):.1%} over {len(versus_best)}"
                    if versus_best
                    else ""
                )
                + f"; a bound above 0 on {sum(bool(r.bound) for r in picked if r.nc_bytes)}"
                f" of {sum(bool(r.nc_bytes) for r in picked)} whose plan moves bytes"
            )
    return out


def render(rows: list[Row], hardware, solver: str, time_limit: float, seconds: float, command: str) -> str:
    reductions = [r.reduction for r in rows if r.reduction is not None]
    moving = [r for r in rows if r.nc_bytes]  # instances whose plan moves bytes: is the bound above 0?
    in_time = sum(r.nc_bytes is not None and r.seconds <= time_limit * 1.05 for r in rows)
    out = [
        "# NAS models: divide and conquer",
        "",
        f"Generated by `{command}` in {seconds:.0f} s. Every plan passed the validator.",
        f"Solver `{solver}` with a {time_limit:g} s time limit per instance; hardware `{hardware.name}`"
        f" ({hardware.description}); models lowered with 1-byte elements.",
        "Tiers from `cosma.schedules.tiers` (`M_P` is the best schedule any scheduler found;"
        " not always proven minimal).",
        "",
        "Columns: non-compulsory bytes (NC); *bound* = the solver's lower bound, valid over every operator",
        "order (`cosma.exact.joint.order_bound`: the order-aware relaxation, in chunks on large graphs, and",
        "the cheap bounds of `cosma.exact.bounds`: schedule-free, cut, chain and peak), and its gap;",
        "*fixed-schedule bound* = the no-address relaxation for",
        "the schedule the plan uses, and the gap to it; *baseline* = the best of COSMA's four greedy",
        "baselines (`best-greedy`); *reduction* = 1 - NC / baseline; *best heuristic* = the better of",
        "`best-greedy` and `xla-msa` (XLA-style memory-space assignment), and the reduction against it.",
        "",
        f"**Summary**: {len(rows)} instances, {in_time} with a valid plan within the time limit;"
        + (
            f" average reduction vs the best baseline {sum(reductions) / len(reductions):.1%}"
            f" over the {len(reductions)} instances where the baseline moves any byte"
            if reductions
            else " no instance where the baseline moves any byte"
        )
        + f"; a bound above 0 on {sum(bool(r.bound) for r in moving)} of the {len(moving)} instances whose plan"
        " moves bytes.",
        "",
        *_tier_summary(rows),
        "",
        "| model | setting | tier | capacity (B) | status | NC (B) | bound (B) | gap | fixed-schedule bound (B) | gap"
        " | seconds | path | baseline (B) | reduction | best heuristic (B) | vs best heuristic |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        red = "-" if r.reduction is None else f"{r.reduction:.1%}"
        out.append(
            f"| {r.model} | {r.setting} | {r.tier} | {r.capacity:,} | {r.status} | {r.nc_bytes:,} |"
            f" {r.bound if r.bound is None else format(r.bound, ',')} | {_gap(r.nc_bytes, r.bound)} |"
            f" {'-' if r.fixed_bound is None else format(r.fixed_bound, ',')} | {_gap(r.nc_bytes, r.fixed_bound)} |"
            f" {r.seconds:.1f} | {r.path} | {'-' if r.baseline is None else format(r.baseline, ',')} | {red} |"
            f" {_heuristic(r)} | {'-' if r.reduction_vs_best is None else f'{r.reduction_vs_best:.1%}'} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cosma.harness.bench_nas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per instance (default 120)")
    parser.add_argument("--out", default=None, help="markdown file to write (default: results/nas.md for a full run)")
    parser.add_argument(
        "--update", action="store_true", help="let a run on some models or tiers replace results/nas.md"
    )
    add_ray_option(parser, "instances", "--cpus CPUs")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of a local Ray (default 2)")
    parser.add_argument("--models", default="*", help="file-name pattern of the NAS models to run (default all)")
    parser.add_argument("--tiers", default="M_R,M_H,M_P", help="comma-separated tiers (default all three)")
    parser.add_argument("--solver", default="auto", help="registered solver to benchmark (default auto)")
    parser.add_argument("--tier-time", type=float, default=10.0, help="seconds for the schedulers behind M_P")
    parser.add_argument("--hardware", default="edge-npu", help="hardware preset (default edge-npu)")
    parser.add_argument(
        "--zoo", default="", help="also check dnc against exact on models/zoo files matching this pattern"
    )
    parser.add_argument("--zoo-tiers", default="M_R", help="tiers for the zoo check (default M_R, the hardest)")
    parser.add_argument("--zoo-time", type=float, default=10.0, help="seconds per solver in the zoo check")
    args = parser.parse_args(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    hardware = get_hardware(args.hardware)
    tiers = tuple(t.strip() for t in args.tiers.split(",") if t.strip())
    started = time.monotonic()
    graphs = load_graphs(args.models, log)
    rows = bench(graphs, hardware, args.solver, args.time_limit, args.tier_time, tiers, log, args.ray, args.cpus)
    command = "python -m cosma.harness.bench_nas " + " ".join(argv if argv is not None else sys.argv[1:])
    zoo_rows = []
    if args.zoo:
        zoo_tiers = tuple(t.strip() for t in args.zoo_tiers.split(",") if t.strip())
        zoo_rows = zoo_check(args.zoo, hardware, zoo_tiers, 3 * args.zoo_time, args.zoo_time, log)
    text = render(rows, hardware, args.solver, args.time_limit, time.monotonic() - started, command.strip())
    if zoo_rows:
        text += render_zoo(zoo_rows, 3 * args.zoo_time, args.zoo_time)
    partial = args.models != "*" or set(tiers) != set(TIERS) or args.solver != "auto"
    out = output_path(args.out, RESULTS_DIR / "nas.md", partial, args.update)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out, text)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
