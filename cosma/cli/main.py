"""The ``cosma`` command line.

    cosma optimize MODEL.onnx --scratchpad 1MiB [-o plan.json]   find a plan
    cosma bounds MODEL.onnx                                       the tiers M_R, M_H, M_P
    cosma validate MODEL.onnx plan.json                           re-check a plan
    cosma show plan.json -o map.png                               draw its memory map (map.html: interactive)
    cosma export plan.json --format csv|c-header                  its offsets as a MiniMalloc CSV or a C header
    cosma solvers                                                 list the solvers
    cosma pack FILE.csv --capacity N                              allocation only (MiniMalloc CSV)
    cosma compare                                                 regenerate results/

Bad input gets one line on stderr and exit status 2; an invalid plan exits 1.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from dataclasses import fields, replace
from importlib.metadata import entry_points
from pathlib import Path

from cosma.core.errors import UsageError
from cosma.core.options import EXIT_INTERRUPTED as EXIT_INTERRUPTED  # the exit codes, for callers
from cosma.core.options import (
    EXIT_INVALID,
    HelpFormatter,
    add_lowering_args,
    check_positive,
    lowering_options,
    run_command,
)
from cosma.core.options import EXIT_USAGE as EXIT_USAGE
from cosma.core.units import format_bytes, is_tier, parse_size

# ---------------------------------------------------------------------------- helpers


def _hardware(args):
    from cosma.core.hardware import get_hardware

    hw = get_hardware(args.hardware)  # UnknownHardware: a UsageError listing the presets
    if getattr(args, "alignment", None) is not None:
        if args.alignment <= 0:
            raise UsageError("--alignment must be a positive number of bytes")
        hw = replace(hw, alignment=args.alignment)
    return hw


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="ONNX file (weight-stripped files are fine)")
    add_lowering_args(p)
    p.add_argument("--hardware", default="edge-npu", help="hardware preset (cosma solvers lists them)")
    p.add_argument("--alignment", type=int, default=None, help="override the preset's alignment (bytes)")


def _add_weights_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count weights as scratchpad tensors (--no-weights: activations only, weights stream from DRAM)",
    )


def _default_solver() -> str:
    from cosma.core.interface import load_all

    registry = load_all()
    for name in ("auto", "best-greedy"):
        if name in registry:
            return name
    return sorted(registry)[0]


def _solver_params(spec, args):
    """The solver's params dataclass from --param k=v, --solver-params and --dump-model."""
    from cosma.core.interface import parse_params

    overrides = {}
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--param {item!r}: write NAME=VALUE")
        overrides[key.strip().replace("-", "_")] = value.strip()
    names = {f.name for f in fields(spec.params_type)}
    for flag, field_name in (
        ("solver_params", "solver_params"),
        ("dump_model", "dump_model"),
        ("checkpoint", "checkpoint"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            if field_name not in names:
                raise UsageError(f"--{flag.replace('_', '-')} is not supported by solver {spec.name}")
            overrides[field_name] = value
    try:
        return parse_params(spec.params_type, overrides)
    except ValueError as e:
        raise UsageError(f"--param: {e}") from None


# ---------------------------------------------------------------------------- commands


def cmd_optimize(args) -> int:
    from cosma.api import optimize
    from cosma.cli.planview import check_map_path, write_map
    from cosma.core.interface import Status, get_solver
    from cosma.core.paths import check_writable

    check_positive(args.time_limit, "--time-limit")
    check_positive(args.threads, "--threads")
    if args.output:  # fail before the solve, not after it
        check_writable(args.output, "-o")
    if args.map:
        check_map_path(args.map, "--map")
    if args.output and args.map and Path(args.output).resolve() == Path(args.map).resolve():
        raise UsageError(f"-o and --map name the same file {args.output}")
    lowering = lowering_options(args)
    solver_name = args.solver or _default_solver()
    try:
        spec = get_solver(solver_name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    params = _solver_params(spec, args)  # option typos fail before the model is read
    if not is_tier(args.scratchpad):
        parse_size(args.scratchpad)
    hw = _hardware(args)
    result = optimize(
        args.model,
        scratchpad=args.scratchpad,
        solver=solver_name,
        time_limit=_left(args.time_limit),
        weights=args.weights,
        hardware=hw,
        dtype_bytes=lowering["dtype_bytes"],
        input_shapes=lowering["input_shapes"],
        threads=args.threads,
        seed=args.seed,
        params=params,
        verbose=not args.quiet,
        batch=lowering["batch"],
        objective=args.objective,
    )
    problem, graph, capacity = result.problem, result.problem.graph, result.capacity
    from cosma.core.analysis import min_capacity

    m_r = min_capacity(problem)
    tier_note = f" = {result.tier}" if result.tier else ""
    rows = [
        ("model", f"{graph.name} ({len(graph.operators)} operators, {len(graph.folded)} ONNX nodes folded/aliased)"),
        ("hardware", f"{hw.name} (alignment {hw.alignment} B)"),
        (
            "scratchpad",
            f"{format_bytes(capacity)} = {capacity} B{tier_note}; M_R {format_bytes(m_r)};"
            f" {'weights counted' if args.weights else 'activations only'}",
        ),
        ("solver", f"{solver_name}: {result.status.value} in {result.seconds:.2f} s"),
        ("objective", "non-compulsory bytes" if problem.objective == "bytes" else "latency (then bytes)"),
    ]
    if result.message:
        rows.append(("", result.message))
    if result.cost is not None:
        c = result.cost
        if result.bound is None:
            bound = "-"
        elif problem.objective == "latency":
            bound = f"{result.bound:,} cycles"
        else:
            bound = format_bytes(result.bound)
        gap = "-" if result.gap is None else f"{100 * result.gap:.1f}%"
        rows += [
            ("compulsory", format_bytes(c.compulsory_bytes)),
            ("spill", format_bytes(c.spill_bytes)),
            ("reload", format_bytes(c.reload_bytes)),
            ("non-compulsory", f"{format_bytes(c.non_compulsory_bytes)} ({c.non_compulsory_bytes} B)"),
            ("lower bound", f"{bound} (gap {gap})"),
            ("latency", f"{c.latency_cycles:,} cycles (roofline estimate)"),
        ]
        if c.streamed_weight_bytes:
            rows.append(("weights streamed", format_bytes(c.streamed_weight_bytes)))
    if result.plan is not None and args.map:  # the map first: if the plan then fails, the map goes too
        write_map(problem, result.plan, args.map)
    if result.plan is not None and args.output:
        try:
            result.save(args.output)
        except BaseException:
            if args.map:
                Path(args.map).unlink(missing_ok=True)
            raise
        rows.append(("plan", f"written to {args.output}"))
    if result.plan is not None and args.map:
        rows.append(("memory map", f"drawn to {args.map}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if result.status is Status.INFEASIBLE:
        return EXIT_INVALID
    return 0 if result.plan is not None else EXIT_INVALID


def cmd_bounds(args) -> int:
    from cosma.api import bounds
    from cosma.core.analysis import largest_operator
    from cosma.core.ir import Problem

    check_positive(args.time_limit, "--time-limit")
    lowering = lowering_options(args)
    hw = _hardware(args)
    found = bounds(
        args.model,
        hardware=hw,
        dtype_bytes=lowering["dtype_bytes"],
        input_shapes=lowering["input_shapes"],
        batch=lowering["batch"],
        time_limit=args.time_limit,
    )
    graph = found.graph
    print(f"{graph.name}: {len(graph.operators)} operators, {len(graph.tensors)} tensors, hardware {hw.name}")
    print(f"{'setting':<18} {'M_R':>12} {'M_H':>12} {'M_P':>12}  M_P from")
    for weights in (False, True):
        tiers = found.setting(weights)
        problem = Problem(graph, capacity=hw.capacity, hardware=hw, weights_counted=weights)
        setting = "with weights" if weights else "activations only"
        proof = "proven minimum" if tiers.m_p_proven else "best known, not proven"
        print(
            f"{setting:<18} {tiers.m_r:>12} {tiers.m_h:>12} {tiers.m_p:>12}  {tiers.m_p_source} ({proof});"
            f" M_R set by {largest_operator(problem)}"
        )
    print("(bytes; footprints rounded up to the alignment)")
    return 0


def cmd_validate(args) -> int:
    from cosma.api import check_plan

    if args.max_errors < 0:
        raise UsageError(f"--max-errors must not be negative, got {args.max_errors}")
    found = check_plan(args.model, args.plan)
    if found.size_mismatches:
        print(f"plan was made for a different graph: tensor sizes differ for {', '.join(found.size_mismatches[:5])}")
        return EXIT_INVALID
    violations = found.violations
    if violations:
        print(f"INVALID: {len(violations)} broken rule(s) in {args.plan}")
        for v in violations[: args.max_errors]:
            print(f"  {v}")
        if len(violations) > args.max_errors:
            print(f"  ... and {len(violations) - args.max_errors} more")
        return EXIT_INVALID
    cost, plan, capacity = found.cost, found.plan, found.problem.capacity
    print(f"valid: {len(plan.schedule)} steps, {len(plan.residencies)} residencies, capacity {capacity} B")
    for key, value in cost.as_dict().items():
        recorded = found.recorded_cost.get(key)
        note = "" if recorded in (None, value) else f"   (plan file says {recorded}: MISMATCH)"
        print(f"  {key:<22} {value}{note}")
    if any(found.recorded_cost.get(k) not in (None, v) for k, v in cost.as_dict().items()):
        return EXIT_INVALID
    return 0


def cmd_show(args) -> int:
    from cosma.cli.planview import check_map_path, load_plan_view, write_map

    out = args.output or str(Path(args.plan).with_suffix(".png"))
    check_map_path(out, "-o")
    view = load_plan_view(args.plan)
    write_map(view, view.plan, out)
    print(f"memory map of {args.plan} drawn to {out}")
    return 0


def cmd_export(args) -> int:
    from cosma.cli.export import default_output, export_text
    from cosma.cli.planview import load_plan_view
    from cosma.core.paths import write_text_atomically

    view = load_plan_view(args.plan)
    text = export_text(view, args.format, prefix=args.prefix)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = args.output or default_output(args.plan, args.format, view.problem.capacity)
    write_text_atomically(out, text)
    print(f"{args.format} export of {args.plan} ({len(view.plan.residencies)} residencies) written to {out}")
    return 0


def cmd_solvers(args) -> int:
    from cosma.core.hardware import PRESETS
    from cosma.core.interface import load_all

    registry = load_all()
    width = max(len(n) for n in registry)
    default = _default_solver()
    print("solvers (cosma optimize --solver NAME; --param FIELD=VALUE sets a field of its params):")
    for name in sorted(registry):
        spec = registry[name]
        mark = " (default)" if name == default else ""
        print(f"  {name:<{width}}  {spec.description}{mark}")
        if args.params:
            for f in fields(spec.params_type):
                print(f"  {'':<{width}}    {f.name} = {getattr(spec.default_params(), f.name)!r}")
    print("hardware presets (--hardware NAME):")
    for name, hw in PRESETS.items():
        print(f"  {name:<{width}}  {hw.description}")
    return 0


def cmd_pack(args) -> int:
    from cosma.core.paths import check_writable
    from cosma.packing.greedy import PACKERS
    from cosma.packing.problem import check_packing, read_csv, write_csv

    check_positive(args.time_limit, "--time-limit")
    if args.alignment <= 0:
        raise UsageError(f"--alignment must be a positive number of bytes, got {args.alignment}")
    if args.solver != "exact" and args.solver not in PACKERS:
        raise UsageError(f"unknown packer {args.solver!r}; known: exact, {', '.join(sorted(PACKERS))}")
    if args.output:
        check_writable(args.output, "-o")
    problem = read_csv(
        args.csv, capacity=parse_size(args.capacity) if args.capacity else None, alignment=args.alignment
    )
    start = time.perf_counter()
    if args.solver == "exact":
        from cosma.packing.exact import PackParams, pack

        result = pack(problem, PackParams(), time_limit=args.time_limit)
        offsets, status = result.offsets, result.status.value
    else:
        result = PACKERS[args.solver](problem)
        offsets = result.offsets
        status = "fits" if result.fits else "does not fit"
    seconds = time.perf_counter() - start
    print(
        f"{args.csv}: {len(problem.buffers)} buffers, capacity {problem.capacity},"
        f" max load {problem.max_load()} (lower bound on height)"
    )
    if not offsets:
        print(f"{args.solver}: {status} in {seconds:.2f} s, no packing")
        return EXIT_INVALID
    height = max(offsets[b.id] + b.size for b in problem.buffers)
    errors = check_packing(problem, offsets) if height <= problem.capacity else []
    if errors:
        print(f"{args.solver}: BUG, packing breaks a rule: {errors[0]}")
        return EXIT_INVALID
    fits = height <= problem.capacity
    print(f"{args.solver}: {status}; height {height} ({'fits' if fits else 'does NOT fit'}) in {seconds:.2f} s")
    if args.output and fits:
        write_csv(args.output, problem, offsets)
        print(f"offsets written to {args.output}")
    elif args.output:
        print(f"offsets not written to {args.output}: height {height} is above the capacity {problem.capacity}")
    return 0 if fits else EXIT_INVALID


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cosma",
        description="Scheduling, scratchpad allocation and tensor replacement for DNN accelerators:"
        " minimize off-chip traffic for an ONNX model and a scratchpad size.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # every command's --help shows each option's default
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=HelpFormatter)  # type: ignore[method-assign]

    p = sub.add_parser("optimize", help="find a plan for MODEL at a scratchpad size")
    _add_model_args(p)
    p.add_argument(
        "--scratchpad",
        required=True,
        help="bytes (1048576), a size (384KiB, 2MB, 1.5MiB) or a tier: M_R (tightest), M_H, M_P (no spills needed)",
    )
    _add_weights_arg(p)
    p.add_argument(
        "--objective",
        choices=("bytes", "latency"),
        default="bytes",
        help="what to minimize: non-compulsory bytes (COSMA's), or the roofline latency (loads retimed to hide"
        " behind compute; ties broken by bytes); both figures are printed",
    )
    p.add_argument("--solver", default=None, help="solver name (cosma solvers lists them); default: auto")
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="seconds; the best plan so far is returned (default: none; the tiers M_H/M_P search 10 s at most)",
    )
    p.add_argument("--threads", type=int, default=1, help="solver worker threads (a positive number)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice the solver makes")
    p.add_argument("--param", action="append", metavar="FIELD=VALUE", help="set a field of the solver's params")
    p.add_argument("--solver-params", default=None, help="raw parameters passed to the underlying MIP/CP solver")
    p.add_argument("--dump-model", default=None, metavar="PATH", help="write the solver's model to PATH")
    p.add_argument("--checkpoint", default=None, metavar="PATH", help="agent checkpoint for --solver muzero")
    p.add_argument("-o", "--output", default=None, metavar="PLAN.json", help="write the plan file")
    p.add_argument("--map", default=None, metavar="MAP.png", help="also draw the memory map")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("bounds", help="print the tiers M_R, M_H, M_P in both settings")
    _add_model_args(p)
    p.add_argument("--time-limit", type=float, default=10.0, help="seconds for the M_P scheduler search")
    p.set_defaults(func=cmd_bounds)

    p = sub.add_parser("validate", help="re-check a plan file against its model; exit 1 on any broken rule")
    p.add_argument("model", help="the ONNX file the plan was made for")
    p.add_argument("plan", help="plan file (JSON)")
    p.add_argument("--max-errors", type=int, default=20, help="broken rules to list")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("show", help="draw a plan's memory map (time x address)")
    p.add_argument("plan", help="plan file (JSON)")
    p.add_argument(
        "-o", "--output", default=None, metavar="MAP", help="MAP.png/.svg/.pdf, or MAP.html: an interactive page"
    )
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export", help="a plan's offsets and intervals as a MiniMalloc CSV or a C header")
    p.add_argument("plan", help="plan file (JSON)")
    p.add_argument("--format", choices=("csv", "c-header"), default="csv")
    p.add_argument("-o", "--output", default=None, help="OUT file, - for stdout; default: beside the plan")
    p.add_argument("--prefix", default=None, help="c-header: the macro and array name prefix (default COSMA_<GRAPH>)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("solvers", help="list the solvers and hardware presets")
    p.add_argument("--params", action="store_true", help="also list each solver's parameters and defaults")
    p.set_defaults(func=cmd_solvers)

    p = sub.add_parser("pack", help="allocation only: pack fixed-lifetime buffers from a MiniMalloc CSV")
    p.add_argument("csv", help="CSV with columns id,lower,upper,size (half-open lifetimes)")
    p.add_argument("--capacity", default=None, help="bytes; default: the number in the file name")
    p.add_argument("--alignment", type=int, default=1, help="offset alignment in bytes")
    p.add_argument("--solver", default="exact", help="exact, or a baseline packer (best-fit, greedy-size)")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds for the exact packer")
    p.add_argument(
        "-o", "--output", default=None, metavar="OUT.csv", help="write the offsets as a CSV (only when they fit)"
    )
    p.set_defaults(func=cmd_pack)

    # Commands other packages add (``cosma.commands`` entry points: the harness's ``compare``).
    for entry in sorted(entry_points(group="cosma.commands"), key=lambda e: e.name):
        entry.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    global _STARTED
    _STARTED = time.monotonic()
    args = build_parser().parse_args(argv)
    return run_command("cosma", lambda: args.func(args))


# When the command started: its --time-limit counts from here, so the imports (half a second)
# are inside it too.
_STARTED: float | None = None


def _left(time_limit: float | None) -> float | None:
    """What is left of the command's ``--time-limit`` (None: no limit)."""
    if time_limit is None or _STARTED is None:
        return time_limit
    return max(0.05 * time_limit, time_limit - (time.monotonic() - _STARTED))


if __name__ == "__main__":
    sys.exit(main())
