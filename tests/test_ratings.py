"""User ratings (MovieLens schema) on TMDb movies: reading, joining, splitting, the datamodule."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import same_fit
from movrec.data import (
    MovielensSynthetic,
    MoviesDataModule,
    RatingsDataModule,
    TmdbSynthetic,
    ratings_datamodule,
)
from movrec.data.movielens import (
    _draw,
    _packed,
    _repeated,
    _stable_order,
    join_ratings,
    make_movielens,
    read_movielens,
    write_movielens,
)
from movrec.data.splits import split_ratings
from movrec.data.synthetic import _pick, make_tmdb
from movrec.data.tmdb import CleaningReport
from movrec.data.vocab import UNKNOWN_ID_INDEX
from movrec.errors import UserError
from movrec.evaluation.baselines import fit_biases, score_predictions
from movrec.models.metrics import ranking_at_k
from movrec.models.regressor import RatingRegressor

FEATURES = {"numeric": True, "categorical": True, "credits": True, "vote_average": True}
SYNTHETIC = {"n_movies": 400, "seed": 0}
USERS = {"n_users": 120, "ratings_per_user": 30, "seed": 0}


@pytest.fixture(scope="module")
def movies():
    return make_tmdb(**SYNTHETIC)[0]


@pytest.fixture(scope="module")
def dm():
    module = RatingsDataModule(
        TmdbSynthetic(**SYNTHETIC),
        MovielensSynthetic(**USERS),
        features=FEATURES,
        drop_unrated=False,
    )
    module.setup()
    return module


def test_join_counts_every_dropped_rating(movies):
    ratings, links, _ = make_movielens(movies, **USERS)
    bad = pd.DataFrame(
        {
            "userId": ["x", "1", "1", "1", "1", "1"],
            "movieId": ["1", "1", "2", f"{len(movies) + 1}", f"{len(movies) + 3}", "3"],
            "rating": ["4.0", "seven", "7.0", "4.0", "4.0", "3.0"],
            "timestamp": ["1", "2", "3", "4", "5", "not a time"],
        }
    )
    report = CleaningReport()
    joined = join_ratings(pd.concat([ratings, bad]), links, pd.to_numeric(movies["id"]), report)
    counts = report.counts
    assert counts["ratings dropped: user or movie id bad"] == 1
    assert counts["ratings dropped: rating missing or outside [0.5, 5]"] == 2
    assert counts["ratings dropped: timestamp missing or not a number"] == 1
    assert counts["links dropped: movieId or tmdbId missing"] == 2
    assert counts["ratings dropped: movie has no TMDb link"] == 1
    assert counts["ratings dropped: movie not among the TMDb movies"] == 1
    repeated = counts["ratings dropped: repeated (user, movie): latest kept"]
    assert counts["ratings kept"] == len(joined) == len(ratings) - repeated
    assert not joined.duplicated(["user_id", "movie_id"]).any()
    assert set(joined["movie_id"]) <= set(pd.to_numeric(movies["id"]))


def test_join_sorts_by_user_time_and_movie_id_and_keeps_the_latest_repeat():
    """The reference order (user, timestamp, TMDb id) whatever order the catalogue is in, and
    a repeated pair's latest rating; the packed sort keys hold past int64's range too."""
    ratings = pd.DataFrame(
        {
            "userId": ["2", "1", "1", "1", "1"],
            "movieId": ["3", "3", "1", "2", "3"],
            "rating": ["1.0", "2.0", "3.0", "4.0", "5.0"],
            "timestamp": ["9", "7", "7", "7", "8"],
        }
    )
    links = pd.DataFrame({"movieId": ["1", "2", "3"], "tmdbId": ["30", "20", "10"]})
    catalogue = pd.Series([30, 10, 20])  # neither by id nor by link
    joined = join_ratings(ratings, links, catalogue, CleaningReport())
    assert joined[["user_id", "movie_id", "timestamp"]].values.tolist() == [
        [1, 20, 7], [1, 30, 7], [1, 10, 8], [2, 10, 9],
    ]  # fmt: skip
    assert joined["rating"].tolist() == [4.0, 3.0, 5.0, 1.0]  # (1, movie 3): the latest, 5
    huge = np.array([0, 2**40, 0, 1]), np.array([5, 0, 5, 2**40])
    packed = _packed(*huge)
    assert packed[0] == packed[2] and packed[0] < packed[3] < packed[1]


def test_join_equals_a_pandas_reference_on_messy_ratings():
    """Repeats, ties of time, two MovieLens movies on one TMDb movie, unlinked and unknown
    movies, in random file order: the rows a plain pandas join keeps, in its order."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 400))
        ratings = pd.DataFrame(
            {
                "userId": rng.integers(1, 9, n),
                "movieId": rng.integers(1, 16, n),
                "rating": rng.choice([0.5, 3.0, 4.5, 5.0], n),
                "timestamp": rng.integers(0, 12, n),
            }
        )
        links = pd.DataFrame({"movieId": range(1, 15), "tmdbId": rng.integers(100, 110, 14)})
        catalogue = pd.Series(rng.permutation(np.arange(100, 108)))
        joined = join_ratings(ratings.copy(), links, catalogue, CleaningReport())

        latest = ratings.sort_values("timestamp", kind="stable")
        latest = latest.drop_duplicates(["userId", "movieId"], keep="last")
        latest = latest.merge(links, on="movieId", sort=False)
        latest = latest[latest["tmdbId"].isin(catalogue)]
        latest = latest.drop_duplicates(["userId", "tmdbId"], keep="last")
        expected = latest.sort_values(["userId", "timestamp", "tmdbId"])
        assert (
            joined.to_numpy().tolist()
            == expected[["userId", "tmdbId", "rating", "timestamp"]].to_numpy().tolist()
        )


