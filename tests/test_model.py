"""The LightningModule: the three title variants, frozen weights, metrics against sklearn."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import WeightAveraging
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from torch.optim.swa_utils import get_ema_multi_avg_fn

from movrec.data import MoviesDataModule, TmdbSynthetic
from movrec.data.vocab import PAD_INDEX
from movrec.models.components import PADDING_INDEX, TitleEncoder
from movrec.models.regressor import RatingRegressor, parameter_counts
from movrec.models.shortcuts import ExponentialMovingAverage, QuickHookName


@pytest.fixture(scope="module")
def dm():
    module = MoviesDataModule(TmdbSynthetic(**{"n_movies": 600, "seed": 3}))
    module.setup()
    return module


NEEDS_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def regressor(sizes: dict, **net) -> RatingRegressor:
    """The module as the config builds it: the network's settings, sizes from the data."""
    return RatingRegressor(sizes, net=net)


def toy_sizes(**sizes) -> dict:
    return {"n_movie_ids": 3, "vocab_size": 6, "title_length": 4, "target_mean": 0.0,
            "target_std": 1.0, **sizes}  # fmt: skip


def make_model(dm, init, trainable, **net):
    model = regressor(dm.model_sizes(), title_init=init, title_trainable=trainable, **net)
    if init == "glove":
        vectors = torch.randn(dm.model_sizes()["vocab_size"], 50)
        vectors[PAD_INDEX] = 0
        model.net.title.load_vectors(vectors)
    return model


def fit(model, dm, epochs=2):
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    return trainer


def test_padding_index_matches_the_datamodule():
    assert PADDING_INDEX == PAD_INDEX


@pytest.mark.parametrize(
    ("init", "trainable", "changes"),
    [("glove", False, False), ("glove", True, True), ("random", True, True)],
)
def test_title_embedding_frozen_or_trained(dm, init, trainable, changes):
    torch.manual_seed(0)
    model = make_model(dm, init, trainable)
    before = model.net.title.embedding.weight.detach().clone()
    head_before = model.net.head[0].weight.detach().clone()
    fit(model, dm)
    after = model.net.title.embedding.weight.detach()
    assert torch.equal(before, after) is (not changes)
    assert not torch.equal(head_before, model.net.head[0].weight)
    assert not after[PADDING_INDEX].any()


def test_glove_rows_are_copied_into_the_built_module(dm):
    """The constructor needs sizes only (no random draws for a GloVe table); the run copies the
    rows in, so a checkpoint rebuilds the module without placeholder vectors."""
    model = regressor(dm.model_sizes(), title_init="glove", title_trainable=False)
    assert not model.net.title.embedding.weight.any()
    vectors = torch.arange(dm.model_sizes()["vocab_size"] * 50, dtype=torch.float32).reshape(-1, 50)
    model.net.title.load_vectors(vectors)
    assert torch.equal(model.net.title.embedding.weight, vectors)
    assert not model.net.title.embedding.weight.requires_grad
    with pytest.raises(ValueError, match="rows, vocabulary has"):
        model.net.title.load_vectors(vectors[:5])


def test_parameter_counts_split_frozen_and_trainable(dm):
    frozen = parameter_counts(make_model(dm, "glove", False))
    tuned = parameter_counts(make_model(dm, "glove", True))
    title = dm.model_sizes()["vocab_size"] * 50
    assert frozen["frozen"] == title and tuned["frozen"] == 0
    assert tuned["trainable"] == frozen["trainable"] + title


def test_untrained_model_predicts_near_the_training_mean(dm):
    model = make_model(dm, "random", True).eval()
    with torch.no_grad():
        pred = model(dm.tensors["test"])
    assert (
        abs(pred.mean().item() - dm.preprocessing.target_mean) < 0.5 * dm.preprocessing.target_std
    )


