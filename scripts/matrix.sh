#!/usr/bin/env bash
# matrix.sh [SPEC...]: the whole test run, on every interpreter given (default: every one
# scripts/pythons.sh finds or makes: pyenv's CPython 3.9-3.13, a free-threaded 3.13t, and in
# a Debian sid chroot CPython 3.14, 3.15, their debug builds and PyPy 3.11). A SPEC is an
# interpreter path or ENV:PATH (lib.sh: "sid:/usr/bin/python3.14"); every column of that
# interpreter runs in its environment. Prints one summary table, one row per interpreter, and
# exits non-zero if any cell failed. An interpreter that cannot be had here is a row that says
# why; a column that cannot run on an interpreter says "skip" and, under the table, why.
#
# Every CPython 3.15+ (GIL-enabled, debug or free-threaded) also gets a row "SPEC#abi3t" (tag
# cp315-abi3t): the abi3t module (PEP 803), built once on the first of them, loaded and tested
# there; `abi3t audit` checks its symbols (scripts/abi3tcheck.sh).
#
# Each build kind is built once, on the first interpreter of that kind: the abi3 module built
# on the oldest 3.11+ (pyenv's 3.11) is the very file 3.12, 3.13, 3.14, 3.15 and the debug
# builds load (build/wheels/abi3/, installed into each one's fresh venv).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT"

log=build/logs; mkdir -p "$log"
t_start=$SECONDS
echo "==> interpreters (scripts/pythons.sh)"
specs=() skipped=()
if [ $# -gt 0 ]; then
  specs=("$@")
else
  while IFS= read -r line; do
    case $line in
      "# skipped "*) skipped+=("${line#\# skipped }") ;;
      ?*) specs+=("$line") ;;
    esac
  done < <(scripts/pythons.sh 2> >(tee "$log/pythons.txt" >&2))
fi
t_provision=$((SECONDS - t_start))
[ ${#specs[@]} -gt 0 ] || { echo "no interpreter found or made (see $log/pythons.txt)" >&2; exit 1; }
# The abi3t rows: PEP 803's stable ABI loads on every CPython 3.15+, with or without the GIL.
extra=()
for spec in "${specs[@]}"; do
  [ -z "$(spec_kind "$spec")" ] || continue
  [[ " ${specs[*]} " == *" $spec#abi3t "* ]] && continue
  pyx "$spec" -c 'import sys; sys.exit(not (sys.implementation.name == "cpython" and sys.version_info >= (3, 15)))' \
    2>/dev/null && extra+=("$spec#abi3t")
done
specs+=("${extra[@]}")
printf '    %s\n' "${specs[@]}"

rows=() notes=() fail=0
# run LOG CMD...: runs CMD with its output in LOG; prints pass, FAIL, or skip when CMD exits
# with 3 (it cannot run on this interpreter; its last line says why), then LOG's last line on
# stderr (the runner's own summary line).
run() {
  local log=$1 rc=0; shift
  "$@" >"$log" 2>&1 || rc=$?
  case $rc in 0) echo pass ;; 3) echo skip ;; *) echo FAIL ;; esac
  tail -n 1 "$log" >&2
}
# why LOG: the reason a skipped script gave (its last line, after "skipped: ")
why() { tail -n 1 "$1" | sed 's/.*skipped: //'; }
# skip TAG COLUMN WHY: note why a cell cannot run here (the cell itself says skip)
skip() { notes+=("$1 $2: $3"); }

echo "==> Rust: unit and doc tests, formatting, clippy"
t0=$SECONDS
rust=$(run "$log/rust.txt" scripts/lint.sh "$(find_pythons | head -n 1)")
t_rust=$((SECONDS - t0))
grep -E "^test result|passed|warning|error" "$log/rust.txt" | tail -n 4

