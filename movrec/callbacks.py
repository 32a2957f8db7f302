"""Training callbacks that are not Lightning's own."""

from __future__ import annotations

import itertools
import math
import random
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")  # files only: runs have no display
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from movrec.atomic import atomic_write  # noqa: E402
from movrec.data.labels import movie_labels  # noqa: E402
from movrec.evaluation.selection import cross_half_loss  # noqa: E402


class FitSummary(L.Callback):
    """What ``metrics.json`` says about fitting: seconds per training epoch (validation
    included: Lightning validates inside it), epochs run, and the epoch and validation loss of
    the best checkpoint.

    At the end of fitting they are put into ``trainer.callback_metrics`` (``fit/*``), the
    one thing Lightning hands back from ``ddp_spawn``'s worker processes, so a run on any
    strategy reads them from the same place (:func:`read_fit_summary`).

    On one process and at most ``MAX_ROWS`` validation rows it also keeps each epoch's
    per-row squared errors (what ``validation_step`` returns) for the cross-half loss
    (:mod:`movrec.evaluation.selection`).
    """

    MAX_ROWS = 100_000  # more (millions of ratings) would be copied every epoch for nothing

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.best_epoch: int | None = None
        self.errors: list[torch.Tensor] = []
        self._epoch_errors: list[torch.Tensor] = []
        self._epoch_rows = 0
        self._best_name = ""
        self._start: float | None = None
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer  # state_dict() records the epoch being saved

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        fitting = trainer.state.fn == "fit" and not trainer.sanity_checking
        if not (fitting and trainer.world_size == 1 and isinstance(outputs, torch.Tensor)):
            return
        self._epoch_rows += len(outputs)
        if self._epoch_rows <= self.MAX_ROWS:  # past it, nothing more is copied this epoch
            self._epoch_errors.append(outputs.reshape(-1).float().cpu())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epoch_errors and self._epoch_rows <= self.MAX_ROWS:
            self.errors.append(torch.cat(self._epoch_errors))
        self._epoch_errors, self._epoch_rows = [], 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, at_epoch_end=True)
        pl_module.log("time/epoch_seconds", self.seconds[-1], on_epoch=True)

    def _record(self, trainer: L.Trainer, at_epoch_end: bool = False) -> None:
        """This epoch's time, and the epoch if the checkpoint callback's best file changed.
        Called at the epoch's end and again when its checkpoint is written (the best file
        is named by then), so a checkpoint holds its own epoch and a resume loses nothing.
        The time is the epoch's end's; a checkpoint written before it holds the time so far."""
        epoch = trainer.current_epoch
        if self._start is not None and (at_epoch_end or len(self.seconds) <= epoch):
            del self.seconds[epoch:]
            self.seconds.append(time.perf_counter() - self._start)
        checkpoint = trainer.checkpoint_callback
        name = Path(getattr(checkpoint, "best_model_path", "") or "").name
        if name and name != self._best_name:
            self._best_name, self.best_epoch = name, epoch + 1

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        score = getattr(checkpoint, "best_model_score", None) if checkpoint else None
        trainer.callback_metrics.update(
            {
                "fit/epochs_run": torch.tensor(len(self.seconds)),
                "fit/epoch_seconds": torch.tensor(self.seconds, dtype=torch.float64),
                "fit/best_epoch": torch.tensor(self.best_epoch or 0),
                "fit/best_val_loss": torch.tensor(float("nan") if score is None else float(score)),
                "fit/val_loss_cross_half": torch.tensor(self.val_loss_cross_half()),
            }
        )

    def val_loss_cross_half(self) -> float:
        if not self.errors or len(self.errors[0]) < 2:
            return float("nan")
        return cross_half_loss(torch.stack(self.errors).numpy())

    def state_dict(self) -> dict:  # a resumed run's summary spans every epoch
        if self._trainer is not None and self._trainer.state.fn == "fit":
            self._record(self._trainer)
        return {"seconds": list(self.seconds), "best_epoch": self.best_epoch,
                "best_name": self._best_name, "errors": list(self.errors)}  # fmt: skip

    def load_state_dict(self, state_dict: dict) -> None:
        self.seconds = list(state_dict["seconds"])
        self.best_epoch = state_dict["best_epoch"]
        self._best_name = state_dict["best_name"]
        self.errors = list(state_dict["errors"])


