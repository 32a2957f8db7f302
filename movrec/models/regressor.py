"""The LightningModule: a :class:`RatingNet` plus loss, metrics, output scale and optimiser.

The paper's three models are one class; they differ only in the network's title tower:
``deep`` (random, trained), ``glove`` (GloVe, frozen), ``finetuned_glove`` (GloVe, trained).
The network, the optimiser and an optional scheduler arrive as plain settings (the optimiser
and scheduler named from :data:`OPTIMIZERS` and :data:`SCHEDULERS`), never as callables: the
saved hyperparameters are strings and numbers, so a checkpoint loads without running code and
rebuilds the module from them alone.
"""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from movrec.errors import UserError
from movrec.models.components import RatingNet
from movrec.models.losses import softmax_cross_entropy
from movrec.models.metrics import RankingMetrics, regression_metrics
from movrec.models.shortcuts import ExponentialMovingAverage, QuickHookName

OUTPUT_INITS = ("mean", "zero")
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
}  # fmt: skip
SCHEDULERS: dict[str, type] = {
    "cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
    "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau,
}
DEFAULT_OPTIMIZER = {"name": "adam", "lr": 1e-3}  # the paper's
# What the fitted data tells the network (the rest of ``sizes`` is the target's scale).
NET_SIZES = (
    "n_movie_ids", "vocab_size", "title_length", "n_features", "n_user_ids", "n_numeric",
    "n_tags",
)  # fmt: skip


def named(settings: dict[str, Any], registry: dict[str, type], option: str) -> tuple[type, dict]:
    """The class ``settings["name"]`` names in ``registry`` and the remaining settings."""
    options = dict(settings)
    name = options.pop("name", None)
    if name not in registry:
        raise UserError(f"{option}.name must be one of {list(registry)}, got {name!r}")
    return registry[name], options


def parameter_counts(module: nn.Module) -> dict[str, int]:
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    return {"trainable": trainable, "frozen": frozen}


