"""Speed benchmark (not a test): seconds per epoch, GloVe build, and a whole `train.py` run.

    python -m movrec.bench --data-dir ../shared/data/tmdb5000
    python -m movrec.bench --experiment recommend --ratings 25M

``--against DIR`` times another checkout (e.g. ``git worktree add ../base 0117e5c``) beside
this one: ``--rounds`` rounds, each running both benchmarks in their own processes in
alternating order, and reports each round's ratio, since the machine's speed drifts between
runs far more than within a round.

``--ratings SIZE`` instead times personalised training on synthetic ratings of a MovieLens
shape (100k, 1M, 25M): data build seconds, peak RSS, one training epoch in ratings per second
beside the bare PyTorch loop over the same batches in the same process, validation and test.

Per variant it trains ``--epochs`` epochs with no early stopping, checkpointing, progress bar or
logger (the loop itself, training plus validation) and reports the median epoch wall time. It
also times the GloVe matrix build and, as a user sees it, ``python train.py
model=finetuned_glove`` from process start to ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.fabric.utilities.apply_func import move_data_to_device

from movrec.console import silence_known_noise
from movrec.results import logged_test_metrics
from movrec.run import build_datamodule, build_model, build_trainer, fit_and_test

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
    device = trainer_device(cfg)
    model.to(device)
    optimizer = model.configure_optimizers()
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        bare_training_epoch(model, optimizer, datamodule.train_dataloader(), device)
        model.eval()
        with torch.no_grad():
            for batch in datamodule.val_dataloader():
                model(move_data_to_device(batch, device))
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def trainer_device(cfg) -> torch.device:
    """The device the configured Trainer trains on, for the bare loop beside it."""
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    return trainer.strategy.root_device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_training_epoch(model, optimizer, batches, device: torch.device) -> None:
    model.train()
    for batch in batches:
        batch = move_data_to_device(batch, device)
        loss = F.mse_loss(model(batch), batch["rating"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


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


# MovieLens shapes: users, ratings drawn per user (repeats dropped), TMDb-schema movies.
RATINGS_SHAPES = {
    "100k": (600, 170, 9_000),
    "1M": (6_000, 170, 4_000),
    "25M": (160_000, 160, 60_000),
}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


class TrainingClock(L.Callback):
    """Seconds of each epoch's training batches alone (validation excluded)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            synchronize(pl_module.device)
            self.seconds.append(time.perf_counter() - self._start)


def ratings_benchmark(
    shape: str, epochs: int, batch_size: int, eval_batch_size: int, extra: list[str]
) -> dict:
    """One process: build the data, train ``epochs`` epochs with Lightning (validated),
    test, then the same epochs as a bare PyTorch loop."""
    users, per_user, movies = RATINGS_SHAPES[shape]
    cfg = compose_cfg(
        [
            "experiment=recommend",
            "data=movielens_synthetic",
            f"data.movies.n_movies={movies}",
            f"data.ratings.n_users={users}",
            f"data.ratings.ratings_per_user={per_user}",
            f"data.batch_size={batch_size}",
            f"data.eval_batch_size={eval_batch_size}",
            *QUIET,
            f"trainer.max_epochs={epochs}",
            "+trainer.num_sanity_val_steps=0",
            "paths.output_dir=unused",
            *extra,
        ]
    )
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    datamodule = build_datamodule(cfg)
    build = time.perf_counter() - start
    out = {"shape": shape, "rows": datamodule.summary()["rows"], "data_build_seconds": build}
    out["peak_rss_gb_after_build"] = peak_rss_gb()
    train_rows = out["rows"]["train"]

    model, _ = build_model(cfg, datamodule)
    clock = TrainingClock()
    trainer = build_trainer(cfg, callbacks=[clock], logger=False)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    out["fit_seconds"] = time.perf_counter() - start  # training and validation
    start = time.perf_counter()
    out["test"] = logged_test_metrics(trainer.test(model, datamodule=datamodule, verbose=False))
    out["test_seconds"] = time.perf_counter() - start
    out["movrec_epoch_seconds"] = clock.seconds
    out["movrec_ratings_per_second"] = train_rows / statistics.median(clock.seconds)

    model, _ = build_model(cfg, datamodule)
    device = trainer.strategy.root_device
    model.to(device)
    optimizer = model.configure_optimizers()
    plain = []
    for _ in range(epochs):
        start = time.perf_counter()
        bare_training_epoch(model, optimizer, datamodule.train_dataloader(), device)
        synchronize(device)
        plain.append(time.perf_counter() - start)
    out["plain_epoch_seconds"] = plain
    out["plain_ratings_per_second"] = train_rows / statistics.median(plain)
    out["peak_rss_gb"] = peak_rss_gb()
    return out


