"""What both datamodules share: movies read from a source and cleaned into one table,
preprocessing fitted on the training split only and kept in the checkpoint, whole-batch loaders.

Subclasses decide what an example is (:class:`MoviesDataModule`: a movie and its TMDb rating;
:class:`RatingsDataModule`: a user's rating of a movie) and how the rows are split.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from movrec.data.batches import EpochBatches, TensorBatches, whole_batch
from movrec.data.feature_spec import FeatureSpec
from movrec.data.glove import WordVectors, embedding_matrix
from movrec.data.preprocessing import Preprocessing
from movrec.data.sources import RawMovies
from movrec.data.splits import check_split_options
from movrec.data.tmdb import CleaningReport, clean_movies, merge_credits
from movrec.errors import UserError


class FittedDataModule(L.LightningDataModule):
    """The split depends on ``split_seed`` only, never on the training seed, so models and seeds
    are compared on the same rows. ``glove`` is a GloVe source, loaded only when needed."""

    def __init__(
        self,
        movies: Any,
        glove: Any = None,
        drop_unrated: bool = True,
        split_seed: int = 42,
        test_fraction: float = 0.2,
        val_fraction: float = 0.2,
        num_words: int = 5000,
        title_length: int = 15,
        unknown_id_rate: float = 0.1,
        batch_size: int = 64,
        eval_batch_size: int = 1024,
        features: dict | None = None,
    ):
        super().__init__()
        if not hasattr(movies, "read"):
            raise UserError("data.movies must be a movie source (tmdb_files or tmdb_synthetic)")
        check_split_options(test_fraction, val_fraction)  # before reading files
        if not 0 <= unknown_id_rate < 1:
            raise UserError(f"data.unknown_id_rate must be in [0, 1), got {unknown_id_rate}")
        sizes = {"data.batch_size": batch_size, "data.eval_batch_size": eval_batch_size}
        for name, value in sizes.items():
            if value < 1:
                raise UserError(f"{name} must be >= 1, got {value}")
        # `features` None is the paper's model: movie id and title only.
        self.feature_spec = FeatureSpec(**features) if features is not None else None
        # This frame's and the subclass's arguments (Lightning walks the __init__ chain); the
        # checkpoint keeps them, so a run's data can be rebuilt. run.log_hparams logs them.
        # Where a cache lives is the machine's business, not the run's.
        self.save_hyperparameters(ignore=["glove", "cache_dir"], logger=False)
        self.glove = glove
        self.preprocessing: Preprocessing | None = None
        self.frames: dict[str, pd.DataFrame] = {}
        self.tensors: dict[str, dict[str, torch.Tensor]] = {}
        self.report = CleaningReport()
        self.sources: dict[str, str] = {}

    # ---- reading ------------------------------------------------------------------------
    def load_movies(self, merge_on: str = "id") -> tuple[pd.DataFrame, RawMovies]:
        """The clean movie table (credits merged) and the raw frames; repairs are counted in
        ``self.report``."""
        raw = self.hparams.movies.read()
        self.sources = dict(raw.sources)
        self.report = CleaningReport()
        frame = clean_movies(
            raw.movies, self.report, source=raw.sources["movies"],
            drop_unrated=self.hparams.drop_unrated,
        )  # fmt: skip
        frame = merge_credits(
            frame, raw.credits, merge_on, self.report, source=raw.sources.get("credits", "")
        )
        self.report.require_rows(frame, raw.sources["movies"], "movies")
        return frame, raw

    def fit_preprocessing(self, movies: pd.DataFrame, **options: Any) -> None:
        """Fit on training rows only, unless a checkpoint's fitted state was loaded."""
        if self.preprocessing is not None:
            return
        spec, h = self.feature_spec, self.hparams
        vectors = self.word_vectors() if spec is not None and spec.text else None
        self.preprocessing = Preprocessing.fit(
            movies, h.num_words, h.title_length, spec, vectors, **options
        )

    # ---- batches ------------------------------------------------------------------------
    def dataset(self, split: str, unknown_rates: dict[str, float] | None = None) -> TensorBatches:
        return TensorBatches(self.tensors[split], unknown_rates)

    def examples(self, split: str) -> dict[str, torch.Tensor]:
        """Every example of a split as model inputs and target (baselines, tests)."""
        return self.dataset(split).all()

    def train_on_validation_too(self) -> None:
        """Serve train + validation as training rows (``refit=true``); what was fitted on the
        training split stays as it is."""
        train, val = self.tensors["train"], self.tensors["val"]
        self.tensors["train"] = {k: torch.cat([train[k], val[k]]) for k in train}
        # The frames stay the split: baselines already fit on train + validation.

    def unknown_rates(self) -> dict[str, float]:
        """Share of each id input replaced by the unknown index in training batches."""
        return {"movie_id": self.hparams.unknown_id_rate}

    def _loader(self, split: str, batch_size: int) -> DataLoader:
        dataset = self.dataset(split)
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=whole_batch)

    def train_batches(
        self, device: torch.device | str = "cpu", rank: int = 0, world: int = 1
    ) -> EpochBatches:
        """Training batches drawn on ``device`` (rank ``rank`` of ``world`` processes), the
        epoch's permutation seeded by the process's torch seed and the trainer's epoch."""
        examples = self.dataset("train", self.unknown_rates()).to(torch.device(device))
        epoch = (lambda: self.trainer.current_epoch) if self.trainer is not None else None
        return EpochBatches(
            examples, self.hparams.batch_size, torch.initial_seed(), epoch, rank, world
        )

    def train_dataloader(self) -> EpochBatches:
        trainer = self.trainer
        if trainer is None:
            return self.train_batches()
        return self.train_batches(
            trainer.strategy.root_device, trainer.global_rank, trainer.world_size
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.hparams.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.eval_batch_size)

    def transfer_batch_to_device(
        self, batch: dict[str, torch.Tensor], device: torch.device, dataloader_idx: int
    ) -> dict[str, torch.Tensor]:
        # Batches are flat dicts of tensors: cheaper than Lightning's generic collection walk.
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    # ---- checkpoint state ---------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"preprocessing": self.preprocessing.state_dict() if self.preprocessing else None}

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict.get("preprocessing") is not None:
            self.preprocessing = Preprocessing.from_state(state_dict["preprocessing"])

    # ---- what the run wires into the model ----------------------------------------------
    @property
    def has_users(self) -> bool:
        return False

    def user_ratings(self) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        """Training + validation and test ratings (raw ids), for the bias baseline."""
        return None

    def rated_by(self, user_id: int) -> set[int]:
        """TMDb ids of the movies ``user_id`` rated in this data (none without users)."""
        return set()

    def model_sizes(self) -> dict[str, Any]:
        return self.fitted.model_sizes()

    def word_vectors(self) -> WordVectors:
        if self.glove is None:
            raise UserError("GloVe vectors are needed but the datamodule has no `glove` source")
        return self.glove.load()

    def title_vectors(self, oov_init: str = "zeros", seed: int = 0) -> tuple[np.ndarray, dict]:
        """GloVe rows for the fitted title vocabulary, and where they came from (coverage...)."""
        if self.fitted.title_encoding != "tokens":
            raise UserError("GloVe title embeddings need data.title_encoding=tokens")
        start = time.perf_counter()
        vectors = self.word_vectors()
        matrix, coverage = embedding_matrix(vectors, self.fitted.titles, oov_init, seed)
        info = {
            "source": vectors.source,
            "dim": vectors.dim,
            "coverage": coverage,
            "seconds": time.perf_counter() - start,
        }
        return matrix, info

    def summary(self) -> dict:
        """Sizes and repairs, for logs and ``metrics.json``."""
        features = self.fitted.features
        return {
            "sources": dict(self.sources),
            "rows": {name: len(f) for name, f in self.frames.items()},
            "vocabulary": len(self.fitted.titles),
            "movie_ids": len(self.fitted.movie_ids),
            "features": features.summary() if features else None,
            "cleaning": dict(self.report.counts),
        }

    @property
    def fitted(self) -> Preprocessing:
        if self.preprocessing is None:
            raise RuntimeError("the datamodule is not fitted yet: call setup() first")
        return self.preprocessing
