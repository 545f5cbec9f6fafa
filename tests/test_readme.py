"""The README's engine example prints exactly what the README says it prints."""

import re
import subprocess
import sys

from conftest import ROOT


def test_engine_example_output_is_real():
    readme = (ROOT / "README.md").read_text()
    engine = readme.split("## The engine", 1)[1]
    code, output = re.findall(r"```(?:python)?\n(.*?)```", engine, re.S)[:2]
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout == output
