# Two entry points: `make demo` (set up and run the app) and `make test` (set up and run the tests).
# Both create .venv once and reinstall only when a requirements file changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
# One OpenMP thread: on small CPU machines two spinning threads slowed steps ~50x under load.
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test bench system-deps device-pack clean

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

# What a lent GPU machine needs for train/device_session.sh (docs/training.md, "On a lent GPU"), into .device/
# (ignored; the device tool's `carry`): the CROHME ink, the handwriting fonts train.synth draws with (Klee cut
# to the Latin, Greek and math blocks: 0.4 of its 21 MB, the same ink) and the wheels that machine lacks.
SHARED ?= ../shared/data
FONTS  := /usr/share/fonts
device-pack: $(VENV)/.dev-installed system-deps
	mkdir -p .device/wheels .device/fonts/truetype/klee
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	    -d .device/wheels transformers==5.23.0 pylatexenc==2.11 rapidfuzz==3.14.6 nltk==3.10.4
	tar -cJf .device/crohme.tar.xz -C $(SHARED) crohme/inkml/train crohme/train_caption.txt crohme/inkml/2014 \
	    reference_preds/crohme_2014_pred.json
	cd $(FONTS) && cp --parents truetype/fifthhorseman/dkg.ttf truetype/breip/Breip.ttf \
	    opentype/comic-neue/ComicNeue-Regular.otf $(CURDIR)/.device/fonts/
	$(VENV)/bin/pyftsubset $(FONTS)/truetype/klee/KleeOne-Regular.ttf --unicodes="U+0020-024F,U+0370-03FF,U+2000-2BFF" \
	    --output-file=.device/fonts/truetype/klee/KleeOne-Regular.ttf
	du -sh .device

clean:
	rm -rf $(VENV) .pytest_cache
