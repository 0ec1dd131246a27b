# edgegw developer tasks.
#
# `make binary` builds dist/edgegw: one executable file (a PEP 441 zipapp made by shiv) that
# runs on the system python3 with no venv. shiv, not PyInstaller, because the brief is "run on
# the system python3": the zipapp carries only our code and its dependencies (native
# extensions included: msgspec, httptools, cryptography/cffi, watchfiles), unpacked once into
# $SHIV_ROOT (default ~/.shiv; the systemd units point it at their CacheDirectory), instead of a
# second bundled interpreter. The wheels are those pip picks for the interpreter that runs the
# build, so build with the same minor Python (CPython 3.11 here) as the target's python3.
#
# Where the build has a C compiler and the Python headers, setup.py compiles the per-request
# parsers with mypyc and the binary carries the extension; elsewhere (or with EDGEGW_NO_MYPYC=1)
# it carries the pure-Python modules. `dist/edgegw version` says which.

VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
SHIV ?= $(VENV)/bin/shiv
SHIV_VERSION ?= 1.0.8
TARGET_PYTHON ?= /usr/bin/env python3
SOURCES := pyproject.toml setup.py $(shell find edgegw -name '*.py')

.PHONY: binary check-binary coverage-all fuzz lint test test-netns clean

binary: dist/edgegw

# shiv is a build tool, not a test dependency: installed into the venv on first use, so that
# `make binary` (and the tests that call it) work on a clean checkout after scripts/setup.
$(SHIV):
	$(PYTHON) -m pip install -q 'shiv==$(SHIV_VERSION)'

# build/ is cleared first: setuptools reuses build/lib, where a module deleted from edgegw/
# would live on inside the binary.
dist/edgegw: $(SOURCES) | $(SHIV)
	mkdir -p dist
	rm -rf build
	$(SHIV) --compressed --reproducible --python '$(TARGET_PYTHON)' \
		--entry-point edgegw.cli:main --output-file $@.tmp .
	mv $@.tmp $@

# The binary starts on the system python3 alone, far from the source tree and the venv.
check-binary: dist/edgegw
	cd / && env -i PATH=/usr/bin:/bin HOME=$$(mktemp -d) $(CURDIR)/dist/edgegw version

lint:
	$(VENV)/bin/ruff check edgegw tests
	$(VENV)/bin/ruff format --check edgegw tests
	$(VENV)/bin/mypy

test:
	$(PYTHON) -m pytest -m 'not netns'

# Needs root and `ip netns` (iproute2).
test-netns:
	$(PYTHON) -m pytest -m netns tests/netns

clean:
	rm -rf dist build *.egg-info

# Hypothesis at length: the "fuzz" profile (tests/conftest.py) over tests/fuzz; stop with ^C.
fuzz:
	HYPOTHESIS_PROFILE=fuzz $(PYTHON) -m pytest -q -p no:cacheprovider tests/fuzz

# Branch coverage with every Python process the tests start measured too (edgegw run, echo,
# workers): slower than scripts/test, which measures the test process only.
coverage-all:
	rm -f .coverage .coverage.*
	$(PYTHON) -m pytest -q -p no:cacheprovider --cov=edgegw --cov-report=term:skip-covered \
		--cov-config=tests/coverage-all.toml
