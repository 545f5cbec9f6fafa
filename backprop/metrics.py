"""Evaluation metrics. ``y`` is the target, ``y_hat`` the prediction, both 1-D or (n, 1).

Regression "accuracy" follows the reference hand-in: 1 − mean(|y − ŷ| / |y|), one minus the mean
absolute percentage error. It is undefined when y has zeros, and it is not a probability: it
can be negative, and it rewards errors on large targets less than on small ones.
"""

from __future__ import annotations

import numpy as np

from backprop.losses import log_loss_of_logit

EPS = 1e-15
# What each task's summaries report (the first is the loss that early stopping and every choice use).
TASK_METRICS = {"regression": ["mse", "r2", "accuracy"], "classification": ["log_loss", "accuracy"]}
SUMMARY_METRICS = {"regression": ["mse", "accuracy"], "classification": ["log_loss", "accuracy"]}
# |y| below this makes |y - ŷ| / |y| meaningless (1e-13 noise on a 1e-12 target is 10%, and
# 1/|y| overflows near 1e-308): regression accuracy is undefined for such a target.
MAPE_MIN_ABS_TARGET = 1e-12


def _flat(*arrays):
    return [np.asarray(a, dtype=float).ravel() for a in arrays]


def mse(y, y_hat) -> float:
    y, y_hat = _flat(y, y_hat)
    return float(np.mean((y - y_hat) ** 2))


def rmse(y, y_hat) -> float:
    return float(np.sqrt(mse(y, y_hat)))


def r2(y, y_hat) -> float:
    y, y_hat = _flat(y, y_hat)
    total = np.sum((y - y.mean()) ** 2)
    if total == 0:
        raise ValueError("r2 is undefined when y is constant")
    return float(1.0 - np.sum((y - y_hat) ** 2) / total)


def check_regression_accuracy_defined(y) -> None:
    zeros = int(np.count_nonzero(np.abs(np.asarray(y)) < MAPE_MIN_ABS_TARGET))
    if zeros:
        raise ValueError(
            f"regression accuracy 1 - mean(|y - y_hat| / |y|) is undefined: y has {zeros} zero(s) "
            f"or value(s) below {MAPE_MIN_ABS_TARGET:g} in magnitude"
        )


def regression_accuracy(y, y_hat) -> float:
    check_regression_accuracy_defined(y)
    y, y_hat = _flat(y, y_hat)
    return float(1.0 - np.mean(np.abs(y - y_hat) / np.abs(y)))


def classification_accuracy(y, p_hat, threshold: float = 0.5) -> float:
    y, p_hat = _flat(y, p_hat)
    return float(np.mean((p_hat > threshold) == (y > 0.5)))


def log_loss(y, p_hat) -> float:
    y, p_hat = _flat(y, p_hat)
    p = np.clip(p_hat, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def log_loss_from_logit(y, z) -> float:
    y, z = _flat(y, z)
    return log_loss_of_logit(z, y)


def regression_metrics(y, y_hat, *, with_accuracy: bool = True) -> dict[str, float]:
    scores = {"mse": mse(y, y_hat), "rmse": rmse(y, y_hat), "r2": r2(y, y_hat)}
    if with_accuracy:
        scores["accuracy"] = regression_accuracy(y, y_hat)
    return scores


def classification_metrics(y, z) -> dict[str, float]:
    """Scores from the logit z, so log loss stays finite for confident predictions."""
    y, z = _flat(y, z)
    return {"log_loss": log_loss_from_logit(y, z), "accuracy": float(np.mean((z > 0) == (y > 0.5)))}
