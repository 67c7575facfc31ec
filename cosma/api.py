"""cosma's Python API, for compilers and notebooks: the ``cosma`` command's work as calls.

    import cosma

    result = cosma.optimize("models/zoo/resnet18.onnx", scratchpad="M_R", dtype_bytes=1, time_limit=5)
    print(result.status, result.cost.non_compulsory_bytes, result.cost.latency_cycles)
    result.save("plan.json")  # the plan file `cosma optimize -o` writes
    assert cosma.validate("models/zoo/resnet18.onnx", "plan.json") == []

What it offers (``__all__``):

* ``optimize(model, scratchpad, solver, ...) -> Result``: a plan for a model at a scratchpad size;
* ``validate(model_or_problem, plan_or_path) -> list[Violation]``: re-check a plan (empty: valid);
* ``bounds(model, ...) -> Bounds``: the tiers ``M_R``, ``M_H``, ``M_P`` in both settings;
* ``load(model, ...) -> Graph``: lower an ONNX model to the IR;
* ``Result``, ``Bounds``, and the types a caller meets: ``Status``, ``Cost``, ``Plan``,
  ``Problem``, ``Graph``, ``Tiers``, ``Violation``, ``CosmaError`` (every bad input raises
  a subclass of it, with a one-line message: ``ModelError``, ``CapacityError``, ``UsageError``).

A ``model`` is a path to an ONNX file, an ``onnx.ModelProto``, an already lowered
``cosma.core.ir.Graph``, or (``optimize`` and ``validate``) a whole ``Problem``. Every plan
goes through the one validator and cost model (``cosma.core.interface.run``), as on the
command line. ``import cosma`` does not import this module: ``cosma.optimize`` and the other
names load it on first use.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Union

from cosma.core.clock import Clock
from cosma.core.cost import Cost
from cosma.core.errors import CapacityError, CosmaError, ModelError, UsageError
from cosma.core.hardware import DEFAULT_HARDWARE, get_hardware
from cosma.core.interface import RunOptions, SolveResult, Status, get_solver, parse_params, run
from cosma.core.ir import OBJECTIVES, Graph, Hardware, Plan, Problem
from cosma.core.onnx_lower import check_batch, check_dtype_bytes, parse_input_shape
from cosma.core.units import format_bytes, is_tier, normalize_tier, parse_size
from cosma.core.validator import Violation
from cosma.schedules.tiers import Tiers, compute_tiers, resolve_budget

if TYPE_CHECKING:
    import onnx

ModelLike = Union[str, "os.PathLike[str]", "onnx.ModelProto", Graph, Problem]
"""What every function takes as a model: an ONNX path, an ``onnx.ModelProto``, a ``Graph``
or (``optimize``, ``validate``) a ``Problem``."""

ShapesLike = Union[Mapping[str, Iterable[int]], Iterable[str], None]
"""Input shapes: ``{"input": (1, 3, 224, 224)}`` or ``["input=1x3x224x224"]``."""


# ---------------------------------------------------------------------------- results


@dataclass
class Result:
    """What ``optimize`` found: the plan, both cost figures, and what the solver said.

    ``cost`` carries both figures: ``cost.non_compulsory_bytes`` (the objective: spills and
    reloads) and ``cost.latency_cycles`` (the roofline estimate), plus ``compulsory_bytes``,
    ``spill_bytes``, ``reload_bytes``. ``plan`` and ``cost`` are None when no plan was found
    (``status`` INFEASIBLE, or TIMEOUT before the first plan; ``message`` says why).
    """

    plan: Plan | None
    cost: Cost | None
    status: Status
    bound: int | None  # proven lower bound in the problem's objective (bytes, or cycles), None if unknown
    gap: float | None  # (objective - bound) / objective; 0.0 when proven optimal
    seconds: float  # wall time of the solve
    problem: Problem  # the instance solved (graph, capacity in bytes, hardware, setting)
    solver: str  # the solver's registry name
    message: str = ""  # why infeasible, what stopped it
    stats: dict[str, Any] = field(default_factory=dict)  # solver-specific figures
    tier: str | None = None  # "M_R", "M_H" or "M_P" when the scratchpad was given as a tier
    model: str = ""  # the ONNX path as given ("" for models built in memory), recorded in the plan file
    dtype_bytes: int | None = None  # the lowering options, recorded so `cosma validate` rebuilds the graph
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    batch: int | None = 1
    solve_result: SolveResult | None = field(default=None, repr=False)  # the interface's own record

    @property
    def ok(self) -> bool:
        """A valid plan was found (it has been validated and costed)."""
        return self.plan is not None

    @property
    def capacity(self) -> int:
        """The scratchpad size solved for, in bytes."""
        return self.problem.capacity

    @property
    def non_compulsory_bytes(self) -> int | None:
        return None if self.cost is None else self.cost.non_compulsory_bytes

    @property
    def latency_cycles(self) -> int | None:
        return None if self.cost is None else self.cost.latency_cycles

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the plan file (``cosma optimize -o``'s format, ``cosma.core.planfile``) to
        ``path``, atomically; returns the path. ``UsageError`` without a plan or when the
        path cannot be written."""
        from cosma.core.planfile import solver_record, write_plan

        if self.plan is None:
            raise UsageError(f"no plan to save: the solve ended {self.status.value}" + _colon(self.message))
        write_plan(
            path,
            self.problem,
            self.plan,
            model=self.model,
            dtype_bytes=self.dtype_bytes,
            input_shapes=self.input_shapes,
            batch=self.batch,
            solver=solver_record(self.solve_result) if self.solve_result is not None else {"name": self.solver},
            cost=self.cost,
        )
        return Path(path)


