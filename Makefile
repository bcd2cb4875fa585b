# The two commands of the README: `make demo` and `make test`.
# Both create (or reuse) .venv and install the project into it.
# `make test-all` runs the test suite on the other CPython versions found (see below).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tether-installed
# A change to any of these reinstalls (which rebuilds the C spawner).
INSTALL_INPUTS := pyproject.toml setup.py src/tether/_native/_spawner.c src/tether/_native/_nsinit.c src/tether/_native/_setids.c

.PHONY: demo test lint types imports unit test-all conformance bench bench-quick docs docs-check clean

# $(call install,VENV,PYTHON): create VENV with PYTHON unless it exists, then install
# tether editable with the dev tools; this builds the C spawner for that interpreter
# (src/tether/_native/_spawner.cpython-3XX-*.so, one per version side by side).
define install
test -x $(1)/bin/python || $(2) -m venv $(1)
$(1)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
$(1)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
touch $(1)/.tether-installed
endef

$(STAMP): $(INSTALL_INPUTS)
	$(call install,$(VENV),$(PYTHON))

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: lint types imports unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy --strict src

# The import contracts of [tool.importlinter] in pyproject.toml: the package's layers,
# nothing importing the package root, no import cycles. The graph is small, so no cache.
imports: $(STAMP)
	$(BIN)/lint-imports --no-logo --no-cache

# The suite under coverage, then the branch-coverage report ([tool.coverage.*] in
# pyproject.toml: files below 100% only, the total, and fail_under).
unit: $(STAMP)
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage report

# ---- test-all: the suite on each CPython of TEST_ALL_VERSIONS found here, but the
# default .venv's own version (`make test` covers that), each in its own .venv-3.X.
# A version not found is noted and skipped; the target fails if the suite fails on
# any version found.
TEST_ALL_VERSIONS := 3.10 3.11 3.12 3.13

# X.Y of the default .venv's interpreter (or of $(PYTHON), which would create it).
default_version = $(shell $(firstword $(wildcard $(BIN)/python) $(PYTHON)) \
	-c 'import sys; print("%d.%d" % sys.version_info[:2])')

# $(call python_for,3.X): the path of a CPython 3.X, or nothing: pyenv's newest
# ~/.pyenv/versions/3.X.Y, else python3.X on PATH. A candidate counts only if it runs
# as CPython 3.X (a pyenv shim can stand on PATH for a version not installed).
python_for = $(shell for py in $$(ls -d $(HOME)/.pyenv/versions/$(1).*/bin/python$(1) \
	2>/dev/null | sort -rV) python$(1); do \
	"$$py" -c 'import sys; sys.exit(sys.implementation.name != "cpython" \
	or "%d.%d" % sys.version_info[:2] != "$(1)")' >/dev/null 2>&1 \
	&& { command -v "$$py"; break; }; done)

# Precious: make would otherwise delete it as an intermediate of unit-3.X below.
.PRECIOUS: .venv-%/.tether-installed
.venv-%/.tether-installed: $(INSTALL_INPUTS)
	$(call install,.venv-$*,$(or $(call python_for,$*),$(error no CPython $* found)))

# unit-3.X: the suite in .venv-3.X (a pattern rule, so it cannot be .PHONY).
unit-%: .venv-%/.tether-installed
	.venv-$*/bin/pytest

# The versions test-all runs (found here, not the default's) and the ones it skips.
other_versions = $(filter-out $(default_version),$(TEST_ALL_VERSIONS))
found_versions = $(foreach v,$(other_versions),$(if $(call python_for,$(v)),$(v)))
missing_versions = $(filter-out $(found_versions),$(other_versions))

test-all:
	@$(foreach v,$(missing_versions),echo "test-all: NOTE: no CPython $(v) here \
	(neither ~/.pyenv/versions/$(v).* nor python$(v) on PATH): skipped";) \
	failed=; summary=; \
	for v in $(found_versions); do \
	  echo "test-all: CPython $$v, in .venv-$$v"; \
	  start=$$(date +%s); \
	  if $(MAKE) --no-print-directory unit-$$v; then result=passed; \
	  else result=FAILED; failed="$$failed $$v"; fi; \
	  summary="$$summary  $$v: $$result in $$(( $$(date +%s) - start ))s\n"; \
	done; \
	printf "test-all, besides $(default_version) (the default .venv, run by make test):\n$$summary"; \
	$(if $(missing_versions),echo "  not found: $(missing_versions)";) \
	test -z "$$failed" || { echo "test-all: FAILED on:$$failed"; exit 1; }

# ---- conformance: CPython's own test.test_subprocess against tether.subprocess
# (tools/conformance.py), on the default .venv's version and every version test-all
# runs. A version whose interpreter ships no test package is reported and skipped.
conformance_versions = $(default_version) $(found_versions)

conformance: $(STAMP) $(foreach v,$(found_versions),.venv-$(v)/.tether-installed)
	@$(foreach v,$(missing_versions),echo "conformance: NOTE: no CPython $(v) here: skipped";) \
	failed=; for v in $(conformance_versions); do \
	  if [ "$$v" = "$(default_version)" ]; then py=$(BIN)/python; else py=.venv-$$v/bin/python; fi; \
	  $$py tools/conformance.py || failed="$$failed $$v"; \
	done; \
	test -z "$$failed" || { echo "conformance: FAILED on:$$failed"; exit 1; }

# ---- docs: the Sphinx site of docs/ (MyST Markdown; the API reference is autodoc) into
# docs/_build/html. Nitpicky, and every warning fails the build (-W --keep-going: all of
# them are reported first). Reads nothing from the network (docs/conf.py says how).
DOCS_STAMP := $(VENV)/.tether-docs-installed
DOCS_HTML := docs/_build/html

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,docs]'
	touch $@

docs: $(DOCS_STAMP)
	rm -rf $(DOCS_HTML) docs/_build/doctrees
	$(BIN)/sphinx-build -b html -n -W --keep-going -q docs $(DOCS_HTML)
	@echo "docs: built $(DOCS_HTML)/index.html"

# docs-check: `make docs`, then screenshots of a few pages in headless Chromium into
# docs/_build/screenshots/ (tools/docs_screenshots.py), to look at. Installs Debian's
# `chromium` with apt-get when it is missing, which needs root.
docs-check: docs
	command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	$(BIN)/python tools/docs_screenshots.py $(DOCS_HTML) docs/_build/screenshots

# ---- bench: every benchmark script, one table, results kept in
# benchmarks/results/<date>/ (suite.json + PNG plots) and named in benchmarks/results/LATEST
# (benchmarks/suite.py). bench-quick: every script's --quick, into a scratch folder in /tmp.
# Both install the `bench` extra (matplotlib) into .venv first.
BENCH_STAMP := $(VENV)/.tether-bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/suite.py

bench-quick: $(BENCH_STAMP)
	$(BIN)/python benchmarks/suite.py --quick

clean:
	rm -rf $(VENV) .venv-3.* build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache \
		.coverage .coverage.* .import_linter_cache docs/_build
