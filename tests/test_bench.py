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
