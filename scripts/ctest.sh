#!/usr/bin/env bash
# ctest.sh PYTHON [-v] [TEST...]: build the C tests (c_tests/*.c) against PYTHON's headers and
# libpython into build/ctest/<cpXY>/embed, write the request tests' expectation table with
# PYTHON (python_tests/oracle.py c-table) into build/ctest/<cpXY>/requests.tsv, then run each
# named test (every test when none is named) in a process of its own, with the bufferkit build
# of PYTHON (build/<kind>/) on PYTHONPATH.
# Prints every test's output, then "N passed, M failed" summed over the runs as the last line;
# exits non-zero when anything failed, crashed or could not be built.
#   -v              passed on to embed: a PASS line for every check, every FAIL line
#   CTEST_WRAPPER   a command to run embed under, e.g. CTEST_WRAPPER="valgrind -q"
set -uo pipefail
. "$(dirname "$0")/lib.sh"

py=${1:?usage: ctest.sh PYTHON [-v] [TEST...]}
shift
embed_flags=()
names=()
for a in "$@"; do
  if [ "$a" = -v ]; then embed_flags+=(-v); else names+=("$a"); fi
done
read -r -a wrapper <<<"${CTEST_WRAPPER:-}"

tag=$(py_tag "$py") || exit 2
kind=$(build_kind "$py") || exit 2

out="$BK_ROOT/build/ctest/$tag"
exe="$out/embed"
table="$out/requests.tsv"
mkdir -p "$out"
base_prefix=$(py_home "$py") || { echo "ctest.sh: cannot read sysconfig of $py" >&2; exit 2; }
echo "==> compiling $exe against $("$py" -V 2>&1)"
if ! build_embed "$py" "$exe" -Wall -Wextra -Werror -O1 -g; then
  echo "ctest.sh: compiling c_tests/*.c failed"
  echo "0 passed, 1 failed"
  exit 1
fi
# The expectations of the request tests: the oracle of python_tests/, run by the same
# interpreter (build/, not committed; c_tests/README.md, "The expectation table").
if ! write_request_table "$py" "$table"; then
  echo "ctest.sh: python_tests/oracle.py c-table failed"
  echo "0 passed, 1 failed"
  exit 1
fi

pypath="$BK_ROOT/build/$kind"
if [ ! -d "$pypath/bufferkit" ]; then
  echo "warning: $pypath/bufferkit does not exist: the bufferkit tests will fail to import it" \
       "(build it with scripts/build.sh $py)"
fi

if [ "${#names[@]}" -eq 0 ]; then
  mapfile -t tests < <("$exe" --list) || { echo "ctest.sh: $exe --list failed"; exit 1; }
else
  tests=("${names[@]}")
fi

passed=0 failed=0
log=$(mktemp "${TMPDIR:-/tmp}/bufferkit-ctest.XXXXXX")
trap 'rm -f "$log"' EXIT
for t in "${tests[@]}"; do
  # PYTHONHOME: the embedded interpreter finds its standard library even when PYTHON is a venv
  PYTHONPATH="$pypath" PYTHONHOME="$base_prefix" PYTHONDONTWRITEBYTECODE=1 \
    "${wrapper[@]}" "$exe" --table "$table" "${embed_flags[@]}" "$t" >"$log" 2>&1
  rc=$?
  tally=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
  grep -vE '^[0-9]+ passed, [0-9]+ failed$' "$log"
  if [ "$rc" -eq 2 ] && [ -z "$tally" ]; then
    echo "FAIL $t: not a test of $exe (usage error)"
    failed=$((failed + 1))
  elif [ -z "$tally" ]; then
    if [ "$rc" -gt 128 ]; then
      echo "FAIL $t: embed died of signal $((rc - 128)) before printing its tally"
    else
      echo "FAIL $t: embed exited with status $rc without printing its tally"
    fi
    failed=$((failed + 1))
  else
    p=${tally%% passed*}
    f=${tally#*passed, }
    f=${f%% failed*}
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
      echo "FAIL $t: embed exited with status $rc although its tally has no failure"
      failed=$((failed + 1))
    fi
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
