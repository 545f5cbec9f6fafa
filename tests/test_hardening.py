"""Hardening: bad input, divergence, interruption, concurrency, determinism, offline (runs on a
real tracking server: test_tracking_server.py).

Stage-level tests run the real stage modules in a scratch folder (params.yaml + prepared data),
so the MLflow store is that folder's own ``mlflow.db``.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import (
    ROOT,
    TASK_NAMES,
    TINY,
    call_stage,
    pipeline_env,
    run,
    runs_in,
    scratch,
    sigint_as_in_a_terminal,
    stage,
)
from mlflow import MlflowClient

from backprop.lab.config import ConfigError
from backprop.lab.outputs import STAGING_DIR

TRAIN = [
    "-m",
    "stages.train",
    "--prepared",
    "data/prepared",
    "--models",
    "models",
    "--metrics",
    "metrics",
    "--plots",
    "plots",
    "--runs",
    "runs/train.json",
]
OUTPUTS = ("models", "metrics", "plots", "runs")


# ---- 1. bad input --------------------------------------------------------------------------------


BAD_TRAIN_PARAMS = [
    ({"activation": "softplus"}, "train.activation must be one of"),
    ({"lr": -0.1}, "train.lr must be > 0, got -0.1"),
    ({"lr": 0}, "train.lr must be > 0, got 0"),
    ({"hidden": [0]}, "train.hidden sizes must be integers >= 1, got [0]"),
    ({"hidden": []}, "train.hidden must be a non-empty list of layer sizes"),
    ({"epochs": 0}, "train.epochs must be >= 1, got 0"),
    ({"lrr": 0.1}, "train.lrr is not a known key"),
]


@pytest.mark.parametrize("changes, message", BAD_TRAIN_PARAMS)
def test_bad_train_params_stop_the_stage_before_anything_is_written(tmp_path, monkeypatch, changes, message):
    """The train stage's main() in this process: each bad key is one line naming it, before the
    data is read (there is none here) and before any output or store exists."""
    folder = scratch(tmp_path, tmp_path / "no-prepared-data", **changes)
    with pytest.raises(ConfigError) as error:
        call_stage("stages.train", TRAIN[2:], folder, monkeypatch)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not any((folder / name).exists() for name in OUTPUTS)
    assert not (folder / STAGING_DIR).exists() and not (folder / "mlflow.db").exists()


@pytest.mark.e2e
def test_bad_train_params_fail_cleanly(tmp_path, prepared):
    """The real stage: exit 2, one line on stderr, no outputs, no run left RUNNING."""
    changes, message = BAD_TRAIN_PARAMS[1]
    folder = scratch(tmp_path, prepared, **changes)
    result = stage(folder, TRAIN)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr
    assert not any((folder / name).exists() for name in OUTPUTS)
    assert all(r.info.status != "RUNNING" for r in runs_in(folder))


@pytest.mark.e2e
def test_a_failure_inside_a_run_marks_it_failed(tmp_path, prepared):
    """Prepared data that is missing a split fails mid-stage: the run is FAILED, not RUNNING."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for task in ("regression", "classification"):
        (broken / task).mkdir()
        (broken / task / "schema.json").write_text((prepared / task / "schema.json").read_text())
    (broken / "regression" / "arrays.npz").symlink_to(prepared / "regression" / "arrays.npz")
    (tmp_path / "work").mkdir()
    folder = scratch(tmp_path / "work", broken)
    result = stage(folder, TRAIN)
    assert result.returncode == 2 and "classification/arrays.npz does not exist" in result.stderr
    assert not any((folder / name).exists() for name in OUTPUTS)
    statuses = [r.info.status for r in runs_in(folder)]
    assert "RUNNING" not in statuses


# ---- 2. divergence -------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_diverging_run_is_recorded_and_the_stage_succeeds(tmp_path, prepared):
    folder = scratch(tmp_path, prepared, lr=1e5)
    result = stage(folder, TRAIN)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((folder / "metrics" / "regression-scores.json").read_text())
    assert metrics["outcomes"]["diverged"] == len(metrics["folds"])
    assert all(fold["diverged_epoch"] is not None and fold["test_mse"] is None for fold in metrics["folds"])
    assert metrics["summary"]["test_mse"]["mean"] is None  # no trained result to average
    (regression_run,) = [
        r for r in runs_in(folder) if r.data.tags["task"] == "regression" and "fold" not in r.data.tags
    ]
    assert regression_run.info.status == "FINISHED" and regression_run.data.tags["outcome"] == "diverged"


