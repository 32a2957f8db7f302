"""Full-catalogue top-N evaluation: each test user's ``k`` best-scored movies among every
catalogue movie they had not rated before the test, against the movies they liked in test.

This is the standard top-N protocol; the per-user metrics of the test step only re-rank a
user's own rated test movies, an easier task. Users are scored a chunk at a time, so memory is
O(chunk x movies) for the scores and O(users x k) for the result, whatever the number of users.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from movrec.data.histories import Histories
from movrec.evaluation.baselines import fit_biases

CHUNK_ROWS = 1 << 18  # user-movie pairs scored at once

# Scores of a chunk of users (positions 0..n_users-1 of the task) for every catalogue movie.
ScoreUsers = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class TopNTask:
    """Who is ranked and against what, as positions: ``seen`` (user, movie row) pairs are left
    out of each user's candidates, ``liked`` pairs are the relevant ones."""

    users: np.ndarray  # raw user ids, one per position
    n_movies: int
    seen: tuple[torch.Tensor, torch.Tensor]
    liked: tuple[torch.Tensor, torch.Tensor]

    @classmethod
    def build(
        cls,
        seen: pd.DataFrame,
        test: pd.DataFrame,
        movie_ids: pd.Index,
        threshold: float,
        max_users: int | None = None,
    ) -> TopNTask:
        """``seen`` and ``test``: ``user_id, movie_id, rating`` rows; ``movie_ids``: the
        catalogue's TMDb ids in row order. The users are those of ``test`` with a liked movie
        (a rating >= ``threshold``): the others have nothing to find; at most ``max_users`` of
        them, a seeded sample (scoring every movie for every user grows as users x movies)."""
        liked = test[test["rating"] >= threshold]
        users = np.sort(liked["user_id"].unique())
        if max_users is not None and len(users) > max_users:
            users = np.sort(np.random.default_rng(0).choice(users, max_users, replace=False))
        position = pd.Index(users)

        def pairs(frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
            frame = frame[frame["user_id"].isin(position)]
            user = position.get_indexer(frame["user_id"])
            movie = movie_ids.get_indexer(frame["movie_id"])
            order = np.argsort(user, kind="stable")
            return torch.from_numpy(user[order]), torch.from_numpy(movie[order].astype(np.int64))

        return cls(users, len(movie_ids), pairs(seen), pairs(liked))


def _rows_of(pairs: tuple[torch.Tensor, torch.Tensor], start: int, stop: int) -> slice:
    bounds = torch.searchsorted(pairs[0], torch.tensor([start, stop]))
    return slice(int(bounds[0]), int(bounds[1]))


def top_n_metrics(
    task: TopNTask, score: ScoreUsers, k: int = 10, chunk: int = 0,
    unrated: torch.Tensor | None = None,
) -> dict:  # fmt: skip
    """Recall@k and NDCG@k (binary gains) averaged over the task's users, ``chunk`` users at
    a time (default: about CHUNK_ROWS user-movie scores), and what the lists are made of: the
    share of the catalogue that appears in any list (``coverage@k``) and, given ``unrated``
    (a mask of the movies with no training rating), the share of slots they take."""
    chunk = chunk or max(1, CHUNK_ROWS // max(task.n_movies, 1))
    discount = 1.0 / torch.log2(torch.arange(k, dtype=torch.float64) + 2)
    ideal = discount.cumsum(0)
    recall = ndcg = 0.0
    listed = torch.zeros(task.n_movies, dtype=torch.long)
    for start in range(0, len(task.users), chunk):
        stop = min(start + chunk, len(task.users))
        scores = score(torch.arange(start, stop)).to(torch.float64).clone()
        seen = _rows_of(task.seen, start, stop)
        scores[task.seen[0][seen] - start, task.seen[1][seen]] = float("-inf")
        liked = _rows_of(task.liked, start, stop)
        relevant = torch.zeros_like(scores, dtype=torch.bool)
        relevant[task.liked[0][liked] - start, task.liked[1][liked]] = True
        top = scores.topk(min(k, task.n_movies), dim=1).indices
        listed += torch.bincount(top.flatten(), minlength=task.n_movies)
        hits = relevant.gather(1, top).to(torch.float64)
        n_relevant = relevant.sum(1)
        recall += float((hits.sum(1) / n_relevant).sum())
        gains = (hits * discount[: hits.shape[1]]).sum(1)
        ndcg += float((gains / ideal[n_relevant.clamp(max=k) - 1]).sum())
    n = max(len(task.users), 1)
    out = {
        f"full_recall@{k}": recall / n,
        f"full_ndcg@{k}": ndcg / n,
        f"coverage@{k}": float((listed > 0).double().mean()) if task.n_movies else 0.0,
    }
    if unrated is not None:
        slots = max(int(listed.sum()), 1)
        out[f"unrated_share@{k}"] = float(listed[unrated].sum()) / slots
    return out


def popularity_scores(seen: pd.DataFrame, movie_ids: pd.Index) -> torch.Tensor:
    """Each catalogue movie's number of ratings before the test: the popularity ranking."""
    counts = seen["movie_id"].value_counts().reindex(movie_ids, fill_value=0)
    return torch.tensor(counts.to_numpy(dtype=np.float64))


def same_for_everyone(scores: torch.Tensor) -> ScoreUsers:
    """One ranking for every user (popularity, movie bias)."""
    return lambda users: scores.expand(len(users), -1)


@torch.no_grad()
def model_scores(
    model: torch.nn.Module,
    movies: dict[str, torch.Tensor],
    user_vectors: torch.Tensor,
    user_bias: torch.Tensor,
) -> ScoreUsers:
    """A rating model's scores (unclipped, as rankings use them) for users given as vectors
    and biases, one row per task position: every movie is encoded once, then each chunk of
    users is paired with every movie."""
    model.eval()
    device = model.target_mean.device
    movie = model.net.movie({k: v.to(device) for k, v in movies.items()})
    n = len(movie)

    @torch.no_grad()
    def score(users: torch.Tensor) -> torch.Tensor:
        user, bias = user_vectors[users].to(device), user_bias[users].to(device)
        rows = (
            user.repeat_interleave(n, 0),
            bias.repeat_interleave(n),
            movie.repeat(len(users), 1),
        )
        return model.rate(*rows).view(len(users), n).cpu()

    return score


@torch.no_grad()
def ranking_scores(
    model: torch.nn.Module, movies: dict[str, torch.Tensor], histories: Histories
) -> ScoreUsers:
    """A ranking model's logits for users given by what they watched (a row of ``histories``
    per task position): every movie is encoded once, each chunk of users' bags once."""
    model.eval()
    device = model.target_mean.device
    ranking = model.net.ranking
    on_device = {k: v.to(device) for k, v in movies.items()}
    movie = ranking.movies(model.net.movie(on_device), on_device["movie_id"])

    @torch.no_grad()
    def score(users: torch.Tensor) -> torch.Tensor:
        bags = {k: v.to(device) for k, v in histories.bags(users).items()}
        vectors = ranking.users(bags["history"], bags["history_offsets"], bags["history_weights"])
        return ranking.scores(vectors, movie).cpu()

    return score


def list_scores(
    model: torch.nn.Module,
    movies: dict[str, torch.Tensor],
    histories: Histories,
    user_vectors: torch.Tensor,
    user_bias: torch.Tensor,
) -> ScoreUsers:
    """What a ranking model orders lists by (:meth:`RatingRegressor.list_score`): its
    logits from what users watched (``histories``) and, with a rating mix, its predicted
    ratings from their vectors and biases."""
    ranked = ranking_scores(model, movies, histories)
    if not model.hparams.get("rating_mix", 0.0):
        return ranked
    rated = model_scores(model, movies, user_vectors, user_bias)
    return lambda users: model.list_score(ranked(users), rated(users))


def catalogue_metrics(
    model: torch.nn.Module,
    datamodule: object,
    k: int,
    threshold: float,
    max_users: int | None = None,
    split: str = "test",
) -> dict[str, dict[str, float]]:
    """Full-catalogue metrics of a trained rating model and of the popularity and movie-bias
    rankings, on a ratings datamodule's split: candidates are every catalogue movie the user
    did not rate in train or validation (``split="val"``: in train; what settings are chosen
    by)."""
    seen, test = datamodule.user_ratings()
    if split == "val":
        seen, test = datamodule.frames["train"], datamodule.frames["val"]
    movies, tensors = datamodule.catalogue()
    movie_ids = pd.Index(movies["movie_id"])
    task = TopNTask.build(seen, test, movie_ids, threshold, max_users)
    index = torch.from_numpy(datamodule.preprocessing.users.encode(task.users))
    vectors = model.user_vectors(index)
    if model.ranks:
        histories = datamodule.histories(seen, pd.Index(task.users))
        scores = list_scores(model, tensors, histories, *vectors)
    else:
        scores = model_scores(model, tensors, *vectors)
    mean, _, movie_bias = fit_biases(seen)
    bias = torch.tensor(mean + movie_bias.reindex(movie_ids, fill_value=0.0).to_numpy())
    unrated = torch.from_numpy(~movie_ids.isin(datamodule.train_rows["movie_id"]))
    popularity = same_for_everyone(popularity_scores(seen, movie_ids))
    return {
        "model": top_n_metrics(task, scores, k, unrated=unrated),
        "popularity": top_n_metrics(task, popularity, k, unrated=unrated),
        "bias": top_n_metrics(task, same_for_everyone(bias), k, unrated=unrated),
    }


class RecentPopularity:
    """Each movie's training ratings in the ``years`` before a given time: what people were
    watching then. A new user's first ratings date them, and MovieLens' members of 2000 and of
    2015 watch different movies; all-time popularity ranks both by the whole history.

    Counts are kept per 30-day period (cumulative, periods x movies) plus the ratings
    themselves sorted by time for the part of the user's own period up to their time, so a
    window never looks past the given time and costs O(movies + one period) per user."""

    PERIOD = 30 * 86400  # seconds

    def __init__(self, seen: pd.DataFrame, movie_ids: pd.Index):
        rows = movie_ids.get_indexer(seen["movie_id"])
        known = rows >= 0  # as popularity_scores: only catalogue movies are counted
        times = seen["timestamp"].to_numpy(dtype=np.int64)[known]
        order = np.argsort(times, kind="stable")
        self.times, self.rows = times[order], rows[known][order]
        self.n_movies = n = len(movie_ids)
        self.origin = int(self.times[0] // self.PERIOD) if len(times) else 0
        periods = self.times // self.PERIOD - self.origin
        n_periods = int(periods[-1]) + 1 if len(times) else 0
        per_period = np.bincount((periods + 1) * n + self.rows, minlength=(n_periods + 1) * n)
        # Row p: ratings in the periods before p.
        self.before = per_period.reshape(n_periods + 1, n).cumsum(0).astype(np.float32)

    def counts(self, at: np.ndarray, years: float) -> torch.Tensor:
        """(len(at), movies): ratings per movie in the ``years`` up to each time in ``at``
        (unix seconds), that time included."""
        last = len(self.before) - 1
        period = np.clip(np.asarray(at, dtype=np.int64) // self.PERIOD - self.origin, 0, last)
        width = max(1, round(years * 365.25 * 86400 / self.PERIOD))
        out = self.before[period] - self.before[np.maximum(period - width, 0)]
        starts = np.searchsorted(self.times, (period + self.origin) * self.PERIOD, "left")
        stops = np.searchsorted(self.times, at, "right")
        for i, (start, stop) in enumerate(zip(starts, stops, strict=True)):
            if stop > start:
                out[i] += np.bincount(self.rows[start:stop], minlength=self.n_movies)
        return torch.from_numpy(out)
