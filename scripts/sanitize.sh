#!/usr/bin/env bash
# sanitize.sh [PYTHON...]: memory errors caught by tools, not by luck (issue 6, item 4).
#
#   1. valgrind memcheck, on a debug-info build of bufferkit (its own target directory and
#      build/sanitize/<kind>/; the normal build is not touched), with PYTHONMALLOC=malloc:
#        a. every C test (c_tests/*.c, through scripts/ctest.sh);
#        b. a representative subset of the Python suite: test_bad_input.py (every error
#           path, hostile exporters), test_properties.py (layouts over every base kind, the
#           differential, the stateful machine; 3% of the hypothesis examples) and
#           stress/test_threads.py (50 iterations a thread). Not the rest: valgrind runs
#           Python ~50x slower, and this subset alone takes about 2.5 minutes.
#      On 3.9 (the version-specific build) and the newest 3.12+ (the abi3 module, the very
#      file 3.11 and 3.13 load). Not on 3.11: CPython 3.11.7 itself reports uninitialised
#      reads everywhere (see scripts/valgrind-python.supp).
#      c. the newest CPython of the sid chroot (3.14+), with the same abi3 build: the calls
#         only 3.14+ makes (tp_vectorcall), through test_calls.py, test_view.py,
#         test_buffer.py and test_bad_input.py.
#      Passes when valgrind reports zero errors. Every error block is also classified: one
#      with a frame in _bufferkit*.so or a bufferkit:: symbol is bufferkit's, and listed.
#   2. the whole Python suite (python_tests/, the fast stress variants included) under
#      `python -X dev` with PYTHONMALLOC=debug, on every interpreter (two at a time).
#   3. the C tests built with AddressSanitizer and UndefinedBehaviorSanitizer (gcc's runtime,
#      libasan from Debian's gcc), PYTHONMALLOC=malloc so that every allocation goes through
#      ASan's allocator: bufferkit's frees are checked (double/invalid free), and every read
#      the C tests make through an exported Py_buffer is bounds-checked against the
#      allocation. bufferkit's own Rust code is not instrumented (that needs a nightly
#      toolchain); valgrind covers it.
#   4. ThreadSanitizer, on a free-threaded 3.13t configured --with-thread-sanitizer (built
#      once by scripts/pythons.sh --tsan, about 5 minutes cold; skipped, saying why, where it
#      cannot be made): the C tests and stress/test_threads.py with PYTHON_GIL=0, zero reports.
#
# Prints one line per step and "N passed, M failed" last; logs in build/logs/sanitize/.
# Bounded: about 10-15 minutes on 2 cores, the debug-info builds included.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT"

