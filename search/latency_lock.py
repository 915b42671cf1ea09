"""Latency during a search: measured once per architecture, alone on the device, or predicted.

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

The gate files default to the system temp folder, named after the device (``nas-latency-cpu.gate``),
so *every* search on the machine honours one another's measurements (``latency.lock_dir`` gives a
run a private gate). What it cannot stop: processes that are not trials of a search using the gate
(another user's job, ``nas retrain``), so numbers on a busy shared machine still carry that noise
(the IQR the latency evaluator reports shows it; the per-unit table's estimator also drops passes
the OS preempted, see ``evaluators.latency_table.timed``), and work inside a trial that is not a
model forward (data loading between batches, a checkpoint save) is only paused at the next forward.
Training trials join the gate of ``latency.device``, so a CPU measurement is not protected from
trials whose config names another latency device. Locks are per machine: on a multi-node Ray
cluster each node measures on its own device, so use one node type (or ``mode: predict`` with one
table) there.
``flock`` locks are released by the kernel when a process dies, so a crashed trial cannot wedge the
gate; a measurer that waits longer than ``timeout_s`` raises ``TimeoutError``.

**Caching.** A measured result is stored under ``(arch_id, device, batch sizes, input size,
in_chans, num_classes, threads)`` in an in-process dict and a small SQLite file in the run folder,
so an architecture sampled again, by any trial process or a resumed run, is not measured twice; the
file is re-read while holding the gate, so two trials racing on one architecture measure it once.

**Prediction.** ``mode: predict`` sums a per-unit table (:mod:`evaluators.latency_table`): cheap,
so it may carry the hard constraint ``constraints.max_latency_ms``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from space import Arch

_LOCAL = threading.local()  # .measuring: this thread holds a gate; .training: its open training() contexts
_MEMO: dict[str, dict[str, float]] = {}


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
    def for_device(cls, device: str, directory: str | Path | None = None, **kwargs: Any) -> "MeasureGate":
        """The gate of ``device`` in ``directory`` (default: the system temp folder, shared machine-wide)."""
        name = re.sub(r"[^a-z0-9]+", "-", device.strip().lower()).strip("-") or "device"
        folder = Path(directory) if directory is not None else Path(tempfile.gettempdir())
        return cls(folder.resolve() / f"nas-latency-{name}.gate", **kwargs)

    def _open(self, suffix: str = "") -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(f"{self.path}{suffix}", os.O_RDONLY | os.O_CREAT, 0o666)

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


class LatencyCache:
    """``key -> metrics`` in a SQLite file shared by every trial process of a run (and its resumes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60)
        con.execute("CREATE TABLE IF NOT EXISTS latency (key TEXT PRIMARY KEY, arch_id TEXT NOT NULL, "
                    "metrics TEXT NOT NULL, created REAL NOT NULL)")
        return con

    def get(self, key: str) -> dict[str, float] | None:
        with contextlib.closing(self._connect()) as con:
            row = con.execute("SELECT metrics FROM latency WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, arch_id: str, metrics: dict[str, float]) -> None:
        with contextlib.closing(self._connect()) as con, con:
            con.execute("INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?)",
                        (key, arch_id, json.dumps(metrics), time.time()))

    def __len__(self) -> int:
        with contextlib.closing(self._connect()) as con:
            return int(con.execute("SELECT COUNT(*) FROM latency").fetchone()[0])


Measure = Callable[[Arch, int, int], dict[str, float]]
"""``measure(arch, in_chans, num_classes) -> metrics``: the expensive measurement (injectable in tests)."""


class LatencyService:
    """A trial's latency: ``evaluate(arch, in_chans=, num_classes=)`` and the ``training()`` gate.

    Picklable (Ray ships it inside ``ArchEvaluation``): it holds the config, paths and, in predict
    mode, the table's data; files and locks are opened per use.
    """

    def __init__(self, lat: Any, *, cache_path: str | Path | None = None, gate: MeasureGate | None = None,
                 table: Any = None, measure: Measure | None = None) -> None:
        if lat.mode == "predict" and table is None:
            raise ValueError("latency.table: predict mode needs a table (build one with `nas latency-table`)")
        self.lat = lat
        self.cache = LatencyCache(cache_path) if cache_path is not None and lat.mode == "measure" else None
        self.gate = gate
        self.table = table
        self._measure_fn = measure
        self._predictor: Any = None

    @classmethod
    def from_config(cls, cfg: Any, *, cache_path: str | Path | None = None) -> "LatencyService":
        from evaluators.latency_table import LatencyTable

        lat = cfg.latency
        # Only a search that measures latency joins the gate: others neither wait nor make anyone wait.
        measured = lat.mode == "measure" and "latency_ms" in cfg.objectives
        gate = MeasureGate.for_device(lat.device, lat.lock_dir) if lat.isolate and measured else None
        table = LatencyTable.load(lat.table) if lat.mode == "predict" else None
        return cls(lat, cache_path=Path(cache_path).resolve() if cache_path else None, gate=gate, table=table)

    @property
    def cheap(self) -> bool:
        return self.lat.mode == "predict"

    def _context(self) -> contextlib.AbstractContextManager:
        return self.gate.measuring() if self.gate is not None else contextlib.nullcontext()

    def training(self) -> contextlib.AbstractContextManager:
        """Context for a trial's training: passes the gate at every batch when ``latency.isolate``."""
        return self.gate.training() if self.gate is not None else contextlib.nullcontext()

    def key(self, arch: Arch, *, in_chans: int, num_classes: int) -> str:
        lat = self.lat
        return json.dumps([arch.arch_id, lat.device, list(lat.batch_sizes), arch.input_size, in_chans, num_classes,
                           lat.threads])

    def evaluate(self, arch: Arch, *, in_chans: int, num_classes: int) -> dict[str, float]:
        if self.lat.mode == "predict":
            return self._predict(arch, in_chans, num_classes)
        key = self.key(arch, in_chans=in_chans, num_classes=num_classes)
        if key not in _MEMO:
            found = self.cache.get(key) if self.cache is not None else None
            if found is None:
                with self._context():
                    found = self.cache.get(key) if self.cache is not None else None  # a racing trial may have won
                    if found is None:
                        found = self._measure(arch, in_chans, num_classes)
                        if self.cache is not None:
                            self.cache.put(key, arch.arch_id, found)
            _MEMO[key] = found
        return dict(_MEMO[key])

    def _measure(self, arch: Arch, in_chans: int, num_classes: int) -> dict[str, float]:
        if self._measure_fn is not None:
            return self._measure_fn(arch, in_chans, num_classes)
        from evaluators import LatencyEvaluator

        lat = self.lat
        return LatencyEvaluator(num_classes=num_classes, in_chans=in_chans, device=lat.device,
                                batch_sizes=tuple(lat.batch_sizes), warmup=lat.warmup, repeats=lat.repeats,
                                threads=lat.threads).evaluate(arch)

    def _predict(self, arch: Arch, in_chans: int, num_classes: int) -> dict[str, float]:
        from evaluators.latency_table import PredictedLatencyEvaluator

        if self._predictor is None:
            self._predictor = PredictedLatencyEvaluator(table=self.table, in_chans=in_chans, num_classes=num_classes,
                                                        context=self._context)
        return self._predictor.evaluate(arch)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_predictor": None}
