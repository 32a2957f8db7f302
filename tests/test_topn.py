"""Full-catalogue top-N evaluation (movrec.evaluation.topn) against a per-user reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from movrec.evaluation.topn import (
    RecentPopularity,
    TopNTask,
    popularity_scores,
    same_for_everyone,
    top_n_metrics,
)


def _ratings(rng: np.random.Generator, n: int, users: int, movies: int) -> pd.DataFrame:
    pairs = rng.choice(users * movies, size=n, replace=False)
    return pd.DataFrame(
        {
            "user_id": 100 + pairs // movies,
            "movie_id": 1000 + pairs % movies,
            "rating": rng.integers(1, 11, n) / 2,
        }
    )


def _reference(scores: np.ndarray, seen, test, users, movie_ids, k: int):
    recall, ndcg = [], []
    for position, user in enumerate(users):
        rated = set(seen.loc[seen["user_id"] == user, "movie_id"])
        liked = set(test.loc[(test["user_id"] == user) & (test["rating"] >= 4), "movie_id"])
        candidates = [
            (s, m) for s, m in zip(scores[position], movie_ids, strict=True) if m not in rated
        ]
        top = [m for _, m in sorted(candidates, key=lambda sm: -sm[0])[:k]]
        hits = np.array([m in liked for m in top], dtype=float)
        recall.append(hits.sum() / len(liked))
        discount = 1 / np.log2(np.arange(2, k + 2))
        ndcg.append((hits * discount[: len(hits)]).sum() / discount[: min(k, len(liked))].sum())
    return np.mean(recall), np.mean(ndcg)


@pytest.mark.parametrize("chunk", [0, 1, 7])
def test_full_catalogue_metrics_equal_a_per_user_reference(chunk):
    rng = np.random.default_rng(0)
    ratings = _ratings(rng, 3000, 60, 200)
    seen, test = ratings.iloc[:2000], ratings.iloc[2000:]
    movie_ids = pd.Index(np.arange(1000, 1200))
    task = TopNTask.build(seen, test, movie_ids, threshold=4.0)
    liked_users = np.sort(test.loc[test["rating"] >= 4, "user_id"].unique())
    np.testing.assert_array_equal(task.users, liked_users)  # users with nothing to find: none
    scores = rng.normal(size=(len(task.users), len(movie_ids)))
    got = top_n_metrics(task, lambda users: torch.from_numpy(scores[users.numpy()]), 10, chunk)
    expected = _reference(scores, seen, test, task.users, movie_ids, 10)
    np.testing.assert_allclose((got["full_recall@10"], got["full_ndcg@10"]), expected, rtol=1e-9)
    # Coverage: the distinct movies of the lists, recomputed by sorting each user's candidates.
    listed = set()
    for position, user in enumerate(task.users):
        rated = set(seen.loc[seen["user_id"] == user, "movie_id"])
        candidates = [(-scores[position, m], m) for m in range(len(movie_ids))
                      if movie_ids[m] not in rated]  # fmt: skip
        listed |= {m for _, m in sorted(candidates)[:10]}
    assert got["coverage@10"] == pytest.approx(len(listed) / len(movie_ids))


def test_a_movie_rated_before_the_test_is_never_recommended():
    seen = pd.DataFrame({"user_id": [1, 1], "movie_id": [10, 11], "rating": [5.0, 5.0]})
    test = pd.DataFrame({"user_id": [1], "movie_id": [12], "rating": [4.5]})
    task = TopNTask.build(seen, test, pd.Index([10, 11, 12, 13]), threshold=4.0)
    popular = popularity_scores(seen, pd.Index([10, 11, 12, 13]))
    assert popular.tolist() == [1.0, 1.0, 0.0, 0.0]
    # The two most popular movies are the user's own: the next best is the liked one.
    scores = popular + torch.tensor([0.0, 0.0, 0.5, 0.0])
    unrated = torch.tensor([False, False, True, True])
    got = top_n_metrics(task, same_for_everyone(scores), k=1, unrated=unrated)
    # One list of one movie: a quarter of the catalogue, and a movie nobody had rated.
    assert got == {
        "full_recall@1": 1.0, "full_ndcg@1": 1.0, "coverage@1": 0.25, "unrated_share@1": 1.0
    }  # fmt: skip


def test_recent_popularity_counts_exactly_the_ratings_in_the_window_up_to_each_time():
    rng = np.random.default_rng(0)
    day = 86400
    seen = pd.DataFrame(
        {
            "movie_id": rng.integers(0, 30, 3000) * 10,
            "timestamp": rng.integers(1_000 * day, 4_000 * day, 3000),
        }
    )
    movie_ids = pd.Index(np.arange(0, 300, 10))
    recent = RecentPopularity(seen, movie_ids)
    times = np.array([0, 1_000 * day, 1_500 * day + 7, 2_222 * day, 3_999 * day, 9_000 * day])
    for years in (0.25, 1.0, 3.0):
        counts = recent.counts(times, years).numpy()
        width = max(1, round(years * 365.25 * day / recent.PERIOD))
        for t, row in zip(times, counts, strict=True):
            # The window starts at a 30-day period boundary and ends at t itself.
            period = min(
                max(t // recent.PERIOD, recent.origin), recent.origin + len(recent.before) - 1
            )
            start = (period - width) * recent.PERIOD
            inside = seen[(seen["timestamp"] >= start) & (seen["timestamp"] <= t)]
            expected = inside["movie_id"].value_counts().reindex(movie_ids, fill_value=0)
            np.testing.assert_array_equal(row, expected.to_numpy())
    assert recent.counts(times[:1], 1.0).sum() == 0  # before the first rating: nothing
    # A rated movie outside the catalogue is not counted (nor written into another's column).
    outside = pd.concat([seen, pd.DataFrame({"movie_id": [7], "timestamp": [2_000 * day]})])
    np.testing.assert_array_equal(
        RecentPopularity(outside, movie_ids).counts(times, 3.0), recent.counts(times, 3.0)
    )
