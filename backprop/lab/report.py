"""The report as data: sections of blocks (paragraphs, equations, tables, figures, code) built
from this run's outputs, rendered by two Jinja2 templates as Markdown and as one HTML file (its
texts converted by markdown-it-py, as CommonMark, so the page says what report.md says).

The report opens with the answers: one row per question, each a sentence generated from this
run's comparisons with the number it rests on and its interval. The derivation follows, then one
section per question ending with its own answer, the provenance, and an appendix with the
per-setting tables (collapsible in the HTML).

Every number comes from the inputs, except the reference hand-in's two numbers, which are
labelled as such and appear only for the table the hand-in was scored on.
"""

from __future__ import annotations

import base64
import functools
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backprop.activations import LEAKY_SLOPE
from backprop.lab import control
from backprop.lab.answers import q3, q21, q22, q23, q24, q25
from backprop.lab.answers import table as answers_table
from backprop.lab.answers.sweep_tables import summary_table
from backprop.lab.blocks import code, is_reference_data, markdown_blocks, paragraph, section, table

TEMPLATES = Path(__file__).parent / "templates"


# ---- sections ---------------------------------------------------------------------------------


def derivation_section(reference: bool) -> dict:
    """Section 1, from templates/derivation.md.j2; ``reference``: the table is the one the
    reference hand-in was scored on, so its derivation is discussed too."""
    text = _environment().get_template("derivation.md.j2").render(leaky_slope=LEAKY_SLOPE, reference=reference)
    return section("1. Derivation: backpropagation for one sigmoid hidden layer", markdown_blocks(text), "derivation")


def provenance_section(info: dict) -> dict:
    """How to find this report's MLflow runs and what it was made from; no run id, commit or time,
    so the same code, params and data give the same section on any machine and clone."""
    runs = [["train", task, f"`{run_filter}`"] for task, run_filter in info["train_runs"].items()]
    runs += [
        [f"sweep {name} (parent)", f"{count} child runs", f"`{run_filter}`"]
        for name, (run_filter, count) in info["sweep_runs"].items()
    ]
    runs.append(["baselines (parent)", f"{info['baseline_children']} child runs", f"`{info['baselines_run']}`"])
    data_rows = [[s["source"], f"`{s['sha256'][:16]}…`", str(s["rows"])] for s in info["schemas"].values()]
    experiment = info["experiment"]
    return section(
        "4. Provenance",
        [
            paragraph(
                f"MLflow store: `{info['tracking_uri']}`, experiment `{experiment}`. Every run carries the tag "
                f"`{info['digest_tag']}`, a digest of its stage's code, params and input data (what `dvc.yaml` "
                "declares for the stage), so the same inputs give the same filter on any machine. Find a run with "
                f'`mlflow.search_runs(experiment_names=["{experiment}"], filter_string=...)` and its filter below, '
                "or paste the filter into the search box of the UI; a stage run again with the same inputs adds a "
                "run with the same filter, and the latest is the one these outputs come from. "
                "`runs/sweep_<name>.json` also holds the filter of each sweep's child runs."
            ),
            table(["MLflow run", "what", "filter string"], runs),
            paragraph(
                f"This report's own digest (its code, params and inputs, which hold the digests above): "
                f"`{info['digest']}`."
            ),
            table(["data", "sha256", "rows"], data_rows),
            table(["package", "version"], [[name, version] for name, version in info["versions"].items()]),
            paragraph(
                "Open the runs with `make ui` and http://127.0.0.1:5000 (the UI binds to this machine only). "
                "Every figure here is also attached to its run under `figures/`."
            ),
            paragraph("The parameters of this run (`params.yaml`):"),
            code(info["params_yaml"]),
        ],
        "provenance",
    )


@dataclass
class ReportInputs:
    scores: dict  # task -> metrics/<task>-scores.json
    baselines: dict
    comparison: dict
    schemas: dict
    histories: dict
    train_config: dict  # task -> train settings
    summaries: dict  # sweep name -> summary.csv
    sweep_specs: dict  # sweep name -> SweepSpec
    ratios: dict  # task -> n_test / n_train of its folds, for intervals
    provenance: dict
    overrides: dict = field(default_factory=dict)  # task -> the train keys train.overrides.<task> sets


