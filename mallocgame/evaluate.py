"""Evaluate a trained agent: ``mallocgame eval CHECKPOINT``.

Plays every instance of the held-out evaluation set once with search (no Gumbel noise:
deterministic; ``--model true`` searches with the true env instead of the learned model)
and prints, per instance, the agent's non-compulsory bytes against ``best-greedy`` (the
env's baseline) and, with ``--exact-time-limit``, the exact optimum for the same schedule
where the exact solver proves it within the limit. ``--player greedy`` plays the env's
greedy rule instead, on the same instances: the reference the agent should improve on;
``--player lookahead`` plays its one-step lookahead (``mallocgame.env.lookahead_action``).
Every plan goes through the validator. ``--out FILE.md`` also writes the table.
``--objective latency`` plays the latency game instead (``mallocgame.env``: rewards are
latency changes, with a timing phase for the start of each load) and every figure is the
cost model's latency in cycles (the baseline: best-greedy under that objective).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cosma.core.cost import evaluate as cost_of
from cosma.core.ir import OBJECTIVES
from cosma.core.validator import check
from mallocgame.agent.checkpoint import LoadedAgent, load_agent
from mallocgame.agent.envs import (
    VALIDATION_DAGS,
    evaluation_instances,
    make_problem_env,
    validation_instances,
)
from mallocgame.agent.policy import (
    INFERENCE_C_SCALE,
    INFERENCE_MIN_Q_RANGE,
    INFERENCE_SIMULATIONS,
    MODELS,
    Decision,
    make_policy,
)  # fmt: skip
from mallocgame.agent.rollout import play_episodes
from mallocgame.agent.search import SearchParams

UNITS = {"bytes": "NC bytes", "latency": "cycles"}  # what the tables' figures count, per objective


@dataclass
class Row:
    name: str
    agent: int  # agent's non-compulsory bytes (under objective latency, every figure of the row is cycles)
    greedy: int  # best-greedy's
    exact: int | None  # proven optimum for the same schedule, None if unknown
    ratio: float  # -(episode return): agent / best-greedy bytes (over the largest tensor's size when greedy is 0)

    @property
    def verdict(self) -> str:
        return "win" if self.agent < self.greedy else "tie" if self.agent == self.greedy else "loss"


# The checkpoint's search, or a hand-made policy on the same instances: the env's greedy
# rule (the reference the agent learned from) or its one-step lookahead.
PLAYERS = ("agent", "greedy", "lookahead")


class RulePolicy:
    """A hand-made policy of ``mallocgame.env`` (``greedy_action``: XLA's rule, keep at the
    best fit when legal, else evict; ``lookahead_action``: the legal action with the
    cheapest greedy completion) in the search policies' calling convention, so the same
    envs and table can show the references."""

    def __init__(self, rule: str = "greedy"):
        from mallocgame.env import RULES

        self.choose = RULES[rule]

    def bind(self, envs: list) -> "RulePolicy":
        self.envs = envs
        return self

    def __call__(self, observations, rng, gumbel_scale=None) -> Decision:
        actions = np.array([self.choose(env) for env in self.envs])
        return Decision(actions, np.zeros((len(actions), 0)), np.zeros(len(actions)))


def exact_optimum(problem, schedule, time_limit: float) -> int | None:
    """The exact solver's proven optimum for this schedule, or None (absent, not proven in time)."""
    if time_limit <= 0:
        return None
    from cosma.core.interface import RunOptions, Status, get_solver, run

    try:
        get_solver("exact")
    except ValueError:
        return None
    result = run(problem, "exact", options=RunOptions(time_limit=time_limit, schedule=tuple(schedule)))
    return result.objective if result.status is Status.OPTIMAL else None


def checkpoint_instances(agent: LoadedAgent, *, validation: bool = False, models: str | None = None,
                         dags: int | None = None) -> list:  # fmt: skip
    """The instances a checkpoint is judged on: the held-out evaluation set its run named
    (``models``, ``dags`` override it), or the validation set of ``dags`` DAGs."""
    if validation:
        return validation_instances(agent.settings.hardware, n_dags=dags or VALIDATION_DAGS)
    cfg = agent.config
    return evaluation_instances(
        cfg.get("eval_models", "resnet18") if models is None else models,
        cfg.get("eval_dags", 8) if dags is None else dags, agent.settings.hardware,
    )  # fmt: skip


