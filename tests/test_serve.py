"""stages/serve.py as a user starts it: it listens where it says, answers, names what it serves, refuses bad
arguments with one line each, and stops on Ctrl-C."""

from __future__ import annotations

import json
import socket
import urllib.request

import numpy as np
import pytest

from conftest import RAW_MNIST, run_stage
from digits.idx import load_raw_dataset
from digits.scratch import serving

pytestmark = pytest.mark.slow  # starts the server in a process of its own


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def test_it_serves_the_saved_model_where_it_says_and_stops_on_ctrl_c(trained_workdir):
    data = load_raw_dataset(RAW_MNIST)
    images, labels = data["test_images"][-100:], data["test_labels"][-100:]
    with serving(trained_workdir) as (url, process):
        assert url.startswith("http://127.0.0.1:")
        assert get(url + "/v1/models/digits")["model_version_status"][0]["state"] == "AVAILABLE"
        pipeline = get(url + "/v1/models/digits/metadata")["metadata"]["pipeline"]
        assert pipeline == {"weights_md5": None, "test_accuracy": None, "saved_model": "models/saved_model"}
        request = urllib.request.Request(
            url + "/v1/models/digits:predict", json.dumps({"instances": images.tolist()}).encode()
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            predictions = np.array(json.load(response)["predictions"])
        assert (predictions.argmax(axis=1) == labels).mean() >= 0.9
    assert process.returncode == 0
    assert "serve: stopped" in process.stderr.read()


def test_without_a_saved_model_it_says_how_to_make_one(tmp_path):
    result = run_stage("stages.serve", tmp_path, "--port", "0")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: models/saved_model: no SavedModel here (run `dvc repro` to train and export one)"
    )


def test_a_port_in_use_is_one_line_naming_it(trained_workdir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_stage("stages.serve", trained_workdir, "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: port {port} on 127.0.0.1 is in use (another server?); --port picks another"


def test_a_port_out_of_range_is_refused(trained_workdir):
    result = run_stage("stages.serve", trained_workdir, "--port", "70000")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: --port 70000: a port is 0-65535 (0 picks a free one)"


def test_listening_beyond_this_machine_is_said_out_loud(trained_workdir):
    with serving(trained_workdir, "--host", "0.0.0.0") as (url, process):
        assert get(url.replace("0.0.0.0", "127.0.0.1") + "/v1/models/digits")["model_version_status"]
    assert "listening on 0.0.0.0: anyone who can reach this machine can use the model" in process.stderr.read()
