"""The one solver interface: a read-only ``Problem`` in, a ``SolveResult`` out.

Every solver in the project (greedy baselines, exact, divide and conquer, the learned
agent) registers by name with one params dataclass of documented defaults::

    @register("best-fit-belady", "file order, best-fit arena, Belady eviction", BeladyParams)
    def solve_belady(problem: Problem, params: BeladyParams, options: RunOptions) -> SolveResult: ...

Solvers return an outcome (``Status``) and raise only for malformed input. ``run`` is
how callers use them: it times the solver, then puts its plan through the one
validator and cost model, so no caller ever takes a solver's word for its plan.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Generic, TypeVar

from cosma.core.cost import Cost, evaluate
from cosma.core.ir import Bytes, OpName, Plan, Problem
from cosma.core.validator import PlanInvalid, validate


class Status(str, enum.Enum):
    OPTIMAL = "optimal"  # plan proven optimal (bound == objective)
    FEASIBLE = "feasible"  # a valid plan, optimality not proven (heuristics, gaps)
    INFEASIBLE = "infeasible"  # proven: no valid plan exists (message says why)
    TIMEOUT = "timeout"  # stopped by the time limit or Ctrl-C; plan is the best so far, or None


@dataclass(frozen=True)
class RunOptions:
    """Settings every solver honours (the CLI's common flags)."""

    time_limit: float | None = None  # seconds of wall time; None: no limit
    threads: int = 1  # worker threads for solvers that can use them
    seed: int = 0  # every random choice derives from it
    schedule: tuple[OpName, ...] | None = None  # fix the operator order (None: the solver's choice)
    verbose: bool = False  # print progress lines to stderr
    log: Callable[[str], None] | None = None  # where progress lines go (default: stderr when verbose)
    # Called with (incumbent bytes, lower bound bytes), either None, as a solver improves them:
    # how a caller running solvers inside its own (``auto``) follows them without their chatter.
    progress: Callable[[Bytes | None, Bytes | None], None] | None = None

    def say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)
        elif self.verbose:
            import sys

            print(line, file=sys.stderr, flush=True)

    def report(self, incumbent: Bytes | None = None, bound: Bytes | None = None) -> None:
        """A new best plan's non-compulsory bytes, or a new lower bound (for the problem as posed)."""
        if self.progress is not None:
            self.progress(incumbent, bound)


class Heartbeat:
    """The live figures of a long solve: the best plan and the best bound so far, printed
    through ``say`` every ``every`` seconds by a background thread (and never otherwise),
    so that a user sees a long solve move::

        with Heartbeat(options.say, "auto", 5.0) as beat:
            run(problem, "exact", options=replace(options, progress=beat.update))
    """

    def __init__(self, say: Callable[[str], None], name: str, every: float, what: str = "bound"):
        import threading

        self.say, self.name, self.every, self.what = say, name, every, what
        self.incumbent: Bytes | None = None
        self.bound: Bytes | None = None
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def update(self, incumbent: Bytes | None = None, bound: Bytes | None = None) -> None:
        if incumbent is not None and (self.incumbent is None or incumbent < self.incumbent):
            self.incumbent = incumbent
        if bound is not None and (self.bound is None or bound > self.bound):
            self.bound = bound

    def line(self) -> str:
        inc = "-" if self.incumbent is None else f"{self.incumbent:,} B"
        bound = "-" if self.bound is None else f"{min(self.bound, self.incumbent or self.bound):,} B"
        gap = "-"
        if self.incumbent is not None and self.bound is not None:
            gap = "0.0%" if self.incumbent == 0 else f"{max(0, self.incumbent - self.bound) / self.incumbent:.1%}"
        seconds = time.perf_counter() - self.started
        return f"{self.name}: incumbent {inc}, {self.what} {bound}, gap {gap}, {seconds:.0f} s"

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            self.say(self.line())

    def __enter__(self) -> Heartbeat:
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


