import re
import warnings

import numpy as np
import pytest

from backprop import MLP
from backprop.metrics import mse, regression_accuracy


def test_one_gradient_step_worked_by_hand():
    # f=1, h=1, sigmoid hidden, identity output, MSE; one row x=1, y=1; W1=0, b1=0, W2=1, b2=0.
    model = MLP(1, [1], activation="sigmoid", rng=0)
    for name, value in {"W1": 0.0, "b1": 0.0, "W2": 1.0, "b2": 0.0}.items():
        model.params[name][...] = value
    X, y = np.array([[1.0]]), np.array([1.0])
    # Forward: z1 = 1·0 + 0 = 0, a1 = σ(0) = 0.5, ŷ = z2 = 0.5·1 + 0 = 0.5, L = (0.5 − 1)² = 0.25.
    assert model.loss(X, y) == pytest.approx(0.25)
    # δ2 = 2(ŷ − y)/n = −1. ∂L/∂W2 = a1·δ2 = −0.5, ∂L/∂b2 = −1.
    # δ1 = δ2·W2·σ′(z1) = −1·1·0.25 = −0.25. ∂L/∂W1 = x·δ1 = −0.25, ∂L/∂b1 = −0.25.
    grads = model.gradients(X, y)
    expected = {"W1": -0.25, "b1": -0.25, "W2": -0.5, "b2": -1.0}
    for name, value in expected.items():
        assert grads[name].item() == pytest.approx(value)
    # One step with lr = 0.1: θ ← θ − 0.1·∂L/∂θ.
    model.fit(X, y, lr=0.1, epochs=1)
    after = {"W1": 0.025, "b1": 0.025, "W2": 1.05, "b2": 0.1}
    for name, value in after.items():
        assert model.params[name].item() == pytest.approx(value)


