"""Movie metadata features (the paper's Chapter 3), fitted on the training split only.

Groups, each switchable: ``numeric`` (budget, revenue, popularity, runtime, vote_count, release
year / month / age; zero budget, revenue or runtime means unknown and gets a missing flag; log1p,
training-median fill, standard scaling, correlation pruning, optional PCA), ``categorical``
(genres multi-hot, original language and production companies top-k one-hot with an "other"
bucket), ``text`` (overview, keywords, tagline as pooled GloVe vectors) and ``credits`` (director
and top-billed cast multi-hot). ``vote_average``, the target, is never a feature.

The fitted state is plain Python data so it travels in the checkpoint with the rest.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from movrec.data.glove import WordVectors
from movrec.data.tmdb import TARGET, CleaningReport
from movrec.data.vocab import tokenize
from movrec.errors import UserError

NUMERIC_COLUMNS = ("budget", "revenue", "popularity", "runtime", "vote_count")
LOG_COLUMNS = ("budget", "revenue", "popularity", "vote_count")
ZERO_IS_UNKNOWN = ("budget", "revenue", "runtime")
DATE_COLUMNS = ("release_year", "release_month", "movie_age")
TEXT_COLUMNS = ("overview", "keywords", "tagline")
POOLINGS = ("mean", "max")
GROUPS = ("numeric", "categorical", "text", "credits")


@dataclass
class FeatureSpec:
    """What to build; every field is a `data.features.*` config key."""

    numeric: bool = True
    categorical: bool = True
    text: bool = False
    credits: bool = True
    exclude: Sequence[str] = ()
    correlation_threshold: float | None = 0.9
    pca_variance: float | None = None
    top_languages: int = 10
    top_companies: int = 30
    top_people: int = 100
    text_pooling: str = "mean"
    text_vocabulary: int = 20000
    # TMDb's own rating as an input: only where the target is something else (MovieLens
    # ratings). Movies without votes get it as missing, with the `unrated` flag.
    vote_average: bool = False

    def __post_init__(self) -> None:
        if self.text_pooling not in POOLINGS:
            raise UserError(f"data.features.text_pooling must be one of {list(POOLINGS)}")
        if self.pca_variance is not None and not 0 < self.pca_variance <= 1:
            raise UserError(
                f"data.features.pca_variance must be in (0, 1], got {self.pca_variance}"
            )
        if TARGET in self.exclude:
            raise UserError("vote_average is the target and never a feature")
        known = set(NUMERIC_COLUMNS) | set(DATE_COLUMNS) | set(GROUPS) | set(TEXT_COLUMNS)
        known |= {"genres", "original_language", "production_companies", "director", "cast"}
        unknown = set(self.exclude) - known
        if unknown:
            raise UserError(f"data.features.exclude: unknown feature(s) {sorted(unknown)}")
        self.exclude = list(self.exclude)

    def wants(self, name: str) -> bool:
        return name not in self.exclude

    @property
    def any(self) -> bool:
        return any(getattr(self, g) for g in GROUPS)


def parse_items(cell: object, report: CleaningReport | None, column: str) -> list[dict]:
    """The dicts of a TMDb JSON list cell; a malformed cell is an empty list (counted)."""
    if not isinstance(cell, str):
        return []
    try:
        items = json.loads(cell)
        if not isinstance(items, list):
            raise ValueError
    except ValueError:
        if report is not None:
            report.add(f"{column}: malformed JSON -> empty", 1)
        return []
    return [item for item in items if isinstance(item, dict)]


def parse_names(cell: object, report: CleaningReport | None, column: str) -> list[str]:
    return [str(item["name"]) for item in parse_items(cell, report, column) if "name" in item]


def movie_labels(movies: pd.DataFrame) -> pd.DataFrame:
    """What a person reads to recognise a movie: TMDb id, title, year, genres."""
    years = movies["release_date"].astype(str).str[:4] if "release_date" in movies else ""
    return pd.DataFrame(
        {
            "movie_id": movies["movie_id"].to_numpy(),
            "title": movies["title"].to_numpy(),
            "year": pd.Series(years, index=movies.index).where(lambda y: y.str.isdigit(), ""),
            "genres": [", ".join(parse_names(c, None, "genres")) for c in movies["genres"]]
            if "genres" in movies
            else "",
        },
        index=movies.index,
    )


def _multi_hot(lists: list[list[str]], vocabulary: Sequence[str], other: bool) -> np.ndarray:
    index = {v: i for i, v in enumerate(vocabulary)}
    out = np.zeros((len(lists), len(vocabulary) + int(other)), dtype=np.float32)
    for row, names in enumerate(lists):
        for name in names:
            column = index.get(name)
            if column is not None:
                out[row, column] = 1.0
            elif other:
                out[row, -1] = 1.0
    return out


def _top(lists: list[list[str]], k: int | None, min_count: int = 1) -> list[str]:
    counts = Counter(name for names in lists for name in set(names))
    ranked = sorted(
        (c for c in counts.items() if c[1] >= min_count), key=lambda kv: (-kv[1], kv[0])
    )
    return [name for name, _ in ranked[:k]]


def _credits_people(frame: pd.DataFrame, report: CleaningReport | None) -> list[list[str]]:
    people = [[] for _ in range(len(frame))]
    if "crew" in frame.columns:
        for row, cell in enumerate(frame["crew"]):
            people[row] += [
                f"director:{item['name']}"
                for item in parse_items(cell, report, "crew")
                if item.get("job") == "Director" and "name" in item
            ]
    if "cast" in frame.columns:
        for row, cell in enumerate(frame["cast"]):
            people[row] += [f"cast:{n}" for n in parse_names(cell, report, "cast")[:5]]
    return people


class FeaturePipeline:
    """Fit on the training frame; transform any clean frame into a float32 feature matrix."""

    def __init__(self, spec: FeatureSpec, state: dict | None = None):
        self.spec = spec
        self.state = state or {}

    # ---- numeric ------------------------------------------------------------------------
    def _numeric_raw(self, frame: pd.DataFrame, report: CleaningReport | None) -> pd.DataFrame:
        out = {}
        for column in NUMERIC_COLUMNS:
            if not self.spec.wants(column) or column not in frame.columns:
                continue
            values = frame[column].astype(float)
            if column in ZERO_IS_UNKNOWN:
                values = values.mask(values == 0)
                out[f"{column}_unknown"] = values.isna().astype(float)
            elif column == "vote_count":
                # No votes: TMDb's vote_average is then 0, "no rating" -- a flag the model needs.
                out["unrated"] = (values == 0).astype(float)
            out[column] = np.log1p(values.clip(lower=0)) if column in LOG_COLUMNS else values
        if self.spec.vote_average and TARGET in frame.columns:
            rating = frame[TARGET].astype(float)
            if "vote_count" in frame.columns:
                rating = rating.mask(frame["vote_count"].astype(float) == 0)
            out[TARGET] = rating
        if "release_date" in frame.columns:
            dates = pd.to_datetime(frame["release_date"], errors="coerce", format="%Y-%m-%d")
            if report is not None:
                bad = dates.isna() & frame["release_date"].notna()
                report.add("release_date: not a date -> missing", int(bad.sum()))
            year = dates.dt.year.astype(float)
            reference = self.state.get(
                "reference_year", float(np.nanmax(year)) if year.notna().any() else 2000.0
            )
            for name, values in (
                ("release_year", year),
                ("release_month", dates.dt.month.astype(float)),
                ("movie_age", reference - year),
            ):
                if self.spec.wants(name):
                    out[name] = values
        return pd.DataFrame(out, index=frame.index)

    def _fit_numeric(self, train: pd.DataFrame, target: pd.Series) -> None:
        raw = self._numeric_raw(train, None)
        if "release_year" in raw or "movie_age" in raw:
            years = pd.to_datetime(
                train["release_date"], errors="coerce", format="%Y-%m-%d"
            ).dt.year
            self.state["reference_year"] = float(years.max())
            raw = self._numeric_raw(train, None)
        medians = raw.median().fillna(0.0)
        filled = raw.fillna(medians)
        keep = list(filled.columns)
        correlation = filled.corr().fillna(0.0)
        # Of each pair above the threshold, keep the one that tells more about the target.
        relevance = filled.corrwith(target.astype(float)).abs().fillna(0.0)
        dropped: dict[str, str] = {}
        threshold = self.spec.correlation_threshold
        if threshold is not None:
            pairs = [
                (abs(correlation.loc[a, b]), a, b)
                for i, a in enumerate(keep)
                for b in keep[i + 1 :]
                if abs(correlation.loc[a, b]) > threshold
            ]
            for r, a, b in sorted(pairs, reverse=True):
                if a in keep and b in keep:
                    weaker, stronger = (a, b) if relevance[a] < relevance[b] else (b, a)
                    keep.remove(weaker)
                    dropped[weaker] = f"|r|={r:.2f} with {stronger}"
        mean = filled[keep].mean()
        std = filled[keep].std(ddof=0).replace(0.0, 1.0)
        self.state["numeric"] = {
            "columns": keep,
            "medians": {c: float(medians[c]) for c in keep},
            "mean": [float(mean[c]) for c in keep],
            "std": [float(std[c]) for c in keep],
            "dropped_correlated": dropped,
            "correlation": {
                a: {b: float(correlation.loc[a, b]) for b in correlation} for a in correlation
            },
        }
        if self.spec.pca_variance is not None and keep:
            from sklearn.decomposition import PCA

            scaled = ((filled[keep] - mean) / std).to_numpy()
            pca = PCA(n_components=self.spec.pca_variance if self.spec.pca_variance < 1 else None)
            pca.fit(scaled)
            self.state["numeric"]["pca"] = {
                "components": pca.components_.tolist(),
                "mean": pca.mean_.tolist(),
                "explained_variance": float(pca.explained_variance_ratio_.sum()),
            }

    def _numeric(
        self, frame: pd.DataFrame, report: CleaningReport | None
    ) -> tuple[np.ndarray, list[str]]:
        fitted = self.state["numeric"]
        raw = self._numeric_raw(frame, report).reindex(columns=fitted["columns"])
        values = raw.fillna(fitted["medians"]).to_numpy(dtype=np.float64)
        values = (values - np.asarray(fitted["mean"])) / np.asarray(fitted["std"])
        names = [f"num:{c}" for c in fitted["columns"]]
        if "pca" in fitted:
            components = np.asarray(fitted["pca"]["components"])
            values = (values - np.asarray(fitted["pca"]["mean"])) @ components.T
            names = [f"pca:{i}" for i in range(len(components))]
        return values.astype(np.float32), names

    # ---- categorical and credits ----------------------------------------------------------
    def _lists(
        self, frame: pd.DataFrame, report: CleaningReport | None
    ) -> dict[str, list[list[str]]]:
        lists: dict[str, list[list[str]]] = {}
        if self.spec.categorical:
            for column in ("genres", "production_companies"):
                if self.spec.wants(column) and column in frame.columns:
                    lists[column] = [parse_names(c, report, column) for c in frame[column]]
            if self.spec.wants("original_language") and "original_language" in frame.columns:
                lists["original_language"] = [
                    [str(v)] if pd.notna(v) else [] for v in frame["original_language"]
                ]
        if self.spec.credits and ("cast" in frame.columns or "crew" in frame.columns):
            people = _credits_people(frame, report)
            if not self.spec.wants("director"):
                people = [[p for p in ps if not p.startswith("director:")] for ps in people]
            if not self.spec.wants("cast"):
                people = [[p for p in ps if not p.startswith("cast:")] for ps in people]
            lists["people"] = people
        return lists

    LIMITS = {
        "genres": None,
        "production_companies": "top_companies",
        "original_language": "top_languages",
    }

    def _fit_lists(self, train: pd.DataFrame) -> None:
        vocabularies = {}
        for name, lists in self._lists(train, None).items():
            if name == "people":
                vocabularies[name] = _top(lists, self.spec.top_people, min_count=2)
            else:
                limit = self.LIMITS[name]
                vocabularies[name] = _top(lists, getattr(self.spec, limit) if limit else None)
        self.state["vocabularies"] = vocabularies

    def _categorical(self, frame: pd.DataFrame, report: CleaningReport | None):
        blocks, names = [], []
        lists = self._lists(frame, report)
        for name, vocabulary in self.state["vocabularies"].items():
            other = name in ("production_companies", "original_language")
            rows = lists.get(name, [[] for _ in range(len(frame))])
            blocks.append(_multi_hot(rows, vocabulary, other))
            names += [f"{name}:{v}" for v in vocabulary] + ([f"{name}:other"] if other else [])
        return blocks, names

    # ---- text -----------------------------------------------------------------------------
    def _texts(
        self, frame: pd.DataFrame, column: str, report: CleaningReport | None
    ) -> list[list[str]]:
        if column not in frame.columns:
            return [[] for _ in range(len(frame))]
        if column == "keywords":
            return [tokenize(" ".join(parse_names(c, report, column))) for c in frame[column]]
        return [tokenize(c) if isinstance(c, str) and c != "Unknown" else [] for c in frame[column]]

    def _fit_text(self, train: pd.DataFrame, vectors: WordVectors | None) -> None:
        if vectors is None:
            raise UserError("data.features.text needs GloVe vectors (the glove config group)")
        columns = [c for c in TEXT_COLUMNS if self.spec.wants(c)]
        counts = Counter(w for c in columns for words in self._texts(train, c, None) for w in words)
        words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        rows = vectors.rows(words)
        found = [(w, r) for w, r in zip(words, rows, strict=True) if r >= 0][
            : self.spec.text_vocabulary
        ]
        self.state["text"] = {
            "columns": columns,
            "words": [w for w, _ in found],
            "vectors": vectors.vectors[[r for _, r in found]].tolist() if found else [],
            "dim": vectors.dim,
        }

    def _text(self, frame: pd.DataFrame, report: CleaningReport | None):
        fitted = self.state["text"]
        index = {w: i for i, w in enumerate(fitted["words"])}
        table = np.asarray(fitted["vectors"], dtype=np.float32).reshape(-1, fitted["dim"])
        blocks, names = [], []
        for column in fitted["columns"]:
            out = np.zeros((len(frame), fitted["dim"]), dtype=np.float32)
            for row, words in enumerate(self._texts(frame, column, report)):
                ids = [index[w] for w in words if w in index]
                if ids:
                    rows = table[ids]
                    out[row] = rows.mean(0) if self.spec.text_pooling == "mean" else rows.max(0)
            blocks.append(out)
            names += [f"{column}:{self.spec.text_pooling}{i}" for i in range(fitted["dim"])]
        return blocks, names

    # ---- public ---------------------------------------------------------------------------
    def fit(
        self,
        train: pd.DataFrame,
        vectors: WordVectors | None = None,
        target: pd.Series | None = None,
    ) -> FeaturePipeline:
        """``target`` (default: ``vote_average``) decides which of two correlated numeric
        columns stays. Repairs are counted when frames are transformed, not here."""
        self.state = {}
        if self.spec.numeric:
            self._fit_numeric(train, train[TARGET] if target is None else target)
        self._fit_lists(train)
        if self.spec.text:
            self._fit_text(train, vectors)
        self.names = self._column_names()
        return self

    def transform_with_names(
        self, frame: pd.DataFrame, report: CleaningReport | None = None
    ) -> tuple[np.ndarray, list[str]]:
        if TARGET in frame.columns and not self.spec.vote_average:
            frame = frame.drop(columns=[TARGET])  # the target never reaches a feature
        blocks, names = [], []
        if "numeric" in self.state:
            values, numeric_names = self._numeric(frame, report)
            blocks.append(values)
            names += numeric_names
        categorical, categorical_names = self._categorical(frame, report)
        blocks += categorical
        names += categorical_names
        if "text" in self.state:
            text, text_names = self._text(frame, report)
            blocks += text
            names += text_names
        if not blocks:
            return np.zeros((len(frame), 0), dtype=np.float32), []
        return np.concatenate(blocks, axis=1).astype(np.float32), names

    def _column_names(self) -> list[str]:
        """Names of the output columns: what the fitted state yields for a frame with no rows."""
        return self.transform_with_names(pd.DataFrame(columns=["title"]))[1]

    def transform(self, frame: pd.DataFrame, report: CleaningReport | None = None) -> np.ndarray:
        return self.transform_with_names(frame, report)[0]

    def summary(self) -> dict:
        """Width, and the Chapter 3 correlation analysis of the numeric block (train split)."""
        numeric = self.state.get("numeric", {})
        return {
            "n": len(self.names),
            "numeric_columns": numeric.get("columns", []),
            "dropped_correlated": numeric.get("dropped_correlated", {}),
            "correlation": numeric.get("correlation", {}),
            "pca_explained_variance": numeric.get("pca", {}).get("explained_variance"),
        }

    def correlation_table(self) -> str:
        matrix = pd.DataFrame(self.state.get("numeric", {}).get("correlation", {}))
        return matrix.round(2).to_string() if not matrix.empty else "(no numeric features)"

    def state_dict(self) -> dict:
        return {"spec": {**self.spec.__dict__}, "state": self.state}

    @classmethod
    def from_state(cls, state: dict) -> FeaturePipeline:
        pipeline = cls(FeatureSpec(**state["spec"]), state["state"])
        pipeline.names = pipeline._column_names()
        return pipeline
