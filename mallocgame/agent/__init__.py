"""mallocMuZero: a MuZero-style agent for mallocGame.

* ``networks``: representation, dynamics and prediction networks and their size config;
* ``search``: Gumbel MuZero tree search over any model (pure numpy, batched);
* ``policy``: the policies built on it: search on the learned model (MuZero) or on the
  true env (the AlphaZero-style ablation);
* ``replay``: self-play games, the replay buffer, n-step targets;
* ``learner``: the MuZero loss;
* ``rollout``: whole episodes with a policy; ``envs``: env construction from the settings a
  checkpoint depends on; ``checkpoint``: loading a trained agent.

The training loop is ``mallocgame.train``; evaluation ``mallocgame.evaluate``; the
``muzero`` solver ``mallocgame.solver``.
"""
