"""The result tables of the docs, written by code from the sweeps that measured them.

    python benchmarks/results.py NAME SWEEP_DIR [SWEEP_DIR ...]

reads every job's ``metrics.json`` in the sweep folders (``logs/multiruns/<time>``), and writes
``benchmarks/results/NAME.json``: per model the mean, std and count of each test metric, and
each network minus each peer (trees, Surprise) paired on split seed and seed, with the mean
difference, its 95 % t-interval and a verdict ("level" when the interval spans zero). It
prints the same as the markdown tables the docs show.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

from movrec.evaluation.report import (
    format_paired,
    job_folders,
    job_row,
    markdown,
    metric_columns,
    paired_differences,
)

RESULTS = Path(__file__).resolve().parent / "results"
PAIRED_METRICS = ("r2", "rmse", "full_ndcg@10", "fold_in/5/full_ndcg@10")
SHOWN = (
    "mae", "rmse", "r2", "full_ndcg@10", "coverage@10", "unrated_share@10",
    "fold_in/5/full_ndcg@10",
)  # fmt: skip


def summarise(table: pd.DataFrame) -> dict:
    """Mean, std and count per model of every test metric the jobs have."""
    done = table[table["status"] == "ok"]
    metrics = [m for m in metric_columns(table) if not m.startswith(("bias_", "val_"))]
    models: dict[str, dict] = {}
    for model, rows in done.groupby("model", sort=False):
        models[str(model)] = {
            metric: {"mean": float(rows[metric].mean()), "std": float(rows[metric].std(ddof=1))
                     if len(rows) > 1 else 0.0, "runs": int(rows[metric].notna().sum())}
            for metric in metrics if rows[metric].notna().any()
        }  # fmt: skip
    return models


def sweep_command(folder: Path) -> str:
    """The command that ran a sweep, from its multirun.yaml (the folder's name if it has none)."""
    path = folder / "multirun.yaml"
    if not path.is_file():
        return str(folder)
    task = yaml.safe_load(path.read_text())["hydra"]["overrides"]["task"]
    shown = [o for o in task if not o.startswith(("hydra.sweep", "callbacks.progress_bar"))]
    return " ".join(["python train.py -m", *shown])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the results file: benchmarks/results/NAME.json")
    parser.add_argument("sweeps", nargs="+", help="sweep folders (logs/multiruns/<time>)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    jobs = [job for folder in args.sweeps for job in job_folders(Path(folder))]
    table = pd.DataFrame([job_row(job) for job in jobs])
    paired = [paired_differences(table, metric) for metric in PAIRED_METRICS]
    paired = [p for p in paired if p is not None]
    result = {
        "name": args.name,
        "sweeps": [sweep_command(Path(folder)) for folder in args.sweeps],
        "jobs": int((table["status"] == "ok").sum()),
        "models": summarise(table),
        "paired": [record for p in paired for record in p.to_dict("records")],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    metrics = [m for m in SHOWN if m in table]
    rows = [
        {"model": model, "runs": max(s["runs"] for s in values.values()),
         **{m: f"{values[m]['mean']:.4f} ± {values[m]['std']:.4f}" for m in metrics if m in values}}
        for model, values in result["models"].items()
    ]  # fmt: skip
    print(markdown(pd.DataFrame(rows)))
    for frame in paired:
        print()
        print(markdown(format_paired(frame)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
