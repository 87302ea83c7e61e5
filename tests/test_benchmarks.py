"""benchmarks/: docs/results.md's best-recipe command is the one benchmarks/best_mlp.py measures, it is valid, and
--repeats reports the mean.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT
from digits.params import parse_params
from digits.scratch import shipped_params, with_changes

sys.path.insert(0, str(ROOT / "benchmarks"))
from best_mlp import BEST_RECIPE


def readme_best_command() -> list[str]:
    section = (ROOT / "docs" / "results.md").read_text().split("## Best results", 1)[1]
    command = re.search(r"^dvc exp run evaluate .*$", section, re.MULTILINE)[0]
    words = shlex.split(command)
    return [words[i + 1] for i, word in enumerate(words) if word == "-S"]


def test_the_readme_command_is_the_benchmarked_recipe():
    assert readme_best_command() == BEST_RECIPE


def test_the_best_recipe_is_valid_params_with_everything_on():
    params = parse_params(with_changes(shipped_params(), overrides=BEST_RECIPE))
    assert params.model.hidden == [1024, 1024] and params.train.keep == "last"
    assert params.train.dropout_hidden > 0 and params.augment.elastic_alpha > 0


@pytest.mark.slow
def test_repeats_run_independent_seed_sets_and_end_with_their_mean(tmp_path):
    """best_mlp.py --repeats on a tiny net and slice: each run's figures, then mean, std, min and max, last line the
    mean;
    --first-repeat reruns one seed set alone, to the bit."""
    tiny = [
        "-S",
        "data.train_size=500",
        "-S",
        "train.epochs=2",
        "-S",
        "train.warmup_epochs=1",
        "-S",
        "model.hidden=[16]",
        "-S",
        "committee.members=[1]",
        "-S",
        "tta.views=[{shift: [1, 0]}]",
    ]

    def best_mlp(*options: str, workdir: Path) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks/best_mlp.py"),
                *options,
                "--skip-speed",
                "--workdir",
                str(workdir),
                *tiny,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    result = best_mlp("--repeats", "2", workdir=tmp_path)
    lines = result.stdout.splitlines()
    runs = [json.loads((tmp_path / f"run{repeat}/metrics/committee.json").read_text()) for repeat in range(2)]
    seeds = [yaml.safe_load((tmp_path / f"run{repeat}/params.yaml").read_text()) for repeat in range(2)]
    assert (
        seeds[1]["train"]["shuffle_seed"] == seeds[0]["train"]["shuffle_seed"] + 100
        and seeds[1]["augment"]["seed"] == seeds[0]["augment"]["seed"] + 100
    )
    assert [run["size"] for run in runs] == [2, 2] and (tmp_path / "run1/members/1/models/weights.npz").is_file()
    accuracies = [run["accuracy"] for run in runs]
    assert f"run 2: test accuracy {accuracies[1]:.4f}, {runs[1]['errors']} errors" in result.stdout
    assert (
        f"test accuracy: mean {np.mean(accuracies):.4f}, std {np.std(accuracies, ddof=1):.4f}, min "
        f"{min(accuracies):.4f}" in result.stdout
    )
    assert lines[-1] == f"mean_test_accuracy={np.mean(accuracies):.4f}"

    # --first-repeat 1 runs the second seed set alone: the same bits as run 2 above, numbered as run 2.
    alone = tmp_path / "alone"
    result = best_mlp("--first-repeat", "1", workdir=alone)
    assert not (alone / "run0").exists() and yaml.safe_load((alone / "run1/params.yaml").read_text()) == seeds[1]
    for weights in ("models/weights.npz", "members/1/models/weights.npz"):
        assert (alone / "run1" / weights).read_bytes() == (tmp_path / "run1" / weights).read_bytes()
    assert (
        result.stdout.splitlines()[-1] == f"mean_test_accuracy={accuracies[1]:.4f}"
        and "run 2: test accuracy" in result.stdout
    )
