"""Everything MLflow: where the store is, runs that always end, batched logging, the model.

The store: ``MLFLOW_TRACKING_URI`` when set (a team's tracking server), otherwise
``sqlite:///<project root>/mlflow.db`` with artifacts in ``<project root>/mlartifacts``. The project
root is ``DVC_ROOT``, which DVC sets to the user's repository also inside the temporary copies
where ``dvc exp run --queue``/``--temp`` execute, so no run is left behind in a copy that DVC
deletes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
BATCH_LIMIT = 1000  # MLflow's cap on entities per log_batch call
PARAMS_LIMIT = 100  # and on params/tags per call

# Seconds this process spent inside MLflow calls; benchmarks/pipeline.py reports it per stage.
time_in_mlflow = 0.0

# A stage prints one summary line of its own; MLflow's INFO lines (and alembic's, while MLflow
# creates the schema of a new store) would bury it. Warnings and errors still show.
for _name in ("mlflow", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / DB_NAME}"


def shareable_uri(uri: str) -> str:
    """``uri`` as written into versioned files: a SQLite store inside the project relative to the
    project root (``sqlite:///mlflow.db``, what a clone has after its own run), so no file holds
    this machine's paths; any other URI as it is."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if path.is_absolute() and path.is_relative_to(project_root()):
            return f"sqlite:///{path.relative_to(project_root())}"
    return uri


def current_branch(cwd: str | Path = ".") -> str | None:
    try:
        return subprocess.run(
            ["git", "symbolic-ref", "--quiet", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # no git, or a detached HEAD
        return None


def crowns_champion(branch: str) -> bool:
    """A repro of ``branch`` (the project's main line) in the workspace, not a DVC experiment:
    the one kind of run whose model becomes the registry's ``champion``."""
    return not os.environ.get("DVC_EXP_NAME") and current_branch() == branch


def git_commit(cwd: str | Path = ".") -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def downsample_steps(n: int, most: int) -> np.ndarray:
    """At most ``most`` evenly spread epochs, always the first and the last."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(int))


def flatten(values: Mapping, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = str(list(value) if isinstance(value, tuple) else value)
    return flat


class Tracker:
    """One MLflow experiment in one store, used through MlflowClient only (no global state)."""

    def __init__(self, experiment: str, uri: str | None = None):
        self.store_uri = uri or tracking_uri()
        self.uri = shareable_uri(self.store_uri)  # what the stages write into versioned files
        self.local = self.store_uri.startswith("sqlite:")
        self._lock_path = Path(self.store_uri.removeprefix("sqlite:///") + ".lock") if self.local else None
        with self._locked():
            # The first touch creates the SQLite schema: serialised, so that several queue workers
            # starting on a new store do not race through MLflow's migrations.
            self.client = MlflowClient(self.store_uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is not None:
                self.experiment_id = found.experiment_id
            else:
                location = (project_root() / ARTIFACTS_DIR).as_uri() if self.local else None
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._lock_path is None:
            yield
            return
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _call(self, method: str, *args, **kwargs):
        global time_in_mlflow
        started = time.perf_counter()
        try:
            with self._locked():
                return getattr(self.client, method)(*args, **kwargs)
        finally:
            time_in_mlflow += time.perf_counter() - started

    @contextlib.contextmanager
    def run(self, name: str, tags: Mapping[str, str], parent_id: str | None = None) -> Iterator[str]:
        """A run that ends FINISHED, FAILED on an error, KILLED on Ctrl-C or SIGTERM: never RUNNING."""
        all_tags = dict(tags) | ({"mlflow.parentRunId": parent_id} if parent_id else {})
        run = self._call("create_run", self.experiment_id, tags=all_tags, run_name=name)
        run_id = run.info.run_id
        try:
            yield run_id
        except KeyboardInterrupt:
            self._call("set_terminated", run_id, RunStatus.to_string(RunStatus.KILLED))
            raise
        except BaseException:
            self._call("set_terminated", run_id, RunStatus.to_string(RunStatus.FAILED))
            raise
        self._call("set_terminated", run_id, RunStatus.to_string(RunStatus.FINISHED))

    def log(
        self,
        run_id: str,
        *,
        params: Mapping | None = None,
        metrics: list[tuple[str, float, int]] = (),
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Params, tags and (key, value, step) metrics in as few log_batch calls as MLflow allows."""
        now = int(time.time() * 1000)
        params_list = [Param(k, v) for k, v in flatten(params or {}).items()]
        tags_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        metrics_list = [Metric(k, float(v), now, int(step)) for k, v, step in metrics]
        while params_list or tags_list or metrics_list:
            batch_params, params_list = params_list[:PARAMS_LIMIT], params_list[PARAMS_LIMIT:]
            batch_tags, tags_list = tags_list[:PARAMS_LIMIT], tags_list[PARAMS_LIMIT:]
            room = BATCH_LIMIT - len(batch_params) - len(batch_tags)
            batch_metrics, metrics_list = metrics_list[:room], metrics_list[room:]
            self._call("log_batch", run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)

    def log_artifacts(self, run_id: str, paths: list[str | Path], artifact_path: str | None = None) -> None:
        for path in paths:
            self._call("log_artifact", run_id, str(path), artifact_path)

    def log_model(self, run_id: str, model_dir: str | Path, *, step: int, registered_name: str, champion: bool):
        """The model saved in ``model_dir`` as a LoggedModel of ``run_id`` (its metrics at ``step``
        linked to it), registered as a new version of ``registered_name``; with ``champion``, the
        alias ``champion`` moves to that version. Returns (model id, version)."""
        global time_in_mlflow
        import mlflow.pyfunc
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri

        from backprop.lab.pyfunc import model_spec

        started = time.perf_counter()
        # log_model works on the active run of the fluent API, and the registry resolves a
        # models:/ source through the global store: both pointed at this store for this call only
        # (the pinned MLflow has no client-level log_model). The client is used directly inside:
        # _call would take the file lock a second time.
        with self._locked(), _use_tracking_uri(self.store_uri):
            with mlflow.start_run(run_id=run_id):
                info = mlflow.pyfunc.log_model(name=registered_name, step=step, **model_spec(model_dir))
            try:
                self.client.create_registered_model(registered_name)
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":  # as it does after the first run
                    raise
            version = self.client.create_model_version(
                registered_name, info.model_uri, run_id=run_id, model_id=info.model_id
            ).version
            if champion:
                self.client.set_registered_model_alias(registered_name, "champion", version)
        time_in_mlflow += time.perf_counter() - started
        return info.model_id, version

    def run_status(self, run_id: str) -> str | None:
        try:
            return self.client.get_run(run_id).info.status
        except MlflowException:  # a store that was wiped since: there is no such run any more
            return None


def history_metrics(columns: Mapping[str, np.ndarray], most: int) -> list[tuple[str, float, int]]:
    """Per-epoch curves as (key, value, step), downsampled to ``most`` steps for the UI; the
    whole curve is logged as a CSV artifact beside it. Non-finite values are left out: MLflow
    charts cannot draw them, and the run's ``diverged`` tag says why the curve stops."""
    lengths = {len(values) for values in columns.values()}
    if not lengths:
        return []
    steps = downsample_steps(lengths.pop(), most)
    return [
        (key, float(values[step]), int(step))
        for key, values in columns.items()
        for step in steps
        if math.isfinite(values[step])
    ]


def final_metrics(scores: Mapping[str, Mapping[str, float]], step: int) -> list[tuple[str, float, int]]:
    """``{split: {metric: v}}`` as ``split_metric`` at ``step``, extending the per-epoch curves."""
    return [
        (f"{split}_{name}", value, step)
        for split, values in scores.items()
        for name, value in values.items()
        if math.isfinite(value)
    ]


def result_metrics(history, scores: Mapping[str, Mapping[str, float]], most: int) -> list[tuple[str, float, int]]:
    """What every training run logs: its curves, then its final scores one step after them."""
    return history_metrics(history.columns, most) + final_metrics(scores, step=history.epochs_run)


def run_tags(stage: str, **extra: str) -> dict[str, str]:
    commit = git_commit()
    tags = {
        "stage": os.environ.get("DVC_STAGE", stage),
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "mlflow.source.name": f"stages/{stage.split('@')[0]}.py",
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc_baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags | {key: str(value) for key, value in extra.items()}
