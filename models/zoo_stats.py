"""The statistics table of the model zoo (models/README.md), regenerated from the files.

For every ONNX file under ``models/zoo/`` and ``models/nas/``: its ONNX node count, what
lowering makes of it (operators, tensors, folded and aliased nodes), the total
multiply-accumulates, and two capacity figures on the ``edge-npu`` preset (64-byte
alignment), in the file's element type (fp32), each with weights counted and not:

* ``M_R`` = ``cosma.core.analysis.min_capacity``: the largest operator's operands, the
  tightest scratchpad any plan can use;
* naive peak = ``cosma.core.analysis.peak_live_bytes`` of the file order: the live bytes
  with no spills when the operators run in the framework's order.

Run from the repository root::

    python models/zoo_stats.py            # print the table
    python models/zoo_stats.py --write    # replace the table in models/README.md
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import onnx  # noqa: E402

from cosma.core.analysis import min_capacity, peak_live_bytes  # noqa: E402
from cosma.core.hardware import get_hardware  # noqa: E402
from cosma.core.ir import Problem  # noqa: E402
from cosma.core.onnx_lower import graph_stats, load_model  # noqa: E402

BEGIN, END = "<!-- zoo-stats:begin -->", "<!-- zoo-stats:end -->"
MiB = 1024 * 1024


def sources() -> dict[str, str]:
    """Model name -> where it comes from, as recorded in the export script."""
    from models.export_zoo import ZOO

    return {e.name: e.source for e in ZOO}


def model_files() -> list[str]:
    return sorted(glob.glob(os.path.join(HERE, "zoo", "*.onnx"))) + sorted(
        glob.glob(os.path.join(HERE, "nas", "*.onnx"))
    )


def row(path: str, source: str) -> list[str]:
    nodes = len(onnx.load(path, load_external_data=False).graph.node)
    graph = load_model(path)
    stats = graph_stats(graph)
    hardware = get_hardware("edge-npu")
    order = [op.name for op in graph.operators]
    figures = []
    for counted in (True, False):
        problem = Problem(graph, hardware.capacity, hardware, weights_counted=counted)
        figures.append((min_capacity(problem), peak_live_bytes(problem, order)))
    (mr_w, peak_w), (mr_a, peak_a) = figures
    rel = os.path.relpath(path, HERE)
    gmacs = sum(op.macs for op in graph.operators) / 1e9
    return [
        f"`{rel}`",
        source,
        str(nodes),
        str(stats["operators"]),
        str(stats["tensors"]),
        f"{stats['folded']}/{stats['aliases']}",
        f"{gmacs:.2f}",
        f"{mr_a / MiB:.2f}",
        f"{peak_a / MiB:.2f}",
        f"{mr_w / MiB:.2f}",
        f"{peak_w / MiB:.2f}",
    ]


HEADER = [
    "file",
    "source",
    "ONNX nodes",
    "operators",
    "tensors",
    "folded/alias",
    "GMACs",
    "M_R act. (MiB)",
    "naive peak act. (MiB)",
    "M_R +weights (MiB)",
    "naive peak +weights (MiB)",
]


def table() -> str:
    names = sources()
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for path in model_files():
        name = os.path.splitext(os.path.basename(path))[0]
        lines.append("| " + " | ".join(row(path, names.get(name, ""))) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print (or write into models/README.md) the zoo statistics table.")
    parser.add_argument("--write", action="store_true", help="replace the table in models/README.md")
    args = parser.parse_args(argv)
    text = table()
    if not args.write:
        print(text)
        return 0
    readme = os.path.join(HERE, "README.md")
    with open(readme) as f:
        content = f.read()
    if BEGIN not in content or END not in content:
        print(f"{readme}: markers {BEGIN} ... {END} not found", file=sys.stderr)
        return 1
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(readme, "w") as f:
        f.write(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
