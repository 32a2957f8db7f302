"""The personalised model on synthetic ratings, and the four `movrec` commands on its checkpoint."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from conftest import make_cfg, same_fit
from movrec.data.movielens import make_movielens
from movrec.data.preprocessing import Preprocessing
from movrec.evaluation.fold_in import (
    L2_GRID,
    RANKING_GRID,
    FoldedUsers,
    fold_in,
    new_user_metrics,
)
from movrec.evaluation.results import format_fold_in
from movrec.evaluation.topn import model_scores
from movrec.run import fit_and_test, fit_or_test
from movrec.serving.checkpoint import Checkpoint
from movrec.serving.cli import main
from movrec.serving.recommender import Recommender, UnknownTitle

# 100 ratings a user: enough watched movies per user for the ranking part to find the
# planted taste from what they watched.
RECOMMEND = (
    "experiment=recommend", "data=movielens_synthetic", "data.ratings.ratings_per_user=100"
)  # fmt: skip
SMALL = ("trainer.max_epochs=2", "data.movies.n_movies=300", "data.ratings.n_users=100")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("recommend")
    cfg = make_cfg(out, *RECOMMEND, "logger=tensorboard")
    return fit_and_test(cfg), cfg, out


@pytest.fixture(scope="module")
def recommender(trained):
    return Recommender.from_checkpoint(trained[0]["checkpoint"])


@pytest.fixture(scope="module")
def world(trained):
    """The synthetic movies and each user's planted favourite genre."""
    cfg = trained[1]
    movies = instantiate(cfg.data.movies).read().movies
    return movies, make_movielens(movies, **instantiate(cfg.data.ratings).__dict__)[2]


def test_personalised_model_beats_the_bias_baseline(trained):
    metrics = trained[0]
    test, bias = metrics["test"], metrics["bias_baseline"]
    # Planted tastes are user x genre interactions, which biases cannot express.
    assert test["rmse"] < 0.85 * bias["rmse"]
    assert bias["rmse"] < metrics["mean_baseline"]["rmse"]
    for name in ("precision@10", "recall@10", "ndcg@10"):
        assert 0 < test[name] <= 1 and 0 < bias[name] <= 1
    assert test["ndcg@10"] > bias["ndcg@10"]


def test_full_catalogue_metrics_sit_beside_the_popularity_and_bias_rankings(trained):
    metrics = trained[0]
    rankings = {"model": metrics["test"], **metrics["top_n_baselines"]}
    assert set(rankings) == {"model", "popularity", "bias"}
    for ranking in rankings.values():
        assert 0 <= ranking["full_recall@10"] <= 1 and 0 <= ranking["full_ndcg@10"] <= 1
    # The planted tastes are genres: the model's top 10 among every unseen movie find them.
    for baseline in ("bias", "popularity"):
        assert metrics["test"]["full_ndcg@10"] > rankings[baseline]["full_ndcg@10"]
    for ranking in rankings.values():  # what the lists are made of, for every ranking
        assert 0 < ranking["coverage@10"] <= 1 and 0 <= ranking["unrated_share@10"] <= 1
    # Chosen on validation, from the weights validation chose.
    assert 0 < metrics["val_top_n"]["full_ndcg@10"] <= 1


@pytest.mark.parametrize(
    ("variant", "ranking"),
    [
        ("deep", ()),
        ("glove", ()),
        ("finetuned_glove", ("model.net.ranking_dim=0", "data.ranking=null")),
    ],
)
def test_every_title_variant_trains_with_users(tmp_path, variant, ranking):
    """With and without the ranking part (without it, lists follow the predicted ratings)."""
    metrics = fit_and_test(
        make_cfg(tmp_path, *RECOMMEND, f"model={variant}", "trainer.max_epochs=2", *ranking)
    )
    assert metrics["test"]["rmse"] < metrics["mean_baseline"]["rmse"]
    assert "ndcg@10" in metrics["test"] and metrics["bias_baseline"] is not None
    assert 0 < metrics["test"]["full_ndcg@10"] <= 1


def test_user_recommendations_find_the_planted_taste(recommender, world):
    _, favourite = world
    shares = []
    for user in range(1, 31):
        top = recommender.user(user, k=10)
        shares.append(np.mean([favourite[user] in genres for genres in top["genres"]]))
    # A genre is on about a fifth of the movies; a user's own genre fills most of their top 10.
    assert np.mean(shares) > 0.6


