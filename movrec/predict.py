"""Predict ratings for raw TMDb-schema rows from a saved checkpoint, with no refitting.

The checkpoint holds the model weights and hyperparameters and, under the datamodule's
class name, the preprocessing fitted on the training split (vocabulary, id maps, features),
plus the datamodule's own settings, so the data it was trained on can be rebuilt.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from movrec.data import DATAMODULES, FittedDataModule
from movrec.data.preprocessing import Preprocessing
from movrec.data.tmdb import CleaningReport, clean_movies
from movrec.errors import MissingFileError, UserError
from movrec.models.regressor import RatingRegressor


class Checkpoint:
    """A movrec checkpoint file, read and checked once; the module and the datamodule come back
    from those bytes through Lightning's own ``load_from_checkpoint``."""

    def __init__(self, path: str | Path, map_location: str = "cpu"):
        self.path = Path(path)
        self.map_location = map_location
        if not self.path.is_file():
            raise MissingFileError(f"checkpoint not found: {self.path}")
        self._bytes = self.path.read_bytes()
        # Our own checkpoints: they hold plain Python state and partials besides tensors.
        try:
            raw = torch.load(self._file(), map_location=map_location, weights_only=False)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
            raise UserError(f"{self.path}: not a checkpoint file ({err})") from err
        if not isinstance(raw, dict) or "state_dict" not in raw:
            raise UserError(f"{self.path}: not a Lightning checkpoint")
        hparams = raw.get("hyper_parameters", {})
        if "sizes" not in hparams and "n_movie_ids" in hparams:
            raise UserError(
                f"{self.path}: written by movrec before 0.2 (one flat RatingRegressor); this "
                "version builds the model from components: retrain it with python train.py"
            )
        found = [name for name in DATAMODULES if raw.get(name, {}).get("preprocessing")]
        if not found:
            raise UserError(
                f"{self.path}: no fitted preprocessing in this checkpoint (not a movrec run?)"
            )
        self.datamodule_class = DATAMODULES[found[0]]
        self.state: dict = raw[found[0]]
        self.epoch = int(raw["epoch"]) + 1  # 1-based

    def _file(self) -> io.BytesIO:
        return io.BytesIO(self._bytes)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_state(self.state["preprocessing"])

    def model(self) -> RatingRegressor:
        model = RatingRegressor.load_from_checkpoint(
            self._file(), map_location=self.map_location, weights_only=False
        )
        return model.eval()

    def datamodule(self, **overrides: Any) -> FittedDataModule:
        """The training data rebuilt from the saved settings (``overrides`` replace some, e.g.
        a folder that moved), transformed by the checkpoint's fitted preprocessing."""
        datamodule = self.datamodule_class.load_from_checkpoint(
            self._file(),
            map_location=self.map_location,
            weights_only=False,
            **{k: v for k, v in overrides.items() if v is not None},
        )
        datamodule.setup("predict")
        return datamodule


class RatingPredictor:
    """Ratings for raw TMDb rows: ``vote_average`` for a TMDb model, and for a model trained
    on user ratings, the rating of a user it has never seen (the unknown user)."""

    def __init__(self, model: RatingRegressor, preprocessing: Preprocessing):
        self.model = model.eval()
        self.preprocessing = preprocessing
        self.column = (
            "predicted_rating" if preprocessing.users is not None else "predicted_vote_average"
        )

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> RatingPredictor:
        checkpoint = Checkpoint(path, map_location)
        return cls(checkpoint.model(), checkpoint.preprocessing)

    @torch.no_grad()
    def predict(self, movies: pd.DataFrame) -> tuple[pd.DataFrame, CleaningReport]:
        """``id``, ``title`` and the prediction per clean input row, plus the repairs."""
        report = CleaningReport()
        frame = clean_movies(movies, report, source="input rows", require_target=False)
        batch = self.preprocessing.transform(frame, report)
        batch.pop("rating", None)  # the target, when the rows have one: not an input
        if self.preprocessing.users is not None:
            batch["user_id"] = torch.zeros(len(frame), dtype=torch.long)  # the unknown user
        batch = {k: v.to(self.model.device) for k, v in batch.items()}
        predicted = self.model(batch).cpu().numpy()
        return frame[["id", "title"]].assign(**{self.column: predicted}), report
