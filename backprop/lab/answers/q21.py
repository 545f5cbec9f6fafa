"""2.1: the average held-out MSE (log loss) and accuracy of each task's headline network, beside
the baselines on the same folds and, labelled as such, the reference hand-in's protocol. No I/O."""

from __future__ import annotations

import pandas as pd

from backprop.lab.answers.settings import as_point_value, settings_text
from backprop.lab.answers.wording import (
    found,
    interval,
    is_tie,
    metric_bounds,
    outcome_text,
    short_interval,
    short_point,
    table_number,
    verdict,
    whole,
)
from backprop.lab.blocks import LABELS, REFERENCE_HAND_IN, answer_row, fmt, is_reference_data, paragraph, section, table
from backprop.lab.protocol import OSCILLATION_STRETCH, STEP_TOLERANCE, fold_summary
from backprop.losses import DEFAULT_LOSS, TASKS
from backprop.metrics import TASK_METRICS
from backprop.mlp import DIVERGENCE_FACTOR


def short_scores(summary: dict, metrics: list[str], task: str) -> str:
    """``MSE 2939 (2544 to 3335), accuracy (1 − MAPE) 0.618 (0.589 to 0.646)``: the held-out loss
    and accuracy of the answers table, with 3 significant digits."""
    return ", ".join(
        f"{LABELS[m]}{' (1 − MAPE)' if m == 'accuracy' and task == 'regression' else ''} "
        f"{short_interval(summary.get(f'test_{m}', {}), metric_bounds(m, task))}"
        for m in (DEFAULT_LOSS[task], "accuracy") if m in metrics
    )  # fmt: skip


def rows_text(counts: list[int]) -> str:
    """``71`` or ``88–89``: the row counts of the folds."""
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}–{high}"


def outcomes_sentence(configs: dict) -> str:
    """What each outcome of a fit means (``protocol.outcome``), with the margin params.yaml sets."""
    margins = {float(config.get("learned_margin") or 0.0) for config in configs.values()}
    margin = (
        f"{100 * next(iter(margins)):g}%"
        if len(margins) == 1
        else ", ".join(f"{100 * float(c.get('learned_margin') or 0.0):g}% ({t})" for t, c in configs.items())
    )
    tolerance = f"{100 * STEP_TOLERANCE:g}%"
    return (
        f"**Outcomes** of a fit: `diverged` when its training loss became non-finite or rose above "
        f"{DIVERGENCE_FACTOR:,.0f}× its first epoch's; `oscillating` when its validation loss turned up and down "
        f"{OSCILLATION_STRETCH} or more times in a row (each step above {tolerance} of the loss) around the best "
        f"epoch or at the end; `stalled` when it never fell more than {tolerance} below its start; "
        f"`no_better_than_constant` when the returned model's validation loss is not below the constant model's "
        f"(the training mean, or the class prior) by {margin} (`train.learned_margin`); `learned` otherwise, and "
        "only learned fits enter the means and the paired comparisons; a sweep chooses among settings where "
        "every fold learned."
    )


def protocol_paragraph(schemas: dict, comparison: dict, configs: dict | None = None) -> dict:
    reg = schemas["regression"]
    folds, repeats = reg["folds"], reg["repeats"]
    sizes = reg["fold_rows"]
    return paragraph(
        f"**Protocol.** {folds}-fold cross-validation, repeated {repeats}× (stratified by class for "
        f"classification): each fold is held out once as the test rows; of the other rows a validation part "
        f"({rows_text(sizes['val'])} rows for regression) stops training early (best epoch's weights "
        f"restored) and makes every choice within a sweep (a learning rate, logistic regression's C; the "
        f"headline networks' own settings are params.yaml's `train`); the network learns on the "
        f"rest ({rows_text(sizes['train'])} rows). Features are standardised with the training "
        f"rows' statistics of each fold"
        + (
            "; so is the regression target, and every score, curve and prediction is mapped back to its units"
            if reg.get("scale_target")
            else ""
        )
        + f". Every model below is fitted on the same folds, so each comparison is paired by fold. Intervals: "
        f"{comparison['interval']} (clipped to the metric's range: losses ≥ 0, accuracy ≤ 1), "
        "(1/J + n_test/n_train)·s² for J folds with n_test/n_train = "
        + " and ".join(f"{fmt(r, 3)} ({task})" for task, r in comparison["n_test_over_n_train"].items())
        + ": the folds share training rows, so a plain t interval would be too narrow. With 5 folds such an "
        "interval is wide: a difference it calls a tie may still be real, it is just not shown by this run."
        + (f" {outcomes_sentence(configs)}" if configs else "")
    )


