"""Surprise peers (model=svd | svdpp | knn_baseline) on the networks' ratings splits."""

from __future__ import annotations

import pytest

from conftest import make_cfg
from movrec.errors import UserError
from movrec.peers.surprise import grid
from movrec.run import fit_and_test

pytest.importorskip("surprise")

RATINGS = ("experiment=recommend", "data=movielens_synthetic", "data.movies.n_movies=300")


def test_the_grid_is_every_combination():
    assert grid({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    assert grid(None) == [{}]


@pytest.mark.parametrize("peer", ["svd", "knn_baseline"])
def test_a_peer_is_tuned_on_validation_and_scored_like_the_networks(tmp_path, peer):
    metrics = fit_and_test(make_cfg(tmp_path, *RATINGS, f"model={peer}", "data.ratings.n_users=80"))
    assert metrics["kind"] == "peer"
    searched = make_cfg(tmp_path, *RATINGS, f"model={peer}").model.search
    assert metrics["chosen"] in grid(dict(searched))
    assert metrics["best_val_loss"] > 0
    test = metrics["test"]
    assert test["rmse"] < metrics["mean_baseline"]["rmse"]
    for name in ("precision@10", "recall@10", "ndcg@10"):
        assert 0 < test[name] <= 1
    assert (tmp_path / "metrics.json").exists()


def test_a_peer_without_user_ratings_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="needs user ratings"):
        fit_and_test(make_cfg(tmp_path, "experiment=hybrid", "model=svd"))
