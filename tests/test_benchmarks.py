"""benchmarks/: docs/results.md's best-recipe command is the one benchmarks/best_mlp.py measures, and it is valid."""

from __future__ import annotations

import re
import shlex
import sys

from conftest import ROOT, default_params
from digits.params import parse_params

sys.path.insert(0, str(ROOT / "benchmarks"))
from best_mlp import BEST_RECIPE  # noqa: E402
from seed_recipes import apply_overrides  # noqa: E402


def readme_best_command() -> list[str]:
    section = (ROOT / "docs" / "results.md").read_text().split("## Best results", 1)[1]
    command = re.search(r"^dvc exp run evaluate .*$", section, re.MULTILINE)[0]
    words = shlex.split(command)
    return [words[i + 1] for i, word in enumerate(words) if word == "-S"]


def test_the_readme_command_is_the_benchmarked_recipe():
    assert readme_best_command() == BEST_RECIPE


def test_the_best_recipe_is_valid_params_with_everything_on():
    params = parse_params(apply_overrides(default_params(), BEST_RECIPE))
    assert params.model.hidden == [1024, 1024] and params.train.keep == "last"
    assert params.train.dropout_hidden > 0 and params.augment.elastic_alpha > 0
