"""2.4: the effect of the number of hidden neurons: each width early-stopped at its own best
rate against the headline network, and what gradient descent fits in a fixed budget (capacity
and overfitting, paired at one rate). No I/O."""

from __future__ import annotations

import math

import pandas as pd

from backprop.lab.answers.choices import (
    HEATMAP_NOTE,
    compared_settings,
    comparison_cells,
    headline_comparison,
    versus_words,
)
from backprop.lab.answers.settings import as_point_value, sweep_budget
from backprop.lab.answers.stability import (
    SATURATION_RULE,
    STALL_CAVEAT,
    above_limit_sentence,
    failure_sentence,
    limit_sentence,
    width_bounds,
)
from backprop.lab.answers.sweep_tables import summary_table, titled
from backprop.lab.answers.wording import (
    flipped,
    found,
    is_tie,
    number,
    point_text,
    short_interval,
    short_point,
    table_number,
    upper_first,
    verdict,
    whole,
)
from backprop.lab.blocks import answer_row, figure, fmt, paragraph, section


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


def capacity_table(ends: list[dict], epochs, in_units: bool = False) -> tuple[str, str]:
    """The fixed-budget experiment in the answers table's few words, and its numbers: the first
    rate where both widths learned in every fold, train and held-out (wider − narrower)."""
    compared = [end for end in ends if _paired(end)]
    if not compared:
        return "", ""
    end = compared[0]
    wide, narrow, lr = end["to"]["hidden"], end["from"]["hidden"], end["to"]["lr"]
    train, test = end["train_mse_wider_minus_narrower"], end["test_mse_wider_minus_narrower"]
    rate = f"{fmt(lr)}× each width's limit" if in_units else f"lr {fmt(lr)}"
    fits = found(
        train,
        lower=f"hidden {wide} fits the training rows better than hidden {narrow}",
        higher=f"hidden {wide} fits the training rows worse than hidden {narrow}",
    ).replace("no difference detected", f"no training difference detected between hidden {wide} and {narrow}")
    held = found(test, lower="held-out MSE lower", higher="held-out MSE higher").replace(
        "no difference detected", "held-out: no difference detected"
    )
    over = not is_tie(train) and number(train, "ci_high") < 0 and not is_tie(test) and number(test, "ci_low") > 0
    budget = f"{epochs} epochs" if epochs else "budget"
    words = f"Fixed {budget}, no early stopping, at {rate}: {fits}; {held}" + ("; overfitting" if over else "")
    numbers = f"Fixed budget, hidden {wide} − {narrow}: " + "; ".join(
        (table_number(train, "train MSE"), table_number(test, "test MSE"))
    )
    return words, numbers


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


def headline_network_pair(
    answer: dict, config: dict, summary: pd.DataFrame, in_units: bool = False
) -> tuple[str, dict] | None:
    """The sweep's best on validation minus the headline network itself (params.yaml `train`, the
    train stage's fits, paired by fold: comparison.json's ``headline_vs_best`` mirrored), its rate
    also as a multiple of its width's limit when the sweep's rates are (``in_units``)."""
    versus = (answer.get("headline_vs_best") or {}).get("headline_minus_tuned")
    if not versus or not versus.get("n") or "hidden" not in config:
        return None
    best, width = answer["best"], as_point_value(config["hidden"])
    rest = ", ".join(f"{key} {value}" for key, value in best.items() if key != "lr")
    chosen = f"{rest} at {fmt(best['lr'])}× its limit" if in_units and "lr" in best else short_point(best)
    absolute = config.get("lr_unit") != "limit"
    rate = f"the absolute lr {fmt(config['lr'])}" if absolute and in_units else f"lr {fmt(config['lr'])}"
    if not absolute:
        rate = f"{fmt(config['lr'])}× its limit"
    if in_units and config.get("lr_unit") != "limit" and {"hidden", "lr_limit"} <= set(summary):
        match = summary[(summary["task"] == "regression") & (summary["hidden"] == width)]
        if len(match):
            rate += f", {fmt(config['lr'] / float(match['lr_limit'].iloc[0]), 2)}× its limit"
    return f"{chosen} (best on validation) − the headline network (hidden {width} at {rate})", flipped(versus)


