"""The metric collections every model and baseline is scored with."""

from __future__ import annotations

import torch
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric, MetricCollection, R2Score
from torchmetrics.utilities import dim_zero_cat


def regression_metrics(prefix: str) -> MetricCollection:
    return MetricCollection(
        {"mae": MeanAbsoluteError(), "rmse": MeanSquaredError(squared=False), "r2": R2Score()},
        prefix=prefix,
    )


def ranking_at_k(
    scores: torch.Tensor, relevant: torch.Tensor, users: torch.Tensor, k: int
) -> dict[str, torch.Tensor]:
    """Precision, recall and NDCG at ``k`` of each user's rows ranked by score, averaged over
    the users with at least one relevant row (the others have nothing to find).

    One sort of the rows: memory O(rows), where torchmetrics' retrieval metrics build a dense
    rows x users matrix under ``deterministic=True`` (64 GB at 2 M test ratings). Ties in
    score keep the rows' order. Values match torchmetrics' RetrievalPrecision / Recall /
    NormalizedDCG (``top_k=k``, ``empty_target_action="skip"``) on untied scores.
    """
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(users[order], stable=True)]
    relevant = relevant[order].float()
    _, user, counts = torch.unique_consecutive(
        users[order], return_inverse=True, return_counts=True
    )
    rank = torch.arange(len(order), device=scores.device) - (counts.cumsum(0) - counts)[user]
    in_top = rank < k
    discount = 1.0 / torch.log2(torch.arange(k + 1, device=scores.device, dtype=torch.float) + 2)

    def per_user(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(counts), device=scores.device).index_add_(0, user, values)

    hits = per_user(relevant * in_top)
    n_relevant = per_user(relevant)
    dcg = per_user(relevant * in_top * discount[rank.clamp(max=k)])
    ideal_discount = torch.cat([discount.new_zeros(1), discount[:k].cumsum(0)])
    ideal = ideal_discount[n_relevant.clamp(max=k).long()]
    keep = n_relevant > 0
    if not keep.any():
        zero = scores.new_zeros(())
        return {f"precision@{k}": zero, f"recall@{k}": zero, f"ndcg@{k}": zero}
    return {
        f"precision@{k}": (hits[keep] / k).mean(),
        f"recall@{k}": (hits[keep] / n_relevant[keep]).mean(),
        f"ndcg@{k}": (dcg[keep] / ideal[keep]).mean(),
    }


class RankingMetrics(Metric):
    """:func:`ranking_at_k` over every row of an epoch; rows are gathered across processes."""

    full_state_update = False

    def __init__(self, k: int, prefix: str = ""):
        super().__init__()
        self.k, self.prefix = k, prefix
        for name in ("scores", "relevant", "users"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, scores: torch.Tensor, relevant: torch.Tensor, users: torch.Tensor) -> None:
        self.scores.append(scores.detach())
        self.relevant.append(relevant)
        self.users.append(users)

    def compute(self) -> dict[str, torch.Tensor]:
        values = ranking_at_k(
            dim_zero_cat(self.scores), dim_zero_cat(self.relevant), dim_zero_cat(self.users),
            self.k,
        )  # fmt: skip
        return {self.prefix + name: value for name, value in values.items()}
