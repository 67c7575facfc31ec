"""Networks of the zoo that no installed library provides, in plain torch.

Used only by ``models/export_zoo.py`` (optional tooling). Weights are random: the zoo
keeps shapes, never weights. Each network follows its published description:

* ``GPT2``: GPT-2 small (12 layers, 768 wide, 12 heads, pre-LayerNorm, tied LM head);
* ``Bert``: BERT-base encoder (12 layers, 768 wide, 12 heads, post-LayerNorm);
* ``DartsImageNet``: the ImageNet network of DARTS (Liu et al. 2019) built from the
  published ``DARTS_V2`` genotype (C=48, 14 cells, reductions at 1/3 and 2/3);
* ``AmoebaNetD``: AmoebaNet-D (Real et al. 2019) as configured in GPipe (the TPU
  reference cell genotype; 6 normal cells per stage, 256 filters);
* ``RandWire``: randomly wired networks (Xie et al. 2019), small regime, each stage a
  Watts-Strogatz graph WS(N, K=4, P=0.75) from networkx, oriented by node index.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# --------------------------------------------------------------------------- transformers


class SelfAttention(nn.Module):
    """Multi-head self-attention written out (MatMul, Softmax) so the ONNX export does not
    depend on how a fused attention kernel is lowered."""

    def __init__(self, width: int, heads: int, causal: bool, context: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.causal = causal
        if causal:
            self.register_buffer("mask", torch.tril(torch.ones(context, context, dtype=torch.bool)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // self.heads))
        if self.causal:
            scores = scores.masked_fill(~self.mask[:t, :t], float("-inf"))
        y = scores.softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class TransformerBlock(nn.Module):
    def __init__(self, width: int, heads: int, causal: bool, context: int, pre_norm: bool):
        super().__init__()
        self.pre_norm = pre_norm
        self.ln1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, causal, context)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:  # GPT-2
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))
        x = self.ln1(x + self.attn(x))  # BERT
        return self.ln2(x + self.mlp(x))


class GPT2(nn.Module):
    """GPT-2 small: token ids ``[1, T]`` in, next-token logits ``[1, T, vocab]`` out."""

    def __init__(self, vocab: int = 50257, context: int = 1024, width: int = 768, layers: int = 12, heads: int = 12):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, True, context, True) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.wte(ids) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class Bert(nn.Module):
    """BERT-base encoder: token ids ``[1, T]`` in, last hidden states ``[1, T, 768]`` out
    (single segment, no padding mask)."""

    def __init__(self, vocab: int = 30522, context: int = 512, width: int = 768, layers: int = 12, heads: int = 12):
        super().__init__()
        self.word = nn.Embedding(vocab, width)
        self.position = nn.Embedding(context, width)
        self.segment = nn.Embedding(2, width)
        self.ln = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, False, context, False) for _ in range(layers))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.ln(self.word(ids) + self.position(positions) + self.segment(torch.zeros_like(ids)))
        for block in self.blocks:
            x = block(x)
        return x


# --------------------------------------------------------------------------- NAS cells


def relu_conv_bn(c_in: int, c_out: int, kernel=1, stride=1, padding=0, dilation=1, groups=1) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    )


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: two stride-2 1x1 convolutions, the
    second shifted by one pixel, concatenated."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv1(x), self.conv2(shifted)], dim=1))


def dw_pw_bn(c: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> nn.Sequential:
    """ReLU, depthwise kxk, pointwise 1x1, BN: one separable convolution block."""
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(c, c, kernel, stride, padding, dilation=dilation, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c),
    )


def darts_op(name: str, c: int, stride: int) -> nn.Module:
    if name == "sep_conv_3x3":  # two separable blocks, the first strides
        return nn.Sequential(dw_pw_bn(c, 3, stride, 1), dw_pw_bn(c, 3, 1, 1))
    if name == "dil_conv_3x3":
        return dw_pw_bn(c, 3, stride, 2, dilation=2)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    raise ValueError(f"unknown DARTS operation {name!r}")


# DARTS_V2 (Liu et al., "DARTS: Differentiable Architecture Search", 2019): per cell, four
# intermediate nodes, each the sum of two (operation, input state) pairs.
DARTS_V2_NORMAL = (
    ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2),
)  # fmt: skip
DARTS_V2_REDUCE = (
    ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
    ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1),
)  # fmt: skip
DARTS_V2_CONCAT = (2, 3, 4, 5)


class DartsCell(nn.Module):
    def __init__(self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else relu_conv_bn(c_pp, c)
        self.pre1 = relu_conv_bn(c_p, c)
        genotype = DARTS_V2_REDUCE if reduction else DARTS_V2_NORMAL
        self.indices = [i for _, i in genotype]
        self.ops = nn.ModuleList(darts_op(name, c, 2 if reduction and i < 2 else 1) for name, i in genotype)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for k in range(0, len(self.ops), 2):
            a = self.ops[k](states[self.indices[k]])
            b = self.ops[k + 1](states[self.indices[k + 1]])
            states.append(a + b)
        return torch.cat([states[i] for i in DARTS_V2_CONCAT], dim=1)


class DartsImageNet(nn.Module):
    """DARTS_V2 ImageNet network (mobile setting: C=48, 14 cells, 1000 classes)."""

    def __init__(self, c: int = 48, cells: int = 14, classes: int = 1000):
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, c // 2, 3, 2, 1, bias=False),
            nn.BatchNorm2d(c // 2),
            nn.ReLU(),
            nn.Conv2d(c // 2, c, 3, 2, 1, bias=False),
            nn.BatchNorm2d(c),
        )
        self.stem1 = relu_conv_bn(c, c, 3, 2, 1)
        c_pp, c_p, c_cur, reduction_prev = c, c, c, True
        self.cells = nn.ModuleList()
        for i in range(cells):
            reduction = i in (cells // 3, 2 * cells // 3)
            if reduction:
                c_cur *= 2
            self.cells.append(DartsCell(c_pp, c_p, c_cur, reduction, reduction_prev))
            c_pp, c_p, reduction_prev = c_p, len(DARTS_V2_CONCAT) * c_cur, reduction
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.pool(s1).flatten(1))


# AmoebaNet-D cell genotype as in the TPU reference implementation used by GPipe:
# (input state, operation) pairs, two per intermediate node, and the concatenated states.
AMOEBA_NORMAL = (
    (1, "conv_1x1"), (1, "max_pool_3x3"), (1, "none"), (0, "conv_1x7_7x1"), (0, "conv_1x1"),
    (0, "conv_1x7_7x1"), (2, "max_pool_3x3"), (2, "none"), (1, "avg_pool_3x3"), (5, "conv_1x1"),
)  # fmt: skip
AMOEBA_NORMAL_CONCAT = (0, 3, 4, 6)
AMOEBA_REDUCE = (
    (0, "max_pool_2x2"), (0, "max_pool_3x3"), (2, "none"), (1, "conv_3x3"), (2, "conv_1x7_7x1"),
    (2, "max_pool_3x3"), (3, "none"), (1, "max_pool_2x2"), (2, "avg_pool_3x3"), (3, "conv_1x1"),
)  # fmt: skip
AMOEBA_REDUCE_CONCAT = (4, 5, 6)


def amoeba_op(name: str, c: int, stride: int) -> nn.Module:
    if name == "none":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "max_pool_2x2":
        return nn.MaxPool2d(2, stride=stride)
    if name == "conv_1x1":
        return relu_conv_bn(c, c, 1, stride)
    if name == "conv_3x3":  # bottleneck: 1x1 down to c/4, strided 3x3, 1x1 back up
        return nn.Sequential(
            relu_conv_bn(c, c // 4), relu_conv_bn(c // 4, c // 4, 3, stride, 1), relu_conv_bn(c // 4, c)
        )
    if name == "conv_1x7_7x1":
        return nn.Sequential(
            relu_conv_bn(c, c // 4),
            relu_conv_bn(c // 4, c // 4, (1, 7), (1, stride), (0, 3)),
            relu_conv_bn(c // 4, c // 4, (7, 1), (stride, 1), (3, 0)),
            relu_conv_bn(c // 4, c),
        )
    raise ValueError(f"unknown AmoebaNet operation {name!r}")


class AmoebaCell(nn.Module):
    def __init__(self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.pre1 = relu_conv_bn(c_p, c)
        if reduction_prev:
            self.pre0: nn.Module = FactorizedReduce(c_pp, c)
        else:
            self.pre0 = relu_conv_bn(c_pp, c) if c_pp != c else nn.Identity()
        genotype = AMOEBA_REDUCE if reduction else AMOEBA_NORMAL
        self.concat = AMOEBA_REDUCE_CONCAT if reduction else AMOEBA_NORMAL_CONCAT
        self.indices = [i for i, _ in genotype]
        self.ops = nn.ModuleList(amoeba_op(name, c, 2 if reduction and i < 2 else 1) for i, name in genotype)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre1(s1), self.pre0(s0)]  # the reference numbers the previous cell's output 0
        for k in range(0, len(self.ops), 2):
            states.append(self.ops[k](states[self.indices[k]]) + self.ops[k + 1](states[self.indices[k + 1]]))
        return torch.cat([states[i] for i in self.concat], dim=1)


class AmoebaNetD(nn.Module):
    """AmoebaNet-D(N, F) for ImageNet: a stem, two reduction cells, then three stages of
    N normal cells separated by reduction cells (GPipe's configuration: N=6, F=256)."""

    def __init__(self, normal_cells: int = 6, filters: int = 256, classes: int = 1000):
        super().__init__()
        c = filters // 4
        self.stem = nn.Sequential(nn.ReLU(), nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c))
        plan = [True, True] + ([False] * normal_cells + [True]) * 2 + [False] * normal_cells
        self.cells = nn.ModuleList()
        c_pp = c_p = c
        reduction_prev = False
        for reduction in plan:
            if reduction:
                c *= 2
            cell = AmoebaCell(c_pp, c_p, c, reduction, reduction_prev)
            self.cells.append(cell)
            c_pp, c_p, reduction_prev = c_p, c * len(cell.concat), reduction
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.pool(s1).flatten(1))


