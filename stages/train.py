"""Cross-validate the train settings on every fold of each task; ship one fold's network as the
model; write metrics and curves; record MLflow runs (dvc stage `train`).

Every fold of both tasks trains at once through the stage's executor. The network of repeat 0,
fold 0 is the one saved as ``models/<task>`` and drawn in the learning curves (its test curve is
its held-out fold); the headline numbers are the mean and 95% interval over all folds.
"""

import argparse
import contextlib
from pathlib import Path

from backprop.lab.blocks import LABELS
from backprop.lab.config import load_kinds, load_tracking, load_train, read_params
from backprop.lab.datafiles import load_prepared
from backprop.lab.datasets import fold_data, fold_rows
from backprop.lab.executor import fit_pool
from backprop.lab.jobs import Job
from backprop.lab.outputs import staged_outputs, write_table
from backprop.lab.protocol import overlap_ratio
from backprop.lab.provenance import crowns_champion, run_tags, version_record
from backprop.lab.run_metrics import cv_metrics, interval_tags, result_metrics
from backprop.lab.stage_run import progress_bar, run_stage
from backprop.lab.sweeps import FitKey, fold_config, result_row
from backprop.lab.tracking import Tracker
from backprop.lab.training import cv_scores, describe_config, fit_estimates, fit_fold, headline, run_params
from backprop.losses import DEFAULT_LOSS
from backprop.metrics import TASK_METRICS

SHIPPED = (0, 0)  # the (repeat, fold) whose network becomes models/<task>


def summary_line(task: str, kind: str, scores: dict, run_id: str) -> str:
    """What the stage prints per task: the cross-validated test loss a reader compares, rounded."""
    loss = DEFAULT_LOSS[kind]
    test = scores["summary"][f"test_{loss}"]
    outcomes = ", ".join(f"{count} {name}" for name, count in scores["outcomes"].items() if count)
    return (
        f"train {task}: test {LABELS[loss]} {test['mean']:.4g} (95% CI {test['ci_low']:.4g} to {test['ci_high']:.4g}) "
        f"over {len(scores['folds'])} folds, {outcomes} (run {run_id[:8]})"
    )


def fold_jobs(datasets: dict, kinds: dict, configs: dict, pool) -> list[Job]:
    """Every fold of every task, keyed by its coordinates; the shipped fold also records its test curve."""
    jobs = []
    for task, kind in kinds.items():
        shared, folds = pool.share(datasets[task]), datasets[task].roles.shape[1]
        for repeat, fold in datasets[task].folds:
            config = fold_config(configs[task], repeat, fold, folds)
            jobs.append(
                Job(
                    FitKey(task, repeat, fold),
                    fit_fold,
                    (shared, kind, config, repeat, fold, (repeat, fold) == SHIPPED),
                    f"train {task} repeat {repeat} fold {fold} ({describe_config(config)})",
                )
            )
    return jobs


def task_run_params(task: str, schema: dict, config, kind: str) -> dict:
    """A task's run params: its train settings, the data it read and the cross-validation."""
    data_params = {"source": schema["source"], "sha256": schema["sha256"], "rows": schema["rows"]}
    cv = {"folds": schema["folds"], "repeats": schema["repeats"], "shipped": f"repeat {SHIPPED[0]} fold {SHIPPED[1]}"}
    return run_params(task, config, kind) | {"data": data_params, "cv": cv}


