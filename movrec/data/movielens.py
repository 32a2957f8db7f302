"""Read GroupLens MovieLens ratings and join them to TMDb 5000 movies through ``links.csv``.

Like :mod:`movrec.data.tmdb`, cleaning is stateless and every repair or dropped row is
counted in a :class:`~movrec.data.tmdb.CleaningReport`. The synthetic twin
(:func:`make_movielens`) plants user tastes (a favourite genre per user) that a working
personalised model recovers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from movrec.data.cells import parse_names
from movrec.data.tmdb import CleaningReport, find_table, read_table
from movrec.errors import MissingFileError, UserError

RATINGS_FILE = "ratings.csv"
LINKS_FILE = "links.csv"
RATING_COLUMNS = ("userId", "movieId", "rating", "timestamp")
LINK_COLUMNS = ("movieId", "tmdbId")
MOVIELENS_RANGE = (0.5, 5.0)
MOVIELENS_HINT = (
    'Download GroupLens MovieLens "ml-latest-small" (https://grouplens.org/datasets/movielens/) '
    f"and put {RATINGS_FILE} and {LINKS_FILE} (plain, .gz or .zip) in that folder, or point "
    "`data.ratings.dir=...` (or MOVREC_RATINGS_DIR) at the folder holding them. "
    "`data=movielens_synthetic` runs without any download."
)


def read_movielens(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Raw ratings and links frames (all cells text), plus the paths they came from."""
    directory = Path(directory).expanduser()
    frames, sources = {}, {}
    for name, columns in ((RATINGS_FILE, RATING_COLUMNS), (LINKS_FILE, LINK_COLUMNS)):
        path = find_table(directory, name)
        if path is None:
            raise MissingFileError(
                f"MovieLens file not found: no {name}[.gz|.zip] in {directory.resolve()}. "
                + MOVIELENS_HINT
            )
        frame = read_table(path)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise UserError(
                f"{path}: missing column(s) {missing}; expected the MovieLens schema "
                f"(found {list(frame.columns)})"
            )
        frames[name], sources[name.split(".")[0]] = frame, str(path)
    return frames[RATINGS_FILE], frames[LINKS_FILE], sources