def test_identity_network_converges_to_least_squares(diabetes):
    X, y = diabetes
    design = np.column_stack([X, np.ones(len(X))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    ols_mse = np.mean((design @ coef - y) ** 2)
    assert ols_mse == pytest.approx(2859.7, abs=0.05)
    model = MLP(10, [16], activation="identity", rng=0)
    history = model.fit(X, y, lr=0.001, epochs=3000)
    assert not history.diverged
    assert model.evaluate(X, y)["mse"] == pytest.approx(ols_mse, rel=0.005)


def test_sigmoid_network_beats_the_linear_model_on_training_data(diabetes):
    X, y = diabetes
    model = MLP(10, [16], activation="sigmoid", rng=0)
    model.fit(X, y, lr=0.01, epochs=3000)
    assert model.evaluate(X, y)["mse"] < 2000


@pytest.mark.parametrize("batch_size", [0, 32])
def test_same_seed_same_bits_other_seed_differs(diabetes, batch_size):
    X, y = diabetes

    def run(seed):
        model = MLP(10, [8], rng=seed)
        history = model.fit(X, y, lr=0.01, epochs=50, batch_size=batch_size)
        return model._theta.copy(), history.train_loss

    (theta_a, loss_a), (theta_b, loss_b), (theta_c, _) = run(3), run(3), run(4)
    assert np.array_equal(theta_a, theta_b) and np.array_equal(loss_a, loss_b)
    assert not np.array_equal(theta_a, theta_c)


def test_minibatch_epoch_is_the_steps_taken_by_hand(diabetes):
    # 10 rows in batches of 4: two full batches and a last one of 2, in the order the seeded
    # generator draws; each step is θ ← θ − lr ∂L/∂θ on that batch alone.
    X, y = diabetes[0][:10], diabetes[1][:10]
    model, by_hand = MLP(10, [3], rng=0), MLP(10, [3], rng=0)
    model.fit(X, y, lr=0.01, epochs=2, batch_size=4, rng=np.random.default_rng(5))
    order_rng = np.random.default_rng(5)
    for _ in range(2):
        order = order_rng.permutation(10)
        for rows in (order[:4], order[4:8], order[8:]):
            grads = by_hand.gradients(X[rows], y[rows])
            for name, grad in grads.items():
                by_hand.params[name] -= 0.01 * grad
    for name in model.params:
        np.testing.assert_allclose(model.params[name], by_hand.params[name], rtol=1e-12, atol=1e-15)


def test_divergence_is_a_result_not_an_exception(diabetes):
    X, y = diabetes
    model = MLP(10, [16], activation="relu", rng=0)
    history = model.fit(X, y, lr=10.0, epochs=500)
    assert history.diverged
    assert history.diverged_epoch is not None and history.epochs_run == history.diverged_epoch + 1
    assert history.epochs_run < 500
    assert all(np.isnan(v) for v in model.evaluate(X, y).values())


def test_minibatch_history_and_validation_columns(diabetes):
    X, y = diabetes
    model = MLP(10, [8], rng=1)
    history = model.fit(X[:300], y[:300], X_val=X[300:], y_val=y[300:], lr=0.01, epochs=20, batch_size=64)
    assert set(history.columns) == {"train_mse", "train_accuracy", "val_mse", "val_accuracy"}
    assert all(len(col) == 20 for col in history.columns.values())
    assert history.train_loss[-1] < history.train_loss[0]


def test_early_stopping_restores_the_best_weights(diabetes):
    X, y = diabetes
    model = MLP(10, [64], rng=0)
    history = model.fit(X[:100], y[:100], X_val=X[100:], y_val=y[100:], lr=0.05, epochs=5000, patience=50)
    assert history.stopped_early and history.epochs_run < 5000
    best = history.columns["val_mse"][history.best_epoch]
    assert model.loss(X[100:], y[100:]) == pytest.approx(best)


def test_two_hidden_layers_train(diabetes):
    X, y = diabetes
    model = MLP(10, [16, 16], activation="tanh", rng=0)
    history = model.fit(X, y, lr=0.001, epochs=300)
    assert history.train_loss[-1] < history.train_loss[0]


def test_classification_head_predicts_probabilities():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(float)
    model = MLP(2, [4], task="classification", rng=rng)
    model.fit(X, y, lr=1.0, epochs=300)
    p = model.predict(X)
    assert p.min() >= 0 and p.max() <= 1
    assert model.evaluate(X, y)["accuracy"] > 0.95
    assert np.array_equal(model.predict_class(X), (p > 0.5).astype(int))


def test_float32_on_request(diabetes):
    X, y = diabetes
    model = MLP(10, [8], dtype="float32", rng=0)
    model.fit(X, y, lr=0.01, epochs=5)
    assert model._theta.dtype == np.float32 and model.predict(X).dtype == np.float32


def test_save_and_load_without_pickle(tmp_path, diabetes):
    X, y = diabetes
    model = MLP(10, [4, 3], activation="tanh", rng=0)
    model.fit(X, y, lr=0.001, epochs=5)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        assert set(archive.files) == {"config", "W1", "b1", "W2", "b2", "W3", "b3"}
    loaded = MLP.load(tmp_path / "m.npz")
    assert loaded.config == model.config
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_classification_metrics_at_threshold_one_half():
    from backprop.metrics import classification_accuracy, log_loss, log_loss_from_logit

    assert classification_accuracy([1, 0, 1, 0], [0.9, 0.4, 0.2, 0.6]) == 0.5
    assert log_loss([1, 0], [0.8, 0.3]) == pytest.approx(-(np.log(0.8) + np.log(0.7)) / 2)
    logits = np.log(np.array([0.8, 0.3]) / np.array([0.2, 0.7]))
    assert log_loss_from_logit([1, 0], logits) == pytest.approx(log_loss([1, 0], [0.8, 0.3]))
    assert np.isfinite(log_loss_from_logit([1], [1000.0])) and log_loss_from_logit([0], [1000.0]) == pytest.approx(
        1000.0
    )


def test_regression_accuracy_definition_and_zero_target():
    assert regression_accuracy([100, 200], [110, 180]) == pytest.approx(1 - (0.1 + 0.1) / 2)
    with pytest.raises(ValueError, match="y has 1 zero"):
        regression_accuracy([0, 1], [0, 1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"activation": "softplus"},
            r"activation must be one of \['identity', 'leaky_relu', 'relu', 'sigmoid',"
            r" 'tanh'\], got 'softplus'",
        ),
        ({"task": "ranking"}, r"task must be one of \['classification', 'regression'\], got 'ranking'"),
        (
            {"task": "regression", "loss": "log_loss"},
            r"loss for task 'regression' must be one of \['mse'\], got 'log_loss'",
        ),
        ({"hidden": []}, r"hidden must list at least one layer size"),
        ({"hidden": [16, 0]}, r"hidden layer sizes must be integers >= 1, got \[16, 0\]"),
        ({"init": "zeros"}, r"init must be one of \['glorot', 'he', 'uniform'\], got 'zeros'"),
        ({"dtype": "float16"}, r"dtype must be one of \['float32', 'float64'\], got 'float16'"),
    ],
)
def test_bad_constructor_arguments_have_sharp_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(3, **{"hidden": [4], **kwargs})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": -0.1}, r"lr must be > 0, got -0.1"),
        ({"lr": 0.1, "epochs": 0}, r"epochs must be an integer >= 1, got 0"),
        ({"lr": 0.1, "batch_size": -1}, r"batch_size must be an integer >= 0"),
        ({"lr": 0.1, "patience": 5}, r"patience > 0 needs validation data"),
    ],
)
def test_bad_fit_arguments_have_sharp_messages(kwargs, message):
    X, y = np.zeros((4, 3)), np.ones(4)
    with pytest.raises(ValueError, match=message):
        MLP(3, [4]).fit(X, y, **{"epochs": 1, **kwargs})


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"got X \(4, 3\) and y \(5,\)"):
        MLP(3, [4]).loss(np.zeros((4, 3)), np.zeros(5))
    with pytest.raises(ValueError, match=r"X must have shape \(n, 3\) for this network, got \(4, 2\)"):
        MLP(3, [4]).predict(np.zeros((4, 2)))


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_a_batch_processed_in_slices_takes_the_same_step(task):
    """Batches larger than CHUNK_ROWS are processed slice by slice; the step must be the full
    batch's gradient step all the same."""
    from backprop.mlp import CHUNK_ROWS

    rng = np.random.default_rng(0)
    n = 2 * CHUNK_ROWS + 37
    X = rng.normal(size=(n, 5))
    y = (X[:, 0] > 0).astype(float) if task == "classification" else X @ rng.normal(size=5)
    model = MLP(5, [6, 3], activation="tanh", task=task, rng=1)
    expected = {name: value - 0.1 * model.gradients(X, y)[name] for name, value in model.params.items()}
    loss_before = model.loss(X, y)
    history = model.fit(X, y, lr=0.1, epochs=1)
    for name, value in expected.items():
        np.testing.assert_allclose(model.params[name], value, rtol=1e-10, atol=1e-12)
    assert history.train_loss[0] == pytest.approx(loss_before, rel=1e-12)


