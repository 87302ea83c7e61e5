"""End to end: the real `dvc repro` in a temporary repository, on a slice of MNIST.

The repository is a copy of this checkout's files (tracked and untracked but
not ignored), committed to a fresh git repo, so the test sees the code as it
is on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "2", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed copy of the project whose params train on a slice, after one `dvc repro`."""
    repo = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in listed.stdout.splitlines():
        if (ROOT / name).is_file() and not name.startswith(("metrics/", "plots/")) and name != "dvc.lock":
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(val_size=500, train_size=2000, test_size=1000)
    params["train"].update(epochs=2)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "slice"], repo)
    _run([str(BIN / "dvc"), "repro"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "repro"], repo)
    return repo


def test_repro_writes_metrics_that_dvc_reads(repo):
    evaluate = json.loads((repo / "metrics/evaluate.json").read_text())
    assert 0.5 < evaluate["accuracy"] <= 1 and evaluate["loss"] > 0 and evaluate["examples"] == 1000
    train = json.loads((repo / "metrics/train.json").read_text())
    assert train["epochs"] == 2 and train["parameters"] == 235146
    shown = json.loads(_run([str(BIN / "dvc"), "metrics", "show", "--json"], repo).stdout)
    metrics = next(iter(shown.values()))["data"]
    assert metrics["metrics/evaluate.json"]["data"]["accuracy"] == evaluate["accuracy"]


def test_forced_repro_is_byte_identical(repo):
    lock_before = (repo / "dvc.lock").read_text()
    _run([str(BIN / "dvc"), "repro", "-f"], repo)
    assert (repo / "dvc.lock").read_text() == lock_before
    assert _run(["git", "status", "--porcelain"], repo).stdout == ""


def test_plots_show_renders_html_with_every_plot(repo):
    result = _run([str(BIN / "dvc"), "plots", "show", "--out", "plots_html"], repo)
    page = (repo / "plots_html" / "index.html").read_text()
    for title in ("Loss per epoch", "Accuracy per epoch", "Test confusion matrix", "misclassified.png"):
        assert title in page, title
    shutil.rmtree(repo / "plots_html")


def test_params_typo_fails_repro_even_when_no_tracked_param_changed(repo):
    original = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(original + "trian:\n  epochs: 3\n")
    try:
        result = _run([str(BIN / "dvc"), "repro"], repo, check=False)
        assert result.returncode != 0
        assert "trian: unknown section" in result.stderr + result.stdout
    finally:
        (repo / "params.yaml").write_text(original)
