"""The prepared-data cache: a second build reads what the first wrote, and nothing else."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest
import torch

from movrec.data import RatingsDataModule
from movrec.data.movielens import write_movielens
from movrec.data.sources import MovielensFiles, TmdbFiles
from movrec.data.synthetic import make_tmdb, write_tmdb

FEATURES = {"numeric": True, "categorical": True, "credits": True, "vote_average": True}


@pytest.fixture
def files(tmp_path):
    movies_dir, ratings_dir = tmp_path / "tmdb", tmp_path / "ml"
    write_tmdb(movies_dir, n_movies=200, seed=0)
    write_movielens(ratings_dir, make_tmdb(n_movies=200, seed=0)[0], n_users=60, seed=0)
    return movies_dir, ratings_dir


def module(files, cache_dir, **options) -> RatingsDataModule:
    movies_dir, ratings_dir = files
    dm = RatingsDataModule(
        TmdbFiles(str(movies_dir)), MovielensFiles(str(ratings_dir)), features=FEATURES,
        cache_dir=str(cache_dir), **options,
    )  # fmt: skip
    dm.setup()
    return dm


def entries(cache_dir) -> list:
    return sorted(p for p in cache_dir.iterdir() if not p.name.startswith("."))


def test_a_second_build_reads_the_cache_and_equals_the_first(files, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = module(files, cache)
    assert len(entries(cache)) == 1
    assert "cache_dir" not in first.hparams  # a checkpoint does not carry this machine's path

    def no_reading(*args, **kwargs):
        raise AssertionError("the files were read again")

    monkeypatch.setattr(TmdbFiles, "read", no_reading)
    monkeypatch.setattr(MovielensFiles, "read", no_reading)
    second = module(files, cache)
    for split in ("train", "val", "test"):
        pd.testing.assert_frame_equal(second.frames[split], first.frames[split])
        for key, tensor in first.tensors[split].items():
            assert torch.equal(second.tensors[split][key], tensor), (split, key)
    pd.testing.assert_frame_equal(second.movies, first.movies)
    for key, tensor in first.movie_tensors.items():
        assert torch.equal(second.movie_tensors[key], tensor), key
    assert second.report.counts == first.report.counts
    assert second.summary() == first.summary()
    assert second.preprocessing.state_dict().keys() == first.preprocessing.state_dict().keys()
    row = first.movies.iloc[:5]
    again, fresh = second.fitted.transform(row), first.fitted.transform(row)
    assert all(torch.equal(again[k], fresh[k]) for k in fresh)


def test_a_changed_file_or_setting_builds_again(files, tmp_path):
    cache = tmp_path / "cache"
    base = module(files, cache)
    module(files, cache, batch_size=32, ranking={"history_dropout": 0.2})  # loader settings
    assert len(entries(cache)) == 1
    module(files, cache, split_seed=7)
    assert len(entries(cache)) == 2
    ratings = files[1] / "ratings.csv"
    frame = pd.read_csv(ratings)
    frame.iloc[:-1].to_csv(ratings, index=False)  # one rating fewer
    changed = module(files, cache)
    assert len(entries(cache)) == 3
    assert sum(map(len, changed.frames.values())) == sum(map(len, base.frames.values())) - 1


def test_a_cache_entry_that_would_run_code_is_refused_and_rebuilt(files, tmp_path):
    cache = tmp_path / "cache"
    module(files, cache)
    (entry,) = entries(cache)

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    (entry / "tensors.pt").write_bytes(pickle.dumps({"movie_tensors": Payload()}, protocol=2))
    rebuilt = module(files, cache)
    assert not (tmp_path / "pwned").exists()
    assert len(rebuilt.frames["train"]) > 0
    assert torch.load(entry / "tensors.pt", weights_only=True)["tensors"]  # written anew
