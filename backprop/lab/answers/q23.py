"""2.3: the effect of the learning rate: the rate chosen on validation against the headline
rate, the lr limit, the catapult past it and what λ_max at the returned weights shows. No I/O."""

from __future__ import annotations

import pandas as pd

from backprop.lab.answers.choices import (
    compared_settings,
    comparison_cells,
    headline_comparison,
    spread_note,
    versus_words,
)
from backprop.lab.answers.stability import (
    SATURATION_RULE,
    activation_bound,
    catapult_facts,
    edge_of_stability_sentence,
    failure_sentence,
    limit_sentence,
    why_failed,
)
from backprop.lab.answers.sweep_tables import summary_table, titled
from backprop.lab.answers.wording import (
    interval,
    is_tie,
    number,
    short_interval,
    short_point,
    table_number,
    times,
    upper_first,
)
from backprop.lab.blocks import answer_row, figure, fmt, paragraph, section
from backprop.losses import DEFAULT_LOSS


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


def mechanism_words(facts: dict, config: dict) -> str:
    """The lr limit at initialisation, the largest rate that learned in every fold against it, the
    catapult past it, the smallest rate that did not learn, and what λ_max at the returned weights
    bounds (``catapult_facts``)."""
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
            if (config.get("loss") or DEFAULT_LOSS["regression"]) == "mse" and broken >= 1 > facts["largest"]:
                mechanism += (
                    ", except that it is below 1: for MSE on an identity output the output bias alone has "
                    "curvature 2, so λ_max ≥ 2 at any weights and no rate of 1 or more can converge"
                )
    bound = activation_bound(facts, config)
    if bound:
        mechanism += f"; {bound}"
    return mechanism


def every_failure(comparison: dict) -> list[dict]:
    """comparison.json's ``failures`` entries of every sweep of every task: the fits that did not
    learn, wherever they ran."""
    return [
        entry
        for found in comparison.values()
        if isinstance(found, dict)
        for sweep in (found.get("sweeps") or {}).values()
        for entry in sweep.get("failures") or []
    ]


def rate_speed(answer: dict, config: dict) -> tuple[str, str, str]:
    """How long each rate trained against the headline's (comparison.json's
    ``epochs_minus_headline``: best epoch, paired by fold; a fit the epoch budget stopped counts
    its last epoch, a lower bound): the row's few words, its number and the section's sentence."""
    headline = config.get("lr")
    versus = [
        v
        for v in answer.get("epochs_minus_headline") or []
        if v["point"].get("lr") != headline and (v.get("n") or 0) >= 2
    ]
    if not versus or headline is None:
        return "", "", ""
    versus = sorted(versus, key=lambda v: v["point"]["lr"])
    capped = [f"lr {fmt(v['point']['lr'])} {v['capped']} of {v['n']}" for v in versus if v.get("capped")]
    slower = [v for v in versus if not is_tie(v) and number(v, "ci_low") > 0]
    short = (
        f" Lower rates train longer: best epoch at lr {', '.join(fmt(v['point']['lr']) for v in slower)} later than "
        f"at {fmt(headline)}."
        if slower
        else ""
    )
    lower = [v for v in versus if v["point"]["lr"] < headline]
    nearest = lower[-1] if lower else None  # the rate next below the headline's; the section gives every rate
    cell = (
        table_number(nearest, f"best epoch, lr {fmt(nearest['point']['lr'])} − lr {fmt(headline)}")
        + (f" ({nearest['capped']} of {nearest['n']} capped)" if nearest.get("capped") else "")
        if nearest
        else ""
    )
    sentence = (
        f"How long each rate trained, best epoch minus the headline's (lr {fmt(headline)}), paired by fold: "
        + "; ".join(f"lr {fmt(v['point']['lr'])}: {short_interval(v)}" for v in versus)
        + (f" (fits stopped by the epoch budget, their epoch a lower bound: {', '.join(capped)})" if capped else "")
    )
    return short, cell, sentence


