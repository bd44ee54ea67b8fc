#!/usr/bin/env bash
# ctest.sh PYTHON [-v] [TEST...]: build c_tests/embed.c against PYTHON's headers and libpython
# into build/ctest/<cpXY>/embed, then run each named test (every test when none is named) in a
# process of its own, with the bufferkit build of PYTHON (build/<kind>/) on PYTHONPATH.
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

# Everything gcc needs from the interpreter's own sysconfig, one value a line.
mapfile -t cfg < <("$py" - <<'EOF'
import sys, sysconfig
v = sysconfig.get_config_var
paths = sysconfig.get_paths()
print(paths["include"])
print(paths["platinclude"])
print(v("LIBDIR") or "")
print(v("LIBPL") or "")
print(v("LDVERSION") or v("VERSION"))
print(int(bool(v("Py_ENABLE_SHARED"))))
print(" ".join(x for x in (v("LIBS"), v("SYSLIBS")) if x))
print(sys.base_prefix)
EOF
) || { echo "ctest.sh: cannot read sysconfig of $py" >&2; exit 2; }
[ "${#cfg[@]}" -eq 8 ] || { echo "ctest.sh: unexpected sysconfig output from $py" >&2; exit 2; }
include=${cfg[0]} platinclude=${cfg[1]} libdir=${cfg[2]} libpl=${cfg[3]}
ldversion=${cfg[4]} shared=${cfg[5]} syslibs=${cfg[6]} base_prefix=${cfg[7]}

if [ "$shared" = 1 ]; then
  link=(-L"$libdir" -lpython"$ldversion" -Wl,-rpath,"$libdir")
else
  # a static libpython: extension modules resolve its symbols from the executable
  link=(-L"$libpl" -lpython"$ldversion" $syslibs -Wl,-export-dynamic)
fi

out="$BK_ROOT/build/ctest/$tag"
exe="$out/embed"
mkdir -p "$out"
echo "==> compiling $exe against $("$py" -V 2>&1) ($include)"
if ! gcc -std=c11 -Wall -Wextra -Werror -O1 -g \
    -I"$include" -I"$platinclude" \
    "$BK_ROOT/c_tests/embed.c" -o "$exe" "${link[@]}" -lm; then
  echo "ctest.sh: compiling c_tests/embed.c failed"
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
    "${wrapper[@]}" "$exe" "${embed_flags[@]}" "$t" >"$log" 2>&1
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
