"""stages/predict.py, digits/images.py and digits/export.py on real MNIST digits."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import RAW_MNIST, run_stage, small_params
from digits.data import scale_pixels
from digits.idx import load_raw_dataset
from digits.metrics import softmax
from digits.model import load_weights

pytestmark = pytest.mark.slow  # runs stages or other processes: see pytest.ini

COUNT = 30


@pytest.fixture(scope="module")
def digits_test():
    data = load_raw_dataset(RAW_MNIST)
    return data["test_images"][-COUNT:], data["test_labels"][-COUNT:]  # not in any test slice used for training


def _write_pictures(directory, images):
    """Each digit three ways: MNIST-style PNG, dark-on-light 200x200 RGB PNG with margins, and a JPEG of that."""
    paths = []
    for i, image in enumerate(images):
        paper = np.full((200, 200), 235, np.uint8)
        paper[30:142, 50:162] = 255 - np.asarray(Image.fromarray(image).resize((112, 112), Image.BILINEAR))
        for name, picture in (
            (f"{i}_mnist.png", Image.fromarray(image)),
            (f"{i}_paper.png", Image.fromarray(np.stack([paper] * 3, -1))),
            (f"{i}_paper.jpg", Image.fromarray(paper)),
        ):
            picture.save(directory / name)
            paths.append(directory / name)
    return paths


def test_predict_reads_digits_in_both_polarities_and_any_size(trained_workdir, digits_test, tmp_path):
    images, labels = digits_test
    paths = _write_pictures(tmp_path, images)
    result = run_stage(
        "stages.predict", trained_workdir, "--json", *map(str, paths), str(paths[0])
    )  # a repeated picture is answered again
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["image"] for a in answers] == [str(p) for p in [*paths, paths[0]]]
    assert answers.pop() == answers[0]
    predicted = np.array([a["digit"] for a in answers]).reshape(COUNT, 3)
    for variant in range(3):
        assert (predicted[:, variant] == labels).mean() >= 0.9, (variant, predicted[:, variant], labels)
    assert all(0.1 <= a["probability"] <= 1.0 for a in answers)


def test_bad_images_get_clear_errors_while_the_others_are_answered(trained_workdir, digits_test, tmp_path):
    good = _write_pictures(tmp_path, digits_test[0][:1])[0]
    Image.new("L", (64, 64), 250).save(tmp_path / "blank.png")
    (tmp_path / "notes.png").write_text("not an image")
    result = run_stage(
        "stages.predict",
        trained_workdir,
        str(good),
        str(tmp_path / "blank.png"),
        str(tmp_path / "notes.png"),
        str(tmp_path / "gone.jpg"),
    )
    assert result.returncode == 1
    assert re.fullmatch(rf"{re.escape(str(good))}: \d \(probability [01]\.\d{{3}}\)\n", result.stdout), result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {tmp_path / 'blank.png'}: blank image (no stroke stands out from the background)",
        f"error: {tmp_path / 'notes.png'}: not a readable image (cannot identify image file "
        f"'{tmp_path / 'notes.png'}')",
        f"error: {tmp_path / 'gone.jpg'}: file not found",
    ]


def _sevens(digits_test):
    images, labels = digits_test
    return [image for image, label in zip(images, labels) if label == 7][:3]


def test_sixteen_bit_and_transparent_pictures_are_read_as_drawn(trained_workdir, digits_test, tmp_path):
    """16-bit grey levels are scaled, not clipped; on a transparent background the opaque strokes are the ink, whatever
    their colour.
    """
    paths = []
    for i, seven in enumerate(_sevens(digits_test)):
        paper = 255 - np.asarray(Image.fromarray(seven).resize((112, 112), Image.BILINEAR)).astype(np.uint16)
        Image.fromarray(paper * 257).save(tmp_path / f"{i}_16bit.png")  # dark on light, 0-65535
        strokes = np.asarray(Image.fromarray(seven).resize((112, 112), Image.BILINEAR))
        for colour, name in ((255, "white"), (0, "black")):
            rgba = np.zeros((112, 112, 4), np.uint8)
            rgba[..., :3], rgba[..., 3] = colour, strokes  # colour everywhere, visible only where the digit is
            Image.fromarray(rgba).save(tmp_path / f"{i}_{name}_on_transparent.png")
        paths += [
            tmp_path / f"{i}_16bit.png",
            tmp_path / f"{i}_white_on_transparent.png",
            tmp_path / f"{i}_black_on_transparent.png",
        ]
    assert Image.open(paths[0]).mode == "I;16"
    result = run_stage("stages.predict", trained_workdir, "--json", *map(str, paths))
    assert result.returncode == 0, result.stderr
    answers = {json.loads(line)["image"]: json.loads(line) for line in result.stdout.splitlines()}
    assert all(answer["digit"] == 7 and answer["probability"] > 0.5 for answer in answers.values()), answers


def test_each_picture_is_judged_on_its_own(trained_workdir, digits_test, tmp_path):
    """A decompression bomb, a directory, a link loop and a link to nothing get their own error line; the good picture
    its
    answer.
    """
    good = _write_pictures(tmp_path, digits_test[0][:1])[0]
    Image.new("1", (15000, 12000)).save(tmp_path / "bomb.png")  # 180 megapixels in a few kB
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    names = ["bomb.png", "folder.png", "loop.png", "dangling.png"]
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    result = run_stage("stages.predict", trained_workdir, *(str(tmp_path / name) for name in names), str(good))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.fullmatch(rf"{re.escape(str(good))}: \d \(probability [01]\.\d{{3}}\)\n", result.stdout), result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {tmp_path / 'bomb.png'}: too large (15000 x 12000 pixels, at most 64 megapixels); scale it down",
        f"error: {tmp_path / 'folder.png'}: a directory, not a file",
        f"error: {tmp_path / 'loop.png'}: a symbolic link loop",
        f"error: {tmp_path / 'dangling.png'}: a link to {tmp_path / 'nowhere.png'}, which does not exist",
    ]


@pytest.mark.parametrize("damage", ["truncate saved_model.pb", "truncate the variables"])
def test_a_damaged_saved_model_is_one_error_naming_it_and_how_to_get_it_back(
    trained_workdir, digits_test, tmp_path, damage
):
    import shutil

    model = tmp_path / "saved_model"
    shutil.copytree(trained_workdir / "models/saved_model", model)
    target = (
        model / "saved_model.pb"
        if damage == "truncate saved_model.pb"
        else next((model / "variables").glob("*.data-*"))
    )
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 3])
    good = _write_pictures(tmp_path, digits_test[0][:1])[0]
    result = run_stage("stages.predict", trained_workdir, "--model", str(model), str(good))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith(f"error: {model}: a damaged SavedModel (")
        and lines[0].endswith("; export it again")
    ), lines


def test_saved_model_in_a_bare_process_matches_the_projects_forward_pass(trained_workdir, digits_test, tmp_path):
    images = digits_test[0]
    np.save(tmp_path / "images.npy", images)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "images = tf.constant(np.load(sys.argv[2]))\n"
        "np.save(sys.argv[3], serve(images=images)['probabilities'].numpy())\n"
    )
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"}  # no PYTHONPATH: none of the project's code
    subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(trained_workdir / "models/saved_model"),
            str(tmp_path / "images.npy"),
            str(tmp_path / "p.npy"),
        ],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    from_saved_model = np.load(tmp_path / "p.npy")
    model = load_weights(trained_workdir / "models/weights.npz")
    ours = softmax(model(scale_pixels(images, scale=small_params()["data"]["scale"])).numpy())
    np.testing.assert_allclose(from_saved_model, ours, atol=1e-6)
