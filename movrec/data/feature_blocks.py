"""The fitted feature transforms as plain arrays, so a checkpoint holds numbers, not pickles.

scikit-learn fits the features (:mod:`movrec.data.features`); :func:`export` then copies each
fitted part's parameters (medians, kept columns, scaler and PCA parameters, label lists, word
vectors) into a block that transforms with numpy alone, doing sklearn's arithmetic in sklearn's
order. A block's state is tensors, strings and numbers: what ``torch.load(weights_only=True)``
reads. ``tests/test_features.py`` checks every block against the sklearn object it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import QuantileTransformer

# sklearn's QuantileTransformer: values this close to the training extremes map to them.
QUANTILE_BOUND = 1e-7


def _array(values: Any) -> torch.Tensor:
    return torch.tensor(np.asarray(values, dtype=np.float64))


class NumericBlock:
    """Median fill with missing flags, correlation pruning, standard or quantile scaling and
    optional PCA over the ``num:*`` columns, in that order."""

    kind = "numeric"

    def __init__(self, state: dict[str, Any]):
        self.state = state
        self.medians = state["medians"].numpy()
        self.flagged = list(state["flagged"])
        self.keep = list(state["keep"])

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline) -> NumericBlock:
        impute, prune = pipeline.named_steps["impute"], pipeline.named_steps["prune"]
        scale, pca = pipeline.named_steps["scale"], pipeline.named_steps.get("pca")
        imputed = [str(c) for c in impute.get_feature_names_out()]
        state: dict[str, Any] = {
            "medians": _array(impute.statistics_),
            "flagged": [int(i) for i in impute.indicator_.features_],
            "keep": [imputed.index(c) for c in prune.keep_],
            "kept_names": [str(c) for c in prune.keep_],
            "dropped": {str(k): str(v) for k, v in prune.dropped_.items()},
            "correlation_names": [str(c) for c in prune.correlation_.columns],
            "correlation": _array(prune.correlation_.to_numpy()),
        }
        if isinstance(scale, QuantileTransformer):
            state["scaler"] = {"quantiles": _array(scale.quantiles_),
                               "references": _array(scale.references_)}  # fmt: skip
        else:
            state["scaler"] = {"mean": _array(scale.mean_), "scale": _array(scale.scale_)}
        if pca is not None:
            state["pca"] = {"mean": _array(pca.mean_), "components": _array(pca.components_),
                            "explained": float(pca.explained_variance_ratio_.sum())}  # fmt: skip
        return cls(state)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        values = frame.to_numpy(dtype=np.float64)
        missing = np.isnan(values)
        values = np.where(missing, self.medians, values)
        values = np.hstack([values, missing[:, self.flagged].astype(np.float64)])[:, self.keep]
        scaler = self.state["scaler"]
        if "quantiles" in scaler:
            values = self._quantiles(values, scaler)
        else:
            values -= scaler["mean"].numpy()
            values /= scaler["scale"].numpy()
        pca = self.state.get("pca")
        if pca is not None:
            components = pca["components"].numpy()
            projected = values @ components.T
            projected -= pca["mean"].numpy().reshape(1, -1) @ components.T
            values = projected
        return values

    @staticmethod
    def _quantiles(values: np.ndarray, scaler: dict[str, torch.Tensor]) -> np.ndarray:
        """sklearn's forward transform to a normal distribution, column by column."""
        quantiles, references = scaler["quantiles"].numpy(), scaler["references"].numpy()
        low = stats.norm.ppf(QUANTILE_BOUND - np.spacing(1))
        high = stats.norm.ppf(1 - (QUANTILE_BOUND - np.spacing(1)))
        out = np.empty_like(values)
        for j in range(values.shape[1]):
            column, q = values[:, j].copy(), quantiles[:, j]
            below = column - QUANTILE_BOUND < q[0]
            above = column + QUANTILE_BOUND > q[-1]
            finite = ~np.isnan(column)
            x = column[finite]
            column[finite] = 0.5 * (
                np.interp(x, q, references) - np.interp(-x, -q[::-1], -references[::-1])
            )
            column[above], column[below] = 1, 0
            out[:, j] = np.clip(stats.norm.ppf(column), low, high)
        return out

    def summary(self) -> dict[str, Any]:
        names = self.state["correlation_names"]
        matrix = self.state["correlation"].numpy()
        pca = self.state.get("pca")
        return {
            "kept": list(self.state["kept_names"]),
            "dropped": dict(self.state["dropped"]),
            "correlation": pd.DataFrame(matrix, index=names, columns=names),
            "pca_explained_variance": pca["explained"] if pca else None,
        }


