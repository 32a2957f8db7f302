"""The speed benchmark runs and reports its fields (its timings are not tested: they belong to
the machine)."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench import main


@pytest.mark.slow
def test_the_epoch_benchmark_times_movrec_beside_the_bare_loop(tmp_path):
    out = tmp_path / "bench.json"
    arguments = ["--synthetic", "--epochs", "2", "--variants", "deep", "--no-cli"]
    results = main([*arguments, "--out", str(out)])
    timing = results["seconds_per_epoch"]["deep"]
    assert len(timing["all"]) == 2 and timing["median"] > 0 and timing["plain_pytorch_median"] > 0
    assert timing["as_run_median"] > 0
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))


def test_the_ratings_bench_trains_without_the_weight_average_unless_told():
    """One epoch is shorter than the average spans: its test would read the first step's
    weights. An override given to the bench still wins."""
    from benchmarks.ratings import ratings_cfg

    assert ratings_cfg("100k", 1, 4096, 65536, []).model.ema_decay is None
    told = ratings_cfg("100k", 1, 4096, 65536, ["model.ema_decay=0.99"])
    assert told.model.ema_decay == 0.99 and told.data.batch_size == 4096
