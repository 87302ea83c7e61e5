"""digits/offline_plots.py: the committed page template is exactly what the module writes from the pinned vl-convert."""

from __future__ import annotations

from conftest import ROOT
from digits.offline_plots import TEMPLATE, offline_page


def test_the_committed_template_is_current():
    committed = (ROOT / TEMPLATE).read_text(encoding="utf-8")
    assert committed == offline_page(), "regenerate it: make plots-template"
    assert "{plot_divs}" in committed and "{scripts}" not in committed  # DVC's CDN scripts have nowhere to go
    assert (ROOT / ".dvc/config").read_text().count("html_template = offline_plots.html") == 1
