"""The ``mallocgame`` command: play an ONNX model's memory mapping as a game, time the env,
train the MuZero-style agent, evaluate a checkpoint or probe its action values.

    mallocgame play MODEL.onnx --scratchpad M_R --policy greedy -o plan.json
    mallocgame bench --steps 20000
    mallocgame train --minutes 20
    mallocgame eval results/muzero/checkpoint.pt
    mallocgame probe results/muzero/checkpoint.pt

Bad input gets one line on stderr and exit status 2 (as ``cosma``).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

from cosma.core.errors import UsageError
from cosma.core.options import HelpFormatter, add_lowering_args, run_command

DESCRIPTION = (
    "Memory mapping as a game: play an ONNX model's mapping with a fixed policy (play), time the"
    " environment (bench), train the MuZero-style agent by self-play (train), evaluate a checkpoint"
    " against best-greedy (eval) or probe how well its action values rank actions (probe)."
)


def cmd_play(args: argparse.Namespace) -> int:
    from cosma.core.analysis import largest_operator, min_capacity
    from cosma.core.errors import CapacityError, UsageError
    from cosma.core.hardware import get_hardware
    from cosma.core.ir import Problem
    from cosma.core.onnx_lower import load_model
    from cosma.core.options import lowering_options
    from cosma.core.paths import check_writable
    from cosma.core.units import is_tier, parse_size
    from mallocgame.env import RULES, MallocGameEnv, play, random_action

    # Every option is checked before the model is lowered and the episode played.
    lowering = lowering_options(args)
    hw = get_hardware(args.hardware)
    if not is_tier(args.scratchpad):
        parse_size(args.scratchpad)
    if args.output:
        check_writable(args.output, "-o")
    if not Path(args.model).is_file():
        raise UsageError(f"{args.model}: no such file")
    graph = load_model(args.model, **lowering)
    base = Problem(graph, hw.capacity, hw, args.weights)
    env = MallocGameEnv(
        problem=base, capacity=args.scratchpad, order=args.order, all_offsets=args.all_offsets, objective=args.objective
    )
    if env.problem.capacity < min_capacity(base):
        m_r = min_capacity(base)
        raise CapacityError(
            f"scratchpad {env.problem.capacity} B is below M_R = {m_r} B:"
            f" operator {largest_operator(base)} alone needs {m_r} B resident"
        )
    rng = np.random.default_rng(args.seed)
    policy = RULES[args.policy] if args.policy in RULES else (lambda e: random_action(e, rng))
    episode_return, info = play(env, policy, seed=args.seed)
    cost, problem = info["cost"], env.problem
    print(f"instance          {env.instance.name} ({'weights counted' if args.weights else 'activations only'})")
    print(f"policy            {args.policy} (seed {args.seed}), {info['decision']} decisions")
    print(f"non-compulsory    {cost.non_compulsory_bytes} B (spill {cost.spill_bytes}, reload {cost.reload_bytes})")
    print(f"baseline          {info['baseline_bytes']} B ({info['baseline_solver']})")
    print(f"return            {episode_return:.4f} (above -1 beats the baseline)")
    print(f"latency           {cost.latency_cycles} cycles")
    if args.objective == "latency":
        print(f"baseline latency  {env.baseline.latency_cycles} cycles (the return's scale)")
    if args.output:
        _write_plan(args, problem, info, lowering)
        print(f"plan written to   {args.output}")
    return 0


def _write_plan(args: argparse.Namespace, problem, info, lowering) -> None:
    solver = {"name": f"mallocgame-{args.policy}", "status": "feasible", "seed": args.seed}
    from cosma.core.planfile import write_plan

    write_plan(
        args.output, problem, info["plan"], model=args.model, solver=solver, cost=info["cost"], **lowering,
    )  # fmt: skip


def cmd_bench(args: argparse.Namespace) -> int:
    from mallocgame.bench import run_bench

    dag = None
    if args.dag is not None:
        try:
            seed, ops = (int(x) for x in args.dag.split("x"))
        except ValueError:
            raise UsageError(f"--dag {args.dag!r}: expected SEEDxOPERATORS, e.g. 7x24") from None
        dag = (seed, ops)
    result = run_bench(
        args.steps, model=args.model, capacity=args.capacity, seed=args.seed, dag=dag, policy=args.policy,
        lookahead=args.lookahead, all_offsets=args.all_offsets, seconds=args.seconds,
    )  # fmt: skip
    print(f"instance      {result.instance}")
    print(f"steps         {result.steps} ({result.episodes} episodes of {result.decisions_per_episode} decisions)")
    print(f"seconds       {result.seconds:.3f} wall, {result.cpu_seconds:.3f} CPU")
    print(
        f"steps/s       {result.steps_per_second:,.0f} per wall second,"
        f" {result.steps_per_cpu_second:,.0f} per CPU second"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mallocgame", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # every command's --help shows each option's default
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=HelpFormatter)

    p = sub.add_parser("play", help="play one episode on an ONNX model with a fixed policy")
    p.add_argument("model", help="ONNX file")
    p.add_argument("--scratchpad", required=True, help="bytes, a size (384KiB) or a tier (M_R, M_H, M_P)")
    add_lowering_args(p, dtype_bytes=1)
    p.add_argument(
        "--policy",
        choices=("random", "greedy", "lookahead"),
        default="greedy",
        help="greedy = XLA's rule; lookahead = the legal action whose greedy completion is cheapest",
    )
    p.add_argument(
        "--all-offsets",
        action="store_true",
        help="every offset of a free gap that fits is a candidate, not only the first",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random policy and the episode")
    p.add_argument("--hardware", default="edge-npu", help="hardware preset (cosma solvers lists them)")
    p.add_argument(
        "--weights",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count weights as scratchpad tensors (--no-weights: activations only)",
    )
    p.add_argument("--order", choices=("boundedness", "size", "time"), default="boundedness", help="decision order")
    p.add_argument(
        "--objective",
        choices=("bytes", "latency"),
        default="bytes",
        help="what the rewards measure: non-compulsory bytes, or the roofline latency (then a timing phase"
        " chooses when each load starts)",
    )
    p.add_argument("-o", "--output", default=None, help="write the plan file here")
    p.set_defaults(func=cmd_play)

    p = sub.add_parser("bench", help="env steps per second with random legal actions")
    p.add_argument("--steps", type=int, default=20000, help="env steps to time")
    p.add_argument("--model", help="ONNX file (default: ResNet-50 from the zoo)")
    p.add_argument("--capacity", default="M_R", help="tier or size")
    p.add_argument("--dag", help="a random DAG instead, SEEDxOPERATORS (e.g. 7x24)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random actions")
    p.add_argument("--policy", choices=("random", "greedy", "lookahead"), default="random", help="who plays")
    p.add_argument("--lookahead", action="store_true", help="compute the observation's lookahead rows")
    p.add_argument("--all-offsets", action="store_true", help="every offset of a gap that fits is a candidate")
    p.add_argument("--seconds", type=float, default=None, help="stop after this much wall time")
    p.set_defaults(func=cmd_bench)

    # train and eval own their (long) option lists: `mallocgame train --help` shows them.
    sub.add_parser(
        "train", help="train the MuZero-style agent by self-play (mallocgame train --help: its options)", add_help=False
    )
    sub.add_parser(
        "eval", help="evaluate a checkpoint against best-greedy (mallocgame eval --help: its options)", add_help=False
    )
    sub.add_parser(
        "probe",
        help="how well a checkpoint's q-values rank actions (mallocgame probe --help: its options)",
        add_help=False,
    )
    return parser


_FORWARDED = {"train": "mallocgame.train", "eval": "mallocgame.evaluate", "probe": "mallocgame.probe"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)

    def command() -> int:
        if argv and argv[0] in _FORWARDED:
            import importlib

            return importlib.import_module(_FORWARDED[argv[0]]).main(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)

    return run_command("mallocgame", command)


if __name__ == "__main__":
    sys.exit(main())
