"""The whole tiny pipeline against a real MLflow tracking server (started here on 127.0.0.1, once for
the module, stopped by its PID): every run lands FINISHED, every value goes over REST as the API
requires, sweeps log a run per grid point that the README's query ranks, the experiment opens on
runs, and a registry version says which experiment made it. A second server, behind MLflow's
basic-auth app, takes a sweep with the user's credentials."""

import json
import math
import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from conftest import ROOT, TASK_NAMES, TINY, copy_of, copy_repo, mlflow_server, run
from mlflow import MlflowClient

from backprop.lab.protocol import OUTCOMES
from backprop.lab.run_metrics import cv_metrics
from backprop.lab.sweeps import best_points, point_ranks
from backprop.lab.tracking import KIND, KIND_TAG, Tracker

pytestmark = pytest.mark.e2e

FOLDS = TINY["data"]["folds"]
LOSS = {"regression": "mse", "classification": "log_loss", "control": "mse"}
ADMIN_PASSWORD = "a-long-test-password-42"
SWEEPS = [name for name, spec in TINY["sweep"].items() if isinstance(spec, dict)]


def readme_query() -> tuple[str, list[str]]:
    """The filter string and order of the README's "find the best learning rate" query."""
    section = (ROOT / "README.md").read_text().split("## MLflow", 1)[1].split("\n## ", 1)[0]
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", section, re.S) if "rank_val_mse" in block]
    filter_string = re.search(r'filter_string="([^"]*)"', code).group(1)
    order_by = re.findall(r'"([^"]*)"', re.search(r"order_by=\[([^\]]*)\]", code).group(1))
    return filter_string, order_by


@pytest.fixture(scope="module")
def server_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def server(server_folder, empty_store):
    with mlflow_server(server_folder, empty_store) as (url, _):
        yield url


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory, empty_store):
    """A second real server, behind MLflow's basic-auth app (user admin). Not the one the whole
    repro logs to: the app checks a salted password hash on every request, tens of ms of CPU each."""
    with mlflow_server(tmp_path_factory.mktemp("guarded"), empty_store, admin_password=ADMIN_PASSWORD) as (url, _):
        yield url


OUTPUTS = ("data/prepared", "settings", "models", "runs", "metrics", "plots", "sweeps", "report")


def outputs_of(repo: Path) -> dict[str, bytes]:
    return {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for name in OUTPUTS
        for p in (repo / name).rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def served(server, tmp_path_factory):
    """The tiny pipeline reproduced whole in a fresh copy (every stage, on another path than
    ``tiny_repo``) with every run sent to the server. Its own repro, not a copy of ``tiny_repo``
    forced again: the same stages run, and this module need not wait for the session's repro,
    which the other xdist worker makes meanwhile."""
    repo = copy_repo(tmp_path_factory.mktemp("served"), TINY)
    run(["dvc", "repro"], repo, MLFLOW_TRACKING_URI=server)
    return repo, MlflowClient(server)


def test_a_repro_against_a_server_changes_no_byte_but_where_the_runs_went(served, tiny_repo):
    """Every output, cached or tracked, is byte-identical to the repro with the project's own
    store (``tiny_repo``); the runs files and the report's provenance name the store the runs went
    to, and that alone differs."""
    repo, client = served
    before, after = outputs_of(tiny_repo), outputs_of(repo)
    assert len(before) > 100 and before.keys() == after.keys()
    moved = sorted(path for path in before if before[path] != after[path])
    assert moved and all(path.startswith(("runs/", "report/report.")) for path in moved), moved
    for path in moved:
        # The report's own digest covers its inputs, the runs files among them.
        then, now = (
            [line for line in text.splitlines() if b"own digest" not in line]
            for text in (before[path], after[path].replace(client.tracking_uri.encode(), b"sqlite:///mlflow.db"))
        )
        assert now == then, (path, [(a[:200], b[:200]) for a, b in zip(then, now, strict=False) if a != b][:3])


def all_runs(client: MlflowClient):
    experiment = client.get_experiment_by_name("backprop-lab")
    return client.search_runs([experiment.experiment_id], max_results=5000)


def test_every_run_of_a_whole_repro_lands_finished_on_the_server(served):
    repo, client = served
    runs = all_runs(client)
    assert runs and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags.get("stage") for r in runs} >= {"train", "baselines"} | {f"sweep@{name}" for name in SWEEPS}
    assert not (repo / "mlflow.db").exists(), "a run went to the project's own store"
    # Every run's name carries its pipeline: the branch and the pipeline run's digest here (a DVC
    # experiment another test of this module runs on the same server carries the experiment's name).
    repro = [r for r in runs if "dvc_exp" not in r.data.tags]
    (pipeline,) = [r for r in repro if "backprop.pipeline" in r.data.tags]
    label = f"main {pipeline.info.run_name.removeprefix('dvc repro ')}"
    assert all(r.info.run_name.endswith(f" ({label})") for r in repro if r is not pipeline)


