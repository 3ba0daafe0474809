# Two commands do all the set-up on a fresh machine:
#   make run    # venv + package + dataset, then `fmnist-pl compare --epochs 30`
#   make test   # the same set-up, then the test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
ARGS   ?= --epochs 30
# torch 2.14.1 + torchvision 0.29.1 are the pair that works together on x86-64 here (pip takes
# both from the local wheel cache); other machines let pip pick from pyproject.toml's ranges.
TORCH  := $(if $(filter x86_64,$(shell uname -m)),torch==2.14.1 torchvision==0.29.1,torch torchvision)

.PHONY: setup system run test bench clean
setup: $(VENV)/.installed

system:
	@dpkg -s dataset-fashion-mnist chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist chromium; }

$(VENV)/.installed: pyproject.toml | system
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

run: setup
	$(VENV)/bin/fmnist-pl compare $(ARGS)

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_compare.py
	$(PY) benchmarks/bench_population.py
	$(PY) benchmarks/bench_ray.py

clean:
	rm -rf $(VENV) build *.egg-info
