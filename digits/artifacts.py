"""Writing outputs atomically and byte-for-byte reproducibly.

Every output goes to a temporary sibling first and is renamed into place only
when complete, so a killed stage never leaves a truncated file that looks
good. Files are also byte-stable: ``np.savez`` stamps the current time into
its zip entries, which would change dvc.lock on every ``dvc repro -f``; here
the entries carry a fixed date.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from digits.errors import PipelineError

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write to; move it to ``path`` only on success.

    Works for files and directories (a SavedModel). On any exception, Ctrl-C
    included, the temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    _remove(temporary)
    try:
        yield temporary
        if temporary.is_dir() and path.is_dir():
            retired = path.with_name(f".{path.name}.old{os.getpid()}")
            os.replace(path, retired)
            os.replace(temporary, path)
            _remove(retired)
        else:
            os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise


def save_npz(path: Path | str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an uncompressed .npz (readable by np.load) atomically, with stable bytes."""
    with atomic_path(path) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH), buffer.getvalue())


def load_npz(path: Path | str) -> dict[str, np.ndarray]:
    """Every array of an .npz, never unpickling anything."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: file not found (run the stage that makes it: dvc repro)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise PipelineError(f"{path}: not a readable .npz ({error})") from None


def write_json(path: Path | str, data: object) -> None:
    """Pretty JSON, atomically; float reprs are exact, so equal values give equal bytes."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n")


def write_csv(path: Path | str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain CSV with a header row, atomically (DVC plots read it directly)."""
    lines = [",".join(columns)] + [",".join(str(value) for value in row) for row in rows]
    with atomic_path(path) as temporary:
        temporary.write_text("\n".join(lines) + "\n")
