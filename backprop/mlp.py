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

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backprop.activations import get_activation
from backprop.initializers import get_initializer
from backprop.losses import get_head, log_loss_of_logit
from backprop.metrics import (
    check_regression_accuracy_defined,
    classification_metrics,
    regression_metrics,
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
# the start; its worst case is still refused up front when it would not fit in memory.
HISTORY_FIRST_ROWS = 1024
HISTORY_MAX_COLUMNS = 12  # 3 curves (loss, accuracy, log loss) × train, val, test and one more set
# Regression accuracy 1 − mean(|y − ŷ|/|y|) below this means predictions a million times the
# targets: overflowed weights, not a score. Classification accuracy is a fraction, in [0, 1].
MIN_REGRESSION_ACCURACY = -1e6


def history_bytes(epochs: int, columns: int = HISTORY_MAX_COLUMNS) -> int:
    return int(epochs) * columns * np.dtype(float).itemsize


def memory_bytes() -> int | None:
    """Physical memory of this machine, where the OS says (Linux, macOS)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def history_too_large(epochs: int, columns: int = HISTORY_MAX_COLUMNS) -> str | None:
    """Why ``epochs`` rows of history cannot fit (more than half the machine's memory), or None."""
    need, memory = history_bytes(epochs, columns), memory_bytes()
    if memory is None or need <= memory // 2:
        return None
    return (
        f"{epochs} epochs would need {need / 2**30:.3g} GiB for the per-epoch history alone "
        f"({columns} curves × 8 bytes), over half this machine's {memory / 2**30:.3g} GiB"
    )


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

    @property
    def train_loss(self) -> np.ndarray:
        return self.columns[f"train_{self.loss_name}"]

    def final(self, column: str) -> float:
        return float(self.columns[column][self.epochs_run - 1])


class _Workspace:
    """Buffers for one batch size: layer outputs, error terms, derivative scratch, flat gradients."""

    def __init__(self, model: MLP, n: int):
        sizes, dtype = model.sizes, model.dtype
        self.capacity = n
        self.outputs = [None] + [np.empty((n, size), dtype) for size in sizes[1:]]
        self.errors = [None] + [np.empty((n, size), dtype) for size in sizes[1:]]
        self.scratch = [None] + [np.empty((n, size), dtype) for size in sizes[1:]]
        self.ones = np.ones(n, dtype)  # Σ_rows δ is computed as 1ᵀδ: one BLAS call
        self.grad_vector = np.empty_like(model._theta)
        self.grads = model._views(self.grad_vector)
        self.first_layer_grads = model._first_layer(self.grad_vector)  # [∂L/∂W1; ∂L/∂b1]
        self.grad_sum = np.empty_like(model._theta)
        self._cut: dict[int, _Workspace] = {}

    def rows(self, m: int) -> _Workspace:
        """The same buffers cut to the first m rows (a shorter last slice or batch)."""
        if m == self.capacity:
            return self
        if m not in self._cut:
            self._cut[m] = self._cut_to(m)
        return self._cut[m]

    def _cut_to(self, m: int) -> _Workspace:
        view = object.__new__(_Workspace)
        view.capacity = m
        view.outputs = [None] + [b[:m] for b in self.outputs[1:]]
        view.errors = [None] + [b[:m] for b in self.errors[1:]]
        view.scratch = [None] + [b[:m] for b in self.scratch[1:]]
        view.ones = self.ones[:m]
        view.grad_vector, view.grads, view.grad_sum, view._cut = self.grad_vector, self.grads, self.grad_sum, {}
        view.first_layer_grads = self.first_layer_grads
        return view


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
        self.config = {
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

    def _layer_shapes(self):
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

    def _check(self, X, y=None):
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
        return self._forward(self._with_ones(X), _Workspace(self, len(X)))

    def logit(self, X) -> np.ndarray:
        return self._logit_of_checked(self._check(X)).copy()

    def predict(self, X) -> np.ndarray:
        """ŷ, shape (n,): the value for regression, P(y = 1) for classification."""
        return self.head.output(self.logit(X)).ravel()

    def predict_class(self, X) -> np.ndarray:
        if self.task != "classification":
            raise ValueError("predict_class needs task 'classification'")
        return (self.logit(X).ravel() > 0).astype(int)

    def loss(self, X, y) -> float:
        X, y = self._check(X, y)
        return self.head.loss(self._logit_of_checked(X), y)

    def gradients(self, X, y) -> dict[str, np.ndarray]:
        X, y = self._check(X, y)
        X1, ws = self._with_ones(X), _Workspace(self, len(X))
        self._forward(X1, ws)
        return {name: grad.copy() for name, grad in self._backward(X1, y, ws, len(X)).items()}

    def evaluate(self, X, y, *, with_accuracy: bool = True) -> dict[str, float]:
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

    def _epoch_scores(self, z: np.ndarray, y: np.ndarray, inverse_abs_y) -> list[float]:
        loss = self.head.loss(z, y)
        if self.task == "classification":
            accuracy = float(np.count_nonzero((z > 0) == (y > 0.5))) / len(y)
        elif inverse_abs_y is not None:
            accuracy = 1.0 - float(np.vdot(np.abs(z - y), inverse_abs_y)) / len(y)
        else:
            accuracy = math.nan
        if self.task == "classification" and self.loss_name != "log_loss":
            return [loss, accuracy, log_loss_of_logit(z, y)]
        return [loss, accuracy]

    def _batch_step(self, X1, y, inverse_abs_y, ws: _Workspace, step) -> list[float]:
        """One gradient-descent step on the batch (X1 = [X 1], y), slice by slice; returns the
        batch's scores before the step."""
        n, size = len(X1), ws.capacity
        if n <= size:  # one slice: the gradient is the slice's
            part = ws.rows(n)
            scores = self._epoch_scores(self._forward(X1, part), y, inverse_abs_y)
            self._backward(X1, y, part, n)
            self._theta -= step * ws.grad_vector
            return scores
        ws.grad_sum.fill(0)
        totals = np.zeros(len(self.history_columns()))
        for start in range(0, n, size):
            stop = min(start + size, n)
            part, xs, ys = ws.rows(stop - start), X1[start:stop], y[start:stop]
            inverse = inverse_abs_y[start:stop] if inverse_abs_y is not None else None
            totals += np.multiply(self._epoch_scores(self._forward(xs, part), ys, inverse), stop - start)
            self._backward(xs, ys, part, n)
            ws.grad_sum += ws.grad_vector
        self._theta -= step * ws.grad_sum
        return list(totals / n)

    def fit(
        self,
        X,
        y,
        *,
        lr: float,
        epochs: int,
        batch_size: int = 0,
        X_val=None,
        y_val=None,
        patience: int = 0,
        tol: float = DEFAULT_TOL,
        monitor: dict | None = None,
        track_accuracy: bool = True,
        rng: np.random.Generator | None = None,
        progress=None,
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
        too_large = history_too_large(epochs)
        if too_large:
            raise ValueError(f"epochs: {too_large}")
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val and y_val must be given together")
        if patience and X_val is None:
            raise ValueError("patience > 0 needs validation data (X_val, y_val)")
        if target_scale is not None and (self.task != "regression" or not target_scale[1] > 0):
            raise ValueError(f"target_scale must be (mean, std > 0) of a regression target, got {target_scale}")
        y_mean, y_std = target_scale or (0.0, 1.0)
        X, y = self._check(X, y)
        named_sets = ({"val": (X_val, y_val)} if X_val is not None else {}) | dict(monitor or {})
        track_accuracy = track_accuracy or self.task == "classification"
        regression_accuracy = track_accuracy and self.task == "regression"

        def inverse_abs_target(y_set):
            # |ŷ − y| / |y| in original units: std·|ŷ_s − y_s| / |y|, so 1/|y| becomes std/|y|.
            original = y_set * y_std + y_mean
            check_regression_accuracy_defined(original)
            return y_std / np.abs(original)

        evaluated = []  # (name, X, y, workspace, std/|y| or None)
        for name, (X_set, y_set) in named_sets.items():
            X_set, y_set = self._check(X_set, y_set)
            inverse = inverse_abs_target(y_set) if regression_accuracy else None
            evaluated.append((name, self._with_ones(X_set), y_set, _Workspace(self, len(X_set)), inverse))
        rng = rng or self.rng

        n = len(X)
        batch = n if batch_size == 0 else min(batch_size, n)
        step = self.dtype.type(lr)
        names = self.history_columns()
        width = len(names)
        capacity = min(epochs, HISTORY_FIRST_ROWS)
        curves = np.full((capacity, width * (1 + len(evaluated))), np.nan)
        inverse_train = inverse_abs_target(y) if regression_accuracy else None
        ws = _Workspace(self, min(batch, CHUNK_ROWS))
        # A full batch is [X 1] made once; mini-batches are gathered row by row into one reused
        # [X 1] buffer, so there is no second copy of a large X.
        X1 = self._with_ones(X) if batch == n else None
        batch_X1 = np.ones((batch, X.shape[1] + 1), X.dtype) if batch < n else None
        batch_y = np.empty((batch, 1), y.dtype)
        history = History(loss_name=self.loss_name)
        best_loss, best_theta, waited = math.inf, None, 0
        improvement = 1.0 - tol
        report_every = max(1, epochs // PROGRESS_UPDATES)
        loss_limit = np.finfo(float).max  # until the first epoch's loss sets it

        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            for epoch in range(epochs):
                if epoch == capacity:
                    capacity = min(2 * capacity, epochs)
                    grown = np.full((capacity, curves.shape[1]), np.nan)
                    grown[:epoch] = curves
                    curves = grown
                for k, (_, X_set, y_set, ws_set, inverse) in enumerate(evaluated, start=1):
                    z_set = self._forward(X_set, ws_set)
                    curves[epoch, k * width : (k + 1) * width] = self._epoch_scores(z_set, y_set, inverse)
                if patience:
                    if curves[epoch, width] < best_loss * improvement:
                        best_loss, best_theta, waited = curves[epoch, width], self._theta.copy(), 0
                        history.best_epoch = epoch
                    else:
                        waited += 1
                if batch == n:
                    curves[epoch, :width] = self._batch_step(X1, y, inverse_train, ws, step)
                else:
                    order = rng.permutation(n)
                    totals = np.zeros(width)
                    for start in range(0, n, batch):
                        rows = order[start : start + batch]
                        np.take(X, rows, axis=0, out=batch_X1[: len(rows), :-1])
                        xb = batch_X1[: len(rows)]
                        yb = np.take(y, rows, axis=0, out=batch_y[: len(rows)])
                        inverse_b = inverse_train[rows] if inverse_train is not None else None
                        scores = self._batch_step(xb, yb, inverse_b, ws, step)
                        totals += np.multiply(scores, len(rows))
                    curves[epoch, :width] = totals / n
                history.epochs_run = epoch + 1
                # Non-finite weights give a non-finite loss at the next epoch, so the loss is
                # enough here; the last update is checked once, after the loop. NaN fails <= too.
                if not curves[epoch, 0] <= loss_limit:
                    history.diverged, history.diverged_epoch = True, epoch
                    break
                if epoch == 0 and curves[0, 0] > 0:
                    loss_limit = min(DIVERGENCE_FACTOR * curves[0, 0], loss_limit)
                if progress is not None and (epoch + 1) % report_every == 0:
                    progress.update(report_every)
                if patience and waited >= patience:
                    history.stopped_early = True
                    break

        if not history.diverged and not np.isfinite(self._theta).all():
            history.diverged, history.diverged_epoch = True, history.epochs_run - 1
        if best_theta is not None and not history.diverged:
            self._theta[...] = best_theta
        rows = curves[: history.epochs_run]
        for k, split in enumerate(["train"] + [entry[0] for entry in evaluated]):
            for i, name in enumerate(names):
                if name == "accuracy" and not track_accuracy:
                    continue
                column = rows[:, k * width + i]
                history.columns[f"{split}_{name}"] = column * y_std**2 if name == "mse" else column
        return history

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
            np.savez(handle, config=np.array(json.dumps(self.config)), **self.params)

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
