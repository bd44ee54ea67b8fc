#!/usr/bin/env bash
# lint.sh [PYTHON]: Rust unit and doc tests, rustfmt, clippy (all warnings are errors), rustdoc,
# for the workspace (the library, module/, abi-check/) and for the example crate
# examples/waveform. `cargo test/clippy/doc` without -p cover the default members, the library
# and the module; the ABI checks' crate needs libclang and is linted on its own below.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT"
export PYO3_PYTHON=${1:-$(command -v python3)}
export CARGO_TARGET_DIR="$BK_ROOT/build/target/lint"
cargo fmt --check --all
cargo test --quiet
cargo clippy --quiet --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps
# Code under #[cfg(Py_3_12)], #[cfg(not(Py_3_10))] or the limited API compiles only for some
# interpreters: clippy the oldest and newest installed ones, and the abi3 build, as well.
mapfile -t pys < <(find_pythons)
for other in "${pys[0]:-}" "${pys[${#pys[@]}-1]:-}"; do
  [ -n "$other" ] || continue
  PYO3_PYTHON="$other" CARGO_TARGET_DIR="$BK_ROOT/build/target/lint-$(py_tag "$other")" \
    cargo clippy --quiet --all-targets -- -D warnings
done
# `--features abi3` turns on the feature of that name of every selected package (the library's
# and the module's).
if [ "$(py_minor "$PYO3_PYTHON")" -ge 11 ]; then
  CARGO_TARGET_DIR="$BK_ROOT/build/target/lint-abi3" cargo clippy --quiet --all-targets --features abi3 -- -D warnings
fi
# The abi3t build (PEP 803; cfg(abi3t): opaque PyObject, PyModExport) for CPython 3.15, which
# this host cannot run: pyo3-ffi's configuration is written down instead of read from an
# interpreter (the same target; the module's own build, in the sid chroot, asks python3.15).
# Library and module only: the tests embed an interpreter of the host's.
abi3t_cfg="$BK_ROOT/build/pyo3-abi3t-lint.cfg"
printf '%s\n' implementation=CPython version=3.15 shared=true target_abi=CPython-abi3t-3.15 \
  pointer_width=64 build_flags= suppress_build_script_link_lines=true >"$abi3t_cfg"
PYO3_CONFIG_FILE="$abi3t_cfg" CARGO_TARGET_DIR="$BK_ROOT/build/target/lint-abi3t" \
  cargo clippy --quiet --lib -p bufferkit -p bufferkit-module --features abi3t -- -D warnings
# A free-threaded build (cfg(Py_GIL_DISABLED): the values of ExportingType must be Send + Sync,
# SharedVec's mutex, the critical sections), tests included, from a written configuration as
# above: the row that builds for 3.13t compiles neither the tests nor clippy's lints. pyo3-ffi
# gates free-threading below 3.14, which the cp313t row skips the same way (scripts/lib.sh).
ft_cfg="$BK_ROOT/build/pyo3-ft-lint.cfg"
printf '%s\n' implementation=CPython version=3.13 shared=true abi3=false build_flags=Py_GIL_DISABLED \
  pointer_width=64 suppress_build_script_link_lines=true >"$ft_cfg"
UNSAFE_PYO3_SKIP_VERSION_CHECK=1 PYO3_CONFIG_FILE="$ft_cfg" CARGO_TARGET_DIR="$BK_ROOT/build/target/lint-ft" \
  cargo clippy --quiet --all-targets -p bufferkit -p bufferkit-module -- -D warnings
# The ABI checks (version-specific builds only; bindgen loads libclang, which
# `make abicheck` installs when it is missing).
if ldconfig -p 2>/dev/null | grep -qE '\blibclang(-[0-9.]+)?\.so' || [ -n "${LIBCLANG_PATH:-}" ]; then
  cargo clippy --quiet --all-targets -p bufferkit-abi-check -- -D warnings
else
  echo "lint.sh: abi-check/ not linted: no libclang (make abicheck installs it)" >&2
fi
# The PyO3 adapter (feature pyo3) is code users reach through their #[pyclass]: the same bar.
CARGO_TARGET_DIR="$BK_ROOT/build/target/lint-pyo3" cargo clippy --quiet --all-targets --features pyo3 -- -D warnings
# The example crate is what a Rust user copies: the same bar.
cargo fmt --check --manifest-path examples/waveform/Cargo.toml
CARGO_TARGET_DIR="$BK_ROOT/build/target/lint-example" \
  cargo clippy --quiet --manifest-path examples/waveform/Cargo.toml --all-targets -- -D warnings
CARGO_TARGET_DIR="$BK_ROOT/build/target/lint-example" RUSTDOCFLAGS="-D warnings" \
  cargo doc --quiet --no-deps --manifest-path examples/waveform/Cargo.toml
