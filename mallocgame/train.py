"""Train the mallocMuZero agent by self-play: ``mallocgame train [--flags]``.

Readable top to bottom, cleanrl style: the config, then ``train`` (seeding, envs,
networks, the loop: self-play with search -> replay -> MuZero loss -> periodic
evaluation -> checkpoints), then the command line. One run writes, under
``<out_dir>/<run_name>/`` (default ``runs/muzero/``):

* ``checkpoint.pt``: weights, optimizer state, the full config and the counters
  (``--resume PATH`` continues from it; Ctrl-C saves one, then exits cleanly);
* ``config.json``; ``log.csv``: scalars per logging interval (losses, episode return,
  evaluation win rate against best-greedy and mean non-compulsory bytes);
* ``curve.png``: the learning curve drawn from ``log.csv``.

Example (the shipped checkpoint's command is in ``results/muzero/README.md``)::

    mallocgame train --minutes 30 --seed 0
"""

from __future__ import annotations

import argparse
import ast
import csv
import inspect
import json
import math
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cosma.core.errors import UsageError
from cosma.core.ir import OBJECTIVES
from mallocgame.agent.checkpoint import net_config_of, read_checkpoint
from mallocgame.agent.envs import (
    EnvSettings,
    agent_reward,
    evaluation_instances,
    make_problem_env,
    make_sampler_env,
    reward_frame,
)
from mallocgame.agent.learner import muzero_loss
from mallocgame.agent.networks import MuZeroNet, NetConfig
from mallocgame.agent.policy import INFERENCE_C_SCALE, INFERENCE_MIN_Q_RANGE, MODELS, MuZeroPolicy, make_policy
from mallocgame.agent.replay import Game, ReplayBuffer
from mallocgame.agent.rollout import Episode, play_episodes
from mallocgame.agent.search import SearchParams
from mallocgame.agent.selfplay import ActorPool, RayActorPool, SelfPlay


