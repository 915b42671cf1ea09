"""A run's latency cache. A measured result is stored under ``(arch_id, device, batch sizes, input size,
in_chans, num_classes, threads, protocol)`` in an in-process dict and a small SQLite file in the run folder,
so an architecture sampled again, by any trial process or a resumed run, is not measured twice; the
file is re-read while holding the gate, so two trials racing on one architecture measure it once. The
interleaved protocol's calibrated reference latencies live in the same file (``reference`` table).
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path


class LatencyCache:
    """``key -> metrics`` in a SQLite file shared by every trial process of a run (and its resumes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60)
        con.execute("CREATE TABLE IF NOT EXISTS latency (key TEXT PRIMARY KEY, arch_id TEXT NOT NULL, "
                    "metrics TEXT NOT NULL, created REAL NOT NULL)")
        con.execute("CREATE TABLE IF NOT EXISTS reference (key TEXT PRIMARY KEY, ms REAL NOT NULL, "
                    "created REAL NOT NULL)")
        return con

    def get(self, key: str) -> dict[str, float] | None:
        with contextlib.closing(self._connect()) as con:
            row = con.execute("SELECT metrics FROM latency WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, arch_id: str, metrics: dict[str, float]) -> None:
        with contextlib.closing(self._connect()) as con, con:
            con.execute("INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?)",
                        (key, arch_id, json.dumps(metrics), time.time()))

    def get_reference(self, key: str) -> float | None:
        """The stored reference latency (ms) under ``key``, if any."""
        with contextlib.closing(self._connect()) as con:
            row = con.execute("SELECT ms FROM reference WHERE key = ?", (key,)).fetchone()
        return float(row[0]) if row else None

    def put_reference(self, key: str, ms: float) -> None:
        with contextlib.closing(self._connect()) as con, con:
            con.execute("INSERT OR REPLACE INTO reference VALUES (?, ?, ?)", (key, float(ms), time.time()))

    def __len__(self) -> int:
        with contextlib.closing(self._connect()) as con:
            return int(con.execute("SELECT COUNT(*) FROM latency").fetchone()[0])
