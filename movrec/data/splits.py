"""Train / validation / test splits, fixed by ``split_seed`` alone, with clear size errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, train_test_split

from movrec.errors import UserError

SPLITS = ("train", "val", "test")
RATING_SPLITS = ("random", "cold_items", "cold_users", "temporal")
MIN_SPLIT_ROWS = 2  # R², a validation loss and a fit all need at least two rows


def require_split_sizes(sizes: dict[str, int], what: str, fractions: tuple[float, float]) -> None:
    """A clear error instead of scikit-learn's or torchmetrics' when the data is too small."""
    if min(sizes.values()) >= MIN_SPLIT_ROWS:
        return
    total = sum(sizes.values())
    raise UserError(
        f"{what}: {total} rows are too few to split into train / validation / test with "
        f"data.test_fraction={fractions[0]} and data.val_fraction={fractions[1]}: each split "
        f"needs at least {MIN_SPLIT_ROWS} rows, this gives "
        + ", ".join(f"{k} {v}" for k, v in sizes.items())
    )


def check_split_options(
    test_fraction: float, val_fraction: float, folds: int | None = None, fold: int = 0
) -> None:
    for name, value in (("data.test_fraction", test_fraction), ("data.val_fraction", val_fraction)):
        if not 0 < value < 1:
            raise UserError(f"{name} must be in (0, 1), got {value}")
    if folds is not None and (folds < 2 or not 0 <= fold < folds):
        raise UserError(
            f"data.folds must be >= 2 and 0 <= data.fold < data.folds, got {folds}, {fold}"
        )


def split_frame(
    frame: pd.DataFrame,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    folds: int | None = None,
    fold: int = 0,
    what: str = "data",
) -> dict[str, pd.DataFrame]:
    """Test first, then validation out of the rest: the paper's 80/20, then 20 % of train.

    With ``folds`` the non-test rows are cut into that many folds and fold ``fold`` validates
    (k-fold cross-validation, the test split unchanged). ``what`` names the rows in errors.
    """
    check_split_options(test_fraction, val_fraction, folds, fold)
    # The sizes scikit-learn will make (it rounds held-out shares up; the smallest of k folds
    # has n // k rows), checked before it runs.
    n_test = math.ceil(test_fraction * len(frame))
    n_rest = len(frame) - n_test
    if folds is None:
        sizes = {"train": n_rest - math.ceil(val_fraction * n_rest)}
        sizes["val"] = n_rest - sizes["train"]
    else:
        sizes = {"train": n_rest - math.ceil(n_rest / folds), "val": n_rest // folds}
    sizes["test"] = n_test
    require_split_sizes(sizes, what, (test_fraction, val_fraction))
    rest, test = train_test_split(frame, test_size=test_fraction, random_state=seed)
    if folds is None:
        train, val = train_test_split(rest, test_size=val_fraction, random_state=seed)
        return {"train": train, "val": val, "test": test}
    train_rows, val_rows = list(KFold(folds, shuffle=True, random_state=seed).split(rest))[fold]
    return {"train": rest.iloc[train_rows], "val": rest.iloc[val_rows], "test": test}


def split_ratings(
    ratings: pd.DataFrame,
    by: str,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    what: str = "ratings",
) -> dict[str, pd.DataFrame]:
    """``random``: ratings at random; ``cold_items``: whole movies, so validation and test
    movies are never seen in training; ``cold_users``: whole users, likewise; ``temporal``:
    each user's latest ratings are test, the ones just before them validation. ``what`` names
    the ratings in errors."""
    if by == "random":
        return split_frame(ratings, test_fraction, val_fraction, seed, what=what)
    if by in ("cold_items", "cold_users"):
        column = "movie_id" if by == "cold_items" else "user_id"
        groups = pd.DataFrame({column: np.sort(ratings[column].unique())})
        what = f"{what}: {column.removesuffix('_id')}s"
        parts = split_frame(groups, test_fraction, val_fraction, seed, what=what)
        return {name: ratings[ratings[column].isin(p[column])] for name, p in parts.items()}
    if by == "temporal":
        ordered = ratings.sort_values(["user_id", "timestamp", "movie_id"], kind="stable")
        users = ordered.groupby("user_id", sort=False)
        position = users.cumcount() / users["rating"].transform("size")
        test = position >= 1 - test_fraction
        val = ~test & (position >= (1 - test_fraction) * (1 - val_fraction))
        parts = {"train": ordered[~test & ~val], "val": ordered[val], "test": ordered[test]}
        sizes = {name: len(part) for name, part in parts.items()}
        require_split_sizes(sizes, what, (test_fraction, val_fraction))
        return parts
    raise UserError(f"data.split must be one of {list(RATING_SPLITS)}, got {by!r}")