@dataclass
class TrainConfig:
    run_name: str = ""
    """Name of the run's folder; empty: muzero_s<seed>_sim<num_simulations>_<UTC date-time>."""
    out_dir: str = "runs/muzero"
    """Folder that holds one sub-folder per run (runs/ is git-ignored; --ship copies a run to results/)."""
    seed: int = 0
    """Seeds torch, numpy, Python's random and the envs' instance samplers."""
    threads: int = 1
    """torch CPU threads (the machine is shared: keep 1)."""
    minutes: float = 20.0
    """Wall-clock budget of the run in minutes (counted across --resume)."""
    max_env_steps: int = 0
    """Stop after this many self-play decisions in total; 0: no limit, only --minutes."""
    init: str = ""
    """Start a new run from another run's checkpoint (fine-tuning): its network weights, and its
    optimizer's state (moments) when every parameter's shape matches; this run's config, counters
    from zero and an empty replay otherwise, so the objective and the instances may differ. The
    env and network settings must give the checkpoint's shapes (else an error). "": fresh weights.
    Not --resume, which continues a run under its own config."""

    # Environment (these fix the observation shapes the networks are built for).
    num_candidates: int = 8
    """K: candidate offsets per decision; the agent has K + 1 actions (0 = evict)."""
    num_pending: int = 16
    """N: upcoming use segments shown in each observation."""
    occupancy_size: int = 32
    """Side of the square scratchpad-over-time occupancy map in each observation."""
    hardware: str = "edge-npu"
    """Hardware preset of the training instances."""
    instances: str = "dags"
    """Instance-sampler preset for self-play: "dags" (random DAGs: short games, where best-greedy
    leaves most to win), "real" (the training split of the zoo and NAS models: windows of 8-64
    operators and small whole models, at the tiers and between them), "mixed" (half "real",
    half "dags"), "default" (whole zoo models and DAGs) or "zoo". No preset ever draws a
    validation or held-out model (mallocgame.instances.SPLITS)."""
    lookahead: bool = True
    """Show the networks each action's greedy completion (the env's "lookahead" key: the
    bytes of the action followed by XLA's rule to the end), and warm-start from the policy
    that picks the cheapest (``lookahead_action``) instead of XLA's rule."""
    lookahead_scale: str = "capacity"
    """What the lookahead's regret and completion columns are measured against: "capacity"
    (bytes over the scratchpad size) or "relative" (over the decision's tensor size and the
    greedy action's completion, the same scale on a zoo model as on a small DAG)."""
    all_offsets: bool = True
    """Offer every offset of a free gap that fits as a candidate of its own (both ends, the
    tensor's reserved offset), not only the first: more to choose from for a player that
    looks ahead (the greedy rule plays the same)."""
    objective: str = "bytes"
    """The game self-play and the held-out evaluation play: "bytes" (non-compulsory bytes) or
    "latency" (the roofline latency: rewards are latency changes, and a timing phase chooses
    when each load starts; see mallocgame.env)."""

    # Self-play and search.
    num_envs: int = 8
    """Games played in lockstep; their searches run as one batch (in each actor, with --actors)."""
    actors: int = 0
    """Self-play processes beside the learner, on the learner's weights in shared memory; 0: self-play
    and learning take turns in one process. The learner keeps updates_per_iteration's ratio of
    gradient steps to decisions."""
    ray: str = field(default="", metadata={"const": "local"})
    """Self-play actors on Ray (the learner stays here): --ray alone starts a local Ray with
    --actors CPUs; --ray ADDRESS joins a running cluster (auto, ray://head:10001) whose nodes have
    the project installed; "": no Ray (process actors, or none). Taken from the command line
    on --resume: where a run continues is not part of its checkpoint. --actors 0 plays with 1."""
    weights_every: int = 10
    """With --ray: gradient steps between two broadcasts of the learner's weights to the actors
    (the process actors read the live weights in shared memory)."""
    num_simulations: int = 32
    """Model calls per searched decision in self-play (Gumbel MuZero works with few)."""
    max_considered_actions: int = 8
    """Actions sequential halving starts with at the root."""
    gumbel_scale: float = 1.0
    """Scale of the Gumbel noise at the root during self-play (0 in evaluation)."""
    c_scale: float = 0.1
    """Weight of the (normalized) q-values against the policy prior in the self-play search (the
    paper's 0.1; lower, e.g. 0.02, with --selfplay-model learned, whose q-values are noisier)."""
    min_q_range: float = 0.1
    """Floor of the range the search min-max normalizes q-values by, in return units (bytes over
    the capacity): below it, q-values that differ by noise are not stretched into a sharp
    policy target; 0: mctx's normalization."""
    policy_target_scale: float = 1.0
    """Multiplies sigma(q) in the policy target only (the self-play search still chooses with
    c_scale): above 1, the target moves further from the prior toward the actions the search
    found better."""
    selfplay_model: str = "true"
    """What self-play searches with: "true" (the env itself, as AlphaZero and expert iteration
    do: exact rewards and transitions, so the policy targets are good from the first game) or
    "learned" (MuZero proper: the dynamics network). Either way the learned model is trained on
    the games; evaluation searches with it, and the muzero solver unless told model=true."""

    # Warm start.
    demo_episodes: int = 100
    """Games of the env's greedy policy (XLA's rule; with --lookahead, its one-step lookahead)
    stored in the replay before self-play, with one-hot policy targets and Monte Carlo values:
    the search starts from greedy play instead of random play; 0: none."""
    demo_updates: int = 300
    """Gradient steps on the demonstrations alone, before self-play starts."""
    demo_smoothing: float = 0.3
    """Policy targets of demonstrations: this share spread over the legal actions, the rest
    on the greedy action; a prior not fully peaked leaves the search room to deviate."""

    # Learning.
    latent_dim: int = 128
    """Size of the latent state."""
    hidden_dim: int = 128
    """Width of hidden layers."""
    unroll_steps: int = 5
    """K: decisions the learned model is unrolled for in the loss."""
    td_steps: int = 10
    """n of the n-step value targets (bootstrapped with the search's root value)."""
    discount: float = 1.0
    """Per-decision discount (the game is episodic: 1)."""
    batch_size: int = 128
    """Positions per gradient step."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 1e-4
    """L2 weight decay (AdamW)."""
    value_weight: float = 0.25
    """Weight of the value loss (MuZero uses 0.25 with replayed targets)."""
    consistency_weight: float = 2.0
    """Weight of EfficientZero's consistency loss (unrolled latents vs the representation of
    the observations that followed; EfficientZero uses 2); 0: plain MuZero."""
    sibling_weight: float = 0.0
    """Weight of the sibling loss (``learner.muzero_loss``): the learned model's reward and
    value one step after every root action the self-play search tried, fitted to what the
    search found; only with --selfplay-model true, whose findings are the real game's; 0: off."""
    grad_clip: float = 5.0
    """Clip the gradient norm at this value."""
    replay_capacity: int = 30_000
    """Decisions kept in the replay buffer (oldest games dropped first)."""
    min_replay: int = 500
    """Decisions in the buffer before learning starts."""
    surprise_share: float = 0.0
    """Share of each batch drawn in proportion to the decision's surprise: how far the self-play
    search moved the policy from its prior there (total variation distance); 0: every position
    uniformly, as MuZero without prioritized replay."""
    updates_per_iteration: int = 1
    """Gradient steps per lockstep decision of all num_envs games."""

    # Evaluation, logging, checkpoints.
    eval_every_s: float = 120.0
    """Seconds of training between evaluations on the held-out set."""
    eval_models: str = "resnet18"
    """Zoo models in the held-out set (comma-separated file stems; "all"; "": none)."""
    eval_dags: int = 8
    """Random DAGs in the held-out set (seeds 1000, 1001, ...; never drawn by the sampler)."""
    eval_instances: int = 0
    """Evaluate on the first this many held-out instances; 0: all of them."""
    eval_simulations: int = 16
    """Simulations per decision in evaluation."""
    log_every_s: float = 15.0
    """Seconds between rows of log.csv."""
    checkpoint_every_s: float = 300.0
    """Seconds between checkpoints (one is always written at the end)."""

    def search_params(self, num_simulations: int | None = None, gumbel_scale: float | None = None) -> SearchParams:
        return SearchParams(
            num_simulations=num_simulations or self.num_simulations,
            max_num_considered_actions=self.max_considered_actions,
            gumbel_scale=self.gumbel_scale if gumbel_scale is None else gumbel_scale,
            discount=self.discount,
            c_scale=self.c_scale,
            min_q_range=self.min_q_range,
            target_scale=self.policy_target_scale,
        )

    def env_settings(self) -> EnvSettings:
        known = {f.name for f in fields(EnvSettings)}
        return EnvSettings(**{k: v for k, v in asdict(self).items() if k in known})


