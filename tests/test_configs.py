"""Every config group composes, instantiates where this machine allows, and typos fail fast."""

from __future__ import annotations

import itertools

import lightning as L
import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF_DIR
from movrec.data import FittedDataModule
from movrec.run import instantiate_group

GROUPS = {
    group: sorted(p.stem for p in (__import__("pathlib").Path(CONF_DIR) / group).glob("*.yaml"))
    for group in ("model", "data", "trainer", "callbacks", "logger", "glove", "experiment")
}
NEURAL = ["deep", "finetuned_glove", "glove"]


def test_every_group_has_its_options():
    assert GROUPS["model"] == [
        "als", "bpr", "catboost", "deep", "ease", "finetuned_glove", "gbdt", "glove",
        "knn_baseline", "lightgbm", "svd", "svdpp", "vbpr",
    ]  # fmt: skip
    assert GROUPS["experiment"] == ["cold_start", "hybrid", "paper", "prerelease", "recommend"]
    assert GROUPS["data"] == ["movielens_synthetic", "movielens_tmdb", "synthetic", "tmdb"]
    assert GROUPS["trainer"] == ["cpu", "ddp", "ddp_sim", "default", "gpu"]


@pytest.mark.parametrize(
    ("model", "data", "trainer"),
    [
        *((model, data, "cpu") for model, data in itertools.product(NEURAL, GROUPS["data"])),
        *(("finetuned_glove", "tmdb", trainer) for trainer in GROUPS["trainer"]),
    ],
)
def test_composes_and_resolves(cfg_factory, model, data, trainer):
    cfg = cfg_factory(f"model={model}", f"data={data}", f"trainer={trainer}")
    OmegaConf.resolve(cfg)
    assert cfg.model._target_ == "movrec.models.regressor.RatingRegressor"
    assert cfg.trainer._target_ == "lightning.Trainer"


@pytest.mark.parametrize("model", GROUPS["model"])
@pytest.mark.parametrize("experiment", ["cold_start", "hybrid"])
def test_experiments_compose_with_every_model(cfg_factory, experiment, model):
    cfg = cfg_factory(f"experiment={experiment}", f"model={model}")
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.data.features.numeric and cfg.trainer.max_epochs > 10
    assert ("vote_count" in cfg.data.features.exclude) is (experiment == "cold_start")


@pytest.mark.parametrize("group", ["callbacks", "logger", "glove"])
def test_other_groups_compose(cfg_factory, group):
    for option in GROUPS[group]:
        text = option == "text" and group == "glove"
        cfg = cfg_factory(
            f"{group}={option}", *(["glove.source.path=/x/glove.txt"] if text else [])
        )
        OmegaConf.to_container(cfg, resolve=True)


def test_variants_differ_only_in_title_embedding(cfg_factory):
    models = {m: OmegaConf.to_container(cfg_factory(f"model={m}").model) for m in NEURAL}
    expected = {
        "deep": ("random", True),
        "glove": ("glove", False),
        "finetuned_glove": ("glove", True),
    }
    for name, (init, trainable) in expected.items():
        net = models[name]["net"]
        assert (net["title_init"], net["title_trainable"]) == (init, trainable)
    strip = ("title_init", "title_trainable")
    for model in models.values():
        model["net"] = {k: v for k, v in model["net"].items() if k not in strip}
    bodies = list(models.values())
    assert all(body == bodies[0] for body in bodies)


@pytest.mark.parametrize("trainer", ["cpu", "default", "ddp_sim"])
def test_trainer_callbacks_logger_instantiate(cfg_factory, trainer):
    cfg = cfg_factory(f"trainer={trainer}", "logger=tensorboard", "callbacks=default")
    callbacks = instantiate_group(cfg.callbacks)
    names = {type(c).__name__ for c in callbacks}
    assert names == {
        "EarlyStopping",
        "RunCheckpoint",
        "RichModelSummary",
        "ProgressBar",
        "LearningCurves",
        "EmbeddingProjector",
    }
    trainer_obj = instantiate(
        cfg.trainer, callbacks=callbacks, logger=instantiate_group(cfg.logger)
    )
    assert isinstance(trainer_obj, L.Trainer)
    assert trainer_obj.max_epochs == 10


def test_datamodules_instantiate(cfg_factory):
    for data in GROUPS["data"]:
        dm = instantiate(cfg_factory(f"data={data}").data)
        assert isinstance(dm, FittedDataModule)
        assert dm.hparams.split_seed == 42
        # The paper's batch of 64 for TMDb movies; 256 for the 16x more user ratings.
        assert dm.hparams.batch_size == (256 if data.startswith("movielens") else 64)


@pytest.mark.parametrize(
    "override", ["model=glov", "modle=glove", "model.net.title_dimm=50", "data.batchsize=3"]
)
def test_typos_fail_fast(cfg_factory, override):
    with pytest.raises(ConfigCompositionException):
        cfg_factory(override)


def test_bad_option_values_name_the_option(cfg_factory):
    cfg = cfg_factory("model.net.title_init=word2vec")
    with pytest.raises(Exception, match="model.net.title_init"):
        sizes = {"n_movie_ids": 3, "vocab_size": 4, "title_length": 2}
        instantiate(cfg.model, sizes={**sizes, "target_mean": 0.0, "target_std": 1.0})
    cfg = cfg_factory("data.merge_on=name")
    with pytest.raises(Exception, match="data.merge_on"):
        instantiate(cfg.data)


@pytest.mark.parametrize(("model", "encoding"), [("deep", "length"), ("glove", "tokens")])
def test_paper_experiment_reads_titles_as_the_papers_code(cfg_factory, model, encoding):
    import movrec.run  # noqa: F401  (registers the config resolver)

    cfg = cfg_factory("experiment=paper", f"model={model}")
    assert cfg.data.title_encoding == encoding
    assert cfg.data.merge_on == "title" and cfg.data.validate_on == "test"
    assert cfg.callbacks.early_stopping is None and cfg.trainer.max_epochs == 10


def test_paper_experiment_writes_only_the_tested_epochs_checkpoint(cfg_factory):
    cfg = cfg_factory("experiment=paper", "model=deep", "trainer.max_epochs=4")
    checkpoint = instantiate(cfg.callbacks.model_checkpoint)
    assert checkpoint.monitor is None and checkpoint._every_n_epochs == 4
