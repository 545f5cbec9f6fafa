"""Bad input: one clear line naming the file, column or key; exit 2; nothing left behind."""

import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, call_stage, pipeline_env

from backprop.lab.config import ConfigError, load_data, load_sweep, load_train, read_params
from backprop.lab.outputs import STAGING_DIR

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DIABETES_HEADER = "age,sex,bmi,bp,s1,s2,s3,s4,s5,s6,progression\n"
GOOD_ROWS = "".join(
    f"{i},{i % 2},{20 + i},{80 + i},{150 + i},{90 + i},{40 + i},{i % 5},{4 + i / 10},{80 + i},{100 + i}\n"
    for i in range(20)
)


def with_changes(section: str, **changes) -> dict:
    values = yaml.safe_load(yaml.safe_dump(PARAMS))
    values[section].update(changes)
    return values


@pytest.mark.parametrize(
    "loader, section, changes, message",
    [
        (load_train, "train", {"lr": -0.1}, "train.lr must be > 0, got -0.1"),
        (load_train, "train", {"lr": 0}, "train.lr must be > 0, got 0"),
        (
            load_train,
            "train",
            {"activation": "softplus"},
            "train.activation must be one of ['identity', 'leaky_relu', 'relu', 'sigmoid', 'tanh'], got 'softplus'",
        ),
        (load_train, "train", {"hidden": [0]}, "train.hidden sizes must be integers >= 1, got [0]"),
        (load_train, "train", {"hidden": []}, "train.hidden must be a non-empty list of layer sizes, got []"),
        (load_train, "train", {"epochs": 0}, "train.epochs must be >= 1, got 0"),
        (load_train, "train", {"lrr": 0.1}, "train.lrr is not a known key; valid keys:"),
        (load_train, "train", {"epochs": 10**13}, "train.epochs is too large: 10000000000000 epochs would need"),
        (load_train, "train", {"tol": -1e-7}, "train.tol must be >= 0, got -1e-07"),
        (
            load_train,
            "train",
            {"overrides": {"classification": {"lr": -1}}},
            "train.overrides.classification.lr must be > 0, got -1",
        ),
        (
            load_train,
            "train",
            {"overrides": {"ranking": {}}},
            "train.overrides.<task> must be one of ['classification', 'control', 'regression'], got 'ranking'",
        ),
        (load_data, "data", {"folds": 1}, "data.folds must be >= 2, got 1"),
        (
            load_data,
            "data",
            {"extra": {"path": "x.csv", "target": "y"}},
            "data.extra.kind must be one of ['classification', 'regression'], got None",
        ),
        (
            load_data,
            "data",
            {"extra": {"kind": "regression", "target": "y"}},
            "data.extra needs exactly one of path (a CSV file) and generate (a table made from params)",
        ),
        (
            load_data,
            "data",
            {
                "control": {
                    "kind": "regression",
                    "target": "y",
                    "generate": {"name": "friedman2", "rows": 100, "noise": 1},
                }
            },
            "data.control.generate.name must be one of ['friedman1'], got 'friedman2'",
        ),
        (
            load_data,
            "data",
            {
                "control": {
                    "kind": "regression",
                    "target": "y",
                    "generate": {"name": "friedman1", "rows": 100, "noise": -1},
                }
            },
            "data.control.generate.noise must be >= 0, got -1",
        ),
        (
            load_train,
            "train",
            {"patience_share": 1.5},
            "train.patience_share must be < 1, got 1.5",
        ),
        (
            load_train,
            "train",
            {"lr_unit": "relative"},
            "train.lr_unit must be one of ['absolute', 'limit'], got 'relative'",
        ),
        (load_data, "data", {"val_size": 0}, "data.val_size must be > 0, got 0"),
        (load_data, "data", {"repeats": 0.5}, "data.repeats must be an integer, got 0.5"),
        (
            load_data,
            "data",
            {"classification": {"path": "x.csv", "target": "y", "scale_target": True}},
            "data.classification.scale_target must be false: a class label has no scale",
        ),
        (
            load_data,
            "data",
            {"regression": {"path": "x.csv", "target": "y", "accuracy": "r2"}},
            "data.regression.accuracy must be one of ['mape', 'none'], got 'r2'",
        ),
        (
            load_sweep,
            "sweep",
            {"lr": {"grid": {"lr": []}, "tasks": ["regression"]}},
            "sweep.lr.grid.lr must be a non-empty list, got []",
        ),
        (
            load_sweep,
            "sweep",
            {"momentum": {"grid": {"momentum": [0.9]}, "tasks": ["regression"]}},
            "sweep.momentum: 'momentum' is not a sweepable train key",
        ),
        (
            load_sweep,
            "sweep",
            {"lr": {"grid": {"lr": [0.1]}, "tasks": ["ranking"]}},
            "sweep.lr.tasks must be one of ['classification', 'control', 'regression'], got 'ranking'",
        ),
        (
            load_sweep,
            "sweep",
            {"lr": {"grid": {"lr": [0.1]}, "fixed": {"lr": 0.2}, "tasks": ["regression"]}},
            "sweep.lr: 'lr' is both in grid and fixed",
        ),
        (
            load_sweep,
            "sweep",
            {"lr": {"grid": {"lr": [0.1]}, "reach": {"best_accuracy": 0.9}, "tasks": ["regression"]}},
            "sweep.lr.reach.<curve> must be one of ['test', 'train', 'val'], got 'best'",
        ),
    ],
)
def test_bad_params_name_the_key(loader, section, changes, message):
    with pytest.raises(ConfigError) as error:
        loader(with_changes(section, **changes))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_bad_sweep_value_fails_when_params_are_loaded_naming_it():
    """Loading, not iterating: the stage loads params before its first fit."""
    values = [0.1, 0.3, 1.0, -1.0]
    with pytest.raises(ConfigError, match=r"sweep\.lr\.grid\.lr must be > 0, got -1\.0"):
        load_sweep(with_changes("sweep", lr={"grid": {"lr": values}, "tasks": ["regression"]}))
    with pytest.raises(ConfigError, match=r"sweep\.hidden\.grid\.hidden sizes must be integers >= 1"):
        load_sweep(with_changes("sweep", hidden={"grid": {"hidden": [4, 8, 0]}, "tasks": ["classification"]}))
    with pytest.raises(ConfigError, match=r"sweep\.s\.fixed\.start 'saturated' needs a classifier"):
        load_sweep(
            with_changes("sweep", s={"grid": {"lr": [0.1]}, "fixed": {"start": "saturated"}, "tasks": ["regression"]})
        )


