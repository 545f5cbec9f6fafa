"""One training run from prepared data: the function the train stage and every sweep call."""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from backprop.lab.config import TrainConfig
from backprop.lab.datasets import SPLITS, Dataset, Prepared, all_rows, fold_data
from backprop.lab.mechanisms import closed_form_lr_limit, landing_epoch, sharpness, unit_measures
from backprop.lab.protocol import OUTCOMES, fold_summary, outcome
from backprop.losses import DEFAULT_LOSS
from backprop.metrics import TASK_METRICS, classification_metrics, regression_metrics
from backprop.mlp import MLP, History


@dataclass
class RunResult:
    task: str
    config: TrainConfig
    model: MLP
    history: History
    scores: dict[str, dict[str, float]]  # split -> metric -> value, for the returned model
    constant_val_loss: float | None = None  # the constant model's (training mean / prior) on the val rows
    measures: dict[str, float] = field(default_factory=dict)  # fit_measures: hidden units, sharpness
    constant_losses: dict[str, float] = field(default_factory=dict)  # the constant model's loss per split

    def summary(self) -> dict:
        """The content of metrics/<task>-scores.json: every score of every split, how training ended."""
        return self.scores | {
            "epochs_run": self.history.epochs_run,
            "diverged": self.history.diverged,
            "diverged_epoch": self.history.diverged_epoch,
            "stopped_early": self.history.stopped_early,
            "best_epoch": self.history.best_epoch,
        }

    @property
    def outcome(self) -> str:
        """learned, no_better_than_constant, stalled, oscillating or diverged, from the validation-loss
        curve and the returned model's validation loss against the constant model's."""
        loss = self.history.loss_name
        val_loss = self.history.columns.get(f"val_{loss}", self.history.train_loss)
        return outcome(
            val_loss,
            diverged=self.history.diverged,
            val_score=self.scores.get("val", {}).get(DEFAULT_LOSS[self.task]),
            constant_score=self.constant_val_loss,
            margin=self.config.learned_margin,
        )

    def history_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.history.columns)
        frame.insert(0, "epoch", np.arange(len(frame)))
        return frame

    def flat_scores(self) -> dict[str, float]:
        return {f"{split}_{name}": value for split, values in self.scores.items() for name, value in values.items()}


def cv_scores(rows: list[dict], task: str, test_train_ratio: float) -> dict:
    """metrics/<task>-scores.json: every fold's row, and per split and metric the mean, std and
    95% interval over the folds that learned, with the count of each outcome."""
    table = pd.DataFrame(rows)
    columns = [f"{split}_{metric}" for split in SPLITS for metric in TASK_METRICS[task]]
    summary = fold_summary(table[table["outcome"] == "learned"], columns, test_train_ratio)
    outcomes = {name: int((table["outcome"] == name).sum()) for name in OUTCOMES}
    return {"folds": rows, "summary": summary, "outcomes": outcomes}


def headline(task: str, scores: dict, overridden_lr: float | None = None, kind: str | None = None) -> dict:
    """metrics/<task>.json, the few numbers `dvc exp show` and `dvc metrics diff` compare: the
    cross-validated test scores (the loss with its interval), keyed by task so that the two
    tasks' files give distinct column names; and ``lr`` when a per-task override replaced
    train.lr, so that the lr the task trained at stands beside train.lr (`make exps`). ``kind``:
    the task's kind, when its name is not one."""
    kind = kind or task
    loss, summary = DEFAULT_LOSS[kind], scores["summary"]
    values = {
        f"test_{metric}": summary[f"test_{metric}"]["mean"]
        for metric in TASK_METRICS[kind]
        if f"test_{metric}" in summary
    }
    values |= {
        f"test_{loss}_ci_low": summary[f"test_{loss}"]["ci_low"],
        f"test_{loss}_ci_high": summary[f"test_{loss}"]["ci_high"],
        f"val_{loss}": summary[f"val_{loss}"]["mean"],
        "learned_folds": scores["outcomes"]["learned"],
        "folds": len(scores["folds"]),
    }
    if overridden_lr is not None:
        values["lr"] = overridden_lr
    return {task: values}


def build_model(n_inputs: int, task: str, config: TrainConfig) -> MLP:
    return MLP(
        n_inputs,
        hidden=config.hidden,
        activation=config.activation,
        task=task,
        loss=config.loss_for(task),
        init=config.init,
        rng=np.random.default_rng(config.seed),
        dtype=config.dtype,
    )


