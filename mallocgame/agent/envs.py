"""Building mallocGame environments for the agent from one set of env settings, so that
training, evaluation and the solver always see the observation shapes the checkpoint's
networks were built for."""

from __future__ import annotations

from dataclasses import dataclass

from cosma.core.ir import OpName, Problem


@dataclass(frozen=True)
class EnvSettings:
    """The env arguments a checkpoint depends on (they fix the observation shapes)."""

    num_candidates: int = 8  # K: candidate offsets per decision (actions 1..K; 0 = evict)
    num_pending: int = 16  # N: upcoming segments shown in the observation
    occupancy_size: int = 32  # the occupancy map is occupancy_size x occupancy_size
    hardware: str = "edge-npu"  # hardware preset of sampled instances
    instances: str = "default"  # sampler preset for training (mallocgame.instances.PRESETS: "dags", "real", ...)
    lookahead: bool = False  # the observation's per-action greedy completions (False in checkpoints before it)
    lookahead_scale: str = "capacity"  # what the lookahead's bytes are measured against ("capacity" before it)
    all_offsets: bool = False  # every fitting offset of a gap is a candidate (False in checkpoints before it)
    # The game self-play plays ("bytes" in checkpoints before it). Not an env_kwargs entry: an env
    # built for a given problem plays that problem's objective, whatever game the networks learned.
    objective: str = "bytes"

    def env_kwargs(self) -> dict:
        return {
            "num_candidates": self.num_candidates,
            "num_pending": self.num_pending,
            "occupancy_shape": (self.occupancy_size, self.occupancy_size),
            "lookahead": self.lookahead,
            "lookahead_scale": self.lookahead_scale,
            "all_offsets": self.all_offsets,
        }


def reward_unit(env) -> float:
    """Factor from the env's reward to the agent's: the env divides each decision's bytes by
    the best greedy baseline's bytes on the instance, which no observation shows, so the
    same position would earn rewards a hundredfold apart from one instance to the next and
    no network could predict them. The agent learns and plans in bytes over the capacity,
    the unit its observation is in (the evict cost column of ``candidates``). Within an
    episode the factor is a constant, so it changes no decision, only what is learnable.
    Under ``objective="latency"`` the env's rewards are cycles over the baseline's latency;
    the agent's are the same cycles as DRAM bytes (x the bandwidth) over the capacity, the
    unit of the timing phase's lookahead columns (exposed DMA bytes; see ``agent_reward``).
    Envs without a capacity (test stand-ins) keep their rewards."""
    env = env.unwrapped
    tables = getattr(env, "tables", None)
    scale = getattr(env, "scale", None)
    if tables is None or not scale:
        return 1.0
    if getattr(env, "objective", "bytes") == "latency":
        return float(scale) * env.problem.hardware.dram_bytes_per_cycle / float(tables.capacity)
    return float(scale) / float(tables.capacity)


def in_timing_phase(env) -> bool:
    """Whether the env's latency game is in its timing phase (False under "bytes")."""
    return getattr(env.unwrapped, "timing", None) is not None


def reward_frame(env) -> tuple[bool, int]:
    """What ``agent_reward`` needs to know of the env before a step: whether it is in the
    timing phase, and the non-compulsory bytes committed so far."""
    state = getattr(env.unwrapped, "state", None)
    return in_timing_phase(env), int(getattr(state, "nc_bytes", 0))


