"""The fuzzer (cosma.harness.fuzz) and the scale benchmark's plumbing: a small seeded slice
of instances finds no failure in the fast solvers, and planted failures are caught."""

from __future__ import annotations

import random
import time
from types import SimpleNamespace

import pytest

from cosma.core.interface import REGISTRY, RunOptions, SolveResult, Status, register
from cosma.core.ir import Problem
from cosma.core.paths import write_text_atomically
from cosma.harness import bench_scale, fuzz

FAST = ["best-greedy", "xla-msa", "file-bestfit-lru", "mem-bestfit-belady", "exact"]


def test_seeded_slice_has_no_failures():
    started = time.monotonic()
    report = fuzz.fuzz(seed=7, instances=6, minutes=None, solvers=FAST, time_limit=1.0, log=lambda _: None)
    assert report.instances == 6
    assert sum(report.plans.values()) > 0
    for check in ("exception", "invalid", "contract", "false optimal", "bound above", "not refused"):
        assert report.total(check) == 0, [f for f in report.failures if f.check == check]
    assert time.monotonic() - started < 60


def test_cases_cover_generators_and_capacities():
    rng = random.Random(0)
    calls = [fuzz.sample_call(rng) for _ in range(80)]
    assert {c.split("(")[0] for c in calls} == set(fuzz.GENERATORS)
    for call in calls[:20]:
        graph = fuzz.build(call)
        assert 4 <= len(graph.operators) <= 120
    with pytest.raises(ValueError):
        fuzz.build("__import__('os').system('true')")


@pytest.fixture
def liar():
    """A solver that claims OPTIMAL with a bound equal to its own (bad) plan's cost, and a
    refusal-ignoring one: the run() contract cannot see either, only the cross-check can."""
    from solvers.baselines import solve_baseline
    from solvers.online import ArenaParams

    @register("test-liar", "claims optimality for the LRU plan", ArenaParams)
    def solve(problem: Problem, params, options: RunOptions) -> SolveResult:
        result = solve_baseline(problem, "file-bestfit-lru", params, options)
        from cosma.core.cost import evaluate

        result.bound = evaluate(problem, result.plan).non_compulsory_bytes
        result.status = Status.OPTIMAL
        return result

    yield "test-liar"
    del REGISTRY["test-liar"]


def test_false_optimality_is_caught(liar):
    # A capacity where LRU spills more than exact: found by scanning a few seeds.
    for seed in range(40):
        case = fuzz.Case(f"random_dag({seed}, 10, size_range=(1, 64))", "ideal", True, 0, "given")
        from cosma.core.analysis import min_capacity
        from cosma.core.hardware import PRESETS

        hw = PRESETS["ideal"]
        m_r = min_capacity(Problem(case.graph(), 1, hw, True))
        case = fuzz.Case(case.call, "ideal", True, m_r, "M_R")
        report = fuzz.Report()
        fuzz.check_case(case, [liar, "exact"], 5.0, report, lambda _: None)
        if report.total("false optimal"):
            failure = report.failures[0]
            assert failure.solver == liar and "--solver test-liar" in failure.case.reproducer(liar, 5.0)
            return
    pytest.fail("no instance where the liar's plan was beaten")


def test_below_m_r_is_refused_by_every_fast_solver():
    report = fuzz.Report()
    from cosma.core.analysis import min_capacity
    from cosma.core.hardware import PRESETS

    call = "randwire_graph(3, 12, 4, 0.75, channels=4, hw=4)"
    hw = PRESETS["edge-npu"]
    m_r = min_capacity(Problem(fuzz.build(call), 1, hw, False))
    fuzz.check_case(fuzz.Case(call, "edge-npu", False, m_r - 1, "M_R-1"), FAST, 1.0, report, lambda _: None)
    assert report.failures == [] and sum(report.plans.values()) == 0


def test_overrun_rule():
    assert not fuzz.overran(3.0, 1.0) and fuzz.overran(3.1, 1.0) and bench_scale.within_limit(65.0, 60.0)


def test_bench_scale_partial_run_keeps_the_full_table(tmp_path):
    args = SimpleNamespace(
        sizes=[1000], solvers=list(bench_scale.SOLVERS), families=list(bench_scale.FAMILIES), big_solvers=[], out=None
    )
    assert bench_scale.output_path(SimpleNamespace(**{**vars(args), "update": False})) == bench_scale.PARTIAL_OUT
    assert bench_scale.output_path(SimpleNamespace(**{**vars(args), "update": True})) == bench_scale.DEFAULT_OUT
    full = SimpleNamespace(**{**vars(args), "sizes": list(bench_scale.SIZES), "update": False})
    assert bench_scale.output_path(full) == bench_scale.DEFAULT_OUT
    target = tmp_path / "t.md"
    write_text_atomically(target, "one")  # what bench_scale and the fuzzer write their tables with
    write_text_atomically(target, "two")
    assert target.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["t.md"]


def test_bench_scale_child_runs_one_solver():
    row = bench_scale.child(
        {
            "family": "transformer",
            "size": 48,
            "hardware": "edge-npu",
            "weights": True,
            "capacity": 1 << 20,
            "solver": "best-greedy",
            "time_limit": 5,
        }
    )
    assert row["valid"] and row["status"] in ("optimal", "feasible") and row["peak_mib"] > 0


