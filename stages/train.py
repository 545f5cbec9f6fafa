"""Train one network per task, write weights, metrics and curves, record MLflow runs (dvc stage `train`)."""

import argparse
import contextlib
from pathlib import Path

from backprop.lab.config import load_tracking, load_train, read_params
from backprop.lab.executor import Job, fit_pool
from backprop.lab.io import load_prepared, progress_bar, run_stage, staged_outputs, write_table
from backprop.lab.tracking import Tracker, result_metrics, run_tags
from backprop.lab.training import describe_config, run_params, train_model
from backprop.losses import TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--models", required=True, help="folder for <task>.npz")
    parser.add_argument("--metrics", required=True, help="folder for <task>.json")
    parser.add_argument("--plots", required=True, help="folder for <task>/history.csv")
    parser.add_argument("--runs", required=True, help="JSON file for the MLflow run ids")
    args = parser.parse_args()

    params = read_params()
    train, tracking = load_train(params), load_tracking(params)
    data = {task: load_prepared(args.prepared, task) for task in TASKS}
    configs = {task: train.for_task(task) for task in TASKS}
    tracker = Tracker(tracking.experiment)
    with staged_outputs() as outputs, fit_pool() as pool, contextlib.ExitStack() as runs:
        jobs = [
            Job(
                task,
                train_model,
                (pool.share(data[task][0]), task, configs[task]),
                f"train {task} ({describe_config(configs[task])})",
            )
            for task in TASKS
        ]
        print(f"train: {len(jobs)} fits on {pool.description}")
        run_ids = {}
        for task in TASKS:  # the runs exist, RUNNING, while their networks train
            run_ids[task] = runs.enter_context(tracker.run(f"train-{task}", run_tags("train", task=task)))
            schema = data[task][1]
            data_params = {"source": schema["source"], "sha256": schema["sha256"], "rows": schema["rows"]}
            tracker.log(run_ids[task], params=run_params(task, configs[task]) | {"data": data_params})
            tracker.log_dataset(run_ids[task], schema)
        with progress_bar(len(jobs), "train", unit="fit") as bar:
            for job, result in pool.completed(jobs):
                task, run_id, prepared = job.key, run_ids[job.key], data[job.key][0]
                weights = outputs.path(Path(args.models) / f"{task}.npz")
                result.model.save(weights)
                history = outputs.path(Path(args.plots) / task / "history.csv")
                write_table(result.history_frame(), history)
                outputs.json(Path(args.metrics) / f"{task}.json", result.summary())
                metrics = result_metrics(result.history, result.scores, tracking.max_logged_steps["train"])
                tracker.log(run_id, metrics=metrics, tags={"diverged": str(result.history.diverged).lower()})
                tracker.log_artifacts(run_id, [history, weights])
                if tracking.log_models:
                    tracker.log_model(run_id, weights, prepared.features, prepared.mean, prepared.std)
                print(f"{task}: test {result.scores['test']}  (MLflow run {run_id})")
                bar.update()
        outputs.json(args.runs, {"tracking_uri": tracker.uri, "runs": run_ids})


if __name__ == "__main__":
    run_stage(main)
