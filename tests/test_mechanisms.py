"""Measures of a network's hidden units and of its training curve, on crafted networks."""

import math

import numpy as np
import pytest

from backprop.lab.curvature import lr_limit
from backprop.lab.mechanisms import (
    SATURATION_Z,
    closed_form_lr_limit,
    dead_fraction,
    hidden_preactivations,
    landing_epoch,
    peak_epoch,
    saturated_fraction,
    sharpness,
    unit_measures,
)
from backprop.mlp import MLP


def _rows(n=200, f=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f))
    y = X @ rng.standard_normal(f) + np.sin(2 * X[:, 0])
    return X, (y - y.mean()) / y.std()


def test_the_saturation_thresholds_are_where_the_slope_is_a_tenth_of_its_peak():
    sigmoid = 1 / (1 + math.exp(-SATURATION_Z["sigmoid"]))
    assert sigmoid * (1 - sigmoid) == pytest.approx(0.1 * 0.25)
    assert 1 - math.tanh(SATURATION_Z["tanh"]) ** 2 == pytest.approx(0.1)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_saturation_is_near_zero_at_initialisation_and_one_when_driven_into_it(activation):
    X, _ = _rows()
    model = MLP(X.shape[1], hidden=[32], activation=activation, rng=0)
    assert unit_measures(model, X)["saturated_units"] <= 0.05
    model.params["W1"][...] *= 100.0  # every |z| far past the threshold on almost every row
    assert unit_measures(model, X)["saturated_units"] == 1.0
    assert math.isnan(unit_measures(model, X)["dead_units"])


def test_dead_units_are_counted_exactly_on_a_crafted_relu_layer():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 2.0]])
    model = MLP(2, hidden=[4], activation="relu", rng=0)
    # unit 0: z = -1 - x1 - x2 ≤ 0 on every row (dead); unit 1: z = x1 > 0 on rows 0, 2;
    # unit 2: z = -10 (dead); unit 3: z = x2 - 1.5 > 0 on row 3 only (alive)
    model.params["W1"][...] = [[-1.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 1.0]]
    model.params["b1"][...] = [-1.0, 0.0, -10.0, -1.5]
    layers = hidden_preactivations(model, X)
    np.testing.assert_allclose(layers[0][:, 1], X[:, 0])
    assert dead_fraction(layers, "relu") == 0.5
    assert unit_measures(model, X)["dead_units"] == 0.5
    assert math.isnan(saturated_fraction(layers, "relu"))


def test_the_peak_epoch_is_the_highest_training_loss_among_the_epochs_run():
    assert peak_epoch([5.0, 4.0, 3.0]) == 0
    assert peak_epoch([5.0, 40.0, 300.0, 2.0, 1.0, math.nan]) == 2
    assert peak_epoch([5.0, 40.0, 300.0, 2.0], epochs=2) == 1


@pytest.mark.parametrize("width", [1, 4, 16, 64, 256])
def test_the_closed_form_limit_predicts_the_measured_one_for_sigmoid_layers(width):
    X, y = _rows()
    model = MLP(X.shape[1], hidden=[width], activation="sigmoid", rng=0)
    estimate = closed_form_lr_limit(model, X)
    measured = lr_limit(model, X, y, rng=np.random.default_rng(0))
    assert estimate == pytest.approx(measured, rel=0.1)
    # with σ's mean activation near ½ per unit, the estimate is close to 4 / (h + 4)
    assert estimate == pytest.approx(4 / (width + 4), rel=0.1)


def test_the_sharpness_of_a_trained_network_is_measured_in_the_units_it_learned_in():
    from backprop.lab.config import TrainConfig
    from backprop.lab.datasets import Prepared
    from backprop.lab.training import returned_sharpness, train_model

    X, y = _rows(n=120, f=4)
    y = 150 + 70 * y  # a raw target; the network learns (y − mean) / std
    splits = {"train": slice(0, 80), "val": slice(80, 100), "test": slice(100, 120)}
    scale = (float(y[:80].mean()), float(y[:80].std()))
    prepared = Prepared(
        ["a", "b", "c", "d"], {s: X[r] for s, r in splits.items()}, {s: y[r] for s, r in splits.items()},
        np.zeros(4), np.ones(4), with_accuracy=False, target_scale=scale,
    )  # fmt: skip
    config = TrainConfig(hidden=(8,), activation="sigmoid", lr=0.1, epochs=30)
    result = train_model(prepared, "regression", config, test_curve=False)
    measured = returned_sharpness(result, prepared)
    # the same weights in standardised units, built by hand: W_L / std, (b_L − mean) / std
    model = MLP(4, hidden=[8], activation="sigmoid", rng=0)
    model._theta[...] = result.model._theta
    model.params["W2"][...] /= scale[1]
    model.params["b2"][...] = (model.params["b2"] - scale[0]) / scale[1]
    expected = 2 / lr_limit(model, X[:80], (y[:80] - scale[0]) / scale[1], rng=np.random.default_rng(0))
    assert measured == pytest.approx(expected, rel=1e-6)
    assert measured > 0


