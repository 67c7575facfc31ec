"""The plan file: the JSON contract between solvers, tools and users (see README, "The plan file").

A plan file carries everything needed to re-check it: the model path and the lowering
options (so ``cosma validate`` rebuilds the same graph), the hardware, the capacity and
setting, the schedule, every residency, the cost the solver's run was scored at, the
objective it was solved for (``"objective": {"name", "value", "latency_cycles",
"non_compulsory_bytes"}``: the name and both figures; files written before it had none and
read as ``"bytes"``), and what the solver said about it.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cosma.core.cost import Cost, evaluate
from cosma.core.errors import UsageError
from cosma.core.ir import OBJECTIVES, Hardware, Plan, Problem, Residency
from cosma.core.paths import write_atomically

FORMAT = "cosma-plan/1"


@dataclass(frozen=True)
class PlanFile:
    """A plan read back from disk, with the settings needed to rebuild its problem."""

    plan: Plan
    model: str  # path of the ONNX file as given to the solver ("" for graphs built in code)
    dtype_bytes: int | None
    input_shapes: dict[str, tuple[int, ...]]
    hardware: Hardware
    capacity: int
    weights_counted: bool
    cost: dict[str, int]
    solver: dict[str, Any]
    tensors: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch: int | None = 1  # what a symbolic leading dim of the graph inputs was fixed to (None: left)
    objective: str = "bytes"  # what the plan was solved for (Problem.objective); "bytes" in older files


def plan_to_dict(
    problem: Problem,
    plan: Plan,
    *,
    model: str = "",
    dtype_bytes: int | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    batch: int | None = 1,
    solver: dict[str, Any] | None = None,
    cost: Cost | None = None,
) -> dict[str, Any]:
    graph = problem.graph
    cost = cost or evaluate(problem, plan)
    ops = []
    for step, name in enumerate(plan.schedule):
        op = graph.operators[graph.op_index[name]]
        ops.append(
            {
                "step": step,
                "name": op.name,
                "onnx_node": op.onnx_node,
                "op_type": op.op_type,
                "inputs": list(op.inputs),
                "outputs": list(op.outputs),
            }
        )
    return {
        "format": FORMAT,
        "model": model,
        "graph": graph.name,
        "lowering": {
            "dtype_bytes": dtype_bytes,
            "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()},
            "batch": batch,
        },
        "hardware": asdict(problem.hardware),
        "capacity": problem.capacity,
        "alignment": problem.alignment,
        "weights_counted": problem.weights_counted,
        "ops": ops,
        "folded": [asdict(f) for f in graph.folded],
        "tensors": {
            name: {"size": t.size, "kind": t.kind.value, "shape": list(t.shape)} for name, t in graph.tensors.items()
        },
        "residencies": [
            {"tensor": r.tensor, "start": r.start, "end": r.end, "offset": r.offset, "spilled": r.spilled}
            for r in plan.residencies
        ],
        "cost": cost.as_dict(),
        "objective": {
            "name": problem.objective,
            "value": cost.value(problem.objective),
            "latency_cycles": cost.latency_cycles,
            "non_compulsory_bytes": cost.non_compulsory_bytes,
        },
        "solver": solver or {},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cosma_version": version("cosma"),
    }


def write_plan(path: str | Path, problem: Problem, plan: Plan, **meta: Any) -> None:
    """Write ``plan`` as JSON; ``meta`` as for ``plan_to_dict`` (model, dtype_bytes, solver, ...).
    Written to a temporary file and renamed, so a failure leaves no half-written plan
    (``UsageError`` naming the path)."""
    text = json.dumps(plan_to_dict(problem, plan, **meta), indent=1) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(text))


def solver_record(result: Any) -> dict[str, Any]:
    """The ``solver`` section from a ``cosma.core.interface.SolveResult``."""
    stats = {k: v for k, v in result.stats.items() if isinstance(v, (int, float, str, bool, type(None)))}
    return {
        "name": result.solver,
        "status": result.status.value,
        "seconds": round(result.seconds, 4),
        "bound": result.bound,
        "gap": result.gap,
        "message": result.message,
        "stats": stats,
    }


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return value


def _typed(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise ValueError(f"{what} must be a {kind.__name__}, got {value!r}")
    return value


def read_plan(path: str | Path) -> PlanFile:
    """Read a plan file; ``UsageError`` with the reason when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a readable JSON plan file ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f'{path}: not a cosma plan file (expected "format": "{FORMAT}")')
    try:
        hw = Hardware(**data["hardware"])
        if _int(hw.alignment, "hardware.alignment") < 1:
            raise ValueError("hardware.alignment must be at least 1")
        plan = Plan(
            schedule=tuple(
                _typed(op["name"], str, "op name")
                for op in sorted(data["ops"], key=lambda op: _int(op["step"], "step"))
            ),
            residencies=tuple(
                Residency(
                    _typed(r["tensor"], str, "tensor"),
                    _int(r["start"], "start"),
                    _int(r["end"], "end"),
                    _int(r["offset"], "offset"),
                    _typed(r.get("spilled", False), bool, "spilled"),
                )
                for r in data["residencies"]
            ),
        )
        lowering = data.get("lowering", {})
        objective = _typed(data.get("objective", {}), dict, "objective").get("name", "bytes")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective.name must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        return PlanFile(
            plan=plan,
            model=data.get("model", ""),
            dtype_bytes=lowering.get("dtype_bytes"),
            input_shapes={k: tuple(v) for k, v in lowering.get("input_shapes", {}).items()},
            hardware=hw,
            capacity=int(data["capacity"]),
            weights_counted=bool(data["weights_counted"]),
            cost=data.get("cost", {}),
            solver=data.get("solver", {}),
            tensors=data.get("tensors", {}),
            batch=None if lowering.get("batch", 1) is None else _int(lowering.get("batch", 1), "lowering.batch"),
            objective=objective,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{path}: malformed plan file ({type(e).__name__}: {e})") from None


__all__ = ["FORMAT", "PlanFile", "plan_to_dict", "write_plan", "solver_record", "read_plan"]
