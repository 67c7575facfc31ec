"""The scale benchmark: transformer stacks and RandWire stages of about 1k, 5k and 20k
operators, activations only and with weights, at ``M_H``::

    python -m cosma.harness.bench_scale [--sizes 1000 5000 20000] [--solvers best-greedy xla-msa exact dnc auto]
        [--time-limit 60] [--tier-time 20] [--out results/scale.md] [--update] [--ray [ADDRESS]]

Per graph and setting it times building the graph, lowering the same transformer stack from
an ONNX file (``cosma.core.synthetic.transformer_stack_onnx`` written to a temporary folder and
read back by ``cosma.core.onnx_lower.load_model``, up to ``--lower-max`` operators), the tiers
(``cosma.schedules.tiers.compute_tiers`` with ``--tier-time``), and every solver at ``M_H``, each
in a subprocess of its own (``--child``) so that its peak memory (``ru_maxrss`` of that process:
the interpreter, the graph and the solve) is its own. Every plan goes through
``cosma.core.interface.run`` (validated and scored).

``--ray``: the tiers first, here, then every solver run as a Ray task (each still in its own
subprocess, on the node that runs the task): on one machine, runs at once share its cores,
so their seconds are not those of a run alone.

Only a full run (the default sizes and solvers) writes ``results/scale.md``; a partial run
writes ``results/scale-partial.md`` unless ``--update`` (or an explicit ``--out``) says where.
The table is written atomically (a temporary file renamed over the old one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cosma.core.hardware import get_hardware
from cosma.core.ir import Graph, Problem
from cosma.core.paths import write_text_atomically
from cosma.harness.tables import add_ray_option

SIZES = (1000, 5000, 20000)
SOLVERS = ("best-greedy", "xla-msa", "exact", "dnc", "auto")
FAMILIES = ("transformer", "randwire")
SETTINGS = ((False, "activations"), (True, "weights"))
DEFAULT_OUT = "results/scale.md"
PARTIAL_OUT = "results/scale-partial.md"


def make_graph(family: str, size: int) -> Graph:
    """About ``size`` operators of ``family``, the same graph on every call."""
    from cosma.core.synthetic import randwire_graph, transformer_stack

    if family == "transformer":
        return transformer_stack(max(1, round(size / 16)))
    if family == "randwire":
        return randwire_graph(0, max(2, size - 1), 4, 0.75)  # n nodes + the output operator
    raise ValueError(f"unknown graph family {family!r}: use {', '.join(FAMILIES)}")


def within_limit(wall: float, limit: float) -> bool:
    """The harness's rule for a time-limit overrun: wall time measured around ``run``."""
    return wall <= limit * 1.05 + 2.0


@dataclass
class SolverRow:
    solver: str
    status: str  # the solver's status, or "error: ..." / "killed"
    nc_bytes: int | None = None
    bound: int | None = None
    gap: float | None = None
    seconds: float = 0.0  # wall time around run() in the child
    peak_mib: float | None = None  # ru_maxrss of the child process
    valid: bool = False  # a plan that passed the validator


@dataclass
class GraphRow:
    family: str
    graph: str
    operators: int
    setting: str
    build_s: float
    lower_s: float | None  # ONNX lowering of the same stack (transformers up to --lower-max)
    tiers_s: float
    m_r: int
    m_h: int
    m_p: int
    m_p_proven: bool
    solvers: list[SolverRow] = field(default_factory=list)


# --------------------------------------------------------------------------- child process


def child(spec: dict) -> dict:
    """One solver on one instance, in this process; what ``main --child`` prints."""
    from cosma.core.interface import RunOptions, run

    graph = make_graph(spec["family"], spec["size"])
    hardware = get_hardware(spec["hardware"])
    problem = Problem(graph, spec["capacity"], hardware, spec["weights"])
    started = time.perf_counter()
    try:
        result = run(problem, spec["solver"], options=RunOptions(time_limit=spec["time_limit"]))
        row = {
            "status": result.status.value,
            "nc_bytes": result.objective,
            "bound": result.bound,
            "gap": result.gap,
            "valid": result.plan is not None,
        }
    except Exception as e:  # noqa: BLE001 - recorded in the table, never hidden
        row = {"status": f"error: {type(e).__name__}: {' '.join(str(e).split())[:120]}"}
    row["seconds"] = time.perf_counter() - started
    row["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return row


def run_child_cell(item: tuple[int, int, dict]) -> tuple[int, int, SolverRow]:
    """``run_child`` as a Ray task: ``(row, solver index, spec)`` -> ``(row, solver index, result)``."""
    row, index, spec = item
    return row, index, run_child(spec)


def run_child(spec: dict, log=None) -> SolverRow:
    limit = spec["time_limit"]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cosma.harness.bench_scale", "--child", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=3 * limit + 300,
        )
    except subprocess.TimeoutExpired:
        return SolverRow(spec["solver"], "killed", seconds=3 * limit + 300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " ".join(proc.stderr.split())[-160:]
        return SolverRow(spec["solver"], f"error: exit {proc.returncode}: {tail}")
    return SolverRow(spec["solver"], **{k: v for k, v in json.loads(lines[-1]).items() if k != "solver"})


# --------------------------------------------------------------------------- parent


def time_lowering(n_blocks: int) -> float:
    import onnx

    from cosma.core.onnx_lower import load_model
    from cosma.core.synthetic import transformer_stack_onnx

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "stack.onnx")
        onnx.save(transformer_stack_onnx(n_blocks), path)
        started = time.perf_counter()
        load_model(path, dtype_bytes=1)
        return time.perf_counter() - started


