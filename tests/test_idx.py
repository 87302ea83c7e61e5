"""digits/idx.py: the shipped MNIST, small files written here, and corrupt input."""

from __future__ import annotations

import contextlib
import gzip
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import RAW_MNIST, write_idx, write_raw_dir
from digits.idx import IdxError, load_raw_dataset, read_idx, read_idx_bytes, read_idx_shape, verify_checksums


def test_shipped_mnist_has_the_documented_shapes_and_label_counts():
    data = load_raw_dataset(RAW_MNIST)
    assert data["train_images"].shape == (60000, 28, 28)
    assert data["test_images"].shape == (10000, 28, 28)
    assert data["train_images"].dtype == np.uint8
    assert np.bincount(data["train_labels"]).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(data["test_labels"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert round(float(data["train_images"].mean() / 255), 4) == 0.1307


def test_shipped_checksums_verify():
    assert sorted(verify_checksums(RAW_MNIST)) == sorted(p.name for p in RAW_MNIST.glob("*.gz"))


@pytest.mark.parametrize("name", ["images.idx", "images.idx.gz"])
def test_reads_plain_and_gzipped_files_it_wrote(tmp_path, name):
    array = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    read = read_idx(write_idx(tmp_path / name, array))
    assert read.shape == (5, 28, 28)
    np.testing.assert_array_equal(read, array)


def test_directory_of_plain_files_loads(tmp_path):
    data = load_raw_dataset(write_raw_dir(tmp_path / "raw", gzipped=False))
    assert data["train_images"].shape == (60, 28, 28)
    assert data["test_labels"].tolist() == [i % 10 for i in range(20)]


def test_header_shape_is_read_without_the_data(tmp_path):
    assert read_idx_shape(RAW_MNIST / "train-images-idx3-ubyte.gz") == (60000, 28, 28)
    assert read_idx_shape(RAW_MNIST / "t10k-labels-idx1-ubyte.gz") == (10000,)
    plain = write_idx(tmp_path / "labels", np.arange(7))
    assert read_idx_shape(plain) == (7,)
    bad = write_idx(tmp_path / "bad.gz", np.zeros((3, 2, 2)), magic=b"\x00\x00\x0d\x03")
    with pytest.raises(IdxError, match=r"bad.gz: wrong magic number 0x00000d03: data type 0x0d is not unsigned byte"):
        read_idx_shape(bad)
    (tmp_path / "stub").write_bytes(b"\x00")
    with pytest.raises(IdxError, match="stub: file is 1 bytes, too short for an IDX header"):
        read_idx_shape(tmp_path / "stub")


def test_wrong_magic_number_is_named(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((2, 28, 28)), magic=bytes([0, 0, 0x0D, 3]))
    with pytest.raises(IdxError, match=r"x\.gz: wrong magic number 0x00000d03"):
        read_idx(path)


def test_truncated_gzip_is_named(tmp_path):
    path = write_idx(tmp_path / "t.gz", np.zeros((50, 28, 28)))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(IdxError, match=r"t\.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_truncated_data_is_named(tmp_path):
    path = tmp_path / "short"
    write_idx(path, np.zeros((3, 28, 28)))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(IdxError, match=r"declares shape \(3, 28, 28\).*holds 2347"):
        read_idx(path)


def test_image_label_count_mismatch_names_both_files(tmp_path):
    raw = write_raw_dir(tmp_path / "raw")
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.arange(59) % 10)
    with pytest.raises(
        IdxError, match=r"train-images-idx3-ubyte\.gz holds 60 images but .*train-labels-idx1-ubyte\.gz holds 59 labels"
    ):
        load_raw_dataset(raw)


def test_labels_outside_0_to_9_are_named(tmp_path):
    raw = write_raw_dir(tmp_path / "raw")
    labels = np.arange(20) % 10
    labels[7] = 12
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(IdxError, match=r"t10k-labels-idx1-ubyte\.gz: label 12 at index 7 is outside 0-9"):
        load_raw_dataset(raw)


def test_wrong_dimensions_are_named(tmp_path):
    raw = write_raw_dir(tmp_path / "raw")
    write_idx(raw / "train-images-idx3-ubyte.gz", np.zeros((60, 784)))
    with pytest.raises(IdxError, match=r"expected 3 dimensions .* got shape \(60, 784\)"):
        load_raw_dataset(raw)


def test_checksum_mismatch_is_named(tmp_path):
    raw = tmp_path / "mnist"
    shutil.copytree(RAW_MNIST, raw)
    labels = raw / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes()), mtime=0, compresslevel=1))
    with pytest.raises(IdxError, match=r"t10k-labels-idx1-ubyte\.gz: SHA256 mismatch"):
        load_raw_dataset(raw)


def test_missing_file_and_directory_are_named(tmp_path):
    raw = write_raw_dir(tmp_path / "raw")
    (raw / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(IdxError, match=r"neither t10k-images-idx3-ubyte\.gz nor t10k-images-idx3-ubyte exists"):
        load_raw_dataset(raw)
    with pytest.raises(IdxError, match="data directory not found"):
        load_raw_dataset(tmp_path / "nowhere")


_VALID = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=64),
        st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)).map(
            lambda m: _VALID[: m[0]] + bytes([m[1]]) + _VALID[m[0] + 1 :]
        ),
        st.integers(0, len(_VALID)).map(lambda n: _VALID[:n]),
    )
)
def test_random_and_mutated_bytes_only_raise_idx_error(raw):
    try:
        array = read_idx_bytes(raw, name="fuzz")
    except IdxError:
        return
    assert array.dtype == np.uint8 and array.size == len(raw) - 4 - 4 * array.ndim


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_gzip_files_only_raise_idx_error(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "f.gz"
    path.write_bytes(raw if raw[:1] != b"\x1f" else gzip.compress(raw))
    with contextlib.suppress(IdxError):
        read_idx(path)
