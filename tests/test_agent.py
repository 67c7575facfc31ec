"""Tests of the mallocMuZero agent: the search on a bandit with a known best arm, the
networks' shapes, replay targets, a training smoke run that checkpoints and resumes, and
the "muzero" solver's plan through the validator.

A tiny stand-in env with mallocGame's spaces keeps the search and training tests fast
and independent of the real env; the solver test plays the real one."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from mallocgame.agent.networks import MuZeroNet, NetConfig, obs_to_torch
from mallocgame.agent.replay import Game, ReplayBuffer, n_step_values
from mallocgame.agent.search import SearchParams, considered_visit_table, search


class ToyMallocEnv(gym.Env):
    """mallocGame's spaces on a trivial game: each decision shows the cost of each action in
    ``segment``; the reward is minus that cost. Random candidates are masked (never action 0).
    Five decisions per episode. A perfect policy earns -min cost at each decision."""

    K, N, F, H = 3, 2, 4, 8
    LENGTH = 5

    def __init__(self):
        A = self.K + 1
        self.action_space = spaces.Discrete(A)
        self.observation_space = spaces.Dict(
            {
                "segment": spaces.Box(0.0, 1.0, (self.F,), np.float32),
                "pending": spaces.Box(0.0, 1.0, (self.N, self.F), np.float32),
                "occupancy": spaces.Box(0.0, 1.0, (self.H, self.H), np.float32),
                "action_mask": spaces.Box(0, 1, (A,), np.int8),
            }
        )

    def _draw(self):
        self.costs = self.np_random.random(self.K + 1).astype(np.float32)
        self.mask = np.ones(self.K + 1, np.int8)
        self.mask[1:] = self.np_random.random(self.K) < 0.7

    @property
    def _mask(self):  # what mallocgame.env.greedy_action reads: the greedy rule then plays here too
        return self.mask

    def _obs(self):
        return {
            "segment": self.costs.copy(),
            "pending": np.zeros((self.N, self.F), np.float32),
            "occupancy": np.full((self.H, self.H), self.t / self.LENGTH, np.float32),
            "action_mask": self.mask.copy(),
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.total = 0.0
        self._draw()
        return self._obs(), {"action_mask": self.mask.copy(), "instance": "toy"}

    def step(self, action):
        assert self.mask[action], "illegal action"
        reward = -float(self.costs[action]) / self.LENGTH
        self.total += reward
        self.t += 1
        done = self.t >= self.LENGTH
        self._draw()
        info = {"action_mask": self.mask.copy()}
        if done:
            info.update(plan=None, cost=None, baseline_bytes=None)
        return self._obs(), reward, done, False, info


# --- search ---------------------------------------------------------------------------

ARM_MEANS = np.array([0.1, 0.5, 0.9, 0.3, 0.2])  # arm 2 is best


def bandit_model(embeddings, actions):
    """One-step bandit: the reward of an arm is its mean; every value is 0."""
    b = len(actions)
    return ARM_MEANS[actions], np.zeros(b), np.zeros((b, len(ARM_MEANS))), embeddings


def run_bandit(invalid, gumbel_scale, seed=0):
    b = invalid.shape[0]
    return search(
        np.zeros((b, len(ARM_MEANS))), np.zeros(b), np.zeros((b, 2), np.float32), bandit_model, invalid,
        SearchParams(num_simulations=16, max_num_considered_actions=8, gumbel_scale=gumbel_scale),
        np.random.default_rng(seed),
    )  # fmt: skip


def test_search_finds_best_arm_of_bandit():
    out = run_bandit(np.zeros((4, 5), bool), gumbel_scale=0.0)
    assert (out.action == 2).all()
    assert (out.action_weights.argmax(1) == 2).all()
    assert np.allclose(out.action_weights.sum(1), 1.0)


def test_search_reports_what_each_tried_root_action_earned():
    from mallocgame.agent.policy import decision_from

    invalid = np.zeros((2, 5), bool)
    invalid[1, 2] = True
    decision = decision_from(run_bandit(invalid, gumbel_scale=0.0))
    assert decision.child_tried[0].all()  # 16 simulations try all 5 arms
    assert not decision.child_tried[1, 2]  # never an illegal one
    np.testing.assert_allclose(
        decision.child_rewards[decision.child_tried], np.tile(ARM_MEANS, 2)[decision.child_tried.ravel()]
    )
    # The improved policy left the uniform prior for the best arm: a surprise in (0, 1].
    expected = 0.5 * np.abs(decision.policy[0] - 0.2).sum()
    assert 0 < decision.surprise[0] <= 1 and np.isclose(decision.surprise[0], expected)


def test_search_with_gumbel_noise_improves_policy_toward_best_arm():
    out = run_bandit(np.zeros((16, 5), bool), gumbel_scale=1.0, seed=3)
    # The played action is a sample; the improved policy is not: it always ranks the best arm first.
    assert (out.action_weights.argmax(1) == 2).all()
    assert (out.action == 2).mean() >= 0.5


def test_search_never_plays_or_targets_an_illegal_action():
    invalid = np.zeros((3, 5), bool)
    invalid[:, 2] = True  # the best arm is illegal: the next best (1) wins
    invalid[1, [0, 3, 4]] = True
    out = run_bandit(invalid, gumbel_scale=0.0)
    assert (out.action == 1).all()
    for seed in range(5):
        noisy = run_bandit(invalid, gumbel_scale=1.0, seed=seed)
        assert not invalid[np.arange(3), noisy.action].any()
        assert (noisy.action_weights[invalid] == 0).all()


def test_q_range_floor_keeps_noise_level_differences_from_sharpening_the_policy():
    def tiny_bandit(embeddings, actions):  # arm 2 is best, by a hair
        return 1e-4 * ARM_MEANS[actions], np.zeros(len(actions)), np.zeros((len(actions), 5)), embeddings

    def weights(floor):
        out = search(
            np.zeros((1, 5)), np.zeros(1), np.zeros((1, 2), np.float32), tiny_bandit, np.zeros((1, 5), bool),
            SearchParams(num_simulations=16, gumbel_scale=0.0, min_q_range=floor), np.random.default_rng(0),
        )  # fmt: skip
        return out.action_weights[0]

    assert weights(0.0)[2] > 0.8  # mctx: any range is stretched to [0, 1]
    assert weights(1.0).max() - weights(1.0).min() < 0.01  # below the floor, the prior (uniform) stays


def test_policy_target_scale_sharpens_the_target_and_not_the_choice():
    def run(scale):
        return search(
            np.zeros((1, 5)), np.zeros(1), np.zeros((1, 2), np.float32), bandit_model, np.zeros((1, 5), bool),
            SearchParams(num_simulations=16, gumbel_scale=0.0, c_scale=0.01, target_scale=scale),
            np.random.default_rng(0),
        )  # fmt: skip

    plain, sharp = run(1.0), run(4.0)
    assert plain.action_weights[0, 2] < sharp.action_weights[0, 2]  # more weight on the best arm
    assert plain.action[0] == sharp.action[0]
    np.testing.assert_array_equal(plain.tree.children_visits, sharp.tree.children_visits)  # the same search


def test_sequential_halving_visit_table():
    # 4 considered actions, 8 simulations: visit each once, then the best 2 twice more... (mctx's schedule)
    assert considered_visit_table(4, 8)[4] == (0, 0, 0, 0, 1, 1, 2, 2)
    assert considered_visit_table(4, 8)[1] == tuple(range(8))


# --- networks and replay --------------------------------------------------------------


def test_network_shapes_and_latent_range():
    env = ToyMallocEnv()
    cfg = NetConfig.from_space(env.observation_space, 4, latent_dim=16, hidden_dim=32)
    net = MuZeroNet(cfg)
    obs, _ = env.reset(seed=0)
    s, logits, value = net.initial_inference(obs_to_torch([obs, obs], sorted(cfg.obs_shapes)))
    assert s.shape == (2, 16) and logits.shape == (2, 4) and value.shape == (2,)
    assert float(s.detach().min()) >= 0.0 and float(s.detach().max()) <= 1.0
    reward, s2, logits2, value2 = net.recurrent_inference(s, torch.tensor([0, 3]))
    assert reward.shape == (2,) and s2.shape == (2, 16) and logits2.shape == (2, 4)


def test_n_step_targets_bootstrap_and_absorb():
    rewards = np.array([-1.0, -2.0, -3.0])
    values = np.array([10.0, 20.0, 30.0])
    # n = 2: z0 = -1 - 2 + v2 = 27; z1 = -2 - 3 (end of game: no bootstrap); z2 = -3
    assert n_step_values(rewards, values, td_steps=2, discount=1.0).tolist() == [27.0, -5.0, -3.0]


def test_replay_sample_pads_past_the_end():
    env = ToyMallocEnv()
    obs, _ = env.reset(seed=0)
    game = Game()
    for t in range(3):
        game.append(obs, t % 2, -0.1 * (t + 1), np.full(4, 0.25), 0.0)
    buffer = ReplayBuffer(capacity=100, td_steps=5, discount=1.0)
    buffer.add(game)
    batch = buffer.sample(8, unroll_steps=4, rng=np.random.default_rng(0))
    assert batch.actions.shape == (8, 4) and batch.target_policies.shape == (8, 5, 4)
    for i in range(8):
        inside = int(batch.policy_mask[i].sum())
        assert 1 <= inside <= 3
        assert (batch.target_values[i, inside:] == 0).all()
        assert (batch.target_rewards[i, inside + 1 :] == 0).all()  # the last reward leads into the end


def test_replay_draws_its_surprise_share_from_the_decisions_the_search_overruled():
    game = Game()
    for t in range(50):  # only decision 7 surprised the search
        obs = {"t": np.array([t], np.float32), "action_mask": np.ones(4, np.int8)}
        game.append(obs, 0, 0.0, np.full(4, 0.25), 0.0, surprise=0.6 if t == 7 else 0.0)
    replay = ReplayBuffer(capacity=100, td_steps=2, discount=1.0)
    replay.add(game)
    rng = np.random.default_rng(0)
    drawn = lambda batch: batch.observations["t"][:, 0]  # noqa: E731
    assert (drawn(replay.sample(16, 1, rng, surprise_share=1.0)) == 7).all()
    half = drawn(replay.sample(64, 1, rng, surprise_share=0.5))
    assert (half[:32] == 7).all() and (half[32:] != 7).sum() > 25  # the other half: uniform
    assert (drawn(replay.sample(64, 1, rng)) != 7).sum() > 55


def test_sibling_loss_teaches_the_model_the_actions_not_played():
    """Only action 0 is ever played; the search's rewards for actions 1-3 reach the
    model through the sibling loss alone, and without it the model knows nothing of them."""
    from mallocgame.agent.learner import muzero_loss
    from mallocgame.agent.networks import inverse_transform

    env = ToyMallocEnv()
    obs, _ = env.reset(seed=0)
    found = np.array([-0.1, -2.0, -0.5, -1.0], np.float32)  # what the search found per action
    game = Game()
    for _ in range(4):
        game.append(obs, 0, float(found[0]), np.full(4, 0.25), 0.0,
                    child_rewards=found, child_values=np.zeros(4), child_tried=np.ones(4, bool))  # fmt: skip
    buffer = ReplayBuffer(capacity=100, td_steps=2, discount=1.0)
    buffer.add(game)

    def predicted_rewards(sibling_weight):
        torch.manual_seed(0)
        net = MuZeroNet(NetConfig.from_space(env.observation_space, 4, latent_dim=16, hidden_dim=32))
        opt = torch.optim.Adam(net.parameters(), lr=2e-2)
        rng = np.random.default_rng(0)
        for _ in range(60):
            batch = buffer.sample(8, unroll_steps=1, rng=rng)
            batch.actions[:] = 0  # past the end too: no action but 0 is ever unrolled
            loss, parts = muzero_loss(net, batch, sibling_weight=sibling_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            s, _, _ = net.initial_inference(obs_to_torch(obs, sorted(net.cfg.obs_shapes)))
            reward, _ = net.dynamics(s.repeat(4, 1), torch.arange(4))
        return inverse_transform(reward).numpy(), parts

    taught, parts = predicted_rewards(1.0)
    assert parts["loss_sibling"] > 0
    np.testing.assert_allclose(taught, found, atol=0.15)
    untaught, parts = predicted_rewards(0.0)
    assert parts["loss_sibling"] == 0
    assert np.abs(untaught[1:] - found[1:]).max() > 0.5


# --- training: smoke run, resume, Ctrl-C ----------------------------------------------


def tiny_config(tmp_path, **overrides):
    from mallocgame.train import TrainConfig

    base = dict(
        out_dir=str(tmp_path), run_name="smoke", seed=0, minutes=1.0, max_env_steps=60, num_envs=2,
        num_simulations=4, max_considered_actions=4, latent_dim=16, hidden_dim=32, batch_size=8,
        unroll_steps=2, td_steps=3, min_replay=10, eval_every_s=0.0, log_every_s=0.0, checkpoint_every_s=1e9,
        occupancy_size=8, demo_episodes=2, demo_updates=3, selfplay_model="learned",  # the toy env has no snapshots
        lookahead=False, all_offsets=False,  # nor greedy completions
    )  # fmt: skip
    base.update(overrides)
    return TrainConfig(**base)


def toy_envs(settings, seed):
    return ToyMallocEnv()


def toy_eval_envs(cfg):
    return [ToyMallocEnv(), ToyMallocEnv()]


def read_log(path):
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def test_training_smoke_run_checkpoints_and_resumes(tmp_path):
    from mallocgame.train import train

    ckpt = train(tiny_config(tmp_path), make_env=toy_envs, make_eval_envs=toy_eval_envs, progress=False)
    saved = torch.load(ckpt, weights_only=False)
    assert saved["config"]["num_simulations"] == 4 and "optimizer" in saved
    assert saved["counters"]["env_steps"] >= 60 and saved["counters"]["updates"] > 0
    rows = read_log(ckpt.parent / "log.csv")
    assert rows and rows[-1]["eval_win_rate"] != ""
    assert (ckpt.parent / "config.json").exists() and (ckpt.parent / "curve.png").exists()

    # --resume continues the same run: same folder, counters carried on, log appended.
    again = train(
        tiny_config(tmp_path, max_env_steps=120, num_simulations=99), resume=str(ckpt),
        make_env=toy_envs, make_eval_envs=toy_eval_envs, progress=False,
    )  # fmt: skip
    assert again == ckpt
    resumed = torch.load(again, weights_only=False)
    assert resumed["config"]["num_simulations"] == 4  # the checkpoint's config, not the new flags
    assert resumed["counters"]["env_steps"] >= 120
    assert resumed["counters"]["updates"] > saved["counters"]["updates"]
    assert len(read_log(ckpt.parent / "log.csv")) > len(rows)


def test_resuming_a_run_from_before_a_field_existed_keeps_how_it_played(tmp_path):
    from mallocgame.train import AS_BEFORE_THEY_EXISTED, train

    ckpt = train(tiny_config(tmp_path), make_env=toy_envs, make_eval_envs=toy_eval_envs, progress=False)
    saved = torch.load(ckpt, weights_only=False)
    for key in AS_BEFORE_THEY_EXISTED:
        del saved["config"][key]
    torch.save(saved, ckpt)
    again = train(tiny_config(tmp_path, max_env_steps=90), resume=str(ckpt), make_env=toy_envs,
                  make_eval_envs=toy_eval_envs, progress=False)  # fmt: skip
    assert {
        k: torch.load(again, weights_only=False)["config"][k] for k in AS_BEFORE_THEY_EXISTED
    } == AS_BEFORE_THEY_EXISTED


def test_ctrl_c_saves_a_checkpoint_and_returns(tmp_path, capsys):
    from mallocgame.train import train

    class InterruptedEnv(ToyMallocEnv):
        steps = 0

        def step(self, action):
            InterruptedEnv.steps += 1
            if InterruptedEnv.steps == 25:
                raise KeyboardInterrupt
            return super().step(action)

    ckpt = train(
        tiny_config(tmp_path, max_env_steps=10_000), make_env=lambda s, seed: InterruptedEnv(),
        make_eval_envs=toy_eval_envs, progress=False,
    )  # fmt: skip
    assert ckpt.exists()
    assert 0 < torch.load(ckpt, weights_only=False)["counters"]["env_steps"] < 25
    assert f"resume with: mallocgame train --resume {ckpt}" in capsys.readouterr().err


def test_resume_keeps_the_runs_budget_unless_given_anew(tmp_path):
    from mallocgame.train import build_parser, explicit_flags, train

    ckpt = train(tiny_config(tmp_path, minutes=7.0), make_env=toy_envs, make_eval_envs=toy_eval_envs, progress=False)
    # `mallocgame train --resume CKPT` gives no budget flag: the run's own budget (7 minutes, 60 steps) stays.
    again = train(tiny_config(tmp_path), resume=str(ckpt), make_env=toy_envs, make_eval_envs=toy_eval_envs,
                  progress=False, new_budget=())  # fmt: skip
    config = torch.load(again, weights_only=False)["config"]
    assert config["minutes"] == 7.0 and config["max_env_steps"] == 60
    again = train(tiny_config(tmp_path, max_env_steps=80), resume=str(ckpt), make_env=toy_envs,
                  make_eval_envs=toy_eval_envs, progress=False, new_budget=("max_env_steps",))  # fmt: skip
    config = torch.load(again, weights_only=False)["config"]
    assert config["minutes"] == 7.0 and config["max_env_steps"] == 80
    parser = build_parser()
    assert explicit_flags(parser, ["--resume", "x"]) == set()
    assert explicit_flags(parser, ["--resume", "x", "--minutes=3", "--no-lookahead"]) == {"minutes", "lookahead"}


# --- the real env: the muzero solver --------------------------------------------------


def tiny_real_argv(out, run_name, *extra):
    """`mallocgame train` flags for a run of a few seconds on the real env."""
    return [
        "--out-dir", str(out), "--run-name", run_name, "--instances", "dags", "--max-env-steps", "40",
        "--num-envs", "2", "--num-simulations", "4", "--latent-dim", "16", "--hidden-dim", "32",
        "--occupancy-size", "16", "--num-pending", "4", "--batch-size", "8", "--unroll-steps", "2",
        "--min-replay", "10", "--demo-episodes", "2", "--demo-updates", "2", "--eval-models", "",
        "--eval-dags", "1", "--eval-instances", "2", "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory):
    """A checkpoint trained for a few seconds on the real env, through the command line."""
    pytest.importorskip("mallocgame.env")
    from mallocgame.train import main

    out = tmp_path_factory.mktemp("real")
    assert main(tiny_real_argv(out, "cli")) == 0
    return out / "cli" / "checkpoint.pt"


def test_self_play_can_search_the_true_env(tmp_path):
    """--selfplay-model true: self-play plans with the env itself; the learned model is still
    trained (the losses are logged) and the run's name says which model played."""
    pytest.importorskip("mallocgame.env")
    from mallocgame.train import main

    # 100 decisions: self-play games finish and reach the replay (the sibling loss needs them)
    argv = tiny_real_argv(tmp_path, "", "--selfplay-model", "true", "--max-env-steps", "100", "--sibling-weight", "10")
    assert main(argv) == 0
    (run,) = tmp_path.iterdir()
    assert "_true_" in run.name
    saved = torch.load(run / "checkpoint.pt", weights_only=False)
    assert saved["config"]["selfplay_model"] == "true" and saved["counters"]["env_steps"] >= 40
    rows = read_log(run / "log.csv")
    assert any(row["loss_reward"] not in ("", "nan") for row in rows)
    assert any(row["loss_sibling"] not in ("", "nan") and float(row["loss_sibling"]) > 0 for row in rows)