def _integers(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    """Rows whose ``columns`` are all integers; converts them in place."""
    ok = pd.Series(True, index=frame.index)
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        ok &= values.notna() & (values == np.floor(values))
        frame[column] = values
    return ok


def join_ratings(
    ratings: pd.DataFrame,
    links: pd.DataFrame,
    movie_ids: pd.Series,
    report: CleaningReport,
) -> pd.DataFrame:
    """``user_id, movie_id`` (the TMDb id), ``rating, timestamp`` for ratings on known movies.

    Dropped and counted: malformed ids, ratings or timestamps, ratings outside MovieLens'
    0.5-5 scale, repeated (user, movie) pairs (the latest kept), movies without a TMDb link,
    and movies not among ``movie_ids`` (the TMDb movies frame).
    """
    ratings, links = ratings.reset_index(drop=True), links.reset_index(drop=True)
    report.add("ratings read", len(ratings))

    def drop(frame: pd.DataFrame, bad: pd.Series, what: str) -> pd.DataFrame:
        report.add(f"ratings dropped: {what}", int(bad.sum()))
        return frame.loc[~bad]

    ratings = drop(ratings, ~_integers(ratings, ("userId", "movieId")), "user or movie id bad")
    ratings["rating"] = pd.to_numeric(ratings["rating"], errors="coerce")
    low, high = MOVIELENS_RANGE
    ratings = drop(
        ratings,
        ~ratings["rating"].between(low, high),
        f"rating missing or outside [{low:g}, {high:g}]",
    )
    ratings["timestamp"] = pd.to_numeric(ratings["timestamp"], errors="coerce")
    ratings = drop(ratings, ratings["timestamp"].isna(), "timestamp missing or not a number")
    # Columns from here on: one int64 key per pair, so 25 M rows dedupe in seconds.
    user = ratings["userId"].to_numpy(dtype=np.int64)
    movie = ratings["movieId"].to_numpy(dtype=np.int64)
    rating = ratings["rating"].to_numpy(dtype=np.float32)
    stamp = ratings["timestamp"].to_numpy(dtype=np.int64)
    order = _stable_order(stamp)  # "latest" is by timestamp, then file order
    user, movie, rating, stamp = user[order], movie[order], rating[order], stamp[order]

    def keep(bad: np.ndarray, what: str) -> np.ndarray | slice:
        """The rows to keep: every row (a view, not a copy of 25 M) when none is bad."""
        dropped = int(bad.sum())
        report.add(f"ratings dropped: {what}", dropped)
        return ~bad if dropped else slice(None)

    kept = keep(_repeated(user, movie), "repeated (user, movie): latest kept")
    user, movie, rating, stamp = user[kept], movie[kept], rating[kept], stamp[kept]

    linked = _integers(links, ("movieId", "tmdbId"))
    report.add("links dropped: movieId or tmdbId missing", int((~linked).sum()))
    links = links.loc[linked].drop_duplicates("movieId", keep="first")
    tmdb = pd.Series(
        links["tmdbId"].to_numpy(dtype=np.int64), index=links["movieId"].to_numpy(dtype=np.int64)
    )
    position = tmdb.index.get_indexer(movie)
    kept = keep(position < 0, "movie has no TMDb link")
    tmdb_id = tmdb.to_numpy()[position[kept]]
    user, rating, stamp = user[kept], rating[kept], stamp[kept]
    catalogue = pd.Index(np.unique(movie_ids.to_numpy(dtype=np.int64)))
    movie_rank = catalogue.get_indexer(tmdb_id)
    kept = keep(movie_rank < 0, "movie not among the TMDb movies")
    user, tmdb_id, rating, stamp = user[kept], tmdb_id[kept], rating[kept], stamp[kept]
    movie_rank = movie_rank[kept]
    # Two MovieLens movies may link to one TMDb movie: keep a user's latest rating of it.
    kept = keep(_repeated(user, movie_rank), "two MovieLens movies on one TMDb movie: latest kept")
    user, tmdb_id, rating, stamp = user[kept], tmdb_id[kept], rating[kept], stamp[kept]
    movie_rank = movie_rank[kept]
    report.add("ratings kept", len(user))
    # Sorted by user, then time, then movie. The rows are in time order here, so each time's
    # dense rank is a running count, and the three keys pack into one int64. Sorted by user
    # first (a user's rows stay in time order), only a user's ratings of one second are left
    # out of order: the second sort is a pass over runs already in order.
    stamp_rank = np.concatenate([[0], np.cumsum(np.diff(stamp) != 0)]) if len(stamp) else stamp
    by_user = _stable_order(user)
    order = by_user[np.argsort(_packed(user, stamp_rank, movie_rank)[by_user], kind="stable")]
    return pd.DataFrame(
        {
            "user_id": user[order],
            "movie_id": tmdb_id[order],
            "rating": rating[order],
            "timestamp": stamp[order],
        }
    )


def _packed(*keys: np.ndarray) -> np.ndarray:
    """One int64 per row that sorts as the rows' ``keys`` do, lexicographically, and is equal
    exactly for equal rows. Past int64's range: each row's dense rank in ``np.lexsort`` order."""
    offsets = [k - k.min() if len(k) else k for k in keys]
    sizes = [int(k.max()) + 1 if len(k) else 1 for k in offsets]
    if np.prod([float(s) for s in sizes]) < 2.0**62:
        packed = np.zeros(len(keys[0]), dtype=np.int64)
        for key, size in zip(offsets, sizes, strict=True):
            packed = packed * size + key
        return packed
    order = np.lexsort(keys[::-1])
    changed = np.zeros(len(order), dtype=np.int64)
    for key in keys:
        changed[1:] |= np.diff(key[order]) != 0
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.cumsum(changed)
    return rank


def _stable_order(key: np.ndarray) -> np.ndarray:
    """``np.argsort(key, kind="stable")`` of integer keys: where a key's range and a row's
    position fit in one int64, a plain sort of them packed (25 M timestamps in 1 s, not 6)."""
    n = len(key)
    shift = max(n - 1, 1).bit_length()
    low = int(key.min()) if n else 0
    span = int(key.max()) - low if n else 0
    if span < 1 << 16:  # numpy sorts 16-bit keys by radix
        return np.argsort((key - low).astype(np.uint16), kind="stable")
    if span >= 1 << (63 - shift):
        return np.argsort(key, kind="stable")
    packed = np.sort(((key - low) << shift) | np.arange(n, dtype=np.int64))
    return packed & ((1 << shift) - 1)


def _side_by_side(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows in stable key order (each key's rows side by side, in row order), and for each
    but the last whether the next has the same key."""
    order = _stable_order(key)
    grouped = key[order]
    return order, grouped[1:] == grouped[:-1]


def _repeated(user: np.ndarray, movie: np.ndarray) -> np.ndarray:
    """Rows whose (user, movie) pair comes again later."""
    order, same_next = _side_by_side(_packed(user, movie))
    repeated = np.zeros(len(order), dtype=bool)
    repeated[order[:-1][same_next]] = True
    return repeated


def _draw(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    """``size`` indices drawn with probabilities proportional to ``weights``: the draws of
    ``rng.choice(len(weights), size, p=...)`` (uniforms through the cumulative weights), with
    the search on torch's threads (25 M draws in 2.5 s, not 6)."""
    cdf = (weights / weights.sum()).cumsum()
    cdf /= cdf[-1]
    uniform = torch.from_numpy(rng.random(size))
    return torch.searchsorted(torch.from_numpy(cdf), uniform, right=True).numpy()


def make_movielens(
    movies: pd.DataFrame,
    n_users: int = 300,
    ratings_per_user: int = 40,
    seed: int = 0,
    noise: float = 0.4,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Ratings and links frames in the MovieLens schema over TMDb-schema ``movies``, and each
    user's planted favourite genre (what a recommender should find).

    Each user has a favourite genre and a bias; a rating is the user's bias plus the movie's
    quality (its TMDb ``vote_average``, rescaled) plus 1.5 stars when the movie has the
    user's favourite genre, plus noise, rounded to half stars. Users rate popular movies more
    often, and their favourite genre three times as often (drawn with replacement, repeats
    dropped: a user rates about ``ratings_per_user`` distinct movies). Vectorised: the
    MovieLens-25M shape (160k users x 156 ratings) takes seconds. Two links have no TMDb id
    and one points outside the movies, so the join has something to count.
    """
    rng = np.random.default_rng(seed)
    tmdb_ids = pd.to_numeric(movies["id"]).to_numpy(dtype=np.int64)
    n_movies = len(tmdb_ids)
    quality = pd.to_numeric(movies["vote_average"], errors="coerce").fillna(0).to_numpy()
    quality = np.where(quality > 0, (quality - 6.0) * 0.5, 0.0)
    genres = [parse_names(cell, None, "genres") for cell in movies["genres"]]
    all_genres = sorted({g for names in genres for g in names})
    has_genre = np.zeros((n_movies, len(all_genres)), dtype=bool)  # movie x genre
    column = {g: i for i, g in enumerate(all_genres)}
    for movie, names in enumerate(genres):
        has_genre[movie, [column[g] for g in names]] = True
    votes = pd.to_numeric(movies["vote_count"], errors="coerce").fillna(0).to_numpy()
    popularity = np.log1p(votes) + 1.0

    favourite = rng.integers(len(all_genres), size=n_users)
    counts = np.minimum(n_movies, np.maximum(5, rng.poisson(ratings_per_user, size=n_users)))
    bias = rng.normal(0.0, 0.3, size=n_users)
    start = rng.integers(9e8, 1.4e9, size=n_users)
    # All users who love a genre draw their movies at once (with replacement; a user's repeats
    # are then dropped, so a user rates about `count` distinct movies).
    user = np.repeat(np.arange(n_users), counts)
    movie = np.empty(len(user), dtype=np.int64)
    loved = favourite[user]  # each row's user's genre
    by_genre = _stable_order(loved)  # each genre's rows, in row order
    ends = np.cumsum(np.bincount(loved, minlength=len(all_genres)))
    for genre, rows in enumerate(np.split(by_genre, ends[:-1])):
        weights = popularity * np.where(has_genre[:, genre], 3.0, 1.0)
        movie[rows] = _draw(rng, weights, len(rows))
    order, same_next = _side_by_side(user * n_movies + movie)
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = ~same_next
    first = np.sort(order[starts])  # each pair's first row
    user, movie = user[first], movie[first]
    likes = has_genre[movie, favourite[user]]
    noise_draw = rng.normal(0.0, noise, size=len(user))
    value = 3.2 + bias[user] + quality[movie] + 1.5 * likes - 0.5 + noise_draw
    first_row = np.searchsorted(user, np.arange(n_users))  # of each user
    order = np.arange(len(user)) - first_row[user]  # k-th rating of its user
    ratings = pd.DataFrame(
        {
            "userId": user + 1,
            "movieId": movie + 1,
            "rating": np.clip(np.round(value * 2) / 2, 0.5, 5.0).astype(np.float32),
            "timestamp": start[user] + 3600 * order + rng.integers(3600, size=len(user)),
        }
    )
    favourites = pd.Series(
        np.asarray(all_genres, dtype=object)[favourite],
        index=pd.Index(np.arange(1, n_users + 1), name="userId"),
        name="favourite_genre",
    )
    links = pd.DataFrame(
        {
            "movieId": [str(i + 1) for i in range(len(tmdb_ids))],
            "imdbId": [f"{i:07d}" for i in range(len(tmdb_ids))],
            "tmdbId": [str(i) for i in tmdb_ids],
        }
    )
    extra = pd.DataFrame(
        {
            "movieId": [str(len(tmdb_ids) + k) for k in (1, 2, 3)],
            "imdbId": ["0", "0", "0"],
            "tmdbId": [None, None, str(int(tmdb_ids.max()) + 1)],
        }
    )
    return ratings, pd.concat([links, extra], ignore_index=True), favourites


def write_movielens(directory: str | Path, movies: pd.DataFrame, **kwargs) -> None:
    """Write synthetic ``ratings.csv`` and ``links.csv`` files, e.g. for CLI tests."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ratings, links, _ = make_movielens(movies, **kwargs)
    ratings.to_csv(directory / RATINGS_FILE, index=False)
    links.to_csv(directory / LINKS_FILE, index=False)