def test_join_and_generator_shortcuts_equal_numpy_and_pandas():
    """The build's fast paths give numpy's and pandas' own answers, on each of their branches
    (16-bit keys, keys packed with positions, keys too wide for that)."""
    rng = np.random.default_rng(1)
    for key in (
        rng.integers(0, 7, 5000),
        rng.integers(-(10**6), 10**6, 5000),
        rng.integers(-(2**62), 2**62, 5000),
        np.array([], dtype=np.int64),
    ):
        assert np.array_equal(_stable_order(key), np.argsort(key, kind="stable"))
    user, movie = rng.integers(0, 30, 4000), rng.integers(0, 50, 4000)
    reference = pd.DataFrame({"u": user, "m": movie}).duplicated(keep="last").to_numpy()
    assert np.array_equal(_repeated(user, movie), reference)
    weights = rng.random(300)
    drawn = _draw(np.random.default_rng(2), weights, 10_000)
    expected = np.random.default_rng(2).choice(300, 10_000, p=weights / weights.sum())
    assert np.array_equal(drawn, expected)
    words = tuple(f"w{i}" for i in range(12))
    ours, numpy = np.random.default_rng(3), np.random.default_rng(3)
    for size, replace in ((None, True), (0, True), (3, True), (2, False), (12, False)):
        assert np.array_equal(_pick(ours, words, size, replace), numpy.choice(words, size, replace))


def test_missing_files_say_what_to_download(tmp_path, movies):
    with pytest.raises(FileNotFoundError, match="ml-latest-small"):
        read_movielens(tmp_path)
    write_movielens(tmp_path, movies, **USERS)
    ratings, links, sources = read_movielens(tmp_path)
    assert len(ratings) > 1000 and set(sources) == {"ratings", "links"}
    (tmp_path / "links.csv").write_text("movieId,imdbId\n1,2\n")
    with pytest.raises(ValueError, match=r"links.csv.*tmdbId"):
        read_movielens(tmp_path)


