"""Evaluation metrics. ``y`` is the target, ``y_hat`` the prediction, both 1-D or (n, 1).

Regression "accuracy" follows the reference hand-in: 1 − mean(|y − ŷ| / |y|), one minus the mean
absolute percentage error. It is undefined when y has zeros, and it is not a probability: it
can be negative, and it rewards errors on large targets less than on small ones.

The per-epoch curves of ``MLP.fit`` use the same definitions in the network's own dtype and
shapes: ``accuracy_of_logit``, and ``weighted_regression_accuracy`` with the ``1/|y|`` weights
computed once per fit by ``relative_error_weights``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from backprop.losses import log_loss_of_logit

EPS = 1e-15
# What each task's summaries report, in the order the report's tables show them (the first is the
# loss that early stopping and every choice use).
TASK_METRICS = {"regression": ["mse", "accuracy", "r2"], "classification": ["log_loss", "accuracy"]}
# A sweep's summary.csv leaves out R²: on one fold's rows it is the MSE rescaled, so it ranks no
# point differently.
SUMMARY_METRICS = {kind: [name for name in names if name != "r2"] for kind, names in TASK_METRICS.items()}
# |y| below this makes |y - ŷ| / |y| meaningless (1e-13 noise on a 1e-12 target is 10%, and
# 1/|y| overflows near 1e-308): regression accuracy is undefined for such a target.
MAPE_MIN_ABS_TARGET = 1e-12


def _flat(*arrays: ArrayLike) -> list[np.ndarray]:
    return [np.asarray(a, dtype=float).ravel() for a in arrays]


def mse(y: ArrayLike, y_hat: ArrayLike) -> float:
    y, y_hat = _flat(y, y_hat)
    return float(np.mean((y - y_hat) ** 2))


def rmse(y: ArrayLike, y_hat: ArrayLike) -> float:
    return float(np.sqrt(mse(y, y_hat)))


def r2(y: ArrayLike, y_hat: ArrayLike) -> float:
    y, y_hat = _flat(y, y_hat)
    total = np.sum((y - y.mean()) ** 2)
    if total == 0:
        raise ValueError("r2 is undefined when y is constant")
    return float(1.0 - np.sum((y - y_hat) ** 2) / total)


def check_regression_accuracy_defined(y: ArrayLike) -> None:
    zeros = int(np.count_nonzero(np.abs(np.asarray(y)) < MAPE_MIN_ABS_TARGET))
    if zeros:
        raise ValueError(
            f"regression accuracy 1 - mean(|y - y_hat| / |y|) is undefined: y has {zeros} zero(s) "
            f"or value(s) below {MAPE_MIN_ABS_TARGET:g} in magnitude"
        )


def regression_accuracy(y: ArrayLike, y_hat: ArrayLike) -> float:
    check_regression_accuracy_defined(y)
    y, y_hat = _flat(y, y_hat)
    return float(1.0 - np.mean(np.abs(y - y_hat) / np.abs(y)))


def relative_error_weights(y: np.ndarray, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    """The weights std/|y·std + mean| that turn |ŷ − y| into the relative error of the target in its
    original units, for a y standardised as (y − mean)/std: |ŷ − y|·std/|y_orig| = |ŷ_orig − y_orig|/|y_orig|."""
    original = y * std + mean
    check_regression_accuracy_defined(original)
    return std / np.abs(original)


def weighted_regression_accuracy(y: np.ndarray, y_hat: np.ndarray, weights: np.ndarray) -> float:
    """1 − mean(|ŷ − y|·weights): ``regression_accuracy`` with the ``relative_error_weights`` of y,
    as one dot product over arrays of one shape (no flattening, no copy to float64)."""
    return 1.0 - float(np.vdot(np.abs(y_hat - y), weights)) / len(y)


def accuracy_of_logit(y: np.ndarray, z: np.ndarray) -> float:
    """The fraction of rows whose class at threshold 0.5, P(y = 1) = σ(z) > 0.5 or z > 0, is y."""
    return float(np.count_nonzero((z > 0) == (y > 0.5))) / len(y)


def classification_accuracy(y: ArrayLike, p_hat: ArrayLike, threshold: float = 0.5) -> float:
    y, p_hat = _flat(y, p_hat)
    return float(np.mean((p_hat > threshold) == (y > 0.5)))


def log_loss(y: ArrayLike, p_hat: ArrayLike) -> float:
    y, p_hat = _flat(y, p_hat)
    p = np.clip(p_hat, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def log_loss_from_logit(y: ArrayLike, z: ArrayLike) -> float:
    y, z = _flat(y, z)
    return log_loss_of_logit(z, y)


def regression_metrics(y: ArrayLike, y_hat: ArrayLike, *, with_accuracy: bool = True) -> dict[str, float]:
    scores = {"mse": mse(y, y_hat), "rmse": rmse(y, y_hat), "r2": r2(y, y_hat)}
    if with_accuracy:
        scores["accuracy"] = regression_accuracy(y, y_hat)
    return scores


def classification_metrics(y: ArrayLike, z: ArrayLike) -> dict[str, float]:
    """Scores from the logit z, so log loss stays finite for confident predictions."""
    y, z = _flat(y, z)
    return {"log_loss": log_loss_from_logit(y, z), "accuracy": accuracy_of_logit(y, z)}
