"""Read the Kaggle TMDb 5000 files and clean them.

Cleaning here is stateless (it needs no statistics of the data); what must be fitted on the
training split (fill values, vocabularies) lives in :mod:`movrec.data.preprocessing`.
Every repair is counted in a :class:`CleaningReport` instead of being printed or done silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from movrec.errors import MissingFileError, UserError

MOVIES_FILE = "tmdb_5000_movies.csv"
CREDITS_FILE = "tmdb_5000_credits.csv"
KAGGLE_HINT = (
    'Download the Kaggle dataset "tmdb-movie-metadata" '
    "(https://www.kaggle.com/datasets/tmdb/tmdb-movie-metadata) and put "
    f"{MOVIES_FILE} (and optionally {CREDITS_FILE}; plain, .gz or .zip) in that folder, "
    "or point `data.movies.dir=...` (or the MOVREC_DATA_DIR environment variable) at the folder "
    "holding them. "
    "`data=synthetic` runs without any download."
)
REQUIRED_MOVIE_COLUMNS = ("id", "title", "vote_average")
REQUIRED_CREDIT_COLUMNS = ("movie_id", "title")
# Numeric columns that may be malformed or missing; filled later with training-split medians.
NUMERIC_COLUMNS = ("budget", "revenue", "popularity", "runtime", "vote_count")
UNKNOWN_TEXT_COLUMNS = ("homepage", "tagline")
MERGE_KEYS = ("id", "title")
RATING_RANGE = (0.0, 10.0)
TARGET = "vote_average"  # TMDb's mean user rating, 0-10: what every model predicts


@dataclass
class CleaningReport:
    """Ordered counts of what cleaning changed; one line per kind of repair."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, what: str, n: int) -> None:
        self.counts[what] = self.counts.get(what, 0) + int(n)

    def require_rows(self, frame: pd.DataFrame, source: str, what: str) -> None:
        """A clear error, with what cleaning removed, when nothing is left to learn from."""
        if len(frame):
            return
        repairs = "; ".join(f"{k}: {v}" for k, v in self.counts.items() if v or k == "rows read")
        raise UserError(f"{source}: no {what} left after cleaning (counts: {repairs})")

    def table(self) -> str:
        """The repairs that happened; checks that found nothing are summed up in one line."""
        done = {k: v for k, v in self.counts.items() if v}
        width = max((len(k) for k in done), default=10)
        lines = [f"{'repair':<{width}}  count", f"{'-' * width}  -----"]
        lines += [f"{k:<{width}}  {v:>5}" for k, v in done.items()]
        if len(done) < len(self.counts):
            lines.append(f"({len(self.counts) - len(done)} other checks: nothing to repair)")
        return "\n".join(lines)


def find_table(directory: str | Path, name: str) -> Path | None:
    """The first of ``name``, ``name.gz``, ``name.zip`` present in ``directory``."""
    directory = Path(directory)
    for candidate in (name, f"{name}.gz", f"{name}.zip"):
        if (directory / candidate).is_file():
            return directory / candidate
    return None


def read_table(path: Path) -> pd.DataFrame:
    """Read every cell as text so malformed numbers can be counted rather than crash the parse."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise UserError(
            f"{path}: the file is empty (expected a CSV file with a header row)"
        ) from None
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start}): save it as UTF-8"
        ) from err
    except (ValueError, OSError, EOFError) as err:  # pandas' ParserError is a ValueError
        reason = " ".join(str(err).split())
        raise UserError(f"{path}: cannot be read as a comma-separated CSV file ({reason})") from err
    if len(frame.columns) == 1 and any(sep in str(frame.columns[0]) for sep in ";\t|"):
        raise UserError(
            f"{path}: one column named {str(frame.columns[0])[:50]!r}...: the file is not "
            "comma-separated (save it as a comma-separated CSV file)"
        )
    return frame


def read_tmdb(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, str]]:
    """Raw movies and (optional) credits frames, plus the paths they came from."""
    directory = Path(directory).expanduser()
    movies_path = find_table(directory, MOVIES_FILE)
    if movies_path is None:
        raise MissingFileError(
            f"TMDb movies file not found: no {MOVIES_FILE}[.gz|.zip] in {directory.resolve()}. "
            + KAGGLE_HINT
        )
    credits_path = find_table(directory, CREDITS_FILE)
    sources = {"movies": str(movies_path)}
    credits = None
    if credits_path is not None:
        sources["credits"] = str(credits_path)
        credits = read_table(credits_path)
    return read_table(movies_path), credits, sources


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(
            f"{source}: missing column(s) {missing}; expected the Kaggle TMDb 5000 schema "
            f"(found {list(frame.columns)})"
        )


def _to_numeric(frame: pd.DataFrame, column: str, report: CleaningReport, label: str) -> None:
    """Coerce a text column to float; non-empty cells that are not numbers become NaN (counted)."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    report.add(f"{label}: not a number -> missing", int((values.isna() & raw.notna()).sum()))
    frame[column] = values.astype(float)