@dataclass(frozen=True)
class Bounds:
    """The tiers of one model in both settings (``bounds``)."""

    graph: Graph
    hardware: Hardware
    activations_only: Tiers  # weights stream from DRAM
    with_weights: Tiers  # weights take scratchpad space

    def setting(self, weights: bool) -> Tiers:
        return self.with_weights if weights else self.activations_only


# ---------------------------------------------------------------------------- inputs


def _colon(message: str) -> str:
    return f": {message}" if message else ""


def _input_shapes(shapes: ShapesLike) -> dict[str, tuple[int, ...]]:
    if shapes is None:
        return {}
    if isinstance(shapes, str):
        shapes = [shapes]
    if isinstance(shapes, Mapping):
        out = {}
        for name, dims in shapes.items():
            try:
                out[str(name)] = tuple(int(d) for d in dims)
            except (TypeError, ValueError):
                raise UsageError(f"input shape of {name!r} must be a sequence of integers, got {dims!r}") from None
        return out
    return dict(parse_input_shape(item) for item in shapes)


def _hardware(hardware: str | Hardware) -> Hardware:
    return hardware if isinstance(hardware, Hardware) else get_hardware(hardware)


def _model_name(model: Any) -> str:
    return os.fspath(model) if isinstance(model, (str, os.PathLike)) else ""


def load(
    model: ModelLike,
    *,
    dtype_bytes: int | None = None,
    input_shapes: ShapesLike = None,
    batch: int | None = 1,
) -> Graph:
    """Lower ``model`` (an ONNX path or ``onnx.ModelProto``; a ``Graph`` or ``Problem``
    gives its graph back) to the IR.

    ``dtype_bytes``: 1, 2, 4 or 8 bytes per element for every tensor (None: the file's
    dtypes; 1 models an 8-bit accelerator). ``input_shapes`` fixes dynamic graph inputs;
    ``batch`` fixes a symbolic leading (batch) dim of the other inputs (None: leave it, and
    fail on it), with a one-line note on stderr naming the inputs it fixed. ``ModelError`` for a
    model that cannot be lowered, ``UsageError`` for a bad option.
    """
    if isinstance(model, Problem):
        return model.graph
    if isinstance(model, Graph):
        return model
    check_dtype_bytes(dtype_bytes, "dtype_bytes")
    check_batch(batch, "batch")
    shapes = _input_shapes(input_shapes)
    from cosma.core.onnx_lower import load_model, lower

    if isinstance(model, (str, os.PathLike)):
        return load_model(model, dtype_bytes=dtype_bytes, input_shapes=shapes, batch=batch)
    import onnx

    if isinstance(model, onnx.ModelProto):
        return lower(model, dtype_bytes=dtype_bytes, input_shapes=shapes, batch=batch)
    raise UsageError(
        f"model must be an ONNX path, an onnx.ModelProto, a cosma Graph or Problem; got {type(model).__name__}"
    )


def _params(spec: Any, params: Any) -> Any:
    """The solver's params dataclass from None, an instance, or a ``{field: value}`` mapping
    (strings parsed as ``--param`` does)."""
    if params is None:
        return spec.default_params()
    if isinstance(params, spec.params_type):
        return params
    if isinstance(params, Mapping):
        try:
            return parse_params(spec.params_type, {str(k).replace("-", "_"): v for k, v in params.items()})
        except ValueError as e:
            raise UsageError(f"solver {spec.name}: {e}") from None
    raise UsageError(
        f"params for solver {spec.name} must be a {spec.params_type.__name__} or a mapping of its fields,"
        f" got {type(params).__name__}"
    )


