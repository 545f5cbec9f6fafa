"""End to end: `dvc repro` on a fresh copy with tiny params, then what a user looks at."""

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY, run
from mlflow import MlflowClient

from backprop.lab.outputs import STAGING_DIR
from backprop.lab.protocol import OUTCOMES

pytestmark = pytest.mark.e2e

TASKS = ("regression", "classification", "control")
KIND = {"regression": "regression", "classification": "classification", "control": "regression"}
SWEEPS = ("lr", "activation", "hidden", "capacity", "loss", "saturated")
FOLDS = TINY["data"]["folds"]


def fits_of(spec: dict) -> int:
    """Fits of a tiny sweep: every grid point on every fold of every task."""
    return int(np.prod([len(values) for values in spec["grid"].values()])) * len(spec["tasks"]) * FOLDS


def store(repo: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")


def all_runs(client: MlflowClient):
    experiment = client.get_experiment_by_name("backprop-lab")
    return client.search_runs([experiment.experiment_id], max_results=5000)


def latest_run(client: MlflowClient, run_filter: str):
    """The latest run a versioned runs file's filter string finds."""
    experiment = client.get_experiment_by_name("backprop-lab")
    found = client.search_runs(
        [experiment.experiment_id], filter_string=run_filter, order_by=["attributes.start_time DESC"], max_results=1
    )
    assert found, run_filter
    return found[0]


def test_versioned_files_name_runs_by_deterministic_filters(tiny_repo):
    """runs/*.json hold no run or model id, only filter strings that find the runs in the store."""
    client = store(tiny_repo)
    for path in (tiny_repo / "runs").glob("*.json"):
        text = path.read_text()
        assert not re.search(r"\b[0-9a-f]{32}\b|\bm-[0-9a-f]{32}\b", text), path.name
    train = json.loads((tiny_repo / "runs" / "train.json").read_text())
    assert train["experiment"] == "backprop-lab" and set(train["models"]) == set(TASKS)
    for task, run_filter in train["runs"].items():
        found = latest_run(client, run_filter)
        assert found.data.tags["task"] == task and found.data.tags["stage"] == "train"
        assert found.data.tags["stage_digest"] in run_filter
    sweep = json.loads((tiny_repo / "runs" / "sweep_lr.json").read_text())
    parent = latest_run(client, sweep["parent"])
    point = latest_run(client, sweep["points"][0]["run"])
    child = latest_run(client, sweep["children"][0]["run"])
    # The run's name carries its pipeline (the branch here); the versioned file only what is stable.
    assert parent.info.run_name.startswith("sweep-lr (main ") and parent.data.tags["run_key"] == "sweep-lr"
    assert point.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["mlflow.parentRunId"] == point.info.run_id


def test_repro_writes_every_declared_output(tiny_repo):
    for task in TASKS:
        assert (tiny_repo / "data/prepared" / task / "arrays.npz").is_file()
        schema = json.loads((tiny_repo / "data/prepared" / task / "schema.json").read_text())
        assert schema["folds"] == FOLDS and sum(schema["fold_rows"]["test"]) == schema["rows"]
        assert (tiny_repo / "models" / task / "MLmodel").is_file()
        metrics = json.loads((tiny_repo / "metrics" / f"{task}-scores.json").read_text())
        assert [(f["repeat"], f["fold"]) for f in metrics["folds"]] == [(0, fold) for fold in range(FOLDS)]
        expected = {"regression": {"mse", "r2", "accuracy"}, "control": {"mse", "r2"}}.get(
            task, {"log_loss", "accuracy"}
        )
        for split in ("train", "val", "test"):
            assert {key.split("_", 1)[1] for key in metrics["summary"] if key.startswith(split)} == expected
            assert all(np.isfinite(metrics["summary"][f"{split}_{m}"]["ci_low"]) for m in expected)
        assert all(f["epochs_run"] == TINY["train"]["epochs"] for f in metrics["folds"])
        assert metrics["outcomes"]["diverged"] == 0
        history = pd.read_csv(tiny_repo / "plots" / task / "history.csv")
        loss = "mse" if KIND[task] == "regression" else "log_loss"
        accuracy = {"test_accuracy"} if "accuracy" in expected else set()
        assert {"epoch", f"train_{loss}", f"val_{loss}", f"test_{loss}", *accuracy} <= set(history.columns)
        assert len(history) == TINY["train"]["epochs"]
    for name in SWEEPS:
        results = pd.read_csv(tiny_repo / "sweeps" / name / "results.csv")
        spec = TINY["sweep"][name]
        assert len(results) == fits_of(spec)
        # the data contract: varied keys named as in train, the fold, the outcome, every split's scores
        assert {*spec["grid"], "task", "repeat", "fold", "seed", "epochs_run", "best_epoch", "outcome"} <= set(results)
        assert {"train_accuracy", "val_accuracy", "test_accuracy"} <= set(results)
        summary = pd.read_csv(tiny_repo / "sweeps" / name / "summary.csv")
        assert len(summary) == fits_of(spec) // FOLDS
        assert {"fits", *OUTCOMES, "lr_limit", "lr_limit_closed_form"} <= set(summary)
        loss = "mse" if all(KIND[task] == "regression" for task in spec["tasks"]) else "log_loss"
        assert {f"val_{loss}_ci_low", f"test_{loss}_ci_high", f"test_{loss}_mean", f"val_{loss}_std"} <= set(summary)
        assert (summary[list(OUTCOMES)].sum(axis=1) == summary["fits"]).all()
        assert (tiny_repo / "sweeps" / name / "curves.csv").is_file()
    figures = sorted(p.name for p in (tiny_repo / "report" / "figures").glob("*.png"))
    assert figures == sorted(
        ["history_regression.png", "history_classification.png", "history_control.png", "sweep_lr.png",
         "sweep_activation_regression.png", "sweep_activation_classification.png", "sweep_hidden_regression.png",
         "sweep_hidden_control.png", "sweep_capacity.png",
         "sweep_loss.png", "sweep_saturated.png", "sweep_lr_curves.png"]
    )  # fmt: skip
    comparison = json.loads((tiny_repo / "metrics" / "comparison.json").read_text())
    for task in TASKS:
        for versus in ("linear", "sklearn", "constant"):
            assert set(comparison[task][f"network_vs_{versus}"]) == {
                "metric",
                "mean",
                "ci_low",
                "ci_high",
                "wins",
                "n",
                "mde",
            }
    # Outputs are staged under .backprop-staging/<pid>/ at the root and moved into place; a
    # committed stage removes its folder, and the root one when it was the last.
    assert not (tiny_repo / STAGING_DIR).exists(), "staged outputs left behind"
    outputs = ("data/prepared", "models", "metrics", "plots", "sweeps", "report", "runs")
    hidden = [p for name in outputs for p in (tiny_repo / name).rglob(".*") if p.name != ".gitignore"]  # DVC's
    assert not hidden, "hidden files among the outputs"


def test_a_diverging_learning_rate_is_a_result(tiny_repo):
    results = pd.read_csv(tiny_repo / "sweeps" / "lr" / "results.csv")
    diverged = results[results["lr"] == 100000.0]
    assert (diverged["outcome"] == "diverged").all() and diverged["test_mse"].isna().all()
    assert (results[results["lr"] == 0.01]["outcome"] != "diverged").all()


def test_every_run_is_in_the_project_store(tiny_repo):
    client = store(tiny_repo)
    experiment = client.get_experiment_by_name("backprop-lab")
    assert experiment.artifact_location == (tiny_repo / "mlartifacts").as_uri()
    runs = all_runs(client)
    assert runs and {r.info.status for r in runs} == {"FINISHED"}

    train_runs = {r.data.tags["task"]: r for r in runs if r.data.tags.get("stage") == "train"}
    assert set(train_runs) == set(TASKS)
    for task, train_run in train_runs.items():
        loss = "mse" if KIND[task] == "regression" else "log_loss"
        task_metrics = ["mse", "r2", "accuracy"] if KIND[task] == "regression" else ["log_loss", "accuracy"]
        if task == "control":  # its accuracy is none: nothing to log
            task_metrics.remove("accuracy")
        curve = client.get_metric_history(train_run.info.run_id, f"train_{loss}")
        # The thinned curve ends at the last trained epoch; the model's scores have keys of their own.
        assert len(curve) == TINY["tracking"]["max_logged_steps"]["train"]  # the shipped fold's curve
        assert sorted(m.step for m in curve)[-1] == TINY["train"]["epochs"] - 1
        # One name per meaning: the curves, then the means over folds; no second "test loss".
        assert {f"{split}_{loss}_mean" for split in ("val", "test")} <= set(train_run.data.metrics)
        assert not [key for key in train_run.data.metrics if key.startswith(("model_", "cv_")) or "_ci_" in key]
        assert " to " in train_run.data.tags[f"test_{loss}_interval"]
        assert train_run.data.params["train.lr"] and train_run.data.params["train.hidden"] == "[4]"
        assert train_run.data.params["train.loss"] == loss
        (dataset,) = train_run.inputs.dataset_inputs
        schema = json.loads((tiny_repo / "data/prepared" / task / "schema.json").read_text())
        if task != "control":  # a generated table's digest is that of the CSV it would be (test_control.py)
            source = "data/diabetes.csv" if task == "regression" else "data/breast_cancer.csv"
            assert schema["sha256"] == hashlib.sha256((tiny_repo / source).read_bytes()).hexdigest()
        assert dataset.dataset.digest == schema["sha256"][:20]
        assert train_run.data.tags["mlflow.source.git.commit"] != "unknown" and "git_commit" not in train_run.data.tags
        assert re.fullmatch(r"[0-9a-f]{16}", train_run.data.tags["stage_digest"])
        artifacts = Path(train_run.info.artifact_uri.removeprefix("file://"))
        for name in ("history.csv", f"figures/history_{task}.png"):
            assert (artifacts / name).is_file(), name
        (output,) = train_run.outputs.model_outputs  # the LoggedModel, linked to its run
        logged = client.get_logged_model(output.model_id)
        assert logged.source_run_id == train_run.info.run_id and logged.status == "READY"
        assert {m.key for m in logged.metrics} == {
            f"{split}_{m}_mean" for split in ("val", "test") for m in task_metrics
        }
        assert Path(logged.artifact_location.removeprefix("file://"), "MLmodel").is_file()

    # One run groups the whole `dvc repro`: every stage's own runs nest under it.
    (pipeline,) = [r for r in runs if "backprop.pipeline" in r.data.tags]
    assert pipeline.info.run_name.startswith("dvc repro ")
    stage_runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == pipeline.info.run_id]
    assert {r.data.tags["stage"] for r in stage_runs} == {"train", "baselines"} | {f"sweep@{name}" for name in SWEEPS}
    for train_run in train_runs.values():  # one child run per fold
        folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == train_run.info.run_id]
        assert sorted(int(r.data.tags["fold"]) for r in folds) == list(range(FOLDS))
    parents = {r.data.tags["sweep"]: r for r in stage_runs if "sweep" in r.data.tags}
    assert set(parents) == set(SWEEPS)
    lr_points = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents["lr"].info.run_id]
    assert len(lr_points) == fits_of(TINY["sweep"]["lr"]) // FOLDS
    point_ids = {r.info.run_id for r in lr_points}
    lr_children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in point_ids]
    assert len(lr_children) == fits_of(TINY["sweep"]["lr"])
    for child in lr_children:
        assert child.info.status == "FINISHED"
        assert (child.data.tags["outcome"] == "diverged") == (child.data.params["train.lr"] == "100000.0")
        if child.data.tags["outcome"] == "diverged":  # the epoch it blew up at, not its billions
            assert set(child.data.metrics) == {"diverged_epoch"}
            continue
        curve = client.get_metric_history(child.info.run_id, "train_mse")
        assert 2 <= len(curve) <= TINY["tracking"]["max_logged_steps"]["sweep"]
        assert all(np.isfinite(m.value) and abs(m.value) < 1e100 for m in curve)
    parent_artifacts = Path(parents["lr"].info.artifact_uri.removeprefix("file://"))
    assert (parent_artifacts / "results.csv").is_file() and (parent_artifacts / "figures/sweep_lr.png").is_file()


