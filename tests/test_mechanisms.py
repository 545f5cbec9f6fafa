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
    peak_epoch,
    saturated_fraction,
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
