"""One LightningModule for the paper's three models: tensors in, ratings out.

The variants differ only in how the title embedding starts and whether it trains:
``deep`` (random, trained), ``glove`` (GloVe, frozen), ``finetuned_glove`` (GloVe, trained).
Inputs are independent "towers" concatenated before the MLP head, so later inputs (metadata
vectors, user ids) add a tower instead of changing the existing ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score
from torchmetrics.retrieval import RetrievalNormalizedDCG, RetrievalPrecision, RetrievalRecall

from movrec.errors import UserError

# Index 0 of the title input is padding: the datamodule pads titles with it.
PADDING_INDEX = 0
TITLE_INITS = ("random", "glove")
TITLE_POOLINGS = ("flatten", "mean")  # flatten: the paper's 15 x 50 input; mean: over real words
KERAS_EMBEDDING_RANGE = 0.05  # Keras' default uniform init, as in the paper's code


def regression_metrics(prefix: str) -> MetricCollection:
    return MetricCollection(
        {"mae": MeanAbsoluteError(), "rmse": MeanSquaredError(squared=False), "r2": R2Score()},
        prefix=prefix,
    )


def ranking_metrics(prefix: str, k: int) -> MetricCollection:
    """Per-user top-k metrics over each user's rated test movies; users without a relevant
    movie are skipped (nothing to find)."""
    options = {"top_k": k, "empty_target_action": "skip"}
    return MetricCollection(
        {
            f"precision@{k}": RetrievalPrecision(**options),
            f"recall@{k}": RetrievalRecall(**options),
            f"ndcg@{k}": RetrievalNormalizedDCG(**options),
        },
        prefix=prefix,
    )


def title_embedding(
    vocab_size: int,
    dim: int,
    init: str,
    trainable: bool,
    vectors: torch.Tensor | np.ndarray | None,
) -> nn.Embedding:
    if init not in TITLE_INITS:
        raise UserError(f"model.title_init must be one of {list(TITLE_INITS)}, got {init!r}")
    if init == "glove":
        if vectors is None:
            raise UserError(
                "model.title_init=glove needs title_vectors (the run builds them from GloVe)"
            )
        vectors = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
        if vectors.shape[1] != dim:
            raise UserError(
                f"the GloVe vectors are {vectors.shape[1]}-d but model.title_dim={dim}: "
                f"set model.title_dim={vectors.shape[1]} or use vectors of that size"
            )
        if vectors.shape[0] != vocab_size:
            raise UserError(
                f"title_vectors has {vectors.shape[0]} rows, vocabulary has {vocab_size}"
            )
        return nn.Embedding.from_pretrained(
            vectors.clone(), freeze=not trainable, padding_idx=PADDING_INDEX
        )
    embedding = nn.Embedding(vocab_size, dim, padding_idx=PADDING_INDEX)
    nn.init.uniform_(embedding.weight, -KERAS_EMBEDDING_RANGE, KERAS_EMBEDDING_RANGE)
    with torch.no_grad():
        embedding.weight[PADDING_INDEX].zero_()
    embedding.weight.requires_grad_(trainable)
    return embedding


def parameter_counts(module: nn.Module) -> dict[str, int]:
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    return {"trainable": trainable, "frozen": frozen}


def keras_uniform(embedding: nn.Embedding) -> nn.Embedding:
    nn.init.uniform_(embedding.weight, -KERAS_EMBEDDING_RANGE, KERAS_EMBEDDING_RANGE)
    return embedding


class RatingRegressor(L.LightningModule):
    """Movie-id and title embeddings, flattened and concatenated, then Dense-ReLU-Dropout layers.

    Predictions are ``target_mean + target_std * head(x)``: the head starts near the training
    mean, so an undertrained model is no worse than the mean predictor.

    With users (``n_user_ids > 0``, user ratings) a user embedding joins the head's input,
    and a user bias plus the dot product of the user embedding with a projection of the movie
    inputs (``movie_representation``: id, title and features in the users' space) are added
    to the output: matrix factorisation whose item side is content-aware, so movies never
    seen in training still get a representation.
    """

    def __init__(
        self,
        n_movie_ids: int,
        vocab_size: int,
        title_length: int,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        id_dim: int = 50,
        title_dim: int = 50,
        title_init: str = "random",
        title_trainable: bool = True,
        title_vectors: torch.Tensor | np.ndarray | None = None,
        hidden_sizes: Sequence[int] = (128, 64),
        dropout: float = 0.3,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        n_features: int = 0,
        title_pooling: str = "flatten",
        output_init: str = "mean",
        n_user_ids: int = 0,
        user_dim: int = 32,
        ranking_k: int = 10,
        relevance_threshold: float = 4.0,
        rating_range: Sequence[float] | None = None,
    ):
        super().__init__()
        if title_pooling not in TITLE_POOLINGS:
            raise UserError(
                f"model.title_pooling must be one of {list(TITLE_POOLINGS)}, got {title_pooling!r}"
            )
        if output_init not in ("mean", "zero"):
            raise UserError(f"model.output_init must be 'mean' or 'zero', got {output_init!r}")
        if output_init == "zero":  # the paper's plain linear output, starting near 0
            target_mean, target_std = 0.0, 1.0
        if not 0 <= dropout < 1:
            raise UserError(f"model.dropout must be in [0, 1), got {dropout}")
        hidden_sizes = [int(h) for h in hidden_sizes]
        self.save_hyperparameters(ignore=["title_vectors"], logger=False)  # see run.log_hparams
        self.hparams.hidden_sizes = hidden_sizes

        if n_user_ids and user_dim < 1:
            raise UserError(f"model.user_dim must be >= 1 with user ratings, got {user_dim}")
        self.movie_embedding = keras_uniform(nn.Embedding(n_movie_ids, id_dim)) if id_dim else None
        self.title_embedding = title_embedding(
            vocab_size, title_dim, title_init, title_trainable, title_vectors
        )
        title_width = title_dim * title_length if title_pooling == "flatten" else title_dim
        movie_width = id_dim + title_width + n_features
        self.user_embedding = None
        if n_user_ids:
            self.user_embedding = keras_uniform(nn.Embedding(n_user_ids, user_dim))
            self.user_bias = nn.Embedding(n_user_ids, 1)
            nn.init.zeros_(self.user_bias.weight)
            self.movie_projection = nn.Linear(movie_width, user_dim)
        layers: list[nn.Module] = []
        width = movie_width + (user_dim if n_user_ids else 0)
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*layers)
        for layer in self.head:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)  # Keras' glorot_uniform
                nn.init.zeros_(layer.bias)
        # Outside training, predictions are clipped to the training ratings' range (as Surprise
        # does): a 0.5-5 star scale never gets a 6.
        self.rating_range = tuple(map(float, rating_range)) if rating_range else None
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))

        self.val_metrics = regression_metrics("val/")
        self.test_metrics = regression_metrics("test/")
        self.test_ranking = ranking_metrics("test/", ranking_k) if n_user_ids else None

    def __setattr__(self, name: str, value: object) -> None:
        # Lightning records the running hook's name on the module about 45 times per training
        # step; nn.Module.__setattr__ first checks every name against parameters, buffers and
        # submodules, which costs about a tenth of an epoch of this small model on CPU.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def movie_inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Everything the model knows about a movie, concatenated: id, title, features."""
        parts = [self._title(batch["title"])]
        if self.movie_embedding is not None:
            parts.insert(0, self.movie_embedding(batch["movie_id"]))
        if self.hparams.n_features:
            parts.append(batch["features"])
        return torch.cat(parts, dim=1)

    def movie_representation(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The vector a movie is compared by: its projection into the users' space when the
        model has users, else its concatenated inputs."""
        movie = self.movie_inputs(batch)
        return self.movie_projection(movie) if self.user_embedding is not None else movie

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted ratings before clipping: what rankings order by (clipping would tie every
        movie predicted above the scale's top)."""
        movie = self.movie_inputs(batch)
        if self.user_embedding is None:
            out = self.head(movie).squeeze(-1)
        else:
            users = batch["user_id"]
            user = self.user_embedding(users)
            out = self.head(torch.cat([user, movie], dim=1)).squeeze(-1)
            out = out + self.user_bias(users).squeeze(-1)
            out = out + (user * self.movie_projection(movie)).sum(1)
        return self.target_mean + self.target_std * out

    def clip(self, ratings: torch.Tensor) -> torch.Tensor:
        """Ratings within the range seen in training (as Surprise does)."""
        return ratings.clamp(*self.rating_range) if self.rating_range is not None else ratings

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted ratings; clipped outside training (training needs the raw gradient)."""
        scores = self.score(batch)
        return scores if self.training else self.clip(scores)

    def _title(self, tokens: torch.Tensor) -> torch.Tensor:
        vectors = self.title_embedding(tokens)
        if self.hparams.title_pooling == "flatten":
            return vectors.flatten(1)
        words = (tokens != PADDING_INDEX).sum(1, keepdim=True).clamp(min=1)
        return vectors.sum(1) / words  # padding rows are zero

    def on_train_epoch_start(self) -> None:
        self._train_sums = torch.zeros(3, device=self.device)  # squared error, abs error, count

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        pred = self(batch)
        loss = F.mse_loss(pred, batch["rating"])
        # Epoch sums instead of per-step self.log / metric calls, which cost more than the step.
        with torch.no_grad():
            error = pred - batch["rating"]
            self._train_sums += torch.stack(
                [error.square().sum(), error.abs().sum(), error.new_tensor(len(error))]
            )
        return loss

    def on_train_epoch_end(self) -> None:
        squared, absolute, count = self.all_gather(self._train_sums).reshape(-1, 3).sum(0)
        self.log("train/loss", squared / count, prog_bar=True)
        self.log("train/mae", absolute / count)

    def _evaluate(
        self, batch: dict[str, torch.Tensor], stage: str, metrics: MetricCollection
    ) -> torch.Tensor:
        scores = self.score(batch)
        pred = self.clip(scores)
        loss = F.mse_loss(pred, batch["rating"])
        metrics.update(pred, batch["rating"])
        size = len(pred)
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=True, batch_size=size)
        self.log_dict(metrics, prog_bar=stage == "val", batch_size=size)
        return scores

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        scores = self._evaluate(batch, "test", self.test_metrics)
        if self.test_ranking is not None:  # ranked by the unclipped scores: no ties at the top
            relevant = batch["rating"] >= self.hparams.relevance_threshold
            self.test_ranking.update(scores, relevant, indexes=batch["user_key"])
            self.log_dict(self.test_ranking, batch_size=len(scores))

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        # The fused kernel is 4-5x faster than the default on these small CPU steps.
        fused = self.device.type in ("cpu", "cuda")
        return torch.optim.Adam(
            params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, fused=fused
        )
