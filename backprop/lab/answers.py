"""The answers to 2.1–2.5 and section 3, as report sections built from this run's files: the
sweeps' summaries, the cross-validated scores and the paired comparisons (metrics/comparison.json).
No I/O. Every conclusion is a sentence generated from a comparison with its interval; a
difference whose 95% interval contains 0 is stated as "no difference detected", never a ranking,
with where any difference lies and the smallest one this design detects with 80% power. Each
section ends with its answer, which is also its row of the answers table that opens the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from backprop.lab.blocks import (
    LABELS,
    REFERENCE_HAND_IN,
    answer_row,
    figure,
    fmt,
    is_reference_data,
    paragraph,
    section,
    table,
)
from backprop.lab.mechanisms import SATURATION_SLOPE, SATURATION_Z
from backprop.lab.protocol import OUTCOMES, fold_summary, paired_difference
from backprop.losses import DEFAULT_LOSS, TASKS
from backprop.metrics import TASK_METRICS

# ---- words for numbers --------------------------------------------------------------------------


def number(stats: dict, key: str) -> float:
    """``stats[key]`` as a float: missing, None (a NaN in JSON) and NaN are all NaN."""
    value = stats.get(key) if stats else None
    return math.nan if value is None else float(value)


def interval(stats: dict, digits: int = 4, bounds: tuple = (None, None)) -> str:
    """``2939 (2569 to 3310)`` from a mean_interval / paired_difference dict; ``bounds``: the
    metric's range (``metric_bounds``), to which the interval's ends are clipped."""
    mean, low, high = number(stats, "mean"), number(stats, "ci_low"), number(stats, "ci_high")
    if bounds[0] is not None and math.isfinite(low):
        low = max(low, bounds[0])
    if bounds[1] is not None and math.isfinite(high):
        high = min(high, bounds[1])
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(low):
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} ({fmt(low, digits)} to {fmt(high, digits)})"


def metric_bounds(metric: str, task: str) -> tuple:
    """The range of a score: losses are ≥ 0, R² ≤ 1, accuracy ≤ 1 (and ≥ 0 for classification;
    regression's 1 − MAPE can be negative). A t interval ignores it, so its ends are clipped."""
    name = metric.split("_", 1)[1] if metric.split("_", 1)[0] in ("train", "val", "test") else metric
    if name in ("mse", "rmse", "log_loss"):
        return (0.0, None)
    if name == "r2":
        return (None, 1.0)
    if name == "accuracy":
        return (0.0 if task == "classification" else None, 1.0)
    return (None, None)


def whole(value: float) -> str:
    """A number for the answers table: whole above 100 (an MSE, an epoch count), else 3 digits."""
    return f"{value:.0f}" if math.isfinite(value) and abs(value) >= 100 else fmt(value, 3)


def short_interval(stats: dict) -> str:
    """``-589 (-1258 to 80)``: ``interval`` with ``whole`` numbers, for the answers table."""
    mean, low, high = number(stats, "mean"), number(stats, "ci_low"), number(stats, "ci_high")
    if not math.isfinite(low):
        return whole(mean)
    return f"{whole(mean)} ({whole(low)} to {whole(high)})"


def verdict(difference: dict, *, lower: str, higher: str) -> str:
    """A paired difference a − b in words: ``lower`` / ``higher`` only when its 95% interval
    excludes 0, else "no difference detected"; always with the interval and wins."""
    low, high = number(difference, "ci_low"), number(difference, "ci_high")
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 <= high:
        finding = "no difference detected"
    else:
        finding = lower if high < 0 else higher
    mde = number(difference, "mde")
    detectable = f", detectable {fmt(mde, 3)}" if finding == "no difference detected" and math.isfinite(mde) else ""
    return (
        f"{finding} (difference {fmt(number(difference, 'mean'), 3)}, 95% CI {fmt(low, 3)} to {fmt(high, 3)}"
        f"{detectable}; better in {difference['wins']} of {difference['n']} folds)"
    )


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def is_tie(difference: dict) -> bool:
    """No interval, or one that contains 0."""
    low, high = number(difference, "ci_low"), number(difference, "ci_high")
    return not (math.isfinite(low) and math.isfinite(high)) or low <= 0 <= high


def found(difference: dict, *, lower: str, higher: str) -> str:
    """``lower`` / ``higher`` when the interval excludes 0, else "no difference detected"."""
    if is_tie(difference):
        return "no difference detected"
    return lower if number(difference, "ci_high") < 0 else higher


def tie_cell(difference: dict, digits: int = 3) -> str:
    """For a tie: where any difference lies, and the smallest one the design detects with 80%
    power (from the folds' spread, with the interval's corrected variance); empty otherwise."""
    if not is_tie(difference):
        return ""
    low, high, mde = number(difference, "ci_low"), number(difference, "ci_high"), number(difference, "mde")
    if not math.isfinite(low):
        return "too few paired folds for an interval"
    return f"any difference lies between {fmt(low, digits)} and {fmt(high, digits)}; detectable: {fmt(mde, digits)}"


def flipped(difference: dict) -> dict:
    """b − a from a − b: the interval mirrored, the detectable size unchanged."""
    return difference | {
        "mean": -number(difference, "mean"),
        "ci_low": -number(difference, "ci_high"),
        "ci_high": -number(difference, "ci_low"),
        "wins": difference.get("n", 0) - difference.get("wins", 0),
    }


def _plain(value):
    """A pandas cell as the plain Python value comparison.json holds."""
    return value.item() if hasattr(value, "item") else value


def point_text(point: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in point.items())


def outcome_text(counts: dict) -> str:
    return ", ".join(f"{int(counts[name])} {name}" for name in OUTCOMES if counts.get(name))


def times(value: float) -> str:
    """``62.9×`` or ``7.8×10⁵×``: a ratio of losses, readable across orders of magnitude."""
    if not math.isfinite(value) or value < 1000:
        return f"{fmt(value, 3)}×"
    exponent = math.floor(math.log10(value))
    digits = str(exponent).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{value / 10**exponent:.2g}×10{digits}×"


# A fit whose training loss rose this far above its start before it stopped improving blew up,
# whatever label (stalled, oscillating) its validation curve earned it.
BLOW_UP = 100.0


def summary_outcomes(row: pd.Series, failed: dict | None = None) -> str:
    """The outcome counts; with ``failed`` (the point's entry of comparison.json's ``failures``)
    beside stalled or oscillating fits how far their training loss rose above its start, since
    such a label may hide a blow-up short of the divergence threshold."""
    text = outcome_text({name: row[name] for name in OUTCOMES})
    peak = number(failed or {}, "peak_ratio_max")
    if (row.get("stalled", 0) or row.get("oscillating", 0)) and math.isfinite(peak) and peak > 1.01:
        low = number(failed or {}, "peak_ratio_min")
        span = times(peak) if low == peak else f"{times(low).removesuffix('×')} to {times(peak)}"
        text += f" (training loss of the fits that neither learned nor diverged rose {span} its start"
        text += ": blew up)" if low > BLOW_UP else ")"
    return text


HEATMAP_NOTE = (
    "; the colours show means only, and most of their differences are within the folds' spread (the "
    "comparisons above say which are not)"
)
# Below this many fits that learned, a t interval (1 or 2 degrees of freedom) is too wide to say
# anything and can leave the metric's range: the mean is shown alone, with its count.
MIN_FITS_FOR_INTERVAL = 3


def mean_ci(row: pd.Series, column: str) -> str:
    learned = row.get("learned", MIN_FITS_FOR_INTERVAL)
    if learned < MIN_FITS_FOR_INTERVAL:
        mean = number({"mean": row.get(f"{column}_mean")}, "mean")
        return f"{fmt(mean)} (of {int(learned)})" if math.isfinite(mean) else "n/a"
    stats = {k: row.get(f"{column}_{k}", math.nan) for k in ("mean", "ci_low", "ci_high")}
    return interval(stats, bounds=metric_bounds(column, str(row.get("task", ""))))


def compared_settings(answer: dict, noun: str) -> str:
    """The sweep's choice and every other setting against it, on the held-out folds."""
    metric = LABELS[answer["metric"].removeprefix("test_")]
    best = point_text(answer["best"])
    parts = [
        f"Best on validation ({answer['chosen_by'].replace('_', ' ')}, mean over folds, among {noun}s where every "
        f"fold learned): **{best}**. Each other {noun} against it on the held-out folds (test {metric}, best on "
        f"validation − other: negative means the best on validation had the lower {metric})"
    ]
    better, worse, ties = [], [], []
    for versus in answer["best_minus_other"]:
        label = f"{point_text(versus['other'])}: {interval(versus, 3)}"
        low, high = number(versus, "ci_low"), number(versus, "ci_high")
        if math.isfinite(low) and low > 0:
            better.append(label)
        elif math.isfinite(low) and high < 0:
            worse.append(label)
        else:
            ties.append(f"{label}, detectable {fmt(number(versus, 'mde'), 3)}")
    if worse:
        parts.append(f"detectably worse: {'; '.join(worse)}")
    if better:
        parts.append(f"detectably better than the best on validation: {'; '.join(better)}")
    if ties:
        parts.append(f"no difference detected: {'; '.join(ties)}")
    grid = answer.get("grid_lr")
    if grid:
        edge = [
            point_text(s["point"])
            for s in answer["settings"]
            if s["every_fold_learned"] and s["point"]["lr"] in (grid[0], grid[-1])
        ]
        if edge:
            parts.append(
                f"best learning rate at an end of the grid (lr {fmt(grid[0])} to {fmt(grid[-1])}), so a wider "
                f"grid might move it: {'; '.join(edge)}"
            )
    failed = [s for s in answer["settings"] if not s["every_fold_learned"]]
    if failed:
        parts.append(
            f"not compared because no learning rate learned in every fold: "
            f"{'; '.join(point_text(s['point']) + ' (' + outcome_text(s['outcomes']) + ')' for s in failed)}"
        )
    return parts[0] + ": " + "; ".join(parts[1:]) + "."


# ---- 2.1 ------------------------------------------------------------------------------------------


def rows_text(counts: list[int]) -> str:
    """``71`` or ``88–89``: the row counts of the folds."""
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}–{high}"


def protocol_paragraph(schemas: dict, comparison: dict) -> dict:
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
    )


def _cv_cells(stats: dict, metrics: list[str], task: str = "") -> list[str]:
    return [interval(stats.get(f"test_{m}", {}), bounds=metric_bounds(m, task)) for m in metrics]


