"""What a run reports: ``metrics.json``, the console table, TensorBoard's HParams entry, and
the mean and bias baselines every model is shown beside."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from movrec.atomic import atomic_write
from movrec.data import FittedDataModule
from movrec.evaluation import fold_in, topn
from movrec.evaluation.baselines import score_predictions, user_item_bias

log = logging.getLogger(__name__)

METRIC_NAMES = ("mae", "rmse", "r2")


@dataclass(frozen=True)
class RunInfo:
    """What the reports need to know of a run's configuration (:mod:`movrec.run` makes it)."""

    output_dir: Path
    seed: int | None = None
    ranking_k: int = 10  # top-k of the ranking metrics
    relevance_threshold: float = 4.0  # a rating at or above it is a relevant movie
    choices: dict[str, str] = field(default_factory=dict)  # Hydra group choices
    overrides: list[str] = field(default_factory=list)  # the command line's overrides
    settings: dict[str, Any] = field(default_factory=dict)  # composed model / data / trainer


def mean_baseline(datamodule: FittedDataModule) -> dict[str, float]:
    """Test metrics of always predicting the training mean: the bar every model must clear."""
    target = datamodule.examples("test")["rating"]
    return score_predictions(torch.full_like(target, datamodule.preprocessing.target_mean), target)


def user_reports(
    model: Any, datamodule: FittedDataModule, max_users: int | None,
    fold_in_history: list[int], fold_in_settings: dict[str, float | None],
) -> tuple[dict[str, float], dict[str, Any] | None, dict[str, Any] | None]:  # fmt: skip
    """With users, what a tested model ranks: its full-catalogue metrics (for the test
    metrics), the popularity and movie-bias rankings' (:mod:`movrec.evaluation.topn`), and on
    ``data.split=cold_users`` the fold-in from each history length
    (:mod:`movrec.evaluation.fold_in`). Nothing without users."""
    if not datamodule.has_users:
        return {}, None, None
    k, threshold = model.hparams.ranking_k, model.hparams.relevance_threshold
    start = time.perf_counter()
    rankings = topn.catalogue_metrics(model, datamodule, k, threshold, max_users)
    log.info("full-catalogue top-%d (%.1f s): %s", k, time.perf_counter() - start, rankings)
    tested = rankings.pop("model")
    if datamodule.hparams.split != "cold_users":
        return tested, rankings, None
    folded = {
        str(n): fold_in.new_user_metrics(
            model, datamodule, n, k, threshold, fold_in_settings, max_users
        )
        for n in fold_in_history
    }
    return tested, rankings, folded


def bias_baseline(info: RunInfo, datamodule: FittedDataModule) -> dict[str, float] | None:
    """User + movie biases on the same split (user ratings only): the collaborative bar."""
    ratings = datamodule.user_ratings()
    if ratings is None:
        return None
    return user_item_bias(*ratings, info.ranking_k, info.relevance_threshold)


def format_table(metrics: dict) -> str:
    columns = {"model": metrics["test"], "mean predictor": metrics["mean_baseline"]}
    top_n = metrics.get("top_n_baselines") or {}
    if metrics.get("bias_baseline"):
        columns["user+movie bias"] = {**metrics["bias_baseline"], **top_n.get("bias", {})}
    if top_n:
        columns["popularity"] = top_n["popularity"]
    names = [*METRIC_NAMES, *sorted(k for k in metrics["test"] if "@" in k)]
    width = max(12, *(len(name) + 1 for name in names))
    lines = ["".join([f"{'':<{width}}", *(f"{c:>17}" for c in columns)])]
    for name in names:
        values = [v.get(name) for v in columns.values()]
        cells = [f"{v:>17.4f}" if v is not None else f"{'':>17}" for v in values]
        lines.append(f"{name.upper():<{width}}" + "".join(cells))
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
    ranking, with the settings validation chose (a peer has its own fold-in row only)."""
    blocks = []
    for n, result in report.items():
        names = ["rmse", *sorted(k for k in result["fold_in"] if k.startswith("full_"))]
        users = f"{result['users']['scored']} users; " if "users" in result else ""
        chosen = ", ".join(f"{k} {v:g}" for k, v in result["chosen"].items())
        lines = [
            f"new users, first {n} ratings folded in ({users}{chosen})",
            "".join([f"{'':<18}", *(f"{name.upper():>17}" for name in names)]),
        ]
        for key, label in FOLD_IN_ROWS.items():
            if key not in result:
                continue
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
    info: RunInfo, datamodule: FittedDataModule, test: dict[str, float], **fields: Any
) -> dict[str, Any]:
    """What ``metrics.json`` holds; every kind of run fills in what it knows."""
    metrics = {
        **({"choices": info.choices, "overrides": info.overrides} if info.choices else {}),
        "seed": info.seed,
        "kind": "network",  # "trees", "peer": the report pairs networks with the others
        "chosen": None,  # trees and peers: the setting validation chose
        "test": test,
        "mean_baseline": mean_baseline(datamodule),
        "bias_baseline": bias_baseline(info, datamodule),
        "epochs_run": None,
        "best_epoch": None,
        "best_val_loss": None,
        # Chosen on one half of the validation rows, scored on the other (selection.py).
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
        # With users: the validation-chosen weights' full-catalogue metrics on validation.
        "val_top_n": None,
        "fold_in": None,  # data.split=cold_users: new users folded in (movrec.evaluation.fold_in)
    }
    unknown = set(fields) - set(metrics)
    if unknown:
        raise KeyError(f"not metrics.json fields: {sorted(unknown)}")
    return {**metrics, **fields}


def logged_test_metrics(results: list[dict[str, float]]) -> dict[str, float]:
    return {k.split("/", 1)[1]: float(v) for k, v in results[0].items() if k.startswith("test/")}


def write_metrics(info: RunInfo, metrics: dict[str, Any]) -> None:
    path = info.output_dir / "metrics.json"
    atomic_write(path, json.dumps(metrics, indent=2).encode())
    log.info("test metrics (%s):\n%s", path, format_table(metrics))
    if metrics.get("fold_in"):
        log.info("%s", format_fold_in(metrics["fold_in"]))


def log_hparams(info: RunInfo, loggers: list[Logger], metrics: dict[str, Any]) -> None:
    """The run's settings with its final metrics, so TensorBoard's HParams tab lines up the
    jobs of a sweep. Written once, at the end: Lightning's own hparams logging (switched off
    in the module and datamodule) writes no metrics and refuses keys both of them have."""
    params = {"choice": info.choices, "seed": info.seed, **info.settings}
    final = {f"hp/test_{k}": v for k, v in metrics["test"].items() if k != "loss"}
    if metrics["best_val_loss"] is not None:
        final["hp/best_val_loss"] = metrics["best_val_loss"]
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics=final)
        else:
            logger.log_hyperparams(params)
        logger.finalize("success")
