"""Does each supported Python reproduce the committed dvc.lock? Clone, `make repro`, compare.

For each interpreter (by default the first python3.11, python3.12 and python3.13
found on PATH, or in pyenv's versions folder), a fresh `git clone` of this
repository's HEAD runs the README's first command, `make PYTHON=... repro`:
the venv is built from the pinned requirements.txt with that interpreter and
`dvc repro` runs every stage. The clone then has to be exactly its commit:
`git status` clean, so every output's hash equals the committed `dvc.lock`.
With `--test`, the README's second command, `make test`, runs there too.

    python tools/python_versions.py                                   # 3.11, 3.12, 3.13 where found
    python tools/python_versions.py --python /usr/bin/python3.12 --test

Each clone installs the pins (about 1 GB) and trains from scratch: a few
minutes per interpreter, longer with --test. The last line is
`reproduced=true` or `reproduced=false`; the exit status is 1 unless every
interpreter reproduced the lock (and passed its tests, with --test).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED_VERSIONS = ("3.11", "3.12", "3.13")
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"


def find_interpreter(version: str) -> str | None:
    """`pythonX.Y` on PATH, else the newest pyenv install of X.Y (pyenv's shims need a selected version)."""
    on_path = shutil.which(f"python{version}")
    if on_path and subprocess.run([on_path, "--version"], capture_output=True).returncode == 0:
        return on_path
    installs = sorted(PYENV_VERSIONS.glob(f"{version}.*/bin/python{version}"))
    return str(installs[-1]) if installs else None


def run_logged(command: list[str], cwd: Path, log: Path) -> bool:
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        return subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode == 0


def check(python: str, scratch: Path, with_tests: bool) -> bool:
    """Clone HEAD, make repro (and make test) with `python`; print what happened; True if all held."""
    version = subprocess.run([python, "--version"], capture_output=True, text=True).stdout.strip()
    clone = scratch / version.replace(" ", "-")
    log = scratch / f"{clone.name}.log"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)

    started = time.perf_counter()
    repro_ok = run_logged(["make", f"PYTHON={python}", "repro"], cwd=clone, log=log)
    repro_seconds = time.perf_counter() - started
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
    clean = repro_ok and status == ""
    print(
        f"{version}: make repro {'ok' if repro_ok else 'FAILED'} in {repro_seconds:.0f} s, "
        f"git status {'clean' if clean else 'NOT clean: ' + ' '.join(status.split())}",
        flush=True,
    )

    tests_ok = True
    if with_tests:
        started = time.perf_counter()
        tests_ok = run_logged(["make", f"PYTHON={python}", "test"], cwd=clone, log=log)
        print(
            f"{version}: make test {'passed' if tests_ok else 'FAILED'} in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    return clean and tests_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", nargs="+", help="interpreters to check (default: 3.11, 3.12 and 3.13 where found)")
    parser.add_argument("--test", action="store_true", help="run `make test` in each clone too")
    parser.add_argument("--keep", action="store_true", help="keep the clones and logs (kept anyway when a check fails)")
    args = parser.parse_args()

    pythons = args.python
    if not pythons:
        found = {version: find_interpreter(version) for version in SUPPORTED_VERSIONS}
        for version, path in found.items():
            if path is None:
                print(f"python{version}: not found on PATH or in {PYENV_VERSIONS}; not checked", flush=True)
        pythons = [path for path in found.values() if path]
    if not pythons:
        sys.exit("error: no interpreter to check; give some with --python")

    scratch = Path(tempfile.mkdtemp(prefix="python-versions-"))
    results = [check(python, scratch, with_tests=args.test) for python in pythons]
    if args.keep or not all(results):
        print(f"clones and logs kept in {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"reproduced={str(all(results)).lower()}")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
