"""Reference predictors every model is reported next to, scored like the models.

``mean``: the training mean rating. ``user_item_bias``: global mean + user bias + movie bias,
fitted by alternating regularised least squares (the defaults of Surprise's ``BaselineOnly``:
10 rounds, ``reg_i`` 10, ``reg_u`` 15) on training + validation ratings, like the tree baseline.
Predictions are clipped to the range of those ratings, like Surprise's and the models'.
A user or movie absent from those ratings has bias 0: on the ``cold_items`` split every test
movie does, so the baseline is left with the user bias alone.
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

from movrec.models.metrics import ranking_at_k, regression_metrics


def score_predictions(
    pred: torch.Tensor, target: torch.Tensor, users: torch.Tensor | None = None,
    ranking_k: int = 10, relevance_threshold: float = 4.0, ranked_by: torch.Tensor | None = None,
) -> dict[str, float]:  # fmt: skip
    """MAE / RMSE / R² / loss, plus the ranking metrics at ``ranking_k`` when given users
    (ranked by ``ranked_by``, default ``pred``: unclipped scores avoid ties at the top)."""
    out = {k: float(v) for k, v in regression_metrics("").forward(pred, target).items()}
    out["loss"] = float(F.mse_loss(pred, target))
    if users is not None:
        ranked_by = pred if ranked_by is None else ranked_by
        ranking = ranking_at_k(ranked_by, target >= relevance_threshold, users, ranking_k)
        out.update({k: float(v) for k, v in ranking.items()})
    return out


def fit_biases(
    ratings: pd.DataFrame, reg_user: float = 15.0, reg_movie: float = 10.0, rounds: int = 10
) -> tuple[float, pd.Series, pd.Series]:
    """Global mean, user biases and movie biases of ``user_id, movie_id, rating`` rows."""
    mean = float(ratings["rating"].mean())
    residual = ratings["rating"] - mean
    user_bias = pd.Series(0.0, index=pd.Index([], dtype="int64"))
    for _ in range(rounds):
        by_movie = (residual - ratings["user_id"].map(user_bias).fillna(0.0)).groupby(
            ratings["movie_id"]
        )
        movie_bias = by_movie.sum() / (by_movie.count() + reg_movie)
        by_user = (residual - ratings["movie_id"].map(movie_bias)).groupby(ratings["user_id"])
        user_bias = by_user.sum() / (by_user.count() + reg_user)
    return mean, user_bias, movie_bias


def user_item_bias(
    fit_on: pd.DataFrame, test: pd.DataFrame, ranking_k: int = 10, relevance_threshold: float = 4.0
) -> dict[str, float]:
    """Test scores of the bias baseline fitted on ``fit_on`` (raw ids)."""
    mean, user_bias, movie_bias = fit_biases(fit_on)
    pred = (
        mean
        + test["user_id"].map(user_bias).fillna(0.0)
        + test["movie_id"].map(movie_bias).fillna(0.0)
    )
    clipped = pred.clip(fit_on["rating"].min(), fit_on["rating"].max())  # as the models are
    return score_predictions(
        torch.tensor(clipped.to_numpy(), dtype=torch.float32),
        torch.tensor(test["rating"].to_numpy(), dtype=torch.float32),
        torch.tensor(test["user_id"].to_numpy()),
        ranking_k,
        relevance_threshold,
        ranked_by=torch.tensor(pred.to_numpy(), dtype=torch.float32),
    )