def agent_reward(env, reward: float, before: tuple[bool, int]) -> float:
    """The agent's reward for the env's ``reward`` of the step just played, ``before`` being
    ``reward_frame(env)`` taken before it: ``reward x reward_unit``, and under
    ``objective="latency"`` a shaping that leaves every episode's return, so every choice, as
    it is (potential-based: the potential is the bytes moved so far over the capacity in the
    keep/evict phase, 0 after it):

    * each keep/evict decision pays the bytes it moves over the capacity, as in the bytes game
      (the env pays nothing there: a plan's latency is only known once it is complete);
    * the step that ends the keep/evict phase, where the env charges the untimed plan's whole
      latency, gives back those bytes and the plan's compute cycles (which no decision
      changes), so it pays the untimed plan's exposed DMA less the bytes already paid.

    An episode's agent return is so the finished plan's exposed DMA, -(latency - compute) x
    bandwidth / capacity, the unit of the timing phase's lookahead columns; and a keep/evict
    position's value is mostly what is still to come, as in the bytes game, instead of the
    whole plan's latency: the past decisions' cost and each instance's compute, which the
    observation does not show, and whose spread drowns the differences between actions.
    Under "bytes" this is ``reward x reward_unit``."""
    r = reward * reward_unit(env)
    game = env.unwrapped
    was_timing, nc_before = before
    if getattr(game, "objective", "bytes") != "latency" or was_timing:
        return r
    capacity = float(game.tables.capacity)
    nc_now = game.state.nc_bytes
    r -= (nc_now - nc_before) / capacity  # the bytes this decision moved
    if in_timing_phase(env):  # the step that started the timing phase
        timing = game.timing
        r += (sum(timing.compute) * timing.bw + nc_now) / capacity
    return r


def make_sampler_env(settings: EnvSettings, seed: int):
    """An env that draws a new training instance at every reset (from its own ``np_random``;
    ``seed`` also offsets the sampler's random DAG seeds, so parallel envs differ)."""
    from mallocgame.env import MallocGameEnv
    from mallocgame.instances import InstanceSampler

    sampler = InstanceSampler(hardware=settings.hardware, seed=seed, preset=settings.instances)
    return MallocGameEnv(
        sampler=sampler, hardware=settings.hardware, objective=settings.objective, **settings.env_kwargs()
    )


def make_problem_env(settings: EnvSettings, problem: Problem, schedule: tuple[OpName, ...] | None = None):
    """An env that plays one given problem (evaluation, the solver)."""
    from mallocgame.env import MallocGameEnv

    return MallocGameEnv(problem=problem, schedule=schedule, **settings.env_kwargs())


def evaluation_instances(models: str, n_dags: int, hardware: str) -> list:
    """The env package's fixed evaluation set, restricted to the zoo models named in
    ``models`` (comma separated file stems; "all": every zoo model; "": none) and
    ``n_dags`` random DAGs, each at every tier and weights setting."""
    from mallocgame.instances import evaluation_set

    names = None if models == "all" else [m for m in models.split(",") if m]
    return evaluation_set(hardware=hardware, models=names, n_dags=n_dags)


VALIDATION_SEED0 = 5000  # random DAGs for choosing search settings: seeds 5000, 5001, ..., disjoint
# from the evaluation set's (1000, 1001, ...) and, with overwhelming odds, from the sampler's 2^31 draws
VALIDATION_DAGS = 8  # the default size: 8 DAGs x 3 tiers x 2 weights settings = 48 instances


def validation_instances(hardware: str, dag_ops: int = 24, n_dags: int = VALIDATION_DAGS) -> list:
    """A validation set for choosing search settings without touching the evaluation set:
    ``n_dags`` random DAGs of the evaluation set's size, at every tier and weights setting."""
    from cosma.core.hardware import get_hardware
    from mallocgame.instances import TIERS, Instance, dag_graph, tier_capacities

    hw = get_hardware(hardware)
    out = []
    for seed in range(VALIDATION_SEED0, VALIDATION_SEED0 + n_dags):
        graph = dag_graph(seed, dag_ops, hw.alignment)
        for weights in (True, False):
            caps = tier_capacities(graph, hw, weights)
            for tier in TIERS:
                name = f"{graph.name}/{tier}/{'weights' if weights else 'acts'}"
                out.append(Instance(name, Problem(graph, caps[tier], hw, weights)))
    return out


__all__ = [
    "EnvSettings",
    "reward_unit",
    "in_timing_phase",
    "reward_frame",
    "agent_reward",
    "make_sampler_env",
    "make_problem_env",
    "evaluation_instances",
    "validation_instances",
    "VALIDATION_SEED0",
    "VALIDATION_DAGS",
]
