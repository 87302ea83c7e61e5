# Two entry points (see README): `make repro` and `make test`.
# Both build .venv from the pinned requirements.txt first; nothing else is needed
# beyond Python 3.11, git and make. All data ships in the repository.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Stages run `python -m stages.X`: put the venv first so dvc finds its python.
RUN := PATH="$(BIN):$$PATH" TF_CPP_MIN_LOG_LEVEL=2

.PHONY: setup repro test bench bench-torch lock clean plots-template aarch64

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "Python 3.11 is required, found " + sys.version)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input -r requirements.txt
	touch $@

# `dvc plots show` renders offline with the committed page template .dvc/offline_plots.html (.dvc/config
# names it); regenerate it after upgrading vl-convert-python (tests/test_offline_plots.py checks it is current).
plots-template: $(VENV)/.installed
	$(BIN)/python -m digits.offline_plots .dvc/offline_plots.html

repro: setup
	$(RUN) $(BIN)/dvc repro

# Two workers (pytest-xdist): most tests wait on a stage's start-up or an emulated CPU, one core each.
TEST_WORKERS ?= 2
test: setup
	$(RUN) $(BIN)/python -m pytest -n $(TEST_WORKERS)

# The speed benchmark against JAX and Keras fit; JAX comes from its own pinned file.
bench: setup $(VENV)/.bench-installed
	$(RUN) $(BIN)/dvc repro prepare
	$(RUN) $(BIN)/python benchmarks/train_speed.py

# The same with PyTorch's two contenders too (its own pinned file: several GB, see requirements-torch.txt).
bench-torch: $(VENV)/.torch-installed bench

$(VENV)/.torch-installed: $(VENV)/.installed requirements-torch.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input -r requirements-torch.txt
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input -r requirements-bench.txt
	touch $@

# An aarch64 Python with the pinned packages in .aarch64/, run under qemu-user: the emulated ARM64 CPUs of
# tools/same_bits.py and tests/test_same_bits.py (needs root and apt-get for qemu-user; ~5 minutes, 2.5 GB).
aarch64: .aarch64/.installed

.aarch64/.installed: requirements.txt tools/aarch64_python.sh
	tools/aarch64_python.sh .aarch64 requirements.txt
	touch $@

# Re-pin the full dependency tree after editing requirements.in.
lock:
	rm -rf /tmp/digits-lock && $(PYTHON) -m venv /tmp/digits-lock
	/tmp/digits-lock/bin/pip install --quiet -r requirements.in
	/tmp/digits-lock/bin/pip freeze --exclude-editable > requirements.txt

clean:
	rm -rf $(VENV) data/prepared models dvc_plots
