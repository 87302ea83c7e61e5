"""stages/train.py under tf.distribute: mirrored on two logical CPUs, and a two-worker cluster on localhost that
agrees, writes only from the chief, resumes from the chief's checkpoint after a worker dies, and refuses workers
started with other params."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time

import numpy as np
import pytest

from conftest import run_stage, stage_workdir
from digits.artifacts import load_npz
from digits.scratch import stage_command, stage_env

pytestmark = pytest.mark.slow  # runs stages, several at once


def _max_difference(first, second) -> float:
    a, b = load_npz(first), load_npz(second)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a if k != "activation")


def _digest_line(output: str) -> str:
    return re.search(r"weights sha256 ([0-9a-f]{16})", output).group(1)


def test_mirrored_stage_on_two_cpus_matches_the_single_device_stage(tmp_path, prepared_dir):
    single = stage_workdir(tmp_path, prepared_dir, "single", train={"batch_size": 96})  # 2000 = 20 x 96 + 80
    mirrored = stage_workdir(
        tmp_path, prepared_dir, "mirrored", train={"batch_size": 96}, hardware={"distribute": "mirrored", "devices": 2}
    )
    assert run_stage("stages.train", single).returncode == 0
    result = run_stage("stages.train", mirrored)
    assert result.returncode == 0, result.stderr
    assert "2 replicas (CPU:0, CPU:1)" in result.stdout
    assert _max_difference(single / "models/weights.npz", mirrored / "models/weights.npz") < 1e-5
    assert (mirrored / "metrics/train.json").is_file()


# Ports handed out by this test process so far. Each pytest-xdist worker takes ports from a block of its own, below
# Linux's ephemeral range (32768-60999, where bind(0) draws from): two workers' clusters can never be given the same
# port, as they could when each asked the kernel for a free port and released it before its cluster bound it.
# (Holding the port instead does not work: TensorFlow's gRPC server refuses a port another socket holds.)
_PORTS_HANDED_OUT: list[int] = []


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports free now, none handed out before by this process, from this xdist worker's block."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    block = range(20000 + 2000 * worker, 20000 + 2000 * (worker + 1))
    ports = []
    for port in block:
        if port in _PORTS_HANDED_OUT:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # some other program's
        ports.append(port)
        _PORTS_HANDED_OUT.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free ports in {block}")


def _start_cluster(workdirs, ports: list[int], *, chief_stdout_piped: bool = False) -> list[subprocess.Popen]:
    """One ``python -m stages.train`` per directory, as workers of one cluster on the loopback ``ports``.

    Output goes to stdout.log and stderr.log in each directory; with ``chief_stdout_piped`` the chief's stdout
    is a pipe instead, for a test to act on a line the moment it is printed.
    """
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes = []
    for index, workdir in enumerate(workdirs):
        env = stage_env({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})})
        with open(workdir / "stdout.log", "w") as stdout, open(workdir / "stderr.log", "w") as stderr:
            piped = chief_stdout_piped and index == 0
            processes.append(
                subprocess.Popen(
                    stage_command("stages.train"),
                    cwd=workdir,
                    env=env,
                    stderr=stderr,
                    text=True,
                    stdout=subprocess.PIPE if piped else stdout,
                )
            )
    return processes


def _wait(processes, *, timeout: float = 240) -> None:
    """Wait for every worker; past ``timeout`` kill them all, so a hung cluster fails the test instead of CI."""
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _cluster_workdirs(tmp_path, prepared_dir, prefix, **train):
    return [
        stage_workdir(tmp_path, prepared_dir, f"{prefix}{index}", train=train, hardware={"distribute": "multi_worker"})
        for index in range(2)
    ]


def test_two_workers_on_localhost_agree_and_only_the_chief_writes(tmp_path, prepared_dir):
    single = stage_workdir(tmp_path, prepared_dir, "single", train={"epochs": 1})
    assert run_stage("stages.train", single).returncode == 0
    chief, worker = _cluster_workdirs(tmp_path, prepared_dir, "worker", epochs=1)
    processes = _start_cluster([chief, worker], free_ports(2))
    _wait(processes)
    outputs = [(directory / "stdout.log").read_text() for directory in (chief, worker)]
    for process, directory in zip(processes, (chief, worker)):
        assert process.returncode == 0, (directory / "stderr.log").read_text()[-3000:]
    assert "2 replicas on 2 workers (this is worker 0, chief)" in outputs[0]
    assert "(this is worker 1, not the chief" in outputs[1]
    assert _digest_line(outputs[0]) == _digest_line(outputs[1])  # both workers hold the same weights
    assert re.findall(r"epoch 1/1: .*", outputs[0]) == re.findall(
        r"epoch 1/1: .*", outputs[1]
    )  # and the same reduced metrics
    for name in ("models/weights.npz", "models/checkpoint.npz", "metrics/train.json", "plots/train_history.csv"):
        assert (chief / name).is_file(), name
    assert sorted(p.name for p in worker.iterdir()) == ["data", "params.yaml", "stderr.log", "stdout.log"]
    assert _max_difference(single / "models/weights.npz", chief / "models/weights.npz") < 1e-5


def test_a_killed_cluster_resumes_from_the_chiefs_checkpoint(tmp_path, prepared_dir):
    # the chief is killed the moment it prints epoch 1's line: eleven more leave no race with a fast machine
    epochs = 12
    reference = stage_workdir(
        tmp_path, prepared_dir, "reference", train={"epochs": epochs}, hardware={"distribute": "mirrored", "devices": 2}
    )
    assert run_stage("stages.train", reference).returncode == 0

    workdirs = _cluster_workdirs(tmp_path, prepared_dir, "worker", epochs=epochs)
    processes = _start_cluster(workdirs, free_ports(2), chief_stdout_piped=True)
    for line in processes[0].stdout:  # printed right after the epoch's checkpoint is in place
        if line.startswith(f"epoch 1/{epochs}"):
            processes[0].kill()  # the chief dies; the other worker must notice and stop by itself
            break
    _wait(processes, timeout=120)
    assert processes[1].returncode == 1
    message = (workdirs[1] / "stderr.log").read_text().strip().splitlines()[-1]
    assert message.startswith("error: another worker stopped answering during the epoch"), message
    done = int(load_npz(workdirs[0] / "models/checkpoint.npz")["epoch"])
    assert 1 <= done < epochs and not (workdirs[1] / "models").exists()

    # the worker has no checkpoint of its own: it must take the chief's
    processes = _start_cluster(workdirs, free_ports(2))
    _wait(processes)
    assert [process.returncode for process in processes] == [0, 0], (workdirs[1] / "stderr.log").read_text()[-3000:]
    outputs = [(directory / "stdout.log").read_text() for directory in workdirs]
    assert f"resuming from models/checkpoint.npz after epoch {done} of {epochs}" in outputs[0]
    assert _digest_line(outputs[0]) == _digest_line(outputs[1])
    assert _max_difference(reference / "models/weights.npz", workdirs[0] / "models/weights.npz") < 1e-5


def test_workers_started_with_other_params_all_stop_with_one_clear_error(tmp_path, prepared_dir):
    cluster = {"distribute": "multi_worker"}
    chief = stage_workdir(tmp_path, prepared_dir, "worker0", train={"epochs": 1}, hardware=cluster)
    worker = stage_workdir(
        tmp_path,
        prepared_dir,
        "worker1",
        train={"epochs": 1, "batch_size": 50},
        hardware={"distribute": "multi_worker"},
    )
    processes = _start_cluster([chief, worker], free_ports(2))
    _wait(processes)
    assert [process.returncode for process in processes] == [1, 1]
    for directory in (chief, worker):
        message = (directory / "stderr.log").read_text().strip().splitlines()[-1]
        assert "1 of 2 replicas were started with other params than the chief" in message, message
        assert "every worker needs the same params.yaml" in message
    assert not (chief / "models").exists()
