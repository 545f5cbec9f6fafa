"""A fully connected network trained by backpropagation written out by hand (docs/reference.md).

Shapes for a batch of n rows: X (n, f), W1 (f, h), b1 (h,), W2 (h, 1), b2 (1,). With more hidden
layers the same pattern repeats: W_l (h_{l-1}, h_l), b_l (h_l,).

All parameters are views into one flat vector, and all gradients views into another, so a
gradient-descent step is a single vector operation and "restore the best weights" is one copy.
W1 and b1 sit next to each other in that vector, so together they are one (f + 1, h) matrix
[W1; b1]: the first layer sees X with a column of ones appended and its bias rides in the matrix
product, [X 1][W1; b1] = X W1 + b1, which saves a broadcast pass over (n, h) each way.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, overload

import numpy as np
from numpy.typing import ArrayLike

from backprop.activations import get_activation
from backprop.initializers import get_initializer
from backprop.losses import get_head, log_loss_of_logit
from backprop.metrics import (
    accuracy_of_logit,
    classification_metrics,
    regression_metrics,
    relative_error_weights,
    weighted_regression_accuracy,
)

DTYPES = ("float32", "float64")
# Rows per forward/backward slice. A batch's gradient is the sum of its slices' gradients (the
# loss is a mean over rows), and slices this small keep every (rows, h) array in cache: on large
# batches the elementwise passes, not the matrix products, would otherwise set the pace.
CHUNK_ROWS = 1024
PROGRESS_UPDATES = 100  # progress callbacks per fit, so the hot loop pays for ~100 updates, not one per epoch
# A loss this many times its starting value has left the range of a network that is learning:
# it would reach inf a few epochs later, after its overflowing weights had poisoned the curves.
DIVERGENCE_FACTOR = 1e6
# Early stopping counts an improvement only if it beats the best validation loss by this relative
# amount (scikit-learn's ``tol``): 1e-13 BLAS rounding noise must not move the best epoch.
DEFAULT_TOL = 1e-7
# The history grows in chunks as epochs run (doubling), instead of holding ``epochs`` rows from
# the start, so a fit that stops early never holds the rows it did not run.
HISTORY_FIRST_ROWS = 1024
# Regression accuracy 1 − mean(|y − ŷ|/|y|) below this means predictions a million times the
# targets: overflowed weights, not a score. Classification accuracy is a fraction, in [0, 1].
MIN_REGRESSION_ACCURACY = -1e6


class Progress(Protocol):
    """Anything with tqdm's ``update(n)``."""

    def update(self, n: int) -> object: ...


def plausible(scores: dict[str, float], task: str) -> bool:
    """Finite, and within what a score can be: NaN-free scores outside it come from overflow."""
    if not all(math.isfinite(value) for value in scores.values()):
        return False
    accuracy = scores.get("accuracy")
    if accuracy is None:
        return True
    if task == "classification":
        return 0.0 <= accuracy <= 1.0
    return accuracy >= MIN_REGRESSION_ACCURACY


@dataclass
class History:
    """Per-epoch curves of one ``fit``.

    Columns are ``<split>_<metric>`` (``train_mse``, ``val_log_loss``, ``test_accuracy``).
    Row e holds the metrics of the parameters after e updates (entering epoch e); for
    mini-batches the train columns are the mean over the epoch's batches, as scikit-learn
    reports them.
    """

    loss_name: str = "mse"
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    epochs_run: int = 0
    diverged: bool = False
    diverged_epoch: int | None = None
    best_epoch: int | None = None
    stopped_early: bool = False
    # The weights after the last update, when early stopping restored the best epoch's instead
    # (None: the model holds the last weights). A failed fit is judged at these, not at its start.
    last_theta: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def train_loss(self) -> np.ndarray:
        return self.columns[f"train_{self.loss_name}"]

    def final(self, column: str) -> float:
        return float(self.columns[column][self.epochs_run - 1])


@dataclass(eq=False)
class _Workspace:
    """Buffers for one batch size: layer outputs, error terms, derivative scratch, flat gradients.

    Per-layer lists are indexed by layer l = 1 … L (entry 0, the input, is None).
    """

    outputs: list  # a_l (n, h_l); z_L for the output layer
    errors: list  # δ_l (n, h_l)
    scratch: list  # g′ (n, h_l)
    ones: np.ndarray  # (n,): Σ_rows δ is computed as 1ᵀδ, one BLAS call
    grad_vector: np.ndarray  # ∂L/∂θ, flat
    grads: dict[str, np.ndarray]  # its W_l, b_l views
    first_layer_grads: np.ndarray  # its [∂L/∂W1; ∂L/∂b1] view
    grad_sum: np.ndarray  # the batch's gradient, summed over its slices
    _cut: dict[int, _Workspace] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def for_rows(cls, model: MLP, n: int) -> _Workspace:
        def per_layer() -> list:
            return [None] + [np.empty((n, size), model.dtype) for size in model.sizes[1:]]

        grad_vector = np.empty_like(model._theta)
        return cls(
            outputs=per_layer(),
            errors=per_layer(),
            scratch=per_layer(),
            ones=np.ones(n, model.dtype),
            grad_vector=grad_vector,
            grads=model._views(grad_vector),
            first_layer_grads=model._first_layer(grad_vector),
            grad_sum=np.empty_like(model._theta),
        )

    @property
    def capacity(self) -> int:
        return len(self.ones)

    def rows(self, m: int) -> _Workspace:
        """The same buffers cut to the first m rows (a shorter last slice or batch)."""
        if m == self.capacity:
            return self
        if m not in self._cut:

            def cut(buffers: list) -> list:
                return [None] + [buffer[:m] for buffer in buffers[1:]]

            self._cut[m] = dataclasses.replace(
                self, outputs=cut(self.outputs), errors=cut(self.errors), scratch=cut(self.scratch), ones=self.ones[:m]
            )
        return self._cut[m]


@dataclass(eq=False)
class _ScoredSet:
    """A data set whose curves a fit records each epoch: [X 1], y, the regression-accuracy weights
    (None when not scored) and forward-pass buffers of its size."""

    name: str
    X1: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None
    ws: _Workspace


class _Batches:
    """The training rows as one epoch's batches. A full batch is [X 1] made once; mini-batches are
    gathered, in a new random order each epoch, into one reused [X 1] buffer, so there is no
    second copy of a large X."""

    def __init__(
        self, model: MLP, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None, size: int, rng: np.random.Generator
    ):
        self.X, self.y, self.weights, self.rng = X, y, weights, rng
        self.n = len(X)
        self.size = self.n if size == 0 else min(size, self.n)
        self.full = self.size == self.n
        self.X1 = model._with_ones(X) if self.full else np.ones((self.size, X.shape[1] + 1), X.dtype)
        self.y_buffer = np.empty((self.size, 1), y.dtype)
        self.ws = _Workspace.for_rows(model, min(self.size, CHUNK_ROWS))

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """(X1, y, weights) of each mini-batch, in this epoch's order."""
        order = self.rng.permutation(self.n)
        for start in range(0, self.n, self.size):
            rows = order[start : start + self.size]
            np.take(self.X, rows, axis=0, out=self.X1[: len(rows), :-1])
            yb = np.take(self.y, rows, axis=0, out=self.y_buffer[: len(rows)])
            yield self.X1[: len(rows)], yb, (self.weights[rows] if self.weights is not None else None)


@dataclass(eq=False)
class _Curves:
    """The per-epoch scores of a fit: a row per epoch, a block of ``names`` columns per split, train
    first. Rows are added in doubling chunks as epochs run, not ``epochs`` of them up front."""

    epochs: int
    splits: list[str]
    names: list[str]
    keep: list[str]  # the names the history reports
    mse_scale: float  # std² of a standardised target: MSE back in the target's units
    width: int = field(init=False)
    blocks: list[slice] = field(init=False)  # the columns of each split
    table: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.width = len(self.names)
        self.blocks = [slice(k * self.width, (k + 1) * self.width) for k in range(len(self.splits))]
        self.table = np.full((min(self.epochs, HISTORY_FIRST_ROWS), len(self.splits) * self.width), np.nan)

    def row(self, epoch: int) -> np.ndarray:
        if epoch == len(self.table):
            grown = np.full((min(2 * epoch, self.epochs), self.table.shape[1]), np.nan)
            grown[:epoch] = self.table
            self.table = grown
        return self.table[epoch]

    def columns(self, epochs_run: int) -> dict[str, np.ndarray]:
        """``<split>_<name>`` → its curve over the epochs run."""
        rows, columns = self.table[:epochs_run], {}
        for k, split in enumerate(self.splits):
            for i, name in enumerate(self.names):
                if name not in self.keep:
                    continue
                column = rows[:, k * self.width + i]
                columns[f"{split}_{name}"] = column * self.mse_scale if name == "mse" else column
        return columns