# The config fields a resumed run takes from the command line, not from its checkpoint.
BUDGET_FIELDS = ("minutes", "max_env_steps")


@dataclass
class Counters:
    """Where a run is; saved in checkpoints so --resume continues the clock and the log."""

    iteration: int = 0  # lockstep decisions of all games
    env_steps: int = 0  # decisions played in total
    episodes: int = 0  # self-play games finished
    updates: int = 0  # gradient steps
    wall_s: float = 0.0  # seconds of training so far


# Fields added after the first runs, with the values those runs played with: resuming an old
# checkpoint must not switch it to today's defaults.
AS_BEFORE_THEY_EXISTED = {
    "selfplay_model": "learned",
    "min_q_range": 0.0,
    "consistency_weight": 0.0,
    "sibling_weight": 0.0,
    "policy_target_scale": 1.0,
    "surprise_share": 0.0,
    "lookahead": False,
    "all_offsets": False,
    "objective": "bytes",
}

# (settings, seed) -> a self-play env; (config) -> one env per held-out instance
SelfPlayEnvFn = Callable[[EnvSettings, int], Any]
EvalEnvsFn = Callable[["TrainConfig"], list]


def default_eval_envs(cfg: TrainConfig) -> list:
    """One env per instance of the held-out evaluation set the config names."""
    settings = cfg.env_settings()
    instances = evaluation_instances(cfg.eval_models, cfg.eval_dags, cfg.hardware)
    if cfg.eval_instances:
        instances = instances[: cfg.eval_instances]
    return [make_problem_env(settings, replace(inst.problem, objective=cfg.objective)) for inst in instances]


