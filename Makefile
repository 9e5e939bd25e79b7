# Two entry points: `make demo` (set up and run the app) and `make test` (set up and run the tests).
# Both create .venv once and reinstall only when a requirements file changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
# One OpenMP thread: on small CPU machines two spinning threads slowed steps ~50x under load.
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test bench system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.app-installed: requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.app-installed

# Chromium for the browser tests, handwriting fonts for train.synth, and TeX Live + Ghostscript for
# `evaluate --cdm` (Debian packages).
DEBIAN_PACKAGES := chromium fonts-dkg-handwriting fonts-breip fonts-klee fonts-comic-neue \
                   texlive-latex-base texlive-latex-recommended ghostscript
system-deps:
	@missing=""; \
	for pkg in $(DEBIAN_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "Note: install$$missing (apt-get) for the browser tests, synthetic handwriting and CDM."; \
	  fi; \
	fi

demo: $(VENV)/.app-installed
	$(PY) app.py

test: $(VENV)/.dev-installed system-deps
	$(PY) -m pytest -q

bench: $(VENV)/.dev-installed
	@for f in tests/benchmarks/bench_*.py; do echo "# $$f" >&2; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