# ---- reliability: divergence, implausible scores, bad weight files, history size, rounding noise ----


def test_a_loss_far_above_its_start_is_divergence_before_it_overflows(diabetes):
    # A linear network just past its stable step size: the loss grows geometrically, finite for
    # hundreds of epochs; what matters is that it left the range of a network that learns.
    from backprop.mlp import DIVERGENCE_FACTOR

    X, y = diabetes
    history = MLP(10, [16], activation="identity", rng=0).fit(X, y, lr=0.003, epochs=5000)
    loss = history.train_loss
    assert history.diverged and history.epochs_run == history.diverged_epoch + 1 < 100
    assert np.isfinite(loss).all() and loss[-1] > DIVERGENCE_FACTOR * loss[0] >= loss[:-1].max()


def test_scores_of_overflowed_weights_are_not_scores(diabetes):
    X, y = diabetes
    model = MLP(10, [4], activation="identity", rng=0)
    model.params["W2"][...] = 1e150  # finite predictions around 1e150: accuracy near -1e148
    assert all(np.isnan(value) for value in model.evaluate(X, y).values())


def test_loading_non_finite_weights_names_the_file_and_array(tmp_path):
    model = MLP(3, [4], rng=0)
    model.params["W2"][1, 0] = np.inf
    model.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"m\.npz: W2 has NaN or inf values"):
        MLP.load(tmp_path / "m.npz")


