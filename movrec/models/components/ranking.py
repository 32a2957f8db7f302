"""The ranking part: which movies a user will watch, scored from the movies they watched."""

from __future__ import annotations

import torch
from torch import nn


class RankingTower(nn.Module):
    """A user is the sum of learned vectors of the movies they watched, over the square root
    of their number (a new user's five likes and a regular's 500 ratings are one kind of
    input, so neither needs a fitted user vector). A movie is a projection of its encoding
    plus a bias from it, so a movie no one has rated is placed by its content. The score is
    their dot product plus the movie's bias: the logit of a softmax over the catalogue."""

    def __init__(self, n_movie_ids: int, movie_width: int, dim: int):
        super().__init__()
        self.history = nn.EmbeddingBag(n_movie_ids, dim, mode="sum")
        nn.init.normal_(self.history.weight, std=0.01)
        self.movie = nn.Linear(movie_width, dim + 1)
        # Plus a free vector and bias per movie id, zero for the unknown id (index 0): a movie
        # no one rated is placed by its content alone.
        self.ids = nn.Embedding(n_movie_ids, dim + 1, padding_idx=0)
        nn.init.zeros_(self.ids.weight)
        self.dim = dim

    def users(
        self, history: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """(bags, dim) user vectors of EmbeddingBag inputs (an empty bag: the zero vector,
        which leaves the movie bias alone: what anyone watches)."""
        summed = self.history(history, offsets, per_sample_weights=weights)
        lengths = torch.diff(offsets, append=offsets.new_tensor([len(history)]))
        bag = torch.repeat_interleave(torch.arange(len(offsets), device=offsets.device), lengths)
        counts = torch.zeros(len(offsets), device=weights.device).index_add_(0, bag, weights)
        return summed / counts.clamp(min=1.0).sqrt().unsqueeze(1)

    def movies(
        self, encoding: torch.Tensor, ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(movies, dim) vectors and (movies,) biases of movie encodings and ids."""
        projected = self.movie(encoding) + self.ids(ids)
        return projected[:, : self.dim], projected[:, self.dim]

    def scores(
        self, users: torch.Tensor, movies: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """(users, movies) logits."""
        vectors, bias = movies
        return torch.addmm(bias, users, vectors.T)  # the bias added in the product's pass