class RatingRegressor(QuickHookName, L.LightningModule):
    """Predictions are ``target_mean + target_std * net(batch)``: the network starts near the
    training mean, so an undertrained model is no worse than the mean predictor
    (``output_init="zero"``: the paper's plain linear output, starting near 0). Outside
    training they are clipped to the training ratings' range, as Surprise does."""

    def __init__(
        self,
        sizes: dict[str, Any],
        net: dict[str, Any] | None = None,
        optimizer: dict[str, Any] = DEFAULT_OPTIMIZER,
        scheduler: dict[str, Any] | None = None,
        output_init: str = "mean",
        ranking_k: int = 10,
        relevance_threshold: float = 4.0,
        ema_decay: float | None = None,
        ranking_weight: float = 1.0,
        unliked_weight: float = 1.0,
        rating_mix: float = 0.0,
    ):
        super().__init__()
        if output_init not in OUTPUT_INITS:
            raise UserError(f"model.output_init must be one of {list(OUTPUT_INITS)}")
        if min(ranking_weight, unliked_weight, rating_mix) < 0:
            raise UserError(
                "model.ranking_weight, model.unliked_weight and model.rating_mix must be >= 0"
            )
        if ema_decay is not None and not 0 <= ema_decay < 1:
            raise UserError(f"model.ema_decay must be in [0, 1) or null, got {ema_decay}")
        named(optimizer, OPTIMIZERS, "model.optimizer")  # a typo fails here, not after fitting
        if scheduler is not None:
            named(scheduler, SCHEDULERS, "model.scheduler")
        self.save_hyperparameters(logger=False)  # run.log_hparams logs the composed config
        settings = dict(net or {})
        known = set(inspect.signature(RatingNet).parameters) - set(NET_SIZES)
        if unknown := sorted(set(settings) - known):
            raise UserError(f"model.net: unknown setting(s) {unknown}; known: {sorted(known)}")
        self.net = RatingNet(**{k: sizes[k] for k in NET_SIZES if k in sizes}, **settings)
        mean, std = sizes["target_mean"], sizes["target_std"]
        if output_init == "zero":
            mean, std = 0.0, 1.0
        self.register_buffer("target_mean", torch.tensor(float(mean)))
        self.register_buffer("target_std", torch.tensor(float(std)))
        rating_range = sizes.get("rating_range")
        self.rating_range = tuple(map(float, rating_range)) if rating_range else None

        self.val_metrics = regression_metrics("val/")
        self.test_metrics = regression_metrics("test/")
        self.test_ranking = RankingMetrics(ranking_k, "test/") if self.has_users else None

    @property
    def has_users(self) -> bool:
        return self.net.users is not None

    def movie_representation(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net.movie_representation(batch)

    def members(
        self, batch: dict[str, torch.Tensor], movie: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Unclipped ratings, one column per head when the network has several (``movie``:
        the rows' encodings, when already made)."""
        return self.target_mean + self.target_std * self.net(batch, movie)

    @staticmethod
    def heads_mean(outputs: torch.Tensor) -> torch.Tensor:
        """What several heads predict together: their mean (one head: its output)."""
        return outputs.mean(-1) if outputs.dim() == 2 else outputs

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted ratings before clipping: what rankings order by (clipping would tie every
        movie predicted above the scale's top)."""
        return self.heads_mean(self.members(batch))

    def standardised_rate(
        self, user: torch.Tensor, bias: torch.Tensor, movie: torch.Tensor
    ) -> torch.Tensor:
        """Ratings of aligned user vectors, user biases and movie encodings in the network's
        own units (training targets are standardised): what a new user's fold-in fits."""
        return self.heads_mean(self.net.rate(user, bias, movie))

    def rate(self, user: torch.Tensor, bias: torch.Tensor, movie: torch.Tensor) -> torch.Tensor:
        """Unclipped ratings of aligned user vectors, user biases and movie encodings (the
        catalogue scored from one encoding per movie; new users' fitted vectors)."""
        return self.target_mean + self.target_std * self.standardised_rate(user, bias, movie)

    def user_vectors(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Learned vectors (n, dim) and biases (n,) of the users at ``index`` (0: unknown)."""
        users = self.net.users
        return users.embedding.weight[index].detach(), users.bias.weight[index, 0].detach()

    def unknown_user(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The vector (dim,) and bias () learned for users not seen in training."""
        vectors, biases = self.user_vectors(torch.tensor([0]))
        return vectors[0], biases[0]

    def clip(self, ratings: torch.Tensor) -> torch.Tensor:
        """Ratings within the range seen in training."""
        return ratings.clamp(*self.rating_range) if self.rating_range is not None else ratings

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted ratings; clipped outside training (training needs the raw gradient)."""
        scores = self.score(batch)
        return scores if self.training else self.clip(scores)

    @property
    def ranks(self) -> bool:
        """Whether lists come from the ranking part (else from the predicted ratings)."""
        return self.net.ranking is not None

    def list_score(self, logits: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        """What lists are ordered by: the ranking part's logits (will they watch it) plus
        ``rating_mix`` times the predicted ratings in standard units (will they like it)."""
        mix = self.hparams.get("rating_mix", 0.0)
        if not mix:
            return logits
        return logits + mix * (ratings - self.target_mean.cpu()) / self.target_std.cpu()

    def ranking_loss(self, batch: dict[str, torch.Tensor], content: torch.Tensor) -> torch.Tensor:
        """Softmax cross-entropy of each rating row's movie among the batch's candidate movies,
        given the user's other watched movies; rows rated below the relevance threshold
        weigh ``unliked_weight`` (watched, but not what the lists should find). The batch's
        distinct movies are the candidates; ``content``: their encoders' outputs."""
        ranking, encoder = self.net.ranking, self.net.movie
        users = ranking.users(batch["history"], batch["history_offsets"], batch["history_weights"])
        ids = batch["candidate_movie_id"]
        vectors, bias = ranking.movies(encoder.encode(ids, content), ids)
        if "ranking_log_q" in batch:  # corrected per candidate, not per (row, candidate) logit
            bias = bias - batch["ranking_log_q"]
        logits = ranking.scores(users, (vectors, bias))
        losses = softmax_cross_entropy(logits, batch["movie_index"])
        liked = batch["rating"] >= self.hparams.relevance_threshold
        weights = torch.where(liked, 1.0, self.hparams.unliked_weight)
        return (losses * weights).sum() / weights.sum().clamp(min=1e-12)

    def training_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The loss to minimise, the rows' predicted ratings (detached) and the ranking loss
        (detached; 0 without the ranking part). The movie towers run once per distinct movie,
        and the rating rows and the ranking candidates share that pass."""
        movie = content = None
        if self.ranks:
            if "history" not in batch:
                raise UserError(
                    "model.net.ranking_dim > 0 learns from what users watched: set data.ranking "
                    "(experiment=recommend does)"
                )
            content = self.net.movie.content(batch)
            movie = self.net.movie.encode(batch["movie_id"], content[batch["movie_index"]])
        members = self.members(batch, movie)
        if members.dim() == 2:  # each head learns on its own: the sum of their losses
            # (a mean would scale each head's gradient by 1/heads against the optimiser's
            # weight decay, which then dominates: heads=32 learned nothing at decay 0.01)
            target = batch["rating"].unsqueeze(-1).expand_as(members)
            loss = F.mse_loss(members, target, reduction="none").mean(0).sum()
            pred = members.detach().mean(-1)
        else:
            pred = members.detach()
            loss = F.mse_loss(members, batch["rating"])
        if not self.ranks:
            return loss, pred, loss.new_zeros(())
        ranked = self.ranking_loss(batch, content)
        return loss + self.hparams.ranking_weight * ranked, pred, ranked.detach()

    def on_train_epoch_start(self) -> None:
        self._train_sums = torch.zeros(3, device=self.device)  # squared, abs error; ranking
        self._train_count = 0  # a Python int: a tensor made from it each step is a host-to-
        # device copy, which waits for the GPU (25M-ratings epoch: 0.69x the bare loop's speed)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, pred, ranked = self.training_loss(batch)
        # Epoch sums instead of per-step self.log / metric calls, which cost more than the step.
        with torch.no_grad():
            error = pred - batch["rating"]
            self._train_sums += torch.stack(
                [error.square().sum(), error.abs().sum(), ranked * len(error)]
            )
        self._train_count += len(error)
        return loss

    def on_train_epoch_end(self) -> None:
        sums = torch.cat([self._train_sums, self._train_sums.new_tensor([self._train_count])])
        squared, absolute, ranked, count = self.all_gather(sums).reshape(-1, 4).sum(0)
        self.log("train/loss", squared / count, prog_bar=True)
        self.log("train/mae", absolute / count)
        if self.ranks:
            self.log("train/ranking_loss", ranked / count)

    def _evaluate(
        self, batch: dict[str, torch.Tensor], stage: str, metrics: MetricCollection
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logs the loss and metrics; returns the unclipped scores and each row's squared error."""
        scores = self.score(batch)
        pred = self.clip(scores)
        loss = F.mse_loss(pred, batch["rating"])
        metrics.update(pred, batch["rating"])
        size = len(pred)
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=True, batch_size=size)
        self.log_dict(metrics, prog_bar=stage == "val", batch_size=size)
        return scores, (pred - batch["rating"]).square()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Each row's squared error, for :class:`movrec.callbacks.FitSummary`'s cross-half loss."""
        return self._evaluate(batch, "val", self.val_metrics)[1].detach()

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        scores, _ = self._evaluate(batch, "test", self.test_metrics)
        if self.test_ranking is not None:  # ranked by the unclipped scores: no ties at the top
            relevant = batch["rating"] >= self.hparams.relevance_threshold
            self.test_ranking.update(scores, relevant, batch["user_key"])

    def on_test_epoch_end(self) -> None:
        if self.test_ranking is not None:  # over every test row: a user's rows span batches
            self.log_dict(self.test_ranking.compute())
            self.test_ranking.reset()

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch)

    def configure_callbacks(self) -> list[L.Callback]:
        """With ``ema_decay``, validation, checkpoints, the refit and the tested model use an
        exponential moving average of the weights (updated every step): the last iterate of
        a small-batch run is noisy, and the epoch chosen on that noise flatters validation."""
        if self.hparams.get("ema_decay") is None:
            return []
        return [ExponentialMovingAverage(self.hparams.ema_decay)]

    def configure_optimizers(self) -> Any:
        factory, options = named(self.hparams.optimizer, OPTIMIZERS, "model.optimizer")
        # The ranking part is left out of the weight decay (its history dropout regularises
        # it): a decayed embedding row shrinks every step it gets no data gradient.
        trained = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        ranking = [p for n, p in trained if n.startswith("net.ranking.")]
        params: list = [p for n, p in trained if not n.startswith("net.ranking.")]
        if ranking:
            params = [{"params": params}, {"params": ranking, "weight_decay": 0.0}]
        # The fused kernel is 4-5x faster than the default on these small CPU steps.
        if "fused" in inspect.signature(factory).parameters and "fused" not in options:
            options["fused"] = self.device.type in ("cpu", "cuda")
        optimizer = factory(params, **options)
        if self.hparams.scheduler is None:
            return optimizer
        factory, options = named(self.hparams.scheduler, SCHEDULERS, "model.scheduler")
        scheduler = factory(optimizer, **options)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss", "interval": "epoch"},
        }