def below_limit(answer: dict, limit: float, config: dict) -> tuple[str, str]:
    """Each rate below the lr limit (other than the headline's) minus the headline network,
    paired by fold (comparison.json's ``each_minus_headline``): where any difference lies over
    them all and the detectable sizes, or the rates where one is detected; the table's few words
    and the section's. ("", "") when no such rate learned in every fold."""
    versus = [
        v
        for v in answer.get("each_minus_headline") or []
        if v["point"]["lr"] < limit and v["point"]["lr"] != config.get("lr") and (v.get("n") or 0) >= 2
    ]
    if not versus:
        return "", ""
    rates = sorted(v["point"]["lr"] for v in versus)
    where = f"below the limit (lr {fmt(rates[0])}{f' to {fmt(rates[-1])}' if len(rates) > 1 else ''}) − the headline"
    mdes = [number(v, "mde") for v in versus]
    detectable = fmt(min(mdes), 3) if len(mdes) == 1 else f"{fmt(min(mdes), 3)} to {fmt(max(mdes), 3)}"
    detected = [v for v in versus if not is_tie(v)]
    if detected:
        short = f"{where}: detected at {', '.join(short_point(v['point']) for v in detected)}"
        long = short + " (" + "; ".join(f"{short_point(v['point'])}: {interval(v, 3)}" for v in detected) + ")"
        return short, long
    low, high = min(number(v, "ci_low") for v in versus), max(number(v, "ci_high") for v in versus)
    short = f"{where}: ties, all within {fmt(low, 3)} to {fmt(high, 3)}; detectable {detectable}"
    each = "; ".join(f"{short_point(v['point'])}: {interval(v, 3)}" for v in versus)
    long = (
        f"each rate {where} (lr {fmt(config.get('lr'))}), test MSE paired by fold: {each}; no difference detected "
        f"at any of them (detectable {detectable}): below the limit the rate does not move the early-stopped test "
        "MSE by more than these intervals allow, and only past it does the spread over folds grow"
    )
    return short, long


def raw_target_paragraph(summary: pd.DataFrame, schema: dict) -> dict:
    """2/λ_max at the first step on the raw target against the standardised one, and why it says
    nothing about a rate that would train there."""
    row = summary.iloc[0]
    stats = schema.get("target_stats", {})
    span = f" (y from {stats['min']:g} to {stats['max']:g})" if "min" in stats else ""
    return paragraph(
        f"**The raw target at the first step**: at the initial weights, 2/λ_max of the loss on the raw "
        f"target{span} is {fmt(row['lr_limit_unscaled'], 3)}, against {fmt(row['lr_limit'], 3)} on the "
        "standardised one. This is the curvature at the first step only: it changes as soon as the output "
        "bias moves, and this run trains no network on the raw target, so it says nothing about the rate "
        "that would train there."
    )


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
    mechanism = mechanism_words(facts, config)
    failures = failure_sentence(summary, "regression", [], answer.get("failures"))
    blocks.append(
        paragraph(
            f"**Mechanism.** {mechanism[0].upper() + mechanism[1:]}. "
            + (
                f"Where not every fold learned, the returned weights ({SATURATION_RULE}): {failures}. "
                if failures
                else ""
            )
            + edge_of_stability_sentence(summary, "regression", every_failure(comparison))
        )
    )
    if "lr_limit_unscaled" in summary:
        blocks.append(raw_target_paragraph(summary, (schemas or {}).get("regression", {})))
    pair = headline_comparison(answer, config)
    number, words = comparison_cells(pair, "MSE")
    below_short, below_long = below_limit(answer, limit, config)
    if pair is not None and config.get("lr_unit", "absolute") != "limit" and not below_short:
        number += spread_note(summary, "regression", answer["best"], [pair[1]["other"]], "MSE")
    if below_short:  # the rates below the limit say what the run resolves; the section keeps the spread
        number += f"; {below_short}"
        blocks.append(paragraph(f"**Below the limit.** {upper_first(below_long)}."))
    rate_short, rate_cell, rate_sentence = rate_speed(answer, config)
    number += f"; {rate_cell}" if rate_cell else ""
    sentence = (
        f"Best on validation: lr {fmt(answer['best']['lr'])}; {words}"
        + (f"; {below_long}" if below_long else "")
        + (f"; {rate_sentence}" if rate_sentence else "")
        + f"; {mechanism}."
    )
    short = f"{upper_first(versus_words(pair))}."
    if "largest" in facts:
        multiple = fmt(facts["largest"] / limit, 2)
        short += f" lr {fmt(facts['largest'])} ({multiple}× the stable limit {fmt(limit, 3)}) learned"
        if facts.get("peak", 1.0) > 1.01:
            short += f" after a catapult (loss first rose up to {times(facts['peak'])})"
    if "first_broken" in facts:
        broken = facts["first_broken"]
        fits = summary[(summary["task"] == "regression") & (summary["lr"] == broken)]["fits"]
        of = f", over {int(fits.iloc[0])} folds" if len(fits) else ""
        short += (
            f"{';' if 'largest' in facts else ''} at lr {fmt(broken)} ({fmt(broken / limit, 2)}×){of}: "
            f"{why_failed(summary, 'regression', {'lr': broken})}"
        )
    rates = sorted(summary[summary["task"] == "regression"]["lr"].unique())
    short += (
        ("." if "largest" in facts or "first_broken" in facts else "")
        + rate_short
        + (f" Rates tried: {', '.join(fmt(rate) for rate in rates)}." if rates else "")
    )
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
    rows = [answer_row("2.3 learning rate", "q23", short, number)]
    return section("2.3 The effect of the learning rate", blocks, "q23", answers=rows, appendix=appendix)
