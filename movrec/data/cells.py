"""TMDb cells: lists stored as JSON text, dates, words. Malformed cells become empty or
missing values, counted in a :class:`~movrec.data.tmdb.CleaningReport` when one is given."""

from __future__ import annotations

import json

import pandas as pd

from movrec.data.tmdb import CleaningReport
from movrec.data.vocab import tokenize

TOP_CAST = 5  # top-billed actors per movie


def parse_items(cell: object, report: CleaningReport | None, column: str) -> list[dict]:
    """The dicts of a TMDb JSON list cell; a malformed cell is an empty list (counted)."""
    if not isinstance(cell, str):
        return []
    try:
        items = json.loads(cell)
        if not isinstance(items, list):
            raise ValueError
    except ValueError:
        if report is not None:
            report.add(f"{column}: malformed JSON -> empty", 1)
        return []
    return [item for item in items if isinstance(item, dict)]


def parse_names(cell: object, report: CleaningReport | None, column: str) -> list[str]:
    return [str(item["name"]) for item in parse_items(cell, report, column) if "name" in item]


def release_dates(frame: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(frame["release_date"], errors="coerce", format="%Y-%m-%d")


def people(frame: pd.DataFrame, report: CleaningReport | None) -> list[list[str]]:
    """Director(s) and top-billed cast of each movie (credits columns; empty without them)."""
    out = [[] for _ in range(len(frame))]
    if "crew" in frame.columns:
        for row, cell in enumerate(frame["crew"]):
            out[row] += [
                f"director:{item['name']}"
                for item in parse_items(cell, report, "crew")
                if item.get("job") == "Director" and "name" in item
            ]
    if "cast" in frame.columns:
        for row, cell in enumerate(frame["cast"]):
            out[row] += [f"cast:{n}" for n in parse_names(cell, report, "cast")[:TOP_CAST]]
    return out


def words(frame: pd.DataFrame, column: str, report: CleaningReport | None) -> list[list[str]]:
    if column not in frame.columns:
        return [[] for _ in range(len(frame))]
    if column == "keywords":
        return [tokenize(" ".join(parse_names(c, report, column))) for c in frame[column]]
    return [tokenize(c) if isinstance(c, str) and c != "Unknown" else [] for c in frame[column]]


def tags(
    frame: pd.DataFrame, report: CleaningReport | None, counted: frozenset[str] = frozenset()
) -> list[list[str]]:
    """Each movie's people, production companies and keywords as named tags ("cast:...",
    "company:...", "keyword:..."): sets too wide for one-hot columns, embedded as a bag.
    Malformed cells are counted in ``report`` except in the ``counted`` columns (the feature
    pipeline parsed and counted those already)."""

    def reporting(*columns: str) -> CleaningReport | None:
        return None if counted.intersection(columns) else report

    out = people(frame, reporting("crew", "cast"))
    for column, prefix in (("production_companies", "company"), ("keywords", "keyword")):
        if column in frame.columns:
            for row, cell in enumerate(frame[column]):
                names = parse_names(cell, reporting(column), column)
                out[row] += [f"{prefix}:{n}" for n in names]
    return out
