"""How much a validation minimum flatters the model it picks.

A network's best validation loss is the minimum of a noisy curve over ~50 epochs; a tree
model's curve over thousands of sizes is smooth. Comparing the two minima favours the noisier
curve. The cross-half loss chooses the epoch (or size) on one random half of the validation
rows and scores it on the other half, both ways, over several random halvings: an estimate of
the chosen model's loss on rows it was not chosen on, comparable across model kinds.
"""

from __future__ import annotations

import numpy as np

from movrec.errors import UserError


def cross_half_loss(squared_errors: np.ndarray, repeats: int = 20, seed: int = 0) -> float:
    """``squared_errors``: candidates (epochs, sizes) x validation rows."""
    errors = np.asarray(squared_errors, dtype=np.float64)
    if errors.ndim != 2 or errors.shape[1] < 2:
        raise UserError(
            f"cross_half_loss needs candidates x rows (>= 2 rows), got shape {errors.shape}"
        )
    rng = np.random.default_rng(seed)
    rows = errors.shape[1]
    scores = []
    for _ in range(repeats):
        order = rng.permutation(rows)
        first, second = errors[:, order[: rows // 2]], errors[:, order[rows // 2 :]]
        loss_first, loss_second = first.mean(1), second.mean(1)
        scores.append((loss_second[loss_first.argmin()] + loss_first[loss_second.argmin()]) / 2)
    return float(np.mean(scores))
