"""Predict ratings for raw TMDb-schema rows from a saved checkpoint, with no refitting.

The checkpoint holds the model weights and hyperparameters and, under the datamodule's
class name, the preprocessing fitted on the training split (vocabulary, id maps, features),
plus the datamodule's own settings, so the data it was trained on can be rebuilt.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from movrec.data.preprocessing import Preprocessing
from movrec.data.tmdb import CleaningReport, clean_movies
from movrec.errors import UserError
from movrec.models.regressor import RatingRegressor
from movrec.serving.checkpoint import Checkpoint


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
    def from_checkpoint(
        cls, path: str | Path, map_location: str = "cpu", trust: bool = False
    ) -> RatingPredictor:
        checkpoint = Checkpoint(path, map_location, trust)
        return cls(checkpoint.model(), checkpoint.preprocessing)

    @torch.no_grad()
    def predict(
        self, movies: pd.DataFrame, source: str = "input rows"
    ) -> tuple[pd.DataFrame, CleaningReport]:
        """``id``, ``title`` and the prediction per clean input row, plus the repairs."""
        report = CleaningReport()
        frame = clean_movies(movies, report, source=source, require_target=False)
        if frame.empty:
            raise UserError(f"{source}: no movie rows to predict")
        batch = self.preprocessing.transform(frame, report)
        batch.pop("rating", None)  # the target, when the rows have one: not an input
        if self.preprocessing.users is not None:
            batch["user_id"] = torch.zeros(len(frame), dtype=torch.long)  # the unknown user
        batch = {k: v.to(self.model.device) for k, v in batch.items()}
        predicted = self.model(batch).cpu().numpy()
        return frame[["id", "title"]].assign(**{self.column: predicted}), report
