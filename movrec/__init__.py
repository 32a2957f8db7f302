"""movrec: hybrid movie rating prediction with transfer learning (Lightning + Hydra).

The public classes are importable from here; they load on first use, so ``import movrec``
stays cheap (no torch until a class is needed).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "RatingRegressor": "movrec.models.regressor",
    "RatingNet": "movrec.models.components",
    "MoviesDataModule": "movrec.data",
    "RatingsDataModule": "movrec.data",
    "TmdbFiles": "movrec.data",
    "TmdbSynthetic": "movrec.data",
    "MovielensFiles": "movrec.data",
    "MovielensSynthetic": "movrec.data",
    "Checkpoint": "movrec.serving.checkpoint",
    "RatingPredictor": "movrec.serving.predict",
    "Recommender": "movrec.serving.recommender",
    "UserError": "movrec.errors",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'movrec' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
