"""Data side of movrec: sources, cleaning, splits, fitted preprocessing, two datamodules.

Knows nothing about models.
"""

from movrec.data.base import FittedDataModule
from movrec.data.movies_datamodule import MoviesDataModule
from movrec.data.ratings_datamodule import RatingsDataModule
from movrec.data.sources import MovielensFiles, MovielensSynthetic, TmdbFiles, TmdbSynthetic

# A checkpoint stores a datamodule's state under its class name: how it is found again.
DATAMODULES: dict[str, type[FittedDataModule]] = {
    cls.__qualname__: cls for cls in (MoviesDataModule, RatingsDataModule)
}

__all__ = [
    "DATAMODULES",
    "FittedDataModule",
    "MovielensFiles",
    "MovielensSynthetic",
    "MoviesDataModule",
    "RatingsDataModule",
    "TmdbFiles",
    "TmdbSynthetic",
]
