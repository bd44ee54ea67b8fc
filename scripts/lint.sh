#!/usr/bin/env bash
# lint.sh [PYTHON]: Rust unit and doc tests, rustfmt, clippy (all warnings are errors), rustdoc,
# for bufferkit and for the example crate examples/waveform.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT"
export PYO3_PYTHON=${1:-$(command -v python3)}
export CARGO_TARGET_DIR="$BK_ROOT/build/target/lint"
cargo fmt --check
cargo test --quiet
cargo clippy --quiet --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps
# The example crate is what a Rust user copies: the same bar.
cargo fmt --check --manifest-path examples/waveform/Cargo.toml
CARGO_TARGET_DIR="$BK_ROOT/build/target/lint-example" \
  cargo clippy --quiet --manifest-path examples/waveform/Cargo.toml --all-targets -- -D warnings
CARGO_TARGET_DIR="$BK_ROOT/build/target/lint-example" RUSTDOCFLAGS="-D warnings" \
  cargo doc --quiet --no-deps --manifest-path examples/waveform/Cargo.toml