def test_user_recommendations_are_unseen_and_sorted(recommender):
    frames = pd.concat(recommender.datamodule.frames.values())
    top = recommender.user(7, k=10)
    assert len(top) == 10 and list(top["rank"]) == list(range(1, 11))
    assert not set(top["movie_id"]) & set(frames.loc[frames["user_id"] == 7, "movie_id"])
    assert top["score"].is_monotonic_decreasing
    low, high = recommender.datamodule.preprocessing.target_range
    assert top["predicted_rating"].between(low, high).all()
    assert top["because"].str.startswith("you rated ").all()
    with pytest.raises(ValueError, match="new-user"):
        recommender.user(10_000)


@pytest.mark.parametrize("genre", ["Documentary", "Horror"])
def test_new_user_gets_more_of_what_they_like(recommender, world, genre):
    movies, _ = world

    def liking(name: str, unlike: str) -> list[str]:  # tastes apart: no movie of both genres
        genres = movies["genres"]
        mask = genres.str.contains(f'"{name}"') & ~genres.str.contains(f'"{unlike}"')
        return movies[mask]["title"].head(5).tolist()

    def share(table: pd.DataFrame) -> float:
        return np.mean([genre in genres for genres in table["genres"]])

    # The planted tastes are strong (+1.5 stars): a light pull towards the unknown user lets
    # five likes show (the default l2 was chosen on MovieLens, where five ratings say less).
    other_genre = {"Horror": "Documentary"}.get(genre, "Horror")
    liked = liking(genre, other_genre)
    top = recommender.new_user(likes=liked, k=10, l2=0.1)
    other = recommender.new_user(likes=liking(other_genre, genre), k=10, l2=0.1)
    assert share(top) >= 0.5 and share(top) > share(other)
    low, high = recommender.datamodule.preprocessing.target_range  # no 6 on a 5-star scale
    assert top["predicted_rating"].between(low, high).all()
    assert not set(top["title"]) & set(liked)
    by_genre = recommender.new_user(likes=liked[:1], genres=[genre.lower()], k=10)
    assert all(genre in genres for genres in by_genre["genres"])
    with pytest.raises(ValueError, match="known"):
        recommender.new_user(genres=["Western Noir"])


def test_each_recommendation_says_which_liked_movie_adds_most_to_its_score(recommender, world):
    movies, _ = world
    liked = movies["title"].iloc[[0, 5, 9]].tolist()
    top = recommender.new_user(likes=liked, k=8)
    assert set(top["because"]) <= {f"you liked {t}" for t in liked}
    # The reference: the user's score of a movie is the sum over liked movies of their history
    # vector . the movie's vector; the reason is the liked movie with the largest term.
    model, tensors = recommender.model, recommender.tensors
    ranking = model.net.ranking
    rows = [recommender.find(t) for t in liked]
    with torch.no_grad():
        vectors, _ = ranking.movies(model.net.movie(tensors), tensors["movie_id"])
        history = ranking.history.weight[tensors["movie_id"][rows]]
        listed = recommender._rows(top["movie_id"])
        terms = history @ vectors[listed].T
    expected = [f"you liked {liked[i]}" for i in terms.argmax(0).tolist()]
    assert top["because"].tolist() == expected


def test_new_users_with_different_likes_get_different_lists(recommender, world):
    movies, _ = world

    tastes = ("Horror", "Documentary", "Comedy")

    def liking(name: str) -> list[str]:  # tastes apart: none of the other two genres
        genres = movies["genres"]
        others = [genres.str.contains(f'"{g}"') for g in tastes if g != name]
        mask = genres.str.contains(f'"{name}"') & ~others[0] & ~others[1]
        return movies[mask]["title"].head(2).tolist()

    lists = [set(recommender.new_user(likes=liking(g), k=10)["title"]) for g in tastes]
    assert max(len(a & b) for a, b in combinations(lists, 2)) <= 3


def test_similar_ranks_by_representation(recommender, world):
    movies, _ = world
    title = movies["title"].iloc[0]
    top = recommender.similar(title, k=5)
    assert len(top) == 5 and title not in set(top["title"])
    assert top["similarity"].is_monotonic_decreasing and top["similarity"].between(-1, 1).all()
    typo = title[:-1] + "x"
    with pytest.raises(UnknownTitle) as err:
        recommender.similar(typo)
    assert title in err.value.suggestions


def test_checkpoint_rebuilds_the_run_without_refitting(trained, recommender):
    checkpoint = Checkpoint(trained[0]["checkpoint"])
    assert checkpoint.datamodule_class.__name__ == "RatingsDataModule"
    saved = Preprocessing.from_state(checkpoint.state["preprocessing"])
    assert same_fit(recommender.datamodule.preprocessing, saved, recommender.movies)
    again = Recommender.from_checkpoint(trained[0]["checkpoint"])
    pd.testing.assert_frame_equal(again.user(3), recommender.user(3))