declare -A built=()
for spec in "${specs[@]}"; do
  t0=$SECONDS
  py=$(spec_exe "$spec")
  want=$(spec_kind "$spec")
  tag=$(py_tag "$spec") && kind=$(build_kind "$spec") || {
    rows+=("${tag:-$spec}|?|FAIL|-|-|-|-|-|FAIL|0"); notes+=("$spec: cannot run it"); fail=1; continue; }
  [ -n "$want" ] && tag="$tag-$want"
  debug=0; [[ $tag == cp*d ]] && debug=1
  echo "==> $tag ($kind): $spec"
  # col SCRIPT ARGS...: a script of scripts/, run in the interpreter's environment
  # BK_KIND: the build kind the spec asks for (#abi3t), seen by build_kind in every script
  col() { local s=$1; shift; BK_KIND=$want in_env "$spec" "scripts/$s" "$py" "$@"; }
  if [ -z "${built[$kind]:-}" ]; then
    built[$kind]=$(run "$log/build-$kind.txt" col build.sh)
    [ "${built[$kind]}" = pass ] || tail -n 30 "$log/build-$kind.txt" >&2
  fi
  b=${built[$kind]}
  if [ "$debug" = 1 ]; then
    # A debug build loads the release build's abi3 module; its layouts are the release
    # build's (Py_DEBUG adds no field since 3.8; Py_TRACE_REFS is a separate option).
    a=skip; skip "$tag" layout "the release build's headers are checked on ${tag%d}'s row (Py_DEBUG changes no layout)"
  elif [[ $kind == pp* ]]; then
    a=skip; skip "$tag" layout "the checks compare CPython's headers; pyo3-ffi declares cpyext's Py_buffer and PyObject with private fields of PyPy's own"
  elif [ "$kind" = abi3t ]; then
    rel=${tag%-abi3t}; a=skip; skip "$tag" layout "the same headers are compared on ${rel%d}'s row; the abi3t module's own contract (symbols, entry point) is the abi3t audit below"
  else
    a=$(run "$log/abicheck-$tag.txt" col abicheck.sh)
  fi
  if [ "$b" = pass ]; then
    if [[ $kind == pp* ]]; then
      c=skip; skip "$tag" c-tests "PyPy cannot be embedded through the C API: libpypy exports no Py_Initialize (PyPy's own embedding API is rpython_startup_code/pypy_setup_home)"
    else
      c=$(run "$log/ctest-$tag.txt" col ctest.sh)
    fi
    # The suite runs against the wheel pip-installed into a fresh venv (issue 8).
    p=$(run "$log/pytest-$tag.txt" col install_check.sh)
    [ "$p" = skip ] && skip "$tag" python-tests "$(why "$log/pytest-$tag.txt")"
    [[ $kind == pp* ]] && skip "$tag" python-tests "python_tests/pypy only: the rest needs _testbuffer, ctypes.pythonapi and numpy, which PyPy lacks"
    if [ "$kind" = abi3t ]; then
      t=skip; skip "$tag" typecheck "the stub is the abi3 module's, checked on the abi3 rows; the abi3t module has the same names (the Python suite runs against it)"
      e=skip; skip "$tag" example "bufferkit_module! (PyInit_<name>) is not available under abi3t, whose entry point is PyModExport_<name> (PEP 793)"
    elif [ "$debug" = 1 ]; then
      t=skip; skip "$tag" typecheck "the stub is checked against the same module on ${tag%d}'s row"
      e=skip; skip "$tag" example "the example crate is a release-build extension, built and tested on ${tag%d}'s row"
    else
      t=$(run "$log/typecheck-$tag.txt" col typecheck.sh)
      [ "$t" = skip ] && skip "$tag" typecheck "$(why "$log/typecheck-$tag.txt")"
      if [[ $kind == pp* ]]; then
        e=skip; skip "$tag" example "the example's tests ask _testbuffer and numpy, which PyPy lacks"
      else
        e=$(run "$log/example-$tag.txt" col example.sh)
      fi
    fi
  else c=-; p=-; t=-; e=-; notes+=("$tag: build failed, nothing else ran (log: $log/build-$kind.txt)"); fi
  r=pass; for x in "$b" "$a" "$c" "$p" "$t" "$e"; do [ "$x" = pass ] || [ "$x" = skip ] || r=FAIL; done
  [ "$r" = pass ] || fail=1
  rows+=("$tag|$kind|$b|$a|$c|$p|$t|$e|$r|$((SECONDS - t0))")
done
[ "$rust" = pass ] || fail=1
abi3=-
if [ "${built[abi3]:-}" = pass ]; then
  t0=$SECONDS
  abi3=$(run "$log/abi3check.txt" scripts/abi3check.sh "${specs[@]}")
  [ "$abi3" = pass ] || fail=1
  t_abi3=$((SECONDS - t0))
fi

abi3t=-
if [ -n "${built[abi3t]:-}" ]; then
  t0=$SECONDS
  if [ "${built[abi3t]}" = pass ]; then
    abi3t=$(run "$log/abi3tcheck.txt" scripts/abi3tcheck.sh "${specs[@]}")
  else abi3t=FAIL; fi
  [ "$abi3t" = pass ] || fail=1
  t_abi3t=$((SECONDS - t0))