def _fixed(specs: dict, name: str, key: str = "epochs"):
    """The value a sweep fixes for every fit (the epoch budget by default; None when it does not)."""
    spec = specs.get(name)
    return getattr(spec, "fixed", {}).get(key) if spec is not None else None


def build(inputs: ReportInputs) -> dict:
    summaries, comparison, configs = inputs.summaries, inputs.comparison, inputs.train_config
    reference = is_reference_data(inputs.schemas["regression"])
    questions = [
        derivation_section(reference),
        q21.answer_21(
            inputs.scores,
            inputs.baselines,
            comparison,
            inputs.schemas,
            configs,
            inputs.ratios,
            inputs.overrides,
            frozenset(name for name in inputs.sweep_specs if _fixed(inputs.sweep_specs, name, "lr_unit") == "limit"),
        ),
        q22.answer_22(inputs.histories, inputs.scores, configs, inputs.ratios),
        q23.answer_23(summaries["lr"], comparison, configs, inputs.schemas),
        q24.answer_24(
            summaries["hidden"],
            summaries["capacity"],
            comparison,
            configs,
            _fixed(inputs.sweep_specs, "capacity"),
            _fixed(inputs.sweep_specs, "capacity", "lr_unit"),
            _fixed(inputs.sweep_specs, "hidden", "lr_unit"),
            getattr(inputs.sweep_specs.get("hidden"), "fixed", None),
        ),
        q25.answer_25(
            summaries["activation"], comparison, configs, _fixed(inputs.sweep_specs, "activation", "lr_unit")
        ),
        q3.answer_3(summaries, comparison, inputs.sweep_specs, configs),
    ]
    questions[0]["answers"] = [answers_table.update_rule_row()]
    for question in questions[1:]:  # each section ends with its answer(s), whatever came between
        final = [b for b in question["blocks"] if b["kind"] == "p" and b["text"].startswith(answers_table.ANSWER_MARK)]
        question["blocks"] = [b for b in question["blocks"] if not any(b is f for f in final)] + final
    controls = control.control_tasks(inputs.schemas)
    settings = control.headline_settings(
        configs.get(controls[0]) if controls else None,
        inputs.overrides.get(controls[0]) if controls else None,
        controls[0] if controls else "",
    )
    capped = control.headline_capped(inputs.scores.get(controls[0])) if controls else None
    run = control.ControlRun(
        baselines=inputs.baselines,
        scores=inputs.scores,
        ratios=inputs.ratios,
        summaries=summaries,
        specs=inputs.sweep_specs,
        configs=configs,
    )
    add_control(questions, comparison, inputs.schemas, settings, capped, run)
    add_rate_units(questions, inputs.sweep_specs)
    appendix = [block for s in questions for block in s["appendix"]]
    intro = answers_table.answers_intro(inputs.schemas, configs)
    sections = [
        answers_table.answers_section(questions, intro, control.answers_line(comparison, inputs.schemas, run), configs),
        *questions,
        *control.control_section(
            comparison, inputs.schemas, settings=settings, sweep_specs=inputs.sweep_specs, capped=capped, run=run
        ),
        *other_sweeps_section(summaries, inputs.sweep_specs),
        provenance_section(inputs.provenance),
    ]
    if appendix:
        sections.append(section("Appendix: every setting of every sweep", appendix, "appendix") | {"collapsible": True})
    return {
        "title": "backprop-lab report: a 3-layer network trained by hand-written backpropagation",
        "sections": sections,
    }


def add_control(
    questions: list[dict],
    comparison: dict,
    schemas: dict,
    settings: str = "",
    capped: tuple[int, int] | None = None,
    run: control.ControlRun | None = None,
) -> None:
    """The control task beside each answer: a closing paragraph in the question's section (the
    answers table has its one line under it: ``control.answers_line``)."""
    closing = control.section_paragraphs(comparison, schemas, settings, capped, run)
    for question in questions:
        if question["anchor"] in closing:
            question["blocks"].append(closing[question["anchor"]])


# The question each sweep answers, for saying where its rates are in units of the limit.
SWEEP_QUESTION = {"lr": "q23", "activation": "q25", "hidden": "q24", "capacity": "q24", "loss": "loss"}


