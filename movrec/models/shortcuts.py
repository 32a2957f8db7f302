"""Speed shortcuts that lean on Lightning's internals, kept here together because each was
measured to pay on today's model (docs/speed.md), and each is pinned by a test of the Lightning
behaviour it relies on (``tests/test_model.py``), so an upgrade fails a test instead of
silently changing results or speed.

- :class:`QuickHookName`: Lightning records the running hook's name on the module
  (``_current_fx_name``) dozens of times per training step; ``nn.Module.__setattr__`` checks
  every name against parameters, buffers and submodules first.
- :class:`ExponentialMovingAverage`: Lightning's ``WeightAveraging`` with torch's EMA function,
  whose ``AveragedModel.update_parameters`` walks both module trees and regroups every tensor on
  every step; here the tensor pairs are listed once per fit (reading the callback's private
  ``_average_model`` and ``_latest_update_step``) and a step is one foreach lerp: the same
  arithmetic in the same order, bit for bit the same weights.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn


class QuickHookName:
    """Mixed into the LightningModule: the hook name goes straight into the instance dict."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


class ExponentialMovingAverage(WeightAveraging):
    """After every optimiser step ``average = decay * average + (1 - decay) * weights``
    (the first step's weights to start), over parameters and buffers; validation, checkpoints
    and the model left after ``fit`` use the average (Lightning's ``WeightAveraging``)."""

    def __init__(self, decay: float):
        # The parent's AveragedModel keeps torch's function: whatever calls its
        # update_parameters averages alike, and it is the reference the fast path matches.
        super().__init__(multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay = decay
        self._averaged: list[torch.Tensor] = []
        self._current: list[torch.Tensor] = []
        self._updates = 0  # a host count: reading the module's counter waits for the GPU

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """List the pairs here, not in ``setup``: by now the module sits on its training device
        (buffers are new tensors after a move), and the average is kept on that device too."""
        average = self._average_model
        assert average is not None, "setup('fit') creates the average model"
        average.to(pl_module.device)
        self._averaged = [*average.module.parameters(), *average.module.buffers()]
        self._current = [*pl_module.parameters(), *pl_module.buffers()]
        assert len(self._averaged) == len(self._current)
        if not all(torch.is_floating_point(t) for t in self._current):
            # torch's EMA casts those through floats; this module has none to average.
            raise TypeError(f"{type(self).__name__} averages floating-point tensors only")
        self._updates = int(average.n_averaged)  # above 0 when resumed from a checkpoint

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        if trainer.global_step <= self._latest_update_step:
            return  # accumulating gradients: no optimiser step since the last update
        average = self._average_model
        assert average is not None
        if self._updates == 0:
            torch._foreach_copy_(self._averaged, self._current)
        else:
            torch._foreach_lerp_(self._averaged, self._current, 1 - self.decay)
        average.n_averaged += 1
        self._updates += 1
        self._latest_update_step = trainer.global_step
