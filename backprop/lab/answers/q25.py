"""2.5: the effect of the activation function: each activation at its own best rate, how its
units ended, and its best epoch paired at the chosen rate. No I/O."""

from __future__ import annotations

import math

import pandas as pd

from backprop.lab.answers.choices import (
    HEATMAP_NOTE,
    compared_settings,
    comparison_cells,
    headline_comparison,
    spread_note,
)
from backprop.lab.answers.settings import as_point_value
from backprop.lab.answers.stability import SATURATION_RULE, failure_sentence, limit_sentence
from backprop.lab.answers.sweep_tables import summary_table, titled
from backprop.lab.answers.wording import (
    is_tie,
    number,
    point_text,
    short_interval,
    short_point,
    table_number,
    upper_first,
    whole,
)
from backprop.lab.blocks import LABELS, answer_row, figure, fmt, paragraph, section
from backprop.losses import DEFAULT_LOSS, TASKS


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


def common_rate_epochs(summary: pd.DataFrame, answer: dict, task: str) -> str:
    """Where the best activation's rate pairs too few folds: the mean best epoch of every
    activation at the largest rate where each learned in every fold (summary.csv's means, no
    interval; a fold the budget stopped counts its last epoch, so its mean is a lower bound)."""
    names = [answer["best"].get("activation")] + [v["other"].get("activation") for v in answer["best_minus_other"]]
    if "activation" not in summary or "best_epoch_mean" not in summary:
        return ""
    rows = summary[(summary["task"] == task) & summary["activation"].isin(names)]
    everyone = [
        lr
        for lr, group in rows.groupby("lr")
        if set(group["activation"]) == set(names) and (group["learned"] == group["fits"]).all()
    ]
    if not everyone or max(everyone) == answer["best"].get("lr"):
        return ""
    lr = max(everyone)
    at = rows[rows["lr"] == lr].set_index("activation")
    parts = []
    for name in names:
        text = f"{name} {whole(float(at.loc[name, 'best_epoch_mean']))}"
        capped = int(at.loc[name, "capped"]) if "capped" in at else 0
        if capped:
            text += f" ({capped} of {int(at.loc[name, 'fits'])} folds still improving at the budget)"
        parts.append(text)
    return (
        f" At lr {fmt(lr)}, the largest rate where every activation learned in every fold, mean best epoch (no "
        f"interval; a capped fold counts its last epoch): {', '.join(parts)}."
    )


def activation_table(answer: dict, metric: str) -> tuple[str, str]:
    """The answers table's words and number: the activation best on validation against every
    other one, each at its own best rate (comparison.json's ``best_minus_other``), on the held-out
    folds; a tie ranks nothing, and a rate at an end of the grid is said to be one."""
    best, versus = answer["best"], answer["best_minus_other"]
    name = best.get("activation", point_text(best))
    others: dict[str, list[str]] = {"lower": [], "higher": [], "tie": []}
    for v in versus:
        side = "tie" if is_tie(v) else ("lower" if number(v, "ci_high") < 0 else "higher")
        others[side].append(short_point(v["other"]))
    parts = []
    if others["lower"] or others["higher"]:
        parts += [
            f"{short_point(best)} (best on validation) had a {side} held-out {metric} than {', '.join(others[side])}"
            for side in ("lower", "higher")
            if others[side]
        ]
        if others["tie"]:
            parts.append(f"no difference detected against {', '.join(others['tie'])}")
    else:
        parts.append(
            f"No difference detected in held-out {metric} between {short_point(best)} (best on validation) and "
            f"{', '.join(others['tie'])}, each at its own best rate"
        )
    grid = answer.get("grid_lr") or []
    rates = {point.get("lr") for point in [best] + [v["other"] for v in versus]}
    ends = [fmt(rate) for rate in (grid[:1] + grid[-1:] if len(grid) > 1 else []) if rate in rates]
    text = upper_first("; ".join(parts))
    if ends:
        text += f" (lr {' and '.join(ends)}: {'ends' if len(ends) > 1 else 'an end'} of the grid)"
    numbers = "; ".join(
        table_number(v, f"{name} − {v['other'].get('activation', point_text(v['other']))}") for v in versus
    )
    return text + ".", f"test {metric}, {numbers}" if numbers else "no other activation learned in every fold"


def shared_rate_pair(answer: dict, config: dict) -> tuple[str, dict] | None:
    """When the best on validation has the headline's activation (so best − headline says nothing
    about the activation), the runner-up activation on validation, at the headline's own rate, minus
    the headline network, paired by fold (comparison.json's ``each_minus_headline``): one rate for
    both, so neither side is the noisiest cell of the grid. None when that activation did not learn
    in every fold at that rate, or the best's activation differs from the headline's."""
    mine, lr = config.get("activation"), config.get("lr")
    if answer["best"].get("activation") != mine or lr is None or config.get("lr_unit", "absolute") != "absolute":
        return None
    found = {
        v["point"]["activation"]: v
        for v in answer.get("each_minus_headline") or []
        if v["point"].get("lr") == lr and v["point"].get("activation") != mine and (v.get("n") or 0) >= 2
    }
    ranked = sorted(
        (s for s in answer["settings"] if s["point"]["activation"] != mine and s["every_fold_learned"]),
        key=lambda s: s["val_mean"],
    )
    usable = [s for s in ranked if s["point"]["activation"] in found]
    if not usable:
        return None
    other = found[usable[0]["point"]["activation"]]
    which = "runner-up on validation" if usable[0] is ranked[0] else "best on validation of those that learned there"
    width = as_point_value(config.get("hidden"))
    headline = f"the headline network ({f'hidden {width}, ' if width else ''}{mine} at lr {fmt(lr)})"
    return f"{short_point(other['point'])} ({which}, at the headline's rate) − {headline}", other