def test_each_trained_task_logs_its_history_and_model_to_the_server(served, server_folder, tmp_path):
    """The train stage with a tracking URI set: each task's run holds its curves, its history and
    its model (a LoggedModel), stored under the server's artifact folder; no local store is made."""
    repo, client = served
    assert not (repo / "mlflow.db").exists() and not (repo / "mlartifacts").exists()
    experiment = client.get_experiment_by_name("backprop-lab")
    runs = [r for r in all_runs(client) if r.data.tags.get("stage") == "train" and "task" in r.data.tags]
    # Each task's run of the repro (its folds are its children; a DVC experiment another test of
    # this module runs on the same server adds runs tagged with the experiment).
    runs = [r for r in runs if "fold" not in r.data.tags and "dvc_exp" not in r.data.tags]
    assert sorted(r.data.tags["task"] for r in runs) == sorted(TASK_NAMES)
    for r in runs:
        assert r.info.status == "FINISHED"
        assert len(client.get_metric_history(r.info.run_id, f"train_{LOSS[r.data.tags['task']]}")) > 2
        listed = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert "history.csv" in listed and r.outputs.model_outputs  # the model is a LoggedModel of the run
        local = client.download_artifacts(r.info.run_id, "history.csv", str(tmp_path))
        assert Path(local).read_text().startswith("epoch,")
    artifacts = server_folder / "server-artifacts" / experiment.experiment_id
    assert list(artifacts.rglob("MLmodel")), "artifacts missed the server's folder"


def test_each_grid_point_is_a_run_with_its_cross_validated_metrics(served):
    repo, client = served
    runs = all_runs(client)
    children = {}
    for r in runs:
        children.setdefault(r.data.tags.get("mlflow.parentRunId"), []).append(r)
    for name in SWEEPS:
        spec = TINY["sweep"][name]
        (parent,) = [r for r in runs if r.data.tags.get("run_key") == f"sweep-{name}"]
        summary = pd.read_csv(repo / "sweeps" / name / "summary.csv")
        points = children[parent.info.run_id]
        assert len(points) == len(summary)
        for point in points:
            task, loss = point.data.tags["task"], LOSS[point.data.tags["task"]]
            folds = children[point.info.run_id]  # each fit stays a run, under its point
            assert sorted(int(f.data.tags["fold"]) for f in folds) == list(range(FOLDS))
            metrics = point.data.metrics
            assert metrics["fits"] == FOLDS
            assert sum(metrics[outcome] for outcome in OUTCOMES) == FOLDS
            (row,) = [
                row
                for row in summary[summary["task"] == task].to_dict("records")
                if point.data.tags["point"] == " ".join(f"{key}={row[key]}" for key in spec["grid"])
            ]
            assert metrics[f"rank_val_{loss}"] >= 1
            for column in (f"val_{loss}_mean", f"test_{loss}_mean", f"test_{loss}_ci_low", f"val_{loss}_ci_high"):
                if math.isfinite(row[column]):
                    assert metrics[column] == pytest.approx(row[column], rel=1e-5), (name, column)
                else:  # no fit learned (no mean), or one (no interval): nothing to log
                    assert column not in metrics, (name, column)