def _fold_stats(rows: pd.DataFrame, metrics: list[str], ratio: float) -> dict:
    return fold_summary(rows, [f"test_{m}" for m in metrics], ratio)


def effective_patience(config: dict) -> int:
    """The patience early stopping used (``TrainConfig.stopping_patience``): ``patience``, but
    never fewer than ``patience_share`` of the epoch budget; 0 stays off."""
    patience = int(config.get("patience") or 0)
    if not patience:
        return 0
    share = float(config.get("patience_share") or 0.0)
    return max(patience, math.ceil(share * int(config.get("epochs") or 0)))


def patience_text(config: dict) -> str:
    """Early stopping as it ran: the effective patience, with the rule behind it when the share
    of the budget raised it above ``patience``."""
    patience = int(config.get("patience") or 0)
    if not patience:
        return "no early stopping"
    effective = effective_patience(config)
    if effective == patience:
        return f"early stopping after {patience} epochs without improvement (patience {patience})"
    return (
        f"early stopping after {effective} epochs without improvement (patience {patience}, at least "
        f"{fmt(config['patience_share'])} of the {config['epochs']}-epoch budget)"
    )


def intro_patience(configs: dict) -> str:
    """Early stopping across the headline networks, each task's effective patience in brackets
    where a share of the budget raised it above ``patience``."""
    texts = {patience_text(config) for config in configs.values()}
    if len(texts) == 1:
        return next(iter(texts))
    rules = {(config.get("patience"), config.get("patience_share")) for config in configs.values()}
    if len(rules) > 1:
        return "; ".join(f"{task} {patience_text(config)}" for task, config in configs.items())
    patience, share = next(iter(rules))
    each = ", ".join(f"{task} {effective_patience(config)}" for task, config in configs.items())
    return f"early stopping after max({patience}, {fmt(share)} × the epoch budget) epochs without improvement ({each})"


def settings_text(task: str, config: dict, overrides: dict) -> str:
    """A task's headline network and where its settings come from (params.yaml)."""
    text = (
        f"hidden {_same(config['hidden'])}, {config['activation']}, lr {config['lr']}, at most {config['epochs']} "
        f"epochs, batch {config['batch_size'] or 'full'}, {patience_text(config)}, from params.yaml `train`"
    )
    keys = overrides.get(task, [])
    if keys:
        text += f" with `train.overrides.{task}` setting {', '.join(f'`{key}`' for key in keys)}"
    return text


def sweep_choices_differ(task: str, config: dict, comparison: dict, in_units: frozenset = frozenset()) -> list[str]:
    """Where a sweep, choosing on validation, picked other settings than the headline network's.
    ``in_units``: the sweeps whose rates are multiples of each network's own limit, said so."""
    notes = []
    for name, answer in comparison[task]["sweeps"].items():
        if "capacity" in answer or "loss_mechanism" in answer:  # fixed budgets and reach levels: not a choice
            continue
        best = answer["best"]
        differs = {key: value for key, value in best.items() if key in config and _same(config[key]) != value}
        if differs and all(key in config for key in best):
            unit = "× its own limit" if name in in_units and "lr" in best else ""
            notes.append(f"{name} sweep: {short_point(best)}{unit}")
    return notes


def _same(value):
    """A setting as a sweep's point holds it (a one-layer width as its integer)."""
    return int(value[0]) if isinstance(value, list | tuple) and len(value) == 1 else value


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
    blocks, rows = [protocol_paragraph(schemas, comparison)], []
    held_out = pd.DataFrame(baselines["held_out"])
    for task in TASKS:
        schema, config = schemas[task], configs[task]
        metrics = [m for m in TASK_METRICS[task] if f"test_{m}" in scores[task]["summary"]]
        reference = task == "regression" and is_reference_data(schema)
        linear = "ordinary least squares" if task == "regression" else "logistic regression, C chosen on validation"
        kind = "Regressor" if task == "regression" else "Classifier"
        sklearn = f"scikit-learn MLP{kind}, same settings and early stopping"
        folds = len(scores[task]["folds"])
        cv = f"held-out folds, mean (95% CI) over {folds}"
        table_rows = [["this network", cv, *_cv_cells(scores[task]["summary"], metrics, task)]]
        names = {"linear": linear, "sklearn": sklearn, "constant": "constant (training mean / class prior)"}
        for model, label in names.items():
            fits = held_out[(held_out["task"] == task) & (held_out["model"] == model)]
            if len(fits):
                table_rows.append([label, cv, *_cv_cells(_fold_stats(fits, metrics, ratios[task]), metrics, task)])
        every = baselines["all_rows"][task]
        protocol = f"fit and scored on all {schema['rows']} rows"
        if reference:
            cells = [fmt(REFERENCE_HAND_IN.get(m)) if m in REFERENCE_HAND_IN else "not reported" for m in metrics]
            table_rows.append(["reference hand-in (**not from this run**)", protocol, *cells])
        for model, label in (("ours", "this network (no early stopping)"), ("linear", linear.split(",")[0]),
                             ("sklearn", "scikit-learn MLP (no early stopping)")):  # fmt: skip
            if model in every:
                table_rows.append([label, protocol, *[fmt(every[model].get(m)) for m in metrics]])
        differ = sweep_choices_differ(task, config, comparison, in_units)
        blocks.append(
            paragraph(
                f"**{task.capitalize()}**: `{schema['source']}` ({schema['rows']} rows, {len(schema['features'])} "
                f"features, target `{schema['target']}`). Network: {settings_text(task, config, overrides)}"
                + (f"; where a sweep chose otherwise: {'; '.join(differ)}" if differ else "")
                + f". Outcomes over folds: {outcome_text(scores[task]['outcomes'])}."
            )
        )
        blocks.append(table(["model", "protocol", *[LABELS[m] for m in metrics]], table_rows))
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
        relation = (
            f"no difference from {against} detected"
            if is_tie(versus)
            else f"{found(versus, lower='lower', higher='higher')} than {against}"
        )
        short = (
            f"Held-out {shown}; {relation}"
            + (
                f" (settings the sweeps picked on validation instead, not tested here: {'; '.join(differ)})"
                if differ
                else ""
            )
            + "."
        )
        if reference:
            short += (
                f" The reference hand-in's {fmt(REFERENCE_HAND_IN['mse'])} was scored on the rows it was fitted to: "
                "not comparable."
            )
        sentence = (
            f"{task.capitalize()}: held-out {shown} (mean, 95% CI, over {folds} folds; "
            f"{outcome_text(scores[task]['outcomes'])}); against {linear.split(',')[0]}, "
            f"{verdict(versus, lower='lower', higher='higher')}; settings from {source}"
            + (
                f"; the sweeps picked other settings on validation ({'; '.join(differ)}); the headline network keeps "
                "the settings above"
                if differ
                else ""
            )
            + "."
        )
        blocks.append(paragraph(f"**Answer ({task}):** {sentence}"))
        rows.append(
            answer_row(
                f"2.1 average {LABELS[loss]} and accuracy, {task}",
                "q21",
                short,
                f"network − {linear.split(',')[0]}, test {LABELS[loss]}: {interval(versus, 3)}",
                tie_cell(versus),
            )
        )
    reg, schema = baselines["all_rows"]["regression"], schemas["regression"]
    reference = is_reference_data(schema)
    constant = held_out[(held_out["task"] == "regression") & (held_out["model"] == "constant")]
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
    return section("2.1 Average MSE and accuracy", blocks, "q21", answers=rows)


# ---- 2.2 ------------------------------------------------------------------------------------------


# history.csv keeps 6 significant digits: epochs whose values agree to this relative tolerance are
# one minimum "within rounding", whatever the engine's full-precision argmin was.
ROUNDING = 1e-6


def lowest_epochs(curve: pd.Series) -> tuple[int, int]:
    """The first and last epoch at which ``curve`` is at its minimum within the CSV's rounding."""
    low = float(curve.min())
    at = np.flatnonzero(np.abs(curve.to_numpy() - low) <= ROUNDING * abs(low))
    return int(at[0]), int(at[-1])


def curve_facts(history: pd.DataFrame, loss: str, best: int | None) -> dict:
    """Where the shipped fit's validation and held-out curves bottom out (within the CSV's
    rounding; a minimum at the last epoch is censored: the curve was still falling), and train
    against validation at the epoch early stopping kept (its last epoch without early stopping)."""
    val, train = history[f"val_{loss}"], history[f"train_{loss}"]
    kept = len(history) - 1 if best is None else int(best)
    facts = {
        "val_low": lowest_epochs(val),
        "kept": kept,
        "train": float(train.iloc[kept]),
        "val": float(val.iloc[kept]),
    }
    facts["last"] = len(history) - 1
    if f"test_{loss}" in history:
        test = history[f"test_{loss}"]
        facts["test_low"] = lowest_epochs(test)
        facts["test_at_low"], facts["test_at_kept"] = float(test.min()), float(test.iloc[kept])
    return facts


def epochs_text(span: tuple[int, int]) -> str:
    return f"epoch {span[0]}" if span[0] == span[1] else f"epochs {span[0]}–{span[1]} (equal to 6 digits)"


def where_lowest(facts: dict, loss: str) -> str:
    """Where fold 0's validation and held-out curves bottom out, in words, with the size of the
    held-out loss missed at the kept epoch."""
    label = LABELS[loss]
    text = f"validation {label} lowest at {epochs_text(facts['val_low'])}, kept {facts['kept']}"
    if "test_low" not in facts:
        return text
    if facts["test_low"][1] == facts["last"]:
        return text + f"; held-out {label} still falling when training stopped (epoch {facts['last']})"
    missed = facts["test_at_kept"] - facts["test_at_low"]
    return text + (
        f"; held-out {label} lowest at {epochs_text(facts['test_low'])}: the kept epoch's "
        f"{fmt(facts['test_at_kept'], 3)} is {fmt(missed, 3)} ({fmt(100 * missed / facts['test_at_low'], 2)}%) above "
        f"that minimum {fmt(facts['test_at_low'], 3)}"
    )


def gap_across_folds(folds: list[dict], loss: str, ratio: float) -> dict:
    """Validation − train loss at each fold's returned weights, paired by fold, with its interval."""
    val = [f.get(f"val_{loss}", math.nan) if f.get("outcome", "learned") == "learned" else math.nan for f in folds]
    train = [f.get(f"train_{loss}", math.nan) for f in folds]
    return paired_difference(val, train, test_train_ratio=ratio)


