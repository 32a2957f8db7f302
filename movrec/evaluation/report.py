"""One table and one figure for a whole Hydra sweep (the paper's Chapter 5 comparison).

Runs by itself at the end of every multirun (``SweepReport``, a Hydra callback) and can be
rebuilt from an existing sweep folder: ``movrec report logs/multiruns/<time>``.
Writes ``summary.csv`` and ``summary.md`` (one row per job, plus mean ± std over jobs that
differ only by seed or fold) and ``comparison.png`` (the paper's Fig. 2) into that folder.
A job without ``metrics.json`` is a failed row, not a crash.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402
from scipy import stats  # noqa: E402

from movrec.console import FAILED_FILE  # noqa: E402
from movrec.errors import USER_ERROR_EXIT_CODE, MissingFileError  # noqa: E402

log = logging.getLogger(__name__)

METRICS = ("mae", "rmse", "r2")
# Jobs differing only by these are repeats of one setting (mean ± std over them).
REPEAT_KEYS = ("seed", "data.fold", "data.split_seed")
SPLIT_KEY = "data.split_seed"
COLUMNS = (
    "status", "error", "kind", "mae", "rmse", "r2", "epochs_run", "best_epoch", "seconds_per_epoch",
    "train_seconds", "params_trainable", "params_frozen",
)  # fmt: skip


def _overrides(job: Path) -> dict[str, str]:
    path = job / ".hydra" / "overrides.yaml"
    items = yaml.safe_load(path.read_text()) if path.is_file() else []
    return dict(item.split("=", 1) for item in items or [] if "=" in item)


def job_row(job: Path) -> dict[str, Any]:
    """One job folder as a row: its overrides and its metrics, or status "failed"."""
    row: dict[str, Any] = {"job": job.name.split("_", 1)[0], **_overrides(job)}
    path = job / "metrics.json"
    if not path.is_file():
        failed = job / FAILED_FILE
        error = failed.read_text().strip() if failed.is_file() else "no metrics.json"
        return {**row, "status": "failed", "error": error}
    metrics = json.loads(path.read_text())
    if "model" not in row and (metrics.get("choices") or {}).get("model"):
        row["model"] = metrics["choices"]["model"]  # the default model: not an override
    parameters = metrics.get("parameters") or {}
    bias = metrics.get("bias_baseline") or {}
    return {
        **row,
        "status": "ok",
        "kind": metrics.get("kind", "network"),
        # A top-N peer predicts no ratings: its rating metrics stay empty.
        **{m: metrics["test"].get(m, float("nan")) for m in METRICS},
        **{m: v for m, v in metrics["test"].items() if "@" in m},  # ranking, with users
        **fold_in_columns(metrics.get("fold_in")),
        **{f"bias_{m}": v for m, v in bias.items() if m != "loss"},
        **{f"val_{m}": v for m, v in (metrics.get("val_top_n") or {}).items()},
        "val_loss": metrics.get("best_val_loss"),
        "val_loss_cross_half": metrics.get("val_loss_cross_half"),
        "epochs_run": metrics.get("epochs_run"),
        "best_epoch": metrics.get("best_epoch"),
        "seconds_per_epoch": metrics.get("seconds_per_epoch"),
        "train_seconds": metrics.get("train_seconds"),
        "params_trainable": parameters.get("trainable"),
        "params_frozen": parameters.get("frozen"),
    }


def fold_in_columns(fold_in: dict | None) -> dict[str, float]:
    """New users' list metrics per history length (``fold_in/5/full_ndcg@10``)."""
    return {
        f"fold_in/{n}/{m}": v
        for n, result in (fold_in or {}).items()
        for m, v in result["fold_in"].items()
        if m.startswith("full_")
    }


VALIDATION = ("val_loss", "val_loss_cross_half")  # the best validation loss, and how it holds
# up when chosen on one half of the validation rows and scored on the other (selection.py)


def metric_columns(table: pd.DataFrame) -> list[str]:
    """MAE / RMSE / R², then ranking metrics and the bias baseline's, where runs have them,
    then the validation losses."""
    extra = [c for c in table.columns if "@" in c and not c.startswith("bias_")]
    bias = [c for c in table.columns if c.startswith("bias_")]
    validation = [c for c in VALIDATION if c in table and table[c].notna().any()]
    return [*METRICS, *extra, *bias, *validation]


