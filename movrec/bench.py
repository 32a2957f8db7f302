"""Speed benchmark (not a test): seconds per epoch, GloVe build, and a whole `train.py` run.

    python -m movrec.bench --data-dir ../shared/data/tmdb5000

Per variant it trains ``--epochs`` epochs with no early stopping, checkpointing, progress bar or
logger (the loop itself, training plus validation) and reports the median epoch wall time. It
also times the GloVe matrix build and, as a user sees it, ``python train.py
model=finetuned_glove`` from process start to ``metrics.json``.
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
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from movrec.console import silence_known_noise
from movrec.run import build_datamodule, build_model, fit_and_test

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("deep", "glove", "finetuned_glove")
QUIET = [
    "logger=none",
    "callbacks=none",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_checkpointing=false",
    "+trainer.enable_model_summary=false",
]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def epoch_seconds(variant: str, data: list[str], epochs: int, out: Path) -> list[float]:
    cfg = compose_cfg(
        [
            f"model={variant}",
            *data,
            *QUIET,
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
    optimizer = model.configure_optimizers()
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for batch in datamodule.train_dataloader():
            loss = F.mse_loss(model(batch), batch["rating"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for batch in datamodule.val_dataloader():
                model(batch)
        seconds.append(time.perf_counter() - start)
    return seconds


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


def main(argv: list[str] | None = None) -> dict:
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
    args = parser.parse_args(argv)
    silence_known_noise()
    data = ["data=synthetic"] if args.synthetic else []
    if args.data_dir:
        data.append(f"data.movies.dir={Path(args.data_dir).resolve()}")
    if args.experiment:
        data.append(f"experiment={args.experiment}")

    results: dict = {"epochs": args.epochs, "seconds_per_epoch": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            seconds = epoch_seconds(variant, data, args.epochs, Path(tmp) / variant)
            plain = plain_loop_seconds(variant, data, args.epochs)
            results["seconds_per_epoch"][variant] = {
                "median": statistics.median(seconds),
                "all": seconds,
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
    print(f"{'variant':<16} {'movrec':>8} {'plain PyTorch loop':>20}")
    for variant, timing in results["seconds_per_epoch"].items():
        print(f"{variant:<16} {timing['median']:>8.3f} {timing['plain_pytorch_median']:>20.3f}")
    glove = results["glove_build_seconds"]
    print(f"GloVe matrix build: {glove['first']:.3f} s first, {glove['median']:.3f} s median of 5")
    if "train_py_seconds" in results:
        print(f"python train.py model=finetuned_glove: {results['train_py_seconds']:.1f} s wall")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