def test_logged_test_metrics_equal_sklearn(dm):
    torch.manual_seed(1)
    model = make_model(dm, "random", True)
    trainer = fit(model, dm, epochs=1)
    results = trainer.test(model, datamodule=dm, verbose=False)[0]
    model.eval()
    with torch.no_grad():
        pred = model(dm.tensors["test"]).numpy()
    y = dm.tensors["test"]["rating"].numpy()
    assert results["test/mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-5)
    assert results["test/rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, pred)), rel=1e-5)
    assert results["test/r2"] == pytest.approx(r2_score(y, pred), rel=1e-4, abs=1e-5)
    assert results["test/loss"] == pytest.approx(mean_squared_error(y, pred), rel=1e-5)


def test_bad_options_are_named(dm):
    with pytest.raises(ValueError, match="model.net.dropout"):
        regressor(dm.model_sizes(), dropout=1.5)
    with pytest.raises(ValueError, match="model.output_init"):
        RatingRegressor(dm.model_sizes(), output_init="median")


def test_the_optimiser_and_scheduler_come_from_their_names(dm):
    """Adam gets the fused kernel on CPU unless the config says otherwise (4-5x faster)."""
    model = regressor(dm.model_sizes())
    adam = model.configure_optimizers()
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["fused"] is True
    assert adam.defaults["lr"] == 1e-3
    plateau = {"name": "plateau", "patience": 1}
    model = RatingRegressor(
        dm.model_sizes(), optimizer={"name": "sgd", "lr": 0.1}, scheduler=plateau
    )
    config = model.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD)
    assert config["lr_scheduler"]["monitor"] == "val/loss"
    with pytest.raises(ValueError, match="model.optimizer.name must be one of"):
        RatingRegressor(dm.model_sizes(), optimizer={"name": "os.system"})
    with pytest.raises(ValueError, match=r"model.net: unknown setting\(s\) \['hiden_sizes'\]"):
        regressor(dm.model_sizes(), hiden_sizes=[8])
    frozen = make_model(dm, "glove", False).configure_optimizers()
    assert all(p.requires_grad for group in frozen.param_groups for p in group["params"])


def test_lightnings_hook_name_bypasses_module_setattr(dm, monkeypatch):
    """Pinned to Lightning: a training step still sets ``_current_fx_name`` on the module (the
    attribute QuickHookName short-cuts), and it no longer goes through nn.Module.__setattr__."""
    model = regressor(dm.model_sizes())
    calls = []
    original = torch.nn.Module.__setattr__
    monkeypatch.setattr(
        torch.nn.Module, "__setattr__", lambda self, k, v: calls.append(k) or original(self, k, v)
    )
    model._current_fx_name = "training_step"
    model.anything = 1
    assert calls == ["anything"] and model._current_fx_name == "training_step"

    monkeypatch.undo()
    seen = []
    quick = QuickHookName.__setattr__

    def spy(self, name, value):
        if name == "_current_fx_name":
            seen.append(value)
        quick(self, name, value)

    monkeypatch.setattr(QuickHookName, "__setattr__", spy)
    trainer = L.Trainer(
        max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(regressor(dm.model_sizes()), datamodule=dm)
    assert seen.count("training_step") >= 2


def test_the_moving_average_reads_what_lightning_keeps(dm):
    """Pinned to Lightning: WeightAveraging keeps its AveragedModel in ``_average_model`` and
    the step of its last update in ``_latest_update_step``, which ExponentialMovingAverage
    reads and advances."""
    average = ExponentialMovingAverage(0.9)
    trainer = L.Trainer(
        max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        callbacks=[average],
    )  # fmt: skip
    trainer.fit(regressor(dm.model_sizes()), datamodule=dm)
    assert isinstance(average._average_model, torch.optim.swa_utils.AveragedModel)
    assert average._latest_update_step == trainer.global_step == 3
    assert int(average._average_model.n_averaged) == 3


def test_planted_signal_separates_working_from_broken_models():
    """Shuffling the training ratings breaks the title -> rating link: no gain over the mean."""
    working = MoviesDataModule(TmdbSynthetic(**{"n_movies": 1200, "seed": 4}))
    working.setup()
    broken = MoviesDataModule(TmdbSynthetic(**{"n_movies": 1200, "seed": 4}))
    broken.setup()
    generator = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        ratings = broken.tensors[split]["rating"]
        broken.tensors[split]["rating"] = ratings[torch.randperm(len(ratings), generator=generator)]
    r2 = {}
    for name, data in (("working", working), ("broken", broken)):
        torch.manual_seed(0)
        model = make_model(data, "random", True)
        trainer = fit(model, data, epochs=8)  # R² 0.22-0.47 on seeds 0-5
        r2[name] = trainer.test(model, datamodule=data, verbose=False)[0]["test/r2"]
    assert r2["working"] > 0.1, r2
    assert r2["broken"] < 0.02, r2


def test_mean_title_pooling_averages_the_real_words():
    title = TitleEncoder(vocab_size=6, length=4, pooling="mean")
    tokens = torch.tensor([[2, 3, 0, 0], [5, 0, 0, 0]])
    weight = title.embedding.weight
    expected = torch.stack([(weight[2] + weight[3]) / 2, weight[5]])
    torch.testing.assert_close(title(tokens), expected)
    with pytest.raises(ValueError, match="model.net.title_pooling"):
        TitleEncoder(vocab_size=6, length=4, pooling="max")


def test_users_personalise_predictions_and_share_the_movie_space():
    sizes = toy_sizes(n_movie_ids=5, vocab_size=7, title_length=3)
    model = regressor({**sizes, "n_features": 4, "n_user_ids": 3}, user_dim=6).eval()
    batch = {
        "movie_id": torch.tensor([1, 1]),
        "title": torch.tensor([[2, 3, 0], [2, 3, 0]]),
        "features": torch.ones(2, 4),
        "user_id": torch.tensor([1, 2]),
    }
    with torch.no_grad():
        model.net.users.embedding.weight[2] += 1.0  # a different taste for user 2
        pred = model(batch)
    assert pred.shape == (2,) and pred[0] != pred[1]  # same movie, two users
    assert model.movie_representation(batch).shape == (2, 6)  # the users' space
    without = regressor(sizes)
    assert not without.has_users and without.test_ranking is None
    with pytest.raises(ValueError, match="model.net.user_dim"):
        regressor({**sizes, "n_user_ids": 3}, user_dim=0)


def test_predictions_stay_on_the_training_scale_outside_training():
    """Surprise-style clipping: evaluation and every command see ratings within the range
    seen in training; training sees the raw output (clipping would stop its gradient)."""
    sizes = toy_sizes(vocab_size=5, title_length=2, target_mean=3.0, target_std=10.0)
    model = regressor({**sizes, "rating_range": [0.5, 5.0], "n_user_ids": 4}, dropout=0.0)
    torch.manual_seed(0)
    batch = {
        "movie_id": torch.tensor([1, 2, 1, 2]),
        "title": torch.tensor([[1, 2], [3, 4], [2, 0], [4, 1]]),
        "user_id": torch.tensor([1, 2, 3, 1]),
    }
    with torch.no_grad():
        model.net.head[-1].bias.fill_(1.0)  # raw predictions far above the scale: 3 + 10 * ~1
        raw = model.train()(batch)
        clipped = model.eval()(batch)
    assert raw.max() > 5.0
    assert clipped.min() >= 0.5 and clipped.max() <= 5.0
    assert torch.equal(clipped, raw.clamp(0.5, 5.0))
    with torch.no_grad():  # rankings order by the unclipped scores: no ties at the top
        assert torch.equal(model.eval().score(batch), raw)


def test_periodic_numeric_embeddings_widen_only_the_numeric_columns():
    """model.net.numeric_embedding=periodic: each of the leading numeric feature columns
    becomes a learned vector; the other feature columns pass through unchanged."""
    sizes = toy_sizes(n_features=5, n_numeric=3)
    model = regressor(sizes, numeric_embedding="periodic", numeric_embedding_dim=4, id_dim=0)
    plain = regressor(sizes, id_dim=0)
    assert model.net.movie.width == plain.net.movie.width + 3 * (4 - 1)
    batch = {"title": torch.tensor([[1, 2, 0, 0]]), "features": torch.randn(1, 5)}
    encoded = model.net.movie.features(batch["features"])
    assert encoded.shape == (1, 3 * 4 + 2)
    assert torch.equal(encoded[:, -2:], batch["features"][:, 3:])
    assert model(batch).shape == (1,)
    with pytest.raises(ValueError, match="model.net.numeric_embedding"):
        regressor(sizes, numeric_embedding="fourier")


def test_the_periodic_frequencies_start_at_the_configured_scale():
    """model.net.numeric_frequency_scale: the std the frequencies are drawn with (the library
    truncates the normal at 3 std)."""
    sizes = toy_sizes(n_features=40, n_numeric=40)
    for scale in (0.01, 0.1):
        torch.manual_seed(0)
        net = regressor(sizes, numeric_embedding="periodic", numeric_frequency_scale=scale).net
        frequencies = net.movie.features.embed.periodic.weight
        assert frequencies.std().item() == pytest.approx(scale, rel=0.1)
        assert frequencies.abs().max().item() <= 3 * scale
    with pytest.raises(ValueError, match="model.net.numeric_frequency_scale"):
        regressor(sizes, numeric_embedding="periodic", numeric_frequency_scale=0.0)


def test_several_heads_learn_apart_and_predict_their_mean():
    """model.net.heads=k: k heads, each trained on its own loss (their sum, so that weight
    decay weighs on each as on a single head); the prediction is their mean."""
    sizes = toy_sizes(n_user_ids=3)
    model = regressor(sizes, heads=4, dropout=0.0)
    batch = {
        "movie_id": torch.tensor([1, 2]),
        "title": torch.tensor([[1, 2, 0, 0], [3, 0, 0, 0]]),
        "user_id": torch.tensor([1, 2]),
        "rating": torch.tensor([1.0, 2.0]),
    }
    members = model.members(batch)
    assert members.shape == (2, 4) and not torch.equal(members[:, 0], members[:, 1])
    torch.testing.assert_close(model.eval().score(batch), members.mean(-1))
    model.train()
    model.on_train_epoch_start()
    loss = model.training_step(batch, 0)
    expected = ((members - batch["rating"][:, None]) ** 2).mean(0).sum()
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="model.net.heads"):
        regressor(sizes, heads=0)


def test_ema_validates_tests_and_checkpoints_the_moving_average(dm, tmp_path):
    """``ema_decay``: after each step avg = d * avg + (1 - d) * weights (the first step's
    weights to start); the fitted module and its checkpoint hold that average."""
    torch.manual_seed(0)
    model = RatingRegressor(dm.model_sizes(), net={"id_dim": 8}, ema_decay=0.9)
    steps = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            steps.append(module.net.head[-1].weight.detach().clone())

    checkpoint = L.pytorch.callbacks.ModelCheckpoint(tmp_path, save_last=True)
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, callbacks=[Record(), checkpoint],
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    average = steps[0]
    for weights in steps[1:]:
        average = 0.9 * average + 0.1 * weights
    assert len(steps) > 10 and not torch.allclose(steps[-1], average, atol=1e-4)
    torch.testing.assert_close(model.net.head[-1].weight.detach(), average)
    saved = RatingRegressor.load_from_checkpoint(checkpoint.last_model_path, weights_only=True)
    torch.testing.assert_close(saved.net.head[-1].weight, average)
    with pytest.raises(ValueError, match="model.ema_decay"):
        RatingRegressor(dm.model_sizes(), ema_decay=1.0)


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists")  # resumed in place
@pytest.mark.parametrize("accelerator", ["cpu", pytest.param("gpu", marks=NEEDS_GPU)])
def test_moving_average_matches_lightnings_weight_averaging_bit_for_bit(dm, tmp_path, accelerator):
    """The cached foreach lerp is a faster route to torch's EMA, not a different average:
    Lightning's callback with torch's EMA function leaves exactly the same weights, also when
    the fit resumes from a checkpoint halfway (the average and its count restored). On a GPU
    the average lives there too (moved in ``on_train_start``); deterministic kernels keep the
    fits comparable."""

    def fit(ema_decay, callbacks, folder, epochs=2, resume=None):
        torch.manual_seed(0)
        model = RatingRegressor(
            dm.model_sizes(), net={"id_dim": 8, "dropout": 0.2}, ema_decay=ema_decay
        )
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(tmp_path / folder, save_last=True)
        trainer = L.Trainer(
            max_epochs=epochs, accelerator=accelerator, devices=1, deterministic=True,
            logger=False, callbacks=[*callbacks, checkpoint], enable_progress_bar=False,
            enable_model_summary=False,
        )  # fmt: skip
        trainer.fit(model, datamodule=dm, ckpt_path=resume, weights_only=True)
        if ema_decay:  # movrec's callback keeps the average where the module trains
            (ema,) = [c for c in trainer.callbacks if isinstance(c, ExponentialMovingAverage)]
            devices = {t.device.type for t in ema._average_model.state_dict().values()}
            assert devices == {"cuda" if accelerator == "gpu" else "cpu"}
        return model.state_dict(), checkpoint.last_model_path

    def same(first, second):
        return first.keys() == second.keys() and all(
            torch.equal(first[k], second[k]) for k in first
        )

    reference = WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(0.9))
    fast, lightning = fit(0.9, [], "fast")[0], fit(None, [reference], "lightning")[0]
    assert reference._average_model.n_averaged > 10
    assert same(fast, lightning)
    plain = fit(None, [], "plain")[0]
    assert not torch.equal(fast["net.head.0.weight"], plain["net.head.0.weight"])

    resumed = {}
    for name, ema_decay, callbacks in (
        ("fast", 0.9, lambda: []),
        ("lightning", None, lambda: [WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(0.9))]),
    ):
        halfway = fit(ema_decay, callbacks(), f"{name}-resumed", epochs=1)[1]
        resumed[name] = fit(ema_decay, callbacks(), f"{name}-resumed", epochs=3, resume=halfway)[0]
    assert same(resumed["fast"], resumed["lightning"])
    assert not same(resumed["fast"], fast)


def test_tag_dropout_leaves_tags_out_in_training_only():
    """model.net.tag_dropout=p: in training each tag is left out of the bag with probability
    p (a movie whose only tag is left out gets the empty bag, zeros); evaluation keeps all."""
    model = regressor(toy_sizes(n_tags=5), id_dim=0, tag_dim=3, tag_dropout=0.5)
    encoder = model.net.movie
    tags = torch.zeros(400, 2, dtype=torch.long)
    tags[:, 0] = 2  # one tag per movie, then padding
    batch = {"title": torch.zeros(400, 4, dtype=torch.long), "tags": tags}
    with torch.no_grad():
        encoder.tags.weight[2] = torch.tensor([1.0, 2.0, 3.0])
        trained = encoder.train()(batch)[:, -3:]
        evaluated = encoder.eval()(batch)[:, -3:]
    empty = (trained == 0).all(1)
    assert 0.35 < empty.float().mean() < 0.65
    assert (trained[~empty] == torch.tensor([1.0, 2.0, 3.0])).all()
    assert (evaluated == torch.tensor([1.0, 2.0, 3.0])).all()
    with pytest.raises(ValueError, match="model.net.tag_dropout"):
        regressor(toy_sizes(n_tags=5), tag_dropout=1.0)
