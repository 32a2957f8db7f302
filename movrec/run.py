"""Wire a composed config into datamodule, module and trainer; fit, test, write ``metrics.json``."""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

import movrec.resolvers  # noqa: F401  (registers the config resolvers)
from movrec.baselines import scores, user_item_bias
from movrec.callbacks import FitSummary, read_fit_summary
from movrec.data import FittedDataModule
from movrec.errors import UserError
from movrec.models.regressor import RatingRegressor, parameter_counts
from movrec.predict import Checkpoint

log = logging.getLogger(__name__)

METRIC_NAMES = ("mae", "rmse", "r2")


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Every entry of a config group that has a ``_target_`` (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node and "_target_" in node]


def hydra_context() -> dict[str, Any]:
    """Group choices and overrides of the running Hydra job; empty outside one."""
    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    return {
        "choices": {
            k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra")
        },
        "overrides": list(hydra_cfg.overrides.task),
    }


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


def mean_baseline(datamodule: FittedDataModule) -> dict[str, float]:
    """Test metrics of always predicting the training mean: the bar every model must clear."""
    target = datamodule.examples("test")["rating"]
    return scores(torch.full_like(target, datamodule.preprocessing.target_mean), target)


def bias_baseline(cfg: DictConfig, datamodule: FittedDataModule) -> dict[str, float] | None:
    """User + movie biases on the same split (user ratings only): the collaborative bar."""
    ratings = datamodule.user_ratings()
    if ratings is None:
        return None
    return user_item_bias(
        *ratings,
        cfg.model.get("ranking_k", 10),
        cfg.model.get("relevance_threshold", 4.0),
    )


def format_table(metrics: dict) -> str:
    columns = {"model": metrics["test"], "mean predictor": metrics["mean_baseline"]}
    if metrics.get("bias_baseline"):
        columns["user+movie bias"] = metrics["bias_baseline"]
    names = [*METRIC_NAMES, *sorted(k for k in metrics["test"] if "@" in k)]
    lines = ["".join([f"{'':<12}", *(f"{c:>17}" for c in columns)])]
    for name in names:
        values = [v.get(name) for v in columns.values()]
        cells = [f"{v:>17.4f}" if v is not None else f"{'':>17}" for v in values]
        lines.append(f"{name.upper():<12}" + "".join(cells))
    lines.append(", ".join(run_facts(metrics)))
    return "\n".join(lines)


def run_facts(metrics: dict) -> list[str]:
    """What is known about how the tested weights came about; nothing unknown is printed."""
    epochs, best, seconds = (metrics[k] for k in ("epochs_run", "best_epoch", "seconds_per_epoch"))
    facts = []
    if epochs is not None:
        facts.append(f"epochs {epochs}" + (f" (best {best})" if best is not None else ""))
    elif best is not None:
        facts.append(f"checkpoint of epoch {best}")
    if seconds is not None:
        facts.append(f"{seconds:.3f} s/epoch")
    parameters = metrics["parameters"]
    if parameters["trainable"] or parameters["frozen"]:
        facts.append(
            f"parameters {parameters['trainable']:,} trainable / {parameters['frozen']:,} frozen"
        )
    return facts


def run_metrics(
    cfg: DictConfig, datamodule: FittedDataModule, test: dict[str, float], **fields: Any
) -> dict[str, Any]:
    """What ``metrics.json`` holds; every kind of run fills in what it knows."""
    metrics = {
        **hydra_context(),
        "seed": cfg.get("seed"),
        "test": test,
        "mean_baseline": mean_baseline(datamodule),
        "bias_baseline": bias_baseline(cfg, datamodule),
        "epochs_run": None,
        "best_epoch": None,
        "best_val_loss": None,
        "seconds_per_epoch": None,
        "epoch_seconds": [],
        "train_seconds": None,
        "parameters": {"trainable": 0, "frozen": 0},
        "data": datamodule.summary(),
        "glove": None,
        "checkpoint": None,
    }
    unknown = set(fields) - set(metrics)
    if unknown:
        raise KeyError(f"not metrics.json fields: {sorted(unknown)}")
    return {**metrics, **fields}