def test_actor_processes_play_while_the_learner_learns(tmp_path):
    """--actors 1: self-play runs in a process of its own on the learner's shared weights; its
    games reach the replay, the learner keeps the one-process ratio of gradient steps to
    decisions, and no actor outlives the run."""
    pytest.importorskip("mallocgame.env")
    import multiprocessing

    from mallocgame.train import main

    argv = tiny_real_argv(tmp_path, "actors", "--actors", "1", "--selfplay-model", "true", "--max-env-steps", "100",
                          "--sibling-weight", "10")  # fmt: skip
    assert main(argv) == 0
    saved = torch.load(tmp_path / "actors" / "checkpoint.pt", weights_only=False)
    counters = saved["counters"]
    assert counters["env_steps"] >= 100 and counters["episodes"] > 0
    demo_updates = 2
    assert demo_updates < counters["updates"] <= demo_updates + counters["env_steps"] / 2 + 1  # num_envs 2
    rows = read_log(tmp_path / "actors" / "log.csv")
    assert any(row["loss_sibling"] not in ("", "nan") and float(row["loss_sibling"]) > 0 for row in rows)
    assert not multiprocessing.active_children()


def env_that_fails_in_actors(settings, seed):
    """A self-play env that the learner's process can build and an actor process cannot."""
    import os

    from mallocgame.agent.envs import make_sampler_env

    if str(os.getpid()) != os.environ["MALLOCGAME_TEST_LEARNER_PID"]:
        raise RuntimeError("no env in this process")
    return make_sampler_env(settings, seed)