def answer_22(histories: dict, scores: dict, configs: dict, ratios: dict | None = None) -> dict:
    blocks, rows = [], []
    for task in TASKS:
        history, folds = histories[task], scores[task]["folds"]
        loss = DEFAULT_LOSS[task]
        val, train = history[f"val_{loss}"], history[f"train_{loss}"]
        shipped = folds[0]
        last = float(val.iloc[-1])
        text = (
            f"**{task.capitalize()}** (the network of repeat 0, fold 0, shipped as `models/{task}`; its test curve "
            f"is its held-out fold): {shipped['epochs_run']} epochs run"
        )
        if shipped["best_epoch"] is not None:
            best = int(shipped["best_epoch"])
            text += (
                f"; {patience_text(configs[task])} restored the weights of epoch {best}, the "
                f"last epoch whose validation {LABELS[loss]} beat the best before it by more than the tolerance "
                f"({fmt(float(val[best]))})"
            )
        else:
            text += " without early stopping: the network is the last epoch's"
        text += (
            f"; at the last epoch train is {fmt(float(train.iloc[-1]))} and validation {fmt(last)}, "
            f"{fmt(100 * (last / float(val.min()) - 1), 2)}% above the lowest validation {LABELS[loss]}."
        )
        if all(f["best_epoch"] is not None for f in folds):
            text += f" Best epochs over all folds: {', '.join(str(f['best_epoch']) for f in folds)}."
        capped = [f for f in folds if f["still_improving"]]
        if capped:
            text += (
                f" In {len(capped)} of {len(folds)} folds the best epoch is the last one: those fits were still "
                "improving when the epoch budget ran out."
            )
        facts = curve_facts(history, loss, shipped["best_epoch"])
        epochs = [f["best_epoch"] if f["best_epoch"] is not None else f["epochs_run"] - 1 for f in folds]
        # Epochs are not scores: a t interval of 5 of them can leave the range; the folds' range is the spread.
        spread = (
            f"median {fmt(float(np.median(epochs)), 6).removesuffix('.0')} (range {min(epochs)} to {max(epochs)} over "
            f"{len(epochs)} folds)"
        )
        gap = gap_across_folds(folds, loss, (ratios or {}).get(task, 0.0))
        budget = f"{len(capped)} of {len(folds)} folds still improving at the {configs[task]['epochs']}-epoch cap"
        if capped:
            budget += " (a lower bound on their epoch)"
        gap_words = found(gap, lower="validation detectably lower", higher="validation detectably higher")
        short = (
            f"Fold 0 ([loss and accuracy curves](#q22)): {where_lowest(facts, loss)}. Validation − train, all "
            f"folds: {gap_words}; {budget}."
        )
        gap_number = f"validation − train {LABELS[loss]}: {interval(gap, 3)}"
        sentence = (
            f"{task.capitalize()}: the epoch early stopping keeps is {spread}. {short} ({gap_number}"
            + (f"; {tie_cell(gap)}" if is_tie(gap) else "")
            + ")"
        )
        blocks += [
            paragraph(text),
            figure(f"history_{task}.png", f"{task}: loss and accuracy per epoch, train/val/test"),
            paragraph(f"**Answer ({task}):** {sentence}"),
        ]
        rows.append(
            answer_row(
                f"2.2 loss and accuracy against iterations, {task}",
                "q22",
                short,
                f"{gap_number}; epoch kept: {spread}",
                tie_cell(gap),
            )
        )
    blocks.append(
        paragraph(
            "Row e of each curve is the network after e updates; the full curves are `plots/<task>/history.csv` "
            "(and an artifact of the MLflow run), so `dvc plots diff` compares them across experiments."
        )
    )
    return section("2.2 Loss and accuracy as a function of the number of iterations", blocks, "q22", answers=rows)


# ---- 2.3–2.5 --------------------------------------------------------------------------------------


def summary_table(
    summary: pd.DataFrame,
    keys: list[str],
    task: str,
    limit: bool = True,
    improving: str = "validation",
    failed: list | None = None,
) -> dict:
    """``improving``: the loss whose fall at the last epoch marks a fit cut by the budget
    (validation with early stopping; train without); ``failed``: comparison.json's ``failures``."""
    failed_at = {point_text(entry["point"]): entry for entry in failed or []}
    loss = DEFAULT_LOSS[task]
    rows = summary[summary["task"] == task]
    header = [
        *keys,
        "folds by outcome",
        f"{improving} loss still falling at the last epoch (of the learned fits)",
        "mean best epoch",
    ]
    header += [f"train {LABELS[loss]}", f"val {LABELS[loss]}", f"test {LABELS[loss]}"]
    if limit and "lr_limit" in rows:
        header.append("lr limit at init")
    body = []
    for _, row in rows.iterrows():
        point = point_text({key: _plain(row[key]) for key in keys})
        cells = [str(row[key]) for key in keys] + [summary_outcomes(row, failed_at.get(point))]
        cells += [str(int(row.get("capped", 0))), fmt(row.get("best_epoch_mean"), 3)]
        cells += [mean_ci(row, f"{split}_{loss}") for split in ("train", "val", "test")]
        if limit and "lr_limit" in rows:
            cells.append(fmt(row["lr_limit"], 3))
        body.append(cells)
    caption = (
        f"{task}: mean (95% CI) over the folds that learned (the mean alone when fewer than "
        f"{MIN_FITS_FOR_INTERVAL} did); a fit still improving at its last epoch was stopped by the epoch budget, "
        "not by early stopping"
    )
    return table(header, body, caption)


def limit_sentence(summary: pd.DataFrame, task: str, group: list[str], in_units: bool = False) -> str:
    """Where training broke against the lr limit at initialisation, per setting of ``group``.
    ``in_units``: the sweep's rates are multiples of each network's own limit already (``lr_unit:
    limit``), so the rate is its own multiple and "past the limit" means a rate above 1."""
    parts = []
    rows = summary[summary["task"] == task]

    def multiple(lr: float, limit: float) -> str:
        return f"{fmt(lr)}× the limit" if in_units else f"{fmt(lr)} ({fmt(lr / limit, 2)}× the limit)"

    for values, part in rows.groupby(group, sort=False) if group else [((), rows)]:
        limit = float(part["lr_limit"].iloc[0])
        complete = part[part["learned"] == part["fits"]]
        broken = part[part["learned"] < part["fits"]]
        largest = complete["lr"].max() if len(complete) else None
        first_broken = broken["lr"].min() if len(broken) else None
        label = point_text(dict(zip(group, values if isinstance(values, tuple) else (values,), strict=True)))
        text = f"{label + ': ' if label else ''}limit {fmt(limit, 3)}"
        if largest is None:
            text += ", no lr learned in every fold"
        else:
            text += f", largest lr that learned in every fold {multiple(largest, limit)}"
        if first_broken is not None:
            text += f", smallest that did not {multiple(first_broken, limit)}"
        above = complete[complete["lr"] > (1.0 if in_units else limit)]
        if len(above) and "peak_train_loss_ratio_max" in above:
            peak = float(above["peak_train_loss_ratio_max"].max())
            if peak > 1.01:
                text += (
                    f"; above the limit, at the rates where every fold learned, the training loss first rose to up "
                    f"to {times(peak)} its start before it fell (a catapult: a quadratic model predicts divergence)"
                )
        parts.append(text)
    return "; ".join(parts)


def speed_sentence(summary: pd.DataFrame, task: str) -> str:
    """How many epochs the fits took (their mean best epoch) at each rate where every fold learned,
    marking the means that the epoch budget cut short: a description, not a comparison."""
    rows = summary[(summary["task"] == task) & (summary["learned"] == summary["fits"])].sort_values("lr")
    if len(rows) < 2:
        return ""
    means = []
    for _, row in rows.iterrows():
        text = f"{fmt(row['best_epoch_mean'], 3)} at lr {fmt(row['lr'])}"
        if row["capped"]:
            text += (
                f" ({int(row['capped'])} of {int(row['fits'])} folds still improving when the budget ran out: "
                "a lower bound)"
            )
        means.append(text)
    return (
        "**Epochs.** Mean best epoch, at each rate where every fold learned: "
        + "; ".join(means)
        + ". The paired comparisons above are what the conclusion rests on; these means only say where each "
        "rate's fits stopped."
    )


def headline_comparison(answer: dict, headline: dict) -> tuple[str, dict] | None:
    """The number a sweep's answer rests on: the setting best on validation minus the headline
    setting (params.yaml `train`, matched on the sweep's keys other than lr), paired by fold; when
    the headline setting is the best, minus the runner-up on validation."""
    chosen = answer["best"]
    keys = [key for key in chosen if key != "lr" or list(chosen) == ["lr"]]
    target = {key: _same(headline[key]) for key in keys if key in headline}
    versus = [v for v in answer["best_minus_other"] if all(v["other"].get(k) == x for k, x in target.items())]
    # Each setting is compared at its own best rate: the headline's width (or activation), not its lr.
    words = {"hidden": "width"}
    label = "headline " + " and ".join(words.get(key, key) for key in target) if target else "headline"
    if target and "lr" in chosen and "lr" not in target:
        label += ", at its best lr"
    if not versus or all(chosen.get(k) == x for k, x in target.items()):
        val = {point_text(s["point"]): s["val_mean"] for s in answer["settings"] if s["every_fold_learned"]}
        ranked = sorted(answer["best_minus_other"], key=lambda v: val.get(point_text(v["other"]), math.inf))
        versus, label = ranked[:1], "runner-up"
    if not versus:
        return None
    other = versus[0]
    return f"{short_point(chosen)} (best on validation) − {short_point(other['other'])} ({label})", other


def short_point(point: dict) -> str:
    """``hidden 4 at lr 0.3``: a point with its rate last."""
    rest = ", ".join(
        str(value) if key == "activation" else f"{key} {value}" for key, value in point.items() if key != "lr"
    )
    if "lr" not in point:
        return rest
    return f"{rest} at lr {fmt(point['lr'])}" if rest else f"lr {fmt(point['lr'])}"