def train(
    cfg: TrainConfig,
    resume: str | None = None,
    make_env: SelfPlayEnvFn = make_sampler_env,
    make_eval_envs: EvalEnvsFn = default_eval_envs,
    progress: bool = True,
    new_budget: tuple[str, ...] = BUDGET_FIELDS,
) -> Path:
    """Run (or continue) one training run; returns the path of its checkpoint. On
    ``resume`` the checkpoint's config wins, except the fields of ``cfg`` named in
    ``new_budget`` (the command line passes the budget flags it was given)."""
    if cfg.selfplay_model not in MODELS:
        raise UsageError(f"unknown self-play model {cfg.selfplay_model!r}; known: {', '.join(MODELS)}")
    if cfg.objective not in OBJECTIVES:
        raise UsageError(f"unknown objective {cfg.objective!r}; known objectives: {', '.join(OBJECTIVES)}")
    checkpoint = read_checkpoint(resume) if resume else None
    if checkpoint is not None:  # the checkpoint's config wins, except the budget it is given anew and where it runs
        saved = TrainConfig(**{**asdict(TrainConfig()), **AS_BEFORE_THEY_EXISTED, **checkpoint["config"]})
        cfg = TrainConfig(**{**asdict(saved), **{name: getattr(cfg, name) for name in (*new_budget, "ray")}})
    if not cfg.run_name:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        model = "" if cfg.selfplay_model == "learned" else f"_{cfg.selfplay_model}"
        lookahead = ("_lookahead" if cfg.lookahead else "") + ("_alloffsets" if cfg.all_offsets else "")
        lookahead += "_latency" if cfg.objective == "latency" else ""
        cfg.run_name = f"muzero_s{cfg.seed}_sim{cfg.num_simulations}{model}{lookahead}_{stamp}"
    run_dir = Path(cfg.out_dir) / cfg.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    # Seeding: every random choice below derives from cfg.seed.
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    settings = cfg.env_settings()
    envs = [make_env(settings, cfg.seed * 1000 + i) for i in range(cfg.num_envs)]
    eval_envs = make_eval_envs(cfg)

    net_cfg = NetConfig.from_space(
        envs[0].observation_space, int(envs[0].action_space.n), latent_dim=cfg.latent_dim, hidden_dim=cfg.hidden_dim
    )
    net = MuZeroNet(net_cfg)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    counters = Counters()
    if cfg.init and checkpoint is None:  # a new run from another run's weights (not on --resume: its own are newer)
        init_from(cfg.init, net, net_cfg, optimizer, cfg)
    if checkpoint is not None:
        net.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        counters = Counters(**checkpoint["counters"])
        rng = np.random.default_rng([cfg.seed, counters.iteration])  # a fresh stream, still seeded
    replay = ReplayBuffer(cfg.replay_capacity, cfg.td_steps, cfg.discount)

    def learn() -> None:
        batch = replay.sample(cfg.batch_size, cfg.unroll_steps, rng, cfg.surprise_share)
        loss, parts = muzero_loss(net, batch, cfg.value_weight, cfg.consistency_weight, cfg.sibling_weight)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        optimizer.step()
        counters.updates += 1
        recent_losses.append(parts)

    # Evaluate as `mallocgame eval` and the solver play: no noise, the learned model's settings.
    eval_params = replace(
        cfg.search_params(cfg.eval_simulations, gumbel_scale=0.0),
        c_scale=INFERENCE_C_SCALE["learned"],
        min_q_range=INFERENCE_MIN_Q_RANGE["learned"],
    )
    eval_policy = MuZeroPolicy(net, eval_params)
    real_siblings = cfg.selfplay_model == "true" and cfg.sibling_weight > 0
    log = CsvLog(run_dir / "log.csv")
    ckpt_path = run_dir / "checkpoint.pt"

    def save() -> None:
        torch.save(
            {
                "model": net.state_dict(),
                "net_config": asdict(net_cfg),
                "optimizer": optimizer.state_dict(),
                "config": asdict(cfg),
                "counters": asdict(counters),
            },
            ckpt_path,
        )

    last_log = last_eval = last_ckpt = counters.wall_s
    recent_returns: list[float] = []
    evaluation: dict[str, float] = {}
    bar = _progress_bar(cfg.minutes * 60.0, counters.wall_s, progress)
    print(f"run {cfg.run_name}: {sum(p.numel() for p in net.parameters())} parameters -> {run_dir}", file=sys.stderr)

    budget_s = cfg.minutes * 60.0
    start = time.perf_counter() - counters.wall_s  # the clock runs across --resume
    recent_losses: list[dict[str, float]] = []
    interrupted = False
    actors: ActorPool | RayActorPool | None = None
    try:
        if cfg.demo_episodes and counters.iteration == 0:  # a warm start, only at the start of a run
            demonstrator = "lookahead" if cfg.lookahead else "greedy"
            for game in demonstrations(envs, cfg.demo_episodes, cfg.seed, cfg.demo_smoothing, demonstrator):
                replay.add(game)
            for _ in range(cfg.demo_updates):
                learn()
            print(f"warm start: {cfg.demo_episodes} {demonstrator} games, {cfg.demo_updates} updates", file=sys.stderr)
        seeds = [cfg.seed * 1000 + i for i in range(cfg.num_envs)]
        pool_args = (net, cfg.search_params(), cfg.selfplay_model, make_env, settings, cfg.seed, cfg.num_envs,
                     real_siblings)  # fmt: skip
        if cfg.ray:  # self-play in Ray actors, here or on a cluster; this one learns
            actors = RayActorPool(cfg.ray, cfg.weights_every, max(1, cfg.actors), *pool_args)
        elif cfg.actors > 0:  # self-play in processes of its own; this one learns
            actors = ActorPool(cfg.actors, *pool_args)
        else:
            selfplay = SelfPlay(make_policy(net, cfg.search_params(), cfg.selfplay_model), envs, seeds, real_siblings)
        steps_at_start, updates_at_start = counters.env_steps, counters.updates

        while True:
            counters.wall_s = time.perf_counter() - start
            if counters.wall_s >= budget_s or (cfg.max_env_steps and counters.env_steps >= cfg.max_env_steps):
                break

            # Self-play: one searched decision in every game, or the games the actors finished.
            if actors is None:
                finished = selfplay.step(rng)
                counters.env_steps += len(envs)
                counters.iteration += 1
            else:
                # The learner keeps the one-process ratio of gradient steps to decisions
                # (updates_per_iteration per num_envs decisions); ahead of it, it waits for games.
                due = (counters.env_steps - steps_at_start) / cfg.num_envs * cfg.updates_per_iteration
                ahead = len(replay) < cfg.min_replay or counters.updates - updates_at_start >= due
                finished = actors.collect(wait_s=0.1 if ahead else 0.0)
                counters.env_steps += sum(len(game) for game, _ in finished)
                counters.iteration = counters.env_steps // cfg.num_envs
            for game, env_return in finished:
                replay.add(game)
                recent_returns.append(env_return)
                counters.episodes += 1

            # Learning.
            if len(replay) >= cfg.min_replay:
                if actors is None:
                    for _ in range(cfg.updates_per_iteration):
                        learn()
                elif counters.updates - updates_at_start < due:
                    learn()
                    actors.sync(net, counters.updates)

            now = time.perf_counter() - start
            if eval_envs and now - last_eval >= cfg.eval_every_s:
                evaluation = summarize(play_episodes(eval_policy, eval_envs, rng))
                last_eval = now
            if now - last_log >= cfg.log_every_s:
                row = log_row(counters, now, recent_returns, recent_losses, evaluation, len(replay))
                log.write(row)
                bar.set_postfix(ret=row["episode_return"], win=row["eval_win_rate"], refresh=False)
                recent_returns, recent_losses, evaluation = [], [], {}
                last_log = now
            if now - last_ckpt >= cfg.checkpoint_every_s:
                save()
                last_ckpt = now
            bar.update(now - bar.n)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: saving a checkpoint", file=sys.stderr)
    except BaseException:
        save()  # keep what was learned, then let the error through
        print(f"error: checkpoint saved to {ckpt_path}", file=sys.stderr)
        raise
    finally:
        if actors is not None:
            actors.close()

    counters.wall_s = time.perf_counter() - start
    if not interrupted and eval_envs:  # a final evaluation, so the log ends on the model saved
        evaluation = summarize(play_episodes(eval_policy, eval_envs, rng))
    log.write(log_row(counters, counters.wall_s, recent_returns, recent_losses, evaluation, len(replay)))
    save()
    bar.close()
    try:
        plot_curve(run_dir / "log.csv", run_dir / "curve.png")
    except Exception as e:  # noqa: BLE001 - a plot is a convenience: never lose a run over it
        print(f"could not draw the curve: {e}", file=sys.stderr)
    print(f"checkpoint: {ckpt_path}", file=sys.stderr)
    if interrupted:
        print(f"resume with: mallocgame train --resume {ckpt_path}", file=sys.stderr)
    return ckpt_path