def test_the_logged_model_loads_and_predicts_offline(tiny_repo, tmp_path):
    import mlflow.pyfunc

    from backprop import MLP

    run_filter = json.loads((tiny_repo / "runs" / "train.json").read_text())["runs"]["regression"]
    (output,) = latest_run(store(tiny_repo), run_filter).outputs.model_outputs
    model_id = output.model_id
    mlflow_uri = f"sqlite:///{tiny_repo / 'mlflow.db'}"
    mlflow.set_tracking_uri(mlflow_uri)
    try:
        # Into a folder of its own: a local store's model loads in place, and MLflow writes beside it.
        model = mlflow.pyfunc.load_model(f"models:/{model_id}", dst_path=str(tmp_path))
    finally:
        mlflow.set_tracking_uri(None)
    raw = pd.read_csv(tiny_repo / "data" / "diabetes.csv").drop(columns="progression").head(5).astype(float)
    predicted = np.asarray(model.predict(raw))
    artifacts = tiny_repo / "models" / "regression" / "artifacts"
    with np.load(artifacts / "scaler.npz") as scaler:
        expected = MLP.load(artifacts / "weights.npz").predict((raw.to_numpy() - scaler["mean"]) / scaler["std"])
    assert predicted.shape == (5,)
    np.testing.assert_allclose(predicted, expected)
    assert 25 < predicted.mean() < 346  # in the target's units: the standardisation is undone


