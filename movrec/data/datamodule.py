"""LightningDataModule for TMDb 5000: read, clean, split, fit preprocessing on train, batch."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import KFold, train_test_split
from torch.utils.data import DataLoader

from movrec.data.features import FeatureSpec
from movrec.data.glove import WordVectors, embedding_matrix
from movrec.data.preprocessing import Preprocessing
from movrec.data.synthetic import make_tmdb
from movrec.data.tmdb import CleaningReport, clean_movies, merge_credits, read_tmdb
from movrec.data.vocab import UNKNOWN_ID_INDEX
from movrec.errors import UserError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class TensorBatches(torch.utils.data.Dataset):
    """Aligned in-memory tensors served a whole batch per index lookup.

    ``__getitems__`` lets the DataLoader fetch a batch with one tensor index per key instead
    of collating 64 single rows. During training a share of ids (``unknown_rates``, e.g.
    ``{"movie_id": 0.1}``) is replaced by the unknown index, so the unknown embedding that
    unseen movies (or users) get at test time is a learned one.
    """

    def __init__(
        self, tensors: dict[str, torch.Tensor], unknown_rates: dict[str, float] | None = None
    ):
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(
                f"tensors of different lengths: { {k: len(v) for k, v in tensors.items()} }"
            )
        self.tensors = tensors
        self.unknown_rates = {k: r for k, r in (unknown_rates or {}).items() if r > 0}

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        batch = {k: v[index] for k, v in self.tensors.items()}
        for key, rate in self.unknown_rates.items():
            ids = batch[key]
            batch[key] = ids.masked_fill(torch.rand(ids.shape) < rate, UNKNOWN_ID_INDEX)
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.__getitems__([index]).items()}


def _whole_batch(batch):
    return batch


MIN_SPLIT_ROWS = 2  # R², a validation loss and a fit all need at least two rows


def require_split_sizes(sizes: dict[str, int], what: str, fractions: tuple[float, float]) -> None:
    """A clear error instead of scikit-learn's or torchmetrics' when the data is too small."""
    if min(sizes.values()) >= MIN_SPLIT_ROWS:
        return
    total = sum(sizes.values())
    raise UserError(
        f"{what}: {total} rows are too few to split into train / validation / test with "
        f"data.test_fraction={fractions[0]} and data.val_fraction={fractions[1]}: each split "
        f"needs at least {MIN_SPLIT_ROWS} rows, this gives "
        + ", ".join(f"{k} {v}" for k, v in sizes.items())
    )


def check_split_options(
    test_fraction: float, val_fraction: float, folds: int | None = None, fold: int = 0
) -> None:
    for name, value in (("data.test_fraction", test_fraction), ("data.val_fraction", val_fraction)):
        if not 0 < value < 1:
            raise UserError(f"{name} must be in (0, 1), got {value}")
    if folds is not None and (folds < 2 or not 0 <= fold < folds):
        raise UserError(
            f"data.folds must be >= 2 and 0 <= data.fold < data.folds, got {folds}, {fold}"
        )


def split_frame(
    frame: pd.DataFrame,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    folds: int | None = None,
    fold: int = 0,
    what: str = "data",
) -> dict[str, pd.DataFrame]:
    """Test first, then validation out of the rest: the paper's 80/20, then 20 % of train.

    With ``folds`` the non-test rows are cut into that many folds and fold ``fold`` validates
    (k-fold cross-validation, the test split unchanged). ``what`` names the rows in errors.
    """
    check_split_options(test_fraction, val_fraction, folds, fold)
    # The sizes scikit-learn will make (it rounds held-out shares up; the smallest of k folds
    # has n // k rows), checked before it runs.
    n_test = math.ceil(test_fraction * len(frame))
    n_rest = len(frame) - n_test
    if folds is None:
        sizes = {"train": n_rest - math.ceil(val_fraction * n_rest)}
        sizes["val"] = n_rest - sizes["train"]
    else:
        sizes = {"train": n_rest - math.ceil(n_rest / folds), "val": n_rest // folds}
    sizes["test"] = n_test
    require_split_sizes(sizes, what, (test_fraction, val_fraction))
    rest, test = train_test_split(frame, test_size=test_fraction, random_state=seed)
    if folds is None:
        train, val = train_test_split(rest, test_size=val_fraction, random_state=seed)
        return {"train": train, "val": val, "test": test}
    train_rows, val_rows = list(KFold(folds, shuffle=True, random_state=seed).split(rest))[fold]
    return {"train": rest.iloc[train_rows], "val": rest.iloc[val_rows], "test": test}


class TmdbDataModule(L.LightningDataModule):
    """TMDb 5000 (from ``dir``) or its synthetic twin (``synthetic`` settings), same pipeline.

    The split depends on ``split_seed`` only, never on the training seed, so models and seeds
    are compared on the same rows.
    """

    predicts_tmdb = True  # the target is TMDb's vote_average

    def __init__(
        self,
        dir: str | None = None,
        synthetic: dict | None = None,
        merge_on: str = "id",
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
        glove: Any = None,
        folds: int | None = None,
        fold: int = 0,
        title_encoding: str = "tokens",
        id_vocabulary: str = "train",
        validate_on: str = "val",
    ):
        super().__init__()
        if (dir is None) == (synthetic is None):
            raise UserError("set exactly one of data.dir (real TMDb files) or data.synthetic")
        for name, value, allowed in (
            ("data.id_vocabulary", id_vocabulary, ("train", "all")),
            ("data.validate_on", validate_on, ("val", "test")),
        ):
            if value not in allowed:
                raise UserError(f"{name} must be one of {list(allowed)}, got {value!r}")
        check_split_options(test_fraction, val_fraction, folds, fold)  # before reading files
        if not 0 <= unknown_id_rate < 1:
            raise UserError(f"data.unknown_id_rate must be in [0, 1), got {unknown_id_rate}")
        # `features` None is the paper's model: movie id and title only.
        self.feature_spec = FeatureSpec(**features) if features is not None else None
        if self.feature_spec is not None and self.feature_spec.vote_average and self.predicts_tmdb:
            raise UserError(
                "data.features.vote_average=true feeds TMDb's rating to the model, but it is "
                "what this datamodule predicts: only user-rating data may use it"
            )
        self.glove = glove  # a GloVe source (movrec.data.glove); loaded only when needed
        self.save_hyperparameters(ignore=["glove"], logger=False)  # run.log_hparams logs them
        self.preprocessing: Preprocessing | None = None
        self.frames: dict[str, pd.DataFrame] = {}
        self.tensors: dict[str, dict[str, torch.Tensor]] = {}
        self.report = CleaningReport()
        self.sources: dict[str, str] = {}

    # ---- reading ------------------------------------------------------------------------
    def read_raw(self) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        if self.hparams.dir is not None:
            movies, credits, self.sources = read_tmdb(self.hparams.dir)
        else:
            movies, credits = make_tmdb(**self.hparams.synthetic)
            self.sources = {"movies": f"synthetic({dict(self.hparams.synthetic)})"}
        return movies, credits

    def load_frame(self) -> pd.DataFrame:
        """The clean, merged frame; repairs are counted in ``self.report``."""
        movies, credits = self.read_raw()
        self.report = CleaningReport()
        frame = clean_movies(
            movies,
            self.report,
            source=self.sources["movies"],
            drop_unrated=self.hparams.drop_unrated,
        )
        frame = merge_credits(
            frame,
            credits,
            self.hparams.merge_on,
            self.report,
            source=self.sources.get("credits", ""),
        )
        self.report.require_rows(frame, self.sources["movies"], "movies")
        return frame

    # ---- Lightning hooks ----------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.tensors:
            return
        frame = self.load_frame()
        h = self.hparams
        what = f"{self.sources['movies']} (movies after cleaning)"
        self.frames = split_frame(
            frame, h.test_fraction, h.val_fraction, h.split_seed, h.folds, h.fold, what
        )
        if h.validate_on == "test":  # the paper's protocol: train on all non-test rows
            rest = pd.concat([self.frames["train"], self.frames["val"]])
            self.frames = {"train": rest, "val": self.frames["test"], "test": self.frames["test"]}
        if self.preprocessing is None:  # a checkpoint's fitted state is kept, never refitted
            spec = self.feature_spec
            vectors = self.word_vectors() if spec is not None and spec.text else None
            self.preprocessing = Preprocessing.fit(
                self.frames["train"], h.num_words, h.title_length, spec, vectors,
                title_encoding=h.title_encoding,
                all_ids=frame["movie_id"] if h.id_vocabulary == "all" else None,
            )  # fmt: skip
        self.tensors = {
            name: self.preprocessing.transform(rows, self.report)
            for name, rows in self.frames.items()
        }

    def _loader(
        self, split: str, shuffle: bool, batch_size: int, unknown_rates: dict | None = None
    ) -> DataLoader:
        dataset = TensorBatches(self.tensors[split], unknown_rates)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=_whole_batch)

    def unknown_rates(self) -> dict[str, float]:
        """Share of each id input replaced by the unknown index in training batches."""
        return {"movie_id": self.hparams.unknown_id_rate}

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.hparams.batch_size, self.unknown_rates())

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.hparams.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.hparams.eval_batch_size)

    def transfer_batch_to_device(
        self, batch: dict[str, torch.Tensor], device: torch.device, dataloader_idx: int
    ) -> dict[str, torch.Tensor]:
        # Batches are flat dicts of tensors: cheaper than Lightning's generic collection walk.
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def state_dict(self) -> dict:
        return {"preprocessing": self.preprocessing.state_dict() if self.preprocessing else None}

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict.get("preprocessing") is not None:
            self.preprocessing = Preprocessing.from_state(state_dict["preprocessing"])

    # ---- what the run wires into the model ----------------------------------------------
    def model_sizes(self) -> dict[str, Any]:
        return self._fitted().model_sizes()

    def word_vectors(self) -> WordVectors:
        if self.glove is None:
            raise UserError("GloVe vectors are needed but the datamodule has no `glove` source")
        return self.glove.load()

    def title_vectors(self, oov_init: str = "zeros", seed: int = 0) -> tuple[np.ndarray, dict]:
        """GloVe rows for the fitted title vocabulary, and where they came from (coverage...)."""
        if self._fitted().title_encoding != "tokens":
            raise UserError("GloVe title embeddings need data.title_encoding=tokens")
        start = time.perf_counter()
        vectors = self.word_vectors()
        matrix, coverage = embedding_matrix(vectors, self._fitted().titles, oov_init, seed)
        info = {
            "source": vectors.source,
            "dim": vectors.dim,
            "coverage": coverage,
            "seconds": time.perf_counter() - start,
        }
        return matrix, info

    def catalogue(self) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
        """Every clean movie of the data (all splits) and its model inputs, row for row: what
        recommendations and the embedding projector choose from."""
        movies = pd.concat(self.frames.values()).drop_duplicates("movie_id")
        movies = movies.sort_values("movie_id").reset_index(drop=True)
        tensors = self._fitted().transform(movies)
        tensors.pop("rating", None)
        return movies, tensors

    def summary(self) -> dict:
        """Sizes and repairs, for logs and ``metrics.json``."""
        return {
            "sources": dict(self.sources),
            "rows": {name: len(f) for name, f in self.frames.items()},
            "vocabulary": len(self._fitted().titles),
            "movie_ids": len(self._fitted().movie_ids),
            "features": self._fitted().features.summary() if self._fitted().features else None,
            "cleaning": dict(self.report.counts),
        }

    def _fitted(self) -> Preprocessing:
        if self.preprocessing is None:
            raise RuntimeError("the datamodule is not fitted yet: call setup() first")
        return self.preprocessing
