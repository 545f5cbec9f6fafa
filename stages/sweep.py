"""Train every point of sweep.<name>'s grid on every cross-validation fold (dvc stages `sweep@<name>`).

Every fit goes through the stage's executor (local worker processes, or a Dask cluster), each
trained by the same ``train_model`` as the train stage; beside them, the lr limit of each network
at initialisation. Only this process talks to MLflow: one parent run per sweep, one child run
per grid point with its cross-validated numbers (as scikit-learn's GridSearchCV is autologged), and
under each point one run per fit, logged as each fit completes.

The train settings come from ``--settings`` (the settings stage's file: the train keys this
sweep's grid and ``fixed`` leave), not from params.yaml's train section, which this stage does
not depend on.
"""

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from backprop.lab.config import SweepConfig, load_curves, load_tracking, read_params, section
from backprop.lab.datafiles import load_prepared
from backprop.lab.executor import fit_pool
from backprop.lab.jobs import Job
from backprop.lab.outputs import staged_outputs, write_table
from backprop.lab.provenance import run_tags
from backprop.lab.run_metrics import point_metrics, result_metrics
from backprop.lab.stage_run import progress_bar, run_stage
from backprop.lab.sweeps import (
    FitKey,
    best_points,
    cell,
    fit_tables,
    limit_jobs,
    point_ranks,
    summary_table,
    sweep_jobs,
)
from backprop.lab.tracking import Tracker
from backprop.lab.training import fit_estimates, run_params
from backprop.losses import DEFAULT_LOSS
from backprop.metrics import SUMMARY_METRICS


def open_point_runs(tracker, runs: contextlib.ExitStack, stage: str, name: str, points: dict, parent: str):
    """One run per (task, point) under the sweep's: (task, index) -> the point as text, and -> its run id."""
    wheres, point_ids = {}, {}
    for task, task_points in points.items():
        for index, (point, _) in enumerate(task_points):
            wheres[task, index] = where = " ".join(f"{key}={cell(value)}" for key, value in point.items())
            tags = run_tags(stage, task=task, sweep=name, point=where)
            point_ids[task, index] = runs.enter_context(tracker.run(f"{where} {task}", tags, parent_id=parent))
    return wheres, point_ids


def record_points(tracker, summary, spec, points, point_ids, kinds, losses, columns) -> tuple[list, dict]:
    """Each point's run: its params and cross-validated numbers with its rank; returns the rows
    of the runs file and the chosen point of each task."""
    rows_by_point = {
        (row["task"], *(row[key] for key in spec.keys)): (row, rank)
        for (_, row), rank in zip(summary.iterrows(), point_ranks(summary, losses), strict=True)
    }
    point_runs_file, chosen = [], {}
    for (task, index), point_id in point_ids.items():
        point, config = points[task][index]
        # A point whose key is empty (null in params) has no summary row: pandas groups it out.
        row, rank = rows_by_point.get((task, *(cell(point[key]) for key in spec.keys)), ({}, 0))
        if rank == 1:
            chosen[task] = point  # its values as params.yaml has them (a layer list as a list)
        metrics = point_metrics(row, losses[task], SUMMARY_METRICS[kinds[task]], rank, columns)
        tracker.log(point_id, params=run_params(task, config, kinds[task]), metrics=metrics)
        point_runs_file.append({"task": task, **point, "run": point_id})
    return point_runs_file, chosen


def record_best(tracker, parent: str, best: pd.DataFrame, chosen: dict, keys: list[str], losses: dict) -> None:
    """The chosen point, as GridSearchCV's autologging has its best_params_ and best_score_."""
    tracker.log(
        parent,
        params={"best": chosen},
        metrics=[
            (f"best_{r['task']}_{split}_{losses[r['task']]}_mean", r[f"{split}_{losses[r['task']]}_mean"], 0)
            for _, r in best.iterrows()
            for split in ("val", "test")
            if np.isfinite(r[f"{split}_{losses[r['task']]}_mean"])
        ],
        tags={f"best_{r['task']}": ", ".join(f"{k}={r[k]}" for k in keys) for _, r in best.iterrows()},
    )


