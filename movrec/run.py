"""Wire a composed config into datamodule, module and trainer; fit, test, write ``metrics.json``."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

import movrec.resolvers  # noqa: F401  (registers the config resolvers)
from movrec import fold_in, topn
from movrec.callbacks import EmbeddingProjector, FitSummary, RandomState, read_fit_summary
from movrec.data import FittedDataModule
from movrec.errors import UserError
from movrec.estimators import fit_estimator
from movrec.models.regressor import parameter_counts
from movrec.peers import fit_peer, is_peer
from movrec.results import (
    hydra_context,
    log_hparams,
    logged_test_metrics,
    run_metrics,
    write_metrics,
)
from movrec.serving.checkpoint import Checkpoint, SafeCheckpointIO, read_checkpoint

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Every entry of a config group that has a ``_target_`` (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node and "_target_" in node]


def build_trainer(cfg: DictConfig, **options: Any) -> L.Trainer:
    """``cfg.trainer`` with movrec's checkpoint format: every checkpoint it writes or reads
    (fit, resume, test) is sealed, atomic and loaded without running code."""
    plugin = SafeCheckpointIO(trust=bool(cfg.get("trust_checkpoint")))
    return instantiate(cfg.trainer, plugins=[plugin], **options)


def build_datamodule(cfg: DictConfig) -> FittedDataModule:
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    summary = datamodule.summary()
    log.info("data: %s rows %s", summary["sources"], summary["rows"])
    log.info("cleaning (%s):\n%s", summary["sources"]["movies"], datamodule.report.table())
    features = datamodule.preprocessing.features
    if features is not None:
        log.info(
            "%d features; numeric correlations (train split):\n%s\ndropped as |r| > %s: %s",
            len(features.names), features.correlation_table(),
            features.spec.correlation_threshold, summary["features"]["dropped_correlated"],
        )  # fmt: skip
    return datamodule


def build_model(
    cfg: DictConfig, datamodule: FittedDataModule
) -> tuple[L.LightningModule, dict | None]:
    """The module for the fitted data's sizes; GloVe rows copied into its title tower when the
    config asks for them (a checkpoint rebuilds the module from sizes alone)."""
    model = instantiate(cfg.model, sizes=datamodule.model_sizes(), _convert_="all")
    if model.net.title.init != "glove":
        return model, None
    vectors, glove = datamodule.title_vectors(cfg.glove.oov_init, seed=cfg.get("seed") or 0)
    model.net.title.load_vectors(vectors)
    log.info(
        "GloVe %s: %d-d, %.1f%% of %d vocabulary words found (%.2f s)",
        glove["source"], glove["dim"], 100 * glove["coverage"], len(vectors) - 2, glove["seconds"],
    )  # fmt: skip
    return model, glove


def fit_and_test(cfg: DictConfig) -> dict[str, Any]:
    """Fit on train, early-stop on val, test the best checkpoint (with ``refit=true``: a model
    refitted on train + validation); return what metrics.json holds."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)  # in the run's log instead
        log.info("seed %d", cfg.seed)
    resume = cfg.get("ckpt_path")
    if resume:  # a missing or damaged file fails now, not after the data is built
        read_checkpoint(resume, trust=bool(cfg.get("trust_checkpoint")))
    datamodule = build_datamodule(cfg)
    if cfg.get("refit") and datamodule.hparams.get("split") == "cold_users":
        raise UserError(
            "data.split=cold_users chooses the fold-in on the validation users, whom refit=true "
            "would train on: add refit=false"
        )
    model_class = get_class(cfg.model._target_)
    if not issubclass(model_class, L.LightningModule):
        metrics = (fit_peer if is_peer(model_class) else fit_estimator)(cfg, datamodule)
        write_metrics(cfg, metrics)
        return metrics
    model, glove = build_model(cfg, datamodule)

    loggers = instantiate_group(cfg.get("logger"))
    trainer = build_trainer(
        cfg,
        callbacks=[*instantiate_group(cfg.get("callbacks")), FitSummary(), RandomState()],
        logger=loggers or False,
    )
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
    fitted = read_fit_summary(trainer)  # before test(), which resets the callback metrics
    if cfg.get("refit") and fitted["best_epoch"]:
        test, best, refit, model = refit_on_train_and_val(
            cfg, datamodule, fitted["best_epoch"], loggers
        )
        fitted["train_seconds"] += refit["train_seconds"]
    else:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results = trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        test, refit = logged_test_metrics(results), {}
    # The tested weights, whichever process tested them (ddp_spawn tests in its workers).
    tested = Checkpoint(best).model() if best and datamodule.has_users else model
    top_n = top_n_report(tested, datamodule, cfg)
    test.update(top_n.pop("model", {}))
    metrics = run_metrics(
        cfg,
        datamodule,
        test,
        fold_in=new_users_report(tested, datamodule, cfg),
        **fitted,
        parameters=parameter_counts(model),
        glove=glove,
        checkpoint=best or None,
        refit_epochs=refit.get("epochs_run"),
        top_n_baselines=top_n or None,
    )
    log_hparams(cfg, trainer.loggers, metrics)
    write_metrics(cfg, metrics)
    return metrics


