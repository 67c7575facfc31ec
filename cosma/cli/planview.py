"""A plan file read back as a drawable, exportable problem, and the atomic write every
output of ``cosma show`` and ``cosma export`` goes through.

The plan file carries its tensors table and its ops, so the problem it was made for is
rebuilt without the ONNX model (what ``cosma show`` always did): residencies, footprints
and operator names are all there is to draw or export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosma.core.errors import UsageError
from cosma.core.ir import Graph, Operator, Plan, Problem, Tensor, TensorKind
from cosma.core.paths import check_writable, write_atomically
from cosma.core.planfile import PlanFile, read_plan
from cosma.core.units import format_bytes


@dataclass(frozen=True)
class PlanView:
    """A plan file with the problem rebuilt from its tables."""

    path: Path
    planfile: PlanFile
    problem: Problem
    data: dict[str, Any]  # the raw JSON (model, solver, cost, cosma_version, ...)

    @property
    def plan(self) -> Plan:
        return self.planfile.plan

    @property
    def title(self) -> str:
        pf = self.planfile
        nc = pf.cost.get("non_compulsory_bytes")
        return (
            f"{self.problem.graph.name}: {pf.solver.get('name', '?')} at {format_bytes(pf.capacity)},"
            f" non-compulsory {format_bytes(nc)}"
        )


def load_plan_view(path: str | Path) -> PlanView:
    """Read a plan file and rebuild its problem from the tensors and ops tables;
    ``UsageError`` with the reason when the file is not a complete plan."""
    path = Path(path)
    pf = read_plan(path)
    data = json.loads(path.read_text())
    if not pf.tensors:
        raise UsageError(f"{path}: the plan file has no tensors table to draw from")
    try:
        tensors = {
            name: Tensor(name, int(t["size"]), TensorKind(t["kind"]), tuple(t.get("shape", ())))
            for name, t in pf.tensors.items()
        }
        operators = tuple(
            Operator(
                op["name"], op.get("op_type", ""), tuple(op["inputs"]), tuple(op["outputs"]), 0, op.get("onnx_node", "")
            )
            for op in data["ops"]
        )
        missing = {t for op in operators for t in (*op.inputs, *op.outputs)} - set(tensors)
        missing |= {r.tensor for r in pf.plan.residencies} - set(tensors)
        if missing:
            raise KeyError(sorted(missing)[0])
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{path}: malformed ops or tensors table ({type(e).__name__}: {e})") from None
    graph = Graph(data.get("graph") or Path(pf.model).stem, tensors, operators)
    problem = Problem(graph, pf.capacity, pf.hardware, weights_counted=pf.weights_counted, objective=pf.objective)
    return PlanView(path, pf, problem, data)


MAP_FORMATS = {".html": "html", ".htm": "html", ".png": "matplotlib", ".svg": "matplotlib", ".pdf": "matplotlib"}


def check_map_path(path: str | Path, flag: str) -> Path:
    """A map path that can be written, in a format ``write_map`` draws (fails before any solve)."""
    target = check_writable(path, flag)
    if target.suffix.lower() not in MAP_FORMATS:
        raise UsageError(f"{flag} {path}: unknown map format {target.suffix!r}; use .html, .png, .svg or .pdf")
    return target


def write_map(problem: Problem | PlanView, plan: Plan, out: str | Path, title: str = "") -> None:
    """Draw ``plan``'s memory map to ``out``; its extension picks the format: ``.html``
    an interactive page, ``.png``/``.svg``/``.pdf`` a matplotlib figure."""
    out = Path(out)
    fmt = MAP_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise UsageError(f"{out}: unknown map format {out.suffix!r}; use .html, .png, .svg or .pdf")
    if fmt == "html":
        from cosma.cli.html_map import write_html_map

        write_html_map(problem, plan, out)
    else:
        from cosma.cli.show import save_memory_map

        base = problem.problem if isinstance(problem, PlanView) else problem
        title = title or (problem.title if isinstance(problem, PlanView) else "")
        write_atomically(out, lambda tmp: save_memory_map(base, plan, tmp, title))


__all__ = ["PlanView", "load_plan_view", "MAP_FORMATS", "check_map_path", "write_map"]