def comparison_cells(pair: tuple[str, dict] | None, metric: str) -> tuple[str, str, str]:
    """The answers table's number and tie cells for a ``headline_comparison``, and its words."""
    if pair is None:
        return "no other setting learned in every fold", "", "no other setting to compare"
    label, difference = pair
    words = found(
        difference, lower="best on validation detectably lower", higher="best on validation detectably higher"
    )
    if is_tie(difference):
        words += f" ({interval(difference, 3)}, detectable {fmt(number(difference, 'mde'), 3)})"
    return f"{label}, test {metric}: {interval(difference, 3)}", tie_cell(difference), f"{label}: {words}"


def versus_words(pair: tuple[str, dict] | None) -> str:
    """``no difference detected between hidden 4 at lr 0.3 (best on validation) and hidden 16 at
    lr 0.1 (headline hidden)``: a tie names no winner; else which had the lower loss."""
    if pair is None:
        return "nothing else learned in every fold"
    label, difference = pair
    best, other = label.split(" − ")
    if is_tie(difference):
        return f"no difference detected between {best} and {other}"
    return f"{best} {'lower' if number(difference, 'ci_high') < 0 else 'higher'} than {other}"


def failed_fits_text(entry: dict, task: str) -> str:
    """One point where not every fold learned (comparison.json's ``failures``): its outcomes, how
    far the training loss of the fits that did not learn rose first, and their hidden units,
    measured only on the fits whose returned weights moved (a stalled fit returns its start)."""
    text = f"{point_text(entry['point'])}: {outcome_text(entry['outcomes'])}"
    low, high = entry.get("peak_ratio_min", math.nan), entry.get("peak_ratio_max", math.nan)
    if math.isfinite(high) and high > 1.01:
        span = times(low) if low == high else f"{times(low).removesuffix('×')} to {times(high)}"
        text += f"; training loss of the fits that neither learned nor diverged first rose {span} its start"
        if low > BLOW_UP:
            text += " (blow-ups that stopped short of the divergence threshold, labelled by where they ended)"
    moved = entry.get("moved", 0)
    if set(entry["outcomes"]) == {"diverged"}:
        return text
    if not moved:
        return text + "; those fits returned their starting weights, so their units are not measured"
    measures = [
        f"{fmt(100 * entry[key], 2)}% of units {word}"
        for key, word in (("saturated_units_moved_mean", "saturated"), ("dead_units_moved_mean", "dead"))
        if math.isfinite(entry.get(key, math.nan))
    ]
    if measures:
        others = set(entry["outcomes"]) - {"learned", "diverged"}
        # an oscillating fit's weights sit inside a zig-zag: unstable, which is not the same as not learning
        kind = "unstable (oscillating) fits" if others == {"oscillating"} else "fits that did not learn"
        text += f"; in the {moved} {kind} whose weights moved: {', '.join(measures)}"
    sharp = entry.get("sharpness_end_moved_mean", math.nan)
    if task == "regression" and math.isfinite(sharp) and sharp < 2.05:
        text += (
            f", λ_max {sharp:.3f} at the returned weights: the output bias's curvature alone "
            "(λ_max ≥ 2(1 + ‖ā‖²)), "
            "so the hidden layer is off and the network is the constant model"
        )
    return text


def failure_sentence(summary: pd.DataFrame, task: str, group: list[str], failed_fits: list | None = None) -> str:
    """The points where not every fold learned, with how their hidden units ended (saturated or
    dead, mean over the folds), beside the same measure where every fold learned. With
    ``failed_fits`` (comparison.json's ``failures``) each point is described by its fits that did
    not learn, measured only where their weights moved."""
    rows = summary[summary["task"] == task]
    parts = []
    if failed_fits is not None:
        parts = [failed_fits_text(entry, task) for entry in failed_fits]
        for measure, word in (("saturated_units_mean", "saturated"), ("dead_units_mean", "dead")):
            complete = (
                rows[(rows["learned"] == rows["fits"]) & rows[measure].notna()] if measure in rows else rows.iloc[:0]
            )
            if len(parts) and len(complete):
                low, high = fmt(100 * complete[measure].min(), 2), fmt(100 * complete[measure].max(), 2)
                parts.append(f"where every fold learned, {low if low == high else f'{low}–{high}'}% {word}")
        return "; ".join(parts)
    for measure, word in (("saturated_units_mean", "saturated"), ("dead_units_mean", "dead")):
        if measure not in rows or rows[measure].isna().all():
            continue
        failed = rows[(rows["learned"] < rows["fits"]) & rows[measure].notna()]
        complete = rows[(rows["learned"] == rows["fits"]) & rows[measure].notna()]
        among = measure.replace("_mean", "_not_learned_mean")
        for _, row in failed.iterrows():
            point = point_text({key: row[key] for key in [*group, "lr"] if key in row})
            share = f"{fmt(100 * row[measure], 2)}% of hidden units {word}"
            if among in row and math.isfinite(number({"v": row[among]}, "v")):
                share += f" ({fmt(100 * row[among], 2)}% in the fits that did not learn)"
            parts.append(f"{point}: {summary_outcomes(row)}, {share}")
        if len(failed) and len(complete):
            low, high = fmt(100 * complete[measure].min(), 2), fmt(100 * complete[measure].max(), 2)
            parts.append(f"where every fold learned, {low if low == high else f'{low}–{high}'}% {word}")
    return "; ".join(parts)


SATURATION_RULE = (
    f"a sigmoid or tanh unit is saturated when its slope g′(z) is below {fmt(SATURATION_SLOPE)} of its peak "
    f"(|z| > {fmt(SATURATION_Z['sigmoid'], 3)} for sigmoid, {fmt(SATURATION_Z['tanh'], 3)} for tanh) on most "
    "training rows, a strict rule: a unit pushed part of the way towards off does not count; a ReLU unit is dead "
    "when z ≤ 0 on every training row (measured on the returned weights, so only on fits whose weights moved)"
)


# Why the shares above cannot by themselves explain a stall: early stopping returns a stalled fit's
# best epoch, its starting weights, whatever the units did later in training.
STALL_CAVEAT = (
    "A stalled fit returns its starting weights (its best validation epoch is the first), so its units are "
    "not measured: saturation that set in later in training does not show here."
)


def catapult_facts(summary: pd.DataFrame, task: str) -> dict:
    """The largest rate that learned in every fold against the limit, and how far the training
    loss rose first at the rates past the limit that learned."""
    rows = summary[summary["task"] == task].sort_values("lr")
    limit = float(rows["lr_limit"].iloc[0])
    complete = rows[rows["learned"] == rows["fits"]]
    broken = rows[rows["learned"] < rows["fits"]]
    facts = {
        "limit": limit,
        "closed_form": float(rows["lr_limit_closed_form"].iloc[0]) if "lr_limit_closed_form" in rows else math.nan,
    }
    if len(complete):
        facts["largest"] = float(complete["lr"].max())
        if "stability_ratio_end_mean" in complete:
            ratio = float(complete.loc[complete["lr"].idxmax(), "stability_ratio_end_mean"])
            facts["sharpness_end"] = 2 * ratio / facts["largest"]  # λ_max at its returned weights
    if len(broken):
        facts["first_broken"] = float(broken["lr"].min())
    above = complete[complete["lr"] > limit]
    if len(above):
        facts["peak"] = float(above["peak_train_loss_ratio_max"].max())
        if "peak_train_loss_epoch_max" in above:
            facts["peak_epoch"] = float(above["peak_train_loss_epoch_max"].max())
    return facts


def answer_23(
    summary: pd.DataFrame, comparison: dict, configs: dict | None = None, schemas: dict | None = None
) -> dict:
    answer = comparison["regression"]["sweeps"]["lr"]
    config = (configs or {}).get("regression", {})
    blocks = [
        paragraph(
            "Every learning rate on every fold; all other settings from `train`. The **lr limit** is 2/λ_max of the "
            "loss Hessian at the initial weights (Lanczos on finite-difference Hessian-vector products, "
            "`backprop/lab/curvature.py`): the largest step at which full-batch gradient descent on a quadratic "
            "with that curvature would not diverge, mean over folds. Its **closed form**, 2/(c(1 + ‖ā‖²)) from the "
            "output layer's curvature and the mean hidden activation ā (section 1; "
            "`backprop/lab/mechanisms.py`), is in `summary.csv` beside it; it holds for sigmoid only (for tanh and "
            "ReLU it "
            "leaves out the hidden layer's curvature and overstates the limit: read that column only for sigmoid)."
        ),
        paragraph(compared_settings(answer, "learning rate")),
        paragraph("Against the limit: " + limit_sentence(summary, "regression", []) + "."),
        paragraph(speed_sentence(summary, "regression")),
    ]
    facts = catapult_facts(summary, "regression")
    limit = facts["limit"]
    sigmoid = config.get("activation", "sigmoid") == "sigmoid"
    mechanism = f"the limit 2/λ_max at initialisation is {fmt(limit, 3)}" + (
        f" (closed form {fmt(facts['closed_form'], 3)})" if sigmoid else ""
    )
    if "largest" in facts:
        mechanism += (
            f"; every fold learned at lr {fmt(facts['largest'])}, {fmt(facts['largest'] / limit, 2)}× the limit, the "
            "largest rate of the grid that did"
        )
    if "peak" in facts and facts["peak"] > 1.01:
        mechanism += (
            f"; past the limit the training loss first rose up to {fmt(facts['peak'], 3)}× its start"
            + (f" (by epoch {int(facts['peak_epoch'])} at the latest)" if "peak_epoch" in facts else "")
            + " and then fell: the catapult of Lewkowycz et al. (2020), where a quadratic model predicts divergence"
        )
    if "first_broken" in facts:
        broken = facts["first_broken"]
        mechanism += f"; lr {fmt(broken)} ({fmt(broken / limit, 2)}× the limit) did not learn in every fold"
        if "largest" in facts and facts["largest"] < broken:
            mechanism += "; the boundary lies between the two, and this grid does not locate it"
    bound = activation_bound(facts, config)
    if bound:
        mechanism += f"; {bound}"
    failures = failure_sentence(summary, "regression", [], answer.get("failures"))
    blocks.append(
        paragraph(
            f"**Mechanism.** {mechanism[0].upper() + mechanism[1:]}. "
            + (
                f"Where not every fold learned, the returned weights ({SATURATION_RULE}): {failures}. "
                if failures
                else ""
            )
            + edge_of_stability_sentence(summary, "regression")
        )
    )
    schema = (schemas or {}).get("regression", {})
    if "lr_limit_unscaled" in summary:
        row = summary.iloc[0]
        stats = schema.get("target_stats", {})
        span = f" (y from {stats['min']:g} to {stats['max']:g})" if "min" in stats else ""
        blocks.append(
            paragraph(
                f"**The raw target at the first step**: at the initial weights, 2/λ_max of the loss on the raw "
                f"target{span} is {fmt(row['lr_limit_unscaled'], 3)}, against {fmt(row['lr_limit'], 3)} on the "
                "standardised one. This is the curvature at the first step only: it changes as soon as the output "
                "bias moves, and this run trains no network on the raw target, so it says nothing about the rate "
                "that would train there."
            )
        )
    pair = headline_comparison(answer, config)
    number, tie, words = comparison_cells(pair, "MSE")
    sentence = f"Best on validation: lr {fmt(answer['best']['lr'])}; {words}; {mechanism}."
    short = f"{upper_first(versus_words(pair))}."
    if "largest" in facts:
        short += (
            f" Learned at lr {fmt(facts['largest'])} ({fmt(facts['largest'] / limit, 2)}× the stable limit "
            f"{fmt(limit, 3)}"
        )
        if facts.get("peak", 1.0) > 1.01:
            short += f"; a catapult: loss first rose up to {times(facts['peak'])})"
        else:
            short += ")"
    if "first_broken" in facts:
        broken = facts["first_broken"]
        short += (
            f"{';' if 'largest' in facts else ''} at lr {fmt(broken)} ({fmt(broken / limit, 2)}×): "
            f"{why_failed(summary, 'regression', {'lr': broken})}"
        )
        if "largest" in facts and facts["largest"] < broken:
            short += "; the grid does not locate the boundary"
    short += "." if "largest" in facts or "first_broken" in facts else ""
    blocks += [
        figure("sweep_lr.png", "val and test MSE against the learning rate, with the lr limit at initialisation"),
        figure(
            "sweep_lr_curves.png",
            "training MSE per epoch of one fold at every learning rate (log scales), and the epochs each rate "
            "needs to reach one training MSE",
        ),
        paragraph(f"**Answer:** {sentence}"),
    ]
    appendix = [
        titled(summary_table(summary, ["lr"], "regression", failed=answer.get("failures")), "2.3 learning rate")
    ]
    rows = [answer_row("2.3 the effect of the learning rate", "q23", short, number, tie)]
    return section("2.3 The effect of the learning rate", blocks, "q23", answers=rows, appendix=appendix)


