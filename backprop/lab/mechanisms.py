"""What a fit's numbers are made of: measures of a network's hidden units and of its training
curve that explain why a fit stalled, spiked or trained slowly. NumPy only, no I/O; they read
the network's weights (``model.params``, ``model.config``) and never train it.

- A sigmoid or tanh unit is **saturated** on a row when its slope g′(z) is below
  ``SATURATION_SLOPE`` of the largest slope g′(0): almost no gradient flows back through it. The
  slope of σ is 1/(4 cosh²(z/2)) and of tanh 1/cosh²(z), so the threshold on |z| is
  2·arccosh(1/√s) for σ and arccosh(1/√s) for tanh (3.64 and 1.82 at s = 0.1).
- A ReLU (or leaky ReLU) unit is **dead** when z ≤ 0 on every row: its gradient is 0 (leaky: the
  leak's slope) on all of them, so gradient descent cannot bring it back.
- The **closed-form lr limit**: at initialisation the top Hessian eigenvalue is close to the output
  layer's Gauss–Newton block, c·(1 + ‖ā‖²), with ā the mean last-hidden activation over the rows
  and c the loss's curvature in the output (2 for MSE on an identity output; p(1 − p) for log
  loss on a sigmoid output, 2(p(1 − p))² for MSE there, averaged over the rows). The limit 2/λ₀
  follows: with σ's ā ≈ ½ per unit, λ₀ ≈ 2(1 + h/4) and the limit ≈ 4/(h + 4) for a standardised
  regression target. It explains why the stable step shrinks as a layer widens.
- The **sharpness** λ_max of the returned weights, against the rate: lr·λ_max/2 is 1 at the edge
  of stability (Cohen et al. 2021: full-batch gradient descent drives λ_max up to 2/lr and holds
  it there) and below 1 for a network that settled in a flatter region (after a catapult,
  Lewkowycz et al. 2020, λ_max ends below 2/lr). A ReLU's slope jumps at z = 0, and a
  finite-difference Hessian-vector product whose step carries one row's z across 0 adds that
  jump divided by the step; for those activations (``KINKED``) the step shrinks until no unit
  changes side, giving the Hessian of the linear piece the weights are on.
- The **landing** of a catapult: the first epoch after the peak of the training loss whose loss
  is back at or below its start, where the sharpness after the spike is read.
"""

from __future__ import annotations

import math

import numpy as np

from backprop.activations import get_activation

# A unit's slope below this fraction of its largest counts as saturated on that row.
SATURATION_SLOPE = 0.1
# A unit is saturated when it is saturated on more than this fraction of the rows.
SATURATED_ROWS = 0.5
_ARCCOSH = math.acosh(1.0 / math.sqrt(SATURATION_SLOPE))
SATURATION_Z = {"sigmoid": 2.0 * _ARCCOSH, "tanh": _ARCCOSH}
DEAD = ("relu", "leaky_relu")
# Piecewise-linear activations, whose sharpness keeps every unit on its side of the kink: with
# the plain step, 20 of 40 ReLU and leaky-ReLU fits of the activation sweep (diabetes, control;
# lr 0.03, 0.1) read λ_max up to 17× the exact Hessian's (166 against 9.92); with it, all 40
# agree with the exact one to 2e-11.
KINKED = ("relu", "leaky_relu")


def hidden_preactivations(model, X: np.ndarray) -> list[np.ndarray]:
    """z_l = a_{l−1} W_l + b_l of every hidden layer, (n, h_l) each, from the model's weights."""
    g = get_activation(model.config["activation"]).function
    a, layers = np.asarray(X, dtype=float), []
    for layer in range(1, model.n_layers):
        z = a @ model.params[f"W{layer}"] + model.params[f"b{layer}"]
        layers.append(z)
        a = g(z.copy())
    return layers


