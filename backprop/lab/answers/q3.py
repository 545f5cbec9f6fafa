"""Section 3: MSE against log loss for classification, from the usual and from a confidently
wrong start: the epochs each takes to reach a level, paired by fold. No I/O."""

from __future__ import annotations

import math

from backprop.lab.answers.sweep_tables import summary_table, titled
from backprop.lab.answers.wording import found, interval, is_tie, number, table_number, upper_first
from backprop.lab.blocks import answer_row, figure, fmt, paragraph, section, table
from backprop.lab.curvature import SATURATED_P_MAX


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
    appendix, findings, numbers = [], [], []
    shorts: list[str] = []
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
            f"training row starts at P(y = 1) < {fmt(SATURATED_P_MAX)} (`saturated_start`), so every positive row is "
            "confidently "
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
            if name == "saturated":
                start_name += f" (every row at P(y = 1) < {fmt(SATURATED_P_MAX)})"
            rates = f"log loss at lr {fmt(pair['log_loss_lr'])}, MSE on the sigmoid at {fmt(pair['mse_lr'])}"
            said = rates in " ".join(shorts)
            shorts.append(
                f"from {start_name}, epochs to {what} ({'the same rates' if said else rates}): "
                + found(difference, lower="log loss reaches it faster", higher="MSE reaches it faster")
            )
            numbers.append((start_name.split(" (")[0].removeprefix("the ").removeprefix("a "), difference))
    sentence = "; ".join(findings) + "." if findings else "No log loss against MSE comparison in this run."
    sentence = upper_first(sentence)
    blocks.append(paragraph(f"**Answer:** {sentence}"))
    rows = []
    if numbers:
        rows.append(
            answer_row(
                "3. MSE vs log loss, classification",
                "loss",
                upper_first("; ".join(shorts)) + ".",
                "epochs, log loss − MSE: " + "; ".join(table_number(d, label) for label, d in numbers),
            )
        )
    return section("3. MSE versus log loss for classification", blocks, "loss", answers=rows, appendix=appendix)