def init_from(path: str, net: MuZeroNet, net_cfg: NetConfig, optimizer: torch.optim.Optimizer,
              cfg: TrainConfig) -> None:  # fmt: skip
    """Load ``path``'s network weights into ``net`` (the shapes must match: the observation
    shapes and network sizes ``cfg`` gives are the checkpoint's), and its optimizer's moments
    into ``optimizer`` when they match every parameter's shape, with this run's learning rate
    and weight decay (a checkpoint's param groups carry its own)."""
    try:
        saved = read_checkpoint(path)
    except UsageError as e:
        raise UsageError(f"--init {path}: cannot read the checkpoint ({e})") from None
    theirs = net_config_of(saved) if "net_config" in saved else None
    if theirs is not None and asdict(theirs) != asdict(net_cfg):
        diff = {k: (v, asdict(net_cfg)[k]) for k, v in asdict(theirs).items() if asdict(net_cfg).get(k) != v}
        raise UsageError(f"--init {path}: its network does not fit this run's settings (checkpoint, here): {diff}")
    net.load_state_dict(saved["model"])
    state = saved.get("optimizer")
    if state is not None and _moments_fit(state, net):
        optimizer.load_state_dict(state)
        for group in optimizer.param_groups:
            group["lr"], group["weight_decay"] = cfg.learning_rate, cfg.weight_decay
        print(f"init: weights and optimizer state from {path}", file=sys.stderr)
    else:
        print(f"init: weights from {path} (optimizer state does not fit: fresh)", file=sys.stderr)