@dataclass
class SolveResult:
    status: Status
    plan: Plan | None  # None only for INFEASIBLE, or TIMEOUT before any plan
    bound: int | None = None  # proven lower bound in the problem's objective (bytes or cycles), None if unknown
    seconds: float = 0.0  # wall time of the solve
    stats: dict[str, Any] = field(default_factory=dict)  # solver-specific figures
    message: str = ""  # why infeasible / what stopped it
    solver: str = ""  # registry name, filled in by ``run``
    cost: Cost | None = None  # filled in by ``run`` from the cost model
    objective_name: str = "bytes"  # the problem's objective ("bytes" or "latency"), set by ``run``

    @property
    def objective(self) -> int | None:
        """The plan's figure in the problem's objective: non-compulsory bytes, or latency cycles."""
        return None if self.cost is None else self.cost.value(self.objective_name)

    @property
    def gap(self) -> float | None:
        """Relative gap between objective and bound, 0.0 when proven optimal."""
        if self.objective is None or self.bound is None:
            return None
        if self.objective == 0:
            return 0.0
        return (self.objective - self.bound) / self.objective


P = TypeVar("P")


@dataclass(frozen=True)
class SolverSpec(Generic[P]):
    name: str
    description: str  # one line, shown by ``cosma solvers``
    params_type: type
    solve: Callable[[Problem, Any, RunOptions], SolveResult]

    def default_params(self) -> Any:
        return self.params_type()


REGISTRY: dict[str, SolverSpec] = {}


def register(name: str, description: str, params_type: type) -> Callable:
    """Decorator adding a solve function to the registry under ``name``."""

    def wrap(fn: Callable[[Problem, Any, RunOptions], SolveResult]) -> Callable:
        if name in REGISTRY:
            raise ValueError(f"solver {name!r} registered twice")
        REGISTRY[name] = SolverSpec(name, description, params_type, fn)
        return fn

    return wrap


def get_solver(name: str) -> SolverSpec:
    """The registered solver ``name``, importing only the module that provides it."""
    if name not in REGISTRY:
        entry = _entry_points().get(name)
        if entry is None:
            known = ", ".join(sorted(set(REGISTRY) | set(_entry_points())))
            raise ValueError(f"unknown solver {name!r}; known solvers: {known}")
        _load(entry)
    return REGISTRY[name]


def solver_names() -> list[str]:
    """Every solver name installed, registered or not yet imported, sorted."""
    return sorted(set(REGISTRY) | set(_entry_points()))


def load_all() -> dict[str, SolverSpec]:
    """Import every installed solver (the ``cosma.solvers`` entry points) and return the registry."""
    for entry in _entry_points().values():
        _load(entry)
    return REGISTRY


# Solvers are plugins: each package declares its solvers in pyproject.toml under the
# ``cosma.solvers`` entry-point group (name = "module:function"), so this interface names
# no implementer and loading the judge loads no contestant.
ENTRY_POINT_GROUP = "cosma.solvers"


class SolverLoadError(RuntimeError):
    """An installed solver could not be imported, or did not register under its name."""


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}


def _load(entry: Any) -> None:
    if entry.name in REGISTRY:
        return
    try:
        entry.load()
    except ImportError as e:
        raise SolverLoadError(f"solver {entry.name!r} ({entry.value}) failed to import: {e}") from e
    if entry.name not in REGISTRY:
        raise SolverLoadError(f"solver {entry.name!r}: importing {entry.value} did not register it")


def parse_params(params_type: type, overrides: dict[str, Any]) -> Any:
    """Build a params dataclass from ``name=value`` overrides (the CLI's ``--param``):
    strings are parsed to the field's type, other values must have it already. A number
    whose default is not negative (a time, a count, a share) must not be negative either.
    ``ValueError`` naming the parameter on any bad value."""
    known = {f.name: f for f in fields(params_type)}
    defaults = params_type()
    values: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in known:
            raise ValueError(f"unknown parameter {key!r} for {params_type.__name__}; known: {', '.join(known)}")
        values[key] = _param_value(key, getattr(defaults, key), raw)
    return replace(defaults, **values)