def _cv_cells(stats: dict, metrics: list[str], task: str = "") -> list[str]:
    return [interval(stats.get(f"test_{m}", {}), bounds=metric_bounds(m, task)) for m in metrics]


def _fold_stats(rows: pd.DataFrame, metrics: list[str], ratio: float) -> dict:
    return fold_summary(rows, [f"test_{m}" for m in metrics], ratio)


def sweep_choices_differ(task: str, config: dict, comparison: dict, in_units: frozenset = frozenset()) -> list[str]:
    """Where a sweep, choosing on validation, picked other settings than the headline network's.
    ``in_units``: the sweeps whose rates are multiples of each network's own limit, said so."""
    notes = []
    for name, answer in comparison[task]["sweeps"].items():
        if "capacity" in answer or "loss_mechanism" in answer:  # fixed budgets and reach levels: not a choice
            continue
        best = answer["best"]
        differs = {key: value for key, value in best.items() if key in config and as_point_value(config[key]) != value}
        if differs and all(key in config for key in best):
            unit = "× its own limit" if name in in_units and "lr" in best else ""
            notes.append(f"{name} sweep: {short_point(best)}{unit}")
    return notes


# The linear baseline of each task, as the answers name it.
LINEAR = {"regression": "ordinary least squares", "classification": "logistic regression, C chosen on validation"}


def models_table(task: str, scores: dict, baselines: dict, schema: dict, metrics: list[str], ratio: float) -> dict:
    """Every model on the held-out folds (mean and 95% interval), and on all rows as the reference
    hand-in's protocol did (with the hand-in's own numbers, for the table it was scored on)."""
    held_out = pd.DataFrame(baselines["held_out"])
    linear = LINEAR[task]
    kind = "Regressor" if task == "regression" else "Classifier"
    sklearn = f"scikit-learn MLP{kind}, same settings and early stopping"
    cv = f"held-out folds, mean (95% CI) over {len(scores[task]['folds'])}"
    table_rows = [["this network", cv, *_cv_cells(scores[task]["summary"], metrics, task)]]
    names = {"linear": linear, "sklearn": sklearn, "constant": "constant (training mean / class prior)"}
    for model, label in names.items():
        fits = held_out[(held_out["task"] == task) & (held_out["model"] == model)]
        if len(fits):
            table_rows.append([label, cv, *_cv_cells(_fold_stats(fits, metrics, ratio), metrics, task)])
    every = baselines["all_rows"][task]
    protocol = f"fit and scored on all {schema['rows']} rows"
    if task == "regression" and is_reference_data(schema):
        cells = [fmt(REFERENCE_HAND_IN.get(m)) if m in REFERENCE_HAND_IN else "not reported" for m in metrics]
        table_rows.append(["reference hand-in (**not from this run**)", protocol, *cells])
    for model, label in (("ours", "this network (no early stopping)"), ("linear", linear.split(",")[0]),
                         ("sklearn", "scikit-learn MLP (no early stopping)")):  # fmt: skip
        if model in every:
            table_rows.append([label, protocol, *[fmt(every[model].get(m)) for m in metrics]])
    return table(["model", "protocol", *[LABELS[m] for m in metrics]], table_rows)


