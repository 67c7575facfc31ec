"""The fuzzer: every solver on random instances, every verdict cross-checked::

    python -m cosma.harness.fuzz [--instances N | --minutes M] [--seed S] [--out results/fuzz.md] [--recheck-overruns N]
        [--solvers ...] [--time-limit 1] [--muzero] [--resume] [--cache PATH] [--ray [ADDRESS]]
    python -m cosma.harness.fuzz --replay "randwire_graph(83, 99, 4, 0.75, channels=1, hw=4)" \\
        --preset edge-npu --weights --capacity 1024 --solver ilp --time-limit 1

An instance is a graph from one of the generators of ``cosma.core.synthetic`` (``random_dag``,
``branchy_dag``, ``randwire_graph``, a small ``transformer_stack``; 4-120 operators; tensors
from empty to megabytes), a hardware preset, a weight setting and a capacity (``M_R - 1``,
``M_R``, ``M_H``, ``M_P``, a size between ``M_R`` and ``M_P``, or above ``M_P``; ``M_P`` from
the two cheap orders). Every solver (``muzero`` only with ``--muzero``) runs on
it through ``cosma.core.interface.run`` with a short time limit, and the fuzzer records:

* **exception**: anything raised other than the two below;
* **invalid**: ``PlanInvalid`` (the validator rejected the plan);
* **contract**: ``SolverContractError`` (status or bound not backed by the plan);
* **false optimal**: OPTIMAL while another solver found a cheaper valid plan;
* **bound above**: a lower bound above the cost of some solver's valid plan;
* **overrun**: wall time around ``run`` above ``limit x 1.05 + 2 s``;
* **not refused**: at ``M_R - 1`` anything but INFEASIBLE without a plan;
* **false infeasible**: INFEASIBLE at a capacity >= ``M_R`` (a plan always exists there).

Each failure is written with a one-line reproducer (the ``--replay`` command above).

Instance ``i`` of the stream ``--seed S`` is drawn from a generator of its own (seeded with
``"S:i"``), so any instance is computed without the ones before it: as a Ray task
(``--ray``), or after a stop. Every finished instance is appended to a cache (JSON lines,
gzip-compressed: ``results/<out>-cache.jsonl.gz`` beside the table, unless ``--cache``), and
the table is written from the whole cache: ``--resume`` continues the stream from the
instances the cache lacks, so a long run accumulates over runs and sessions (``--instances
N`` then counts the cached ones too).
Ctrl-C (or SIGTERM, for a run in the background) keeps every finished instance and writes
the table.

An overrun measured while other jobs held the cores says little about the solver:
``--recheck-overruns N`` first reruns every cached overrun ``N`` times alone, keeps those
seconds in its record, and the table lists an overrun that no rerun repeats apart from the
failures (one that repeats stays a failure).
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import random
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cosma.core.analysis import min_capacity
from cosma.core.errors import UsageError
from cosma.core.hardware import PRESETS, get_hardware
from cosma.core.ir import Graph, Problem
from cosma.core.options import EXIT_INTERRUPTED, run_command
from cosma.core.paths import write_atomically, write_text_atomically
from cosma.harness.tables import add_ray_option, map_cells

GENERATORS = ("random_dag", "branchy_dag", "randwire_graph", "transformer_stack")
CHECKS = (
    "exception",
    "invalid",
    "contract",
    "false optimal",
    "bound above",
    "overrun",
    "not refused",
    "false infeasible",
)
CAPACITY_KINDS = ("M_R-1", "M_R", "between", "M_H", "M_P", "above")


def overran(wall: float, limit: float) -> bool:
    return wall > limit * 1.05 + 2.0


@dataclass(frozen=True)
class Case:
    call: str  # the generator call, e.g. "random_dag(3, 12, size_range=(0, 64))"
    preset: str
    weights: bool
    capacity: int
    capacity_kind: str  # which of CAPACITY_KINDS (or "given")

    def graph(self) -> Graph:
        return build(self.call)

    def problem(self) -> Problem:
        return Problem(self.graph(), self.capacity, get_hardware(self.preset), self.weights)

    def reproducer(self, solver: str, time_limit: float) -> str:
        return (
            f'python -m cosma.harness.fuzz --replay "{self.call}" --preset {self.preset}'
            f" {'--weights' if self.weights else '--no-weights'} --capacity {self.capacity}"
            f" --solver {solver} --time-limit {time_limit:g}"
        )


def build(call: str) -> Graph:
    """The graph of a generator call written as Python (literal arguments only)."""
    from cosma.core import synthetic

    node = ast.parse(call, mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.func.id not in GENERATORS:
        raise ValueError(f"not a call of one of {', '.join(GENERATORS)}: {call!r}")
    args = [ast.literal_eval(a) for a in node.args]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    return getattr(synthetic, node.func.id)(*args, **kwargs)


def _call(name: str, *args, **kwargs) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def sample_call(rng: random.Random) -> str:
    """A generator call of 4-120 operators, sizes from empty to megabytes."""
    gen = rng.choice(GENERATORS)
    seed = rng.randrange(1000)
    if gen == "random_dag":
        sizes = rng.choice([(0, 0), (0, 4), (1, 64), (0, 4096), (1024, 65536), (1, 1 << 20)])
        return _call(
            gen,
            seed,
            rng.randint(4, 120),
            max_inputs=rng.randint(1, 4),
            size_range=sizes,
            weight_prob=rng.choice([0.0, 0.3, 0.9]),
            skip_prob=rng.choice([0.0, 0.3, 0.7]),
        )
    if gen == "branchy_dag":
        return _call(gen, seed, rng.randint(4, 120), max_size=rng.choice([1, 16, 4096, 1 << 20]))
    if gen == "randwire_graph":
        n = rng.randint(3, 119)
        k = min(rng.choice([2, 4, 6]), n - 1)
        return _call(
            gen,
            seed,
            n,
            k,
            rng.choice([0.0, 0.25, 0.75, 1.0]),
            channels=rng.choice([1, 4, 16, 64]),
            hw=rng.choice([1, 2, 4, 8, 28]),
        )
    heads = rng.choice([1, 2, 4])
    return _call(
        gen,
        rng.randint(1, 7),
        d_model=heads * rng.choice([1, 4, 16]),
        seq=rng.choice([1, 3, 16, 64]),
        heads=heads,
        mlp=rng.choice([1, 4]),
        seed=rng.choice([None, seed]),
    )


def sample_case(rng: random.Random, tier_time: float = 1.0) -> Case:
    """A case; ``M_P`` here is the best of the two cheap orders (file, memory-aware): a
    fuzzer needs capacities between the tiers, not proven ones, and no scheduler search."""
    from cosma.schedules.orders import CHEAP_ORDERS
    from cosma.schedules.tiers import compute_tiers

    call = sample_call(rng)
    graph = build(call)
    preset = rng.choice(sorted(PRESETS))
    weights = rng.random() < 0.5
    kind = rng.choice(CAPACITY_KINDS)
    hw = PRESETS[preset]
    if kind in ("M_R-1", "M_R"):
        m_r = min_capacity(Problem(graph, hw.capacity, hw, weights))
        return Case(call, preset, weights, m_r - (kind == "M_R-1"), kind)
    tiers = compute_tiers(graph, hw, weights, time_limit=tier_time, kinds=CHEAP_ORDERS)
    if kind == "between":
        capacity = rng.randint(tiers.m_r, max(tiers.m_r, tiers.m_p))
    elif kind == "above":
        capacity = tiers.m_p + rng.randint(1, max(1, tiers.m_p))
    else:
        capacity = tiers.capacity(kind)
    return Case(call, preset, weights, capacity, kind)


def case_at(seed: int, index: int) -> Case:
    """Instance ``index`` of the stream ``seed``, from a generator of its own."""
    return sample_case(random.Random(f"{seed}:{index}"))


@dataclass
class Outcome:
    solver: str
    wall: float
    status: str | None = None  # the solver's status, None when it raised
    objective: int | None = None
    bound: int | None = None
    has_plan: bool = False
    error: str = ""  # "exception", "invalid" or "contract"
    message: str = ""
    # An overrun's reruns, alone (``--recheck-overruns``): wall seconds of each.
    recheck: list[float] = field(default_factory=list)


@dataclass
class Failure:
    check: str
    solver: str
    case: Case
    detail: str


@dataclass
class Report:
    instances: int = 0
    runs: Counter = field(default_factory=Counter)  # per solver
    plans: Counter = field(default_factory=Counter)
    counts: dict[str, Counter] = field(default_factory=lambda: {c: Counter() for c in CHECKS})
    failures: list[Failure] = field(default_factory=list)
    generators: Counter = field(default_factory=Counter)
    capacity_kinds: Counter = field(default_factory=Counter)
    presets: Counter = field(default_factory=Counter)
    settings: Counter = field(default_factory=Counter)
    solver_seconds: float = 0.0  # wall time of every solver run, summed
    # Overruns that every rerun alone undid (a run starved on a busy machine): (failure, reruns' seconds)
    unreproduced: list[tuple[Failure, list[float]]] = field(default_factory=list)

    def total(self, check: str) -> int:
        return sum(self.counts[check].values())


def run_one(problem: Problem, solver: str, time_limit: float) -> Outcome:
    from cosma.core.interface import RunOptions, SolverContractError, run
    from cosma.core.validator import PlanInvalid

    started = time.perf_counter()
    try:
        result = run(problem, solver, options=RunOptions(time_limit=time_limit))
    except PlanInvalid as e:
        return Outcome(solver, time.perf_counter() - started, error="invalid", message=_short(e))
    except SolverContractError as e:
        return Outcome(solver, time.perf_counter() - started, error="contract", message=_short(e))
    except Exception as e:  # noqa: BLE001 - a fuzzer records every failure
        tb = traceback.extract_tb(e.__traceback__)[-1]
        where = f" at {tb.filename.rsplit('/', 1)[-1]}:{tb.lineno}"
        return Outcome(
            solver, time.perf_counter() - started, error="exception", message=f"{type(e).__name__}{where}: {_short(e)}"
        )
    return Outcome(
        solver,
        time.perf_counter() - started,
        result.status.value,
        result.objective,
        result.bound,
        result.plan is not None,
    )


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:197] + "..."


def run_case(case: Case, solvers: list[str], time_limit: float) -> list[Outcome]:
    """Every solver on the case, through ``run``."""
    problem = case.problem()
    return [run_one(problem, s, time_limit) for s in solvers]


def check_case(case: Case, solvers: list[str], time_limit: float, report: Report, log) -> list[Outcome]:
    """Run every solver on the case and record the verdicts in ``report``."""
    outcomes = run_case(case, solvers, time_limit)
    judge(case, outcomes, time_limit, report, log)
    return outcomes


def case_m_r(case: Case) -> int:
    return min_capacity(case.problem())


def judge(case: Case, outcomes: list[Outcome], time_limit: float, report: Report, log, m_r: int | None = None) -> None:
    """Cross-check the solvers' outcomes on one case into ``report`` (a failure also to
    ``log``); ``m_r``: the case's ``M_R`` when known."""
    m_r = case_m_r(case) if m_r is None else m_r
    costs = [o.objective for o in outcomes if o.objective is not None]
    best = min(costs, default=None)
    report.instances += 1
    report.generators[case.call.split("(")[0]] += 1
    report.capacity_kinds[case.capacity_kind] += 1
    report.presets[case.preset] += 1
    report.settings["weights" if case.weights else "activations"] += 1

    def fail(check: str, o: Outcome, detail: str) -> None:
        report.counts[check][o.solver] += 1
        report.failures.append(Failure(check, o.solver, case, detail))
        log(f"  FAIL {check} {o.solver}: {detail}\n    {case.reproducer(o.solver, time_limit)}")

    for o in outcomes:
        report.solver_seconds += o.wall
        report.runs[o.solver] += 1
        report.plans[o.solver] += o.has_plan
        if o.error:
            fail(o.error, o, o.message)
            continue
        if o.status == "optimal" and best is not None and o.objective is not None and o.objective > best:
            fail("false optimal", o, f"optimal at {o.objective} B, another solver's valid plan moves {best} B")
        if o.status == "optimal" and o.objective is None and best is not None:
            fail("false optimal", o, f"optimal without a plan, another solver has one ({best} B)")
        if o.bound is not None and best is not None and o.bound > best:
            fail("bound above", o, f"bound {o.bound} B above a valid plan's {best} B")
        if overran(o.wall, time_limit):
            detail = f"{o.wall:.1f} s with a {time_limit:g} s limit"
            if o.recheck and not any(overran(w, time_limit) for w in o.recheck):
                report.unreproduced.append((Failure("overrun", o.solver, case, detail), o.recheck))
            else:
                fail("overrun", o, detail)
        if case.capacity < m_r and (o.status != "infeasible" or o.has_plan):
            fail("not refused", o, f"capacity {case.capacity} < M_R = {m_r}: status {o.status}")
        if case.capacity >= m_r and o.status == "infeasible":
            fail("false infeasible", o, f"infeasible at {case.capacity} B >= M_R = {m_r} B: {o.message}")