def narrowest_minus_headline(answer: dict | None) -> tuple[dict, dict] | None:
    """The narrowest width that learned in every fold, at its own best rate, minus the headline
    network, paired by fold (comparison.json's ``each_minus_headline``): the width effect at a
    stable headline, the same contrast on every task. (its point, the difference), or None."""
    if not answer:
        return None
    learned = [v["other"] for v in answer.get("best_minus_other", [])] + [answer["best"]]
    learned = [point for point in learned if "hidden" in point]
    if not learned:
        return None
    narrowest = min(learned, key=lambda point: point["hidden"])
    found = [v for v in answer.get("each_minus_headline") or [] if v["point"] == narrowest]
    return (narrowest, found[0]) if found else None


def narrowest_words(answer: dict) -> str:
    """``hidden 1 − headline: 19.6 (-194 to 233), detectable 286`` (a tie), or ``detected …``."""
    found = narrowest_minus_headline(answer)
    if found is None or found[0] == answer.get("best"):  # the row's own pair already
        return ""
    point, difference = found
    words = f"hidden {point['hidden']} − headline: "
    if is_tie(difference):
        return words + f"tie {short_interval(difference)}, detectable {whole(number(difference, 'mde'))}"
    return words + f"detected {short_interval(difference)}"


def still_improving_words(answer: dict, hidden: pd.DataFrame, unit: str, budget: str) -> str:
    """How many learned fits of each compared width (at its chosen rate) and of the headline were
    still improving when the epoch budget ran out (summary.csv's ``capped``; comparison.json's
    ``headline_vs_best``): a difference between widths can be one width cut short."""
    rows = hidden[hidden["task"] == "regression"]
    parts = []
    for setting in answer["settings"]:
        match = rows
        for key, value in setting["point"].items():
            match = match[match[key] == value]
        if setting["every_fold_learned"] and len(match) and {"capped", "learned"} <= set(match):
            row = match.iloc[0]
            rate = f"{fmt(setting['point']['lr'])}{unit}"
            parts.append(
                f"hidden {setting['point']['hidden']} at {rate}: {int(row['capped'])} of {int(row['learned'])}"
            )
    versus = answer.get("headline_vs_best") or {}
    if "capped" in versus and versus.get("headline", {}).get("n"):
        parts.append(f"the headline network: {versus['capped']['headline']} of {versus['headline']['n']}")
    if not parts:
        return ""
    return f"Fits still improving when the budget ran out ({budget}; the headline its own): {'; '.join(parts)}."


def other_widths_detectable(answer: dict) -> str:
    """``detectable 318 to 866``: the range of the detectable sizes of the best width against each
    other width (at its own best rate), so that no single pair stands for the design's power."""
    mdes = [number(v, "mde") for v in answer["best_minus_other"] if math.isfinite(number(v, "mde"))]
    if not mdes:
        return ""
    low, high = fmt(min(mdes), 3), fmt(max(mdes), 3)
    return f"against each other width at its best rate: detectable {low if low == high else f'{low} to {high}'}"


