"""Where movies and ratings come from: files a user downloaded, or their synthetic twins.

Each source is a config node (``data.movies``, ``data.ratings``) that returns raw frames in
the Kaggle TMDb 5000 or GroupLens MovieLens schema and names where they came from; cleaning,
splitting and fitting are the datamodules' business, the same for every source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from movrec.data.cache import file_digest
from movrec.data.movielens import LINKS_FILE, RATINGS_FILE, make_movielens, read_movielens
from movrec.data.synthetic import make_tmdb
from movrec.data.tmdb import CREDITS_FILE, MOVIES_FILE, find_table, read_tmdb


@dataclass(frozen=True)
class RawMovies:
    movies: pd.DataFrame
    credits: pd.DataFrame | None
    sources: dict[str, str]  # what -> file (or synthetic settings), for logs and errors


@dataclass(frozen=True)
class TmdbFiles:
    """Kaggle "tmdb-movie-metadata": ``tmdb_5000_movies.csv`` (+ optional credits) in ``dir``."""

    dir: str

    def read(self) -> RawMovies:
        return RawMovies(*read_tmdb(self.dir))

    def fingerprint(self) -> dict[str, str | None]:
        return files_fingerprint(self.dir, (MOVIES_FILE, CREDITS_FILE))


@dataclass(frozen=True)
class TmdbSynthetic:
    """Generated TMDb-schema movies with a planted signal (see :mod:`movrec.data.synthetic`)."""

    n_movies: int = 2000
    seed: int = 0
    noise: float = 0.35
    unrated_fraction: float = 0.01
    with_credits: bool = True

    def read(self) -> RawMovies:
        movies, credits = make_tmdb(**asdict(self))
        return RawMovies(movies, credits, {"movies": f"synthetic({asdict(self)})"})

    def fingerprint(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RawRatings:
    ratings: pd.DataFrame
    links: pd.DataFrame
    sources: dict[str, str]


@dataclass(frozen=True)
class MovielensFiles:
    """GroupLens MovieLens ``ratings.csv`` + ``links.csv`` (e.g. ml-latest-small) in ``dir``."""

    dir: str

    def read(self, movies: pd.DataFrame) -> RawRatings:
        return RawRatings(*read_movielens(self.dir))

    def fingerprint(self) -> dict[str, str | None]:
        return files_fingerprint(self.dir, (RATINGS_FILE, LINKS_FILE))


@dataclass(frozen=True)
class MovielensSynthetic:
    """Generated ratings with planted tastes over the raw ``movies`` (each user loves a genre)."""

    n_users: int = 300
    ratings_per_user: int = 40
    seed: int = 0
    noise: float = 0.4

    def read(self, movies: pd.DataFrame) -> RawRatings:
        ratings, links, _ = make_movielens(movies, **asdict(self))
        return RawRatings(ratings, links, {"ratings": f"synthetic({asdict(self)})"})

    def fingerprint(self) -> dict:
        return asdict(self)


def files_fingerprint(directory: str, names: tuple[str, ...]) -> dict[str, str | None]:
    """Each named table's SHA-256 (None when absent: reading it then says what is missing)."""
    found = {name: find_table(Path(directory).expanduser(), name) for name in names}
    return {name: file_digest(path) if path else None for name, path in found.items()}


# Saved with a datamodule's settings in every checkpoint: movrec's own frozen dataclasses of
# strings and numbers, the only classes a checkpoint may name (torch.load(weights_only=True)).
SOURCES = (TmdbFiles, TmdbSynthetic, MovielensFiles, MovielensSynthetic)
torch.serialization.add_safe_globals(list(SOURCES))
