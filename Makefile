# Two commands do all the set-up on a fresh machine (Python 3.11): `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
# torch comes from PyTorch's CPU-only index (a ~190 MB wheel; PyPI's default build bundles CUDA, several GB).
# CUDA users: `make test TORCH_INDEX=https://download.pytorch.org/whl/cu128`; PyPI's own build: `TORCH_INDEX=`.
# Where that index cannot be reached (a closed network with its own mirror), pip's own indexes are used.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
REACHABLE = python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)" $(TORCH_INDEX)/ 2>/dev/null

.PHONY: demo test test-fast lint site-vendor

demo: $(VENV)/.installed
	$(BIN)/attnmt demo

test: $(VENV)/.installed-dev
	$(BIN)/pytest --durations=20

# the fast tier, for everyday work: what does not train for more than a few seconds
test-fast: $(VENV)/.installed-dev
	$(BIN)/pytest -m "not slow" -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# torch first, pinned, from TORCH_INDEX; then attnmt and what it needs to run (the demo needs no more).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0 $$($(if $(TORCH_INDEX),$(REACHABLE) && echo --extra-index-url $(TORCH_INDEX)))
	$(BIN)/pip install --quiet -e .
	touch $@

# the tests' tools; the browser test drives Debian's Chromium: without one (not root, not Debian) it is
# skipped, saying why
$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 \
		|| echo "no Chromium could be installed: tests/test_web.py will be skipped"
	$(MAKE) site-vendor || echo "no npm: attnmt export --to web and its tests (tests/test_site.py) are left out"
	touch $@

# onnxruntime-web, which the pages of `attnmt export --to web` run on: from npm, pinned by
# web/package-lock.json, copied with its licence into attnmt/resources/site/vendor (not in git)
SITE_VENDOR := attnmt/resources/site/vendor
site-vendor: $(SITE_VENDOR)/.installed

$(SITE_VENDOR)/.installed: web/package.json web/package-lock.json web/LICENSE-onnxruntime-web.txt
	cd web && npm ci --no-audit --no-fund --silent
	mkdir -p $(SITE_VENDOR)
	cd web/node_modules/onnxruntime-web/dist && cp ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm $(CURDIR)/$(SITE_VENDOR)/
	cp web/LICENSE-onnxruntime-web.txt $(SITE_VENDOR)/LICENSE
	touch $@