pythons=("$@")
[ ${#pythons[@]} -gt 0 ] || mapfile -t pythons < <(find_pythons)
[ ${#pythons[@]} -gt 0 ] || { echo "no CPython 3.9-3.13 found" >&2; exit 1; }
log="$BK_ROOT/build/logs/sanitize"; mkdir -p "$log"
supp="$BK_ROOT/scripts/valgrind-python.supp"
passed=0 failed=0
result() { if [ "$1" = 0 ]; then passed=$((passed + 1)); echo "pass  $2"; else failed=$((failed + 1)); echo "FAIL  $2"; fi; }

if ! command -v valgrind >/dev/null; then
  echo "==> installing valgrind (Debian)"
  { apt-get update -q && apt-get install -y -q valgrind; } >"$log/apt.txt" 2>&1
fi

# --- the debug-info build -----------------------------------------------------------------
# build_debuginfo PYTHON -> prints build/sanitize/<kind> (the wheel of `pip wheel .`, with
# debug info, from build/target/<kind>-debuginfo)
build_debuginfo() {
  local py=$1 kind vpy stage dest
  kind=$(build_kind "$py") || return 1
  vpy=$(ensure_venv "$py") || return 1
  dest="$BK_ROOT/build/sanitize/$kind"
  stage=$(mktemp -d "$BK_ROOT/build/.stage-sanitize-$kind.XXXXXX")
  (cd "$BK_ROOT" && PATH="$(dirname "$vpy"):$PATH" \
    CARGO_TARGET_DIR="$BK_ROOT/build/target/$kind-debuginfo" \
    CARGO_PROFILE_RELEASE_DEBUG=true CARGO_PROFILE_RELEASE_STRIP=none \
    "$vpy" -m pip wheel . --no-deps --no-build-isolation -q -w "$stage/wheel") >&2 || {
    rm -rf "$stage"; return 1; }
  "$vpy" -m zipfile -e "$stage"/wheel/bufferkit-*.whl "$stage/unpacked" || { rm -rf "$stage"; return 1; }
  rm -rf "$dest"; mkdir -p "$(dirname "$dest")"; mv "$stage/unpacked" "$dest"; rm -rf "$stage"
  echo "$dest"
}

# valgrind_verdict LOGFILE WHAT: 0 if the log holds no memcheck error; lists bufferkit's.
valgrind_verdict() {
  local file=$1 what=$2 errors ours
  errors=$(grep -cE '^==[0-9]+== (Invalid|Conditional|Use of uninitialised|Mismatched|Syscall param|Source and destination|Argument .* of function)' "$file")
  ours=$(awk '/^==[0-9]+== [A-Z]/{block=$0; keep=1; next} keep && /^==[0-9]+== +(at|by) /{block=block"\n"$0; next}
             keep {if (block ~ /_bufferkit|bufferkit::/) print block "\n"; keep=0}' "$file")
  if [ -n "$ours" ]; then
    echo "---- errors with bufferkit frames ($what):"; echo "$ours" | head -n 80
  fi
  echo "     $what: $errors memcheck errors, $(printf '%s' "$ours" | grep -cE '^==[0-9]+== [A-Z]') in bufferkit frames (log: ${file#$BK_ROOT/})"
  [ "$errors" -eq 0 ]
}

# (--track-origins=yes would say where an uninitialised value came from, at twice the cost:
# add it by hand when an error needs explaining.)
VALGRIND=(valgrind -q --tool=memcheck --leak-check=no --num-callers=40
          --suppressions="$supp" --error-exitcode=0)

# valgrind_one PYTHON: steps 1a and 1b for one interpreter; writes $log/valgrind-<tag>.out
# and .rc (two numbers: C tests, Python subset; 0 = clean).
valgrind_one() {
  local py=$1 tag kind pypath vpy rc v c p
  tag=$(py_tag "$py"); kind=$(build_kind "$py")
  exec >"$log/valgrind-$tag.out" 2>&1
  echo "==> valgrind memcheck: $tag ($kind, debug-info build)"
  if ! pypath=$(build_debuginfo "$py" 2>"$log/build-debuginfo-$tag.txt"); then
    tail -n 20 "$log/build-debuginfo-$tag.txt"; echo "1 1" >"$log/valgrind-$tag.rc"; return
  fi
  # a. the C tests: ctest.sh builds embed and runs each test in a process of its own; the
  #    wrapper puts the debug-info build first on PYTHONPATH.
  PYTHONMALLOC=malloc CTEST_WRAPPER="env PYTHONPATH=$pypath ${VALGRIND[*]}" \
    scripts/ctest.sh "$py" >"$log/valgrind-ctest-$tag.txt" 2>&1
  rc=$?
  tail -n 1 "$log/valgrind-ctest-$tag.txt" | sed 's/^/     C tests: /'
  valgrind_verdict "$log/valgrind-ctest-$tag.txt" "C tests"; v=$?
  c=$(( rc != 0 || v != 0 ))
  # b. the Python subset
  vpy=$(ensure_venv "$py")
  PYTHONMALLOC=malloc PYTHONPATH="$pypath" BUFFERKIT_EXAMPLES_SCALE=0.03 \
    BUFFERKIT_THREAD_ITERATIONS=50 "${VALGRIND[@]}" "$vpy" -m pytest -q -p no:cacheprovider \
    python_tests/test_bad_input.py python_tests/test_properties.py \
    python_tests/stress/test_threads.py >"$log/valgrind-pytest-$tag.txt" 2>&1
  rc=$?
  tail -n 1 "$log/valgrind-pytest-$tag.txt" | sed 's/^/     pytest: /'
  valgrind_verdict "$log/valgrind-pytest-$tag.txt" "Python subset"; p=$?
  # Test failures here are the suite's own findings, which make test reports; this step
  # judges memory errors only (and a crash: pytest's status is then not 0 or 1).
  [ "$rc" -ne 0 ] && echo "     (pytest exited $rc: make test reports the failing tests)"
  [ "$rc" -gt 1 ] && p=1
  echo "$c $p" >"$log/valgrind-$tag.rc"
}

# --- 1. valgrind: 3.9 and the newest 3.12+, side by side --------------------------------------
vg_pythons=()
for py in "${pythons[@]}"; do [ "$(py_minor "$py")" = 9 ] && vg_pythons+=("$py"); done
newest=
for py in "${pythons[@]}"; do [ "$(py_minor "$py")" -ge 12 ] && newest=$py; done
[ -n "$newest" ] && vg_pythons+=("$newest")
for py in "${vg_pythons[@]}"; do valgrind_one "$py" & done
wait
for py in "${vg_pythons[@]}"; do
  tag=$(py_tag "$py")
  cat "$log/valgrind-$tag.out"
  read -r c p <"$log/valgrind-$tag.rc" 2>/dev/null || { c=1; p=1; }
  result "$c" "valgrind $tag: C tests"
  result "$p" "valgrind $tag: Python subset"
done

# --- 1c. valgrind on the newest CPython of the sid chroot (3.14+) -----------------------------
# What only 3.14+ runs: `View(...)` and `Buffer(...)` through tp_vectorcall (issue 15), with
# the abi3 module of step 1 (the very file every 3.11+ loads). The suite's call paths, View and
# Buffer files and the bad-input table, about 5 minutes under valgrind. Memcheck needs the
# dynamic linker's symbols, which sid strips: libc6-dbg goes into the chroot when missing.
sid_root="$BK_CACHE/sid"
sid_py=$(ls "$sid_root"/usr/bin/ 2>/dev/null | grep -E '^python3\.[0-9]+$' | sort -V | tail -n 1)
if [ -z "$sid_py" ]; then
  echo "skip  valgrind sid: no sid chroot with a python3.N at $sid_root (scripts/pythons.sh makes it)"
elif [ ! -d "$BK_ROOT/build/sanitize/abi3" ]; then
  echo "skip  valgrind sid: no abi3 debug-info build (step 1 makes it on the newest 3.12+)"
else
  spec="sid:/usr/bin/$sid_py"
  tag=$(py_tag "$spec")
  echo "==> valgrind memcheck: $tag (abi3, debug-info build; the calls 3.14+ makes)"
  ok=1
  if ! ls "$sid_root"/usr/lib/debug/.build-id >/dev/null 2>&1; then
    sid_run "$sid_root" / env DEBIAN_FRONTEND=noninteractive sh -c \
      "apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends libc6-dbg" \
      >"$log/apt-sid-libc6-dbg.txt" 2>&1 || { ok=0; echo "     cannot install libc6-dbg in the chroot (log: ${log#$BK_ROOT/}/apt-sid-libc6-dbg.txt)"; }
  fi
  vg=$(valgrind_for "$spec" 2>"$log/valgrind-for-$tag.txt") || { ok=0; cat "$log/valgrind-for-$tag.txt"; }
  vpy=$(in_env "$spec" bash -c '. scripts/lib.sh; ensure_venv "$1"' _ "/usr/bin/$sid_py" 2>"$log/venv-$tag.txt") ||
    { ok=0; tail -n 5 "$log/venv-$tag.txt"; }
  if [ "$ok" = 1 ]; then
    # shellcheck disable=SC2086 # $vg is the words of a command line
    in_env "$spec" env PYTHONMALLOC=malloc PYTHONPATH="$BK_ROOT/build/sanitize/abi3" \
      $vg -q --tool=memcheck --leak-check=no --num-callers=40 --suppressions="$supp" \
      "$vpy" -m pytest -q -p no:cacheprovider python_tests/test_calls.py python_tests/test_view.py \
      python_tests/test_buffer.py python_tests/test_bad_input.py >"$log/valgrind-pytest-$tag.txt" 2>&1
    rc=$?
    tail -n 1 "$log/valgrind-pytest-$tag.txt" | sed 's/^/     pytest: /'
    valgrind_verdict "$log/valgrind-pytest-$tag.txt" "Python subset"; v=$?
    [ "$rc" -ne 0 ] && echo "     (pytest exited $rc: make test reports the failing tests)"
    result $(( v != 0 || rc > 1 )) "valgrind $tag: Python subset"
  else
    result 1 "valgrind $tag: Python subset"
  fi
fi

# --- 2. -X dev, PYTHONMALLOC=debug ------------------------------------------------------------
echo "==> python -X dev, PYTHONMALLOC=debug: the whole suite, every interpreter"
declare -A kinds=()
for py in "${pythons[@]}"; do
  kind=$(build_kind "$py")
  if [ -z "${kinds[$kind]:-}" ]; then
    scripts/build.sh "$py" >"$log/build-$kind.txt" 2>&1 && kinds[$kind]=ok || kinds[$kind]=fail
  fi
done
devrun() {
  local py=$1 tag kind vpy
  tag=$(py_tag "$py"); kind=$(build_kind "$py"); vpy=$(ensure_venv "$py")
  PYTHONMALLOC=debug PYTHONPATH="build/$kind" timeout 400 "$vpy" -X dev -m pytest -q \
    -p no:cacheprovider python_tests >"$log/dev-$tag.txt" 2>&1
  echo $? >"$log/dev-$tag.rc"
}
# The children source lib.sh themselves: its functions call one another (pyx, in_env, ...)
export -f devrun
export BK_ROOT log
printf '%s\n' "${pythons[@]}" | xargs -P 2 -I{} bash -c '. "$BK_ROOT/scripts/lib.sh"; devrun "$@"' _ {}
for py in "${pythons[@]}"; do
  tag=$(py_tag "$py")
  rc=$(cat "$log/dev-$tag.rc" 2>/dev/null || echo 1)
  # In-process only: a child interpreter's crash (test_shutdown.py) is quoted in pytest's
  # failure report on lines starting with "E ", and is a test failure make test reports.
  fatal=$(grep -vE '^E ' "$log/dev-$tag.txt" | grep -cE 'Fatal Python error|Debug memory block|bad ID|Segmentation fault|core dumped')
  tail -n 1 "$log/dev-$tag.txt" | sed "s/^/     $tag: /"
  [ "$fatal" -gt 0 ] && grep -vE '^E ' "$log/dev-$tag.txt" | grep -E -m 5 'Fatal Python error|Debug memory block|bad ID'
  # A failing test is a finding of the suite itself (make test reports it too); what this
  # step adds is the debug allocator's and dev mode's checks: those must find nothing.
  result $(( fatal > 0 || (rc != 0 && rc != 1) )) "-X dev + PYTHONMALLOC=debug $tag (pytest rc $rc)"
done

# --- 3. AddressSanitizer + UBSan on the C tests -------------------------------------------------
echo "==> C tests with -fsanitize=address,undefined (gcc)"
for py in "${pythons[@]}"; do
  tag=$(py_tag "$py"); kind=$(build_kind "$py")
  exe="$BK_ROOT/build/sanitize/asan-$tag/embed"; table="$(dirname "$exe")/requests.tsv"
  if ! build_embed "$py" "$exe" -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
      -fno-sanitize-recover=undefined >"$log/asan-build-$tag.txt" 2>&1 ||
     ! write_request_table "$py" "$table" 2>>"$log/asan-build-$tag.txt"; then
    tail -n 20 "$log/asan-build-$tag.txt"; result 1 "asan $tag: build"; continue
  fi
  home=$(py_home "$py")
  fails=0; total=0; : >"$log/asan-$tag.txt"
  for t in $("$exe" --list); do
    total=$((total + 1))
    PYTHONPATH="build/$kind" PYTHONHOME="$home" PYTHONMALLOC=malloc PYTHONDONTWRITEBYTECODE=1 \
      ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=97 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=98 \
      "$exe" --table "$table" "$t" >>"$log/asan-$tag.txt" 2>&1
    rc=$?
    if [ $rc -ne 0 ] || grep -q "ERROR: AddressSanitizer\|runtime error:" "$log/asan-$tag.txt"; then
      echo "     $tag $t: exit $rc"; fails=$((fails + 1))
      grep -m 3 -A 12 "ERROR: AddressSanitizer\|runtime error:" "$log/asan-$tag.txt"
    fi
  done
  echo "     $tag: $((total - fails))/$total C tests clean under ASan+UBSan"
  result "$fails" "asan+ubsan $tag: C tests"
done

# --- 4. ThreadSanitizer on a free-threaded 3.13t --------------------------------------------
# A 3.13t configured --with-thread-sanitizer (scripts/pythons.sh --tsan builds it once into
# $BK_CACHE), the GIL off: the C tests (c_tests/*.c built with -fsanitize=thread against its
# libpython) and python_tests/stress/test_threads.py. Passes on zero reports. Suppressions:
# scripts/tsan-cpython.supp, only reports inside CPython, each citing its CPython issue.
# bufferkit's module is the stable toolchain's build (build/cp313t): TSan sees its memory
# through CPython's instrumented side (critical sections, refcounts, the consumers' reads and
# writes of exported memory), not its own Rust code (that needs nightly and -Zbuild-std).
# pytest runs with -s: its capture of file descriptor 2 would swallow the reports.
echo "==> ThreadSanitizer: C tests and the thread stress on 3.13t, GIL off"
tsan_out=$(scripts/pythons.sh --tsan 2>"$log/tsan-pythons.txt")
tsan_py=$(printf '%s\n' "$tsan_out" | grep -v '^#' | head -n 1)
if [ -z "$tsan_py" ]; then
  echo "     skipped: no ThreadSanitizer 3.13t: $(printf '%s\n' "$tsan_out" | sed -n 's/^# skipped [^:]*: //p')"
else
  tsan_supp="$BK_ROOT/scripts/tsan-cpython.supp"
  tsan_opts="halt_on_error=0 exitcode=66 second_deadlock_stack=1 print_suppressions=1 suppressions=$tsan_supp"
  # The module: the cp313t build (built with the ordinary 3.13t when missing or stale): the
  # same ABI, the same file
  ft_py=$(find "$BK_CACHE"/cpython-3.13t/bin -name python3.13t 2>/dev/null | head -n 1)
  if [ -n "$ft_py" ] && scripts/build.sh "$ft_py" >"$log/tsan-build.txt" 2>&1; then
    exe="$BK_ROOT/build/sanitize/tsan-cp313t/embed"; table="$(dirname "$exe")/requests.tsv"
    if build_embed "$tsan_py" "$exe" -O1 -g -fno-omit-frame-pointer -fsanitize=thread \
        >"$log/tsan-embed-build.txt" 2>&1 &&
       TSAN_OPTIONS=report_bugs=0 write_request_table "$tsan_py" "$table" 2>>"$log/tsan-embed-build.txt"; then
      home=$(TSAN_OPTIONS=report_bugs=0 py_home "$tsan_py")
      fails=0; total=0; : >"$log/tsan-ctest.txt"
      for t in $("$exe" --list); do
        total=$((total + 1))
        TSAN_OPTIONS=$tsan_opts PYTHON_GIL=0 PYTHONPATH="build/cp313t" PYTHONHOME="$home" \
          PYTHONDONTWRITEBYTECODE=1 "$exe" --table "$table" "$t" >>"$log/tsan-ctest.txt" 2>&1
        rc=$?
        [ $rc -eq 0 ] || { echo "     tsan $t: exit $rc"; fails=$((fails + 1)); }
      done
      reports=$(grep -c '^WARNING: ThreadSanitizer' "$log/tsan-ctest.txt")
      grep -m 2 -A 25 '^WARNING: ThreadSanitizer' "$log/tsan-ctest.txt"
      echo "     cp313t-tsan: $((total - fails))/$total C tests passed, $reports ThreadSanitizer reports (log: ${log#$BK_ROOT/}/tsan-ctest.txt)"
      result $(( fails > 0 || reports > 0 )) "tsan cp313t: C tests"
    else
      tail -n 20 "$log/tsan-embed-build.txt"; result 1 "tsan cp313t: building the C tests"
    fi
    # The TSan interpreter's own venv (wheels only: pytest, numpy, hypothesis); pip's own
    # threads are not what is checked here
    tvenv="$BK_ROOT/build/venv/tsan-cp313t"
    if [ ! -x "$tvenv/bin/python" ]; then
      TSAN_OPTIONS=report_bugs=0 "$tsan_py" -m venv "$tvenv" >"$log/tsan-venv.txt" 2>&1 &&
        TSAN_OPTIONS=report_bugs=0 pip_install_wheels "$tvenv/bin/python" python_tests/requirements.txt 2>>"$log/tsan-venv.txt"
    fi
    TSAN_OPTIONS=$tsan_opts PYTHON_GIL=0 PYTHONPATH="build/cp313t" BUFFERKIT_THREAD_ITERATIONS=${BUFFERKIT_THREAD_ITERATIONS:-300} \
      "$tvenv/bin/python" -m pytest -q -s -p no:cacheprovider python_tests/stress/test_threads.py \
      >"$log/tsan-threads.txt" 2>&1
    rc=$?
    reports=$(grep -c '^WARNING: ThreadSanitizer' "$log/tsan-threads.txt")
    grep -m 2 -A 25 '^WARNING: ThreadSanitizer' "$log/tsan-threads.txt"
    echo "     cp313t-tsan: test_threads.py: $(tail -n 1 "$log/tsan-threads.txt"); $reports ThreadSanitizer reports (log: ${log#$BK_ROOT/}/tsan-threads.txt)"
    result $(( rc != 0 || reports > 0 )) "tsan cp313t: python_tests/stress/test_threads.py"
  else
    tail -n 20 "$log/tsan-build.txt"; result 1 "tsan cp313t: building bufferkit for 3.13t"
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