def _prepared(n=120, f=4, scaled=True):
    from backprop.lab.datasets import Prepared

    X, y = _rows(n=n, f=f)
    y = 150 + 70 * y  # a raw target; with ``scaled`` the network learns (y − mean) / std
    cut = {"train": slice(0, 80), "val": slice(80, 100), "test": slice(100, n)}
    scale = (float(y[:80].mean()), float(y[:80].std())) if scaled else None
    return Prepared(
        [f"x{i}" for i in range(f)], {s: X[r] for s, r in cut.items()}, {s: y[r] for s, r in cut.items()},
        np.zeros(f), np.ones(f), with_accuracy=False, target_scale=scale,
    )  # fmt: skip


def test_the_landing_is_the_first_epoch_after_the_peak_back_at_the_start():
    assert landing_epoch([5.0, 4.0, 3.0]) is None  # no spike
    assert landing_epoch([5.0, 40.0, 300.0, 6.0, 5.0, 1.0]) == 4
    assert landing_epoch([5.0, 40.0, 300.0, 6.0]) is None  # never came back
    assert landing_epoch([5.0, 40.0, 300.0, 6.0, 5.0], epochs=4) is None


def test_a_fit_that_returns_its_start_has_no_reading_at_the_returned_weights_only_at_the_last():
    from backprop.lab.config import TrainConfig
    from backprop.lab.sweeps import result_row
    from backprop.lab.training import fit_measures, train_model

    prepared = _prepared()
    # one epoch with early stopping: the best validation loss is the initial weights' (epoch 0)
    config = TrainConfig(hidden=(8,), activation="sigmoid", lr=0.1, epochs=1, patience=5)
    result = train_model(prepared, "regression", config, test_curve=False)
    assert result.history.best_epoch == 0
    result.measures = fit_measures(result, prepared)
    row = result_row("regression", {}, 0, 0, result)
    for column in ("saturated_units", "sharpness_end", "stability_ratio_end"):
        assert math.isnan(row[column]), column
    assert row["saturated_units_last"] == 0.0
    assert row["sharpness_last"] > 0


def test_units_driven_into_saturation_after_the_returned_epoch_read_one_at_the_last_weights():
    from backprop.lab.config import TrainConfig
    from backprop.lab.sweeps import result_row
    from backprop.lab.training import fit_measures, train_model

    prepared = _prepared()
    config = TrainConfig(hidden=(8,), activation="tanh", lr=0.1, epochs=60, patience=10)
    result = train_model(prepared, "regression", config, test_curve=False)
    assert result.history.best_epoch > 0 and result.history.last_theta is not None
    last = result.history.last_theta
    last[: 4 * 8] *= 1000.0  # W1 of the last weights: every |z| far past the threshold
    result.measures = fit_measures(result, prepared)
    row = result_row("regression", {}, 0, 0, result)
    assert row["saturated_units_last"] == 1.0
    assert row["saturated_units"] < 0.5  # the returned weights are not the last ones
    assert math.isnan(row["dead_units_last"])


def test_the_sharpness_falls_after_a_catapult_below_its_value_at_the_peak_and_below_2_over_lr():
    from backprop.lab.config import TrainConfig
    from backprop.lab.curvature import lr_limit
    from backprop.lab.sweeps import result_row
    from backprop.lab.training import build_model, fit_measures, learning_units, sharpness_after, train_model

    prepared = _prepared()
    X, y = prepared.X["train"], (prepared.y["train"] - prepared.target_scale[0]) / prepared.target_scale[1]
    base = TrainConfig(hidden=(16,), activation="sigmoid", lr=0.1, epochs=300)
    limit = lr_limit(build_model(4, "regression", base), X, y, rng=np.random.default_rng(0))
    config = TrainConfig(hidden=(16,), activation="sigmoid", lr=1.6 * limit, epochs=300)  # past the limit
    result = train_model(prepared, "regression", config, test_curve=False)
    result.measures = fit_measures(result, prepared)
    row = result_row("regression", {}, 0, 0, result)
    loss = result.history.train_loss
    peak, landing = row["peak_train_loss_epoch"], row["sharpness_after_peak_epoch"]
    assert row["peak_train_loss_ratio"] > 2 and landing > peak > 0 and loss[landing] <= loss[0]
    at_peak = sharpness_after(result, prepared, peak)
    assert row["sharpness_after_peak"] < at_peak
    assert row["sharpness_after_peak"] < 2 / config.lr
    # the retrained path is the fit's own: its weights after `landing` updates have that epoch's loss
    replay = TrainConfig(hidden=(16,), activation="sigmoid", lr=config.lr, epochs=landing)
    short = train_model(prepared, "regression", replay, test_curve=False)
    probe, target = learning_units("regression", replay, prepared, short.model._theta, absorbed=True)
    assert probe.loss(X, target) * prepared.target_scale[1] ** 2 == pytest.approx(loss[landing], rel=1e-9)


