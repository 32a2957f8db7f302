"""New users: fit a user vector and bias from a few ratings, the rest of the model fixed.

Each new user starts from the learned unknown user (the population's average taste, trained
on the ratings whose user was hidden) and is pulled back towards it by an L2 penalty, so a
handful of ratings moves them only as far as the ratings justify. All users are fitted at once
(their losses are independent), on movie encodings computed once.

:func:`evaluate` measures it on the ``cold_users`` split: each test user's first ``n`` ratings
(by time) are folded in, the rest are scored, next to the unknown-user model, the user + movie
bias baseline fitted the same way, and the popularity ranking.
"""

from __future__ import annotations

from itertools import product

import numpy as np
import pandas as pd
import torch

from movrec.errors import UserError
from movrec.evaluation.baselines import fit_biases, score_predictions
from movrec.evaluation.topn import (
    RecentPopularity,
    ScoreUsers,
    TopNTask,
    list_scores,
    model_scores,
    popularity_scores,
    same_for_everyone,
    top_n_metrics,
)

# The bias baseline's user regularisation (Surprise BaselineOnly's reg_u), for its fold-in.
BIAS_REG_USER = 15.0


def fold_in(
    model: torch.nn.Module,
    movies: dict[str, torch.Tensor],
    users: torch.Tensor,
    rows: torch.Tensor,
    ratings: torch.Tensor,
    n_users: int,
    l2: float = 0.1,
    steps: int = 100,
    lr: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors (n_users, dim) and biases (n_users,) fitted to ``ratings`` of movie ``rows``
    by the users at positions ``users``: each user's mean squared error (in the model's
    standardised units) plus ``l2`` times their squared distance from the unknown user."""
    net = model.eval().net
    if net.users is None:
        raise UserError("fold-in needs a model trained on user ratings (experiment=recommend)")
    was = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        with torch.no_grad():
            movie = net.movie({k: v[rows] for k, v in movies.items()})
        start_vector, start_bias = model.unknown_user()
        vectors = start_vector.repeat(n_users, 1).requires_grad_(True)
        bias = start_bias.repeat(n_users).requires_grad_(True)
        target = (ratings - model.target_mean) / model.target_std
        counts = torch.bincount(users, minlength=n_users).clamp(min=1)
        optimizer = torch.optim.Adam([vectors, bias], lr=lr)
        for _ in range(steps):
            optimizer.zero_grad()
            raw = model.standardised_rate(vectors[users], bias[users], movie)
            squared = torch.zeros(n_users).index_add_(0, users, (raw - target).square())
            penalty = (vectors - start_vector).square().sum(1) + (bias - start_bias).square()
            (squared / counts + l2 * penalty).sum().backward()
            optimizer.step()
    finally:
        for parameter, requires_grad in zip(model.parameters(), was, strict=True):
            parameter.requires_grad_(requires_grad)
    return vectors.detach(), bias.detach()


def history_and_rest(test: pd.DataFrame, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's first ``n`` ratings by time (ties by movie id), and the others. Users with
    no more than ``n`` ratings have nothing left to score and are left out of both."""
    ordered = test.sort_values(["user_id", "timestamp", "movie_id"], kind="stable")
    position = ordered.groupby("user_id", sort=False).cumcount()
    keep = ordered["user_id"].map(ordered["user_id"].value_counts()) > n
    return ordered[keep & (position < n)], ordered[keep & (position >= n)]


# Fold-in settings tried on the validation users: the L2 pull towards the unknown user (by
# RMSE), then, by NDCG, how the ranking adds popularity to the predicted rating: a rating model
# says how much a user would like a movie, not whether they would watch it, and ranked alone it
# fills the top 10 with well-liked obscure movies. The ranking score is
#   predicted rating + popularity_weight * log(1 + training ratings)
#                    + recent_weight * log(1 + training ratings in the recent_years before
#                                          the user's last folded-in rating)
L2_GRID = (0.1, 1.0, 10.0, 100.0)
RANKING_GRID = {
    "popularity_weight": (0.0, 0.5, 1.0, 2.0),
    "recent_weight": (0.0, 0.5, 1.0, 2.0),
    "recent_years": (1.0, 2.0, 3.0, 5.0),
}
SETTINGS = ("l2", *RANKING_GRID)
# What a ranking model's lists take of the grid: no popularity, the first window.
NO_PRIOR = {
    "popularity_weight": 0.0, "recent_weight": 0.0,
    "recent_years": RANKING_GRID["recent_years"][0],
}  # fmt: skip


def popularity_prior(
    settings: dict[str, float], popularity: torch.Tensor, recent: torch.Tensor
) -> torch.Tensor:
    """What the ranking adds to the predicted rating (:data:`RANKING_GRID`'s weights):
    ``popularity`` (movies,) all-time training ratings, ``recent`` (users, movies) those in the
    recent window of each user. The evaluation and ``movrec new-user`` both rank with it."""
    overall = settings["popularity_weight"] * torch.log1p(popularity.double())
    return overall + settings["recent_weight"] * torch.log1p(recent.double())


