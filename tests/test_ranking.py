"""The ranking part: users as bags of watched movies, candidates, the joint loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from movrec.data.batches import TensorBatches
from movrec.data.histories import Histories, RankingExamples
from movrec.errors import UserError
from movrec.models.components import RankingTower
from movrec.models.regressor import RatingRegressor

# Users 1 and 2 watched; user 0 (the unknown user) and user 3 watched nothing.
HISTORIES = Histories.build(np.array([1, 2, 1, 2, 2]), np.array([4, 5, 6, 4, 0]), 4)


def test_histories_are_each_users_known_movies():
    assert HISTORIES.indptr.tolist() == [0, 0, 2, 4, 4]  # movie id 0 (unknown) left out
    assert HISTORIES.items.tolist() == [4, 6, 4, 5]
    bags = HISTORIES.bags(torch.tensor([2, 0, 1, 3]))
    assert bags["history"].tolist() == [4, 5, 4, 6]
    assert bags["history_offsets"].tolist() == [0, 2, 2, 4]
    assert bags["history_weights"].tolist() == [1.0] * 4


def test_a_rows_own_movie_is_left_out_of_its_users_bag():
    bags = HISTORIES.bags(torch.tensor([1, 2, 3]), leave_out=torch.tensor([6, 4, 4]))
    assert bags["history"].tolist() == [4, 5]  # user 1: 4 (6 left out); user 2: 5 (4 left out)
    assert bags["history_offsets"].tolist() == [0, 1, 2]
    assert bags["history_weights"].tolist() == [1.0, 1.0]


def test_history_dropout_drops_about_its_share():
    torch.manual_seed(0)
    many = Histories.build(np.zeros(10_000, dtype=np.int64), np.arange(1, 10_001), 1)
    kept = many.bags(torch.tensor([0]), dropout=0.3)["history"]
    assert abs(len(kept) / 10_000 - 0.7) < 0.02
    assert len(set(kept.tolist())) == len(kept)


def test_a_user_is_the_sum_of_their_movies_over_the_square_root_of_their_number():
    tower = RankingTower(n_movie_ids=8, movie_width=3, dim=2)
    bags = HISTORIES.bags(torch.tensor([2, 0]), leave_out=torch.tensor([5, 0]))
    users = tower.users(bags["history"], bags["history_offsets"], bags["history_weights"])
    table = tower.history.weight.detach()
    torch.testing.assert_close(users[0], table[4] / 1.0)  # movie 5 left out: one movie
    torch.testing.assert_close(users[1], torch.zeros(2))  # nothing watched: the zero vector


def _movies(n: int) -> dict[str, torch.Tensor]:
    return {"movie_id": torch.arange(n), "features": torch.randn(n, 3)}


def test_sampled_candidates_hold_each_rows_movie_at_its_target():
    torch.manual_seed(0)
    movies = _movies(50)
    popularity = torch.full((50,), 1 / 50, dtype=torch.float64)
    examples = RankingExamples(HISTORIES, 0.0, popularity, negatives=8)
    rows = torch.tensor([3, 17, 3, 40])
    batch = {"user_id": torch.tensor([1, 2, 0, 3]), "movie_id": rows.clone()}
    examples.add(batch, rows, movies)
    candidates = batch["candidate_movie_id"]
    assert candidates[batch["movie_index"]].tolist() == rows.tolist()
    assert len(set(candidates.tolist())) == len(candidates) <= 4 + 8
    # Expected appearances per batch: 4 rows x 1/50 each, plus 8 uniform draws of 50.
    torch.testing.assert_close(
        batch["ranking_log_q"], torch.full((len(candidates),), np.log(4 / 50 + 8 / 50)).float()
    )  # float32, as the logits it corrects
    everything = {"user_id": torch.tensor([1]), "movie_id": torch.tensor([6])}
    RankingExamples(HISTORIES, 0.0, popularity).add(everything, torch.tensor([6]), movies)
    assert everything["movie_index"].tolist() == [6]
    torch.testing.assert_close(everything["features"], movies["features"])
    assert "ranking_log_q" not in everything


@pytest.mark.parametrize("negatives", [None, 8])
def test_only_candidate_movies_are_candidates(negatives):
    torch.manual_seed(0)
    movies = _movies(50)
    popularity = torch.full((50,), 1 / 40, dtype=torch.float64)
    popularity[::5] = 0.0
    candidates = torch.arange(50) % 5 != 0  # movies 0, 5, 10, ...: held out (cold)
    examples = RankingExamples(HISTORIES, 0.0, popularity, negatives, candidates)
    rows = torch.tensor([3, 17, 3, 41])
    for _ in range(20):
        batch = {"user_id": torch.tensor([1, 2, 0, 3]), "movie_id": rows.clone()}
        examples.add(batch, rows, movies)
        drawn = batch["candidate_movie_id"]
        assert not (drawn % 5 == 0).any()
        assert drawn[batch["movie_index"]].tolist() == rows.tolist()
        assert len(drawn) == (40 if negatives is None else len(set(drawn.tolist())))
    if negatives:  # the draws are uniform over the 40 candidates
        log_q = batch["ranking_log_q"]
        torch.testing.assert_close(log_q.exp(), torch.full_like(log_q, 4 / 40 + negatives / 40))


def test_short_histories_keep_one_to_short_max_of_the_users_other_movies():
    torch.manual_seed(0)
    many = Histories.build(np.repeat([1, 2], 30), np.tile(np.arange(1, 31), 2), 3)
    popularity = torch.full((31,), 1 / 31, dtype=torch.float64)
    users = torch.tensor([1, 2] * 200)
    rows = torch.randint(1, 31, (len(users),))
    movies = _movies(31)
    short = {"user_id": users, "movie_id": rows}
    RankingExamples(many, 0.5, popularity, short_share=1.0, short_max=3).add(short, rows, movies)
    counts = torch.diff(short["history_offsets"], append=torch.tensor([len(short["history"])]))
    assert set(counts.tolist()) == {1, 2, 3}  # each count drawn, exactly kept
    bag = torch.repeat_interleave(torch.arange(len(users)), counts)
    assert not (short["history"] == rows[bag]).any()  # the row's own movie is never kept
    pairs = set(zip(bag.tolist(), short["history"].tolist(), strict=True))
    assert len(pairs) == len(bag)  # no movie twice in a bag
    full = {"user_id": users, "movie_id": rows}
    RankingExamples(many, 0.5, popularity, short_share=0.0).add(full, rows, movies)
    assert abs(len(full["history"]) / len(users) - 29 * 0.5) < 0.5  # no limit: only the dropout


def test_a_hidden_user_has_an_empty_bag_and_the_bag_leaves_out_the_movie_before_its_id_hides():
    torch.manual_seed(0)
    movies = _movies(10)
    popularity = torch.full((10,), 0.1, dtype=torch.float64)
    ratings = {"movie_row": torch.tensor([6, 4]), "user_id": torch.tensor([1, 2]),
               "rating": torch.tensor([4.0, 2.0])}  # fmt: skip
    data = TensorBatches(
        ratings, {"user_id": 0.999, "movie_id": 0.999}, movies,
        RankingExamples(HISTORIES, 0.0, popularity),
    )  # fmt: skip
    batch = data.__getitems__([0, 1])
    assert batch["user_id"].tolist() == [0, 0] and batch["movie_id"].tolist() == [0, 0]
    assert batch["history"].numel() == 0
    shown = TensorBatches(ratings, {"movie_id": 0.999}, movies, RankingExamples(
        HISTORIES, 0.0, popularity))  # fmt: skip
    batch = shown.__getitems__([0, 1])
    assert batch["history"].tolist() == [4, 5]  # 6 left out for user 1, 4 for user 2
    assert "history" not in data.all()  # evaluation rows carry no ranking inputs


def test_candidate_ids_hide_at_the_rows_rate_so_content_alone_is_ranked_too():
    torch.manual_seed(0)
    movies = {"movie_id": torch.arange(1, 2001), "features": torch.randn(2000, 3)}
    popularity = torch.full((2000,), 1 / 2000, dtype=torch.float64)
    ratings = {"movie_row": torch.tensor([6, 4]), "user_id": torch.tensor([1, 2]),
               "rating": torch.tensor([4.0, 2.0])}  # fmt: skip
    examples = RankingExamples(HISTORIES, 0.0, popularity)
    data = TensorBatches(ratings, {"movie_id": 0.25}, movies, examples)
    hidden = [float((data.__getitems__([0, 1])["candidate_movie_id"] == 0).double().mean())
              for _ in range(5)]  # fmt: skip
    assert all(abs(share - 0.25) < 0.03 for share in hidden)
    assert len(set(hidden)) == 5  # drawn anew for every batch
    assert (examples._pool_movies["movie_id"] > 0).all()  # the kept candidates stay whole
    plain = TensorBatches(ratings, {}, movies, examples).__getitems__([0, 1])
    assert plain["candidate_movie_id"].tolist() == movies["movie_id"].tolist()


def _regressor(**options) -> RatingRegressor:
    sizes = {
        "n_movie_ids": 10, "vocab_size": 5, "title_length": 2, "n_features": 3,
        "n_user_ids": 4, "target_mean": 3.0, "target_std": 1.0,
    }  # fmt: skip
    net = {"id_dim": 4, "title_dim": 2, "hidden_sizes": [4], "user_dim": 2, "ranking_dim": 3}
    return RatingRegressor(sizes, net=net, **options)


def test_the_loss_is_the_rating_error_plus_the_weighted_softmax_of_the_watched_movie():
    torch.manual_seed(0)
    model = _regressor(ranking_weight=0.5, unliked_weight=0.25)
    model.eval()  # no dropout: the loss can be recomputed by hand
    movies = {**_movies(10), "title": torch.randint(0, 5, (10, 2))}
    rows = torch.tensor([6, 4])
    batch = {
        **{k: v[rows] for k, v in movies.items()}, "user_id": torch.tensor([1, 2]),
        "rating": torch.tensor([4.5, 2.0]),
    }  # fmt: skip
    RankingExamples(HISTORIES, 0.0, torch.full((10,), 0.1).double()).add(batch, rows, movies)
    model.on_train_epoch_start()
    loss = model.training_step(batch, 0)
    rating = F.mse_loss(model.score(batch), batch["rating"])
    net = model.net
    users = net.ranking.users(batch["history"], batch["history_offsets"], batch["history_weights"])
    logits = net.ranking.scores(users, net.ranking.movies(net.movie(movies), movies["movie_id"]))
    ce = F.cross_entropy(logits, rows, reduction="none")
    ranking = (ce[0] * 1.0 + ce[1] * 0.25) / 1.25  # the 2.0 was watched but not liked
    torch.testing.assert_close(loss, rating + 0.5 * ranking)


def test_the_ranking_part_is_not_decayed_and_needs_its_inputs():
    model = _regressor(optimizer={"name": "adam", "lr": 1e-3, "weight_decay": 0.01})
    groups = model.configure_optimizers().param_groups
    ranking = {id(p) for p in model.net.ranking.parameters()}
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert {id(p) for p in groups[1]["params"]} == ranking
    batch = {"movie_id": torch.tensor([1]), "title": torch.zeros(1, 2, dtype=torch.long),
             "features": torch.zeros(1, 3), "user_id": torch.tensor([1]),
             "rating": torch.tensor([4.0])}  # fmt: skip
    model.on_train_epoch_start()
    with pytest.raises(UserError, match="set data.ranking"):
        model.training_step(batch, 0)
