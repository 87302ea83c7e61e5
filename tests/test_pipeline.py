"""End to end: the real `dvc repro` in a temporary repository, on a slice of MNIST.

The repository is a copy of this checkout's files (tracked and untracked but
not ignored), committed to a fresh git repo, so the test sees the code as it
is on disk.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml

from conftest import DVC, GIT_USER, ROOT, run_command
from tools.stage_deps import imported_project_files, with_code_deps


def test_every_stage_depends_on_exactly_the_code_it_runs():
    """What `make deps` writes (tools/stage_deps.py) is what dvc.yaml holds: nothing to add, nothing stale."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        module = re.fullmatch(r"python -m ([\w.]+)( .*)?", stage["cmd"]).group(1)
        listed = {dep for dep in stage["deps"] if dep.endswith(".py")}
        imported = set(imported_project_files(module))
        assert not imported - listed, (
            f"dvc.yaml stage {name!r} misses deps it imports: {sorted(imported - listed)}; run `make deps`"
        )
        assert not listed - imported, (
            f"dvc.yaml stage {name!r} lists code it does not import: {sorted(listed - imported)}; run `make deps`"
        )
    text = (ROOT / "dvc.yaml").read_text()
    assert with_code_deps(text) == text, "dvc.yaml differs from what `make deps` writes"


def test_make_deps_rewrites_a_stale_list_and_leaves_everything_else(tmp_path):
    text = (ROOT / "dvc.yaml").read_text()
    stale = text.replace("      - digits/trainer.py\n", "", 1).replace(
        "      - digits/idx.py\n", "      - digits/idx.py\n      - digits/gone.py\n", 1
    )
    assert stale != text
    assert with_code_deps(stale) == text


def test_evaluation_runs_none_of_the_training_code():
    evaluated = set(imported_project_files("stages.evaluate"))
    assert {"stages/evaluate.py", "digits/model.py", "digits/metrics.py"} <= evaluated
    # the loop, distribution and what only training does (digits/augment.py comes in with the resampling that
    # test-time augmentation shares with training: digits.tta); nor the IDX reader, which only prepare runs
    training_only = {
        "digits/training.py",
        "digits/trainer.py",
        "digits/distributed_trainer.py",
        "digits/distribute.py",
        "digits/optimizers.py",
        "digits/averaging.py",
        "digits/dropout.py",
        "digits/regularizers.py",
        "digits/idx.py",
    }
    assert not evaluated & training_only


def tf_version() -> str:
    from digits.runtime import tf

    return tf.__version__


@pytest.mark.slow
def test_repro_writes_metrics_that_dvc_reads(repo):
    evaluate = json.loads((repo / "metrics/evaluate.json").read_text())
    assert 0.5 < evaluate["accuracy"] <= 1 and evaluate["loss"] > 0 and evaluate["examples"] == 1000
    train = json.loads((repo / "metrics/train.json").read_text())
    assert train["epochs"] == 2 and train["parameters"] == 235146
    assert train["tensorflow"] == tf_version() and train["numpy"] == np.__version__
    shown = json.loads(run_command([DVC, "metrics", "show", "--json"], repo).stdout)
    metrics = next(iter(shown.values()))["data"]
    assert metrics["metrics/evaluate.json"]["data"]["accuracy"] == evaluate["accuracy"]


@pytest.mark.slow
def test_each_committee_member_is_a_stage_and_adding_or_changing_one_trains_that_one_alone(repo, tmp_path):
    clone = tmp_path / "committee"
    shutil.copytree(repo, clone, symlinks=True)
    default = json.loads((clone / "metrics/committee.json").read_text())  # no members: the pipeline's network alone
    evaluate = json.loads((clone / "metrics/evaluate.json").read_text())
    assert (
        default["size"] == 1 and default["accuracy"] == evaluate["accuracy"] and default["errors"] == evaluate["errors"]
    )

    def set_members(members: list[int]) -> set[str]:
        """Set committee.members; the stages `dvc status` then says must run."""
        params = yaml.safe_load((clone / "params.yaml").read_text())
        params["committee"]["members"] = members
        (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return set(json.loads(run_command([DVC, "status", "--json"], clone).stdout)) - {"check_params"}

    assert set_members([1]) == {"train_member@1", "committee"}
    run_command([DVC, "repro"], clone)
    committee = json.loads((clone / "metrics/committee.json").read_text())
    assert committee["size"] == 2 and set(committee["members"]) == {"0", "1"}
    assert committee["members"]["0"]["errors"] == evaluate["errors"] != committee["members"]["1"]["errors"]
    member = json.loads((clone / "members/1/metrics/train.json").read_text())
    assert (
        member["epochs"] == 2
        and member["val_accuracy"] != json.loads((clone / "metrics/train.json").read_text())["val_accuracy"]
    )
    shown = next(iter(json.loads(run_command([DVC, "metrics", "show", "--json"], clone).stdout).values()))["data"]
    assert {"metrics/committee.json", "members/1/metrics/train.json", "metrics/evaluate.json"} <= set(shown)

    assert set_members([1, 2]) == {"train_member@2", "committee"}  # adding a member trains that member alone
    assert set_members([3]) == {"train_member@3", "committee"}  # and so does changing one's number (its seeds)


@pytest.mark.slow
def test_forced_repro_is_byte_identical(repo):
    lock_before = (repo / "dvc.lock").read_text()
    run_command([DVC, "repro", "-f"], repo)
    assert (repo / "dvc.lock").read_text() == lock_before
    assert run_command(["git", "status", "--porcelain"], repo).stdout == ""


@pytest.mark.slow
def test_plots_show_renders_html_with_every_plot(repo):
    run_command([DVC, "plots", "show", "--out", "plots_html"], repo)
    page = (repo / "plots_html" / "index.html").read_text()
    for title in ("Loss per epoch", "Accuracy per epoch", "Test confusion matrix", "misclassified.png"):
        assert title in page, title
    shutil.rmtree(repo / "plots_html")


@pytest.mark.slow
def test_a_library_version_change_reruns_the_stages_whose_bits_depend_on_it(repo):
    original = (repo / "requirements.txt").read_text()
    (repo / "requirements.txt").write_text(original.replace("tensorflow==", "tensorflow>="))
    try:
        changed = set(json.loads(run_command([DVC, "status", "--json"], repo).stdout))
        assert {"train", "evaluate", "baseline", "export"} <= changed and "prepare" not in changed
    finally:
        (repo / "requirements.txt").write_text(original)
    assert run_command([DVC, "status", "--json"], repo).stdout.strip() == "{}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "requirements, pin",
    [("requirements-test.txt", "pytest=="), ("requirements-dvc.txt", "dvc=="), ("requirements-lint.txt", "ruff==")],
)
def test_a_tool_version_change_reruns_nothing(repo, requirements, pin):
    """Test, lint and DVC pins live beside requirements.txt, not in it: bumping them leaves every stage up to date."""
    original = (repo / requirements).read_text()
    assert pin in original
    (repo / requirements).write_text(original.replace(pin, pin.replace("==", ">=")))
    try:
        assert run_command([DVC, "status", "--json"], repo).stdout.strip() == "{}"
    finally:
        (repo / requirements).write_text(original)