def test_history_grows_with_the_epochs_run_not_the_epochs_asked(diabetes):
    import tracemalloc

    X, y = diabetes
    model = MLP(10, [4], rng=0)
    tracemalloc.start()
    try:
        history = model.fit(X[:300], y[:300], X_val=X[300:], y_val=y[300:], lr=0.05, epochs=10**7, patience=20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert history.stopped_early and history.epochs_run < 5000
    assert peak < 50 * 2**20  # 10^7 rows of 4 curves up front would be 320 MB
    long = MLP(10, [4], rng=0).fit(X, y, lr=0.01, epochs=3000)  # past the first chunk, twice
    assert all(len(column) == 3000 and np.isfinite(column).all() for column in long.columns.values())


def test_the_pipeline_names_an_impossible_history_before_training():
    # The engine grows its history as epochs run; the params check (config.py) refuses up front.
    from backprop.lab.memory import history_too_large

    assert history_too_large(10**4) is None
    assert re.fullmatch(r"10000000000000 epochs would need .* GiB .*", history_too_large(10**13))


@pytest.mark.parametrize(
    "task,loss,batch_size,scaled",
    [
        ("regression", None, 0, False),
        ("regression", None, 0, True),
        ("regression", None, 50, True),
        ("classification", None, 0, False),
        ("classification", "mse", 64, False),
    ],
)
def test_recorded_curves_are_evaluate_at_the_same_weights(diabetes, task, loss, batch_size, scaled):
    # Row e of a history scores the weights entering epoch e: after k epochs, row 0 of a one-epoch
    # fit is what metrics.py (through evaluate) says of the weights those k epochs left.
    X, y = diabetes
    if task == "classification":
        y = (y > np.median(y)).astype(float)
    splits = {"train": slice(0, 300), "val": slice(300, 380), "test": slice(380, None)}
    scale = (y[splits["train"]].mean(), y[splits["train"]].std()) if scaled else None
    y_fit = (y - scale[0]) / scale[1] if scale else y
    data = {split: (X[rows], y_fit[rows]) for split, rows in splits.items()}
    settings = {"batch_size": batch_size, "target_scale": scale, "lr": 0.02 if scale or task != "regression" else 0.005}
    settings |= {"X_val": data["val"][0], "y_val": data["val"][1], "monitor": {"test": data["test"]}}
    model = MLP(10, [6], task=task, loss=loss, rng=1)
    model.fit(*data["train"], epochs=7, **settings)
    at = MLP(**model.config)
    at._theta[...] = model._theta
    if scale:
        at.absorb_target_scale(*scale)
    history = model.fit(*data["train"], epochs=1, **settings)
    checked = 0
    for split, rows in splits.items():
        if split == "train" and batch_size:
            continue  # mini-batch train curves average scores taken before each batch's step
        expected = at.evaluate(X[rows], y[rows]) | {"mse": mse(y[rows], at.predict(X[rows]))}
        for name in model.history_columns():
            assert history.columns[f"{split}_{name}"][0] == pytest.approx(expected[name], rel=1e-12), (split, name)
            checked += 1
    assert checked == len(model.history_columns()) * (2 if batch_size else 3)


def test_one_ulp_of_input_noise_does_not_move_the_best_epoch(diabetes):
    # Near convergence the validation loss improves by less than rounding noise per epoch; without
    # a tolerance, which of those epochs counts as "best" depends on the last bit of the data.
    X, y = diabetes
    results = []
    for X_in in (X, np.nextafter(X, np.inf)):
        model = MLP(10, [2], activation="identity", rng=2)
        history = model.fit(X_in, y, X_val=X_in, y_val=y, lr=0.001, epochs=100_000, patience=50)
        results.append((history.best_epoch, model.evaluate(X, y)))
    (best_a, scores_a), (best_b, scores_b) = results
    assert best_a == best_b
    for name, value in scores_a.items():
        assert f"{value:.8g}" == f"{scores_b[name]:.8g}", name


def test_sigmoid_is_exact_at_the_extremes_without_warnings():
    from backprop.activations import sigmoid

    z = np.array([-1000.0, -745.0, -30.0, 0.0, 30.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning would surface in users' predict calls
        a = sigmoid(z)
    assert a[0] == 0.0 and a[1] == 0.0 and a[3] == 0.5 and a[5] == 1.0
    # Small outputs keep their relative precision (½(1 + tanh(z/2)) would lose it to cancellation).
    assert a[2] == pytest.approx(np.exp(-30.0) / (1 + np.exp(-30.0)), rel=1e-14)
    moderate = np.linspace(-5, 5, 101)
    np.testing.assert_allclose(sigmoid(moderate), 0.5 * (1 + np.tanh(moderate / 2)), rtol=1e-14)