def test_splits_hold_their_promise(dm):
    ratings = pd.concat(dm.frames.values())
    random = split_ratings(ratings, "random", 0.2, 0.2, 42)
    assert sum(len(f) for f in random.values()) == len(ratings)
    assert len(random["test"]) == pytest.approx(0.2 * len(ratings), abs=1)

    cold = split_ratings(ratings, "cold_items", 0.2, 0.2, 42)
    train_movies = set(cold["train"]["movie_id"])
    assert not train_movies & set(cold["test"]["movie_id"])
    assert not train_movies & set(cold["val"]["movie_id"])
    assert sum(len(f) for f in cold.values()) == len(ratings)

    temporal = split_ratings(ratings, "temporal", 0.2, 0.2, 42)
    last_train = temporal["train"].groupby("user_id")["timestamp"].max()
    first_test = temporal["test"].groupby("user_id")["timestamp"].min()
    assert (last_train.reindex(first_test.index) <= first_test).all()
    assert set(temporal["test"]["user_id"]) <= set(temporal["train"]["user_id"])
    with pytest.raises(ValueError, match="data.split"):
        split_ratings(ratings, "by_genre", 0.2, 0.2, 42)


def test_one_example_per_rating_with_user_and_movie_inputs(dm):
    """A rating is stored as (movie row, user, rating); its movie's inputs are gathered."""
    assert set(dm.tensors["train"]) == {"movie_row", "user_id", "user_key", "rating"}
    train = dm.examples("train")
    rows = dm.tensors["train"]["movie_row"]
    assert torch.equal(train["title"], dm.movie_tensors["title"][rows])
    assert set(train) == {"movie_id", "title", "features", "user_id", "user_key", "rating"}
    assert len(train["rating"]) == len(dm.frames["train"])
    assert (train["user_id"] != UNKNOWN_ID_INDEX).all()
    np.testing.assert_array_equal(train["user_key"].numpy(), dm.frames["train"]["user_id"])
    assert dm.model_sizes()["n_user_ids"] == dm.frames["train"]["user_id"].nunique() + 1
    # TMDb's vote_average is a movie feature here: the target is the user's rating.
    assert "num:vote_average" in dm.preprocessing.features.names
    assert dm.preprocessing.target_mean == pytest.approx(dm.frames["train"]["rating"].mean())


def test_a_batch_holds_each_distinct_movie_once_and_predicts_as_rows_do(dm):
    """Loader batches carry each distinct movie's inputs once and a per-row index into them;
    the network's predictions equal those from a row-per-rating batch."""
    batch = next(iter(dm.val_dataloader()))
    rows = dm.tensors["val"]["movie_row"][: len(batch["rating"])]
    assert len(batch["title"]) == len(rows.unique()) < len(rows)
    assert torch.equal(batch["title"][batch["movie_index"]], dm.movie_tensors["title"][rows])
    per_row = dm.dataset("val").gather(torch.arange(len(rows)), distinct=False)
    assert "movie_index" not in per_row
    model = RatingRegressor(dm.model_sizes(), net={"hidden_sizes": [8]}).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(per_row))


def _cold_items(**options) -> RatingsDataModule:
    module = RatingsDataModule(
        TmdbSynthetic(**SYNTHETIC),
        MovielensSynthetic(**USERS),
        features=FEATURES,
        split="cold_items",
        **options,
    )
    module.setup()
    return module


def test_cold_items_test_movies_get_the_unknown_id():
    module = _cold_items()
    assert (module.examples("test")["movie_id"] == UNKNOWN_ID_INDEX).all()
    batch = next(iter(module.train_dataloader()))  # unknown users and movies are trained
    assert {"movie_id", "user_id"} <= set(batch)


def test_the_ranking_softmax_leaves_out_the_movies_the_split_holds_out():
    module = _cold_items(ranking={"history_dropout": 0.5})
    ids = pd.Index(module.movies["movie_id"])
    pool = set(ids[module.ranking_examples().pool.numpy()])
    frames = module.frames
    held_out = set(frames["val"]["movie_id"]) | set(frames["test"]["movie_id"])
    never_rated = set(ids) - held_out - set(frames["train"]["movie_id"])
    assert held_out and never_rated  # both kinds exist in the synthetic data
    assert pool == set(ids) - held_out  # cold movies are not released yet; unrated ones are
    module.train_on_validation_too()  # the refit learns the validation movies too
    pool = set(ids[module.ranking_examples().pool.numpy()])
    assert pool == set(ids) - set(frames["test"]["movie_id"])


