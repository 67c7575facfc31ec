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
import sys
import time
from dataclasses import fields, replace
from importlib.metadata import entry_points
from pathlib import Path

from cosma.core.errors import CapacityError, CosmaError, UsageError
from cosma.core.units import format_bytes, is_tier, normalize_tier, parse_size

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


# ---------------------------------------------------------------------------- helpers


def _parse_input_shapes(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    from cosma.core.onnx_lower import parse_input_shape

    return dict(parse_input_shape(item) for item in items or [])


def _hardware(args):
    from cosma.core.hardware import get_hardware

    try:
        hw = get_hardware(args.hardware)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if getattr(args, "alignment", None):
        if args.alignment <= 0:
            raise UsageError("--alignment must be a positive number of bytes")
        hw = replace(hw, alignment=args.alignment)
    return hw


def _load_graph(args):
    from cosma.core.onnx_lower import load_model

    if args.dtype_bytes is not None and args.dtype_bytes not in (1, 2, 4, 8):
        raise UsageError("--dtype-bytes must be 1, 2, 4 or 8")
    return load_model(args.model, dtype_bytes=args.dtype_bytes, input_shapes=_parse_input_shapes(args.input_shape))


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="ONNX file (weight-stripped files are fine)")
    p.add_argument("--hardware", default="edge-npu", help="hardware preset (see `cosma solvers --hardware`)")
    p.add_argument("--alignment", type=int, default=None, help="override the preset's alignment (bytes)")
    p.add_argument(
        "--dtype-bytes",
        type=int,
        default=None,
        help="bytes per element for every tensor (1 models an 8-bit accelerator); default: the file's dtypes",
    )
    p.add_argument(
        "--input-shape",
        action="append",
        metavar="NAME=DIMS",
        help="fix a graph input's dynamic shape, e.g. input=1x3x224x224 (repeatable)",
    )


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
        raise UsageError(str(e)) from None


# ---------------------------------------------------------------------------- commands


