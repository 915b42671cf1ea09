"""Inference latency with ONNX Runtime (``latency.device: ort-cpu`` or ``ort-cuda``).

The built model is exported in memory (:func:`space.onnx_export.export_model`: eval mode, fp32, opset
:data:`~space.onnx_export.OPSET`, dynamic batch) and run by an ``InferenceSession``
(:func:`.onnx_runtime.ort_session`: ``ORT_ENABLE_ALL`` graph optimisation, which is ONNX Runtime's default level,
sequential executor, ``threads`` intra-op threads and one inter-op thread). The protocol and statistics are the
torch path's (:func:`.latency.measure_latency`): the same seeded input, ``warmup`` untimed runs, ``repeats`` runs
each timed with ``time.perf_counter`` around one ``Run`` (:func:`.latency_timing.time_passes`), and the shared
estimator and spread (:func:`.latency_timing.rounds_stats`). ``Run`` returns when the outputs are ready; on
``ort-cuda`` the input is placed on the GPU and the output bound there (IO binding), so no host copy is timed —
as the torch CUDA path times a model whose input is already on the device — and ONNX Runtime synchronises its
CUDA stream before ``Run`` returns.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from space.onnx_export import INPUT_NAME, OUTPUT_NAME

from .onnx_runtime import ORT_DEVICES, ort_session


class OrtRunner:
    """``runner()`` runs the serialized model ``data`` once on a fixed seeded input of ``input_shape``."""

    def __init__(self, data: bytes, *, input_shape: tuple[int, ...], device: str = "ort-cpu",
                 threads: int | None = 1) -> None:
        import onnxruntime as ort

        self.session = ort_session(data, device=device, threads=threads)
        x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0)).numpy()
        self.binding: Any = None
        self.feed = {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)}
        if ORT_DEVICES[device.strip().lower()] == "CUDAExecutionProvider":
            self.binding = self.session.io_binding()
            self.binding.bind_ortvalue_input(INPUT_NAME, ort.OrtValue.ortvalue_from_numpy(self.feed[INPUT_NAME],
                                                                                          "cuda", 0))
            self.binding.bind_output(OUTPUT_NAME, "cuda")

    def __call__(self) -> None:
        if self.binding is not None:
            self.session.run_with_iobinding(self.binding)
        else:
            self.session.run(None, self.feed)

