"""digits/page/ in a real browser: headless Chromium draws real test-set digits with the mouse on the page that
``python -m stages.serve`` serves, and the page reads them and shows the image the network was given.

Each digit is traced as a person colours it in: one pen stroke along every run of ink in each of its 28 rows,
pressed, dragged and released with Chromium's own mouse events, on the 280-pixel square (10 screen pixels to an
MNIST pixel). The browser has no network but this machine (tests/chromium.py), so the page loading at all shows it
works offline.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from conftest import RAW_MNIST
from digits.idx import load_raw_dataset
from digits.images import decode_grayscale, to_mnist
from digits.scratch import serving
from tools.chromium import Chromium, find_chromium

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium; .ci/run does)"),
]

ANSWERED = "document.body.dataset.answered === document.getElementById('pad').dataset.version"
INK = 128  # grey level from which an MNIST pixel counts as ink to trace


@pytest.fixture(scope="module")
def page(trained_workdir, tmp_path_factory):
    with serving(trained_workdir) as (url, _), Chromium(CHROMIUM) as browser:
        opened = browser.open(url + "/")
        opened.wait_for("document.getElementById('model').textContent.includes('models/saved_model')")
        opened.url = url
        yield opened


@pytest.fixture(scope="module")
def traced_digits() -> tuple[np.ndarray, np.ndarray]:
    """The first test-set image of each class, 0 to 9."""
    data = load_raw_dataset(RAW_MNIST)
    firsts = [int(np.flatnonzero(data["test_labels"] == digit)[0]) for digit in range(10)]
    return data["test_images"][firsts], data["test_labels"][firsts]


def pad_box(page) -> tuple[float, float, float]:
    box = page.evaluate("document.getElementById('pad').getBoundingClientRect().toJSON()")
    return box["left"], box["top"], box["width"]


def trace(page, image: np.ndarray) -> None:
    """Draw ``image`` on the page's square: a stroke along each row's runs of ink."""
    left, top, width = pad_box(page)
    step = width / image.shape[1]
    for row, values in enumerate(image):
        ink = np.flatnonzero(values >= INK)
        for run in np.split(ink, np.flatnonzero(np.diff(ink) > 1) + 1) if ink.size else []:
            y = top + (row + 0.5) * step
            page.stroke([(left + (column + 0.5) * step, y) for column in range(run[0], run[-1] + 1)])


def clear(page) -> None:
    page.evaluate("document.getElementById('clear').click()")
    page.wait_for(ANSWERED)


def seen_image(page) -> np.ndarray:
    """The 28 x 28 image the page shows as the network's input (its red channel: the page draws grey)."""
    seen = page.evaluate("[...document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data]")
    return np.array(seen, np.uint8).reshape(28, 28, 4)[..., 0]


def shown(page) -> tuple[str, np.ndarray, np.ndarray]:
    """The digit the page shows, the 28 x 28 image it shows, and what digits/images.py makes of its square."""
    page.wait_for(ANSWERED)
    digit = page.evaluate("document.getElementById('digit').textContent")
    square = base64.b64decode(page.evaluate("document.getElementById('pad').toDataURL('image/png')").split(",")[1])
    mnist = to_mnist(decode_grayscale(io.BytesIO(square), name="the square"))
    return digit, seen_image(page), mnist


def test_the_page_loads_from_the_server_alone_and_names_the_model(page):
    assert page.evaluate("document.title") == "Draw a digit"
    assert all(url.startswith(page.url + "/") for url in page.requested_urls()), page.requested_urls()
    assert page.evaluate("document.getElementById('digit').textContent") == "–"
    assert [event for event in page.browser.events if event["method"] == "Runtime.exceptionThrown"] == []


def test_traced_test_set_digits_are_read_right_and_the_page_shows_what_the_network_saw(
    page, traced_digits, tmp_path_factory
):
    read = []
    for image, label in zip(*traced_digits):
        clear(page)
        trace(page, image)
        digit, seen, mnist = shown(page)
        assert np.array_equal(seen, mnist), f"the picture shown for a traced {label} is not digits/images.py's"
        read.append(digit)
    screenshot = tmp_path_factory.mktemp("page") / "page.png"
    page.screenshot(screenshot)
    print(f"page with a traced 9: {screenshot}")
    labels = [str(label) for label in traced_digits[1]]
    print(f"traced {labels}, read {read}")
    assert sum(r == label for r, label in zip(read, labels)) >= 9, (read, labels)


def test_undo_takes_back_the_last_stroke_and_clear_empties_the_square(page, traced_digits):
    clear(page)
    left, top, width = pad_box(page)
    page.stroke([(left + width * 0.5, top + width * 0.15), (left + width * 0.5, top + width * 0.85)])  # a 1
    one = shown(page)
    page.stroke([(left + width * 0.2, top + width * 0.5), (left + width * 0.8, top + width * 0.5)])  # crossed: a +
    assert not np.array_equal(shown(page)[1], one[1])
    page.evaluate("document.getElementById('undo').click()")
    digit, seen, _ = shown(page)
    assert digit == one[0] == "1" and np.array_equal(seen, one[1])
    clear(page)
    assert page.evaluate("document.getElementById('digit').textContent") == "–"
    assert page.evaluate("document.getElementById('undo').disabled") is True


def test_a_chosen_picture_file_is_read_as_stages_predict_reads_it(page, traced_digits, tmp_path):
    image, label = traced_digits[0][3], traced_digits[1][3]
    photo = np.full((300, 240), 230, np.uint8)
    photo[40:236, 30:226] = 230 - np.asarray(Image.fromarray(image).resize((196, 196), Image.BILINEAR)) * 0.85
    Image.fromarray(photo).convert("RGB").save(tmp_path / "photo.jpg", quality=90)  # dark ink on grey paper
    clear(page)
    document = page.send("DOM.getDocument")["root"]["nodeId"]
    chooser = page.send("DOM.querySelector", {"nodeId": document, "selector": "#file"})["nodeId"]
    page.send("DOM.setFileInputFiles", {"nodeId": chooser, "files": [str(tmp_path / "photo.jpg")]})
    page.wait_for(f"{ANSWERED} && document.getElementById('digit').textContent !== '–'")
    assert page.evaluate("document.getElementById('digit').textContent") == str(label)
    with open(tmp_path / "photo.jpg", "rb") as file:
        expected = to_mnist(decode_grayscale(file, name="photo.jpg"))
    assert np.array_equal(seen_image(page), expected)
