# Two entry points (see README): `make repro` and `make test`.
# Both build .venv from the pinned requirements first; nothing else is needed
# beyond Python 3.11, 3.12 or 3.13, git and make. All data ships in the repository.
# requirements.txt (what the stages import) is a dep of the computing stages; the other
# requirements-*.txt (DVC, test, lint and benchmark tools) are not, so bumping them reruns nothing.

# Empty: tools/supported_python.sh picks the first of python3.13, python3.12, python3.11, python3 that is
# supported; `make PYTHON=/path/to/python3.12 ...` picks that one (checked the same way).
PYTHON ?=
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Stages run `python -m stages.X`: put the venv first so dvc finds its python.
RUN := PATH="$(BIN):$$PATH" TF_CPP_MIN_LOG_LEVEL=2

PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input

.PHONY: setup repro serve test lint format deps bench bench-torch lock clean plots-template aarch64

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dvc.txt
	@python=$$(tools/supported_python.sh $(PYTHON)) && echo "make: building $(VENV) with $$python ($$("$$python" --version))" \
	  && "$$python" -m venv $(VENV)
	$(PIP_INSTALL) -r requirements.txt -r requirements-dvc.txt
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed requirements-test.txt
	$(PIP_INSTALL) -r requirements-test.txt
	touch $@

$(VENV)/.lint-installed: $(VENV)/.installed requirements-lint.txt
	$(PIP_INSTALL) -r requirements-lint.txt
	touch $@

# `dvc plots show` renders offline with the committed page template .dvc/offline_plots.html (.dvc/config
# names it); regenerate it after upgrading vl-convert-python (tests/test_offline_plots.py checks it is current).
plots-template: $(VENV)/.installed
	$(BIN)/python -m digits.offline_plots .dvc/offline_plots.html

repro: setup
	$(RUN) $(BIN)/dvc repro

# The drawing page and TF Serving's REST API for models/saved_model (docs/serving.md); ARGS="--port 8600" etc.
serve: repro
	$(RUN) $(BIN)/python -m stages.serve $(ARGS)

# Two workers (pytest-xdist): most tests wait on a stage's start-up or an emulated CPU, one core each.
TEST_WORKERS ?= 2
test: $(VENV)/.test-installed
	$(RUN) $(BIN)/python -m pytest -n $(TEST_WORKERS)

# The linter and formatter (settings in pyproject.toml); CI runs `make lint` before `make test`.
lint: $(VENV)/.lint-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.lint-installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# dvc.yaml's code deps, written from the stages' imports (tests/test_pipeline.py checks nothing differs).
deps: setup
	$(BIN)/python tools/stage_deps.py

# The speed benchmark against JAX and Keras fit; JAX comes from its own pinned file.
bench: setup $(VENV)/.bench-installed
	$(RUN) $(BIN)/dvc repro prepare
	$(RUN) $(BIN)/python benchmarks/train_speed.py

# The same with PyTorch's two contenders too (its own pinned file: several GB, see requirements-torch.txt).
bench-torch: $(VENV)/.torch-installed bench

$(VENV)/.torch-installed: $(VENV)/.installed requirements-torch.txt
	$(PIP_INSTALL) -r requirements-torch.txt
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	$(PIP_INSTALL) -r requirements-bench.txt
	touch $@

# An aarch64 Python with the pinned packages in .aarch64/, run under qemu-user: the emulated ARM64 CPUs of
# tools/same_bits.py and tests/test_same_bits.py (needs root and apt-get for qemu-user; ~5 minutes, 2.5 GB).
aarch64: .aarch64/.installed

.aarch64/.installed: requirements.txt tools/aarch64_python.sh
	tools/aarch64_python.sh .aarch64 requirements.txt
	touch $@

# Re-pin every requirements file after editing requirements.in (tools/lock_requirements.py splits them by role).
lock:
	rm -rf /tmp/digits-lock && python=$$(tools/supported_python.sh $(PYTHON)) && "$$python" -m venv /tmp/digits-lock
	/tmp/digits-lock/bin/pip install --quiet -r requirements.in
	/tmp/digits-lock/bin/python tools/lock_requirements.py /tmp/digits-lock/bin/python

clean:
	rm -rf $(VENV) data/prepared models dvc_plots
