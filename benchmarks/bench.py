"""Speed benchmark (not a test): seconds per epoch, GloVe build, and a whole `train.py` run.

    python -m benchmarks.bench --data-dir data/tmdb5000
    python -m benchmarks.bench --experiment recommend --ratings 25M

Speed is judged as the ratio to the bare loop timed in the same process: the machine's speed
drifts between runs far more than within one. ``--out`` writes the results as JSON.

``--ratings SIZE`` instead times personalised training on synthetic ratings of a MovieLens
shape (100k, 1M, 25M): data build seconds, peak RSS, one training epoch in ratings per second
beside the bare PyTorch loop over the same batches in the same process, validation and test.

Per variant it trains ``--epochs`` epochs with no early stopping, checkpointing, progress bar or
logger (the loop itself, training plus validation) and reports the median epoch wall time; then
the same fit as a run makes it (its callbacks, logger and checkpoints), so what a real run adds
per epoch is a ratio taken in one process. It also times the GloVe matrix build and, as a user
sees it, ``python train.py model=finetuned_glove`` from process start to ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from benchmarks.common import QUIET, ROOT, bare_loop_seconds, compose_cfg
from benchmarks.ratings import RATINGS_SHAPES, print_ratings, ratings_benchmark
from movrec.console import silence_known_noise
from movrec.run import build_datamodule, build_model, fit_and_test
from movrec.threads import available_cores, use_threads

VARIANTS = ("deep", "glove", "finetuned_glove")


def epoch_seconds(
    variant: str, data: list[str], epochs: int, out: Path, quiet: bool = True
) -> list[float]:
    """Seconds of each epoch of a fit (``quiet=False``: with the run's callbacks and logger)."""
    cfg = compose_cfg(
        [
            f"model={variant}",
            *data,
            *(QUIET if quiet else []),
            f"trainer.max_epochs={epochs}",
            f"paths.output_dir={out}",
        ]
    )
    return fit_and_test(cfg)["epoch_seconds"]


def plain_loop_seconds(variant: str, data: list[str], epochs: int) -> list[float]:
    """The same model, batches and optimiser in a bare PyTorch loop: the machine's floor now.

    Timed interleaved with the Lightning runs, so the ratio stays meaningful on a machine whose
    speed drifts.
    """
    cfg = compose_cfg([f"model={variant}", *data, "paths.output_dir=unused"])
    torch.manual_seed(cfg.seed)
    datamodule = build_datamodule(cfg)
    model, _ = build_model(cfg, datamodule)
    return bare_loop_seconds(model, datamodule, trainer_device(cfg), epochs, validate=True)


def trainer_device(cfg) -> torch.device:
    """The device the configured Trainer trains on, for the bare loop beside it."""
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    return trainer.strategy.root_device


def glove_build_seconds(data: list[str], repeats: int) -> list[float]:
    cfg = compose_cfg([*data, "paths.output_dir=unused"])
    datamodule = build_datamodule(cfg)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        datamodule.title_vectors(oov_init=cfg.glove.oov_init)
        seconds.append(time.perf_counter() - start)
    return seconds


def cli_seconds(data: list[str], log_dir: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "train.py", "model=finetuned_glove", *data, f"paths.log_dir={log_dir}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data-dir", help="folder with the Kaggle CSVs (default: data.movies.dir)")
    parser.add_argument("--synthetic", action="store_true", help="time on synthetic data instead")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--experiment", help="an experiment config to time, e.g. hybrid")
    parser.add_argument("--no-cli", action="store_true", help="skip the whole train.py run")
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument(
        "--ratings", choices=sorted(RATINGS_SHAPES), help="time ratings of this shape"
    )
    parser.add_argument("--batch-size", type=int, default=4096, help="with --ratings")
    parser.add_argument("--eval-batch-size", type=int, default=65536, help="with --ratings")
    parser.add_argument(
        "--trainer", help="a conf/trainer config (e.g. gpu); the bare loop runs on its device too"
    )
    parser.add_argument(
        "overrides", nargs="*", help="more Hydra overrides, e.g. glove=text glove.source.path=..."
    )
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    silence_known_noise()
    use_threads(available_cores())  # as a run does: all cores, denormals flushed
    extra = ([f"trainer={args.trainer}"] if args.trainer else []) + args.overrides
    if args.ratings:
        if args.experiment not in (None, "recommend"):
            parser.error("--ratings times experiment=recommend")
        epochs = 1 if "--epochs" not in (argv or sys.argv) else args.epochs
        results = ratings_benchmark(
            args.ratings, epochs, args.batch_size, args.eval_batch_size, extra
        )
        print_ratings(results)
        save(results, args.out)
        return results
    data = (["data=synthetic"] if args.synthetic else []) + extra
    if args.data_dir:
        data.append(f"data.movies.dir={Path(args.data_dir).resolve()}")
    if args.experiment:
        data.append(f"experiment={args.experiment}")

    results: dict = {"epochs": args.epochs, "seconds_per_epoch": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            seconds = epoch_seconds(variant, data, args.epochs, Path(tmp) / variant)
            as_run = epoch_seconds(
                variant, data, args.epochs, Path(tmp) / f"{variant}-run", quiet=False
            )
            plain = plain_loop_seconds(variant, data, args.epochs)
            results["seconds_per_epoch"][variant] = {
                "median": statistics.median(seconds),
                "all": seconds,
                "as_run_median": statistics.median(as_run),
                "plain_pytorch_median": statistics.median(plain),
            }
        glove_seconds = glove_build_seconds(data, 5)
        results["glove_build_seconds"] = {
            "first": glove_seconds[0],
            "median": statistics.median(glove_seconds),
        }
        if not args.no_cli:
            results["train_py_seconds"] = cli_seconds(data, Path(tmp) / "logs")

    print(f"\nmedian seconds per epoch, training + validation, {args.epochs} epochs")
    print(f"{'variant':<16} {'movrec':>8} {'as a run':>9} {'plain PyTorch loop':>20}")
    for variant, t in results["seconds_per_epoch"].items():
        print(
            f"{variant:<16} {t['median']:>8.3f} {t['as_run_median']:>9.3f}"
            f" {t['plain_pytorch_median']:>20.3f}"
        )
    glove = results["glove_build_seconds"]
    print(f"GloVe matrix build: {glove['first']:.3f} s first, {glove['median']:.3f} s median of 5")
    if "train_py_seconds" in results:
        print(f"python train.py model=finetuned_glove: {results['train_py_seconds']:.1f} s wall")
    save(results, args.out)
    return results


def save(results: dict, out: str | None) -> None:
    if out:
        Path(out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
