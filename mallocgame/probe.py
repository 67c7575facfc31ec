"""Probe a trained agent's action values: ``mallocgame probe CHECKPOINT``.

A search improves on its policy prior only where the q-values it compares rank the
actions better than the prior does. This command measures that ranking directly. It plays
each instance with the policy prior (greedy, no search), and at every decision with two or
more legal actions it scores each legal action ``a`` four ways:

* **prior**: the policy head's logit;
* **learned q**: ``r(s, a) + v(g(s, a))``, the learned model's reward and value one step
  ahead, what a search on the learned model compares;
* **one-step q**: the true env's reward for ``a`` plus the value head on the observation
  that really follows, what a one-step search on the true env compares;
* **Monte Carlo q** (the reference): the true reward for ``a`` plus the return of playing
  on with the prior to the end of the game.

For each of the first three it prints how often its best action is a Monte-Carlo-best one,
and its mean regret: the Monte Carlo return given up by following it, in bytes over the
capacity (the agent's reward unit, ``envs.reward_unit``). Only decisions where the actions'
Monte Carlo returns differ count. The Monte Carlo reference is policy improvement's own
yardstick: an action that beats the prior's by this measure is a real improvement on it.

``--deviations`` asks a second question (``deviations_checkpoint``): where the true-env
search departs from the env's greedy rule, does the prior depart with it, and where the
prior departs on its own, does the search agree?
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from mallocgame.agent.checkpoint import LoadedAgent, load_agent
from mallocgame.agent.envs import VALIDATION_DAGS, make_problem_env, reward_unit
from mallocgame.agent.networks import inverse_transform, obs_to_torch
from mallocgame.agent.policy import MASK_KEY
from mallocgame.agent.rollout import play_episodes
from mallocgame.evaluate import checkpoint_instances

RANKERS = ("prior", "learned q", "one-step q")


@dataclass
class Tally:
    """Per ranker: how often it picked a Monte-Carlo-best action, and its regrets."""

    decisions: int = 0  # decisions where the legal actions' Monte Carlo returns differ
    best: dict[str, int] = field(default_factory=lambda: {r: 0 for r in RANKERS})
    regret: dict[str, float] = field(default_factory=lambda: {r: 0.0 for r in RANKERS})

    def add(self, mc_q: np.ndarray, picks: dict[str, int]) -> None:
        self.decisions += 1
        for ranker, i in picks.items():
            self.best[ranker] += bool(mc_q[i] == mc_q.max())
            self.regret[ranker] += float(mc_q.max() - mc_q[i])

    def rows(self) -> list[tuple[str, float, float]]:
        """(ranker, share of Monte-Carlo-best picks, mean regret)."""
        n = max(self.decisions, 1)
        return [(r, self.best[r] / n, self.regret[r] / n) for r in RANKERS]


class Prober:
    """The checkpoint's networks, asked the questions above about one env's positions."""

    def __init__(self, agent: LoadedAgent):
        self.net = agent.net.eval()
        self.keys = sorted(self.net.cfg.obs_shapes)

    @torch.no_grad()
    def prior_logits(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """[A] masked policy logits."""
        _, logits, _ = self.net.initial_inference(obs_to_torch(obs, self.keys))
        return np.where(np.asarray(obs[MASK_KEY]) > 0, logits[0].numpy(), -np.inf)

    @torch.no_grad()
    def value(self, obs: dict[str, np.ndarray]) -> float:
        _, _, value = self.net.initial_inference(obs_to_torch(obs, self.keys))
        return float(inverse_transform(value)[0])

    @torch.no_grad()
    def learned_q(self, obs: dict[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        """[len(actions)] r(s, a) + v(g(s, a)) from the learned model."""
        s, _, _ = self.net.initial_inference(obs_to_torch(obs, self.keys))
        reward, s_next = self.net.dynamics(s.repeat(len(actions), 1), torch.as_tensor(actions))
        _, value = self.net.prediction(s_next)
        return (inverse_transform(reward) + inverse_transform(value)).numpy()

    def play_on(self, env, obs: dict[str, np.ndarray], unit: float) -> float:
        """The rest of the game with the prior: its return in the agent's units."""
        total = 0.0
        while True:
            obs, reward, terminated, truncated, _ = env.step(int(np.argmax(self.prior_logits(obs))))
            total += reward * unit
            if terminated or truncated:
                return total


