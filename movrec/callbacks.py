"""Training callbacks that are not Lightning's own."""

from __future__ import annotations

import time

import lightning as L


class EpochTimer(L.Callback):
    """Wall seconds of each training epoch, validation included (Lightning validates inside it)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._start is not None:
            self.seconds.append(time.perf_counter() - self._start)
            pl_module.log("time/epoch_seconds", self.seconds[-1], on_epoch=True)
            self._start = None

    def state_dict(self) -> dict:
        return {"seconds": list(self.seconds)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.seconds = list(state_dict.get("seconds", []))