def _moments_fit(state: dict, net: MuZeroNet) -> bool:
    """Whether an optimizer state dict's per-parameter tensors have ``net``'s parameters' shapes."""
    params = list(net.parameters())
    ids = [i for group in state.get("param_groups", []) for i in group["params"]]
    if len(ids) != len(params):
        return False
    for i, p in zip(ids, params):
        for value in state.get("state", {}).get(i, {}).values():
            if torch.is_tensor(value) and value.dim() > 0 and value.shape != p.shape:
                return False
    return True


def demonstrations(envs: list, n: int, seed: int, smoothing: float, player: str = "greedy") -> list[Game]:
    """``n`` games of a hand-made policy, cycling over ``envs``: the env's greedy rule or its
    one-step lookahead (``player``: "greedy" or "lookahead"). Policy targets on its action
    (``smoothing`` spread over the legal ones), and root values set to the Monte Carlo
    return-to-go, so every n-step value target is that policy's return."""
    from mallocgame.env import RULES

    choose = RULES[player]

    out = []
    for k in range(n):
        env = envs[k % len(envs)]
        obs, _ = env.reset(seed=seed * 1_000_003 + k)
        game, done = Game(), False
        while not done:
            action = choose(env)
            legal = np.asarray(obs["action_mask"], dtype=np.float64)
            target = smoothing * legal / legal.sum() + (1 - smoothing) * np.eye(len(legal))[action]
            before = reward_frame(env)
            next_obs, reward, done, truncated, _ = env.step(action)
            game.append(obs, action, agent_reward(env, reward, before), target, 0.0)
            obs, done = next_obs, done or truncated
        game.root_values = list(np.cumsum(game.rewards[::-1])[::-1])
        out.append(game)
    return out


