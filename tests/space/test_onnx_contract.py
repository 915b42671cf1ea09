"""Every registered block, norm, attention and activation exports to ONNX (opset 18, dynamic batch) and ONNX
Runtime computes what PyTorch computes, within 1e-4 in fp32 eval mode; a model that cannot export fails with one
line naming it."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from evaluators.onnx_runtime import check_against_torch
from space import ACTIVATIONS, ATTENTIONS, BLOCKS, NORMS, build_model
from space.onnx_export import OPSET, OnnxExportError, export_arch, export_model, onnx_inputs

from .test_contract import _arch


def _onnx_cases():
    for e in BLOCKS:
        kw = {"width": 8, "block": e.name, "order": e.meta["orders"][0], **e.meta.get("example", {})}
        yield pytest.param(kw, id=f"block-{e.name}")
    for reg, field in ((NORMS, "norm"), (ATTENTIONS, "attention"), (ACTIVATIONS, "act")):
        for e in reg:
            yield pytest.param({"width": 8, field: e.name, **e.meta.get("example", {})}, id=f"{field}-{e.name}")


@pytest.mark.parametrize("kw", list(_onnx_cases()))
def test_choice_exports_and_matches_torch(kw):
    arch = _arch(**kw)
    model = build_model(arch, num_classes=5, in_chans=3)
    model.train()
    data = export_model(model, input_shape=(2, 3, 16, 16), what=str(kw))
    assert model.training, "the export restores the training flag"
    import onnx

    proto = onnx.load_from_string(data)
    assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == OPSET
    assert onnx_inputs(data) == [{"name": "input", "shape": ["batch", 3, 16, 16]}]
    # a batch other than the traced one: the batch axis is dynamic, not a constant of the graph
    assert check_against_torch(model, data, input_shape=(3, 3, 16, 16), seed=1) <= 1e-4


def test_a_model_that_cannot_export_fails_in_one_line_naming_it():
    class DataDependent(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum() > 0 else x  # a branch on a value: not an ONNX graph

    with pytest.raises(OnnxExportError, match=r"^onnx export of block=oddity: ") as info:
        export_model(DataDependent(), input_shape=(1, 3, 4, 4), what="block=oddity")
    assert "\n" not in str(info.value)


def test_weights_are_exported(tmp_path):
    arch = _arch(width=8)
    model = build_model(arch, num_classes=5, in_chans=3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # trained-like weights: logits of order 1
    torch.save(model.state_dict(), tmp_path / "model.pt")
    data = export_arch(arch, num_classes=5, in_chans=3, weights=tmp_path / "model.pt", out=tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == data
    assert check_against_torch(model, data, input_shape=(2, 3, 16, 16)) <= 1e-4
    with pytest.raises(ValueError, match="--weights: .* does not fit"):
        export_arch(arch, num_classes=7, in_chans=3, weights=tmp_path / "model.pt")
