"""Tasks by params alone, the generated control task, rates in units of the limit, and a patience
that scales with the budget (issue 19, items 3, 4 and 7)."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, stage

from backprop.lab.comparisons import settings_compared
from backprop.lab.config import TrainConfig, load_data, read_params
from backprop.lab.control import answer_cells, control_section, headline_capped
from backprop.lab.datasets import fold_data, fold_rows, friedman1, prepare
from backprop.lab.protocol import fit_seed, overlap_ratio
from backprop.lab.sweeps import fold_config, result_row
from backprop.lab.training import fit_fold, fold_lr_limit, in_absolute_units


def control_table(rows: int, folds: int = 5):
    table = friedman1(rows, 1.0, 0, "y")
    return prepare(
        table,
        source="generated",
        target="y",
        task="regression",
        accuracy="none",
        scale_target=True,
        folds=folds,
        repeats=1,
        val_size=0.2,
        seed=0,
    )


def test_the_default_params_name_three_tasks_each_of_a_kind():
    data = load_data(read_params(ROOT / "params.yaml"))
    assert data.kinds == {"regression": "regression", "classification": "classification", "control": "regression"}
    control = data.task("control")
    assert control.generate.name == "friedman1" and control.generate.floor == control.generate.noise**2
    assert control.source.startswith("generated: friedman1")


def test_a_small_control_table_detects_hidden_1_worse_than_16():
    """The same fits and comparison code as the pipeline's hidden sweep (rates in units of each
    width's limit, early stopping that waits a share of the budget), on 600 generated rows: one
    hidden unit cannot follow Friedman #1's sine and square, sixteen can, and the paired interval
    over folds shows it."""
    dataset = control_table(600)
    rows = []
    for hidden, rate in ((1, 0.25), (16, 1.5)):  # each width at a rate where every fold learns
        point = {"hidden": hidden, "lr": rate}
        config = TrainConfig(
            hidden=(hidden,), activation="sigmoid", lr=rate, lr_unit="limit", epochs=2000, patience=100
        ).varied({"patience_share": 0.25}, "train")
        for repeat, fold in dataset.folds:
            result = fit_fold(dataset, "regression", fold_config(config, repeat, fold, 5), repeat, fold)
            rows.append(result_row("control", point, repeat, fold, result))
    results = pd.DataFrame(rows)
    assert (results["outcome"] == "learned").all()
    ratio = overlap_ratio(fold_rows(dataset))
    answer = settings_compared(results, "control", ["hidden", "lr"], ratio, kind="regression")
    assert answer["best"]["hidden"] == 16
    (versus,) = answer["best_minus_other"]
    assert versus["other"]["hidden"] == 1
    # best − other < 0 with its whole interval: hidden 16 detectably better
    assert versus["ci_high"] < 0 and versus["wins"] == 5


def test_rates_in_units_of_the_limit_expand_per_width_and_fold():
    dataset = control_table(120, folds=3)
    steps = {}
    for hidden in (1, 16):
        for fold in (0, 1):
            config = TrainConfig(
                hidden=(hidden,), activation="sigmoid", lr=0.5, lr_unit="limit", epochs=3, seed=fit_seed(0, 0, fold, 3)
            )
            prepared = fold_data(dataset, 0, fold)
            absolute = in_absolute_units(prepared, "regression", config)
            limit = fold_lr_limit(prepared, "regression", config)
            assert absolute.lr == pytest.approx(0.5 * limit, rel=1e-12)
            assert absolute.lr_unit == "absolute"
            result = fit_fold(dataset, "regression", config, 0, fold)
            row = result_row("control", {"hidden": hidden, "lr": 0.5}, 0, fold, result)
            assert row["lr"] == 0.5 and row["lr_applied"] == pytest.approx(absolute.lr, rel=1e-12)
            steps[hidden, fold] = absolute.lr
    # the limit shrinks with width (≈ 4 / (h + 4) for sigmoid), and each fold measures its own
    assert steps[16, 0] < steps[1, 0] / 2 and steps[16, 1] < steps[1, 1] / 2
    assert steps[1, 0] != steps[1, 1] and steps[16, 0] != steps[16, 1]
    absolute = TrainConfig(hidden=(4,), activation="sigmoid", lr=0.5, epochs=3)
    assert in_absolute_units(fold_data(dataset, 0, 0), "regression", absolute) is absolute


def test_early_stopping_waits_a_share_of_the_budget():
    config = TrainConfig(hidden=(4,), activation="sigmoid", lr=0.1, epochs=2000, patience=100, patience_share=0.25)
    assert config.stopping_patience == 500
    assert TrainConfig(hidden=(4,), activation="sigmoid", lr=0.1, epochs=200, patience=100).stopping_patience == 100
    off = TrainConfig(hidden=(4,), activation="sigmoid", lr=0.1, epochs=2000, patience=0, patience_share=0.25)
    assert off.stopping_patience == 0


@pytest.mark.e2e  # runs the prepare and train stages
def test_a_task_added_by_params_alone_is_prepared_and_trained(tmp_path):
    """A new key under data (a generated table here), nothing else: prepare writes its arrays and
    schema (with the generated table's digest and floor), train its model, metrics and curves."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {key: params["data"][key] for key in ("folds", "repeats", "val_size", "seed")}
    params["data"]["folds"] = 3
    params["data"]["wiggle"] = {
        "kind": "regression",
        "generate": {"name": "friedman1", "rows": 60, "noise": 0.5, "seed": 3},
        "target": "y",
        "accuracy": "none",
    }
    params["train"] |= {"epochs": 20, "overrides": {}}
    params["tracking"] |= {"log_models": False, "max_logged_steps": {"train": 5, "sweep": 5}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    prepared = tmp_path / "prepared"
    result = stage(tmp_path, ["-m", "stages.prepare", "--out", str(prepared)])
    assert result.returncode == 0, result.stderr
    schema = json.loads((prepared / "wiggle" / "schema.json").read_text())
    table = friedman1(60, 0.5, 3, "y")
    assert schema["sha256"] == hashlib.sha256(table.to_csv(index=False).encode()).hexdigest()
    assert schema["noise_floor"] == 0.25 and schema["kind"] == "regression" and schema["rows"] == 60
    args = ["--prepared", str(prepared), "--models", "models", "--metrics", "metrics", "--plots", "plots"]
    result = stage(tmp_path, ["-m", "stages.train", *args, "--runs", "runs/train.json"])
    assert result.returncode == 0, result.stderr
    assert "train wiggle: test MSE" in result.stdout
    headline = json.loads((tmp_path / "metrics" / "wiggle.json").read_text())["wiggle"]
    assert np.isfinite(headline["test_mse"]) and headline["folds"] == 3
    assert (tmp_path / "plots" / "wiggle" / "history.csv").is_file()
    assert (tmp_path / "models" / "wiggle" / "MLmodel").is_file()


def _difference(mean, low, high):
    return {"mean": mean, "ci_low": low, "ci_high": high, "wins": 5, "n": 5, "mde": 1.0}


def test_the_report_says_beside_each_answer_whether_the_control_detects_it():
    versus_linear = _difference(-1.66, -2.24, -1.08)
    comparison = {
        "regression": {"network_vs_linear": _difference(-21.1, -137.0, 95.0), "sweeps": {}},
        "control": {
            "network_vs_linear": versus_linear,
            "sweeps": {
                "hidden": {
                    "best": {"hidden": 16, "lr": 1.0},
                    "best_vs_linear": versus_linear,
                    # best − other: hidden 1 is worse by 5.28
                    "best_minus_other": [{"other": {"hidden": 1, "lr": 1.0}} | _difference(-5.28, -6.36, -4.21)],
                    "headline_vs_best": {
                        "best": {"hidden": 16, "lr": 1.0},
                        "headline": {"mean": 1.4, "ci_low": 1.2, "ci_high": 1.6},
                        "tuned": {"mean": 1.34, "ci_low": 1.21, "ci_high": 1.46},
                        "headline_minus_tuned": _difference(0.06, -0.1, 0.22),
                    },
                }
            },
        },
    }
    schemas = {"regression": {"source": "data/diabetes.csv"}, "control": {"noise_floor": 1.0, "source": "generated"}}
    cells = answer_cells(comparison, schemas)
    assert "hidden 1 − hidden 16: **detected** 5.28 (4.21 to 6.36)" in cells["q24"]
    assert "least squares: **detected** -1.66 (-2.24 to -1.08)" in cells["q21"]
    assert "best test MSE 1.34 (1.21 to 1.46)" in cells["q21"] and "noise floor 1" in cells["q21"]
    # a tie between headline and tuned is worded as a tie, with its detectable size
    assert "no difference detected: headline − tuned 0.06 (-0.1 to 0.22), detectable 1" in cells["q21"]
    capped = answer_cells(comparison, schemas, capped=(3, 5))["q21"]
    assert capped.endswith("; 3 of 5 headline fits still improving at the epoch budget")
    assert headline_capped({"folds": [{"best_epoch": 2999}, {"best_epoch": 40}]}, 3000) == (1, 2)
    schemas["control"] |= {"rows": 1000, "features": list(range(10))}
    (section,) = control_section(comparison, schemas)
    # the control's power, without claiming the data set has no effect
    intro = section["blocks"][0]["text"]
    assert "had the power" not in intro and "no such effect" not in intro
    assert "effects beyond each interval's ends are excluded, smaller ones are not" in intro
    comparison["control"]["sweeps"]["activation"] = {
        "best": {"activation": "sigmoid", "lr": 0.3},
        "best_minus_other": [{"other": {"activation": "relu", "lr": 0.03}} | _difference(-0.4, -1.2, 0.4)],
    }
    (section,) = control_section(comparison, schemas)
    assert "Not detected on the control either: relu − sigmoid (detectable 1)" in section["blocks"][0]["text"]
    table = next(block for block in section["blocks"] if block["kind"] == "table")
    first = table["rows"][0]
    assert first[3].startswith("not detected: -21.1") and first[4].startswith("detected: -1.66")
    # no generated task: no control column, no section
    assert answer_cells(comparison, {"regression": {}}) == {} and control_section(comparison, {}) == []