def summarize(episodes: list[Episode]) -> dict[str, float]:
    """Evaluation scalars: win rate against best-greedy, mean NC bytes, mean ratio."""
    if not episodes:
        return {}
    ratios = [-e.episode_return for e in episodes]
    agent = [e.agent_bytes for e in episodes if e.agent_bytes is not None]
    return {
        "eval_win_rate": float(np.mean([e.beats_baseline for e in episodes])),
        "eval_not_worse_rate": float(np.mean([e.episode_return >= -1.0 - 1e-9 for e in episodes])),
        "eval_mean_ratio": float(np.mean(ratios)),
        "eval_mean_nc_bytes": float(np.mean(agent)) if agent else math.nan,
    }


LOSS_FIELDS = (
    "loss",
    "loss_value",
    "loss_reward",
    "loss_policy",
    "loss_consistency",
    "loss_sibling",
)  # muzero_loss's parts
LOG_FIELDS = (
    "wall_s", "iteration", "env_steps", "episodes", "updates", "replay_size", "episode_return", *LOSS_FIELDS,
    "eval_win_rate", "eval_not_worse_rate", "eval_mean_ratio", "eval_mean_nc_bytes",
)  # fmt: skip


def log_row(counters: Counters, wall_s: float, returns, losses, evaluation, replay_size) -> dict[str, Any]:
    row: dict[str, Any] = {k: "" for k in LOG_FIELDS}
    row.update(asdict(counters))
    row["wall_s"] = round(wall_s, 1)
    row["replay_size"] = replay_size
    row["episode_return"] = round(float(np.mean(returns)), 4) if returns else ""
    for key in LOSS_FIELDS:
        if losses:
            row[key] = round(float(np.mean([p[key] for p in losses])), 5)
    for key, value in evaluation.items():
        row[key] = round(value, 4)
    return {k: row[k] for k in LOG_FIELDS}