def test_an_actor_failure_stops_the_run_with_its_traceback_and_a_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip("mallocgame.env")
    import os

    from mallocgame.train import train

    monkeypatch.setenv("MALLOCGAME_TEST_LEARNER_PID", str(os.getpid()))
    cfg = tiny_config(tmp_path, actors=1, selfplay_model="true", instances="dags", occupancy_size=16, num_pending=4)
    with pytest.raises(RuntimeError, match="no env in this process"):
        train(cfg, make_env=env_that_fails_in_actors, make_eval_envs=lambda cfg: [], progress=False)
    assert (tmp_path / "smoke" / "checkpoint.pt").exists()


def test_train_help_shows_every_flag():
    from dataclasses import fields

    from mallocgame.train import TrainConfig, build_parser

    text = build_parser().format_help()
    assert "--actors" in text and "--surprise-share" in text
    assert text.count("\n  --") >= len(fields(TrainConfig))
    # Each flag says what it does and its default; the history of past runs is in results/muzero/README.md.
    assert " ".join(text.split()).count("(default: ") >= len(fields(TrainConfig))
    assert "session" not in text.lower() and "``" not in text


@dataclasses.dataclass
class PercentConfig:
    share: float = 0.5
    """Share of the batch (50% by default)."""


def test_train_help_survives_a_percent_sign():
    from mallocgame.train import build_parser

    text = build_parser(PercentConfig).format_help()  # a "%" in a field's docstring once broke this
    assert "(50% by default)" in " ".join(text.split())


