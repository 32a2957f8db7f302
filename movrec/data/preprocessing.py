"""Preprocessing fitted on the training split only, turning clean frames into model tensors.

Its state is plain Python data (lists, floats) so it travels inside a Lightning checkpoint and
a reloaded model can predict on raw rows without refitting anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from movrec.data.cells import tags as tag_lists
from movrec.data.feature_spec import FeatureSpec
from movrec.data.features import FeaturePipeline
from movrec.data.glove import WordVectors
from movrec.data.tmdb import TARGET, CleaningReport
from movrec.data.vocab import IdVocabulary, TagVocabulary, TokenVocabulary
from movrec.errors import UserError

# "tokens": word indices; "length": the paper's appendix code for its deep model, which feeds
# len(title) as the single title token (kept only to reproduce the paper, see experiment=paper).
TITLE_ENCODINGS = ("tokens", "length")


class Preprocessing:
    def __init__(
        self,
        titles: TokenVocabulary,
        movie_ids: IdVocabulary,
        target_mean: float,
        target_std: float,
        title_length: int,
        features: FeaturePipeline | None = None,
        title_encoding: str = "tokens",
        length_vocabulary: int = 0,
        users: IdVocabulary | None = None,
        target_range: tuple[float, float] | None = None,
        tags: TagVocabulary | None = None,
        tag_length: int = 0,
    ):
        if title_encoding not in TITLE_ENCODINGS:
            raise UserError(
                f"data.title_encoding must be one of {list(TITLE_ENCODINGS)}, "
                f"got {title_encoding!r}"
            )
        self.title_encoding = title_encoding
        self.length_vocabulary = length_vocabulary
        self.titles = titles
        self.movie_ids = movie_ids
        self.target_mean = target_mean
        self.target_std = target_std
        self.title_length = title_length
        self.features = features
        self.users = users  # raters (MovieLens users) seen in training; None for TMDb alone
        self.target_range = target_range  # lowest and highest training target: the clip
        self.tags, self.tag_length = tags, tag_length  # None: no tag input

    @classmethod
    def fit(
        cls,
        train: pd.DataFrame,
        num_words: int,
        title_length: int,
        features: FeatureSpec | None = None,
        vectors: WordVectors | None = None,
        title_encoding: str = "tokens",
        all_ids: pd.Series | None = None,
        target: pd.Series | None = None,
        target_scale: tuple[float, float] | None = None,
        users: pd.Series | None = None,
        target_range: tuple[float, float] | None = None,
    ) -> Preprocessing:
        """Fit on ``train``, one row per training movie.

        ``features`` (metadata features, None for the paper's id + title model) may need
        GloVe ``vectors`` for its text group. ``all_ids`` replaces the training ids as the id
        vocabulary (the paper maps every id before splitting). ``target``, per row of
        ``train`` (default ``vote_average``), decides which correlated features stay and
        gives the output scale and range, unless ``target_scale`` (mean, std) and
        ``target_range`` (min, max) are given: with user ratings the rows are movies
        (``target`` their mean rating), the examples ratings. ``users`` are the training
        raters' ids."""
        if title_length < 1:
            raise UserError(f"data.title_length must be >= 1, got {title_length}")
        target = train[TARGET] if target is None else target
        values = target.to_numpy(dtype=np.float64)
        mean, std = target_scale or (float(values.mean()), float(values.std()))
        pipeline = (
            FeaturePipeline(features).fit(train, vectors, target)
            if features is not None and features.any
            else None
        )
        return cls(
            titles=TokenVocabulary.fit(train["title"], num_words),
            movie_ids=IdVocabulary.fit(train["movie_id"] if all_ids is None else all_ids),
            target_mean=mean,
            target_std=std or 1.0,
            title_length=title_length,
            features=pipeline,
            title_encoding=title_encoding,
            length_vocabulary=num_words,
            users=IdVocabulary.fit(users) if users is not None else None,
            target_range=target_range or (float(values.min()), float(values.max())),
            tags=TagVocabulary.fit(tag_lists(train, None), features.tags)
            if features is not None and features.tags
            else None,
            tag_length=features.tag_length if features is not None else 0,
        )

    def transform(
        self, frame: pd.DataFrame, report: CleaningReport | None = None
    ) -> dict[str, torch.Tensor]:
        """Model inputs (and the target, when the frame has one) as aligned tensors.

        Malformed feature cells become empty or missing values, counted in ``report``;
        the feature pipeline flags and fills missing numbers (one place, after the flags).
        """
        ids = frame["movie_id"] if "movie_id" in frame.columns else frame["id"]
        tensors = {
            "movie_id": torch.from_numpy(self.movie_ids.encode(ids)),
            "title": torch.from_numpy(self._titles(frame["title"])),
        }
        if self.features is not None:
            tensors["features"] = torch.from_numpy(self.features.transform(frame, report))
        if self.tags is not None:
            counted = self.features.parsed_columns() if self.features is not None else set()
            lists = tag_lists(frame, report, frozenset(counted))  # each malformed cell once
            tensors["tags"] = torch.from_numpy(self.tags.encode(lists, self.tag_length))
        if TARGET in frame.columns:
            tensors["rating"] = torch.tensor(frame[TARGET].to_numpy(dtype=np.float32))
        return tensors

    def _titles(self, titles: pd.Series) -> np.ndarray:
        if self.title_encoding == "tokens":
            return self.titles.encode(titles, self.title_length)
        lengths = titles.astype(str).str.len().to_numpy(dtype=np.int64)
        return np.clip(lengths, 0, self.length_vocabulary - 1).reshape(-1, 1)

    def model_sizes(self) -> dict[str, Any]:
        """The constructor arguments a model needs to accept these tensors."""
        tokens = self.title_encoding == "tokens"
        return {
            "n_movie_ids": len(self.movie_ids),
            "vocab_size": len(self.titles) if tokens else self.length_vocabulary,
            "title_length": self.title_length if tokens else 1,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "n_features": len(self.features.names) if self.features is not None else 0,
            "n_numeric": self.features.n_numeric if self.features is not None else 0,
            "n_user_ids": len(self.users) if self.users is not None else 0,
            "rating_range": list(self.target_range) if self.target_range else None,
            "n_tags": len(self.tags) if self.tags is not None else 0,
        }

    def state_dict(self) -> dict:
        return {
            "titles": self.titles.state_dict(),
            "movie_ids": self.movie_ids.state_dict(),
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "title_length": self.title_length,
            "features": self.features.state_dict() if self.features is not None else None,
            "title_encoding": self.title_encoding,
            "length_vocabulary": self.length_vocabulary,
            "users": self.users.state_dict() if self.users is not None else None,
            "target_range": list(self.target_range) if self.target_range else None,
            "tags": self.tags.state_dict() if self.tags is not None else None,
            "tag_length": self.tag_length,
        }

    @classmethod
    def from_state(cls, state: dict) -> Preprocessing:
        return cls(
            titles=TokenVocabulary.from_state(state["titles"]),
            movie_ids=IdVocabulary.from_state(state["movie_ids"]),
            target_mean=float(state["target_mean"]),
            target_std=float(state["target_std"]),
            title_length=int(state["title_length"]),
            features=FeaturePipeline.from_state(state["features"]) if state["features"] else None,
            title_encoding=state["title_encoding"],
            length_vocabulary=int(state["length_vocabulary"]),
            users=IdVocabulary.from_state(state["users"]) if state["users"] else None,
            target_range=tuple(state["target_range"]) if state["target_range"] else None,
            tags=TagVocabulary.from_state(state["tags"]) if state["tags"] else None,
            tag_length=int(state["tag_length"]),
        )
