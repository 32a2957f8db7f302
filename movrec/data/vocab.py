"""Token and id vocabularies, fitted on the training split and saved with the checkpoint."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from movrec.errors import UserError

PAD_INDEX = 0  # title padding; its embedding row stays zero
OOV_INDEX = 1  # title word not in the training vocabulary
UNKNOWN_ID_INDEX = 0  # movie id not seen in training

_WORD = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Lower-case words with punctuation stripped ("Spider-Man 2" -> spider, man, 2)."""
    return _WORD.findall(str(text).lower())


class TokenVocabulary:
    """The ``num_words`` most frequent training words; index 0 pads, 1 is out-of-vocabulary."""

    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        self.index = {w: i + 2 for i, w in enumerate(self.words)}

    @classmethod
    def fit(cls, texts: Iterable[str], num_words: int) -> TokenVocabulary:
        if num_words < 1:
            raise UserError(f"data.num_words must be >= 1, got {num_words}")
        counts = Counter(w for text in texts for w in tokenize(text))
        # Ties broken alphabetically so the vocabulary does not depend on row order.
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls([w for w, _ in ranked[:num_words]])

    def __len__(self) -> int:
        """Embedding rows needed, padding and OOV included."""
        return len(self.words) + 2

    def encode(self, texts: Iterable[str], length: int) -> np.ndarray:
        """Token indices, post-padded with 0 and truncated after ``length`` words."""
        texts = list(texts)
        out = np.full((len(texts), length), PAD_INDEX, dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.index.get(w, OOV_INDEX) for w in tokenize(text)[:length]]
            out[row, : len(ids)] = ids
        return out

    def state_dict(self) -> dict:
        return {"words": list(self.words)}

    @classmethod
    def from_state(cls, state: dict) -> TokenVocabulary:
        return cls(state["words"])


class TagVocabulary:
    """Tags (director, cast, company, keyword names) of at least ``min_count`` training movies,
    the ``size`` most frequent; index 0 pads. An unseen tag is left out: it says nothing."""

    def __init__(self, tags: Sequence[str]):
        self.tags = list(tags)
        self.index = {t: i + 1 for i, t in enumerate(self.tags)}

    @classmethod
    def fit(cls, lists: Iterable[Sequence[str]], size: int, min_count: int = 2) -> TagVocabulary:
        counts = Counter(t for tags in lists for t in set(tags))
        ranked = sorted(
            ((t, c) for t, c in counts.items() if c >= min_count), key=lambda tc: (-tc[1], tc[0])
        )
        return cls([t for t, _ in ranked[:size]])

    def __len__(self) -> int:
        return len(self.tags) + 1

    def encode(self, lists: Sequence[Sequence[str]], length: int) -> np.ndarray:
        """Known tag indices in list order, post-padded with 0, at most ``length`` per row."""
        out = np.full((len(lists), length), PAD_INDEX, dtype=np.int64)
        for row, tags in enumerate(lists):
            ids = [self.index[t] for t in tags if t in self.index][:length]
            out[row, : len(ids)] = ids
        return out

    def state_dict(self) -> dict:
        return {"tags": list(self.tags)}

    @classmethod
    def from_state(cls, state: dict) -> TagVocabulary:
        return cls(state["tags"])


class IdVocabulary:
    """Maps raw movie ids seen in training to 1..n; every other id maps to index 0.

    Encoding is one hash lookup per id in C: millions of ratings encode in a second."""

    def __init__(self, ids: Sequence[int]):
        self.ids = [int(i) for i in ids]
        self._index = pd.Index(np.asarray(self.ids, dtype=np.int64))

    @classmethod
    def fit(cls, ids: Iterable[int]) -> IdVocabulary:
        return cls(np.unique(_int_array(ids)).tolist())

    def __len__(self) -> int:
        return len(self.ids) + 1

    def encode(self, ids: Iterable[int]) -> np.ndarray:
        position = self._index.get_indexer(_int_array(ids))
        return np.where(position >= 0, position + 1, UNKNOWN_ID_INDEX).astype(np.int64)

    def state_dict(self) -> dict:
        return {"ids": list(self.ids)}

    @classmethod
    def from_state(cls, state: dict) -> IdVocabulary:
        return cls(state["ids"])


def _int_array(ids: Iterable[int]) -> np.ndarray:
    return np.asarray(ids if hasattr(ids, "__len__") else list(ids), dtype=np.int64)
