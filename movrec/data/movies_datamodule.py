"""TMDb 5000 as the paper uses it: one example per movie, the target its ``vote_average``."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from movrec.data.base import FittedDataModule
from movrec.data.splits import check_split_options, split_frame
from movrec.errors import UserError

# The paper's protocol, mistakes included (experiment=paper); movrec's defaults first.
PAPER_SWITCHES = {
    "merge_on": ("id", "title"),  # title: duplicate titles multiply rows
    "id_vocabulary": ("train", "all"),  # all: ids mapped over every row before the split
    "title_encoding": ("tokens", "length"),  # length: len(title) as the one title token
    "validate_on": ("val", "test"),  # test: the paper validates on the test split
}


class MoviesDataModule(FittedDataModule):
    """Movies from ``movies`` (a source: :class:`~movrec.data.sources.TmdbFiles` or
    :class:`~movrec.data.sources.TmdbSynthetic`), split into train / validation / test movies
    (or k folds of the non-test movies: ``folds``, ``fold``)."""

    def __init__(
        self,
        movies: Any,
        folds: int | None = None,
        fold: int = 0,
        merge_on: str = "id",
        id_vocabulary: str = "train",
        title_encoding: str = "tokens",
        validate_on: str = "val",
        **shared: Any,
    ):
        """``shared``: the options every datamodule has (see :class:`FittedDataModule`)."""
        super().__init__(movies, **shared)
        for name, value in (
            ("merge_on", merge_on), ("id_vocabulary", id_vocabulary),
            ("title_encoding", title_encoding), ("validate_on", validate_on),
        ):  # fmt: skip
            if value not in PAPER_SWITCHES[name]:
                raise UserError(
                    f"data.{name} must be one of {list(PAPER_SWITCHES[name])}, got {value!r}"
                )
        check_split_options(self.hparams.test_fraction, self.hparams.val_fraction, folds, fold)
        if self.feature_spec is not None and self.feature_spec.vote_average:
            raise UserError(
                "data.features.vote_average=true feeds TMDb's rating to the model, but it is "
                "what this datamodule predicts: only user-rating data may use it"
            )

    def setup(self, stage: str | None = None) -> None:
        if self.tensors:
            return
        h = self.hparams
        frame, _ = self.load_movies(h.merge_on)
        what = f"{self.sources['movies']} (movies after cleaning)"
        self.frames = split_frame(
            frame, h.test_fraction, h.val_fraction, h.split_seed, h.folds, h.fold, what
        )
        if h.validate_on == "test":  # the paper's protocol: train on all non-test rows
            rest = pd.concat([self.frames["train"], self.frames["val"]])
            self.frames = {"train": rest, "val": self.frames["test"], "test": self.frames["test"]}
        self.fit_preprocessing(
            self.frames["train"],
            title_encoding=h.title_encoding,
            all_ids=frame["movie_id"] if h.id_vocabulary == "all" else None,
        )
        self.tensors = {
            name: self.fitted.transform(rows, self.report) for name, rows in self.frames.items()
        }

    def catalogue(self) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
        """Every clean movie of the data (all splits) and its model inputs, row for row: what
        recommendations and the embedding projector choose from."""
        movies = pd.concat(self.frames.values()).drop_duplicates("movie_id")
        movies = movies.sort_values("movie_id").reset_index(drop=True)
        tensors = self.fitted.transform(movies)
        tensors.pop("rating", None)
        return movies, tensors