def logged_test_metrics(results: list[dict[str, float]]) -> dict[str, float]:
    return {k.split("/", 1)[1]: float(v) for k, v in results[0].items() if k.startswith("test/")}


def write_metrics(cfg: DictConfig, metrics: dict[str, Any]) -> None:
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info("test metrics (%s):\n%s", output_dir / "metrics.json", format_table(metrics))


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
        scores(pred, target),
        epochs_run=getattr(estimator, "n_iter_", None),
        train_seconds=seconds,
    )


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit on train, early-stop on val, test the best checkpoint; return what metrics.json holds."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)  # in the run's log instead
        log.info("seed %d", cfg.seed)
    datamodule = build_datamodule(cfg)
    if not issubclass(get_class(cfg.model._target_), L.LightningModule):
        metrics = fit_estimator(cfg, datamodule)
        write_metrics(cfg, metrics)
        return metrics
    model, glove = build_model(cfg, datamodule)

    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=[*instantiate_group(cfg.get("callbacks")), FitSummary()],
        logger=loggers or False,
    )
    # Our checkpoints hold the network and optimiser partials and fitted preprocessing.
    resume = cfg.get("ckpt_path")
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=False)
    fitted = read_fit_summary(trainer)  # before test(), which resets the callback metrics
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    results = trainer.test(
        model, datamodule=datamodule, ckpt_path=best or None, verbose=False, weights_only=False
    )
    metrics = run_metrics(
        cfg,
        datamodule,
        logged_test_metrics(results),
        **fitted,
        parameters=parameter_counts(model),
        glove=glove,
        checkpoint=best or None,
    )
    log_hparams(cfg, trainer.loggers, metrics)
    write_metrics(cfg, metrics)
    return metrics


def log_hparams(cfg: DictConfig, loggers: list[Logger], metrics: dict[str, Any]) -> None:
    """The run's settings with its final metrics, so TensorBoard's HParams tab lines up the
    jobs of a sweep. Written once, at the end: Lightning's own hparams logging (switched off
    in the module and datamodule) writes no metrics and refuses keys both of them have."""
    params = {
        "choice": hydra_context().get("choices", {}),
        "seed": cfg.get("seed"),
        **{
            group: OmegaConf.to_container(cfg[group], resolve=True)
            for group in ("model", "data", "trainer")
        },
    }
    final = {f"hp/test_{k}": v for k, v in metrics["test"].items() if k != "loss"}
    if metrics["best_val_loss"] is not None:
        final["hp/best_val_loss"] = metrics["best_val_loss"]
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics=final)
        else:
            logger.log_hyperparams(params)
        logger.finalize("success")


def data_overrides(cfg: DictConfig) -> dict[str, Any]:
    """The ``data.*`` settings given on this command line (e.g. ``data.movies.dir=`` for files
    that moved), typed as the composed config has them."""
    keys = {
        override.split("=", 1)[0].removeprefix("+").split(".")[1]
        for override in hydra_context().get("overrides", [])
        if override.lstrip("+").startswith("data.")
    }
    return {key: instantiate(cfg.data[key], _convert_="all") for key in keys}


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Re-test a saved checkpoint on the data it was trained on (``train=false``): settings
    and fitted preprocessing come from the checkpoint, nothing is refitted."""
    path = cfg.get("ckpt_path")
    if not path:
        raise UserError("train=false evaluates a checkpoint: give ckpt_path=<path to a .ckpt>")
    checkpoint = Checkpoint(path)
    model = checkpoint.model()
    datamodule = checkpoint.datamodule(**data_overrides(cfg))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=[], logger=False)
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    metrics = run_metrics(
        cfg,
        datamodule,
        logged_test_metrics(results),
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


def run(cfg: DictConfig) -> dict[str, Any]:
    """``train=true`` (default) fits and tests; ``train=false`` only tests ``ckpt_path``."""
    return train(cfg) if cfg.get("train", True) else evaluate(cfg)
