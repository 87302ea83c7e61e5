"""stages/prepare.py: scaling, one-hot, the stratified split, and the stage's files."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import RAW_MNIST, run_stage, small_params, write_params, write_raw_dir
from digits.data import load_split, scale_pixels
from digits.errors import PipelineError
from digits.idx import load_raw_dataset
from stages.prepare import one_hot, stratified_split


@pytest.mark.parametrize("scale", [[0.0, 1.0], [-0.5, 0.5]])
def test_scaling_maps_0_and_255_to_the_range_ends(scale):
    pixels = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    scaled = scale_pixels(pixels, scale=scale)
    assert scaled.dtype == np.float32 and scaled.shape == (1, 4)
    np.testing.assert_allclose(
        scaled[0],
        [scale[0], scale[1], scale[0] + 0.2 * (scale[1] - scale[0]), scale[0] + 0.4 * (scale[1] - scale[0])],
        atol=1e-6,
    )


def test_one_hot():
    encoded = one_hot(np.array([3, 0, 9]))
    assert encoded.dtype == np.float32 and encoded.shape == (3, 10)
    assert encoded.sum() == 3 and encoded[0, 3] == encoded[1, 0] == encoded[2, 9] == 1


def test_split_is_disjoint_complete_sized_stratified_and_seeded():
    labels = load_raw_dataset(RAW_MNIST)["train_labels"]
    train, val = stratified_split(labels, val_size=5000, seed=3)
    assert len(val) == 5000 and len(train) == 55000
    assert not np.intersect1d(train, val).size
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(60000))
    expected = np.bincount(labels) * 5000 / 60000
    assert np.all(np.abs(np.bincount(labels[val]) - expected) < 1)
    again, _ = stratified_split(labels, val_size=5000, seed=3)[1], None
    other = stratified_split(labels, val_size=5000, seed=4)[1]
    assert np.array_equal(val, again) and not np.array_equal(val, other)


def test_val_size_as_large_as_the_training_set_is_refused():
    with pytest.raises(PipelineError, match=r"data\.val_size = 60: must be between 1 and 59"):
        stratified_split(np.arange(60) % 10, val_size=60, seed=0)


@pytest.mark.slow
def test_stage_writes_the_three_splits(workdir):
    result = run_stage("stages.prepare", workdir)
    assert result.returncode == 0, result.stderr
    prepared = workdir / "data" / "prepared"
    train, val, test = (load_split(name, prepared) for name in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (2000, 500, 1000)
    assert train.images.shape == (2000, 784) and train.images.min() == 0.0 and train.images.max() == 1.0
    np.testing.assert_array_equal(test.classes, load_raw_dataset(RAW_MNIST)["test_labels"][:1000])


@pytest.mark.slow
def test_stage_output_is_byte_identical_across_runs(workdir):
    assert run_stage("stages.prepare", workdir).returncode == 0
    first = {p.name: p.read_bytes() for p in (workdir / "data" / "prepared").iterdir()}
    assert run_stage("stages.prepare", workdir).returncode == 0
    assert first == {p.name: p.read_bytes() for p in (workdir / "data" / "prepared").iterdir()}


@pytest.mark.slow
def test_corrupt_raw_data_fails_cleanly_and_writes_nothing(tmp_path):
    raw = write_raw_dir(tmp_path / "raw")
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    write_params(tmp_path, small_params(data={"raw_dir": str(raw), "val_size": 10, "train_size": None}))
    result = run_stage("stages.prepare", tmp_path)
    assert result.returncode == 1
    assert "train-images-idx3-ubyte.gz: corrupt or truncated gzip" in result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_val_size_too_large_fails_before_writing(tmp_path):
    raw = write_raw_dir(tmp_path / "raw")
    write_params(tmp_path, small_params(data={"raw_dir": str(raw), "val_size": 60, "train_size": None}))
    result = run_stage("stages.prepare", tmp_path)
    assert result.returncode == 1 and "data.val_size = 60" in result.stderr
    assert not (tmp_path / "data").exists()
