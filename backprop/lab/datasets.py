"""Validate a raw table, split it, standardise it with training statistics only. No I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backprop.metrics import MAPE_MIN_ABS_TARGET

SPLITS = ("train", "val", "test")
# Beyond this, a value's square overflows float64 (1e308): the standard deviation, and the MSE
# on a target, would be inf and every standardised value NaN.
MAX_ABS_VALUE = 1e150
MIN_SPLIT_ROWS = 2  # r2 and accuracy need a spread: one row per split scores nothing


class DataError(ValueError):
    """A raw table that cannot be used; the message names the file and column."""


@dataclass(frozen=True)
class Prepared:
    """One task's arrays. ``all`` is every row standardised with all-row statistics: the
    reference hand-in's protocol (fit and score on all rows), kept only for that comparison."""

    features: list[str]
    X: dict[str, np.ndarray]  # split -> (n, f), standardised
    y: dict[str, np.ndarray]  # split -> (n,)
    mean: np.ndarray
    std: np.ndarray
    with_accuracy: bool


def check_header(names: list[str], *, source: str) -> None:
    """The raw header, as written in the file: pandas renames a repeated name to ``x.1`` and an
    empty one to ``Unnamed: 3``, which would silently turn a copy-paste error into a feature."""
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"{source}: column name(s) {repeated} appear more than once in the header")
    unnamed = [position + 1 for position, name in enumerate(names) if not name.strip()]
    if unnamed:
        raise DataError(
            f"{source}: column(s) {unnamed} of the header have no name (an index column or a trailing comma?)"
        )


def validate_table(frame: pd.DataFrame, *, source: str, target: str, task: str, accuracy: str) -> None:
    """Raise DataError naming ``source`` and the column for the first problem found."""
    if frame.shape[1] == 0:
        raise DataError(f"{source} is empty")
    if len(frame) == 0:
        raise DataError(f"{source} has a header but no rows")
    if target not in frame.columns:
        raise DataError(f"{source}: target column {target!r} not found; columns: {list(frame.columns)}")
    if frame.shape[1] < 2:
        raise DataError(f"{source}: no feature columns besides the target {target!r}")
    for column in frame.columns:
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
            example = f" (row {bad.index[0] + 2}: {bad.iloc[0]!r})" if len(bad) else ""
            raise DataError(f"{source}: column {column!r} is not numeric{example}")
        numbers = values.to_numpy(dtype=float)
        bad_rows = np.flatnonzero(~np.isfinite(numbers))
        if len(bad_rows):
            raise DataError(
                f"{source}: column {column!r} has {len(bad_rows)} NaN/inf value(s), first in row {bad_rows[0] + 2}"
            )
        huge = np.flatnonzero(np.abs(numbers) > MAX_ABS_VALUE)
        if len(huge):
            raise DataError(
                f"{source}: column {column!r} has {numbers[huge[0]]:g} in row {huge[0] + 2}: beyond "
                f"±{MAX_ABS_VALUE:g}, its square overflows and it cannot be standardised or scored"
            )
        if column != target and len(frame) > 1 and np.all(numbers == numbers[0]):
            raise DataError(
                f"{source}: feature {column!r} is constant ({numbers[0]:g} in every row) and cannot be standardised"
            )
    y = frame[target].to_numpy(dtype=float)
    if np.all(y == y[0]):
        raise DataError(f"{source}: target {target!r} is constant ({y[0]:g} in every row): there is nothing to learn")
    if task == "classification":
        labels = sorted(set(np.unique(y).tolist()))
        if not set(labels) <= {0.0, 1.0}:
            raise DataError(
                f"{source}: target {target!r} must be binary (0/1) for classification, found values {labels[:6]}"
            )
    elif accuracy == "mape" and np.any(np.abs(y) < MAPE_MIN_ABS_TARGET):
        tiny = np.flatnonzero(np.abs(y) < MAPE_MIN_ABS_TARGET)
        raise DataError(
            f"{source}: target {target!r} has {len(tiny)} zero(s) or value(s) below {MAPE_MIN_ABS_TARGET:g} "
            f"in magnitude (first in row {tiny[0] + 2}: {y[tiny[0]]:g}), so accuracy 1 - mean(|y - y_hat|/|y|) "
            f"is undefined; set data.regression.accuracy: none"
        )


