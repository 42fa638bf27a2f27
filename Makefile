# The README's commands. `make quickstart` and `make test` set up .venv first when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
# A checkout beside the development data finds it without configuration.
export SARDFQ_DATA ?= $(abspath $(wildcard ../shared/data))

.PHONY: setup quickstart test test-fast notebooks book clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[notebooks,book,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

quickstart: setup
	$(BIN)/sardfq quickstart

test: setup  # everything, the notebooks included: what CI runs
	$(BIN)/python -m pytest tests notebooks --nbval-lax

test-fast: setup  # the development tier: skips tests marked slow (subprocesses, Dask, whole runs)
	$(BIN)/python -m pytest tests -m "not slow"

notebooks: setup  # re-execute the chapters at the book's sizes (book/params), then `make book`
	$(BIN)/python book/build_chapters.py

book: setup
	$(BIN)/jupyter-book build . -W --keep-going

clean:
	rm -rf _build