def record_task(tracker, tracking, champion: bool, task: str, kind: str, run_id: str, model_dir, scores: dict, shipped):
    """A task's own run, once its folds are in; returns its model's id (None when models are not logged).

    The model first: logging it links the metrics its run has at its step to it, which must be
    none of the curves. Then the shipped network's curves (its scores are its fold run's,
    model_<split>_<metric>), and the headline (means over folds, named as a sweep point's), the
    model's own; the intervals and outcomes as text, so that the metrics tab holds curves and means."""
    loss, summary = DEFAULT_LOSS[kind], scores["summary"]
    flat = {f"{key}_{stat}": value for key, stats in summary.items() for stat, value in stats.items()}
    model_id = None
    if tracking.log_models:  # registered once its version can say what it scores
        description, version_tags = version_record(task, loss, summary, scores["outcomes"])
        model_id, _ = tracker.log_model(
            run_id,
            model_dir,
            step=0,
            registered_name=f"{tracking.experiment}-{task}",
            champion=champion,
            description=description,
            version_tags=version_tags,
        )
    tracker.log(
        run_id,
        metrics=result_metrics(shipped.history, {}, tracking.max_logged_steps["train"]),
        tags={"outcome": shipped.outcome},
    )
    tracker.log(
        run_id,
        metrics=cv_metrics(flat, loss, TASK_METRICS[kind], bounds=False, counts=False),
        tags=interval_tags(summary, loss, scores["outcomes"]),
        model_id=model_id,
    )
    return model_id


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--models", required=True, help="folder for the MLflow model directories <task>/")
    parser.add_argument("--metrics", required=True, help="folder for <task>.json (headline) and <task>-scores.json")
    parser.add_argument("--plots", required=True, help="folder for <task>/history.csv")
    parser.add_argument("--runs", required=True, help="JSON file of the MLflow filter strings that find the runs")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    params = read_params()
    train, tracking, kinds = load_train(params), load_tracking(params), load_kinds(params)
    data = {task: load_prepared(args.prepared, task) for task in kinds}
    datasets = {task: data[task][0] for task in kinds}
    configs = {task: train.for_task(task, kind) for task, kind in kinds.items()}
    for line in train.overridden():
        print(line)
    champion = crowns_champion(tracking.champion_branch)
    run_ids, model_ids, model_dirs = {}, {}, {}
    with staged_outputs() as outputs, fit_pool() as pool, contextlib.ExitStack() as runs:
        jobs = fold_jobs(datasets, kinds, configs, pool)
        running = pool.start(
            "train",
            jobs,
            lambda: fit_estimates([(datasets[j.key.task], j.key.task, configs[j.key.task]) for j in jobs]),
        )
        tracker = Tracker(tracking.experiment)  # imported and opened while the first fits run
        from backprop.lab import pyfunc  # MLflow's model code: imported once the fits are running

        for task in kinds:
            run_ids[task] = runs.enter_context(tracker.run(f"train-{task}", run_tags("train", task=task)))
            tracker.log(run_ids[task], params=task_run_params(task, data[task][1], configs[task], kinds[task]))
            tracker.log_dataset(run_ids[task], data[task][1])

        def record_fold(job: Job, result) -> None:
            task, repeat, fold = job.key.task, job.key.repeat, job.key.fold
            tracker.record(
                f"train {task} r{repeat}f{fold}",
                run_tags("train", task=task, repeat=repeat, fold=fold) | {"outcome": result.outcome},
                parent_id=run_ids[task],
                params=run_params(task, result.config, kinds[task]),
                metrics=result_metrics(
                    result.history, result.scores, tracking.max_logged_steps["sweep"], losses_only=True
                ),
            )
            if (repeat, fold) == SHIPPED:
                model_dirs[task] = outputs.path(Path(args.models) / task)
                pyfunc.save(model_dirs[task], result.model, fold_data(datasets[task], repeat, fold))
                history = outputs.path(Path(args.plots) / task / "history.csv")
                write_table(result.history_frame(), history)
                tracker.log_artifacts(run_ids[task], [history])

        with progress_bar(len(jobs), "train", unit="fit") as bar:
            done = dict(zip((job.key for job in jobs), running.results(record_fold, bar), strict=True))
        for task, kind in kinds.items():
            rows = [result_row(task, {}, r, f, done[FitKey(task, r, f)]) for r, f in datasets[task].folds]
            scores = cv_scores(rows, kind, overlap_ratio(fold_rows(datasets[task])))
            own_lr = configs[task].lr if configs[task].lr != train.lr else None
            outputs.json(Path(args.metrics) / f"{task}.json", headline(task, scores, own_lr, kind))
            outputs.json(Path(args.metrics) / f"{task}-scores.json", scores)
            shipped = done[FitKey(task, *SHIPPED)]
            model_id = record_task(
                tracker, tracking, champion, task, kind, run_ids[task], model_dirs[task], scores, shipped
            )
            if model_id is not None:
                model_ids[task] = model_id
            print(summary_line(task, kind, scores, run_ids[task]))
        outputs.json(args.runs, tracker.runs_file(runs=run_ids, models=model_ids))


if __name__ == "__main__":
    run_stage(main)
