"""Reading MNIST-format IDX files, gzipped or not, with every check up front.

The IDX layout (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type
code (0x08 = unsigned byte), the number of dimensions, then one big-endian
uint32 per dimension, then the data. MNIST, Fashion-MNIST and KMNIST all ship
in this format under the same four file names, so the pipeline reads any of
them from ``data.raw_dir``.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from digits.errors import PipelineError
from digits.mnist import NUM_CLASSES

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
UNSIGNED_BYTE = 0x08


class IdxError(PipelineError):
    """A raw data file is missing, corrupt or not what it claims to be."""


def parse_idx_header(raw: bytes, *, name: str) -> tuple[tuple[int, ...], int]:
    """(declared shape, header size in bytes) from the start of an IDX file; ``raw`` may hold just the header."""
    if len(raw) < 4:
        raise IdxError(f"{name}: file is {len(raw)} bytes, too short for an IDX header")
    zero1, zero2, type_code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0:
        raise IdxError(f"{name}: wrong magic number 0x{raw[:4].hex()} (an IDX file starts with two zero bytes)")
    if type_code != UNSIGNED_BYTE:
        raise IdxError(
            f"{name}: wrong magic number 0x{raw[:4].hex()}: data type 0x{type_code:02x} is not unsigned byte (0x08)"
        )
    if ndim < 1:
        raise IdxError(f"{name}: wrong magic number 0x{raw[:4].hex()}: it declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise IdxError(f"{name}: truncated header: {ndim} dimensions need {header_size} bytes, file has {len(raw)}")
    return tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)), header_size


def read_idx_bytes(raw: bytes, *, name: str) -> np.ndarray:
    """Parse the bytes of one IDX file into a uint8 array of its declared shape."""
    shape, header_size = parse_idx_header(raw, name=name)
    expected = int(np.prod(shape, dtype=np.int64))
    actual = len(raw) - header_size
    if actual != expected:
        raise IdxError(f"{name}: header declares shape {shape} ({expected} bytes of data) but the file holds {actual}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file; a ``.gz`` path is decompressed (and its CRC checked)."""
    path = Path(path)
    if not path.is_file():
        raise IdxError(f"{path}: file not found")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise IdxError(f"{path}: corrupt or truncated gzip ({error})") from None
    return read_idx_bytes(raw, name=str(path))


def read_idx_shape(path: Path) -> tuple[int, ...]:
    """The shape an IDX file's header declares, reading only the header (a few bytes, even of a .gz).

    What params checks need (how many images are there?) without loading the data.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as file:
            head = file.read(4)
            if len(head) == 4:
                head += file.read(4 * head[3])
    except (OSError, EOFError, zlib.error) as error:
        raise IdxError(f"{path}: corrupt or unreadable ({error})") from None
    return parse_idx_header(head, name=str(path))[0]


def find_idx_file(raw_dir: Path, stem: str) -> Path:
    """The file for ``stem`` in ``raw_dir``, gzipped or plain."""
    for candidate in (raw_dir / f"{stem}.gz", raw_dir / stem):
        if candidate.is_file():
            return candidate
    raise IdxError(f"{raw_dir}: neither {stem}.gz nor {stem} exists")


def verify_checksums(raw_dir: Path) -> list[str]:
    """Check every file listed in ``raw_dir/SHA256SUMS``; return the names checked.

    A directory without SHA256SUMS is accepted as is (a user's own data set);
    a listed file that is missing or differs is an error.
    """
    sums_file = raw_dir / "SHA256SUMS"
    if not sums_file.is_file():
        return []
    checked = []
    for line_number, line in enumerate(sums_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise IdxError(f"{sums_file}:{line_number}: not a 'sha256  filename' line: {line!r}")
        digest, name = parts[0].lower(), parts[1].lstrip("*")
        target = raw_dir / name
        if not target.is_file():
            raise IdxError(f"{target}: listed in SHA256SUMS but missing")
        actual = hashlib.sha256(target.read_bytes()).hexdigest()
        if actual != digest:
            raise IdxError(f"{target}: SHA256 mismatch (SHA256SUMS says {digest[:12]}..., file is {actual[:12]}...)")
        checked.append(name)
    return checked


def read_image_label_pair(raw_dir: Path, images_stem: str, labels_stem: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, rows, cols) and labels (N,), checked against each other."""
    images_path = find_idx_file(raw_dir, images_stem)
    labels_path = find_idx_file(raw_dir, labels_stem)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise IdxError(f"{images_path}: expected 3 dimensions (count, rows, cols), got shape {images.shape}")
    if labels.ndim != 1:
        raise IdxError(f"{labels_path}: expected 1 dimension (count,), got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise IdxError(f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise IdxError(f"{labels_path}: label {int(labels[bad])} at index {bad} is outside 0-{NUM_CLASSES - 1}")
    return images, labels


def load_raw_dataset(raw_dir: Path) -> dict[str, np.ndarray]:
    """The four standard arrays of an MNIST-format directory, verified."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise IdxError(f"{raw_dir}: data directory not found (params key data.raw_dir)")
    verify_checksums(raw_dir)
    train_images, train_labels = read_image_label_pair(raw_dir, TRAIN_IMAGES, TRAIN_LABELS)
    test_images, test_labels = read_image_label_pair(raw_dir, TEST_IMAGES, TEST_LABELS)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise IdxError(
            f"{raw_dir}: train images are {train_images.shape[1:]} but test images are {test_images.shape[1:]}"
        )
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }
