"""The paired comparisons over folds that the report's conclusions rest on (dvc stage `compare`):
our network against every baseline, each sweep's settings against its best (each at its own
best learning rate), capacity against width, log loss against MSE."""

import argparse
import json
from pathlib import Path

import pandas as pd

from backprop.lab.comparisons import (
    against_baselines,
    best_vs_baseline,
    capacity,
    each_minus_headline,
    epochs_at_chosen_lr,
    failures,
    headline_vs_tuned,
    loss_mechanism,
    reach_at_common_rate,
    settings_compared,
    without_override,
)
from backprop.lab.config import load_kinds, load_sweep, load_train, read_params
from backprop.lab.datafiles import read_csv
from backprop.lab.datasets import TRUE_FUNCTION
from backprop.lab.outputs import staged_outputs
from backprop.lab.protocol import overlap_ratio
from backprop.lab.stage_run import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepared", required=True, help="folder with <task>/schema.json (the folds' sizes)")
    parser.add_argument("--metrics", required=True, help="folder with <task>-scores.json and baselines.json")
    parser.add_argument("--sweeps", required=True, help="folder with <name>/results.csv of every configured sweep")
    parser.add_argument("--out", required=True, help="the JSON file of comparisons")
    args = parser.parse_args()

    params = read_params()
    sweep, metrics, kinds, train = load_sweep(params), Path(args.metrics), load_kinds(params), load_train(params)
    schemas = {task: json.loads((Path(args.prepared) / task / "schema.json").read_text()) for task in kinds}
    ratios = {task: overlap_ratio(schema["fold_rows"]) for task, schema in schemas.items()}
    baselines = pd.DataFrame(json.loads((metrics / "baselines.json").read_text())["held_out"])
    comparison = {
        "interval": "95% t interval over folds with Nadeau and Bengio's variance correction",
        "n_test_over_n_train": ratios,
    }
    networks = {
        task: pd.DataFrame(json.loads((metrics / f"{task}-scores.json").read_text())["folds"]) for task in kinds
    }
    for task, kind in kinds.items():
        comparison[task] = against_baselines(networks[task], baselines, task, ratios[task], kind) | {"sweeps": {}}
    tables = {}
    for name in sweep.specs:
        spec, results = sweep.spec(name), read_csv(Path(args.sweeps) / name / "results.csv")
        for task in spec.tasks:
            comparison[task]["sweeps"][name] = sweep_answer(
                spec, results, task, kinds[task], ratios[task], networks[task], baselines
            )
        tables[name] = results
    for task, kind in kinds.items():
        untuned = without_override(
            train, sweep, task, kind, tables, comparison[task]["sweeps"], ratios[task], networks[task]
        )
        comparison[task] |= {"without_override": untuned} if untuned else {}
    with staged_outputs() as outputs:
        outputs.json(args.out, comparison)
    for task in kinds:
        versus = comparison[task]["network_vs_linear"]
        print(
            f"compare {task}: network − linear on held-out folds {versus['mean']:.4g} "
            f"(95% CI {versus['ci_low']:.4g} to {versus['ci_high']:.4g}, wins {versus['wins']}/{versus['n']})"
        )


def sweep_answer(spec, results: pd.DataFrame, task: str, kind: str, ratio: float, network, baselines) -> dict:
    """One sweep's comparisons on one task: its settings against its best, the best against the
    baselines and the headline network, every point against the headline, epochs and failures."""
    answer = settings_compared(results, task, spec.keys, ratio, kind)
    answer["best_vs_linear"] = best_vs_baseline(results, answer, baselines, task, "linear", ratio)
    if TRUE_FUNCTION in set(baselines.loc[baselines["task"] == task, "model"]):  # a generated table
        answer["best_vs_true_function"] = best_vs_baseline(results, answer, baselines, task, TRUE_FUNCTION, ratio)
    answer["headline_vs_best"] = headline_vs_tuned(network, results, task, answer, ratio)
    answer["each_minus_headline"] = each_minus_headline(network, results, task, spec.keys, ratio, kind)
    answer["epochs_minus_headline"] = each_minus_headline(
        network, results, task, spec.keys, ratio, kind, column="best_epoch"
    )
    answer["epochs_at_chosen_lr"] = epochs_at_chosen_lr(results, task, spec.keys, answer["best"], ratio)
    answer["failures"] = failures(results, task, spec.keys)
    if spec.fixed.get("lr_unit") == "limit":  # its lr values are multiples of each network's own limit
        answer["lr_unit"] = "limit"
    if spec.kind == "capacity":
        answer["capacity"] = capacity(results, task, "hidden", ratio, kind)
    for curve in spec.reach:
        if spec.kind == "loss_curves" and task == "classification":
            answer["loss_mechanism"] = loss_mechanism(results, curve, ratio)
        elif spec.kind != "loss_curves":
            answer["reach_at_common_rate"] = reach_at_common_rate(
                results, task, spec.keys, answer["best"], curve, spec.reach[curve], ratio
            )
    return answer


if __name__ == "__main__":
    run_stage(main)