def evaluate_checkpoint(
    checkpoint: str, *, models: str | None = None, dags: int | None = None, simulations: int | None = None,
    exact_time_limit: float = 0.0, seed: int = 0, model: str = "learned", c_scale: float | None = None,
    validation: bool = False, player: str = "agent", min_q_range: float | None = None, log=print,
    objective: str = "bytes",
) -> list[Row]:  # fmt: skip
    agent = load_agent(checkpoint)
    cfg = agent.config
    instances = with_objective(checkpoint_instances(agent, validation=validation, models=models, dags=dags), objective)
    params = SearchParams(
        num_simulations=simulations or INFERENCE_SIMULATIONS[model],
        max_num_considered_actions=cfg.get("max_considered_actions", 8),
        gumbel_scale=0.0,
        discount=cfg.get("discount", 1.0),
        c_scale=INFERENCE_C_SCALE[model] if c_scale is None else c_scale,
        min_q_range=INFERENCE_MIN_Q_RANGE[model] if min_q_range is None else min_q_range,
    )
    policy = make_policy(agent.net, params, model) if player == "agent" else RulePolicy(player)
    envs = [make_problem_env(agent.settings, inst.problem) for inst in instances]
    episodes = play_episodes(policy, envs, np.random.default_rng(seed))
    rows = []
    unit = UNITS[objective]
    for inst, ep, env in zip(instances, episodes, envs):
        plan = ep.final_info["plan"]
        check(inst.problem, plan)  # never trust a plan: the validator raises if it breaks a rule
        mine = cost_of(inst.problem, plan).value(objective)
        greedy = env.baseline.nc_bytes if objective == "bytes" else env.baseline.latency_cycles
        exact = exact_optimum(inst.problem, plan.schedule, exact_time_limit)
        rows.append(Row(inst.name, mine, int(greedy), exact, 0.0 - ep.episode_return))
        log(f"{inst.name}: agent {mine} {unit}, best-greedy {greedy} {unit}"
            + (f", exact {exact} {unit}" if exact is not None else ""))  # fmt: skip
    return rows


