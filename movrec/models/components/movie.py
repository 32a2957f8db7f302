"""The movie encoder: id, title and metadata-feature towers, concatenated."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from movrec.errors import UserError
from movrec.models.components.features import FeatureTower
from movrec.models.components.title import PADDING_INDEX, TitleEncoder, keras_uniform


class MovieEncoder(nn.Module):
    """Everything the model knows about a movie as one vector. Towers are independent, so a new
    input adds a tower instead of changing the others; ``id_dim=0`` drops the id tower (cold
    start: an unseen movie's id says nothing)."""

    def __init__(
        self,
        n_movie_ids: int,
        id_dim: int,
        title: dict[str, Any],
        n_features: int = 0,
        features: dict[str, Any] | None = None,
        n_tags: int = 0,
        tag_dim: int = 16,
        tag_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= tag_dropout < 1:
            raise UserError(f"model.net.tag_dropout must be in [0, 1), got {tag_dropout}")
        self.ids = keras_uniform(nn.Embedding(n_movie_ids, id_dim)) if id_dim else None
        self.title = TitleEncoder(**title)  # after the ids: the paper's order of random draws
        self.n_features = n_features
        self.features = FeatureTower(n_features, **(features or {})) if n_features else None
        width = self.features.width if self.features is not None else 0
        # The mean of a movie's known tags' embeddings (padding, index 0, left out).
        self.tags = (
            nn.EmbeddingBag(n_tags, tag_dim, mode="mean", padding_idx=PADDING_INDEX)
            if n_tags and tag_dim
            else None
        )
        # In training each tag is left out with this probability, so that no movie's score
        # rests on one rare tag's embedding (word dropout, applied to the bag).
        self.tag_dropout = tag_dropout
        if self.tags is not None:
            nn.init.normal_(self.tags.weight, std=0.01)
            with torch.no_grad():
                self.tags.weight[PADDING_INDEX].zero_()
            width += tag_dim
        self.width = id_dim + self.title.width + width

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each row's encoding. A batch with ``movie_index`` holds each distinct movie's
        inputs once (title, features, tags) and, per row, its movie's index among them: the
        towers then run once per movie, not once per rating."""
        content = self.content(batch)
        if "movie_index" in batch:
            content = content[batch["movie_index"]]
        return self.encode(batch.get("movie_id"), content)

    def encode(self, ids: torch.Tensor | None, content: torch.Tensor) -> torch.Tensor:
        """Encodings of aligned ids and :meth:`content` rows (an id may be the unknown one
        while its movie's content is known)."""
        if self.ids is None:
            return content
        return torch.cat([self.ids(ids), content], dim=1)

    def content(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The title, feature and tag towers' outputs for the batch's movie inputs."""
        parts = [self.title(batch["title"])]
        if self.features is not None:
            parts.append(self.features(batch["features"]))
        if self.tags is not None:
            tags = batch["tags"]
            if self.training and self.tag_dropout:
                dropped = torch.rand(tags.shape, device=tags.device) < self.tag_dropout
                tags = tags.masked_fill(dropped, PADDING_INDEX)
            parts.append(self.tags(tags))
        return torch.cat(parts, dim=1)
