"""Scikit-learn-style regressors (``model=gbdt``) on the datamodule's fitted feature matrix:
the same rows, splits and ``metrics.json`` as the networks, fitted on train + validation."""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from movrec.baselines import score_predictions
from movrec.data import FittedDataModule
from movrec.errors import UserError
from movrec.models.regressor import RatingRegressor
from movrec.results import run_metrics

log = logging.getLogger(__name__)


def fit_estimator(cfg: DictConfig, datamodule: FittedDataModule) -> dict[str, Any]:
    """A scikit-learn regressor on the fitted feature matrix: train + validation, then test."""
    if datamodule.model_sizes()["n_features"] == 0:
        raise UserError(
            f"model {cfg.model._target_} needs metadata features: set data.features "
            "(e.g. experiment=hybrid)"
        )
    tensors = {split: datamodule.examples(split) for split in ("train", "val", "test")}
    x = torch.cat([tensors["train"]["features"], tensors["val"]["features"]]).numpy()
    y = torch.cat([tensors["train"]["rating"], tensors["val"]["rating"]]).numpy()
    estimator_class = get_class(cfg.model._target_)
    accepted = estimator_class().get_params()
    # Experiments set neural-model options (e.g. title_pooling) for every model choice.
    neural = set(inspect.signature(RatingRegressor).parameters) - set(accepted)
    options = OmegaConf.to_container(cfg.model, resolve=True)
    unused = sorted(k for k in options if k in neural)
    if unused:
        log.info("%s ignores the neural-model options %s", estimator_class.__name__, unused)
    estimator = estimator_class(
        **{k: v for k, v in options.items() if k not in neural and k != "_target_"}
    )
    start = time.perf_counter()
    estimator.fit(x, y)
    seconds = time.perf_counter() - start
    target = tensors["test"]["rating"]
    pred = torch.as_tensor(
        estimator.predict(tensors["test"]["features"].numpy()), dtype=target.dtype
    )
    return run_metrics(
        cfg,
        datamodule,
        score_predictions(pred, target),
        epochs_run=getattr(estimator, "n_iter_", None),
        train_seconds=seconds,
    )
