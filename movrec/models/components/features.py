"""The metadata-feature tower: the feature vector as it is, or with its numeric columns
embedded (periodic embeddings, Gorishniy et al. 2022: MLPs with them close much of the gap to
gradient-boosted trees on tabular data)."""

from __future__ import annotations

import torch
from rtdl_num_embeddings import PeriodicEmbeddings
from torch import nn

from movrec.errors import UserError

NUMERIC_EMBEDDINGS = ("none", "periodic")


class FeatureTower(nn.Module):
    """``n_numeric`` leading columns are numbers (the datamodule puts them first); with
    ``embedding="periodic"`` each becomes a learned ``dim``-d periodic embedding whose
    frequencies start from N(0, ``frequency_scale``): the library's 0.01 makes the sines nearly
    linear over the quantile-scaled inputs (about -5..5); larger scales start less smooth."""

    def __init__(
        self,
        n_features: int,
        n_numeric: int = 0,
        embedding: str = "none",
        dim: int = 16,
        frequency_scale: float = 0.01,
    ):
        super().__init__()
        if embedding not in NUMERIC_EMBEDDINGS:
            raise UserError(
                f"model.net.numeric_embedding must be one of {list(NUMERIC_EMBEDDINGS)}, "
                f"got {embedding!r}"
            )
        self.n_numeric = n_numeric if embedding != "none" else 0
        self.embed = None
        if self.n_numeric:
            if frequency_scale <= 0:
                raise UserError(
                    f"model.net.numeric_frequency_scale must be > 0, got {frequency_scale}"
                )
            self.embed = PeriodicEmbeddings(
                self.n_numeric, dim, lite=False, frequency_init_scale=frequency_scale
            )
        self.width = n_features + self.n_numeric * (dim - 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.embed is None:
            return features
        numeric = self.embed(features[:, : self.n_numeric]).flatten(1)
        return torch.cat([numeric, features[:, self.n_numeric :]], dim=1)