def write_params(tmp_path, text: str) -> str:
    (tmp_path / "params.yaml").write_text(text)
    return str(tmp_path / "params.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "data: {}\ntrain:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n",
            "params.yaml: line 5, column 3: key 'lr' repeats the one on line 3",
        ),
        ("train: {}\ntrain: {}\n", "params.yaml: line 2, column 1: key 'train' repeats the one on line 1"),
        ("train:\n  hidden: [16\n  lr: 0.1\n", "params.yaml: line 3, column 5: not valid YAML: expected ',' or ']'"),
        (
            "data: {}\ntrian: {}\n",
            "params.yaml: 'trian' is not a known section; valid sections: ['curves', 'data', 'sweep', 'tracking', 'train']",
        ),
    ],
)
def test_params_file_problems_name_line_column_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        read_params(write_params(tmp_path, text))
    assert message in str(error.value) and "\n" not in str(error.value)


def prepare_folder(tmp_path, csv_text: str | None, task: str = "regression", **data_changes):
    """A scratch folder whose params point ``task`` at our CSV (bad.csv)."""
    params = with_changes("data", **data_changes)
    for name, source in (("regression", "diabetes.csv"), ("classification", "breast_cancer.csv")):
        params["data"][name]["path"] = "bad.csv" if name == task else str(ROOT / "data" / source)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    if csv_text is not None:
        (tmp_path / "bad.csv").write_text(csv_text)
    return tmp_path


def run_prepare(tmp_path, csv_text: str | None, task: str = "regression", **data_changes):
    """The real stage, in a subprocess, in a scratch folder whose params point ``task`` at bad.csv."""
    result = subprocess.run(
        [sys.executable, "-m", "stages.prepare", "--out", "prepared"],
        cwd=prepare_folder(tmp_path, csv_text, task, **data_changes),
        env=pipeline_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
    )
    return result, tmp_path / "prepared"


def prepare_error(tmp_path, monkeypatch, csv_text: str | None, task: str = "regression", **data_changes) -> str:
    """The prepare stage's main() in this process: the message of the error it stops with, which
    ``run_stage`` prints as the one line (``test_a_bad_table_ends_the_stage_with_exit_2_and_one_line``),
    after checking that it left nothing behind."""
    folder = prepare_folder(tmp_path, csv_text, task, **data_changes)
    with pytest.raises(ValueError) as error:  # DataError and ConfigError: what run_stage prints as is
        call_stage("stages.prepare", ["--out", "prepared"], folder, monkeypatch)
    out = folder / "prepared"
    assert not out.exists() or not any(out.rglob("*")), "partial outputs left behind"
    assert not (folder / STAGING_DIR).exists(), "staged outputs left behind"
    message = str(error.value)
    assert message and "\n" not in message, message
    return message


