"""mallocGame: scratchpad memory mapping as a single-player Gymnasium game.

The game's mechanics are those of XLA-style memory space assignment (``solvers.xla``):
one decision per *use segment* of a tensor, keep it resident at a chosen offset or evict
it, with reservations that make every capacity >= ``M_R`` dead-end free. This module adds
what a learner needs on top: fixed-size observations, rewards from the shared cost model
normalized by the best greedy baseline, action masks, snapshots for search, and the
greedy, lookahead and random policies.

Importing the module registers the env as ``mallocgame/MallocGame-v0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from cosma.core.analysis import min_capacity
from cosma.core.cost import evaluate
from cosma.core.errors import CapacityError, UsageError
from cosma.core.hardware import get_hardware
from cosma.core.interface import RunOptions, load_all, run
from cosma.core.ir import OBJECTIVES, Bytes, OpName, Plan, Problem, TensorKind
from cosma.core.prefetch import Load, LoadTiming, StartOption
from mallocgame.instances import Instance, InstanceSampler, load_zoo_graph, make_problem
from mallocgame.lookahead import GreedyTrace, read_horizons
from solvers.xla import EVICT, MsaState, MsaTables

ENV_ID = "mallocgame/MallocGame-v0"

# Columns of the "segment" and "pending" rows.
SEGMENT_FEATURES = (
    "valid",  # 1 for a real segment (pending rows past the last decision are all zero)
    "footprint",  # footprint / capacity
    "log_size",  # log(1 + size) / log(1 + capacity)
    "start",  # start use step / number of steps
    "end",  # next use step / number of steps
    "span",  # (end - start) / number of steps
    "kind_input",  # one-hot tensor kind
    "kind_weight",
    "kind_activation",
    "kind_output",
    "segment_index",  # this segment's number among its tensor's segments / their count
    "segments_after",  # segments of the tensor after this one / their count
    "boundedness",  # XLA memory-boundedness score / the instance's largest
    "reload_cost",  # size / capacity: bytes a reload moves
    # Dynamic, filled for the current segment only (0 in "pending"):
    "resident",  # 1: kept over the previous segment, so the only keep offset is its own
    "spilled",  # 1: an activation already written to DRAM (evicting costs the reload only)
    "legal_keeps",  # legal keep offsets / K
    "progress",  # decisions made / decisions in the episode
)
# The same row for a decision of the timing phase (``objective="latency"``), column by column:
# valid, footprint, log_size, kind_*, boundedness and reload_cost describe the loaded tensor
# as above; "start" = the earliest step the load may start at / number of steps; "end" = its
# use step / number of steps; "span" = their difference; "segment_index" = this load's number
# among the tensor's loads / their count; "segments_after" = its loads after this one / their
# count; "resident" = 0; "spilled" = 1 for a reload of an activation (in DRAM since its spill);
# "legal_keeps" = legal earlier starts / K; "progress" = 1 (every keep/evict decision made: it
# tells the two phases apart, since it is below 1 in the first). "pending" rows: the next loads'.
TIMING_SEGMENT_FEATURES = (
    "valid", "footprint", "log_size", "earliest", "use", "window", "kind_input", "kind_weight",
    "kind_activation", "kind_output", "load_index", "loads_after", "boundedness", "reload_cost",
    "resident", "spilled", "legal_starts", "progress",
)  # fmt: skip
CANDIDATE_FEATURES = (
    "legal",  # 1 when the action is legal
    "offset",  # offset / capacity (0 for action 0)
    "end",  # (offset + footprint) / capacity
    "tightness",  # footprint / free gap it takes (1 for an already resident tensor)
    "repacked",  # steps whose reservations move / steps of the segment
    "cost",  # non-compulsory bytes the action adds / (2 * capacity): 0 for keeps
)
# The same columns in the timing phase, per action (action 0: the load stays at its use step).
# "Copy" = the load's transfer time, size / DRAM bandwidth; deltas are judged against the DMA
# every step carries now (the loads decided so far at their chosen starts, the others at their use).
TIMING_CANDIDATE_FEATURES = (
    "legal",  # 1 when the action is legal
    "start",  # the start step / number of steps (action 0: the use step)
    "lead",  # (use step - start) / (use step - earliest start): how early in its window (0 for action 0)
    "hidden",  # share of the copy hidden behind compute at that start (action 0: at the use step, as it is now)
    "saving",  # latency the choice saves / copy, when it saves (0 otherwise)
    "cost",  # latency the choice adds / copy, when it adds (0 otherwise)
)
LOOKAHEAD_FEATURES = (
    "legal",  # 1 when the action is legal
    "best",  # 1 when its greedy completion is the cheapest of the legal actions'
    "regret",  # (its completion's bytes - the cheapest's) / capacity, clipped to 1
    "completion",  # c / (1 + c), c = its completion's bytes / capacity: squashed, never clipped
)
# In the timing phase a completion is the greedy rule's timing of the remaining loads after the
# action, and its "bytes" are the finished plan's exposed DMA: (latency - compute cycles) x DRAM
# bandwidth, the bytes of copies the compute does not hide. The columns are read the same way.
# The same columns in ``lookahead_scale="relative"``: regret and completion measured against
# the decision itself, not the capacity, so that a zoo model's regrets (many capacities)
# read as a small DAG's do: "regret" = r / (1 + r), r = regret / the tensor's size;
# "completion" = c / (1 + c), c = completion / (the greedy action's completion + the size).
LOOKAHEAD_SCALES = ("capacity", "relative")
# Orders of the timing phase's decisions: "time", by use step (then tensor name); "saving", the
# prefetch pass's order (the largest saving of the untimed plan first), in which the greedy rule
# gives exactly the prefetch pass's plan.
TIMING_ORDERS = ("time", "saving")
# Keys of ``info``: every step, and added on the terminal step. The docstring lists the same.
STEP_INFO_KEYS = ("action_mask", "instance", "decision", "tensor", "segment", "illegal_action", "nc_bytes")
TERMINAL_INFO_KEYS = ("plan", "cost", "baseline_bytes", "baseline_solver", "scale")


@dataclass(frozen=True)
class Baseline:
    """The reference a return is normalized by."""

    schedule: tuple[OpName, ...]  # the best greedy baseline's schedule (the env's default)
    nc_bytes: Bytes  # its non-compulsory bytes
    solver: str  # which solver gave it
    latency_cycles: int = 0  # its latency (solved under the problem's objective: retimed under "latency")


def best_greedy_baseline(problem: Problem) -> Baseline:
    """``best-greedy`` (the best of COSMA's four greedy baselines) when it is registered,
    else ``xla-msa`` on the memory-aware / file order."""
    registry = load_all()
    for name in ("best-greedy", "xla-msa"):
        if name not in registry:  # a module not written yet
            continue
        result = run(problem, name, options=RunOptions(seed=0))
        if result.plan is None or result.cost is None:
            raise CapacityError(f"{name}: {result.message or 'no plan'}")
        return Baseline(result.plan.schedule, result.cost.non_compulsory_bytes, name, result.cost.latency_cycles)
    raise UsageError("no baseline solver is registered")


class MallocGameEnv(gym.Env):
    """Memory mapping of a DNN's tensors into an accelerator scratchpad, one decision at a time.

    ## Description
    A problem (a graph of operators over tensors, a scratchpad of ``capacity`` bytes, a
    hardware preset) is played along a fixed operator schedule. Every managed tensor must
    be resident in the scratchpad at each step that produces or reads it; its use steps
    ``u_0 < u_1 < ... < u_k`` split its lifetime into *use segments* ``(u_i, u_{i+1})``
    (definition -> first use, use -> use, as XLA's memory space assignment splits buffers).
    The game asks one question per segment: keep the tensor resident over the whole
    segment at one offset, or evict it after ``u_i`` and reload it before ``u_{i+1}``.
    Segments come in XLA's order: tensors by decreasing memory-boundedness score (then
    size), each tensor's segments in time order. Uses no kept segment covers are filled
    in at the end with one-step residencies at offsets the game reserved for them, so a
    finished episode is a complete plan (``cosma.core.ir.Plan``) that the validator accepts.

    Under ``objective="latency"`` a *timing phase* follows the last keep/evict decision:
    one decision per load of that plan (each reload, and each graph input's or counted
    weight's first load) that may start earlier, in ``timing_order`` (by default time order
    of use): start the copy at its use step, or at an earlier step where the same byte range
    stays free until the use and the tensor is not resident (``cosma.core.prefetch.LoadTiming``,
    the prefetch pass's state), or, with ``relocate`` (the default), where another range is
    free over the whole residency from that step, or where moving one other residency whole
    to a range free over its own steps makes such room (as the prefetch pass does). The cost
    model charges a load's DMA to its start step, so a copy started at a compute-bound step
    costs no time. A load with no earlier start free when its turn comes is skipped (it stays
    at its use step).

    ## Action Space
    ``Discrete(K + 1)``, ``K = num_candidates``:
    - 0: evict (do not keep the tensor over this segment; always legal);
    - k in 1..K: keep it at the k-th candidate offset. For a tensor not yet resident the
      candidates are free gaps, best fit first (smallest gap, then lowest address): first
      gaps free over the tensor's whole remaining lifetime, then gaps free over the segment;
      one offset per gap (its lowest address, else its top, else the tensor's own reserved
      offset in it, whichever fits first), or with ``all_offsets`` each of those that fits;
      for a tensor kept over the previous segment the only candidate (k = 1) is its current
      offset, since a resident tensor cannot move.
    A keep is legal when its block is free at every step of the segment and every step's
    still-uncovered operands keep room (so at any capacity >= ``M_R`` no episode
    dead-ends).
    In the timing phase:
    - 0: the load starts at its use step (always legal: the game reserved that space);
    - k in 1..K: it starts at the k-th candidate earlier step, best first: first the start
      the prefetch pass would pick against the current DMA when it lowers the latency (the
      lowest latency, the latest start on ties: the latest start that hides the whole copy
      behind compute when one exists), then the others by latency change, the later first on
      ties. The steps are scanned back from the use until K fully hidden starts are seen,
      no range is free (its own, or with ``relocate`` any other over the whole residency:
      the best fit, used only where its own is taken; at the first step without one, a start
      that moves one blocking residency to make room is the last offered), or the tensor's
      previous residency ends.
    Illegal actions are 0 in ``info["action_mask"]`` and ``obs["action_mask"]``;
    an illegal action is played as action 0 and flagged in ``info["illegal_action"]``.

    ## Observation Space
    ``Dict`` of float32 arrays in [0, 1] plus the int8 mask:
    - "segment": ``Box(F,)``, the current segment's features (``SEGMENT_FEATURES``);
    - "pending": ``Box(N, F)``, the next ``N = num_pending`` segments (dynamic columns 0,
      zero rows past the end);
    - "occupancy": ``Box(H, W)``, ``(H, W) = occupancy_shape``: the fraction of each cell
      (time bins over the schedule x address bins over the capacity) held by kept segments;
    - "demand": ``Box(H,)``: bytes reserved for still-uncovered operands per time bin / capacity;
    - "candidates": ``Box(K + 1, C)``, per action (``CANDIDATE_FEATURES``);
    in the timing phase the same shapes read differently: "segment" and "pending" describe the
    current and next loads (``TIMING_SEGMENT_FEATURES``: "progress" is 1 there and below 1
    before, which tells the phases apart), "candidates" the starts (``TIMING_CANDIDATE_FEATURES``),
    "occupancy" the whole finished plan with the loads moved so far, and "demand" the DMA
    bytes each time bin's compute can still hide (per step ``compute x bandwidth - DMA``) / capacity;
    - "action_mask": ``MultiBinary(K + 1)``, 1 = legal;
    - "lookahead" (only with ``lookahead=True``): ``Box(K + 1, L)``, per action
      (``LOOKAHEAD_FEATURES``): the bytes of its *greedy completion*, the action followed by
      XLA's rule to the end of the episode (``greedy_action``). One lookahead step of the
      greedy rule is itself a strong policy (``lookahead_action``); the agent learns on top.
      In the timing phase the completion is the greedy timing of the remaining loads, measured
      in exposed DMA bytes (see ``LOOKAHEAD_FEATURES``); before it, bytes as in the bytes game.

    ## Starting State
    Nothing kept; every operand reserved at its step. With a ``sampler`` every reset draws
    a new instance from ``self.np_random``; otherwise the one problem is replayed.

    ## Rewards
    Each decision earns ``-(bytes it adds) / scale``: evicting adds the reload (``size``)
    plus, the first time an activation is evicted, its spill (``size``); keeping adds 0.
    ``scale`` is the best greedy baseline's non-compulsory bytes on the instance (or, when
    the baseline has none, the largest tensor's size). The episode return is therefore
    ``-(agent non-compulsory bytes) / (baseline non-compulsory bytes)``: **a return above
    -1 beats the baseline**, -1 ties it, 0 is a spill-free plan.

    Under ``objective="latency"`` rewards are the cost model's latency changes, over ``scale``
    = the baseline's latency (best-greedy under the same objective, its loads retimed by the
    prefetch pass). Keep/evict decisions earn 0, except the last one, which earns the change
    from the empty plan's 0 to the untimed plan's latency (every load at its use step),
    ``-latency / scale``: the latency of a plan is only known once every segment is decided,
    and this way no decision is paid for twice. Each timing decision earns
    ``-(latency after it - latency before it) / scale`` (the sum the cost model computes,
    rounded the same way). The return is ``-(latency of the finished plan) / (baseline
    latency)`` exactly: -1 ties the baseline, above -1 beats it.

    ## Episode End
    Terminates after the last segment's decision (an instance without any multi-use tensor
    has one dummy decision whose only legal action is 0), or under ``"latency"`` after the
    last timing decision (right after the last keep/evict decision when no load can start
    earlier). Never truncated.

    ## Information
    Every step (and reset):
    - "action_mask": int8 ``(K + 1,)``, as in the observation;
    - "instance": the instance's name;
    - "decision": index of the next decision (the number made so far, timing decisions included);
    - "tensor": the tensor of the next decision ("" at the end);
    - "segment": ``(start step, next use step)`` of the next decision (``(-1, -1)`` at the end);
      for a timing decision ``(earliest start, use step)`` of its load;
    - "illegal_action": whether the action just played was illegal (played as 0);
    - "nc_bytes": non-compulsory bytes committed so far.
    On the terminal step also:
    - "plan": the ``cosma.core.ir.Plan``; it validates;
    - "cost": ``cosma.core.cost.evaluate(problem, plan)`` (its ``non_compulsory_bytes`` equals
      ``-return * scale``; under ``"latency"`` its ``latency_cycles`` does, and the plan's loads
      start where the timing phase put them);
    - "baseline_bytes": the baseline's non-compulsory bytes;
    - "baseline_solver": which solver gave them ("best-greedy", or "xla-msa" as a fallback);
    - "scale": the normalizer of the rewards.

    ## Arguments
    - problem: a ``cosma.core.ir.Problem`` to play (its capacity is used unless ``capacity`` is given);
    - model_path: an ONNX file instead (lowered with ``dtype_bytes``-byte elements);
    - capacity: bytes, a size string ("384KiB") or a tier ("M_R", "M_H", "M_P");
    - hardware: preset name for ``model_path``;
    - weights_counted: whether weights take scratchpad space (``model_path`` only);
    - dtype_bytes: element width for ``model_path`` (None: the model's own types);
    - schedule: operator order for ``problem``/``model_path`` (default, and always with a
      sampler: the best greedy baseline's schedule);
    - sampler: an ``InstanceSampler`` drawing a new instance each reset;
    - num_candidates: K; num_pending: N; occupancy_shape: (H, W);
    - order: decision order, "boundedness" (XLA), "size" or "time" (see ``solvers.xla``);
    - lookahead: add the "lookahead" key to the observation (the values of one greedy
      completion per legal action and decision; in the keep/evict phase computed from one
      recorded greedy trajectory, replayed only where an action's completion differs from it:
      ``mallocgame.lookahead``; in the timing phase one rollout per action);
    - lookahead_scale: "capacity" or "relative", what its bytes are measured against
      (``LOOKAHEAD_SCALES``);
    - all_offsets: offer every offset of a gap that fits (see Action Space), not only the
      first; XLA's rule plays the same either way;
    - objective: "bytes" or "latency", what the rewards measure (see Rewards; None: the
      ``problem``'s own objective, else "bytes"); "latency" adds the timing phase;
    - timing_order: order of the timing decisions (``TIMING_ORDERS``): "time" (by use step)
      or "saving" (the prefetch pass's order);
    - relocate: in the timing phase, also offer starts where the load's own range is taken,
      at the best-fit range free over its whole residency from there (the residency moves as
      a whole), or made free by moving one blocking residency (``LoadTiming``), as the prefetch
      pass does: ``greedy_action`` in the "saving" order then gives exactly the prefetch pass's
      plan; False: the load's own offset only.

    ## Version History
    - v0: initial version; later given the opt-in ``lookahead`` key and ``all_offsets``
      (with both off, the game and its observations are the original ones); then the
      opt-in ``objective="latency"`` (the default game is unchanged); then, under
      ``"latency"`` only, the timing phase (the start of each load is the player's choice,
      rewards are latency changes; before it the prefetch pass retimed the plan and the
      last decision earned the whole latency), ``timing_order`` and ``relocate``.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        problem: Problem | None = None,
        model_path: str | None = None,
        capacity: int | str | None = None,
        hardware: str = "edge-npu",
        weights_counted: bool = True,
        dtype_bytes: int | None = 1,
        schedule: tuple[OpName, ...] | None = None,
        sampler: InstanceSampler | None = None,
        num_candidates: int = 8,
        num_pending: int = 16,
        occupancy_shape: tuple[int, int] = (32, 32),
        order: str = "boundedness",
        lookahead: bool = False,
        lookahead_scale: str = "capacity",
        all_offsets: bool = False,
        render_mode: str | None = None,
        objective: str | None = None,
        timing_order: str = "time",
        relocate: bool = True,
    ):
        if sum(x is not None for x in (problem, model_path, sampler)) != 1:
            raise UsageError("give exactly one of problem, model_path, sampler")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise UsageError(f"unknown render mode {render_mode!r}")
        self.render_mode = render_mode
        self.K, self.N = int(num_candidates), int(num_pending)
        self.H, self.W = (int(x) for x in occupancy_shape)
        self.order = order
        self.lookahead = bool(lookahead)
        if lookahead_scale not in LOOKAHEAD_SCALES:
            raise UsageError(f"unknown lookahead scale {lookahead_scale!r}; known: {', '.join(LOOKAHEAD_SCALES)}")
        self.lookahead_scale = lookahead_scale
        self.all_offsets = bool(all_offsets)
        self.objective = objective or (problem.objective if problem is not None else "bytes")
        if self.objective not in OBJECTIVES:
            raise UsageError(f"unknown objective {self.objective!r}; known objectives: {', '.join(OBJECTIVES)}")
        if timing_order not in TIMING_ORDERS:
            raise UsageError(f"unknown timing order {timing_order!r}; known: {', '.join(TIMING_ORDERS)}")
        self.timing_order = timing_order
        self.relocate = bool(relocate)
        self._lookahead_live = True  # False after stop_lookahead(), until the next reset
        self.sampler = sampler
        self._schedule_arg = tuple(schedule) if schedule is not None else None
        self._cache: dict[str, tuple] = {}  # sampler instances seen: name -> (tables, baseline, statics)

        self._fixed: Instance | None = None
        if model_path is not None:
            graph = load_zoo_graph(str(model_path), dtype_bytes)
            problem = make_problem(graph, capacity, get_hardware(hardware), weights_counted)
        elif problem is not None and capacity is not None:
            problem = make_problem(problem.graph, capacity, problem.hardware, problem.weights_counted)
        if problem is not None:
            self._fixed = Instance(f"{problem.graph.name}/{problem.capacity}", problem)

        F, C = len(SEGMENT_FEATURES), len(CANDIDATE_FEATURES)
        box = lambda *shape: spaces.Box(0.0, 1.0, shape=shape, dtype=np.float32)  # noqa: E731
        keys = {
            "segment": box(F),
            "pending": box(self.N, F),
            "occupancy": box(self.H, self.W),
            "demand": box(self.H),
            "candidates": box(self.K + 1, C),
            "action_mask": spaces.MultiBinary(self.K + 1),
        }
        if self.lookahead:
            keys["lookahead"] = box(self.K + 1, len(LOOKAHEAD_FEATURES))
        self.observation_space = spaces.Dict(keys)
        self.action_space = spaces.Discrete(self.K + 1)
        self.state: MsaState | None = None
        self.timing: LoadTiming | None = None
        self._trace: GreedyTrace | None = None  # the greedy completion of the current state, recorded
        self._horizons: tuple | None = None  # (tables, read_horizons(tables)) of the last trace built
        if self._fixed is not None:
            self._load(self._fixed)

    # -- instances -----------------------------------------------------------------------
    def _load(self, instance: Instance) -> None:
        """Make ``instance`` the current one: tables, baseline and observation scaffolding."""
        problem = instance.problem
        if problem.objective != self.objective:
            problem = replace(problem, objective=self.objective)
        if problem.capacity < min_capacity(problem):
            raise CapacityError(
                f"{instance.name}: capacity {problem.capacity} B is below M_R = {min_capacity(problem)} B"
            )
        cached = self._cache.get(instance.name)
        if cached is None:
            baseline = best_greedy_baseline(problem)
            schedule = self._schedule_arg if self._fixed is not None and self._schedule_arg else baseline.schedule
            tables = MsaTables(problem, schedule, self.order)
            cached = (tables, baseline, self._static_tables(tables))
            if self.sampler is not None:
                if len(self._cache) > 256:
                    self._cache.clear()
                self._cache[instance.name] = cached
        self.instance = instance
        self.problem = problem
        self.tables, self.baseline, statics = cached
        self._static, self._time_cum, self._addr_lo, self._addr_hi, self._addr_w, self._demand0 = statics
        self.schedule = self.tables.schedule
        largest = max(self.tables.size, default=1)
        self.scale = float(self.baseline.nc_bytes if self.baseline.nc_bytes > 0 else largest)
        if self.objective == "latency":
            self.scale = float(max(1, self.baseline.latency_cycles))

    def _static_tables(self, t: MsaTables):
        """Per-instance arrays built once: static segment features (padded by N zero rows),
        cumulative time-bin weights, address-bin edges, and per-step demand weights with the
        initial reserved bytes per step."""
        n, cap = t.n_steps, t.capacity
        D = len(t.decisions)
        F = len(SEGMENT_FEATURES)
        static = np.zeros((max(D, 1) + self.N + 1, F), dtype=np.float32)
        top_score = max(t.score, default=0.0) or 1.0
        kinds = (TensorKind.INPUT, TensorKind.WEIGHT, TensorKind.ACTIVATION, TensorKind.OUTPUT)
        for d, (i, j, a, b) in enumerate(t.decisions):
            segs = len(t.uses[i]) - 1
            row = static[d]
            row[0] = 1.0
            row[1] = t.fp[i] / cap
            row[2] = math.log1p(t.size[i]) / math.log1p(cap)
            row[3], row[4], row[5] = a / n, b / n, (b - a) / n
            row[6 + kinds.index(t.kind[i])] = 1.0
            row[10] = j / segs
            row[11] = (segs - 1 - j) / segs
            row[12] = t.score[i] / top_score
            row[13] = min(1.0, t.size[i] / cap)
        edges = np.linspace(0.0, n, self.H + 1)
        steps = np.arange(n)
        overlap = np.clip(
            np.minimum(steps[None, :] + 1, edges[1:, None]) - np.maximum(steps[None, :], edges[:-1, None]), 0, None
        )
        per_step = overlap / (edges[1:] - edges[:-1])[:, None]  # [H, n]
        # time_cum[e] - time_cum[s]: each time bin's share of steps [s, e). Shape [n + 1, H].
        time_cum = np.concatenate([np.zeros((1, self.H)), np.cumsum(per_step.T, axis=0)], axis=0)
        addr = np.linspace(0.0, cap, self.W + 1)
        reserved0 = np.array([sum(t.fp[i] for i in t.operands[s]) for s in range(n)], dtype=np.float64)
        return static, time_cum, addr[:-1], addr[1:], addr[1:] - addr[:-1], (per_step / cap, reserved0)

    # -- gymnasium API -------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self.sampler is not None:
            self._load(self.sampler.sample(self.np_random))
        self.state = MsaState(self.tables, all_offsets=self.all_offsets)
        self.occupancy = np.zeros((self.H, self.W), dtype=np.float32)
        self._per_step, reserved0 = self._demand0
        self.reserved_bytes = reserved0.copy()
        self.illegal = False
        self.terminated = False
        self._lookahead_live = True
        self._trace = None
        self.timing = None  # the timing phase's state (a LoadTiming), once it starts
        self._loads: list[Load] = []  # the timing phase's decisions, in ``timing_order``
        self._tk = 0  # index in ``_loads`` of the current timing decision
        self._played = 0  # timing decisions played (loads skipped for want of a start are not)
        self._starts: list[StartOption] = []  # its earlier starts: action k plays _starts[k - 1]
        self._latency = 0  # the cost model's latency of the plan as timed so far (timing phase)
        self._prepare()
        return self._observation(), self._info()

    def step(self, action):
        assert self.state is not None, "call reset() first"
        if self.terminated:
            raise RuntimeError("episode finished: call reset()")
        action = int(action)
        self.illegal = not (0 <= action <= self.K and self._mask[action])
        if self.illegal:
            action = 0
        if self.timing is not None:  # the timing phase: the reward is the latency change
            before = self._latency
            if action > 0:
                self._move(action - 1)
            self._tk += 1
            self._played += 1
            self._latency = self.timing.latency()
            reward = -(self._latency - before) / self.scale
            self._next_load()
        else:
            if self._trace is not None and self.tables.decisions:  # still on the recorded trajectory?
                offset = EVICT if action == 0 else self._cands[action - 1].offset
                if not self._trace.follows(self.state.k, offset):
                    self._trace = None
            if not self.tables.decisions:  # the dummy decision of an instance with nothing to decide
                cost = 0
            elif action == 0:
                cost = self.state.apply(EVICT)
            else:
                cost = self._keep(action - 1)
            if self.objective == "bytes":
                reward = -cost / self.scale
            elif self.state.done:  # the untimed plan's latency, once: the timing phase changes it from here
                self._start_timing()
                reward = -self._latency / self.scale
            else:
                reward = 0.0
        terminated = self.terminated = self.state.done and (self.timing is None or self._tk >= len(self._loads))
        if not terminated:
            self._prepare()
        else:
            self._mask = np.zeros(self.K + 1, dtype=np.int8)
            self._mask[0] = 1
            self._cands, self._starts = [], []
        info = self._info()
        if terminated:
            info.update(self._final_info())
        return self._observation(), reward, terminated, False, info

    def _keep(self, choice: int) -> Bytes:
        """Keep the current segment at candidate ``choice``; update occupancy and demand."""
        st, t = self.state, self.tables
        i, _, a, b = st.decision
        lo = a + 1 if st.cur[i] >= 0 else a
        cand = self._cands[choice]
        covered = [s for s in range(lo, b + 1) if i in st.reserved[s]]
        cost = st.apply(choice)
        fp = t.fp[i]
        self._add_occupancy(lo, b, cand.offset, fp)
        for s in covered:
            self.reserved_bytes[s] -= fp
        return cost

    # -- the timing phase (objective="latency") -----------------------------------------------
    def _start_timing(self) -> None:
        """After the last keep/evict decision: the finished plan's loads become the timing
        decisions, in ``timing_order``: those with an earlier start free at the outset (without
        ``relocate`` a load's options only shrink as others move, so no load left out gains one
        later; with it a relocated residency frees its old range, so every load with room
        before its use step is kept, and skipped in turn if it has no start then)."""
        plan = self.state.plan()
        self.timing = timing = LoadTiming(self.problem, plan, relocate=self.relocate)
        if self.timing_order == "time":
            loads = sorted(timing.loads, key=lambda load: (load.use, load.tensor))
        else:  # the prefetch pass's order: its sort, over the same sequence of loads

            def saving(load: Load) -> float:
                best = LoadTiming.best(timing.options(load, displace=self.relocate))
                return 0.0 if best is None else best.delta

            loads = sorted(timing.loads, key=saving)
        if self.relocate:
            self._loads = [load for load in loads if load.size and load.earliest < load.use]
        else:
            self._loads = [load for load in loads if timing.options(load)]
        self._tk = 0
        self._latency = timing.latency()
        self._timing_rows = self._timing_static()
        self._plan_occupancy(plan)
        self._next_load()

    def _next_load(self) -> None:
        """Skip to the next timing decision with an earlier start to offer (one without has
        nothing to decide: it stays at its use step) and list that decision's options."""
        self._starts = []
        while self._tk < len(self._loads):
            self._starts = self._start_options(self._loads[self._tk])
            if self._starts:
                return
            self._tk += 1

    def _start_options(self, load: Load) -> list[StartOption]:
        """Up to K earlier starts of ``load``, best first: the prefetch pass's choice for it
        (``LoadTiming.best``: the lowest latency, the latest start on ties; the latest start
        that hides the whole copy when one exists) if it lowers the latency, then the others
        by latency change, later first on ties. Scanned back until K fully hidden starts are
        seen, so every start is one that hides at least as much as any earlier one left out."""
        options = self.timing.options(load, hidden=self.K, displace=self.relocate)
        best = LoadTiming.best(options)
        rest = sorted((o for o in options if o is not best), key=lambda o: (o.delta, -o.start))
        return ([best] if best is not None else []) + rest[: self.K - (best is not None)]

    def _move(self, choice: int) -> None:
        """Start the current load at ``_starts[choice]``; its earlier steps join the occupancy
        (a relocated residency leaves its old range and takes the new one over its whole span)."""
        load, option = self._loads[self._tk], self._starts[choice]
        r = self.timing.residencies[load.index]
        if option.displaced is not None:  # the residency moved to make room leaves its old range
            j, offset = option.displaced
            other = self.timing.residencies[j]
            fp = self.problem.footprint(other.tensor)
            self._add_occupancy(other.start, other.end - 1, other.offset, fp, sign=-1.0)
            self._add_occupancy(other.start, other.end - 1, offset, fp)
        self.timing.move(load, option)
        if option.offset == r.offset:
            self._add_occupancy(option.start, load.use - 1, r.offset, load.footprint)
        else:
            self._add_occupancy(r.start, r.end - 1, r.offset, load.footprint, sign=-1.0)
            self._add_occupancy(option.start, r.end - 1, option.offset, load.footprint)

    def _timing_static(self) -> np.ndarray:
        """The static rows (``TIMING_SEGMENT_FEATURES``) of the timing decisions, padded by N zero rows."""
        t, n, cap = self.tables, self.tables.n_steps, self.tables.capacity
        rows = np.zeros((len(self._loads) + self.N + 1, len(SEGMENT_FEATURES)), dtype=np.float32)
        per_tensor: dict[str, list[Load]] = {}
        for load in self.timing.loads:
            per_tensor.setdefault(load.tensor, []).append(load)
        top_score = max(t.score, default=0.0) or 1.0
        kinds = (TensorKind.INPUT, TensorKind.WEIGHT, TensorKind.ACTIVATION, TensorKind.OUTPUT)
        for d, load in enumerate(self._loads):
            i = t.index[load.tensor]
            mine = sorted(per_tensor[load.tensor], key=lambda x: x.use)
            j = mine.index(load)
            row = rows[d]
            row[0] = 1.0
            row[1] = t.fp[i] / cap
            row[2] = math.log1p(t.size[i]) / math.log1p(cap)
            row[3], row[4], row[5] = load.earliest / n, load.use / n, (load.use - load.earliest) / n
            row[6 + kinds.index(t.kind[i])] = 1.0
            row[10] = j / len(mine)
            row[11] = (len(mine) - 1 - j) / len(mine)
            row[12] = t.score[i] / top_score
            row[13] = min(1.0, t.size[i] / cap)
            row[15] = float(t.is_act[i])
        return rows

    def _plan_occupancy(self, plan: Plan) -> None:
        """The occupancy map of the whole finished plan, the space the timing phase plays in."""
        self.occupancy[:] = 0.0
        for r in plan.residencies:
            self._add_occupancy(r.start, r.end - 1, r.offset, self.problem.footprint(r.tensor))

    def _add_occupancy(self, lo: int, hi: int, offset: Bytes, fp: Bytes, sign: float = 1.0) -> None:
        """Add (``sign`` -1: remove) the block ``[offset, offset + fp)`` over steps ``lo..hi``
        to the occupancy map."""
        rows = self._time_cum[hi + 1] - self._time_cum[lo]  # [H]: share of each time bin
        cols = np.minimum(offset + fp, self._addr_hi) - np.maximum(offset, self._addr_lo)
        np.maximum(cols, 0.0, out=cols)
        cols /= self._addr_w  # [W]: share of each address bin
        if sign > 0:
            self.occupancy += rows[:, None] * cols[None, :]
        else:
            self.occupancy -= rows[:, None] * cols[None, :]
            np.maximum(self.occupancy, 0.0, out=self.occupancy)  # float rounding only
        np.minimum(self.occupancy, 1.0, out=self.occupancy)  # float rounding only

    def _timing_observation(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """segment, pending, demand and candidates of the current timing decision."""
        tk, n, timing = self._tk, self.tables.n_steps, self.timing
        cands = np.zeros((self.K + 1, len(CANDIDATE_FEATURES)), dtype=np.float32)
        segment = np.zeros(len(SEGMENT_FEATURES), dtype=np.float32)
        if tk < len(self._loads):
            segment[:] = self._timing_rows[tk]
            segment[16] = len(self._starts) / self.K
            segment[17] = 1.0
            load = self._loads[tk]
            copy = load.size / timing.bw
            gain = timing.step_time(load.use, -load.size) - timing.step_time(load.use)  # <= 0
            cands[0] = (1.0, load.use / n, 0.0, 1.0 + gain / copy, 0.0, 0.0)
            window = max(1, load.use - load.earliest)
            for c, o in enumerate(self._starts, start=1):
                hidden = 1.0 - o.added / copy
                cands[c] = (1.0, o.start / n, (load.use - o.start) / window, hidden,
                            max(0.0, -o.delta) / copy, max(0.0, o.delta) / copy)  # fmt: skip
        np.clip(cands, 0.0, 1.0, out=cands)
        # "demand" in the timing phase: the DMA bytes each time bin's compute still hides / capacity.
        slack = np.maximum(np.asarray(timing.compute) * timing.bw - np.asarray(timing.dma), 0.0)
        demand = np.minimum((self._per_step @ slack).astype(np.float32), 1.0)
        pending = self._timing_rows[tk + 1 : tk + 1 + self.N].copy()
        return segment, pending, demand, cands

    def _timing_completions(self) -> np.ndarray:
        """Exposed DMA bytes of the finished plan ((latency - compute) x bandwidth) when each
        legal action is followed by the greedy timing of the remaining loads; -1 if illegal."""
        out = np.full(self.K + 1, -1.0)
        compute = sum(self.timing.compute)
        for action in np.flatnonzero(self._mask):
            timing = self.timing.clone()
            if action > 0:
                timing.move(self._loads[self._tk], self._starts[action - 1])
            for load in self._loads[self._tk + 1 :]:
                best = LoadTiming.best(timing.options(load))
                if best is not None:
                    timing.move(load, best)
            out[action] = max(0.0, timing.latency_float() - compute) * timing.bw
        return out

    def _prepare(self) -> None:
        """Legal actions of the current decision (and their greedy completions)."""
        self._mask = np.zeros(self.K + 1, dtype=np.int8)
        self._mask[0] = 1
        if self.timing is not None:
            self._cands = []
            self._mask[1 : 1 + len(self._starts)] = 1
        elif self.tables.decisions:
            self._cands = self.state.options(self.K)
            self._mask[1 : 1 + len(self._cands)] = 1
        else:
            self._cands = []
        self._completion = self._completions() if self.lookahead and self._lookahead_live else None

    def _completions(self) -> np.ndarray:
        """Bytes each legal action adds when XLA's rule plays the rest of the episode after
        it; -1 for illegal actions. ``[K + 1]`` int64."""
        if self.timing is not None:
            return self._timing_completions()
        out = np.full(self.K + 1, -1, dtype=np.int64)
        if not self.tables.decisions:
            out[0] = 0
            return out
        # One recorded greedy rollout, kept while the episode follows it (``mallocgame.lookahead``):
        # the same values as one ``play_greedy`` per action, without playing what they share.
        if self._trace is None:
            if self._horizons is None or self._horizons[0] is not self.tables:
                self._horizons = (self.tables, read_horizons(self.tables))
            self._trace = GreedyTrace(self.state, self._horizons[1])
        legal = np.flatnonzero(self._mask)
        choices = [EVICT if action == 0 else int(action) - 1 for action in legal]
        out[legal] = self._trace.completions(self.state.k, choices, self._cands)
        return out

    def _observation(self) -> dict[str, np.ndarray]:
        if self.timing is not None:
            segment, pending, demand, cands = self._timing_observation()
            obs = {
                "segment": segment,
                "pending": pending,
                "occupancy": self.occupancy.copy(),
                "demand": demand,
                "candidates": cands,
                "action_mask": self._mask.copy(),
            }
            if self.lookahead:
                obs["lookahead"] = self._lookahead_features()
            return obs
        st, t = self.state, self.tables
        k = st.k
        segment = self._static[k].copy() if k < len(t.decisions) else np.zeros(len(SEGMENT_FEATURES), np.float32)
        cands = np.zeros((self.K + 1, len(CANDIDATE_FEATURES)), dtype=np.float32)
        cands[0, 0] = 1.0
        if k < len(t.decisions):
            i, _, a, b = t.decisions[k]
            resident = st.cur[i] >= 0
            segment[14] = float(resident)
            segment[15] = float(t.is_act[i] and st.evictions[i] > 0)
            segment[16] = len(self._cands) / self.K
            segment[17] = k / len(t.decisions)
            cap, fp = t.capacity, t.fp[i]
            span = b - a + (0 if resident else 1)
            for c, cand in enumerate(self._cands, start=1):
                cands[c] = (
                    1.0,
                    cand.offset / cap,
                    (cand.offset + fp) / cap,
                    fp / cand.gap if cand.gap else 1.0,
                    len(cand.repacks) / span,
                    0.0,
                )
            cands[0, 5] = st.evict_cost() / (2 * cap)
        obs = {
            "segment": segment,
            "pending": self._static[k + 1 : k + 1 + self.N].copy(),
            "occupancy": self.occupancy.copy(),
            "demand": np.minimum((self._per_step @ self.reserved_bytes).astype(np.float32), 1.0),
            "candidates": cands,
            "action_mask": self._mask.copy(),
        }
        if self.lookahead:
            obs["lookahead"] = self._lookahead_features()
        return obs

    def _lookahead_features(self) -> np.ndarray:
        """The "lookahead" rows (``LOOKAHEAD_FEATURES``) from the greedy completions."""
        rows = np.zeros((self.K + 1, len(LOOKAHEAD_FEATURES)), dtype=np.float32)
        if self.terminated or self._completion is None:
            return rows
        legal = self._completion >= 0
        completion = self._completion[legal]
        rows[legal, 0] = 1.0
        rows[legal, 1] = completion == completion.min()
        if self.lookahead_scale == "capacity":
            cost = completion / self.tables.capacity
            rows[legal, 2] = np.minimum(cost - cost.min(), 1.0)
            rows[legal, 3] = cost / (1.0 + cost)
        else:
            if self.timing is not None:
                size = max(1, self._loads[self._tk].size)
            else:
                size = max(1, self.tables.size[self.state.decision[0]]) if self.tables.decisions else 1
            regret = (completion - completion.min()) / size
            cost = completion / (self._completion[greedy_action(self)] + size)
            rows[legal, 2] = regret / (1.0 + regret)
            rows[legal, 3] = cost / (1.0 + cost)
        return rows

    def _info(self) -> dict[str, Any]:
        st, t = self.state, self.tables
        if st.k < len(t.decisions):
            i, _, a, b = t.decisions[st.k]
            tensor, segment = t.names[i], (a, b)
        elif self.timing is not None and self._tk < len(self._loads):
            load = self._loads[self._tk]
            tensor, segment = load.tensor, (load.earliest, load.use)
        else:
            tensor, segment = "", (-1, -1)
        return {
            "action_mask": self._mask.copy(),
            "instance": self.instance.name,
            "decision": st.k + self._played,
            "tensor": tensor,
            "segment": segment,
            "illegal_action": self.illegal,
            "nc_bytes": st.nc_bytes,
        }

    def _final_info(self) -> dict[str, Any]:
        plan = self.final_plan()
        cost = evaluate(self.problem, plan)
        if cost.non_compulsory_bytes != self.state.nc_bytes:  # the game's accounting is the cost model's
            raise AssertionError(
                f"mallocGame accounted {self.state.nc_bytes} B, the cost model {cost.non_compulsory_bytes} B"
            )
        return {
            "plan": plan,
            "cost": cost,
            "baseline_bytes": self.baseline.nc_bytes,
            "baseline_solver": self.baseline.solver,
            "scale": self.scale,
        }

    def render(self):
        if self.render_mode != "ansi":
            return None
        st, t = self.state, self.tables
        lines = [
            f"{self.instance.name}: decision {st.k}/{len(t.decisions)}, {st.nc_bytes} non-compulsory bytes"
            f" (baseline {self.baseline.nc_bytes})"
        ]
        shades = " .:-=+*#%@"
        for row in np.clip(self.occupancy, 0, 1):
            lines.append("|" + "".join(shades[min(9, int(v * 10))] for v in row) + "|")
        return "\n".join(lines)

    # -- search support --------------------------------------------------------------------
    def legal_actions(self) -> np.ndarray:
        """Indices of the legal actions of the current decision."""
        return np.flatnonzero(self._mask)

    def clone_state(self) -> tuple:
        """A snapshot of the mutable game state (the instance stays the same)."""
        timing = None
        if self.timing is not None:  # the keep/evict state is final: shared, not copied
            timing = (
                self.timing.clone(), self._loads, self._tk, self._played, list(self._starts), self._latency,
                self._timing_rows,
            )  # fmt: skip
        return (
            self.state if timing is not None else self.state.clone(),
            self.occupancy.copy(),
            self.reserved_bytes.copy(),
            self._mask.copy(),
            list(self._cands),
            self._completion,
            self.terminated,
            timing,
            self._trace,  # immutable: shared
        )

    def restore_state(self, snapshot: tuple) -> None:
        """Return to a ``clone_state`` snapshot (which stays reusable)."""
        state, occupancy, reserved_bytes, mask, cands, self._completion, self.terminated, timing, self._trace = snapshot
        self.state = state if timing is not None else state.clone()
        self.occupancy, self.reserved_bytes = occupancy.copy(), reserved_bytes.copy()
        self._mask, self._cands = mask.copy(), list(cands)
        self.illegal = False
        if timing is None:
            self.timing, self._loads, self._tk, self._played, self._starts, self._latency = None, [], 0, 0, [], 0
        else:
            timing, self._loads, self._tk, self._played, starts, self._latency, self._timing_rows = timing
            self.timing, self._starts = timing.clone(), list(starts)

    def stop_lookahead(self) -> None:
        """Stop paying for the "lookahead" rows (the greedy completions of every legal action
        and decision) until the next reset; they read 0 from the next decision on. For a
        fallback that finishes an episode past a deadline without looking at them."""
        self._lookahead_live = False

    def final_plan(self) -> Plan:
        """The plan of a finished episode (under ``"latency"``, its loads at the starts the timing phase chose)."""
        return self.state.plan() if self.timing is None else self.timing.plan()


def greedy_action(env: gym.Env) -> int:
    """XLA's rule: keep at the best-fit offset when legal (action 1), else evict (0).
    Played through the env it gives exactly the ``xla-msa`` solver's bytes. In the timing
    phase, the prefetch pass's rule: the start that lowers the latency most, the latest on
    ties (action 1), when one lowers it; else the use step (0)."""
    env = env.unwrapped
    mask = env._mask
    if getattr(env, "timing", None) is not None:  # (test stand-ins have no timing phase)
        return 1 if len(mask) > 1 and mask[1] and env._starts[0].delta < -1e-9 else 0
    return 1 if len(mask) > 1 and mask[1] else 0


def lookahead_action(env: gym.Env) -> int:
    """One step of lookahead over XLA's rule (a rollout policy): the legal action whose
    greedy completion adds the fewest bytes (in the timing phase: leaves the fewest exposed
    DMA bytes), the greedy action on ties. Never worse than
    ``greedy_action`` over a whole episode, since the greedy action's completion is always
    one of those compared."""
    env = env.unwrapped
    completion = env._completion if env._completion is not None else env._completions()
    greedy = greedy_action(env)
    legal = np.flatnonzero(completion >= 0)
    best = completion[legal].min()
    return greedy if completion[greedy] == best else int(legal[np.argmax(completion[legal] == best)])


# The hand-made policies (env -> action), by the names the commands use.
RULES = {"greedy": greedy_action, "lookahead": lookahead_action}


def random_action(env: gym.Env, rng: np.random.Generator) -> int:
    """A uniformly random legal action."""
    legal = env.unwrapped._mask.nonzero()[0]
    return int(legal[int(rng.integers(len(legal)))])


def play(env: gym.Env, policy, *, seed: int | None = None) -> tuple[float, dict[str, Any]]:
    """Play one episode with ``policy(env) -> action``; returns (return, terminal info)."""
    obs, info = env.reset(seed=seed)
    total, terminated = 0.0, False
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(policy(env))
        total += reward
    return total, info


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="mallocgame.env:MallocGameEnv")


__all__ = [
    "ENV_ID",
    "SEGMENT_FEATURES",
    "CANDIDATE_FEATURES",
    "STEP_INFO_KEYS",
    "TERMINAL_INFO_KEYS",
    "Baseline",
    "best_greedy_baseline",
    "MallocGameEnv",
    "LOOKAHEAD_FEATURES",
    "LOOKAHEAD_SCALES",
    "TIMING_ORDERS",
    "TIMING_SEGMENT_FEATURES",
    "TIMING_CANDIDATE_FEATURES",
    "greedy_action",
    "lookahead_action",
    "RULES",
    "random_action",
    "play",
]
