"""The head: Dense-ReLU-Dropout layers and a linear output, initialised as Keras does."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from movrec.errors import UserError


def mlp_head(width: int, hidden_sizes: Sequence[int], dropout: float) -> nn.Sequential:
    if not 0 <= dropout < 1:
        raise UserError(f"model.net.dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(width, int(size)), nn.ReLU(), nn.Dropout(dropout)]
        width = int(size)
    layers.append(nn.Linear(width, 1))
    head = nn.Sequential(*layers)
    for layer in head:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)  # Keras' glorot_uniform
            nn.init.zeros_(layer.bias)
    return head


class HeadEnsemble(nn.Module):
    """``k`` independent heads on the same inputs, one output column each: trained on the mean
    of their losses and predicting their mean (a parameter-cheap ensemble, as in TabM)."""

    def __init__(self, width: int, hidden_sizes: Sequence[int], dropout: float, k: int):
        super().__init__()
        self.members = nn.ModuleList(mlp_head(width, hidden_sizes, dropout) for _ in range(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([member(x) for member in self.members], dim=1)
