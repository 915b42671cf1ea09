"""Multiply-adds counted on an exported ONNX graph, a second count beside fvcore's (``space.complexity``).

The graph's batch dimension is fixed to 1 and ``onnx.shape_inference`` (with data propagation, so shapes
computed by ``Shape``/``Concat``/``Reshape`` chains are known) gives every tensor's shape. Then:

- ``Conv``: output elements × (input channels / group) × kernel elements;
- ``Gemm``: M × N × K of ``A (M, K) · B (K, N)`` (after ``transA``/``transB``);
- ``MatMul``: batch elements (broadcast) × M × N × K, with numpy's 1-D promotion rules.

These are the operators fvcore's ``conv``/``linear``/``matmul``/``bmm`` counts cover, so the two agree on
ordinary networks; where the exported graph computes differently from the PyTorch module, they differ
(docs/deploy.md lists the cases).
"""
from __future__ import annotations

import math
from typing import Any

MAC_OPS = ("Conv", "Gemm", "MatMul")
"""ONNX operators whose multiply-adds are counted."""


def _shapes(proto: Any) -> dict[str, list[int]]:
    import onnx

    graph = proto.graph
    for value in list(graph.input) + list(graph.output):
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param:
                d.dim_value = 1  # every symbolic dimension of an exported model is the batch
    del graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _attr(node: Any, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _node_macs(node: Any, shapes: dict[str, list[int]]) -> int:
    def shape(name: str) -> list[int]:
        if name not in shapes:
            raise ValueError(f"onnx macs: shape of {name!r} (input of {node.op_type} node {node.name!r}) is unknown "
                             f"after shape inference")
        return shapes[name]

    if node.op_type == "Conv":
        out, w = shape(node.output[0]), shape(node.input[1])
        return math.prod(out) * math.prod(w[1:])  # w: (C_out, C_in / group, k...)
    if node.op_type == "Gemm":
        a, b = shape(node.input[0]), shape(node.input[1])
        m, k = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])
        n = b[0] if _attr(node, "transB", 0) else b[1]
        return m * n * k
    a, b = list(shape(node.input[0])), list(shape(node.input[1]))  # MatMul
    a = [1] + a if len(a) == 1 else a
    b = b + [1] if len(b) == 1 else b
    batch = [max(x, y) for x, y in zip([1] * (len(b) - len(a)) + a[:-2], [1] * (len(a) - len(b)) + b[:-2])]
    return math.prod(batch) * a[-2] * b[-1] * a[-1]


def onnx_macs(data: bytes) -> int:
    """Conv/Gemm/MatMul multiply-adds of the serialized ONNX model ``data`` at batch 1 (see module doc).

    ``ValueError`` if a counted node's shapes cannot be inferred; nodes inside subgraphs (``If``/``Loop``
    bodies, which an exported CNN has none of) are not counted.
    """
    import onnx

    proto = onnx.load_from_string(data)
    shapes = _shapes(proto)
    return sum(_node_macs(n, shapes) for n in proto.graph.node if n.op_type in MAC_OPS)


def onnx_op_counts(data: bytes) -> dict[str, int]:
    """How many nodes of each operator type the top-level graph has."""
    import onnx

    counts: dict[str, int] = {}
    for n in onnx.load_from_string(data).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))