def _fit_and_score(
    prepared: Prepared, task: str, config: TrainConfig, *, protocol: str, progress=None, test_curve: bool = True
):
    """``held_out``: fit on train, monitor val (early stopping) and, with ``test_curve``, test
    (curves only), score the three splits. ``all_rows``: fit and score on every row, with no data
    left to stop early on."""
    model = build_model(len(prepared.features), task, config)
    X, y = prepared.X, prepared.y
    fit_split = "train" if protocol == "held_out" else "all"
    if config.start == "saturated":
        from backprop.lab.curvature import saturated_start

        saturated_start(model, X[fit_split], y[fit_split])
    scale = prepared.target_scale
    # The network learns the standardised target; every score and curve stays in y's own units.
    y_fit = {split: (values - scale[0]) / scale[1] for split, values in y.items()} if scale else y
    splits: tuple[str, ...]
    watch: dict[str, Any]
    if protocol == "held_out":
        fit_split, splits = "train", SPLITS
        watch = {
            "X_val": X["val"],
            "y_val": y_fit["val"],
            "patience": config.stopping_patience,
            "tol": config.tol,
            "monitor": {"test": (X["test"], y_fit["test"])} if test_curve else {},
        }
    else:
        fit_split, splits, watch = "all", ("all",), {}
    history = model.fit(
        X[fit_split],
        y_fit[fit_split],
        target_scale=scale,
        lr=config.lr,
        epochs=config.epochs,
        batch_size=config.batch_size,
        track_accuracy=prepared.with_accuracy,
        progress=progress,
        **watch,
    )
    if scale:
        model.absorb_target_scale(*scale)
    scores = {split: model.evaluate(X[split], y[split], with_accuracy=prepared.with_accuracy) for split in splits}
    if history.diverged:  # the weights of a diverged run score nothing, however finite they look
        scores = {split: dict.fromkeys(values, math.nan) for split, values in scores.items()}
    return model, history, scores


def train_model(
    prepared: Prepared, task: str, config: TrainConfig, progress=None, test_curve: bool = True
) -> RunResult:
    """The pipeline's training run: fit on train, early-stop on val, score train/val/test. The
    test split's per-epoch curve is for the train stage's learning-curve figure (2.2); sweeps,
    which only compare final scores, leave it out (``test_curve=False``), a forward pass less
    per epoch."""
    model, history, scores = _fit_and_score(
        prepared, task, config, protocol="held_out", progress=progress, test_curve=test_curve
    )
    return RunResult(task, config, model, history, scores, constant_val_loss(prepared, task))


def constant_val_loss(prepared: Prepared, task: str) -> float:
    """The task's own loss on the validation rows of the constant model fitted on the training
    rows (their mean, or their share of positives): the score a fit must beat to have learned."""
    return constant_loss(prepared, task, "val")


def constant_loss(prepared: Prepared, task: str, split: str) -> float:
    """The task's own loss on the ``split`` rows of the constant model fitted on the training rows."""
    y_train, y_split = prepared.y["train"], prepared.y[split]
    if task == "regression":
        return regression_metrics(y_split, np.full(len(y_split), y_train.mean()), with_accuracy=False)["mse"]
    prior = float(np.clip(y_train.mean(), 1e-15, 1 - 1e-15))
    return classification_metrics(y_split, np.full(len(y_split), math.log(prior / (1 - prior))))["log_loss"]


def train_on_all_rows(prepared: Prepared, task: str, config: TrainConfig) -> dict[str, float]:
    """The reference hand-in's protocol: fit and score on every row (no held-out data)."""
    _, history, scores = _fit_and_score(prepared, task, config, protocol="all_rows")
    return scores["all"] | {"epochs_run": history.epochs_run, "diverged": history.diverged}


def describe_config(config: TrainConfig) -> str:
    """The settings that tell fits apart, for messages: ``lr=0.01, hidden=[16], ...``."""
    values = config.as_params()
    return ", ".join(f"{key}={values[key]}" for key in ("lr", "hidden", "activation", "loss", "epochs", "seed"))


def run_params(task: str, config: TrainConfig, kind: str | None = None) -> dict:
    """A training run's MLflow params, named as in params.yaml (``train.lr``), the loss resolved
    (by the task's ``kind``, when its name is not one)."""
    return {"task": task, "train": config.as_params() | {"loss": config.loss_for(kind or task)}}