def bench(args, log, on_row=None) -> list[GraphRow]:
    """Every graph x setting row; ``on_row(rows)`` after each (the table is rewritten as it grows).
    With ``args.ray``: every row's tiers first, then the solver runs as Ray tasks."""
    from cosma.schedules.tiers import compute_tiers

    ray = getattr(args, "ray", None)
    pending: list[tuple[int, int, dict]] = []  # (row, solver index, spec), for Ray
    hardware = get_hardware(args.hardware)
    rows: list[GraphRow] = []
    for size in args.sizes:
        for family in args.families:
            started = time.perf_counter()
            graph = make_graph(family, size)
            build_s = time.perf_counter() - started
            lower_s = None
            if family == "transformer" and len(graph.operators) <= args.lower_max:
                lower_s = time_lowering(round(size / 16))
            for weights, setting in SETTINGS:
                started = time.perf_counter()
                tiers = compute_tiers(graph, hardware, weights, time_limit=args.tier_time)
                tiers_s = time.perf_counter() - started
                row = GraphRow(
                    family,
                    graph.name,
                    len(graph.operators),
                    setting,
                    build_s,
                    lower_s,
                    tiers_s,
                    tiers.m_r,
                    tiers.m_h,
                    tiers.m_p,
                    tiers.m_p_proven,
                )
                log(
                    f"{graph.name} ({row.operators} ops, {setting}): build {build_s:.2f} s"
                    f"{'' if lower_s is None else f', ONNX lowering {lower_s:.2f} s'}, tiers {tiers_s:.2f} s"
                    f" (M_R {tiers.m_r}, M_H {tiers.m_h}, M_P {tiers.m_p})"
                )
                solvers = args.solvers
                if size >= args.big and args.big_solvers:
                    solvers = [s for s in solvers if s in args.big_solvers]
                for index, solver in enumerate(solvers):
                    spec = {
                        "family": family,
                        "size": size,
                        "hardware": hardware.name,
                        "weights": weights,
                        "capacity": tiers.m_h,
                        "solver": solver,
                        "time_limit": args.time_limit,
                    }
                    if ray is not None:
                        pending.append((len(rows), index, spec))
                        continue
                    r = run_child(spec, log)
                    row.solvers.append(r)
                    _log_run(r, log)
                rows.append(row)
                if on_row is not None and ray is None:
                    on_row(rows)
    if ray is not None:
        from cosma.harness.tables import map_cells

        log(f"{len(pending)} solver runs as Ray tasks")
        done: dict[tuple[int, int], SolverRow] = {}
        for row, index, r in map_cells(run_child_cell, pending, ray):
            done[row, index] = r
            log(f"{rows[row].graph} ({rows[row].setting})")
            _log_run(r, log)
            rows[row].solvers = [done[key] for key in sorted(done) if key[0] == row]
            if on_row is not None:
                on_row(rows)
    return rows


def _log_run(r: SolverRow, log) -> None:
    log(
        f"  {r.solver}: {r.status} {r.nc_bytes} B (bound {r.bound}) {r.seconds:.1f} s,"
        f" {r.peak_mib if r.peak_mib is None else round(r.peak_mib)} MiB"
    )


def _fmt(value, spec: str = ",") -> str:
    return "-" if value is None else format(value, spec)


