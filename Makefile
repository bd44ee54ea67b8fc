# bufferkit's single entry point. CI calls only these targets (.ci/run -> make test).
#
#   make demo                 build for $(PYTHON) and run demo/waveform.py
#   make test                 Rust unit tests, then every column on every interpreter: pyenv's
#                             CPython 3.9-3.13, a free-threaded 3.13t, and (Debian sid chroot)
#                             3.14, 3.15, their debug builds, PyPy 3.11; made where missing and
#                             cached in $(BK_CACHE) (override: make test PYTHONS="/path/a sid:/usr/bin/python3.14")
#   make pythons              find or make those interpreters; print one spec a line
#   make build PYTHON=...     build for one interpreter; importable from build/<kind>/
#   make lint                 cargo fmt --check, clippy -D warnings, rustdoc, unit/doc tests
#   make abicheck             struct layouts/constants: pyo3-ffi vs bindgen vs cc, each interpreter
#   make abi3check            abi3audit + nm of the abi3 module vs the stable ABI lists
#   make typecheck            mypy --strict on a typed example, and stubtest, for $(PYTHON)
#   make example              build examples/waveform (a Rust crate using bufferkit) and test it
#   make bench                the benchmark: one table + bench/results/ (not a test)
#   make sanitize             C tests and a Python suite subset under valgrind; -X dev with PYTHONMALLOC=debug;
#                             ThreadSanitizer on a 3.13t (C tests, thread stress, GIL off)
#   make fuzz                 libFuzzer on layout/request for a fixed number of iterations
#   make stress               10^6-cycle leak tests and 4-thread export/slice stress
#   make clean                remove build/ and target/
#   make help                 this list
#
# Build outputs: build/<kind>/ is importable (kind: abi3 for 3.11+, cp39, cp310, cp313t, pp311);
# build/venv/<cpXY>/ holds one virtualenv per interpreter; build/target/<kind>/ is cargo's.

SHELL := bash
PYTHON ?= python3
PYTHONS ?=
# Interpreters made by scripts/pythons.sh, outside the repository (a fresh clone reuses them)
BK_CACHE ?= /var/cache/bufferkit
export BK_CACHE

.PHONY: help build test pythons demo clean lint abicheck abi3check typecheck example bench sanitize fuzz stress

help:
	@sed -n 's/^#   //p' Makefile

build:
	@scripts/build.sh "$(PYTHON)" >/dev/null && echo "importable from $$(. scripts/lib.sh; echo build/$$(build_kind "$(PYTHON)"))"

demo: build
	@. scripts/lib.sh; kind=$$(build_kind "$(PYTHON)"); vpy=$$(ensure_venv "$(PYTHON)"); \
	  PYTHONPATH="build/$$kind" "$$vpy" demo/waveform.py

lint:
	@scripts/lint.sh "$(PYTHON)"

abicheck:
	@. scripts/lib.sh; pys="$(PYTHONS)"; [ -n "$$pys" ] || pys=$$(scripts/pythons.sh | grep -v '^#'); \
	  fail=0; for py in $$pys; do in_env "$$py" scripts/abicheck.sh "$$(spec_exe "$$py")" || fail=1; done; exit $$fail

abi3check:
	@scripts/build.sh "$(PYTHON)" >/dev/null && scripts/abi3check.sh $(PYTHONS)

test:
	@scripts/matrix.sh $(PYTHONS)

pythons:
	@scripts/pythons.sh

typecheck:
	@scripts/typecheck.sh "$(PYTHON)"

example:
	@scripts/example.sh "$(PYTHON)"

bench:
	@bench/run.sh $(BENCH_ARGS)

sanitize:
	@scripts/sanitize.sh $(PYTHONS)

fuzz:
	@scripts/fuzz.sh

stress:
	@scripts/stress.sh $(PYTHONS)

clean:
	rm -rf build target
