"""Collaborative-filtering peers from Surprise (``model=svd | svdpp | knn_baseline``,
``pip install -e ".[peers]"``) on the same ratings split and ``metrics.json`` as the networks.

Tuned the way the trees are: every setting of the config's ``search`` grid is fitted on the
training ratings and scored on validation; the best is refitted on train + validation and
tested once. Surprise sees raw user and movie ids only (no metadata): a movie or user it never
saw gets its global mean plus whatever biases it knows, as Surprise does.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from movrec.data import FittedDataModule
from movrec.errors import UserError
from movrec.evaluation.baselines import score_predictions

log = logging.getLogger(__name__)


def is_surprise(estimator_class: type) -> bool:
    return estimator_class.__module__.split(".")[0] == "surprise"


def _trainset(ratings: pd.DataFrame, scale: tuple[float, float]) -> Any:
    from surprise import Dataset, Reader

    columns = ratings[["user_id", "movie_id", "rating"]]
    return Dataset.load_from_df(columns, Reader(rating_scale=scale)).build_full_trainset()


def _predict(algorithm: Any, ratings: pd.DataFrame) -> np.ndarray:
    """Surprise's estimates before its clipping to the rating scale: rankings use them, as
    they use the networks' unclipped scores (clipped, every top movie would tie)."""
    pairs = zip(ratings["user_id"].to_numpy(), ratings["movie_id"].to_numpy(), strict=True)
    return np.array([algorithm.predict(u, m, clip=False).est for u, m in pairs])


def grid(search: dict[str, list] | None) -> list[dict[str, Any]]:
    """Every combination of the ``search`` lists (one empty setting without a search)."""
    search = search or {}
    return [
        dict(zip(search, values, strict=True)) for values in itertools.product(*search.values())
    ]


def user_peer_settings(
    peer: str, kind: str, options: dict[str, Any], datamodule: FittedDataModule
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A peer that reads user ratings: its fixed options and every setting of its ``search``
    grid; a clear error on data without users."""
    if not datamodule.has_users:
        raise UserError(
            f"model {peer} is a {kind}: it needs user ratings (data=movielens_tmdb, "
            "e.g. experiment=recommend)"
        )
    options = dict(options)
    return options, grid(options.pop("search", None))


def fit_and_test(
    algorithm_class: type, options: dict[str, Any], datamodule: FittedDataModule,
    ranking_k: int = 10, relevance_threshold: float = 4.0,
) -> dict[str, Any]:  # fmt: skip
    """Choose the setting on validation RMSE, refit it on train + validation, test once."""
    options, settings = user_peer_settings(
        algorithm_class.__name__, "collaborative-filtering peer", options, datamodule
    )
    frames = datamodule.frames
    train, val, test = frames["train"], frames["val"], frames["test"]
    seen = pd.concat([train, val])
    scale = (float(seen["rating"].min()), float(seen["rating"].max()))
    start = time.perf_counter()
    trainset = _trainset(train, scale)
    best_loss, best = None, {}
    for setting in settings:
        algorithm = algorithm_class(**{**options, **setting})
        algorithm.fit(trainset)
        pred = _predict(algorithm, val).clip(*scale)
        loss = float(np.mean((pred - val["rating"].to_numpy()) ** 2))
        log.info("%s %s: validation MSE %.4f", algorithm_class.__name__, setting, loss)
        if best_loss is None or loss < best_loss:
            best_loss, best = loss, setting
    log.info("%s: chosen on validation %s", algorithm_class.__name__, best)
    algorithm = algorithm_class(**{**options, **best})
    algorithm.fit(_trainset(seen, scale))
    seconds = time.perf_counter() - start
    target = torch.tensor(test["rating"].to_numpy(dtype=np.float32))
    scores = torch.tensor(_predict(algorithm, test), dtype=torch.float32)
    users = torch.tensor(test["user_id"].to_numpy())
    test_metrics = score_predictions(
        scores.clamp(*scale), target, users, ranking_k, relevance_threshold, ranked_by=scores
    )
    return {"test": test_metrics, "kind": "peer", "best_val_loss": best_loss,
            "train_seconds": seconds, "chosen": best}  # fmt: skip