def add_rate_units(questions: list[dict], specs: dict) -> None:
    """Where a sweep's rates are multiples of each network's own limit (``lr_unit: limit``), its
    section says so before its answer, once for all its sweeps in units: there "lr 0.5" means half
    the width's stable step."""
    by_anchor = {question["anchor"]: question for question in questions}
    in_units: dict[str, list[tuple[str, Any]]] = {}
    for name, spec in specs.items():
        anchor = SWEEP_QUESTION.get(name)
        if spec.fixed.get("lr_unit") == "limit" and anchor is not None and anchor in by_anchor:
            in_units.setdefault(anchor, []).append((name, spec))
    for anchor, named in in_units.items():
        for row in by_anchor[anchor]["answers"]:
            if "(lr: a multiple of" not in row["answer"] and "each width's limit" not in row["answer"]:
                row["answer"] += " (lr: a multiple of each width's own stable limit)"
        sweeps = " and ".join(f"`{name}`" for name, _ in named)
        grids = "; ".join(
            f"{name}: c in {', '.join(str(value) for value in spec.grid.get('lr', []))}" for name, spec in named
        )
        results = " and ".join(f"`sweeps/{name}/results.csv`" for name, _ in named)
        by_anchor[anchor]["blocks"].insert(
            0,
            paragraph(
                f"**Rates in units of the limit.** In the {sweeps} sweep{'s' if len(named) > 1 else ''} every rate "
                "is a multiple c of the network's own stable step 2/λ_max at its initial weights, measured on each "
                f"fold's training rows before training ({grids}; `lr_applied` in {results} is the step itself): "
                "each width trains at the same stability, so a wide layer is not put past its limit by a rate "
                "that suits a narrow one. Where this section says lr c, read c × that width's limit."
            ),
        )


# The sweeps the numbered answers read; any other sweep in params.yaml is reported in its own section.
ANSWERED = ("lr", "activation", "hidden", "capacity", "loss", "saturated")


def other_sweeps_section(summaries: dict, specs: dict) -> list[dict]:
    """A section with each unanswered sweep's table per task (none when every sweep is answered)."""
    blocks = []
    for name, spec in specs.items():
        if name in ANSWERED:
            continue
        grid = ", ".join(f"{key} {values}" for key, values in spec.grid.items())
        fixed = f", fixed {spec.fixed}" if spec.fixed else ""
        blocks.append(paragraph(f"**{name}**: every combination of {grid}{fixed}, on every fold."))
        blocks += [summary_table(summaries[name], spec.keys, task) for task in spec.tasks]
    return [section("Other sweeps", blocks, "other-sweeps")] if blocks else []


# ---- rendering --------------------------------------------------------------------------------


@functools.cache
def _markdown():
    """markdown-it-py with CommonMark and tables, the Markdown that report.md is read as (GitHub,
    GitLab). Raw HTML inside a text is shown as text, never passed through."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown_html(text: str) -> str:
    """A paragraph's Markdown as HTML block(s), exactly as report.md holds it."""
    return _markdown().render(text).rstrip("\n")


def inline_markdown_html(text: str) -> str:
    """Inline Markdown (a table cell, a caption) as HTML, with no enclosing paragraph."""
    return _markdown().renderInline(text)


def equation_png(tex: str) -> str:
    """A display equation as a PNG data URI, drawn by matplotlib's mathtext: no network, no MathJax."""
    from matplotlib import mathtext

    buffer = io.BytesIO()
    mathtext.math_to_image(f"${tex}$", buffer, dpi=150, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_markdown(document: dict, figures_folder: str) -> str:
    return _environment().get_template("report.md.j2").render(doc=document, figures=figures_folder)


def render_html(document: dict, figure_bytes: dict[str, bytes]) -> str:
    import markupsafe

    images = {name: "data:image/png;base64," + base64.b64encode(data).decode() for name, data in figure_bytes.items()}
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            doc=document,
            images=images,
            markdown=lambda text: markupsafe.Markup(markdown_html(text)),
            inline=lambda text: markupsafe.Markup(inline_markdown_html(text)),
            equation=equation_png,
        )
    )
