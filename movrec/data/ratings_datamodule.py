"""MovieLens user ratings of TMDb 5000 movies: one example per rating, personalised data.

The movie side is the same movie table (cleaning, title vocabulary, metadata features),
fitted on the movies rated in the training split; the rating side adds the users. Movie
tensors are stored once; a rating is (user, movie row, rating), gathered per batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from movrec.data.base import FittedDataModule
from movrec.data.batches import TensorBatches
from movrec.data.cache import PreparedData, settings_key
from movrec.data.histories import Histories, RankingExamples
from movrec.data.movielens import join_ratings
from movrec.data.preprocessing import Preprocessing
from movrec.data.splits import RATING_SPLITS, split_ratings
from movrec.data.tmdb import CleaningReport
from movrec.errors import UserError

# Settings of how batches are drawn, not of what the prepared data holds.
LOADER_SETTINGS = (
    "batch_size", "eval_batch_size", "ranking", "unknown_user_rate", "unknown_id_rate",
    "cache_dir",
)  # fmt: skip


class RatingsDataModule(FittedDataModule):
    """Ratings from ``ratings`` (:class:`~movrec.data.sources.MovielensFiles` or
    :class:`~movrec.data.sources.MovielensSynthetic`) joined to the movies of ``movies``
    through MovieLens' ``links.csv``.

    ``split`` picks random / cold_items / temporal (see :func:`split_ratings`), seeded by
    ``split_seed``. A share of training user ids (``unknown_user_rate``) is replaced by the
    unknown user, whose learned embedding serves users never seen in training.
    """

    def __init__(
        self,
        movies: Any,
        ratings: Any,
        split: str = "random",
        unknown_user_rate: float = 0.05,
        drop_unrated: bool = False,
        batch_size: int = 256,
        ranking: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        **shared: Any,
    ):
        """``shared``: the options every datamodule has (see :class:`FittedDataModule`); here
        unrated movies are kept (users rate them) and batches hold 256 ratings.

        ``ranking`` (``history_dropout``, ``negatives``; see
        :class:`~movrec.data.histories.RankingExamples`): training batches also carry what
        the network's ranking part learns from. None: rating rows only.

        ``cache_dir``: where the prepared rows, tensors and fitted preprocessing are kept
        (:mod:`movrec.data.cache`), so a run with the same files and settings skips building
        them. None: no cache."""
        super().__init__(movies, drop_unrated=drop_unrated, batch_size=batch_size, **shared)
        if not hasattr(ratings, "read"):
            raise UserError(
                "data.ratings must be a ratings source (movielens_files or movielens_synthetic)"
            )
        if split not in RATING_SPLITS:
            raise UserError(f"data.split must be one of {list(RATING_SPLITS)}, got {split!r}")
        if not 0 <= unknown_user_rate < 1:
            raise UserError(f"data.unknown_user_rate must be in [0, 1), got {unknown_user_rate}")
        unknown = set(ranking or {}) - {"history_dropout", "negatives", "short_histories"}
        if unknown:
            raise UserError(f"data.ranking: unknown setting(s) {sorted(unknown)}")
        if not 0 <= (ranking or {}).get("history_dropout", 0.0) < 1:
            raise UserError("data.ranking.history_dropout must be in [0, 1)")
        if not 0 <= (ranking or {}).get("short_histories", 0.0) <= 1:
            raise UserError("data.ranking.short_histories must be in [0, 1]")
        if (ranking or {}).get("negatives") is not None and ranking["negatives"] < 1:
            raise UserError("data.ranking.negatives must be >= 1 or null (every movie)")
        self.movies = pd.DataFrame()
        self.movie_tensors: dict[str, torch.Tensor] = {}
        self.train_rows = pd.DataFrame()  # the ratings the training batches hold
        self.cache_dir = cache_dir

    def setup(self, stage: str | None = None) -> None:
        if self.tensors:
            return
        cache = self.prepared_cache()
        entry = cache.load() if cache is not None else None
        if entry is not None:
            self.restore(*entry)
            return
        self.prepare()
        if cache is not None:
            cache.save(
                {"movies": self.movies, **self.frames},
                {
                    "movie_tensors": self.movie_tensors,
                    "tensors": self.tensors,
                    "preprocessing": self.fitted.state_dict(),
                },
                {"sources": self.sources, "cleaning": self.report.counts},
            )

    def prepared_cache(self) -> PreparedData | None:
        """This data's cache entry, keyed by the input files' bytes and the settings that shape
        the rows; None without ``cache_dir`` or when a checkpoint's fitted preprocessing is
        loaded (its tensors are that fit's, not a fresh one's)."""
        if self.cache_dir is None or self.preprocessing is not None:
            return None
        h = self.hparams
        settings = {k: v for k, v in h.items() if k not in LOADER_SETTINGS}
        for name in ("movies", "ratings"):
            settings[name] = {"source": type(h[name]).__name__, **h[name].fingerprint()}
        if self.feature_spec is not None and self.feature_spec.text and self.glove is not None:
            settings["glove"] = self.glove.fingerprint()
        return PreparedData(self.cache_dir, settings_key(settings))

    def restore(
        self, frames: dict[str, pd.DataFrame], tensors: dict[str, Any], meta: dict[str, Any]
    ) -> None:
        """This module as :meth:`prepare` left it, from a cache entry."""
        self.movies = frames.pop("movies")
        self.frames = frames
        self.train_rows = frames["train"]
        self.movie_tensors, self.tensors = tensors["movie_tensors"], tensors["tensors"]
        self.preprocessing = Preprocessing.from_state(tensors["preprocessing"])
        self.sources = meta["sources"]
        self.report = CleaningReport(dict(meta["cleaning"]))

    def prepare(self) -> None:
        """Read, clean, join, split, fit on the training split and transform."""
        h = self.hparams
        movies, raw = self.load_movies()
        # The synthetic ratings generator draws its tastes from the raw movies.
        read = h.ratings.read(raw.movies)
        self.sources.update(read.sources)
        ratings = join_ratings(read.ratings, read.links, movies["movie_id"], self.report)
        self.report.require_rows(ratings, self.sources["ratings"], "ratings on TMDb movies")
        what = f"{self.sources['ratings']} (ratings on TMDb movies after cleaning)"
        self.frames = split_ratings(
            ratings, h.split, h.test_fraction, h.val_fraction, h.split_seed, what
        )
        train = self.frames["train"]
        per_movie = train.groupby("movie_id")["rating"].mean()
        rated = movies.set_index("movie_id").loc[per_movie.index].reset_index()
        self.fit_preprocessing(
            rated,
            target=pd.Series(per_movie.to_numpy(), index=rated.index),
            target_scale=(float(train["rating"].mean()), float(train["rating"].std(ddof=0))),
            target_range=(float(train["rating"].min()), float(train["rating"].max())),
            users=train["user_id"],
        )
        self.movies = movies
        self.movie_tensors = self.fitted.transform(movies, self.report)
        self.movie_tensors.pop("rating", None)  # TMDb's vote_average: not this task's target
        self.tensors = {name: self.rating_tensors(rows) for name, rows in self.frames.items()}
        self.train_rows = train

    def train_on_validation_too(self) -> None:
        super().train_on_validation_too()
        self.train_rows = pd.concat([self.frames["train"], self.frames["val"]])

    def histories(self, ratings: pd.DataFrame, users: pd.Index | None = None) -> Histories:
        """What each of ``users`` watched in ``ratings``, a row per position in ``users``
        (None: per fitted user index, the unknown user's row empty)."""
        if users is None:
            positions, n_users = (
                self.fitted.users.encode(ratings["user_id"]),
                len(self.fitted.users),
            )
        else:
            positions, n_users = users.get_indexer(ratings["user_id"]), len(users)
        known = positions >= 0
        items = self.fitted.movie_ids.encode(ratings["movie_id"].to_numpy()[known])
        return Histories.build(positions[known], items, n_users)

    def ranking_examples(self) -> RankingExamples | None:
        """The training batches' ranking inputs, from the ratings they hold."""
        settings = self.hparams.ranking
        if settings is None:
            return None
        ids = pd.Index(self.movies["movie_id"])
        rows = ids.get_indexer(self.train_rows["movie_id"])
        popularity = torch.bincount(torch.from_numpy(rows), minlength=len(self.movies))
        # A movie whose ratings the split holds out (a cold item) is not released yet when
        # the model trains: it is no candidate, as it is no item of the peers' matrices.
        # Catalogue movies no one rated are candidates: that no one watches them is learned.
        rated = pd.concat([frame["movie_id"] for frame in self.frames.values()])
        held_out = ids.isin(rated) & ~ids.isin(self.train_rows["movie_id"])
        return RankingExamples(
            self.histories(self.train_rows),
            settings.get("history_dropout", 0.0),
            popularity.double() / max(len(rows), 1),
            negatives=settings.get("negatives"),
            candidates=torch.from_numpy(~held_out),
            short_share=settings.get("short_histories", 0.0),
        )

    def rating_tensors(self, ratings: pd.DataFrame) -> dict[str, torch.Tensor]:
        """One example per rating: the movie's row, the user and the rating."""
        rows = pd.Index(self.movies["movie_id"]).get_indexer(ratings["movie_id"])
        return {
            "movie_row": torch.from_numpy(rows.astype(np.int64)),
            "user_id": torch.from_numpy(self.fitted.users.encode(ratings["user_id"])),
            # The raw user id groups a user's predictions for the ranking metrics.
            "user_key": torch.tensor(ratings["user_id"].to_numpy(dtype=np.int64)),
            "rating": torch.tensor(ratings["rating"].to_numpy(dtype=np.float32)),
        }

    def dataset(self, split: str, unknown_rates: dict[str, float] | None = None) -> TensorBatches:
        ranking = self.ranking_examples() if split == "train" else None
        return TensorBatches(self.tensors[split], unknown_rates, self.movie_tensors, ranking)

    def catalogue(self) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
        """Every TMDb movie, rated by users or not (cold items are recommendable too)."""
        return self.movies, self.movie_tensors

    def unknown_rates(self) -> dict[str, float]:
        return {**super().unknown_rates(), "user_id": self.hparams.unknown_user_rate}

    @property
    def has_users(self) -> bool:
        return True

    def user_ratings(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        frames = self.frames
        return pd.concat([frames["train"], frames["val"]]), frames["test"]

    def rated_by(self, user_id: int) -> set[int]:
        """TMDb ids of every movie ``user_id`` rated in this data (any split)."""
        rated = pd.concat(self.frames.values())
        return set(rated.loc[rated["user_id"] == user_id, "movie_id"])

    def summary(self) -> dict:
        ratings = pd.concat(self.frames.values())
        return {
            **super().summary(),
            "split": self.hparams.split,
            "users": int(ratings["user_id"].nunique()),
            "rated_movies": int(ratings["movie_id"].nunique()),
            "train_users": len(self.fitted.users) - 1,
        }
