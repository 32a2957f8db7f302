"""movrec: hybrid movie rating prediction with transfer learning (Lightning + Hydra)."""

__version__ = "0.1.0"
