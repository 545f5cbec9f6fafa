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
from backprop.lab.control import answer_cells, answers_line, control_section, headline_capped, headline_settings
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
                    # each point − the headline network: hidden 1 is worse by 5.3
                    "each_minus_headline": [{"point": {"hidden": 1, "lr": 1.0}} | _difference(5.3, 4.2, 6.4)],
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
    # review 4 (c)6: the width effect is the narrowest − the headline network, on every task alike
    assert "hidden 1 − headline: **detected** 5.3 (4.2 to 6.4)" in cells["q24"]
    assert "least squares: **detected** -1.66 (-2.24 to -1.08)" in cells["q21"]
    assert "best test MSE 1.34 (1.21 to 1.46)" in cells["q21"] and "noise floor 1" in cells["q21"]
    # headline − tuned answers no row's question: the control section says it, not a cell
    assert "headline − tuned" not in " ".join(cells.values())
    folds = [{"still_improving": True}, {"still_improving": False}, {"still_improving": True, "outcome": "diverged"}]
    assert headline_capped({"folds": folds}) == (1, 2)
    schemas["control"] |= {"rows": 1000, "features": list(range(10))}
    (section,) = control_section(comparison, schemas, capped=(3, 5))
    recipe = next(b["text"] for b in section["blocks"] if b["kind"] == "p" and "Default recipe" in b["text"])
    # a tie between headline and tuned is worded as a tie, with its detectable size and capped fits
    assert "no difference detected: headline − tuned 0.06 (-0.1 to 0.22), detectable 1" in recipe
    assert "3 of 5 headline fits still improving at the epoch budget" in recipe
    assert "at sweep hidden's choice (hidden 16 at lr 1.0)" in recipe
    assert "`train`'s own" not in recipe  # no sweep ran train's own value of an overridden key: nothing said
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


def test_the_true_function_scores_the_noise_the_held_out_rows_realised():
    """A generated table's true function is a baseline: its held-out MSE is the noise variance
    those rows realised, near noise² on many rows and exactly 0 without noise."""
    from backprop.lab.baselines import fold_baselines
    from backprop.lab.datasets import GENERATORS, TRUE_FUNCTION, TRUE_FUNCTIONS

    assert set(TRUE_FUNCTIONS) == set(GENERATORS)

    def held_out(rows, noise):
        table = friedman1(rows, noise, 0, "y")
        dataset = prepare(
            table, source="generated", target="y", task="regression", accuracy="none", scale_target=True,
            folds=2, repeats=1, val_size=0.2, seed=0, generator="friedman1",
        )  # fmt: skip
        return [fold_baselines(dataset, "regression", 0, fold)[TRUE_FUNCTION]["test"]["mse"] for fold in (0, 1)]

    assert held_out(40_000, 2.0) == pytest.approx([4.0, 4.0], rel=0.03)
    assert held_out(200, 0.0) == [0.0, 0.0]
    # a table read from a file has no true function, so no such baseline
    assert TRUE_FUNCTION not in fold_baselines(control_table(100), "regression", 0, 0)


def _control_run():
    """The control's own inputs: the true function's held-out MSE per fold (mean 0.9), the
    headline fits (fold 3 stopped by the 3000-epoch budget), and the sweeps' capped fits."""
    from backprop.lab.config import SweepSpec
    from backprop.lab.control import ControlRun

    floor = [0.85, 0.9, 0.95, 0.88, 0.92]
    baselines = {
        "held_out": [
            {"task": "control", "model": "true_function", "repeat": 0, "fold": f, "test_mse": v}
            for f, v in enumerate(floor)
        ]
        + [{"task": "regression", "model": "linear", "repeat": 0, "fold": 0, "test_mse": 3000.0}]
    }
    folds = [
        {"repeat": 0, "fold": f, "best_epoch": 2999 if f == 3 else 1500, "outcome": "learned"}
        | {"train_mse": 1.0 + 0.01 * f, "val_mse": 1.3 + 0.02 * f * f}
        for f in range(5)
    ]
    summaries = {
        "hidden": pd.DataFrame(
            [{"task": "control", "hidden": h, "lr": 1.5, "capped": c, "learned": 5} for h, c in ((1, 1), (16, 2))]
        ),
        "activation": pd.DataFrame(
            [
                {"task": "control", "activation": a, "lr": lr, "capped": 3, "learned": 5}
                for a, lr in (("sigmoid", 0.3), ("relu", 0.03))
            ]
        ),
    }
    specs = {
        "hidden": SweepSpec(grid={"hidden": [1, 16], "lr": [1.5]}, tasks=["control"], fixed={"epochs": 4000}),
        "activation": SweepSpec(grid={"activation": ["sigmoid", "relu"], "lr": [0.03, 0.3]}, tasks=["control"]),
    }
    return ControlRun(
        baselines=baselines,
        scores={"control": {"folds": folds}},
        ratios={"control": 0.3},
        summaries=summaries,
        specs=specs,
        configs={"control": {"epochs": 3000}},
    )