def test_dvc_metrics_exp_show_and_plots(tiny_repo, tmp_path):
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], tiny_repo).stdout)
    (workspace,) = metrics.values()
    # Only the two headline files are metrics; the baselines table and every split's scores are not.
    assert set(workspace["data"]) == {"metrics/regression.json", "metrics/classification.json", "metrics/control.json"}
    regression = workspace["data"]["metrics/regression.json"]["data"]["regression"]
    headline = json.loads((tiny_repo / "metrics" / "regression.json").read_text())["regression"]
    assert set(headline) == {
        "test_mse", "test_r2", "test_accuracy", "test_mse_ci_low", "test_mse_ci_high", "val_mse", "learned_folds", "folds"
    }  # fmt: skip
    assert regression["test_mse"] == headline["test_mse"]
    assert all(isinstance(value, int | float) for value in regression.values() if value is not None)
    header = run(["dvc", "exp", "show", "--csv"], tiny_repo).stdout.splitlines()[0].split(",")
    assert {"regression.test_mse", "regression.test_r2", "classification.test_accuracy"} <= set(header)
    assert {"train.lr", "train.hidden", "train.activation"} <= set(header)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], tiny_repo).stdout)
    workspace_row = next(row for row in shown if row["rev"] == "workspace")
    files = workspace_row["data"]["metrics"]
    # Each file keys its numbers by its task, so no column needs its file's name to be distinct.
    assert {name: list(data["data"]) for name, data in files.items()} == {
        "metrics/regression.json": ["regression"],
        "metrics/classification.json": ["classification"],
        "metrics/control.json": ["control"],
    }
    headline = files["metrics/classification.json"]["data"]["classification"]
    assert {"test_log_loss", "test_accuracy", "val_log_loss", "learned_folds"} <= set(headline)
    run(["dvc", "plots", "show", "-o", str(tmp_path / "dvc_plots")], tiny_repo)
    assert (tmp_path / "dvc_plots" / "index.html").is_file()


