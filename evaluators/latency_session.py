"""One interleaved session: several architectures timed against one reference, in one sitting.

Latencies measured an hour apart on a shared machine are not comparable: its load drifts. A session times every
architecture in rounds that cycle over all of them, each round of each beside a round of the reference
(:func:`.latency_protocol.interleave_many`), behind the machine-wide measurement gate, with the reference's
latency looked up or calibrated once (:class:`.latency_protocol.ReferenceLatency`), so every number of the session
is ``ratio × the same reference ms``, with the ratio's 95% interval (:func:`.latency_protocol.median_ci`).
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, ContextManager, Mapping

from space import Arch

from .latency_gate import MeasureGate
from .latency_protocol import REFERENCE, ReferenceLatency, calibrate_rounds, interleave_many, reference_arch
from .latency_timing import Rounds

Timer = Callable[[Arch], ContextManager[Rounds]]
"""``timer(arch)``: a context in which ``rounds(warmup, repeats) -> passes`` times ``arch`` (injectable in tests)."""


def torch_timer(*, device: str, batch: int, threads: int | None, in_chans: int, num_classes: int) -> Timer:
    """The timer a search's latency evaluator uses: the built model (an ONNX export for ``ort-*``) on a seeded
    random input of ``batch × in_chans × input_size²``, ``threads`` intra-op threads."""
    from .latency import LatencyEvaluator, timing_rounds

    ev = LatencyEvaluator(num_classes=num_classes, in_chans=in_chans, device=device, batch_sizes=(batch,),
                          threads=threads)

    def timer(arch: Arch) -> ContextManager[Rounds]:
        shape = (batch, in_chans, arch.input_size, arch.input_size)
        return timing_rounds(ev.prepare(arch), input_shape=shape, device=device, threads=threads)

    return timer


def measure_session(archs: Mapping[str, Arch], *, timer: Timer, references: ReferenceLatency, reference_key: str,
                    gate: MeasureGate | None = None, warmup: int, repeats: int, ci: float,
                    max_seconds: float) -> dict[str, Any]:
    """Time ``archs`` (by name; all of one input size) in one interleaved session; ``reference_key``: what the
    reference's latency is stored under. Returns ``{"session": {reference, reference_ms, input_size, rounds,
    seconds, measured_at}, "results": {name: {latency_ms, lo_ms, hi_ms, ci_ms, ratio, ratio_lo, ratio_hi,
    rounds}}}``; ``lo_ms``/``hi_ms``: the ratio's 95% interval × the reference ms, ``ci_ms`` its half-width."""
    sizes = {a.input_size for a in archs.values()}
    if len(sizes) != 1:
        raise ValueError(f"archs: one input size per session; got {sorted(sizes)}")
    (input_size,) = sizes
    gated = gate.measuring() if gate is not None else contextlib.nullcontext()
    with gated, contextlib.ExitStack() as stack:
        ref = stack.enter_context(timer(reference_arch(input_size)))
        rounds = {name: stack.enter_context(timer(arch)) for name, arch in archs.items()}
        measured_at = time.strftime("%Y-%m-%dT%H:%M:%S")
        ref_ms = references.get(reference_key, lambda: calibrate_rounds(ref, warmup=warmup, repeats=repeats))
        res = interleave_many(rounds, ref, ci=ci, max_seconds=max_seconds)
    results = {name: {"latency_ms": r["ratio"] * ref_ms, "lo_ms": r["ratio_lo"] * ref_ms,
                      "hi_ms": r["ratio_hi"] * ref_ms, "ci_ms": (r["ratio_hi"] - r["ratio_lo"]) / 2 * ref_ms,
                      "ratio": r["ratio"], "ratio_lo": r["ratio_lo"], "ratio_hi": r["ratio_hi"],
                      "rounds": int(r["rounds"])} for name, r in res.items()}
    first = next(iter(res.values()))
    return {"session": {"reference": REFERENCE, "reference_ms": ref_ms, "input_size": input_size,
                        "rounds": int(first["rounds"]), "seconds": first["seconds"], "measured_at": measured_at},
            "results": results}
