"""Movie metadata features (the paper's Chapter 3), fitted on the training split only.

Groups, each switchable: ``numeric`` (budget, revenue, popularity, runtime, vote_count, release
year / month / age; zero budget, revenue or runtime means unknown and is flagged; log1p,
training-median fill with a flag for other cells missing in training, correlation pruning,
standard or quantile scaling, optional PCA),
``categorical`` (genres multi-hot, original language one-hot with an "other" column,
production companies top-k with an "other" bucket), ``text`` (overview, keywords, tagline as
pooled GloVe vectors) and ``credits`` (director and top-billed cast). ``vote_average``, the
target, is never a feature unless the target is something else (user ratings).

Cells are parsed into a plain frame here (repairs counted) and fitted by a scikit-learn
``ColumnTransformer``, whose fitted parameters are then kept as plain arrays
(:mod:`movrec.data.feature_blocks`): the checkpoint holds numbers, never a pickle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, QuantileTransformer, StandardScaler

from movrec.data import feature_blocks
from movrec.data.cells import parse_names, people, release_dates, words
from movrec.data.feature_spec import LIST_COLUMNS, NUMERIC_COLUMNS, TEXT_COLUMNS, FeatureSpec
from movrec.data.glove import WordVectors
from movrec.data.tmdb import TARGET, CleaningReport
from movrec.data.transformers import CorrelationFilter, PooledWordVectors, TopLabels
from movrec.errors import UserError

LOG_COLUMNS = ("budget", "revenue", "popularity", "vote_count")
ZERO_IS_UNKNOWN = ("budget", "revenue", "runtime")


def numeric_frame(
    frame: pd.DataFrame, spec: FeatureSpec, reference_year: float, report: CleaningReport | None
) -> pd.DataFrame:
    """Numbers as the model should see them; unknown values are NaN (filled when fitted)."""
    out = {}
    for column in NUMERIC_COLUMNS:
        if not spec.wants(column) or column not in frame.columns:
            continue
        values = frame[column].astype(float)
        if column in ZERO_IS_UNKNOWN:
            values = values.mask(values == 0)
            # Always a column, so an unknown budget is flagged even if training had none;
            # the imputer flags other cells missing in training (`_missing`).
            out[f"{column}_unknown"] = values.isna().astype(float)
        elif column == "vote_count":
            # No votes: TMDb's vote_average is then 0, "no rating" -- a flag the model needs.
            out["unrated"] = (values == 0).astype(float)
        out[column] = np.log1p(values.clip(lower=0)) if column in LOG_COLUMNS else values
    if spec.vote_average and TARGET in frame.columns:
        rating = frame[TARGET].astype(float)
        if "vote_count" in frame.columns:
            rating = rating.mask(frame["vote_count"].astype(float) == 0)
        out[TARGET] = rating
    if "release_date" in frame.columns:
        dates = release_dates(frame)
        if report is not None:
            bad = dates.isna() & frame["release_date"].notna()
            report.add("release_date: not a date -> missing", int(bad.sum()))
        year = dates.dt.year.astype(float)
        for name, values in (
            ("release_year", year),
            ("release_month", dates.dt.month.astype(float)),
            ("movie_age", reference_year - year),
        ):
            if spec.wants(name):
                out[name] = values
    return pd.DataFrame(out, index=frame.index)


def numeric_pipeline(spec: FeatureSpec, n_rows: int) -> Pipeline:
    """Median fill with a missing flag, correlation pruning, scaling, optional PCA."""
    impute = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    scaler = (
        StandardScaler()
        if spec.numeric_scaler == "standard"
        else QuantileTransformer(output_distribution="normal", n_quantiles=min(1000, n_rows))
    )
    steps = [("impute", impute), ("prune", CorrelationFilter(spec.correlation_threshold))]
    steps.append(("scale", scaler))
    if spec.pca_variance is not None:
        steps.append(("pca", PCA(spec.pca_variance if spec.pca_variance < 1 else None)))
    return Pipeline(steps).set_output(transform="pandas")


def plain_name(column: object) -> str:
    """A fitted column's name without the parts' prefixes; imputer flags end in ``_missing``."""
    name = str(column).removeprefix("num:").removeprefix("text:")
    if name.startswith("missingindicator_num:"):
        return name.removeprefix("missingindicator_num:") + "_missing"
    return name


class FeaturePipeline:
    """Fit on the training frame; transform any clean frame into a float32 feature matrix."""

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        self.reference_year = 2000.0
        self.parts: list[tuple[str, feature_blocks.Block, list[str]]] = []
        self.numeric_columns: list[str] | None = None
        self.names: list[str] = []

    def frame(self, movies: pd.DataFrame, report: CleaningReport | None = None) -> pd.DataFrame:
        """The parsed columns every fitted part reads (malformed cells counted in ``report``)."""
        spec, parts = self.spec, {}
        if TARGET in movies.columns and not spec.vote_average:
            movies = movies.drop(columns=[TARGET])  # the target never reaches a feature
        if spec.numeric:
            numbers = numeric_frame(movies, spec, self.reference_year, report)
            if self.numeric_columns is not None:  # fitted: absent columns are missing values
                numbers = numbers.reindex(columns=self.numeric_columns)
            parts.update({f"num:{c}": numbers[c] for c in numbers})
        if spec.categorical:
            for column in LIST_COLUMNS:
                if spec.wants(column):
                    cells = movies[column] if column in movies else [None] * len(movies)
                    parts[column] = [parse_names(c, report, column) for c in cells]
            if spec.wants("original_language"):
                language = movies.get("original_language", pd.Series(index=movies.index))
                parts["original_language"] = language.fillna("missing").astype(str)
        if spec.credits:
            found = people(movies, report)
            kept = [p for p in ("director", "cast") if spec.wants(p)]
            parts["people"] = [[p for p in ps if p.split(":")[0] in kept] for ps in found]
        if spec.text:
            for column in (c for c in TEXT_COLUMNS if spec.wants(c)):
                parts[f"text:{column}"] = words(movies, column, report)
        return pd.DataFrame(parts, index=movies.index)

    def parsed_columns(self) -> set[str]:
        """The TMDb list columns :meth:`frame` parses (and counts malformed cells of)."""
        spec, columns = self.spec, set()
        if spec.categorical:
            columns |= {c for c in LIST_COLUMNS if spec.wants(c)}
        if spec.credits:
            columns |= {"crew", "cast"}
        if spec.text and spec.wants("keywords"):
            columns.add("keywords")
        return columns

    def _parts(self, frame: pd.DataFrame, vectors: WordVectors | None) -> list[tuple]:
        spec, parts = self.spec, []
        numeric = [c for c in frame.columns if c.startswith("num:")]
        if numeric:
            parts.append(("num", numeric_pipeline(spec, len(frame)), numeric))
        limits = {"genres": None, "production_companies": spec.top_companies}
        for column, limit in limits.items():
            if column in frame:
                other = column == "production_companies"
                parts.append((column, TopLabels(limit, other=other), column))
        if "original_language" in frame:
            # Most frequent first (ties by name), the rest in one "other" column.
            counts = frame["original_language"].value_counts()
            order = sorted(counts.index, key=lambda v: (-counts[v], v))
            language = OneHotEncoder(
                categories=[order], max_categories=spec.top_languages + 1,
                handle_unknown="infrequent_if_exist", sparse_output=False, dtype=np.float32,
            )  # fmt: skip
            parts.append(("original_language", language, ["original_language"]))
        if "people" in frame:
            parts.append(("people", TopLabels(spec.top_people, min_count=2), "people"))
        text = [c for c in frame.columns if c.startswith("text:")]
        if text:
            if vectors is None:
                raise UserError("data.features.text needs GloVe vectors (the glove config group)")
            pooled = PooledWordVectors(vectors, spec.text_pooling, spec.text_vocabulary)
            parts.append(("text", pooled, text))
        return parts

    def fit(
        self,
        train: pd.DataFrame,
        vectors: WordVectors | None = None,
        target: pd.Series | None = None,
    ) -> FeaturePipeline:
        """``target`` (default: ``vote_average``) decides which of two correlated numeric
        columns stays. Repairs are counted when frames are transformed, not here."""
        target = train[TARGET] if target is None else target
        if "release_date" in train.columns:
            years = release_dates(train).dt.year
            self.reference_year = float(years.max()) if years.notna().any() else 2000.0
        self.numeric_columns = None
        frame = self.frame(train)
        if numeric := [c for c in frame.columns if c.startswith("num:")]:
            self.numeric_columns = [c.removeprefix("num:") for c in numeric]
        parts = self._parts(frame, vectors)
        if not parts:
            raise UserError("data.features: every feature is switched off or excluded")
        transformer = ColumnTransformer(parts, sparse_threshold=0)
        self.use(transformer.fit(frame, target.to_numpy(dtype=np.float64)))
        return self

    def use(self, transformer: ColumnTransformer) -> None:
        """Keep the fitted transformer's parameters as plain blocks (and its column names)."""
        self.parts = feature_blocks.export(transformer)
        names = []
        for part, fitted, _ in transformer.transformers_:
            if part == "remainder":
                continue
            for name in map(plain_name, fitted.get_feature_names_out()):
                name = name.removeprefix(f"{part}_").replace("infrequent_sklearn", "other")
                names.append(name if part == "text" else f"{part}:{name}")
        self.names = names

    @property
    def n_numeric(self) -> int:
        """How many leading output columns are numbers (the numeric block comes first)."""
        return sum(name.startswith("num:") for name in self.names)

    def transform(self, frame: pd.DataFrame, report: CleaningReport | None = None) -> np.ndarray:
        values = feature_blocks.transform(self.parts, self.frame(frame, report))
        return values.astype(np.float32)

    def summary(self) -> dict:
        """Width, and the Chapter 3 correlation analysis of the numeric block (train split)."""
        out = {"n": len(self.names), "numeric_columns": [], "dropped_correlated": {},
               "correlation": {}, "pca_explained_variance": None}  # fmt: skip
        numeric = next((b for n, b, _ in self.parts if n == "num"), None)
        if numeric is None:
            return out
        fitted = numeric.summary()
        plain = {c: plain_name(c) for c in fitted["correlation"].columns}
        out["numeric_columns"] = [plain[c] for c in fitted["kept"]]
        out["dropped_correlated"] = {plain[k]: v for k, v in fitted["dropped"].items()}
        out["correlation"] = fitted["correlation"].rename(index=plain, columns=plain).to_dict()
        out["pca_explained_variance"] = fitted["pca_explained_variance"]
        return out

    def correlation_table(self) -> str:
        matrix = pd.DataFrame(self.summary()["correlation"])
        return matrix.round(2).to_string() if not matrix.empty else "(no numeric features)"

    def state_dict(self) -> dict:
        return {
            "spec": {**self.spec.__dict__},
            "reference_year": self.reference_year,
            "numeric_columns": self.numeric_columns,
            "names": list(self.names),
            "parts": feature_blocks.state_dict(self.parts),
        }

    @classmethod
    def from_state(cls, state: dict) -> FeaturePipeline:
        pipeline = cls(FeatureSpec(**state["spec"]))
        pipeline.reference_year = state["reference_year"]
        pipeline.numeric_columns = state["numeric_columns"]
        pipeline.names = list(state["names"])
        pipeline.parts = feature_blocks.from_state(state["parts"])
        return pipeline
