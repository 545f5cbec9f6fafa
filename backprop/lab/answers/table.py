"""The answers table that opens the report: one row per question (each section's answer), the
lines above it that make the first screen read on its own, and the derivation's row. No I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backprop.lab.answers.settings import intro_patience
from backprop.lab.blocks import answer_row, fmt, paragraph, section, table


def update_rule_row() -> dict:
    """The derivation's answer: not measured, derived (and checked against finite differences)."""
    sentence = (
        "Only the output error δ₂ = ∂L/∂z₂ differs: (2/n)(ŷ − y) for MSE on an identity output, (1/n)(ŷ − y) for "
        "log loss on a sigmoid output; the backward pass from δ₂ on is the same."
    )
    return answer_row(
        "the update rule: MSE vs log loss",
        "derivation",
        sentence,
        "derived; gradients match central finite differences (relative error < 1e-6)",
    )


ANSWER_MARK = "**Answer"  # how a section's own answer paragraph begins
ANSWER_HEADER = ["question", "answer (from this run)", "the number it rests on: a − b, mean (95% CI)"]


def answers_intro(schemas: dict, configs: dict) -> dict:
    """The lines above the answers table: the data by name, the protocol, the headline networks'
    actual settings, so the first screen reads on its own."""
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
    same = {key: all(words[key](c) == words[key](first) for c in configs.values()) for key in words}
    shared = [words[key](first) for key in words if same[key]]
    differ = [
        f"{task} " + ", ".join(words[key](config) for key in words if not same[key]) for task, config in configs.items()
    ]
    settings = ", ".join(shared) + (f"; {'; '.join(differ)}" if any(not s for s in same.values()) else "")
    return paragraph(
        f"**Data**: {data}. **Protocol**: {reg['folds']}-fold cross-validation{repeats}: each fold is **held out** "
        "once as the test rows; of the other rows a **validation** part stops training early and makes the sweeps' "
        f"choices, and the network learns on the rest (**train**). **Headline networks** (params.yaml's `train`): "
        f"{settings}; {intro_patience(configs)}."
    )


def answers_legend(configs: dict | None = None) -> dict:
    """How to read the table's numbers and its words, above it, so the first screen defines them;
    ``configs``: the headline networks' settings, whose ``learned_margin`` defines "learned"."""
    margins = {float(c["learned_margin"]) for c in (configs or {}).values() if "learned_margin" in c}
    learned = (
        f" A fit **learned** if its returned model's validation loss is ≥ {fmt(100 * margins.pop(), 3)}% below the "
        "constant model's (else it diverged, stalled, oscillated or was no better)."
        if len(margins) == 1
        else ""
    )
    return paragraph(
        "**Numbers**: a − b, the mean over the held-out folds with its 95% t interval, corrected (Nadeau–Bengio) "
        "because folds share training rows; **a − b < 0** means a is lower (a lower loss, or fewer epochs, is "
        "better). A **tie** (interval contains 0) has no winner: any difference lies in the interval, and "
        "**detectable** is the smallest difference this design finds with 80% power. MSE is in squared target "
        "units, log loss in nats; **accuracy (1 − MAPE)** = 1 − mean |y − ŷ| / |y|. **Stable limit**: 2/λ_max of "
        "the loss Hessian at initialisation, the largest step gradient descent on that curvature survives; "
        "**catapult**: past it the loss first jumps, then falls (Lewkowycz et al. 2020)." + learned
    )


def answers_section(
    sections: list[dict], intro: dict | None = None, control: dict | None = None, configs: dict | None = None
) -> dict:
    """The report's opening: every section's answer rows in one table, each linking to its
    section, with the definitions above it and the control task's line (``control``) below."""
    rows = [
        [f"[{row['question']}](#{row['anchor']})", row["answer"], row["number"]]
        for s in sections
        for row in s["answers"]
    ]
    blocks = [*([intro] if intro else []), answers_legend(configs), table(ANSWER_HEADER, rows)]
    return section("Answers", [*blocks, *([control] if control else [])], "answers")
