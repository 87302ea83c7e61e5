"""digits/images.py: any picture of a digit becomes an MNIST-style image; one holding none gets one clear error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import RAW_MNIST
from digits.idx import load_raw_dataset
from digits.images import ImageError, load_grayscale, to_mnist


@pytest.fixture(scope="module")
def mnist_digits() -> np.ndarray:
    return load_raw_dataset(RAW_MNIST)["test_images"][-100:]


def test_mnist_digits_come_back_close_to_themselves(mnist_digits):
    """MNIST's own centring differs in detail (measured on these 100: median mean difference 17 grey levels,
    median correlation 0.77), so the claim is the median, not every digit."""
    differences, correlations = [], []
    for image in mnist_digits:
        again = to_mnist(image.astype(np.float32))
        assert again.shape == (28, 28) and again.dtype == np.uint8
        differences.append(np.abs(again.astype(int) - image.astype(int)).mean())
        correlations.append(np.corrcoef(again.ravel(), image.ravel())[0, 1])
    assert np.median(differences) < 20 and np.median(correlations) > 0.7


def test_dark_ink_on_light_paper_off_centre_is_inverted_and_centred(mnist_digits):
    image = mnist_digits[0]
    paper = np.full((300, 200), 240.0, np.float32)
    paper[20:132, 10:122] = (
        240.0 - np.asarray(Image.fromarray(image).resize((112, 112), Image.BILINEAR), np.float32) * 0.9
    )
    result = to_mnist(paper).astype(np.float64)
    assert result[0].max() == 0 and result[:, 0].max() == 0  # a dark background, as MNIST
    rows, columns = np.indices(result.shape)
    centre = (float((rows * result).sum() / result.sum()), float((columns * result).sum() / result.sum()))
    assert abs(centre[0] - 13.5) < 1.5 and abs(centre[1] - 13.5) < 1.5  # centre of mass in the middle of the field
    assert np.corrcoef(result.ravel(), to_mnist(image.astype(np.float32)).ravel())[0, 1] > 0.8  # and the same digit


def test_a_blank_picture_is_refused():
    with pytest.raises(ImageError, match="blank image"):
        to_mnist(np.full((40, 40), 128.0))


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 257 * 100, 65535]], np.uint16).repeat(4, axis=0)
    Image.fromarray(levels).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode == "I;16"
    np.testing.assert_allclose(load_grayscale(tmp_path / "wide.png")[0], [0.0, 100.0, 255.0], atol=1e-3)


@pytest.mark.parametrize("colour", [0, 255])
def test_on_a_transparent_background_the_opaque_strokes_are_the_ink(tmp_path, colour):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = colour
    rgba[2:6, 3, 3] = 255  # a vertical stroke
    Image.fromarray(rgba).save(tmp_path / "stroke.png")
    grey = load_grayscale(tmp_path / "stroke.png")
    assert grey[2:6, 3].tolist() == [255.0] * 4 and grey.sum() == 4 * 255.0


def test_unreadable_and_oversized_pictures_get_one_error_naming_them(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageError, match=r"notes\.png: not a readable image"):
        load_grayscale(tmp_path / "notes.png")
    Image.new("1", (9000, 8000)).save(tmp_path / "bomb.png")  # 72 megapixels in a few kB
    with pytest.raises(ImageError, match=r"bomb\.png: too large \(9000 x 8000 pixels, at most 64 megapixels\)"):
        load_grayscale(tmp_path / "bomb.png")
    with pytest.raises(ImageError, match=r"gone\.png: file not found"):
        load_grayscale(tmp_path / "gone.png")
