"""In-memory datasets that serve a whole batch per lookup."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from movrec.data.histories import RankingExamples
from movrec.data.vocab import UNKNOWN_ID_INDEX


class TensorBatches(torch.utils.data.Dataset):
    """Aligned in-memory tensors served a whole batch per index lookup.

    ``__getitems__`` lets the DataLoader fetch a batch with one tensor index per key instead
    of collating 64 single rows. With ``movies`` (one row per movie), each example's
    ``movie_row`` names its movie, so a rating costs a few ints, not a copy of its movie, and
    a batch holds each of its distinct movies once. During training a share of ids
    (``unknown_rates``, e.g. ``{"movie_id": 0.1}``) is replaced by the unknown index, so the
    unknown embedding that unseen movies (or users) get at test time is a learned one. The
    ranking candidates' ids hide at the same rate: a movie no one rated is ranked by its
    content, so content alone must compete with the ids of known movies, as a watched movie
    too.
    """

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        unknown_rates: dict[str, float] | None = None,
        movies: dict[str, torch.Tensor] | None = None,
        ranking: RankingExamples | None = None,
    ):
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(
                f"tensors of different lengths: { {k: len(v) for k, v in tensors.items()} }"
            )
        self.tensors = tensors
        self.movies = movies
        self.ranking = ranking  # training batches of a network that also learns to rank
        self.unknown_rates = {k: r for k, r in (unknown_rates or {}).items() if r > 0}

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitems__(self, indices: Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        return self.gather(torch.as_tensor(indices, dtype=torch.long))

    def gather(self, index: torch.Tensor, distinct: bool = True) -> dict[str, torch.Tensor]:
        """The examples at ``index``. With ``distinct``, each distinct movie's tensors come
        once and ``movie_index`` points each row at its movie (for a network that also
        ranks, the distinct movies are its candidates); else every row carries its own."""
        batch = {k: v[index] for k, v in self.tensors.items()}
        rows = None
        if self.movies is not None:
            rows = batch.pop("movie_row")
            batch["movie_id"] = self.movies["movie_id"][rows]
            if not distinct:
                batch.update({k: v[rows] for k, v in self.movies.items()})
            elif self.ranking is None:
                movies, batch["movie_index"] = torch.unique(rows, return_inverse=True)
                batch.update({k: v[movies] for k, v in self.movies.items() if k != "movie_id"})
        rates = dict(self.unknown_rates)
        if self.ranking is not None:  # a hidden user's bag is empty; the bag leaves out its
            # row's own movie by id, before that id may be hidden
            if "user_id" in rates:
                batch["user_id"] = hide(batch["user_id"], rates.pop("user_id"))
            self.ranking.add(batch, rows, self.movies)
        for key, rate in rates.items():
            batch[key] = hide(batch[key], rate)
            if "candidate_" + key in batch:  # so that content alone is ranked against ids
                batch["candidate_" + key] = hide(batch["candidate_" + key], rate)
        return batch

    def to(self, device: torch.device) -> TensorBatches:
        """The same examples, every tensor on ``device`` (batches are then gathered there)."""
        return TensorBatches(
            {k: v.to(device) for k, v in self.tensors.items()},
            self.unknown_rates,
            {k: v.to(device) for k, v in self.movies.items()} if self.movies else None,
            self.ranking.to(device) if self.ranking is not None else None,
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.gather(torch.tensor([index]), distinct=False).items()}

    def all(self) -> dict[str, torch.Tensor]:
        """Every example at once, a row each (no unknown-id replacement, no ranking inputs:
        for evaluation and baselines)."""
        saved = self.unknown_rates, self.ranking
        self.unknown_rates, self.ranking = {}, None
        try:
            return self.gather(torch.arange(len(self)), distinct=False)
        finally:
            self.unknown_rates, self.ranking = saved


class EpochBatches:
    """Training batches drawn where the model trains: the examples' tensors move to the
    device once, each epoch is one permutation made there, and a batch is an index gather
    there, with no per-batch work on the host and no per-batch copy to the device.

    The permutation is seeded by ``seed`` and the epoch (``epoch()``), so every DDP rank draws
    the same one and takes its own share of it (``rank``-th of every ``world`` examples, the
    last ones repeated so ranks have equal shares, as torch's DistributedSampler does), and a
    resumed fit draws the epoch it stopped in. Lightning runs it as any iterable of batches.
    """

    def __init__(
        self,
        examples: TensorBatches,
        batch_size: int,
        seed: int,
        epoch: Callable[[], int] | None = None,
        rank: int = 0,
        world: int = 1,
    ):
        self.examples, self.batch_size, self.seed = examples, batch_size, seed
        self.rank, self.world = rank, world
        self.share = -(-len(examples) // world)  # each rank's examples per epoch
        self.epochs = 0  # epochs begun, the epoch without ``epoch``
        self.epoch = epoch or (lambda: self.epochs)

    def __len__(self) -> int:
        return -(-self.share // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        device = next(iter(self.examples.tensors.values())).device
        generator = torch.Generator(device=device).manual_seed(self.seed + self.epoch())
        self.epochs += 1
        order = torch.randperm(len(self.examples), generator=generator, device=device)
        padding = self.share * self.world - len(order)
        if padding:
            order = torch.cat([order, order.repeat(-(-padding // len(order)))[:padding]])
        mine = order[self.rank :: self.world]
        for start in range(0, len(mine), self.batch_size):
            yield self.examples.gather(mine[start : start + self.batch_size])


def hide(ids: torch.Tensor, rate: float) -> torch.Tensor:
    """``ids`` with a random share ``rate`` replaced by the unknown index."""
    return ids.masked_fill(torch.rand(ids.shape, device=ids.device) < rate, UNKNOWN_ID_INDEX)


def whole_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch
