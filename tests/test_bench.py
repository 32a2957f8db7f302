"""The speed benchmark's paired mode (its timings are not tested: they belong to the machine)."""

from __future__ import annotations

import pytest

from movrec.bench import ROOT, main


@pytest.mark.slow
def test_against_times_both_checkouts_round_by_round(tmp_path):
    """This checkout against itself: one run each, both in their own processes."""
    out = tmp_path / "paired.json"
    arguments = ["--synthetic", "--epochs", "2", "--variants", "deep", "--out", str(out)]
    results = main([*arguments, "--against", str(ROOT), "--rounds", "1"])
    (run,) = results["rounds"]
    this, other = run["this"]["deep"], run["other"]["deep"]
    assert len(this["all"]) == len(other["all"]) == 2
    assert results["ratio"]["deep"]["per_round"] == [this["median"] / other["median"]]
    assert out.read_text().count('"median"') == 3  # both runs' medians and the ratio's


def test_against_needs_a_movrec_checkout(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--synthetic", "--against", str(tmp_path)])
    assert "not a movrec checkout" in capsys.readouterr().err