def reach_phrase(reach: str, level: float) -> str:
    """``train loss ≤ 0.6× the constant model's`` for a sweep's ``reach`` key and level."""
    if reach.endswith("_loss_of_constant"):
        return f"{reach.split('_')[0]} loss ≤ {fmt(level)}× the constant model's"
    return f"{reach.replace('_', ' ')} {fmt(level)}"


def speed_words(answer: dict) -> tuple[str, str, str]:
    """Speed at one rate (comparison.json's ``reach_at_common_rate``): the row's few words, its
    number and the section's sentence; empty where the sweep has no such comparison."""
    found = answer.get("reach_at_common_rate")
    if not found or not found["versus"]:
        return "", "", ""
    best = found["best"].get("activation", point_text(found["best"]))
    where = f"at lr {fmt(found['lr'])}, epochs to {reach_phrase(found['reach'], found['level'])}"
    names = {side: [v["other"].get("activation", "") for v in found["versus"] if is_tie(v) is False and
                    (number(v, "ci_high") < 0) == (side == "faster")] for side in ("faster", "slower")}  # fmt: skip
    said = [f"{', '.join(names[side])} {side} than {best}" for side in ("faster", "slower") if names[side]]
    short = f" Speed ({where}): {'; '.join(said) if said else 'no difference detected'}."
    numbers = "; ".join(table_number(v, v["other"].get("activation", "")) for v in found["versus"])
    means = ", ".join(
        f"{v['other'].get('activation', '')} {fmt(v['other_mean'], 3)} ({fmt(found['best_mean'] / v['other_mean'], 2)}×"
        " fewer)"
        for v in found["versus"]
        if v.get("other_mean", 0) > 0 and "best_mean" in found
    )
    why = f" Mean epochs: {best} {fmt(found.get('best_mean', 0), 3)}, {means}." if means else ""
    if means and best == "sigmoid":  # the derivative table: σ′ ≤ ¼, tanh′(0) = 1, ReLU′ = 1 where active
        why += (
            " Sigmoid's slope is at most ¼ (at z = 0) against 1 for tanh at 0 and for ReLU on its active units: it "
            "scales both the backward error and how much the hidden features vary, so the same step moves a sigmoid "
            "network less. This compares the activations at one absolute rate; at its own chosen rate each may differ."
        )
    return (
        short,
        f"epochs to {reach_phrase(found['reach'], found['level'])} at lr {fmt(found['lr'])}, − {best}: {numbers}",
        f"Speed, {where} (the largest rate where every "
        + (f"activation learned and reached it in every fold), other − {best}, paired by fold: {numbers}.{why}"),
    )


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
        _, words = comparison_cells(pair, metric)
        short, number = activation_table(answer, metric)
        shared = shared_rate_pair(answer, config)
        if shared is None and not in_units:
            others = [v["other"] for v in answer["best_minus_other"]]
            number += spread_note(summary, task, answer["best"], others, metric)
        sentence = (
            f"{task.capitalize()}: best on validation {point_text(answer['best'])}; {words}; against each "
            f"activation at its own best rate, {number}"
        )
        if shared is not None:  # one rate for both sides: the row's first number, the tightest the run has
            _, shared_words = comparison_cells(shared, metric)
            sentence += f"; at one rate, {shared_words}"
            label = f"{short_point(shared[1]['point'])} − the headline {config.get('activation')}, test {metric}"
            number = f"{table_number(shared[1], label)}; each at its own best rate, {number}"
        sentence += f"; {units}."
        speed_short, speed_number, speed_sentence = speed_words(answer)
        short += speed_short
        number += f"; {speed_number}" if speed_number else ""
        sentence += f" {speed_sentence}" if speed_sentence else ""
        if any((v.get("n") or 0) >= 2 for v in answer.get("epochs_at_chosen_lr") or []):
            sentence += " " + epochs_short(answer)
        if any((v.get("n") or 0) < 2 for v in answer.get("epochs_at_chosen_lr") or []):
            sentence += common_rate_epochs(summary, answer, task)
        blocks.append(paragraph(f"**Answer ({task}):** {sentence}"))
        rows.append(answer_row(f"2.5 activation function, {task}", "q25", short, number))
        appendix.append(
            titled(summary_table(summary, ["activation", "lr"], task, failed=answer.get("failures")), "2.5 activation")
        )
    return section("2.5 The effect of the activation function", blocks, "q25", answers=rows, appendix=appendix)