def activation_rms(facts: dict, width) -> tuple[float, float] | None:
    """For MSE on an identity output the output layer's Hessian block is exactly (2/n)[a 1]ᵀ[a 1],
    so λ_max ≥ 2(1 + ‖ā‖²) at any weights and the RMS mean hidden activation is at most
    √((λ_max/2 − 1)/h); for sigmoid the closed-form limit 2/(2(1 + ‖ā‖²)) gives its value at
    initialisation. Both, when the fits past the limit had a catapult and the bound sits below
    the start; else None."""
    end, closed = facts.get("sharpness_end", math.nan), facts.get("closed_form", math.nan)
    if not isinstance(width, int | np.integer) or not (math.isfinite(end) and end > 2):
        return None
    if facts.get("peak", 1.0) <= 1.01 or facts.get("largest", 0.0) <= facts["limit"]:
        return None  # no catapult at that rate: nothing to explain
    if not math.isfinite(closed) or closed <= 0:
        return None
    after, before = math.sqrt((end / 2 - 1) / width), math.sqrt(max(1 / closed - 1, 0.0) / width)
    return (after, before) if after < before else None


def activation_bound(facts: dict, config: dict) -> str:
    """What λ_max at the returned weights of the largest rate that learned bounds (``activation_rms``)."""
    hidden = config.get("hidden")
    width = hidden[0] if isinstance(hidden, list | tuple) and len(hidden) == 1 else hidden
    found_rms = activation_rms(facts, width) if config.get("activation") == "sigmoid" else None
    if not found_rms:
        return ""
    after, before = found_rms
    return (
        f"λ_max ≥ 2(1 + ‖ā‖²) (the output layer's block, exact for MSE) bounds the RMS mean hidden activation at the "
        f"returned weights of lr {fmt(facts['largest'])} by {fmt(after, 2)} (mean λ_max over folds), against "
        f"{fmt(before, 2)} at initialisation: the catapult lowered the curvature by pushing the sigmoid units "
        "towards off"
    )


def width_bounds(summary: pd.DataFrame, config: dict) -> str:
    """``activation_rms`` for each width of the hidden sweep whose largest rate that learned in
    every fold is past its limit after a catapult (sigmoid only)."""
    if config.get("activation", "sigmoid") != "sigmoid" or "hidden" not in summary:
        return ""
    rows = summary[summary["task"] == "regression"]
    parts = []
    for width, part in rows.groupby("hidden", sort=True):
        facts = catapult_facts(part, "regression")
        found_rms = activation_rms(facts, _plain(width))
        if found_rms:
            parts.append(
                f"hidden {width} at lr {fmt(facts['largest'])}: at most {fmt(found_rms[0], 2)}, against "
                f"{fmt(found_rms[1], 2)} at initialisation"
            )
    if not parts:
        return ""
    return (
        "**What the catapults did to the units.** λ_max ≥ 2(1 + ‖ā‖²) (the output layer's Hessian block, exact for "
        "MSE on an identity output) bounds the RMS mean hidden activation at the returned weights by "
        "√((λ_max/2 − 1)/h), with λ_max the mean over folds: "
        + "; ".join(parts)
        + ". The catapults lowered the curvature by pushing the sigmoid units towards off, further than the "
        "saturation share (a strict rule) shows."
    )


def why_failed(summary: pd.DataFrame, task: str, point: dict) -> str:
    """A point's outcomes over the folds, with the share of its hidden units saturated or dead."""
    match = summary[summary["task"] == task]
    for key, value in point.items():
        match = match[match[key] == value]
    if not len(match):
        return ""
    row = match.iloc[0]
    text = summary_outcomes(row)
    for measure, word in (("saturated_units_mean", "saturated"), ("dead_units_mean", "dead")):
        if measure in row and math.isfinite(number({"v": row[measure]}, "v")):
            text += f"; {fmt(100 * row[measure], 2)}% of units {word}"
    return text


def edge_of_stability_sentence(summary: pd.DataFrame, task: str) -> str:
    """What this run shows of Cohen et al.'s edge of stability: lr·λ_max/2 at the returned weights,
    per rate where every fold learned (1 at the edge, below 1 in a flatter place)."""
    text = (
        "Cohen et al. (2021) found that full-batch gradient descent drives the sharpness λ_max up to 2/η and holds "
        "it there (the edge of stability). "
    )
    rows = summary[(summary["task"] == task) & (summary["learned"] == summary["fits"])].sort_values("lr")
    if "stability_ratio_end_mean" not in rows or rows["stability_ratio_end_mean"].isna().all():
        return text + "This run measures λ_max only at initialisation, so it neither shows nor excludes that."
    ratios = [(row["lr"], row["stability_ratio_end_mean"]) for _, row in rows.iterrows()]
    listed = ", ".join(f"{fmt(value, 2)} at lr {fmt(lr)}" for lr, value in ratios) + " (mean over folds; 1 is the edge)"
    near = [lr for lr, value in ratios if value >= 0.9]
    if "lr_limit" in rows and len(rows):
        start = 2 / float(rows["lr_limit"].iloc[0])
        ends = ", ".join(f"{fmt(2 * value / lr, 3)} at lr {fmt(lr)}" for lr, value in ratios)
        listed += f"; λ_max itself went from {fmt(start, 3)} at initialisation to {ends}"
    return text + (
        f"This run measures λ_max at the returned weights only (not during training): lr·λ_max/2 is {listed}. "
        + (
            f"At lr {', '.join(fmt(lr) for lr in near)} the fits ended at or near the edge."
            if near
            else "Every rate ended below the edge: the returned weights sit where the step is stable."
        )
    )


def titled(block: dict, where: str) -> dict:
    """A table moved to the appendix, its caption naming the section it belongs to; ``summary``
    is what the HTML's collapsed line shows."""
    caption = f"{where} — {block['caption']}" if block.get("caption") else where
    return block | {"caption": caption, "summary": f"{where}: every setting"}


def above_limit_sentence(answer: dict, summary: pd.DataFrame, task: str, noun: str, in_units: bool = False) -> str:
    """The settings whose chosen learning rate is past their lr limit at initialisation: a
    comparison between them and the others mixes the setting with training in the unstable regime.
    ``in_units``: the rates are multiples of each setting's own limit already (past it: above 1),
    so the grid is already scaled to each setting's limit and no other grid is suggested."""
    past = []
    for setting in answer["settings"]:
        point = setting["point"]
        match = summary[summary["task"] == task]
        for key, value in point.items():
            match = match[match[key] == value]
        if "lr" not in point or not len(match) or "lr_limit" not in match:
            continue
        limit = float(match["lr_limit"].iloc[0])
        if in_units and point["lr"] > 1:
            past.append(f"{point_text(point)} ({fmt(point['lr'])}× its own limit)")
        elif not in_units and point["lr"] > limit:
            past.append(f"{point_text(point)} ({fmt(point['lr'] / limit, 2)}× its limit)")
    if not past:
        return ""
    text = (
        f"The best learning rate of the grid is past the lr limit at initialisation for: {'; '.join(past)}. "
        f"Those networks train in the unstable regime the grid offers them, so a tie between {noun}s does not show "
        f"that the {noun} does not matter"
    )
    if in_units:
        return text + f": the comparison mixes the {noun} with training past the limit."
    return text + f": a grid of rates scaled to each {noun}'s own limit could separate the two."


def grid_end_sentence(steps: list[dict], capacity: pd.DataFrame) -> str:
    """Which learning rate each width of the fixed-budget experiment trains at, flagged where it is
    at an end of the grid (the best may lie beyond it)."""
    if "lr" not in capacity:  # one rate for every width, from train
        return ""
    grid = sorted(capacity["lr"].unique())
    chosen = {}
    for step in steps:
        for end in ("from", "to"):
            chosen[step[end]["hidden"]] = step[end]["lr"]
    if len(grid) < 2 or not chosen:
        return ""
    ends = [
        f"hidden {hidden} at lr {fmt(lr)}" + (" (top of the grid)" if lr == grid[-1] else " (bottom of the grid)")
        for hidden, lr in chosen.items()
        if lr in (grid[0], grid[-1])
    ]
    mixed = len(set(chosen.values())) > 1
    return (
        f"The rate each width trains at, from the grid {', '.join(fmt(lr) for lr in grid)}: {'; '.join(ends)}; "
        "at an end of the grid the best rate may lie beyond it"
        + (", and a step between two widths at different rates mixes width with learning rate" if mixed else "")
        + "."
    )