def job_folders(sweep_dir: Path) -> list[Path]:
    """A sweep's job folders in job order."""
    if not sweep_dir.is_dir():
        raise MissingFileError(f"{sweep_dir}: no such folder (a sweep's, e.g. logs/multiruns/...)")
    jobs = sorted(
        (p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()),
        key=lambda p: (len(p.name.split("_")[0]), p.name),
    )
    if not jobs:
        raise MissingFileError(f"{sweep_dir}: no Hydra job folders (with .hydra/) found")
    return jobs


def jobs_table(sweep_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """Rows per job and the override keys that differ between jobs."""
    table = pd.DataFrame([job_row(job) for job in job_folders(sweep_dir)])
    table = table.assign(**{m: float("nan") for m in METRICS if m not in table})  # all failed
    metrics = metric_columns(table)
    overrides = [c for c in table.columns if c not in (*COLUMNS, *VALIDATION, *metrics, "job")]
    varying = [c for c in overrides if table[c].astype(str).nunique() > 1]
    columns = [c for c in COLUMNS if c in table]
    ordered = [*columns[: columns.index("r2") + 1], *metrics[len(METRICS) :]]
    ordered += [c for c in columns if c not in ordered]
    return table[["job", *varying, *ordered]], varying


def aggregate(table: pd.DataFrame, varying: list[str]) -> pd.DataFrame | None:
    """Mean ± std of the metrics over repeats (seeds, folds) of each setting."""
    repeats = [k for k in varying if k in REPEAT_KEYS]
    groups = [k for k in varying if k not in REPEAT_KEYS]
    done = table[table["status"] == "ok"]
    if not repeats or done.empty:
        return None
    grouped = done.groupby(groups, sort=False) if groups else done.groupby(lambda _: "all")
    metrics = metric_columns(table)
    out = grouped[metrics].agg(["mean", "std"])
    result = pd.DataFrame(index=out.index)
    for metric in metrics:
        mean, std = out[(metric, "mean")], out[(metric, "std")].fillna(0.0)
        result[metric] = [f"{m:.4f} ± {s:.4f}" for m, s in zip(mean, std, strict=True)]
    result["runs"] = grouped.size()
    return result.reset_index()


LOWER_IS_BETTER = ("mae", "rmse", "loss")


def paired_differences(table: pd.DataFrame, metric: str = "r2") -> pd.DataFrame | None:
    """Each network minus each peer (trees, Surprise), paired on everything else the jobs vary
    (split seed, seed, ...): a split moves every model together. Per pair of models: the mean
    difference with its 95 % t-interval, how many pairs the network wins, and "ahead",
    "behind" or "level" (the interval spans zero). None without both kinds of model."""
    done = table[table["status"] == "ok"]
    if "model" not in done or metric not in done or done["kind"].nunique() < 2:
        return None
    keys = [c for c in done.columns if c in REPEAT_KEYS]
    kinds = dict(zip(done["model"], done["kind"], strict=False))
    runs = {model: rows for model, rows in done.groupby("model", sort=False)}
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    rows = []
    for network in (m for m in runs if kinds[m] == "network"):
        for peer in (m for m in runs if kinds[m] != "network"):
            # Paired on what both vary: a peer run once per split meets the network's mean
            # over seeds on that split.
            both = [k for k in keys if min(runs[network][k].nunique(), runs[peer][k].nunique()) > 1]
            means = [runs[m].groupby(both)[metric].mean() if both else runs[m][metric].mean()
                     for m in (network, peer)]  # fmt: skip
            difference = pd.Series(means[0] - means[1]).dropna()
            summary = interval(difference.to_numpy())
            if summary is None:
                continue
            wins = int((sign * difference > 0).sum())
            low, high = summary["ci95"]
            verdict = "level" if low <= 0 <= high else "ahead" if sign * low > 0 else "behind"
            wins_of = f"{wins} of {len(difference)}"
            rows.append({"pair": f"{network} − {peer}", "metric": metric, **summary,
                         "network_wins": wins_of, "verdict": verdict})  # fmt: skip
    return pd.DataFrame(rows) if rows else None


def interval(values: np.ndarray) -> dict[str, Any] | None:
    """Mean and 95 % t-interval of paired differences (None for fewer than two)."""
    n = len(values)
    if n < 2:
        return None
    mean = float(values.mean())
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return {"mean": mean, "ci95": [mean - half, mean + half], "pairs": n}


def comparison_figure(table: pd.DataFrame, varying: list[str]) -> plt.Figure:
    """Fig. 2: one bar group per metric, one bar per setting (averaged over repeats)."""
    done = table[table["status"] == "ok"]
    groups = [k for k in varying if k not in REPEAT_KEYS]
    labels = done[groups].astype(str).agg(", ".join, axis=1) if groups else done["job"]
    means = done.assign(setting=labels.values).groupby("setting", sort=False)[list(METRICS)].mean()
    figure, axis = plt.subplots(figsize=(max(6, 2 + 1.5 * len(METRICS) * len(means) / 3), 4.5))
    width = 0.8 / max(len(means), 1)
    for i, (setting, values) in enumerate(means.iterrows()):
        positions = [m + i * width for m in range(len(METRICS))]
        bars = axis.bar(positions, values.to_numpy(), width, label=setting)
        axis.bar_label(bars, fmt="%.3f", fontsize=7)
    axis.set_xticks([m + width * (len(means) - 1) / 2 for m in range(len(METRICS))])
    axis.set_xticklabels([m.upper() for m in METRICS])
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set(title="Model performance comparison (test split)", ylabel="Score")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def format_paired(paired: pd.DataFrame) -> pd.DataFrame:
    """The paired differences as they read in a table: +0.0123 [−0.0041, +0.0287]."""
    bounds = zip(paired["mean"], paired["ci95"], strict=True)
    cells = [f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}]" for m, (lo, hi) in bounds]
    columns = {"pair": paired["pair"], "mean difference [95 % interval]": cells,
               "network wins": paired["network_wins"], "": paired["verdict"]}  # fmt: skip
    return pd.DataFrame(columns)


def markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join("" if pd.isna(v) else f"{v:.4f}" if isinstance(v, float) else str(v)
                          for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]  # fmt: skip
    return "\n".join([header, rule, *body])


def write_report(sweep_dir: str | Path) -> pd.DataFrame:
    sweep_dir = Path(sweep_dir)
    table, varying = jobs_table(sweep_dir)
    table.to_csv(sweep_dir / "summary.csv", index=False)
    parts = [f"# Sweep {sweep_dir.name}", "", "## Jobs", "", markdown(table)]
    aggregated = aggregate(table, varying)
    if aggregated is not None:
        parts += ["", "## Mean ± std over seeds / folds / splits", "", markdown(aggregated)]
    done = table[table["status"] == "ok"]
    if "rmse" in done and "model" in done and done["rmse"].isna().any():
        silent = sorted(set(done.loc[done["rmse"].isna(), "model"].astype(str)))
        parts += ["", f"No rating predictions (no RMSE, MAE, R²): {', '.join(silent)}."]
    ranked = [c for c in table.columns if "full_ndcg@" in c]
    for metric in ("r2", "rmse", *ranked):
        paired = paired_differences(table, metric)
        if paired is not None:
            parts += ["", f"## Network − peers, {metric} (paired, 95 % interval)", "",
                      markdown(format_paired(paired))]  # fmt: skip
    (sweep_dir / "summary.md").write_text("\n".join(parts) + "\n")
    if (table["status"] == "ok").any():
        figure = comparison_figure(table, varying)
        figure.savefig(sweep_dir / "comparison.png", dpi=120)
        plt.close(figure)
    log.info("sweep report: %s", sweep_dir / "summary.md")
    return table


class SweepReport(Callback):
    """Hydra callback: refuses a sweep folder that holds another sweep, writes the report into
    the sweep folder when a multirun ends, then makes the sweep exit with code 1 if any job
    failed (after the others ran)."""

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        """Two sweeps in one folder would overwrite each other's jobs (``metrics.json``,
        checkpoints, logs): the second is refused before it writes anything."""
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir() and any(sweep_dir.iterdir()):
            print(
                f"movrec: error: hydra.sweep.dir={sweep_dir} already holds another sweep's "
                "files: give a new folder (or leave hydra.sweep.dir unset for a fresh one)",
                file=sys.stderr,
            )
            raise SystemExit(USER_ERROR_EXIT_CODE)

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            table = write_report(sweep_dir)
        except FileNotFoundError as err:  # nothing ran: say so, do not fail the sweep
            log.warning("no sweep report: %s", err)
            return
        failed = table[table["status"] == "failed"]
        if len(failed):
            print(
                f"movrec: error: {len(failed)} of {len(table)} sweep jobs failed "
                f"(jobs {', '.join(failed['job'])}; see {sweep_dir / 'summary.md'})",
                file=sys.stderr,
            )
            raise SystemExit(1)
