"""Reading and cleaning the Kaggle files: clear errors, counted repairs, the paper's merge."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest

from movrec.data.synthetic import make_tmdb, write_tmdb
from movrec.data.tmdb import (
    MOVIES_FILE,
    CleaningReport,
    clean_movies,
    merge_credits,
    read_tmdb,
)


def test_missing_movies_file_says_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        read_tmdb(tmp_path)
    message = str(err.value)
    assert MOVIES_FILE in message and "tmdb-movie-metadata" in message
    assert str(tmp_path.resolve()) in message and "data.movies.dir" in message


@pytest.mark.parametrize("compression", ["plain", "gz", "zip"])
def test_reads_plain_gz_and_zip(tmp_path, compression):
    movies, _ = make_tmdb(n_movies=30, seed=1)
    if compression == "plain":
        movies.to_csv(tmp_path / MOVIES_FILE, index=False)
    elif compression == "gz":
        movies.to_csv(tmp_path / f"{MOVIES_FILE}.gz", index=False)
    else:
        with zipfile.ZipFile(tmp_path / f"{MOVIES_FILE}.zip", "w") as archive:
            archive.writestr(MOVIES_FILE, movies.to_csv(index=False))
    read, credits, sources = read_tmdb(tmp_path)
    assert credits is None and "credits" not in sources
    assert len(read) == 30 and list(read.columns) == list(movies.columns)


def test_credits_read_when_present(tmp_path):
    write_tmdb(tmp_path, n_movies=20, seed=2)
    _, credits, sources = read_tmdb(tmp_path)
    assert len(credits) == 20 and "credits" in sources


def test_missing_column_is_named():
    movies, _ = make_tmdb(n_movies=10)
    with pytest.raises(ValueError, match=r"movies\.csv: missing column\(s\) \['vote_average'\]"):
        clean_movies(movies.drop(columns=["vote_average"]), CleaningReport(), source="movies.csv")


def test_malformed_cells_are_counted_repairs():
    movies, _ = make_tmdb(n_movies=12, seed=3)
    movies.loc[0, "budget"] = "lots"
    movies.loc[1, "runtime"] = None
    movies.loc[2, "id"] = "x17"
    movies.loc[3, "vote_average"] = None
    movies.loc[4, "vote_average"] = "eleven"
    movies.loc[5, "vote_average"] = "42"
    movies.loc[6, "id"] = movies.loc[7, "id"]
    movies.loc[8, "homepage"] = None
    movies.loc[9, "title"] = None
    report = CleaningReport()
    clean = clean_movies(movies, report)
    c = report.counts
    assert c["rows read"] == 12
    assert c["budget: not a number -> missing"] == 1
    assert c["budget missing -> train median"] == 1
    assert c["runtime missing -> train median"] == 1
    assert c["rows dropped: id missing or not an integer"] == 1
    assert c["vote_average: not a number -> missing"] == 1
    assert c["rows dropped: vote_average missing"] == 2
    assert c["rows dropped: vote_average outside [0, 10]"] == 1
    assert c["rows dropped: duplicate id"] == 1
    assert c["title missing -> empty"] == 1
    dropped = sum(v for k, v in c.items() if k.startswith("rows dropped"))
    assert len(clean) == 12 - dropped == 7
    assert clean["id"].dtype == np.int64 and clean["budget"].dtype == float
    assert not clean["homepage"].isna().any() and "Unknown" in set(clean["homepage"])
    assert "budget: not a number -> missing" in report.table()


def test_drop_unrated_is_counted():
    movies, _ = make_tmdb(n_movies=50, seed=4)
    movies.loc[:4, "vote_count"] = "0"
    report = CleaningReport()
    clean = clean_movies(movies, report, drop_unrated=True)
    assert report.counts["rows dropped: unrated (vote_count == 0)"] >= 5
    assert (clean["vote_count"] > 0).all()


def _clean(movies):
    return clean_movies(movies, CleaningReport())


def test_merge_on_id_keeps_every_movie_and_counts_missing_credits():
    movies, credits = make_tmdb(n_movies=20, seed=5)
    report = CleaningReport()
    merged = merge_credits(_clean(movies), credits.iloc[:15], "id", report)
    assert len(merged) == 20 and (merged["movie_id"] == merged["id"]).all()
    assert report.counts["movies without a credits row (kept)"] == 5
    assert merged["cast"].notna().sum() == 15


def test_merge_on_title_reproduces_the_papers_duplicates():
    movies, credits = make_tmdb(n_movies=20, seed=6)
    movies.loc[1, "title"] = movies.loc[0, "title"]  # one title shared by two movies
    credits["title"] = movies["title"]
    merged = merge_credits(_clean(movies), credits, "title", CleaningReport())
    assert len(merged) == 22  # the shared title pairs 2 x 2
    without = merge_credits(_clean(movies), None, "title", report := CleaningReport())
    assert len(without) == 22 and report.counts["credits file absent: movies only"] == 1


def test_bad_merge_key_is_named():
    movies, credits = make_tmdb(n_movies=5)
    with pytest.raises(ValueError, match="data.merge_on"):
        merge_credits(_clean(movies), credits, "imdb", CleaningReport())


def test_unreadable_file_names_the_path(tmp_path):
    (tmp_path / f"{MOVIES_FILE}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=MOVIES_FILE):
        read_tmdb(tmp_path)


def test_clean_frame_keeps_text_columns_as_text():
    movies, _ = make_tmdb(n_movies=5)
    clean = _clean(movies)
    assert isinstance(clean.loc[0, "title"], str)
    assert pd.api.types.is_float_dtype(clean["vote_average"])
