"""The cross-half validation loss (movrec.evaluation.selection) and what feeds it."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
from lightgbm import LGBMRegressor
from sklearn.ensemble import HistGradientBoostingRegressor

from movrec.callbacks import FitSummary, read_fit_summary
from movrec.data import MoviesDataModule, TmdbSynthetic
from movrec.evaluation.selection import cross_half_loss
from movrec.models.regressor import RatingRegressor
from movrec.peers.trees import SIZED, STAGE_STEP, staged_squared_errors


def test_a_candidate_best_on_every_row_scores_its_own_loss():
    rng = np.random.default_rng(0)
    best = rng.uniform(0, 1, 40)
    errors = np.stack([best + 0.5, best, best + rng.uniform(0.1, 1, 40)])
    assert cross_half_loss(errors) == pytest.approx(best.mean())


def test_it_undoes_the_optimism_of_a_minimum_over_noisy_candidates():
    """60 candidates with the same expected loss: the minimum flatters, the cross-half
    loss does not."""
    rng = np.random.default_rng(1)
    errors = rng.exponential(1.0, size=(60, 400))
    assert errors.mean(1).min() < 0.9
    assert cross_half_loss(errors) == pytest.approx(1.0, abs=0.05)


def test_it_needs_candidates_by_rows():
    with pytest.raises(ValueError, match="candidates x rows"):
        cross_half_loss(np.ones(5))


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4))
    y = X[:, 0] - X[:, 1] ** 2 + rng.normal(0, 0.5, 300)
    return (X[:200], y[:200]), (X[200:], y[200:])


@pytest.mark.parametrize(
    "estimator",
    [
        HistGradientBoostingRegressor(max_iter=40, early_stopping=False),
        LGBMRegressor(n_estimators=40, verbose=-1),
    ],  # fmt: skip
    ids=["hgb", "lightgbm"],
)
def test_staged_errors_are_the_validation_curve_at_every_fifth_size(arrays, estimator):
    train, val = arrays
    curve = SIZED[type(estimator).__name__][1](estimator, train, val)
    errors = staged_squared_errors(estimator, val, len(curve))
    assert errors.shape == (len(curve) // STAGE_STEP, len(val[1]))
    np.testing.assert_allclose(errors.mean(1), curve[STAGE_STEP - 1 :: STAGE_STEP], rtol=1e-5)


def test_fit_summary_keeps_each_validation_epochs_row_errors():
    dm = MoviesDataModule(TmdbSynthetic(n_movies=400, seed=5))
    dm.setup()
    summary = FitSummary()
    trainer = L.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, callbacks=[summary],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(RatingRegressor(dm.model_sizes()), datamodule=dm)
    assert len(summary.errors) == 3 and len(summary.errors[0]) == len(dm.examples("val")["rating"])
    last = float(summary.errors[-1].mean())
    assert last == pytest.approx(float(trainer.callback_metrics["val/loss"]), rel=1e-5)
    fitted = read_fit_summary(trainer)
    assert fitted["val_loss_cross_half"] == pytest.approx(
        cross_half_loss(np.stack([e.numpy() for e in summary.errors]))
    )


def test_a_resumed_fit_keeps_the_earlier_epochs_errors(tmp_path):
    dm = MoviesDataModule(TmdbSynthetic(n_movies=300, seed=6))
    dm.setup()

    def fit(epochs: int, ckpt_path=None) -> FitSummary:
        summary = FitSummary()
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(tmp_path, save_last=True)
        trainer = L.Trainer(
            max_epochs=epochs, accelerator="cpu", logger=False, callbacks=[summary, checkpoint],
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        model = RatingRegressor(dm.model_sizes())
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        return summary

    first = fit(2)
    resumed = fit(4, tmp_path / "last.ckpt")
    assert len(resumed.errors) == 4
    assert all(a.equal(b) for a, b in zip(first.errors, resumed.errors[:2], strict=True))


def test_no_errors_are_kept_for_a_validation_set_over_max_rows(monkeypatch):
    dm = MoviesDataModule(TmdbSynthetic(n_movies=300, seed=7))
    dm.setup()
    monkeypatch.setattr(FitSummary, "MAX_ROWS", 10)
    summary = FitSummary()
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, callbacks=[summary],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(RatingRegressor(dm.model_sizes()), datamodule=dm)
    assert summary.errors == [] and read_fit_summary(trainer)["val_loss_cross_half"] is None
