# The README's commands. `make quickstart` and `make test` set up .venv first when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
# A checkout beside the development data finds it without configuration.
export SARDFQ_DATA ?= $(abspath $(wildcard ../shared/data))

.PHONY: setup browser quickstart test test-fast notebooks book clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[notebooks,book,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

quickstart: setup
	$(BIN)/sardfq quickstart

# The browser test (tests/test_book_browser.py) drives Debian's Chromium. As root with apt (CI), install
# it when missing; anyone else installs it once themselves, and the test says so if it is absent.
browser:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: setup browser  # everything, the notebooks and the book in a browser included: what CI runs
	$(BIN)/python -m pytest tests notebooks --nbval-lax

test-fast: setup  # the development tier: skips tests marked slow (subprocesses, Dask, whole runs)
	$(BIN)/python -m pytest tests -m "not slow"

notebooks: setup  # re-execute the chapters at the book's sizes (book/params), then `make book`
	$(BIN)/python book/build_chapters.py

book: setup
	$(BIN)/jupyter-book build . -W --keep-going

clean:
	rm -rf _build