def _check_positive(value: float | int | None, what: str, kind: type = float) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UsageError(f"{what} must be positive, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise UsageError(f"{what} must be a whole number, got {value!r}")


@dataclass(frozen=True)
class _Instance:
    problem: Problem
    tier: str | None
    schedule: tuple[str, ...] | None
    m_r: int


def _instance(
    model: ModelLike,
    scratchpad: int | str | None,
    *,
    weights: bool,
    hardware: str | Hardware,
    dtype_bytes: int | None,
    input_shapes: dict[str, tuple[int, ...]],
    batch: int | None,
    time_limit: float | None,
) -> _Instance:
    """The problem to solve: ``model`` lowered, the scratchpad resolved (one implementation:
    ``cosma.schedules.tiers.resolve_budget``), and the M_R check that names the operator."""
    from cosma.core.analysis import largest_operator, min_capacity

    if scratchpad is not None and isinstance(scratchpad, str) and not is_tier(scratchpad):
        parse_size(scratchpad)  # a size typo fails before the model is read
    if isinstance(model, Problem):
        base = model
        if scratchpad is None:
            scratchpad = model.capacity
    else:
        hw = _hardware(hardware)
        graph = load(model, dtype_bytes=dtype_bytes, input_shapes=input_shapes, batch=batch)
        base = Problem(graph, capacity=hw.capacity, hardware=hw, weights_counted=weights)
    m_r = min_capacity(base)
    tier = normalize_tier(scratchpad) if isinstance(scratchpad, str) and is_tier(scratchpad) else None
    try:
        capacity, schedule = resolve_budget(
            base.graph,
            base.hardware,
            base.weights_counted,
            scratchpad,
            # M_H/M_P search orders: a quarter of the command's budget at most (M_R needs none)
            time_limit=min(10.0, 0.25 * time_limit if time_limit else 10.0),
        )
    except KeyboardInterrupt:
        raise UsageError(f"interrupted while computing {tier} (nothing solved yet)") from None
    if capacity < m_r:
        op = largest_operator(base)
        raise CapacityError(
            f"scratchpad {format_bytes(capacity)} ({capacity} B) is below M_R = {format_bytes(m_r)} ({m_r} B):"
            f" operator {op} alone needs {m_r} B resident" + ("" if base.weights_counted else " (activations only)")
        )
    return _Instance(replace(base, capacity=capacity), tier, schedule, m_r)


# ---------------------------------------------------------------------------- the API


def optimize(
    model: ModelLike,
    scratchpad: int | str | None = "512KiB",
    solver: str = "auto",
    time_limit: float | None = 10,
    weights: bool = True,
    hardware: str | Hardware = DEFAULT_HARDWARE,
    dtype_bytes: int | None = None,
    input_shapes: ShapesLike = None,
    threads: int = 1,
    seed: int = 0,
    params: Any = None,
    verbose: bool = False,
    *,
    batch: int | None = 1,
    objective: str | None = None,
) -> Result:
    """Find a plan (schedule, offsets, spills and reloads) for ``model`` at ``scratchpad``.

    Arguments:
        model: an ONNX path, an ``onnx.ModelProto``, a ``Graph``, or a ``Problem`` (then its
            graph, hardware and setting are used, and ``scratchpad=None`` keeps its capacity).
        scratchpad: bytes (``1048576``), a size (``"384KiB"``, ``"1.5MiB"``) or a tier
            (``"M_R"`` tightest, ``"M_H"``, ``"M_P"`` no spills needed; at ``M_P`` the solver
            gets the schedule that reaches it); None: the hardware preset's own scratchpad.
        solver: a registered solver (``cosma solvers`` lists them); ``"auto"``: exact, with
            divide and conquer for large graphs.
        time_limit: seconds for the whole call: lowering, the tier (when one is named) and the
            solve; the best plan so far comes back (status TIMEOUT/FEASIBLE); None: none.
        weights: count weights as scratchpad tensors (False: activations only).
        hardware: a preset name (``"edge-npu"``, ``"mcu"``, ``"tpu-like"``, ``"ideal"``) or a ``Hardware``.
        dtype_bytes: 1, 2, 4 or 8 bytes per element for every tensor (None: the file's dtypes).
        input_shapes: fix dynamic inputs, ``{"input": (1, 3, 224, 224)}`` or ``["input=1x3x224x224"]``.
        threads, seed: solver worker threads, and the seed of every random choice.
        params: the solver's params dataclass, or a mapping of its fields (``{"exact_time": 5}``).
        verbose: progress lines on stderr.
        batch: size for a symbolic leading dim of graph inputs (default 1; None: leave it).
        objective: ``"bytes"`` (non-compulsory bytes, COSMA's) or ``"latency"`` (the roofline
            latency, ties broken by bytes; solvers retime loads to hide them behind compute).
            None: a ``Problem``'s own objective, else ``"bytes"``. ``result.bound`` and
            ``result.gap`` are in this objective; ``result.cost`` carries both figures.

    Returns a ``Result`` (the plan has been validated and costed). Raises a ``CosmaError``
    subclass with a one-line message for bad input: ``ModelError`` (the model cannot be
    lowered), ``CapacityError`` (scratchpad below ``M_R``, naming the operator that sets
    it), ``UsageError`` (an unknown solver, preset or parameter, a size typo).
    """
    _check_positive(time_limit, "time_limit")
    _check_positive(threads, "threads", int)
    clock = Clock(time_limit)  # the whole call's budget: the solver gets what lowering and tiers left
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"seed must be an integer, got {seed!r}")
    try:
        spec = get_solver(solver)
    except ValueError as e:
        raise UsageError(str(e)) from None
    solver_params = _params(spec, params)  # option typos fail before the model is read
    if objective is not None and objective not in OBJECTIVES:
        raise UsageError(f"unknown objective {objective!r}; known objectives: {', '.join(OBJECTIVES)}")
    shapes = _input_shapes(input_shapes)
    inst = _instance(
        model,
        scratchpad,
        weights=weights,
        hardware=hardware,
        dtype_bytes=dtype_bytes,
        input_shapes=shapes,
        batch=batch,
        time_limit=time_limit,
    )
    problem = inst.problem if objective is None else replace(inst.problem, objective=objective)
    graph = problem.graph
    if verbose:
        tier_note = f" = {inst.tier}" if inst.tier else ""
        print(
            f"cosma: {graph.name}: {len(graph.operators)} operators, {len(problem.managed_tensors)} scratchpad tensors;"
            f" solving with {solver} at {format_bytes(problem.capacity)}{tier_note}...",
            file=sys.stderr,
            flush=True,
        )
    # What is left, less a margin for validating and costing the plan (at least a token
    # budget: past the limit the solvers still return their first valid plan, marked not proven).
    left = clock.left()
    solve_limit = None if left is None else max(0.05, left - 0.02 * time_limit)
    options = RunOptions(time_limit=solve_limit, threads=threads, seed=seed, schedule=inst.schedule, verbose=verbose)
    raw = run(problem, solver, solver_params, options)
    return Result(
        plan=raw.plan,
        cost=raw.cost,
        status=raw.status,
        bound=raw.bound,
        gap=raw.gap,
        seconds=raw.seconds,
        problem=problem,
        solver=solver,
        message=raw.message,
        stats=raw.stats,
        tier=inst.tier,
        model=_model_name(model),
        dtype_bytes=dtype_bytes,
        input_shapes=shapes,
        batch=batch,
        solve_result=raw,
    )


