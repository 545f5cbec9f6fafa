"""What another person or machine gets: a DVC remote and a clone, files with no path of this
machine, a model folder that loads and serves with no store, the registry's champion, readable
`dvc exp show`, plots that draw offline, and a quiet console."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, pipeline_env, repro_log, run, wait_until_answers
from mlflow import MlflowClient

from backprop import MLP

pytestmark = pytest.mark.e2e

DVC_OUTPUTS = ("dvc.lock", "data/prepared", "models", "runs", "metrics", "plots", "settings", "sweeps", "report")
SWEEP_PLOTS = {  # title in dvc.yaml -> (results file, y column)
    "Sweep lr, regression (val MSE per fold)": ("lr", "val_mse"),
}
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


def raw_rows(repo: Path, rows: int = 8) -> pd.DataFrame:
    """Feature columns as pd.read_csv gives them: int64 where the CSV has whole numbers."""
    return pd.read_csv(repo / "data" / "diabetes.csv").drop(columns="progression").head(rows)


def network_predictions(repo: Path, frame: pd.DataFrame) -> np.ndarray:
    """The engine on the model folder's own weights and scaler, without MLflow."""
    artifacts = repo / "models" / "regression" / "artifacts"
    with np.load(artifacts / "scaler.npz") as scaler:
        mean, std = scaler["mean"], scaler["std"]
    return MLP.load(artifacts / "weights.npz").predict((frame.to_numpy(float) - mean) / std)


# ---- B. portable files and models ----------------------------------------------------------------


def test_no_versioned_file_holds_a_path_of_this_machine(tiny_repo):
    tracked = run(["git", "ls-files"], tiny_repo).stdout.split()
    outputs = [p for name in DVC_OUTPUTS for p in [tiny_repo / name, *(tiny_repo / name).rglob("*")]]
    # A committed figure of a task the tiny params leave out is not in the tiny repro.
    files = {p for p in (tiny_repo / name for name in tracked) if p.is_file()} | {p for p in outputs if p.is_file()}
    assert len(files) > 100 and tiny_repo / "models" / "regression" / "MLmodel" in files
    holders = sorted(str(p.relative_to(tiny_repo)) for p in files if str(tiny_repo).encode() in p.read_bytes())
    assert holders == []
    record = json.loads((tiny_repo / "runs" / "train.json").read_text())
    assert record["tracking_uri"] == "sqlite:///mlflow.db"


LOAD_AND_PREDICT = """
import json, sys
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
raw = pd.read_csv(sys.argv[2]).drop(columns="progression").head(8)
assert "int64" in set(raw.dtypes.astype(str)), raw.dtypes
whole = raw.round().astype("int64")
print(json.dumps([model.predict(raw).tolist(), model.predict(whole).tolist()]))
"""


