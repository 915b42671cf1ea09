"""``nas latency ARCH``: one architecture measured the way a search measures it (the ``latency`` evaluator behind
the machine's measurement gate), by default with the interleaved protocol against the stored reference."""
from __future__ import annotations

import json
from typing import Any, Callable

from space import Arch

Out = Callable[[str], None]


def measure_one(arch: Arch, *, device: str = "cpu", batch: int = 1, threads: int | None = 1,
                protocol: str = "interleaved", num_classes: int = 10, in_chans: int = 3,
                recalibrate: bool = False, max_seconds: float | None = None) -> dict[str, Any]:
    """Latency of ``arch`` with the search's defaults for everything not given (``LatencyConfig``): keys
    ``latency_ms, ci_ms, repeats, protocol, reference_ms, ratio`` (the last two ``None`` for ``plain``;
    ``ci_ms``: half-width of the ratio's 95% interval in ms, ``None`` for ``plain``, which gives ``iqr_ms``),
    and ``arch_id, device, batch, input_size, threads``. ``ValueError`` naming the option for bad input."""
    from evaluators.latency import check_latency_device
    from evaluators.latency_protocol import check_protocol
    from evaluators.latency_service import LatencyService

    from .config import LatencyConfig

    check_protocol(protocol, field="--protocol")
    check_latency_device(device, field="--device")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"--max-seconds: must be > 0, got {max_seconds}")
    lat = LatencyConfig(device=device, batch_sizes=[batch], threads=threads, protocol=protocol,
                        **({"max_seconds": max_seconds} if max_seconds is not None else {}))
    service = LatencyService.from_settings(lat)
    if service.references is not None:
        service.references.recalibrate = recalibrate
    out = service.evaluate(arch, in_chans=in_chans, num_classes=num_classes)
    row: dict[str, Any] = {"arch_id": arch.arch_id, "latency_ms": out["latency_ms"], "protocol": protocol,
                           "device": device, "batch": batch, "input_size": arch.input_size, "threads": threads}
    if protocol == "interleaved":
        return {**row, "ci_ms": out["latency_ci_ms"], "repeats": int(out["latency_rounds"]),
                "reference_ms": out["latency_reference_ms"], "ratio": out["latency_ratio"]}
    return {**row, "ci_ms": None, "iqr_ms": out[f"latency_iqr_ms_b{batch}"], "repeats": lat.repeats,
            "reference_ms": None, "ratio": None}


def latency_command(arch: Arch, *, as_json: bool, out: Out = print, **options: Any) -> int:
    """What ``nas latency`` does: measure, then print the result (``--json``: one object)."""
    r = measure_one(arch, **options)
    if as_json:
        out(json.dumps(r, indent=2))
        return 0
    out(f"arch      {r['arch_id']}, input {options.get('in_chans', 3)}×{r['input_size']}×{r['input_size']}, "
        f"batch {r['batch']}, {r['device']}, {r['threads'] or 'default'} thread(s)")
    if r["protocol"] == "interleaved":
        out(f"latency   {r['latency_ms']:.4f} ms ± {r['ci_ms']:.4f} (95% interval of the median ratio, "
            f"{r['repeats']} rounds)")
        out(f"protocol  interleaved: ratio {r['ratio']:.4f} × reference wrn-16-1 {r['reference_ms']:.4f} ms "
            f"(calibrated once, stored on this machine)")
    else:
        out(f"latency   {r['latency_ms']:.4f} ms (IQR {r['iqr_ms']:.4f} ms, {r['repeats']} passes)")
        out("protocol  plain: median of passes not preempted (absolute; drifts with the machine's load)")
    return 0
