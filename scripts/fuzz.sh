#!/usr/bin/env bash
# fuzz.sh: run bufferkit's libFuzzer targets (fuzz/) for a fixed number of iterations each,
# growing the corpus kept in the repository (fuzz/corpus/<target>/), then minimise it.
#
#   FUZZ_RUNS_LAYOUT   iterations of the layout target  (default 3000000, ~20 s on one core)
#   FUZZ_RUNS_REQUEST  iterations of the request target (default 2000000, ~20 s)
#   FUZZ_MAX_TIME      a time limit per target in seconds (default 180), whichever comes first
#
# The targets fuzz pure-Rust code (src/layout.rs, src/request.rs, both #![forbid(unsafe_code)])
# against an independent oracle, so they are built without a sanitizer (`-s none`): that is
# also what works on the stable toolchain, the only one a new machine has. A panic (an
# assertion of the oracle, an overflow: the targets build with overflow checks and debug
# assertions) is a crash: the input is saved under fuzz/artifacts/<target>/ and the script
# prints how to replay it, then fails. Ends with "N passed, M failed" (one per target).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked || { echo "fuzz.sh: cannot install cargo-fuzz"; echo "0 passed, 1 failed"; exit 1; }
fi
# bufferkit's build script asks an interpreter for its configuration (pyo3-build-config)
py=${PYO3_PYTHON:-$(find_pythons | tail -n 1)}
export PYO3_PYTHON=${py:-python3}
export CARGO_TARGET_DIR="$BK_ROOT/build/target/fuzz"

echo "==> building the fuzz targets ($(cargo fuzz --version), $(rustc --version))"
if ! cargo fuzz build -s none >build.log 2>&1; then
  tail -n 30 build.log; rm -f build.log
  echo "fuzz.sh: building the fuzz targets failed"; echo "0 passed, 1 failed"; exit 1
fi
rm -f build.log

passed=0 failed=0
run_target() {
  local target=$1 runs=$2 max_len=$3
  mkdir -p "corpus/$target"
  local before; before=$(ls "corpus/$target" | wc -l)
  echo "==> $target: $runs runs (corpus: $before inputs)"
  if cargo fuzz run -s none "$target" "corpus/$target" -- \
      -runs="$runs" -max_len="$max_len" -max_total_time="${FUZZ_MAX_TIME:-180}" \
      -print_final_stats=1 >"run-$target.log" 2>&1; then
    grep -E '^Done|stat::number_of_executed_units|stat::new_units_added' "run-$target.log"
    # keep only what adds coverage, so that the committed corpus stays small
    cargo fuzz cmin -s none "$target" "corpus/$target" -- -max_len="$max_len" >/dev/null 2>&1 || true
    echo "    corpus: $before -> $(ls "corpus/$target" | wc -l) inputs"
    passed=$((passed + 1))
  else
    grep -vE '^#[0-9]+|^INFO:' "run-$target.log" | head -n 40
    echo "FAIL $target: replay with: (cd fuzz && cargo fuzz run -s none $target artifacts/$target/<crash-file>)"
    failed=$((failed + 1))
  fi
  rm -f "run-$target.log"
}
run_target request "${FUZZ_RUNS_REQUEST:-2000000}" 16
run_target layout "${FUZZ_RUNS_LAYOUT:-3000000}" 256
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