def test_a_grid_of_layer_lists_logs_to_a_server_behind_basic_auth(served, guarded_server, tmp_path):
    """As the README allows (issue 22, findings 1 and 2): lists in params, tags and run names,
    sent with the user's credentials; a wrong password is one line naming the server. In a copy
    of the served repro, whose prepared data the sweep reuses."""
    repo = copy_of(served[0], tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["sweep"]["capacity"]["grid"]["hidden"] = [[2], [2, 2]]
    params["tracking"]["experiment"] = "layer-lists"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    user = {"MLFLOW_TRACKING_URI": guarded_server, "MLFLOW_TRACKING_USERNAME": "admin"}
    ran = run(["dvc", "repro", "sweep@capacity"], repo, **user, MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD).stdout
    assert "Running stage 'sweep@capacity'" in ran and "Running stage 'prepare'" not in ran
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        env.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        client = MlflowClient(guarded_server)
        runs = client.search_runs([client.get_experiment_by_name("layer-lists").experiment_id])
    assert {r.info.status for r in runs} == {"FINISHED"}
    points = [r for r in runs if "point" in r.data.tags and "fold" not in r.data.tags]
    assert sorted(r.data.params["train.hidden"] for r in points) == ["[2, 2]", "[2]"]
    assert sorted(r.data.tags["point"] for r in points) == ["hidden=2", "hidden=2-2"]

    refused = run(["dvc", "repro", "-s", "--force", "sweep@capacity"], repo, check=False, **user,
                  MLFLOW_TRACKING_PASSWORD="not-the-password-7")  # fmt: skip
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "refused the credentials (401 not authenticated)" in refused.stderr, refused.stderr
    assert ADMIN_PASSWORD not in refused.stderr + refused.stdout and "not-the-password-7" not in refused.stderr


def test_the_readme_query_returns_the_chosen_point_first(served):
    repo, client = served
    filter_string, order_by = readme_query()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        found = mlflow.search_runs(experiment_names=["backprop-lab"], filter_string=filter_string, order_by=order_by)
    finally:
        mlflow.set_tracking_uri(None)
    summary = pd.read_csv(repo / "sweeps" / "lr" / "summary.csv")
    (chosen,) = best_points(summary, [], {"regression": "mse"}).to_dict("records")
    assert len(found) == len(summary)
    assert float(found.iloc[0]["params.train.lr"]) == chosen["lr"]
    assert found.iloc[0]["metrics.rank_val_mse"] == 1
    (parent,) = [r for r in all_runs(client) if r.data.tags.get("run_key") == "sweep-lr"]
    assert parent.data.params["best.regression.lr"] == str(chosen["lr"])
    assert parent.data.metrics["best_regression_val_mse_mean"] == pytest.approx(chosen["val_mse_mean"], rel=1e-5)


def test_a_diverged_fit_logs_its_epoch_not_its_scores(served):
    _, client = served
    diverged = [r for r in all_runs(client) if r.data.tags.get("outcome") == "diverged"]
    assert diverged, "the tiny lr grid's 1e5 diverges"
    assert all(set(r.data.metrics) == {"diverged_epoch"} for r in diverged)


def test_the_experiment_opens_on_runs(served):
    _, client = served
    assert client.get_experiment_by_name("backprop-lab").tags[KIND_TAG] == KIND


def test_a_registry_version_says_which_experiment_made_it(served):
    repo, client = served
    run(["dvc", "exp", "run", "--temp", "-n", "faster", "-S", "train.lr=0.05", "train"], repo,
        MLFLOW_TRACKING_URI=client.tracking_uri)  # fmt: skip
    for task in LOSS:
        loss, name = LOSS[task], f"backprop-lab-{task}"
        (version,) = client.search_model_versions(f"name = '{name}' and tag.dvc_exp = 'faster'")
        tags = version.tags
        assert tags["pipeline"] == "faster" and re.fullmatch(r"[0-9a-f]{40}", tags["dvc_baseline_rev"])
        assert tags["params_changed"] == "train.lr=0.05"
        assert "DVC experiment faster" in version.description and "train.lr=0.05" in version.description
        test_mean = float(tags[f"test_{loss}_mean"])
        model = client.get_logged_model(version.source.removeprefix("models:/"))
        assert {m.key: m.value for m in model.metrics}[f"test_{loss}_mean"] == pytest.approx(test_mean, rel=1e-5)
        # The champion stays the main branch's repro.
        champion = client.get_model_version_by_alias(name, "champion")
        assert champion.version != version.version and champion.tags["git_branch"] == "main"
        assert champion.tags["params_changed"] == "none"
        assert float(champion.tags[f"test_{loss}_mean"]) == pytest.approx(
            json.loads((repo / "metrics" / f"{task}.json").read_text())[task][f"test_{loss}"], rel=1e-5
        )


# ---- in process: the parts each view relies on -------------------------------------------------


def test_the_rank_puts_a_point_whose_every_fit_learned_first():
    summary = pd.DataFrame(
        {
            "task": ["regression"] * 3,
            "lr": [0.1, 0.3, 1.0],
            "fits": [5, 5, 5],
            "learned": [5, 4, 0],
            "val_mse_mean": [2900.0, 2800.0, math.nan],  # 0.3 is lower, but one of its folds did not learn
        }
    )
    assert list(point_ranks(summary, {"regression": "mse"})) == [1, 2, 3]
    assert best_points(summary, [], {"regression": "mse"})["lr"].item() == 0.1


def test_cross_validated_metrics_lead_with_the_loss_and_skip_what_is_not_a_number():
    row = {"val_mse_mean": 1.0, "test_mse_mean": 2.0, "val_accuracy_mean": 0.5, "test_accuracy_mean": math.nan}
    row |= {"val_mse_ci_low": 0.5, "fits": 5, "learned": 5, "diverged": 0}
    names = [name for name, _, _ in cv_metrics(row, "mse", ["accuracy", "mse"])]
    assert names == [
        "val_mse_mean",
        "test_mse_mean",
        "val_accuracy_mean",
        "val_mse_ci_low",
        "fits",
        "learned",
        "diverged",
    ]
    assert [name for name, _, _ in cv_metrics(row, "mse", ["mse"], bounds=False, counts=False)] == names[:2]


def test_an_existing_experiment_gets_its_kind(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(server)
    client.create_experiment("made-before")
    assert KIND_TAG not in client.get_experiment_by_name("made-before").tags
    Tracker("made-before", uri=server)
    assert client.get_experiment_by_name("made-before").tags[KIND_TAG] == KIND


def test_tags_of_any_params_value_reach_the_server(server, tmp_path, monkeypatch):
    """Floats and layer lists as tags (what a sweep's point holds): strings over REST."""
    monkeypatch.chdir(tmp_path)
    tracker = Tracker("tag-types", uri=server)
    with tracker.run("parent", {"lr": 0.1}) as parent:
        child = tracker.record(
            "child",
            {"hidden": [16, 16], "lr": 0.1},
            parent_id=parent,
            params={"train": {"hidden": (16, 16)}},
            metrics=[],
        )
    found = MlflowClient(server).get_run(child).data
    assert found.tags["hidden"] == "[16, 16]" and found.tags["lr"] == "0.1"
    assert found.params["train.hidden"] == "[16, 16]"