# --------------------------------------------------------------------------- the cache


def run_instance(job: tuple[int, int, tuple[str, ...], float]) -> dict:
    """Instance ``(seed, index, solvers, time_limit)`` drawn and run: its cache record. A
    module-level function of one picklable argument: what a Ray task runs."""
    seed, index, solvers, time_limit = job
    case = case_at(seed, index)
    outcomes = run_case(case, list(solvers), time_limit)
    return {
        "seed": seed,
        "index": index,
        "solvers": list(solvers),
        "time_limit": time_limit,
        "case": asdict(case),
        "m_r": case_m_r(case),
        "outcomes": [asdict(o) for o in outcomes],
    }


def record_settings(record: dict) -> tuple:
    return record["seed"], tuple(record["solvers"]), record["time_limit"]


def _open_cache(path: Path, mode: str):
    """The cache as text: gzip-compressed when its name ends in ``.gz`` (appending adds a gzip
    member per record, which ``gzip`` reads as one stream; ``compact_cache`` merges them)."""
    return gzip.open(path, mode + "t", encoding="utf-8") if path.suffix == ".gz" else path.open(mode)


def read_cache(path: Path) -> list[dict]:
    """The cache's records (a line or gzip member cut short by a kill is skipped), each index once."""
    if not path.exists():
        return []
    records: dict[int, dict] = {}
    with _open_cache(path, "r") as f:
        try:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                records.setdefault(record["index"], record)
        except (EOFError, gzip.BadGzipFile):
            pass  # a member cut short by a kill: the records before it stand
    return [records[i] for i in sorted(records)]


