"""Training callbacks that are not Lightning's own."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import matplotlib
import torch

matplotlib.use("Agg")  # files only: runs have no display
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from movrec.data.features import movie_labels  # noqa: E402


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


class LearningCurves(L.Callback):
    """The paper's Fig. 1: train and validation loss and MAE per epoch, PNG and TensorBoard."""

    PANELS = (("loss", "Model loss (MSE)"), ("mae", "Model MAE"))

    def __init__(self, dirpath: str, filename: str = "learning_curves.png") -> None:
        self.path = Path(dirpath) / filename
        self.history: dict[str, list[float]] = {}

    def _record(self, trainer: L.Trainer, split: str) -> None:
        for metric, _ in self.PANELS:
            value = trainer.callback_metrics.get(f"{split}/{metric}")
            if value is not None:
                self.history.setdefault(f"{split}/{metric}", []).append(float(value))

    # Callbacks run before the module's own epoch-end hook, where the training means are logged:
    # they are read when the next epoch starts, and for the last epoch when fitting ends.
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch > 0:
            self._record(trainer, "train")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, "val")  # this epoch's validation has run by now

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, "train")
        if not trainer.is_global_zero:
            return
        figure = self.figure()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(self.path, dpi=120)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("learning_curves", figure, trainer.current_epoch)
        plt.close(figure)

    def figure(self) -> plt.Figure:
        figure, axes = plt.subplots(1, 2, figsize=(10, 4))
        for axis, (metric, title) in zip(axes, self.PANELS, strict=True):
            for split, label in (("train", "Training"), ("val", "Validation")):
                values = self.history.get(f"{split}/{metric}", [])
                axis.plot(range(1, len(values) + 1), values, marker="o", label=label)
            axis.set(title=title, xlabel="Epoch", ylabel=metric.upper())
            axis.legend()
            axis.grid(alpha=0.3)
        figure.tight_layout()
        return figure

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = dict(state_dict.get("history", {}))


class EmbeddingProjector(L.Callback):
    """Every movie's representation (``movie_representation``: what ``similar`` compares) in
    TensorBoard's projector, labelled by title, year and genres. Written after testing, so it
    shows the tested (best) weights.

    Only for models trained on user ratings, where that representation is a learned space
    shared with the users; a TMDb-only model's is its raw inputs (800 columns for the paper's
    model: seconds to write as text, and not a learned space).
    """

    def __init__(self, tag: str = "movies") -> None:
        self.tag = tag

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        users = getattr(pl_module, "user_embedding", None) is not None
        if not writers or not users or not trainer.is_global_zero or trainer.datamodule is None:
            return
        movies, tensors = trainer.datamodule.catalogue()
        with torch.no_grad():
            batch = {k: v.to(pl_module.device) for k, v in tensors.items()}
            vectors = pl_module.movie_representation(batch).cpu()
        labels = movie_labels(movies)[["title", "year", "genres"]]
        # The projector's metadata is tab-separated text: no tabs or newlines inside a cell.
        cells = labels.astype(str).replace(r"[\t\n\r]", " ", regex=True).to_numpy().tolist()
        writers[0].experiment.add_embedding(
            vectors,
            metadata=cells,
            metadata_header=list(labels.columns),
            tag=self.tag,
            global_step=trainer.global_step,
        )