def probe_instance(prober: Prober, env, tally: Tally) -> None:
    """Play one game with the prior, scoring every decision that has a choice."""
    obs, _ = env.reset()
    game = env.unwrapped
    unit = reward_unit(env)
    done = False
    while not done:
        legal = np.flatnonzero(np.asarray(obs[MASK_KEY]))
        logits = prober.prior_logits(obs)
        if len(legal) >= 2:
            root = game.clone_state()
            one_step, monte_carlo = [], []
            for a in legal:
                game.restore_state(root)
                next_obs, reward, terminated, truncated, _ = env.step(int(a))
                end = terminated or truncated
                one_step.append(reward * unit + (0.0 if end else prober.value(next_obs)))
                monte_carlo.append(reward * unit + (0.0 if end else prober.play_on(env, next_obs, unit)))
            game.restore_state(root)
            mc_q = np.array(monte_carlo)
            if mc_q.max() - mc_q.min() > 1e-9:
                tally.add(mc_q, {
                    "prior": int(np.argmax(logits[legal])),
                    "learned q": int(np.argmax(prober.learned_q(obs, legal))),
                    "one-step q": int(np.argmax(one_step)),
                })  # fmt: skip
        obs, _, terminated, truncated, _ = env.step(int(np.argmax(logits)))
        done = terminated or truncated


def probe_checkpoint(checkpoint: str, *, validation: bool = True, models: str | None = None,
                     dags: int | None = None, every: int = 1, log=print,
                     tally: Tally | None = None) -> Tally:  # fmt: skip
    """Probe the checkpoint on every ``every``-th instance of the validation set (or of the
    evaluation set, ``validation=False``), adding to ``tally`` (a new one if None)."""
    agent = load_agent(checkpoint)
    instances = checkpoint_instances(agent, validation=validation, models=models, dags=dags)
    prober = Prober(agent)
    tally = Tally() if tally is None else tally
    for inst in instances[::every]:
        probe_instance(prober, make_problem_env(agent.settings, inst.problem), tally)
        log(f"{inst.name}: {tally.decisions} decisions so far")
    return tally


@dataclass
class Deviations:
    """Where the true-env search and the policy prior depart from the env's greedy rule."""

    decisions: int = 0  # decisions with two or more legal actions
    search: int = 0  # ... where the search's action is not the greedy rule's
    search_and_prior: int = 0  # ... and the prior's argmax is the search's action
    prior: int = 0  # decisions where the prior's argmax is not the greedy rule's
    prior_and_search: int = 0  # ... and the search plays it too

    def markdown(self, title: str) -> str:
        share = lambda a, b: f"{a / b:.1%}" if b else "-"  # noqa: E731
        return "\n".join([
            title, "", "| | decisions | share |", "|---|---:|---:|",
            f"| with a choice | {self.decisions} | |",
            f"| the search departs from the greedy rule | {self.search} | {share(self.search, self.decisions)} |",
            f"| ... and the prior departs with it | {self.search_and_prior}"
            f" | {share(self.search_and_prior, self.search)} |",
            f"| the prior departs from the greedy rule | {self.prior} | {share(self.prior, self.decisions)} |",
            f"| ... and the search plays the same action | {self.prior_and_search}"
            f" | {share(self.prior_and_search, self.prior)} |",
        ]) + "\n"  # fmt: skip