fi

# The abi3 promise: every abi3 row installed the very module 3.11 built (one sha256)
same=-
if [ "${built[abi3]:-}" = pass ]; then
  mapfile -t sums < <(for row in "${rows[@]}"; do
    IFS='|' read -r tg k _ <<<"$row"
    [ "$k" = abi3 ] && sed -n "s/^native module sha256: /$tg /p" "$log/pytest-$tg.txt"
  done)
  n=$(printf '%s\n' "${sums[@]}" | awk 'NF == 2 {print $2}' | sort -u | wc -l)
  if [ "$n" = 1 ]; then same="pass (${#sums[@]} interpreters, one file: sha256 $(printf '%s\n' "${sums[0]}" | awk '{print substr($2, 1, 16)}')...)"
  else same="FAIL ($n different modules: $(echo "${sums[@]}"))"; fail=1; fi
fi

# Two checks that are too slow for every row, on the oldest host interpreter (a
# version-specific module) and the newest (abi3): `pip install .` as a user runs it (build
# isolation, maturin from the registry), and the PyO3 example crate (a #[pyclass] exporting
# through bufferkit) built as a PyO3 user builds it (pyo3 compiles for minutes).
mapfile -t host < <(find_pythons)
# ends_pass WHAT LOG-PREFIX SCRIPT [ARGS...]: SCRIPT PY ARGS on both; prints pass or FAIL and
# the seconds it took
ends_pass() {
  local what=$1 prefix=$2 script=$3 py tag result=pass t=$SECONDS; shift 3
  for py in "${host[0]}" "${host[${#host[@]}-1]}"; do
    tag=$(py_tag "$py")
    echo "==> $tag: $what" >&2
    [ "$(run "$log/$prefix-$tag.txt" "$script" "$py" "$@")" = pass ] || result=FAIL
  done
  echo "$result $((SECONDS - t))"
}
read -r src t_src < <(ends_pass "pip install . into a fresh venv" install-src \
  scripts/install_check.sh --from-source)
read -r pyo3ex t_pyo3ex < <(ends_pass "examples/pyo3-samples" example-pyo3 scripts/example_pyo3.sh)
[ "$src" = pass ] && [ "$pyo3ex" = pass ] || fail=1

echo
fmt='%-12s %-7s %-6s %-7s %-8s %-13s %-10s %-8s %-7s %s\n'
printf "$fmt" interp kind build layout c-tests python-tests typecheck example result seconds
for row in "${rows[@]}"; do
  IFS='|' read -r tg k b a c p t e r s <<<"$row"
  printf "$fmt" "$tg" "$k" "$b" "$a" "$c" "$p" "$t" "$e" "$r" "$s"
done
for s in "${skipped[@]}"; do
  printf '%-12s %-7s %s\n' "${s%%:*}" - "skipped:${s#*:}"
done
printf '%-12s %-7s %s\n' rust - "$rust (unit + doc tests, fmt, clippy; ${t_rust} s)"
printf '%-12s %-7s %s\n' abi3 audit "$abi3 (abi3audit + nm vs the stable ABI of each 3.11+; ${t_abi3:-0} s)"
printf '%-12s %-7s %s\n' abi3 same "$same"
printf '%-12s %-7s %s\n' abi3t audit "$abi3t (tag, .abi3t.so, PyModExport only, nm vs the stable ABI and gcc vs Python.h with Py_TARGET_ABI3T, each 3.15+; ${t_abi3t:-0} s)"
printf '%-12s %-7s %s\n' install src "$src (pip install . into fresh venvs: $(py_tag "${host[0]}"), $(py_tag "${host[${#host[@]}-1]}"); ${t_src} s)"
printf '%-12s %-7s %s\n' example pyo3 "$pyo3ex (examples/pyo3-samples: $(py_tag "${host[0]}"), $(py_tag "${host[${#host[@]}-1]}"); ${t_pyo3ex} s)"
for n in "${notes[@]}"; do echo "  skip/note: $n"; done
echo "(logs: $log/; provisioning ${t_provision} s; total $((SECONDS - t_start)) s)"
if [ $fail = 0 ]; then echo "matrix: ${#rows[@]} interpreters passed"; else echo "matrix: FAILED"; fi
exit $fail
