"""Regenerate ``results/baselines.md``: every greedy baseline on every zoo model.

    python -m cosma.harness.bench_baselines [--models NAME_OR_PATH ...] [--out results/baselines.md]
                                      [--hardware edge-npu] [--exact-tiers SECONDS] [--ray [ADDRESS]]

For each model (``models/zoo/*.onnx`` lowered with 1-byte elements, as in COSMA's
evaluation), each setting (weights counted in the scratchpad or streamed) and each
budget tier (``M_R``, ``M_H``, ``M_P``), it runs every registered baseline through
``cosma.core.interface.run`` (so every plan is validated) and tabulates non-compulsory bytes
and estimated latency.

``M_P`` here is the lowest peak live bytes over the baselines' own schedules (file
order and the memory-aware list schedule), so it is an upper bound on the true ``M_P``;
``M_H = (M_R + M_P) / 2`` rounded down to the alignment. ``--exact-tiers SECONDS``
takes all three from ``cosma.schedules.tiers`` instead (exact schedulers within the time limit).
With no zoo model present it runs on seeded synthetic graphs instead, and says so in the output.
``--ray``: each model x setting (its tiers and every baseline) as a Ray task
(``cosma.harness.tables.map_cells``); the rows come in the same order.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from cosma.core.analysis import min_capacity, peak_live_bytes
from cosma.core.hardware import get_hardware
from cosma.core.interface import run
from cosma.core.ir import Bytes, Graph, Hardware, Problem
from cosma.core.paths import RESULTS_DIR, ZOO_DIR
from cosma.harness.tables import add_ray_option, map_cells
from cosma.schedules.orders import SCHEDULES
from solvers.baselines import BASELINES

ZOO = ZOO_DIR
SOLVERS = (*BASELINES, "best-greedy")
SETTINGS = ((True, "activations + weights"), (False, "activations only"))


@dataclass(frozen=True)
class Row:
    model: str
    setting: str
    tier: str
    capacity: Bytes
    results: dict[str, tuple[Bytes, int, float]]  # solver -> (non-compulsory bytes, latency cycles, seconds)


def tiers(problem: Problem) -> dict[str, Bytes]:
    """``M_R``, ``M_H`` and ``M_P`` (over the baselines' schedules) of ``problem``."""
    m_r = min_capacity(problem)
    m_p = min(peak_live_bytes(problem, make(problem)) for make in SCHEDULES.values())
    a = problem.alignment
    m_h = max(m_r, (m_r + m_p) // 2 // a * a)
    return {"M_R": m_r, "M_H": m_h, "M_P": max(m_r, m_p)}


def project_tiers(problem: Problem, time_limit: float) -> dict[str, Bytes]:
    """The project's tiers (``cosma.schedules.tiers``: ``M_P`` from every scheduler available, the
    exact ones included, within ``time_limit`` seconds per setting)."""
    from cosma.schedules.tiers import compute_tiers

    t = compute_tiers(problem.graph, problem.hardware, problem.weights_counted, time_limit=time_limit)
    return {"M_R": t.m_r, "M_H": t.m_h, "M_P": t.m_p}


def bench_graph(graph: Graph, hardware: Hardware, log=print, tier_seconds: float | None = None) -> list[Row]:
    """Every baseline on ``graph`` at each setting and tier; ``tier_seconds`` set: tiers
    from ``cosma.schedules.tiers`` with that time limit, else from the baselines' own schedules."""
    rows = []
    for weights_counted, setting in SETTINGS:
        rows += _logged(bench_setting((graph, hardware, weights_counted, setting, tier_seconds)), log)
    return rows


def bench_setting(cell: tuple[Graph, Hardware, bool, str, float | None]) -> list[Row]:
    """One setting of one graph, every tier and baseline: ``bench_graph``'s unit of work,
    a module-level function of one picklable argument (a Ray task's)."""
    graph, hardware, weights_counted, setting, tier_seconds = cell
    base = Problem(graph, hardware.capacity, hardware, weights_counted)
    budgets = tiers(base) if tier_seconds is None else project_tiers(base, tier_seconds)
    rows = []
    for tier, capacity in budgets.items():
        problem = replace(base, capacity=capacity)
        results = {}
        for name in SOLVERS:
            r = run(problem, name)
            results[name] = (r.cost.non_compulsory_bytes, r.cost.latency_cycles, r.seconds)
        rows.append(Row(graph.name, setting, tier, capacity, results))
    return rows


def _logged(rows: list[Row], log) -> list[Row]:
    for r in rows:
        best = min(v[0] for v in r.results.values())
        slowest = max(v[2] for v in r.results.values())
        log(f"  {r.model} | {r.setting} | {r.tier} = {r.capacity} B: best {best} B, slowest baseline {slowest:.2f} s")
    return rows


def bench(
    graphs: list[Graph], hardware: Hardware, log=print, tier_seconds: float | None = None, ray: str | None = None
) -> list[Row]:
    """``bench_graph`` on every graph, here or with each graph x setting as a Ray task
    (``ray``); the rows in the same order either way."""
    if ray is None:
        rows: list[Row] = []
        for i, graph in enumerate(graphs, 1):
            log(f"[{i}/{len(graphs)}] {graph.name}: {len(graph.operators)} operators, {len(graph.tensors)} tensors")
            rows += bench_graph(graph, hardware, log, tier_seconds)
        return rows
    cells = list(enumerate((g, hardware, w, setting, tier_seconds) for g in graphs for w, setting in SETTINGS))
    log(f"{len(cells)} model x setting cells as Ray tasks")
    done = {i: _logged(rows, log) for i, rows in map_cells(_numbered_setting, cells, ray)}
    return [r for i in sorted(done) for r in done[i]]


def _numbered_setting(item: tuple[int, tuple]) -> tuple[int, list[Row]]:
    index, cell = item
    return index, bench_setting(cell)


def load_graphs(models: list[str] | None, log=print) -> tuple[list[Graph], str]:
    """The graphs to run and where they came from."""
    paths = []
    for m in models or []:
        p = Path(m)
        paths.append(p if p.suffix == ".onnx" else ZOO / f"{m}.onnx")
    if not models:
        paths = sorted(ZOO.glob("*.onnx"))
    if not paths:
        from cosma.core.synthetic import random_dag

        log("no model in models/zoo: running on seeded synthetic graphs")
        return [random_dag(seed, n_ops=60, max_inputs=3, size_range=(1024, 65536)) for seed in range(3)], "synthetic"
    from cosma.core.onnx_lower import load_model

    graphs = []
    for p in paths:
        log(f"lowering {p}")
        graphs.append(load_model(p, dtype_bytes=1))
    return graphs, "zoo"


def render(rows: list[Row], hardware: Hardware, source: str, seconds: float, exact_tiers: bool = False) -> str:
    m_p = (
        ["`M_P` comes from `cosma.schedules.tiers` (the best schedule any scheduler found, exact ones included);"]
        if exact_tiers
        else [
            "`M_P` is the lowest peak live bytes over file order and the memory-aware list schedule",
            "(an upper bound on the exact `M_P`);",
        ]
    )
    out = [
        "# Greedy baselines",
        "",
        "Generated by `python -m cosma.harness.bench_baselines`; every plan passed the validator.",
        f"Hardware preset `{hardware.name}` ({hardware.description}); models lowered with 1-byte elements"
        + (" (synthetic graphs: no zoo model was present)." if source == "synthetic" else "."),
        "Each cell: non-compulsory bytes (spills + reloads) / estimated latency in cycles.",
        *m_p,
        "`M_H = (M_R + M_P) / 2`. The best traffic of each row is in bold.",
        f"Total time: {seconds:.1f} s.",
        "",
    ]
    for model in dict.fromkeys(r.model for r in rows):
        out += [f"## {model}", ""]
        out.append("| setting | tier | capacity (B) | " + " | ".join(SOLVERS) + " |")
        out.append("|---|---|---:|" + "---:|" * len(SOLVERS))
        for r in (r for r in rows if r.model == model):
            best = min(v[0] for v in r.results.values())
            cells = []
            for name in SOLVERS:
                nc, lat, _ = r.results[name]
                cell = f"{nc:,} / {lat:,}"
                cells.append(f"**{cell}**" if nc == best else cell)
            out.append(f"| {r.setting} | {r.tier} | {r.capacity:,} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cosma.harness.bench_baselines", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--models", nargs="*", help="zoo model names or .onnx paths (default: models/zoo/*.onnx)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "baselines.md"), help="markdown file to write")
    parser.add_argument("--hardware", default="edge-npu", help="hardware preset (default: edge-npu)")
    parser.add_argument(
        "--exact-tiers",
        type=float,
        metavar="SECONDS",
        help="take the tiers from cosma.schedules.tiers (exact schedulers, this time limit per setting)"
        " instead of the baselines' own schedules",
    )
    add_ray_option(parser, "model x setting cells", "2 CPUs")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    hardware = get_hardware(args.hardware)
    start = time.perf_counter()
    graphs, source = load_graphs(args.models, log)
    rows = bench(graphs, hardware, log, args.exact_tiers, args.ray)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(rows, hardware, source, time.perf_counter() - start, args.exact_tiers is not None))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
