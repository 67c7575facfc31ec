"""Benchmark of the exact packer on the allocation anchors (not a test: it takes minutes).

    python -m cosma.harness.bench_packer [--time-limit 60] [--out results/packing.md] [--anchors DIR] [--seed 0]
        [--ray [ADDRESS]]

Runs ``cosma.packing.exact.pack`` on every CSV under the anchors folder (MiniMalloc's
challenging set and examples, OmniMalloc's small set) at the capacity in its file name,
and writes one markdown table: instance, buffers, capacity, max load, status, height,
seconds, method, and the height of MiniMalloc's reference solution where there is one.
``--ray``: the instances as Ray tasks (``cosma.harness.tables.map_cells``), rows in the same order.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from cosma.core.paths import ANCHORS_DIR
from cosma.harness.tables import add_ray_option, map_cells
from cosma.packing.exact import PackParams, pack
from cosma.packing.problem import height, read_csv, read_solution

DEFAULT_ANCHORS = ANCHORS_DIR
GROUPS = ("minimalloc/challenging", "minimalloc/examples", "omnimalloc_small")


def instances(anchors: Path) -> list[Path]:
    found = []
    for group in GROUPS:
        found.extend(sorted((anchors / group).glob("*.csv")))
    return found


def reference_height(anchors: Path, path: Path) -> int | None:
    """Height of MiniMalloc's reference solution for ``path``, if the anchors hold one."""
    solution = anchors / "minimalloc" / "reference_solutions" / path.name.replace(".csv", ".solution.csv")
    if not solution.exists():
        return None
    return height(read_csv(path), read_solution(solution))


def pack_row(cell: tuple[int, Path, Path, float, PackParams]) -> tuple[int, dict]:
    """One instance packed: ``(index, row)``; a module-level function, a Ray task's."""
    index, anchors, path, time_limit, params = cell
    problem = read_csv(path)
    result = pack(problem, params, time_limit=time_limit)
    return index, {
        "instance": str(path.relative_to(anchors)),
        "buffers": len(problem.buffers),
        "capacity": problem.capacity,
        "max_load": problem.max_load(),
        "status": result.status.value,
        "height": result.height,
        "reference": reference_height(anchors, path),
        "seconds": result.seconds,
        "method": result.stats.get("method", ""),
        "detail": result.stats.get("strategy", result.stats.get("cpsat_status", "")),
        "nodes": result.stats.get("nodes", ""),
    }


def run(anchors: Path, time_limit: float, params: PackParams, log=print, ray: str | None = None) -> list[dict]:
    """Every anchor instance, here or as Ray tasks (``ray``); rows in the instances' order."""
    cells = [(i, anchors, path, time_limit, params) for i, path in enumerate(instances(anchors))]
    rows: dict[int, dict] = {}
    for index, row in map_cells(pack_row, cells, ray):
        rows[index] = row
        log(
            f"{row['instance']}: {row['status']} height={row['height']} in {row['seconds']:.2f}s "
            f"({row['method']} {row['detail']}, nodes {row['nodes']})"
        )
    return [rows[i] for i in sorted(rows)]


def markdown(rows: list[dict], time_limit: float, params: PackParams) -> str:
    packed = [r for r in rows if r["instance"].startswith("minimalloc/challenging") and r["status"] == "optimal"]
    challenging = [r for r in rows if r["instance"].startswith("minimalloc/challenging")]
    lines = [
        "# Exact packer on the allocation anchors",
        "",
        (
            f"`python -m cosma.harness.bench_packer --time-limit {time_limit:g}`"
            f" on {platform.node() or 'this machine'} "
            f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Method `{params.method}`, seed {params.seed}."
        ),
        "",
        f"MiniMalloc challenging set: {len(packed)} of {len(challenging)} packed at capacity within {time_limit:g} s.",
        "",
        "| instance | buffers | capacity | max load | status | height | reference height | seconds | method | nodes |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        method = r["method"] + (f" ({r['detail']})" if r["detail"] else "")
        lines.append(
            f"| {r['instance']} | {r['buffers']} | {r['capacity']} | {r['max_load']} | {r['status']} | "
            f"{r['height'] if r['height'] is not None else '-'} | "
            f"{r['reference'] if r['reference'] is not None else '-'} | {r['seconds']:.2f} | {method} | {r['nodes']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cosma.harness.bench_packer", description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per instance (default 60)")
    parser.add_argument("--out", type=Path, default=Path("results/packing.md"), help="markdown table to write")
    parser.add_argument("--anchors", type=Path, default=DEFAULT_ANCHORS, help="folder holding the anchors")
    parser.add_argument("--method", choices=("auto", "search", "cpsat"), default="auto")
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomized restarts (default 0)")
    add_ray_option(parser, "instances", "2 CPUs")
    args = parser.parse_args(argv)
    if not args.anchors.is_dir():
        print(f"error: no anchors folder at {args.anchors}; pass --anchors", file=sys.stderr)
        return 2
    params = PackParams(method=args.method, seed=args.seed)
    rows = run(args.anchors, args.time_limit, params, lambda line: print(line, flush=True), args.ray)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(rows, args.time_limit, params))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
