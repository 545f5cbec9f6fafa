import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def diabetes():
    """All 442 rows, features standardised, target unscaled: the reference hand-in's protocol."""
    frame = pd.read_csv(ROOT / "data" / "diabetes.csv")
    X = frame.drop(columns="progression").to_numpy(float)
    return (X - X.mean(axis=0)) / X.std(axis=0), frame["progression"].to_numpy(float)


# ---- end-to-end: a copy of this repo with tiny params ------------------------------------------

TINY = {
    "train": {"hidden": [4], "epochs": 40, "patience": 0},
    "sweep": {
        "seeds": [0, 1],
        "curve_points": 10,
        "lr": {"values": [0.01, 100000.0], "tasks": ["regression"]},
        "hidden": {"values": [2, 4], "tasks": ["regression"]},
        "activation": {"values": ["sigmoid", "relu"], "tasks": ["regression", "classification"]},
        "loss": {"values": ["log_loss", "mse"], "tasks": ["classification"]},
    },
    "tracking": {"max_logged_steps": 10},
}


def pipeline_env(**extra):
    """The environment a user has after `source .venv/bin/activate`, minus anything that would
    point the copy at this checkout (an MLflow server, a DVC root)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_STAGE")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(CI="1", MLFLOW_DISABLE_TELEMETRY="true", DVC_NO_ANALYTICS="1", DO_NOT_TRACK="1")
    return env | extra


def run(cmd, cwd, check=True, timeout=600, **env):
    result = subprocess.run(
        cmd,
        cwd=cwd,
        env=pipeline_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        shell=isinstance(cmd, str),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def deep_update(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "sweep":
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def copy_repo(dest: Path, params: dict | None = None) -> Path:
    """The tracked files of this checkout in a fresh git repo, as a clone would have them."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, files.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    if params is not None:
        values = yaml.safe_load((dest / "params.yaml").read_text())
        (dest / "params.yaml").write_text(yaml.safe_dump(deep_update(values, params), sort_keys=False))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run([*git, "commit", "-qm", "copy"], dest)
    return dest


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory):
    """A fresh copy with tiny params after one `dvc repro`."""
    repo = copy_repo(tmp_path_factory.mktemp("pipeline"), TINY)
    result = run(["dvc", "repro"], repo)
    # What the user saw, beside the repo (not in it), for the console checks.
    repro_log(repo).write_text(result.stdout + result.stderr)
    return repo


def repro_log(repo: Path) -> Path:
    return repo.parent / f"{repo.name}-repro.log"