@dataclass(eq=False)
class _EarlyStopping:
    """The best validation loss so far, its epoch and parameters; done after ``patience`` epochs
    without a loss below best × (1 − ``tol``)."""

    patience: int
    tol: float
    best_loss: float = math.inf
    best_epoch: int | None = None
    best_theta: np.ndarray | None = None
    waited: int = 0

    def update(self, epoch: int, val_loss: float, theta: np.ndarray) -> None:
        if val_loss < self.best_loss * (1.0 - self.tol):
            self.best_loss, self.best_epoch, self.best_theta, self.waited = val_loss, epoch, theta.copy(), 0
        else:
            self.waited += 1

    @property
    def done(self) -> bool:
        return self.patience > 0 and self.waited >= self.patience


class _Divergence:
    """A training loss that is not finite, or above ``DIVERGENCE_FACTOR`` × the first epoch's."""

    def __init__(self) -> None:
        self.limit = float(np.finfo(float).max)  # until the first epoch's loss sets it

    def seen(self, epoch: int, loss: float) -> bool:
        if not loss <= self.limit:  # NaN fails <= too
            return True
        if epoch == 0 and loss > 0:
            self.limit = min(DIVERGENCE_FACTOR * loss, self.limit)
        return False


class MLP:
    """Input → hidden layers with activation g → one output unit with the task's head.

    task="regression": identity output, mean squared error.
    task="classification": sigmoid output, log loss (or ``loss="mse"`` to show why not).
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int] = (16,),
        activation: str = "sigmoid",
        task: str = "regression",
        loss: str | None = None,
        init: str = "glorot",
        rng: np.random.Generator | int = 0,
        dtype: str = "float64",
    ):
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        if not isinstance(n_inputs, int | np.integer) or n_inputs < 1:
            raise ValueError(f"n_inputs must be an integer >= 1, got {n_inputs!r}")
        if not hidden:
            raise ValueError("hidden must list at least one layer size, got []")
        for size in hidden:
            if not isinstance(size, int | np.integer) or size < 1:
                raise ValueError(f"hidden layer sizes must be integers >= 1, got {hidden}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        self.loss_name, self.head = get_head(task, loss)
        self.g = get_activation(activation)
        initializer = get_initializer(init)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.config: dict[str, Any] = {
            "n_inputs": int(n_inputs),
            "hidden": [int(h) for h in hidden],
            "activation": activation,
            "task": task,
            "loss": self.loss_name,
            "init": init,
            "dtype": dtype,
        }
        self.task, self.dtype = task, np.dtype(dtype)
        self.sizes = [int(n_inputs), *self.config["hidden"], 1]
        self.n_layers = len(self.sizes) - 1
        self._theta = np.zeros(sum(a * b + b for a, b in self._layer_shapes()), self.dtype)
        self.params = self._views(self._theta)
        self._first_layer_params = self._first_layer(self._theta)  # [W1; b1]
        for layer, (fan_in, fan_out) in enumerate(self._layer_shapes(), start=1):
            self.params[f"W{layer}"][...] = initializer(self.rng, fan_in, fan_out)

    # ---- parameters -------------------------------------------------------------------------

    def _layer_shapes(self) -> list[tuple[int, int]]:
        return list(zip(self.sizes[:-1], self.sizes[1:], strict=True))

    def _views(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """Cut a flat vector into W1, b1, W2, b2, … views (writes go through to the vector)."""
        views, start = {}, 0
        for layer, (fan_in, fan_out) in enumerate(self._layer_shapes(), start=1):
            views[f"W{layer}"] = vector[start : start + fan_in * fan_out].reshape(fan_in, fan_out)
            start += fan_in * fan_out
            views[f"b{layer}"] = vector[start : start + fan_out]
            start += fan_out
        return views

    def _first_layer(self, vector: np.ndarray) -> np.ndarray:
        """[W1; b1] as one (f + 1, h_1) view: b1 follows W1 in the vector, one row more."""
        fan_in, fan_out = self.sizes[0], self.sizes[1]
        return vector[: (fan_in + 1) * fan_out].reshape(fan_in + 1, fan_out)

    def _with_ones(self, X: np.ndarray) -> np.ndarray:
        """[X 1], shape (n, f + 1): the input the first layer's [W1; b1] multiplies."""
        X1 = np.empty((len(X), X.shape[1] + 1), self.dtype)
        X1[:, :-1] = X
        X1[:, -1] = 1.0
        return X1

    # ---- the derivation ---------------------------------------------------------------------

    def _forward(self, X1: np.ndarray, ws: _Workspace) -> np.ndarray:
        """z_l = a_{l-1} W_l + b_l, a_l = g(z_l) for X1 = [X 1]; returns the output logit z_L (n, 1)."""
        a = X1  # (n, f + 1)
        for layer in range(1, self.n_layers + 1):
            z = ws.outputs[layer]  # (n, h_l)
            if layer == 1:
                np.dot(X1, self._first_layer_params, out=z)  # z_1 = [X 1][W1; b1] = X W1 + b1
            else:
                np.dot(a, self.params[f"W{layer}"], out=z)
                z += self.params[f"b{layer}"]
            if layer < self.n_layers:
                self.g.function(z, out=z)  # a_l = g(z_l), in place: backward needs only a_l
            a = z
        return a

    def _backward(self, X1: np.ndarray, y: np.ndarray, ws: _Workspace, n: int) -> dict[str, np.ndarray]:
        """∂L/∂θ for the rows whose forward pass ``ws`` holds, out of a batch of n, keyed like ``params``."""
        L, grads = self.n_layers, ws.grads
        delta = self.head.output_error(ws.outputs[L], y, out=ws.errors[L], n=n)  # (n, 1)  δ_L = ∂L/∂z_L
        for layer in range(L, 1, -1):
            a_prev = ws.outputs[layer - 1]  # (n, h_{l-1})
            np.dot(a_prev.T, delta, out=grads[f"W{layer}"])  # (h_{l-1}, h_l)  ∂L/∂W_l = a_{l-1}ᵀ δ_l
            np.dot(ws.ones, delta, out=grads[f"b{layer}"])  # (h_l,)  ∂L/∂b_l = Σ_rows δ_l = 1ᵀ δ_l
            delta_prev = ws.errors[layer - 1]  # (n, h_{l-1})
            np.dot(delta, self.params[f"W{layer}"].T, out=delta_prev)  # δ_l W_lᵀ
            delta_prev *= self.g.derivative(a_prev, out=ws.scratch[layer - 1])  # ⊙ g′(z_{l-1})
            delta = delta_prev
        # (f + 1, h_1)  [∂L/∂W1; ∂L/∂b1] = [X 1]ᵀ δ_1 = [Xᵀ δ_1; 1ᵀ δ_1]
        np.dot(X1.T, delta, out=ws.first_layer_grads)
        return grads

    # ---- public API ---------------------------------------------------------------------------

    @overload
    def _check(self, X: ArrayLike, y: None = None) -> np.ndarray: ...
    @overload
    def _check(self, X: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]: ...

    def _check(self, X: ArrayLike, y: ArrayLike | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have shape (n, {self.sizes[0]}) for this network, got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or inf")
        if y is None:
            return np.ascontiguousarray(X)
        y_in = np.asarray(y)
        if y_in.ndim not in (1, 2) or y_in.shape[0] != X.shape[0] or y_in.size != X.shape[0]:
            raise ValueError(
                f"X and y must have the same number of rows and y one column, got X {X.shape} and y {y_in.shape}"
            )
        y = np.asarray(y_in, dtype=self.dtype).reshape(-1, 1)
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or inf")
        if self.task == "classification" and not np.all((y == 0) | (y == 1)):
            raise ValueError("y must hold only 0 and 1 for task 'classification'")
        return np.ascontiguousarray(X), y

    def _logit_of_checked(self, X: np.ndarray) -> np.ndarray:
        """The output logit for an X that passed ``_check``, in buffers of its own."""
        return self._forward(self._with_ones(X), _Workspace.for_rows(self, len(X)))

    def logit(self, X: ArrayLike) -> np.ndarray:
        return self._logit_of_checked(self._check(X)).copy()

    def predict(self, X: ArrayLike) -> np.ndarray:
        """ŷ, shape (n,): the value for regression, P(y = 1) for classification."""
        return self.head.output(self.logit(X)).ravel()

    def predict_class(self, X: ArrayLike) -> np.ndarray:
        if self.task != "classification":
            raise ValueError("predict_class needs task 'classification'")
        return (self.logit(X).ravel() > 0).astype(int)

    def loss(self, X: ArrayLike, y: ArrayLike) -> float:
        X, y = self._check(X, y)
        return self.head.loss(self._logit_of_checked(X), y)

    def gradients(self, X: ArrayLike, y: ArrayLike) -> dict[str, np.ndarray]:
        X, y = self._check(X, y)
        X1, ws = self._with_ones(X), _Workspace.for_rows(self, len(X))
        self._forward(X1, ws)
        return {name: grad.copy() for name, grad in self._backward(X1, y, ws, len(X)).items()}

    def evaluate(self, X: ArrayLike, y: ArrayLike, *, with_accuracy: bool = True) -> dict[str, float]:
        """Final scores: regression mse, rmse, r2 (+ accuracy); classification log_loss, accuracy."""
        X, y = self._check(X, y)
        with np.errstate(over="ignore", invalid="ignore"):
            z = self._logit_of_checked(X)
            if self.task == "regression":
                scores = regression_metrics(y, z, with_accuracy=with_accuracy)
            else:
                scores = classification_metrics(y, z)
        if not plausible(scores, self.task):
            # Overflowed weights give inf or garbage like accuracy -2e152: not a score.
            return dict.fromkeys(scores, math.nan)
        return scores

    def history_columns(self) -> list[str]:
        """Per-split curve names: the loss by its metric name, accuracy, and log loss for a
        classifier trained on MSE so both losses can be compared on one scale."""
        extra = ["log_loss"] if self.task == "classification" and self.loss_name != "log_loss" else []
        return [self.loss_name, "accuracy", *extra]

    def _scores(self, z: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> list[float]:
        """One row of ``history_columns`` for the logit z of targets y (metrics.py's definitions);
        regression accuracy only with ``weights`` (``relative_error_weights``)."""
        loss = self.head.loss(z, y)
        if self.task == "regression":
            return [loss, weighted_regression_accuracy(y, z, weights) if weights is not None else math.nan]
        extra = [log_loss_of_logit(z, y)] if self.loss_name != "log_loss" else []
        return [loss, accuracy_of_logit(y, z), *extra]

    def _batch_step(
        self, X1: np.ndarray, y: np.ndarray, weights: np.ndarray | None, ws: _Workspace, step: np.floating
    ) -> list[float]:
        """One gradient-descent step on the batch (X1 = [X 1], y), slice by slice; returns the
        batch's scores before the step."""
        n, size = len(X1), ws.capacity
        if n <= size:  # one slice: the gradient is the slice's
            part = ws.rows(n)
            scores = self._scores(self._forward(X1, part), y, weights)
            self._backward(X1, y, part, n)
            self._theta -= step * ws.grad_vector
            return scores
        ws.grad_sum.fill(0)
        totals = np.zeros(len(self.history_columns()))
        for start in range(0, n, size):
            stop = min(start + size, n)
            part, xs, ys = ws.rows(stop - start), X1[start:stop], y[start:stop]
            weights_s = weights[start:stop] if weights is not None else None
            totals += np.multiply(self._scores(self._forward(xs, part), ys, weights_s), stop - start)
            self._backward(xs, ys, part, n)
            ws.grad_sum += ws.grad_vector
        self._theta -= step * ws.grad_sum
        return list(totals / n)

    def _epoch(self, batches: _Batches, step: np.floating) -> list[float] | np.ndarray:
        """One pass of gradient descent over the training rows; returns their scores, for
        mini-batches the mean of each batch's scores before its step."""
        if batches.full:
            return self._batch_step(batches.X1, batches.y, batches.weights, batches.ws, step)
        totals = np.zeros(len(self.history_columns()))
        for X1, y, weights in batches:
            totals += np.multiply(self._batch_step(X1, y, weights, batches.ws, step), len(y))
        return totals / batches.n

    def _score_sets(self, scored: list[_ScoredSet], row: np.ndarray, curves: _Curves) -> None:
        """The curves' entries of each monitored set at the current weights."""
        for entry, block in zip(scored, curves.blocks[1:], strict=True):
            row[block] = self._scores(self._forward(entry.X1, entry.ws), entry.y, entry.weights)

    def _check_fit_args(
        self,
        lr: float,
        epochs: int,
        batch_size: int,
        patience: int,
        tol: float,
        X_val: ArrayLike | None,
        y_val: ArrayLike | None,
        target_scale: tuple[float, float] | None,
    ) -> None:
        """``fit``'s settings, in its order: a one-line ValueError naming the first bad one."""
        if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be > 0, got {lr}")
        if not isinstance(epochs, int | np.integer) or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {epochs}")
        if not isinstance(batch_size, int | np.integer) or batch_size < 0:
            raise ValueError(f"batch_size must be an integer >= 0 (0 = full batch), got {batch_size}")
        if not isinstance(patience, int | np.integer) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0 (0 = off), got {patience}")
        if not (isinstance(tol, int | float) and 0 <= tol < 1):
            raise ValueError(f"tol must be in [0, 1), got {tol}")
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val and y_val must be given together")
        if patience and X_val is None:
            raise ValueError("patience > 0 needs validation data (X_val, y_val)")
        if target_scale is not None and (self.task != "regression" or not target_scale[1] > 0):
            raise ValueError(f"target_scale must be (mean, std > 0) of a regression target, got {target_scale}")

    def _scored_set(self, name: str, X: ArrayLike, y: ArrayLike, weights_of: Callable) -> _ScoredSet:
        X, y = self._check(X, y)
        return _ScoredSet(name, self._with_ones(X), y, weights_of(y), _Workspace.for_rows(self, len(X)))

    def _weights_of(self, track_accuracy: bool, target_scale: tuple[float, float] | None) -> Callable:
        """y → its regression-accuracy weights, or None when the curves have no regression accuracy."""
        if not (track_accuracy and self.task == "regression"):
            return lambda y: None
        mean, std = target_scale or (0.0, 1.0)
        return partial(relative_error_weights, mean=mean, std=std)

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        lr: float,
        epochs: int,
        batch_size: int = 0,
        X_val: ArrayLike | None = None,
        y_val: ArrayLike | None = None,
        patience: int = 0,
        tol: float = DEFAULT_TOL,
        monitor: dict[str, tuple[ArrayLike, ArrayLike]] | None = None,
        track_accuracy: bool = True,
        rng: np.random.Generator | None = None,
        progress: Progress | None = None,
        target_scale: tuple[float, float] | None = None,
    ) -> History:
        """Gradient descent θ ← θ − lr ∂L/∂θ; full batch when ``batch_size`` is 0.

        Curves are recorded for the training data, for (X_val, y_val) as ``val`` and for every
        ``monitor`` entry ``{name: (X, y)}``; only ``val`` drives early stopping. A non-finite
        training loss, or one above ``DIVERGENCE_FACTOR`` × the first epoch's, stops training and
        marks the history ``diverged``: a result, not an exception. ``patience`` > 0 stops after
        that many epochs without a validation loss below best × (1 − ``tol``) and restores the best
        parameters. ``progress`` is anything with tqdm's ``update(n)``.

        ``target_scale = (mean, std)`` says that every y given is a regression target standardised
        as (y − mean) / std: the network learns in those units, and the curves are reported in
        the original ones (MSE × std², accuracy against the original target), so that they compare
        with unscaled fits. ``absorb_target_scale`` then moves the network itself to those units.
        """
        self._check_fit_args(lr, epochs, batch_size, patience, tol, X_val, y_val, target_scale)
        X, y = self._check(X, y)
        track_accuracy = track_accuracy or self.task == "classification"
        weights_of = self._weights_of(track_accuracy, target_scale)
        val = {"val": (X_val, y_val)} if X_val is not None and y_val is not None else {}  # both or neither
        named_sets = val | dict(monitor or {})
        scored = [self._scored_set(name, X_set, y_set, weights_of) for name, (X_set, y_set) in named_sets.items()]
        batches = _Batches(self, X, y, weights_of(y), batch_size, rng or self.rng)
        names = self.history_columns()
        curves = _Curves(
            epochs,
            splits=["train", *(entry.name for entry in scored)],
            names=names,
            keep=[name for name in names if name != "accuracy" or track_accuracy],
            mse_scale=(target_scale or (0.0, 1.0))[1] ** 2,
        )
        stopping, divergence, history = _EarlyStopping(patience, tol), _Divergence(), History(self.loss_name)
        step, report_every = self.dtype.type(lr), max(1, epochs // PROGRESS_UPDATES)

        with np.errstate(all="ignore"):
            for epoch in range(epochs):
                row = curves.row(epoch)
                self._score_sets(scored, row, curves)  # at the weights entering the epoch
                if patience:
                    stopping.update(epoch, row[curves.width], self._theta)  # val is the first scored set
                row[curves.blocks[0]] = self._epoch(batches, step)
                history.epochs_run = epoch + 1
                # Non-finite weights give a non-finite loss at the next epoch, so the loss is
                # enough here; the last update is checked once, in ``_finish``.
                if divergence.seen(epoch, row[0]):
                    history.diverged, history.diverged_epoch = True, epoch
                    break
                if progress is not None and (epoch + 1) % report_every == 0:
                    progress.update(report_every)
                if stopping.done:
                    history.stopped_early = True
                    break

        self._finish(history, stopping)
        history.columns = curves.columns(history.epochs_run)
        return history

    def _finish(self, history: History, stopping: _EarlyStopping) -> None:
        """After the last epoch: check its update's weights, and restore the best epoch's."""
        if not history.diverged and not np.isfinite(self._theta).all():
            history.diverged, history.diverged_epoch = True, history.epochs_run - 1
        if stopping.best_theta is not None and not history.diverged:
            history.last_theta = self._theta.copy()
            self._theta[...] = stopping.best_theta
        history.best_epoch = stopping.best_epoch

    def absorb_target_scale(self, mean: float, std: float) -> None:
        """Make a network trained on (y − mean) / std predict y itself: ŷ = std·z_L + mean, so
        W_L ← std·W_L and b_L ← std·b_L + mean. Predictions, scores and saved weights are then in
        the target's own units."""
        if self.task != "regression":
            raise ValueError(f"only a regression network has a target scale, this one is for {self.task!r}")
        last = self.n_layers
        self.params[f"W{last}"][...] *= std
        self.params[f"b{last}"][...] = self.params[f"b{last}"] * std + mean

    # ---- persistence ----------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Weights and config in one .npz, loadable with allow_pickle=False."""
        with open(path, "wb") as handle:
            arrays: dict[str, Any] = {"config": np.array(json.dumps(self.config)), **self.params}
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> MLP:
        with np.load(path, allow_pickle=False) as archive:
            config = json.loads(str(archive["config"]))
            model = cls(**config)
            for name, value in model.params.items():
                if archive[name].shape != value.shape:
                    raise ValueError(f"{path}: {name} has shape {archive[name].shape}, expected {value.shape}")
                if not np.isfinite(archive[name]).all():
                    raise ValueError(f"{path}: {name} has NaN or inf values: not a usable network")
                value[...] = archive[name]
        return model
