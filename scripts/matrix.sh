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
# run LOG CMD...: runs CMD with its output in LOG; prints pass or FAIL, then LOG's last line
# on stderr (the runner's own summary line).
run() {
  local log=$1; shift
  if "$@" >"$log" 2>&1; then echo pass; else echo FAIL; fi
  tail -n 1 "$log" >&2
}

echo "==> Rust: unit and doc tests, formatting, clippy"
rust=$(run "$log/rust.txt" scripts/lint.sh "${pythons[0]}")
grep -E "^test result|passed|warning|error" "$log/rust.txt" | tail -n 4

declare -A built=()
for py in "${pythons[@]}"; do
  tag=$(py_tag "$py"); kind=$(build_kind "$py") || { rows+=("$tag|?|FAIL|-|-|-|-|-|FAIL"); fail=1; continue; }
  echo "==> $tag ($kind)"
  if [ -z "${built[$kind]:-}" ]; then
    built[$kind]=$(run "$log/build-$kind.txt" scripts/build.sh "$py")
    [ "${built[$kind]}" = pass ] || tail -n 30 "$log/build-$kind.txt" >&2
  fi
  b=${built[$kind]}
  a=$(run "$log/abicheck-$tag.txt" scripts/abicheck.sh "$py")
  if [ "$b" = pass ]; then
    c=$(run "$log/ctest-$tag.txt" scripts/ctest.sh "$py")
    # The suite runs against the wheel pip-installed into a fresh venv (issue 8).
    p=$(run "$log/pytest-$tag.txt" scripts/install_check.sh "$py")
    t=$(run "$log/typecheck-$tag.txt" scripts/typecheck.sh "$py")
    e=$(run "$log/example-$tag.txt" scripts/example.sh "$py")
  else c=-; p=-; t=-; e=-; fi
  r=pass; for x in "$b" "$a" "$c" "$p" "$t" "$e"; do [ "$x" = pass ] || r=FAIL; done
  [ "$r" = pass ] || fail=1
  rows+=("$tag|$kind|$b|$a|$c|$p|$t|$e|$r")
done
[ "$rust" = pass ] || fail=1
abi3=-
if [ "${built[abi3]:-}" = pass ]; then
  abi3=$(run "$log/abi3check.txt" scripts/abi3check.sh "${pythons[@]}")
  [ "$abi3" = pass ] || fail=1
fi

# `pip install .` as a user runs it (build isolation, maturin from the registry), on the
# oldest interpreter (a version-specific module) and the newest (abi3).
src=pass
for py in "${pythons[0]}" "${pythons[${#pythons[@]}-1]}"; do
  tag=$(py_tag "$py")
  echo "==> $tag: pip install . into a fresh venv"
  [ "$(run "$log/install-src-$tag.txt" scripts/install_check.sh "$py" --from-source)" = pass ] || src=FAIL
done
[ "$src" = pass ] || fail=1

echo
fmt='%-8s %-6s %-6s %-7s %-8s %-13s %-10s %-8s %s\n'
printf "$fmt" interp kind build layout c-tests python-tests typecheck example result
for row in "${rows[@]}"; do
  IFS='|' read -r tg k b a c p t e r <<<"$row"
  printf "$fmt" "$tg" "$k" "$b" "$a" "$c" "$p" "$t" "$e" "$r"
done
printf '%-8s %-6s %s\n' rust - "$rust (unit + doc tests, fmt, clippy)"
printf '%-8s %-6s %s\n' abi3 audit "$abi3 (abi3audit + nm vs the stable ABI)"
printf '%-8s %-6s %s\n' install src "$src (pip install . into fresh venvs: $(py_tag "${pythons[0]}"), $(py_tag "${pythons[${#pythons[@]}-1]}"))"
echo "(logs: $log/)"
if [ $fail = 0 ]; then echo "matrix: ${#rows[@]} interpreters passed"; else echo "matrix: FAILED"; fi
exit $fail
