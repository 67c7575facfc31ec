"""The MuZero loss: unroll the learned model ``K`` steps from a sampled observation and
match its rewards, values and policies to the replayed targets.

    loss = sum_k  value_weight * (v_k - h(z_k))^2  +  (r_k - h(u_k))^2  +  CE(pi_k, p_k)
                  + consistency_weight * (1 - cos(s_k, sg(repr(o_{t+k}))))
           + sibling_weight * mean_{a tried at t+k}  (r(s_k, a) - h(r_a))^2 + value_weight * (v(g(s_k, a)) - h(v_a))^2
                                                    + huber(q(s_k, a) - mean q(s_k, .), q_a - mean q_.)

(``h`` is the squashing of ``networks.transform``: the heads predict in that space)

averaged over the batch; the policy and consistency terms only where the game had a
decision at ``t+k``. The consistency term is EfficientZero's (Ye et al., NeurIPS 2021):
rewards and values alone say little about a latent state when games are few, so the
unrolled latent ``s_k`` is also pulled toward the representation of the observation that
really followed (a stop-gradient target), so that the model stays close to the real
game over the unroll. (Measured here: within a 30-minute run it did not yet make a search
on the learned model better than its prior; see results/muzero/README.md.)
The sibling term is ours. The unroll above trains the model only on the actions that were
played, yet a search on it decides by comparing ``r(s, a) + v(g(s, a))`` across *all* the
root's actions: a model that never saw the consequences of the actions not taken
has no reason to rank them right (measured: with the learned model, 16 simulations did
worse than the policy prior alone). When self-play searches the true env, the search
already stepped the real game with every root action it tried, and backed up a value for
each; those rewards and values are the targets here, one step from ``s_0`` and from every
unrolled ``s_k`` (with the search made at ``t+k``), since a deeper search plans from those.
As in MuZero, each unrolled step's loss is scaled by ``1/K`` and the gradient entering
the dynamics' latent is halved, so that long unrolls do not swamp the representation.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mallocgame.agent.networks import MuZeroNet, inverse_transform, transform
from mallocgame.agent.replay import Batch


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``scale`` backward."""
    return x * scale + x.detach() * (1 - scale)


def muzero_loss(
    net: MuZeroNet,
    batch: Batch,
    value_weight: float = 0.25,
    consistency_weight: float = 0.0,
    sibling_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss (a scalar with a graph) and its parts as floats."""
    obs = {k: torch.from_numpy(v) for k, v in batch.observations.items()}
    actions = torch.from_numpy(batch.actions)  # [B, K]
    z = transform(torch.from_numpy(batch.target_values))  # [B, K+1], squashed like the heads
    u = transform(torch.from_numpy(batch.target_rewards))  # [B, K+1]
    pi = torch.from_numpy(batch.target_policies)  # [B, K+1, A]
    mask = torch.from_numpy(batch.policy_mask)  # [B, K+1]
    K = actions.shape[1]
    targets = None
    if consistency_weight > 0 and batch.next_observations is not None:
        with torch.no_grad():  # [B, K, D]: the representation of o_{t+1} .. o_{t+K}
            flat = {k: torch.from_numpy(v).flatten(0, 1) for k, v in batch.next_observations.items()}
            targets = net.representation(flat).view(actions.shape[0], K, -1)

    s, logits, value = net.initial_inference(obs)
    siblings = sibling_weight > 0 and batch.child_tried is not None and bool(batch.child_tried.any())
    sibling_loss = _sibling_loss(net, s, batch, 0, value_weight) if siblings else torch.zeros(actions.shape[0])
    value_loss = F.mse_loss(value, z[:, 0], reduction="none")
    reward_loss = torch.zeros_like(value_loss)
    policy_loss = -(pi[:, 0] * F.log_softmax(logits, dim=1)).sum(1) * mask[:, 0]
    consistency_loss = torch.zeros_like(value_loss)
    for k in range(1, K + 1):
        reward, s, logits, value = net.recurrent_inference(s, actions[:, k - 1])
        if siblings:  # the unrolled latent must rank the actions tried at t+k as well
            sibling_loss = sibling_loss + _sibling_loss(net, s, batch, k, value_weight) / K
        if targets is not None:
            similarity = F.cosine_similarity(s, targets[:, k - 1], dim=1)
            consistency_loss = consistency_loss + (1 - similarity) * mask[:, k] / K
        s = scale_gradient(s, 0.5)
        step_scale = 1.0 / K
        value_loss = value_loss + step_scale * F.mse_loss(value, z[:, k], reduction="none")
        reward_loss = reward_loss + step_scale * F.mse_loss(reward, u[:, k], reduction="none")
        ce = -(pi[:, k] * F.log_softmax(logits, dim=1)).sum(1) * mask[:, k]
        policy_loss = policy_loss + step_scale * ce

    total = (
        value_weight * value_loss + reward_loss + policy_loss + consistency_weight * consistency_loss
        + sibling_weight * sibling_loss
    ).mean()  # fmt: skip
    parts = {
        "loss": total.item(),
        "loss_value": value_loss.mean().item(),
        "loss_reward": reward_loss.mean().item(),
        "loss_policy": policy_loss.mean().item(),
        "loss_consistency": consistency_loss.mean().item(),
        "loss_sibling": sibling_loss.mean().item(),
    }
    return total, parts


def _sibling_loss(net: MuZeroNet, s0: torch.Tensor, batch: Batch, k: int, value_weight: float) -> torch.Tensor:
    """[B] the model's reward and value one step after each action the search tried at
    ``t+k``, against the search's (mean over the tried actions). s0 [B, D] is the latent
    state for ``t+k``: the representation (k = 0) or the model's own unroll."""
    B, A = s0.shape[0], batch.child_tried.shape[2]
    tried = torch.from_numpy(batch.child_tried[:, k])  # [B, A]
    every = torch.arange(A).repeat(B)  # [B * A]: each action from each root
    reward, s1 = net.dynamics(s0.repeat_interleave(A, dim=0), every)
    _, value = net.prediction(s1)
    target_r = torch.from_numpy(batch.child_rewards[:, k])
    target_v = torch.from_numpy(batch.child_values[:, k])
    reward, value = reward.view(B, A), value.view(B, A)
    reward_err = (reward - transform(target_r)) ** 2
    value_err = (value - transform(target_v)) ** 2
    # The search compares q = r + v across actions, and a value's error shared by every
    # action cancels there: the differences between the tried actions' q get a term of
    # their own, in bytes over the capacity (Huber: large gaps rank right without being exact).
    count = tried.sum(1, keepdim=True).clamp_min(1)
    q = inverse_transform(reward) + inverse_transform(value)
    target_q = target_r + target_v
    gap = q - (q * tried).sum(1, keepdim=True) / count
    target_gap = target_q - (target_q * tried).sum(1, keepdim=True) / count
    gap_err = F.smooth_l1_loss(gap, target_gap, reduction="none")
    per_action = (reward_err + value_weight * value_err + gap_err) * tried
    return per_action.sum(1) / count.squeeze(1)


__all__ = ["muzero_loss", "scale_gradient"]