def override_words(comparison: dict, task: str) -> str:
    """Why a task's override: what `train`'s own value gives where a sweep ran it (comparison.json's
    ``without_override``): its held-out loss with its interval and how many of its fits the epoch
    budget cut short; "" when no sweep ran it."""
    found = comparison.get(task, {}).get("without_override")
    if not found or not found.get("scores", {}).get("n"):
        return ""
    own = ", ".join(f"{key} {value}" for key, value in found.get("own", {}).items())
    label = LABELS.get(found["metric"].removeprefix("test_"), found["metric"])
    text = (
        f"with `train`'s own {own} instead (sweep {found['sweep']}'s {short_point(found['point'])}), held-out {label} "
        f"{interval(found['scores'], 3)}"
    )
    versus = found.get("minus_headline")
    if versus and versus.get("n"):
        text += f"; it − the headline: {table_number(versus)}" + (
            ": held-out loss gives no reason for the override" if is_tie(versus) else ""
        )
    capped = f"{found['capped']} of {found['learned']} fits"
    if versus and "headline_capped" in versus:
        capped += f" at {own}, {versus['headline_capped']} of the headline's"
    return text + f" (still improving when the epoch budget ran out: {capped})"


def task_answer(
    task: str,
    scores: dict,
    baselines: dict,
    comparison: dict,
    schema: dict,
    config: dict,
    ratio: float,
    overrides: dict,
    in_units: frozenset = frozenset(),
) -> tuple[list[dict], dict]:
    """One task's part of 2.1: its blocks (data and settings, the models table, the splits, the
    verdicts, its answer) and its row of the answers table."""
    metrics = [m for m in TASK_METRICS[task] if f"test_{m}" in scores[task]["summary"]]
    reference = task == "regression" and is_reference_data(schema)
    linear = LINEAR[task]
    folds = len(scores[task]["folds"])
    differ = sweep_choices_differ(task, config, comparison, in_units)
    blocks = [
        paragraph(
            f"**{task.capitalize()}**: `{schema['source']}` ({schema['rows']} rows, {len(schema['features'])} "
            f"features, target `{schema['target']}`). Network: {settings_text(task, config, overrides)}"
            + (f"; where a sweep chose otherwise: {'; '.join(differ)}" if differ else "")
            + f". Outcomes over folds: {outcome_text(scores[task]['outcomes'])}."
        ),
        models_table(task, scores, baselines, schema, metrics, ratio),
    ]
    splits = [
        [
            split,
            *[
                interval(scores[task]["summary"].get(f"{split}_{m}", {}), bounds=metric_bounds(m, task))
                for m in metrics
            ],
        ]
        for split in ("train", "val", "test")
    ]
    blocks.append(
        table(["this network, rows", *[LABELS[m] for m in metrics]], splits, f"{task}: train, val, test per fold")
    )
    loss = DEFAULT_LOSS[task]
    verdicts = []
    for model, label in (("linear", linear.split(",")[0]), ("sklearn", "scikit-learn's MLP"),
                         ("constant", "the constant model")):  # fmt: skip
        versus = comparison[task].get(f"network_vs_{model}")
        if versus:
            verdicts.append(f"against {label}, {verdict(versus, lower='lower', higher='higher')}")
    blocks.append(
        paragraph(f"**{task.capitalize()}, test {LABELS[loss]} of this network** " + "; ".join(verdicts) + ".")
    )
    summary = scores[task]["summary"]
    versus = comparison[task].get("network_vs_linear", {})
    shown = " and ".join(
        f"{LABELS[m]}{' (1 − MAPE)' if m == 'accuracy' and task == 'regression' else ''} "
        f"{interval(summary.get(f'test_{m}', {}), bounds=metric_bounds(m, task))}"
        for m in (loss, "accuracy") if m in metrics
    )  # fmt: skip
    source = "params.yaml `train`"
    if overrides.get(task):
        keys = ", ".join(f"{key} {config[key]}" for key in overrides[task])
        source += f" with `train.overrides.{task}` ({keys})"
    against = linear.split(",")[0]
    short = f"Held-out {short_scores(summary, metrics, task)}; " + (
        f"no difference from {against} detected."
        if is_tie(versus)
        else f"{found(versus, lower='lower', higher='higher')} than {against}."
    )
    every = baselines["all_rows"].get(task, {})
    if task == "regression" and "ours" in every and "linear" in every:
        short += (
            f" Fitted and scored on all {schema['rows']} rows: network {whole(every['ours'][loss])}, {against} "
            f"{whole(every['linear'][loss])}"
            + (f", reference hand-in {whole(REFERENCE_HAND_IN['mse'])}" if reference else "")
            + "."
        )
    sentence = (
        f"{task.capitalize()}: held-out {shown} (mean, 95% CI, over {folds} folds; "
        f"{outcome_text(scores[task]['outcomes'])}); against {linear.split(',')[0]}, "
        f"{verdict(versus, lower='lower', higher='higher')}; settings from {source}"
        + (f" ({override_words(comparison, task)})" if overrides.get(task) and override_words(comparison, task) else "")
        + (
            f"; the sweeps picked other settings on validation ({'; '.join(differ)}); the headline network keeps "
            "the settings above"
            if differ
            else ""
        )
        + "."
    )
    blocks.append(paragraph(f"**Answer ({task}):** {sentence}"))
    row = answer_row(
        f"2.1 average {LABELS[loss]} and accuracy, {task}",
        "q21",
        short,
        table_number(versus, f"network − {against}, test {LABELS[loss]}"),
    )
    return blocks, row