def render(rows: list[GraphRow], args, seconds: float, command: str) -> str:
    runs = [(g, s) for g in rows for s in g.solvers]
    valid = sum(s.valid for _, s in runs)
    in_time = sum(s.valid and within_limit(s.seconds, args.time_limit) for _, s in runs)
    worst_mib = max((s.peak_mib for _, s in runs if s.peak_mib is not None), default=0.0)
    fives = [g.tiers_s + (g.lower_s or 0.0) for g in rows if g.family == "transformer" and 4000 <= g.operators <= 6000]
    lines = [
        "# Scale: transformer stacks and RandWire stages of 1k-20k operators",
        "",
        f"Generated by `{command}` in {seconds:.0f} s on {platform.node() or 'this machine'}"
        f" ({os.cpu_count()} cores, shared with other jobs: timings are noisy), Python {platform.python_version()},"
        f" {time.strftime('%Y-%m-%d')}.",
        f"Hardware `{args.hardware}`, 8-bit tensors, capacity `M_H` per graph and setting (tiers from"
        f" `compute_tiers` with a {args.tier_time:g} s limit); every solver with a {args.time_limit:g} s limit, in a"
        " subprocess of its own; *peak MiB* = that process's maximum resident set (interpreter, graph and solve).",
        "*lower s* = `load_model` on the same transformer stack written as an ONNX file (transformers only).",
        "*in limit*: wall time around `run` <= limit x 1.05 + 2 s. Every plan passed the validator.",
        "",
        f"**Summary**: {len(runs)} solver runs on {len(rows)} graph x setting cells; {valid} valid plans,"
        f" {in_time} of them within the time limit; peak memory {worst_mib:.0f} MiB"
        + (f"; ~5k-operator transformer: ONNX lowering + tiers {min(fives):.2f}-{max(fives):.2f} s." if fives else "."),
        "",
        "| graph | ops | setting | build s | lower s | tiers s | M_R | M_H | M_P | solver | status | NC (B) | bound (B)"
        " | gap | seconds | in limit | peak MiB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for g in rows:
        head = (
            f"| {g.graph} | {g.operators:,} | {g.setting} | {g.build_s:.2f} | {_fmt(g.lower_s, '.2f')} |"
            f" {g.tiers_s:.2f} | {g.m_r:,} | {g.m_h:,} | {g.m_p:,}{'' if g.m_p_proven else '*'} |"
        )
        for s in g.solvers or [SolverRow("-", "-")]:
            gap = "-" if s.gap is None else f"{s.gap:.1%}"
            ok = "yes" if s.valid and within_limit(s.seconds, args.time_limit) else "no"
            lines.append(
                f"{head} {s.solver} | {s.status} | {_fmt(s.nc_bytes)} | {_fmt(s.bound)} | {gap} | {s.seconds:.1f} |"
                f" {ok} | {_fmt(s.peak_mib, '.0f')} |"
            )
    lines += ["", "`*` after `M_P`: the best peak found, not proven minimal.", ""]
    return "\n".join(lines)


def output_path(args) -> str:
    """Where the table goes: ``--out`` when given; the full table only for a full run or
    with ``--update``; else the partial table beside it."""
    if args.out is not None:
        return args.out
    full = (
        tuple(args.sizes) == SIZES
        and tuple(args.solvers) == SOLVERS
        and tuple(args.families) == FAMILIES
        and not args.big_solvers
    )
    return DEFAULT_OUT if full or args.update else PARTIAL_OUT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cosma.harness.bench_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="operator counts (default 1k 5k 20k)")
    parser.add_argument("--solvers", nargs="+", default=list(SOLVERS), help="solvers to run at M_H")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES, help="graph families")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per solver run (default 60)")
    parser.add_argument("--tier-time", type=float, default=20.0, help="seconds for compute_tiers (default 20)")
    parser.add_argument("--hardware", default="edge-npu", help="hardware preset (default edge-npu)")
    parser.add_argument("--lower-max", type=int, default=6000, help="time ONNX lowering up to this many operators")
    parser.add_argument("--big", type=int, default=20000, help="sizes from this one run only --big-solvers")
    parser.add_argument("--big-solvers", nargs="*", default=[], help="the solvers for sizes >= --big (default all)")
    parser.add_argument("--out", default=None, help=f"markdown file (default {DEFAULT_OUT} for a full run)")
    parser.add_argument("--update", action="store_true", help=f"let a partial run replace {DEFAULT_OUT}")
    add_ray_option(parser, "solver runs", "2 CPUs")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    out = output_path(args)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    command = "python -m cosma.harness.bench_scale " + " ".join(argv if argv is not None else sys.argv[1:])

    def write(rows: list[GraphRow], done: bool = False) -> None:
        text = render(rows, args, time.monotonic() - started, command.strip())
        write_text_atomically(out, text if done else text + "\n(run in progress: rows so far)\n")

    write(bench(args, log, write), done=True)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["make_graph", "within_limit", "output_path", "main", "asdict"]
