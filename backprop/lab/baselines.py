"""Reference models fitted on the same folds as our network, each given the same chances: the
constant model, the linear model (logistic regression with its penalty chosen on the validation
part) and scikit-learn's MLP with our settings and our early stopping; on a generated table also
its true function, whose held-out MSE is the noise those rows hold: the floor no model beats on
them in expectation. No I/O."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np

# Imported here, by the stage before its worker processes fork, so that no worker pays for it.
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier, MLPRegressor

from backprop.lab.config import TrainConfig
from backprop.lab.datasets import SPLITS, TRUE_FUNCTION, TRUE_FUNCTIONS, Dataset, Prepared, all_rows, fold_data
from backprop.metrics import classification_metrics, regression_metrics

# scikit-learn has no leaky ReLU: that setting has no sklearn twin.
SKLEARN_ACTIVATION = {"sigmoid": "logistic", "tanh": "tanh", "relu": "relu", "identity": "identity"}
# Inverse penalties tried for logistic regression, chosen by validation log loss. All finite: no
# penalty (C = inf) on separable data (breast cancer, all rows) has no optimum, so the solver stops
# wherever its tolerance does and the log loss (5e-4 on one CPU, 2e-4 on another) means nothing.
LOGISTIC_C = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
# All rows leave nothing to choose C on: scikit-learn's default, where the optimum is finite.
ALL_ROWS_C = 1.0


def _scores(task: str, model, X, y, with_accuracy: bool, scale=None) -> dict[str, float]:
    if task == "regression":
        predicted = model.predict(X)
        if scale:
            predicted = predicted * scale[1] + scale[0]
        return regression_metrics(y, predicted, with_accuracy=with_accuracy)
    probability = np.clip(model.predict_proba(X)[:, 1], 1e-15, 1 - 1e-15)
    return classification_metrics(y, np.log(probability / (1 - probability)))


def _target(prepared: Prepared, split: str) -> np.ndarray:
    """The target a model is fitted on: standardised like our network's when it is."""
    y, scale = prepared.y[split], prepared.target_scale
    return (y - scale[0]) / scale[1] if scale else y


def constant_model(task: str):
    return DummyRegressor(strategy="mean") if task == "regression" else DummyClassifier(strategy="prior")


def linear_model(task: str, C: float = ALL_ROWS_C):
    return LinearRegression() if task == "regression" else LogisticRegression(C=C, max_iter=10_000)


def sklearn_mlp(task: str, config: TrainConfig, n_rows: int):
    """The same network and optimiser in scikit-learn: plain SGD, constant rate, no momentum, no
    L2. Its regression loss is ½·MSE, so its rate is doubled to take the same steps as ours. It
    is trained epoch by epoch by ``fit_sklearn_mlp``, which stops it early as we stop ours."""
    if config.activation not in SKLEARN_ACTIVATION:
        return None
    cls = MLPRegressor if task == "regression" else MLPClassifier
    return cls(
        hidden_layer_sizes=config.hidden,
        activation=SKLEARN_ACTIVATION[config.activation],
        solver="sgd",
        learning_rate="constant",
        learning_rate_init=config.lr * (2 if task == "regression" else 1),
        momentum=0.0,
        nesterovs_momentum=False,
        alpha=0.0,
        batch_size=n_rows if config.batch_size == 0 else config.batch_size,
        shuffle=config.batch_size != 0,
        random_state=config.seed,
    )


