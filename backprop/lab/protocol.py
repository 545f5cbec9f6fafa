"""The evaluation protocol's pure parts: the folds every model is fitted on, how a fit went (its
outcome) and paired comparisons with intervals. No I/O.

Repeated k-fold cross-validation: each repeat deals the rows into k folds (per class for a
classifier, so every fold keeps the class balance); fold j of a repeat is held out as the test
rows, and the other folds are split once more into the rows a model is fitted on and a
validation part that early stopping and every choice (a learning rate, a C) look at. Every model
of the pipeline sees the same (repeat, fold) roles, so every comparison is paired by fold.

A comparison is paired: both sides were scored on the same held-out rows (the same fold, or the
same seed on the same split), so the spread of the differences is the spread that matters, not
the spread of each side. A difference whose 95% interval contains 0 is a tie.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

OUTCOMES = ("learned", "no_better_than_constant", "stalled", "oscillating", "diverged")
# A change in validation loss smaller than this fraction of the loss is noise, not a step.
STEP_TOLERANCE = 1e-3
# This many consecutive up-down reversals, each beyond the tolerance, make a zig-zag: gradient
# descent past its stable step size crosses a valley every other epoch. A run is oscillating when
# the weights it returns come from inside a zig-zag (its best epoch is one of the lucky lows) or
# it was still zig-zagging when it stopped; a zig-zag that died down long before the best epoch
# (large steps early, then a smooth descent) is part of learning.
OSCILLATION_STRETCH = 10

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (beyond: 1.96 is within 2%).
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
# One-sided 80% quantiles of Student's t for 1..30 degrees of freedom: the power term of a
# minimum detectable effect (beyond: 0.8416 + 0.37/dof, within 0.1%).
_T80 = (
    1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879,
    0.876, 0.873, 0.870, 0.868, 0.866, 0.865, 0.863, 0.862, 0.861, 0.860,
    0.859, 0.858, 0.858, 0.857, 0.856, 0.856, 0.855, 0.855, 0.854, 0.854,
)  # fmt: skip


TRAIN, VAL, TEST = 0, 1, 2  # a row's role in one fold


def fold_roles(y: np.ndarray, *, folds: int, repeats: int, val_size: float, seed: int, stratify: bool) -> np.ndarray:
    """Roles (repeats, folds, n) as int8: TRAIN, VAL or TEST for every row of every fold.

    Each repeat draws from its own generator, seeded by (seed, repeat), so adding repeats never
    changes the earlier ones. Within a class (the whole table when not stratified) rows are
    shuffled and dealt round-robin to the folds, so fold sizes differ by at most one per class;
    the validation part of a training fold is drawn the same way, ``val_size`` of it per class.
    """
    y = np.asarray(y)
    n = len(y)
    groups = [np.flatnonzero(y == label) for label in np.unique(y)] if stratify else [np.arange(n)]
    roles = np.full((repeats, folds, n), TRAIN, dtype=np.int8)
    for repeat in range(repeats):
        rng = np.random.default_rng([seed, repeat])
        fold_of = np.empty(n, dtype=int)
        for rows in groups:
            fold_of[rng.permutation(rows)] = np.arange(len(rows)) % folds
        for fold in range(folds):
            roles[repeat, fold, fold_of == fold] = TEST
            for rows in groups:
                training = rng.permutation(rows[fold_of[rows] != fold])
                roles[repeat, fold, training[: round(val_size * len(training))]] = VAL
    return roles


def fit_seed(base: int, repeat: int, fold: int, folds: int) -> int:
    """The initial-weights seed of the fit on (repeat, fold): from its coordinates alone, so a
    fit's result never depends on where or when it ran, and every setting compared on a fold
    starts from the same draw (common random numbers make the paired differences sharper)."""
    return base + repeat * folds + fold


def t_quantile(dof: int) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom."""
    if dof < 1:
        raise ValueError(f"an interval needs at least 2 paired values, got {dof + 1}")
    return _T95[dof - 1] if dof <= len(_T95) else 1.96 + 2.4 / dof  # within 0.1% of t for dof > 30


def power_quantile(dof: int) -> float:
    """The 80% quantile of Student's t with ``dof`` degrees of freedom (the power term)."""
    if dof < 1:
        raise ValueError(f"a detectable effect needs at least 2 paired values, got {dof + 1}")
    return _T80[dof - 1] if dof <= len(_T80) else 0.8416 + 0.37 / dof


def min_detectable_effect(spread: float, n: int, test_train_ratio: float = 0.0) -> float:
    """The smallest true mean difference that a two-sided 5% test on ``n`` paired values with
    standard deviation ``spread`` detects with 80% power: (t₀.₉₇₅ + t₀.₈) · SE, with the same
    corrected standard error SE = spread · √(1/n + n_test/n_train) as ``half_width``. A tie's
    interval says where the difference lies; this says how large one could be and still be missed."""
    if n < 2 or not math.isfinite(spread):
        return math.nan
    error = spread * math.sqrt(1.0 / n + test_train_ratio)
    return (t_quantile(n - 1) + power_quantile(n - 1)) * error


