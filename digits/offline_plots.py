"""The HTML template that makes ``dvc plots show`` and ``dvc plots diff`` work offline.

DVC's default page loads Vega, Vega-Lite and Vega-Embed from a CDN, so on a
machine without internet (this project's premise) the Loss, Accuracy and
confusion charts never render: only the PNG shows. DVC takes a custom page
template (``plots.html_template`` in ``.dvc/config``, a path relative to
``.dvc/``); this module writes one that holds the three libraries inline,
from vl-convert-python's ``javascript_bundle()``, a maintained package pinned
in requirements.txt. The page is committed, so ``dvc plots show`` works in
any clone, however it was set up (``make``, or ``pip install -r
requirements.txt`` alone); it is generated, never edited by hand:
``make plots-template`` rewrites it after an upgrade, and
tests/test_offline_plots.py fails while it differs from what this module
writes.

    python -m digits.offline_plots [output path]
"""

from __future__ import annotations

import sys
from pathlib import Path

import vl_convert

from digits.artifacts import atomic_path
from digits.errors import run_main

TEMPLATE = Path(".dvc/offline_plots.html")
# DVC fills these three placeholders; {scripts} is left out on purpose: it is where DVC puts its CDN <script> tags.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- Vega, Vega-Lite and Vega-Embed, inlined from vl-convert-python VERSION by digits/offline_plots.py: no network needed -->
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


def vega_bundle() -> str:
    """Vega-Embed, Vega-Lite and Vega as one classic script that defines the globals DVC's plot divs call.

    The bundle's own top-level names stay inside a function scope, so they
    cannot collide with anything on the page.
    """
    bundle = vl_convert.javascript_bundle(
        snippet="window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"
    )
    return "(() => {\n" + bundle.replace("</script", "<\\/script") + "\n})();"


def offline_page() -> str:
    bundle = vega_bundle()
    for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):
        if placeholder in bundle:  # DVC replaces placeholders anywhere in the page, the script too
            raise RuntimeError(f"the Vega bundle contains DVC's placeholder {placeholder}; it cannot be inlined as is")
    return PAGE.replace("VERSION", vl_convert.__version__).replace("BUNDLE", bundle)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else TEMPLATE
    with atomic_path(path) as temporary:
        temporary.write_text(offline_page(), encoding="utf-8")
    print(f"{path}: offline page template for dvc plots ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    run_main(main, has_outputs=False)
