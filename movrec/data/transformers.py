"""Scikit-learn transformers for what the library has no class for: pruning correlated
columns by relevance to the target, top-k multi-hot lists with an "other" bucket, and pooled
word vectors. Fitted on the training split; pickled with the rest of the preprocessing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from movrec.data.glove import WordVectors


class CorrelationFilter(TransformerMixin, BaseEstimator):
    """Of each pair of columns with |r| above ``threshold`` (training split), keep the one that
    correlates more with the target (the paper's Chapter 3 correlation analysis)."""

    def __init__(self, threshold: float | None = 0.9):
        self.threshold = threshold

    def fit(self, X: pd.DataFrame, y: pd.Series | np.ndarray | None = None) -> CorrelationFilter:
        correlation = X.corr().fillna(0.0)
        target = pd.Series(np.zeros(len(X)) if y is None else np.asarray(y, dtype=float))
        relevance = X.reset_index(drop=True).corrwith(target).abs().fillna(0.0)
        keep, dropped = list(X.columns), {}
        if self.threshold is not None:
            pairs = [
                (abs(correlation.loc[a, b]), a, b)
                for i, a in enumerate(keep)
                for b in keep[i + 1 :]
                if abs(correlation.loc[a, b]) > self.threshold
            ]
            for r, a, b in sorted(pairs, reverse=True):
                if a in keep and b in keep:
                    weaker, stronger = (a, b) if relevance[a] < relevance[b] else (b, a)
                    keep.remove(weaker)
                    dropped[weaker] = f"|r|={r:.2f} with {stronger}"
        self.correlation_ = correlation
        self.keep_, self.dropped_ = keep, dropped
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[self.keep_]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(self.keep_, dtype=object)


class TopLabels(TransformerMixin, BaseEstimator):
    """Multi-hot of list cells over the ``top_k`` most frequent training labels (at least
    ``min_count`` movies each); with ``other``, one more column for any label not kept."""

    def __init__(self, top_k: int | None = None, min_count: int = 1, other: bool = False):
        self.top_k, self.min_count, self.other = top_k, min_count, other

    def fit(self, X: pd.Series, y=None) -> TopLabels:
        counts = Counter(label for labels in X for label in set(labels))
        ranked = sorted(
            (c for c in counts.items() if c[1] >= self.min_count), key=lambda kv: (-kv[1], kv[0])
        )
        self.classes_ = [label for label, _ in ranked[: self.top_k]]
        return self

    def transform(self, X: pd.Series) -> np.ndarray:
        index = {label: i for i, label in enumerate(self.classes_)}
        out = np.zeros((len(X), len(self.classes_) + int(self.other)), dtype=np.float32)
        for row, labels in enumerate(X):
            for label in labels:
                column = index.get(label)
                if column is not None:
                    out[row, column] = 1.0
                elif self.other:
                    out[row, -1] = 1.0
        return out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(self.classes_ + (["other"] if self.other else []), dtype=object)


class PooledWordVectors(TransformerMixin, BaseEstimator):
    """Each text column (cells: token lists) as the mean or max of its words' GloVe vectors.
    Keeps only the ``vocabulary`` most frequent training words found in ``source``; the
    source itself is not pickled (400k vectors), only the rows kept."""

    def __init__(self, source: WordVectors | None = None, pooling: str = "mean", vocabulary=20000):
        self.source, self.pooling, self.vocabulary = source, pooling, vocabulary

    def fit(self, X: pd.DataFrame, y=None) -> PooledWordVectors:
        counts = Counter(w for column in X for words in X[column] for w in words)
        words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        rows = self.source.rows(words)
        found = [(w, r) for w, r in zip(words, rows, strict=True) if r >= 0][: self.vocabulary]
        self.words_ = {w: i for i, (w, _) in enumerate(found)}
        self.table_ = self.source.vectors[[r for _, r in found]].astype(np.float32)
        self.dim_, self.columns_ = self.source.dim, list(X.columns)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        blocks = []
        for column in self.columns_:
            out = np.zeros((len(X), self.dim_), dtype=np.float32)
            for row, words in enumerate(X[column]):
                ids = [self.words_[w] for w in words if w in self.words_]
                if ids:
                    vectors = self.table_[ids]
                    out[row] = vectors.mean(0) if self.pooling == "mean" else vectors.max(0)
            blocks.append(out)
        return np.concatenate(blocks, axis=1)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(
            [f"{c}:{self.pooling}{i}" for c in self.columns_ for i in range(self.dim_)],
            dtype=object,
        )

    def __getstate__(self) -> dict:
        return {**self.__dict__, "source": None}
