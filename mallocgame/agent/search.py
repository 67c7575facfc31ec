"""Gumbel MuZero tree search over a model, batched over ``B`` independent roots.

Pure numpy; the model is a function (the learned dynamics, or anything else with the
same signature), so this module knows nothing about networks or environments. The
policies that act with it live in ``mallocgame.agent.policy``.

The search follows "Policy improvement by planning with Gumbel" (Danihelka et al.,
ICLR 2022), as mctx implements it:

* at the root, Gumbel-top-k sampling picks ``m`` considered actions and **sequential
  halving** spreads the ``n`` simulations over them (a fixed visit table, so every root
  in the batch follows the same schedule); illegal root actions are never considered;
* below the root, the deterministic selection of the paper: the action whose share of
  visits lags most behind the improved policy ``softmax(logits + sigma(completed q))``;
* q-values are completed with the mixed value for unvisited actions and **min-max
  normalized** per node before ``sigma(q) = (c_visit + max visits) * c_scale * q``.

Outputs: the chosen root action (the best considered action by ``g + logits + sigma(q)``)
and the improved policy (the training target for the policy head).

Shapes: ``B`` roots, ``S = num_simulations + 1`` nodes per tree, ``A`` actions, ``D``
the size of a latent state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

ROOT_INDEX = 0  # the root is node 0 of every tree
NO_PARENT = -1  # parent of the root
UNVISITED = -1  # children_index entry of an action never expanded

# (embeddings [B, D], actions [B]) -> (rewards [B], values [B], logits [B, A], next embeddings [B, D])
RecurrentFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class SearchParams:
    """Settings of one search (the paper's defaults unless said otherwise)."""

    num_simulations: int = 16  # n: model calls per root
    max_num_considered_actions: int = 8  # m: actions sequential halving starts with
    gumbel_scale: float = 1.0  # 0 turns root sampling into a deterministic top-k (evaluation)
    discount: float = 1.0  # per decision; the game is episodic and undiscounted
    c_visit: float = 50.0  # sigma(q) = (c_visit + max visits) * c_scale * q
    c_scale: float = 0.1
    min_q_range: float = 0.0  # floor of the min-max normalization's range (0: mctx's, any range is stretched to [0, 1])
    target_scale: float = 1.0  # sigma(q) is multiplied by this in the root's improved policy (the training target) only


@dataclass
class Tree:
    """The search trees of a batch, as arrays (one row per root)."""

    node_visits: np.ndarray  # [B, S] int
    raw_values: np.ndarray  # [B, S] value predicted when the node was expanded
    node_values: np.ndarray  # [B, S] mean of backed-up values
    parents: np.ndarray  # [B, S] int, NO_PARENT for the root
    action_from_parent: np.ndarray  # [B, S] int
    children_index: np.ndarray  # [B, S, A] int, UNVISITED until expanded
    children_prior_logits: np.ndarray  # [B, S, A] logits of the node's policy
    children_visits: np.ndarray  # [B, S, A] int
    children_rewards: np.ndarray  # [B, S, A] reward of the transition to the child
    children_values: np.ndarray  # [B, S, A] node value of the child
    embeddings: np.ndarray  # [B, S, D] latent state of each node
    root_invalid: np.ndarray  # [B, A] bool, True where the root action is illegal


@dataclass
class SearchOutput:
    action: np.ndarray  # [B] int: the action to play
    action_weights: np.ndarray  # [B, A] improved policy at the root (zero on illegal actions)
    root_value: np.ndarray  # [B] mean backed-up value of the root
    tree: Tree


def search(
    root_logits: np.ndarray,
    root_value: np.ndarray,
    root_embedding: np.ndarray,
    recurrent_fn: RecurrentFn,
    invalid_actions: np.ndarray,
    params: SearchParams,
    rng: np.random.Generator,
) -> SearchOutput:
    """Run ``params.num_simulations`` simulations from each root.

    root_logits [B, A], root_value [B], root_embedding [B, D], invalid_actions [B, A] bool
    (every root needs at least one legal action).
    """
    batch, num_actions = root_logits.shape
    if (invalid_actions.all(axis=1)).any():
        raise ValueError("every root needs a legal action")
    n = params.num_simulations
    tree = _new_tree(batch, n + 1, num_actions, root_embedding.shape[1], root_embedding.dtype)
    root_logits = np.where(invalid_actions, -np.inf, root_logits)
    tree.children_prior_logits[:, ROOT_INDEX] = _finite(root_logits)
    tree.raw_values[:, ROOT_INDEX] = root_value
    tree.node_values[:, ROOT_INDEX] = root_value
    tree.node_visits[:, ROOT_INDEX] = 1
    tree.embeddings[:, ROOT_INDEX] = root_embedding
    tree.root_invalid = invalid_actions.copy()

    gumbel = params.gumbel_scale * rng.gumbel(size=(batch, num_actions))  # [B, A]
    num_valid = (~invalid_actions).sum(axis=1)
    num_considered = np.minimum(params.max_num_considered_actions, num_valid)  # [B]
    rows = np.arange(batch)

    table = np.array(considered_visit_table(params.max_num_considered_actions, n))  # [m+1, n]
    for sim in range(n):
        # Selection: every root descends in lockstep, one depth at a time, until it picks
        # an action that has no child yet.
        nodes = np.full(batch, ROOT_INDEX)
        actions = _root_action(tree, gumbel, table[num_considered, sim], params)
        while True:
            child = tree.children_index[rows, nodes, actions]
            deeper = child != UNVISITED
            if not deeper.any():
                break
            nodes = np.where(deeper, child, nodes)
            actions = np.where(deeper, _interior_action(tree, nodes, params), actions)
        parents = nodes

        # Expansion: one new node per root, with one batched model call.
        rewards, values, logits, embeddings = recurrent_fn(tree.embeddings[rows, parents], actions)
        new = sim + 1
        tree.children_index[rows, parents, actions] = new
        tree.children_rewards[rows, parents, actions] = rewards
        tree.parents[:, new] = parents
        tree.action_from_parent[:, new] = actions
        tree.children_prior_logits[:, new] = logits
        tree.raw_values[:, new] = values
        tree.node_values[:, new] = values
        tree.node_visits[:, new] = 1
        tree.embeddings[:, new] = embeddings
        _backup(tree, new, values, params.discount)

    root = np.full(batch, ROOT_INDEX)
    weights = _improved_policy(tree, root, params, params.target_scale)
    # The action to play: the best considered action among the most visited ones.
    most = np.where(invalid_actions, -1, tree.children_visits[:, ROOT_INDEX]).max(axis=1)
    chosen = _root_action(tree, gumbel, most, params)
    return SearchOutput(chosen, weights, tree.node_values[:, ROOT_INDEX].copy(), tree)


def _new_tree(batch: int, nodes: int, actions: int, dim: int, dtype) -> Tree:
    return Tree(
        node_visits=np.zeros((batch, nodes), np.int64),
        raw_values=np.zeros((batch, nodes)),
        node_values=np.zeros((batch, nodes)),
        parents=np.full((batch, nodes), NO_PARENT, np.int64),
        action_from_parent=np.full((batch, nodes), -1, np.int64),
        children_index=np.full((batch, nodes, actions), UNVISITED, np.int64),
        children_prior_logits=np.zeros((batch, nodes, actions)),
        children_visits=np.zeros((batch, nodes, actions), np.int64),
        children_rewards=np.zeros((batch, nodes, actions)),
        children_values=np.zeros((batch, nodes, actions)),
        embeddings=np.zeros((batch, nodes, dim), dtype),
        root_invalid=np.zeros((batch, actions), bool),
    )


def _finite(logits: np.ndarray) -> np.ndarray:
    """Replace -inf (masked) logits by a very low finite value, shifted so the max is 0."""
    finite = np.where(np.isfinite(logits), logits, -np.inf)
    top = finite.max(axis=-1, keepdims=True)
    return np.maximum(logits - top, -1e9)


@lru_cache(maxsize=None)
def considered_visit_table(max_considered: int, num_simulations: int) -> tuple[tuple[int, ...], ...]:
    """Row ``m``: for each simulation index, the visit count a considered action must have
    to be chosen at the root, under sequential halving with ``m`` considered actions."""
    return tuple(_considered_visit_sequence(m, num_simulations) for m in range(max_considered + 1))


def _considered_visit_sequence(m: int, n: int) -> tuple[int, ...]:
    if m <= 1:
        return tuple(range(n))
    log2m = int(math.ceil(math.log2(m)))
    sequence: list[int] = []
    visits = [0] * m
    considered = m
    while len(sequence) < n:
        extra = max(1, int(n / (log2m * considered)))
        for _ in range(extra):
            sequence.extend(visits[:considered])
            for i in range(considered):
                visits[i] += 1
        considered = max(2, considered // 2)
    return tuple(sequence[:n])


def _completed_q(tree: Tree, nodes: np.ndarray, params: SearchParams) -> np.ndarray:
    """[B, A] sigma(completed, min-max normalized q) at one node per root: visited actions
    keep their q, the others get the mixed value (the node's value blended with its
    visited children's q, weighted by the prior)."""
    rows = np.arange(len(nodes))
    visits = tree.children_visits[rows, nodes]  # [B, A]
    q = tree.children_rewards[rows, nodes] + params.discount * tree.children_values[rows, nodes]
    prior = np.maximum(_softmax(tree.children_prior_logits[rows, nodes]), np.finfo(np.float64).tiny)
    visited = visits > 0
    total = visits.sum(axis=1)  # [B]
    visited_prior = np.where(visited, prior, 0.0).sum(axis=1)
    weighted_q = np.where(visited, prior * q, 0.0).sum(axis=1) / np.where(total > 0, visited_prior, 1.0)
    mixed = (tree.raw_values[rows, nodes] + total * weighted_q) / (total + 1)  # [B]
    completed = np.where(visited, q, mixed[:, None])
    # Illegal root actions must not stretch the normalization.
    at_root = (nodes == ROOT_INDEX)[:, None] & tree.root_invalid
    completed = np.where(at_root, mixed[:, None], completed)
    lo = completed.min(axis=1, keepdims=True)
    hi = completed.max(axis=1, keepdims=True)
    # A floor on the range keeps q-values that differ by noise from becoming a sharp preference.
    normalized = (completed - lo) / np.maximum(hi - lo, max(params.min_q_range, 1e-8))
    return (params.c_visit + visits.max(axis=1, keepdims=True)) * params.c_scale * normalized


def _root_action(tree: Tree, gumbel: np.ndarray, target_visits: np.ndarray, params: SearchParams) -> np.ndarray:
    """[B] sequential halving: among legal considered actions whose visit count is
    ``target_visits`` [B] (what the schedule asks for now), the best by
    ``g + logits + sigma(q)``. Before any visit this is Gumbel-top-k sampling."""
    root = np.full(len(gumbel), ROOT_INDEX)
    visits = tree.children_visits[:, ROOT_INDEX]  # [B, A]
    score = gumbel + tree.children_prior_logits[:, ROOT_INDEX] + _completed_q(tree, root, params)
    score = np.maximum(score, -1e9)
    ok = (visits == target_visits[:, None]) & ~tree.root_invalid
    return np.argmax(np.where(ok, score, -np.inf), axis=1)


def _interior_action(tree: Tree, nodes: np.ndarray, params: SearchParams) -> np.ndarray:
    """[B] the action whose visit share lags most behind the improved policy."""
    visits = tree.children_visits[np.arange(len(nodes)), nodes]
    policy = _improved_policy(tree, nodes, params)
    return np.argmax(policy - visits / (1 + visits.sum(axis=1, keepdims=True)), axis=1)


def _improved_policy(tree: Tree, nodes: np.ndarray, params: SearchParams, scale: float = 1.0) -> np.ndarray:
    """[B, A] softmax(logits + scale * sigma(completed q)); zero on illegal root actions."""
    rows = np.arange(len(nodes))
    logits = tree.children_prior_logits[rows, nodes] + scale * _completed_q(tree, nodes, params)
    at_root = (nodes == ROOT_INDEX)[:, None] & tree.root_invalid
    return _softmax(np.where(at_root, -np.inf, logits))


def root_prior(tree: Tree) -> np.ndarray:
    """[B, A] the policy head's prior at the root: softmax of its logits, zero on illegal actions."""
    return _softmax(np.where(tree.root_invalid, -np.inf, tree.children_prior_logits[:, ROOT_INDEX]))


def _softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _backup(tree: Tree, leaf: int, values: np.ndarray, discount: float) -> None:
    """Propagate each root's new leaf value [B] up to its root, updating means and visits."""
    batch = len(values)
    for b in range(batch):
        node, value = leaf, float(values[b])
        while node != ROOT_INDEX:
            parent = tree.parents[b, node]
            action = tree.action_from_parent[b, node]
            value = tree.children_rewards[b, parent, action] + discount * value
            count = tree.node_visits[b, parent]
            tree.node_values[b, parent] = (tree.node_values[b, parent] * count + value) / (count + 1)
            tree.node_visits[b, parent] = count + 1
            tree.children_values[b, parent, action] = tree.node_values[b, node]
            tree.children_visits[b, parent, action] += 1
            node = parent


__all__ = [
    "ROOT_INDEX",
    "NO_PARENT",
    "UNVISITED",
    "SearchParams",
    "Tree",
    "SearchOutput",
    "search",
    "root_prior",
    "considered_visit_table",
]
