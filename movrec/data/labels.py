"""What a person reads to recognise a movie, for recommendation tables and the projector."""

from __future__ import annotations

import pandas as pd

from movrec.data.cells import parse_names


def movie_labels(movies: pd.DataFrame) -> pd.DataFrame:
    """What a person reads to recognise a movie: TMDb id, title, year, genres."""
    years = movies["release_date"].astype(str).str[:4] if "release_date" in movies else ""
    return pd.DataFrame(
        {
            "movie_id": movies["movie_id"].to_numpy(),
            "title": movies["title"].to_numpy(),
            "year": pd.Series(years, index=movies.index).where(lambda y: y.str.isdigit(), ""),
            "genres": [", ".join(parse_names(c, None, "genres")) for c in movies["genres"]]
            if "genres" in movies
            else "",
        },
        index=movies.index,
    )
