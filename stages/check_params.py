"""Stage 0: all of params.yaml against the schema, and its sizes against the raw files' headers.

dvc.yaml runs it whenever params.yaml changes, so a typo in a key that no
stage tracks still fails ``dvc repro``, and a size the data cannot satisfy
(``data.val_size: 60000``) fails here, before DVC removes any stage's outputs.
``python -m stages.check_params [FILE]`` checks another file the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

from digits.errors import run_main
from digits.idx import TEST_LABELS, TRAIN_LABELS, find_idx_file, read_idx_shape
from digits.params import PARAMS_FILE, DataParams, load_params
from digits.params_file import ParamsError


def check_against_raw_data(data: DataParams) -> None:
    """The sizes in ``data`` against the image counts in the raw files' headers (a few bytes read).

    ``data.val_size: 60000`` used to pass the schema and fail only in
    prepare, after DVC had already removed data/prepared/.
    """
    raw_dir = Path(data.raw_dir)
    if not raw_dir.is_dir():
        raise ParamsError(f"data.raw_dir = {data.raw_dir!r}: directory not found")
    train_file, test_file = find_idx_file(raw_dir, TRAIN_LABELS), find_idx_file(raw_dir, TEST_LABELS)
    train_count, test_count = read_idx_shape(train_file)[0], read_idx_shape(test_file)[0]
    problems = []
    if data.val_size >= train_count:
        problems.append(
            f"data.val_size = {data.val_size}: must be at most {train_count - 1} ({train_file} holds {train_count:,} "
            "training images)"
        )
    elif data.train_size is not None and data.train_size > train_count - data.val_size:
        problems.append(
            f"data.train_size = {data.train_size}: at most {train_count - data.val_size} "
            f"({train_file} holds {train_count:,} training images, data.val_size takes {data.val_size:,}), or null for "
            "all"
        )
    if data.test_size is not None and data.test_size > test_count:
        problems.append(
            f"data.test_size = {data.test_size}: at most {test_count} ({test_file} holds {test_count:,} test images), "
            "or null for all"
        )
    if problems:
        raise ParamsError("params.yaml: " + "; ".join(problems))


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else PARAMS_FILE

    # The schema, then the sizes against the data
    params = load_params(path)
    check_against_raw_data(params.data)
    print(f"{path}: ok")


if __name__ == "__main__":
    run_main(main, has_outputs=False)
