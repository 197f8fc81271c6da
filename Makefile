# cosmonb: every target creates .venv on first use and installs the package into it.
# CPU torch is installed when the environment has no torch (override with TORCH=...).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.cosmonb-installed

.PHONY: run test test-browser lab bench clean env

env: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	@$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

## make run: execute every notebook headless into build/, printing time and headline numbers
run: $(STAMP)
	$(BIN)/python -m cosmonb run $(if $(QUICK),--quick,) $(NOTEBOOKS)

## make test: every notebook once under nbval (quick mode), then unit tests, doctests and the
## notebook tests, which read the numbers the nbval run recorded (conftest.py)
test: $(STAMP)
	COSMONB_QUICK=1 COSMONB_HEADLESS=1 MPLBACKEND=Agg $(BIN)/python -m pytest -q -p no:cacheprovider \
		--nbval-lax notebooks tests cosmonb --doctest-modules

## make test-browser: the sliders in headless Chromium (JupyterLab + Playwright, tests/test_browser.py), and
## build/index.html when make run wrote it. Not part of make test (pytest marker `browser`): a few minutes.
## Installs the `browser` extra (playwright, which drives Debian's Chromium: no browser download).
CHROMIUM ?= /usr/bin/chromium
test-browser: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[browser]"
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Chromium: apt-get install -y chromium"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "make test-browser needs Chromium at $(CHROMIUM). Install it with:"; \
	    echo "    sudo apt-get update && sudo apt-get install -y chromium"; \
	    echo "or point CHROMIUM=/path/to/chromium at another Chromium or Chrome."; exit 1; \
	  fi; \
	fi
	COSMONB_CHROMIUM=$(CHROMIUM) OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -s \
		-m browser tests/test_browser.py

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

## make bench: benchmark scripts write JSON to bench/results/
bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf build .pytest_cache