def with_objective(instances: list, objective: str) -> list:
    """``instances`` with their problems under ``objective`` ("bytes" leaves them as they are)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; known objectives: {', '.join(OBJECTIVES)}")
    if objective == "bytes":
        return instances
    return [replace(inst, problem=replace(inst.problem, objective=objective)) for inst in instances]


def summary(rows: list[Row]) -> dict[str, float]:
    ratios = [r.ratio for r in rows]
    known = [r for r in rows if r.exact is not None]
    out = {
        "instances": len(rows),
        "win_rate": float(np.mean([r.verdict == "win" for r in rows])),
        "tie_rate": float(np.mean([r.verdict == "tie" for r in rows])),
        "loss_rate": float(np.mean([r.verdict == "loss" for r in rows])),
        "mean_ratio": float(np.mean(ratios)),
        "mean_agent_bytes": float(np.mean([r.agent for r in rows])),
        "mean_greedy_bytes": float(np.mean([r.greedy for r in rows])),
    }
    out["not_worse_rate"] = out["win_rate"] + out["tie_rate"]
    if known:
        out["exact_known"] = len(known)
        out["mean_agent_bytes_where_exact"] = float(np.mean([r.agent for r in known]))
        out["mean_exact_bytes"] = float(np.mean([r.exact for r in known]))
        # Where best-greedy is already optimal for the schedule nobody can beat it: the win
        # rate any player of this game can reach is the share of instances where it is not.
        beatable = [r for r in known if r.greedy > r.exact]
        out["beatable"] = len(beatable)
        out["win_rate_where_beatable"] = float(np.mean([r.verdict == "win" for r in beatable])) if beatable else 0.0
        out["optimal_rate"] = float(np.mean([r.agent == r.exact for r in known]))
    return out


def markdown(rows: list[Row], header: str = "", unit: str = "NC bytes") -> str:
    lines = [header, ""] if header else []
    lines += [
        f"| instance | agent {unit} | best-greedy {unit} | agent / greedy | exact (same schedule) | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        exact = "" if r.exact is None else str(r.exact)
        lines.append(f"| {r.name} | {r.agent} | {r.greedy} | {r.ratio:.3f} | {exact} | {r.verdict} |")
    s = summary(rows)
    lines += [
        "",
        f"- instances: {s['instances']}; beats best-greedy on {s['win_rate']:.0%}, ties {s['tie_rate']:.0%},"
        f" loses {s['loss_rate']:.0%} (not worse on {s['not_worse_rate']:.0%})",
        f"- mean agent / best-greedy ratio: {s['mean_ratio']:.3f} (below 1 is better; the env's"
        " normalization: where best-greedy moves 0 bytes, agent bytes over the largest tensor's size)",
        f"- mean {unit}: agent {s['mean_agent_bytes']:.0f}, best-greedy {s['mean_greedy_bytes']:.0f}",
    ]
    if "exact_known" in s:
        lines.append(
            f"- where the exact optimum is known ({s['exact_known']}):"
            f" mean agent {s['mean_agent_bytes_where_exact']:.0f}"
            f" vs exact {s['mean_exact_bytes']:.0f} {unit}; the agent is optimal on {s['optimal_rate']:.0%}"
        )
        lines.append(
            f"- best-greedy is above the optimum on {s['beatable']} of {s['exact_known']} (the most any player can"
            f" beat: {s['beatable'] / s['exact_known']:.0%}); the agent beats it on {s['win_rate_where_beatable']:.0%}"
            " of those"
        )
    return "\n".join(lines) + "\n"


# --- the solver's cells: the default inference against every reference -----------------


@dataclass
class Cell:
    """One instance played by the ``muzero`` solver (the default inference: the cheapest of
    its games within the time budget) beside every reference, all in non-compulsory bytes
    (in cycles when the instance's problem is under ``objective="latency"``)."""

    name: str
    agent: int  # the solver's plan
    agent_search: int | None  # the agent's own game (first order, finished greedily past its share)
    winner: str  # which game the solver returned, "player@order"
    best_greedy: int
    xla: int  # xla-msa
    lookahead: int  # the lookahead rule alone, on the env's default order (best-greedy's)
    lookahead_cut: bool  # the lookahead rule reached its time limit (finished greedily)
    exact: int | None  # proven optimum for the agent's plan's order, None if not proven in time
    seconds: float  # the solver's wall time
    other: int | None = None  # the solver with the --against checkpoint

    @property
    def heuristic(self) -> int:
        """The better of best-greedy and xla-msa."""
        return min(self.best_greedy, self.xla)

    @property
    def degenerate(self) -> bool:
        """Nothing to gain: the best heuristic already moves no byte."""
        return self.heuristic == 0


def _verdict(mine: int, theirs: int) -> str:
    return "win" if mine < theirs else "tie" if mine == theirs else "loss"


def evaluate_cells(
    checkpoint: str, instances: list, *, time_limit: float = 10.0, exact_time_limit: float = 10.0,
    lookahead_time_limit: float = 60.0, against: str | None = None, seed: int = 0, log=print,
) -> list[Cell]:  # fmt: skip
    """Play every instance with the ``muzero`` solver and with every reference (see ``Cell``);
    every plan goes through ``cosma.core.interface.run`` (validator and cost model)."""
    from cosma.core.interface import RunOptions, run
    from mallocgame.env import RULES
    from mallocgame.solver import MuZeroParams, play_rule

    agent = load_agent(checkpoint)
    cells = []
    for inst in instances:
        problem = inst.problem
        unit = "B" if problem.objective == "bytes" else "cycles"
        options = RunOptions(time_limit=time_limit, seed=seed)
        result = run(problem, "muzero", MuZeroParams(checkpoint=checkpoint), options)
        other = None
        if against:
            other = run(problem, "muzero", MuZeroParams(checkpoint=against), options).objective
        best_greedy = run(problem, "best-greedy", options=RunOptions(seed=seed)).objective
        xla = run(problem, "xla-msa", options=RunOptions(seed=seed)).objective
        env = make_problem_env(agent.settings, problem)
        deadline = time.perf_counter() + lookahead_time_limit
        info, _, late = play_rule(env, RULES["lookahead"], deadline)
        check(problem, info["plan"])
        exact = exact_optimum(problem, result.plan.schedule, exact_time_limit)
        search = result.stats.get("agent_bytes" if problem.objective == "bytes" else "agent_latency")
        cell = Cell(
            inst.name, result.objective, search, result.stats["winner"], best_greedy, xla,
            cost_of(problem, info["plan"]).value(problem.objective), late > 0, exact, result.seconds, other,
        )  # fmt: skip
        cells.append(cell)
        known = f", exact {exact} {unit}" if exact is not None else ""
        log(f"{cell.name}: agent {cell.agent} {unit} ({cell.winner}, {cell.seconds:.1f} s), best heuristic"
            f" {cell.heuristic} {unit}, lookahead {cell.lookahead} {unit}{known}")  # fmt: skip
    return cells


def cell_summary(cells: list[Cell], player=lambda c: c.agent) -> dict[str, float]:
    """The issue's figures for one player (default: the agent) over the cells."""
    live = [c for c in cells if not c.degenerate]
    known = [c for c in live if c.exact is not None]
    beatable = [c for c in known if c.heuristic > c.exact]
    rule_beatable = [c for c in known if c.lookahead > c.exact]
    out: dict[str, float] = {"cells": len(cells), "degenerate": len(cells) - len(live), "exact_known": len(known)}
    for key, group, ref in (("heuristic", beatable, lambda c: c.heuristic), ("lookahead", rule_beatable,
                                                                              lambda c: c.lookahead)):  # fmt: skip
        verdicts = [_verdict(player(c), ref(c)) for c in group]
        out[f"{key}_cells"] = len(group)
        for v, plural in (("win", "wins"), ("tie", "ties"), ("loss", "losses")):
            out[f"{key}_{plural}"] = verdicts.count(v)
    positive = [c for c in known if c.exact > 0]
    out["mean_ratio_to_exact"] = float(np.mean([player(c) / c.exact for c in positive])) if positive else float("nan")
    out["ratio_cells"] = len(positive)
    out["above_zero_optimum"] = sum(1 for c in known if c.exact == 0 and player(c) > 0)
    out["degenerate_losses"] = sum(1 for c in cells if c.degenerate and player(c) > 0)
    out["mean_seconds"] = float(np.mean([c.seconds for c in cells])) if cells else 0.0
    out["max_seconds"] = max((c.seconds for c in cells), default=0.0)
    return out


def summary_lines(s: dict[str, float], who: str = "the agent") -> list[str]:
    def share(key: str) -> str:
        n = int(s[f"{key}_cells"])
        wins, ties, losses = (int(s[f"{key}_{v}"]) for v in ("wins", "ties", "losses"))
        pct = (lambda k: f"{k / n:.0%}") if n else (lambda k: "-")
        return f"{wins} wins ({pct(wins)}), {ties} ties, {losses} losses ({pct(losses)}) of {n}"

    return [
        f"- cells: {int(s['cells'])}; degenerate (the best heuristic moves 0 bytes): {int(s['degenerate'])};"
        f" exact optimum proven on {int(s['exact_known'])} of the others",
        f"- {who} moves bytes anyway on {int(s['degenerate_losses'])} of the degenerate cells",
        f"- {who} against the better of best-greedy and xla-msa, where that is above the optimum: {share('heuristic')}",
        f"- {who} against the lookahead rule alone, where that is above the optimum: {share('lookahead')}",
        f"- {who}'s mean ratio to the optimum for its order: {s['mean_ratio_to_exact']:.3f} over"
        f" {int(s['ratio_cells'])} cells with a positive optimum; above a zero optimum on"
        f" {int(s['above_zero_optimum'])}",
        f"- seconds per plan: mean {s['mean_seconds']:.1f}, max {s['max_seconds']:.1f}",
    ]


def cells_markdown(cells: list[Cell], header: str = "", against: str | None = None) -> str:
    lines = [header, ""] if header else []
    other = " other agent |" if against else ""
    lines += [
        "| cell | agent | agent's own search | its game | best-greedy | xla-msa | best heuristic | lookahead rule"
        f" | exact, same order | s |{other}",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if against else ""),
    ]
    for c in cells:
        exact = "" if c.exact is None else str(c.exact)
        search = "" if c.agent_search is None else str(c.agent_search)
        cut = "*" if c.lookahead_cut else ""
        tail = f" {c.other} |" if against else ""
        lines.append(
            f"| {c.name} | {c.agent} | {search} | {c.winner} | {c.best_greedy} | {c.xla} | {c.heuristic}"
            f" | {c.lookahead}{cut} | {exact} | {c.seconds:.1f} |{tail}"
        )
    lines += ["", "(* the lookahead rule reached its time limit and the greedy rule finished its game)", ""]
    groups = [("all cells", cells)]
    dags = [c for c in cells if c.name.startswith("dag")]
    if dags and len(dags) < len(cells):
        groups += [("real models", [c for c in cells if not c.name.startswith("dag")]), ("random DAGs", dags)]
    for title, group in groups:
        lines.append(f"**{title}**")
        lines.append("")
        lines += summary_lines(cell_summary(group))
        lines += summary_lines(cell_summary(group, lambda c: c.agent_search if c.agent_search is not None else c.agent),
                               "the agent's own search (no rules)")[1:4]  # fmt: skip
        if against:
            lines += summary_lines(cell_summary(group, lambda c: c.other), "the other agent")[1:5]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mallocgame eval", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint written by `mallocgame train`")
    parser.add_argument("--models", nargs="+", default=None,
                        help="real models (file stems, or comma-separated; 'all'); default: the run's")  # fmt: skip
    parser.add_argument("--dags", type=int, default=None,
                        help=f"random DAGs in the set; default: the run's (validation: {VALIDATION_DAGS})")  # fmt: skip
    parser.add_argument("--simulations", type=int, default=None,
                        help=f"simulations per decision [per model: {INFERENCE_SIMULATIONS}]")  # fmt: skip
    parser.add_argument("--exact-time-limit", type=float, default=0.0, help="seconds per exact solve (0: skip)")
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="learned",
        help="search with the learned model (MuZero) or the true env (AlphaZero-style ablation)",
    )
    parser.add_argument(
        "--c-scale",
        type=float,
        default=None,
        help=f"weight of q-values against the prior in the search [per model: {INFERENCE_C_SCALE}]",
    )
    parser.add_argument(
        "--min-q-range",
        type=float,
        default=None,
        help=f"floor of the search's q normalization range [per model: {INFERENCE_MIN_Q_RANGE}]",
    )
    parser.add_argument(
        "--player",
        choices=PLAYERS,
        default="agent",
        help="agent: the checkpoint with search; greedy: the env's greedy rule on the same instances;"
        " lookahead: the one-step lookahead of the greedy rule (the cheapest greedy completion)",
    )
    parser.add_argument(
        "--validation", action="store_true", help="play the validation set (for choosing search settings) instead"
    )
    parser.add_argument(
        "--solver",
        action="store_true",
        help="play each cell with the muzero solver (the default inference: the cheapest of its games within"
        " --time-limit) beside best-greedy, xla-msa, the lookahead rule alone and the exact optimum for the"
        " solver's order, with the issue's summary lines",
    )
    parser.add_argument("--time-limit", type=float, default=10.0, help="--solver: seconds per plan")
    parser.add_argument("--lookahead-time-limit", type=float, default=60.0,
                        help="--solver: seconds for the lookahead rule's game (the greedy rule ends it)")  # fmt: skip
    parser.add_argument("--dag-ops", type=int, nargs="+", default=None,
                        help="--solver: operators of the random DAGs, one set per size (default: 24)")  # fmt: skip
    parser.add_argument("--against", default=None, help="--solver: also play the solver with this checkpoint")
    parser.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="bytes",
        help="the game to play and the figure to compare: non-compulsory bytes, or the roofline latency"
        " (the env's timing phase decides when each load starts)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    models = None if args.models is None else ",".join(args.models)
    if args.solver:
        return _main_solver(args, models, argv, start)
    rows = evaluate_checkpoint(
        args.checkpoint, models=models, dags=args.dags, simulations=args.simulations,
        exact_time_limit=args.exact_time_limit, seed=args.seed, model=args.model,
        c_scale=args.c_scale, validation=args.validation, player=args.player, min_q_range=args.min_q_range,
        objective=args.objective,
    )  # fmt: skip
    cmd = "mallocgame eval " + " ".join(argv if argv is not None else sys.argv[1:])
    header = f"# mallocMuZero evaluation\n\n`{cmd}` ({time.perf_counter() - start:.0f} s)"
    table = markdown(rows, header, UNITS[args.objective])
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)
    return 0


