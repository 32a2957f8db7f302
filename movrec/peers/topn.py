"""Top-N peers: cornac's EASE and VBPR, implicit's ALS and BPR (``model=ease | als | bpr |
vbpr``), scored with the networks' full-catalogue protocol on the same users, candidates and
relevant movies (:mod:`movrec.evaluation.topn`).

They learn from what users watched (every rating is a 1), as top-N recommenders do, and
predict no ratings: their ``metrics.json`` has no RMSE. Tuned like the other peers: every
setting of ``search`` is fitted on the training ratings and scored by NDCG@k on validation
(on ``cold_users``: on the validation users' fold-in); the best is refitted on train +
validation (on ``cold_users``: train only, as the networks are) and tested once. VBPR is the
metadata peer: it reads movrec's fitted movie feature matrix, so it ranks movies no one rated
by their content, as the network does.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from movrec.data import FittedDataModule
from movrec.errors import UserError
from movrec.evaluation.fold_in import history_and_rest
from movrec.evaluation.topn import TopNTask, top_n_metrics
from movrec.peers.surprise import user_peer_settings

log = logging.getLogger(__name__)

LIBRARIES = ("cornac", "implicit")
# The peers with their own fold-in of a new user's history (BPR and VBPR have none).
FOLD_IN = ("EASE", "AlternatingLeastSquares")


def is_top_n(peer_class: type) -> bool:
    return peer_class.__module__.split(".")[0] in LIBRARIES


class Catalogue:
    """The catalogue as the peers see it: one column per movie (rated or not) and, for
    VBPR, the fitted feature matrix (None without features)."""

    def __init__(self, movie_ids: pd.Index, features: np.ndarray | None):
        self.movie_ids, self.features = movie_ids, features

    def matrix(self, ratings: pd.DataFrame, users: pd.Index) -> sp.csr_matrix:
        """A users x movies matrix of 1s: who watched what (a row per position in ``users``)."""
        rows = users.get_indexer(ratings["user_id"])
        columns = self.movie_ids.get_indexer(ratings["movie_id"])
        keep = (rows >= 0) & (columns >= 0)
        ones = np.ones(int(keep.sum()), dtype=np.float32)
        shape = (len(users), len(self.movie_ids))
        matrix = sp.csr_matrix((ones, (rows[keep], columns[keep])), shape=shape)
        matrix.data[:] = 1.0  # a movie rated twice is watched once
        return matrix


class TopNPeer:
    """One library model behind the two calls the evaluation makes: fit on a watched matrix,
    score users (rows of that matrix, or new users' histories) for every catalogue movie."""

    def __init__(self, peer_class: type, options: dict[str, Any], catalogue: Catalogue):
        self.model = peer_class(**options)
        self.catalogue = catalogue
        self.library = peer_class.__module__.split(".")[0]

    def fit(self, watched: sp.csr_matrix, users: pd.Index) -> TopNPeer:
        """Fit on ``watched``, whose rows are ``users`` (raw ids)."""
        self.users = users
        if self.library == "implicit":
            self.model.fit(watched, show_progress=False)
        else:
            self.model.fit(_cornac_dataset(watched, self.catalogue))
        return self

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), movies) scores of fitted users."""
        if self.library == "implicit":
            return self.model.user_factors[rows] @ self.model.item_factors.T
        return self._cornac_scores(rows, None)

    def fold_in_scores(self, history: sp.csr_matrix) -> np.ndarray:
        """Scores of users the model never saw, from their watched rows (EASE: the history
        times the item-item weights; ALS: the user's least-squares solve)."""
        if not self.folds_in:
            raise UserError(f"{type(self.model).__name__} has no fold-in for new users")
        if self.library == "implicit":
            factors = self.model.recalculate_user(np.arange(history.shape[0]), history)
            return factors @ self.model.item_factors.T
        return self._cornac_scores(None, history)

    @property
    def folds_in(self) -> bool:
        return type(self.model).__name__ in FOLD_IN

    def _cornac_scores(self, rows: np.ndarray | None, history: sp.csr_matrix | None):
        model, n = self.model, len(self.catalogue.movie_ids)
        known = np.array([int(raw) for raw in model.iid_map], dtype=np.int64)  # cornac order
        if rows is not None:
            users = np.array([model.uid_map[str(r)] for r in rows], dtype=np.int64)
        if hasattr(model, "B"):  # EASE: a user's watched row times the item-item weights
            watched = history[:, known] if history is not None else model.U[users]
            out = np.zeros((watched.shape[0], n), np.float32)
            out[:, known] = np.asarray(watched @ model.B)
            return out
        # VBPR: a movie it never saw gets the content part alone (its factors are unknown).
        content = self.catalogue.features.astype(np.float32)
        out = model.theta_user[users] @ (content @ model.emb_matrix).T
        out += (content @ model.beta_prime).ravel()
        out[:, known] += model.beta_item + model.gamma_user[users] @ model.gamma_item.T
        return out


def _cornac_dataset(watched: sp.csr_matrix, catalogue: Catalogue) -> Any:
    """A cornac training set whose raw ids are matrix rows and catalogue rows (strings), with
    the movie features as VBPR's item modality."""
    from cornac.data import Dataset, ImageModality

    coo = watched.tocoo()
    users, movies = coo.row.astype(str), coo.col.astype(str)
    triples = list(zip(users, movies, coo.data.astype(float), strict=True))
    dataset = Dataset.build(triples, fmt="UIR", seed=0)
    if catalogue.features is not None:
        rows = [str(i) for i in range(len(catalogue.movie_ids))]
        features = ImageModality(features=catalogue.features.astype(np.float32), ids=rows)
        features.build(id_map=dataset.iid_map)
        dataset.add_modalities(item_image=features)
    return dataset


class Evaluation:
    """What a peer is scored on: the datamodule's splits, catalogue and top-N protocol."""

    def __init__(self, datamodule: FittedDataModule, k: int, threshold: float, max_users):
        movies, tensors = datamodule.catalogue()
        features = tensors.get("features")
        self.catalogue = Catalogue(
            pd.Index(movies["movie_id"]), features.numpy() if features is not None else None
        )
        self.frames, self.k, self.threshold = datamodule.frames, k, threshold
        self.max_users = max_users

    def fit(self, peer_class: type, options: dict[str, Any], ratings: pd.DataFrame) -> TopNPeer:
        users = pd.Index(np.sort(ratings["user_id"].unique()))
        peer = TopNPeer(peer_class, options, self.catalogue)
        return peer.fit(self.catalogue.matrix(ratings, users), users)

    def warm(self, peer: TopNPeer, seen: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
        """Full-catalogue metrics of users the peer was fitted on (one never seen scores 0)."""
        ids = self.catalogue.movie_ids
        task = TopNTask.build(seen, test, ids, self.threshold, self.max_users)
        rows = peer.users.get_indexer(task.users)

        def score(positions: torch.Tensor) -> torch.Tensor:
            chunk = rows[positions.numpy()]
            out = np.zeros((len(chunk), len(ids)), np.float32)
            fitted = chunk >= 0
            out[fitted] = peer.scores(chunk[fitted])
            return torch.from_numpy(out)

        return top_n_metrics(task, score, self.k, unrated=self.unrated(seen))

    def folded(self, peer: TopNPeer, users_ratings: pd.DataFrame, n: int) -> dict[str, float]:
        """Full-catalogue metrics of new users from their first ``n`` ratings (by time)."""
        history, rest = history_and_rest(users_ratings, n)
        ids = self.catalogue.movie_ids
        task = TopNTask.build(history, rest, ids, self.threshold, self.max_users)
        scores = peer.fold_in_scores(self.catalogue.matrix(history, pd.Index(task.users)))
        matrix = torch.from_numpy(np.asarray(scores, dtype=np.float32))
        unrated = self.unrated(self.frames["train"])
        return top_n_metrics(task, lambda users: matrix[users], self.k, unrated=unrated)

    def unrated(self, seen: pd.DataFrame) -> torch.Tensor:
        return torch.from_numpy(~self.catalogue.movie_ids.isin(seen["movie_id"]))


def fit_and_test(
    peer_class: type, options: dict[str, Any], datamodule: FittedDataModule,
    ranking_k: int = 10, relevance_threshold: float = 4.0, max_users: int | None = None,
    fold_in_history: tuple[int, ...] = (5,),
) -> dict[str, Any]:  # fmt: skip
    """Choose the setting on validation NDCG, refit, test once; on ``cold_users`` the test is
    the fold-in of each history length (``fold_in`` of metrics.json)."""
    name = peer_class.__name__
    options, settings = user_peer_settings(name, "top-N peer", options, datamodule)
    evaluation = Evaluation(datamodule, ranking_k, relevance_threshold, max_users)
    if name == "VBPR" and evaluation.catalogue.features is None:
        raise UserError(f"model {name} reads the movie features: set data.features")
    train, val, test = (datamodule.frames[s] for s in ("train", "val", "test"))
    cold_users = datamodule.hparams.split == "cold_users"
    key = f"full_ndcg@{ranking_k}"
    start = time.perf_counter()
    best_score, best = None, {}
    for setting in settings:
        peer = evaluation.fit(peer_class, {**options, **setting}, train)
        if cold_users and not peer.folds_in:
            raise UserError(f"model {name} has no fold-in for new users (data.split=cold_users)")
        scored = (
            evaluation.folded(peer, val, fold_in_history[0])
            if cold_users
            else evaluation.warm(peer, train, val)
        )
        log.info("%s %s: validation %s %.4f", name, setting, key, scored[key])
        if best_score is None or scored[key] > best_score:
            best_score, best = scored[key], setting
    log.info("%s: chosen on validation %s", name, best)
    seen = train if cold_users else pd.concat([train, val])
    peer = evaluation.fit(peer_class, {**options, **best}, seen)
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {"kind": "peer", "chosen": best, "train_seconds": seconds}
    if cold_users:
        out["test"] = {}
        out["fold_in"] = {
            str(n): {"fold_in": evaluation.folded(peer, test, n), "chosen": best}
            for n in fold_in_history
        }
    else:
        out["test"] = evaluation.warm(peer, seen, test)
    return out
