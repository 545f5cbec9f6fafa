"""An HTML template for `dvc plots show/diff --html-template` that works offline.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so it is blank without a
network. This page inlines the three libraries from the vl-convert-python package (a pinned
dependency, which ships them) and leaves out DVC's `{scripts}` placeholder, where the CDN tags
would go. It is committed as .dvc/plots-offline.html, which .dvc/config's plots.html_template
names, so a fresh clone's `dvc plots show` is offline. Usage: `python -m backprop.lab.plots_page
<template.html>` (what `make plots-page` does after an upgrade of vl-convert-python).
"""

import sys
from pathlib import Path

# The vega-lite major version of DVC's templates (their "$schema" is vega-lite v5).
VEGA_LITE_VERSION = "5.21"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>backprop-lab plots</title>
    <script type="text/javascript">
BUNDLE
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def page() -> str:
    import vl_convert

    # The stub marks ``snippet`` required; the library's default snippet is the one wanted here.
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)  # type: ignore[call-arg]
    # Inside a <script> element the text "</script" would end it early.
    return PAGE.replace("BUNDLE", bundle.replace("</script", "<\\/script"))


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m backprop.lab.plots_page <template.html>")
    out = Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page())


if __name__ == "__main__":
    main()
