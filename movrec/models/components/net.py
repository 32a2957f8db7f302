"""The rating network: movie encoder, optional user part, head. Tensors in, a score out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from movrec.errors import UserError
from movrec.models.components.head import HeadEnsemble, mlp_head
from movrec.models.components.movie import MovieEncoder
from movrec.models.components.ranking import RankingTower
from movrec.models.components.title import TitleEncoder
from movrec.models.components.users import UserTower


class RatingNet(nn.Module):
    """The paper's network (id and title embeddings, flattened, then an MLP), plus metadata
    features and, with user ratings (``n_user_ids > 0``), a :class:`UserTower`.

    The first seven arguments are sizes from the fitted data; the rest are the ``model.net``
    config. The output is in target-standard-deviation units; the LightningModule rescales it.
    """

    def __init__(
        self,
        n_movie_ids: int,
        vocab_size: int,
        title_length: int,
        n_features: int = 0,
        n_user_ids: int = 0,
        n_numeric: int = 0,
        n_tags: int = 0,
        id_dim: int = 50,
        title_dim: int = 50,
        title_init: str = "random",
        title_trainable: bool = True,
        title_pooling: str = "flatten",
        hidden_sizes: Sequence[int] = (128, 64),
        dropout: float = 0.3,
        user_dim: int = 32,
        numeric_embedding: str = "none",
        numeric_embedding_dim: int = 16,
        numeric_frequency_scale: float = 0.01,
        heads: int = 1,
        tag_dim: int = 16,
        tag_dropout: float = 0.0,
        ranking_dim: int = 0,
    ):
        super().__init__()
        title = {
            "vocab_size": vocab_size, "length": title_length, "dim": title_dim,
            "init": title_init, "trainable": title_trainable, "pooling": title_pooling,
        }  # fmt: skip
        features = {
            "n_numeric": n_numeric, "embedding": numeric_embedding, "dim": numeric_embedding_dim,
            "frequency_scale": numeric_frequency_scale,
        }  # fmt: skip
        self.movie = MovieEncoder(
            n_movie_ids, id_dim, title, n_features, features,
            n_tags=n_tags, tag_dim=tag_dim, tag_dropout=tag_dropout,
        )  # fmt: skip
        self.users = UserTower(n_user_ids, user_dim, self.movie.width) if n_user_ids else None
        width = self.movie.width + (self.users.width if self.users else 0)
        if heads < 1:
            raise UserError(f"model.net.heads must be >= 1, got {heads}")
        self.head = (
            mlp_head(width, hidden_sizes, dropout)
            if heads == 1
            else HeadEnsemble(width, hidden_sizes, dropout, heads)
        )
        if ranking_dim < 0:
            raise UserError(f"model.net.ranking_dim must be >= 0, got {ranking_dim}")
        # With users and ranking_dim > 0, the part that ranks what a user will watch; made
        # after the head, whose initial draws are then the same with and without it.
        self.ranking = (
            RankingTower(n_movie_ids, self.movie.width, ranking_dim)
            if n_user_ids and ranking_dim
            else None
        )

    @property
    def title(self) -> TitleEncoder:
        return self.movie.title

    def forward(
        self, batch: dict[str, torch.Tensor], movie: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scores, shape (batch,); with ``heads > 1``, one column per head (batch, heads).
        ``movie``: the rows' movie encodings when the caller has them already."""
        movie = self.movie(batch) if movie is None else movie
        if self.users is None:
            return self.head(movie).squeeze(-1)
        users = batch["user_id"]
        return self.rate(self.users.embedding(users), self.users.bias(users).squeeze(-1), movie)

    def rate(self, user: torch.Tensor, bias: torch.Tensor, movie: torch.Tensor) -> torch.Tensor:
        """Scores of aligned rows of user vectors, user biases and movie encodings: how the
        whole catalogue is scored from one encoding per movie, and how a new user's fitted
        vector and bias (the fold-in) are scored."""
        out = self.head(torch.cat([user, movie], dim=1)).squeeze(-1)
        dot = (user * self.users.movie_projection(movie)).sum(1)  # plus the bias, the MF part
        if out.dim() == 1:
            return out + bias + dot
        return out + bias.unsqueeze(-1) + dot.unsqueeze(-1)

    def movie_representation(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The vector a movie is compared by: its projection into the users' space when the
        network has users, else its encoding."""
        movie = self.movie(batch)
        return self.users.movie_projection(movie) if self.users is not None else movie
