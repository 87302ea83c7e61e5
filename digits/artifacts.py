"""Reading and writing the project's files safely, atomically and byte-for-byte reproducibly.

Every output goes to a temporary sibling first and is renamed into place only
when complete, so a killed stage never leaves a truncated file that looks
good; a failed write (a full disk, a read-only directory) is one error naming
the path. Files are also byte-stable: ``np.savez`` stamps the current time
into its zip entries, which would change dvc.lock on every ``dvc repro -f``;
here the entries carry a fixed date.

Every .npz is read header first: the names, dtypes and shapes of its arrays
are checked against what the caller expects, and against the bytes the file
actually holds, before any array is allocated, so a damaged or crafted file
is refused with a reason instead of a numpy traceback or a 4 TiB allocation.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import shutil
import zipfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digits.errors import PipelineError

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ------------------------------------------------------------------ writing

WRITE_FAILURES = {
    errno.ENOSPC: "no space left on the device: free some and run again",
    errno.EDQUOT: "disk quota exceeded: free some space and run again",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted (an immutable or protected file or directory?)",
    errno.EISDIR: "a directory is in the way",
    errno.ENOTDIR: "a file is in the way where a directory should be",
}


class WriteError(PipelineError):
    """An output could not be written; nothing of it was left behind."""


def write_error(path: Path | str, error: OSError) -> WriteError:
    """One line naming the output and why it could not be written."""
    reason = WRITE_FAILURES.get(error.errno, error.strerror or str(error))
    return WriteError(f"{path}: cannot write it ({reason}); the previous version, if any, is untouched")


def check_writable(*paths: Path | str) -> None:
    """Refuse, before any work, outputs that could not be written: a directory in the place of a file, an unwritable
    directory.

    A full disk cannot be foreseen; atomic_path reports it when it happens.
    """
    for path in map(Path, paths):
        if path.is_dir() and not path.is_symlink() and path.suffix:
            raise write_error(path, OSError(errno.EISDIR, "Is a directory"))
        directory = path.parent
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent
        if not directory.is_dir():
            raise write_error(path, OSError(errno.ENOTDIR, "Not a directory"))
        if not os.access(directory, os.W_OK | os.X_OK):
            raise write_error(path, OSError(errno.EROFS if _read_only(directory) else errno.EACCES, "not writable"))


def _read_only(directory: Path) -> bool:
    return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write to; move it to ``path`` only on success.

    Works for files and directories (a SavedModel). On any exception, Ctrl-C
    included, the temporary is removed and ``path`` is left as it was; an
    OSError (no space, read-only, permission) becomes one WriteError naming
    ``path``.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove(temporary)
        yield temporary
        if temporary.is_dir() and path.is_dir():
            retired = path.with_name(f".{path.name}.old{os.getpid()}")
            os.replace(path, retired)
            os.replace(temporary, path)
            _remove(retired)
        else:
            os.replace(temporary, path)
    except BaseException as error:
        # the temporary never came to exist (read-only directory) or cannot go: the error below matters more
        with contextlib.suppress(OSError):
            _remove(temporary)
        if isinstance(error, OSError):
            raise write_error(path, error) from None
        raise


def save_npz(path: Path | str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an uncompressed .npz (readable by np.load) atomically, with stable bytes."""
    with atomic_path(path) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH), buffer.getvalue())


# ------------------------------------------------------------------ reading


def why_unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as a regular file, in a user's words; None if it can."""
    try:
        path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link loop"
        if path.is_symlink():
            return f"a link to {os.readlink(path)}, which does not exist"
        if error.errno == errno.EACCES:
            return "permission denied"
        return "file not found"
    if path.is_dir():
        return "a directory, not a file"
    if not path.is_file():
        return "not a regular file (a device, pipe or socket)"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