def read_fit_summary(trainer: L.Trainer) -> dict:
    """The :class:`FitSummary` of the last ``fit`` as ``metrics.json`` fields."""
    metrics = trainer.callback_metrics
    seconds = [float(s) for s in metrics["fit/epoch_seconds"].reshape(-1)]
    best_epoch = int(metrics["fit/best_epoch"])
    best_loss = float(metrics["fit/best_val_loss"])
    cross_half = float(metrics.get("fit/val_loss_cross_half", float("nan")))
    return {
        "epochs_run": int(metrics["fit/epochs_run"]),
        "best_epoch": best_epoch or None,
        "best_val_loss": None if math.isnan(best_loss) else best_loss,
        "val_loss_cross_half": None if math.isnan(cross_half) else cross_half,
        "seconds_per_epoch": statistics.median(seconds) if seconds else None,
        "epoch_seconds": seconds,
        "train_seconds": sum(seconds),
    }


class RandomState(L.Callback):
    """The random generators' state in every checkpoint, restored on resume: the epochs after
    a resume then shuffle, mask and drop out exactly as the uninterrupted fit's did."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
        kind, keys, position, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        version, internal, gauss_next = state_dict["python"]
        random.setstate((version, tuple(internal), gauss_next))


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, written once an epoch has ended (after the module has
    logged its training means, so a checkpoint holds its whole epoch), and carried into the
    new run folder when a fit resumes there: its best files are copied over, so the choice
    goes on from the same scores and each run's folder holds the checkpoint it tests."""

    def __init__(self, *args: Any, save_on_train_epoch_end: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, save_on_train_epoch_end=save_on_train_epoch_end, **kwargs)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved_in = state_dict.get("dirpath")
        if not saved_in or self.dirpath is None or Path(saved_in) == Path(self.dirpath):
            super().load_state_dict(state_dict)
            return

        def moved(path: str) -> str:
            if not path:
                return path
            target = Path(self.dirpath) / Path(path).name
            if Path(path).is_file() and not target.exists():
                atomic_write(target, Path(path).read_bytes())
            return str(target)

        best_k = {moved(path): score for path, score in state_dict["best_k_models"].items()}
        super().load_state_dict({
            **state_dict, "dirpath": self.dirpath, "best_k_models": best_k,
            "best_model_path": moved(state_dict["best_model_path"]),
            "kth_best_model_path": moved(state_dict["kth_best_model_path"]),
            "last_model_path": "",
        })  # fmt: skip


class ProgressBar(RichProgressBar):
    """Lightning's Rich progress bar, its training bar drawn at most ``refresh_rate`` times a
    second. Lightning's redraws it and reads every progress-bar metric after each batch; with
    the paper's 3 ms batches on two cores that cost about a tenth of the epoch, most of it in
    the model's own forward and backward passes, which ran slower beside it. The bar shows
    every batch before validation and at the epoch's end."""

    def __init__(self, refresh_rate: int = 4, **kwargs: Any) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self._drawn_at = -math.inf
        self._undrawn: tuple | None = None  # the last batch's hook arguments, if not drawn

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        now = time.monotonic()
        if self.is_enabled and now - self._drawn_at < 1 / self.refresh_rate:
            self._undrawn = (outputs, batch, batch_idx)
            return
        self._drawn_at, self._undrawn = now, None
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def _draw_undrawn(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._undrawn is not None:
            outputs, batch, batch_idx = self._undrawn
            self._drawn_at = -math.inf
            self.on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._draw_undrawn(trainer, pl_module)
        super().on_validation_start(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._draw_undrawn(trainer, pl_module)
        super().on_train_epoch_end(trainer, pl_module)


class LearningCurves(L.Callback):
    """The paper's Fig. 1: train and validation loss and MAE per epoch, PNG and TensorBoard."""

    PANELS = (("loss", "Model loss (MSE)"), ("mae", "Model MAE"))

    def __init__(self, dirpath: str, filename: str = "learning_curves.png") -> None:
        self.path = Path(dirpath) / filename
        self.history: dict[str, list[float]] = {}
        self.epochs = 0  # epochs recorded
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _record(self, epochs: int) -> None:
        """The values of epoch ``epochs - 1``, once. Callbacks' epoch-end hooks run before the
        module's, where the training means are logged: an epoch is read when its checkpoint is
        written (after those, ``save_on_train_epoch_end``), when the next epoch starts, or
        when fitting ends."""
        trainer = self._trainer
        if trainer is None or epochs <= self.epochs or trainer.sanity_checking:
            return
        for split, (metric, _) in itertools.product(("train", "val"), self.PANELS):
            value = trainer.callback_metrics.get(f"{split}/{metric}")
            if value is not None:
                self.history.setdefault(f"{split}/{metric}", []).append(float(value))
        self.epochs = epochs

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer.current_epoch)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer.current_epoch)
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
        if self._trainer is not None and self._trainer.state.fn == "fit":
            self._record(self._trainer.current_epoch + 1)
        return {"history": self.history, "epochs": self.epochs}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = {k: list(v) for k, v in state_dict["history"].items()}
        self.epochs = state_dict["epochs"]


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
        users = getattr(pl_module, "has_users", False)
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
