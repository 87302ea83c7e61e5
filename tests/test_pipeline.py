"""End to end: the real `dvc repro` in a temporary repository, on a slice of MNIST.

The repository is a copy of this checkout's files (tracked and untracked but
not ignored), committed to a fresh git repo, so the test sees the code as it
is on disk.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT
from tools.stage_deps import imported_project_files, with_code_deps

BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc")
GIT_USER = ["-c", "user.name=t", "-c", "user.email=t@t"]


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


def _run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "2", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed copy of the project whose params train on a slice, after one `dvc repro`.

    Nothing `make setup` would do beyond installing requirements.txt: a clone as DVC users set one up."""
    repo = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    )
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
    _run(["git", *GIT_USER, "commit", "-qm", "slice"], repo)
    _run([DVC, "repro"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", *GIT_USER, "commit", "-qm", "repro"], repo)
    return repo


@pytest.mark.slow
def test_repro_writes_metrics_that_dvc_reads(repo):
    evaluate = json.loads((repo / "metrics/evaluate.json").read_text())
    assert 0.5 < evaluate["accuracy"] <= 1 and evaluate["loss"] > 0 and evaluate["examples"] == 1000
    train = json.loads((repo / "metrics/train.json").read_text())
    assert train["epochs"] == 2 and train["parameters"] == 235146
    assert train["tensorflow"] == tf_version() and train["numpy"] == np.__version__
    shown = json.loads(_run([DVC, "metrics", "show", "--json"], repo).stdout)
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
        return set(json.loads(_run([DVC, "status", "--json"], clone).stdout)) - {"check_params"}

    assert set_members([1]) == {"train_member@1", "committee"}
    _run([DVC, "repro"], clone)
    committee = json.loads((clone / "metrics/committee.json").read_text())
    assert committee["size"] == 2 and set(committee["members"]) == {"0", "1"}
    assert committee["members"]["0"]["errors"] == evaluate["errors"] != committee["members"]["1"]["errors"]
    member = json.loads((clone / "members/1/metrics/train.json").read_text())
    assert (
        member["epochs"] == 2
        and member["val_accuracy"] != json.loads((clone / "metrics/train.json").read_text())["val_accuracy"]
    )
    shown = next(iter(json.loads(_run([DVC, "metrics", "show", "--json"], clone).stdout).values()))["data"]
    assert {"metrics/committee.json", "members/1/metrics/train.json", "metrics/evaluate.json"} <= set(shown)

    assert set_members([1, 2]) == {"train_member@2", "committee"}  # adding a member trains that member alone
    assert set_members([3]) == {"train_member@3", "committee"}  # and so does changing one's number (its seeds)


@pytest.mark.slow
def test_forced_repro_is_byte_identical(repo):
    lock_before = (repo / "dvc.lock").read_text()
    _run([DVC, "repro", "-f"], repo)
    assert (repo / "dvc.lock").read_text() == lock_before
    assert _run(["git", "status", "--porcelain"], repo).stdout == ""


@pytest.mark.slow
def test_plots_show_renders_html_with_every_plot(repo):
    _run([DVC, "plots", "show", "--out", "plots_html"], repo)
    page = (repo / "plots_html" / "index.html").read_text()
    for title in ("Loss per epoch", "Accuracy per epoch", "Test confusion matrix", "misclassified.png"):
        assert title in page, title
    shutil.rmtree(repo / "plots_html")


@pytest.mark.slow
def test_params_typo_fails_repro_even_when_no_tracked_param_changed(repo):
    original = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(original + "trian:\n  epochs: 3\n")
    try:
        result = _run([DVC, "repro"], repo, check=False)
        assert result.returncode != 0
        assert "trian: unknown section" in result.stderr + result.stdout
    finally:
        (repo / "params.yaml").write_text(original)


@pytest.mark.slow
def test_a_size_the_data_cannot_satisfy_fails_before_dvc_removes_the_prepared_data(repo):
    original = (repo / "params.yaml").read_text()
    prepared = {path.name: path.read_bytes() for path in (repo / "data" / "prepared").iterdir()}
    params = yaml.safe_load(original)
    params["data"]["val_size"] = 60000
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        result = _run([DVC, "repro"], repo, check=False)
        assert result.returncode != 0
        assert (
            "data.val_size = 60000: must be at most 59999" in result.stderr
            and "60,000 training images" in result.stderr
        )
        assert {path.name: path.read_bytes() for path in (repo / "data" / "prepared").iterdir()} == prepared
    finally:
        (repo / "params.yaml").write_text(original)


@pytest.mark.slow
def test_a_library_version_change_reruns_the_stages_whose_bits_depend_on_it(repo):
    original = (repo / "requirements.txt").read_text()
    (repo / "requirements.txt").write_text(original.replace("tensorflow==", "tensorflow>="))
    try:
        changed = set(json.loads(_run([DVC, "status", "--json"], repo).stdout))
        assert {"train", "evaluate", "baseline", "export"} <= changed and "prepare" not in changed
    finally:
        (repo / "requirements.txt").write_text(original)
    assert _run([DVC, "status", "--json"], repo).stdout.strip() == "{}"


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
        assert _run([DVC, "status", "--json"], repo).stdout.strip() == "{}"
    finally:
        (repo / requirements).write_text(original)


@pytest.mark.slow
def test_a_fresh_clone_pulls_the_models_from_a_shared_remote_without_training(repo, tmp_path):
    remote = tmp_path / "remote"
    _run(
        [DVC, "remote", "add", "--local", "-d", "shared", str(remote)], repo
    )  # .dvc/config.local: nothing machine-specific in git
    _run([DVC, "push"], repo)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    _run([DVC, "remote", "add", "--local", "-d", "shared", str(remote)], clone)
    _run([DVC, "pull"], clone)
    pushed = [
        path for folder in ("models", "data/prepared") for path in sorted((repo / folder).rglob("*")) if path.is_file()
    ]
    assert any(path.name == "saved_model.pb" for path in pushed) and any(path.name == "train.npz" for path in pushed)
    for path in pushed:
        assert (clone / path.relative_to(repo)).read_bytes() == path.read_bytes(), path
    assert json.loads(_run([DVC, "status", "--json"], clone).stdout) == {}
    assert _run(["git", "status", "--porcelain"], clone).stdout == ""


@pytest.mark.slow
def test_the_model_is_a_registered_artifact_fetchable_by_version_tag(repo, tmp_path):
    artifacts = yaml.safe_load((repo / "dvc.yaml").read_text())["artifacts"]
    assert artifacts["mnist-mlp"]["type"] == "model" and artifacts["mnist-mlp"]["path"] == "models/saved_model"
    listed = json.loads(_run([DVC, "ls", "--json", str(repo), "models"], tmp_path).stdout)
    assert any(entry["path"] == "saved_model" and entry["isout"] for entry in listed)

    _run([DVC, "remote", "add", "--local", "-d", "-f", "shared", str(tmp_path / "remote")], repo)
    _run([DVC, "push"], repo)
    _run(["git", *GIT_USER, "tag", "-a", "mnist-mlp@v1.0.0", "-m", "Release mnist-mlp v1.0.0"], repo)
    fetched = tmp_path / "fetched"
    # the remote is in the repo's git-ignored config.local here, so hand it over; a committed remote needs no --config
    _run(
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
    _run([DVC, "plots", "show", "--out", str(tmp_path / "page")], repo)
    page = (tmp_path / "page" / "index.html").read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)  # every script is inline
    assert "window.vegaEmbed" in page and "Test errors only" in page


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_plots_page_renders_every_chart_in_a_browser_without_network(repo, tmp_path):
    _run([DVC, "plots", "show", "--out", str(tmp_path / "page")], repo)
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


def _set_params(repo: Path, **sections: dict) -> str:
    """Change params.yaml in ``repo``; returns the original text to put back."""
    original = (repo / "params.yaml").read_text()
    params = yaml.safe_load(original)
    for section, values in sections.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return original


def _back_to_the_commit(repo: Path, original_params: str) -> None:
    (repo / "params.yaml").write_text(original_params)
    _run(["git", "checkout", "--", "."], repo)
    _run([DVC, "checkout", "--force"], repo)
    assert json.loads(_run([DVC, "status", "--json"], repo).stdout) == {}


@pytest.mark.slow
def test_the_restore_hint_of_a_failed_stage_brings_back_every_removed_output(repo):
    """train diverges under `dvc repro` after DVC removed its outputs; the commands the error names, run as printed,
    restore them.
    """
    outputs = ["models/weights.npz", "metrics/train.json", "plots/train_history.csv", "plots/augmented.png"]
    before = {name: (repo / name).read_bytes() for name in outputs}
    original = _set_params(repo, model={"init_stddev": 5.0}, train={"lr": 1000.0, "lr_schedule": "constant"})
    try:
        result = _run([DVC, "repro"], repo, check=False)
        assert result.returncode != 0 and "training diverged" in result.stderr
        assert not any((repo / name).exists() for name in outputs)  # DVC removed them before running the stage
        hint = result.stderr[result.stderr.index("to get them back:") :]
        commands = re.findall(r"`([^`]+)`", hint)
        assert commands == [
            "git checkout -- plots/train_history.csv plots/augmented.png metrics/train.json",
            "dvc checkout train",
        ], hint
        for command in commands:
            _run(command.replace("dvc ", f"{DVC} ", 1).split(), repo)
        assert {name: (repo / name).read_bytes() for name in outputs} == before
    finally:
        _back_to_the_commit(repo, original)


@pytest.mark.slow
def test_a_stage_stops_when_its_dvc_is_terminated_and_a_rerun_resumes_to_the_same_bits(repo):
    """SIGTERM to dvc alone (as a job scheduler sends): DVC dies without passing it on; the stage notices and stops."""
    original = _set_params(repo, train={"epochs": 100})
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    try:
        dvc = subprocess.Popen(
            [DVC, "repro", "train"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        lines = []
        for line in dvc.stdout:
            lines.append(line)
            if line.startswith("epoch 3/100"):
                break
        dvc.terminate()
        terminated = time.monotonic()
        assert dvc.wait(timeout=10) != 0
        rest = dvc.stdout.read()  # EOF: the stage, which shares the pipe, has ended too
        stopped_after = time.monotonic() - terminated
        assert stopped_after < 15, stopped_after
        assert "stopping: dvc (pid" in rest and "interrupted: no output was half-written" in rest, rest
        assert "epoch 100/100" not in rest and "train: 100 epochs" not in rest, rest  # it stopped, not finished
        assert not (repo / "models/weights.npz").exists()
        assert (
            json.loads((repo / "metrics/train.json").read_text())["epochs_run"] < 100
        )  # the live metrics of the epochs done

        resumed = _run([DVC, "repro", "train"], repo)
        assert "resuming from models/checkpoint.npz after epoch" in resumed.stdout
        resumed_weights = (repo / "models/weights.npz").read_bytes()
        _run([DVC, "repro", "-f", "train"], repo)  # the same 100 epochs, uninterrupted
        assert (repo / "models/weights.npz").read_bytes() == resumed_weights
    finally:
        _back_to_the_commit(repo, original)