def cmd_optimize(args) -> int:
    from cosma.core.analysis import largest_operator, min_capacity
    from cosma.core.interface import RunOptions, Status, get_solver, run
    from cosma.core.ir import Problem
    from cosma.core.planfile import solver_record, write_plan

    if args.time_limit is not None and args.time_limit <= 0:
        raise UsageError("--time-limit must be positive (seconds)")
    for path in (args.output, args.map):  # fail before the solve, not after it
        if path and not Path(path).resolve().parent.is_dir():
            raise UsageError(f"{path}: no such directory")
    solver_name = args.solver or _default_solver()
    try:
        spec = get_solver(solver_name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    params = _solver_params(spec, args)  # option typos fail before the model is read
    if not is_tier(args.scratchpad):
        parse_size(args.scratchpad)
    hw = _hardware(args)
    graph = _load_graph(args)
    problem = Problem(graph, capacity=hw.capacity, hardware=hw, weights_counted=args.weights)
    m_r = min_capacity(problem)
    tier_note = ""
    schedule = None
    if is_tier(args.scratchpad):
        from cosma.schedules.tiers import compute_tiers

        tier = normalize_tier(args.scratchpad)
        tier_note = f" = {tier}"
        if tier == "M_R":
            capacity = m_r  # no schedule search needed
        else:
            try:
                tiers = compute_tiers(graph, hw, args.weights, time_limit=min(10.0, args.time_limit or 10.0))
            except KeyboardInterrupt:
                raise UsageError(f"interrupted while computing {tier} (nothing solved yet)") from None
            capacity = tiers.capacity(tier)
            if tier == "M_P":
                schedule = tiers.m_p_schedule  # the schedule that makes M_P reachable without spills
    else:
        capacity = parse_size(args.scratchpad)
    if capacity < m_r:
        op = largest_operator(problem)
        raise CapacityError(
            f"scratchpad {format_bytes(capacity)} ({capacity} B) is below M_R = {format_bytes(m_r)} ({m_r} B):"
            f" operator {op} alone needs {m_r} B resident" + ("" if args.weights else " (activations only)")
        )
    problem = replace(problem, capacity=capacity)
    options = RunOptions(
        time_limit=args.time_limit, threads=args.threads, seed=args.seed, schedule=schedule, verbose=not args.quiet
    )
    if not args.quiet:
        print(
            f"cosma: {graph.name}: {len(graph.operators)} operators, {len(problem.managed_tensors)} scratchpad tensors;"
            f" solving with {solver_name} at {format_bytes(capacity)}{tier_note}...",
            file=sys.stderr,
            flush=True,
        )
    result = run(problem, solver_name, params, options)

    rows = [
        ("model", f"{graph.name} ({len(graph.operators)} operators, {len(graph.folded)} ONNX nodes folded/aliased)"),
        ("hardware", f"{hw.name} (alignment {hw.alignment} B)"),
        (
            "scratchpad",
            f"{format_bytes(capacity)} = {capacity} B{tier_note}; M_R {format_bytes(m_r)};"
            f" {'weights counted' if args.weights else 'activations only'}",
        ),
        ("solver", f"{solver_name}: {result.status.value} in {result.seconds:.2f} s"),
    ]
    if result.message:
        rows.append(("", result.message))
    if result.cost is not None:
        c = result.cost
        bound = "-" if result.bound is None else format_bytes(result.bound)
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
    if result.plan is not None and args.output:
        write_plan(
            args.output,
            problem,
            result.plan,
            model=str(args.model),
            dtype_bytes=args.dtype_bytes,
            input_shapes=_parse_input_shapes(args.input_shape),
            solver=solver_record(result),
            cost=result.cost,
        )
        rows.append(("plan", f"written to {args.output}"))
    if result.plan is not None and args.map:
        from cosma.cli.show import save_memory_map

        save_memory_map(problem, result.plan, args.map)
        rows.append(("memory map", f"drawn to {args.map}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if result.status is Status.INFEASIBLE:
        return EXIT_INVALID
    return 0 if result.plan is not None else EXIT_INVALID


def cmd_bounds(args) -> int:
    from cosma.core.analysis import largest_operator
    from cosma.core.ir import Problem
    from cosma.schedules.tiers import compute_tiers

    hw = _hardware(args)
    graph = _load_graph(args)
    print(f"{graph.name}: {len(graph.operators)} operators, {len(graph.tensors)} tensors, hardware {hw.name}")
    print(f"{'setting':<18} {'M_R':>12} {'M_H':>12} {'M_P':>12}  M_P from")
    for weights in (False, True):
        tiers = compute_tiers(graph, hw, weights, time_limit=args.time_limit)
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
    from cosma.core.cost import evaluate
    from cosma.core.ir import Problem
    from cosma.core.onnx_lower import load_model
    from cosma.core.planfile import read_plan
    from cosma.core.validator import validate

    pf = read_plan(args.plan)
    graph = load_model(args.model, dtype_bytes=pf.dtype_bytes, input_shapes=pf.input_shapes)
    problem = Problem(graph, capacity=pf.capacity, hardware=pf.hardware, weights_counted=pf.weights_counted)
    mismatched = [
        name
        for name, t in pf.tensors.items()
        if name in graph.tensors and graph.tensors[name].size != t.get("size", graph.tensors[name].size)
    ]
    if mismatched:
        print(f"plan was made for a different graph: tensor sizes differ for {', '.join(mismatched[:5])}")
        return EXIT_INVALID
    violations = validate(problem, pf.plan)
    if violations:
        print(f"INVALID: {len(violations)} broken rule(s) in {args.plan}")
        for v in violations[: args.max_errors]:
            print(f"  {v}")
        if len(violations) > args.max_errors:
            print(f"  ... and {len(violations) - args.max_errors} more")
        return EXIT_INVALID
    cost = evaluate(problem, pf.plan)
    print(f"valid: {len(pf.plan.schedule)} steps, {len(pf.plan.residencies)} residencies, capacity {pf.capacity} B")
    for key, value in cost.as_dict().items():
        recorded = pf.cost.get(key)
        note = "" if recorded in (None, value) else f"   (plan file says {recorded}: MISMATCH)"
        print(f"  {key:<22} {value}{note}")
    if any(pf.cost.get(k) not in (None, v) for k, v in cost.as_dict().items()):
        return EXIT_INVALID
    return 0


def cmd_show(args) -> int:
    from cosma.cli.planview import load_plan_view, write_map

    view = load_plan_view(args.plan)
    out = args.output or str(Path(args.plan).with_suffix(".png"))
    write_map(view, out)
    print(f"memory map of {args.plan} drawn to {out}")
    return 0


def cmd_export(args) -> int:
    from cosma.cli.export import default_output, export_text
    from cosma.cli.planview import atomic_write_text, load_plan_view

    view = load_plan_view(args.plan)
    text = export_text(view, args.format, prefix=args.prefix)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = args.output or default_output(args.plan, args.format, view.problem.capacity)
    atomic_write_text(out, text)
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
    from cosma.packing.problem import check_packing, read_csv, write_csv

    problem = read_csv(
        args.csv, capacity=parse_size(args.capacity) if args.capacity else None, alignment=args.alignment
    )
    start = time.perf_counter()
    if args.solver == "exact":
        from cosma.packing.exact import PackParams, pack

        result = pack(problem, PackParams(), time_limit=args.time_limit)
        offsets, status = result.offsets, result.status.value
    else:
        from cosma.packing.greedy import PACKERS

        if args.solver not in PACKERS:
            raise UsageError(f"unknown packer {args.solver!r}; known: exact, {', '.join(sorted(PACKERS))}")
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
    if args.output:
        write_csv(args.output, problem, offsets)
        print(f"offsets written to {args.output}")
    return 0 if fits else EXIT_INVALID


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cosma",
        description="Scheduling, scratchpad allocation and tensor replacement for DNN accelerators:"
        " minimize off-chip traffic for an ONNX model and a scratchpad size.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("optimize", help="find a plan for MODEL at a scratchpad size")
    _add_model_args(p)
    p.add_argument(
        "--scratchpad",
        required=True,
        help="bytes (1048576), a size (384KiB, 2MB, 1.5MiB) or a tier: M_R (tightest), M_H, M_P (no spills needed)",
    )
    _add_weights_arg(p)
    p.add_argument("--solver", default=None, help="solver name (see `cosma solvers`); default: auto")
    p.add_argument("--time-limit", type=float, default=None, help="seconds; the best plan so far is returned")
    p.add_argument("--threads", type=int, default=1, help="solver worker threads")
    p.add_argument("--seed", type=int, default=0)
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
    p.add_argument("--max-errors", type=int, default=20)
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
    p.add_argument("--alignment", type=int, default=1)
    p.add_argument("--solver", default="exact", help="exact, or a baseline packer (best-fit, greedy-size)")
    p.add_argument("--time-limit", type=float, default=60.0)
    p.add_argument("-o", "--output", default=None, metavar="OUT.csv", help="write offsets as a CSV")
    p.set_defaults(func=cmd_pack)

    # Commands other packages add (``cosma.commands`` entry points: the harness's ``compare``).
    for entry in sorted(entry_points(group="cosma.commands"), key=lambda e: e.name):
        entry.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CosmaError as e:
        print(f"cosma: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cosma: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
