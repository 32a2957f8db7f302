"""What each user watched, as bags of movie ids: the input of the network's ranking part.

A user's list is scored from the movies they watched, so a user seen in training and a new
user with five likes are ranked the same way. In training, a rating row's own movie is left out
of its user's bag (the ranking learns to find a watched movie from the others), and a share of
each bag is dropped, so that short histories (new users) are part of training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Histories:
    """CSR rows: a user position -> fitted movie id indices."""

    indptr: torch.Tensor  # (users + 1,)
    items: torch.Tensor  # (watched,)

    @classmethod
    def build(cls, users: np.ndarray, items: np.ndarray, n_users: int) -> Histories:
        """``users``: row positions; ``items``: fitted movie id indices of what they watched."""
        keep = np.asarray(items) > 0  # a movie without a learned id adds nothing
        users, items = np.asarray(users)[keep], np.asarray(items)[keep]
        order = np.lexsort((items, users))
        counts = np.bincount(users, minlength=n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(torch.from_numpy(indptr), torch.from_numpy(items[order].astype(np.int64)))

    def bags(
        self, users: torch.Tensor, leave_out: torch.Tensor | None = None, dropout: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """The bags of ``users`` as EmbeddingBag inputs: flat ids, offsets, per-id weights
        (0 for ``leave_out``, each row's own movie, and for dropped ids)."""
        start, stop = self.indptr[users], self.indptr[users + 1]
        length = stop - start
        offsets = torch.cumsum(length, 0) - length
        total = int(length.sum())
        position = torch.repeat_interleave(start - offsets, length, output_size=total)
        flat = self.items[position + torch.arange(total)]
        weights = torch.ones(total)
        if leave_out is not None:
            weights[flat == torch.repeat_interleave(leave_out, length, output_size=total)] = 0.0
        if dropout:
            weights[torch.rand(total) < dropout] = 0.0
        return {"history": flat, "history_offsets": offsets, "history_weights": weights}


@dataclass(frozen=True)
class RankingExamples:
    """What a training batch needs for the ranking loss, beside its rating rows: each row's
    user bag (its own movie left out, ``dropout`` of it dropped) and the candidate movies the
    row's movie is to be found among (``candidate_*``), with the index of each row's movie
    there (``ranking_target``).

    ``negatives`` None: every catalogue movie is a candidate (an exact softmax). Otherwise the
    batch's own movies plus ``negatives`` drawn uniformly, with the log of how often each
    candidate is expected in a batch (``ranking_log_q``; ``popularity``: each movie's share
    of the training rows), which the loss subtracts so popular movies are not over-penalised."""

    histories: Histories
    dropout: float
    popularity: torch.Tensor  # (catalogue movies,)
    negatives: int | None = None

    def add(
        self, batch: dict[str, torch.Tensor], rows: torch.Tensor, movies: dict[str, torch.Tensor]
    ) -> None:
        batch.update(self.histories.bags(batch["user_id"], batch["movie_id"], self.dropout))
        n = len(self.popularity)
        if self.negatives is None or self.negatives >= n:
            candidates, batch["ranking_target"] = None, rows
        else:
            drawn = torch.randint(n, (self.negatives,))
            candidates, target = torch.unique(torch.cat([rows, drawn]), return_inverse=True)
            batch["ranking_target"] = target[: len(rows)]
            expected = len(rows) * self.popularity[candidates] + self.negatives / n
            batch["ranking_log_q"] = expected.log()
        for key, values in movies.items():
            batch["candidate_" + key] = values if candidates is None else values[candidates]
