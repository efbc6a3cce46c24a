# The two commands a newcomer needs: `make train` and `make test`. Both install first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install train test test-fast lint format clean reproduce

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch/torchvision pinned here: these wheels lie on the build machines' disk.
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[dev,sweep,demo]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install litseg with its dev, sweep and demo extras

train: install  ## train the default experiment (U-Net on the generated shapes data)
	$(PY) train.py $(ARGS)

# one pytest worker per core, each test file on one worker (its module fixtures built once)
XDIST := -n auto --dist loadfile

# tests marked serial (real SLURM daemons, a browser against a live server) run afterwards,
# alone: their timings do not hold beside a parallel run; exit 5 is "none collected"
test: install  ## run the whole test suite
	$(PY) -m pytest $(XDIST) -m "not serial" $(ARGS); a=$$?; \
	$(PY) -m pytest -m serial $(ARGS); b=$$?; \
	[ $$a -eq 0 -o $$a -eq 5 ] && [ $$b -eq 0 -o $$b -eq 5 ]

test-fast: install  ## skip the slow tests
	$(PY) -m pytest $(XDIST) -m "not slow" $(ARGS)

reproduce: install  ## train the full recipes on the GPU, rows into docs/results.json (ARGS=--smoke: CPU check)
	$(PY) scripts/reproduce.py $(ARGS)

lint: install  ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install  ## ruff format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:  ## remove logs and caches (keeps .venv)
	rm -rf logs outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
