"""The sweep report: rows equal each job's metrics.json, repeats aggregate, failures show."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pandas as pd
import pytest

from movrec.evaluation.report import paired_differences, write_report


def fake_job(sweep, number, overrides, r2=None):
    job = sweep / f"{number}_{','.join(overrides)}"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if r2 is not None:
        metrics = {
            "test": {"mae": 1 - r2, "rmse": 2 - r2, "r2": r2, "loss": 0.0},
            "epochs_run": 5, "best_epoch": 3, "seconds_per_epoch": 0.1, "train_seconds": 0.5,
            "parameters": {"trainable": 10, "frozen": 2},
        }  # fmt: skip
        (job / "metrics.json").write_text(json.dumps(metrics))
    return job


def test_report_rows_aggregates_and_failed_jobs(tmp_path):
    r2 = {("deep", 0): 0.1, ("deep", 1): 0.3, ("glove", 0): 0.2, ("glove", 1): None}
    for number, ((model, seed), value) in enumerate(r2.items()):
        fake_job(tmp_path, number, [f"model={model}", f"seed={seed}", "data=synthetic"], value)
    table = write_report(tmp_path)
    assert list(table["status"]) == ["ok", "ok", "ok", "failed"]
    assert "data" not in table.columns  # the same for every job: not a column
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["r2"].tolist()[:3] == pytest.approx([0.1, 0.3, 0.2])
    markdown = (tmp_path / "summary.md").read_text()
    deep = [0.1, 0.3]
    expected = f"{statistics.mean(deep):.4f} ± {statistics.stdev(deep):.4f}"
    assert expected in markdown and "| failed |" in markdown
    assert (tmp_path / "comparison.png").is_file()


def test_report_of_a_folder_without_jobs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Hydra job folders"):
        write_report(tmp_path)


def test_ranking_metrics_and_the_bias_baseline_are_reported(tmp_path):
    for number, (seed, ndcg) in enumerate([(0, 0.80), (1, 0.84)]):
        job = fake_job(tmp_path, number, ["data=movielens_tmdb", f"seed={seed}"], 0.4)
        metrics = json.loads((job / "metrics.json").read_text())
        metrics["test"]["ndcg@10"] = ndcg
        metrics["bias_baseline"] = {"rmse": 0.85, "ndcg@10": 0.83, "loss": 0.7}
        (job / "metrics.json").write_text(json.dumps(metrics))
    table = write_report(tmp_path)
    assert table["ndcg@10"].tolist() == [0.80, 0.84]
    assert table["bias_rmse"].tolist() == [0.85, 0.85] and "bias_loss" not in table
    assert list(table.columns[:5]) == ["job", "seed", "status", "kind", "mae"]  # not overrides
    assert "0.8200 ± 0.0283" in (tmp_path / "summary.md").read_text()


def test_networks_and_trees_are_paired_per_split(tmp_path):
    """Means over seeds within a split, network minus tree per split, and how often ahead."""
    r2 = {("finetuned_glove", 0): (0.50, 0.52), ("lightgbm", 0): (0.49,),
          ("finetuned_glove", 1): (0.40, 0.40), ("lightgbm", 1): (0.45,)}  # fmt: skip
    number = 0
    for (model, split), values in r2.items():
        for seed, value in enumerate(values):
            overrides = [f"model={model}", f"data.split_seed={split}", f"seed={seed}"]
            job = fake_job(tmp_path, number, overrides, value)
            metrics = json.loads((job / "metrics.json").read_text())
            metrics["kind"] = "trees" if model == "lightgbm" else "network"
            (job / "metrics.json").write_text(json.dumps(metrics))
            number += 1
    table = write_report(tmp_path)
    (paired,) = paired_differences(table).to_dict("records")
    # per split: 0.51 - 0.49 and 0.40 - 0.45 (the tree ran once per split)
    assert paired["pair"] == "finetuned_glove − lightgbm" and paired["pairs"] == 2
    assert paired["mean"] == pytest.approx(-0.015)
    half = 12.7062 * np.std([0.02, -0.05], ddof=1) / np.sqrt(2)  # t(0.975, 1 df)
    assert paired["ci95"] == pytest.approx([-0.015 - half, -0.015 + half], rel=1e-4)
    assert paired["network_wins"] == "1 of 2" and paired["verdict"] == "level"
    report = (tmp_path / "summary.md").read_text()
    assert "Network − peers, r2" in report and "-0.0150 [" in report and "level" in report
    # the aggregate pools split seeds and seeds: one row per model
    assert "0.4550 ± 0.0640" in report


def test_validation_losses_are_reported_beside_the_test(tmp_path):
    for number, (seed, val, cross) in enumerate([(0, 0.40, 0.44), (1, 0.42, 0.46)]):
        job = fake_job(tmp_path, number, [f"seed={seed}"], 0.5)
        metrics = json.loads((job / "metrics.json").read_text())
        metrics.update(best_val_loss=val, val_loss_cross_half=cross)
        (job / "metrics.json").write_text(json.dumps(metrics))
    table = write_report(tmp_path)
    assert table["val_loss_cross_half"].tolist() == [0.44, 0.46]
    assert "0.4500 ± 0.0141" in (tmp_path / "summary.md").read_text()


def test_results_file_pairs_networks_and_peers_across_sweeps(tmp_path, monkeypatch, capsys):
    """benchmarks/results.py: per model mean / std, and network − peer over the pairs of
    (split seed, seed) found in two sweep folders, with the t-interval computed by hand."""
    from benchmarks import results

    values = {"finetuned_glove": [0.50, 0.47, 0.52], "lightgbm": [0.48, 0.46, 0.53]}
    for sweep, (model, r2s) in enumerate(values.items()):
        for split, value in enumerate(r2s):
            job = fake_job(tmp_path / f"s{sweep}", split, [f"model={model}",
                           f"data.split_seed={split}", "seed=0"], value)  # fmt: skip
            metrics = json.loads((job / "metrics.json").read_text())
            metrics["kind"] = "trees" if model == "lightgbm" else "network"
            (job / "metrics.json").write_text(json.dumps(metrics))
    monkeypatch.setattr(results, "RESULTS", tmp_path / "out")
    assert results.main(["hybrid", str(tmp_path / "s0"), str(tmp_path / "s1")]) == 0
    saved = json.loads((tmp_path / "out" / "hybrid.json").read_text())
    network = saved["models"]["finetuned_glove"]["r2"]
    assert network["mean"] == pytest.approx(np.mean(values["finetuned_glove"]))
    assert network["std"] == pytest.approx(np.std(values["finetuned_glove"], ddof=1))
    (r2,) = [p for p in saved["paired"] if p["metric"] == "r2"]
    differences = np.subtract(values["finetuned_glove"], values["lightgbm"])
    half = 4.302653 * differences.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 df)
    assert r2["mean"] == pytest.approx(differences.mean())
    assert r2["ci95"] == pytest.approx([differences.mean() - half, differences.mean() + half])
    assert r2["network_wins"] == "2 of 3" and r2["verdict"] == "level"
    assert "finetuned_glove − lightgbm" in capsys.readouterr().out
