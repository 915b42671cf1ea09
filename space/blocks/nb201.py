"""NAS-Bench-201's cell and its residual reduction block (Dong & Yang, ICLR 2020).

Read from the authors' code (D-X-Y/AutoDL-Projects, ``xautodl/models/cell_operations.py``,
``cell_infers/cells.py`` and ``cell_infers/tiny_network.py``; read, not copied):

- The cell is a DAG of 4 nodes; node 0 is the cell input, node 3 its output, and node j is the
  **sum** of op(node i) over its 3 (j=3), 2 or 1 incoming edges (i < j). Each of the 6 edges
  carries one of 5 ops. Our edge order is the paper's arch-string order,
  ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` = (1←0), (2←0), (2←1), (3←0), (3←1), (3←2).
- Ops: ``none`` (zeros), ``skip`` (identity), ``conv1x1`` / ``conv3x3`` (ReLU → conv → BN, the
  authors' ``ReLUConvBN``), ``avg_pool`` (3×3, stride 1, padding 1, padding not counted). Where
  the cell changes shape (C_in ≠ C_out or stride 2, which the skeleton never asks of it but the
  authors' ``InferCell`` supports), edges leaving node 0 take the change: a conv takes the stride,
  ``skip`` becomes the authors' ``FactorizedReduce`` and ``avg_pool`` gets a ReLU-conv1×1-BN first.
- The reduction block is the authors' ``ResNetBasicblock``: ReLU-conv3×3(stride)-BN →
  ReLU-conv3×3-BN, added to a shortcut (stride 2: 2×2 average pool then a bare 1×1 conv; a width
  change alone: ReLU-conv1×1-BN; identity otherwise). No activation after the addition.
- The skeleton (the ``nb201-<ops>`` presets): 3×3 conv stem to 16 channels + BN (no ReLU), three
  stages of N=5 cells at 16/32/64 channels with a reduction block before the second and third,
  then BN-ReLU, global average pool, linear.

Every activation is the stage's ``act`` and every norm its ``norm`` (ReLU and affine BN by
default, as the authors). Chained ReLU-conv-BN ops are the pre-activation pattern (a norm and an
activation before every conv), so both blocks implement order ``pre`` and the network ends in
BN-ReLU before pooling, as the authors' ``lastact``. The stem's BN without ReLU is the option
``input_norm`` of the first cell stage (a BN over the stage input; our stem's ``norm_act`` would
add a ReLU that the skip edges would carry). Activations are never in-place here: a node feeds
several edges, and the reduction block reads its input twice. For odd input sizes the shortcut's
pool rounds up (``ceil_mode``) so that it matches the strided conv; even sizes are unaffected.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..layers import Layers, conv2d
from ..registry import OptionSpec, register_block

NB201_OPS = ("none", "skip", "conv1x1", "conv3x3", "avg_pool")
"""Our op names, in the order of the authors' ``NAS_BENCH_201`` list."""
PAPER_OPS = dict(zip(NB201_OPS, ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")))
"""Our op name → the paper's (arch-string) name."""
NB201_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
"""Edge ``k`` of ``ops`` as ``(to_node, from_node)``: the paper's arch-string order."""
ALL_CONV3X3 = ("conv3x3",) * 6


def _act(layers: Layers) -> nn.Module:
    act = layers.act()
    if hasattr(act, "inplace"):
        act.inplace = False  # the input is a node that other edges (or a shortcut) read too
    return act


def relu_conv_bn(in_chs: int, out_chs: int, kernel: int, stride: int, layers: Layers) -> nn.Sequential:
    """The authors' ``ReLUConvBN``: act → k×k conv (stride, 'same' padding, no bias) → norm."""
    return nn.Sequential(_act(layers), conv2d(in_chs, out_chs, kernel, stride), layers.norm(out_chs))


class FactorizedReduce(nn.Module):
    """The authors' shape-changing ``skip``: stride 2: act, two 1×1/2 convs to C/2 each, the second on
    the input shifted by one pixel, concatenated, norm; stride 1: 1×1 conv → norm (no act)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, layers: Layers) -> None:
        super().__init__()
        self.stride = stride
        self.act = _act(layers) if stride == 2 else nn.Identity()
        halves = (out_chs // 2, out_chs - out_chs // 2) if stride == 2 else (out_chs,)
        self.convs = nn.ModuleList(conv2d(in_chs, c, 1, stride) for c in halves)
        self.norm = layers.norm(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        if self.stride == 1:
            return self.norm(self.convs[0](x))
        shifted = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.norm(torch.cat([self.convs[0](x), self.convs[1](shifted)], 1))


def make_op(name: str, in_chs: int, out_chs: int, stride: int, layers: Layers) -> nn.Module | None:
    """One edge's op (``None`` for ``none``: it adds nothing to the sum)."""
    if name == "none":
        return None
    if name == "skip":
        return nn.Identity() if stride == 1 and in_chs == out_chs else FactorizedReduce(in_chs, out_chs, stride, layers)
    if name in ("conv1x1", "conv3x3"):
        return relu_conv_bn(in_chs, out_chs, 1 if name == "conv1x1" else 3, stride, layers)
    if name == "avg_pool":
        pre = [relu_conv_bn(in_chs, out_chs, 1, 1, layers)] if in_chs != out_chs else []
        return nn.Sequential(*pre, nn.AvgPool2d(3, stride, 1, count_include_pad=False))
    raise ValueError(f"ops: unknown op {name!r}; valid: {', '.join(NB201_OPS)}")


class Nb201Cell(nn.Module):
    """4-node cell, node j = Σ op(node i) over edges (j←i); ``ops`` in :data:`NB201_EDGES` order."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, *, layers: Layers,
                 ops: tuple[str, ...] = ALL_CONV3X3) -> None:
        super().__init__()
        problem = _ops_problem(ops)
        if problem:
            raise ValueError(f"ops: {problem}")
        self.ops = tuple(ops)
        self.out_chs, self.stride = out_chs, stride
        self.edges = nn.ModuleDict()
        for (to, frm), name in zip(NB201_EDGES, ops):
            cin, s = (in_chs, stride) if frm == 0 else (out_chs, 1)
            op = make_op(name, cin, out_chs, s, layers)
            if op is not None:
                self.edges[f"{to}_{frm}"] = op

    def extra_repr(self) -> str:
        return nb201_arch_str(self.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for to in (1, 2, 3):
            terms = [self.edges[f"{to}_{frm}"](nodes[frm]) for frm in range(to) if f"{to}_{frm}" in self.edges]
            if terms:
                nodes.append(sum(terms[1:], terms[0]))
            else:  # only `none` edges: the authors' zeros, at the cell's output shape
                n, _, h, w = x.shape
                nodes.append(x.new_zeros(n, self.out_chs, (h - 1) // self.stride + 1, (w - 1) // self.stride + 1))
        return nodes[3]


class Nb201Reduction(nn.Module):
    """The authors' ``ResNetBasicblock``: ReLU-conv3×3(s)-BN → ReLU-conv3×3-BN, plus the shortcut."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, *, layers: Layers) -> None:
        super().__init__()
        self.conv_a = relu_conv_bn(in_chs, out_chs, 3, stride, layers)
        self.conv_b = relu_conv_bn(out_chs, out_chs, 3, 1, layers)
        if stride == 2:
            self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True), conv2d(in_chs, out_chs, 1))
        elif in_chs != out_chs:
            self.shortcut = relu_conv_bn(in_chs, out_chs, 1, 1, layers)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