@pytest.mark.parametrize("name", ["cache.jsonl", "cache.jsonl.gz"])
def test_a_cached_run_resumes_where_it_stopped(tmp_path, monkeypatch, name):
    from cosma.core.errors import UsageError

    cache, solvers, quiet = tmp_path / name, ["best-greedy", "xla-msa"], lambda _: None
    real = fuzz.run_instance

    def stopped_at_2(job):
        if job[1] == 2:
            raise KeyboardInterrupt  # Ctrl-C during instance 2
        return real(job)

    monkeypatch.setattr(fuzz, "run_instance", stopped_at_2)
    report = fuzz.Report()
    with pytest.raises(KeyboardInterrupt):
        fuzz.fuzz(3, 4, None, solvers, 1.0, quiet, report, cache=cache)
    assert report.instances == 2 and [r["index"] for r in fuzz.read_cache(cache)] == [0, 1]
    monkeypatch.setattr(fuzz, "run_instance", real)

    # The rerun counts the cached instances, runs only the missing ones, and its table covers all.
    ran = []
    resumed = fuzz.fuzz(3, 4, None, solvers, 1.0, lambda line: ran.append(line), cache=cache)
    assert resumed.instances == 4 and sum(resumed.runs.values()) == 8
    assert [r["index"] for r in fuzz.read_cache(cache)] == [0, 1, 2, 3]
    assert [line.split("]")[0] for line in ran if line.startswith("[")] == ["[2", "[3"]
    assert fuzz.case_at(3, 1) == fuzz.Case(**fuzz.read_cache(cache)[1]["case"])
    assert "**Summary**: 4 instances, 8 solver runs" in fuzz.render(resumed, solvers, 1.0, "fuzz", 1.0, cache)
    with pytest.raises(UsageError):  # another time limit: not the same stream of verdicts
        fuzz.fuzz(3, 5, None, solvers, 2.0, quiet, cache=cache)


def test_a_compressed_cache_keeps_what_a_kill_left_whole(tmp_path):
    """Appending to a ``.gz`` cache adds a gzip member per record; a member cut short by a kill
    loses that record only, and compaction rewrites the rest as one stream."""
    import gzip
    import json

    cache = tmp_path / "c.jsonl.gz"
    for i in range(3):
        with gzip.open(cache, "at", encoding="utf-8") as f:
            f.write(json.dumps({"index": i}) + "\n")
    whole = cache.read_bytes()
    member = gzip.compress(b'{"index": 3}\n')
    cache.write_bytes(whole + member[: len(member) // 2])  # the last member cut short
    assert [r["index"] for r in fuzz.read_cache(cache)] == [0, 1, 2]
    fuzz.compact_cache(cache)
    assert [r["index"] for r in fuzz.read_cache(cache)] == [0, 1, 2]
    assert len(cache.read_bytes()) < len(whole)


def test_an_overrun_no_rerun_repeats_is_listed_apart(tmp_path, monkeypatch):
    """``--recheck-overruns``: an overrun is rerun alone; when no rerun overruns, the table lists
    it apart instead of counting it; one that repeats stays a failure."""
    cache, solvers = tmp_path / "c.jsonl.gz", ["best-greedy", "xla-msa"]
    fuzz.fuzz(5, 2, None, solvers, 1.0, lambda _: None, cache=cache)
    records = fuzz.read_cache(cache)
    for record in records:  # as if the machine had starved best-greedy on both instances
        record["outcomes"][0]["wall"] = 9.0
    fuzz.write_cache(cache, records)
    real = fuzz.run_one
    slow = {"calls": 0}

    def rerun(problem, solver, time_limit):
        slow["calls"] += 1
        outcome = real(problem, solver, time_limit)
        if slow["calls"] <= 2:  # the first instance's reruns overrun again
            outcome.wall = 9.0
        return outcome

    monkeypatch.setattr(fuzz, "run_one", rerun)
    assert fuzz.recheck_overruns(cache, 2, lambda _: None) == 2
    assert fuzz.recheck_overruns(cache, 2, lambda _: None) == 0  # already rechecked: nothing to rerun
    report = fuzz.Report()
    for record in fuzz.read_cache(cache):
        fuzz.add_record(record, report, lambda _: None)
    assert report.total("overrun") == 1 and len(report.unreproduced) == 1
    text = fuzz.render(report, solvers, 1.0, "fuzz", 1.0, cache)
    assert "## Overruns that did not repeat" in text and "overrun 1" in text


def test_a_stop_request_ends_the_run_even_when_a_solver_caught_the_interrupt(tmp_path):
    """SIGTERM raises KeyboardInterrupt, which a solver may answer with its best plan so far:
    the run then stops between instances, keeping what finished."""
    cache = tmp_path / "c.jsonl.gz"
    fuzz.fuzz(4, 1, None, ["best-greedy"], 1.0, lambda _: None, cache=cache)
    fuzz._STOP.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            fuzz.fuzz(4, 3, None, ["best-greedy"], 1.0, lambda _: None, cache=cache)
    finally:
        fuzz._STOP.clear()
    assert [r["index"] for r in fuzz.read_cache(cache)] == [0]