def deviations_checkpoint(checkpoint: str, *, validation: bool = True, models: str | None = None,
                          dags: int | None = None, simulations: int = 64, log=print) -> Deviations:  # fmt: skip
    """Play every instance with the search on the true env (as ``mallocgame eval --model
    true``) and count, at each decision, whether the search and the prior's argmax depart
    from the env's greedy rule (XLA's), and whether they agree when they do. A prior that
    learned from the search follows its departures; one whose own departures the search
    does not share plays worse than the greedy rule it departs from."""
    from mallocgame.agent.policy import INFERENCE_C_SCALE, INFERENCE_MIN_Q_RANGE, TrueModelPolicy
    from mallocgame.agent.search import SearchParams
    from mallocgame.env import greedy_action

    agent = load_agent(checkpoint)
    instances = checkpoint_instances(agent, validation=validation, models=models, dags=dags)
    params = SearchParams(num_simulations=simulations, gumbel_scale=0.0, c_scale=INFERENCE_C_SCALE["true"],
                          min_q_range=INFERENCE_MIN_Q_RANGE["true"])  # fmt: skip
    policy = TrueModelPolicy(agent.net, params)
    envs = [make_problem_env(agent.settings, inst.problem) for inst in instances]
    out = Deviations()
    unfinished = [len(envs)]

    def count(active_envs: list, observations: list, decision) -> None:
        if len(active_envs) < unfinished[0]:  # progress: some games ended since the last decision
            unfinished[0] = len(active_envs)
            log(f"{len(envs) - unfinished[0]} of {len(envs)} instances done")
        for j, (env, obs) in enumerate(zip(active_envs, observations)):
            if int(np.asarray(obs[MASK_KEY]).sum()) > 1:
                greedy, searched, prior = greedy_action(env), int(decision.action[j]), int(np.argmax(decision.prior[j]))
                out.decisions += 1
                out.search += searched != greedy
                out.search_and_prior += searched != greedy and prior == searched
                out.prior += prior != greedy
                out.prior_and_search += prior != greedy and prior == searched

    play_episodes(policy, envs, np.random.default_rng(0), on_decision=count)
    return out


def markdown(tally: Tally, title: str) -> str:
    lines = [title, "", f"{tally.decisions} decisions where the legal actions' Monte Carlo returns differ.", "",
             "| ranker | picks a Monte-Carlo-best action | mean regret (bytes / capacity) |",
             "|---|---:|---:|"]  # fmt: skip
    lines += [f"| {r} | {share:.1%} | {regret:.4f} |" for r, share, regret in tally.rows()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mallocgame probe", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint written by `mallocgame train`")
    parser.add_argument("--evaluation", action="store_true",
                        help="probe the held-out evaluation set instead of the validation set")  # fmt: skip
    parser.add_argument(
        "--dags",
        type=int,
        default=None,
        help=f"random DAGs in the set; default: the run's (validation: {VALIDATION_DAGS})",
    )
    parser.add_argument("--every", type=int, default=1, help="probe every n-th instance only (faster)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--deviations", action="store_true",
                        help="instead: play with the true-env search and count where it and the prior depart from "
                             "the env's greedy rule, and whether they agree when they do")  # fmt: skip
    parser.add_argument("--simulations", type=int, default=64, help="the true-env search's simulations (--deviations)")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be at least 1")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    cmd = "mallocgame probe " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.deviations:
        found = deviations_checkpoint(args.checkpoint, validation=not args.evaluation, dags=args.dags,
                                      simulations=args.simulations,
                                      log=lambda m: print(m, file=sys.stderr))  # fmt: skip
        print(found.markdown(f"`{cmd}` ({time.perf_counter() - start:.0f} s)"))
        return 0
    tally, note = Tally(), ""
    try:
        probe_checkpoint(args.checkpoint, validation=not args.evaluation, dags=args.dags, every=args.every,
                         log=lambda m: print(m, file=sys.stderr), tally=tally)  # fmt: skip
    except KeyboardInterrupt:  # keep what was measured
        note = ", interrupted: the instances probed so far"
    print(markdown(tally, f"`{cmd}` ({time.perf_counter() - start:.0f} s{note})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
