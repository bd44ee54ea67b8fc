#!/usr/bin/env bash
# abicheck.sh PYTHON [CARGO TEST ARGS...]: the layout checks of the abi-check crate (abi-check/)
# against PYTHON's own headers. Runs `cargo test -p bufferkit-abi-check --test abi` with
# PYO3_PYTHON=PYTHON in a target
# directory of that interpreter's own (build/target/abicheck-<cpXY>), so that a matrix over
# several interpreters rebuilds nothing it already built. bindgen needs libclang: when no
# libclang.so is found it is installed with apt-get (libclang-dev), which needs root.
# The checks run on the version-specific build (no `abi3` feature): under the limited API,
# PyObject, PyVarObject, PyModuleDef_Base, PyModuleDef and PyBufferProcs are opaque or absent.
# Exits non-zero when a check fails or nothing could be built; the last line is
# `abicheck <cpXY>: N passed, M failed` (cargo's tally; one failure when nothing could run).
set -uo pipefail
. "$(dirname "$0")/lib.sh"

py=${1:?usage: abicheck.sh PYTHON [CARGO TEST ARGS...]}
shift

# have_libclang: is there a libclang.so that clang-sys (bindgen's loader) can open?
have_libclang() {
  [ -n "${LIBCLANG_PATH:-}" ] && ls "$LIBCLANG_PATH"/libclang*.so* >/dev/null 2>&1 && return 0
  ldconfig -p 2>/dev/null | grep -qE '\blibclang(-[0-9.]+)?\.so' && return 0
  ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/*-linux-gnu/libclang-[0-9]*.so* 2>/dev/null |
    grep -qE '/libclang(-[0-9.]+)?\.so'
}

if ! have_libclang; then
  echo "==> libclang not found: installing libclang-dev (bindgen needs it)"
  if [ "$(id -u)" != 0 ]; then
    echo "abicheck.sh: libclang is missing and installing it needs root (apt-get install libclang-dev)" >&2
    echo "abicheck: 0 passed, 1 failed"; exit 1
  fi
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null; }; then
    echo "abicheck.sh: apt-get install libclang-dev failed" >&2
    echo "abicheck: 0 passed, 1 failed"; exit 1
  fi
  have_libclang || { echo "abicheck.sh: libclang still not found after installing libclang-dev" >&2; echo "abicheck: 0 passed, 1 failed"; exit 1; }
fi

tag=$(py_tag "$py") || { echo "abicheck.sh: cannot run $py" >&2; echo "abicheck: 0 passed, 1 failed"; exit 1; }
build_kind "$py" >/dev/null || { echo "abicheck: 0 passed, 1 failed"; exit 1; }
pyo3_gate "$py"
echo "==> ABI layout checks against $("$py" -V 2>&1) headers ($tag)"
cd "$BK_ROOT"
log=$(mktemp "${TMPDIR:-/tmp}/bufferkit-abicheck.XXXXXX")
trap 'rm -f "$log"' EXIT
# --nocapture: the per-struct report is printed on success too
PYO3_PYTHON="$py" CARGO_TARGET_DIR="$BK_ROOT/build/target/abicheck-$tag" \
  cargo test -p bufferkit-abi-check --test abi -- --nocapture --test-threads=1 "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# The closing line: cargo's tally, or one failure when nothing could be built or run.
tally=$(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed;.*/\1 \2/p' "$log" | tail -n 1)
if [ -n "$tally" ]; then
  read -r passed failed <<<"$tally"
else
  passed=0 failed=0
fi
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "abicheck.sh: cargo test failed (status $rc) before any check could fail: see above"
  failed=1
fi
echo "abicheck $tag: $passed passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