def overfitting_steps(steps: list[dict]) -> list[str]:
    """The steps to a wider layer where train error is detectably lower and test detectably higher."""
    return [
        f"{point_text(step['from'])} → {point_text(step['to'])}"
        for step in steps
        if not is_tie(step["train_mse_wider_minus_narrower"])
        and number(step["train_mse_wider_minus_narrower"], "ci_high") < 0
        and not is_tie(step["test_mse_wider_minus_narrower"])
        and number(step["test_mse_wider_minus_narrower"], "ci_low") > 0
    ]


def capacity_words(steps: list[dict], capacity: pd.DataFrame) -> str:
    """How train and held-out error move from the narrowest to the widest layer of the fixed-budget
    experiment, each width at its chosen rate, naming overfitting where a step's training error
    falls while its held-out error rises (both detected)."""
    if not steps:
        return ""
    rows = capacity[capacity["task"] == "regression"]
    means = []
    for point in [steps[0]["from"]] + [step["to"] for step in steps]:
        match = rows
        for key, value in point.items():
            match = match[match[key] == value]
        if len(match):
            row = match.iloc[0]
            means.append(
                f"hidden {point['hidden']}: train {fmt(row['train_mse_mean'])}, test {fmt(row['test_mse_mean'])}"
            )
    over = overfitting_steps(steps)
    text = "with a fixed budget, mean MSE " + "; ".join(means)
    if over:
        text += f"; overfitting (train detectably lower, test detectably higher) at {', '.join(over)}"
    else:
        mdes = [fmt(number(step["test_mse_wider_minus_narrower"], "mde"), 4) for step in steps]
        text += (
            "; no step where train is detectably lower and test detectably higher (no overfitting detected; the "
            f"smallest test difference each step detects: {', '.join(mdes)})"
        )
    return text


def _paired(end: dict) -> bool:
    """A same-rate end with a train and a held-out interval (two or more folds where both widths learned)."""
    return all(
        math.isfinite(number(end[key], "ci_low"))
        for key in ("train_mse_wider_minus_narrower", "test_mse_wider_minus_narrower")
    )


def still_improving(ends: list[dict], capacity: pd.DataFrame | None) -> str:
    """How many learned fits of each width at each compared rate still had a falling training loss
    at the last epoch of the budget (summary.csv's ``capped``), or "" when the summary lacks it."""
    if capacity is None or "capped" not in capacity or "hidden" not in capacity:
        return ""
    rows = capacity[capacity["task"] == "regression"] if "task" in capacity else capacity
    parts: list[tuple[str, int, int]] = []
    for end in ends:
        if not _paired(end):
            continue
        for side in ("from", "to"):
            match = rows
            for key, value in end[side].items():
                if key in match:
                    match = match[match[key] == value]
            if len(match) and "learned" in match:
                row = match.iloc[0]
                parts.append((point_text(end[side]), int(row["capped"]), int(row["learned"])))
    if not parts:
        return ""
    if not any(capped for _, capped, _ in parts):
        return "no learned fit was still improving at the budget's last epoch"
    counts = [f"{point}: {capped} of {learned}" for point, capped, learned in parts]
    return (
        "learned fits whose training loss was still falling at the budget's last epoch (still improving): "
        + ", ".join(counts)
    )


def same_lr_short(ends: list[dict], limits: pd.DataFrame | None, epochs, in_units: bool = False, capacity=None) -> str:
    """The narrowest width against the one that fits its training rows best, at the same rate
    (comparison.json's ``same_lr``), train and held-out, each with its interval; a tie with its
    detectable size; the rate as a multiple of the wider layer's lr limit (``in_units``: the rates
    are such multiples already, each width's own, so the widths train at one multiple of their
    limits, not at one rate). A rate without pairs is said to be not compared, and no conclusion
    is drawn from it; ``capacity`` (its summary.csv) adds how many fits were still improving."""
    parts = []
    for end in ends:
        wide, lr = end["to"]["hidden"], end["to"]["lr"]
        train, test = end["train_mse_wider_minus_narrower"], end["test_mse_wider_minus_narrower"]
        text = f"{fmt(lr)}× each width's own limit" if in_units else f"lr {fmt(lr)}"
        if not in_units and limits is not None and "lr_limit" in limits:
            match = limits[(limits["task"] == "regression") & (limits["hidden"] == wide)]
            if len(match):
                text += f" ({fmt(lr / float(match['lr_limit'].iloc[0]), 2)}× hidden {wide}'s limit)"
        if not _paired(end):
            text += (
                f": not compared (a side did not learn in every fold; {int(number(test, 'n') or 0)} paired folds)"
                if math.isfinite(number(test, "n"))
                else ": not compared (a side did not learn in every fold)"
            )
        else:
            text += f": train {short_interval(train)}, test {short_interval(test)}" + (
                f", detectable {whole(number(test, 'mde'))}" if is_tie(test) else ""
            )
        parts.append(text)
    first = ends[0]
    budget = f"{epochs} epochs" if epochs else "budget"
    compared = [e for e in ends if _paired(e)]
    lower = bool(compared) and all(
        not is_tie(e["train_mse_wider_minus_narrower"]) and number(e["train_mse_wider_minus_narrower"], "ci_high") < 0
        for e in compared
    )
    rises = [
        e
        for e in compared
        if not is_tie(e["test_mse_wider_minus_narrower"]) and number(e["test_mse_wider_minus_narrower"], "ci_low") > 0
    ]
    unit = "multiple" if in_units else "rate"
    if not compared:
        verdict_text = "no rate compared, so no conclusion on overfitting"
    elif lower and rises:
        rates = ", ".join(fmt(e["to"]["lr"]) for e in rises)
        verdict_text = f"overfitting: train detectably lower, test detectably higher at {unit} {rates}"
    else:
        rates = ", ".join(fmt(e["to"]["lr"]) for e in compared)
        verdict_text = f"no overfitting detected (at {unit} {rates})"
    shared = "at one multiple of each width's limit" if in_units else "at one rate"
    improving = still_improving(ends, capacity)
    return (
        f"Fixed {budget}, no early stopping (unlike the headline), hidden "
        f"{first['to']['hidden']} − {first['from']['hidden']} MSE {shared}: "
        + "; ".join(parts)
        + f"; {verdict_text}"
        + (f"; {improving}" if improving else "")
        + "."
    )


def capacity_short(
    steps: list[dict], capacity: pd.DataFrame, limits=None, ends=None, epochs=None, in_units: bool = False
) -> str:
    """Train and test error from the narrowest layer to the one that fits its training rows best,
    in a fixed budget: paired at the same rate when ``ends`` (comparison.json's ``same_lr``) are
    given, else the means (each width at its own rate), with overfitting named only where detected."""
    if ends:
        return same_lr_short(ends, limits, epochs, in_units, capacity)
    rows = capacity[capacity["task"] == "regression"]
    points = [steps[0]["from"]] + [step["to"] for step in steps] if steps else []
    found_rows = []
    for point in points:
        match = rows
        for key, value in point.items():
            match = match[match[key] == value]
        if len(match):
            found_rows.append((point, match.iloc[0]))
    if len(found_rows) < 2:
        return ""
    (first, a), (best, b) = found_rows[0], min(found_rows, key=lambda item: item[1]["train_mse_mean"])
    if best is first:
        return ""
    text = (
        f"Fixed budget: from hidden {first['hidden']} to {best['hidden']} mean train MSE goes "
        f"{fmt(a['train_mse_mean'])} → {fmt(b['train_mse_mean'])}, test {fmt(a['test_mse_mean'])} → "
        f"{fmt(b['test_mse_mean'])}"
    )
    over = overfitting_steps(steps)
    if over:
        text += f" (overfitting, detected at {', '.join(over)})"
    else:
        text += " (means without intervals, each width at its own rate: no overfitting detected)"
    return text + "."


