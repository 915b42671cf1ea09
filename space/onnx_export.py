"""ONNX export of a built model: opset 18, fp32, eval mode, a dynamic batch axis.

The graph is made by torch's TorchDynamo-based exporter (``torch.onnx.export(..., dynamo=True)``, which
writes ONNX through onnxscript) at :data:`OPSET` — 18 is the lowest opset that exporter targets and
ONNX Runtime ≥ 1.14 runs it completely. Input ``input`` is ``(batch, in_chans, H, W)`` with ``batch``
symbolic, output ``logits`` is ``(batch, num_classes)``. The model is exported in eval mode (batch-norm
running statistics, no dropout) as float32; its training flag and dtype are restored afterwards.

A choice the exporter cannot handle raises :class:`OnnxExportError` with one line naming the
architecture's choices, never a graph that silently computes something else (the contract test checks
every registered choice against PyTorch with ONNX Runtime).
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn

from .builder import build_model
from .errors import check_positive_int
from .spec import Arch

OPSET = 18
"""The pinned ONNX opset of every export."""
INPUT_NAME, OUTPUT_NAME = "input", "logits"


class OnnxExportError(ValueError):
    """A model that cannot be exported to ONNX; the message names the choice."""


def arch_choices(arch: Arch) -> str:
    """The registered choices an architecture uses, for error messages (``block=sk, norm=iternorm, ...``)."""
    seen: dict[str, list[str]] = {}
    for s in arch.stages:
        for field, value in (("block", s.block), ("norm", s.norm), ("attention", s.attention), ("act", s.act)):
            if value not in seen.setdefault(field, []):
                seen[field].append(value)
    return ", ".join(f"{k}={'/'.join(v)}" for k, v in seen.items())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter logs its progress and warns about internals; keep a CLI's output to our lines."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_model(model: nn.Module, *, input_shape: tuple[int, int, int, int], what: str = "model") -> bytes:
    """Serialized ONNX ``ModelProto`` of ``model`` (see module doc) traced on a random ``input_shape`` input.

    ``what`` names the model in the one-line :class:`OnnxExportError` a failing export raises.
    """
    if len(input_shape) != 4:
        raise ValueError(f"input_shape: must be (batch, channels, height, width), got {input_shape!r}")
    for d in input_shape:
        check_positive_int(d, "input_shape")
    param = next(model.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    was_training = model.training
    # batch 2 at trace time: the exporter specialises a dimension traced with size 1 to a constant
    x = torch.randn((max(2, input_shape[0]), *input_shape[1:]), generator=torch.Generator().manual_seed(0))
    try:
        model.to("cpu", torch.float32).eval()
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(model, (x,), dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                        verbose=False)
        return program.model_proto.SerializeToString()
    except Exception as exc:  # the exporter raises many types; the caller needs one line with the choice
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxExportError(f"onnx export of {what}: {type(exc).__name__}: {first[:300]}") from exc
    finally:
        model.to(home, dtype).train(was_training)


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a ``model.pt`` state dict written by ``nas retrain`` (``weights_only``); ``ValueError`` on mismatch."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--weights: no file at {p}")
    state = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"--weights: {p} is not a state dict (write one with `nas retrain`)")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"--weights: {p} does not fit this architecture: {str(exc).splitlines()[0]}") from None


def export_arch(arch: Arch, *, num_classes: int, in_chans: int, batch: int = 1, weights: str | Path | None = None,
                out: str | Path | None = None) -> bytes:
    """Build ``arch`` (seeded weights, or ``weights``), export it and write it to ``out`` when given."""
    check_positive_int(num_classes, "num_classes")
    check_positive_int(in_chans, "in_chans")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(arch, num_classes=num_classes, in_chans=in_chans)
    if weights is not None:
        load_weights(model, weights)
    data = export_model(model, input_shape=(batch, in_chans, arch.input_size, arch.input_size),
                        what=f"arch {arch.arch_id} ({arch_choices(arch)})")
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data


def onnx_inputs(data: bytes) -> list[dict[str, Any]]:
    """Name and shape (symbolic dimensions as their names) of each graph input, read back with ``onnx``."""
    import onnx

    proto = onnx.load_from_string(data)
    return [{"name": i.name, "shape": [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]}
            for i in proto.graph.input]