@dataclass(frozen=True)
class PlanCheck:
    """``check_plan``'s findings: the rebuilt problem, the plan file, and what is wrong."""

    problem: Problem
    plan: Plan
    violations: list[Violation]
    size_mismatches: list[str]  # tensors whose size in the plan file differs from the model's
    cost: Cost | None  # the cost model's figures, when the plan is valid
    recorded_cost: dict[str, int]  # what the plan file says


def check_plan(model: ModelLike, plan_path: str | os.PathLike[str]) -> PlanCheck:
    """Re-check the plan file at ``plan_path`` against ``model`` (what ``cosma validate``
    prints): rebuild the problem with the file's lowering options, hardware, capacity and
    setting (a ``Problem`` given as ``model`` is taken as it is), then validate and cost."""
    from cosma.core.cost import evaluate
    from cosma.core.planfile import read_plan
    from cosma.core.validator import validate as validate_plan

    pf = read_plan(plan_path)
    if isinstance(model, Problem):
        problem = model
    else:
        graph = load(model, dtype_bytes=pf.dtype_bytes, input_shapes=pf.input_shapes, batch=pf.batch)
        problem = Problem(graph, pf.capacity, pf.hardware, weights_counted=pf.weights_counted, objective=pf.objective)
    graph = problem.graph
    mismatched = [
        name
        for name, t in pf.tensors.items()
        if name in graph.tensors and graph.tensors[name].size != t.get("size", graph.tensors[name].size)
    ]
    violations = [] if mismatched else validate_plan(problem, pf.plan)
    cost = evaluate(problem, pf.plan) if not mismatched and not violations else None
    return PlanCheck(problem, pf.plan, violations, mismatched, cost, dict(pf.cost))


