"""What each user watched, as bags of movie ids: the input of the network's ranking part.

A user's list is scored from the movies they watched, so a user seen in training and a new
user with five likes are ranked the same way. In training, a rating row's own movie is left out
of its user's bag (the ranking learns to find a watched movie from the others), and a share of
each bag is dropped, so that short histories (new users) are part of training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch


@dataclass(frozen=True)
class Histories:
    """CSR rows: a user position -> fitted movie id indices."""

    indptr: torch.Tensor  # (users + 1,)
    items: torch.Tensor  # (watched,)

    def to(self, device: torch.device) -> Histories:
        return Histories(self.indptr.to(device), self.items.to(device))

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
        self,
        users: torch.Tensor,
        leave_out: torch.Tensor | None = None,
        dropout: float = 0.0,
        keep: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The bags of ``users`` as EmbeddingBag inputs: flat ids, offsets, per-id weights.
        Left out: each row's own movie (``leave_out``), a random share ``dropout``, and past
        ``keep`` (per bag, how many of its remaining ids stay, drawn at random); what is left
        out is not in the bags at all, so the bag sums cost what they keep."""
        device = self.items.device
        start, stop = self.indptr[users], self.indptr[users + 1]
        length = stop - start
        offsets = torch.cumsum(length, 0) - length
        total = int(length.sum())
        position = torch.repeat_interleave(start - offsets, length, output_size=total)
        flat = self.items[position + torch.arange(total, device=device)]
        weights = torch.ones(total, device=device)
        bag = torch.repeat_interleave(
            torch.arange(len(users), device=device), length, output_size=total
        )
        if leave_out is not None:
            weights[flat == leave_out[bag]] = 0.0
        if dropout:
            weights[torch.rand(total, device=device) < dropout] = 0.0
        if keep is not None:
            _keep_at_most(weights, bag, keep, length)
        kept = weights > 0
        if not bool(kept.all()):
            flat, weights, bag = flat[kept], weights[kept], bag[kept]
            length = torch.bincount(bag, minlength=len(users))
            offsets = torch.cumsum(length, 0) - length
        return {"history": flat, "history_offsets": offsets, "history_weights": weights}


def _keep_at_most(
    weights: torch.Tensor, bag: torch.Tensor, keep: torch.Tensor, length: torch.Tensor
) -> None:
    """Zero the weights of each bag past ``keep[bag]`` of its nonzero ones, in a random
    order; only the bags that can lose an id are sorted."""
    entries = torch.nonzero(keep[bag] < length[bag]).squeeze(1)
    if not len(entries):
        return
    bags = bag[entries]  # ascending: bags are contiguous runs
    draws = torch.rand(len(entries), dtype=torch.double, device=bag.device)
    noise = draws * 0.5 + (weights[entries] == 0) * 0.5
    order = torch.argsort(bags + noise)  # a random order within each bag, nonzero ids first
    sorted_bags = bags[order]
    rank = torch.arange(len(entries), device=bag.device)
    rank -= torch.searchsorted(sorted_bags, sorted_bags)
    weights[entries[order[rank >= keep[sorted_bags]]]] = 0.0


@dataclass(frozen=True)
class RankingExamples:
    """What a training batch needs for the ranking loss, beside its rating rows: each row's
    user bag (its own movie left out, ``dropout`` of it dropped; for a share ``short_share``
    of rows, only 1 to ``short_max`` movies kept, so new users' few likes are trained on) and
    the candidate movies the row's movie is to be found among: the batch's distinct movies
    (their tensors, ids as ``candidate_movie_id``), with each row's index there
    (``movie_index``).

    ``negatives`` None: every ``candidates`` movie is one (an exact softmax). Otherwise the
    batch's own movies plus ``negatives`` drawn uniformly from those, with the log of how
    often each candidate is expected in a batch (``ranking_log_q``; ``popularity``: each
    movie's share of the training rows), which the loss subtracts so popular movies are not
    over-penalised."""

    histories: Histories
    dropout: float
    popularity: torch.Tensor  # (catalogue movies,)
    negatives: int | None = None
    candidates: torch.Tensor | None = None  # (catalogue movies,) bool; None: every movie
    short_share: float = 0.0
    short_max: int = 10

    def __post_init__(self) -> None:
        device = self.popularity.device
        every = torch.ones(len(self.popularity), dtype=torch.bool, device=device)
        pool = torch.nonzero(every if self.candidates is None else self.candidates).squeeze(1)
        position = torch.full((len(self.popularity),), -1, dtype=torch.long, device=device)
        position[pool] = torch.arange(len(pool), device=device)
        object.__setattr__(self, "pool", pool)
        object.__setattr__(self, "pool_position", position)
        object.__setattr__(self, "_pool_movies", {})  # the exact softmax's candidates, once

    def to(self, device: torch.device) -> RankingExamples:
        candidates = self.candidates.to(device) if self.candidates is not None else None
        return replace(
            self, histories=self.histories.to(device), popularity=self.popularity.to(device),
            candidates=candidates,
        )  # fmt: skip

    def add(
        self, batch: dict[str, torch.Tensor], rows: torch.Tensor, movies: dict[str, torch.Tensor]
    ) -> None:
        users, keep = batch["user_id"], None
        if self.short_share:  # these rows' bags keep 1 to short_max movies, as a new user's
            short = torch.rand(len(users), device=users.device) < self.short_share
            limit = torch.randint(1, self.short_max + 1, (len(users),), device=users.device)
            keep = torch.where(short, limit, torch.iinfo(torch.long).max)
        batch.update(self.histories.bags(users, batch["movie_id"], self.dropout, keep))
        pool = self.pool
        if self.negatives is None or self.negatives >= len(pool):
            if not self._pool_movies:
                self._pool_movies.update({k: v[pool] for k, v in movies.items()})
            candidates = self._pool_movies
            batch["movie_index"] = self.pool_position[rows]
        else:
            drawn = pool[torch.randint(len(pool), (self.negatives,), device=pool.device)]
            unique, target = torch.unique(torch.cat([rows, drawn]), return_inverse=True)
            batch["movie_index"] = target[: len(rows)]
            expected = len(rows) * self.popularity[unique] + self.negatives / len(pool)
            batch["ranking_log_q"] = expected.log().float()  # the logits stay float32
            candidates = {k: v[unique] for k, v in movies.items()}
        batch.update({k: v for k, v in candidates.items() if k != "movie_id"})
        batch["candidate_movie_id"] = candidates["movie_id"]
