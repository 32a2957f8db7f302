"""Rank a trained model's movies: similar movies, a known user's top picks, a new user's.

A :class:`Recommender` is a checkpoint's model plus the movies of its run, rebuilt from the
data settings saved in the checkpoint with its fitted preprocessing (nothing is refitted).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from movrec.data import FittedDataModule
from movrec.data.histories import Histories
from movrec.data.labels import movie_labels
from movrec.errors import UserError
from movrec.evaluation.fold_in import fold_in, popularity_prior
from movrec.evaluation.topn import (
    RecentPopularity,
    model_scores,
    popularity_scores,
    ranking_scores,
)
from movrec.models.regressor import RatingRegressor
from movrec.serving.checkpoint import Checkpoint

# New users: their liked movies are fitted as ratings of this value (MovieLens' top).
LIKED_RATING = 5.0
# The fold-in settings validation chose on ml-latest-small's new users (docs/recommend.md).
DEFAULT_L2 = 10.0
DEFAULT_RANKING = {"popularity_weight": 0.5, "recent_weight": 1.0, "recent_years": 2.0}


class UnknownTitle(UserError, LookupError):
    def __init__(self, title: str, suggestions: list[str]):
        hint = f" Did you mean: {'; '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"no movie titled {title!r} in this run's movies.{hint}")
        self.suggestions = suggestions


class Recommender:
    """A trained model and the movies of its run, ready to rank them."""

    def __init__(self, model: RatingRegressor, datamodule: FittedDataModule):
        self.model = model.eval()
        self.datamodule = datamodule
        self.movies, self.tensors = datamodule.catalogue()
        self.labels = movie_labels(self.movies).reset_index(drop=True)
        self._lower = self.labels["title"].str.lower()
        self._genres = [
            {g.strip().lower() for g in c.split(",")} - {""} for c in self.labels["genres"]
        ]
        # Remakes share a title: a bare title means the one most people voted on.
        votes = self.movies.get("vote_count", pd.Series(0.0, index=self.movies.index))
        self._votes = pd.Series(votes.fillna(0).to_numpy(dtype=float))

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, trust: bool = False, **data_overrides: str | None
    ) -> Recommender:
        checkpoint = Checkpoint(path, trust=trust)
        return cls(checkpoint.model(), checkpoint.datamodule(**data_overrides))

    # ---- movies -------------------------------------------------------------------------
    def find(self, title: str) -> int:
        """Row of a title, case-insensitive. Among remakes the most voted-on one, unless the
        title says which: "Title (year)"."""
        wanted = title.strip().lower()
        with_year = self._lower + " (" + self.labels["year"] + ")"
        for column in (self._lower, with_year):
            rows = column.index[column == wanted]
            if len(rows):
                return int(self._votes.loc[rows].idxmax())
        titles = list(dict.fromkeys(self.labels["title"]))
        close = difflib.get_close_matches(title, titles, n=5, cutoff=0.6)
        lowered = {t.lower(): t for t in titles}
        close += [
            lowered[t]
            for t in difflib.get_close_matches(wanted, list(lowered), n=5, cutoff=0.6)
            if lowered[t] not in close
        ]
        contains = [t for t in titles if wanted and wanted in t.lower() and t not in close]
        raise UnknownTitle(title, (close + contains)[:5])

    def genre_mask(self, genres: Sequence[str]) -> torch.Tensor:
        """Movies with any of ``genres`` (case-insensitive); unknown genres are an error."""
        names = set().union(*self._genres)
        unknown = [g for g in genres if g.lower() not in names]
        if unknown:
            raise UserError(f"unknown genre(s) {unknown}; known: {sorted(names)}")
        wanted = {g.lower() for g in genres}
        return torch.tensor([bool(wanted & movie) for movie in self._genres])

    def _batch(self, rows: torch.Tensor | slice, user: int | None = None) -> dict:
        batch = {k: v[rows] for k, v in self.tensors.items()}
        if self.model.has_users:
            n = len(next(iter(batch.values())))
            batch["user_id"] = torch.full((n,), user or 0, dtype=torch.long)
        return batch

    def table(
        self, scores: torch.Tensor, exclude: torch.Tensor, k: int, name: str,
        shown: torch.Tensor | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """The ``k`` best-scored movies not excluded, best first, with ``shown`` (default: the
        scores) as column ``name``."""
        shown = scores if shown is None else shown
        scores = scores.masked_fill(exclude, float("-inf"))
        k = min(k, int((~exclude).sum()))
        top = torch.topk(scores, k).indices
        out = self.labels.iloc[top.numpy()].reset_index(drop=True)
        out.insert(0, "rank", range(1, len(out) + 1))
        return out.assign(**{name: shown[top].numpy()})

    def ratings_table(
        self, model: RatingRegressor, batch: dict, exclude: torch.Tensor, k: int
    ) -> pd.DataFrame:
        """Ranked by the model's unclipped scores, shown as ratings on the training scale."""
        scores = model.score(batch)
        return self.table(scores, exclude, k, "predicted_rating", shown=model.clip(scores))

    # ---- commands -----------------------------------------------------------------------
    @torch.no_grad()
    def similar(self, title: str, k: int = 10) -> pd.DataFrame:
        """Nearest movies by cosine similarity of the model's movie representations."""
        row = self.find(title)
        vectors = F.normalize(self.model.movie_representation(self._batch(slice(None))), dim=1)
        similarity = vectors @ vectors[row]
        exclude = torch.zeros(len(similarity), dtype=torch.bool)
        exclude[row] = True
        return self.table(similarity, exclude, k, "similarity")

    def _need_users(self) -> FittedDataModule:
        if not self.model.has_users or not self.datamodule.has_users:
            raise UserError(
                "this checkpoint was trained without users: pass --ckpt of a run on user "
                "ratings (python train.py experiment=recommend)"
            )
        return self.datamodule

    @torch.no_grad()
    def user(self, user_id: int, k: int = 10) -> pd.DataFrame:
        """Top-``k`` movies the user has not rated, by predicted rating."""
        datamodule = self._need_users()
        index = int(datamodule.preprocessing.users.encode([user_id])[0])
        if index == 0:
            n = len(datamodule.preprocessing.users) - 1
            raise UserError(
                f"user {user_id} is not among the {n} users seen in training: use new-user"
            )
        rated = datamodule.rated_by(user_id)
        batch = self._batch(slice(None), index)
        exclude = self._movie_mask(rated)
        if not self.model.ranks:
            return self.ratings_table(self.model, batch, exclude, k)
        seen, _ = datamodule.user_ratings()  # what the lists were evaluated from
        history = seen[seen["user_id"] == user_id]
        rows = self._rows(history["movie_id"])
        reasons = [
            f"you rated {t} {r:g}"
            for t, r in zip(self._titles(rows), history["rating"], strict=True)
        ]
        scores = self.model.score(batch)
        return self.ranked_table(rows, reasons, exclude, k, scores)

    def _rows(self, movie_ids: pd.Series) -> torch.Tensor:
        return torch.from_numpy(pd.Index(self.labels["movie_id"]).get_indexer(movie_ids))

    def _titles(self, rows: torch.Tensor) -> list[str]:
        return self.labels["title"].iloc[rows.numpy()].tolist()

    @torch.no_grad()
    def ranked_table(
        self, rows: torch.Tensor, reasons: list[str], exclude: torch.Tensor, k: int,
        predicted: torch.Tensor,
    ) -> pd.DataFrame:  # fmt: skip
        """The ranking part's list for someone who watched the movies at ``rows`` (``score``:
        :meth:`RatingRegressor.list_score` of its logits and the unclipped ``predicted``
        ratings), with the predicted rating and, per movie, why (``because``): the watched
        movie that adds most to its score. A user's score is a sum over their watched movies,
        so the reason is that sum's largest term, not a guess made afterwards. A movie no one
        rated in training adds nothing and is never a reason."""
        model = self.model
        ranking = model.net.ranking
        ids = self.tensors["movie_id"][rows]
        histories = Histories.build(np.zeros(len(rows), dtype=np.int64), ids.numpy(), 1)
        logits = ranking_scores(model, self.tensors, histories)(torch.tensor([0]))[0]
        scores = model.list_score(logits, predicted)
        table = self.table(scores, exclude, k, "score")
        listed = self._rows(table["movie_id"])
        table["predicted_rating"] = model.clip(predicted[listed]).numpy()
        if not (ids != 0).any():
            return table.assign(because="")
        chosen = self._batch(listed)
        vectors, _ = ranking.movies(model.net.movie(chosen), chosen["movie_id"])
        terms = ranking.history.weight[ids] @ vectors.T  # (watched, listed)
        terms[ids == 0] = float("-inf")
        return table.assign(because=[reasons[i] for i in terms.argmax(0).tolist()])

    def _movie_mask(self, movie_ids: set[int]) -> torch.Tensor:
        return torch.tensor(self.labels["movie_id"].isin(movie_ids).to_numpy())

    def new_user(
        self,
        likes: Sequence[str] = (),
        genres: Sequence[str] = (),
        k: int = 10,
        rated: Sequence[str] = (),
        l2: float = DEFAULT_L2,
        ranking: dict[str, float] | None = None,
    ) -> pd.DataFrame:
        """Recommendations for someone the model has never seen.

        With a ranking part (``model.net.ranking_dim > 0``), the list is its scores for
        someone who watched the liked and rated movies, as the evaluation of new users ranks
        them, each movie with its reason; the predicted ratings come from the fold-in below.
        Without one, the list is ranked by the fold-in's predicted ratings plus popularity.

        Their ratings (``rated``: "Title=4.5"; each liked title counts as ``LIKED_RATING``)
        are folded in as :func:`movrec.evaluation.fold_in.fold_in` does on the cold_users
        split: only a user vector and bias are fitted, pulled towards the learned unknown user.
        Movies are ranked as that evaluation ranks them (``ranking``: the weights of
        :data:`movrec.evaluation.fold_in.RANKING_GRID`, default :data:`DEFAULT_RANKING`):
        predicted rating plus the log of all-time and of recent popularity, "recent" being the
        years up to the last training rating (the data's now). Genres restrict the candidates
        to those genres.
        """
        self._need_users()
        if not likes and not genres and not rated:
            raise UserError("new-user needs --likes, --rated and/or --genres")
        pairs = [(t, LIKED_RATING) for t in likes] + [self._rated(r) for r in rated]
        rows = torch.tensor([self.find(t) for t, _ in pairs], dtype=torch.long)
        ratings = torch.tensor([r for _, r in pairs], dtype=torch.float32)
        users = torch.zeros(len(rows), dtype=torch.long)
        if len(rows):
            vector, bias = fold_in(self.model, self.tensors, users, rows, ratings, 1, l2)
        else:
            vector, bias = (t[None] for t in self.model.unknown_user())
        predicted = model_scores(self.model, self.tensors, vector, bias)(torch.tensor([0]))[0]
        exclude = torch.zeros(len(self.labels), dtype=torch.bool)
        exclude[rows] = True
        if genres:
            exclude |= ~self.genre_mask(genres)
        if self.model.ranks:
            reasons = [f"you liked {t}" for t in likes]
            reasons += [f"you rated {t} {r:g}" for t, r in pairs[len(likes) :]]
            return self.ranked_table(rows, reasons, exclude, k, predicted)
        seen, _ = self.datamodule.user_ratings()
        ranking = {**DEFAULT_RANKING, **(ranking or {})}
        movie_ids = pd.Index(self.labels["movie_id"])
        now = np.array([seen["timestamp"].max()])
        recent = RecentPopularity(seen, movie_ids).counts(now, ranking["recent_years"])[0]
        prior = popularity_prior(ranking, popularity_scores(seen, movie_ids), recent)
        ranked_by = predicted + prior.to(predicted.dtype)
        return self.table(
            ranked_by, exclude, k, "predicted_rating", shown=self.model.clip(predicted)
        )

    def _rated(self, text: str) -> tuple[str, float]:
        """("Alien", 4.5) from "Alien=4.5"; the rating a number within the training range."""
        title, sep, value = text.rpartition("=")
        try:
            if not sep or not title.strip():
                raise ValueError
            rating = float(value)
        except ValueError:
            message = f"--rated takes TITLE=RATING (e.g. 'Alien=4.5'), got {text!r}"
            raise UserError(message) from None
        low, high = self.model.rating_range or (-math.inf, math.inf)
        if not low <= rating <= high:  # NaN fails this too
            raise UserError(
                f"--rated {text!r}: the rating must be a number from {low:g} to {high:g} "
                "(the training ratings' range)"
            )
        return title.strip(), rating
