"""What Hydra needs from movrec, registered when :mod:`movrec.run` is imported: the resolvers
``conf/`` uses, and the code's defaults as config schemas.

The defaults of a setting live in one place, the signature of the class it configures
(:class:`RatingNet`, :class:`RatingRegressor`, :class:`FeatureSpec`, the datamodules, the
synthetic sources). Each is stored as a config (group ``schema``) that a YAML file composes
under itself (``- /schema/net@net``), so the YAML lists only what it changes while Hydra still
knows every key: ``model.net.dropout=0.2`` works, ``model.net.dropuot=0.2`` fails.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from movrec.data import MovielensSynthetic, MoviesDataModule, RatingsDataModule, TmdbSynthetic
from movrec.data.feature_spec import FeatureSpec
from movrec.errors import USER_ERROR_EXIT_CODE
from movrec.models.components import RatingNet
from movrec.models.regressor import NET_SIZES, RatingRegressor


def unique_dir(path: str) -> str:
    """``path``, or ``path_2``, ``path_3``, ...: the first folder this call creates itself.

    Run folders are named by the second they start in; two runs started in the same second
    would share one (and overwrite each other's metrics and checkpoints). ``mkdir`` either
    creates the folder or fails, also between processes, so each caller owns the one it
    gets. Cached per config, so a run resolves its folder once.
    """
    base = Path(path)
    candidate, n = base, 1
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                candidate.mkdir()
                return str(candidate)
            except FileExistsError:
                if not base.parent.is_dir():
                    raise
                n += 1
                candidate = base.with_name(f"{base.name}_{n}")
    except OSError as error:
        # Resolved inside Hydra, before any movrec code could report it: one line, exit 2.
        reason = error.strerror or type(error).__name__
        hint = "set paths.log_dir or MOVREC_LOG_DIR to a writable folder"
        print(f"movrec: error: cannot create {candidate}: {reason} ({hint})", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT_CODE) from None


FOLDER_NAME_LIMIT = 120  # file systems refuse names over 255 bytes; long sweeps reach that


def folder_name(text: str, limit: int = FOLDER_NAME_LIMIT) -> str:
    """``text``, or its first characters and a hash of the whole when it is too long for a
    folder name (a sweep job's overrides; the full list is in its .hydra/overrides.yaml).
    A config group's slash (``model/scheduler=cosine``) becomes a dot: one folder per job."""
    text = text.replace("/", ".")
    if len(text) <= limit:
        return text
    return f"{text[: limit - 9]}~{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def paper_title_encoding(title_init: str) -> str:
    """experiment=paper: the paper's deep model reads len(title); its GloVe models read words."""
    return "length" if title_init == "random" else "tokens"


OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True, replace=True)
OmegaConf.register_new_resolver("folder_name", folder_name, replace=True)
OmegaConf.register_new_resolver("paper_title_encoding", paper_title_encoding, replace=True)


def defaults_of(cls: type, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keyword defaults of ``cls`` and the classes it passes ``**kwargs`` on to (its
    bases'), the subclass's winning; tuples become lists, as YAML has them."""
    defaults: dict[str, Any] = {}
    for klass in reversed([k for k in cls.__mro__ if "__init__" in vars(k)]):
        for name, parameter in inspect.signature(klass.__init__).parameters.items():
            if parameter.default is inspect.Parameter.empty or name in exclude:
                continue
            value = parameter.default
            defaults[name] = list(value) if isinstance(value, tuple) else value
    return defaults


DATA_INPUTS = ("movies", "ratings", "glove", "features")  # sources and options set by YAML
SCHEMAS = {
    "net": defaults_of(RatingNet, NET_SIZES),
    "rating_regressor": defaults_of(RatingRegressor, ("sizes", "net", "optimizer", "scheduler")),
    "features": defaults_of(FeatureSpec),
    "movies_datamodule": defaults_of(MoviesDataModule, DATA_INPUTS),
    "ratings_datamodule": defaults_of(RatingsDataModule, DATA_INPUTS),
    "tmdb_synthetic": defaults_of(TmdbSynthetic),
    "movielens_synthetic": defaults_of(MovielensSynthetic),
}
for _name, _node in SCHEMAS.items():
    ConfigStore.instance().store(group="schema", name=_name, node=_node)