def build_cell_stage(stage, in_chs: int, layers: Layers) -> nn.Sequential:
    """[norm over the input (``input_norm``)] → ``depth`` cells; the first takes the stride and width change."""
    opts = stage.block_kw
    ops = tuple(opts.get("ops", ALL_CONV3X3))
    mods: list[nn.Module] = [layers.norm(in_chs)] if opts.get("input_norm", False) else []
    for i in range(stage.depth):
        mods.append(Nb201Cell(in_chs if i == 0 else stage.width, stage.width, stage.stride if i == 0 else 1,
                              layers=layers, ops=ops))
    return nn.Sequential(*mods)


def _ops_problem(ops) -> str | None:
    if not isinstance(ops, (tuple, list)) or len(ops) != 6:
        return f"needs 6 op names (one per edge), got {ops!r}"
    bad = [o for o in ops if o not in NB201_OPS]
    return f"unknown op(s) {bad}; valid: {', '.join(NB201_OPS)}" if bad else None


def parse_nb201_ops(text: str) -> tuple[str, ...]:
    """Cell ops from ``"conv3x3.conv3x3.conv3x3.skip.conv3x3.conv3x3"`` (our names, edge order) or from
    the paper's arch string ``"|nor_conv_3x3~0|+|…~0|…~1|+|…~0|…~1|…~2|"``; ``ValueError`` otherwise."""
    text = text.strip()
    if "~" in text:
        paper = {v: k for k, v in PAPER_OPS.items()}
        nodes = [n.strip("|").split("|") for n in text.split("+")]
        edges = [e.split("~") for node in nodes for e in node]
        want = [str(frm) for _, frm in NB201_EDGES]
        if [len(n) for n in nodes] != [1, 2, 3] or [e[-1] for e in edges] != want or any(len(e) != 2 for e in edges):
            raise ValueError(f"nb201 arch string {text!r}: expected |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
        unknown = [e[0] for e in edges if e[0] not in paper]
        if unknown:
            raise ValueError(f"nb201 arch string {text!r}: unknown op(s) {unknown}; valid: {', '.join(paper)}")
        return tuple(paper[e[0]] for e in edges)
    ops = tuple(text.split("."))
    problem = _ops_problem(ops)
    if problem:
        raise ValueError(f"nb201 ops {text!r}: {problem}")
    return ops


def nb201_arch_str(ops: tuple[str, ...]) -> str:
    """The paper's arch string of a cell (inverse of :func:`parse_nb201_ops`)."""
    names = [f"{PAPER_OPS[o]}~{frm}" for o, (_, frm) in zip(ops, NB201_EDGES)]
    return f"|{names[0]}|+|{names[1]}|{names[2]}|+|{names[3]}|{names[4]}|{names[5]}|"


_VALID_OPS = f"6 op names (edges (1←0),(2←0),(2←1),(3←0),(3←1),(3←2)) from {', '.join(NB201_OPS)}"

register_block(
    "nb201_cell", build_cell_stage, kind="stage", orders=("pre",),
    searchable=False,  # its own space: 5^6 cells in one fixed skeleton (the nb201-<ops> presets), looked up in a table
    options={
        "ops": OptionSpec(tuple, ALL_CONV3X3, "op of each edge, in the arch-string edge order",
                          lambda v: _ops_problem(v) is None, _VALID_OPS),
        "input_norm": OptionSpec(bool, False, "norm over the stage input first (the NAS-Bench-201 stem's BN)"),
    },
    example={"block_args": {"ops": ("conv3x3", "skip", "avg_pool", "conv1x1", "none", "conv3x3")}},
    doc="NAS-Bench-201 cell (Dong & Yang ICLR 2020): 4-node DAG, node = sum of its incoming edges' ops "
        "(none/skip/conv1x1/conv3x3/avg_pool, ReLU-conv-BN convs)",
)
register_block(
    "nb201_reduction", Nb201Reduction, orders=("pre",),
    searchable=False,  # part of NAS-Bench-201's fixed skeleton, not a choice of its own
    example={"depth": 1},
    doc="NAS-Bench-201 reduction block (Dong & Yang ICLR 2020): ReLU-conv3×3(s)-BN → ReLU-conv3×3-BN "
        "+ avg-pool 2×2 → conv1×1 shortcut",
)
