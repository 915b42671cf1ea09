"""Callbacks shared by the retraining tests."""
from __future__ import annotations

from train.retrain import Callback


class StopAt(Callback):
    """Simulates a kill right after epoch ``epoch``'s checkpoint."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, ctx) -> None:
        if ctx.epoch == self.epoch:
            raise KeyboardInterrupt
