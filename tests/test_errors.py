"""digits/errors.py: run_main turns a PipelineError into one line and exit 1, Ctrl-C into exit 130, a bug into a
traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT


def _run_main(body: str) -> subprocess.CompletedProcess:
    """A process whose main() is ``body`` (one statement), run through run_main, as every stage is."""
    program = (
        "from digits.errors import PipelineError, run_main\nimport os, signal, time\n"
        f"def main():\n    {body}\nrun_main(main)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DVC_STAGE", None)
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, env=env)


def test_a_pipeline_error_is_one_line_and_exit_1():
    result = _run_main('raise PipelineError("train.lr = -1: must be > 0")')
    assert result.returncode == 1
    assert result.stderr == "error: train.lr = -1: must be > 0\n"


def test_ctrl_c_exits_130_saying_nothing_was_half_written():
    """What docs/faults.md promises for Ctrl-C: a real SIGINT, as the terminal sends it, not a raised exception."""
    result = _run_main("os.kill(os.getpid(), signal.SIGINT); time.sleep(30)")
    assert result.returncode == 130 == 128 + signal.SIGINT
    assert result.stderr == "interrupted: no output was half-written; run again to resume\n"


def test_success_exits_0_and_a_bug_keeps_its_traceback():
    assert _run_main("print('done')").returncode == 0
    result = _run_main("{}['missing']")
    assert result.returncode == 1 and "Traceback" in result.stderr and "KeyError: 'missing'" in result.stderr


@pytest.mark.parametrize("stage", ["evaluate", "train_member@3"])
def test_under_dvc_the_error_says_how_to_restore_the_removed_outputs(monkeypatch, stage):
    monkeypatch.setenv("DVC_STAGE", stage)
    monkeypatch.setenv("DVC_ROOT", str(ROOT))
    program = (
        "from digits.errors import PipelineError, run_main\n"
        "def main():\n    raise PipelineError('broken')\nrun_main(main)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1 and result.stderr.startswith(
        "error: broken (DVC removed the previous outputs of stage"
    )
    assert len(result.stderr.strip().splitlines()) == 1
