"""Metadata features: train-only fitting, no target leak, counted repairs, PCA, reloadable."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from sklearn.compose import ColumnTransformer

from conftest import make_cfg, same_fit
from movrec.data import MoviesDataModule, TmdbSynthetic
from movrec.data.cells import tags as tag_lists
from movrec.data.feature_spec import FeatureSpec
from movrec.data.features import FeaturePipeline
from movrec.data.glove import PackageGlove
from movrec.data.preprocessing import Preprocessing
from movrec.data.synthetic import make_tmdb
from movrec.data.tmdb import CleaningReport, clean_movies, merge_credits
from movrec.run import fit_and_test
from movrec.serving.predict import RatingPredictor

ALL = {"numeric": True, "categorical": True, "text": True, "credits": True}


def clean_frame(n=300, seed=0):
    movies, credits = make_tmdb(n_movies=n, seed=seed)
    report = CleaningReport()
    return merge_credits(clean_movies(movies, report), credits, "id", report)


@pytest.fixture(scope="module")
def vectors():
    return PackageGlove().load()


@pytest.fixture(scope="module")
def hybrid_dm():
    dm = MoviesDataModule(
        TmdbSynthetic(**{"n_movies": 600, "seed": 0}), features=ALL, glove=PackageGlove()
    )
    dm.setup()
    return dm


def test_every_group_contributes_named_columns(hybrid_dm):
    names = hybrid_dm.preprocessing.features.names
    for prefix in ("num:", "genres:", "original_language:", "production_companies:", "people:"):
        assert any(n.startswith(prefix) for n in names), prefix
    for column in ("overview", "keywords", "tagline"):
        assert sum(n.startswith(f"{column}:") for n in names) == 50
    features = hybrid_dm.tensors["train"]["features"]
    assert features.shape == (len(hybrid_dm.frames["train"]), len(names))
    assert torch.isfinite(features).all()


def test_fitted_on_the_training_split_only(hybrid_dm):
    poisoned = MoviesDataModule(
        TmdbSynthetic(n_movies=600, seed=0), features=ALL, glove=PackageGlove()
    )
    original = poisoned.load_movies
    test_ids = set(hybrid_dm.frames["test"]["id"])

    def load_poisoned(merge_on):
        frame, raw = original(merge_on)
        rows = frame["id"].isin(test_ids)
        frame.loc[rows, ["budget", "runtime", "popularity"]] = 1e9
        frame.loc[rows, "genres"] = '[{"id": 1, "name": "Poison"}]'
        frame.loc[rows, "overview"] = "poison venom toxic"
        frame.loc[rows, "release_date"] = "2099-01-01"
        return frame, raw

    poisoned.load_movies = load_poisoned
    poisoned.setup()
    assert same_fit(poisoned.preprocessing, hybrid_dm.preprocessing, hybrid_dm.frames["train"])
    for split in ("train", "val"):
        assert torch.equal(
            poisoned.tensors[split]["features"], hybrid_dm.tensors[split]["features"]
        )


def test_the_target_never_reaches_the_features(vectors):
    frame = clean_frame()
    pipeline = FeaturePipeline(FeatureSpec(**ALL)).fit(frame, vectors)
    assert not any("vote_average" in n for n in pipeline.names)
    shuffled = frame.assign(
        vote_average=frame["vote_average"].sample(frac=1, random_state=1).values
    )
    np.testing.assert_array_equal(pipeline.transform(frame), pipeline.transform(shuffled))
    np.testing.assert_array_equal(
        pipeline.transform(frame), pipeline.transform(frame.drop(columns=["vote_average"]))
    )
    with pytest.raises(ValueError, match="target"):
        FeatureSpec(exclude=["vote_average"])


def test_pca_keeps_the_configured_variance():
    frame = clean_frame(n=400)
    spec = FeatureSpec(categorical=False, credits=False, pca_variance=0.95)
    pipeline = FeaturePipeline(spec).fit(frame)
    summary = pipeline.summary()
    assert summary["pca_explained_variance"] >= 0.95
    assert 0 < summary["n"] <= len(summary["numeric_columns"])
    assert pipeline.transform(frame).shape[1] == summary["n"]
    assert all(name.startswith("num:pca") for name in pipeline.names)
    with pytest.raises(ValueError, match="pca_variance"):
        FeatureSpec(pca_variance=1.5)


@pytest.mark.parametrize(
    "options",
    [{"numeric_scaler": "standard"}, {"numeric_scaler": "quantile", "top_languages": 2},
     {"numeric_scaler": "quantile", "pca_variance": 0.9}, {"top_languages": 30}],
)  # fmt: skip
def test_plain_blocks_transform_as_the_fitted_sklearn_objects(vectors, options):
    """The checkpoint keeps each fitted part as arrays; they reproduce sklearn's transform
    on unseen rows, including missing numbers, unknown languages and values past the range."""
    train, unseen = clean_frame(300, seed=0), clean_frame(200, seed=1)
    unseen.loc[unseen.index[:5], "budget"] = np.nan
    unseen.loc[unseen.index[:5], "original_language"] = "xx"
    unseen.loc[unseen.index[5:10], "runtime"] = 10_000.0
    pipeline = FeaturePipeline(FeatureSpec(**ALL, **options))
    pipeline.fit(train, vectors)
    frame = pipeline.frame(train)
    transformer = ColumnTransformer(pipeline._parts(frame, vectors), sparse_threshold=0)
    transformer.fit(frame, train["vote_average"].to_numpy(dtype=np.float64))
    reloaded = FeaturePipeline.from_state(pipeline.state_dict())
    expected = transformer.transform(reloaded.frame(unseen)).astype(np.float32)
    assert np.array_equal(reloaded.transform(unseen), expected)
    assert reloaded.names == pipeline.names and len(reloaded.names) == expected.shape[1]


def test_correlated_pairs_keep_the_more_informative_column():
    frame = clean_frame(n=400)
    frame["popularity"] = np.expm1(np.log1p(frame["vote_count"]) * 1.0001)  # |r| ~ 1
    pipeline = FeaturePipeline(FeatureSpec(categorical=False, credits=False)).fit(frame)
    dropped = pipeline.summary()["dropped_correlated"]
    assert len({"popularity", "vote_count"} & set(dropped)) == 1
    assert "movie_age" in dropped or "release_year" in dropped  # age = reference - year


def test_malformed_cells_are_counted_repairs(vectors):
    frame = clean_frame()
    frame.loc[0, "genres"] = "not json"
    frame.loc[1, "production_companies"] = '{"oops": '
    frame.loc[2, "release_date"] = "soon"
    frame.loc[3, "cast"] = "[broken"
    pipeline = FeaturePipeline(FeatureSpec(**ALL)).fit(frame, vectors)
    report = CleaningReport()
    values = pipeline.transform(frame, report)
    counts = report.counts
    assert counts["genres: malformed JSON -> empty"] >= 1
    assert counts["production_companies: malformed JSON -> empty"] >= 1
    assert counts["release_date: not a date -> missing"] == 1
    assert counts["cast: malformed JSON -> empty"] >= 1
    assert np.isfinite(values).all()


@pytest.mark.parametrize("text", [False, True])
def test_malformed_keyword_and_tag_cells_are_counted_once(vectors, text):
    """Keywords feed the tag bag (and the text group when it is on): each malformed cell is
    one repair, like a malformed genres cell, however many parts read it."""
    frame = clean_frame(seed=1)
    frame.loc[[0, 1, 2], "keywords"] = "[broken"
    frame.loc[3, "production_companies"] = "nope"
    spec = FeatureSpec(**{**ALL, "text": text, "tags": 50})
    preprocessing = Preprocessing.fit(clean_frame(), 5000, 15, spec, vectors)
    report = CleaningReport()
    preprocessing.transform(frame, report)
    assert report.counts["keywords: malformed JSON -> empty"] == 3
    assert report.counts["production_companies: malformed JSON -> empty"] == 1


def test_malformed_numbers_get_the_unknown_flag_like_missing_ones(hybrid_dm):
    """A budget of "n/a" is an unknown budget, exactly like a budget of 0: same flag, same
    fill (the pipeline's training median), one place that fills."""
    movies, _ = make_tmdb(n_movies=3, seed=5)
    movies["budget"] = ["n/a", "0", "1000000"]
    report = CleaningReport()
    frame = clean_movies(movies, report, require_target=False)
    assert report.counts["budget: not a number -> missing"] == 1
    features = hybrid_dm.preprocessing.transform(frame, report)["features"]
    names = hybrid_dm.preprocessing.features.names
    flag, budget = names.index("num:budget_unknown"), names.index("num:budget")
    assert features[0, flag] == features[1, flag] > features[2, flag]
    assert features[0, budget] == features[1, budget] != features[2, budget]


def test_top_k_with_an_other_bucket():
    frame = clean_frame()
    pipeline = FeaturePipeline(FeatureSpec(numeric=False, credits=False, top_companies=2))
    pipeline.fit(frame)
    names = [n for n in pipeline.names if n.startswith("production_companies:")]
    assert len(names) == 3 and names[-1] == "production_companies:other"
    values = pipeline.transform(frame)[:, [pipeline.names.index(n) for n in names]]
    assert (values.sum(1) >= 1).all()  # every movie has a company: a top one or "other"


def test_bad_feature_options_are_named():
    with pytest.raises(ValueError, match="data.features.exclude"):
        FeatureSpec(exclude=["budjet"])
    with pytest.raises(ValueError, match="data.features.text_pooling"):
        FeatureSpec(text_pooling="median")


@pytest.fixture(scope="module")
def hybrid_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hybrid")
    # No weight average: its ~500-step span is longer than these 15 short epochs.
    cfg = make_cfg(
        out, "experiment=hybrid", "trainer.max_epochs=15", "data.features.tags=500",
        "model.ema_decay=null",
    )  # fmt: skip
    return fit_and_test(cfg), out


def test_hybrid_beats_the_id_and_title_model(hybrid_run, tmp_path):
    core = fit_and_test(make_cfg(tmp_path, "trainer.max_epochs=15"))
    metrics, _ = hybrid_run
    assert metrics["data"]["features"]["n"] > 0
    assert "budget" in metrics["data"]["features"]["correlation"]
    assert metrics["test"]["r2"] > core["test"]["r2"] + 0.1


def test_tags_are_a_bag_of_names_seen_on_two_training_movies(hybrid_dm):
    spec = {**ALL, "text": False, "tags": 50, "tag_length": 8}
    dm = MoviesDataModule(TmdbSynthetic(**{"n_movies": 600, "seed": 0}), features=spec)
    dm.setup()
    vocabulary = dm.preprocessing.tags
    assert 0 < len(vocabulary) - 1 <= 50
    train = tag_lists(dm.frames["train"], None)
    counts = Counter(t for tags in train for t in set(tags))
    assert all(counts[t] >= 2 for t in vocabulary.tags)  # fitted on training movies only
    assert {t.split(":")[0] for t in vocabulary.tags} <= {"director", "cast", "company", "keyword"}
    tensors = dm.tensors["test"]
    assert tensors["tags"].shape == (len(dm.frames["test"]), 8)
    first = tag_lists(dm.frames["test"].iloc[:1], None)[0]
    known = [vocabulary.index[t] for t in first if t in vocabulary.index][:8]
    assert tensors["tags"][0].tolist() == known + [0] * (8 - len(known))
    assert dm.model_sizes()["n_tags"] == len(vocabulary)


def test_hybrid_checkpoint_reloads_with_identical_predictions(hybrid_run):
    metrics, _ = hybrid_run
    predictor = RatingPredictor.from_checkpoint(metrics["checkpoint"])
    dm = MoviesDataModule(TmdbSynthetic(**{"n_movies": 1200, "seed": 0}), features=None)
    dm.setup()
    test = dm.frames["test"]
    predicted, _ = predictor.predict(test)
    batch = predictor.preprocessing.transform(test)
    with torch.no_grad():
        direct = predictor.model(batch).numpy()
    np.testing.assert_array_equal(predicted["predicted_vote_average"].to_numpy(), direct)
    again, _ = RatingPredictor.from_checkpoint(metrics["checkpoint"]).predict(test)
    assert again.equals(predicted)
    y = test["vote_average"].to_numpy()
    assert np.corrcoef(direct, y)[0, 1] > 0.5


@pytest.mark.parametrize(
    "model", ["gbdt", "lightgbm", pytest.param("catboost", marks=pytest.mark.slow)]
)
def test_tree_peers_choose_their_size_on_validation(tmp_path, model):
    """Same rows and metrics.json as the networks; the number of trees is the one with the
    lowest validation MSE, then the model is refitted on train + validation. (The synthetic
    signal is in words: trees need the text features to see it.)"""
    cap = {"gbdt": "max_iter", "lightgbm": "n_estimators", "catboost": "iterations"}[model]
    overrides = ("experiment=hybrid", "data.features.text=true", f"model={model}",
                 f"model.{cap}=100", "model.learning_rate=0.15",
                 "data.movies.n_movies=700")  # fmt: skip
    metrics = fit_and_test(make_cfg(tmp_path, *overrides))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test"] == metrics["test"] and saved["kind"] == "trees"
    assert 1 <= metrics["epochs_run"] <= 100 and metrics["best_val_loss"] > 0
    assert metrics["val_loss_cross_half"] == pytest.approx(metrics["best_val_loss"], rel=0.5)
    assert metrics["test"]["r2"] > 0.3 and metrics["mean_baseline"]["r2"] < 0.05
    assert not list(tmp_path.glob("catboost_info"))


def test_gbdt_without_features_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="data.features"):
        fit_and_test(make_cfg(tmp_path, "model=gbdt"))


def test_cold_start_drops_post_release_signals_and_the_id(tmp_path):
    cfg = make_cfg(tmp_path, "experiment=cold_start")
    assert cfg.model.net.id_dim == 0
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup()
    names = dm.preprocessing.features.names
    for leaked in ("vote_count", "popularity", "revenue", "unrated"):
        assert not any(leaked in n for n in names), leaked
