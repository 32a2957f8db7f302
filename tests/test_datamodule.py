"""The datamodule: split, train-only fitting, unknown ids, checkpoint state."""

from __future__ import annotations

import pytest
import torch

from conftest import same_fit
from movrec.data import MoviesDataModule, TmdbSynthetic
from movrec.data.batches import TensorBatches
from movrec.data.vocab import UNKNOWN_ID_INDEX

SYNTH = {"n_movies": 800, "seed": 0}


@pytest.fixture(scope="module")
def dm():
    module = MoviesDataModule(TmdbSynthetic(**SYNTH))
    module.setup()
    return module


def test_split_sizes_are_64_16_20(dm):
    n = sum(dm.summary()["rows"].values())
    rows = dm.summary()["rows"]
    assert rows["test"] == pytest.approx(0.2 * n, abs=1)
    assert rows["val"] == pytest.approx(0.16 * n, abs=1)
    assert rows["train"] == n - rows["test"] - rows["val"]
    assert n == 800 - dm.report.counts["rows dropped: unrated (vote_count == 0)"]


def test_splits_are_disjoint(dm):
    ids = {name: set(frame["id"]) for name, frame in dm.frames.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]


def test_split_depends_on_split_seed_only(dm):
    torch.manual_seed(123)
    again = MoviesDataModule(TmdbSynthetic(**SYNTH))
    again.setup()
    assert list(again.frames["test"]["id"]) == list(dm.frames["test"]["id"])
    other = MoviesDataModule(TmdbSynthetic(**SYNTH), split_seed=7)
    other.setup()
    assert list(other.frames["test"]["id"]) != list(dm.frames["test"]["id"])


def test_vocabulary_and_target_scale_are_fitted_on_train_only(dm):
    train_words = {w for t in dm.frames["train"]["title"] for w in t.lower().split()}
    assert set(dm.preprocessing.titles.words) <= train_words
    target = dm.frames["train"]["vote_average"]
    assert dm.preprocessing.target_mean == pytest.approx(target.mean())
    assert dm.preprocessing.target_range == (target.min(), target.max())
    assert dm.model_sizes()["rating_range"] == [target.min(), target.max()]


def test_poisoned_test_split_changes_no_fitted_state():
    clean = MoviesDataModule(TmdbSynthetic(**SYNTH))
    clean.setup()
    poisoned = MoviesDataModule(TmdbSynthetic(**SYNTH))
    original = poisoned.load_movies

    def load_poisoned(merge_on):
        frame, raw = original(merge_on)
        test_ids = set(clean.frames["test"]["id"])
        rows = frame["id"].isin(test_ids)
        frame.loc[rows, "title"] = "poison poison poison"
        frame.loc[rows, "budget"] = 1e12
        return frame, raw

    poisoned.load_movies = load_poisoned
    poisoned.setup()
    assert same_fit(poisoned.preprocessing, clean.preprocessing, clean.frames["train"])


def test_ids_unseen_in_training_map_to_unknown(dm):
    assert (dm.tensors["test"]["movie_id"] == UNKNOWN_ID_INDEX).all()
    assert (dm.tensors["train"]["movie_id"] != UNKNOWN_ID_INDEX).all()


def test_training_batches_replace_a_share_of_ids_with_unknown():
    ids = torch.arange(1, 20001)
    data = TensorBatches({"movie_id": ids, "rating": ids.float()}, {"movie_id": 0.25})
    batch = data.__getitems__(list(range(20000)))
    share = (batch["movie_id"] == UNKNOWN_ID_INDEX).float().mean().item()
    assert share == pytest.approx(0.25, abs=0.02)
    assert torch.equal(batch["rating"], ids.float())  # only ids are masked


def test_loaders_serve_whole_batches(dm):
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"movie_id", "title", "rating"}
    assert batch["title"].shape == (64, 15) and batch["movie_id"].shape == (64,)
    val = next(iter(dm.val_dataloader()))
    assert len(val["rating"]) == len(dm.frames["val"])


def test_state_dict_round_trip_gives_identical_tensors(dm):
    state = dm.state_dict()
    restored = MoviesDataModule(TmdbSynthetic(**{"n_movies": 800, "seed": 0}))
    restored.load_state_dict(state)
    restored.setup()
    assert same_fit(restored.preprocessing, dm.preprocessing, dm.frames["train"])
    for split in ("train", "val", "test"):
        for key, value in dm.tensors[split].items():
            assert torch.equal(restored.tensors[split][key], value)


def test_loaded_state_is_never_refitted():
    fitted = MoviesDataModule(TmdbSynthetic(**{"n_movies": 300, "seed": 1}))
    fitted.setup()
    other = MoviesDataModule(TmdbSynthetic(**{"n_movies": 300, "seed": 2}))
    other.load_state_dict(fitted.state_dict())
    other.setup()
    assert other.preprocessing.titles.words == fitted.preprocessing.titles.words


def test_needs_a_movie_source():
    with pytest.raises(ValueError, match="data.movies must be a movie source"):
        MoviesDataModule({"dir": "x"})


def test_k_fold_rotates_validation_over_the_non_test_rows(dm):
    folds = [MoviesDataModule(TmdbSynthetic(**SYNTH), folds=4, fold=i) for i in range(4)]
    for module in folds:
        module.setup()
        assert list(module.frames["test"]["id"]) == list(dm.frames["test"]["id"])
        ids = {name: set(frame["id"]) for name, frame in module.frames.items()}
        assert not ids["train"] & ids["val"]
    val_ids = [set(m.frames["val"]["id"]) for m in folds]
    rest = set(dm.frames["train"]["id"]) | set(dm.frames["val"]["id"])
    assert set().union(*val_ids) == rest and sum(map(len, val_ids)) == len(rest)
    with pytest.raises(ValueError, match="data.fold"):
        MoviesDataModule(TmdbSynthetic(**SYNTH), folds=4, fold=4).setup()


def test_paper_protocol_options():
    paper = MoviesDataModule(
        TmdbSynthetic(**SYNTH), id_vocabulary="all", validate_on="test", title_encoding="length"
    )
    paper.setup()
    frames = paper.frames
    assert frames["val"] is frames["test"]  # the paper validates on its test split
    assert len(frames["train"]) + len(frames["test"]) == sum(
        paper.summary()["rows"].values()
    ) - len(frames["test"])
    assert (paper.tensors["test"]["movie_id"] != UNKNOWN_ID_INDEX).all()  # ids mapped before split
    titles = paper.tensors["train"]["title"]
    assert titles.shape == (len(frames["train"]), 1)
    assert titles[:, 0].tolist() == [min(len(t), 4999) for t in frames["train"]["title"]]
    assert paper.model_sizes()["vocab_size"] == 5000 and paper.model_sizes()["title_length"] == 1
    with pytest.raises(ValueError, match="title_encoding=tokens"):
        paper.title_vectors()
    with pytest.raises(ValueError, match="data.validate_on"):
        MoviesDataModule(TmdbSynthetic(**SYNTH), validate_on="train")
