"""Predict ratings for raw TMDb-schema rows from a saved checkpoint, with no refitting.

The checkpoint holds the model weights and hyperparameters and, under the datamodule's
name, the preprocessing fitted on the training split (vocabulary, id map, fill values).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from movrec.data.datamodule import TmdbDataModule
from movrec.data.preprocessing import Preprocessing
from movrec.data.tmdb import CleaningReport, clean_movies
from movrec.models.regressor import RatingRegressor


def load_checkpoint(
    path: str | Path, map_location: str = "cpu"
) -> tuple[RatingRegressor, dict, int]:
    """The trained module, the datamodule state (fitted preprocessing) and the 1-based epoch."""
    # Our own checkpoints: they hold plain Python state besides tensors.
    checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    state = checkpoint.get(TmdbDataModule.__qualname__, {})
    if state.get("preprocessing") is None:
        raise ValueError(f"{path}: no fitted preprocessing in this checkpoint (not a movrec run?)")
    hparams = checkpoint["hyper_parameters"]
    extra = {}
    if hparams.get("title_init") == "glove":
        # Placeholder of the right shape; the trained weights come from the state dict.
        extra["title_vectors"] = torch.zeros(hparams["vocab_size"], hparams["title_dim"])
    model = RatingRegressor(**hparams, **extra)
    model.load_state_dict(checkpoint["state_dict"])
    return model, state, int(checkpoint["epoch"]) + 1


class RatingPredictor:
    def __init__(self, model: RatingRegressor, preprocessing: Preprocessing):
        self.model = model.eval()
        self.preprocessing = preprocessing

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> RatingPredictor:
        model, state, _ = load_checkpoint(path, map_location)
        return cls(model, Preprocessing.from_state(state["preprocessing"]))

    @torch.no_grad()
    def predict(self, movies: pd.DataFrame) -> tuple[pd.DataFrame, CleaningReport]:
        """``id``, ``title`` and ``predicted_vote_average`` per clean input row, plus repairs."""
        report = CleaningReport()
        frame = clean_movies(movies, report, source="input rows", require_target=False)
        rows = frame.drop(columns=["vote_average"], errors="ignore")
        batch = self.preprocessing.transform(rows, report)
        batch = {k: v.to(self.model.device) for k, v in batch.items()}
        predicted = self.model(batch).cpu().numpy()
        return frame[["id", "title"]].assign(predicted_vote_average=predicted), report