def compact_cache(path: Path) -> None:
    """Rewrite a ``.gz`` cache as one gzip stream (one member per record compresses each alone:
    about 4x larger). Plain caches are left as they are."""
    if path.suffix != ".gz" or not path.exists():
        return
    write_cache(path, read_cache(path))


def write_cache(path: Path, records: list[dict]) -> None:
    """Replace the cache with ``records``, atomically (one gzip stream for a ``.gz`` cache)."""

    def write(tmp: Path) -> None:
        with _open_cache(tmp, "w") as f:  # the temporary file keeps the suffix, so the format
            f.writelines(json.dumps(record) + "\n" for record in records)

    write_atomically(path, write)


def add_record(record: dict, report: Report, log) -> None:
    case = Case(**record["case"])
    outcomes = [Outcome(**o) for o in record["outcomes"]]
    judge(case, outcomes, record["time_limit"], report, log, record["m_r"])


def recheck_overruns(path: Path, times: int, log) -> int:
    """Rerun each cached overrun ``times`` times, one run at a time, and keep their wall seconds
    in the record (``Outcome.recheck``): an overrun that no rerun repeats was the machine's (a
    run starved while other jobs held the cores), and the table lists it apart instead of
    counting it. Returns how many overruns were rerun; the cache is rewritten atomically."""
    records = read_cache(path)
    rerun = 0
    for record in records:
        case = Case(**record["case"])
        for o in record["outcomes"]:
            if o.get("recheck") or not overran(o["wall"], record["time_limit"]):
                continue
            problem = case.problem()
            o["recheck"] = [round(run_one(problem, o["solver"], record["time_limit"]).wall, 3) for _ in range(times)]
            log(f"[{record['index']}] {o['solver']}: {o['wall']:.1f} s, rerun alone: {o['recheck']} s")
            rerun += 1

    if rerun:
        write_cache(path, records)
    return rerun