# ---- 3. interruption -----------------------------------------------------------------------------


def staged(folder: Path, name: str) -> bool:
    """Whether a stage running in ``folder`` has staged an output called ``name`` yet."""
    return any((folder / STAGING_DIR).rglob(name))


def only_classification_left(folder: Path, folds: int) -> bool:
    """Regression's outputs are staged and each of its folds' runs has ended: the stage does
    nothing but train classification."""
    finished = [r for r in runs_in(folder) if r.data.tags.get("task") == "regression" and "fold" in r.data.tags]
    return staged(folder, "history.csv") and [r.info.status for r in finished] == ["FINISHED"] * folds


# Regression trains in a moment, so its outputs are staged, while classification trains on.
ONE_TASK_RUNS_ON = {"overrides": {"classification": {"lr": 0.3, "epochs": 10_000_000}}}


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_stage_ends_its_run_killed_and_writes_nothing(tmp_path, prepared, signum):
    folder = scratch(tmp_path, prepared, patience=0, **ONE_TASK_RUNS_ON)
    process = subprocess.Popen(
        [sys.executable, *TRAIN],
        cwd=folder,
        env=pipeline_env(PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_in_a_terminal,
    )
    try:
        folds = json.loads((prepared / "regression" / "schema.json").read_text())["folds"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not only_classification_left(folder, folds):
            time.sleep(0.2)
        assert only_classification_left(folder, folds), "regression's outputs were never staged"
        while time.monotonic() < deadline and not set(TASK_NAMES) <= {r.data.tags.get("task") for r in runs_in(folder)}:
            time.sleep(0.2)  # the stage opens one run per task, one after another
        assert any(r.info.status == "RUNNING" for r in runs_in(folder)), "classification is not training"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()  # a stage that ignored the signal must not outlive the test
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    # Every task's run stays open until the stage ends: each ends KILLED; the folds that trained, FINISHED.
    runs = runs_in(folder)
    assert sorted(r.info.status for r in runs if "fold" not in r.data.tags) == ["KILLED"] * len(TASK_NAMES)
    assert {r.data.tags["task"] for r in runs if "fold" in r.data.tags} <= set(TASK_NAMES) - {"classification"}
    assert "RUNNING" not in {r.info.status for r in runs}
    assert not any((folder / name).exists() for name in OUTPUTS)
    assert not (folder / STAGING_DIR).exists(), "the staged outputs were left behind"


# ---- 4. a new SQLite store, first used by several processes at once -----------------------------

FIRST_USE = textwrap.dedent(
    """
    import sys, time
    from backprop.lab.tracking import Tracker
    start = float(sys.argv[1])
    while time.time() < start:
        pass
    tracker = Tracker("backprop-lab")
    with tracker.run(f"worker-{sys.argv[2]}", {"worker": sys.argv[2]}) as run_id:
        tracker.log(run_id, params={"worker": sys.argv[2]}, metrics=[("m", float(i), i) for i in range(500)])
    """
)


@pytest.mark.e2e
def test_a_new_store_survives_concurrent_first_use(tmp_path):
    start = time.time() + 4  # every worker is imported and waiting by then
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_USE, str(start), str(i)],
            cwd=tmp_path,
            env=pipeline_env(PYTHONPATH=str(ROOT)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr[-2000:]
    runs = runs_in(tmp_path)
    assert sorted(r.data.tags["worker"] for r in runs) == ["0", "1", "2", "3"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for r in runs:
        assert r.info.status == "FINISHED"
        assert len(client.get_metric_history(r.info.run_id, "m")) == 500
    integrity = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sqlite3; print(sqlite3.connect({str(tmp_path / 'mlflow.db')!r})"
            ".execute('pragma integrity_check').fetchone()[0])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert integrity.stdout.strip() == "ok"


# ---- 5. determinism and 3. the next dvc repro -----------------------------------------------------


def one_ulp_away(prepared: Path, folder: Path) -> Path:
    """A copy of the prepared data with every feature value moved by one ulp: what another CPU's
    arithmetic does to the standardised inputs."""
    for task in TASK_NAMES:
        (folder / task).mkdir(parents=True)
        with np.load(prepared / task / "arrays.npz") as arrays:
            moved = {k: np.nextafter(v, np.inf) if k.startswith("X_") else v for k, v in arrays.items()}
        np.savez(folder / task / "arrays.npz", **moved)
        (folder / task / "schema.json").write_text((prepared / task / "schema.json").read_text())
    return folder


@pytest.mark.e2e
def test_one_ulp_of_input_noise_leaves_the_tracked_outputs_byte_identical(tmp_path, prepared):
    # Early stopping on: the best epoch is where noise could move a result.
    outputs = {}
    for name, data in (("as is", prepared), ("moved", one_ulp_away(prepared, tmp_path / "moved-data"))):
        (tmp_path / name.replace(" ", "-")).mkdir()
        folder = scratch(tmp_path / name.replace(" ", "-"), data, epochs=600, patience=30)
        result = stage(folder, TRAIN)
        assert result.returncode == 0, result.stderr
        tracked = sorted(folder.glob("metrics/*.json")) + sorted(folder.glob("plots/*/history.csv"))
        outputs[name] = {path.relative_to(folder): path.read_bytes() for path in tracked}
    assert (
        len(outputs["as is"]) == 3 * len(TASK_NAMES) and outputs["as is"] == outputs["moved"]
    )  # headline, scores, curves


@pytest.mark.e2e
def test_after_an_interrupted_dvc_repro_the_next_one_completes(tiny_copy):
    repo = tiny_copy
    params_path = repo / "params.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    params["train"]["overrides"]["classification"]["epochs"] = 10_000_000
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    process = subprocess.Popen(
        ["dvc", "repro", "train"],
        cwd=repo,
        env=pipeline_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=sigint_as_in_a_terminal,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not only_classification_left(repo, TINY["data"]["folds"]):
            time.sleep(0.3)
        assert only_classification_left(repo, TINY["data"]["folds"]), "regression's outputs were never staged"
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole foreground group
        process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # what ignored Ctrl-C must not outlive the test
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        params_path.write_text(original)
    assert process.returncode != 0
    assert not any(r.info.status == "RUNNING" for r in runs_in(repo))
    assert "KILLED" in {r.info.status for r in runs_in(repo)}
    assert not (repo / STAGING_DIR).exists(), "the staged outputs were left behind"
    run(["dvc", "repro"], repo)
    assert json.loads(run(["dvc", "status", "--json"], repo).stdout) == {}
    assert (
        json.loads((repo / "metrics" / "regression-scores.json").read_text())["folds"][0]["epochs_run"]
        == TINY["train"]["epochs"]
    )


# ---- 6. offline ----------------------------------------------------------------------------------

AUDITED = textwrap.dedent(
    """
    import runpy, socket, sys
    attempts = []
    def hook(event, args):
        if event == "socket.connect" and args[0].family == socket.AF_UNIX:
            return  # a local pipe between processes, not the network
        if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "urllib.Request"):
            attempts.append(f"{event} {args!r}")
    sys.addaudithook(hook)
    sys.argv = ["stages.train", *sys.argv[1:]]
    try:
        runpy.run_module("stages.train", run_name="__main__")
    finally:
        with open("network-attempts.txt", "w") as out:
            out.write("\\n".join(attempts))
    """
)


@pytest.mark.e2e
def test_a_training_run_makes_no_network_connection(tmp_path, prepared):
    folder = scratch(tmp_path, prepared)
    # One worker: every fit runs in the audited process.
    env = {
        k: v
        for k, v in pipeline_env(PYTHONPATH=str(ROOT), BACKPROP_WORKERS="1").items()
        if k != "MLFLOW_DISABLE_TELEMETRY"
    }
    result = subprocess.run(
        [sys.executable, "-c", AUDITED, *TRAIN[2:]], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (folder / "network-attempts.txt").read_text() == ""
    assert (folder / "metrics" / "regression.json").is_file()


# ---- 7. safe artifacts -----------------------------------------------------------------------------


def test_the_ui_binds_to_loopback_only():
    recipe = subprocess.run(["make", "-n", "ui"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    command = next(line for line in recipe.splitlines() if "mlflow ui" in line)
    assert "--host 127.0.0.1" in command and "0.0.0.0" not in command


def test_weights_are_loaded_without_pickle():
    source = (ROOT / "backprop" / "mlp.py").read_text()
    assert "np.load(path, allow_pickle=False)" in source
    assert "allow_pickle=True" not in "".join(p.read_text() for p in (ROOT / "backprop").rglob("*.py"))
