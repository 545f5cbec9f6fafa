"""The report as data: sections of blocks (paragraphs, equations, tables, figures, code) built
from this run's outputs, rendered by two Jinja2 templates as Markdown and as one HTML file (its
texts converted by markdown-it-py, as CommonMark, so the page says what report.md says).

Every number comes from the inputs, except the reference hand-in's two numbers, which are
labelled as such wherever they appear.
"""

from __future__ import annotations

import base64
import functools
import io
from dataclasses import dataclass
from pathlib import Path

from backprop.activations import LEAKY_SLOPE
from backprop.lab import answers
from backprop.lab.blocks import code, equation, paragraph, section, table

TEMPLATES = Path(__file__).parent / "templates"


# ---- sections ---------------------------------------------------------------------------------


def derivation_section() -> dict:
    code_map = table(
        ["step of the derivation", "where the code does it"],
        [
            ["forward pass z = aW + b, a = g(z)", "`MLP._forward` in `backprop/mlp.py`"],
            [
                "output error δ₂ for each (output, loss) pair",
                "`error_*` functions and `HEADS` in `backprop/losses.py`",
            ],
            [
                "∂L/∂W, ∂L/∂b, δ₁ = (δ₂W₂ᵀ) ⊙ g′",
                "`MLP._backward` in `backprop/mlp.py` (one line per equation; ∂L/∂W₁ and ∂L/∂b₁ come from "
                "one product, [X 1]ᵀδ₁ = [Xᵀδ₁; 1ᵀδ₁])",
            ],
            ["g and g′ in terms of a = g(z)", "`ACTIVATIONS` in `backprop/activations.py`"],
            [
                "update θ ← θ − α∇θL",
                "`MLP._batch_step` in `backprop/mlp.py` (`self._theta -= step * ws.grad_vector`)",
            ],
        ],
    )
    return section(
        "1. Derivation: backpropagation for one sigmoid hidden layer",
        [
            paragraph(
                "A batch of n rows. Shapes as in the code: X (n, f), W₁ (f, h), b₁ (h), W₂ (h, 1), b₂ (1). "
                "Forward pass of the regression network (sigmoid hidden layer, identity output):"
            ),
            equation(r"z_1 = X W_1 + b_1,\quad a_1 = \sigma(z_1),\quad \hat{y} = z_2 = a_1 W_2 + b_2"),
            paragraph("Mean squared error over the batch:"),
            equation(r"L = \dfrac{1}{n}\sum_{i=1}^{n}(\hat{y}_i - y_i)^2"),
            paragraph(
                "Chain rule from the loss back. The output error is the derivative of L with respect to the "
                "output's pre-activation z₂; with the identity output ŷ = z₂, so:"
            ),
            equation(r"\delta_2 = \dfrac{\partial L}{\partial z_2} = \dfrac{2}{n}(\hat{y} - y)\quad (n, 1)"),
            paragraph("z₂ is linear in W₂ and b₂, so their gradients collect δ₂ over the rows:"),
            equation(
                r"\dfrac{\partial L}{\partial W_2} = a_1^{T}\delta_2\ (h, 1),\quad"
                r" \dfrac{\partial L}{\partial b_2} = \sum_{i}\delta_{2,i}\ (1)"
            ),
            paragraph(
                "The error reaches the hidden layer through W₂ and is scaled by the sigmoid's slope, "
                "σ′(z) = σ(z)(1 − σ(z)) = a₁(1 − a₁), elementwise (⊙):"
            ),
            equation(r"\delta_1 = (\delta_2 W_2^{T}) \odot a_1 \odot (1 - a_1)\quad (n, h)"),
            equation(
                r"\dfrac{\partial L}{\partial W_1} = X^{T}\delta_1\ (f, h),\quad"
                r" \dfrac{\partial L}{\partial b_1} = \sum_{i}\delta_{1,i}\ (h)"
            ),
            paragraph("Gradient descent with learning rate α, full batch or mini-batch, repeated over epochs:"),
            equation(
                r"W \leftarrow W - \alpha\,\dfrac{\partial L}{\partial W},\quad"
                r" b \leftarrow b - \alpha\,\dfrac{\partial L}{\partial b}"
            ),
            paragraph(
                "**Binary classification with log loss.** The output becomes ŷ = σ(z₂) and the loss is the "
                "log loss below. Its derivative −(y/ŷ − (1 − y)/(1 − ŷ))/n, times the output slope ŷ(1 − ŷ), "
                "simplifies: σ′ cancels and the output error has the same form as for regression, without the 2:"
            ),
            equation(r"L = -\dfrac{1}{n}\sum_{i}\left[y_i\log\hat{y}_i + (1 - y_i)\log(1 - \hat{y}_i)\right]"),
            equation(r"\delta_2 = \dfrac{1}{n}(\hat{y} - y)"),
            paragraph(
                "That is the only difference between the two update rules: the output activation, the loss and "
                "therefore δ₂. Everything from δ₂ backwards (∂L/∂W₂, δ₁, ∂L/∂W₁, the update) is identical. "
                "The code computes the log loss from the logit z₂ as log(1 + e^z₂) − y·z₂, which never takes log(0)."
            ),
            paragraph(
                "**Why not MSE on a sigmoid output?** Then σ′ does not cancel and the error term keeps the factor "
                "ŷ(1 − ŷ), which is near 0 whenever the output saturates, also when it is confidently wrong: "
                "learning stalls exactly where it is needed. Section 3 measures this."
            ),
            equation(r"\delta_2 = \dfrac{2}{n}(\hat{y} - y)\,\hat{y}(1 - \hat{y})"),
            paragraph(
                "**Why ŷ − y appears in both tasks.** Identity output with MSE and sigmoid output with log loss are "
                "matched pairs (each loss is the negative log-likelihood of the distribution whose mean the output "
                "activation produces: Gaussian and Bernoulli), and for such a pair the derivative of the loss with "
                "respect to the output's pre-activation is always (prediction − target) times a constant. Any other "
                "pairing, such as MSE on a sigmoid, keeps the output activation's slope in δ₂."
            ),
            paragraph(
                "**2/n against 1/n** is not a different rule: it is a factor 2 in the effective learning rate. MSE "
                "at rate α takes exactly the steps of ½·MSE at rate 2α (scikit-learn's MLPRegressor uses ½·MSE, which "
                "is why its rate is doubled in the baselines), and the regression and classification learning rates "
                "are not comparable numbers for that reason alone."
            ),
            paragraph(
                "**Other activations** (2.5) change only g′ in δ₁, written in terms of a = g(z) so that the backward "
                "pass needs only what the forward pass kept:"
            ),
            equation(
                r"\tanh:\ g'(z) = 1 - a^2,\qquad \mathrm{ReLU}:\ g'(z) = \mathbf{1}[z > 0] = \mathbf{1}[a > 0],"
                rf"\qquad \mathrm{{leaky\ ReLU}}:\ g'(z) = 1\ \mathrm{{if}}\ z > 0\ \mathrm{{else}}\ {LEAKY_SLOPE}"
            ),
            paragraph(
                "**The reference hand-in** derived a sigmoid-output, log-loss network with two hidden layers and fixed "
                "the matrix shapes by hand at the end: it never derived the regression network the task asks about. "
                "The derivation above is for one hidden layer and MSE, and the code below is that derivation."
            ),
            code_map,
            paragraph(
                "`tests/test_gradients.py` checks every gradient of every (activation, output, loss) combination, "
                "with one and two hidden layers, against central finite differences (relative error < 1e-6 in "
                "float64), and `tests/test_mlp.py` works one gradient step by hand."
            ),
        ],
        "derivation",
    )


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


def build(inputs: ReportInputs) -> dict:
    summaries, comparison = inputs.summaries, inputs.comparison
    sections = [
        derivation_section(),
        answers.answer_21(
            inputs.scores, inputs.baselines, comparison, inputs.schemas, inputs.train_config, inputs.ratios
        ),
        answers.answer_22(inputs.histories, inputs.scores, inputs.train_config),
        answers.answer_23(summaries["lr"], comparison),
        answers.answer_24(summaries["hidden"], summaries["capacity"], comparison),
        answers.answer_25(summaries["activation"], comparison),
        answers.answer_3(summaries, comparison, inputs.sweep_specs),
        *other_sweeps_section(summaries, inputs.sweep_specs),
        provenance_section(inputs.provenance),
    ]
    return {
        "title": "backprop-lab report: a 3-layer network trained by hand-written backpropagation",
        "sections": sections,
    }


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
        blocks += [answers.summary_table(summaries[name], spec.keys, task) for task in spec.tasks]
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