def test_unknown_self_play_model_is_a_usage_error(tmp_path):
    from cosma.core.errors import UsageError
    from mallocgame.train import train

    with pytest.raises(UsageError, match="self-play model"):
        train(tiny_config(tmp_path, selfplay_model="oracle"), make_env=toy_envs, make_eval_envs=toy_eval_envs)


def test_eval_command_prints_a_row_per_instance(real_checkpoint, tmp_path, capsys):
    from mallocgame.evaluate import main

    table = tmp_path / "eval.md"
    assert main([str(real_checkpoint), "--models", "", "--dags", "1", "--simulations", "2", "--out", str(table)]) == 0
    text = table.read_text()
    assert text.count("| dag1000x24/") == 6  # 3 tiers x 2 weights settings
    assert "beats best-greedy" in capsys.readouterr().out


def test_eval_command_plays_the_latency_game(real_checkpoint, tmp_path, capsys):
    from mallocgame.evaluate import main

    table = tmp_path / "eval.md"
    argv = [str(real_checkpoint), "--models", "", "--dags", "1", "--simulations", "2", "--objective", "latency"]
    assert main([*argv, "--out", str(table)]) == 0  # every plan goes through the validator
    text = table.read_text()
    assert text.count("| dag1000x24/") == 6 and "| agent cycles | best-greedy cycles |" in text
    assert "cycles, best-greedy" in capsys.readouterr().out


