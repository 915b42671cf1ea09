"""ONNX Runtime sessions for exported models: run one, and check it against PyTorch.

``ort-cpu`` runs on ``CPUExecutionProvider``, ``ort-cuda`` on ``CUDAExecutionProvider`` (ONNX Runtime's
GPU build; it must be installed as ``onnxruntime-gpu``). Sessions use ``ORT_ENABLE_ALL`` graph optimisation
(ONNX Runtime's default level for an ``InferenceSession``: basic, extended and layout optimisations), the
sequential executor, and a fixed intra-op thread count, like the torch latency path.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from space.onnx_export import INPUT_NAME, export_model
from train.checks import check_positive_int

ORT_DEVICES = {"ort-cpu": "CPUExecutionProvider", "ort-cuda": "CUDAExecutionProvider"}
"""``latency.device`` values measured with ONNX Runtime → the execution provider they run on."""
_HOSTS = {"ort-cpu": "cpu", "ort-cuda": "cuda"}


def is_ort_device(device: str) -> bool:
    return isinstance(device, str) and device.strip().lower() in ORT_DEVICES


def host_device(device: str) -> str:
    """The hardware a latency device runs on: ``ort-cpu`` → ``cpu``, ``ort-cuda`` → ``cuda`` (ONNX Runtime's CUDA
    provider uses GPU 0), a torch device as given."""
    return _HOSTS[device.strip().lower()] if is_ort_device(device) else device


def check_ort_device(device: str, *, field: str = "latency.device") -> str:
    """The execution provider of ``device``; ``ValueError`` naming ``field`` for an unknown device or a provider
    this ONNX Runtime build lacks."""
    import onnxruntime as ort

    if not is_ort_device(device):
        raise ValueError(f"{field}: unknown ONNX Runtime device {device!r}; valid: {', '.join(ORT_DEVICES)}")
    provider = ORT_DEVICES[device.strip().lower()]
    if provider not in ort.get_available_providers():
        raise ValueError(f"{field}: {device} needs {provider}, which this onnxruntime build lacks "
                         f"(available: {', '.join(ort.get_available_providers())})")
    return provider


def ort_session(data: bytes, *, device: str = "ort-cpu", threads: int | None = 1,
                field: str = "latency.device") -> Any:
    """An ``onnxruntime.InferenceSession`` of the serialized model ``data`` on ``device`` (see module doc).

    ``threads``: intra-op threads, with one inter-op thread (the sequential executor runs one node at a time, so
    it has no inter-op pool to size); ``None``: ONNX Runtime's defaults. ``ValueError`` naming ``field`` if the
    provider is not available in this ONNX Runtime build.
    """
    import onnxruntime as ort

    provider = check_ort_device(device, field=field)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = check_positive_int(threads, "latency.threads")
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(data, sess_options=opts, providers=[provider])


def run_session(session: Any, x: np.ndarray) -> np.ndarray:
    """The session's first output on the float32 array ``x``."""
    return session.run(None, {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


def check_against_torch(model: nn.Module, data: bytes, *, input_shape: tuple[int, int, int, int],
                        seed: int = 0) -> float:
    """Largest absolute difference between ONNX Runtime (CPU) running ``data`` and ``model`` in eval mode (fp32)
    on one random ``input_shape`` input; the model's training flag is restored."""
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(seed))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            want = model.float()(x).numpy()
    finally:
        model.train(was_training)
    got = run_session(ort_session(data, device="ort-cpu", threads=None), x.numpy())
    if got.shape != want.shape:
        raise ValueError(f"onnx: output shape {got.shape} differs from PyTorch's {want.shape}")
    return float(np.max(np.abs(got - want)))


def export_checked(model: nn.Module, *, input_shape: tuple[int, int, int, int], what: str = "model",
                   atol: float = 1e-4) -> bytes:
    """Export ``model`` and check it with ONNX Runtime at a different batch size than the one traced
    (the batch axis is dynamic); ``ValueError`` naming ``what`` if the outputs differ by more than ``atol``."""
    data = export_model(model, input_shape=input_shape, what=what)
    b, *rest = input_shape
    err = check_against_torch(model, data, input_shape=(b + 1, *rest))
    if not err <= atol:
        raise ValueError(f"onnx export of {what}: ONNX Runtime differs from PyTorch by {err:.3g} (> {atol:g})")
    return data
