"""Shared fixtures: configs composed from conf/ as `train.py` would, on small synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
ROOT = Path(__file__).resolve().parents[1]


def make_cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    """The train config on small synthetic data, writing only under ``tmp_path``."""
    chosen_data = [o for o in overrides if o.startswith("data=")]
    data = [] if chosen_data else ["data=synthetic", "data.movies.n_movies=1200"]
    base = [
        *data,
        "logger=none",
        f"paths.output_dir={tmp_path}",
        f"paths.log_dir={tmp_path}/logs",
        f"paths.cache_dir={tmp_path}/cache",
        "trainer=cpu",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[*base, *overrides])


@pytest.fixture
def cfg_factory(tmp_path):
    def factory(*overrides: str) -> DictConfig:
        return make_cfg(tmp_path, *overrides)

    return factory


def same_fit(a, b, frame) -> bool:
    """Two fitted preprocessings are the same: equal plain state, and equal feature matrices
    for ``frame`` (fitted scikit-learn objects have no equality of their own)."""
    state_a, state_b = a.state_dict(), b.state_dict()
    features_a, features_b = state_a.pop("features"), state_b.pop("features")
    if state_a != state_b or (features_a is None) != (features_b is None):
        return False
    if features_a is None:
        return True
    return (
        features_a["spec"] == features_b["spec"]
        and a.features.names == b.features.names
        and np.array_equal(a.features.transform(frame), b.features.transform(frame))
    )