def fuzz(
    seed: int,
    instances: int | None,
    minutes: float | None,
    solvers: list[str],
    time_limit: float,
    log,
    report: Report | None = None,
    on_progress=None,
    cache: str | Path | None = None,
    ray: str | None = None,
    cpus: int = 2,
) -> Report:
    """Instances of the seeded stream until ``report`` holds ``instances`` or ``minutes`` run
    out; ``on_progress(report)`` every 25 instances (the table is rewritten as it grows).

    ``cache``: a JSON-lines file of finished instances; the records already there (same seed,
    solvers and time limit, else ``UsageError``) are counted first and skipped, every new one
    is appended as it finishes. ``ray``: instances as Ray tasks (``cosma.harness.tables``).
    Ctrl-C propagates; ``report`` and the cache keep what finished."""
    report = report if report is not None else Report()
    settings = (seed, tuple(solvers), time_limit)
    done: set[int] = set()
    path = None if cache is None else Path(cache)
    if path is not None:
        for record in read_cache(path):
            if record_settings(record) != settings:
                raise UsageError(
                    f"{path} holds instances of seed {record['seed']}, time limit {record['time_limit']:g} s"
                    f" and solvers {' '.join(record['solvers'])}: resume with those, or use another --cache"
                )
            add_record(record, report, lambda _: None)
            done.add(record["index"])
        if done:
            log(f"{path}: {len(done)} instances cached")
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = None if minutes is None else time.monotonic() + 60 * minutes

    def more() -> bool:
        if _STOP.is_set():  # a solver may have caught the interrupt as its own (best plan so far)
            raise KeyboardInterrupt
        return (instances is None or report.instances < instances) and (deadline is None or time.monotonic() < deadline)

    def jobs():
        index = 0
        while True:
            if index not in done:
                yield (seed, index, tuple(solvers), time_limit)
            index += 1

    # Batches: the stream is endless and a deadline ends it, so Ray gets a few tasks per CPU
    # at a time (one at a time here).
    batch = 1 if ray is None else 2 * max(1, cpus)
    stream = jobs()
    try:
        with _ray(ray, cpus):
            while more():
                wanted = batch if instances is None else min(batch, instances - report.instances)
                todo = [next(stream) for _ in range(wanted)]
                for record in map_cells(run_instance, todo, ray, cpus):
                    case = record["case"]
                    log(
                        f"[{record['index']}] {case['call']} {case['preset']}"
                        f" {'weights' if case['weights'] else 'activations'} {case['capacity_kind']}"
                    )
                    if path is not None:
                        with _open_cache(path, "a") as f:
                            f.write(json.dumps(record) + "\n")
                    add_record(record, report, log)
                    if on_progress is not None and report.instances % 25 == 0:
                        on_progress(report)
    finally:
        if path is not None:
            compact_cache(path)  # also after Ctrl-C: what finished is kept, in one stream
    return report