def test_the_control_reports_its_realised_floor_its_own_22_effect_and_what_one_fold_makes():
    """Review 3: the floor the held-out rows realised (the true function's MSE), best − f paired by
    fold with the capped fits; 2.2's control cell is 2.2's effect (validation − train); a rate in
    units of the limit says so; headline − tuned made by one capped fold says so; the missed
    activation effects say how many of their fits the budget cut; the title claims no more."""
    tuned = {"mean": 1.35, "ci_low": 1.01, "ci_high": 1.68}
    comparison = {
        "regression": {"network_vs_linear": _difference(-21.1, -137.0, 95.0), "sweeps": {}},
        "control": {
            "network_vs_linear": _difference(-5.25, -7.28, -3.22),
            "sweeps": {
                "hidden": {
                    "best": {"hidden": 16, "lr": 1.5},
                    "lr_unit": "limit",
                    "best_vs_linear": _difference(-5.47, -7.54, -3.4),
                    "best_vs_true_function": _difference(0.43, 0.14, 0.71) | {"mde": 0.38},
                    "best_minus_other": [{"other": {"hidden": 1, "lr": 1.5}} | _difference(-5.52, -7.35, -3.69)],
                    "each_minus_headline": [{"point": {"hidden": 1, "lr": 1.5}} | _difference(5.3, 3.38, 7.21)],
                    "headline_vs_best": {
                        "best": {"hidden": 16, "lr": 1.5},
                        "headline": {"mean": 1.57, "ci_low": 0.729, "ci_high": 2.41},
                        "tuned": tuned,
                        "headline_minus_tuned": _difference(0.224, -0.724, 1.17) | {"mde": 1.27},
                        "headline_minus_tuned_by_fold": [
                            {"repeat": 0, "fold": f, "difference": d}
                            for f, d in enumerate((0.010, 0.005, -0.007, 1.076, 0.033))
                        ],
                    },
                },
                "activation": {
                    "best": {"activation": "sigmoid", "lr": 0.3},
                    "best_minus_other": [
                        {"other": {"activation": "relu", "lr": 0.03}} | _difference(-0.444, -1.24, 0.357)
                    ],
                },
            },
        },
    }
    comparison["control"]["without_override"] = {
        "sweep": "activation",
        "own": {"lr": 0.1},
        "kept": {"epochs": 3000},
        "point": {"activation": "sigmoid", "lr": 0.1},
        "scores": {"mean": 4.03, "ci_low": 0.925, "ci_high": 7.13, "n": 5},
        "learned": 5,
        "capped": 4,
        "minus_best": {"hidden": {"best": {"hidden": 16, "lr": 1.5}} | _difference(2.68, -0.41, 5.76) | {"mde": 4.13}},
    }
    schemas = {
        "regression": {"source": "data/diabetes.csv"},
        "control": {"noise_floor": 1.0, "source": "generated", "rows": 1000, "features": list(range(10))},
    }
    run = _control_run()
    cells = answer_cells(comparison, schemas, run=run)
    # the realised floor: mean of the true function's held-out MSE, and the ratio against it
    assert "best test MSE 1.35 (1.01 to 1.68): 1.5× the realised noise floor 0.9" in cells["q21"]
    assert "best − f: **detected** 0.43 (0.14 to 0.71)" in cells["q21"]
    assert "2 of 5 fits still improving at the hidden sweep's 4000-epoch budget" in cells["q21"]  # whose budget
    # 2.2's row: validation − train at the returned weights, paired by fold (0.3, 0.31, 0.36, 0.45, 0.58)
    assert cells["q22"].startswith("validation − train MSE: **detected** 0.4 (")
    # under the answers table, one line: each effect detected or not, with its number
    line = answers_line(comparison, schemas, run)["text"]
    assert "2.4 hidden 1 − headline **detected**, 5.3 (3.38 to 7.21)" in line  # the row's contrast (review 4)
    assert "2.5 relu − sigmoid not detected, 0.444 (-0.357 to 1.24), detectable 1" in line
    assert "2.1 headline − least squares **detected**, -5.25 (-7.28 to -3.22)" in line
    assert "best test MSE 1.35 (1.01 to 1.68), 1.5× the noise its held-out rows hold (f's MSE there), 0.9" in line
    assert "\n" not in line and "[section](#control)" in line
    assert answers_line(comparison, {"regression": {}}) is None
    (section,) = control_section(comparison, schemas, sweep_specs=run.specs, capped=(1, 5), run=run)
    texts = " ".join(b["text"] for b in section["blocks"] if b["kind"] == "p")
    assert "the realised floor; the best choice is 1.5× it" in texts
    assert "0.9 (95% CI 0.825 to 0.975; per fold 0.85 to 0.95)" in texts
    assert "lr 1.5" not in texts and "hidden 16 at 1.5× its limit" in texts
    assert (
        "one fold makes most of that mean: fold 3 differs by 1.08, the other 4 by -0.007 to 0.033, and its "
        "headline fit was still improving at the 3000-epoch budget" in texts
    )
    assert (
        "These ties are partly budget-limited: 6 of 10 fits still improving at the activation sweep's 3000-epoch "
        "budget." in texts
    )
    # review 4 (c)1/(c)6: an activation at its own best rate against the headline network, not against
    # the best on validation (whose rate may be past the limit), when the compare stage has it
    activation = comparison["control"]["sweeps"]["activation"]
    activation["each_minus_headline"] = [{"point": {"activation": "relu", "lr": 0.03}} | _difference(0.4, -0.3, 1.1)]
    (section,) = control_section(comparison, schemas, sweep_specs=run.specs, capped=(1, 5), run=run)
    table = next(block for block in section["blocks"] if block["kind"] == "table")
    assert table["rows"][-1][1] == "relu (its best rate) − the headline network"
    assert table["rows"][-1][4] == "not detected: 0.4 (-0.3 to 1.1), detectable 1"
    assert (
        "3 of 5 fits still improving at the activation sweep's 3000-epoch budget; 0 of 5 headline fits."
        in section["blocks"][0]["text"]
    )
    # review 4 (c)8: the headline's override named, and what train's own lr gives where a sweep ran it
    settings = headline_settings({"lr": 0.3, "epochs": 3000}, ["epochs", "lr"], "control")
    assert settings == " (epochs 3000, lr 0.3 from `train.overrides.control`)"
    assert (
        "With `train`'s own lr 0.1 instead of the override's (sweep activation's sigmoid at lr 0.1; epochs 3000 as "
        "the override sets), test MSE is 4.03 (0.925 to 7.13), 4 of 5 fits still improving at the 3000-epoch budget; "
        "it − the tuned choice, paired by fold: not detected: 2.68 (-0.41 to 5.76), detectable 4.13." in texts
    )
    assert (
        section["title"]
        == "The control task: effects detected on a generated table (network − least squares, width; not activation)"
    )


