"""Tree peers (``model=gbdt | lightgbm | catboost``) on the datamodule's fitted feature matrix:
the same rows, splits and ``metrics.json`` as the networks.

Each is tuned on validation the way the networks are: fitted on the training split with a
generous number of trees, the size with the lowest validation MSE is kept (early stopping on
validation), then the model is refitted with that size on train + validation and tested once.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from movrec.data import FittedDataModule
from movrec.errors import UserError
from movrec.evaluation.baselines import score_predictions
from movrec.evaluation.selection import cross_half_loss

log = logging.getLogger(__name__)

Arrays = tuple[np.ndarray, np.ndarray]


def _sklearn_curve(estimator: Any, train: Arrays, val: Arrays) -> np.ndarray:
    estimator.fit(*train)
    return np.array([np.mean((p - val[1]) ** 2) for p in estimator.staged_predict(val[0])])


def _lightgbm_curve(estimator: Any, train: Arrays, val: Arrays) -> np.ndarray:
    if "eval_X" in inspect.signature(estimator.fit).parameters:  # LightGBM >= 4.7
        estimator.fit(*train, eval_X=(val[0],), eval_y=(val[1],), eval_metric="l2")
    else:
        estimator.fit(*train, eval_set=[val], eval_metric="l2")
    return np.asarray(estimator.evals_result_["valid_0"]["l2"])


def _catboost_curve(estimator: Any, train: Arrays, val: Arrays) -> np.ndarray:
    estimator.fit(*train, eval_set=val)
    return np.square(estimator.get_evals_result()["validation"]["RMSE"])


# Class name -> (the parameter that sets the number of trees, the validation-MSE curve).
SIZED: dict[str, tuple[str, Callable[[Any, Arrays, Arrays], np.ndarray]]] = {
    "HistGradientBoostingRegressor": ("max_iter", _sklearn_curve),
    "GradientBoostingRegressor": ("n_estimators", _sklearn_curve),
    "LGBMRegressor": ("n_estimators", _lightgbm_curve),
    "CatBoostRegressor": ("iterations", _catboost_curve),
}
STAGE_STEP = 5  # trees between the sizes the cross-half loss compares


def staged_squared_errors(estimator: Any, val: Arrays, sizes: int) -> np.ndarray:
    """Per-row squared validation errors of the fitted model cut at every STAGE_STEP-th size
    (sizes x rows): what :func:`movrec.evaluation.selection.cross_half_loss` chooses among."""
    X, y = val
    kept = range(STAGE_STEP, sizes + 1, STAGE_STEP)
    name = type(estimator).__name__
    if name == "LGBMRegressor":
        staged = (estimator.predict(X, num_iteration=k) for k in kept)
    elif name == "CatBoostRegressor":
        staged = estimator.staged_predict(X, eval_period=STAGE_STEP)
    else:
        staged = (p for i, p in enumerate(estimator.staged_predict(X), 1) if i % STAGE_STEP == 0)
    return np.stack([(np.asarray(p) - y) ** 2 for p in staged])


def fit_and_test(
    estimator_class: type, options: dict[str, Any], datamodule: FittedDataModule
) -> dict[str, Any]:
    """Fit, choose the size on validation, refit on train + validation, test once."""
    if datamodule.model_sizes()["n_features"] == 0:
        raise UserError(
            f"model {estimator_class.__name__} needs metadata features: set data.features "
            "(e.g. experiment=hybrid)"
        )
    splits = {
        name: (tensors["features"].numpy(), tensors["rating"].numpy())
        for name, tensors in ((s, datamodule.examples(s)) for s in ("train", "val", "test"))
    }
    start = time.perf_counter()
    best_val_loss, size, cross_half = None, None, None
    if estimator_class.__name__ in SIZED:
        parameter, curve = SIZED[estimator_class.__name__]
        sized = estimator_class(**options)
        losses = curve(sized, splits["train"], splits["val"])
        size, best_val_loss = int(np.argmin(losses)) + 1, float(np.min(losses))
        if len(losses) >= STAGE_STEP:
            errors = staged_squared_errors(sized, splits["val"], len(losses))
            cross_half = cross_half_loss(errors)
        log.info("%s: %d trees chosen on validation (of %d)", parameter, size, len(losses))
        options = {**options, parameter: size}
    estimator = estimator_class(**options)
    both = [np.concatenate(parts) for parts in zip(splits["train"], splits["val"], strict=True)]
    estimator.fit(*both)
    seconds = time.perf_counter() - start
    target = torch.from_numpy(splits["test"][1])
    pred = torch.as_tensor(estimator.predict(splits["test"][0]), dtype=target.dtype)
    return {
        "test": score_predictions(pred, target),
        "kind": "trees",
        "epochs_run": size,
        "best_val_loss": best_val_loss,
        "val_loss_cross_half": cross_half,
        "train_seconds": seconds,
    }
