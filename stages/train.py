"""Train one network per task, write models, metrics and curves, record MLflow runs (dvc stage `train`).

Both tasks train at once through the stage's executor; their runs exist, RUNNING, while they do."""

import argparse
import contextlib
from pathlib import Path

from backprop.lab import pyfunc
from backprop.lab.config import load_tracking, load_train, read_params
from backprop.lab.executor import Job, fit_pool
from backprop.lab.io import load_prepared, progress_bar, run_stage, staged_outputs, write_table
from backprop.lab.tracking import Tracker, crowns_champion, result_metrics, run_tags
from backprop.lab.training import RunResult, describe_config, fit_estimates, run_params, train_model
from backprop.losses import TASKS


def summary_line(result: RunResult, run_id: str) -> str:
    """What the stage prints per task: the test scores a reader compares, rounded."""
    history, test = result.history, result.scores["test"]
    if history.diverged:
        scores = f"diverged at epoch {history.diverged_epoch}"
    elif result.task == "regression":
        scores = f"test MSE {test['mse']:.1f}, R² {test['r2']:.2f}, accuracy {test['accuracy']:.3f}"
    else:
        scores = f"test log loss {test['log_loss']:.3f}, accuracy {test['accuracy']:.3f}"
    if not history.diverged and history.best_epoch is not None:
        scores += f", best epoch {history.best_epoch} of {history.epochs_run}"
    return f"train {result.task}: {scores}, {result.outcome} (run {run_id[:8]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--models", required=True, help="folder for the MLflow model directories <task>/")
    parser.add_argument("--metrics", required=True, help="folder for <task>.json (headline) and <task>-scores.json")
    parser.add_argument("--plots", required=True, help="folder for <task>/history.csv")
    parser.add_argument("--runs", required=True, help="JSON file for the MLflow run ids")
    args = parser.parse_args()

    params = read_params()
    train, tracking = load_train(params), load_tracking(params)
    data = {task: load_prepared(args.prepared, task) for task in TASKS}
    configs = {task: train.for_task(task) for task in TASKS}
    champion = crowns_champion(tracking.champion_branch)
    run_ids, model_ids = {}, {}
    with staged_outputs() as outputs, fit_pool() as pool, contextlib.ExitStack() as runs:
        tracker = Tracker(tracking.experiment)  # opened while the workers start
        jobs = [
            Job(
                task,
                train_model,
                (pool.share(data[task][0]), task, configs[task]),
                f"train {task} ({describe_config(configs[task])})",
            )
            for task in TASKS
        ]
        pool.announce("train", fit_estimates([(data[task][0], task, configs[task]) for task in TASKS]))
        for task in TASKS:
            run_ids[task] = runs.enter_context(tracker.run(f"train-{task}", run_tags("train", task=task)))
            schema = data[task][1]
            data_params = {"source": schema["source"], "sha256": schema["sha256"], "rows": schema["rows"]}
            tracker.log(run_ids[task], params=run_params(task, configs[task]) | {"data": data_params})
            tracker.log_dataset(run_ids[task], schema)
        with progress_bar(len(jobs), "train", unit="fit") as bar:
            for job, result in pool.completed(jobs):
                task, run_id, prepared = job.key, run_ids[job.key], data[job.key][0]
                model_dir = outputs.path(Path(args.models) / task)
                pyfunc.save(model_dir, result.model, prepared)
                history = outputs.path(Path(args.plots) / task / "history.csv")
                write_table(result.history_frame(), history)
                outputs.json(Path(args.metrics) / f"{task}.json", result.headline())
                outputs.json(Path(args.metrics) / f"{task}-scores.json", result.summary())
                metrics = result_metrics(result.history, result.scores, tracking.max_logged_steps["train"])
                tracker.log(
                    run_id,
                    metrics=metrics,
                    tags={"diverged": str(result.history.diverged).lower(), "outcome": result.outcome},
                )
                tracker.log_artifacts(run_id, [history])
                if tracking.log_models:
                    model_ids[task], _ = tracker.log_model(
                        run_id,
                        model_dir,
                        step=0,  # the step of the model_<split>_<metric> scores: they are the model's
                        registered_name=f"{tracking.experiment}-{task}",
                        champion=champion,
                    )
                print(summary_line(result, run_id))
                bar.update()
        outputs.json(args.runs, tracker.runs_file(runs=run_ids, models=model_ids))


if __name__ == "__main__":
    run_stage(main)