def fit_fold(dataset: Dataset, task: str, config: TrainConfig, repeat: int, fold: int, test_curve: bool = False):
    """One cross-validation fit: fit on the fold's training rows, stop early on its validation
    part, score all three; ``config.seed`` is the fold's own (``protocol.fit_seed``). Its
    mechanisms (``fit_measures``) are measured on the training rows."""
    prepared = fold_data(dataset, repeat, fold)
    config = in_absolute_units(prepared, task, config)
    result = train_model(prepared, task, config, test_curve=test_curve)
    result.measures = fit_measures(result, prepared)
    result.constant_losses = {split: constant_loss(prepared, task, split) for split in SPLITS}
    return result


def fit_measures(result: RunResult, prepared: Prepared) -> dict[str, float]:
    """The fit's hidden units (``saturated_units``, ``dead_units``) and ``sharpness`` at three
    places: the returned weights (none when they are the initial ones, best epoch 0: nothing
    learned to measure), the last update's (``*_last``: a fit that failed after its start is
    judged where it ended), and for a catapult the weights where the training loss came back
    down (``sharpness_after_peak``, at ``sharpness_after_peak_epoch``). A diverged fit's weights
    hold inf or NaN: nothing is measured."""
    history = result.history
    if history.diverged:
        return {}
    X = prepared.X["train"]
    measures: dict[str, float] = {}
    if history.best_epoch != 0:
        measures = unit_measures(result.model, X) | {"sharpness": returned_sharpness(result, prepared)}
    last = measures  # without early stopping the returned weights are the last
    if history.last_theta is not None:
        probe, y = learning_units(result.task, result.config, prepared, history.last_theta, absorbed=False)
        last = unit_measures(probe, X) | {"sharpness": sharpness(probe, X, y, rng=_measure_rng(result))}
    measures |= {f"{name}_last": value for name, value in last.items()}
    trained = history.epochs_run if history.diverged_epoch is None else history.diverged_epoch
    landing = landing_epoch(history.train_loss, max(trained, 1))
    if landing is not None:
        measures["sharpness_after_peak"] = sharpness_after(result, prepared, landing)
        measures["sharpness_after_peak_epoch"] = landing
    return measures


def _measure_rng(result: RunResult) -> np.random.Generator:
    """Every sharpness of a fit starts Lanczos from the same vector, its seed's."""
    return np.random.default_rng(result.config.seed)


def returned_sharpness(result: RunResult, prepared: Prepared) -> float:
    """λ_max of the training loss at the returned weights, in the units the network learned in
    (a standardised target: the output layer's absorbed scale taken out again on a copy)."""
    if result.history.diverged:
        return math.nan
    probe, y = learning_units(result.task, result.config, prepared, result.model._theta, absorbed=True)
    return sharpness(probe, prepared.X["train"], y, rng=_measure_rng(result))


def sharpness_after(result: RunResult, prepared: Prepared, epochs: int) -> float:
    """λ_max at the weights after ``epochs`` updates of the same fit: retrained from its seed
    without early stopping (which only watches; the seed fixes the initial weights and the batch
    order, so the path is the same), as cheap as the first ``epochs`` epochs."""
    short = dataclasses.replace(result.config, epochs=epochs, patience=0)
    model, _, _ = _fit_and_score(prepared, result.task, short, protocol="held_out", test_curve=False)
    probe, y = learning_units(result.task, short, prepared, model._theta, absorbed=True)
    return sharpness(probe, prepared.X["train"], y, rng=_measure_rng(result))


def learning_units(task: str, config: TrainConfig, prepared: Prepared, theta: np.ndarray, *, absorbed: bool):
    """A copy of the network with weights ``theta`` and the training target, both in the units
    it learned in: with a standardised target, ``absorbed`` weights (a returned model's) have
    the output layer's scale taken out again."""
    probe = build_model(len(prepared.features), task, config)
    probe._theta[...] = theta
    y = prepared.y["train"]
    if prepared.target_scale:
        mean, std = prepared.target_scale
        if absorbed:
            last = probe.n_layers
            probe.params[f"W{last}"][...] /= std
            probe.params[f"b{last}"][...] = (probe.params[f"b{last}"] - mean) / std
        y = (y - mean) / std
    return probe, y


def in_absolute_units(prepared: Prepared, task: str, config: TrainConfig) -> TrainConfig:
    """The settings with ``lr`` as the step itself: a rate in units of the limit (``lr_unit:
    limit``) times this network's limit at its initial weights (the fold's seed) on the fold's
    training rows, in the units it learns in. Measured before training, from nothing the fit sees
    later, so every width and fold trains at the same multiple of its own stable step."""
    if config.lr_unit == "absolute":
        return config
    limit = fold_lr_limit(prepared, task, config)
    return dataclasses.replace(config, lr=config.lr * limit, lr_unit="absolute")