BAD_TABLES = [
    (None, {}, "bad.csv does not exist"),
    ("", {}, "bad.csv is empty"),
    (DIABETES_HEADER, {}, "bad.csv has a header but no rows"),
    (
        DIABETES_HEADER.replace("progression", "outcome") + GOOD_ROWS,
        {},
        "bad.csv: target column 'progression' not found",
    ),
    (
        DIABETES_HEADER + GOOD_ROWS.replace("0,0,20,", "abc,0,20,", 1),
        {},
        "bad.csv: column 'age' is not numeric (row 2: 'abc')",
    ),
    (
        DIABETES_HEADER + GOOD_ROWS + "1,0,nan,80,150,90,40,1,4,80,100\n",
        {},
        "bad.csv: column 'bmi' has 1 NaN/inf value(s), first in row 22",
    ),
    (
        DIABETES_HEADER + GOOD_ROWS + "1,0,inf,80,150,90,40,1,4,80,100\n",
        {},
        "bad.csv: column 'bmi' has 1 NaN/inf value(s)",
    ),
    (
        DIABETES_HEADER + "".join(f"{i},1,20,{80 + i},150,90,40,1,4,80,{100 + i}\n" for i in range(20)),
        {},
        "bad.csv: feature 'sex' is constant (1 in every row)",
    ),
    (
        DIABETES_HEADER + GOOD_ROWS + "1,0,21,80,150,90,40,1,4,80,0\n",
        {},
        "bad.csv: target 'progression' has 1 zero(s) or value(s) below 1e-12 in magnitude (first in row 22: 0), so accuracy 1 - mean(|y - y_hat|/|y|) is undefined; set data.regression.accuracy: none",
    ),
    (
        DIABETES_HEADER + GOOD_ROWS + "1,0,21,80,150,90,40,1,4,80,1e-13\n",
        {},
        "bad.csv: target 'progression' has 1 zero(s) or value(s) below 1e-12 in magnitude (first in row 22: 1e-13)",
    ),
    (
        DIABETES_HEADER.replace("bmi", "age") + GOOD_ROWS,
        {},
        "bad.csv: column name(s) ['age'] appear more than once in the header",
    ),
    (
        "," + DIABETES_HEADER + "".join(f"{i},{row}" for i, row in enumerate(GOOD_ROWS.splitlines(keepends=True))),
        {},
        "bad.csv: column(s) [1] of the header have no name",
    ),
    (
        DIABETES_HEADER + GOOD_ROWS + "1,0,1e200,80,150,90,40,1,4,80,100\n",
        {},
        "bad.csv: column 'bmi' has 1e+200 in row 22: beyond ±1e+150",
    ),
    (
        DIABETES_HEADER + "".join(row.rsplit(",", 1)[0] + ",7\n" for row in GOOD_ROWS.splitlines()),
        {},
        "bad.csv: target 'progression' is constant (7 in every row): there is nothing to learn",
    ),
    (
        DIABETES_HEADER
        + "".join(
            row.rsplit(",", 1)[0] + f",{9 if i == 7 else 5}\n" for i, row in enumerate(GOOD_ROWS.splitlines()[:8])
        ),
        {"folds": 2, "val_size": 0.5},
        "rows' target is constant: too few rows to score it",
    ),
    (
        DIABETES_HEADER + "".join(GOOD_ROWS.splitlines(keepends=True)[:3]),
        {},
        "bad.csv: 3 rows cannot make data.folds=5 folds of 2 rows",
    ),
]


@pytest.mark.parametrize("csv_text, data_changes, message", BAD_TABLES)
def test_prepare_rejects_bad_tables_with_one_clear_line(tmp_path, monkeypatch, csv_text, data_changes, message):
    assert message in prepare_error(tmp_path, monkeypatch, csv_text, **data_changes)


@pytest.mark.e2e
def test_a_bad_table_ends_the_stage_with_exit_2_and_one_line(tmp_path):
    """The real stage in a subprocess: the error above is its whole stderr, exit 2, nothing written."""
    csv_text, _, message = BAD_TABLES[4]  # a value that is not a number
    result, out = run_prepare(tmp_path, csv_text)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip().removeprefix('error: ')}"]
    assert message in result.stderr
    assert not out.exists() or not any(out.rglob("*")), "partial outputs left behind"
    assert not (tmp_path / STAGING_DIR).exists(), "staged outputs left behind"


def test_classification_target_must_be_binary(tmp_path, monkeypatch):
    lines = (ROOT / "data" / "breast_cancer.csv").read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",2"
    message = prepare_error(tmp_path, monkeypatch, "\n".join(lines) + "\n", task="classification")
    assert (
        "bad.csv: target 'malignant' must be binary (0/1) for classification, found values [0.0, 1.0, 2.0]" in message
    )


def test_zero_targets_are_fine_when_accuracy_is_not_requested(tmp_path, monkeypatch):
    rows = GOOD_ROWS + "1,0,21,80,150,90,40,1,4,80,0\n"
    folder = prepare_folder(
        tmp_path,
        DIABETES_HEADER + rows,
        regression={"path": "bad.csv", "target": "progression", "accuracy": "none"},
    )
    call_stage("stages.prepare", ["--out", "prepared"], folder, monkeypatch)
    assert (folder / "prepared" / "regression" / "arrays.npz").is_file()
    assert not (folder / STAGING_DIR).exists(), "a committed stage leaves no staging behind"


@pytest.mark.parametrize("kind, message", [("directory", "is a directory, not a CSV file"), ("fifo", "is a FIFO")])
def test_a_data_path_that_is_not_a_file_says_what_it_is(tmp_path, monkeypatch, kind, message):
    (tmp_path / "bad.csv").mkdir() if kind == "directory" else os.mkfifo(tmp_path / "bad.csv")
    error = prepare_error(tmp_path, monkeypatch, None)
    assert error.startswith(f"bad.csv {message}") and "does not exist" not in error, error