def test_eval_on_a_validation_set_of_chosen_size(real_checkpoint, tmp_path):
    from mallocgame.evaluate import main

    table = tmp_path / "val.md"
    assert main([str(real_checkpoint), "--validation", "--dags", "2", "--simulations", "2", "--out", str(table)]) == 0
    text = table.read_text()
    assert text.count("| dag5000x24/") == 6 and text.count("| dag5001x24/") == 6 and "dag1000" not in text


def test_probe_tallies_picks_and_regret_against_monte_carlo():
    from mallocgame.probe import Tally

    tally = Tally()
    tally.add(np.array([-1.0, -0.5, -2.0]), {"prior": 1, "learned q": 0, "one-step q": 2})
    tally.add(np.array([-0.25, -0.75]), {"prior": 0, "learned q": 0, "one-step q": 1})
    assert tally.rows() == [("prior", 1.0, 0.0), ("learned q", 0.5, 0.25), ("one-step q", 0.0, 1.0)]


def test_probe_command_scores_a_checkpoint(real_checkpoint, capsys):
    from mallocgame.cli import main

    assert main(["probe", str(real_checkpoint), "--every", "48"]) == 0  # one validation instance
    out = capsys.readouterr().out
    assert "| learned q |" in out and "| one-step q |" in out
    decisions = int(out.split("\n\n")[1].split()[0])
    assert decisions > 0