def new_user_metrics(
    model: torch.nn.Module,
    datamodule: object,
    n: int,
    k: int = 10,
    threshold: float = 4.0,
    settings: dict[str, float | None] | None = None,
    max_users: int | None = None,
) -> dict[str, dict[str, float]]:
    """Fold-in from each test user's first ``n`` ratings, scored on the rest: RMSE / MAE /
    R² and full-catalogue Recall / NDCG @ k (candidates: every movie not in the history) of
    the fold-in, the unknown-user model, the bias baseline and the popularity rankings.
    ``settings`` (:data:`SETTINGS`) left None are chosen on the validation users."""
    if datamodule.hparams.split != "cold_users":
        raise UserError("the fold-in is measured on new users: data.split=cold_users")
    unknown = set(settings or {}) - set(SETTINGS)
    if unknown:
        raise UserError(f"unknown fold_in settings {sorted(unknown)}; known: {list(SETTINGS)}")
    settings = {name: (settings or {}).get(name) for name in SETTINGS}
    seen, val, test = (datamodule.frames[name] for name in ("train", "val", "test"))
    context = CatalogueFoldIn(model, datamodule, seen, k, threshold, max_users)
    if settings["l2"] is None:
        settings["l2"] = min(L2_GRID, key=lambda c: context.fold(val, n, c).rmse())
    if model.ranks:  # lists come from the ranking part alone, with no popularity added:
        # nothing to search (the window is then the recent-popularity row's alone)
        settings.update({name: settings[name] or value for name, value in NO_PRIOR.items()})
    if any(settings[name] is None for name in RANKING_GRID):
        settings.update(context.fold(val, n, settings["l2"]).best_ranking(settings))
    out = context.fold(test, n, settings["l2"]).report(settings)
    out["chosen"] = settings
    return out


class CatalogueFoldIn:
    """Folds users into one trained model against its catalogue: what every fold-in of a run
    shares (the model, the movies, the training ratings' popularity rankings)."""

    def __init__(self, model, datamodule, seen, k, threshold, max_users):
        self.model, self.seen, self.k, self.threshold = model, seen, k, threshold
        self.datamodule = datamodule
        self.max_users = max_users
        movies, self.tensors = datamodule.catalogue()
        self.movie_ids = pd.Index(movies["movie_id"])
        self.popularity = popularity_scores(seen, self.movie_ids)
        self.recent = RecentPopularity(seen, self.movie_ids)

    def fold(self, users_ratings: pd.DataFrame, n: int, l2: float) -> FoldedUsers:
        return FoldedUsers(self, users_ratings, n, l2)


