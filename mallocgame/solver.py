"""The trained agent as a solver: ``cosma optimize --solver muzero``.

Within a wall-time budget per plan (the run's time limit, else ``MuZeroParams.time_limit``)
it completes several candidate trajectories of the game and returns the cheapest by the
cost model (the problem's objective, ties broken by non-compulsory bytes):

1. the operator orders: the schedule solver's (the lowest peak live bytes over
   ``cosma.schedules.orders.candidate_orders``, as the tiers measure orders; given a share
   of the budget) and best-greedy's (the env's default), or only the one the caller fixes;
2. on each order the env's greedy rule (XLA's; milliseconds), then on the first order the
   agent's search (no Gumbel noise: deterministic) and the greedy rule's one-step lookahead,
   then the same on the second order while the budget lasts.

Under ``objective="latency"`` the env (objective from the problem) adds its timing phase,
where each load's start is a decision; the agent, the rules and the choice of the winner all
play that game and compare latencies. A checkpoint trained on the bytes game loads (the
observation shapes are the same) and plays the timing phase as well as it generalizes to it.

A trajectory that reaches its share of the budget is finished by the greedy rule, so each
one is a complete plan. The env only offers legal actions and its finished episode is a
complete plan, so every plan is valid (and ``cosma.core.interface.run`` checks the one
returned). ``stats`` says which trajectory won and what each one moved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cosma.core.errors import UsageError
from cosma.core.interface import RunOptions, SolveResult, Status, bytes_bound_only, register
from cosma.core.ir import OpName, Problem
from cosma.core.paths import AGENT_CHECKPOINT

# torch and the agent are imported when the solver runs, not when the registry loads it.
MODELS = ("learned", "true")  # as mallocgame.agent.policy.MODELS
ORDERS = ("both", "schedule", "best-greedy")  # which operator orders the solver plays (MuZeroParams.orders)

DEFAULT_CHECKPOINT = str(AGENT_CHECKPOINT)
RESERVE = 0.05  # share of the budget kept for building and checking the plan after the last game


@dataclass(frozen=True)
class MuZeroParams:
    """Settings of the muzero solver."""

    checkpoint: str = DEFAULT_CHECKPOINT  # a checkpoint written by `mallocgame train` (default: the shipped one)
    num_simulations: int = (
        0  # model calls per decision (more searches deeper, runs slower); 0: the model's, chosen on validation
    )
    max_considered_actions: int = 8  # actions sequential halving starts with at the root
    model: str = "learned"  # plan with the "learned" dynamics (MuZero) or the "true" env (AlphaZero-style)
    c_scale: float = 0.0  # weight of q-values against the policy prior; 0: the model's, chosen on validation
    min_q_range: float = (
        -1.0
    )  # floor of the search's q normalization range; negative: the model's, chosen on validation
    time_limit: float = 10.0  # seconds per plan when the run gives no time limit
    orders: str = "both"  # "both": the schedule solver's order and best-greedy's; or only one of them
    rules: bool = True  # also complete the greedy rule and its lookahead and keep the cheapest; False: the agent alone
    order_share: float = 0.2  # share of the budget the schedule solver's order search may take


@lru_cache(maxsize=4)
def _cached_agent(path: str, mtime: float):
    from mallocgame.agent.checkpoint import load_agent

    return load_agent(path)


def schedule_order(problem: Problem, time_limit: float) -> tuple[OpName, ...]:
    """The schedule solver's order: the lowest peak live bytes over the candidate orders,
    as ``cosma.schedules.tiers`` measures them (the order that sets ``M_P``); with under a
    tenth of a second, over the two cheap orders only."""
    from cosma.schedules.orders import CHEAP_ORDERS, PEAK_ORDERS
    from cosma.schedules.tiers import compute_tiers

    kinds = PEAK_ORDERS if time_limit >= 0.1 else CHEAP_ORDERS
    tiers = compute_tiers(problem.graph, problem.hardware, problem.weights_counted, time_limit=time_limit, kinds=kinds)
    return tiers.m_p_schedule


@dataclass
class Trajectory:
    """One completed game: who played it, on which order, and what it cost."""

    player: str  # "greedy", "agent" or "lookahead"
    order: str  # "schedule" or "best-greedy" (or "given")
    plan: object  # cosma.core.ir.Plan
    cost: object  # cosma.core.cost.Cost
    decisions: int
    late_decisions: int  # played by the greedy rule after the trajectory's deadline
    seconds: float

    def key(self, objective: str) -> tuple[int, int]:
        return self.cost.value(objective), self.cost.non_compulsory_bytes


def play_rule(env, rule, deadline: float | None) -> tuple[dict, int, int]:
    """One episode of a hand-made rule (``mallocgame.env.RULES``), the greedy rule after
    ``deadline``; the observation's lookahead rows are not computed (the lookahead rule
    computes its own completions). Returns (terminal info, decisions, late decisions)."""
    from mallocgame.env import greedy_action

    env.reset()
    env.unwrapped.stop_lookahead()
    done, decisions, late = False, 0, 0
    info: dict = {}
    while not done:
        past = deadline is not None and time.perf_counter() > deadline
        _, _, done, _, info = env.step(greedy_action(env) if past else rule(env))
        decisions += 1
        late += past
    return info, decisions, late


@register("muzero", "mallocMuZero: the cheapest of the agent's and the rules' games in a time budget", MuZeroParams)
def solve_muzero(problem: Problem, params: MuZeroParams, options: RunOptions) -> SolveResult:
    start = time.perf_counter()  # the budget counts loading torch and the checkpoint too
    if params.model not in MODELS:
        raise UsageError(f"muzero: unknown model {params.model!r}; known: {', '.join(MODELS)}")
    if params.orders not in ORDERS:
        raise UsageError(f"muzero: unknown orders {params.orders!r}; known: {', '.join(ORDERS)}")
    import numpy as np
    import torch

    from mallocgame.agent.envs import make_problem_env
    from mallocgame.agent.policy import (
        INFERENCE_C_SCALE,
        INFERENCE_MIN_Q_RANGE,
        INFERENCE_SIMULATIONS,
        make_policy,
    )
    from mallocgame.agent.rollout import play_episodes
    from mallocgame.agent.search import SearchParams
    from mallocgame.env import RULES, greedy_action

    budget = max(0.0, options.time_limit if options.time_limit is not None else params.time_limit)
    deadline = start + budget * (1.0 - RESERVE)
    path = str(Path(params.checkpoint))
    agent = _cached_agent(path, Path(path).stat().st_mtime if Path(path).exists() else 0.0)
    torch.set_num_threads(max(1, options.threads))
    search = SearchParams(
        num_simulations=params.num_simulations or INFERENCE_SIMULATIONS[params.model],
        max_num_considered_actions=params.max_considered_actions,
        gumbel_scale=0.0,
        discount=agent.config.get("discount", 1.0),
        c_scale=params.c_scale or INFERENCE_C_SCALE[params.model],
        min_q_range=params.min_q_range if params.min_q_range >= 0 else INFERENCE_MIN_Q_RANGE[params.model],
    )

    # The orders, each with its env (the same order twice is played once).
    wanted: list[tuple[str, tuple[OpName, ...] | None]] = []
    if options.schedule is not None:
        wanted.append(("given", tuple(options.schedule)))
    else:
        if params.orders in ("both", "schedule"):
            wanted.append(("schedule", schedule_order(problem, budget * params.order_share)))
        if params.orders in ("both", "best-greedy"):
            wanted.append(("best-greedy", None))
    envs: list[tuple[str, object]] = []
    for name, schedule in wanted:
        env = make_problem_env(agent.settings, problem, schedule=schedule)
        if all(env.schedule != other.schedule for _, other in envs):
            envs.append((name, env))

    found: list[Trajectory] = []

    def keep(player: str, order: str, info: dict, decisions: int, late: int, t0: float) -> None:
        found.append(Trajectory(player, order, info["plan"], info["cost"], decisions, late, time.perf_counter() - t0))

    for name, env in envs:  # the greedy rule on every order first: a plan in milliseconds
        t0 = time.perf_counter()
        keep("greedy", name, *play_rule(env, RULES["greedy"], None), t0)
    # Then the agent and the lookahead rule, first order first; each gets a share of the
    # time left (the first order's weigh double), so a slow one leaves the others theirs.
    rng = np.random.default_rng(options.seed)
    policy = make_policy(agent.net, search, params.model)
    players = ("agent", "lookahead") if params.rules else ("agent",)
    plays = [(k, name, env, player) for k, (name, env) in enumerate(envs) for player in players]
    weights = [2.0 if k == 0 else 1.0 for k, *_ in plays]
    for i, (k, name, env, player) in enumerate(plays):
        left = deadline - time.perf_counter()
        if left <= 0 and k > 0:  # the first order always gets its games (finished by the greedy rule)
            break
        own = time.perf_counter() + max(0.0, left) * weights[i] / sum(weights[i:])
        t0 = time.perf_counter()
        if player == "agent":
            (episode,) = play_episodes(policy, [env], rng, deadline=own, fallback=greedy_action)
            keep("agent", name, episode.final_info, episode.steps, episode.fallback_steps, t0)
        else:
            keep("lookahead", name, *play_rule(env, RULES["lookahead"], own), t0)

    rank = {"agent": 0, "lookahead": 1, "greedy": 2}  # on equal cost, name the agent
    best = min(found, key=lambda t: (*t.key(problem.objective), rank[t.player]))
    first_agent = next((t for t in found if t.player == "agent"), None)
    env0 = envs[0][1]
    nc = best.cost.non_compulsory_bytes
    latency = problem.objective == "latency"
    stats = {
        "winner": f"{best.player}@{best.order}",
        "trajectories": [
            {
                "player": t.player,
                "order": t.order,
                "nc_bytes": t.cost.non_compulsory_bytes,
                "latency_cycles": t.cost.latency_cycles,
                "decisions": t.decisions,
                "late_decisions": t.late_decisions,
                "seconds": round(t.seconds, 3),
            }
            for t in found
        ],  # fmt: skip
        "agent_bytes": None if first_agent is None else first_agent.cost.non_compulsory_bytes,
        "agent_latency": None if first_agent is None else first_agent.cost.latency_cycles,
        "decisions": best.decisions,
        "searched_decisions": 0 if first_agent is None else first_agent.decisions - first_agent.late_decisions,
        "episode_return": -(best.cost.latency_cycles if latency else nc) / env0.scale,  # on the first order's scale
        "baseline_bytes": env0.baseline.nc_bytes,
        "baseline_latency": env0.baseline.latency_cycles,
        "checkpoint": path,
        "num_simulations": search.num_simulations,
        "model": params.model,
        "orders": [name for name, _ in envs],
    }
    late = [f"{t.player}@{t.order}" for t in found if t.late_decisions]
    message = f"time budget reached: {', '.join(late)} finished by the greedy rule" if late else ""
    figure = f"{best.cost.latency_cycles:,} cycles, {nc} NC bytes" if latency else f"{nc} NC bytes"
    options.say(f"muzero: {len(found)} games in {time.perf_counter() - start:.1f} s, best {stats['winner']} {figure}")
    if nc == 0:  # nothing non-compulsory: 0 is a lower bound, so this is optimal
        return bytes_bound_only(problem, SolveResult(Status.OPTIMAL, best.plan, bound=0, stats=stats, message=message))
    return SolveResult(Status.FEASIBLE, best.plan, stats=stats, message=message)


__all__ = ["MuZeroParams", "solve_muzero", "schedule_order", "play_rule", "Trajectory", "DEFAULT_CHECKPOINT"]