# --------------------------------------------------------------------------- RandWire


class RandWireNode(nn.Module):
    """Aggregate the inputs by a sigmoid-weighted sum, then ReLU, separable 3x3, BN."""

    def __init__(self, fan_in: int, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(fan_in))
        self.transform = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if len(inputs) == 1:
            return self.transform(inputs[0])
        gates = torch.sigmoid(self.weights)
        x = inputs[0] * gates[0]
        for k in range(1, len(inputs)):
            x = x + inputs[k] * gates[k]
        return self.transform(x)


class RandWireStage(nn.Module):
    """One randomly wired stage: a WS(N, 4, 0.75) graph, edges oriented from the lower to
    the higher node index. Nodes without predecessors read the stage input (stride 2);
    the stage output is the mean of the nodes without successors."""

    def __init__(self, nodes: int, c_in: int, c_out: int, seed: int):
        super().__init__()
        import networkx as nx

        ws = nx.connected_watts_strogatz_graph(nodes, 4, 0.75, tries=200, seed=seed)
        self.preds = [sorted(u for u in ws.neighbors(v) if u < v) for v in range(nodes)]
        self.sinks = [v for v in range(nodes) if not any(u > v for u in ws.neighbors(v))]
        self.nodes = nn.ModuleList(
            RandWireNode(max(1, len(p)), c_in if not p else c_out, c_out, 2 if not p else 1) for p in self.preds
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for node, preds in zip(self.nodes, self.preds):
            outs.append(node([outs[u] for u in preds] if preds else [x]))
        total = outs[self.sinks[0]]
        for v in self.sinks[1:]:
            total = total + outs[v]
        return total * (1.0 / len(self.sinks))


class RandWire(nn.Module):
    """RandWire-WS, small regime (C=78): conv1 (3x3/2, C/2), stages of N/2, N and N random
    nodes at C, 2C, 4C channels, then ReLU, 1x1 conv to 1280, pooling and the classifier."""

    def __init__(self, nodes: int = 32, seed: int = 0, channels: int = 78, classes: int = 1000):
        super().__init__()
        c = channels
        self.conv1 = nn.Sequential(nn.Conv2d(3, c // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(c // 2))
        self.stages = nn.Sequential(
            RandWireStage(nodes // 2, c // 2, c, seed * 10 + 1),
            RandWireStage(nodes, c, 2 * c, seed * 10 + 2),
            RandWireStage(nodes, 2 * c, 4 * c, seed * 10 + 3),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(4 * c, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stages(self.conv1(x)))
        return self.classifier(self.pool(x).flatten(1))
