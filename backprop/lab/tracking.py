"""MLflow runs: a ``Tracker`` whose runs always end, batched logging, the registered model, and
what each kind of run logs and is tagged with. Where the store is and what its failures mean:
``store.py``; the stage digest that finds a run: ``digests.py``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from backprop.lab.blocks import LABELS
from backprop.lab.counters import COSTS, spent_in_mlflow
from backprop.lab.digests import DIGEST_LENGTH, DIGEST_TAG, content_digest, stage_digest
from backprop.lab.failures import environment_message
from backprop.lab.outputs import naming
from backprop.lab.processes import at_stage_exit, defer_interrupts, pid_alive, resume_interrupts
from backprop.lab.protocol import OUTCOMES
from backprop.lab.store import (
    ARTIFACTS_DIR,
    HTTP_DEFAULTS,
    check_reachable,
    check_store_file,
    fast_sqlite,
    project_root,
    quiet_mlflow,
    redact,
    shareable_uri,
    store_lock,
    tracking_uri,
)
from backprop.lab.thinning import downsample_steps

PIPELINE_TAG = "backprop.pipeline"  # the tag that finds a pipeline run's grouping run
# A run's name carries the pipeline it belongs to, which no versioned file may hold (a DVC
# experiment's name is not a dependency of any stage): versioned files find a run by this tag,
# its name without the pipeline.
KEY_TAG = "run_key"
# MLflow 3's UI opens an experiment without this tag in its GenAI view (traces, no runs).
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
RESERVE_BYTES = 1 << 20  # disk kept free beside a SQLite store (mlflow.db.reserve) to end runs on a full disk
HOST = socket.gethostname()

unended: list = []  # (tracker, run id, status) of runs a failing stage could not end at once


def end_unended_runs() -> None:
    """A second try at ending the runs ``Tracker.run`` could not end, at the stage's exit; if the
    store still refuses, say so in one line (the next stage ends them: their process is gone)."""
    while unended:
        tracker, run_id, status = unended.pop()
        tracker.free_reserve()  # the next stage to open the store makes it again
        tracker.reopen()
        try:
            tracker._call("set_terminated", run_id, status)
        except Exception as error:
            print(
                f"warning: the MLflow run {run_id[:8]} is still RUNNING ({environment_message(error) or error}); "
                f"the next stage marks it {status}",
                file=sys.stderr,
            )


at_stage_exit(end_unended_runs)  # once the staged outputs are gone: space to end them in


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


def as_text(value) -> str:
    """A param or tag value as the REST API requires it (a string; SQLite would take a float or
    a list, a tracking server refuses them): a tuple written as the list params.yaml has."""
    return str(list(value) if isinstance(value, tuple) else value)


def flatten(values: Mapping, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = as_text(value)
    return flat


class Tracker:
    """One MLflow experiment in one store, used through MlflowClient only (no global state)."""

    def __init__(self, experiment: str, uri: str | None = None):
        self.store_uri = uri or tracking_uri()
        # What versioned files, messages and tags may show: no secret, no path of this machine.
        self.uri = redact(shareable_uri(self.store_uri))
        self.local = self.store_uri.startswith("sqlite:")
        self.experiment = experiment
        self._pipeline: str | None = None
        self._created: dict[str, tuple[str, str]] = {}  # run id -> (run name, stage digest)
        self._models: dict[str, str] = {}  # logged model id -> its registered name
        self._lock_path = Path(self.store_uri.removeprefix("sqlite:///") + ".lock") if self.local else None
        if self.local:
            from sqlalchemy import event
            from sqlalchemy.engine import Engine

            if not event.contains(Engine, "connect", fast_sqlite):
                event.listen(Engine, "connect", fast_sqlite)
        if urlsplit(self.store_uri).scheme in ("http", "https"):
            for name, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
            # MLflow prints a link per run ended on a server (hundreds per sweep, burying the stage's
            # own line), with the URI as given, password and all.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
            check_reachable(self.store_uri)
        if self.local:
            check_store_file(Path(self.store_uri.removeprefix("sqlite:///")))
        with self._locked(), spent_in_mlflow(opening=True):
            self._reserve_space()
            # The first touch creates the SQLite schema: serialised, so that several queue workers
            # starting on a new store do not race through MLflow's migrations.
            from mlflow import MlflowClient  # MLflow takes seconds to import: the fits start first

            quiet_mlflow()
            self.client = MlflowClient(self.store_uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is not None:
                self.experiment_id = found.experiment_id
            else:
                location = (project_root() / ARTIFACTS_DIR).as_uri() if self.local else None
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=location, tags={KIND_TAG: KIND}
                )
            self._set_kind(found)
        self._end_orphaned_runs()

    def _set_kind(self, found) -> None:
        """The experiment kind on a store made before the project set it, or inferred by the UI; a
        kind someone chose stays."""
        kind = found.tags.get(KIND_TAG, "") if found is not None else KIND
        if kind in ("", "no_inferred_type") or kind.endswith("_inferred"):
            self.client.set_experiment_tag(self.experiment_id, KIND_TAG, KIND)

    def _end_orphaned_runs(self) -> None:
        """Runs left RUNNING by a stage of this machine that was killed (SIGKILL, power loss):
        FAILED now. Only runs whose host is this one and whose process is gone are touched."""
        running = self._call(
            "search_runs",
            [self.experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.host = '{HOST}'",
            max_results=1000,
        )
        for run in running:
            pid = run.data.tags.get("pid", "")
            if pid.isdigit() and not pid_alive(int(pid)):
                self._call("set_terminated", run.info.run_id, "FAILED")

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return store_lock(self._lock_path)

    def _call(self, method: str, *args, **kwargs):
        with spent_in_mlflow(), self._locked():
            return getattr(self.client, method)(*args, **kwargs)

    @functools.cached_property
    def label(self) -> str:
        return pipeline_label()

    def pipeline_run(self) -> str:
        """The run that groups every stage of one pipeline run: one per DVC experiment, or, for a
        plain `dvc repro`, one per code and params (``pipeline_key``). Found by its tag, else
        created (already FINISHED: it holds no data, and no stage has to remember to end it)."""
        if self._pipeline is None:
            key, name = pipeline_key()
            deferred = defer_interrupts()  # created and ended at once: never left RUNNING
            with spent_in_mlflow(), self._locked(), contextlib.ExitStack() as resume:
                resume.callback(resume_interrupts, deferred)
                # two stages starting at once must not make two
                found = self.client.search_runs(
                    [self.experiment_id], filter_string=f"tags.`{PIPELINE_TAG}` = '{key}'", max_results=1
                )
                if found:
                    self._pipeline = found[0].info.run_id
                else:
                    tags = {PIPELINE_TAG: key, "mlflow.source.git.commit": _commit()} | dvc_tags()
                    tags[KEY_TAG] = name
                    self._pipeline = self.client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id
                    self.client.set_terminated(self._pipeline, "FINISHED")
        return self._pipeline

    @contextlib.contextmanager
    def run(self, name: str, tags: Mapping, parent_id: str | None = None) -> Iterator[str]:
        """A run that ends FINISHED, FAILED on an error, KILLED on Ctrl-C or SIGTERM: never RUNNING.
        A stage's own runs (no ``parent_id``) nest under the pipeline run. ``name`` is what
        versioned files find it by (tag ``run_key``); the run's name adds the pipeline's label."""
        owner = {"host": HOST, "pid": str(os.getpid())}  # lets a later stage end it if this process dies
        all_tags = owner | {key: as_text(value) for key, value in tags.items()}
        all_tags |= {"mlflow.parentRunId": parent_id or self.pipeline_run(), KEY_TAG: name}
        if "stage" in all_tags:
            all_tags[DIGEST_TAG] = stage_digest(all_tags["stage"])
        # Ctrl-C or SIGTERM (which a stage turns into Ctrl-C) inside the call that creates the run,
        # after its row is written, would leave it RUNNING: they wait, and are raised inside the try.
        deferred = defer_interrupts()
        try:
            run = self._call("create_run", self.experiment_id, tags=all_tags, run_name=f"{name} ({self.label})")
        except BaseException:
            resume_interrupts(deferred)
            raise
        COSTS.runs += 1
        run_id = run.info.run_id
        self._created[run_id] = (name, all_tags.get(DIGEST_TAG, ""))
        try:
            resume_interrupts(deferred)
            yield run_id
        except KeyboardInterrupt:
            self._end_failed(run_id, "KILLED")
            raise
        except BaseException:
            self._end_failed(run_id, "FAILED")
            raise
        deferred = defer_interrupts()
        try:
            self._call("set_terminated", run_id, "FINISHED")
        finally:
            resume_interrupts(deferred)

    def _reserve_space(self) -> None:
        """Keep ``RESERVE_BYTES`` of the store's disk in a file beside it, so that a stage that
        fills the disk can free them and still end its runs FAILED (``end_unended_runs``)."""
        if self._lock_path is None:
            return
        reserve = self._lock_path.with_suffix(".reserve")
        if reserve.is_file() and reserve.stat().st_size == RESERVE_BYTES:
            return
        try:
            with open(reserve, "wb") as handle:
                handle.write(bytes(RESERVE_BYTES))
        except OSError:  # a disk already full (or read-only): no reserve, and no error for it
            with contextlib.suppress(OSError):
                reserve.unlink()

    def free_reserve(self) -> None:
        if self._lock_path is not None:
            with contextlib.suppress(OSError):
                self._lock_path.with_suffix(".reserve").unlink()

    def reopen(self) -> None:
        """Close the store's connections, so the next call opens new ones. For SQLite, the last
        close folds the write-ahead log into the store and deletes it: after a full disk, that
        log holds the space the failed writes took."""
        store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        engine = getattr(store, "engine", None)
        if engine is not None:
            with contextlib.suppress(Exception):
                engine.dispose()

    def _end_failed(self, run_id: str, status: str) -> None:
        """End a run whose stage is failing. The store may be failing too (a full disk): then the
        run waits in ``unended`` for ``end_unended_runs``, once the stage has removed its staged
        outputs, and the stage's own error is the one reported."""
        try:
            self._call("set_terminated", run_id, status)
        except Exception:
            unended.append((self, run_id, status))

    def log(
        self,
        run_id: str,
        *,
        params: Mapping | None = None,
        metrics: Sequence[tuple[str, float, int]] = (),
        tags: Mapping | None = None,
        model_id: str | None = None,
    ) -> None:
        """Params, tags and (key, value, step) metrics in one ``log_batch`` (the client splits it
        where MLflow's limits per call require); with ``model_id``, the metrics are also the
        logged model's."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self._call(
            "log_batch",
            run_id,
            metrics=[Metric(k, float(v), now, int(step), model_id=model_id) for k, v, step in metrics],
            params=[Param(k, v) for k, v in flatten(params or {}).items()],
            tags=[RunTag(k, as_text(v)) for k, v in (tags or {}).items()],
        )

    def record(
        self,
        name: str,
        tags: Mapping,
        *,
        parent_id: str,
        params: Mapping,
        metrics: list[tuple[str, float, int]],
    ) -> str:
        """A run for a fit that has already finished: created, logged in one batch and ended, so
        it is never left RUNNING. Three calls, whatever the fit logs."""
        with self.run(name, tags, parent_id=parent_id) as run_id:
            self.log(run_id, params=params, metrics=metrics)
        return run_id

    def log_dataset(self, run_id: str, schema: Mapping, context: str = "training") -> None:
        """The run's input table as an MLflow dataset: the CSV's path in the repository, its
        sha256 as the digest, its columns and rows (from the prepare stage's schema.json)."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        columns = {"mlflow_colspec": [{"type": "double", "name": name} for name in schema["features"]]}
        dataset = Dataset(
            name=Path(schema["source"]).stem,
            digest=schema["sha256"][:20],
            source_type="local",
            source=json.dumps({"uri": schema["source"]}),
            schema=json.dumps(columns),
            profile=json.dumps({"num_rows": schema["rows"], "target": schema["target"]}),
        )
        self._call("log_inputs", run_id, datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context", context)])])

    def log_artifacts(self, run_id: str, paths: list[str | Path], artifact_path: str | None = None) -> None:
        store = project_root() / ARTIFACTS_DIR if self.local else "the MLflow artifact store"
        for path in paths:
            with naming(f"{store} (copying {Path(path).name} into it)"):  # a full disk names no file
                self._call("log_artifact", run_id, str(path), artifact_path)

    def log_model(
        self,
        run_id: str,
        model_dir: str | Path,
        *,
        step: int,
        registered_name: str,
        champion: bool,
        description: str = "",
        version_tags: Mapping | None = None,
    ):
        """The model saved in ``model_dir`` as a LoggedModel of ``run_id``, registered as a new
        version of ``registered_name`` with ``description`` and ``version_tags``; with ``champion``,
        the alias ``champion`` moves to that version. Returns (model id, version). Metrics join the
        LoggedModel only when logged with its id (``log``): MLflow would otherwise link every
        later metric of this process to it."""
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri

        from backprop.lab.pyfunc import model_spec

        # log_model works on the active run of the fluent API, and the registry resolves a
        # models:/ source through the global store: both pointed at this store for this call only
        # (the pinned MLflow has no client-level log_model). The client is used directly inside:
        # _call would take the file lock a second time.
        with spent_in_mlflow(), self._locked(), _use_tracking_uri(self.store_uri):
            with mlflow.start_run(run_id=run_id):
                info = mlflow.pyfunc.log_model(name=registered_name, step=step, **model_spec(model_dir))
            mlflow.clear_active_model()
            try:
                self.client.create_registered_model(registered_name)
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":  # as it does after the first run
                    raise
            version = self.client.create_model_version(
                registered_name,
                info.model_uri,
                run_id=run_id,
                model_id=info.model_id,
                tags={key: as_text(value) for key, value in (version_tags or {}).items()},
                description=description,
            ).version
            if champion:
                self.client.set_registered_model_alias(registered_name, "champion", version)
        self._models[info.model_id] = registered_name
        return info.model_id, version

    def run_filter(self, run_id: str) -> str:
        """The filter string (``mlflow.search_runs``, the UI's search box) that finds a run this
        tracker created, and runs of the same stage with the same code, params and data."""
        name, digest = self._created[run_id]
        return search_filter(name, digest)

    def runs_file(self, **entries) -> dict:
        """What a stage writes to its versioned runs file: the store and experiment, and ``entries``
        with every run id this tracker created replaced by its filter string and every logged model
        id by its registered name. No id, no time: the same code, params and data give the same file."""

        def searchable(value):
            if isinstance(value, str):
                return self.run_filter(value) if value in self._created else self._models.get(value, value)
            if isinstance(value, Mapping):
                return {key: searchable(item) for key, item in value.items()}
            if isinstance(value, list | tuple):
                return [searchable(item) for item in value]
            return value

        return {"tracking_uri": self.uri, "experiment": self.experiment} | searchable(entries)

    def find_run(self, filter_string: str) -> str | None:
        """The id of the latest run that ``filter_string`` finds, or None (a store reset since)."""
        found = self._call(
            "search_runs",
            [self.experiment_id],
            filter_string=filter_string,
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return found[0].info.run_id if found else None


# The largest value a curve point may have to be drawn: past it the loss has left any range a
# learning network visits (an overflow in the making), and one such point flattens the whole chart.
LARGEST_LOGGED = 1e100


def history_metrics(history, most: int, *, losses_only: bool = False) -> list[tuple[str, float, int]]:
    """Per-epoch curves as (key, value, step), thinned to ``most`` steps for the UI (the stage's
    CSV keeps every epoch); ``losses_only`` keeps the curves of the loss the fit minimised (a
    sweep's many runs: half the values to write, and the curve the sweep chooses by). They end at
    the last epoch that trained: a diverged run's curve stops before the epoch that blew up, and
    no non-finite or overflowing value is sent."""
    last = history.epochs_run if history.diverged_epoch is None else history.diverged_epoch
    if last <= 0 or not history.columns:
        return []
    steps = downsample_steps(last, most)
    keys = [key for key in history.columns if not losses_only or key.endswith(f"_{history.loss_name}")]
    return [
        (key, float(history.columns[key][step]), int(step))
        for key in keys
        for step in steps
        if math.isfinite(history.columns[key][step]) and abs(history.columns[key][step]) <= LARGEST_LOGGED
    ]


def model_metrics(scores: Mapping[str, Mapping[str, float]]) -> list[tuple[str, float, int]]:
    """The returned model's scores (the best epoch's weights when early stopping restored them),
    as ``model_<split>_<metric>``: keys of their own, so no curve jumps at its end."""
    return [
        (f"model_{split}_{name}", value, 0)
        for split, values in scores.items()
        for name, value in values.items()
        if math.isfinite(value)
    ]


def result_metrics(
    history, scores: Mapping[str, Mapping[str, float]], most: int, *, losses_only: bool = False
) -> list[tuple[str, float, int]]:
    """What every training run logs: its thinned curves and its model's scores; for a diverged
    fit only the epoch it diverged at (its outcome is a tag): its last losses before the overflow
    are billions, and one such value flattens every chart that shows the run."""
    if history.diverged:
        return [("diverged_epoch", history.diverged_epoch, 0)] if history.diverged_epoch is not None else []
    return history_metrics(history, most, losses_only=losses_only) + model_metrics(scores)


CV_SPLITS = ("val", "test")


def cv_metrics(
    stats: Mapping[str, float], loss: str, metrics: list[str], *, bounds: bool = True, counts: bool = True
) -> list[tuple[str, float, int]]:
    """Cross-validated numbers named as summary.csv's columns (``val_mse_mean``, ``test_mse_ci_low``,
    the outcome counts ``learned``, ``diverged``, ...), from such a row or its like: the loss's
    validation and test means first (what a run list is sorted by), then the other metrics' means,
    then with ``bounds`` each 95% interval, then with ``counts`` the fits and their outcomes.
    Nothing that is not a finite number (a point with no learned fit has no mean)."""
    order = [loss, *(metric for metric in metrics if metric != loss)]
    names = [f"{split}_{metric}_mean" for metric in order for split in CV_SPLITS]
    if bounds:
        names += [
            f"{split}_{metric}_{bound}" for metric in order for split in CV_SPLITS for bound in ("ci_low", "ci_high")
        ]
    if counts:
        names += ["fits", *OUTCOMES]
    values = [(name, stats.get(name)) for name in names]
    return [(name, float(value), 0) for name, value in values if value is not None and _finite(value)]


def point_metrics(row: Mapping, loss: str, metrics: list[str], rank: int, extra: list[str]) -> list:
    """A grid point's run: its ``cv_metrics``, its rank among the sweep's points of its task
    (``rank_val_<loss>``, 1 for the chosen one, as GridSearchCV's ``rank_test_score``; 0 for none)
    and the ``extra`` columns of its summary row (the lr limit)."""
    ranked = [(f"rank_val_{loss}", rank, 0)] if rank else []
    return cv_metrics(row, loss, metrics) + ranked + [(name, row[name], 0) for name in extra if _finite(row.get(name))]


def interval_tags(summary: Mapping[str, Mapping[str, float]], loss: str, outcomes: Mapping[str, int]) -> dict:
    """What a run whose metrics tab should stay on its curves and means (the train stage's) keeps
    as text instead: the loss's 95% intervals and the count of each outcome."""
    bounds = {split: summary[f"{split}_{loss}"] for split in CV_SPLITS if f"{split}_{loss}" in summary}
    tags = {f"{split}_{loss}_interval": f"{b['ci_low']:.6g} to {b['ci_high']:.6g}" for split, b in bounds.items()}
    return tags | {"outcomes": ", ".join(f"{count} {name}" for name, count in outcomes.items() if count)}


def version_record(task: str, loss: str, summary: Mapping[str, Mapping[str, float]], outcomes: Mapping[str, int]):
    """(description, tags) of a registered model version: the pipeline that made it (the DVC
    experiment and its baseline, or the branch and commit), the params it changed from that
    baseline (for a repro, from the commit) and its cross-validated headline."""
    experiment, baseline = os.environ.get("DVC_EXP_NAME"), os.environ.get("DVC_EXP_BASELINE_REV")
    commit, branch = _commit(), current_branch()
    changed = changed_params(baseline or "HEAD")
    changes = "unknown" if changed is None else "; ".join(f"{k}={v}" for k, v in changed.items()) or "none"
    tags = {"pipeline": pipeline_label(), "git_commit": commit, "git_branch": branch or "(detached)"} | dvc_tags()
    tags["params_changed"] = changes[:1000]
    test, val = summary[f"test_{loss}"], summary[f"val_{loss}"]
    tags |= {f"test_{loss}_mean": f"{test['mean']:.6g}", f"val_{loss}_mean": f"{val['mean']:.6g}"}
    tags |= interval_tags(summary, loss, outcomes)
    made_by = (
        f"DVC experiment {experiment} (baseline {(baseline or 'unknown')[:8]})"
        if experiment
        else f"dvc repro on {branch or 'a detached HEAD'} at {commit[:8]}"
    )
    label = LABELS.get(loss, loss)
    description = (
        f"The {task} network of {made_by}; params changed from {'its baseline' if experiment else 'the commit'}: "
        f"{changes[:1000]}. Cross-validated test {label} {test['mean']:.4g} (95% CI {test['ci_low']:.4g} to "
        f"{test['ci_high']:.4g}), validation {label} {val['mean']:.4g}, over {sum(outcomes.values())} folds "
        f"({tags['outcomes']}); the network shipped is one fold's."
    )
    return description, tags


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


@functools.cache
def _commit() -> str:
    return git_commit()


def run_tags(stage: str, **extra: str) -> dict[str, str]:
    tags = {
        "stage": os.environ.get("DVC_STAGE", stage),
        "mlflow.source.git.commit": _commit(),
        "mlflow.source.name": f"stages/{stage.split('@')[0]}.py",
    }
    return tags | dvc_tags() | {key: str(value) for key, value in extra.items()}


def dvc_tags() -> dict[str, str]:
    tags = {}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc_baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags


def pipeline_key() -> tuple[str, str]:
    """(tag value, run name) of the pipeline run this stage belongs to: the DVC experiment, or,
    for a plain `dvc repro`, a digest of the pipeline's code and definition (``backprop/``,
    ``stages/``, ``dvc.yaml``, ``params.yaml``): the same on every machine and clone, unlike a commit."""
    experiment = os.environ.get("DVC_EXP_NAME")
    if experiment:
        return f"exp:{experiment}", f"dvc exp {experiment}"
    digest = content_digest(["backprop", "stages", "dvc.yaml", "params.yaml"])[:DIGEST_LENGTH]
    return f"repro:{digest}", f"dvc repro {digest[:8]}"


def pipeline_label() -> str:
    """What run names carry of their pipeline: the DVC experiment's name, or the branch (``repro``
    on a detached HEAD) and the digest of the pipeline run's name (``pipeline_key``)."""
    experiment = os.environ.get("DVC_EXP_NAME")
    if experiment:
        return experiment
    digest = pipeline_key()[0].removeprefix("repro:")[:8]
    return f"{current_branch() or 'repro'} {digest}"


def changed_params(rev: str) -> dict[str, str] | None:
    """The params.yaml keys (flattened, ``train.lr``) whose values differ from those at git
    revision ``rev``; None when git cannot show that revision's params.yaml."""
    import yaml

    try:
        old = subprocess.run(["git", "show", f"{rev}:params.yaml"], capture_output=True, text=True, check=True).stdout
        before, now = flatten(yaml.safe_load(old) or {}), flatten(yaml.safe_load(Path("params.yaml").read_text()) or {})
    except (OSError, subprocess.CalledProcessError, yaml.YAMLError):
        return None
    return {key: value for key, value in now.items() if before.get(key) != value} | {
        key: "(removed)" for key in before.keys() - now.keys()
    }


def search_filter(run_key: str, digest: str) -> str:
    """The MLflow filter string for the runs keyed ``run_key`` (their name without the pipeline)
    whose stage had ``digest``."""
    quoted = run_key.replace("'", "\\'")
    return f"tags.{KEY_TAG} = '{quoted}' and tags.{DIGEST_TAG} = '{digest}'"
