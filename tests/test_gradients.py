"""Every analytic gradient against central differences, in float64."""

import numpy as np
import pytest

from backprop import ACTIVATIONS, MLP

HEADS = [("regression", "mse"), ("classification", "log_loss"), ("classification", "mse")]
EPS = 1e-6


def numeric_gradients(model, X, y):
    grads = {}
    for name, param in model.params.items():
        grad = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            saved = param[index]
            param[index] = saved + EPS
            up = model.loss(X, y)
            param[index] = saved - EPS
            down = model.loss(X, y)
            param[index] = saved
            grad[index] = (up - down) / (2 * EPS)
        grads[name] = grad
    return grads


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12)


@pytest.mark.parametrize("hidden", [[5], [4, 3]], ids=["one-hidden", "two-hidden"])
@pytest.mark.parametrize("task,loss", HEADS, ids=[f"{task}-{loss}" for task, loss in HEADS])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_gradients_match_central_differences(activation, task, loss, hidden):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(12, 3))
    y = rng.integers(0, 2, size=12).astype(float) if task == "classification" else rng.normal(size=12)
    model = MLP(3, hidden, activation=activation, task=task, loss=loss, rng=rng)
    for param in model.params.values():  # non-zero biases exercise every term of the derivation
        param += rng.normal(scale=0.3, size=param.shape)
    analytic = model.gradients(X, y)
    numeric = numeric_gradients(model, X, y)
    assert analytic.keys() == model.params.keys()
    for name in model.params:
        assert analytic[name].shape == model.params[name].shape
        assert relative_error(analytic[name], numeric[name]) < 1e-6, name


def test_gradient_check_catches_a_wrong_sign(monkeypatch):
    """The check itself can fail: flip the sign of the sigmoid derivative and it must."""
    from backprop import activations

    wrong = activations.Activation(activations.sigmoid, lambda a, out=None: -activations.sigmoid_derivative(a, out))
    monkeypatch.setitem(activations.ACTIVATIONS, "sigmoid", wrong)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 2)), rng.normal(size=8)
    model = MLP(2, [3], activation="sigmoid", rng=rng)
    assert relative_error(model.gradients(X, y)["W1"], numeric_gradients(model, X, y)["W1"]) > 0.5
