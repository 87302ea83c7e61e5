"""digits/committee.py and stages/committee.py: members differ in every seed, and the committee predicts their mean
probability.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_stage, small_params, write_params
from digits.artifacts import save_npz
from digits.committee import member_params, member_root
from digits.model import Mlp
from digits.params import TtaView, load_params
from stages.committee import committee_probabilities


def test_a_member_moves_every_seed_of_the_run_by_its_number_and_nothing_else():
    params = load_params()
    member = member_params(params, 5)
    assert member.model.init_seed == params.model.init_seed + 5 and member.augment.seed == params.augment.seed + 5
    assert (
        member.train.shuffle_seed == params.train.shuffle_seed + 5
        and member.train.dropout_seed == params.train.dropout_seed + 5
    )
    unchanged = lambda p: (p.data, p.model.hidden, p.train.lr, p.train.epochs, p.augment.rotation, p.data.split_seed)  # noqa: E731
    assert unchanged(member) == unchanged(params)
    assert member_params(params, 0) == params and str(member_root(0)) == "." and str(member_root(5)) == "members/5"


def _regression(weights: dict[tuple[int, int], float]) -> Mlp:
    model = Mlp([784, 10], activation="relu")
    matrix = np.zeros((784, 10), np.float32)
    for (pixel, digit), value in weights.items():
        matrix[pixel, digit] = value
    model.set_arrays({"W0": matrix, "b0": np.zeros(10, np.float32)})
    return model


def test_each_members_probabilities_are_its_softmax_test_time_augmented_as_asked():
    images = np.random.default_rng(0).random((12, 784), dtype=np.float32)
    models = [_regression({(0, 1): 3.0}), _regression({(1, 7): 4.0, (2, 3): 1.0})]
    plain = committee_probabilities(models, images, [], background=0.0)
    assert plain.shape == (2, 12, 10)
    for model, probabilities in zip(models, plain):
        np.testing.assert_allclose(probabilities, tf.nn.softmax(model(tf.constant(images))).numpy(), atol=1e-6)
    shifted = committee_probabilities(models, images, [TtaView(shift=[1.0, 0.0])], background=0.0)
    assert not np.allclose(shifted, plain, atol=1e-4)


@pytest.mark.slow
def test_the_stage_scores_the_mean_of_the_members_probabilities_and_each_member(tmp_path):
    # Every image lights pixels 100 and 200; the pipeline's network reads pixel 100 as digit 1, member 3
    # reads pixel 200 as digit 7, more surely. Labels: 7 for the first 15 images, 1 for the last 5.
    images = np.zeros((20, 784), np.float32)
    images[:, [100, 200]] = 1.0
    labels = np.array([7] * 15 + [1] * 5)
    save_npz(tmp_path / "data/prepared/test.npz", {"images": images, "labels": np.eye(10, dtype=np.float32)[labels]})
    networks = {0: _regression({(100, 1): 4.0}), 3: _regression({(200, 7): 6.0})}
    for member, model in networks.items():
        save_npz(
            tmp_path / member_root(member) / "models/weights.npz",
            {**model.get_arrays(), "activation": np.array("relu")},
        )
    write_params(tmp_path, small_params(committee={"members": [3]}))

    result = run_stage("stages.committee", tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics/committee.json").read_text())
    assert metrics["size"] == 2 and metrics["members"]["0"]["errors"] == 15 and metrics["members"]["3"]["errors"] == 5
    mean = np.mean([tf.nn.softmax(model(tf.constant(images[:1]))).numpy()[0] for model in networks.values()], axis=0)
    assert mean.argmax() == 7 and metrics["errors"] == 5 and metrics["accuracy"] == 0.75
    np.testing.assert_allclose(metrics["loss"], -(15 * np.log(mean[7]) + 5 * np.log(mean[1])) / 20, rtol=1e-5)
    assert "committee of 2: accuracy 0.7500, 5 errors of 20 (each member's errors: 0: 15, 3: 5)" in result.stdout

    write_params(tmp_path, small_params(committee={"members": [3, 4]}))  # a member not trained yet
    missing = run_stage("stages.committee", tmp_path)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines()[-1].startswith(
        "error: members/4/models/weights.npz: file not found"
    )


@pytest.mark.slow
def test_a_negative_member_number_is_one_clear_error(tmp_path):
    write_params(tmp_path, small_params())
    result = run_stage("stages.train", tmp_path, "--member", "-2")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --member -2: a committee member's number is 1 or more (0, the default, is the pipeline's network)"
    )
