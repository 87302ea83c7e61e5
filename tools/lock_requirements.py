"""Re-pin every requirements file from requirements.in: one resolution, split by what needs each package.

``make lock`` installs requirements.in's direct dependencies into a scratch
venv and writes the resolved versions (pip freeze) into one file per role,
each package in the first role whose roots need it:

- requirements.txt: what the stages import, and all they need. It is a dep
  of every stage that computes, because its versions change the bits.
- requirements-dvc.txt: DVC and the offline plots' Vega libraries; they run
  the pipeline but never reach an output, so bumping them reruns nothing.
- requirements-test.txt: pytest and its plugins, for ``make test``.

    python tools/lock_requirements.py VENV_PYTHON    (the scratch venv's python, after pip install -r requirements.in)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# requirements.in's direct dependencies by role (the section comments there say the same)
ROLES = {
    "requirements.txt": ("tensorflow", "keras", "numpy", "pyyaml", "pydantic", "pillow", "tqdm"),
    "requirements-test.txt": ("pytest", "pytest-xdist", "hypothesis"),
    "requirements-dvc.txt": ("dvc", "vl-convert-python"),
}
HEADERS = {
    "requirements.txt": "# What the stages import, and everything it needs: a dep of every stage that computes "
    "(dvc.yaml),\n"
    "# because these versions change the bits of the outputs. Written by `make lock` from requirements.in.\n",
    "requirements-test.txt": "# pytest and its plugins for `make test`, beside requirements.txt; no stage depends on "
    "this file.\n"
    "# Written by `make lock` from requirements.in.\n",
    "requirements-dvc.txt": "# DVC and the offline plots' Vega libraries, beside requirements.txt: they run the "
    "pipeline and\n"
    "# never reach an output, so no stage depends on this file. Written by `make lock` from requirements.in.\n",
}

CLOSURE = """
import importlib.metadata as md, json, re, sys
from packaging.requirements import Requirement
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
seen, todo = set(), [norm(name) for name in sys.argv[1:]]
while todo:
    name = todo.pop()
    if name in seen:
        continue
    seen.add(name)
    for line in md.requires(name) or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            todo.append(norm(requirement.name))
print(json.dumps(sorted(seen)))
"""


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> None:
    python = sys.argv[1]
    frozen = subprocess.run(
        [python, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout
    pins = {normalized(line.split("==")[0]): line for line in frozen.splitlines() if "==" in line}
    taken: set[str] = set()
    for filename, roots in ROLES.items():
        needed = set(
            json.loads(
                subprocess.run([python, "-c", CLOSURE, *roots], capture_output=True, text=True, check=True).stdout
            )
        )
        mine = sorted((needed & pins.keys()) - taken, key=str.lower)
        taken |= needed
        (ROOT / filename).write_text(HEADERS[filename] + "".join(pins[name] + "\n" for name in mine))
        print(f"{filename}: {len(mine)} pins")
    if left := pins.keys() - taken:
        sys.exit(f"error: installed but needed by no role in tools/lock_requirements.py: {sorted(left)}")


if __name__ == "__main__":
    main()