def validate(
    model_or_problem: ModelLike,
    plan_or_path: Plan | Result | str | os.PathLike[str],
    **problem_options: Any,
) -> list[Violation]:
    """Every rule ``plan_or_path`` breaks (an empty list: the plan is valid).

    ``plan_or_path`` is a plan file (its model is rebuilt with the file's lowering options,
    capacity, hardware and setting), a ``Result``, or a ``Plan``. A bare ``Plan`` needs the
    problem: pass a ``Problem``, or a model with ``optimize``'s options
    (``scratchpad``, ``weights``, ``hardware``, ``dtype_bytes``, ``input_shapes``, ``batch``).
    A plan file made for a different graph (tensor sizes differ) is one violation.
    """
    from cosma.core.validator import Rule
    from cosma.core.validator import validate as validate_plan

    if isinstance(plan_or_path, Result):
        if plan_or_path.plan is None:
            raise UsageError("the result has no plan to validate")
        problem = model_or_problem if isinstance(model_or_problem, Problem) else plan_or_path.problem
        return validate_plan(problem, plan_or_path.plan)
    if isinstance(plan_or_path, Plan):
        if isinstance(model_or_problem, Problem) and not problem_options:
            problem = model_or_problem
        else:
            options = {**problem_options}
            known = {"scratchpad", "weights", "hardware", "dtype_bytes", "input_shapes", "batch"}
            unknown = set(options) - known
            if unknown:
                raise UsageError(f"validate: unknown option(s) {', '.join(sorted(unknown))}")
            problem = _instance(
                model_or_problem,
                options.get("scratchpad", "512KiB"),
                weights=options.get("weights", True),
                hardware=options.get("hardware", DEFAULT_HARDWARE),
                dtype_bytes=options.get("dtype_bytes"),
                input_shapes=_input_shapes(options.get("input_shapes")),
                batch=options.get("batch", 1),
                time_limit=10.0,
            ).problem
        return validate_plan(problem, plan_or_path)
    if problem_options:
        raise UsageError("validate: a plan file carries its own options; pass none")
    found = check_plan(model_or_problem, plan_or_path)
    if found.size_mismatches:
        names = ", ".join(found.size_mismatches[:5])
        return [Violation(Rule.UNKNOWN_TENSOR, f"plan was made for a different graph: tensor sizes differ for {names}")]
    return found.violations


def bounds(
    model: ModelLike,
    *,
    hardware: str | Hardware = DEFAULT_HARDWARE,
    dtype_bytes: int | None = None,
    input_shapes: ShapesLike = None,
    batch: int | None = 1,
    time_limit: float | None = 10.0,
) -> Bounds:
    """The tiers ``M_R``, ``M_H``, ``M_P`` (bytes) of ``model``, activations only and with
    weights; ``M_P`` from the schedulers' search within about ``time_limit`` seconds each
    (``Tiers.m_p_proven`` says whether it is the proven minimum)."""
    _check_positive(time_limit, "time_limit")
    hw = model.hardware if isinstance(model, Problem) and hardware == DEFAULT_HARDWARE else _hardware(hardware)
    graph = load(model, dtype_bytes=dtype_bytes, input_shapes=input_shapes, batch=batch)
    return Bounds(
        graph=graph,
        hardware=hw,
        activations_only=compute_tiers(graph, hw, False, time_limit=time_limit),
        with_weights=compute_tiers(graph, hw, True, time_limit=time_limit),
    )


def solver_fields(solver: str) -> dict[str, Any]:
    """The named solver's parameters and their defaults (``cosma solvers --params``)."""
    spec = get_solver(solver)
    return {f.name: getattr(spec.default_params(), f.name) for f in fields(spec.params_type)}


__all__ = [
    # functions
    "optimize",
    "validate",
    "bounds",
    "load",
    "check_plan",
    "solver_fields",
    # results
    "Result",
    "Bounds",
    "PlanCheck",
    # the types a caller meets
    "Status",
    "Cost",
    "Plan",
    "Problem",
    "Graph",
    "Hardware",
    "Tiers",
    "Violation",
    "CosmaError",
    "ModelError",
    "CapacityError",
    "UsageError",
]