def saturated_fraction(layers: list[np.ndarray], activation: str) -> float:
    """The fraction of hidden units (over every layer) whose |z| is past ``SATURATION_Z`` on more
    than ``SATURATED_ROWS`` of the rows; NaN for an activation that does not saturate."""
    if activation not in SATURATION_Z:
        return math.nan
    threshold = SATURATION_Z[activation]
    flags = [(np.abs(z) > threshold).mean(axis=0) > SATURATED_ROWS for z in layers]
    return float(np.concatenate(flags).mean())


def dead_fraction(layers: list[np.ndarray], activation: str) -> float:
    """The fraction of hidden units (over every layer) with z ≤ 0 on every row; NaN for an
    activation without a flat side."""
    if activation not in DEAD:
        return math.nan
    return float(np.concatenate([(z <= 0).all(axis=0) for z in layers]).mean())


def unit_measures(model, X: np.ndarray) -> dict[str, float]:
    """``saturated_units`` and ``dead_units`` of the model's hidden layers on the rows ``X``."""
    layers = hidden_preactivations(model, X)
    activation = model.config["activation"]
    return {"saturated_units": saturated_fraction(layers, activation), "dead_units": dead_fraction(layers, activation)}


def unit_sides(model, X: np.ndarray) -> np.ndarray:
    """Which side of its kink (z > 0 or not) every hidden unit is on, on every row, flattened."""
    return np.concatenate([(z > 0).ravel() for z in hidden_preactivations(model, X)])


def sharpness(model, X: np.ndarray, y: np.ndarray, *, rng: np.random.Generator) -> float:
    """λ_max of the Hessian of the model's own loss at its current weights (``curvature``'s
    Lanczos); 0 when no direction curves up, NaN for weights that are not finite."""
    from backprop.lab.curvature import lr_limit

    if not np.isfinite(model._theta).all():
        return math.nan
    kinked = model.config["activation"] in KINKED
    limit = lr_limit(model, X, y, rng=rng, pattern=(lambda: unit_sides(model, X)) if kinked else None)
    return 0.0 if math.isinf(limit) else 2.0 / limit


def peak_epoch(train_loss, epochs: int | None = None) -> int | None:
    """The epoch of the highest training loss among the first ``epochs`` (all when None): 0 for a
    loss that only fell; later when a step past the stable limit made it rise first."""
    loss = np.asarray(train_loss, dtype=float)[:epochs]
    finite = np.flatnonzero(np.isfinite(loss))
    return int(finite[np.argmax(loss[finite])]) if len(finite) else None


def landing_epoch(train_loss, epochs: int | None = None) -> int | None:
    """The first epoch after the peak of the training loss (among the first ``epochs``) whose loss
    is at or below the first epoch's: where a catapult has come back down. None when the loss
    only fell (no spike) or never came back."""
    peak = peak_epoch(train_loss, epochs)
    if not peak:
        return None
    loss = np.asarray(train_loss, dtype=float)[:epochs]
    back = np.flatnonzero(loss[peak + 1 :] <= loss[0])
    return int(peak + 1 + back[0]) if len(back) else None


def output_curvature(task: str, loss: str, probability: np.ndarray | None = None) -> float:
    """c of the Gauss–Newton output block: the loss's second derivative in the output's
    pre-activation, mean over the rows (a classifier's from its predicted probabilities)."""
    if task == "regression":
        return 2.0
    p = np.asarray(probability, dtype=float)
    slope = p * (1.0 - p)
    return float(slope.mean()) if loss == "log_loss" else float((2.0 * slope**2).mean())


def closed_form_lr_limit(model, X: np.ndarray) -> float:
    """2/λ₀ with λ₀ = c·(1 + ‖ā‖²): the lr limit predicted from the mean last-hidden activation ā
    of the network on the rows ``X`` (its initial weights, when called before training)."""
    last = hidden_preactivations(model, X)[-1]
    mean_activation = get_activation(model.config["activation"]).function(last.copy()).mean(axis=0)
    probability = None
    if model.task == "classification":
        probability = 1.0 / (1.0 + np.exp(-model.logit(X).ravel()))
    curvature = output_curvature(model.task, model.config["loss"], probability)
    return 2.0 / (curvature * (1.0 + float(mean_activation @ mean_activation)))