@dataclass(frozen=True)
class ArraySpec:
    """What one array in an .npz must be: a numpy dtype (``"str"``: any text) and a shape.

    A dimension given as a name ("N", "pixels") may have any length.
    """

    dtype: str
    shape: tuple[int | str, ...]

    def problem(self, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
        dtype_ok = dtype.kind == "U" if self.dtype == "str" else dtype == np.dtype(self.dtype)
        shape_ok = len(shape) == len(self.shape) and all(
            isinstance(want, str) or want == got for want, got in zip(self.shape, shape)
        )
        if dtype_ok and shape_ok:
            return None
        wanted = "(" + ", ".join(map(str, self.shape)) + ("," if len(self.shape) == 1 else "") + ")"
        return f"is {dtype} {shape}, expected {self.dtype} {wanted}"


def npz_headers(path: Path | str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Name -> (shape, dtype) of every array in an .npz, from the headers alone.

    Refuses (PipelineError) what is not a sound, pickle-free .npz: not a zip,
    a member that is not an .npy array, an array of Python objects, and a
    header that claims more bytes than its member holds.
    """
    path = Path(path)
    problem = why_unreadable(path)
    if problem == "file not found":
        raise PipelineError(f"{path}: file not found (run the stage that makes it: dvc repro)")
    if problem:
        raise PipelineError(f"{path}: {problem}")
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                name = member.filename.removesuffix(".npy")
                if name == member.filename:
                    raise ValueError(f"holds {member.filename!r}, not an .npy array")
                with archive.open(member) as stream:
                    version = np.lib.format.read_magic(stream)
                    if version not in NPY_HEADER_READERS:
                        raise ValueError(f"{member.filename!r} is .npy format version {version}")
                    shape, _, dtype = NPY_HEADER_READERS[version](stream)  # the header only
                    header_bytes = stream.tell()
                if dtype.hasobject:
                    raise PipelineError(
                        f"{path}: array {name!r} holds Python objects (pickled data), which this project never loads"
                    )
                needed = math.prod(shape) * dtype.itemsize
                if needed > member.file_size - header_bytes:
                    raise PipelineError(
                        f"{path}: damaged: array {name!r} claims shape {shape} ({needed:,} bytes) "
                        f"but holds {member.file_size - header_bytes:,} bytes"
                    )
                headers[name] = (tuple(shape), dtype)
    except PipelineError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as error:
        raise PipelineError(f"{path}: not a readable .npz (damaged or not an npz: {error})") from None
    return headers


def check_npz(
    path: Path | str,
    headers: Mapping[str, tuple[tuple[int, ...], np.dtype]],
    expected: Mapping[str, ArraySpec],
    *,
    optional: Collection[str] = (),
) -> None:
    """Raise PipelineError naming the first array that is missing, unexpected, or of the wrong dtype or shape."""
    missing = [name for name in expected if name not in headers and name not in optional]
    if missing:
        raise PipelineError(f"{path}: missing array {missing[0]!r} (expected {', '.join(expected)})")
    unexpected = [name for name in headers if name not in expected]
    if unexpected:
        raise PipelineError(f"{path}: unexpected array {unexpected[0]!r} (expected {', '.join(expected)})")
    for name, (shape, dtype) in headers.items():
        problem = expected[name].problem(shape, dtype)
        if problem:
            raise PipelineError(f"{path}: array {name!r} {problem}")


def load_npz(
    path: Path | str,
    expected: Mapping[str, ArraySpec] | None = None,
    *,
    optional: Collection[str] = (),
    only: Collection[str] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of an .npz (all, or those named in ``only``), its headers checked first
    (against ``expected``, if given); never unpickles anything."""
    headers = npz_headers(path)
    if expected is not None:
        check_npz(path, headers, expected, optional=optional)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files if only is None or name in only}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise PipelineError(f"{path}: not a readable .npz (damaged or not an npz: {error})") from None


# ------------------------------------------------------------------ text outputs


def write_json(path: Path | str, data: object) -> None:
    """Pretty JSON, atomically; float reprs are exact, so equal values give equal bytes."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n")


def write_csv(path: Path | str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain CSV with a header row, atomically (DVC plots read it directly)."""
    lines = [",".join(columns)] + [",".join(str(value) for value in row) for row in rows]
    with atomic_path(path) as temporary:
        temporary.write_text("\n".join(lines) + "\n")
