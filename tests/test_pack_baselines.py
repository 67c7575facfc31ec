"""Allocation-only baselines (best fit, greedy by size) on fixed-lifetime problems.

Every packing goes through ``cosma.packing.check_packing``, the independent overlap check.
"""

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosma.packing.greedy import PACKERS, pack_best_fit, pack_greedy_by_size
from cosma.packing.problem import Buffer, PackingProblem, check_packing, read_csv

ANCHORS = Path(__file__).resolve().parents[1].parent / "shared" / "anchors"
ANCHOR_CSVS = sorted(p for p in ANCHORS.rglob("*.csv") if "solution" not in p.name) if ANCHORS.is_dir() else []


def overlaps(problem: PackingProblem, offsets) -> list[str]:
    """``check_packing`` with the capacity lifted to the height: only overlaps and alignment."""
    height = max((offsets[b.id] + b.size for b in problem.buffers), default=0)
    return check_packing(replace(problem, capacity=max(problem.capacity, height)), offsets)


def check(problem: PackingProblem, result) -> None:
    assert set(result.offsets) == {b.id for b in problem.buffers}
    assert overlaps(problem, result.offsets) == []
    assert result.height == max((result.offsets[b.id] + b.size for b in problem.buffers), default=0)
    assert result.height >= problem.max_load()
    assert result.fits == (result.height <= problem.capacity)
    if result.fits:
        assert check_packing(problem, result.offsets) == []


@pytest.mark.skipif(not ANCHOR_CSVS, reason=f"no anchor CSVs under {ANCHORS}")
@pytest.mark.parametrize("path", ANCHOR_CSVS, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("name", sorted(PACKERS))
def test_every_anchor_csv(path, name):
    problem = read_csv(path)
    check(problem, PACKERS[name](problem))


# MiniMalloc's README example (``anchors/minimalloc/examples/input.12.csv``, built here so
# the test runs without the anchors): five 4-byte buffers, capacity 12 == max load. In size
# order (all equal: longest lifetime first) both packers give, time right, address up:
#
#   addr   [0,3)  [3,9)  [9,21)
#   8-12    b1     b2      .
#   4-8     b3     b3      b4
#   0-4     b5     b5      b5
README_EXAMPLE = PackingProblem(
    (
        Buffer("b1", 0, 3, 4),
        Buffer("b2", 3, 9, 4),
        Buffer("b3", 0, 9, 4),
        Buffer("b4", 9, 21, 4),
        Buffer("b5", 0, 21, 4),
    ),
    capacity=12,
)


def test_readme_example_packs_at_its_max_load():
    for packer in (pack_best_fit, pack_greedy_by_size):
        result = packer(README_EXAMPLE)
        check(README_EXAMPLE, result)
        assert result.height == 12 and result.fits
        assert result.offsets["b5"] == 0  # the longest-lived goes first, at the bottom


# Best fit against first fit. Sizes decrease A > B > C > F > G > D, so both place A..G the
# same way; D (3 bytes, alive [2, 4)) then sees two holes among the buffers alive with it:
# [10, 18) (8 bytes, left by B) and [24, 29) (5 bytes, left by F). Greedy by size takes the
# lowest, 10; best fit the snuggest, 24:
#
#   addr    [0,1)  [1,2)  [2,4)
#   29-33    G      G      G
#   24-29    F      .      D (24-27 best fit)
#   18-24    C      C      C
#   10-18    B      .      D (10-13 greedy by size)
#    0-10    A      A      A
TWO_HOLES = PackingProblem(
    (
        Buffer("A", 0, 4, 10),
        Buffer("B", 0, 1, 8),
        Buffer("C", 0, 4, 6),
        Buffer("F", 0, 1, 5),
        Buffer("G", 0, 4, 4),
        Buffer("D", 2, 4, 3),
    ),
    capacity=64,
)


def test_best_fit_takes_the_snuggest_hole_greedy_the_lowest():
    best = pack_best_fit(TWO_HOLES)
    greedy = pack_greedy_by_size(TWO_HOLES)
    check(TWO_HOLES, best)
    check(TWO_HOLES, greedy)
    placed = {"A": 0, "B": 10, "C": 18, "F": 24, "G": 29}
    assert {k: greedy.offsets[k] for k in placed} == placed
    assert greedy.offsets["D"] == 10
    assert best.order == "size" and best.offsets["D"] == 24
    assert best.height == greedy.height == 33


def test_alignment_is_respected():
    problem = PackingProblem(
        (Buffer("a", 0, 2, 3), Buffer("b", 0, 2, 5), Buffer("c", 1, 3, 7), Buffer("d", 2, 4, 1)),
        capacity=64,
        alignment=8,
    )
    for packer in PACKERS.values():
        result = packer(problem)
        check(problem, result)
        assert all(o % 8 == 0 for o in result.offsets.values())


@st.composite
def packing_problems(draw):
    n = draw(st.integers(1, 25))
    buffers = []
    for i in range(n):
        lower = draw(st.integers(0, 30))
        buffers.append(Buffer(str(i), lower, lower + draw(st.integers(1, 12)), draw(st.integers(1, 40))))
    alignment = draw(st.sampled_from([1, 1, 2, 8]))
    problem = PackingProblem(tuple(buffers), capacity=1, alignment=alignment)
    return replace(problem, capacity=draw(st.integers(1, problem.max_load() * 2)))


@settings(max_examples=80, deadline=None)
@given(problem=packing_problems())
def test_random_problems_pack_without_overlap(problem):
    for packer in PACKERS.values():
        check(problem, packer(problem))
