"""Validate a raw table, give its rows their cross-validation roles, and cut one fold's arrays
standardised with that fold's training statistics only. No I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backprop.lab.protocol import TEST, TRAIN, VAL, fold_roles
from backprop.metrics import MAPE_MIN_ABS_TARGET

SPLITS = ("train", "val", "test")
ROLES = {"train": TRAIN, "val": VAL, "test": TEST}
# Beyond this, a value's square overflows float64 (1e308): the standard deviation, and the MSE
# on a target, would be inf and every standardised value NaN.
MAX_ABS_VALUE = 1e150
MIN_SPLIT_ROWS = 2  # r2 and accuracy need a spread: one row per split scores nothing
# A feature this correlated with the target is the target (a copy, a rescaling, a rounding): a
# model that reads it scores near perfectly on rows it has never seen, and says nothing.
LEAK_CORRELATION = 0.999
LEAK_OVERRIDE = "set data.allow_leaks: true if you mean it"


class DataError(ValueError):
    """A raw table that cannot be used; the message names the file and column."""


@dataclass(frozen=True)
class Dataset:
    """One task's validated rows, unstandardised, and every row's role in every fold."""

    features: list[str]
    X: np.ndarray  # (n, f)
    y: np.ndarray  # (n,)
    roles: np.ndarray  # (repeats, folds, n): TRAIN, VAL or TEST
    with_accuracy: bool
    scale_target: bool = False
    kind: str = "regression"  # the task's kind: its head, loss, metrics and baselines
    generator: str = ""  # a generated table's GENERATORS name: its true function is known ("" for a file)

    @property
    def folds(self) -> list[tuple[int, int]]:
        """Every (repeat, fold), in order."""
        repeats, folds, _ = self.roles.shape
        return [(repeat, fold) for repeat in range(repeats) for fold in range(folds)]


@dataclass(frozen=True)
class Prepared:
    """The arrays one fit sees: split -> rows, features standardised with the fitted rows'
    statistics. ``target_scale`` (mean, std) asks the training code to fit the standardised
    target and report everything in original units; ``y`` is always in original units."""

    features: list[str]
    X: dict[str, np.ndarray]  # split -> (n, f), standardised
    y: dict[str, np.ndarray]  # split -> (n,)
    mean: np.ndarray
    std: np.ndarray
    with_accuracy: bool
    target_scale: tuple[float, float] | None = None
    rows: dict[str, np.ndarray] | None = None  # split -> row numbers in the table


def friedman1(rows: int, noise: float, seed: int, target: str) -> pd.DataFrame:
    """Friedman #1 (scikit-learn's ``make_friedman1``): 10 uniform features, of which 5 enter
    y = 10 sin(π x₀ x₁) + 20 (x₂ − ½)² + 10 x₃ + 5 x₄ + noise·N(0, 1). Nonlinear (a product
    inside a sine, a square), with 5 features that carry nothing: a table where width, a
    nonlinearity and the activation matter, and where the MSE cannot go below noise²."""
    from sklearn.datasets import make_friedman1

    X, y = make_friedman1(n_samples=rows, n_features=10, noise=noise, random_state=seed)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame[target] = y
    return frame


def friedman1_truth(X: np.ndarray) -> np.ndarray:
    """Friedman #1's y without its noise, from the raw (unstandardised) features: what the best
    possible model predicts. Its MSE on some rows is their realised noise variance."""
    return 10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 20 * (X[:, 2] - 0.5) ** 2 + 10 * X[:, 3] + 5 * X[:, 4]


# How a generated task's table is made: name -> (rows, noise, seed, target) -> table.
GENERATORS = {"friedman1": friedman1}
# Each generated table's true function: name -> raw features (n, f) -> y without noise (n,).
TRUE_FUNCTIONS = {"friedman1": friedman1_truth}
# The baseline that predicts a generated table's own true function (baselines.json's model name).
TRUE_FUNCTION = "true_function"


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
    _check_shape(frame, source=source, target=target)
    for column in frame.columns:
        _check_column(frame[column], source=source, column=column, feature=column != target)
    _check_target(frame[target].to_numpy(dtype=float), source=source, target=target, task=task, accuracy=accuracy)


def _check_shape(frame: pd.DataFrame, *, source: str, target: str) -> None:
    if frame.shape[1] == 0:
        raise DataError(f"{source} is empty")
    if len(frame) == 0:
        raise DataError(f"{source} has a header but no rows")
    if target not in frame.columns:
        raise DataError(f"{source}: target column {target!r} not found; columns: {list(frame.columns)}")
    if frame.shape[1] < 2:
        raise DataError(f"{source}: no feature columns besides the target {target!r}")


def _check_column(values: pd.Series, *, source: str, column: str, feature: bool) -> None:
    """Numeric, finite, within ±MAX_ABS_VALUE, and for a feature not constant."""
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
    if feature and len(numbers) > 1 and np.all(numbers == numbers[0]):
        raise DataError(
            f"{source}: feature {column!r} is constant ({numbers[0]:g} in every row) and cannot be standardised"
        )


def _check_target(y: np.ndarray, *, source: str, target: str, task: str, accuracy: str) -> None:
    """Not constant; 0/1 for classification; no zeros where regression accuracy divides by |y|."""
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


def prepare(
    frame: pd.DataFrame,
    *,
    source: str,
    target: str,
    task: str,
    accuracy: str,
    scale_target: bool,
    folds: int,
    repeats: int,
    val_size: float,
    seed: int,
    allow_leaks: bool = False,
    generator: str = "",
) -> Dataset:
    """The validated table with its cross-validation roles; every fold checked for what training
    and scoring need, so a fold that cannot be used fails here, naming it, before any fit; and,
    unless ``allow_leaks``, checked for the two leaks that make test scores lie (``check_leaks``).
    ``generator``: the ``GENERATORS`` name that made the table, whose true function is known."""
    validate_table(frame, source=source, target=target, task=task, accuracy=accuracy)
    features = [c for c in frame.columns if c != target]
    X = frame[features].to_numpy(dtype=float)
    y = frame[target].to_numpy(dtype=float)
    if len(y) < folds * MIN_SPLIT_ROWS:
        raise DataError(f"{source}: {len(y)} rows cannot make data.folds={folds} folds of {MIN_SPLIT_ROWS} rows")
    if task == "classification" and np.bincount(y.astype(int), minlength=2).min() < folds:
        raise DataError(
            f"{source}: target {target!r} has fewer rows of one class than data.folds={folds}: "
            f"some folds would hold no row of it"
        )
    roles = fold_roles(y, folds=folds, repeats=repeats, val_size=val_size, seed=seed, stratify=task == "classification")
    dataset = Dataset(
        features,
        X,
        y,
        roles,
        with_accuracy=task == "classification" or accuracy == "mape",
        scale_target=scale_target,
        kind=task,
        generator=generator,
    )
    for repeat in range(repeats):
        for fold in range(folds):
            _check_fold(dataset, repeat, fold, source=source, task=task)
    if not allow_leaks:
        check_leaks(dataset, source=source, target=target)
    return dataset


def check_leaks(dataset: Dataset, *, source: str, target: str) -> None:
    """Raise DataError for a feature that is the target under another name or scale, and for rows
    whose features repeat exactly in another role of some fold: the test score would then grade
    rows (or answers) the network trained on."""
    for name in dataset.features:
        if name != target and name.strip().casefold() == target.strip().casefold():
            raise DataError(
                f"{source}: feature {name!r} is named like the target {target!r} (but for spaces or case): "
                f"a copy of the target would leak the answer; rename or drop it, or {LEAK_OVERRIDE}"
            )
    X, y = dataset.X, dataset.y
    correlation = ((X - X.mean(axis=0)) / X.std(axis=0)).T @ ((y - y.mean()) / y.std()) / len(y)
    leaking = np.flatnonzero(np.abs(correlation) >= LEAK_CORRELATION)
    if len(leaking):
        column = int(leaking[np.argmax(np.abs(correlation[leaking]))])
        raise DataError(
            f"{source}: feature {dataset.features[column]!r} has correlation {correlation[column]:.4f} with the "
            f"target {target!r} (|r| >= {LEAK_CORRELATION}): it is the target in disguise and would leak the "
            f"answer; drop it, or {LEAK_OVERRIDE}"
        )
    _, group, counts = np.unique(X, axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    repeated = np.flatnonzero(counts[group] > 1)
    for row in repeated:  # in row order: the first copy that lands in another role is named
        copies = repeated[group[repeated] == group[row]]
        roles = dataset.roles[:, :, copies]  # (repeats, folds, copies)
        split = np.flatnonzero((roles != roles[:, :, :1]).any(axis=2).reshape(-1))
        if len(split):
            repeat, fold = divmod(int(split[0]), dataset.roles.shape[1])
            names = {role: name for name, role in ROLES.items()}
            where = sorted({names[r] for r in dataset.roles[repeat, fold, copies]})
            rows = ", ".join(str(r + 2) for r in copies[:5]) + (" ..." if len(copies) > 5 else "")
            leaks = int(np.sum(counts[counts > 1]))
            raise DataError(
                f"{source}: rows {rows} have the same features and land in different roles ({' and '.join(where)} "
                f"in repeat {repeat} fold {fold}); {leaks} rows repeat another row's features: the test would "
                f"grade rows the network trained on; remove the copies, or {LEAK_OVERRIDE}"
            )


def _check_fold(dataset: Dataset, repeat: int, fold: int, *, source: str, task: str) -> None:
    where = f"{source}: repeat {repeat} fold {fold}"
    roles = dataset.roles[repeat, fold]
    for split, role in ROLES.items():
        rows = np.flatnonzero(roles == role)
        if len(rows) < MIN_SPLIT_ROWS:
            raise DataError(
                f"{where} has {len(rows)} {split} row(s), at least {MIN_SPLIT_ROWS} are needed; "
                f"use more rows, fewer data.folds or another data.val_size"
            )
        if task == "regression" and np.all(dataset.y[rows] == dataset.y[rows][0]):
            # r2 divides by the spread of y: a split with one target value cannot be scored.
            raise DataError(f"{where}: the {split} rows' target is constant: too few rows to score it")
    fitted = dataset.X[roles == TRAIN]
    std = fitted.std(axis=0)
    constant = [f for f, s in zip(dataset.features, std, strict=True) if s == 0]
    if constant:
        raise DataError(f"{where}: feature {constant[0]!r} is constant in the training rows")
    if not np.all(np.isfinite((dataset.X - fitted.mean(axis=0)) / std)):
        column = int(np.flatnonzero(~np.all(np.isfinite((dataset.X - fitted.mean(axis=0)) / std), axis=0))[0])
        raise DataError(
            f"{where}: feature {dataset.features[column]!r} overflows when standardised (training std {std[column]:g})"
        )


def fold_data(dataset: Dataset, repeat: int, fold: int) -> Prepared:
    """One fold's train/val/test arrays, features standardised with the training rows' statistics
    only (and the target too, when ``scale_target``: recorded, applied by the training code)."""
    roles = dataset.roles[repeat, fold]
    index = {split: np.flatnonzero(roles == role) for split, role in ROLES.items()}
    fitted = dataset.X[index["train"]]
    mean, std = fitted.mean(axis=0), fitted.std(axis=0)
    X = {split: (dataset.X[rows] - mean) / std for split, rows in index.items()}
    y = {split: dataset.y[rows] for split, rows in index.items()}
    scale = None
    if dataset.scale_target:
        scale = (float(y["train"].mean()), float(y["train"].std()))
    return Prepared(dataset.features, X, y, mean, std, dataset.with_accuracy, scale, index)


def all_rows(dataset: Dataset) -> Prepared:
    """Every row as ``all``, standardised with all-row statistics: the reference hand-in's
    protocol (fit and score on the same rows), kept only for that comparison."""
    mean, std = dataset.X.mean(axis=0), dataset.X.std(axis=0)
    scale = (float(dataset.y.mean()), float(dataset.y.std())) if dataset.scale_target else None
    index = {"all": np.arange(len(dataset.y))}
    return Prepared(
        dataset.features,
        {"all": (dataset.X - mean) / std},
        {"all": dataset.y},
        mean,
        std,
        dataset.with_accuracy,
        scale,
        index,
    )


def schema(
    dataset: Dataset, *, source: str, target: str, task: str, sha256: str, noise_floor: float | None = None
) -> dict:
    """What a reader needs to trust the arrays: where they came from, what is in them, the folds;
    for a generated table, the MSE no model can beat (its noise variance)."""
    repeats, folds, _ = dataset.roles.shape
    floor = {} if noise_floor is None else {"noise_floor": noise_floor}
    return {
        "task": task,
        "kind": dataset.kind,
        "source": source,
        "sha256": sha256,
        "target": target,
        "features": dataset.features,
        "rows": len(dataset.y),
        "folds": folds,
        "repeats": repeats,
        "fold_rows": fold_rows(dataset),
        "with_accuracy": dataset.with_accuracy,
        "scale_target": dataset.scale_target,
        "target_stats": {
            "mean": round(float(dataset.y.mean()), 6),
            "std": round(float(dataset.y.std()), 6),
            "min": float(dataset.y.min()),
            "max": float(dataset.y.max()),
        },
    } | floor


def fold_rows(dataset: Dataset) -> dict[str, list[int]]:
    """Rows per role in each fold of the first repeat (every repeat deals the same sizes)."""
    return {
        split: [int((dataset.roles[0, fold] == role).sum()) for fold in range(dataset.roles.shape[1])]
        for split, role in ROLES.items()
    }


def to_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    return {
        "features": np.array(dataset.features),
        "X": dataset.X,
        "y": dataset.y,
        "roles": dataset.roles,
        "with_accuracy": np.array(dataset.with_accuracy),
        "scale_target": np.array(dataset.scale_target),
        "kind": np.array(dataset.kind),
        "generator": np.array(dataset.generator),
    }


def from_arrays(arrays) -> Dataset:
    return Dataset(
        features=[str(f) for f in arrays["features"]],
        X=arrays["X"],
        y=arrays["y"],
        roles=arrays["roles"],
        with_accuracy=bool(arrays["with_accuracy"]),
        scale_target=bool(arrays["scale_target"]),
        kind=str(arrays["kind"]) if "kind" in arrays else "regression",
        generator=str(arrays["generator"]) if "generator" in arrays else "",
    )