def fold_lr_limit(prepared: Prepared, task: str, config: TrainConfig) -> float:
    """2/λ_max of the network's training loss at its initial weights, on the (standardised, when
    the target is scaled) training rows."""
    from backprop.lab.curvature import lr_limit

    y = prepared.y["train"]
    if prepared.target_scale:
        mean, std = prepared.target_scale
        y = (y - mean) / std
    model = build_model(len(prepared.features), task, config)
    return lr_limit(model, prepared.X["train"], y, rng=np.random.default_rng(config.seed))


def fit_all_rows(dataset: Dataset, task: str, config: TrainConfig) -> dict[str, float]:
    """``train_on_all_rows`` on the table itself (the reference hand-in's protocol)."""
    return train_on_all_rows(all_rows(dataset), task, config)


def initial_lr_limit(dataset: Dataset, task: str, config: TrainConfig, repeat: int, fold: int) -> dict[str, float]:
    """The largest stable full-batch step of this network at its initial weights, on the fold's
    training rows: ``lr_limit`` in the units it learns in, and for a standardised target also
    ``lr_limit_unscaled``, the limit the same network would have on the raw target (what
    standardising changes)."""
    from backprop.lab.curvature import lr_limit

    prepared = fold_data(dataset, repeat, fold)
    X, y = prepared.X["train"], prepared.y["train"]

    def limit(target):
        model = build_model(len(prepared.features), task, config)
        return lr_limit(model, X, target, rng=np.random.default_rng(config.seed))

    closed_form = closed_form_lr_limit(build_model(len(prepared.features), task, config), X)
    if not prepared.target_scale:
        return {"lr_limit": limit(y), "lr_limit_closed_form": closed_form}
    mean, std = prepared.target_scale
    return {"lr_limit": limit((y - mean) / std), "lr_limit_closed_form": closed_form, "lr_limit_unscaled": limit(y)}


def fit_seconds(prepared: Prepared, task: str, config: TrainConfig, enough: float = 0.02) -> float:
    """How long one fit may take, at most: fits of k and 2k epochs timed here (one BLAS thread, as
    in a worker), k growing until the longer takes ``enough`` seconds, so that their difference,
    the time of k epochs, stands above the timer's noise; scaled to the configured epochs (early
    stopping may end the fit sooner). A large table is measured on one and two epochs."""
    from backprop.lab.jobs import one_blas_thread

    def timed(epochs: int) -> float:
        short = dataclasses.replace(config, epochs=epochs, patience=0)
        started = time.perf_counter()
        one_blas_thread(_fit_and_score, prepared, task, short, protocol="held_out")
        return time.perf_counter() - started

    timed(1)  # first-call costs (buffers, BLAS threads) are not per-epoch costs
    k = 1
    while True:
        shorter, longer = timed(k), timed(2 * k)
        if longer >= enough or 2 * k >= config.epochs:
            break
        k *= 4
    per_epoch = max(longer - shorter, 0.0) / k
    return max(shorter - k * per_epoch, 0.0) + per_epoch * config.epochs


def fit_estimates(fits: Sequence[tuple[Dataset, str, TrainConfig]]) -> list[float]:
    """``fit_seconds`` of every (data, task, config): per task the fit with the most weights is
    measured, the others scaled from it by their epochs and weights (an epoch's products grow with
    the weights; fixed costs do not, so small fits come out a little low), so a sweep of many
    widths costs one measurement per task."""
    largest: dict[str, tuple[int, Dataset, TrainConfig]] = {}  # by task name; each fit by its kind
    for prepared, task, config in fits:
        weights = _weights(len(prepared.features), config.hidden)
        if task not in largest or weights > largest[task][0]:
            largest[task] = (weights, prepared, config)
    measured = {
        task: (fit_seconds(fold_data(prepared, 0, 0), prepared.kind, config) / weights / config.epochs)
        for task, (weights, prepared, config) in largest.items()
    }
    return [
        measured[task] * _weights(len(prepared.features), config.hidden) * config.epochs
        for prepared, task, config in fits
    ]


def _weights(n_inputs: int, hidden: Sequence[int]) -> int:
    sizes = [n_inputs, *hidden, 1]
    return sum((a + 1) * b for a, b in itertools.pairwise(sizes))
