"""A cross-process measurement gate: latency measurements never overlap training or each other.

Latency during a search: measured once per architecture, alone on the device, or predicted.

**Isolation.** Trials run concurrently (``search.max_concurrent``), and a CPU latency measured while
another trial trains on the same cores is mostly a measure of the contention. Two designs were
weighed:

- a dedicated Ray actor per latency device that serialises measurements: it orders measurements
  among themselves but not against training, unless it reserves a core (``num_cpus=1``), which on a
  2-core box halves the search's throughput and still shares caches and memory bandwidth with the
  trial on the other core; and it cannot exclude a second search on the same machine;
- a cross-process **measurement gate** of two ``flock`` locks per device (this module). Measurers
  take the gate exclusively, so measurements never overlap. Training processes pass through the
  gate at every batch: a global forward pre-hook on the top-level model (``NasNet``) releases the
  trainer's shared *busy* lock, waits at the gate while a measurement holds it, and takes *busy*
  again. A measurer, holding the gate, waits for *busy* exclusively, i.e. until every trainer has
  reached its next batch boundary, then measures with the machine quiet. The gate is a turnstile,
  so a stream of training batches cannot starve a measurer. The price: from the moment a
  measurement asks for the gate, trainers that reach a batch boundary idle until the slowest one
  finishes its batch and the measurement (≈ warm-up + repeats forward passes) is done — once per
  architecture thanks to the cache; ``nas latency-table`` pays it once per unit (seconds per unit
  when another search trains a big network with multi-second batches on the same machine).

The gate files default to a per-user folder in the system temp folder (``/tmp/nas-<uid>``, mode 0700,
refused when another user owns it), named after the device (``nas-latency-cpu.gate``), so every search
of this user on the machine honours the others' measurements, and no other user can create, replace or
hold them (``latency.lock_dir`` gives a run a private gate). Another user's searches have their own
gate: their training is not paused for this user's measurements. What it cannot stop: processes that are
not trials of a search using the gate (another user's job, ``nas retrain``), so numbers on a busy
shared machine still carry that noise
(the IQR the latency evaluator reports shows it; the per-unit table's estimator also drops passes
the OS preempted, see ``evaluators.latency_table.timed``), and work inside a trial that is not a
model forward (data loading between batches, a checkpoint save) is only paused at the next forward.
Training trials join the gate of ``latency.device``, so a CPU measurement is not protected from
trials whose config names another latency device. Locks are per machine: on a multi-node Ray
cluster each node measures on its own device, so use one node type (or ``mode: predict`` with one
table) there.
``flock`` locks are released by the kernel when a process dies, so a crashed trial cannot wedge the
gate; a measurer that waits longer than ``timeout_s`` raises ``TimeoutError``.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

_LOCAL = threading.local()  # .measuring: this thread holds a gate; .training: its open training() contexts


def user_lock_dir(base: str | Path | None = None) -> Path:
    """``BASE/nas-<uid>`` (default BASE: the system temp folder), created with mode 0700; an existing one must
    be a real folder owned by this user (its mode is then tightened to 0700), else PermissionError."""
    uid = os.getuid()
    folder = Path(base if base is not None else tempfile.gettempdir()) / f"nas-{uid}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        what = "not a folder" if not stat.S_ISDIR(st.st_mode) else f"owned by uid {st.st_uid}"
        raise PermissionError(f"latency.lock_dir: {str(folder)!r} is {what}, not a folder of this user "
                              f"(uid {uid}); remove it or set latency.lock_dir")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(folder, 0o700)
    return folder


class MeasureGate:
    """Cross-process gate for one latency device: exclusive ``measuring()``, turnstile ``training()``.

    ``path`` is the gate file; ``path + ".busy"`` the lock that running training steps hold shared.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 600.0, poll_s: float = 0.001) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s: must be > 0, got {timeout_s!r}")
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        self.poll_s = float(poll_s)

    @classmethod
    def for_device(cls, device: str, directory: str | Path | None = None, **kwargs: Any) -> MeasureGate:
        """The gate of ``device`` in ``directory`` (default: the system temp folder, shared machine-wide); an ONNX
        Runtime device shares the gate of the hardware it runs on (``ort-cpu``: ``cpu``)."""
        from .onnx_runtime import host_device

        name = re.sub(r"[^a-z0-9]+", "-", host_device(device).strip().lower()).strip("-") or "device"
        folder = Path(directory) if directory is not None else user_lock_dir()
        return cls(folder.resolve() / f"nas-latency-{name}.gate", **kwargs)

    def _open(self, suffix: str = "") -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(f"{self.path}{suffix}", os.O_RDONLY | os.O_CREAT, 0o600)

    def _poll(self, fd: int, deadline: float, waiting_for: str) -> None:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"latency: waited {self.timeout_s:.0f} s for {waiting_for} to release "
                                       f"the measurement gate {str(self.path)!r}") from None
                time.sleep(self.poll_s)

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        """Hold the device alone: no other measurement, no training step of a gated trainer.

        Re-entrant within a thread; ``RuntimeError`` inside the same thread's ``training()`` (it
        would wait for its own training step)."""
        if getattr(_LOCAL, "measuring", False):
            yield
            return
        if getattr(_LOCAL, "training", 0):
            raise RuntimeError("latency: cannot measure inside this thread's own training() context "
                               "(the measurement would wait for its own training step)")
        gate = self._open()
        busy = self._open(".busy")
        try:
            deadline = time.monotonic() + self.timeout_s
            self._poll(gate, deadline, "another measurement")
            self._poll(busy, deadline, "running training steps")
            _LOCAL.measuring = True
            try:
                yield
            finally:
                _LOCAL.measuring = False
        finally:
            os.close(busy)  # closing releases the lock: busy first, so trainers resume only at the gate
            os.close(gate)

    @contextlib.contextmanager
    def training(self, top: tuple[type, ...] | None = None) -> Iterator[None]:
        """Make this thread's training wait at every forward of a ``top`` module (default ``NasNet``)
        while a measurement holds the gate, and hold *busy* (shared) while it computes.

        The forward pre-hook is process-wide (torch has no per-thread hooks) but acts only on calls
        from the thread that entered this context."""
        from torch.nn.modules.module import register_module_forward_pre_hook

        if top is None:
            from space import NasNet

            top = (NasNet,)
        gate = self._open()
        busy = self._open(".busy")
        held = [False]
        owner = threading.get_ident()

        def checkpoint() -> None:
            if held[0]:
                fcntl.flock(busy, fcntl.LOCK_UN)
                held[0] = False
            fcntl.flock(gate, fcntl.LOCK_SH)  # blocks while a measurer holds the gate
            fcntl.flock(gate, fcntl.LOCK_UN)
            fcntl.flock(busy, fcntl.LOCK_SH)
            held[0] = True

        def hook(module: Any, args: Any) -> None:
            if isinstance(module, top) and threading.get_ident() == owner and not getattr(_LOCAL, "measuring", False):
                checkpoint()

        handle = None
        try:
            checkpoint()
            handle = register_module_forward_pre_hook(hook)
            _LOCAL.training = getattr(_LOCAL, "training", 0) + 1
            yield
        finally:
            if handle is not None:
                handle.remove()
                _LOCAL.training -= 1
            os.close(busy)
            os.close(gate)