def test_probe_counts_where_search_and_prior_depart_from_the_greedy_rule(real_checkpoint):
    from mallocgame.probe import deviations_checkpoint

    found = deviations_checkpoint(str(real_checkpoint), dags=1, simulations=4, log=lambda m: None)
    assert found.decisions > 0
    assert found.search_and_prior <= found.search <= found.decisions
    assert found.prior_and_search <= found.prior <= found.decisions
    assert found.search_and_prior == found.prior_and_search  # both count the departures they share
    assert "| the search departs from the greedy rule |" in found.markdown("title")


def test_eval_of_the_greedy_rule_matches_the_env_greedy_policy(real_checkpoint):
    from mallocgame.env import MallocGameEnv, greedy_action, play
    from mallocgame.evaluate import evaluate_checkpoint
    from mallocgame.instances import evaluation_set

    rows = evaluate_checkpoint(str(real_checkpoint), models="", dags=1, player="greedy", log=lambda *a: None)
    instances = evaluation_set(models=[], n_dags=1)
    assert [r.name for r in rows] == [i.name for i in instances]
    for row, inst in zip(rows, instances):
        _, info = play(MallocGameEnv(problem=inst.problem, num_pending=4, occupancy_shape=(16, 16)), greedy_action)
        assert row.agent == info["cost"].non_compulsory_bytes


def test_a_lookahead_run_sees_the_greedy_completions_in_training_eval_and_the_solver(tmp_path):
    """--lookahead: the checkpoint's env settings carry it, its networks encode the env's
    "lookahead" key, and eval and the solver build envs that show it."""
    pytest.importorskip("mallocgame.env")
    from cosma.core.analysis import min_capacity
    from cosma.core.hardware import get_hardware
    from cosma.core.interface import RunOptions, Status, run
    from cosma.core.ir import Problem
    from cosma.core.synthetic import random_dag
    from mallocgame.agent.checkpoint import load_agent
    from mallocgame.evaluate import evaluate_checkpoint
    from mallocgame.solver import MuZeroParams
    from mallocgame.train import main

    assert main(tiny_real_argv(tmp_path, "la", "--lookahead")) == 0
    checkpoint = tmp_path / "la" / "checkpoint.pt"
    agent = load_agent(str(checkpoint))
    assert agent.settings.lookahead and "lookahead" in agent.net.representation.row_keys
    rows = evaluate_checkpoint(str(checkpoint), models="", dags=1, log=lambda *a: None)
    assert rows and all(r.agent >= 0 for r in rows)  # evaluate_checkpoint validates every plan
    graph = random_dag(7, 12, size_range=(32, 3072))
    hw = get_hardware("edge-npu")
    problem = Problem(graph, min_capacity(Problem(graph, 10**9, hw, True)), hw, True)
    result = run(problem, "muzero", MuZeroParams(checkpoint=str(checkpoint), num_simulations=4), RunOptions(seed=0))
    assert result.status in (Status.FEASIBLE, Status.OPTIMAL)
    late = run(problem, "muzero", MuZeroParams(checkpoint=str(checkpoint)), RunOptions(time_limit=0.0))
    assert late.plan is not None and late.stats["searched_decisions"] <= 1


def test_eval_of_the_lookahead_rule_is_never_worse_than_the_greedy_rule(real_checkpoint):
    from mallocgame.evaluate import evaluate_checkpoint

    kwargs = dict(models="", dags=2, log=lambda *a: None)
    greedy = evaluate_checkpoint(str(real_checkpoint), player="greedy", **kwargs)
    lookahead = evaluate_checkpoint(str(real_checkpoint), player="lookahead", **kwargs)
    assert [r.name for r in greedy] == [r.name for r in lookahead]
    assert all(la.agent <= g.agent for la, g in zip(lookahead, greedy))
    assert sum(la.agent for la in lookahead) < sum(g.agent for g in greedy)


def test_boolean_config_fields_are_switches():
    from mallocgame.train import build_parser

    parser = build_parser()
    assert parser.parse_args([]).lookahead is True  # the shipped run's setting
    assert parser.parse_args(["--no-lookahead"]).lookahead is False
    assert parser.parse_args(["--no-lookahead", "--lookahead"]).lookahead is True


