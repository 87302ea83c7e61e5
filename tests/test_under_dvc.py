"""digits/under_dvc.py: the restore hint names what really restores each output; the dvc watch finds its dvc."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT
from digits.under_dvc import dvc_ancestor, process_start_time, removed_outputs, restore_hint


def test_each_removed_output_is_restored_from_where_it_is_kept():
    dvc_yaml = ROOT / "dvc.yaml"
    assert removed_outputs("prepare", dvc_yaml) == ([], ["data/prepared"])
    assert removed_outputs("evaluate", dvc_yaml) == (
        ["plots/confusion.csv", "plots/confusion_errors.csv", "plots/misclassified.png", "metrics/evaluate.json"],
        [],
    )
    in_git, in_cache = removed_outputs("train", dvc_yaml)
    assert "models/checkpoint.npz" not in in_git + in_cache  # persist: DVC never removes it


def test_the_hint_is_empty_outside_dvc_and_generic_without_a_dvc_yaml(monkeypatch, tmp_path):
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert restore_hint() == ""
    monkeypatch.setenv("DVC_STAGE", "evaluate")
    monkeypatch.setenv("DVC_ROOT", str(ROOT))
    assert restore_hint().endswith(
        "to get them back: `git checkout -- plots/confusion.csv plots/confusion_errors.csv "
        "plots/misclassified.png metrics/evaluate.json` (kept in git))"
    )
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert "`dvc checkout evaluate` the others" in restore_hint()


def test_the_watch_finds_a_dvc_parent_through_its_shell(tmp_path):
    """dvc -> sh -c "python ..." -> the stage: the watch looks past the shell, and not past init."""
    fake_dvc = tmp_path / "dvc"
    probe = "from digits.under_dvc import dvc_ancestor; import os; found = dvc_ancestor(); print(found and found[0])"
    fake_dvc.write_text(
        f"import os, subprocess, sys\nprint(os.getpid(), flush=True)\n"
        f"subprocess.run(['/bin/sh', '-c', sys.executable + ' -c \"{probe}\"; true'])\n"
    )
    result = subprocess.run(
        [sys.executable, str(fake_dvc)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    dvc_pid, found = result.stdout.split()
    assert found == dvc_pid, result.stdout + result.stderr
    assert dvc_ancestor() is None  # pytest is not run by dvc
    assert process_start_time(2**22 + 7) is None  # above Linux's largest pid: no such process


def test_a_start_time_tells_a_process_from_a_later_one():
    """What the watch compares: a child started after this process has a later (or, within a tick, equal) start time."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ours, theirs = process_start_time(os.getpid()), process_start_time(child.pid)
        assert isinstance(ours, int) and isinstance(theirs, int) and 0 < ours <= theirs
    finally:
        child.kill()
        child.wait()
    assert process_start_time(child.pid) is None  # reaped: gone
