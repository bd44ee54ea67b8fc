#!/usr/bin/env bash
# lint.sh [PYTHON]: Rust unit and doc tests, rustfmt, clippy (all warnings are errors), rustdoc.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT"
export PYO3_PYTHON=${1:-$(command -v python3)}
export CARGO_TARGET_DIR="$BK_ROOT/build/target/lint"
cargo fmt --check
cargo test --quiet
cargo clippy --quiet --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps
