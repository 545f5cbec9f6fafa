"""What a sweep chose on validation, and the number an answer rests on: the best setting against
every other one and against the headline network's, each paired by fold, a tie with its
detectable size. No I/O."""

from __future__ import annotations

import math

from backprop.lab.answers.settings import as_point_value
from backprop.lab.answers.wording import (
    found,
    interval,
    is_tie,
    number,
    outcome_text,
    point_text,
    short_point,
    table_number,
    whole,
)
from backprop.lab.blocks import LABELS, fmt

HEATMAP_NOTE = (
    "; the colours show means only, and most of their differences are within the folds' spread (the "
    "comparisons above say which are not)"
)


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


def headline_comparison(answer: dict, headline: dict) -> tuple[str, dict] | None:
    """The number a sweep's answer rests on: the setting best on validation minus the headline
    setting (params.yaml `train`, matched on the sweep's keys other than lr), paired by fold; when
    the headline setting is the best, minus the runner-up on validation."""
    chosen = answer["best"]
    keys = [key for key in chosen if key != "lr" or list(chosen) == ["lr"]]
    target = {key: as_point_value(headline[key]) for key in keys if key in headline}
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


def comparison_cells(pair: tuple[str, dict] | None, metric: str) -> tuple[str, str]:
    """The answers table's number cell for a ``headline_comparison`` (a tie with its detectable
    size), and its words for the section."""
    if pair is None:
        return "no other setting learned in every fold", "no other setting to compare"
    label, difference = pair
    words = found(
        difference, lower="best on validation detectably lower", higher="best on validation detectably higher"
    )
    if is_tie(difference):
        words += f" ({interval(difference, 3)}, detectable {fmt(number(difference, 'mde'), 3)})"
    return table_number(difference, f"{label}, test {metric}"), f"{label}: {words}"


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


def spread_note(summary, task: str, best: dict, others: list[dict], metric: str) -> str:
    """``; lr 0.3 is 1.5× its stable limit and its folds spread most (test MSE sd 577; the others
    199 to 230)``: said only when the setting best on validation is past its limit and its held-out
    loss has the largest spread over folds, which widens every interval that pairs with it."""
    column = f"test_{metric.replace(' ', '_').lower()}_std"
    if summary is None or column not in summary or "lr_limit" not in summary or "lr" not in best:
        return ""

    def row(point: dict):
        match = summary[summary["task"] == task]
        for key, value in point.items():
            match = match[match[key] == value] if key in match else match.iloc[0:0]
        return match.iloc[0] if len(match) else None

    mine, theirs = row(best), [r for r in map(row, others) if r is not None]
    if mine is None or not theirs or not best["lr"] > float(mine["lr_limit"]):
        return ""
    spreads = [float(r[column]) for r in theirs]
    if not float(mine[column]) > max(spreads):
        return ""
    low, high = whole(min(spreads)), whole(max(spreads))
    others_sd = low if low == high else f"{low} to {high}"
    return (
        f"; {short_point(best)} is {fmt(best['lr'] / float(mine['lr_limit']), 2)}× its stable limit and its folds "
        f"spread most (test {metric} sd over folds {whole(float(mine[column]))}, against {others_sd})"
    )