class CsvLog:
    """Appends rows to a CSV (header once), and to TensorBoard when it is installed."""

    def __init__(self, path: Path):
        self.path = path
        self.fields = LOG_FIELDS
        if path.exists():  # a resumed run keeps its log's columns (older runs have fewer)
            with path.open() as f:
                self.fields = tuple(next(csv.reader(f), LOG_FIELDS))
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(path.parent / "tb"))
        except ImportError:
            pass

    def write(self, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("env_steps",):
                    group = "eval" if key.startswith("eval") else "train"
                    self.tb.add_scalar(f"{group}/{key}", value, row["env_steps"])


def _progress_bar(budget_s: float, done_s: float, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=round(budget_s), initial=round(done_s), unit="s", disable=not enabled, dynamic_ncols=True)


def plot_curve(csv_path: Path, png_path: Path) -> None:
    """Episode return and evaluation win rate against env steps, from log.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))

    def series(key):
        pts = [(int(r["env_steps"]), float(r[key])) for r in rows if r[key] not in ("", "nan")]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    x, y = series("episode_return")
    axes[0].plot(x, y, label="self-play return")
    x, y = series("eval_mean_ratio")
    axes[0].plot(x, [-v for v in y], "o-", label="eval return (-mean ratio)")
    axes[0].axhline(-1.0, color="gray", ls="--", label="best-greedy")
    axes[0].set_ylim(-4.0, 0.05)  # early returns of an untrained agent reach -50: clipped
    axes[0].set_title("return = -(agent / best-greedy NC bytes)")
    axes[0].legend()
    x, y = series("eval_win_rate")
    axes[1].plot(x, y, "o-", label="beats best-greedy")
    x, y = series("eval_not_worse_rate")
    axes[1].plot(x, y, "s--", label="ties or beats")
    axes[1].set_ylim(-0.05, 1.05)
    axes[1].set_title("held-out evaluation")
    axes[1].legend()
    for key in LOSS_FIELDS[1:]:  # the parts, not their weighted sum
        if key not in rows[0]:  # logs of older runs
            continue
        x, y = series(key)
        axes[2].plot(x, y, label=key)
    axes[2].set_yscale("log")
    axes[2].set_title("losses")
    axes[2].legend()
    for ax in axes:
        ax.set_xlabel("self-play decisions")
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


# --- command line --------------------------------------------------------------------


def field_docs(cls) -> dict[str, str]:
    """The docstring under each dataclass field (shown as the flag's help)."""
    docs: dict[str, str] = {}
    body = ast.parse(inspect.getsource(cls)).body[0].body
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def build_parser(cls=TrainConfig, **kwargs) -> argparse.ArgumentParser:
    """One flag per config field (``--num-simulations``), help from the field's docstring
    (what the flag does) and its default."""
    parser = argparse.ArgumentParser(**kwargs)
    docs = field_docs(cls)
    for f in fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        doc = docs.get(f.name, "").replace("``", "")
        shown = repr(default) if isinstance(default, str) else default
        text = f"{doc} (default: {shown})".replace("%", "%%")  # argparse formats help with %
        if isinstance(default, bool):  # bool("False") is True: a switch, --flag / --no-flag
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif "const" in f.metadata:  # an optional value: the flag alone means metadata["const"]
            parser.add_argument(flag, nargs="?", const=f.metadata["const"], default=default, help=text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=text)
    return parser


def explicit_flags(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The destinations of the options ``argv`` actually gives (not left at their default)."""
    quiet = argparse.ArgumentParser(add_help=False, allow_abbrev=parser.allow_abbrev)
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            kwargs = {"dest": action.dest, "default": argparse.SUPPRESS}
            if action.nargs in (0, "?") or isinstance(action, argparse.BooleanOptionalAction):
                kwargs["nargs"] = "?"  # a switch or an optional value: given or not is what matters here
            quiet.add_argument(*action.option_strings, **kwargs)
    known, _ = quiet.parse_known_args(argv)
    return set(vars(known))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(
        prog="mallocgame train",
        description="Train the mallocMuZero agent by self-play. Each flag sets one field of the run's config;"
        " results/muzero/README.md tells what the shipped runs measured with them.",
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="CHECKPOINT",
        help="continue the run of this checkpoint: its config and its budget (--minutes and --max-env-steps"
        " given here replace the budget; the clock counts the time already trained)",
    )
    parser.add_argument("--ship", default=None, help="also copy checkpoint, config, log and curve to this folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    given = explicit_flags(parser, argv)
    new_budget = tuple(name for name in BUDGET_FIELDS if name in given)
    ckpt = train(cfg, resume=args.resume, progress=not args.no_progress, new_budget=new_budget)
    if args.ship:
        ship(ckpt.parent, Path(args.ship))
    return 0


def ship(run_dir: Path, dest: Path) -> None:
    """Copy a run's checkpoint, config, log and curve next to each other in ``dest``.
    The shipped config names the run's folder relative to the working directory when it
    lies inside it, so that it does not carry one machine's absolute paths."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("checkpoint.pt", "log.csv", "curve.png"):
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, dest / name)
    if (run_dir / "config.json").exists():
        config = json.loads((run_dir / "config.json").read_text())
        out_dir = Path(config.get("out_dir", ""))
        if out_dir.is_absolute() and out_dir.resolve().is_relative_to(Path.cwd().resolve()):
            config["out_dir"] = str(out_dir.resolve().relative_to(Path.cwd().resolve()))
        (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
