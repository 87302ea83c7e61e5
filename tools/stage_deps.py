"""Write dvc.yaml's code deps from the stages' imports: each stage depends on exactly the code it runs.

For every stage whose command is ``python -m MODULE``, the project files that
module runs (itself, what it imports, transitively, and their packages'
``__init__.py``) are read from the import statements, without importing
anything. The stage's list of ``digits/`` and ``stages/`` files in dvc.yaml is
replaced by that list, sorted; every other line of dvc.yaml is left as it is.

    python tools/stage_deps.py           # rewrite dvc.yaml (make deps)
    python tools/stage_deps.py --check   # exit 1 if dvc.yaml differs
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DVC_YAML = ROOT / "dvc.yaml"
CODE_DEP = re.compile(r"^(\s+)- ((?:digits|stages)/\S+\.py)$")
STAGE = re.compile(r"^  (\w+):$")
COMMAND = re.compile(r"^\s+cmd: python -m ([\w.]+)")


def project_file(module: str, root: Path = ROOT) -> Path | None:
    """The file of this project that ``import module`` executes, if the module is ours."""
    path = root.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imported_project_files(module: str, root: Path = ROOT) -> list[str]:
    """Every file of this project that ``python -m module`` runs, sorted: the module, its imports, transitively, and
    their packages.

    Read from the import statements (anywhere in a file, also inside
    functions), not by importing, so nothing is executed.
    """
    seen: set[Path] = set()
    pending = [module]
    while pending:
        parts = pending.pop().split(".")
        for depth in range(1, len(parts) + 1):  # digits.model runs digits/__init__.py first
            path = project_file(".".join(parts[:depth]), root)
            if path is None or path in seen:
                continue
            seen.add(path)
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    pending += [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:  # `from pkg import name`: name may be a module
                    pending += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return sorted(str(path.relative_to(root)) for path in seen)


def with_code_deps(text: str, root: Path = ROOT) -> str:
    """dvc.yaml's ``text`` with each ``python -m`` stage's run of code deps replaced by what the module imports."""
    lines, out = text.splitlines(), []
    module = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if STAGE.match(line):
            module = None
        if match := COMMAND.match(line):
            module = match.group(1)
        if (match := CODE_DEP.match(line)) and module is not None:
            indent = match.group(1)
            while index < len(lines) and CODE_DEP.match(lines[index]):
                index += 1
            out += [f"{indent}- {path}" for path in imported_project_files(module, root)]
            module = None  # one run of code deps per stage
            continue
        out.append(line)
        index += 1
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare: exit 1 if dvc.yaml's code deps differ")
    args = parser.parse_args()
    current = DVC_YAML.read_text()
    wanted = with_code_deps(current)
    if wanted == current:
        print("dvc.yaml: every stage's code deps are what it imports")
        return
    if args.check:
        sys.exit("error: dvc.yaml's code deps differ from the stages' imports; run `make deps`")
    DVC_YAML.write_text(wanted)
    print("dvc.yaml: code deps rewritten from the stages' imports")


if __name__ == "__main__":
    main()