def best_lines(name: str, best: pd.DataFrame, keys: list[str], losses: dict, parent: str) -> list[str]:
    """What the stage prints: each task's lowest validation loss and where."""
    lines = []
    for _, row in best.iterrows():
        task, loss = row["task"], losses[row["task"]]
        where = ", ".join(f"{key}={row[key]}" for key in keys)
        caveat = "" if row["every_fit_learned"] else "; no point learned in every fold"
        lines.append(
            f"sweep {name}, {task}: lowest val {loss} at {where} "
            f"({row[f'val_{loss}_mean']:.4g} ± {row[f'val_{loss}_std']:.2g} over {row['fits']} folds{caveat}; "
            f"run {parent[:8]})"
        )
    return lines


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", help="the sweep: a key of the sweep section (lr, activation, ...)")
    parser.add_argument("--settings", required=True, help="JSON file: task -> the train settings the sweep takes")
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--out", required=True, help="folder for results.csv, curves.csv and summary.csv")
    parser.add_argument("--runs", required=True, help="JSON file of the MLflow filter strings that find the runs")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    params = read_params()
    sweep = SweepConfig.from_params(section(params, "sweep"))  # its points checked against train.* by `settings`
    kept, tracking = load_curves(params), load_tracking(params)  # kept: the epochs curves.csv keeps
    spec = sweep.spec(args.name)
    inherited = json.loads(Path(args.settings).read_text())
    datasets = {task: load_prepared(args.prepared, task)[0] for task in spec.tasks}
    kinds = {task: datasets[task].kind for task in spec.tasks}
    points = {task: sweep.configs(args.name, inherited[task], task, kinds[task]) for task in spec.tasks}
    losses = {task: DEFAULT_LOSS[kind] for task, kind in kinds.items()}  # ranked by the task's own loss
    stage, out = f"sweep@{args.name}", Path(args.out)

    with staged_outputs() as outputs, fit_pool() as pool:
        shared = {task: pool.share(data) for task, data in datasets.items()}
        fits = sweep_jobs(args.name, sweep, inherited, datasets, shared)
        limits = limit_jobs(args.name, sweep, inherited, datasets, shared)
        fit_keys = [job.key for job in fits]
        running = pool.start(
            f"sweep {args.name}",
            fits + limits,
            lambda: fit_estimates([(datasets[k.task], k.task, points[k.task][k.point][1]) for k in fit_keys]),
        )
        tracker = Tracker(tracking.experiment)  # imported and opened while the first fits run
        with (
            tracker.run(f"sweep-{args.name}", run_tags(stage, sweep=args.name)) as parent,
            progress_bar(len(fits) + len(limits), f"sweep {args.name}", unit="fit") as bar,
            contextlib.ExitStack() as point_runs,  # ended before the parent, FAILED with it
        ):
            sweep_params = {"name": args.name, "grid": spec.grid, "fixed": spec.fixed, "tasks": spec.tasks}
            tracker.log(parent, params={"sweep": sweep_params, "train": inherited})
            wheres, point_ids = open_point_runs(tracker, point_runs, stage, args.name, points, parent)
            children = {}

            def record_fit(job: Job, result) -> None:
                key = job.key
                if not isinstance(key, FitKey):  # an lr limit: a column of its points' rows
                    return
                where = wheres[key.task, key.point]
                tags = run_tags(stage, task=key.task, sweep=args.name, point=where, repeat=key.repeat, fold=key.fold)
                children[key] = tracker.record(
                    f"{where} r{key.repeat}f{key.fold} {key.task}",
                    tags | {"outcome": result.outcome},
                    parent_id=point_ids[key.task, key.point],
                    params=run_params(key.task, result.config, kinds[key.task]),
                    metrics=result_metrics(
                        result.history, result.scores, tracking.max_logged_steps["sweep"], losses_only=True
                    ),
                )

            results = running.results(record_fit, bar)
            table, curves = fit_tables(fit_keys, results[: len(fits)], points, spec, kept)
            limit_keys = [job.key for job in limits]
            summary, columns = summary_table(table, limit_keys, results[len(fits) :], spec, points, datasets)
            best = best_points(summary, [], losses)
            point_runs_file, chosen = record_points(tracker, summary, spec, points, point_ids, kinds, losses, columns)
            paths = [outputs.path(out / name) for name in ("results.csv", "curves.csv", "summary.csv")]
            for frame, path in zip((table, curves, summary), paths, strict=True):
                write_table(frame, path)
            record_best(tracker, parent, best, chosen, spec.keys, losses)
            tracker.log_artifacts(parent, paths)
            child_runs = [
                {"task": k.task, **points[k.task][k.point][0], "repeat": k.repeat, "fold": k.fold, "run": children[k]}
                for k in fit_keys
            ]
            outputs.json(args.runs, tracker.runs_file(parent=parent, points=point_runs_file, children=child_runs))
    for line in best_lines(args.name, best, spec.keys, losses, parent):
        print(line)


if __name__ == "__main__":
    run_stage(main)
