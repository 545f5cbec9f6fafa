"""Vary one train key over sweep.<name>.values × sweep.seeds (dvc stages `sweep@<name>`).

Every fit goes through the stage's executor (local worker processes, or a Dask cluster), each
trained by the same ``train_model`` as the train stage. Only this process talks to MLflow: one
parent run per sweep, one nested child run per fit, logged as each fit completes.
"""

import argparse
from pathlib import Path

import pandas as pd

from backprop.lab.config import load_sweep, load_tracking, load_train, read_params
from backprop.lab.executor import fit_pool
from backprop.lab.io import load_prepared, progress_bar, run_stage, staged_outputs, write_table
from backprop.lab.sweeps import best_value, curve_rows, result_row, sweep_jobs
from backprop.lab.tracking import Tracker, result_metrics, run_tags
from backprop.lab.training import fit_estimates, run_params
from backprop.losses import DEFAULT_LOSS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", help="the sweep: a key of the sweep section (lr, hidden, ...)")
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--out", required=True, help="folder for results.csv and curves.csv")
    parser.add_argument("--runs", required=True, help="JSON file for the MLflow run ids")
    args = parser.parse_args()

    params = read_params()
    train, sweep, tracking = load_train(params), load_sweep(params), load_tracking(params)
    spec = sweep.spec(args.name)
    prepared = {task: load_prepared(args.prepared, task)[0] for task in spec.tasks}
    out = Path(args.out)
    most = tracking.max_logged_steps["sweep"]

    with staged_outputs() as outputs, fit_pool() as pool:
        tracker = Tracker(tracking.experiment)  # opened while the workers start
        jobs = sweep_jobs(args.name, sweep, train, {task: pool.share(data) for task, data in prepared.items()})
        pool.announce(f"sweep {args.name}", fit_estimates([(prepared[j.args[1]], *j.args[1:]) for j in jobs]))
        parent_tags = run_tags(f"sweep@{args.name}", sweep=args.name)
        with (
            tracker.run(f"sweep-{args.name}", parent_tags) as parent,
            progress_bar(len(jobs), f"sweep {args.name}", unit="fit") as bar,
        ):
            sweep_params = {"name": args.name, "values": spec.values, "tasks": spec.tasks, "seeds": sweep.seeds}
            tracker.log(parent, params={"sweep": sweep_params, "train": train.as_params()})
            results, children = {}, {}
            for job, result in pool.completed(jobs):
                task, index, seed = job.key
                value = spec.values[index]
                tags = run_tags(f"sweep@{args.name}", task=task, sweep=args.name, sweep_value=value, seed=seed)
                children[job.key] = tracker.record(
                    f"{args.name}={value} seed={seed} {task}",
                    tags | {"diverged": str(result.history.diverged).lower()},
                    parent_id=parent,
                    params=run_params(task, result.config),
                    metrics=result_metrics(result.history, result.scores, most),
                )
                results[job.key] = result
                bar.update()

            # Outputs in the jobs' order, whichever order the fits completed in.
            rows, curves, child_runs = [], [], []
            for job in jobs:
                task, index, seed = job.key
                value, result = spec.values[index], results[job.key]
                rows.append(result_row(args.name, task, value, seed, result))
                curves.append(
                    curve_rows(task, value, seed, result, epochs=result.config.epochs, points=sweep.curve_points)
                )
                child_runs.append({"task": task, "value": value, "seed": seed, "run": children[job.key]})
            table = pd.DataFrame(rows)
            losses = {task: DEFAULT_LOSS[task] for task in spec.tasks}  # ranked by the task's metric
            best = best_value(table, losses)
            results_path = outputs.path(out / "results.csv")
            write_table(table, results_path)
            curves_path = outputs.path(out / "curves.csv")
            write_table(pd.concat(curves, ignore_index=True), curves_path)
            tracker.log(
                parent,
                metrics=[(f"best_{task}_val_{losses[task]}", b["mean"], 0) for task, b in best.items()],
                tags={f"best_{task}_{args.name}": b["value"] for task, b in best.items()},
            )
            tracker.log_artifacts(parent, [results_path, curves_path])
            outputs.json(args.runs, tracker.runs_file(parent=parent, children=child_runs))
    for task, b in best.items():
        caveat = "" if b["every_seed_learned"] else "; no value learned in every seed"
        print(
            f"sweep {args.name}, {task}: lowest val {losses[task]} at {args.name}={b['value']} "
            f"({b['mean']:.4g} ± {b['std']:.2g}{caveat}; run {parent[:8]})"
        )


if __name__ == "__main__":
    run_stage(main)
