"""The one exception type the pipeline reports to users.

Every expected failure (bad params, a corrupt file, a diverged run) is raised
as a ``PipelineError`` with a message that names what is wrong; the stages'
entry point turns it into a single line on stderr and a non-zero exit, so a
user never has to read a traceback to learn that a key is misspelt.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

from digits.under_dvc import restore_hint, watch_dvc


class PipelineError(Exception):
    """An error the user can fix: the message says what and where."""


def run_main(main: Callable[[], None], *, has_outputs: bool = True) -> NoReturn:
    """Run a stage's ``main()``, mapping known failures to clean exits.

    PipelineError -> message on stderr, exit 1; Ctrl-C -> exit 130. Anything
    else is a bug and keeps its traceback. Under ``dvc repro`` (DVC sets
    DVC_STAGE), DVC has already removed a stage's previous outputs when its
    command fails, so the message says how to get them back, and the stage
    stops when dvc does (``watch_dvc``).
    """
    watch_dvc()
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}{restore_hint() if has_outputs else ''}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        # Outputs are renamed into place only when complete, so nothing is half-written;
        # train resumes from its last per-epoch checkpoint on the next run.
        print("interrupted: no output was half-written; run again to resume", file=sys.stderr)
        sys.exit(130)
    sys.exit(0)