def test_changing_one_sweep_reruns_only_that_sweep_and_what_follows(tiny_copy):
    assert json.loads(run(["dvc", "status", "--json"], tiny_copy).stdout) == {}  # the copy is up to date
    params_path = tiny_copy / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["sweep"]["hidden"]["grid"]["hidden"] = [2, 8]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run(["dvc", "status", "--json"], tiny_copy).stdout)
    assert "sweep@hidden" in status
    assert set(status) <= {"settings", "sweep@hidden", "compare", "plot", "report"}


def wait_for_queue(repo: Path, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], repo).stdout
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(3)
    raise AssertionError(f"queue did not drain in {timeout}s:\n{status}")


def test_queued_experiments_land_in_the_one_project_store(tiny_copy):
    """Two experiments on the train stage, queued the DVC way and drained by two workers: every
    run, curve and artifact ends up in the project's store, none in DVC's temporary copies of the
    repo; they add model versions but never make one the champion."""
    repo = tiny_copy
    rates = {"0.02", "0.03"}
    run(["dvc", "exp", "run", "--queue", "-S", "train.lr=0.02,0.03", "train"], repo)
    run(["dvc", "queue", "start", "-j", "2"], repo)
    status = wait_for_queue(repo)
    assert status.count("Success") == len(rates), status

    client = store(repo)
    runs = [r for r in all_runs(client) if r.data.tags.get("dvc_exp")]
    assert {r.info.status for r in runs} == {"FINISHED"}
    train_runs = [r for r in runs if r.data.tags.get("stage") == "train" and "fold" not in r.data.tags]
    assert len(train_runs) == len(TASKS) * len(rates) and len({r.data.tags["dvc_exp"] for r in train_runs}) == len(
        rates
    )
    regression_runs = [r for r in train_runs if r.data.tags["task"] == "regression"]
    assert {r.data.params["train.lr"] for r in regression_runs} == rates
    for train_run in train_runs:
        artifacts = Path(train_run.info.artifact_uri.removeprefix("file://"))
        assert artifacts.is_relative_to(repo / "mlartifacts")
        assert (artifacts / "history.csv").is_file() and train_run.outputs.model_outputs
        loss = "mse" if KIND[train_run.data.tags["task"]] == "regression" else "log_loss"
        assert len(client.get_metric_history(train_run.info.run_id, f"train_{loss}")) > 2
        folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == train_run.info.run_id]
        assert len(folds) == FOLDS  # the fold runs nest under their task's run in the same store
    pipelines = [r for r in runs if "backprop.pipeline" in r.data.tags]
    assert sorted(r.data.tags["dvc_exp"] for r in pipelines) == sorted({r.data.tags["dvc_exp"] for r in train_runs})
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db")), "a store inside DVC's temporary copies"
    for name in json.loads((repo / "runs" / "train.json").read_text())["models"].values():
        assert len(client.search_model_versions(f"name = '{name}'")) == len(rates)
        assert client.get_registered_model(name).aliases == {}, "an experiment made its model the champion"
    shown = run(["dvc", "exp", "show", "--csv"], repo).stdout.splitlines()
    experiments = [line for line in shown if ",branch_" in line]
    assert len(experiments) == len(rates)
    first, second = (line.split(",")[0] for line in experiments[:2])
    run(["dvc", "plots", "diff", first, second, "-o", "plots_diff"], repo)
    page = (repo / "plots_diff" / "index.html").read_text()
    assert first in page and second in page


def test_a_temp_experiment_lands_in_the_project_store(tiny_copy):
    run(["dvc", "exp", "run", "--temp", "-S", "train.lr=0.07", "train"], tiny_copy)
    runs = [
        r for r in all_runs(store(tiny_copy)) if r.data.params.get("train.lr") == "0.07" and "fold" not in r.data.tags
    ]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and runs[0].data.tags.get("dvc_exp")
    artifacts = Path(runs[0].info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_relative_to(tiny_copy / "mlartifacts") and runs[0].outputs.model_outputs
    assert not list((tiny_copy / ".dvc" / "tmp").rglob("mlflow.db")), "a store inside DVC's temporary copy"
    assert json.loads(run(["dvc", "status", "--json"], tiny_copy).stdout) == {}