def test_without_the_override_is_the_sweep_point_at_trains_own_values():
    """Review 4 (c)8: the control's headline trains at its override's lr; the activation sweep ran
    train's own lr on the control, so the compare stage pairs that point with each sweep's best."""
    from backprop.lab.comparisons import without_override
    from backprop.lab.config import SweepConfig

    train = TrainConfig(
        hidden=[16], activation="sigmoid", lr=0.1, epochs=2000, overrides={"control": {"lr": 0.3, "epochs": 3000}}
    )
    grid = {"activation": ["sigmoid", "relu"], "lr": [0.1, 0.3]}
    rows = pd.DataFrame(
        [
            {"task": "control", "activation": a, "lr": lr, "repeat": 0, "fold": f, "outcome": "learned"}
            | {"test_mse": 2.0 + f + (lr == 0.1) * 1.5, "still_improving": lr == 0.1 and f < 4}
            for a in grid["activation"]
            for lr in grid["lr"]
            for f in range(5)
        ]
    )
    answers = {"activation": {"best": {"activation": "sigmoid", "lr": 0.3}}}
    sweep = SweepConfig.from_params({"activation": {"grid": grid, "tasks": ["control"]}})
    found = without_override(train, sweep, "control", "regression", {"activation": rows}, answers, 0.3)
    assert found["point"] == {"activation": "sigmoid", "lr": 0.1}
    assert found["own"] == {"lr": 0.1} and found["kept"] == {"epochs": 3000}
    assert (found["learned"], found["capped"]) == (5, 4)
    assert found["minus_best"]["activation"]["mean"] == pytest.approx(1.5)
    # a sweep that fixes another budget does not run the task's settings: no such point
    fixed = SweepConfig.from_params({"activation": {"grid": grid, "tasks": ["control"], "fixed": {"epochs": 500}}})
    assert without_override(train, fixed, "control", "regression", {"activation": rows}, answers, 0.3) is None
    # a task without an override has nothing to undo
    both = SweepConfig.from_params({"activation": {"grid": grid, "tasks": ["control", "regression"]}})
    assert without_override(train, both, "regression", "regression", {"activation": rows}, answers, 0.3) is None


def test_the_control_line_gives_the_activation_speed_the_control_detects():
    """Review 6: the control's detected speed effect (epochs to a training-loss level at one rate)
    appears in the line under the answers table."""
    speed = {"reach": "train_loss_of_constant", "level": 0.6, "lr": 0.1, "best": {"activation": "sigmoid"},
             "versus": [{"other": {"activation": "tanh", "lr": 0.1}} | _difference(-13.8, -17.4, -10.2)]}  # fmt: skip
    activation = {"best": {"activation": "sigmoid", "lr": 0.3}, "best_minus_other": [], "reach_at_common_rate": speed}
    comparison = {"control": {"sweeps": {"activation": activation}}}
    schemas = {"control": {"noise_floor": 1.0, "source": "generated", "rows": 1000, "features": list(range(10))}}
    line = answers_line(comparison, schemas)["text"]
    assert "2.5 speed at lr 0.1 (epochs): tanh − sigmoid **detected**, -13.8 (-17.4 to -10.2)" in line
