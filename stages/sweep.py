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
from backprop.lab.datasets import fold_rows
from backprop.lab.executor import fit_pool
from backprop.lab.outputs import staged_outputs, write_table
from backprop.lab.protocol import overlap_ratio
from backprop.lab.stage_run import progress_bar, run_stage
from backprop.lab.sweeps import (
    best_points,
    cell,
    curve_rows,
    limit_jobs,
    limit_key,
    point_ranks,
    result_row,
    summarise,
    sweep_jobs,
)
from backprop.lab.tracking import Tracker, point_metrics, result_metrics, run_tags
from backprop.lab.training import fit_estimates, run_params
from backprop.losses import DEFAULT_LOSS
from backprop.metrics import SUMMARY_METRICS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", help="the sweep: a key of the sweep section (lr, activation, ...)")
    parser.add_argument("--settings", required=True, help="JSON file: task -> the train settings the sweep takes")
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--out", required=True, help="folder for results.csv, curves.csv and summary.csv")
    parser.add_argument("--runs", required=True, help="JSON file of the MLflow filter strings that find the runs")
    args = parser.parse_args()

    params = read_params()
    sweep = SweepConfig.from_params(section(params, "sweep"))  # its points checked against train.* by `settings`
    kept, tracking = load_curves(params), load_tracking(params)  # kept: the epochs curves.csv keeps
    spec = sweep.spec(args.name)
    inherited = json.loads(Path(args.settings).read_text())
    datasets = {task: load_prepared(args.prepared, task)[0] for task in spec.tasks}
    kinds = {task: datasets[task].kind for task in spec.tasks}
    points = {task: sweep.configs(args.name, inherited[task], task, kinds[task]) for task in spec.tasks}
    out = Path(args.out)
    most = tracking.max_logged_steps["sweep"]

    with staged_outputs() as outputs, fit_pool() as pool:
        shared = {task: pool.share(data) for task, data in datasets.items()}
        fits = sweep_jobs(args.name, sweep, inherited, datasets, shared)
        limits = limit_jobs(args.name, sweep, inherited, datasets, shared)
        running = pool.start(
            f"sweep {args.name}",
            fits + limits,
            lambda: fit_estimates([(datasets[job.key[1]], job.key[1], job.args[2]) for job in fits]),
        )
        tracker = Tracker(tracking.experiment)  # imported and opened while the first fits run
        stage = f"sweep@{args.name}"
        with (
            tracker.run(f"sweep-{args.name}", run_tags(stage, sweep=args.name)) as parent,
            progress_bar(len(fits) + len(limits), f"sweep {args.name}", unit="fit") as bar,
            contextlib.ExitStack() as point_runs,  # ended before the parent, FAILED with it
        ):
            sweep_params = {"name": args.name, "grid": spec.grid, "fixed": spec.fixed, "tasks": spec.tasks}
            tracker.log(parent, params={"sweep": sweep_params, "train": inherited})
            wheres, point_ids = {}, {}
            for task in spec.tasks:
                for index, (point, _) in enumerate(points[task]):
                    wheres[task, index] = where = " ".join(f"{key}={cell(value)}" for key, value in point.items())
                    tags = run_tags(stage, task=task, sweep=args.name, point=where)
                    run = tracker.run(f"{where} {task}", tags, parent_id=parent)
                    point_ids[task, index] = point_runs.enter_context(run)
            done, children = {}, {}
            for job, result in pool.completed(running):
                done[job.key] = result
                bar.update()
                if job.key[0] != "fit":
                    continue
                _, task, index, repeat, fold = job.key
                where = wheres[task, index]
                tags = run_tags(stage, task=task, sweep=args.name, point=where, repeat=repeat, fold=fold)
                children[job.key] = tracker.record(
                    f"{where} r{repeat}f{fold} {task}",
                    tags | {"outcome": result.outcome},
                    parent_id=point_ids[task, index],
                    params=run_params(task, result.config, kinds[task]),
                    metrics=result_metrics(result.history, result.scores, most, losses_only=True),
                )

            # Outputs in the jobs' order, whichever order the fits completed in.
            rows, curves, child_runs = [], [], []
            for job in fits:
                _, task, index, repeat, fold = job.key
                point, result = points[task][index][0], done[job.key]
                rows.append(result_row(task, point, repeat, fold, result, spec.reach))
                curves.append(
                    curve_rows(
                        task,
                        point,
                        repeat,
                        fold,
                        result,
                        epochs=result.config.epochs,
                        points=kept.points,
                        first=kept.first_epochs,
                    )
                )
                child_runs.append({"task": task, **point, "repeat": repeat, "fold": fold, "run": children[job.key]})
            table = pd.DataFrame(rows)
            ratios = {task: overlap_ratio(fold_rows(data)) for task, data in datasets.items()}
            metrics = {task: SUMMARY_METRICS[kind] for task, kind in kinds.items()}
            summary = summarise(table, spec.keys, metrics, ratios)
            limit = {}
            for job in limits:
                network = job.key[1]
                limit.setdefault(network, []).append(done[job.key])
            networks = [limit_key(task, config, kinds[task]) for task in spec.tasks for _, config in points[task]]
            columns = dict.fromkeys(column for folds in limit.values() for fold in folds for column in fold)
            for column in columns:  # lr_limit_unscaled: only a scaled regression target has one
                summary[column] = [
                    float(np.mean([fold.get(column, np.nan) for fold in limit[network]])) for network in networks
                ]
            losses = {task: DEFAULT_LOSS[kind] for task, kind in kinds.items()}  # ranked by the task's own loss
            best = best_points(summary, [], losses)
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
                metrics = point_metrics(row, losses[task], SUMMARY_METRICS[kinds[task]], rank, list(columns))
                tracker.log(point_id, params=run_params(task, config, kinds[task]), metrics=metrics)
                point_runs_file.append({"task": task, **point, "run": point_id})
            paths = [outputs.path(out / name) for name in ("results.csv", "curves.csv", "summary.csv")]
            write_table(table, paths[0])
            write_table(pd.concat(curves, ignore_index=True), paths[1])
            write_table(summary, paths[2])
            # The chosen point, as GridSearchCV's autologging has its best_params_ and best_score_.
            tracker.log(
                parent,
                params={"best": chosen},
                metrics=[
                    (f"best_{r['task']}_{split}_{losses[r['task']]}_mean", r[f"{split}_{losses[r['task']]}_mean"], 0)
                    for _, r in best.iterrows()
                    for split in ("val", "test")
                    if np.isfinite(r[f"{split}_{losses[r['task']]}_mean"])
                ],
                tags={f"best_{r['task']}": ", ".join(f"{k}={r[k]}" for k in spec.keys) for _, r in best.iterrows()},
            )
            tracker.log_artifacts(parent, paths)
            outputs.json(args.runs, tracker.runs_file(parent=parent, points=point_runs_file, children=child_runs))
    for _, row in best.iterrows():
        task, loss = row["task"], losses[row["task"]]
        where = ", ".join(f"{key}={row[key]}" for key in spec.keys)
        caveat = "" if row["every_fit_learned"] else "; no point learned in every fold"
        print(
            f"sweep {args.name}, {task}: lowest val {loss} at {where} "
            f"({row[f'val_{loss}_mean']:.4g} ± {row[f'val_{loss}_std']:.2g} over {row['fits']} folds{caveat}; "
            f"run {parent[:8]})"
        )


if __name__ == "__main__":
    run_stage(main)
