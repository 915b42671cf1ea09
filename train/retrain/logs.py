"""What a retrain shows and writes while it runs (rank 0 only).

- :class:`StepProgress`: within an epoch, a ``rich`` progress bar in a terminal; otherwise one line
  every ``log_interval`` steps (none with 0), so logs of batch jobs stay short.
- :class:`RunLog`: after each epoch, ``metrics.csv`` (one row per epoch, rewritten from the
  history so a resumed run stays consistent) and TensorBoard scalars under ``tb/`` (step = epoch;
  on resume the writer purges events past the checkpoint's epoch).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any, Callable

TB_DIR = "tb"


class StepProgress:
    """Progress of one epoch's ``total`` steps; ``stats()`` (which may sync the device) is read only when shown."""

    def __init__(self, *, total: int, epoch: int, epochs: int, interval: int, out: Callable[[str], None],
                 enabled: bool, tty: bool | None = None) -> None:
        self.total, self.epoch, self.epochs, self.interval, self.out = total, epoch, epochs, interval, out
        self.enabled = enabled
        self.tty = sys.stdout.isatty() if tty is None else tty
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> StepProgress:
        if self.enabled and self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn(f"epoch {self.epoch}/{self.epochs}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[stats]}"), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("train", total=self.total, stats="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, step: int, stats: Callable[[], str]) -> None:
        """Step ``step`` (1-based) is done."""
        if not self.enabled:
            return
        show = self.interval > 0 and (step % self.interval == 0 or step == self.total)
        if self._bar is not None:
            self._bar.update(self._task, completed=step, **({"stats": stats()} if show else {}))
        elif show and step < self.total:
            self.out(f"  epoch {self.epoch}/{self.epochs} [{step:>{len(str(self.total))}}/{self.total}]  {stats()}")


class RunLog:
    """Per-epoch metrics.csv and TensorBoard events in ``out_dir`` (a no-op when not ``enabled``)."""

    def __init__(self, out_dir: Path, *, enabled: bool, tensorboard: bool, resume_epoch: int | None) -> None:
        self.out_dir, self.enabled = out_dir, enabled
        self.writer: Any = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / TB_DIR),
                                        purge_step=resume_epoch + 1 if resume_epoch is not None else None)

    def epoch(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """Log epoch ``row`` (already appended to ``history``)."""
        if not self.enabled:
            return
        columns: list[str] = []
        for r in history:
            columns += [k for k in r if k not in columns]
        with open(self.out_dir / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            w.writerows(history)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
