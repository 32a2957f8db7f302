"""Wire a composed config into datamodule, module (or peer) and trainer; fit, test, write
``metrics.json``. With :mod:`movrec.config`, the only module that reads the DictConfig: the
rest of movrec gets typed arguments from here."""

from __future__ import annotations

import inspect
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

import movrec.config  # noqa: F401  (registers the config resolvers and schemas)
from movrec import peers
from movrec.callbacks import EmbeddingProjector, FitSummary, RandomState, read_fit_summary
from movrec.data import FittedDataModule
from movrec.errors import UserError
from movrec.evaluation.fold_in import SETTINGS as FOLD_IN_SETTINGS
from movrec.evaluation.results import (
    RunInfo,
    log_hparams,
    logged_test_metrics,
    run_metrics,
    user_reports,
    write_metrics,
)
from movrec.evaluation.topn import catalogue_metrics
from movrec.models.regressor import RatingRegressor, parameter_counts
from movrec.serving.checkpoint import Checkpoint, SafeCheckpointIO, read_checkpoint
from movrec.threads import (
    available_cores,
    concurrent_jobs,
    peer_thread_options,
    thread_share,
    use_threads,
)

log = logging.getLogger(__name__)


def run_info(cfg: DictConfig) -> RunInfo:
    """What the reports need of the config and the running Hydra job, as plain values."""
    choices, overrides = {}, []
    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        choices = {k: v for k, v in hydra.runtime.choices.items() if not k.startswith("hydra")}
        overrides = list(hydra.overrides.task)
    return RunInfo(
        output_dir=Path(cfg.paths.output_dir),
        seed=cfg.get("seed"),
        ranking_k=cfg.model.get("ranking_k", 10),
        relevance_threshold=cfg.model.get("relevance_threshold", 4.0),
        choices=choices,
        overrides=overrides,
        settings={
            group: OmegaConf.to_container(cfg[group], resolve=True)
            for group in ("model", "data", "trainer")
        },
    )


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


def fit_peer(cfg: DictConfig, datamodule: FittedDataModule, info: RunInfo) -> dict[str, Any]:
    """A peer (trees, Surprise) on the same rows: ``cfg.model`` less the network's settings,
    which experiments set for every model choice (logged as ignored)."""
    peer_class = get_class(cfg.model._target_)
    settings = OmegaConf.to_container(cfg.model, resolve=True)
    network = set(inspect.signature(RatingRegressor).parameters)
    if ignored := sorted(k for k in settings if k in network):
        log.info("%s ignores the network's settings %s", peer_class.__name__, ignored)
    options = {k: v for k, v in settings.items() if k not in network and k != "_target_"}
    # The share fit_and_test gave this process, for the libraries with their own pools.
    options = {**peer_thread_options(peer_class, torch.get_num_threads()), **options}
    users = user_settings(cfg)
    fields = peers.fit_and_test(
        peer_class, options, datamodule, info.ranking_k, info.relevance_threshold,
        users["max_users"], users["fold_in_history"],
    )  # fmt: skip
    return run_metrics(info, datamodule, fields.pop("test"), **fields)


def process_threads(cfg: DictConfig) -> int:
    """``threads``, or the cores over the jobs the sweep's launcher runs at once."""
    launcher = HydraConfig.get().launcher if HydraConfig.initialized() else {}
    cores = available_cores()
    return thread_share(cfg.get("threads"), cores, concurrent_jobs(launcher.get("n_jobs"), cores))


def user_settings(cfg: DictConfig) -> dict[str, Any]:
    """The ranking evaluation's settings (users sampled, new users' fold-in)."""
    fold = cfg.fold_in
    return {
        "max_users": cfg.get("top_n_users"),
        "fold_in_history": list(fold.history),
        "fold_in_settings": {name: fold.get(name) for name in FOLD_IN_SETTINGS},
    }