def test_the_model_folder_loads_and_predicts_with_no_store(tiny_repo, tmp_path):
    """What a clone that pulled `models/` has: the folder alone, in a process whose MLflow
    store is an empty folder elsewhere, which must stay empty."""
    empty, elsewhere = tmp_path / "empty", tmp_path / "elsewhere"
    empty.mkdir(), elsewhere.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_AND_PREDICT,
            str(tiny_repo / "models" / "regression"),
            str(tiny_repo / "data" / "diabetes.csv"),
        ],
        cwd=elsewhere,
        env=pipeline_env(MLFLOW_TRACKING_URI=f"sqlite:///{empty / 'mlflow.db'}"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    mixed, whole = json.loads(result.stdout)
    raw = raw_rows(tiny_repo)
    np.testing.assert_allclose(mixed, network_predictions(tiny_repo, raw), rtol=1e-12)
    np.testing.assert_allclose(whole, network_predictions(tiny_repo, raw.round().astype("int64")), rtol=1e-12)
    assert list(empty.iterdir()) == [] and list(elsewhere.iterdir()) == []


def test_the_input_example_is_real_training_rows(tiny_repo):
    example = json.loads((tiny_repo / "models" / "regression" / "input_example.json").read_text())
    frame = pd.DataFrame(example["data"], columns=example["columns"])
    table = pd.read_csv(tiny_repo / "data" / "diabetes.csv").drop(columns="progression")
    merged = frame.merge(table.astype(float), how="left", indicator=True)
    assert len(frame) == 5 and (merged["_merge"] == "both").all(), frame


def test_the_champion_is_the_main_branch_model(tiny_repo, tmp_path):
    """`dvc repro` on main registered both models and made them champion (that experiments never
    do is checked by the queue test)."""
    import mlflow.pyfunc

    record = json.loads((tiny_repo / "runs" / "train.json").read_text())
    client = MlflowClient(f"sqlite:///{tiny_repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("backprop-lab").experiment_id
    for task in ("regression", "classification"):
        champion = client.get_model_version_by_alias(record["models"][task], "champion")
        (latest,) = client.search_runs(
            [experiment], record["runs"][task], order_by=["attributes.start_time DESC"], max_results=1
        )
        (output,) = latest.outputs.model_outputs
        assert champion.run_id == latest.info.run_id and champion.source == f"models:/{output.model_id}"
    mlflow.set_tracking_uri(f"sqlite:///{tiny_repo / 'mlflow.db'}")
    try:
        # Into a folder of its own: a local store's model loads in place, and MLflow writes beside it.
        model = mlflow.pyfunc.load_model("models:/backprop-lab-regression@champion", dst_path=str(tmp_path))
    finally:
        mlflow.set_tracking_uri(None)
    raw = raw_rows(tiny_repo)
    np.testing.assert_allclose(model.predict(raw), network_predictions(tiny_repo, raw), rtol=1e-12)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_model_folder_serves_predictions_over_http(tiny_repo, tmp_path):
    port = free_port()
    model = str(tiny_repo / "models" / "regression")
    server = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", model, "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path,
        env=pipeline_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'unused.db'}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # the server's workers share its process group: stopped together
    )
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/ping", server, "mlflow models serve")
        raw = raw_rows(tiny_repo)
        body = {"dataframe_split": {"columns": list(raw.columns), "data": raw.to_numpy().tolist()}}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            predictions = [row["prediction"] for row in json.loads(response.read())["predictions"]]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    np.testing.assert_allclose(predictions, network_predictions(tiny_repo, raw), rtol=1e-12)
    assert not (tmp_path / "unused.db").exists()


# ---- C. readable views ---------------------------------------------------------------------------


def data_marks(scenegraph: dict, marktype: str) -> list[list[dict]]:
    """The items of each data mark (not axes or legends) of ``marktype`` that Vega placed at a
    finite position: what the page shows."""
    found, stack = [], [scenegraph["scenegraph"]]
    while stack:
        node = stack.pop()
        if node.get("marktype") == marktype and node.get("role") == "mark":
            found.append(
                [i for i in node["items"] if np.isfinite(i.get("x", np.nan)) and np.isfinite(i.get("y", np.nan))]
            )
        stack.extend(node.get("items", []))
    return found


def test_every_dvc_plot_draws_and_the_page_works_offline(tiny_repo, tmp_path):
    import vl_convert

    from backprop.lab.plots_page import VEGA_LITE_VERSION

    plots = json.loads(run(["dvc", "plots", "show", "--json"], tiny_repo).stdout)["data"]
    assert set(SWEEP_PLOTS) <= set(plots) and len(plots) == 4 + len(SWEEP_PLOTS)
    for title, (name, column) in SWEEP_PLOTS.items():
        spec = plots[title][0]["content"]
        results = pd.read_csv(tiny_repo / "sweeps" / name / "results.csv")
        (points,) = data_marks(vl_convert.vegalite_to_scenegraph(spec, vl_version=VEGA_LITE_VERSION), "symbol")
        assert len(points) == results[column].notna().sum() > 0, title  # one point per fold and value
        assert spec["encoding"]["y"]["field"] == column
    assert plots["Sweep lr, regression (val MSE per fold)"][0]["content"]["encoding"]["x"]["scale"]["type"] == "log"
    mse = plots["Regression loss (MSE, log scale)"][0]["content"]
    assert mse["encoding"]["y"]["scale"]["type"] == "log"
    lines = data_marks(vl_convert.vegalite_to_scenegraph(mse, vl_version=VEGA_LITE_VERSION), "line")
    assert [len(line) for line in lines] == [40] * 3  # train, val, test over TINY's 40 epochs

    template = tmp_path / "offline.html"
    run(["python", "-m", "backprop.lab.plots_page", str(template)], tiny_repo)
    run(["dvc", "plots", "show", "--html-template", str(template), "-o", str(tmp_path / "page")], tiny_repo)
    page = (tmp_path / "page" / "index.html").read_text()
    assert not re.findall(r"<script[^>]*\bsrc\s*=", page)  # nothing to load, from a CDN or anywhere
    assert "window.vegaEmbed=" in page and page.count("vegaEmbed('#") == len(plots)


# ---- D. a quiet console --------------------------------------------------------------------------