@pytest.mark.slow
def test_a_fresh_clone_pulls_the_models_from_a_shared_remote_without_training(repo, tmp_path):
    remote = tmp_path / "remote"
    run_command(
        [DVC, "remote", "add", "--local", "-d", "shared", str(remote)], repo
    )  # .dvc/config.local: nothing machine-specific in git
    run_command([DVC, "push"], repo)
    clone = tmp_path / "clone"
    run_command(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    run_command([DVC, "remote", "add", "--local", "-d", "shared", str(remote)], clone)
    run_command([DVC, "pull"], clone)
    pushed = [
        path for folder in ("models", "data/prepared") for path in sorted((repo / folder).rglob("*")) if path.is_file()
    ]
    assert any(path.name == "saved_model.pb" for path in pushed) and any(path.name == "train.npz" for path in pushed)
    for path in pushed:
        assert (clone / path.relative_to(repo)).read_bytes() == path.read_bytes(), path
    assert json.loads(run_command([DVC, "status", "--json"], clone).stdout) == {}
    assert run_command(["git", "status", "--porcelain"], clone).stdout == ""


@pytest.mark.slow
def test_the_model_is_a_registered_artifact_fetchable_by_version_tag(repo, tmp_path):
    artifacts = yaml.safe_load((repo / "dvc.yaml").read_text())["artifacts"]
    assert artifacts["mnist-mlp"]["type"] == "model" and artifacts["mnist-mlp"]["path"] == "models/saved_model"
    listed = json.loads(run_command([DVC, "ls", "--json", str(repo), "models"], tmp_path).stdout)
    assert any(entry["path"] == "saved_model" and entry["isout"] for entry in listed)

    run_command([DVC, "remote", "add", "--local", "-d", "-f", "shared", str(tmp_path / "remote")], repo)
    run_command([DVC, "push"], repo)
    run_command(["git", *GIT_USER, "tag", "-a", "mnist-mlp@v1.0.0", "-m", "Release mnist-mlp v1.0.0"], repo)
    fetched = tmp_path / "fetched"
    # the remote is in the repo's git-ignored config.local here, so hand it over; a committed remote needs no --config
    run_command(
        [
            DVC,
            "artifacts",
            "get",
            str(repo),
            "mnist-mlp",
            "--rev",
            "v1.0.0",
            "--config",
            str(repo / ".dvc/config.local"),
            "-o",
            str(fetched),
        ],
        tmp_path,
    )
    assert (fetched / "saved_model.pb").read_bytes() == (repo / "models/saved_model/saved_model.pb").read_bytes()


@pytest.mark.slow
def test_plots_page_needs_no_network(repo, tmp_path):
    run_command([DVC, "plots", "show", "--out", str(tmp_path / "page")], repo)
    page = (tmp_path / "page" / "index.html").read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)  # every script is inline
    assert "window.vegaEmbed" in page and "Test errors only" in page


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_plots_page_renders_every_chart_in_a_browser_without_network(repo, tmp_path):
    run_command([DVC, "plots", "show", "--out", str(tmp_path / "page")], repo)
    dom = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            (tmp_path / "page" / "index.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    charts = re.findall(r'<(?:canvas|svg)[^>]*class="marks"', dom)
    assert len(charts) >= 4, dom[-2000:]  # Loss, Accuracy, Confusion, Errors