class LabelBlock:
    """Multi-hot over fitted labels; with ``other``, one more column for any label not kept.
    One-hot columns (a language) are the same with one label per cell."""

    kind = "labels"

    def __init__(self, state: dict[str, Any]):
        self.state = state
        self.index = {label: i for i, label in enumerate(state["labels"])}

    @classmethod
    def of(cls, labels: Sequence[str], other: bool, single: bool = False) -> LabelBlock:
        return cls({"labels": [str(v) for v in labels], "other": bool(other), "single": single})

    def transform(self, cells: pd.Series) -> np.ndarray:
        if self.state["single"]:
            cells = cells.map(lambda value: [value])
        other = self.state["other"]
        out = np.zeros((len(cells), len(self.index) + int(other)), dtype=np.float32)
        for row, labels in enumerate(cells):
            for label in labels:
                column = self.index.get(label)
                if column is not None:
                    out[row, column] = 1.0
                elif other:
                    out[row, -1] = 1.0
        return out


class WordVectorBlock:
    """Each text column as the mean or max of its kept words' GloVe vectors."""

    kind = "words"

    def __init__(self, state: dict[str, Any]):
        self.state = state
        self.index = {w: i for i, w in enumerate(state["words"])}
        self.table = state["table"].numpy()

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        mean = self.state["pooling"] == "mean"
        blocks = []
        for column in frame.columns:
            out = np.zeros((len(frame), self.table.shape[1]), dtype=np.float32)
            for row, words in enumerate(frame[column]):
                ids = [self.index[w] for w in words if w in self.index]
                if ids:
                    vectors = self.table[ids]
                    out[row] = vectors.mean(0) if mean else vectors.max(0)
            blocks.append(out)
        return np.concatenate(blocks, axis=1)


BLOCKS = {b.kind: b for b in (NumericBlock, LabelBlock, WordVectorBlock)}
Block = NumericBlock | LabelBlock | WordVectorBlock


def export(transformer: ColumnTransformer) -> list[tuple[str, Block, list[str]]]:
    """Each fitted part of ``transformer`` as (part name, block, the frame columns it reads)."""
    parts = []
    for name, fitted, columns in transformer.transformers_:
        if name == "remainder":
            continue
        columns = [columns] if isinstance(columns, str) else list(columns)
        if name == "num":
            block: Block = NumericBlock.from_pipeline(fitted)
        elif name == "original_language":
            infrequent = fitted.infrequent_categories_[0]
            kept = [c for c in fitted.categories_[0] if infrequent is None or c not in infrequent]
            block = LabelBlock.of(kept, other=infrequent is not None, single=True)
        elif name == "text":
            block = WordVectorBlock({
                "words": list(fitted.words_), "table": torch.tensor(fitted.table_),
                "pooling": fitted.pooling,
            })  # fmt: skip
        else:
            block = LabelBlock.of(fitted.classes_, other=fitted.other)
        parts.append((name, block, columns))
    return parts


def transform(parts: list[tuple[str, Block, list[str]]], frame: pd.DataFrame) -> np.ndarray:
    """The blocks' outputs side by side, as the ColumnTransformer stacked them."""
    outputs = []
    for _, block, columns in parts:
        cells = frame[columns[0]] if isinstance(block, LabelBlock) else frame[columns]
        outputs.append(np.asarray(block.transform(cells), dtype=np.float64))
    return np.concatenate(outputs, axis=1)


def state_dict(parts: list[tuple[str, Block, list[str]]]) -> list[dict[str, Any]]:
    return [{"name": n, "kind": b.kind, "columns": c, "state": b.state} for n, b, c in parts]


def from_state(state: list[dict[str, Any]]) -> list[tuple[str, Block, list[str]]]:
    return [(p["name"], BLOCKS[p["kind"]](p["state"]), list(p["columns"])) for p in state]