def answer_24(
    hidden: pd.DataFrame,
    capacity: pd.DataFrame,
    comparison: dict,
    configs: dict | None = None,
    budget=None,
    capacity_unit: str | None = None,
    hidden_unit: str | None = None,
) -> dict:
    """``capacity_unit`` / ``hidden_unit``: the ``lr_unit`` each sweep fixes (None: train's)."""
    answer = comparison["regression"]["sweeps"]["hidden"]
    ends = comparison["regression"]["sweeps"]["capacity"].get("capacity", {}).get("same_lr")
    config = (configs or {}).get("regression", {})
    in_units = (capacity_unit or config.get("lr_unit", "absolute")) == "limit"
    hidden_in_units = (hidden_unit or config.get("lr_unit", "absolute")) == "limit"
    blocks = [
        paragraph(
            "Two experiments, because early stopping mixes two things. **Generalisation**: every width × learning "
            "rate, early-stopped on validation, each width compared at its own best learning rate (a shared rate "
            "would decide the result before training: the stable step shrinks as the layer widens)."
        ),
        paragraph(compared_settings(answer, "width")),
        paragraph(
            "Against the lr limit at initialisation, per width: "
            + limit_sentence(hidden, "regression", ["hidden"], hidden_in_units)
            + ". "
            + above_limit_sentence(answer, hidden, "regression", "width", hidden_in_units)
        ),
        figure(
            "sweep_hidden_regression.png",
            f"val MSE per width and learning rate; hatched cells: not every fold learned{HEATMAP_NOTE}",
        ),
    ]
    bounds = width_bounds(hidden, config)
    if bounds:
        blocks.append(paragraph(bounds))
    failures = failure_sentence(hidden, "regression", ["hidden"], answer.get("failures"))
    if failures:
        blocks.append(
            paragraph(
                f"**Where not every fold learned**, the returned weights ({SATURATION_RULE}): {failures}. "
                + STALL_CAVEAT
            )
        )
    steps = comparison["regression"]["sweeps"]["capacity"].get("capacity", {}).get("steps", [])
    sentences = []
    for step in steps:
        train = step["train_mse_wider_minus_narrower"]
        test = step["test_mse_wider_minus_narrower"]
        sentences.append(
            f"{point_text(step['from'])} → {point_text(step['to'])}: "
            f"train {verdict(train, lower='lower', higher='higher')}, "
            f"test {verdict(test, lower='lower', higher='higher')}"
        )
    blocks += [
        paragraph(
            "**What gradient descent fits in a fixed budget**: a fixed number of epochs and no early stopping "
            "(params.yaml `sweep.capacity`), each width at the learning rate of the grid where its training error "
            "is lowest. This measures how far full-batch gradient descent gets in that budget, not what a width "
            "could fit given time: a wider layer has a smaller stable step (its lr limit above), so it may get "
            "less far. Each width against the next wider one, paired by fold (wider − narrower): "
            + "; ".join(sentences)
            + ". "
            + grid_end_sentence(steps, capacity)
        ),
        figure(
            "sweep_capacity.png",
            "train, val and test MSE against width after a fixed budget of epochs, each width at its own lr (labelled)",
        ),
    ]
    pair = headline_comparison(answer, config)
    number, tie, words = comparison_cells(pair, "MSE")
    sentence = f"Best on validation: {point_text(answer['best'])}; {words}"
    shape = capacity_words(steps, capacity)
    sentence += (f"; {shape}" if shape else "") + "."
    if ends:
        sentence += (
            " "
            + same_lr_short(ends, hidden, budget, in_units, capacity)
            + (
                ""
                if in_units
                else " A rate past the wider layer's limit trains it in the catapult regime, so a difference at that "
                "rate mixes width with the instability."
            )
        )
    short = (
        f"{upper_first(versus_words(pair))}. {capacity_short(steps, capacity, hidden, ends, budget, in_units)}".strip()
    )
    blocks.append(paragraph(f"**Answer:** {sentence}"))
    appendix = [
        titled(
            summary_table(hidden, ["hidden", "lr"], "regression", failed=answer.get("failures")),
            "2.4 width, early-stopped",
        ),
        titled(
            summary_table(
                capacity, [key for key in ("hidden", "lr") if key in capacity], "regression", improving="train"
            ),
            "2.4 width, fixed budget",
        ),
    ]
    rows = [answer_row("2.4 the effect of the number of hidden neurons", "q24", short, number, tie)]
    return section("2.4 The effect of the number of hidden neurons", blocks, "q24", answers=rows, appendix=appendix)


def unit_words(summary: pd.DataFrame, answer: dict, task: str) -> str:
    """Each activation at its chosen rate: its mean best epoch and, where it applies, the share of
    hidden units saturated or dead at the end (mean over folds)."""
    rows = summary[summary["task"] == task]
    parts = []
    for setting in answer["settings"]:
        point = setting["point"]
        match = rows
        for key, value in point.items():
            match = match[match[key] == value]
        if not len(match):
            continue
        row = match.iloc[0]
        text = point["activation"]
        if not answer.get("epochs_at_chosen_lr"):  # else the paired comparison says it (epochs_short)
            text += f" mean best epoch {fmt(row['best_epoch_mean'], 3)}"
        for measure, word in (("saturated_units_mean", "saturated"), ("dead_units_mean", "dead")):
            if measure in row and math.isfinite(number({"v": row[measure]}, "v")):
                text += f", {fmt(100 * row[measure], 2)}% of units {word}"
        parts.append(text)
    return "; ".join(parts)


def epochs_short(answer: dict) -> str:
    """Each other activation's best epoch minus the best one's, at the best one's rate, paired by
    fold (comparison.json's ``epochs_at_chosen_lr``): intervals, and the detectable size of ties."""
    versus = answer.get("epochs_at_chosen_lr") or []
    if not versus:
        return ""
    best = answer["best"]
    # A pair needs both sides learned in a fold: without one, that activation has no comparison here.
    unpaired = [(v["other"]["activation"], v.get("n") or 0) for v in versus if (v.get("n") or 0) < 2]
    versus = [v for v in versus if (v.get("n") or 0) >= 2]
    parts = [f"{v['other']['activation']} {short_interval(v)}" for v in versus]
    parts += [f"{name}: {n} fold(s) where both learned at this rate, no interval" for name, n in unpaired]
    ties = [v for v in versus if is_tie(v)]
    text = f"Best epoch, other − {best['activation']}, all at lr {fmt(best['lr'])}: {'; '.join(parts)}" + (
        " (a fold stopped by the epoch budget counts its last epoch)" if any(v.get("capped") for v in versus) else ""
    )
    if not versus:
        return text + "."
    if len(ties) == len(versus):
        mdes = [number(v, "mde") for v in ties]
        return text + f"; no difference detected (detectable {whole(min(mdes))} to {whole(max(mdes))} epochs)."
    detected = [v["other"]["activation"] for v in versus if not is_tie(v)]
    return text + f"; detected for {', '.join(detected)} only."


def units_short(summary: pd.DataFrame, answer: dict, task: str) -> str:
    """Best epochs paired at the best activation's rate when comparison.json has them; else the
    mean best epoch of each activation at its chosen rate (a description, not a comparison)."""
    if answer.get("epochs_at_chosen_lr"):
        return epochs_short(answer)
    rows = summary[summary["task"] == task]
    parts = []
    for setting in answer["settings"]:
        match = rows
        for key, value in setting["point"].items():
            match = match[match[key] == value]
        if len(match):
            parts.append(f"{setting['point']['activation']} {fmt(match.iloc[0]['best_epoch_mean'], 3)}")
    return f"Mean best epoch (each at its own rate, no interval): {', '.join(parts)}." if parts else ""


def answer_25(
    summary: pd.DataFrame, comparison: dict, configs: dict | None = None, activation_unit: str | None = None
) -> dict:
    """``activation_unit``: the ``lr_unit`` the activation sweep fixes (None: train's)."""
    in_units = (activation_unit or (configs or {}).get("regression", {}).get("lr_unit", "absolute")) == "limit"
    blocks = [
        paragraph(
            "Every activation × learning rate on every fold, both tasks; each activation compared at its own best "
            "learning rate (chosen on validation). g′ for each is in section 1."
        )
    ]
    rows, appendix = [], []
    for task in TASKS:
        answer = comparison[task]["sweeps"].get("activation")
        if not answer:
            continue
        units = unit_words(summary, answer, task)
        failures = failure_sentence(summary, task, ["activation"], answer.get("failures"))
        blocks += [
            paragraph(f"**{task.capitalize()}.** " + compared_settings(answer, "activation")),
            figure(
                f"sweep_activation_{task}.png",
                f"{task}: val {LABELS[DEFAULT_LOSS[task]]} per activation and learning rate{HEATMAP_NOTE}",
            ),
            paragraph(
                f"Against the lr limit at initialisation: {limit_sentence(summary, task, ['activation'], in_units)}."
            ),
            paragraph(
                f"**How each trained** ({SATURATION_RULE}), at its chosen rate: {units}."
                + (f" Where not every fold learned: {failures}." if failures else "")
            ),
        ]
        config = (configs or {}).get(task, {})
        metric = LABELS[DEFAULT_LOSS[task]]
        pair = headline_comparison(answer, config)
        number, tie, words = comparison_cells(pair, metric)
        sentence = f"{task.capitalize()}: best on validation {point_text(answer['best'])}; {words}; {units}."
        if answer.get("epochs_at_chosen_lr"):
            sentence += " " + epochs_short(answer)
        grid = answer.get("grid_lr") or []
        edge = (
            f" (lr {fmt(answer['best']['lr'])} is an end of the grid)"
            if answer["best"].get("lr") in grid[:1] + grid[-1:]
            else ""
        )
        short = f"{upper_first(versus_words(pair))}{edge}. {units_short(summary, answer, task)}"
        blocks.append(paragraph(f"**Answer ({task}):** {sentence}"))
        rows.append(answer_row(f"2.5 the effect of the activation function, {task}", "q25", short, number, tie))
        appendix.append(
            titled(summary_table(summary, ["activation", "lr"], task, failed=answer.get("failures")), "2.5 activation")
        )
    return section("2.5 The effect of the activation function", blocks, "q25", answers=rows, appendix=appendix)


# ---- 3 ------------------------------------------------------------------------------------------


def _finding(difference: dict) -> str:
    low, high = number(difference, "ci_low"), number(difference, "ci_high")
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 <= high:
        return "tie"
    return "log loss" if high < 0 else "MSE"


def mechanism_table(mechanism: dict, what: str) -> dict:
    """One row per (log loss lr, MSE lr) pair: folds that reached the level, mean epochs, and the
    paired differences (log loss − MSE) with their intervals."""
    rows = []
    for pair in mechanism["pairs"]:
        reached = pair["reached"]
        rows.append(
            [
                fmt(pair["log_loss_lr"]), fmt(pair["mse_lr"]), pair["kind"],
                f"{reached['log_loss']}/{reached['of']} · {reached['mse']}/{reached['of']}",
                f"{fmt(pair['epochs_log_loss_mean'], 3)} · {fmt(pair['epochs_mse_mean'], 3)}",
                interval(pair["epochs_log_loss_minus_mse"], 3),
                interval(pair["test_log_loss_log_loss_minus_mse"], 3),
                interval(pair["test_accuracy_log_loss_minus_mse"], 3),
            ]
        )  # fmt: skip
    header = [
        "log loss lr", "MSE lr", "pair", f"folds reaching {what} (log loss · MSE)", "mean epochs (log loss · MSE)",
        "epochs, log loss − MSE (95% CI)", "held-out log loss, log loss − MSE", "held-out accuracy, log loss − MSE",
    ]  # fmt: skip
    return table(header, rows)


def _tie_detectable(differences: list[dict]) -> str:
    """`` (detectable 0.054 to 0.069)``: the detectable sizes of the ties among ``differences``."""
    mdes = sorted(number(d, "mde") for d in differences if is_tie(d) and math.isfinite(number(d, "mde")))
    if not mdes:
        return ""
    low, high = fmt(mdes[0], 3), fmt(mdes[-1], 3)
    return f" (detectable {low if low == high else f'{low} to {high}'})"