class FoldedUsers:
    """One set of users' first ``n`` ratings folded in, ready to be scored and ranked."""

    def __init__(self, context: CatalogueFoldIn, users_ratings: pd.DataFrame, n: int, l2: float):
        self.context, self.n = context, n
        ids = context.movie_ids
        self.history, self.rest = history_and_rest(users_ratings, n)
        self.task = TopNTask.build(
            self.history, self.rest, ids, context.threshold, context.max_users
        )
        self.users = pd.Index(np.sort(self.rest["user_id"].unique()))  # scored, liked or not
        model = context.model
        ratings = torch.tensor(self.history["rating"].to_numpy(dtype=np.float32))
        self.vectors, self.bias = fold_in(
            model, context.tensors, self._positions(self.history), self._rows(self.history),
            ratings, len(self.users), l2,
        )  # fmt: skip
        self.liked = torch.from_numpy(self.users.get_indexer(self.task.users).astype(np.int64))
        # The time each ranked user is at: their last folded-in rating.
        last = self.history.groupby("user_id")["timestamp"].max()
        self.times = last.reindex(self.task.users).to_numpy(dtype=np.int64)

    def _positions(self, frame: pd.DataFrame) -> torch.Tensor:
        return torch.from_numpy(self.users.get_indexer(frame["user_id"]).astype(np.int64))

    def _rows(self, frame: pd.DataFrame) -> torch.Tensor:
        ids = self.context.movie_ids
        return torch.from_numpy(ids.get_indexer(frame["movie_id"]).astype(np.int64))

    def predicted(self, vectors: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Clipped predicted ratings of the scored (rest) rows."""
        pred = _rate(
            self.context.model, self.context.tensors, vectors, bias,
            self._positions(self.rest), self._rows(self.rest),
        )  # fmt: skip
        return self.context.model.clip(pred)

    def rmse(self) -> float:
        target = torch.tensor(self.rest["rating"].to_numpy(dtype=np.float32))
        return score_predictions(self.predicted(self.vectors, self.bias), target)["rmse"]

    def prior(self, settings: dict[str, float]) -> ScoreUsers:
        """The popularity part of the ranking score, for chunks of ranked users."""
        context = self.context

        def prior(users: torch.Tensor) -> torch.Tensor:
            recent = (
                context.recent.counts(self.times[users.numpy()], settings["recent_years"])
                if settings["recent_weight"]
                else torch.zeros(len(users), 1)  # not counted when it weighs nothing
            )
            return popularity_prior(settings, context.popularity, recent)

        return prior

    def scores(self, vectors: torch.Tensor, bias: torch.Tensor) -> ScoreUsers:
        c = self.context
        return model_scores(c.model, c.tensors, vectors[self.liked], bias[self.liked])

    def ranked(self, score: ScoreUsers) -> dict[str, float]:
        return top_n_metrics(self.task, score, self.context.k)

    def best_ranking(self, fixed: dict[str, float | None]) -> dict[str, float]:
        """The ranking weights (those not ``fixed``) with the highest NDCG; every user's
        predicted ratings are scored once and kept (users x movies)."""
        rated = self.scores(self.vectors, self.bias)(torch.arange(len(self.task.users)))
        grids = {name: [fixed[name]] if fixed[name] is not None else values
                 for name, values in RANKING_GRID.items()}  # fmt: skip
        candidates = [dict(zip(grids, values, strict=True)) for values in product(*grids.values())]

        def ndcg(settings: dict[str, float]) -> float:
            prior = self.prior(settings)
            score = lambda users: rated[users].double() + prior(users)  # noqa: E731
            return self.ranked(score)[f"full_ndcg@{self.context.k}"]

        return max(candidates, key=ndcg)

    def report(self, settings: dict[str, float]) -> dict[str, dict[str, float]]:
        context, model = self.context, self.context.model
        target = torch.tensor(self.rest["rating"].to_numpy(dtype=np.float32))
        prior = self.prior(settings)
        vector, bias = model.unknown_user()
        unknown = (vector.expand(len(self.users), -1), bias.expand(len(self.users)))
        out = {}
        # The ranking part ranks a new user from their history; the unknown user has none.
        histories = {
            "fold_in": self.history,
            "unknown_user": self.history.iloc[:0],
        }
        for name, (vectors, bias) in {
            "fold_in": (self.vectors, self.bias),
            "unknown_user": unknown,
        }.items():
            if model.ranks:
                bags = context.datamodule.histories(histories[name], pd.Index(self.task.users))
                scores = list_scores(
                    model, context.tensors, bags, vectors[self.liked], bias[self.liked]
                )
                ranked = self.ranked(scores)
            else:
                rated = self.scores(vectors, bias)
                ranked = self.ranked(
                    lambda users, rated=rated: rated(users).double() + prior(users)
                )
            out[name] = {**score_predictions(self.predicted(vectors, bias), target), **ranked}
        out["bias"] = _bias_fold_in(
            context.seen, self.history, self.rest, context.movie_ids, self.task, context.k
        )
        out["popularity"] = self.ranked(same_for_everyone(context.popularity))
        years = settings["recent_years"]
        out["recent_popularity"] = self.ranked(
            lambda users: context.recent.counts(self.times[users.numpy()], years).double()
        )
        out["users"] = {"scored": len(self.users), "liked": len(self.task.users), "history": self.n}
        return out


@torch.no_grad()
def _rate(model, movies, user_vectors, user_bias, positions, rows) -> torch.Tensor:
    """Unclipped predicted ratings of (user position, movie row) pairs."""
    movie = model.net.movie({k: v[rows] for k, v in movies.items()})
    return model.rate(user_vectors[positions], user_bias[positions], movie)


def _bias_fold_in(seen, history, rest, movie_ids, task, k) -> dict[str, float]:
    """Global mean + movie bias from the training ratings, plus a user bias from the
    history, shrunk as Surprise's BaselineOnly shrinks it."""
    mean, _, movie_bias = fit_biases(seen)
    residual = history["rating"] - mean - history["movie_id"].map(movie_bias).fillna(0.0)
    grouped = residual.groupby(history["user_id"])
    user_bias = grouped.sum() / (grouped.count() + BIAS_REG_USER)
    pred = (
        mean
        + rest["user_id"].map(user_bias).fillna(0.0)
        + rest["movie_id"].map(movie_bias).fillna(0.0)
    )
    clipped = pred.clip(seen["rating"].min(), seen["rating"].max())
    ranking = torch.tensor(mean + movie_bias.reindex(movie_ids, fill_value=0.0).to_numpy())
    return {
        **score_predictions(
            torch.tensor(clipped.to_numpy(), dtype=torch.float32),
            torch.tensor(rest["rating"].to_numpy(), dtype=torch.float32),
        ),
        **top_n_metrics(task, same_for_everyone(ranking), k),
    }