def outcome(
    val_loss: np.ndarray,
    *,
    diverged: bool,
    val_score: float | None = None,
    constant_score: float | None = None,
    margin: float = 0.0,
) -> str:
    """How one fit went, from its validation-loss curve (row e: after e updates) and, when given,
    the validation loss of the model it returns (``val_score``) against the constant model's
    (``constant_score``: the training mean, or the class prior, scored on the same rows).

    - ``diverged``: the loss left the range of a learning network (the engine's verdict);
    - ``oscillating``: ``OSCILLATION_STRETCH`` or more consecutive up-down reversals, each step
      larger than ``STEP_TOLERANCE`` of the loss, around the best epoch or at the end: the
      returned weights are a low point of a zig-zag, a step size past the stable limit;
    - ``stalled``: never improved on the starting loss by more than the tolerance, so the
      returned weights are (close to) the untrained ones;
    - ``no_better_than_constant``: the returned model's validation loss is not below the constant
      model's by the fraction ``margin``: whatever it learned, predicting the mean does as well;
    - ``learned``: everything else.
    """
    if diverged:
        return "diverged"
    loss = np.asarray(val_loss, dtype=float)
    loss = loss[np.isfinite(loss)]
    if len(loss) < 2:
        return "stalled"
    steps = np.diff(loss)
    real = np.abs(steps) > STEP_TOLERANCE * np.abs(loss[:-1])
    reversal = real[:-1] & real[1:] & (np.sign(steps[:-1]) != np.sign(steps[1:]))
    best = int(np.argmin(loss))
    for start, stop in _runs(reversal):  # reversal i spans epochs i, i + 1, i + 2
        if stop - start >= OSCILLATION_STRETCH and (start <= best <= stop + 1 or stop == len(reversal)):
            return "oscillating"
    if loss[1:].min() >= loss[0] * (1 - STEP_TOLERANCE):
        return "stalled"
    beats_constant = val_score is None or constant_score is None or val_score < constant_score * (1 - margin)
    if not beats_constant:
        return "no_better_than_constant"
    return "learned"


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every stretch of set flags."""
    edges = np.diff(np.concatenate([[0], flags.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def half_width(values: np.ndarray, test_train_ratio: float = 0.0) -> float:
    """Half the 95% t interval of the mean of ``values`` (at least 2).

    Cross-validation's fits share most of their training rows, so their scores are not
    independent and the plain t interval is too narrow. ``test_train_ratio`` = n_test / n_train
    applies Nadeau and Bengio's (2003) corrected variance, (1/J + n_test/n_train)·s² for J fits;
    0 gives the plain interval (independent pairs, such as seeds on one split).
    """
    n = len(values)
    spread = float(np.std(values, ddof=1))
    return t_quantile(n - 1) * spread * math.sqrt(1.0 / n + test_train_ratio)


def mean_interval(values: Sequence[float], test_train_ratio: float = 0.0) -> dict:
    """``{"mean", "std", "ci_low", "ci_high", "n"}`` of the finite ``values``."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    n = len(finite)
    result = {"mean": math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": n}
    if n:
        result["mean"] = float(finite.mean())
    if n >= 2:
        half = half_width(finite, test_train_ratio)
        result |= {"std": float(finite.std(ddof=1)), "ci_low": result["mean"] - half, "ci_high": result["mean"] + half}
    return result


def fold_summary(fits, columns: Sequence[str], test_train_ratio: float = 0.0) -> dict[str, dict]:
    """The summary over folds: ``mean_interval`` of each of ``columns`` (``<split>_<metric>``) that
    the table ``fits`` has, in their order. metrics/<task>-scores.json, summary.csv and the
    report's tables all give it over the fits that learned (or over a baseline's folds)."""
    return {column: mean_interval(fits[column], test_train_ratio) for column in columns if column in fits}


def paired_difference(
    a: Sequence[float], b: Sequence[float], *, lower_is_better: bool = True, test_train_ratio: float = 0.0
) -> dict:
    """Mean of ``a - b`` over pairs with its 95% t interval, how often ``a`` was better, and the
    smallest difference the pairs would detect with 80% power (``min_detectable_effect``).

    ``{"mean", "ci_low", "ci_high", "wins", "n", "mde"}``; pairs where either side is missing (NaN, a
    diverged fit) are left out and ``n`` counts the rest. For pairs that are folds of one
    cross-validation pass ``test_train_ratio`` (see ``half_width``).
    """
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.shape != second.shape:
        raise ValueError(f"paired values must match one to one, got {first.shape} and {second.shape}")
    keep = np.isfinite(first) & np.isfinite(second)
    difference = first[keep] - second[keep]
    n = len(difference)
    better = difference < 0 if lower_is_better else difference > 0
    result = {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "wins": int(better.sum()), "n": n}
    result["mde"] = math.nan
    if n == 0:
        return result
    mean = float(difference.mean())
    result["mean"] = mean
    if n >= 2:
        half = half_width(difference, test_train_ratio)
        result["ci_low"], result["ci_high"] = mean - half, mean + half
        result["mde"] = min_detectable_effect(float(np.std(difference, ddof=1)), n, test_train_ratio)
    return result


def overlap_ratio(fold_rows: dict) -> float:
    """n_test / n_train of Nadeau and Bengio's correction: the held-out rows of a fold against
    the rows the model is fitted on (not its validation part), averaged over the folds;
    ``fold_rows`` as in schema.json (rows per role, one entry per fold)."""
    return float(np.mean(np.divide(fold_rows["test"], fold_rows["train"])))
