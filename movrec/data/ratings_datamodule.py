"""LightningDataModule for user ratings (MovieLens) on TMDb 5000 movies: personalised data.

The movie side is the TMDb pipeline unchanged (cleaning, title vocabulary, metadata features),
fitted on the movies rated in the training split; the rating side adds the users. Every rating
becomes one example: user id, the movie's id, title tokens and features, and the rating.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from movrec.data.datamodule import TmdbDataModule, require_split_sizes, split_frame
from movrec.data.movielens import join_ratings, make_movielens, read_movielens
from movrec.data.preprocessing import Preprocessing
from movrec.errors import UserError

SPLITS_BY = ("random", "cold_items", "temporal")


def split_ratings(
    ratings: pd.DataFrame,
    by: str,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    what: str = "ratings",
) -> dict[str, pd.DataFrame]:
    """``random``: ratings at random; ``cold_items``: whole movies, so validation and test
    movies are never seen in training; ``temporal``: each user's latest ratings are test, the
    ones just before them validation. ``what`` names the ratings in errors."""
    if by == "random":
        return split_frame(ratings, test_fraction, val_fraction, seed, what=what)
    if by == "cold_items":
        movies = pd.DataFrame({"movie_id": np.sort(ratings["movie_id"].unique())})
        parts = split_frame(movies, test_fraction, val_fraction, seed, what=f"{what}: movies")
        return {name: ratings[ratings["movie_id"].isin(p["movie_id"])] for name, p in parts.items()}
    if by == "temporal":
        ordered = ratings.sort_values(["user_id", "timestamp", "movie_id"], kind="stable")
        users = ordered.groupby("user_id", sort=False)
        position = users.cumcount() / users["rating"].transform("size")
        test = position >= 1 - test_fraction
        val = ~test & (position >= (1 - test_fraction) * (1 - val_fraction))
        parts = {"train": ordered[~test & ~val], "val": ordered[val], "test": ordered[test]}
        sizes = {name: len(part) for name, part in parts.items()}
        require_split_sizes(sizes, what, (test_fraction, val_fraction))
        return parts
    raise UserError(f"data.split must be one of {list(SPLITS_BY)}, got {by!r}")


class RatingsDataModule(TmdbDataModule):
    """MovieLens ratings from ``ratings_dir`` (or ``ratings_synthetic``) joined to the TMDb
    movies of the parent's ``dir`` (or ``synthetic``) through MovieLens' ``links.csv``.

    ``split`` picks random / cold_items / temporal (see :func:`split_ratings`), seeded by
    ``split_seed``. A share of training user ids (``unknown_user_rate``) is replaced by the
    unknown user, whose learned embedding serves users never seen in training.
    """

    predicts_tmdb = False  # the target is the user's rating; TMDb's vote_average may be a feature

    def __init__(
        self,
        ratings_dir: str | None = None,
        ratings_synthetic: dict | None = None,
        split: str = "random",
        unknown_user_rate: float = 0.05,
        **tmdb: object,
    ):
        super().__init__(**tmdb)
        if (ratings_dir is None) == (ratings_synthetic is None):
            raise UserError(
                "set exactly one of data.ratings_dir (MovieLens files) or data.ratings_synthetic"
            )
        if split not in SPLITS_BY:
            raise UserError(f"data.split must be one of {list(SPLITS_BY)}, got {split!r}")
        if not 0 <= unknown_user_rate < 1:
            raise UserError(f"data.unknown_user_rate must be in [0, 1), got {unknown_user_rate}")
        h = self.hparams
        for name, value, needed in (
            ("data.merge_on", h.merge_on, "id"),
            ("data.folds", h.folds, None),
            ("data.validate_on", h.validate_on, "val"),
            ("data.id_vocabulary", h.id_vocabulary, "train"),
        ):
            if value != needed:
                raise UserError(f"{name}={value!r} is not supported with user ratings")
        self.movies = pd.DataFrame()
        self.movie_tensors: dict[str, torch.Tensor] = {}
        self._raw_movies: pd.DataFrame | None = None

    def load_ratings(self, movies: pd.DataFrame) -> pd.DataFrame:
        h = self.hparams
        if h.ratings_dir is not None:
            ratings, links, sources = read_movielens(h.ratings_dir)
        else:
            ratings, links, _ = make_movielens(self._raw_movies, **h.ratings_synthetic)
            sources = {"ratings": f"synthetic({dict(h.ratings_synthetic)})"}
        self.sources.update(sources)
        joined = join_ratings(ratings, links, movies["movie_id"], self.report)
        self.report.require_rows(joined, self.sources["ratings"], "ratings on TMDb movies")
        return joined

    def read_raw(self) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        movies, credits = super().read_raw()
        self._raw_movies = movies  # the synthetic ratings generator draws its tastes from them
        return movies, credits

    def setup(self, stage: str | None = None) -> None:
        if self.tensors:
            return
        h = self.hparams
        movies = self.load_frame()
        ratings = self.load_ratings(movies)
        what = f"{self.sources['ratings']} (ratings on TMDb movies after cleaning)"
        self.frames = split_ratings(
            ratings, h.split, h.test_fraction, h.val_fraction, h.split_seed, what
        )
        train = self.frames["train"]
        if self.preprocessing is None:  # a checkpoint's fitted state is kept, never refitted
            per_movie = train.groupby("movie_id")["rating"].mean()
            rated = movies.set_index("movie_id").loc[per_movie.index].reset_index()
            spec = self.feature_spec
            self.preprocessing = Preprocessing.fit(
                rated, h.num_words, h.title_length, spec,
                self.word_vectors() if spec is not None and spec.text else None,
                title_encoding=h.title_encoding,
                target=pd.Series(per_movie.to_numpy(), index=rated.index),
                target_scale=(float(train["rating"].mean()), float(train["rating"].std(ddof=0))),
                target_range=(float(train["rating"].min()), float(train["rating"].max())),
                users=train["user_id"],
            )  # fmt: skip
        self.movies = movies
        self.movie_tensors = self.preprocessing.transform(movies, self.report)
        self.movie_tensors.pop("rating", None)  # TMDb's vote_average: not this task's target
        self.tensors = {name: self.rating_tensors(rows) for name, rows in self.frames.items()}

    def rating_tensors(self, ratings: pd.DataFrame) -> dict[str, torch.Tensor]:
        """One example per rating: the movie's tensors, the user and the rating."""
        positions = pd.Index(self.movies["movie_id"]).get_indexer(ratings["movie_id"])
        tensors = {k: v[positions] for k, v in self.movie_tensors.items()}
        tensors["user_id"] = torch.from_numpy(self._fitted().users.encode(ratings["user_id"]))
        # The raw user id groups a user's predictions for the ranking metrics.
        tensors["user_key"] = torch.tensor(ratings["user_id"].to_numpy(dtype=np.int64))
        tensors["rating"] = torch.tensor(ratings["rating"].to_numpy(dtype=np.float32))
        return tensors

    def catalogue(self) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
        """Every TMDb movie, rated by users or not (cold items are recommendable too)."""
        return self.movies, self.movie_tensors

    def unknown_rates(self) -> dict[str, float]:
        return {**super().unknown_rates(), "user_id": self.hparams.unknown_user_rate}

    def summary(self) -> dict:
        ratings = pd.concat(self.frames.values())
        return {
            **super().summary(),
            "split": self.hparams.split,
            "users": int(ratings["user_id"].nunique()),
            "rated_movies": int(ratings["movie_id"].nunique()),
            "train_users": len(self._fitted().users) - 1,
        }