def test_muzero_solver_plan_validates(real_checkpoint):
    from cosma.core.analysis import min_capacity
    from cosma.core.hardware import get_hardware
    from cosma.core.interface import RunOptions, Status, run
    from cosma.core.ir import Problem
    from cosma.core.synthetic import random_dag
    from mallocgame.solver import MuZeroParams

    graph = random_dag(7, 12, size_range=(32, 3072))
    hw = get_hardware("edge-npu")
    loose = Problem(graph, 10**9, hw, True)
    cases = [(min_capacity(loose), "learned"), (min_capacity(loose) * 2, "learned"), (min_capacity(loose), "true")]
    for capacity, model in cases:
        problem = Problem(graph, capacity, hw, True)
        params = MuZeroParams(checkpoint=str(real_checkpoint), num_simulations=4, model=model)
        result = run(problem, "muzero", params, RunOptions(seed=0))  # run() validates the plan
        assert result.status in (Status.FEASIBLE, Status.OPTIMAL)
        assert result.objective == result.cost.spill_bytes + result.cost.reload_bytes
        # The episode's own accounting agrees with the cost model.
        baseline = result.stats["baseline_bytes"]
        assert (
            result.objective == pytest.approx(-result.stats["episode_return"] * max(baseline, 1), abs=1)
            or baseline == 0
        )
    below = Problem(graph, min_capacity(loose) - 64, hw, True)
    assert run(below, "muzero", MuZeroParams(checkpoint=str(real_checkpoint))).status is Status.INFEASIBLE


def test_muzero_solver_plays_the_latency_game(real_checkpoint):
    """Under objective=latency every game has the timing phase; the winner is the fastest plan."""
    from cosma.core.analysis import min_capacity
    from cosma.core.hardware import get_hardware
    from cosma.core.interface import RunOptions, run
    from cosma.core.ir import Problem
    from cosma.core.synthetic import random_dag
    from mallocgame.solver import MuZeroParams

    graph = random_dag(7, 12, size_range=(32, 3072))
    hw = get_hardware("mcu")
    problem = Problem(graph, min_capacity(Problem(graph, 10**9, hw, True)), hw, True, objective="latency")
    for model in ("learned", "true"):
        params = MuZeroParams(checkpoint=str(real_checkpoint), num_simulations=4, model=model)
        result = run(problem, "muzero", params, RunOptions(seed=0))  # run() validates the plan
        assert result.objective == result.cost.latency_cycles
        games = result.stats["trajectories"]
        assert result.objective == min(g["latency_cycles"] for g in games)
        assert {g["player"] for g in games} == {"greedy", "agent", "lookahead"}
        assert result.stats["episode_return"] == pytest.approx(-result.objective / result.stats["baseline_latency"])


def test_training_on_the_latency_game(tmp_path):
    """--objective latency: self-play and the held-out evaluation play the latency game, the
    checkpoint says so, and the solver and eval load it."""
    from cosma.core.errors import UsageError
    from mallocgame.agent.checkpoint import load_agent
    from mallocgame.evaluate import evaluate_checkpoint
    from mallocgame.train import main

    assert main(tiny_real_argv(tmp_path, "lat", "--objective", "latency")) == 0
    checkpoint = tmp_path / "lat" / "checkpoint.pt"
    assert load_agent(str(checkpoint)).settings.objective == "latency"
    rows = evaluate_checkpoint(str(checkpoint), models="", dags=1, objective="latency", log=lambda *a: None)
    assert rows and all(r.agent > 0 for r in rows)  # cycles; every plan validated
    with pytest.raises(UsageError, match="objective"):  # the mallocgame command prints it on one line, exit 2
        main(tiny_real_argv(tmp_path, "bad", "--objective", "energy"))


def test_init_fine_tunes_another_runs_weights_on_a_new_objective(real_checkpoint, tmp_path):
    """--init: a new run (own config, counters from zero) starts from a bytes run's weights and
    optimizer moments on the latency game; --resume keeps its own weights; a network that does
    not fit is refused in one line."""
    from cosma.core.errors import UsageError
    from mallocgame.train import main

    source = torch.load(real_checkpoint, weights_only=False)
    init = ("--init", str(real_checkpoint))
    argv = tiny_real_argv(tmp_path, "ft", "--objective", "latency", *init, "--minutes", "0", "--demo-episodes", "0")
    assert main(argv) == 0  # no budget: the checkpoint saved is the loaded one
    tuned = torch.load(tmp_path / "ft" / "checkpoint.pt", weights_only=False)
    assert tuned["config"]["objective"] == "latency" and tuned["config"]["init"] == str(real_checkpoint)
    assert tuned["counters"]["updates"] == 0
    for key, value in source["model"].items():
        assert torch.equal(tuned["model"][key], value)
    assert tuned["optimizer"]["state"].keys() == source["optimizer"]["state"].keys()
    assert main(tiny_real_argv(tmp_path, "ft2", "--objective", "latency", *init)) == 0
    trained = torch.load(tmp_path / "ft2" / "checkpoint.pt", weights_only=False)
    assert trained["counters"]["updates"] > 0
    assert main(["--resume", str(tmp_path / "ft2" / "checkpoint.pt"), "--max-env-steps", "140", "--no-progress"]) == 0
    resumed = torch.load(tmp_path / "ft2" / "checkpoint.pt", weights_only=False)
    assert resumed["counters"]["updates"] > trained["counters"]["updates"]
    with pytest.raises(UsageError, match="--init"):  # another network size: refused, not half loaded
        main(tiny_real_argv(tmp_path, "bad", *init, "--hidden-dim", "8"))