def test_retesting_the_checkpoint_gives_the_same_metrics(trained, tmp_path):
    metrics = trained[0]
    again = fit_or_test(
        make_cfg(tmp_path, *RECOMMEND, "fit=false", f"ckpt_path={metrics['checkpoint']}")
    )
    assert again["test"] == pytest.approx(metrics["test"], rel=1e-5)
    assert again["bias_baseline"] == metrics["bias_baseline"]


def test_cli_commands_print_tables_and_json(trained, world, capsys, tmp_path):
    checkpoint = trained[0]["checkpoint"]
    movies, _ = world
    title = movies["title"].iloc[3]
    assert main(["similar", "--ckpt", checkpoint, "--title", title, "-k", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and {"title", "similarity", "genres"} <= set(rows[0])
    assert main(["user", "--ckpt", checkpoint, "--id", "5", "-k", "4"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "predicted_rating" in table[0] and len(table) == 5
    assert main(["new-user", "--ckpt", checkpoint, "--likes", title, "--genres", "Drama"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 11
    assert main(["similar", "--ckpt", checkpoint, "--title", title.upper() + "zz"]) == 2
    assert "Did you mean" in capsys.readouterr().err

    new = movies.head(20).drop(columns=["vote_average", "vote_count"])
    new.to_csv(tmp_path / "new_movies.csv", index=False)
    assert main(["predict", "--ckpt", checkpoint, "--csv", str(tmp_path / "new_movies.csv")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "predicted_rating" in out[0] and len(out) == 21


def test_movie_embeddings_reach_the_tensorboard_projector(trained, recommender):
    out = trained[2]
    configs = list(out.rglob("projector_config.pbtxt"))
    assert len(configs) == 1
    metadata = next(out.rglob("metadata.tsv")).read_text().splitlines()
    assert metadata[0].split("\t") == ["title", "year", "genres"]
    assert len(metadata) == len(recommender.movies) + 1


def test_a_tmdb_checkpoint_predicts_vote_average_and_finds_similar_movies(tmp_path, capsys):
    cfg = make_cfg(
        tmp_path, "experiment=hybrid", "trainer.max_epochs=3", "data.movies.n_movies=600"
    )
    checkpoint = fit_and_test(cfg)["checkpoint"]
    movies = instantiate(cfg.data.movies).read().movies
    movies.head(8).drop(columns=["vote_average"]).to_csv(tmp_path / "rows.csv", index=False)
    capsys.readouterr()  # the training run's own output
    assert (
        main(["predict", "--ckpt", checkpoint, "--csv", str(tmp_path / "rows.csv"), "--json"]) == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 8 and all(1 < r["predicted_vote_average"] < 10 for r in rows)
    recommender = Recommender.from_checkpoint(checkpoint)
    assert len(recommender.similar(movies["title"].iloc[0], k=4)) == 4
    with pytest.raises(ValueError, match="without users"):
        recommender.user(1)


def test_same_seed_same_personalised_metrics(tmp_path):
    runs = [
        fit_and_test(make_cfg(tmp_path / name, *RECOMMEND, *SMALL, "logger=none"))
        for name in ("a", "b")
    ]
    assert runs[0]["test"] == runs[1]["test"]


def test_history_is_each_users_first_ratings_and_users_without_more_are_left_out():
    from movrec.evaluation.fold_in import history_and_rest

    ratings = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 1],
            "movie_id": [10, 11, 12, 10, 11, 13],
            "timestamp": [5, 1, 3, 1, 2, 3],
            "rating": [4.0, 3.0, 2.0, 5.0, 1.0, 4.5],
        }
    )
    history, rest = history_and_rest(ratings, 2)
    assert history["movie_id"].tolist() == [11, 12]  # by time, then movie id
    assert rest["movie_id"].tolist() == [13, 10]
    assert 2 not in set(history["user_id"]) | set(rest["user_id"])  # nothing left to score


@pytest.fixture(scope="module")
def cold_users(tmp_path_factory):
    out = tmp_path_factory.mktemp("cold_users")
    cfg = make_cfg(out, *RECOMMEND, "data.split=cold_users", "refit=false", "fold_in.history=[5]")
    return fit_and_test(cfg), cfg


def test_cold_users_refuse_a_refit_on_their_validation_users(tmp_path):
    with pytest.raises(ValueError, match="refit=false"):
        fit_and_test(make_cfg(tmp_path, *RECOMMEND, *SMALL, "data.split=cold_users"))


def test_cold_users_are_folded_in_and_scored_beside_the_baselines(cold_users):
    metrics, _ = cold_users
    report = metrics["fold_in"]["5"]
    rankings = {"popularity", "recent_popularity"}
    assert set(report) == {"fold_in", "unknown_user", "bias", *rankings, "users", "chosen"}
    for name in ("fold_in", "unknown_user", "bias"):
        assert report[name]["rmse"] > 0 and 0 <= report[name]["full_ndcg@10"] <= 1
    assert report["chosen"]["l2"] in L2_GRID
    for name, values in RANKING_GRID.items():
        assert report["chosen"][name] in values
    # Planted tastes are user x genre: five ratings tell the model something about the user.
    assert report["fold_in"]["rmse"] < report["unknown_user"]["rmse"]
    table = format_fold_in(metrics["fold_in"]).splitlines()
    assert table[0].startswith("new users, first 5 ratings folded in") and "l2" in table[0]
    row = next(line for line in table if line.startswith("fold-in")).split()
    assert float(row[1]) == pytest.approx(report["fold_in"]["rmse"], abs=1e-4)
    recent = next(line for line in table if line.startswith("recent popularity")).split()
    assert float(recent[2]) == pytest.approx(report["recent_popularity"]["full_ndcg@10"], abs=1e-4)


def test_ranking_models_fold_in_without_a_popularity_search(cold_users, monkeypatch):
    """Their lists add no popularity, so no weights are searched; the window is the first."""
    checkpoint = Checkpoint(cold_users[0]["checkpoint"])
    model, datamodule = checkpoint.model(), checkpoint.datamodule()
    assert model.ranks

    def searched(*args, **kwargs):
        raise AssertionError("a ranking model's fold-in searched popularity weights")

    monkeypatch.setattr(FoldedUsers, "best_ranking", searched)
    report = new_user_metrics(model, datamodule, 5, settings={"l2": 1.0})
    assert {k: report["chosen"][k] for k in RANKING_GRID} == {
        "popularity_weight": 0.0, "recent_weight": 0.0,
        "recent_years": RANKING_GRID["recent_years"][0],
    }  # fmt: skip
    assert report["chosen"]["l2"] == 1.0


def test_retesting_a_cold_users_checkpoint_repeats_the_fold_in(cold_users, tmp_path):
    metrics, _ = cold_users
    overrides = ("data.split=cold_users", "refit=false", "fold_in.history=[5]", "fit=false")
    again = fit_or_test(
        make_cfg(tmp_path, *RECOMMEND, *overrides, f"ckpt_path={metrics['checkpoint']}")
    )
    assert again["fold_in"]["5"]["fold_in"] == pytest.approx(metrics["fold_in"]["5"]["fold_in"])


def test_fold_in_moves_a_user_towards_their_ratings_and_l2_holds_them_back(cold_users):
    metrics, _ = cold_users
    recommender = Recommender.from_checkpoint(metrics["checkpoint"])
    model, tensors = recommender.model, recommender.tensors
    rows = torch.tensor([0, 1, 2])
    users = torch.zeros(3, dtype=torch.long)
    high = torch.full((3,), 5.0)
    unknown = model.net.users.embedding.weight[0]
    free = fold_in(model, tensors, users, rows, high, 1, l2=0.0)
    held = fold_in(model, tensors, users, rows, high, 1, l2=1e6)
    assert torch.allclose(held[0][0], unknown, atol=1e-3)
    scores = [
        model_scores(model, tensors, vectors, bias)(torch.tensor([0]))[0, rows].mean()
        for vectors, bias in (free, held)
    ]
    assert scores[0] > scores[1]
    assert not any(p.grad is not None for p in model.parameters())  # the model stays fixed


NO_POPULARITY = {"popularity_weight": 0.0, "recent_weight": 0.0}


def test_new_user_ratings_are_folded_in_as_given(recommender, world):
    movies, _ = world
    titles = movies["title"].head(3).tolist()
    loved = recommender.new_user(rated=[f"{t}=5" for t in titles], k=5, ranking=NO_POPULARITY)
    hated = recommender.new_user(rated=[f"{t}=0.5" for t in titles], k=5, ranking=NO_POPULARITY)
    assert loved["predicted_rating"].mean() > hated["predicted_rating"].mean()
    with pytest.raises(ValueError, match="TITLE=RATING"):
        recommender.new_user(rated=["Alien"])


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1000000", "5.5", ""])
def test_new_user_ratings_outside_the_training_range_are_one_line(trained, world, value, capsys):
    title = world[0]["title"].iloc[0]
    checkpoint = trained[0]["checkpoint"]
    assert main(["new-user", "--ckpt", checkpoint, "--rated", f"{title}={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("movrec: error: --rated") and err.count("\n") == 1