def _ray(address: str | None, cpus: int):
    """One Ray session for the whole run (``map_cells`` then uses it batch after batch)."""
    import contextlib

    if address is None:
        return contextlib.nullcontext()
    from cosma.core.distributed import ray_session

    return ray_session(address, cpus)


def render(
    report: Report, solvers: list[str], time_limit: float, command: str, seconds: float, cache: Path | None = None
) -> str:
    import platform

    total_failures = sum(report.total(c) for c in CHECKS)
    head = " | ".join(CHECKS)
    source = (
        f"Generated by `{command}` in {seconds:.0f} s"
        if cache is None
        else f"Generated by `{command}` from its cache `{cache}` (every instance finished by this and earlier runs:"
        f" {report.solver_seconds / 60:.0f} min of solver time; this run {seconds:.0f} s)"
    )
    lines = [
        "# Fuzzing every solver",
        "",
        f"{source} ({time.strftime('%Y-%m-%d')}, Python"
        f" {platform.python_version()}, a 2-core machine shared with other jobs: the overrun rule leaves 5% + 2 s).",
        f"Each solver ran with a {time_limit:g} s limit on every instance through `cosma.core.interface.run`.",
        "",
        f"**Summary**: {report.instances} instances, {sum(report.runs.values())} solver runs,"
        f" {sum(report.plans.values())} plans; failures: "
        + ", ".join(f"{c} {report.total(c)}" for c in CHECKS)
        + f" ({total_failures} in all).",
        "",
        "Instances by generator: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.generators.items()))
        + "; by capacity: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.capacity_kinds.items()))
        + "; by preset: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.presets.items()))
        + "; by setting: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.settings.items()))
        + ".",
        "",
        f"| solver | runs | plans | {head} |",
        "|---|---:|---:|" + "---:|" * len(CHECKS),
    ]
    for s in solvers:
        cells = " | ".join(str(report.counts[c][s]) for c in CHECKS)
        lines.append(f"| {s} | {report.runs[s]} | {report.plans[s]} | {cells} |")
    lines += ["", "## Failures", ""]
    if not report.failures:
        lines.append("None.")
    for f in report.failures:
        lines.append(f"* **{f.check}**, `{f.solver}`: {f.detail}  ")
        lines.append(f"  `{f.case.reproducer(f.solver, time_limit)}`")
    if report.unreproduced:
        lines += [
            "",
            "## Overruns that did not repeat",
            "",
            f"{len(report.unreproduced)} runs overran while the machine was busier than its cores"
            " (`--recheck-overruns` reran each alone, several times: within the limit every time), so they are"
            " not counted above:",
            "",
        ]
        for f, walls in report.unreproduced:
            lines.append(f"* `{f.solver}`: {f.detail}; alone: {', '.join(f'{w:.2f}' for w in walls)} s  ")
            lines.append(f"  `{f.case.reproducer(f.solver, time_limit)}`")
    return "\n".join(lines) + "\n"