def fit_and_test(cfg: DictConfig) -> dict[str, Any]:
    """Fit on train, early-stop on val, test the best checkpoint (with ``refit=true``: a model
    refitted on train + validation); return what metrics.json holds."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)  # in the run's log instead
        log.info("seed %d", cfg.seed)
    use_threads(process_threads(cfg))
    resume = cfg.get("ckpt_path")
    if resume:  # a missing or damaged file fails now, not after the data is built
        read_checkpoint(resume, trust=bool(cfg.get("trust_checkpoint")))
    info = run_info(cfg)
    datamodule = build_datamodule(cfg)
    if cfg.get("refit") and datamodule.hparams.get("split") == "cold_users":
        raise UserError(
            "data.split=cold_users chooses the fold-in on the validation users, whom refit=true "
            "would train on: add refit=false"
        )
    if not issubclass(get_class(cfg.model._target_), L.LightningModule):
        metrics = fit_peer(cfg, datamodule, info)
        write_metrics(info, metrics)
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
    chosen = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    val_top_n = validation_lists(Checkpoint(chosen).model() if chosen else model, datamodule, cfg)
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
    ranked, top_n, folded = user_reports(tested, datamodule, **user_settings(cfg))
    metrics = run_metrics(
        info,
        datamodule,
        {**test, **ranked},
        fold_in=folded,
        **fitted,
        parameters=parameter_counts(model),
        glove=glove,
        checkpoint=best or None,
        refit_epochs=refit.get("epochs_run"),
        top_n_baselines=top_n,
        val_top_n=val_top_n,
    )
    log_hparams(info, trainer.loggers, metrics)
    write_metrics(info, metrics)
    return metrics


def validation_lists(
    model: L.LightningModule, datamodule: FittedDataModule, cfg: DictConfig
) -> dict[str, float] | None:
    """Full-catalogue metrics of the validation-chosen weights on the validation users (seen:
    train): what ranking settings are chosen by. None without users or on cold_users, where
    the validation users are new users (their fold-in is chosen there)."""
    if not datamodule.has_users or datamodule.hparams.split == "cold_users":
        return None
    info = run_info(cfg)
    return catalogue_metrics(
        model, datamodule, info.ranking_k, info.relevance_threshold, cfg.get("top_n_users"), "val"
    )["model"]


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


def data_overrides(cfg: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """The ``data.*`` settings given on this command line (e.g. ``data.movies.dir=`` for files
    that moved), typed as the composed config has them."""
    keys = {
        override.split("=", 1)[0].removeprefix("+").split(".")[1]
        for override in overrides
        if override.lstrip("+").startswith("data.")
    }
    return {key: instantiate(cfg.data[key], _convert_="all") for key in keys}


def test_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """Re-test a saved checkpoint on the data it was trained on (``fit=false``): settings
    and fitted preprocessing come from the checkpoint, nothing is refitted."""
    path = cfg.get("ckpt_path")
    if not path:
        raise UserError("fit=false tests a checkpoint: give ckpt_path=<path to a .ckpt>")
    info = run_info(cfg)
    checkpoint = Checkpoint(path, trust=bool(cfg.get("trust_checkpoint")))
    model = checkpoint.model()
    datamodule = checkpoint.datamodule(**data_overrides(cfg, info.overrides))
    trainer = build_trainer(cfg, callbacks=[], logger=False)
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    ranked, top_n, folded = user_reports(model, datamodule, **user_settings(cfg))
    metrics = run_metrics(
        info,
        datamodule,
        {**logged_test_metrics(results), **ranked},
        top_n_baselines=top_n,
        fold_in=folded,
        best_epoch=checkpoint.epoch,
        parameters=parameter_counts(model),
        checkpoint=str(path),
    )
    write_metrics(info, metrics)
    return metrics


def objective(metrics: dict[str, Any]) -> float | None:
    """Best validation RMSE of a run (None for runs without validation, e.g. trees)."""
    loss = metrics.get("best_val_loss")
    return math.sqrt(loss) if loss is not None else None


def fit_or_test(cfg: DictConfig) -> dict[str, Any]:
    """``fit=true`` (default) fits and tests; ``fit=false`` only tests ``ckpt_path``."""
    return fit_and_test(cfg) if cfg.fit else test_checkpoint(cfg)
