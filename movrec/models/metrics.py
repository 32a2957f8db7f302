"""The metric collections every model and baseline is scored with."""

from __future__ import annotations

from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score
from torchmetrics.retrieval import RetrievalNormalizedDCG, RetrievalPrecision, RetrievalRecall


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
