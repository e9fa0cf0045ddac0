# Two entry points: `make demo` (set up, run the main job) and `make test` (set up, run the tests).
# Both create or reuse the virtualenv in .venv by themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pipelines.train --config configs/telecom.yaml --out runs/demo

# Two pytest workers (pytest-xdist) for the two cores; --dist loadfile keeps a file's tests on one worker, so a
# module fixture (a trained model, an export) is built once.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

clean:
	rm -rf $(VENV) runs exports
