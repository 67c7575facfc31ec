"""Can the policy network learn *where* the true-env search departs from the greedy rule?

Session 4's supervised test (results/muzero/README.md). It records the decisions of the
true-env search (64 simulations, no noise) on training DAGs for a few minutes in two
processes with different seeds, fits a freshly initialized network's policy head to the
first set's search actions (cross-entropy), and scores it on the second set: accuracy, and
for the departures from the greedy rule, recall (the search departs, the prior takes the
same action) and precision (the prior departs, the search takes the same action).

    python results/muzero/scripts/departures_supervised.py CHECKPOINT [--record-s 360] [--fit-s 90]

(about 8 minutes on 2 cores; CHECKPOINT gives the networks the search uses and the shapes).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np
import torch
from torch.nn import functional as F

from mallocgame.agent.checkpoint import load_agent
from mallocgame.agent.envs import make_sampler_env
from mallocgame.agent.networks import MuZeroNet, obs_to_torch
from mallocgame.agent.policy import MASK_KEY, TrueModelPolicy
from mallocgame.agent.search import SearchParams
from mallocgame.env import greedy_action


def record(checkpoint: str, seed: int, seconds: float) -> list[tuple]:
    """(observation, greedy action, search action) at every decision with a choice."""
    torch.set_num_threads(1)
    agent = load_agent(checkpoint)
    envs = [make_sampler_env(agent.settings, seed * 1000 + i) for i in range(8)]
    params = SearchParams(num_simulations=64, gumbel_scale=0.0, c_scale=0.1, min_q_range=0.1)
    policy = TrueModelPolicy(agent.net, params).bind(envs)
    obs = [env.reset(seed=seed * 1000 + i)[0] for i, env in enumerate(envs)]
    rng, rows, start = np.random.default_rng(seed), [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        decision = policy(obs, rng, gumbel_scale=0.0)
        for i, env in enumerate(envs):
            if obs[i][MASK_KEY].sum() > 1:
                rows.append((obs[i], greedy_action(env), int(decision.action[i])))
            o, _, terminated, truncated, _ = env.step(int(decision.action[i]))
            obs[i] = env.reset()[0] if terminated or truncated else o
    return rows


def score(pred: torch.Tensor, greedy: torch.Tensor, search: torch.Tensor) -> str:
    departs, prior_departs, same = search != greedy, pred != greedy, pred == search
    recall = (same & departs).sum().item() / max(departs.sum().item(), 1)
    precision = (same & prior_departs).sum().item() / max(prior_departs.sum().item(), 1)
    return (f"accuracy {same.float().mean().item():.3f}, departures {departs.sum().item()} recall {recall:.3f}, "
            f"prior departs {prior_departs.sum().item()} precision {precision:.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--record-s", type=float, default=360.0, help="seconds of search per data set")
    parser.add_argument("--fit-s", type=float, default=90.0, help="seconds of fitting")
    args = parser.parse_args()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        train_rows, test_rows = pool.starmap(record, [(args.checkpoint, 71, args.record_s), (args.checkpoint, 72, args.record_s)])
    agent = load_agent(args.checkpoint)
    keys = sorted(agent.net.cfg.obs_shapes)

    def tensors(rows):
        obs = obs_to_torch([r[0] for r in rows], keys)
        legal = torch.tensor(np.stack([r[0][MASK_KEY] for r in rows]) > 0)
        return obs, legal, torch.tensor([r[1] for r in rows]), torch.tensor([r[2] for r in rows])

    def logits(net, obs, legal):
        return net.initial_inference(obs)[1].masked_fill(~legal, -1e9)

    train, test = tensors(train_rows), tensors(test_rows)
    print(f"fit on {len(train_rows)} decisions, test on {len(test_rows)}")
    with torch.no_grad():
        print("the checkpoint's own prior, test:", score(logits(agent.net, *test[:2]).argmax(1), *test[2:]))
    torch.manual_seed(0)
    net = MuZeroNet(agent.net.cfg)  # fresh weights
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    start, epoch = time.perf_counter(), 0
    while time.perf_counter() - start < args.fit_s:
        for idx in torch.randperm(len(train_rows)).split(256):
            loss = F.cross_entropy(logits(net, {k: v[idx] for k, v in train[0].items()}, train[1][idx]), train[3][idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        epoch += 1
        if epoch % 10 == 0:
            with torch.no_grad():
                print(f"epoch {epoch}: train {score(logits(net, *train[:2]).argmax(1), *train[2:])}")
                print(f"{'':>{len(str(epoch)) + 7}} test  {score(logits(net, *test[:2]).argmax(1), *test[2:])}")


if __name__ == "__main__":
    main()
