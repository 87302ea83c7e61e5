"""What README.md and docs/ claim, checked: the figures they quote are the committed ones, every module has the test
module and the table row they say it has, and the quick loop runs no stage."""

from __future__ import annotations

import ast
import json
import re

import pytest
import yaml

from conftest import ROOT, run_stage

# Modules that only name things (MNIST's shape, the model files' paths): tested through the modules that use them.
CONSTANTS_ONLY = {"digits/mnist.py", "digits/paths.py"}


def test_every_module_has_its_own_test_module_as_the_docs_say():
    for path in sorted([*ROOT.glob("digits/*.py"), *ROOT.glob("stages/*.py")]):
        name = str(path.relative_to(ROOT))
        if name in CONSTANTS_ONLY:
            body = ast.parse(path.read_text()).body
            kinds = {type(node).__name__ for node in body[1:]}  # after the docstring
            assert kinds <= {"Assign", "ImportFrom", "Import"}, (
                f"{name} holds more than constants: give it a test module"
            )
            continue
        assert (ROOT / "tests" / f"test_{path.stem}.py").is_file(), f"{name} has no tests/test_{path.stem}.py"


def test_the_code_table_names_every_module():
    section = (ROOT / "docs/pipeline.md").read_text().split("## The code", 1)[1].split("\n## ", 1)[0]
    for path in sorted(ROOT.glob("digits/*.py")):
        assert f"`digits/{path.name}`" in section, f"docs/pipeline.md's code table misses digits/{path.name}"


def test_the_quick_loop_refuses_to_run_a_stage(tmp_path):
    """README: `pytest -m "not slow"` runs no stage. This test is not marked slow, so run_stage must refuse."""
    with pytest.raises(AssertionError, match="runs in a test not marked slow"):
        run_stage("stages.prepare", tmp_path)


def test_the_docs_quote_the_committed_metrics_and_weights():
    """The figures README and docs/ give for the default pipeline are the committed ones, not an older run's."""
    evaluate = json.loads((ROOT / "metrics/evaluate.json").read_text())
    baseline = json.loads((ROOT / "metrics/baseline.json").read_text())

    def row(page: str, starts: str) -> str:
        lines = [line for line in (ROOT / page).read_text().splitlines() if line.startswith(starts)]
        assert len(lines) == 1, f"{page}: one table row starting {starts!r} expected, found {len(lines)}"
        return lines[0]

    def percent_and_errors(metrics: dict) -> str:
        return f"{100 * metrics['accuracy']:.2f} % ({metrics['errors']} errors)"

    assert percent_and_errors(evaluate) in row("README.md", "| default params:")
    assert percent_and_errors(baseline) in row("README.md", "| Keras `model.fit`")
    assert f"{evaluate['accuracy']:.4f} ({evaluate['errors']} errors)" in row(
        "docs/pipeline.md", "| test accuracy of the default pipeline"
    )
    assert (
        f"({baseline['accuracy']:.4f} against the hand-built loop's {evaluate['accuracy']:.4f} "
        in (ROOT / "docs/pipeline.md").read_text()
    )
    assert f"| {100 * evaluate['accuracy']:.2f} % |" in row("docs/results.md", "| this project, default params")
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    weights = next(out for out in lock["stages"]["train"]["outs"] if out["path"] == "models/weights.npz")
    assert f"md5 `{weights['md5']}`" in row("docs/reproducibility.md", "| development VM")


def test_every_test_file_the_docs_name_exists():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
    for page in pages:
        for name in set(re.findall(r"tests/test_[a-z0-9_]+\.py", page.read_text())):
            assert (ROOT / name).is_file(), f"{page.relative_to(ROOT)} names {name}, which does not exist"
