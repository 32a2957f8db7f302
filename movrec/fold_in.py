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

import logging

import numpy as np
import pandas as pd
import torch

from movrec.baselines import fit_biases, score_predictions
from movrec.errors import UserError
from movrec.topn import TopNTask, model_scores, popularity_scores, same_for_everyone, top_n_metrics

log = logging.getLogger(__name__)

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
        start_vector = net.users.embedding.weight[0].detach()
        start_bias = net.users.bias.weight[0, 0].detach()
        vectors = start_vector.repeat(n_users, 1).requires_grad_(True)
        bias = start_bias.repeat(n_users).requires_grad_(True)
        target = (ratings - model.target_mean) / model.target_std
        counts = torch.bincount(users, minlength=n_users).clamp(min=1)
        optimizer = torch.optim.Adam([vectors, bias], lr=lr)
        for _ in range(steps):
            optimizer.zero_grad()
            raw = net.rate(vectors[users], bias[users], movie)
            raw = raw.mean(-1) if raw.dim() == 2 else raw
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
# RMSE), then the weight of log(1 + number of training ratings) added to the predicted rating
# for ranking (by NDCG): a rating model says how much a user would like a movie, not whether
# they would watch it, and ranked alone it fills the top 10 with obscure movies.
L2_GRID = (0.1, 1.0, 10.0, 100.0)
POPULARITY_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)


def evaluate(
    model: torch.nn.Module,
    datamodule: object,
    n: int,
    k: int = 10,
    threshold: float = 4.0,
    l2: float | None = None,
    popularity_weight: float | None = None,
) -> dict[str, dict[str, float]]:
    """Fold-in from each test user's first ``n`` ratings, scored on the rest: RMSE / MAE /
    R² and full-catalogue Recall / NDCG @ k (candidates: every movie not in the history) of
    the fold-in, the unknown-user model, the bias baseline and the popularity ranking.
    Settings left None are chosen on the validation users the same way."""
    if datamodule.hparams.split != "cold_users":
        raise UserError("the fold-in is measured on new users: data.split=cold_users")
    seen, val, test = (datamodule.frames[name] for name in ("train", "val", "test"))
    args = (model, datamodule, seen, n, k, threshold)
    if l2 is None:
        l2 = min(L2_GRID, key=lambda c: _measure(*args, val, c, 0.0, True)["fold_in"]["rmse"])
    if popularity_weight is None:
        popularity_weight = max(
            POPULARITY_GRID,
            key=lambda w: _measure(*args, val, l2, w, True)["fold_in"][f"full_ndcg@{k}"],
        )
    out = _measure(*args, test, l2, popularity_weight)
    out["chosen"] = {"l2": l2, "popularity_weight": popularity_weight}
    return out


def _measure(
    model: torch.nn.Module,
    datamodule: object,
    seen: pd.DataFrame,
    n: int,
    k: int,
    threshold: float,
    users_ratings: pd.DataFrame,
    l2: float,
    popularity_weight: float,
    only_fold_in: bool = False,
) -> dict[str, dict[str, float]]:
    history, rest = history_and_rest(users_ratings, n)
    movies, tensors = datamodule.catalogue()
    movie_ids = pd.Index(movies["movie_id"])
    task = TopNTask.build(history, rest, movie_ids, threshold)
    users = pd.Index(np.sort(rest["user_id"].unique()))  # every scored user, liked or not

    def positions(frame: pd.DataFrame) -> torch.Tensor:
        return torch.from_numpy(users.get_indexer(frame["user_id"]).astype(np.int64))

    def rows(frame: pd.DataFrame) -> torch.Tensor:
        return torch.from_numpy(movie_ids.get_indexer(frame["movie_id"]).astype(np.int64))

    ratings = torch.tensor(history["rating"].to_numpy(dtype=np.float32))
    vectors, bias = fold_in(
        model, tensors, positions(history), rows(history), ratings, len(users), l2
    )
    unknown = (
        model.net.users.embedding.weight[:1].detach().expand(len(users), -1),
        model.net.users.bias.weight[0].detach().expand(len(users)),
    )
    popularity = popularity_scores(seen, movie_ids)
    prior = popularity_weight * torch.log1p(popularity)
    target = torch.tensor(rest["rating"].to_numpy(dtype=np.float32))
    liked_users = torch.from_numpy(users.get_indexer(task.users).astype(np.int64))
    out = {}
    fitted = {"fold_in": (vectors, bias)} if only_fold_in else {
        "fold_in": (vectors, bias), "unknown_user": unknown,
    }  # fmt: skip
    for name, (user_vectors, user_bias) in fitted.items():
        pred = _rate(model, tensors, user_vectors, user_bias, positions(rest), rows(rest))
        liked = model_scores(model, tensors, user_vectors[liked_users], user_bias[liked_users])
        ranked = top_n_metrics(task, lambda chunk, liked=liked: liked(chunk) + prior, k)
        out[name] = {**score_predictions(model.clip(pred), target), **ranked}
    if only_fold_in:
        return out
    out["bias"] = _bias_fold_in(seen, history, rest, movie_ids, task, k)
    out["popularity"] = top_n_metrics(task, same_for_everyone(popularity), k)
    out["users"] = {"scored": len(users), "liked": len(task.users), "history": n}
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
