"""Sweeping at scale: Optuna search and parallel local jobs on tiny synthetic sweeps."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import ROOT
from movrec.data.movielens import write_movielens
from movrec.data.synthetic import make_tmdb, write_tmdb
from movrec.threads import available_cores, thread_share

pytestmark = pytest.mark.slow  # subprocess sweeps: Optuna, joblib, SLURM

TINY = [
    "data=synthetic",
    "data.movies.n_movies=300",
    "trainer.max_epochs=2",
    "logger=none",
    "callbacks.progress_bar=null",
]


def _train(*args: str, log_dir) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "train.py", *args, *TINY, f"paths.log_dir={log_dir}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_second_sweep_into_the_same_folder_is_refused(tmp_path):
    """Run twice with one hydra.sweep.dir, the second sweep writes nothing there."""
    folder = tmp_path / "sweep"
    args = ["-m", "model=deep,glove", f"hydra.sweep.dir={folder}"]
    _train(*args, log_dir=tmp_path)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert len([p for p in before if p.name == "metrics.json"]) == 2
    cmd = [sys.executable, "train.py", *args, *TINY, f"paths.log_dir={tmp_path}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert done.stderr.startswith(f"movrec: error: hydra.sweep.dir={folder} already holds")
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_optuna_search_minimises_validation_rmse(tmp_path):
    _train("hparams_search=optuna", "hydra.sweeper.n_trials=3", log_dir=tmp_path)
    (sweep,) = (tmp_path / "multiruns").iterdir()
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 3 and (summary["status"] == "ok").all()
    assert {
        "model.optimizer.lr",
        "model.net.dropout",
        "model.net.id_dim",
        "data.batch_size",
    } <= set(best["best_params"])
    assert best["best_value"] > 0


def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    # A config-group override (model/scheduler=...) names the job folders too: one folder each.
    done = _train("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model=deep,glove",
                  "model/scheduler=cosine", log_dir=tmp_path)  # fmt: skip
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr
    assert "LeafSpec" not in done.stdout + done.stderr  # silenced in the workers too
    (sweep,) = (tmp_path / "multiruns").iterdir()
    assert list(pd.read_csv(sweep / "summary.csv")["model"]) == ["deep", "glove"]
    # Two jobs at a time: each holds its libraries to half the cores, not all of them.
    share = thread_share(None, available_cores(), jobs=2)
    for log in sweep.glob("*/train.log"):
        assert f"{share} thread(s) per library in this process" in log.read_text()


def test_slurm_launcher_config_composes(tmp_path):
    cmd = [sys.executable, "train.py", "hydra/launcher=submitit_slurm", "--cfg", "hydra"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SlurmLauncher" in done.stdout


def test_a_failing_job_is_a_failed_row_and_the_sweep_exits_non_zero(tmp_path):
    cmd = [sys.executable, "train.py", "-m", *TINY, f"paths.log_dir={tmp_path}",
           "data.test_fraction=0.2,1.5"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert "movrec: error: 1 of 2 sweep jobs failed" in done.stderr
    (sweep,) = (tmp_path / "multiruns").iterdir()
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["status"]) == ["ok", "failed"]
    assert summary["error"][1] == "UserError: data.test_fraction must be in (0, 1), got 1.5"
    assert summary["rmse"][0] > 0 and (sweep / "comparison.png").is_file()
    assert "| failed |" in (sweep / "summary.md").read_text()


def test_every_experiment_and_model_survives_a_fast_dev_run_sweep(tmp_path):
    """``-m experiment=glob(*) model=glob(*)`` with the default TensorBoard logger, on files
    written from the synthetic generators: every job runs except paper x the tree models (trees
    need the metadata features the paper's protocol has not) and the Surprise and top-N peers
    on TMDb alone (they need user ratings): failed rows with their one line.
    (experiment=paper model=deep once crashed in Lightning's hparams merge.)"""
    movies_dir, ratings_dir = tmp_path / "tmdb", tmp_path / "movielens"
    write_tmdb(movies_dir, n_movies=300, seed=0)
    movies = make_tmdb(n_movies=300, seed=0)[0]
    write_movielens(ratings_dir, movies, n_users=60, ratings_per_user=20)
    env = {**os.environ, "MOVREC_DATA_DIR": str(movies_dir), "MOVREC_RATINGS_DIR": str(ratings_dir)}
    cmd = [sys.executable, "train.py", "-m", "experiment=glob(*)", "model=glob(*)",
           "+trainer.fast_dev_run=true", "callbacks.progress_bar=null",
           f"paths.log_dir={tmp_path}/logs"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "multiruns").iterdir()
    summary = pd.read_csv(sweep / "summary.csv")
    experiments = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    models = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
    assert len(summary) == len(experiments) * len(models)
    failed = summary[summary["status"] == "failed"]
    failures = {tuple(row) for row in failed[["experiment", "model"]].to_numpy()}
    trees = {("paper", tree) for tree in ("catboost", "gbdt", "lightgbm")}
    peers = {
        (experiment, peer)
        for experiment in ("cold_start", "hybrid", "paper")  # TMDb alone: no users
        for peer in ("knn_baseline", "svd", "svdpp", "ease", "als", "bpr", "vbpr")
    }
    assert failures == trees | peers
    why = {(e, m): error for e, m, error in failed[["experiment", "model", "error"]].to_numpy()}
    assert all("needs metadata features" in why[job] for job in trees)
    assert all("needs user ratings" in why[job] for job in peers)
    done = summary[summary["status"] == "ok"]
    lists_only = done["model"].isin(["ease", "als", "bpr", "vbpr"])  # no rating predictions
    assert (done.loc[~lists_only, "rmse"] > 0).all() and done.loc[lists_only, "rmse"].isna().all()
    assert (done.loc[lists_only, "full_ndcg@10"] >= 0).all()
