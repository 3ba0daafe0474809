# Two commands do all the set-up on a fresh machine:
#   make run    # the dataset (apt), the venv and the package, then `fmnist-pl compare --epochs 30`
#   make test   # the same plus chromium (apt) and the test extra, then ruff and the test suite (CI: .ci/run)
VENV   ?= .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
ARGS   ?= --epochs 30
LINTED := fmnist_pl tests benchmarks
# torch 2.14.1 + torchvision 0.29.1 are the pair that works together on x86-64 here (pip takes
# both from the local wheel cache); other machines let pip pick from pyproject.toml's ranges.
TORCH  := $(if $(filter x86_64,$(shell uname -m)),torch==2.14.1 torchvision==0.29.1,torch torchvision)

.PHONY: setup setup-test dataset browser system run test lint bench clean

# Debian packages, each installed once: the dataset is what running needs; chromium only the
# report's browser test needs. `make system` installs both (tests/test_e2e.py's skip message names it).
dataset:
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; }

browser:
	@dpkg -s chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

system: dataset browser

# The venv with the package (what running needs), then the test extra on top (pytest, playwright, ruff).
setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[test]"
	touch $@

run: dataset setup
	$(VENV)/bin/fmnist-pl compare $(ARGS)

lint: setup-test
	$(PY) -m ruff check $(LINTED) && $(PY) -m ruff format --check $(LINTED)

# Two test processes (pytest-xdist), each taking whole files (their module fixtures are built
# once): most tests wait on a started command's imports and files, which leaves a core idle.
TEST_WORKERS ?= 2

test: system lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: dataset setup
	$(PY) benchmarks/bench_compare.py
	$(PY) benchmarks/bench_population.py
	$(PY) benchmarks/bench_ray.py

clean:
	rm -rf $(VENV) build *.egg-info .ruff_cache
