"""Output heads: an output activation o, a loss L, and the output error δ = ∂L/∂z of the logit z.

A task fixes the head. The error term is the one place where regression and classification
differ (docs/reference.md, "The math", output error δ2):

- MSE with identity output:       δ = (2/n)(ŷ − y)
- log loss with sigmoid output:   δ = (1/n)(ŷ − y)            σ′ cancels against the log
- MSE with sigmoid output:        δ = (2/n)(ŷ − y) ŷ(1 − ŷ)   σ′ stays: slow when ŷ saturates

Losses are computed from the logit so that log loss never takes log(0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from backprop.activations import identity, sigmoid


def mse_of_identity(z: np.ndarray, y: np.ndarray) -> float:
    diff = z - y
    return float(np.dot(diff.ravel(), diff.ravel()) / diff.size)


def log_loss_of_logit(z: np.ndarray, y: np.ndarray) -> float:
    # −[y log σ(z) + (1−y) log(1−σ(z))] = log(1 + e^z) − y z, with log(1 + e^z) = logaddexp(0, z).
    # The sum over size is np.mean's own arithmetic without its Python wrapper, which costs as
    # much as the sum itself at a few hundred rows, twice per epoch.
    terms = np.logaddexp(0.0, z) - y * z
    return float(np.add.reduce(terms, axis=None) / terms.size)


def mse_of_sigmoid(z: np.ndarray, y: np.ndarray) -> float:
    diff = sigmoid(z) - y
    return float(np.dot(diff.ravel(), diff.ravel()) / diff.size)


# Each takes the batch size n separately: a batch may be processed in slices of its rows.


def error_mse_identity(z: np.ndarray, y: np.ndarray, out: np.ndarray, n: int) -> np.ndarray:
    np.subtract(z, y, out=out)  # ŷ = z
    out *= 2.0 / n
    return out


def error_log_loss_sigmoid(z: np.ndarray, y: np.ndarray, out: np.ndarray, n: int) -> np.ndarray:
    sigmoid(z, out=out)
    out -= y
    out *= 1.0 / n
    return out


def error_mse_sigmoid(z: np.ndarray, y: np.ndarray, out: np.ndarray, n: int) -> np.ndarray:
    y_hat = sigmoid(z)
    np.subtract(y_hat, y, out=out)
    out *= y_hat
    out *= 1.0 - y_hat
    out *= 2.0 / n
    return out


@dataclass(frozen=True)
class Head:
    output: Callable[..., np.ndarray]  # ŷ = o(z)
    loss: Callable[[np.ndarray, np.ndarray], float]  # L(z, y), from the logit
    output_error: Callable[..., np.ndarray]  # δ = ∂L/∂z for a batch of n rows, written into out


HEADS: dict[tuple[str, str], Head] = {
    ("regression", "mse"): Head(identity, mse_of_identity, error_mse_identity),
    ("classification", "log_loss"): Head(sigmoid, log_loss_of_logit, error_log_loss_sigmoid),
    ("classification", "mse"): Head(sigmoid, mse_of_sigmoid, error_mse_sigmoid),
}

DEFAULT_LOSS = {"regression": "mse", "classification": "log_loss"}
TASKS = tuple(DEFAULT_LOSS)


def get_head(task: str, loss: str | None) -> tuple[str, Head]:
    if task not in DEFAULT_LOSS:
        raise ValueError(f"task must be one of {sorted(DEFAULT_LOSS)}, got {task!r}")
    loss = loss or DEFAULT_LOSS[task]
    valid = sorted(name for head_task, name in HEADS if head_task == task)
    if (task, loss) not in HEADS:
        raise ValueError(f"loss for task {task!r} must be one of {valid}, got {loss!r}")
    return loss, HEADS[(task, loss)]
