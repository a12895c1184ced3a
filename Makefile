# bitlens — the two commands a user needs: `make reproduce` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?= tiny
STAMP  := $(VENV)/.bitlens-installed
# Jupyter state stays inside the project's ignored folders.
export JUPYTER_CONFIG_DIR := $(CURDIR)/.jupyter/config
export JUPYTER_DATA_DIR   := $(CURDIR)/.jupyter/data
export JUPYTER_RUNTIME_DIR:= $(CURDIR)/.jupyter/runtime
export MPLBACKEND := Agg

.PHONY: reproduce test test-fast lab bench clean-results setup

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-installs when the package metadata or a C kernel source changes (the install compiles lib/bitlens/native/).
NATIVE_SRC := $(wildcard lib/bitlens/native/*.c lib/bitlens/native/*.h)
$(STAMP): pyproject.toml setup.py $(NATIVE_SRC) | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name bitlens --display-name "Python (bitlens)"
	touch $(STAMP)

reproduce: $(STAMP)
	$(PY) run_all.py --profile $(PROFILE)

test: $(STAMP)
	BITLENS_REQUIRE_NATIVE=1 HF_HUB_OFFLINE=1 $(PY) -m pytest -q

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

bench: $(STAMP)
	$(PY) benchmarks/run_all_benchmarks.py
	$(PY) benchmarks/readme_table.py

clean-results:
	rm -rf results/$(PROFILE)
