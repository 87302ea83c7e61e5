"""What a stage does differently when ``dvc repro`` runs it: say how to restore outputs, stop when dvc stops.

DVC removes a stage's previous outputs before running its command, so a
failed stage's message ends with how to get each one back (``restore_hint``).
And DVC passes nothing on when a supervisor kills it, so a stage watches its
dvc process and stops with it (``watch_dvc``). Both do nothing outside DVC
(no ``DVC_STAGE`` in the environment). digits.errors' ``run_main`` calls them.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import yaml


def restore_hint() -> str:
    """What to tell a user whose stage failed under DVC, which removed the stage's outputs before running it.

    Each output comes back from where it is kept: those with ``cache: false``
    (metrics, plots) are in git, the others in DVC's cache; ``persist``
    outputs (the checkpoint) were never removed.
    """
    stage = os.environ.get("DVC_STAGE")
    if not stage:
        return ""
    in_git, in_cache = removed_outputs(stage, Path(os.environ.get("DVC_ROOT", ".")) / "dvc.yaml")
    if not in_git and not in_cache:
        return (
            f" (DVC removed the previous outputs of stage '{stage}' before running it; `git checkout -- <path>` brings "
            "back "
            f"those kept in git (cache: false in dvc.yaml), `dvc checkout {stage}` the others)"
        )
    commands = []
    if in_git:
        commands.append(f"`git checkout -- {' '.join(in_git)}` (kept in git)")
    if in_cache:
        commands.append(f"`dvc checkout {stage}` (kept in DVC's cache)")
    return (
        f" (DVC removed the previous outputs of stage '{stage}' before running it; "
        f"to get them back: {' and '.join(commands)})"
    )


def removed_outputs(stage: str, dvc_yaml: Path) -> tuple[list[str], list[str]]:
    """(outputs kept in git, outputs kept in DVC's cache) that DVC removes before running ``stage``.

    A stage of a one-key ``matrix`` (``train_member@3``) is its definition with ``${item.<key>}`` set to the value after
    the @.
    """
    name, _, value = stage.partition("@")
    try:
        definition = yaml.safe_load(dvc_yaml.read_text())["stages"][name]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return [], []
    in_git, in_cache = [], []
    for entry in [*definition.get("outs", []), *definition.get("metrics", []), *definition.get("plots", [])]:
        path, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
        path = re.sub(r"\$\{item\.\w+\}", value, str(path)) if value else path
        options = options or {}
        if options.get("persist", False):
            continue
        (in_cache if options.get("cache", True) else in_git).append(str(path))
    return in_git, in_cache


DVC_POLL_SECONDS = 1.0


def watch_dvc() -> None:
    """Under ``dvc repro``, stop this stage (as Ctrl-C would) when the dvc process that started it goes away.

    DVC ignores SIGINT while a stage runs, so Ctrl-C in a terminal reaches
    the stage (same process group) and DVC waits for it. SIGTERM or SIGKILL
    to dvc alone, what a supervisor or a job scheduler sends, ends dvc
    without passing anything on: the stage would keep writing outputs that
    nobody records. A daemon thread polls dvc's /proc entry instead (Linux);
    when dvc is gone it interrupts the main thread, whose KeyboardInterrupt
    ends the stage at the next Python statement, with no output half-written
    (digits.artifacts) and train resumable from its last checkpoint.
    """
    if not os.environ.get("DVC_STAGE") or not Path("/proc/self/stat").exists():
        return
    dvc = dvc_ancestor()
    if dvc is None:
        return
    pid, started = dvc

    def poll() -> None:
        while process_start_time(pid) == started:
            time.sleep(DVC_POLL_SECONDS)
        print(
            f"stopping: dvc (pid {pid}) has ended, so nothing would record this stage's outputs",
            file=sys.stderr,
            flush=True,
        )
        signal.raise_signal(signal.SIGINT)

    threading.Thread(target=poll, name="watch-dvc", daemon=True).start()


def dvc_ancestor() -> tuple[int, int] | None:
    """(pid, start time) of the nearest ancestor process running dvc: the parent, or the parent of the shell DVC
    started.
    """
    pid = os.getppid()
    for _ in range(4):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if any(
            Path(part.decode(errors="replace")).name in ("dvc", "dvc.exe") or part == b"dvc.cli" for part in command[:3]
        ):
            started = process_start_time(pid)
            return None if started is None else (pid, started)
        pid = parent_pid(pid)
        if pid <= 1:
            return None
    return None


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces), or None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def parent_pid(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else 0


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot): tells a live process from a later one given the same pid."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None