@pytest.mark.parametrize(
    ("ranking", "message"),
    [
        ({"history_dropout": 1.0}, "data.ranking.history_dropout must be in [0, 1)"),
        ({"short_histories": 1.5}, "data.ranking.short_histories must be in [0, 1]"),
        ({"negatives": 0}, "data.ranking.negatives must be >= 1 or null"),
        ({"history_dropuot": 0.5}, "data.ranking: unknown setting(s) ['history_dropuot']"),
    ],
)
def test_ranking_settings_out_of_range_fail_in_one_line(ranking, message):
    with pytest.raises(UserError, match=re.escape(message)):
        RatingsDataModule(TmdbSynthetic(**SYNTHETIC), MovielensSynthetic(**USERS), ranking=ranking)


def test_preprocessing_is_fitted_on_training_ratings_only(dm, monkeypatch):
    poisoned = RatingsDataModule(
        TmdbSynthetic(**SYNTHETIC),
        MovielensSynthetic(**USERS),
        features=FEATURES,
        drop_unrated=False,
    )
    original = ratings_datamodule.join_ratings

    def poison(*args):
        ratings = original(*args)
        test = split_ratings(ratings, "random", 0.2, 0.2, 42)["test"].index
        ratings.loc[test, "rating"] = 0.5
        return ratings

    monkeypatch.setattr(ratings_datamodule, "join_ratings", poison)
    poisoned.setup()
    assert same_fit(poisoned.preprocessing, dm.preprocessing, dm.movies)
    assert (poisoned.tensors["test"]["rating"] == 0.5).all()


def test_tmdb_data_refuses_its_target_as_a_feature():
    with pytest.raises(ValueError, match="vote_average"):
        MoviesDataModule(TmdbSynthetic(**SYNTHETIC), features=FEATURES)


@pytest.mark.parametrize(
    ("option", "value"),
    [("split", "by_user"), ("unknown_user_rate", 1.5), ("movies", None), ("ratings", None)],
)
def test_bad_options_name_themselves(option, value):
    with pytest.raises(ValueError, match=option):
        sources = {"movies": TmdbSynthetic(**SYNTHETIC), "ratings": MovielensSynthetic(**USERS)}
        RatingsDataModule(**{**sources, option: value})


def test_state_dict_round_trip_gives_identical_tensors(dm):
    again = RatingsDataModule(
        TmdbSynthetic(**SYNTHETIC),
        MovielensSynthetic(**USERS),
        features=FEATURES,
        drop_unrated=False,
    )
    again.load_state_dict(dm.state_dict())
    again.setup()
    for split in ("train", "test"):
        for key, tensor in dm.tensors[split].items():
            assert torch.equal(again.tensors[split][key], tensor), (split, key)


def test_biases_recover_an_additive_truth():
    rng = np.random.default_rng(0)
    users, movies = rng.normal(0, 0.5, 30), rng.normal(0, 0.8, 40)
    pairs = [(u, m) for u in range(30) for m in range(40) if rng.random() < 0.5]
    frame = pd.DataFrame(pairs, columns=["user_id", "movie_id"])
    frame["rating"] = 3.5 + users[frame["user_id"]] + movies[frame["movie_id"]]
    mean, user_bias, movie_bias = fit_biases(frame, reg_user=0, reg_movie=0, rounds=50)
    pred = mean + frame["user_id"].map(user_bias) + frame["movie_id"].map(movie_bias)
    np.testing.assert_allclose(pred, frame["rating"], atol=1e-3)