def test_muzero_solver_time_limit_still_returns_a_valid_plan(real_checkpoint):
    from cosma.core.analysis import min_capacity
    from cosma.core.hardware import get_hardware
    from cosma.core.interface import RunOptions, run
    from cosma.core.ir import Problem
    from cosma.core.synthetic import random_dag
    from mallocgame.solver import MuZeroParams

    graph = random_dag(8, 16, size_range=(32, 3072))
    hw = get_hardware("edge-npu")
    problem = Problem(graph, min_capacity(Problem(graph, 10**9, hw, True)), hw, True)
    result = run(problem, "muzero", MuZeroParams(checkpoint=str(real_checkpoint)), RunOptions(time_limit=0.0))
    assert result.plan is not None and result.stats["searched_decisions"] <= 1


def test_solver_names_the_same_models_as_the_policies():
    from mallocgame import solver
    from mallocgame.agent.policy import MODELS

    assert solver.MODELS == MODELS


def test_agent_rewards_are_bytes_over_capacity():
    """The agent learns in bytes over the capacity (what its observation shows), not in the
    env's baseline-normalized units; the factor is constant over an episode."""
    pytest.importorskip("mallocgame.env")
    from cosma.core.analysis import min_capacity
    from cosma.core.hardware import get_hardware
    from cosma.core.ir import Problem
    from cosma.core.synthetic import random_dag
    from mallocgame.agent.envs import reward_unit
    from mallocgame.env import MallocGameEnv, greedy_action

    graph = random_dag(3, 16, size_range=(32, 3072))
    hw = get_hardware("edge-npu")
    problem = Problem(graph, min_capacity(Problem(graph, 10**9, hw, True)), hw, True)
    env = MallocGameEnv(problem=problem)
    env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        unit = reward_unit(env)
        _, reward, done, _, info = env.step(greedy_action(env))
        total += reward * unit
    assert info["cost"].non_compulsory_bytes > 0
    assert total == pytest.approx(-info["cost"].non_compulsory_bytes / problem.capacity)
    assert reward_unit(ToyMallocEnv()) == 1.0


def test_agent_latency_rewards_sum_to_the_plans_exposed_dma_over_capacity():
    """Under objective=latency the agent's return is the finished plan's exposed DMA,
    -(latency - compute) x bandwidth / capacity (the compute no decision changes is given back
    where the keep/evict phase ends), while the env's return stays -latency / baseline."""
    pytest.importorskip("mallocgame.env")
    from cosma.core.analysis import min_capacity
    from cosma.core.hardware import get_hardware
    from cosma.core.ir import Problem
    from cosma.core.synthetic import random_dag
    from mallocgame.agent.envs import agent_reward, reward_frame
    from mallocgame.env import MallocGameEnv, greedy_action

    graph = random_dag(3, 16, size_range=(32, 3072))
    hw = get_hardware("edge-npu")
    problem = Problem(graph, min_capacity(Problem(graph, 10**9, hw, True)), hw, True, objective="latency")
    env = MallocGameEnv(problem=problem)
    env.reset(seed=0)
    agent, total, done = 0.0, 0.0, False
    while not done:
        before = reward_frame(env)
        _, reward, done, _, info = env.step(greedy_action(env))
        agent += agent_reward(env, reward, before)
        total += reward
    compute = sum(env.timing.compute)
    assert info["cost"].latency_cycles > compute  # some DMA is exposed
    exposed = (info["cost"].latency_cycles - compute) * hw.dram_bytes_per_cycle / problem.capacity
    assert agent == pytest.approx(-exposed)
    assert total == pytest.approx(-info["cost"].latency_cycles / env.scale)


def test_shipped_config_names_the_run_folder_relative_to_the_working_directory(tmp_path, monkeypatch):
    import json

    from mallocgame.train import ship

    run = tmp_path / "runs" / "muzero" / "r"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"out_dir": str(tmp_path / "runs" / "muzero"), "seed": 3}))
    (run / "log.csv").write_text("wall_s\n1\n")
    monkeypatch.chdir(tmp_path)
    ship(run, tmp_path / "results")
    assert json.loads((tmp_path / "results" / "config.json").read_text()) == {"out_dir": "runs/muzero", "seed": 3}
    assert (tmp_path / "results" / "log.csv").read_text() == "wall_s\n1\n"
