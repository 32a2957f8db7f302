"""Millions of ratings: data build, training throughput beside the bare loop, peak memory.

python -m benchmarks.bench --experiment recommend --ratings 25M [--trainer gpu]
"""

from __future__ import annotations

import gc
import resource
import statistics
import tempfile
import time

import lightning as L
import torch

from benchmarks.common import QUIET, bare_loop_seconds, compose_cfg, synchronize
from movrec.evaluation.results import logged_test_metrics
from movrec.run import build_datamodule, build_model, build_trainer

# MovieLens shapes: users, ratings drawn per user (repeats dropped), TMDb-schema movies.
RATINGS_SHAPES = {
    "100k": (600, 170, 9_000),
    "1M": (6_000, 170, 4_000),
    "25M": (160_000, 160, 60_000),
}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def progress(message: str) -> None:
    """A phase's figure as soon as it is measured: a run stopped by a time limit (the 25M
    shape on a small CPU) still leaves what it got through."""
    print(f"[bench] {message}", flush=True)


class TrainingClock(L.Callback):
    """Seconds of each epoch's training batches alone (validation excluded), each printed as
    it ends with the ratings per second of ``rows`` training rows."""

    def __init__(self, rows: int) -> None:
        self.seconds: list[float] = []
        self._start = 0.0
        self.rows = rows

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            synchronize(pl_module.device)
            seconds = time.perf_counter() - self._start
            self.seconds.append(seconds)
            rate = self.rows / seconds
            progress(f"movrec epoch {len(self.seconds)}: {seconds:.1f} s, {rate:,.0f} ratings/s")


def ratings_cfg(shape: str, epochs: int, batch_size: int, eval_batch_size: int, extra: list[str]):
    """``experiment=recommend`` on synthetic ratings of ``shape``, quiet; ``extra`` last."""
    users, per_user, movies = RATINGS_SHAPES[shape]
    return compose_cfg(
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
            # No weight average: it starts from the first step's weights and spans about
            # 1,000 steps, so after an epoch of 155 (the 1M shape) it tests little more than
            # those (RMSE 0.998 against 0.809 without it).
            "model.ema_decay=null",
            *extra,
        ]
    )


def ratings_benchmark(
    shape: str, epochs: int, batch_size: int, eval_batch_size: int, extra: list[str]
) -> dict:
    """One process: build the data (and again from the cache the first build wrote), train
    ``epochs`` epochs with Lightning (validated), test, then the same epochs as a bare
    PyTorch loop (the same losses, without Lightning)."""
    cfg = ratings_cfg(shape, epochs, batch_size, eval_batch_size, extra)
    torch.manual_seed(cfg.seed)
    with tempfile.TemporaryDirectory() as cache:  # a fresh cache: the first build writes it
        cfg.data.cache_dir = cache
        start = time.perf_counter()
        datamodule = build_datamodule(cfg)
        build = time.perf_counter() - start
        out = {"shape": shape, "rows": datamodule.summary()["rows"], "data_build_seconds": build}
        out["peak_rss_gb_after_build"] = peak_rss_gb()
        progress(f"data build {build:.1f} s, rows {out['rows']}")
        del datamodule
        gc.collect()
        start = time.perf_counter()
        datamodule = build_datamodule(cfg)
        out["data_build_cached_seconds"] = time.perf_counter() - start
        progress(f"data build from the cache {out['data_build_cached_seconds']:.1f} s")
    train_rows = out["rows"]["train"]

    model, _ = build_model(cfg, datamodule)
    clock = TrainingClock(train_rows)
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
    plain = bare_loop_seconds(model, datamodule, device, epochs, validate=False)
    out["plain_epoch_seconds"] = plain
    progress(f"bare loop epochs {[round(x, 1) for x in plain]} s")
    out["plain_ratings_per_second"] = train_rows / statistics.median(plain)
    out["peak_rss_gb"] = peak_rss_gb()
    if device.type == "cuda":
        out["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1024**3
    return out


def print_ratings(results: dict) -> None:
    r = results
    print(f"\nratings benchmark ({r['shape']}): rows {r['rows']}")
    build, rss = r["data_build_seconds"], r["peak_rss_gb_after_build"]
    cached = r["data_build_cached_seconds"]
    print(f"data build: {build:.1f} s, from the cache {cached:.1f} s; peak RSS {rss:.2f} GB")
    print(
        f"training: movrec {r['movrec_ratings_per_second']:,.0f} ratings/s, bare PyTorch loop "
        f"{r['plain_ratings_per_second']:,.0f} ratings/s "
        f"(ratio {r['movrec_ratings_per_second'] / r['plain_ratings_per_second']:.2f})"
    )
    print(f"fit (training + validation) {r['fit_seconds']:.1f} s, test {r['test_seconds']:.1f} s")
    print(f"test RMSE {r['test']['rmse']:.4f}; peak RSS of the whole run {r['peak_rss_gb']:.2f} GB")
    if "peak_gpu_memory_gb" in r:
        print(f"peak GPU memory {r['peak_gpu_memory_gb']:.2f} GB")
