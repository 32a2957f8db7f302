"""Peers: real, tuned tools run beside the network on the same rows and written to the same
``metrics.json``. One interface, :func:`fit_and_test`: fit on the datamodule's training split,
choose the setting on validation, refit on train + validation, test once, and return the
``metrics.json`` fields the peer knows. Trees (scikit-learn, LightGBM, CatBoost) read the
fitted feature matrix; Surprise's algorithms read the ratings; the top-N peers (cornac,
implicit) read what users watched and are scored on their lists alone."""

from __future__ import annotations

from typing import Any

from movrec.data import FittedDataModule
from movrec.peers import surprise, topn, trees


def fit_and_test(
    peer_class: type, options: dict[str, Any], datamodule: FittedDataModule,
    ranking_k: int = 10, relevance_threshold: float = 4.0, max_users: int | None = None,
    fold_in_history: tuple[int, ...] = (5,),
) -> dict[str, Any]:  # fmt: skip
    if topn.is_top_n(peer_class):
        return topn.fit_and_test(
            peer_class, options, datamodule, ranking_k, relevance_threshold, max_users,
            tuple(fold_in_history),
        )  # fmt: skip
    if surprise.is_surprise(peer_class):
        return surprise.fit_and_test(
            peer_class, options, datamodule, ranking_k, relevance_threshold
        )
    return trees.fit_and_test(peer_class, options, datamodule)