def _main_solver(args: argparse.Namespace, models: str | None, argv: list[str] | None, start: float) -> int:
    from mallocgame.instances import evaluation_set

    agent = load_agent(args.checkpoint)
    names = agent.config.get("eval_models", "resnet18") if models is None else models
    names = None if names == "all" else [m for m in names.split(",") if m]
    n_dags = agent.config.get("eval_dags", 8) if args.dags is None else args.dags
    hardware = agent.settings.hardware
    instances = evaluation_set(hardware=hardware, models=names, n_dags=0)
    for ops in args.dag_ops or [24]:
        instances += evaluation_set(hardware=hardware, models=[], n_dags=n_dags, dag_ops=ops)
    instances = with_objective(instances, args.objective)
    cells = evaluate_cells(
        args.checkpoint, instances, time_limit=args.time_limit, exact_time_limit=args.exact_time_limit,
        lookahead_time_limit=args.lookahead_time_limit, against=args.against, seed=args.seed,
    )  # fmt: skip
    cmd = "mallocgame eval " + " ".join(argv if argv is not None else sys.argv[1:])
    table = cells_markdown(cells, f"# mallocMuZero: the solver, cell by cell\n\n`{cmd}`"
                           f" ({time.perf_counter() - start:.0f} s; figures in {UNITS[args.objective]})",
                           args.against)  # fmt: skip
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