def _reference_ranking(pred, target, users, k):
    """Precision / recall / NDCG at k per user, averaged over users with a relevant item."""
    precision, recall, ndcg = [], [], []
    for user in np.unique(users):
        p, t = pred[users == user], target[users == user]
        if not t.any():
            continue
        order = np.argsort(-p)[:k]
        hits = t[order]
        precision.append(hits.sum() / k)
        recall.append(hits.sum() / t.sum())
        gains = (hits / np.log2(np.arange(2, len(hits) + 2))).sum()
        ideal = (1 / np.log2(np.arange(2, min(k, t.sum()) + 2))).sum()
        ndcg.append(gains / ideal)
    return np.mean(precision), np.mean(recall), np.mean(ndcg)


def test_ranking_metrics_equal_a_reference_computation():
    rng = np.random.default_rng(1)
    users = rng.integers(0, 12, 600)
    ratings = rng.integers(1, 11, 600) / 2
    pred = ratings + rng.normal(0, 1.0, 600)
    got = score_predictions(
        torch.tensor(pred, dtype=torch.float32),
        torch.tensor(ratings, dtype=torch.float32),
        torch.tensor(users),
    )
    expected = _reference_ranking(pred, ratings >= 4, users, 10)
    actual = (got["precision@10"], got["recall@10"], got["ndcg@10"])
    np.testing.assert_allclose(actual, expected, rtol=1e-5)
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean((pred - ratings) ** 2)), rel=1e-5)


def test_ranking_metrics_equal_torchmetrics_and_skip_users_without_a_liked_movie():
    from torchmetrics.retrieval import (
        RetrievalNormalizedDCG,
        RetrievalPrecision,
        RetrievalRecall,
    )

    generator = torch.Generator().manual_seed(3)
    users = torch.randint(0, 300, (5000,), generator=generator)
    scores = torch.rand(5000, generator=generator)  # untied
    relevant = torch.rand(5000, generator=generator) < 0.2
    relevant[users == 7] = False  # a user with nothing to find is skipped, not scored 0
    got = ranking_at_k(scores, relevant, users, 10)
    options = {"top_k": 10, "empty_target_action": "skip"}
    for name, metric in (
        ("precision@10", RetrievalPrecision(**options)),
        ("recall@10", RetrievalRecall(**options)),
        ("ndcg@10", RetrievalNormalizedDCG(**options)),
    ):
        assert float(got[name]) == pytest.approx(float(metric(scores, relevant, users)), rel=1e-5)


def test_training_batches_are_one_seeded_permutation_per_epoch_shared_exactly_by_ranks(
    dm, monkeypatch
):
    """Each rank takes its own share of one permutation drawn from the seed and the epoch:
    together the ranks see every example once (the last ones repeated to even the shares)."""
    monkeypatch.setattr(dm, "unknown_rates", dict)  # every id shown: a rating is (user, movie)
    n = len(dm.tensors["train"]["rating"])
    ids = dm.movie_tensors["movie_id"][dm.tensors["train"]["movie_row"]]
    keys = dm.tensors["train"]["user_key"] * 100_000 + ids
    assert len(keys.unique()) == n

    def epoch_keys(rank: int, world: int, epoch: int) -> list[int]:
        batches = dm.train_batches(rank=rank, world=world)
        batches.epoch = lambda: epoch
        assert len(batches) == len(list(batches))
        return [k for b in batches for k in (b["user_key"] * 100_000 + b["movie_id"]).tolist()]

    shares = [epoch_keys(rank, 3, epoch=1) for rank in range(3)]
    assert len({len(share) for share in shares}) == 1  # equal shares
    together = sum(shares, [])
    assert set(together) == set(keys.tolist()) and len(together) - n == -n % 3
    assert epoch_keys(0, 1, epoch=1) == epoch_keys(0, 1, epoch=1) != epoch_keys(0, 1, epoch=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_batches_are_gathered_on_the_training_device(dm):
    batch = next(iter(dm.train_batches("cuda")))
    assert all(tensor.is_cuda for tensor in batch.values())
