"""Reference points computed in the run: linear models and scikit-learn's MLP with our settings."""

from __future__ import annotations

import math
import warnings

import numpy as np

from backprop.lab.config import TrainConfig
from backprop.lab.datasets import SPLITS, Prepared
from backprop.metrics import classification_metrics, regression_metrics

# scikit-learn has no leaky ReLU: that setting has no sklearn twin.
SKLEARN_ACTIVATION = {"sigmoid": "logistic", "tanh": "tanh", "relu": "relu", "identity": "identity"}


def _scores(task: str, model, X, y, with_accuracy: bool) -> dict[str, float]:
    if task == "regression":
        return regression_metrics(y, model.predict(X), with_accuracy=with_accuracy)
    probability = np.clip(model.predict_proba(X)[:, 1], 1e-15, 1 - 1e-15)
    return classification_metrics(y, np.log(probability / (1 - probability)))


def linear_model(task: str):
    from sklearn.linear_model import LinearRegression, LogisticRegression

    # Logistic regression without a penalty is the linear twin of our log-loss network.
    return LinearRegression() if task == "regression" else LogisticRegression(C=math.inf, max_iter=10_000)


def constant_model(task: str):
    from sklearn.dummy import DummyClassifier, DummyRegressor

    return DummyRegressor(strategy="mean") if task == "regression" else DummyClassifier(strategy="prior")


def sklearn_mlp(task: str, config: TrainConfig, n_rows: int):
    """The same network and optimiser in scikit-learn: plain SGD, constant rate, no momentum, no
    L2, no early stopping of its own. Its regression loss is ½·MSE, so its rate is doubled to take
    the same steps as ours."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor

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
        max_iter=config.epochs,
        shuffle=config.batch_size != 0,
        tol=0.0,
        n_iter_no_change=config.epochs + 1,
        early_stopping=False,
        random_state=config.seed,
    )


def fit_and_score(task: str, model, prepared: Prepared, fit_split: str = "train", score_splits=SPLITS) -> dict:
    """Fit a scikit-learn model on one split and score it on others: {split: {metric: value}}."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter reached is the point: we asked for exactly that many epochs
        model.fit(prepared.X[fit_split], prepared.y[fit_split])
    return {
        split: _scores(task, model, prepared.X[split], prepared.y[split], prepared.with_accuracy)
        for split in score_splits
    }
