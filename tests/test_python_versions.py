"""tools/supported_python.sh and tools/python_versions.py: make builds .venv with a supported Python, or refuses in
one line.

The picker runs against a PATH of links to real interpreters: the one running these tests, and pyenv's 3.10 and
3.12 where this machine has them (skipped, saying so, where not). Whether each supported Python reproduces the
committed dvc.lock is tools/python_versions.py's job: a fresh clone and `make repro` per interpreter, minutes each,
recorded in docs/reproducibility.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import python_versions

PICKER = ROOT / "tools" / "supported_python.sh"
PYENV = python_versions.PYENV_VERSIONS
THIS = f"{sys.version_info.major}.{sys.version_info.minor}"


def _installed(version: str) -> Path | None:
    """A Python ``version`` found the way tools/python_versions.py finds one (on PATH, then in pyenv's versions)."""
    found = python_versions.find_interpreter(version)
    return Path(found) if found else None


def _pick(path: Path, *arguments: str) -> subprocess.CompletedProcess:
    """The picker with only ``path`` on PATH (it needs no tool but the shell's own)."""
    return subprocess.run(["/bin/sh", str(PICKER), *arguments], capture_output=True, text=True, env={"PATH": str(path)})


def _links(tmp_path: Path, **names: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, target in names.items():
        (folder / name.replace("_", ".")).symlink_to(target)
    return folder


def test_the_python_running_the_tests_is_supported_and_picked():
    assert (3, 11) <= sys.version_info[:2] <= (3, 13)
    result = subprocess.run([str(PICKER), sys.executable], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == sys.executable


def test_the_first_supported_name_on_path_wins_and_an_unsupported_python3_is_passed_over(tmp_path):
    old = _installed("3.10")
    if old is None:
        pytest.skip(f"no Python 3.10 in {PYENV} to stand for an unsupported python3")
    folder = _links(tmp_path, python3=old, **{f"python{THIS}".replace(".", "_"): Path(sys.executable)})
    result = _pick(folder)
    assert result.returncode == 0 and result.stdout.strip() == str(folder / f"python{THIS}")


def test_a_newer_supported_version_is_preferred(tmp_path):
    newer = _installed("3.13") or _installed("3.12")
    if newer is None or newer.name == f"python{THIS}":
        pytest.skip(f"no supported Python newer than {THIS} in {PYENV}")
    folder = _links(
        tmp_path, **{f"python{THIS}".replace(".", "_"): Path(sys.executable), newer.name.replace(".", "_"): newer}
    )
    assert _pick(folder).stdout.strip() == str(folder / newer.name)


def test_no_supported_python_is_one_line_naming_what_was_found_and_how_to_point_make_at_one(tmp_path):
    old = _installed("3.10")
    folder = _links(tmp_path, **({"python3": old} if old else {}))
    result = _pick(folder)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no Python 3.11, 3.12 or 3.13 on PATH")
    assert "make PYTHON=/path/to/python3.12 repro" in lines[0]
    if old:
        assert "python3 is Python 3.10." in lines[0]


def test_a_named_python_outside_the_range_is_refused_naming_its_version(tmp_path):
    old = _installed("3.10")
    if old is None:
        pytest.skip(f"no Python 3.10 in {PYENV}")
    result = _pick(tmp_path, str(old))
    assert result.returncode == 1
    assert (
        result.stderr.startswith(f"error: PYTHON={old} is Python 3.10.")
        and "install on Python 3.11, 3.12 or 3.13 only" in result.stderr
    )
    missing = _pick(tmp_path, "python9")
    assert missing.returncode == 1 and "PYTHON=python9 is not a command" in missing.stderr


def test_the_version_check_finds_the_interpreters_it_would_clone_with():
    found = python_versions.find_interpreter(THIS)
    assert found is not None and subprocess.run(
        [found, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip() == str(sys.version_info[:2])