def test_a_fit_without_a_spike_has_no_sharpness_after_it():
    from backprop.lab.config import TrainConfig
    from backprop.lab.sweeps import result_row
    from backprop.lab.training import fit_measures, train_model

    prepared = _prepared()
    config = TrainConfig(hidden=(8,), activation="sigmoid", lr=0.01, epochs=50)
    result = train_model(prepared, "regression", config, test_curve=False)
    result.measures = fit_measures(result, prepared)
    row = result_row("regression", {}, 0, 0, result)
    assert row["peak_train_loss_epoch"] == 0
    assert math.isnan(row["sharpness_after_peak"]) and row["sharpness_after_peak_epoch"] is None
    assert row["sharpness_last"] == row["sharpness_end"]  # no early stopping: the returned weights are the last


def _exact_hessian(model, X, y):
    """The Hessian of mean((f − y)²) of one hidden layer with a piecewise-linear g, between kinks
    (g'' = 0): the Gauss–Newton part (2/n) JᵀJ plus the residual's only second derivatives,
    ∂²f/∂W1_ij ∂W2_j = g'(z_j) x_i (and b1_j with W2_j: g'(z_j)); in the order of ``_theta``."""
    from backprop.activations import get_activation

    W1, b1, W2, b2 = (model.params[name] for name in ("W1", "b1", "W2", "b2"))
    (n, f), h = X.shape, W1.shape[1]
    g = get_activation(model.config["activation"])
    A = g.function(X @ W1 + b1)
    slope = g.derivative(A.copy())
    residual = (A @ W2 + b2).ravel() - y
    df_dz = slope * W2.ravel()
    J = np.hstack([(X[:, :, None] * df_dz[:, None, :]).reshape(n, f * h), df_dz, A, np.ones((n, 1))])
    H = 2.0 / n * J.T @ J
    cross = 2.0 / n * (np.hstack([X, np.ones((n, 1))]) * residual[:, None]).T @ slope  # (f + 1, h)
    rows = np.arange((f + 1) * h).reshape(f + 1, h)  # W1 then b1: row i, unit j
    columns = (f + 1) * h + np.arange(h)  # W2's unit j
    for i in range(f + 1):
        H[rows[i], columns] += cross[i]
        H[columns, rows[i]] += cross[i]
    return H


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_the_sharpness_of_a_piecewise_linear_network_is_its_linear_pieces_not_a_kinks(activation):
    X, y = _rows(n=60, f=3)
    model = MLP(3, hidden=[6], activation=activation, rng=1)
    model.params["W2"][...] *= 3.0  # a large residual term, so a crossed kink shows
    # row 0 sits just past the kink of every unit: any step of the plain size crosses it
    model.params["b1"][...] = 1e-9 - X[0] @ model.params["W1"]
    exact = float(np.linalg.eigvalsh(_exact_hessian(model, X, y))[-1])
    plain = 2 / lr_limit(model, X, y, rng=np.random.default_rng(0))
    assert abs(plain / exact - 1) > 0.01  # what the plain difference reads: the kink's jump / h
    assert sharpness(model, X, y, rng=np.random.default_rng(0)) == pytest.approx(exact, rel=1e-6)


def test_the_reach_of_a_fraction_of_the_constant_models_loss_is_the_first_epoch_at_or_below_it():
    from backprop.lab.config import TrainConfig
    from backprop.lab.sweeps import result_row
    from backprop.lab.training import constant_loss, train_model

    prepared = _prepared()
    config = TrainConfig(hidden=(8,), activation="tanh", lr=0.1, epochs=100)
    result = train_model(prepared, "regression", config, test_curve=False)
    result.constant_losses = {"train": constant_loss(prepared, "regression", "train")}
    # the constant model on its own training rows: their mean, so its MSE is their variance
    assert result.constant_losses["train"] == pytest.approx(prepared.y["train"].var())
    row = result_row("regression", {}, 0, 0, result, {"train_loss_of_constant": 0.2})
    mse = result.history.columns["train_mse"]
    expected = int(np.flatnonzero(mse <= 0.2 * prepared.y["train"].var())[0])
    assert row["reach_train_loss_of_constant"] == expected > 0
    never = result_row("regression", {}, 0, 0, result, {"train_loss_of_constant": 1e-9})
    assert never["reach_train_loss_of_constant"] is None
