"""Synthetic movies and credits in the Kaggle TMDb 5000 schema, with a planted signal.

``vote_average`` depends on title words (two clusters of GloVe neighbours: warm words raise the
rating, dark words lower it), on genres, on budget and runtime, and on the director, plus noise.
A working model beats the mean predictor on it; a broken one does not. For tests and demos
only: numbers measured on it are never results about real movies.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from movrec.data.tmdb import CREDITS_FILE, MOVIES_FILE

MOVIE_COLUMNS = (
    "budget", "genres", "homepage", "id", "keywords", "original_language", "original_title",
    "overview", "popularity", "production_companies", "production_countries", "release_date",
    "revenue", "runtime", "spoken_languages", "status", "tagline", "title", "vote_average",
    "vote_count",
)  # fmt: skip
CREDIT_COLUMNS = ("movie_id", "title", "cast", "crew")

WARM_WORDS = (
    "love", "heart", "family", "friend", "home", "dream", "hope", "joy", "life", "journey",
    "wonder", "light", "spirit", "gift", "miracle", "beautiful", "happy", "angel", "smile",
    "song", "dance", "garden", "summer", "sunshine", "paradise", "treasure", "hero", "brave",
)  # fmt: skip
DARK_WORDS = (
    "death", "kill", "blood", "dead", "evil", "zombie", "horror", "curse", "nightmare",
    "terror", "revenge", "poison", "hell", "ghost", "demon", "massacre", "murder", "grave",
    "scream", "fear", "doom", "chaos", "venom", "slaughter", "cursed", "killer", "sinister",
)  # fmt: skip
NEUTRAL_WORDS = (
    "the", "of", "man", "city", "night", "story", "last", "return", "part", "new", "big",
    "day", "game", "street", "road", "house", "world", "time", "island", "river", "king",
    "secret", "mission", "code", "line", "case", "year", "north", "west", "blue",
)  # fmt: skip
GENRE_EFFECTS = {
    "Drama": 0.4, "Documentary": 0.6, "Animation": 0.3, "Comedy": -0.1, "Action": -0.1,
    "Horror": -0.6, "Thriller": -0.2, "Romance": 0.1, "Science Fiction": 0.0, "Family": 0.1,
}  # fmt: skip
US_ONLY = '[{"iso_3166_1": "US", "name": "United States of America"}]'
LANGUAGES = ("en", "en", "en", "en", "fr", "es", "de", "ja", "hi")
COMPANIES = ("Paramount", "Universal", "Warner Bros.", "Lionsgate", "Pixar", "A24", "Miramax")
ACTORS = tuple(f"Actor {i}" for i in range(60))
DIRECTORS = tuple(f"Director {i}" for i in range(25))


def _pick(rng: np.random.Generator, items, size=None, replace: bool = True):
    """``rng.choice(items, size, replace)`` as Python values, the same draws: ``choice`` draws
    indices the same way for a sequence as for its length, and with replacement as
    ``integers`` does. It skips converting ``items`` to an array at each of the 60,000 movies
    of the largest benchmark."""
    if replace:
        index = rng.integers(0, len(items), size=size)
    else:
        index = rng.choice(len(items), size=size, replace=False)
    return items[index] if size is None else [items[i] for i in index]


def _named(names, id_base: int) -> str:
    return json.dumps([{"id": id_base + i, "name": n} for i, n in enumerate(names)])


def make_tmdb(
    n_movies: int = 2000,
    seed: int = 0,
    noise: float = 0.35,
    unrated_fraction: float = 0.01,
    with_credits: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Movies (and credits) frames as the Kaggle CSVs would be read, all cells text."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(10, 50 * n_movies + 10), size=n_movies, replace=False)
    genre_names = list(GENRE_EFFECTS)
    director_effect = rng.normal(0.0, 0.3, size=len(DIRECTORS))

    movies, credits = [], []
    for movie_id in ids:
        n_warm, n_dark = rng.binomial(2, 0.35), rng.binomial(2, 0.35)
        words = _pick(rng, WARM_WORDS, n_warm) + _pick(rng, DARK_WORDS, n_dark)
        words += _pick(rng, NEUTRAL_WORDS, rng.integers(1, 3))
        rng.shuffle(words)
        title = " ".join(words).title()
        genres = _pick(rng, genre_names, rng.integers(1, 4), replace=False)
        log_budget = rng.normal(16.5, 1.2)
        runtime = min(max(float(rng.normal(105, 18)), 60.0), 220.0)
        director = int(rng.integers(len(DIRECTORS)))
        rating = (
            6.1
            + 0.8 * (n_warm - n_dark)
            + sum(GENRE_EFFECTS[g] for g in genres)
            + 0.15 * (log_budget - 16.5)
            + 0.01 * (runtime - 105)
            + director_effect[director]
            + rng.normal(0.0, noise)
        )
        rating = min(max(float(np.round(rating, 1)), 1.0), 9.8)
        vote_count = int(rng.lognormal(5.5, 1.5)) + 1
        if rng.random() < unrated_fraction:
            rating, vote_count = 0.0, 0
        budget = int(np.exp(log_budget))
        year = int(rng.integers(1950, 2017))
        movies.append(
            {
                "budget": str(budget),
                "genres": _named(genres, 1),
                "homepage": None if rng.random() < 0.6 else f"http://example.org/{movie_id}",
                "id": str(movie_id),
                "keywords": _named(_pick(rng, words, min(2, len(words)), replace=False), 100),
                "original_language": _pick(rng, LANGUAGES),
                "original_title": title,
                "overview": f"A story about {' and '.join(words).lower()}.",
                "popularity": f"{vote_count / 40 * rng.lognormal(0, 0.3):.6f}",
                "production_companies": _named(_pick(rng, COMPANIES, 1), 300),
                "production_countries": US_ONLY,
                "release_date": f"{year}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}",
                "revenue": str(int(budget * rng.lognormal(0.8, 0.8))),
                "runtime": f"{runtime:.1f}",
                "spoken_languages": '[{"iso_639_1": "en", "name": "English"}]',
                "status": "Released",
                "tagline": None if rng.random() < 0.2 else f"{title}.",
                "title": title,
                "vote_average": f"{rating:.1f}",
                "vote_count": str(vote_count),
            }
        )
        cast = [
            {"cast_id": k, "character": f"Role {k}", "name": str(a), "order": k}
            for k, a in enumerate(_pick(rng, ACTORS, 4, replace=False))
        ]
        crew = [{"department": "Directing", "job": "Director", "name": DIRECTORS[director]}]
        credits.append(
            {
                "movie_id": str(movie_id),
                "title": title,
                "cast": json.dumps(cast),
                "crew": json.dumps(crew),
            }
        )
    movies_frame = pd.DataFrame(movies, columns=list(MOVIE_COLUMNS)).astype(object)
    credits_frame = pd.DataFrame(credits, columns=list(CREDIT_COLUMNS)) if with_credits else None
    return movies_frame, credits_frame


def write_tmdb(directory: str | Path, **kwargs) -> None:
    """Write synthetic ``tmdb_5000_movies.csv`` (and credits) files, e.g. for CLI tests."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    movies, credits = make_tmdb(**kwargs)
    movies.to_csv(directory / MOVIES_FILE, index=False)
    if credits is not None:
        credits.to_csv(directory / CREDITS_FILE, index=False)
