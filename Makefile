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

.PHONY: reproduce test test-fast lab bench clean-results setup rehearse

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

# Dress rehearsal: the real `paper` profile (then `released`) on random replicas of every input, sizes shrunk
# (bitlens.replica: paper_overrides / released_overrides). Its numbers are meaningless; every stage must end done.
REPLICA ?= data/replica
rehearse: $(STAMP)
	PYTHONPATH=$(CURDIR)/lib $(PY) -m bitlens.replica $(REPLICA) --print-overrides paper > $(REPLICA).paper.args
	PYTHONPATH=$(CURDIR)/lib $(PY) -m bitlens.replica $(REPLICA) --print-overrides released > $(REPLICA).released.args
	HF_HUB_OFFLINE=1 $(PY) run_all.py --profile paper --results results/rehearsal $$(cat $(REPLICA).paper.args)
	PYTHONPATH=$(CURDIR)/lib HF_HUB_OFFLINE=1 $(PY) -m torch.distributed.run --standalone --nproc_per_node=2 \
	  -m bitlens.stages.ibc_train --profile paper --experiment imagenet100c --device cpu --fresh \
	  --out results/rehearsal/ibc_torchrun $$(cat $(REPLICA).paper.args)
	HF_HUB_OFFLINE=1 $(PY) run_all.py --profile released --results results/rehearsal $$(cat $(REPLICA).released.args)

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