def regression_notes(baselines: dict, schemas: dict, configs: dict, ratios: dict) -> list[dict]:
    """What regression's accuracy is (and what the constant model scores on it), and the network
    fitted and scored on all rows, as the reference hand-in was."""
    held_out = pd.DataFrame(baselines["held_out"])
    reg, schema = baselines["all_rows"]["regression"], schemas["regression"]
    reference = is_reference_data(schema)
    constant = held_out[(held_out["task"] == "regression") & (held_out["model"] == "constant")]
    blocks = []
    if "accuracy" in constant:
        constant_accuracy = _fold_stats(constant, ["accuracy"], ratios["regression"])["test_accuracy"]
        blocks.append(
            paragraph(
                "**Accuracy for regression** is 1 − mean(|y − ŷ| / |y|), one minus the mean absolute percentage "
                f"error{', as in the reference hand-in' if reference else ''}. It is not a probability (it can be "
                "negative), it weighs an error of 30 on a target of 50 six times more than the same error on 300, "
                "and the constant model already scores "
                f"{interval(constant_accuracy, bounds=(None, 1.0))}. "
                "MSE and R² are the honest measures; R² is 1 − MSE / variance of y."
            )
        )
    if "ours" in reg and "linear" in reg:
        blocks.append(
            paragraph(
                f"**All rows.** Fitted and scored on every row{', as the reference hand-in did' if reference else ''}, "
                f"the network reaches MSE {fmt(reg['ours']['mse'])} against {fmt(reg['linear']['mse'])} for least "
                "squares"
                + (f" (the reference stopped at {fmt(REFERENCE_HAND_IN['mse'])})" if reference else "")
                + f", after {configs['regression']['epochs']} epochs at lr {configs['regression']['lr']}. Scored on "
                "the rows it was fitted to, this measures fit, not generalisation: the held-out folds above are the "
                "answer."
            )
        )
    return blocks


def answer_21(
    scores: dict,
    baselines: dict,
    comparison: dict,
    schemas: dict,
    configs: dict,
    ratios: dict,
    overrides=None,
    in_units: frozenset = frozenset(),
) -> dict:
    """``in_units``: the sweeps whose rates are multiples of each network's own limit."""
    overrides = overrides or {}
    blocks, rows = [protocol_paragraph(schemas, comparison, configs)], []
    for task in TASKS:
        found_blocks, row = task_answer(
            task, scores, baselines, comparison, schemas[task], configs[task], ratios[task], overrides, in_units
        )
        blocks += found_blocks
        rows.append(row)
    blocks += regression_notes(baselines, schemas, configs, ratios)
    return section("2.1 Average MSE and accuracy", blocks, "q21", answers=rows)
