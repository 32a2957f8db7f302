"""OmegaConf resolvers the configs in ``conf/`` use; registered when ``movrec.run`` is imported."""

from __future__ import annotations

import itertools
from pathlib import Path

from omegaconf import OmegaConf


def unique_dir(path: str) -> str:
    """``path``, or ``path_2``, ``path_3``, ...: the first folder this call creates itself.

    Run folders are named by the second they start in; two runs started in the same second
    would share one (and overwrite each other's metrics and checkpoints). ``mkdir`` either
    creates the folder or fails, also between processes, so each caller owns the one it
    gets. Cached per config, so a run resolves its folder once.
    """
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        candidate = base if n == 1 else base.with_name(f"{base.name}_{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return str(candidate)
    raise AssertionError("unreachable")


def paper_title_encoding(title_init: str) -> str:
    """experiment=paper: the paper's deep model reads len(title); its GloVe models read words."""
    return "length" if title_init == "random" else "tokens"


OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True, replace=True)
OmegaConf.register_new_resolver("paper_title_encoding", paper_title_encoding, replace=True)
