"""Trial faults: what counts as one, the single out-of-memory retry, and test-only fault injection.

A trial that raises, diverges (NaN/inf loss: :class:`train.NonFiniteLossError`) or runs out of
memory is recorded FAIL with its reason (``fail_reason``) and the search goes on. An out-of-memory
error is first retried once with half the batch and, by the linear scaling rule (Goyal et al. 2017,
"Accurate, Large Minibatch SGD", §2.1), half the learning rate; the trial records ``batch_size`` and
``oom_retries`` so its result is not mistaken for one at the configured batch.

``faults.inject`` (config) is **for testing only**: it makes a seeded fraction of the trials fail
on purpose, chosen by ``hash(seed, arch_id)`` so the same architecture always gets the same fault:

- ``exception`` — raises :class:`InjectedFault` before training;
- ``nan`` — trains with an infinite learning rate, so the real training loop diverges and raises
  ``NonFiniteLossError`` at its second iteration;
- ``oom`` — raises ``torch.cuda.OutOfMemoryError`` while the batch is the configured one (the
  halved-batch retry then succeeds; with ``oom_retry: false`` the trial fails);
- ``crash`` — ends the trial's worker process (``os._exit``), like a segfault or the kernel's OOM
  killer would; Ray reports the trial as errored.
"""
from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from typing import Any, Callable, Iterable

import torch

FAULT_KINDS = ("exception", "nan", "oom", "crash")
INJECTED = "(injected by faults.inject)"


class InjectedFault(RuntimeError):
    """A failure injected on purpose by ``faults.inject`` (testing only)."""


def is_oom(exc: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError``, ``MemoryError`` or a RuntimeError saying 'out of memory'."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def fault_kind(reason: str) -> str:
    """The kind of a ``fail_reason``: oom, nan, exception, crash, invalid, constraint or interrupted."""
    head = reason.split(":", 1)[0]
    if reason.startswith("interrupted"):
        return "interrupted"
    if head == "InvalidSample":
        return "invalid"
    if head == "ConstraintViolation":
        return "constraint"
    if head == "NonFiniteLossError" or "non-finite" in reason:
        return "nan"
    if head in ("OutOfMemoryError", "MemoryError") or "out of memory" in reason.lower():
        return "oom"
    if reason.startswith("the trial process died") or head in ("ActorDiedError", "RayActorError", "WorkerCrashedError"):
        return "crash"
    return "exception"


class FaultInjector:
    """Seeded per-architecture fault choice for ``faults.inject`` (testing only)."""

    def __init__(self, *, rate: float, kinds: Iterable[str], seed: int = 0) -> None:
        kinds = tuple(kinds)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"faults.inject.rate: must be in [0, 1], got {rate!r}")
        bad = [k for k in kinds if k not in FAULT_KINDS]
        if not kinds or bad:
            raise ValueError(f"faults.inject.kinds: must be a non-empty list of {', '.join(FAULT_KINDS)}, got {kinds}")
        self.rate, self.kinds, self.seed = float(rate), kinds, int(seed)

    def plan(self, arch_id: str) -> str | None:
        """The fault this architecture gets (one of ``kinds``) or None; a pure function of (seed, arch_id)."""
        h = int.from_bytes(hashlib.sha1(f"{self.seed}:{arch_id}".encode()).digest()[:8], "big")
        u = (h >> 11) / float(1 << 53)
        if u >= self.rate:
            return None
        return self.kinds[h % len(self.kinds)]

    @staticmethod
    def apply(kind: str | None, *, batch_size: int, configured_batch: int) -> float | None:
        """Act out ``kind`` before training; returns a learning-rate override (``nan``) or None."""
        if kind == "exception":
            raise InjectedFault(f"injected trial exception {INJECTED}")
        if kind == "crash":
            os._exit(70)
        if kind == "oom" and batch_size == configured_batch:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory at batch size {batch_size} {INJECTED}")
        if kind == "nan":
            return math.inf
        return None


def train_with_oom_retry(train: Callable[[int, float], dict[str, Any]], *, batch_size: int, lr: float,
                         retry: bool) -> dict[str, Any]:
    """``train(batch_size, lr)``; on an out-of-memory error retry once at half the batch and half the lr.

    The result gains ``batch_size`` (the one that ran) and ``oom_retries`` (0 or 1). A second OOM, an OOM
    with ``retry=False`` or at batch size 1, and every other exception propagate unchanged.
    """
    try:
        return {**train(batch_size, lr), "batch_size": batch_size, "oom_retries": 0}
    except Exception as exc:
        if not (retry and is_oom(exc) and batch_size > 1):
            raise
        first = f"{type(exc).__name__}: {exc}"
    _free_cached_memory()
    half = batch_size // 2
    try:
        return {**train(half, lr * half / batch_size), "batch_size": half, "oom_retries": 1}
    except Exception as exc:
        if not is_oom(exc):
            raise
        try:
            again = type(exc)(f"{exc} (also at the retry with batch size {half}; first: {first[:200]})")
        except Exception:  # an OOM type with an unusual constructor: keep it as it is
            raise exc from None
        raise again from None


def _free_cached_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def fault_summary(trials: Iterable[Any]) -> dict[str, Any]:
    """Counts for ``summary.json``: FAIL trials by :func:`fault_kind`, and trials an OOM retry rescued; a
    re-proposed architecture answered from another trial (``cached_from``) is not counted again."""
    failed: Counter[str] = Counter()
    retried = 0
    for t in trials:
        attrs = t.user_attrs
        if "cached_from" in attrs:
            continue
        if t.state.name == "FAIL":
            failed[fault_kind(str(attrs.get("fail_reason", "")))] += 1
        elif attrs.get("oom_retries"):
            retried += 1
    return {"failed": sum(failed.values()), "by_kind": dict(sorted(failed.items())), "oom_retried": retried}