def print_ratings(results: dict) -> None:
    r = results
    print(f"\nratings benchmark ({r['shape']}): rows {r['rows']}")
    build, rss = r["data_build_seconds"], r["peak_rss_gb_after_build"]
    print(f"data build: {build:.1f} s, peak RSS {rss:.2f} GB")
    print(
        f"training: movrec {r['movrec_ratings_per_second']:,.0f} ratings/s, bare PyTorch loop "
        f"{r['plain_ratings_per_second']:,.0f} ratings/s "
        f"(ratio {r['movrec_ratings_per_second'] / r['plain_ratings_per_second']:.2f})"
    )
    print(f"fit (training + validation) {r['fit_seconds']:.1f} s, test {r['test_seconds']:.1f} s")
    print(f"test RMSE {r['test']['rmse']:.4f}; peak RSS of the whole run {r['peak_rss_gb']:.2f} GB")


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
    parser.add_argument(
        "--ratings", choices=sorted(RATINGS_SHAPES), help="time ratings of this shape"
    )
    parser.add_argument("--batch-size", type=int, default=4096, help="with --ratings")
    parser.add_argument("--eval-batch-size", type=int, default=65536, help="with --ratings")
    parser.add_argument(
        "--trainer", help="a conf/trainer config (e.g. gpu); the bare loop runs on its device too"
    )
    parser.add_argument(
        "--against", help="a checkout of another revision to time beside this one, round by round"
    )
    parser.add_argument("--rounds", type=int, default=5, help="with --against")
    parser.add_argument(
        "overrides", nargs="*", help="more Hydra overrides, e.g. glove=text glove.source.path=..."
    )
    args = parser.parse_args(argv)
    silence_known_noise()
    if args.against:
        other = Path(args.against).resolve()
        if not (other / "movrec" / "bench.py").is_file():
            parser.error(f"--against {args.against}: not a movrec checkout (no movrec/bench.py)")
        if args.ratings or args.rounds < 1:
            parser.error("--against times epochs (not --ratings), in --rounds of at least 1")
        results = paired_rounds(forwarded_arguments(args), other, args.rounds)
        print_paired(results)
        save(results, args.out)
        return results
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
    save(results, args.out)
    return results


def save(results: dict, out: str | None) -> None:
    if out:
        Path(out).write_text(json.dumps(results, indent=2))


def forwarded_arguments(args: argparse.Namespace) -> list[str]:
    """This run's epoch-benchmark arguments, for both checkouts' own benchmarks."""
    forwarded = ["--epochs", str(args.epochs), "--variants", *args.variants, "--no-cli"]
    if args.synthetic:
        forwarded.append("--synthetic")
    if args.data_dir:
        forwarded += ["--data-dir", str(Path(args.data_dir).resolve())]
    if args.experiment:
        forwarded += ["--experiment", args.experiment]
    if args.trainer:
        forwarded += ["--trainer", args.trainer]
    return forwarded + args.overrides


def paired_rounds(arguments: list[str], other: Path, rounds: int) -> dict:
    """Both checkouts' benchmarks, each in its own process with this Python, the order
    alternating by round; per variant the ratio of this checkout's median epoch to the other's."""
    order = [("this", ROOT), ("other", other)]
    runs: list[dict[str, dict]] = []
    for round_index in range(rounds):
        run = {}
        for name, root in order[::-1] if round_index % 2 else order:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "bench.json"
                command = [sys.executable, "-m", "movrec.bench", *arguments, "--out", str(out)]
                done = subprocess.run(command, cwd=root, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"the benchmark in {root} failed:\n{done.stderr[-3000:]}")
                run[name] = json.loads(out.read_text())["seconds_per_epoch"]
        runs.append(run)
    ratios = {
        variant: [run["this"][variant]["median"] / run["other"][variant]["median"] for run in runs]
        for variant in runs[0]["this"]
    }
    return {
        "this": str(ROOT),
        "other": str(other),
        "rounds": runs,
        "ratio": {v: {"per_round": r, "median": statistics.median(r)} for v, r in ratios.items()},
    }


def print_paired(results: dict) -> None:
    rounds = results["rounds"]
    print(f"\nmedian seconds per epoch, this checkout / {results['other']}, {len(rounds)} rounds")
    for variant, ratio in results["ratio"].items():
        pairs = ", ".join(
            f"{run['this'][variant]['median']:.3f} / {run['other'][variant]['median']:.3f}"
            for run in rounds
        )
        per_round = " ".join(f"{r:.2f}" for r in ratio["per_round"])
        print(f"{variant:<16} {pairs}")
        print(f"{'':<16} ratio per round {per_round}; median {ratio['median']:.2f}")


if __name__ == "__main__":
    main()