def mechanism_conclusion(mechanism: dict, what: str) -> str:
    """Which loss reached the level in fewer epochs, pair kind by pair kind, ties stated as ties."""
    parts = []
    for kind in ("same lr", "2× lr"):
        pairs = [pair for pair in mechanism["pairs"] if pair["kind"] == kind]
        if not pairs:
            continue
        findings = [_finding(pair["epochs_log_loss_minus_mse"]) for pair in pairs]
        lrs = ", ".join(f"{fmt(p['log_loss_lr'])}/{fmt(p['mse_lr'])}" for p in pairs)
        counts = {name: findings.count(name) for name in ("log loss", "MSE", "tie")}
        text = f"at the {kind} ({len(pairs)} pair(s), lr log loss/MSE {lrs}): "
        ties = _tie_detectable([pair["epochs_log_loss_minus_mse"] for pair in pairs])
        text += ", ".join(
            f"{'no difference detected' if name == 'tie' else name + ' reached ' + what + ' in fewer epochs'} "
            f"in {count}" + (f"{ties.removesuffix(')')} epochs)" if name == "tie" and ties else "")
            for name, count in counts.items()
            if count
        )
        never = [
            p
            for p in pairs
            if p["reached"]["mse"] < p["reached"]["of"] or p["reached"]["log_loss"] < p["reached"]["of"]
        ]
        if never:
            text += f" (in {len(never)} pair(s) not every fold reached it: see the table)"
        parts.append(text)
    held_out = []
    words = {
        "test_log_loss_log_loss_minus_mse": {"log loss": "lower with log loss", "MSE": "lower with MSE"},
        "test_accuracy_log_loss_minus_mse": {"log loss": "lower with log loss", "MSE": "higher with log loss"},
    }
    for column, label in (("test_log_loss_log_loss_minus_mse", "held-out log loss"),
                          ("test_accuracy_log_loss_minus_mse", "held-out accuracy")):  # fmt: skip
        better = words[column]
        findings = [_finding(pair[column]) for pair in mechanism["pairs"]]
        counts = {name: findings.count(name) for name in ("log loss", "MSE", "tie")}
        said = {"tie": "no difference detected"} | better
        ties = _tie_detectable([pair[column] for pair in mechanism["pairs"]])
        held_out.append(
            f"{label}: " + ", ".join(f"{said[n]} in {c}" + (ties if n == "tie" else "") for n, c in counts.items() if c)
        )
    return (
        "; ".join(parts)
        + f". Over all {len(mechanism['pairs'])} pairs (pairs share fits, so the counts are not independent), "
        + "; ".join(held_out)
        + "."
    )


def answer_3(summaries: dict, comparison: dict, specs: dict, configs: dict | None = None) -> dict:
    sweeps = comparison["classification"]["sweeps"]
    init = (configs or {}).get("classification", {}).get("init", "the configured")
    appendix, findings, numbers, shorts = [], [], [], []
    blocks = [
        paragraph(
            "Log loss and MSE on the same sigmoid output. At a start where ŷ ≈ ½ the MSE error term "
            "(2/n)(ŷ − y)ŷ(1 − ŷ) is half of log loss's (1/n)(ŷ − y), so MSE at twice the learning rate takes the "
            "same first steps: the **2× lr** pairs below match the steps at ŷ ≈ ½ only, and not at all where "
            "ŷ(1 − ŷ) is far from ¼. Both are scored with log loss, which puts them on one scale."
        )
    ]
    for name, start in (
        ("loss", f"**From the usual start** ({init} initial weights, ŷ near ½)"),
        (
            "saturated",
            "**From a confidently wrong start**: the same initial weights with the output bias moved so that every "
            "training row starts at P(y = 1) < 0.01 (`saturated_start`), so every positive row is confidently "
            "wrong: there ŷ(1 − ŷ) ≈ 0 silences MSE's error term while log loss's stays ≈ −1/n per row. These fits "
            "run a fixed budget without early stopping, so their held-out scores also show how far each got",
        ),
    ):
        if name not in sweeps or "loss_mechanism" not in sweeps[name]:
            continue
        mechanism = sweeps[name]["loss_mechanism"]
        curve, value = next(iter(specs[name].reach.items()))
        what = f"{curve.replace('_', ' ')} ≥ {value}"
        blocks += [
            paragraph(f"{start}, the first epoch each fit reached {what}: {mechanism_conclusion(mechanism, what)}"),
            mechanism_table(mechanism, what),
            figure(f"sweep_{name}.png", f"{curve.replace('_', ' ')} per epoch, log loss vs MSE, mean over folds"),
        ]
        appendix.append(
            titled(summary_table(summaries[name], ["loss", "lr"], "classification", limit=False), f"3. {name} sweep")
        )
        matched = [pair for pair in mechanism["pairs"] if pair["kind"] == "2× lr"] or mechanism["pairs"]
        if matched:
            pair = matched[0]
            difference = pair["epochs_log_loss_minus_mse"]
            start_name = "the usual start" if name == "loss" else "a confidently wrong start"
            reached = pair["reached"]
            findings.append(
                f"from {start_name}, log loss at lr {fmt(pair['log_loss_lr'])} against MSE at lr "
                f"{fmt(pair['mse_lr'])} ({pair['kind']}): "
                + found(
                    difference,
                    lower=f"log loss reached {what} in fewer epochs than MSE",
                    higher=f"log loss reached {what} in more epochs than MSE",
                ).replace("no difference detected", f"no difference detected in the epochs to reach {what}")
                + f" (log loss − MSE {interval(difference, 3)} epochs"
                + (f", detectable {fmt(number(difference, 'mde'), 3)}" if is_tie(difference) else "")
                + f"; reached in {reached['log_loss']} and "
                f"{reached['mse']} of {reached['of']} folds)"
            )
            shorts.append(
                f"from {start_name}, epochs to {what} (log loss at lr {fmt(pair['log_loss_lr'])}, MSE at "
                f"{fmt(pair['mse_lr'])}): "
                + found(difference, lower="log loss reaches it faster", higher="MSE reaches it faster")
            )
            numbers.append((f"{start_name}, epochs log loss − MSE", difference))
    sentence = "; ".join(findings) + "." if findings else "No log loss against MSE comparison in this run."
    sentence = upper_first(sentence)
    blocks.append(paragraph(f"**Answer:** {sentence}"))
    rows = []
    if numbers:
        ties = [f"{label.split(',')[0]}: {tie_cell(d)}" for label, d in numbers if is_tie(d)]
        rows.append(
            answer_row(
                "3. MSE versus log loss for classification",
                "loss",
                upper_first("; ".join(shorts)) + ".",
                "; ".join(f"{label}: {interval(d, 3)}" for label, d in numbers),
                "; ".join(ties),
            )
        )
    return section("3. MSE versus log loss for classification", blocks, "loss", answers=rows, appendix=appendix)


# ---- the answers table ---------------------------------------------------------------------------


def update_rule_row() -> dict:
    """The derivation's answer: not measured, derived (and checked against finite differences)."""
    sentence = (
        "Only δ₂ differs: (2/n)(ŷ − y) for MSE on an identity output, (1/n)(ŷ − y) for log loss on a sigmoid "
        "output; everything from δ₂ back is the same."
    )
    return answer_row(
        "the update rule, MSE against log loss",
        "derivation",
        sentence,
        "derived; gradients match finite differences (< 1e-6)",
    )


ANSWER_MARK = "**Answer"  # how a section's own answer paragraph begins
ANSWER_HEADER = [
    "question",
    "answer (from this run)",
    "the number it rests on: a − b, mean (95% CI)",
    "tie: where a difference lies; detectable (80% power)",
]


def answers_intro(schemas: dict, configs: dict) -> dict:
    """The lines above the answers table: the data by name, the protocol, the headline networks'
    actual settings, and how to read a difference, so the first screen reads on its own."""
    data = ", ".join(f"{task} `{schema['source']}` ({schema['rows']} rows)" for task, schema in schemas.items())
    reg = schemas["regression"]
    repeats = f" repeated {reg['repeats']}×" if reg.get("repeats", 1) > 1 else ""
    words: dict[str, Callable[[Any], str]] = {
        "hidden": lambda c: f"hidden {c['hidden'][0] if len(c['hidden']) == 1 else c['hidden']}",
        "activation": lambda c: str(c["activation"]),
        "lr": lambda c: f"lr {fmt(c['lr'])}",
        "epochs": lambda c: f"≤ {c['epochs']} epochs",
    }
    first = next(iter(configs.values()))
    shared = [words[key](first) for key in words if all(words[key](c) == words[key](first) for c in configs.values())]
    differ = [
        f"{task} {words[key](config)}"
        for key in words
        if not all(words[key](c) == words[key](first) for c in configs.values())
        for task, config in configs.items()
    ]
    settings = ", ".join([*shared, intro_patience(configs)]) + (f" ({', '.join(differ)})" if differ else "")
    return paragraph(
        f"**Data**: {data}. **Protocol**: {reg['folds']}-fold cross-validation{repeats}; means over the held-out "
        "folds with 95% intervals, comparisons paired by fold; sweeps pick settings on validation rows. **Headline "
        f"networks** (from params.yaml): {settings}. **a − b < 0** means a is lower (a lower loss, or fewer epochs, "
        "is better). A **tie** (interval contains 0) has no winner."
    )


def answers_section(sections: list[dict], intro: dict | None = None) -> dict:
    """The report's opening: every section's answer rows in one table, each linking to its section.
    A row is a dict (``blocks.answer_row``): a second task answering the same question (a control
    table) adds a key to its rows and a column here."""
    rows = [
        [f"[{row['question']}](#{row['anchor']})", row["answer"], row["number"], row["tie"] or "—"]
        for s in sections
        for row in s["answers"]
    ]
    header = ANSWER_HEADER
    if any("control" in row for s in sections for row in s["answers"]):
        header = [*ANSWER_HEADER, "the control task: is the same effect detected? (difference, 95% CI)"]
        rows = [[*cells, row.get("control") or "—"] for cells, row in zip(rows, _rows(sections), strict=True)]
    note = paragraph(
        "Each answer is generated from this run's paired comparisons over the held-out folds: 95% t intervals "
        "with Nadeau and Bengio's correction for folds that share training rows, clipped to the metric's range. "
        '"Best on validation" is the setting with the lowest mean validation loss, not a winner on the test '
        "folds. The detectable size is (t₀.₉₇₅ + t₀.₈) times the same corrected standard error."
    )
    return section("Answers", [*([intro] if intro else []), table(header, rows), note], "answers")


def _rows(sections: list[dict]) -> list[dict]:
    return [row for s in sections for row in s["answers"]]
