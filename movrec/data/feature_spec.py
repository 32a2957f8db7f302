"""What metadata features to build: the ``data.features.*`` config, checked when it is made."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from movrec.data.tmdb import TARGET
from movrec.errors import UserError

NUMERIC_COLUMNS = ("budget", "revenue", "popularity", "runtime", "vote_count")
DATE_COLUMNS = ("release_year", "release_month", "movie_age")
TEXT_COLUMNS = ("overview", "keywords", "tagline")
LIST_COLUMNS = ("genres", "production_companies")
GROUPS = ("numeric", "categorical", "text", "credits")
SCALERS = ("standard", "quantile")
POOLINGS = ("mean", "max")


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
    numeric_scaler: str = "standard"  # standard | quantile (to a normal distribution)
    text_vocabulary: int = 20000
    # TMDb's own rating as an input: only where the target is something else (MovieLens
    # ratings). Movies without votes get it as missing, with the `unrated` flag.
    vote_average: bool = False
    # Director, cast, companies and keywords as a bag of learned tag embeddings (the network's
    # `tags` input; trees ignore it): the `tags` most frequent of those on >= 2 training
    # movies, at most `tag_length` per movie. 0 = none.
    tags: int = 0
    tag_length: int = 40

    def __post_init__(self) -> None:
        if self.text_pooling not in POOLINGS:
            raise UserError(f"data.features.text_pooling must be one of {list(POOLINGS)}")
        if self.numeric_scaler not in SCALERS:
            raise UserError(f"data.features.numeric_scaler must be one of {list(SCALERS)}")
        if self.pca_variance is not None and not 0 < self.pca_variance <= 1:
            raise UserError(
                f"data.features.pca_variance must be in (0, 1], got {self.pca_variance}"
            )
        if self.tags < 0 or self.tag_length < 1:
            raise UserError(
                "data.features.tags must be >= 0 and data.features.tag_length >= 1, got "
                f"{self.tags} and {self.tag_length}"
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
