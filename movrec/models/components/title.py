"""The title tower: word embeddings of a title's tokens, flattened or averaged."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from movrec.errors import UserError

# Index 0 of the title input is padding: the datamodule pads titles with it.
PADDING_INDEX = 0
TITLE_INITS = ("random", "glove")
TITLE_POOLINGS = ("flatten", "mean")  # flatten: the paper's 15 x 50 input; mean: over real words
KERAS_EMBEDDING_RANGE = 0.05  # Keras' default uniform init, as in the paper's code


def keras_uniform(embedding: nn.Embedding) -> nn.Embedding:
    nn.init.uniform_(embedding.weight, -KERAS_EMBEDDING_RANGE, KERAS_EMBEDDING_RANGE)
    return embedding


def choose(option: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UserError(f"{option} must be one of {list(allowed)}, got {value!r}")
    return value


class TitleEncoder(nn.Module):
    """``init="random"``: Keras-uniform start; ``init="glove"``: zeros until the run copies the
    GloVe rows in (:meth:`load_vectors`), so a checkpoint rebuilds it from sizes alone.
    ``trainable=False`` freezes the table (the paper's ``glove`` model)."""

    def __init__(
        self,
        vocab_size: int,
        length: int,
        dim: int = 50,
        init: str = "random",
        trainable: bool = True,
        pooling: str = "flatten",
    ):
        super().__init__()
        self.init = choose("model.net.title_init", init, TITLE_INITS)
        self.pooling = choose("model.net.title_pooling", pooling, TITLE_POOLINGS)
        if init == "glove":  # no random draws: the run overwrites every row
            self.embedding = nn.Embedding(
                vocab_size, dim, padding_idx=PADDING_INDEX, _weight=torch.zeros(vocab_size, dim)
            )
        else:
            self.embedding = keras_uniform(nn.Embedding(vocab_size, dim, padding_idx=PADDING_INDEX))
            with torch.no_grad():
                self.embedding.weight[PADDING_INDEX].zero_()
        self.embedding.weight.requires_grad_(trainable)
        self.width = dim * length if pooling == "flatten" else dim

    @torch.no_grad()
    def load_vectors(self, vectors: torch.Tensor | np.ndarray) -> None:
        """Copy pretrained rows (one per vocabulary index) into the table."""
        vectors = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
        rows, dim = self.embedding.weight.shape
        if vectors.shape[1] != dim:
            raise UserError(
                f"the GloVe vectors are {vectors.shape[1]}-d but model.net.title_dim={dim}: "
                f"set model.net.title_dim={vectors.shape[1]} or use vectors of that size"
            )
        if vectors.shape[0] != rows:
            raise UserError(f"title vectors have {vectors.shape[0]} rows, vocabulary has {rows}")
        self.embedding.weight.copy_(vectors)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        vectors = self.embedding(tokens)
        if self.pooling == "flatten":
            return vectors.flatten(1)
        words = (tokens != PADDING_INDEX).sum(1, keepdim=True).clamp(min=1)
        return vectors.sum(1) / words  # padding rows are zero