def fit_and_score(task: str, model, prepared: Prepared, fit_split: str = "train", score_splits=SPLITS) -> dict:
    """Fit a scikit-learn model on one split and score it on others: {split: {metric: value}}."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings: the scores say how it went
        model.fit(prepared.X[fit_split], _target(prepared, fit_split))
    return {
        split: _scores(task, model, prepared.X[split], prepared.y[split], prepared.with_accuracy, prepared.target_scale)
        for split in score_splits
    }


def _val_loss(task: str, model, prepared: Prepared) -> float:
    """The validation loss after an epoch. scikit-learn's own predict re-validates its input,
    which costs more than the epoch; its unchecked forward pass gives the same output."""
    output = model._forward_pass_fast(prepared.X["val"], check_input=False)
    y = prepared.y["val"]
    if task == "regression":
        scale = prepared.target_scale or (0.0, 1.0)
        return float(np.mean((output.ravel() * scale[1] + scale[0] - y) ** 2))
    p = np.clip(output.ravel(), 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def sklearn_epochs(model, X, y):
    """A function that runs one more epoch of scikit-learn's MLP on (X, y). After a first
    ``partial_fit`` (which sets up the weights and the optimiser), a full batch runs scikit-learn's
    own epoch, its ``_backprop`` and SGD update as its ``_fit_stochastic`` does, without the input
    checks that every ``partial_fit`` call repeats and that cost ten times the epoch; a
    mini-batch runs ``partial_fit``. ``test_baselines`` checks that both give the same weights."""
    classes = {"classes": np.array([0.0, 1.0])} if hasattr(model, "predict_proba") else {}
    model.partial_fit(X, y, **classes)
    if model.batch_size < len(X):
        return lambda: model.partial_fit(X, y)
    units = [X.shape[1], *model.hidden_layer_sizes, model.n_outputs_]
    activations, deltas = [X] + [None] * (len(units) - 1), [None] * (len(units) - 1)
    coef_grads = [np.empty((a, b)) for a, b in itertools.pairwise(units)]
    intercept_grads = [np.empty(b) for b in units[1:]]
    targets = model._label_binarizer.transform(y) if classes else y.reshape(-1, 1)
    params = model.coefs_ + model.intercepts_

    def epoch():
        activations[0] = X
        _, coefs, intercepts = model._backprop(X, targets, None, activations, deltas, coef_grads, intercept_grads)
        model._optimizer.update_params(params, coefs + intercepts)

    return epoch


def fit_sklearn_mlp(task: str, config: TrainConfig, prepared: Prepared) -> dict:
    """scikit-learn's MLP trained epoch by epoch and stopped as ours is: after ``patience``
    epochs without a validation loss below best × (1 − tol), the best epoch's weights restored.
    Scores as in ``fit_and_score``, with ``best_epoch`` and ``epochs_run``."""
    model = sklearn_mlp(task, config, len(prepared.y["train"]))
    best_loss, best, best_epoch, waited, epochs_run = math.inf, None, None, 0, 0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        next_epoch = sklearn_epochs(model, prepared.X["train"], _target(prepared, "train"))
        for epoch in range(1, config.epochs + 1):  # scikit-learn has no weights before its first step
            if epoch > 1:
                next_epoch()
            epochs_run = epoch
            loss = _val_loss(task, model, prepared)  # the weights after ``epoch`` updates
            if not math.isfinite(loss):
                break
            if loss < best_loss * (1 - config.tol):
                best_loss, best_epoch, waited = loss, epoch, 0
                best = ([c.copy() for c in model.coefs_], [b.copy() for b in model.intercepts_])
            else:
                waited += 1
            if config.patience and waited >= config.patience:
                break
    if best is not None:
        model.coefs_, model.intercepts_ = best
    scores = {
        split: _scores(task, model, prepared.X[split], prepared.y[split], prepared.with_accuracy, prepared.target_scale)
        for split in SPLITS
    }
    return scores | {"best_epoch": best_epoch, "epochs_run": epochs_run}


def fit_logistic(prepared: Prepared) -> dict:
    """Logistic regression with C chosen by validation log loss over ``LOGISTIC_C``, fitted on
    the training part (as our network is), scored on all three splits, with the C chosen."""
    chosen, best_loss = LOGISTIC_C[0], math.inf
    for C in LOGISTIC_C:
        scores = fit_and_score("classification", linear_model("classification", C), prepared, score_splits=["val"])
        if scores["val"]["log_loss"] < best_loss:
            chosen, best_loss = C, scores["val"]["log_loss"]
    scores = fit_and_score("classification", linear_model("classification", chosen), prepared)
    return scores | {"C": chosen}


def true_function_scores(dataset: Dataset, prepared: Prepared) -> dict[str, dict]:
    """A generated table's true function f scored on one fold's splits as a model would be:
    {split: scores}. It is fitted on nothing; its MSE on a split is the noise variance those
    rows realised (noise² only in expectation)."""
    truth, rows = TRUE_FUNCTIONS[dataset.generator], prepared.rows
    if rows is None:
        raise ValueError("the true function needs the fold's row numbers (Prepared.rows)")
    return {
        split: regression_metrics(
            prepared.y[split], truth(dataset.X[rows[split]]), with_accuracy=prepared.with_accuracy
        )
        for split in SPLITS
    }


def fold_baselines(dataset: Dataset, task: str, repeat: int, fold: int) -> dict[str, dict]:
    """The constant and linear models on one fold, and a generated table's true function:
    {model: {split: scores, ...}}."""
    prepared = fold_data(dataset, repeat, fold)
    linear = fit_and_score(task, linear_model(task), prepared) if task == "regression" else fit_logistic(prepared)
    found = {"constant": fit_and_score(task, constant_model(task), prepared), "linear": linear}
    if dataset.generator:
        found[TRUE_FUNCTION] = true_function_scores(dataset, prepared)
    return found


def fold_sklearn_mlp(dataset: Dataset, task: str, config: TrainConfig, repeat: int, fold: int) -> dict:
    return fit_sklearn_mlp(task, config, fold_data(dataset, repeat, fold))


def all_rows_baselines(dataset: Dataset, task: str, config: TrainConfig) -> dict[str, dict]:
    """The reference hand-in's protocol (fit and score on every row): the linear model (logistic
    regression at ``ALL_ROWS_C``), and scikit-learn's MLP for the configured epochs (no rows are
    left to stop early on)."""
    prepared = all_rows(dataset)
    linear = linear_model(task, ALL_ROWS_C)
    result = {"linear": fit_and_score(task, linear, prepared, fit_split="all", score_splits=["all"])["all"]}
    model = sklearn_mlp(task, config, len(prepared.y["all"]))
    if model is not None:
        model.set_params(max_iter=config.epochs, tol=0.0, n_iter_no_change=config.epochs + 1)
        result["sklearn"] = fit_and_score(task, model, prepared, fit_split="all", score_splits=["all"])["all"]
    return result