def replay(args, log) -> int:
    case = Case(args.replay, args.preset, args.weights, args.capacity, "given")
    report = Report()
    solvers = [args.solver] if args.solver else default_solvers(args.muzero)
    for o in check_case(case, solvers, args.time_limit, report, log):
        print(
            f"{o.solver}: {o.error or o.status} {o.objective} B (bound {o.bound}) {o.wall:.2f} s {o.message}".rstrip()
        )
    return 1 if report.failures else 0


def default_solvers(muzero: bool) -> list[str]:
    from cosma.core.interface import solver_names

    return [s for s in solver_names() if muzero or s != "muzero"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cosma.harness.fuzz", description=__doc__.split("\n\n")[0])
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--instances", type=int, default=None, help="number of instances (default 50)")
    amount.add_argument("--minutes", type=float, default=None, help="run until this many minutes have passed")
    parser.add_argument("--seed", type=int, default=0, help="seed of the instance stream")
    parser.add_argument("--out", default="results/fuzz.md", help="markdown file to write")
    parser.add_argument("--solvers", nargs="+", default=None, help="solvers to run (default all but muzero)")
    parser.add_argument("--muzero", action="store_true", help="run the muzero solver too")
    parser.add_argument("--time-limit", type=float, default=1.0, help="seconds per solver run (default 1)")
    parser.add_argument("--replay", default=None, help="run one case: a generator call, e.g. 'random_dag(3, 12)'")
    parser.add_argument("--preset", default="edge-npu", help="--replay: hardware preset")
    parser.add_argument("--weights", action=argparse.BooleanOptionalAction, default=True, help="--replay: setting")
    parser.add_argument("--capacity", type=int, default=None, help="--replay: capacity in bytes")
    parser.add_argument("--solver", default=None, help="--replay: one solver (default all)")
    parser.add_argument("--resume", action="store_true", help="continue from the instances in the cache")
    parser.add_argument("--cache", default=None, help="finished instances, JSON lines (default: from --out)")
    parser.add_argument(
        "--recheck-overruns",
        type=int,
        default=0,
        metavar="N",
        help="first rerun each cached overrun N times alone; one that no rerun repeats is listed apart (default 0)",
    )
    add_ray_option(parser, "instances", "--cpus CPUs")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of a local Ray (default 2)")
    args = parser.parse_args(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.replay is not None:
        if args.capacity is None:
            parser.error("--replay needs --capacity")
        return replay(args, log)
    solvers = args.solvers or default_solvers(args.muzero)
    instances = args.instances if args.instances is not None or args.minutes is not None else 50
    cache = Path(args.cache) if args.cache else default_cache(args.out)
    if not args.resume and cache.exists() and cache.stat().st_size > 0:
        raise UsageError(f"{cache} holds finished instances: --resume continues them, or remove it to start over")
    started = time.monotonic()
    command = "python -m cosma.harness.fuzz " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)

    def write(report: Report, note: str = "run in progress: instances so far") -> None:
        text = render(report, solvers, args.time_limit, command.strip(), time.monotonic() - started, cache)
        write_text_atomically(args.out, text if not note else text + f"\n({note})\n")

    report = Report()
    signal.signal(signal.SIGTERM, _interrupted)  # a run in the background stops like Ctrl-C
    if args.recheck_overruns > 0 and cache.exists():
        log(f"{cache}: {recheck_overruns(cache, args.recheck_overruns, log)} overruns rerun")
    try:
        fuzz(
            args.seed, instances, args.minutes, solvers, args.time_limit, log, report, write, cache, args.ray, args.cpus
        )
    except KeyboardInterrupt:
        write(report, "interrupted: the instances finished so far; --resume continues")
        log(f"interrupted: wrote {args.out}: {report.instances} instances (cached in {cache})")
        return EXIT_INTERRUPTED
    write(report, "")
    log(f"wrote {args.out}: {report.instances} instances (cached in {cache})")
    return 0


# Set by SIGTERM: the solvers answer a KeyboardInterrupt with their best plan so far, so the
# run checks this between instances too, or it would go on after the first one.
_STOP = threading.Event()


def _interrupted(signum, frame) -> None:
    _STOP.set()
    raise KeyboardInterrupt


def default_cache(out: str) -> Path:
    """``results/fuzz.md`` -> ``results/fuzz-cache.jsonl.gz``: beside the table and kept in git,
    so that a 10,000-instance table can be accumulated over sessions (about 2.3 KB an instance,
    0.2 KB compressed)."""
    path = Path(out)
    return path.parent / f"{path.stem}-cache.jsonl.gz"


if __name__ == "__main__":
    raise SystemExit(run_command("python -m cosma.harness.fuzz", main))
