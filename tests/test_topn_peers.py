"""Top-N peers (model=ease | als | bpr | vbpr) on the networks' full-catalogue protocol."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import make_cfg
from movrec.errors import UserError
from movrec.evaluation.report import write_report
from movrec.peers.surprise import grid
from movrec.peers.topn import Catalogue, TopNPeer
from movrec.run import fit_and_test

pytest.importorskip("cornac")
pytest.importorskip("implicit")

RATINGS = (
    "experiment=recommend", "data=movielens_synthetic", "data.movies.n_movies=300",
    "data.ratings.n_users=80",
)  # fmt: skip


def _watched() -> tuple[pd.DataFrame, Catalogue]:
    rng = np.random.default_rng(0)
    ratings = pd.DataFrame({
        "user_id": rng.integers(1, 30, 400), "movie_id": rng.integers(100, 140, 400),
        "rating": rng.choice([1.0, 3.0, 5.0], 400),
    }).drop_duplicates(["user_id", "movie_id"])  # fmt: skip
    movie_ids = pd.Index(np.arange(100, 145))  # five catalogue movies nobody watched
    return ratings, Catalogue(movie_ids, rng.normal(size=(45, 3)).astype(np.float32))


def test_ease_scores_are_the_closed_form_of_the_watched_matrix():
    from cornac.models import EASE

    ratings, catalogue = _watched()
    users = pd.Index(np.sort(ratings["user_id"].unique()))
    watched = catalogue.matrix(ratings, users)
    assert set(np.unique(watched.toarray())) == {0.0, 1.0}  # watched, whatever the rating
    peer = TopNPeer(EASE, {"lamb": 10.0, "posB": False, "verbose": False}, catalogue)
    peer.fit(watched, users)
    # Steck (2019): B = I - P diag(1 / diag(P)), P = (X'X + lambda I)^-1, on every movie.
    x = watched.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 10.0 * np.eye(x.shape[1]))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(peer.scores(np.arange(len(users))), x @ b, atol=1e-4)
    # A new user's fold-in is their history times the same weights.
    history = watched[:3]
    np.testing.assert_allclose(peer.fold_in_scores(history), history.toarray() @ b, atol=1e-4)


def test_als_fold_in_of_a_fitted_users_history_finds_that_users_factors():
    from implicit.cpu.als import AlternatingLeastSquares

    ratings, catalogue = _watched()
    users = pd.Index(np.sort(ratings["user_id"].unique()))
    watched = catalogue.matrix(ratings, users)
    options = {"factors": 4, "iterations": 30, "random_state": 0, "regularization": 0.1}
    peer = TopNPeer(AlternatingLeastSquares, options, catalogue).fit(watched, users)
    # ALS ends on an item step, so a user's solve against the final items is its own exact
    # least-squares answer, which the fold-in computes from the history alone.
    solved = peer.fold_in_scores(watched[:5])
    x, y = watched[:5].toarray(), peer.model.item_factors
    exact = np.linalg.solve(y.T @ y + 0.1 * np.eye(4), y.T @ x.T).T @ y.T
    np.testing.assert_allclose(solved, exact, rtol=1e-3, atol=1e-3)


def test_bpr_has_no_fold_in_and_says_so():
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    ratings, catalogue = _watched()
    users = pd.Index(np.sort(ratings["user_id"].unique()))
    peer = TopNPeer(BayesianPersonalizedRanking, {"factors": 4, "random_state": 0}, catalogue)
    peer.fit(catalogue.matrix(ratings, users), users)
    assert not peer.folds_in
    with pytest.raises(UserError, match="no fold-in"):
        peer.fold_in_scores(catalogue.matrix(ratings, users)[:2])


def test_vbpr_ranks_movies_nobody_watched_by_their_content():
    from cornac.models import VBPR

    ratings, catalogue = _watched()
    users = pd.Index(np.sort(ratings["user_id"].unique()))
    options = {"k": 2, "k2": 2, "n_epochs": 2, "batch_size": 50, "seed": 0, "verbose": False}
    peer = TopNPeer(VBPR, options, catalogue).fit(catalogue.matrix(ratings, users), users)
    scores = peer.scores(np.arange(3))
    model = peer.model
    content = catalogue.features @ model.emb_matrix
    user = peer.model.uid_map[str(0)]
    # Movies 140-144 were never watched: theta_u . (f E) + f . beta' from their features only.
    cold = np.arange(40, 45)
    expected = (
        content[cold] @ model.theta_user[user]
        + (catalogue.features[cold] @ model.beta_prime).ravel()
    )
    np.testing.assert_allclose(scores[0, cold], expected, rtol=1e-4, atol=1e-5)
    assert np.isfinite(scores).all()


@pytest.mark.slow
@pytest.mark.parametrize("peer", ["ease", "als", "bpr"])
def test_a_top_n_peer_is_tuned_on_validation_and_reports_lists_not_ratings(tmp_path, peer):
    metrics = fit_and_test(make_cfg(tmp_path, *RATINGS, f"model={peer}"))
    assert metrics["kind"] == "peer"
    searched = make_cfg(tmp_path, *RATINGS, f"model={peer}").model.search
    assert metrics["chosen"] in grid(dict(searched))
    test = metrics["test"]
    assert "rmse" not in test and 0 < test["full_ndcg@10"] <= 1
    assert 0 < test["coverage@10"] <= 1 and test["unrated_share@10"] >= 0
    assert json.loads((tmp_path / "metrics.json").read_text())["test"] == test


@pytest.mark.slow
def test_peers_fold_in_new_users_and_the_report_says_which_predict_no_ratings(tmp_path):
    cold = ("data.split=cold_users", "refit=false", "fold_in.history=[5]")
    sweep = tmp_path / "sweep"
    for job, peer in enumerate(["ease", "svd"]):
        out = sweep / f"{job}_{peer}"  # the overrides file below says which
        metrics = fit_and_test(make_cfg(out, *RATINGS, *cold, f"model={peer}"))
        (out / ".hydra").mkdir(parents=True)
        (out / ".hydra" / "overrides.yaml").write_text(f"- model={peer}\n")
    ease = json.loads((sweep / "0_ease" / "metrics.json").read_text())
    assert 0 < ease["fold_in"]["5"]["fold_in"]["full_ndcg@10"] <= 1
    assert metrics["test"]["rmse"] > 0  # svd
    write_report(sweep)
    summary = (sweep / "summary.md").read_text()
    assert "No rating predictions (no RMSE, MAE, R²): ease." in summary


def test_bpr_on_new_users_is_a_clear_error(tmp_path):
    cold = ("data.split=cold_users", "refit=false", "model=bpr")
    with pytest.raises(UserError, match="no fold-in for new users"):
        fit_and_test(make_cfg(tmp_path, *RATINGS, *cold, "model.search.iterations=[5]"))
