"""Evaluate a trained agent: ``mallocgame eval CHECKPOINT``.

Plays every instance of the held-out evaluation set once with search (no Gumbel noise:
deterministic; ``--model true`` searches with the true env instead of the learned model)
and prints, per instance, the agent's non-compulsory bytes against ``best-greedy`` (the
env's baseline) and, with ``--exact-time-limit``, the exact optimum for the same schedule
where the exact solver proves it within the limit. ``--player greedy`` plays the env's
greedy rule instead, on the same instances: the reference the agent should improve on;
``--player lookahead`` plays its one-step lookahead (``mallocgame.env.lookahead_action``).
Every plan goes through the validator. ``--out FILE.md`` also writes the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cosma.core.cost import evaluate as cost_of
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


@dataclass
class Row:
    name: str
    agent: int  # agent's non-compulsory bytes
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
) -> list[Row]:  # fmt: skip
    agent = load_agent(checkpoint)
    cfg = agent.config
    instances = checkpoint_instances(agent, validation=validation, models=models, dags=dags)
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
    for inst, ep in zip(instances, episodes):
        plan = ep.final_info["plan"]
        check(inst.problem, plan)  # never trust a plan: the validator raises if it breaks a rule
        agent_bytes = cost_of(inst.problem, plan).non_compulsory_bytes
        exact = exact_optimum(inst.problem, plan.schedule, exact_time_limit)
        rows.append(Row(inst.name, agent_bytes, int(ep.baseline_bytes), exact, 0.0 - ep.episode_return))
        log(f"{inst.name}: agent {agent_bytes} B, best-greedy {ep.baseline_bytes} B"
            + (f", exact {exact} B" if exact is not None else ""))  # fmt: skip
    return rows


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


def markdown(rows: list[Row], header: str = "") -> str:
    lines = [header, ""] if header else []
    lines += [
        "| instance | agent NC bytes | best-greedy NC bytes | agent / greedy | exact (same schedule) | verdict |",
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
        f"- mean NC bytes: agent {s['mean_agent_bytes']:.0f}, best-greedy {s['mean_greedy_bytes']:.0f}",
    ]
    if "exact_known" in s:
        lines.append(
            f"- where the exact optimum is known ({s['exact_known']}):"
            f" mean agent {s['mean_agent_bytes_where_exact']:.0f}"
            f" vs exact {s['mean_exact_bytes']:.0f} bytes; the agent is optimal on {s['optimal_rate']:.0%}"
        )
        lines.append(
            f"- best-greedy is above the optimum on {s['beatable']} of {s['exact_known']} (the most any player can"
            f" beat: {s['beatable'] / s['exact_known']:.0%}); the agent beats it on {s['win_rate_where_beatable']:.0%}"
            " of those"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mallocgame eval", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint written by `mallocgame train`")
    parser.add_argument("--models", default=None, help="zoo models (comma-separated stems, 'all'); default: the run's")
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = evaluate_checkpoint(
        args.checkpoint, models=args.models, dags=args.dags, simulations=args.simulations,
        exact_time_limit=args.exact_time_limit, seed=args.seed, model=args.model,
        c_scale=args.c_scale, validation=args.validation, player=args.player, min_q_range=args.min_q_range,
    )  # fmt: skip
    cmd = "mallocgame eval " + " ".join(argv if argv is not None else sys.argv[1:])
    table = markdown(rows, f"# mallocMuZero evaluation\n\n`{cmd}` ({time.perf_counter() - start:.0f} s)")
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