def _param_value(key: str, default: Any, raw: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"parameter {key} takes true/false, got {raw!r}")
        return text in ("1", "true", "yes", "on")
    if isinstance(default, (int, float)):
        kind, what = (int, "an integer") if isinstance(default, int) else (float, "a number")
        if isinstance(raw, bool) or (isinstance(raw, float) and kind is int and not raw.is_integer()):
            raise ValueError(f"parameter {key} takes {what}, got {raw!r}")
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            raise ValueError(f"parameter {key} takes {what}, got {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"parameter {key} takes a finite number, got {raw!r}")
        if default >= 0 and value < 0:
            raise ValueError(f"parameter {key} must not be negative, got {raw!r}")
        return value
    if isinstance(default, str) and not isinstance(raw, str):
        raise ValueError(f"parameter {key} takes a string, got {raw!r}")
    return raw


def below_minimum(problem: Problem) -> SolveResult | None:
    """The INFEASIBLE result every solver returns when the capacity is below ``M_R``, else None."""
    from cosma.core.analysis import largest_operator, min_capacity

    m_r = min_capacity(problem)
    if problem.capacity >= m_r:
        return None
    op = largest_operator(problem)
    return SolveResult(
        Status.INFEASIBLE,
        None,
        stats={"M_R": m_r},
        message=f"capacity {problem.capacity} B is below M_R = {m_r} B: operator {op} needs {m_r} B of"
        f" operands resident at once (operators are never tiled)",
    )


# Seconds per operator that validating and costing a plan take (measured: 0.8 s for a
# 20k-operator transformer stack): ``run`` keeps them out of the solver's time limit.
CHECK_SECONDS_PER_OP = 4e-5


def run(problem: Problem, name: str, params: Any = None, options: RunOptions | None = None) -> SolveResult:
    """Solve with the named solver, then validate and cost its plan. A capacity below
    ``M_R`` is answered here, INFEASIBLE with the operator that sets ``M_R``, for every solver.

    Raises ``PlanInvalid`` if the solver returned a plan that breaks a rule: that is a
    bug in the solver, never something to paper over.
    """
    spec = get_solver(name)
    options = options or RunOptions()
    params = spec.default_params() if params is None else params
    if options.time_limit is not None:
        # The checks below are part of the time limit: the solver gets the rest (at least half).
        checks = CHECK_SECONDS_PER_OP * len(problem.graph.operators)
        options = replace(options, time_limit=max(options.time_limit / 2, options.time_limit - checks))
    start = time.perf_counter()
    # The one M_R check: below it no plan exists, whichever solver is asked.
    result = below_minimum(problem) or spec.solve(problem, params, options)
    elapsed = time.perf_counter() - start
    result.seconds = result.seconds or elapsed
    result.solver = name
    result.objective_name = problem.objective
    if result.plan is not None:
        violations = validate(problem, result.plan)
        if violations:
            raise PlanInvalid(violations)
        result.cost = evaluate(problem, result.plan)
        _check_contract(name, result, options)
    return result


def bytes_bound_only(problem: Problem, result: SolveResult) -> SolveResult:
    """A solver whose bound and ``OPTIMAL`` speak of bytes, made honest under ``"latency"``:
    the bound moves to ``stats["bytes_bound"]`` (``result.bound`` is None) and ``OPTIMAL``
    becomes ``FEASIBLE`` (a plan with the fewest bytes is not thereby the fastest).
    Under ``"bytes"`` the result is returned unchanged."""
    if problem.objective == "bytes":
        return result
    if result.bound is not None:
        result.stats["bytes_bound"] = result.bound
        result.bound = None
    if result.status is Status.OPTIMAL:
        result.status = Status.FEASIBLE
        what = f" ({result.message})" if result.message else ""
        result.message = f"optimal in non-compulsory bytes{what}; latency not proven optimal"
    return result


class SolverContractError(RuntimeError):
    """A solver's result says something its plan does not back: a bug in that solver."""


def _check_contract(name: str, result: SolveResult, options: RunOptions) -> None:
    """What the status and bound promise, checked against the scored plan, in the problem's
    objective (``result.objective``: bytes, or latency cycles under ``"latency"``)."""
    if options.schedule is not None and tuple(result.plan.schedule) != tuple(options.schedule):
        raise SolverContractError(f"solver {name} ignored the fixed schedule")
    if result.bound is not None and result.bound > result.objective:
        raise SolverContractError(f"solver {name}: bound {result.bound} above its objective {result.objective}")
    if result.status is Status.OPTIMAL and result.bound != result.objective:
        raise SolverContractError(f"solver {name}: OPTIMAL without a bound equal to its objective")


__all__ = [
    "Status",
    "RunOptions",
    "SolveResult",
    "SolverSpec",
    "Heartbeat",
    "REGISTRY",
    "register",
    "get_solver",
    "load_all",
    "solver_names",
    "SolverLoadError",
    "parse_params",
    "run",
    "below_minimum",
    "bytes_bound_only",
    "SolverContractError",
]
