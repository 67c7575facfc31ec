"""Env throughput: steps per second with random legal actions (``mallocgame bench``), or
with a hand-made policy (``greedy``, ``lookahead``), with or without the "lookahead" rows.

The target is >= 10,000 steps/s on one core on ResNet-50 at ``M_R``. When the zoo has no
ResNet-50 yet, the benchmark says so and runs on the largest zoo model, or on a random
DAG of ResNet-50's operator count (122).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mallocgame.env import RULES, MallocGameEnv, random_action
from mallocgame.instances import ZOO_DIR, dag_graph, load_zoo_graph, make_problem, zoo_models

POLICIES = ("random", *RULES)


@dataclass(frozen=True)
class BenchResult:
    instance: str  # what ran
    steps: int  # env steps taken (decisions), resets not counted
    episodes: int  # episodes finished
    seconds: float  # wall time of the steps and resets
    cpu_seconds: float  # CPU time of this process over the same span (robust to a busy machine)
    decisions_per_episode: int

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds else float("inf")

    @property
    def steps_per_cpu_second(self) -> float:
        return self.steps / self.cpu_seconds if self.cpu_seconds else float("inf")


def bench_problem(
    model: str | None = None, capacity: str = "M_R", hardware: str = "edge-npu", dag: tuple[int, int] | None = None
):
    """(name, problem) to benchmark: ``model`` (a path), else the random DAG ``dag`` = (seed,
    operators), else ResNet-50 from the zoo, else a stand-in (see module docstring)."""
    if dag is not None:
        graph = dag_graph(dag[0], dag[1], 64)
    elif model is not None:
        graph = load_zoo_graph(str(model))
    else:
        paths = zoo_models(ZOO_DIR)
        named = [p for p in paths if Path(p).stem.lower().replace("_", "").replace("-", "") == "resnet50"]
        if named:
            graph = load_zoo_graph(str(named[0]))
        elif paths:
            graph = max((load_zoo_graph(str(p)) for p in paths), key=lambda g: len(g.operators))
        else:
            graph = dag_graph(50, 122, 64)
    problem = make_problem(graph, capacity, hardware)
    return f"{graph.name} at {capacity} ({problem.capacity} B, {len(graph.operators)} operators)", problem


def run_bench(
    steps: int = 20000,
    *,
    model: str | None = None,
    capacity: str = "M_R",
    seed: int = 0,
    dag: tuple[int, int] | None = None,
    policy: str = "random",
    lookahead: bool = False,
    all_offsets: bool = False,
    seconds: float | None = None,
) -> BenchResult:
    """Play ``policy`` (``POLICIES``: random legal actions, or a rule of ``RULES``) for
    ``steps`` env steps, resetting at episode ends; stop early after ``seconds`` of wall time.
    ``lookahead``/``all_offsets``: the env's options of those names."""
    name, problem = bench_problem(model, capacity, dag=dag)
    env = MallocGameEnv(problem=problem, lookahead=lookahead, all_offsets=all_offsets)
    rng = np.random.default_rng(seed)
    act = (lambda: random_action(env, rng)) if policy == "random" else (lambda: RULES[policy](env))
    env.reset(seed=seed)
    done_steps = episodes = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    stop = start + seconds if seconds is not None else math.inf
    while done_steps < steps and time.perf_counter() < stop:
        _, _, terminated, _, _ = env.step(act())
        done_steps += 1
        if terminated:
            episodes += 1
            env.reset()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return BenchResult(name, done_steps, episodes, seconds, cpu_seconds, max(1, len(env.tables.decisions)))


__all__ = ["POLICIES", "BenchResult", "bench_problem", "run_bench"]
