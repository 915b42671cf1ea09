"""MACs counted on the exported ONNX graph agree with fvcore's conv+linear count within 1% for every preset.

ImageNet-size presets (input 224) are marked slow: each export takes tens of seconds on a small machine.
``gconv`` is the one choice whose graph computes differently (K convs mixed, instead of one conv with the
mixed kernel): its graph is compared with fvcore's count of that same computation.
"""
from __future__ import annotations

import pytest
import torch

from space import build_model, get_preset, list_presets
from space.complexity import count_complexity
from space.onnx_complexity import onnx_macs
from space.onnx_export import export_arch


def _presets():
    for name in list_presets():
        slow = get_preset(name).input_size > 64
        yield pytest.param(name, id=name, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("name", list(_presets()))
def test_graph_macs_match_fvcore(name, monkeypatch):
    arch = get_preset(name)
    exports_differently = any(s.block == "gconv" for s in arch.stages)
    if exports_differently:
        monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)  # fvcore traces the exported form
    model = build_model(arch, num_classes=10, in_chans=3)
    want = count_complexity(model, input_size=arch.input_size, in_chans=3)["macs"]
    monkeypatch.undo()
    got = onnx_macs(export_arch(arch, num_classes=10, in_chans=3))
    assert abs(got - want) <= 0.01 * want, f"{name}: onnx {got:,} vs fvcore {want:,}"


def test_counts_by_hand():
    """A 3×3 conv 3→4 on 8×8 (stride 1, pad 1) and a linear 4→5: 4·64·3·9 + 4·5 multiply-adds."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w")
    fc = numpy_helper.from_array(np.zeros((5, 4), np.float32), "fc")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("GlobalAveragePool", ["c"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])], initializer=[w, fc])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    assert onnx_macs(data) == 4 * 64 * 3 * 9 + 4 * 5
    onnx.checker.check_model(onnx.load_from_string(data))