def test_dvc_repro_prints_one_rounded_line_per_trained_model(tiny_repo):
    console = repro_log(tiny_repo).read_text()
    assert "INFO" not in console and "alembic" not in console, console
    assert not re.findall(r"\d\.\d{7,}", console), "unrounded numbers"
    lines = re.findall(r"^train (\w+): test (.*) \(run [0-9a-f]{8}\)$", console, re.M)
    # One line per task, in the order the fits completed (they train at once).
    assert sorted(task for task, _ in lines) == ["classification", "control", "regression"], console
    regression = dict(lines)["regression"]
    assert re.fullmatch(r"MSE \d+ \(95% CI \d+ to \d+\) over 3 folds, 3 learned", regression), regression


# ---- A. a DVC remote and a fresh clone ------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tiny_repo, tmp_path_factory):
    """tiny_repo's workspace, committed, with a local DVC remote and a bare git remote, pushed."""
    root = tmp_path_factory.mktemp("shared")
    origin, storage, repo = root / "origin.git", root / "storage", root / "repo"
    # The store and DVC's scratch space are not part of a clone; the cache is (a push needs it).
    ignore = shutil.ignore_patterns("mlflow.db*", "mlartifacts", "tmp", "dvc_plots", "plots_diff")
    shutil.copytree(tiny_repo, repo, ignore=ignore)
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], root)
    run(["dvc", "remote", "add", "-d", "storage", str(storage)], repo)
    run(["git", "remote", "add", "origin", str(origin)], repo)
    run(["git", "add", "-A"], repo)
    run([*GIT, "commit", "-qm", "outputs and a DVC remote"], repo)
    run(["dvc", "push"], repo)
    run(["git", "push", "-q", "origin", "main"], repo)
    return root


def test_a_fresh_clone_pulls_the_outputs_and_has_nothing_to_reproduce(shared):
    clone = shared / "clone"
    run(["git", "clone", "-q", str(shared / "origin.git"), str(clone)], shared)
    run(["dvc", "pull"], clone)
    assert json.loads(run(["dvc", "status", "--json"], clone).stdout) == {}
    assert (clone / "models" / "regression" / "MLmodel").is_file()
    # Importing the package writes __pycache__ into it (unless PYTHONDONTWRITEBYTECODE is set):
    # not a change of the `backprop` dependency.
    env = {k: v for k, v in pipeline_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", "import backprop.lab.datasets"], cwd=clone, env=env, check=True)
    assert (clone / "backprop" / "__pycache__").is_dir()
    assert json.loads(run(["dvc", "status", "--json"], clone).stdout) == {}
    assert "Stage 'train' didn't change" in run(["dvc", "repro", "--dry"], clone).stdout


def test_an_experiment_travels_with_dvc_exp_push_and_pull(shared):
    repo, clone = shared / "repo", shared / "exp-clone"
    run(["dvc", "exp", "run", "-n", "shared-lr", "-S", "train.lr=0.02", "train"], repo)
    run(["dvc", "exp", "push", "origin", "shared-lr"], repo)
    run(["git", "clone", "-q", str(shared / "origin.git"), str(clone)], shared)
    run(["dvc", "exp", "pull", "origin", "shared-lr"], clone)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], clone).stdout)
    experiments = [e for row in shown for e in row.get("experiments") or [] if e.get("name") == "shared-lr"]
    assert len(experiments) == 1, shown
    (revision,) = experiments[0]["revs"]
    assert revision["data"]["params"]["params.yaml"]["data"]["train"]["lr"] == 0.02
    run(["dvc", "exp", "apply", "shared-lr"], clone)
    run(["dvc", "pull", "train"], clone)  # the experiment's model, from the DVC remote
    assert json.loads(run(["dvc", "status", "--json", "train"], clone).stdout) == {}


def test_dvc_exp_run_set_param_changes_one_line_of_params_yaml(tmp_path):
    """`dvc exp run -S train.lr=…` rewrites params.yaml with DVC's own YAML writer: the file is
    kept in that writer's style, so an experiment's params diff is the one changed value."""
    from dvc.utils.serialize import modify_yaml

    copy = tmp_path / "params.yaml"
    copy.write_text((ROOT / "params.yaml").read_text())
    with modify_yaml(copy) as params:
        params["train"]["lr"] = 0.03
    before, after = (ROOT / "params.yaml").read_text().splitlines(), copy.read_text().splitlines()
    assert len(before) == len(after)
    assert [(a, b) for a, b in zip(before, after, strict=True) if a != b] == [("  lr: 0.1", "  lr: 0.03")]
