"""The report of a tiny pipeline run: complete, self-contained, and made of this run's numbers."""

import json
import re
import shutil
import subprocess

import pandas as pd
import pytest

from backprop.lab.answers import interval, verdict
from backprop.lab.blocks import REFERENCE_HAND_IN, code, fmt, paragraph, section, table
from backprop.lab.protocol import mean_interval, overlap_ratio
from backprop.lab.report import render_html

pytestmark = pytest.mark.e2e

HEADINGS = [
    "1. Derivation",
    "2.1 Average MSE and accuracy",
    "2.2 Loss and accuracy as a function of the number of iterations",
    "2.3 The effect of the learning rate",
    "2.4 The effect of the number of hidden neurons",
    "2.5 The effect of the activation function",
    "3. MSE versus log loss for classification",
    "4. Provenance",
]


def test_both_files_have_every_section(tiny_repo):
    markdown = (tiny_repo / "report" / "report.md").read_text()
    page = (tiny_repo / "report" / "report.html").read_text()
    for heading in HEADINGS:
        assert re.search(rf"^## {re.escape(heading)}", markdown, re.M), heading
        assert f"<h2>{heading}" in page, heading
    assert "$$" in markdown  # math for GitHub/GitLab
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (tiny_repo / "report" / figure).resolve().is_file(), figure


def test_html_is_self_contained_and_embeds_every_figure(tiny_repo):
    page = (tiny_repo / "report" / "report.html").read_text()
    attributes = re.findall(r'<(script|link|img|source|iframe|object|embed)\b[^>]*?\b(?:src|href)="([^"]*)"', page)
    assert attributes, "no embedded resources found at all"
    for tag, url in attributes:
        assert url.startswith("data:"), f"<{tag}> loads {url[:60]}"
    assert "<script" not in page and "@import" not in page and "url(" not in page
    figures = len(list((tiny_repo / "report" / "figures").glob("*.png")))
    figure_tags = re.findall(r'<figure><img src="data:image/png;base64,', page)
    assert len(figure_tags) == figures


def test_the_html_texts_are_markdown_it_commonmark():
    """Texts go through markdown-it-py: CommonMark emphasis and code spans, tables' cells inline,
    raw HTML shown as text, never passed through."""
    document = {
        "title": "t",
        "sections": [
            section(
                "S",
                [
                    paragraph("**bold**, *it*, `a*b*c`, ``tags.`x` = 'y'``, snake_case_name, 2 * 3 * 4 <script>"),
                    table(["*h*"], [["`c`"]], caption="*cap*"),
                    code("a: <b>"),
                ],
                "s",
            )
        ],
    }
    page = render_html(document, {})
    assert (
        "<p><strong>bold</strong>, <em>it</em>, <code>a*b*c</code>, <code>tags.`x` = 'y'</code>, snake_case_name, "
        "2 * 3 * 4 &lt;script&gt;</p>"
    ) in page
    assert "<th><em>h</em></th>" in page and "<td><code>c</code></td>" in page and "<em>cap</em></caption>" in page
    assert "<pre><code>a: &lt;b&gt;</code></pre>" in page and "<script>" not in page


def table_rows(markdown: str, after: str) -> list[list[str]]:
    block = markdown.split(after, 1)[1]
    rows = []
    for line in block.splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[2:]  # header and separator


def test_every_number_in_the_21_table_comes_from_this_run(tiny_repo):
    markdown = (tiny_repo / "report" / "report.md").read_text()
    baselines = json.loads((tiny_repo / "metrics" / "baselines.json").read_text())
    scores = json.loads((tiny_repo / "metrics" / "regression-scores.json").read_text())
    folds = len(scores["folds"])
    schema = json.loads((tiny_repo / "data/prepared/regression/schema.json").read_text())
    held_out = pd.DataFrame(baselines["held_out"])
    linear = held_out[(held_out["task"] == "regression") & (held_out["model"] == "linear")]
    every_row = baselines["all_rows"]["regression"]
    cv = f"held-out folds, mean (95% CI) over {folds}"
    metrics = ("mse", "accuracy", "r2")
    expected = {
        ("this network", cv): [interval(scores["summary"][f"test_{m}"]) for m in metrics],
        ("ordinary least squares", cv): [
            interval(mean_interval(linear[f"test_{m}"], overlap_ratio(schema["fold_rows"]))) for m in metrics
        ],
        ("this network (no early stopping)", "fit and scored on all 442 rows"): [
            fmt(every_row["ours"][m]) for m in metrics
        ],
        ("ordinary least squares", "fit and scored on all 442 rows"): [fmt(every_row["linear"][m]) for m in metrics],
        ("reference hand-in (**not from this run**)", "fit and scored on all 442 rows"): [
            fmt(REFERENCE_HAND_IN["mse"]),
            fmt(REFERENCE_HAND_IN["accuracy"]),
            "not reported",
        ],
    }
    rows = {(row[0], row[1]): row[2:] for row in table_rows(markdown, "## 2.1 Average MSE and accuracy")}
    for key, cells in expected.items():
        assert rows[key] == cells, key
    # The conclusion under the table is the paired comparison of metrics/comparison.json, in words.
    versus = json.loads((tiny_repo / "metrics" / "comparison.json").read_text())["regression"]["network_vs_linear"]
    sentence = verdict(versus, lower="lower", higher="higher")
    assert f"against ordinary least squares, {sentence}" in markdown


def test_the_page_renders_in_headless_chromium(tiny_repo, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium where apt-get works)")
    # The report has no script of its own; a copy gets one that reports on every image after load.
    probe = """<script>
    window.addEventListener("load", () => {
      const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length;
      document.body.setAttribute("data-probe", `images=${document.images.length} broken=${broken}`);
    });
    </script></body>"""
    page = (tiny_repo / "report" / "report.html").read_text().replace("</body>", probe)
    (tmp_path / "probe.html").write_text(page)
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            f"file://{tmp_path / 'probe.html'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    probe_result = re.search(r'data-probe="images=(\d+) broken=(\d+)"', result.stdout)
    assert probe_result, result.stdout[-500:]
    images, broken = map(int, probe_result.groups())
    assert images > 10 and broken == 0
    console_errors = [
        line for line in result.stderr.splitlines() if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)
    ]
    assert not console_errors, console_errors
