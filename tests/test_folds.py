"""The cross-validation protocol: folds, target standardisation, grids, fair baselines."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from backprop.lab import pyfunc
from backprop.lab.answers import above_limit_sentence, grid_end_sentence
from backprop.lab.baselines import fit_sklearn_mlp, sklearn_epochs, sklearn_mlp
from backprop.lab.config import SweepConfig, TrainConfig
from backprop.lab.datasets import DataError, fold_data, prepare
from backprop.lab.protocol import TEST, TRAIN, VAL, fit_seed, fold_roles, half_width, mean_interval, overlap_ratio
from backprop.lab.sweeps import still_improving, sweep_jobs
from backprop.lab.training import fit_fold
from backprop.metrics import regression_metrics
from backprop.mlp import History

DIABETES = pd.read_csv("data/diabetes.csv")
CANCER = pd.read_csv("data/breast_cancer.csv")


def dataset(task="regression", folds=5, repeats=2, scale_target=True):
    frame, target = (DIABETES, "progression") if task == "regression" else (CANCER, "malignant")
    return prepare(
        frame, source="t.csv", target=target, task=task, accuracy="mape", scale_target=scale_target and task == "regression",
        folds=folds, repeats=repeats, val_size=0.2, seed=0,
    )  # fmt: skip


# ---- folds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stratify", [False, True])
def test_test_folds_are_disjoint_and_cover_every_row_in_each_repeat(stratify):
    y = np.r_[np.zeros(61), np.ones(40)]
    roles = fold_roles(y, folds=5, repeats=3, val_size=0.2, seed=7, stratify=stratify)
    assert roles.shape == (3, 5, 101)
    for repeat in range(3):
        held_out = roles[repeat] == TEST  # (folds, n)
        assert (held_out.sum(axis=0) == 1).all()  # every row is held out exactly once
        sizes = held_out.sum(axis=1)
        assert sizes.max() - sizes.min() <= (2 if stratify else 1)
        for fold in range(5):
            training = roles[repeat, fold] != TEST
            val = roles[repeat, fold] == VAL
            assert val[training].mean() == pytest.approx(0.2, abs=0.02) and not (val & held_out[fold]).any()
    assert not (roles[0] == roles[1]).all()  # repeats redraw the folds


def test_stratified_folds_keep_the_class_balance():
    y = np.r_[np.zeros(357), np.ones(212)]
    roles = fold_roles(y, folds=5, repeats=1, val_size=0.2, seed=0, stratify=True)
    for fold in range(5):
        for role in (TRAIN, VAL, TEST):
            share = y[roles[0, fold] == role].mean()
            assert share == pytest.approx(212 / 569, abs=0.01)


def test_folds_depend_on_the_seed_only_and_earlier_repeats_do_not_change_with_more():
    y = np.arange(50.0)
    one = fold_roles(y, folds=5, repeats=1, val_size=0.2, seed=3, stratify=False)
    three = fold_roles(y, folds=5, repeats=3, val_size=0.2, seed=3, stratify=False)
    assert (one[0] == three[0]).all()
    assert not (fold_roles(y, folds=5, repeats=1, val_size=0.2, seed=4, stratify=False) == one).all()


def test_every_model_of_a_fold_sees_the_same_rows():
    data = dataset()
    for repeat, fold in data.folds:
        prepared = fold_data(data, repeat, fold)
        for split, role in (("train", TRAIN), ("val", VAL), ("test", TEST)):
            assert (prepared.rows[split] == np.flatnonzero(data.roles[repeat, fold] == role)).all()
        # features standardised with the fitted rows only
        assert np.allclose(prepared.X["train"].mean(axis=0), 0) and not np.allclose(prepared.X["test"].mean(axis=0), 0)


def test_a_fold_without_a_row_of_a_class_is_refused_naming_the_file():
    frame = CANCER.head(60).copy()
    frame["malignant"] = 0
    frame.loc[:2, "malignant"] = 1  # 3 positives for 5 folds
    with pytest.raises(DataError, match=r"t\.csv: target 'malignant' has fewer rows of one class than data\.folds=5"):
        prepare(frame, source="t.csv", target="malignant", task="classification", accuracy="mape",
                scale_target=False, folds=5, repeats=1, val_size=0.2, seed=0)  # fmt: skip


def test_fit_seeds_come_from_coordinates():
    assert [fit_seed(10, r, f, 5) for r, f in [(0, 0), (0, 4), (1, 0)]] == [10, 14, 15]


# ---- target standardisation ------------------------------------------------------------------------


def test_a_scaled_fit_reports_and_predicts_in_the_targets_units(tmp_path):
    data = dataset()
    config = TrainConfig(hidden=(8,), activation="sigmoid", lr=0.1, epochs=60, patience=10)
    result = fit_fold(data, "regression", config, 0, 1, test_curve=True)
    prepared = fold_data(data, 0, 1)
    mean, std = prepared.target_scale
    assert mean == pytest.approx(prepared.y["train"].mean()) and std == pytest.approx(prepared.y["train"].std())
    predicted = result.model.predict(prepared.X["test"])
    assert abs(predicted.mean() - prepared.y["test"].mean()) < 0.3 * std  # original units, not ≈ 0
    assert result.scores["test"] == pytest.approx(regression_metrics(prepared.y["test"], predicted))
    # epoch 0 of the curve: the untrained network, mapped back to y's units by hand
    untrained = result.model.__class__(10, hidden=(8,), rng=np.random.default_rng(config.seed))
    z0 = untrained.predict(prepared.X["val"]) * std + mean
    assert result.history.columns["val_mse"][0] == pytest.approx(np.mean((z0 - prepared.y["val"]) ** 2))
    assert result.history.columns["val_accuracy"][0] == pytest.approx(
        1 - np.mean(np.abs(z0 - prepared.y["val"]) / np.abs(prepared.y["val"]))
    )
    # and through the MLflow model, from raw rows
    pyfunc.save(tmp_path / "model", result.model, prepared)
    import mlflow

    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    raw = pd.DataFrame(prepared.X["test"] * prepared.std + prepared.mean, columns=prepared.features)
    assert np.allclose(np.asarray(loaded.predict(raw)).ravel(), predicted)


# ---- intervals over folds ------------------------------------------------------------------------


def test_the_corrected_interval_is_hand_computable():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # sd = √2.5 = 1.58114, t(0.975, 4) = 2.776; corrected: √(1/5 + 1/4) = 0.67082
    ratio = overlap_ratio({"test": [90, 88], "train": [360, 352]})  # 1/4 in both folds
    assert ratio == 0.25
    assert half_width(values, ratio) == pytest.approx(2.776 * 1.58114 * 0.67082, rel=1e-5)
    assert half_width(values) == pytest.approx(2.776 * 1.58114 / np.sqrt(5), rel=1e-5)
    stats = mean_interval([1.0, 2.0, np.nan, 3.0, 4.0, 5.0])
    assert stats["n"] == 5 and stats["mean"] == 3.0


# ---- grids -----------------------------------------------------------------------------------------


def test_a_grid_expands_to_every_combination_with_fold_seeds():
    sweep = SweepConfig.from_params(
        {"g": {"grid": {"activation": ["sigmoid", "relu"], "lr": [0.1, 0.3, 1.0]}, "tasks": ["regression"],
               "fixed": {"epochs": 7}}}
    )  # fmt: skip
    train = TrainConfig(hidden=(4,), activation="tanh", lr=0.01, epochs=100, seed=20)
    data = {"regression": dataset(repeats=1)}
    jobs = sweep_jobs("g", sweep, {"regression": sweep.inherited("g", train, "regression")}, data, data)
    assert len(jobs) == 2 * 3 * 5
    combos = {(job.args[2].activation, job.args[2].lr) for job in jobs}
    assert combos == {(a, lr) for a in ("sigmoid", "relu") for lr in (0.1, 0.3, 1.0)}
    for job in jobs:
        repeat, fold = job.key.repeat, job.key.fold
        assert job.args[2].seed == 20 + fold and job.args[2].epochs == 7 and job.args[3:5] == (repeat, fold)


def test_a_one_key_sweep_is_a_grid_of_one_key():
    sweep = SweepConfig.from_params({"lr": {"grid": {"lr": [0.1, 0.2]}, "tasks": ["regression"]}})
    assert sweep.spec("lr").points() == [{"lr": 0.1}, {"lr": 0.2}]


# ---- fair baselines ----------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_scikit_learns_fast_epoch_is_its_partial_fit(task):
    prepared = fold_data(dataset(task, repeats=1), 0, 0)
    config = TrainConfig(hidden=(5,), activation="sigmoid", lr=0.1, epochs=20)
    X, y = prepared.X["train"], prepared.y["train"]
    fast, slow = sklearn_mlp(task, config, len(y)), sklearn_mlp(task, config, len(y))
    epoch = sklearn_epochs(fast, X, y)
    slow.partial_fit(X, y, **({"classes": np.array([0.0, 1.0])} if task == "classification" else {}))
    for _ in range(20):
        epoch()
        slow.partial_fit(X, y)
    for a, b in zip(fast.coefs_ + fast.intercepts_, slow.coefs_ + slow.intercepts_, strict=True):
        assert np.array_equal(a, b)


def test_scikit_learns_mlp_stops_early_on_the_same_validation_part():
    prepared = fold_data(dataset(repeats=1), 0, 0)
    config = TrainConfig(hidden=(16,), activation="sigmoid", lr=0.3, epochs=3000, patience=20)
    result = fit_sklearn_mlp("regression", config, prepared)
    assert result["epochs_run"] == result["best_epoch"] + 20 < 3000
    longer = fit_sklearn_mlp(
        "regression", dataclasses.replace(config, patience=0, epochs=result["epochs_run"]), prepared
    )
    assert result["val"]["mse"] <= longer["val"]["mse"]  # the best epoch's weights were restored


def test_a_saturated_start_is_confidently_wrong_on_every_positive_row():
    data = dataset("classification", repeats=1)
    config = TrainConfig(hidden=(8,), activation="sigmoid", lr=0.3, epochs=3, start="saturated")
    result = fit_fold(data, "classification", config, 0, 0)
    prepared = fold_data(data, 0, 0)
    negatives = 1 - prepared.y["train"].mean()
    # epoch 0: every training row predicted negative, so accuracy is the share of negatives, and
    # log loss is at least −log(0.01) on the positives
    assert result.history.columns["train_accuracy"][0] == pytest.approx(negatives)
    assert result.history.columns["train_log_loss"][0] > -np.log(0.01) * (1 - negatives)
    plain = fit_fold(data, "classification", dataclasses.replace(config, start="init"), 0, 0)
    assert plain.history.columns["train_accuracy"][0] != pytest.approx(negatives)


def _history(train_loss, *, best_epoch=None, stopped_early=False, diverged=False) -> History:
    loss = np.asarray(train_loss, dtype=float)
    return History(
        loss_name="mse",
        columns={"train_mse": loss},
        epochs_run=len(loss),
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        diverged=diverged,
    )


def test_a_fit_is_still_improving_only_when_the_budget_cut_it_short():
    falling = [5.0, 4.0, 3.0, 2.5]
    # Without early stopping: the loss it minimises is lowest at its last epoch, or it is not.
    assert still_improving(_history(falling))
    assert not still_improving(_history([5.0, 2.0, 3.0, 2.5]))
    # With early stopping: its best validation epoch is the last, or it is not.
    assert still_improving(_history(falling, best_epoch=3))
    assert not still_improving(_history(falling, best_epoch=1))
    assert not still_improving(_history(falling, best_epoch=1, stopped_early=True))
    assert not still_improving(_history(falling, diverged=True))


def test_the_report_flags_best_rates_past_the_limit_and_at_the_grid_ends():
    summary = pd.DataFrame(
        {
            "task": ["regression"] * 4,
            "hidden": [16, 16, 256, 256],
            "lr": [0.1, 0.3, 0.1, 0.3],
            "lr_limit": [0.2] * 2 + [0.02] * 2,
        }
    )
    answer = {"settings": [{"point": {"hidden": 16, "lr": 0.1}}, {"point": {"hidden": 256, "lr": 0.1}}]}
    sentence = above_limit_sentence(answer, summary, "regression", "width")
    assert "hidden 256, lr 0.1 (5× its limit)" in sentence and "hidden 16" not in sentence
    assert above_limit_sentence({"settings": answer["settings"][:1]}, summary, "regression", "width") == ""
    steps = [{"from": {"hidden": 16, "lr": 0.3}, "to": {"hidden": 256, "lr": 0.1}}]
    ends = grid_end_sentence(steps, summary)
    assert "hidden 16 at lr 0.3 (top of the grid)" in ends and "hidden 256 at lr 0.1 (bottom of the grid)" in ends
    assert "mixes width with learning rate" in ends
    # A grid without lr (every width at train's rate) has nothing to flag.
    assert grid_end_sentence([{"from": {"hidden": 2}, "to": {"hidden": 4}}], summary.drop(columns="lr")) == ""
