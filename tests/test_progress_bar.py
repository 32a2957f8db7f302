"""The progress bar draws a few times a second, yet each epoch's bar ends on its last batch."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar

from movrec.callbacks import ProgressBar
from movrec.data import MoviesDataModule, TmdbSynthetic
from movrec.models.regressor import RatingRegressor


class ShownBatches(L.Callback):
    """The training bar's count when validation starts and when the epoch ends."""

    def __init__(self, bar: ProgressBar) -> None:
        self.bar, self.shown = bar, []

    def _shown(self) -> float:
        return self.bar.progress.tasks[self.bar.train_progress_bar_id].completed

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.shown.append(("validation", self._shown()))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.shown.append(("epoch end", self._shown()))


def test_the_bar_skips_draws_but_shows_every_batch(monkeypatch):
    draws = []
    draw = RichProgressBar.on_train_batch_end
    monkeypatch.setattr(
        RichProgressBar, "on_train_batch_end", lambda *a, **k: draws.append(1) or draw(*a, **k)
    )
    datamodule = MoviesDataModule(TmdbSynthetic(n_movies=600, seed=3), batch_size=16)
    datamodule.setup()
    torch.manual_seed(0)
    model = RatingRegressor(datamodule.model_sizes())
    bar = ProgressBar(refresh_rate=1)  # a draw a second: more batches than that run between
    shown = ShownBatches(bar)
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_model_summary=False, callbacks=[bar, shown],
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    batches = trainer.num_training_batches
    assert batches > 10
    assert shown.shown == [("validation", batches), ("epoch end", batches)] * 2
    assert len(draws) < batches  # of 2 * batches
