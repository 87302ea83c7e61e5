"""digits/artifacts.py: every .npz checked from its headers before anything is allocated, and every
failed write one line naming the path, with nothing half-written."""

from __future__ import annotations

import errno
import io
import os
import zipfile

import numpy as np
import pytest

from digits.artifacts import (
    ArraySpec,
    WriteError,
    atomic_path,
    check_writable,
    load_npz,
    npz_headers,
    save_npz,
    write_json,
)
from digits.errors import PipelineError

SPEC = {"images": ArraySpec("float32", ("N", 4)), "name": ArraySpec("str", ())}


def _good(path):
    save_npz(path, {"images": np.zeros((3, 4), np.float32), "name": np.array("digits")})
    return path


def _member(path, name, data):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, data)
    return path


def _header(shape, descr="<f4"):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_a_sound_file_is_read_and_its_headers_match(tmp_path):
    path = _good(tmp_path / "a.npz")
    assert npz_headers(path) == {"images": ((3, 4), np.dtype("float32")), "name": ((), np.dtype("<U6"))}
    arrays = load_npz(path, SPEC)
    assert arrays["images"].shape == (3, 4) and str(arrays["name"]) == "digits"


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda path: path.write_bytes(np.random.default_rng(1).bytes(2000)),
            r"not a readable \.npz \(damaged or not an npz",
        ),
        (
            lambda path: path.write_bytes(_good(path).read_bytes()[:200]),
            r"not a readable \.npz \(damaged or not an npz",
        ),
        (lambda path: path.write_bytes(b""), r"not a readable \.npz \(damaged or not an npz"),
        (
            lambda path: _member(path, "images.npy", b"\x93NUMPY garbage"),
            r"not a readable \.npz \(damaged or not an npz",
        ),
        (
            lambda path: _member(path, "notes.txt", b"hello"),
            r"not a readable \.npz \(damaged or not an npz: holds 'notes.txt', not an \.npy array\)",
        ),
        (
            lambda path: _member(path, "images.npy", _header((1 << 40,)) + bytes(64)),
            r"damaged: array 'images' claims shape \(1099511627776,\) \(4,398,046,511,104 bytes\) but holds 64 bytes",
        ),
        (
            lambda path: _member(path, "images.npy", _header((2, 4), "|O") + bytes(64)),
            r"array 'images' holds Python objects \(pickled data\)",
        ),
        (lambda path: path.mkdir(), r"a\.npz: a directory, not a file"),
        (lambda path: path.symlink_to(path), r"a\.npz: a symbolic link loop"),
        (
            lambda path: path.symlink_to(path.with_name("gone.npz")),
            r"a\.npz: a link to .*gone\.npz, which does not exist",
        ),
        (lambda path: os.mkfifo(path), r"a\.npz: not a regular file \(a device, pipe or socket\)"),
        (lambda path: None, r"file not found \(run the stage that makes it: dvc repro\)"),
    ],
)
def test_a_damaged_or_crafted_npz_is_refused_before_any_array_is_allocated(tmp_path, make, message):
    path = tmp_path / "a.npz"
    make(path)
    with pytest.raises(PipelineError, match=message):
        load_npz(path, SPEC)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            {"images": np.zeros((3, 5), np.float32), "name": np.array("x")},
            r"array 'images' is float32 \(3, 5\), expected float32 \(N, 4\)",
        ),
        (
            {"images": np.zeros((3, 4), np.float64), "name": np.array("x")},
            r"array 'images' is float64 \(3, 4\), expected float32 \(N, 4\)",
        ),
        (
            {"images": np.zeros((3, 4), np.float32), "name": np.array(7)},
            r"array 'name' is int64 \(\), expected str \(\)",
        ),
        ({"images": np.zeros((3, 4), np.float32)}, r"missing array 'name'"),
        (
            {"images": np.zeros((3, 4), np.float32), "name": np.array("x"), "extra": np.zeros(1)},
            r"unexpected array 'extra'",
        ),
    ],
)
def test_arrays_of_the_wrong_name_dtype_or_shape_are_named(tmp_path, arrays, message):
    save_npz(tmp_path / "a.npz", arrays)
    with pytest.raises(PipelineError, match=message):
        load_npz(tmp_path / "a.npz", SPEC)


# ---------------------------------------------------------------- writing


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"version": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == '{\n  "version": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


@pytest.mark.parametrize(
    "code, reason",
    [
        (errno.ENOSPC, "no space left on the device: free some and run again"),
        (errno.EROFS, "the file system is read-only"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_every_os_error_while_writing_becomes_one_error_naming_the_path(tmp_path, monkeypatch, code, reason):
    path = tmp_path / "out.json"
    write_json(path, {"version": 1})

    def failing_replace(source, target):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(WriteError) as error:
        write_json(path, {"version": 2})
    assert str(error.value) == f"{path}: cannot write it ({reason}); the previous version, if any, is untouched"
    assert path.read_text() == '{\n  "version": 1\n}\n' and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_full_disk_is_named_and_leaves_nothing_half_written(tmp_path, small_disk):
    disk = small_disk(tmp_path / "disk", size=64 * 1024)
    write_json(disk / "small.json", {"ok": True})
    with pytest.raises(
        WriteError, match=r"big\.npz: cannot write it \(no space left on the device: free some and run again\)"
    ):
        save_npz(disk / "big.npz", {"x": np.zeros(100_000, np.float32)})
    assert sorted(p.name for p in disk.iterdir()) == ["small.json"]


def test_a_read_only_disk_is_named(tmp_path, small_disk):
    disk = small_disk(tmp_path / "disk", size=64 * 1024, read_only=True)
    with pytest.raises(WriteError, match=r"cannot write it \(the file system is read-only\)"):
        check_writable(disk / "out.json")
    with pytest.raises(WriteError, match=r"out\.json: cannot write it \(the file system is read-only\)"):
        write_json(disk / "out.json", {})


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path):
    (tmp_path / "models" / "checkpoint.npz").mkdir(parents=True)
    with pytest.raises(WriteError, match=r"checkpoint\.npz: cannot write it \(a directory is in the way\)"):
        check_writable(tmp_path / "models" / "weights.npz", tmp_path / "models" / "checkpoint.npz")
    (tmp_path / "plots").write_text("a file where a directory should be")
    with pytest.raises(
        WriteError, match=r"plots/history\.csv: cannot write it \(a file is in the way where a directory should be\)"
    ):
        check_writable(tmp_path / "plots" / "history.csv")
    check_writable(
        tmp_path / "new" / "deeper" / "out.json", tmp_path / "models" / "saved_model"
    )  # fine: made when written


def test_an_immutable_directory_is_named(tmp_path):
    import shutil
    import subprocess

    directory = tmp_path / "frozen"
    directory.mkdir()
    if (
        shutil.which("chattr") is None
        or subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0
    ):
        pytest.skip("chattr +i is not available here (needs root and a file system that supports it)")
    try:
        with pytest.raises(WriteError, match=r"out\.json: cannot write it \((permission denied|not permitted)"):
            check_writable(directory / "out.json")
        with pytest.raises(
            WriteError,
            match=r"out\.json: cannot write it \(not permitted \(an immutable or protected file or directory\?\)\)",
        ):
            write_json(directory / "out.json", {})
    finally:
        subprocess.run(["chattr", "-i", str(directory)], capture_output=True)
