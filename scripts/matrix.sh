#!/usr/bin/env bash
# matrix.sh [PYTHON...]: the whole test run, on every interpreter given (default: every
# CPython 3.9-3.13 that pyenv has). Prints one summary table and exits non-zero if any cell
# failed. Each build kind is built once: the abi3 module built on the oldest 3.11+ interpreter
# is the very file 3.12 and 3.13 load.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT"

pythons=("$@")
[ ${#pythons[@]} -gt 0 ] || mapfile -t pythons < <(find_pythons)
[ ${#pythons[@]} -gt 0 ] || { echo "no CPython 3.9-3.13 found (pyenv root: $(pyenv root 2>/dev/null))" >&2; exit 1; }

log=build/logs; mkdir -p "$log"
rows=(); fail=0

echo "==> Rust unit and doc tests"
if PYO3_PYTHON="${pythons[0]}" cargo test --quiet 2>&1 | tee "$log/cargo-test.txt" | tail -n 3; then
  grep -q "test result: FAILED" "$log/cargo-test.txt" && rust=FAIL || rust=pass
else rust=FAIL; fi
[ "${PIPESTATUS[0]:-0}" = 0 ] || rust=FAIL

declare -A built=()
for py in "${pythons[@]}"; do
  tag=$(py_tag "$py"); kind=$(build_kind "$py") || { rows+=("$tag|?|FAIL|-|-|FAIL"); fail=1; continue; }
  echo "==> $tag ($kind)"
  if [ -z "${built[$kind]:-}" ]; then
    if scripts/build.sh "$py" >"$log/build-$kind.txt" 2>&1; then built[$kind]=pass; else built[$kind]=FAIL; tail -n 30 "$log/build-$kind.txt"; fi
  fi
  b=${built[$kind]}
  if [ "$b" = pass ]; then
    c=$(scripts/ctest.sh "$py" >"$log/ctest-$tag.txt" 2>&1 && echo pass || echo FAIL)
    vpy=$(ensure_venv "$py")
    p=$(PYTHONPATH="build/$kind" "$vpy" -m pytest -q -p no:cacheprovider python_tests >"$log/pytest-$tag.txt" 2>&1 && echo pass || echo FAIL)
    tail -n 1 "$log/ctest-$tag.txt"; tail -n 1 "$log/pytest-$tag.txt"
  else c=-; p=-; fi
  r=pass; for x in "$b" "$c" "$p"; do [ "$x" = pass ] || r=FAIL; done
  [ "$r" = pass ] || fail=1
  rows+=("$tag|$kind|$b|$c|$p|$r")
done
[ "$rust" = pass ] || fail=1

echo
printf '%-8s %-6s %-6s %-8s %-13s %s\n' interp kind build c-tests python-tests result
for row in "${rows[@]}"; do IFS='|' read -r t k b c p r <<<"$row"; printf '%-8s %-6s %-6s %-8s %-13s %s\n' "$t" "$k" "$b" "$c" "$p" "$r"; done
printf '%-8s %-6s %-6s\n' rust - "$rust"
echo "(logs: $log/)"
exit $fail
