"""tools/same_bits.py: the real stages write the same bits on emulated CPUs of other makers, generations and
architectures.

The emulated comparisons need Debian's qemu-user, and the ARM64 one an
aarch64 Python with the pinned packages (`make aarch64`; .ci/run does both
where apt-get works); each is skipped with that reason elsewhere. A tiny net
and one compiled epoch keep them to a few minutes: under emulation
TensorFlow starts in ~20 s and XLA compiles every program anew.
"""

from __future__ import annotations

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import same_bits

TINY = {"hidden": [16], "epochs": 1, "train_size": 300, "test_size": 100}


def test_digests_name_every_file_of_a_directory_and_differences_name_the_run_and_output(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"1")
    first = same_bits.digest(tmp_path / "a")
    (tmp_path / "a" / "y.bin").write_bytes(b"")
    assert same_bits.digest(tmp_path / "a") != first  # an added empty file counts

    results = {
        "native-2-threads": {"w": "1", "m": "2"},
        "qemu-X": {"w": "1", "m": "3"},
        "qemu-Y": {same_bits.FAILED: "stages.train\nSegmentation fault"},
    }
    assert same_bits.differences(results) == ["qemu-X: m", "qemu-Y: failed: Segmentation fault"]
    assert [run.name for run in same_bits.planned_runs([1, 2], ["EPYC-Rome"])] == [
        "native-1-threads",
        "native-2-threads",
        "qemu-EPYC-Rome",
    ]


@pytest.mark.slow
@pytest.mark.skipif(
    not same_bits.qemu_available(), reason="qemu-x86_64 is not installed (Debian: apt-get install qemu-user)"
)
def test_an_emulated_cpu_of_another_maker_and_generation_gives_the_native_bits():
    """Natively this is an AVX-512 machine (AMD Zen 4 here); emulated Haswell is an Intel AVX2 CPU with other cache
    sizes, the one on which Eigen's transposed matmul gave other bits. tools/same_bits.py runs three emulated CPUs."""
    runs = same_bits.planned_runs([2], ["Haswell-v4"])
    results = same_bits.compare(runs, jobs=2, **TINY)
    assert set(results) == {"native-2-threads", "qemu-Haswell-v4"}
    assert same_bits.differences(results) == [], results
    assert all(len(digests) == len(same_bits.OUTPUTS) for digests in results.values())


@pytest.mark.slow
@pytest.mark.skipif(
    same_bits.aarch64_python() is None, reason="no aarch64 Python in .aarch64/ (make aarch64 builds it, with qemu-user)"
)
def test_an_emulated_arm64_cpu_with_sme_gives_the_native_bits():
    """qemu-aarch64's `max` CPU has NEON, SVE and SME, as Apple M4-class chips: XLA compiles for ARM64, YNNPACK picks
    its SME kernels, and the first layer's product (k = 784) is the one that differed before it was cut in pieces."""
    runs = same_bits.planned_runs([2], [], ["max"])
    results = same_bits.compare(runs, jobs=2, **TINY)
    assert set(results) == {"native-2-threads", "arm64-max"}
    assert same_bits.differences(results) == [], results