def refit_on_train_and_val(
    cfg: DictConfig, datamodule: FittedDataModule, epochs: int, loggers: list
) -> tuple[dict[str, float], str, dict[str, Any], L.LightningModule]:
    """The tree models' protocol for a network (``refit=true``): validation chose the number
    of epochs; a fresh model with the same seed trains that long on train + validation (the
    preprocessing stays fitted on train alone) and is the one tested. Returns its test
    metrics, checkpoint, fit summary and the refitted model."""
    log.info("refit: %d epochs on train + validation", epochs)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule.train_on_validation_too()
    model, _ = build_model(cfg, datamodule)
    checkpoint = ModelCheckpoint(
        dirpath=Path(cfg.paths.output_dir) / "checkpoints" / "refit",
        filename="refit-epoch{epoch:03d}",
        auto_insert_metric_name=False,
    )
    # Of the configured callbacks only what reports on the test (the embedding projector).
    reporting = [
        c for c in instantiate_group(cfg.get("callbacks")) if isinstance(c, EmbeddingProjector)
    ]
    trainer = build_trainer(
        cfg, max_epochs=epochs, min_epochs=epochs, limit_val_batches=0,
        callbacks=[checkpoint, FitSummary(), *reporting], logger=loggers or False,
        enable_progress_bar=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    refitted = read_fit_summary(trainer)
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    return logged_test_metrics(results), checkpoint.best_model_path, refitted, model


def top_n_report(
    model: L.LightningModule, datamodule: FittedDataModule, cfg: DictConfig
) -> dict[str, dict[str, float]]:
    """Full-catalogue Recall / NDCG @ k of the tested model and of the popularity and
    movie-bias rankings (:mod:`movrec.topn`); none without users."""
    if not datamodule.has_users:
        return {}
    k, threshold = model.hparams.ranking_k, model.hparams.relevance_threshold
    start = time.perf_counter()
    report = topn.evaluate(model, datamodule, k, threshold, cfg.get("top_n_users"))
    log.info("full-catalogue top-%d (%.1f s): %s", k, time.perf_counter() - start, report)
    return report


def new_users_report(
    model: L.LightningModule, datamodule: FittedDataModule, cfg: DictConfig
) -> dict[str, Any] | None:
    """On ``data.split=cold_users``: the fold-in from each configured history length."""
    if not datamodule.has_users or datamodule.hparams.split != "cold_users":
        return None
    k, threshold = model.hparams.ranking_k, model.hparams.relevance_threshold
    report = {}
    for n in cfg.fold_in.history:
        settings = {name: cfg.fold_in.get(name) for name in fold_in.SETTINGS}
        report[str(n)] = fold_in.evaluate(
            model, datamodule, n, k, threshold, settings, cfg.get("top_n_users")
        )
    return report


def data_overrides(cfg: DictConfig) -> dict[str, Any]:
    """The ``data.*`` settings given on this command line (e.g. ``data.movies.dir=`` for files
    that moved), typed as the composed config has them."""
    keys = {
        override.split("=", 1)[0].removeprefix("+").split(".")[1]
        for override in hydra_context().get("overrides", [])
        if override.lstrip("+").startswith("data.")
    }
    return {key: instantiate(cfg.data[key], _convert_="all") for key in keys}


def test_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """Re-test a saved checkpoint on the data it was trained on (``fit=false``): settings
    and fitted preprocessing come from the checkpoint, nothing is refitted."""
    path = cfg.get("ckpt_path")
    if not path:
        raise UserError("fit=false tests a checkpoint: give ckpt_path=<path to a .ckpt>")
    checkpoint = Checkpoint(path, trust=bool(cfg.get("trust_checkpoint")))
    model = checkpoint.model()
    datamodule = checkpoint.datamodule(**data_overrides(cfg))
    trainer = build_trainer(cfg, callbacks=[], logger=False)
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    test, top_n = logged_test_metrics(results), top_n_report(model, datamodule, cfg)
    test.update(top_n.pop("model", {}))
    metrics = run_metrics(
        cfg,
        datamodule,
        test,
        top_n_baselines=top_n or None,
        fold_in=new_users_report(model, datamodule, cfg),
        best_epoch=checkpoint.epoch,
        parameters=parameter_counts(model),
        checkpoint=str(path),
    )
    write_metrics(cfg, metrics)
    return metrics


def objective(metrics: dict[str, Any]) -> float | None:
    """Best validation RMSE of a run (None for runs without validation, e.g. trees)."""
    loss = metrics.get("best_val_loss")
    return math.sqrt(loss) if loss is not None else None


def execute(cfg: DictConfig) -> dict[str, Any]:
    """``fit=true`` (default) fits and tests; ``fit=false`` only tests ``ckpt_path``."""
    return fit_and_test(cfg) if cfg.fit else test_checkpoint(cfg)
