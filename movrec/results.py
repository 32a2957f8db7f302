"""What a run reports: ``metrics.json``, the console table, TensorBoard's HParams entry, and
the mean and bias baselines every model is shown beside."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from movrec.atomic import atomic_write
from movrec.baselines import score_predictions, user_item_bias
from movrec.data import FittedDataModule

log = logging.getLogger(__name__)

METRIC_NAMES = ("mae", "rmse", "r2")


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


def mean_baseline(datamodule: FittedDataModule) -> dict[str, float]:
    """Test metrics of always predicting the training mean: the bar every model must clear."""
    target = datamodule.examples("test")["rating"]
    return score_predictions(torch.full_like(target, datamodule.preprocessing.target_mean), target)


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
    top_n = metrics.get("top_n_baselines") or {}
    if metrics.get("bias_baseline"):
        columns["user+movie bias"] = {**metrics["bias_baseline"], **top_n.get("bias", {})}
    if top_n:
        columns["popularity"] = top_n["popularity"]
    names = [*METRIC_NAMES, *sorted(k for k in metrics["test"] if "@" in k)]
    lines = ["".join([f"{'':<12}", *(f"{c:>17}" for c in columns)])]
    for name in names:
        values = [v.get(name) for v in columns.values()]
        cells = [f"{v:>17.4f}" if v is not None else f"{'':>17}" for v in values]
        lines.append(f"{name.upper():<12}" + "".join(cells))
    lines.append(", ".join(run_facts(metrics)))
    return "\n".join(lines)


FOLD_IN_ROWS = {
    "fold_in": "fold-in",
    "unknown_user": "unknown user",
    "bias": "bias fold-in",
    "popularity": "popularity",
    "recent_popularity": "recent popularity",
}


def format_fold_in(report: dict) -> str:
    """New users (``fold_in`` of metrics.json): one block per history length, a row per
    ranking, with the settings validation chose."""
    blocks = []
    for n, result in report.items():
        names = ["rmse", *sorted(k for k in result["fold_in"] if k.startswith("full_"))]
        lines = [
            f"new users, first {n} ratings folded in ({result['users']['scored']} users; "
            + ", ".join(f"{k} {v:g}" for k, v in result["chosen"].items()) + ")",
            "".join([f"{'':<18}", *(f"{name.upper():>17}" for name in names)]),
        ]  # fmt: skip
        for key, label in FOLD_IN_ROWS.items():
            values = [result[key].get(name) for name in names]
            cells = [f"{v:>17.4f}" if v is not None else f"{'':>17}" for v in values]
            lines.append(f"{label:<18}" + "".join(cells))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


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
        "kind": "network",  # "trees", "peer": the report pairs networks with the others
        "chosen": None,  # trees and peers: the setting validation chose
        "test": test,
        "mean_baseline": mean_baseline(datamodule),
        "bias_baseline": bias_baseline(cfg, datamodule),
        "epochs_run": None,
        "best_epoch": None,
        "best_val_loss": None,
        # Chosen on one half of the validation rows, scored on the other (movrec.selection).
        "val_loss_cross_half": None,
        "seconds_per_epoch": None,
        "epoch_seconds": [],
        "train_seconds": None,
        "parameters": {"trainable": 0, "frozen": 0},
        "data": datamodule.summary(),
        "glove": None,
        "checkpoint": None,
        "refit_epochs": None,  # refit=true: epochs trained on train + validation for the test
        # With users: the full-catalogue metrics of the popularity and movie-bias rankings.
        "top_n_baselines": None,
        "fold_in": None,  # data.split=cold_users: new users folded in (movrec.fold_in)
    }
    unknown = set(fields) - set(metrics)
    if unknown:
        raise KeyError(f"not metrics.json fields: {sorted(unknown)}")
    return {**metrics, **fields}


def logged_test_metrics(results: list[dict[str, float]]) -> dict[str, float]:
    return {k.split("/", 1)[1]: float(v) for k, v in results[0].items() if k.startswith("test/")}


def write_metrics(cfg: DictConfig, metrics: dict[str, Any]) -> None:
    output_dir = Path(cfg.paths.output_dir)
    atomic_write(output_dir / "metrics.json", json.dumps(metrics, indent=2).encode())
    log.info("test metrics (%s):\n%s", output_dir / "metrics.json", format_table(metrics))
    if metrics.get("fold_in"):
        log.info("%s", format_fold_in(metrics["fold_in"]))


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
