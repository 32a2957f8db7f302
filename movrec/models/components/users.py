"""The user part: who rates, as an embedding and a bias, compared with movies in one space."""

from __future__ import annotations

from torch import nn

from movrec.errors import UserError
from movrec.models.components.title import keras_uniform


class UserTower(nn.Module):
    """A user embedding (also an input of the head), a user bias, and a projection of the movie
    encoding into the users' space: matrix factorisation whose item side is content-aware, so
    movies never seen in training still get a representation."""

    def __init__(self, n_user_ids: int, dim: int, movie_width: int):
        super().__init__()
        if dim < 1:
            raise UserError(f"model.net.user_dim must be >= 1 with user ratings, got {dim}")
        self.embedding = keras_uniform(nn.Embedding(n_user_ids, dim))
        self.bias = nn.Embedding(n_user_ids, 1)
        nn.init.zeros_(self.bias.weight)
        self.movie_projection = nn.Linear(movie_width, dim)
        self.width = dim