def _drop(frame: pd.DataFrame, mask: pd.Series, report: CleaningReport, what: str) -> pd.DataFrame:
    report.add(f"rows dropped: {what}", int(mask.sum()))
    return frame.loc[~mask]


def clean_movies(
    movies: pd.DataFrame,
    report: CleaningReport,
    source: str = MOVIES_FILE,
    require_target: bool = True,
    drop_unrated: bool = False,
) -> pd.DataFrame:
    """Typed, de-duplicated movies frame. Numeric gaps stay NaN for the fitted fill step.

    ``require_target=False`` is for prediction on new rows, which may have no rating yet.
    ``drop_unrated`` removes movies with ``vote_count == 0``: TMDb stores ``vote_average = 0``
    for them, which means "no rating", not a rating of zero.
    """
    target_columns = ("vote_average",) if require_target else ()
    _require_columns(movies, [c for c in REQUIRED_MOVIE_COLUMNS if c != "vote_average"], source)
    _require_columns(movies, target_columns, source)
    frame = movies.copy()
    report.add("rows read", len(frame))

    ids = pd.to_numeric(frame["id"], errors="coerce")
    bad_id = ids.isna() | (ids != np.floor(ids))
    frame["id"] = ids
    frame = _drop(frame, bad_id, report, "id missing or not an integer")
    frame["id"] = frame["id"].astype(np.int64)

    missing_title = frame["title"].isna()
    report.add("title missing -> empty", int(missing_title.sum()))
    frame["title"] = frame["title"].fillna("").astype(str)

    for column in UNKNOWN_TEXT_COLUMNS:
        if column in frame.columns:
            report.add(f"{column} missing -> 'Unknown'", int(frame[column].isna().sum()))
            frame[column] = frame[column].fillna("Unknown")

    for column in NUMERIC_COLUMNS:
        if column in frame.columns:
            _to_numeric(frame, column, report, column)

    if "vote_average" in frame.columns:
        _to_numeric(frame, "vote_average", report, "vote_average")
        if require_target:
            target = frame["vote_average"]
            frame = _drop(frame, target.isna(), report, "vote_average missing")
            low, high = RATING_RANGE
            outside = (frame["vote_average"] < low) | (frame["vote_average"] > high)
            frame = _drop(frame, outside, report, f"vote_average outside [{low:g}, {high:g}]")

    frame = _drop(frame, frame["id"].duplicated(keep="first"), report, "duplicate id")
    if drop_unrated:
        if "vote_count" not in frame.columns:
            raise UserError(f"{source}: data.drop_unrated needs the vote_count column")
        frame = _drop(frame, frame["vote_count"] == 0, report, "unrated (vote_count == 0)")
    for column in NUMERIC_COLUMNS:
        if column in frame.columns:
            report.add(f"{column} missing -> train median", int(frame[column].isna().sum()))
    return frame.reset_index(drop=True)


def merge_credits(
    movies: pd.DataFrame,
    credits: pd.DataFrame | None,
    on: str,
    report: CleaningReport,
    source: str = CREDITS_FILE,
) -> pd.DataFrame:
    """Attach credits and define ``movie_id``, the key the id vocabulary is built on.

    ``on="id"`` joins ``credits.movie_id`` to ``movies.id`` and keeps every movie.
    ``on="title"`` is the paper's inner join on title: duplicate titles multiply rows, and the
    id comes from the credits side. Without a credits file it is emulated from the movies'
    own (id, title) pairs, which the Kaggle credits file repeats row for row.
    """
    if on not in MERGE_KEYS:
        raise UserError(f"data.merge_on must be one of {list(MERGE_KEYS)}, got {on!r}")
    if credits is None:
        report.add("credits file absent: movies only", 1)
        keys = movies[["id", "title"]].rename(columns={"id": "movie_id"})
        credits = keys if on == "title" else None
    else:
        _require_columns(credits, REQUIRED_CREDIT_COLUMNS, source)
        credits = credits.copy()
        ids = pd.to_numeric(credits["movie_id"], errors="coerce")
        bad = ids.isna() | (ids != np.floor(ids))
        report.add("credits rows dropped: movie_id not an integer", int(bad.sum()))
        credits = credits.loc[~bad].assign(movie_id=ids[~bad].astype(np.int64))
        duplicated = credits["movie_id"].duplicated(keep="first")
        report.add("credits rows dropped: duplicate movie_id", int(duplicated.sum()))
        credits = credits.loc[~duplicated]

    if credits is None:
        return movies.assign(movie_id=movies["id"])
    if on == "id":
        merged = movies.merge(
            credits.drop(columns=["title"]), left_on="id", right_on="movie_id", how="left"
        )
        unmatched = merged["movie_id"].isna()
        report.add("movies without a credits row (kept)", int(unmatched.sum()))
        merged["movie_id"] = merged["id"]
        return merged
    merged = movies.merge(credits, on="title", how="inner")
    report.add("rows after merge on title (paper)", len(merged))
    absent = ~movies["title"].isin(credits["title"])
    report.add("rows dropped: title absent from credits", int(absent.sum()))
    return merged.reset_index(drop=True)
