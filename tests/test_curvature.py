"""The curvature estimates: lr_limit against closed forms and dense Hessians, and saturated_start."""

import math

import numpy as np
import pytest

from backprop.lab.curvature import lr_limit, saturated_start
from backprop.mlp import MLP


class LeastSquares:
    """ŷ = X w + b with the MSE loss, in the shape lr_limit expects (``params`` views into
    ``_theta``, ``gradients`` keyed like them). Its Hessian is (2/n)[X 1]ᵀ[X 1] at every θ."""

    def __init__(self, n_inputs, rng):
        self._theta = rng.standard_normal(n_inputs + 1)
        self.params = {"w": self._theta[:-1], "b": self._theta[-1:]}

    def gradients(self, X, y):
        residual = X @ self.params["w"] + self.params["b"] - y
        return {"w": 2 / len(X) * X.T @ residual, "b": np.array([2 / len(X) * residual.sum()])}


class Quadratic:
    """L(θ) = ½ θᵀ A θ, Hessian A."""

    def __init__(self, A):
        self._theta = np.ones(len(A))
        self.params = {"theta": self._theta}
        self.A = A

    def gradients(self, X, y):
        return {"theta": self.A @ self._theta}


def dense_hessian(model, X, y, h=1e-5):
    """Every column by its own central difference of the gradient: independent of the module's
    Hessian-vector products and of their step."""
    theta, saved, columns = model._theta, model._theta.copy(), []
    for i in range(theta.size):
        grads = []
        for sign in (1, -1):
            theta[i] = saved[i] + sign * h
            g = model.gradients(X, y)
            grads.append(np.concatenate([g[name].ravel() for name in model.params]))
        theta[i] = saved[i]
        columns.append((grads[0] - grads[1]) / (2 * h))
    H = np.column_stack(columns)
    return (H + H.T) / 2


def test_lr_limit_is_the_closed_form_for_a_linear_model():
    # Checks: for ŷ = X w + b with MSE, lr_limit = 2 / λ_max((2/n)[X 1]ᵀ[X 1]), the closed
    # form with the bias's column of ones. (An MLP with identity activation is linear in X but not
    # in its weights, W1 W2, so its Hessian is not this matrix: it is checked densely below.)
    rng = np.random.default_rng(0)
    X = rng.normal(loc=1.0, size=(20, 3))
    y = rng.normal(size=20)
    X1 = np.column_stack([X, np.ones(20)])
    expected = 2 / np.linalg.eigvalsh(2 / 20 * X1.T @ X1)[-1]
    assert lr_limit(LeastSquares(3, rng), X, y, rng=rng) == pytest.approx(expected, rel=1e-6)


def test_lr_limit_is_the_largest_signed_eigenvalue_not_the_largest_in_size():
    # A dominant negative eigenvalue is what power iteration would find.
    rng = np.random.default_rng(0)
    A = np.diag([-10.0, 1.0, 2.0, 3.0])
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    assert lr_limit(Quadratic(Q @ A @ Q.T), None, None, rng=rng) == pytest.approx(2 / 3, rel=1e-6)


def test_lr_limit_is_inf_without_positive_curvature():
    assert lr_limit(Quadratic(-np.diag([1.0, 2.0, 3.0])), None, None, rng=np.random.default_rng(0)) == math.inf


@pytest.mark.parametrize(
    ("task", "activation", "offset"),
    [
        ("regression", "sigmoid", 0.0),
        ("regression", "tanh", 0.0),
        ("regression", "identity", 0.0),
        # A target far from the start's predictions gives eigenvalues of both signs, nearly equal in size.
        ("regression", "sigmoid", 150.0),
        ("regression", "relu", 150.0),
        ("classification", "sigmoid", 0.0),
        ("classification", "tanh", 0.0),
    ],
)
def test_lr_limit_matches_the_dense_hessian(task, activation, offset):
    # 5 inputs, 8 hidden units: 57 weights, more than lr_limit's 50 products, so it cannot simply
    # span the whole space.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 5))
    if task == "regression":
        y = offset + np.sin(X @ rng.normal(size=5)) + 0.1 * rng.normal(size=40)
    else:
        y = (X[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(float)
    model = MLP(5, [8], activation=activation, task=task, rng=2)
    top = np.linalg.eigvalsh(dense_hessian(model, X, y))[-1]
    assert lr_limit(model, X, y, rng=np.random.default_rng(3)) == pytest.approx(2 / top, rel=1e-3)


def test_lr_limit_does_not_stop_on_a_pause(diabetes):
    # Raw target, identity hidden layer: the top eigenvalues are clustered (359, 361, 364) and the
    # estimate moves by only 5e-5 between two early steps while still 1.7% short.
    X, y = diabetes
    model = MLP(10, [16], activation="identity", rng=0)
    top = np.linalg.eigvalsh(dense_hessian(model, X, y))[-1]
    assert lr_limit(model, X, y, rng=np.random.default_rng(0)) == pytest.approx(2 / top, rel=1e-3)


def test_lr_limit_shrinks_as_the_sigmoid_layer_widens(diabetes):
    # Glorot init, one seed: measured 0.0247, 0.0195, 0.0115 on the raw target.
    X, y = diabetes
    limits = [lr_limit(MLP(10, [h], rng=0), X, y, rng=np.random.default_rng(0)) for h in (4, 64, 256)]
    assert limits[0] > limits[1] > limits[2]


def test_lr_limit_leaves_the_weights_as_they_were_even_on_error(diabetes):
    X, y = diabetes
    model = MLP(10, [16], activation="tanh", rng=0)
    before, W1 = model._theta.tobytes(), model.params["W1"]
    lr_limit(model, X, y, rng=np.random.default_rng(0))
    assert model._theta.tobytes() == before
    with pytest.raises(ValueError, match="same number of rows"):
        lr_limit(model, X, y[:-1], rng=np.random.default_rng(0))  # fails inside the first gradient
    assert model._theta.tobytes() == before
    assert np.shares_memory(model.params["W1"], model._theta) and model.params["W1"] is W1


def test_saturated_start_puts_every_row_below_p_max_and_moves_only_the_output_bias():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    y = (X[:, 0] > 0).astype(float)
    model = MLP(4, [6, 3], task="classification", rng=0)
    before = {name: value.copy() for name, value in model.params.items()}
    saturated_start(model, X, y, p_max=0.02)
    assert model.predict(X).max() < 0.02
    assert model.predict(X).max() > 0.019  # the most confident row sits just below the bound
    for name, value in model.params.items():
        if name != "b3":
            np.testing.assert_array_equal(value, before[name])
    assert model.params["b3"][0] != before["b3"][0]


def test_saturated_start_refuses_regression_and_a_bad_p_max():
    X, y = np.zeros((3, 2)), np.zeros(3)
    with pytest.raises(ValueError, match=r"^saturated_start needs task 'classification', got 'regression'$"):
        saturated_start(MLP(2, [2], rng=0), X, y)
    with pytest.raises(ValueError, match=r"^p_max must be in \(0, 1\), got 1.5$"):
        saturated_start(MLP(2, [2], task="classification", rng=0), X, y, p_max=1.5)