def split_sizes(n: int, test_size: float, val_size: float) -> tuple[int, int, int]:
    n_test, n_val = round(n * test_size), round(n * val_size)
    return n - n_test - n_val, n_val, n_test


def prepare(
    frame: pd.DataFrame,
    *,
    source: str,
    target: str,
    task: str,
    accuracy: str,
    test_size: float,
    val_size: float,
    rng: np.random.Generator,
) -> Prepared:
    validate_table(frame, source=source, target=target, task=task, accuracy=accuracy)
    n_train, n_val, n_test = split_sizes(len(frame), test_size, val_size)
    if min(n_train, n_val, n_test) < MIN_SPLIT_ROWS:
        raise DataError(
            f"{source}: {len(frame)} rows split by data.test_size={test_size} and "
            f"data.val_size={val_size} gives {n_train} train, {n_val} val, {n_test} test rows; "
            f"each split needs rows (at least {MIN_SPLIT_ROWS})"
        )
    features = [c for c in frame.columns if c != target]
    X_raw = frame[features].to_numpy(dtype=float)
    y_raw = frame[target].to_numpy(dtype=float)
    order = rng.permutation(len(frame))
    index = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    mean, std = X_raw[index["train"]].mean(axis=0), X_raw[index["train"]].std(axis=0)
    constant = [f for f, s in zip(features, std, strict=True) if s == 0]
    if constant:
        raise DataError(f"{source}: feature {constant[0]!r} is constant in the training split")
    X = {split: (X_raw[rows] - mean) / std for split, rows in index.items()}
    y = {split: y_raw[rows] for split, rows in index.items()}
    X["all"] = (X_raw - X_raw.mean(axis=0)) / X_raw.std(axis=0)
    y["all"] = y_raw
    for split, rows in index.items():
        bad = np.argwhere(~np.isfinite(X[split]))
        if len(bad):
            row, column = bad[0]
            raise DataError(
                f"{source}: feature {features[column]!r} overflows when standardised "
                f"(row {rows[row] + 2}, training std {std[column]:g})"
            )
        if task == "regression" and np.all(y[split] == y[split][0]):
            # r2 divides by the spread of y: a split with one target value cannot be scored.
            raise DataError(
                f"{source}: the {split} split's target is constant ({len(rows)} rows): too few rows "
                f"to score it; use more rows or another data.seed"
            )
    return Prepared(features, X, y, mean, std, with_accuracy=task == "classification" or accuracy == "mape")


def schema(prepared: Prepared, *, source: str, target: str, task: str, sha256: str) -> dict:
    """What a reader needs to trust the arrays: where they came from and what is in them."""
    return {
        "task": task,
        "source": source,
        "sha256": sha256,
        "target": target,
        "features": prepared.features,
        "rows": {split: len(prepared.y[split]) for split in (*SPLITS, "all")},
        "with_accuracy": prepared.with_accuracy,
        "train_mean": dict(zip(prepared.features, prepared.mean.round(6).tolist(), strict=True)),
        "train_std": dict(zip(prepared.features, prepared.std.round(6).tolist(), strict=True)),
        "target_stats": {
            split: {
                "mean": round(float(prepared.y[split].mean()), 6),
                "min": float(prepared.y[split].min()),
                "max": float(prepared.y[split].max()),
            }
            for split in (*SPLITS, "all")
        },
    }


def to_arrays(prepared: Prepared) -> dict[str, np.ndarray]:
    arrays = {f"X_{split}": X for split, X in prepared.X.items()}
    arrays |= {f"y_{split}": y for split, y in prepared.y.items()}
    return arrays | {
        "features": np.array(prepared.features),
        "mean": prepared.mean,
        "std": prepared.std,
        "with_accuracy": np.array(prepared.with_accuracy),
    }


def from_arrays(arrays) -> Prepared:
    splits = (*SPLITS, "all")
    return Prepared(
        features=[str(f) for f in arrays["features"]],
        X={split: arrays[f"X_{split}"] for split in splits},
        y={split: arrays[f"y_{split}"] for split in splits},
        mean=arrays["mean"],
        std=arrays["std"],
        with_accuracy=bool(arrays["with_accuracy"]),
    )