def answer_24(
    hidden: pd.DataFrame,
    capacity: pd.DataFrame,
    comparison: dict,
    configs: dict | None = None,
    budget=None,
    capacity_unit: str | None = None,
    hidden_unit: str | None = None,
    hidden_fixed: dict | None = None,
) -> dict:
    """``capacity_unit`` / ``hidden_unit``: the ``lr_unit`` each sweep fixes (None: train's);
    ``hidden_fixed``: the train keys the hidden sweep fixes (its epoch budget among them)."""
    answer = comparison["regression"]["sweeps"]["hidden"]
    ends = comparison["regression"]["sweeps"]["capacity"].get("capacity", {}).get("same_lr")
    config = (configs or {}).get("regression", {})
    in_units = (capacity_unit or config.get("lr_unit", "absolute")) == "limit"
    hidden_in_units = (hidden_unit or config.get("lr_unit", "absolute")) == "limit"
    stopping = sweep_budget(config, hidden_fixed)
    improving = still_improving_words(answer, hidden, "× its limit" if hidden_in_units else "", stopping)
    blocks = [
        paragraph(
            "Two experiments, because early stopping mixes two things. **Generalisation**: every width × learning "
            f"rate, early-stopped on validation ({sweep_budget(config, hidden_fixed, rule=True)}), each width "
            "compared at its own best learning rate (a "
            "shared rate would decide the result before training: the stable step shrinks as the layer widens)."
        ),
        paragraph(f"{compared_settings(answer, 'width')} {improving}".strip()),
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
    failures = failure_sentence(hidden, "regression", ["hidden"], answer.get("failures"))
    if failures:
        blocks.append(
            paragraph(
                f"**Where not every fold learned**, the returned weights ({SATURATION_RULE}): {failures}. "
                + STALL_CAVEAT
            )
        )
    bounds = width_bounds(hidden, config, hidden_in_units)  # beside the saturation shares it qualifies
    if bounds:
        blocks.append(paragraph(bounds))
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
            "(params.yaml `sweep.capacity`), each width at the learning rate of the grid with the lowest mean "
            "training error among the rates where every fold learned. This measures how far full-batch gradient "
            "descent gets in that budget, not what a width could fit given time: a wider layer has a smaller "
            "stable step (its lr limit above), so it may get less far. Each width against the next wider one, "
            "paired by fold (wider − narrower): " + "; ".join(sentences) + ". " + grid_end_sentence(steps, capacity)
        ),
        figure(
            "sweep_capacity.png",
            "train, val and test MSE against width after a fixed budget of epochs, each width at its own lr (labelled)",
        ),
    ]
    headline_pair = headline_network_pair(answer, config, hidden, hidden_in_units)
    pair = headline_pair or headline_comparison(answer, config)
    cell, words = comparison_cells(pair, "MSE")
    others = other_widths_detectable(answer)
    narrowest = narrowest_words(answer)
    capped = (answer.get("headline_vs_best") or {}).get("capped")
    sentence = (
        f"Best on validation (the hidden sweep: {stopping}; the headline {sweep_budget(config)}): "
        f"{point_text(answer['best'])}; {words}"
        + (
            f" (fits still improving when their budget ran out: {capped['tuned']} and {capped['headline']} of "
            f"{answer['headline_vs_best']['headline']['n']}, best on validation and headline)"
            if capped
            else ""
        )
        + (f"; {others}" if others else "")
        + (f"; the narrowest at its best rate, {narrowest}" if narrowest else "")
    )
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
    if headline_pair is not None:  # the table names the two networks; the section gives their rates
        pair = (f"hidden {answer['best']['hidden']} (best on validation) − hidden {as_point_value(config['hidden'])} "
                "(headline)", headline_pair[1])  # fmt: skip
        cell, _ = comparison_cells(pair, "MSE")
    mdes = [number(v, "mde") for v in answer["best_minus_other"] if math.isfinite(number(v, "mde"))]
    if mdes:
        low, high = whole(min(mdes)), whole(max(mdes))
        cell += f" ({low if low == high else f'{low} to {high}'} against the other widths)"
    if narrowest:
        cell += f"; {narrowest}"
    fixed_words, fixed_number = capacity_table(ends or [], budget, in_units)
    widths = sorted(hidden[hidden["task"] == "regression"]["hidden"].unique()) if "hidden" in hidden else []
    short = (
        f"{upper_first(versus_words(pair))}, in held-out MSE."
        + (f" {fixed_words}." if fixed_words else f" {capacity_short(steps, capacity)}")
        + (f" Widths tried: {', '.join(str(int(width)) for width in widths)}." if widths else "")
    ).strip()
    if fixed_number:
        cell += f". {fixed_number}"
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
    rows = [answer_row("2.4 number of hidden neurons", "q24", short, cell)]
    return section("2.4 The effect of the number of hidden neurons", blocks, "q24", answers=rows, appendix=appendix)
