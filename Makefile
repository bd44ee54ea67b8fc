# bufferkit's single entry point. CI calls only these targets (.ci/run -> make test).
#
#   make demo                 build for $(PYTHON) and run demo/waveform.py
#   make test                 Rust unit tests, then C and Python tests on every CPython 3.9-3.13
#                             found with pyenv (override: make test PYTHONS="/path/a /path/b")
#   make build PYTHON=...     build for one interpreter; importable from build/<kind>/
#   make help                 this list
#
# Build outputs: build/<kind>/ is importable (kind: abi3 for 3.11+, cp39, cp310);
# build/venv/<cpXY>/ holds one virtualenv per interpreter; build/target/<kind>/ is cargo's.

SHELL := bash
PYTHON ?= python3
PYTHONS ?=

.PHONY: help build test demo clean lint unit ctest pytest

help:
	@sed -n 's/^#   //p' Makefile

build:
	@scripts/build.sh "$(PYTHON)" >/dev/null && echo "importable from $$(. scripts/lib.sh; echo build/$$(build_kind "$(PYTHON)"))"

demo: build
	@. scripts/lib.sh; kind=$$(build_kind "$(PYTHON)"); vpy=$$(ensure_venv "$(PYTHON)"); \
	  PYTHONPATH="build/$$kind" "$$vpy" demo/waveform.py

unit:
	cargo test --lib --quiet

test:
	@scripts/matrix.sh $(PYTHONS)

clean:
	rm -rf build target
