#!/usr/bin/env bash
# stress.sh [PYTHON...]: the long runs of issue 6 (items 3 and 5) on every interpreter, two
# interpreters at a time (2 cores):
#   python_tests/stress/test_leaks.py    10**6 export/release cycles of each kind (Buffer,
#                                         View, Exporter subclass, slicing, ...): reference
#                                         counts and tracemalloc totals flat, RSS within 1 MiB
#   python_tests/stress/test_threads.py  4 threads x 10**5 iterations on shared Buffers/Views
#                                         (on a free-threaded 3.13t: with PYTHON_GIL=0)
# with BUFFERKIT_STRESS=1 (make test runs the same files with small counts). Each
# interpreter is limited to STRESS_TIMEOUT seconds (default 280). Prints one line per
# interpreter and "N passed, M failed" last; logs in build/logs/stress/.
set -uo pipefail
# The stateful lifetime machine explores new random sequences here (make test runs fixed ones).
export BUFFERKIT_RANDOM=1
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT"

pythons=("$@")
if [ ${#pythons[@]} -eq 0 ]; then
  mapfile -t pythons < <(find_pythons)
  # and the free-threaded interpreters of this machine scripts/pythons.sh made (3.13t), whose
  # runs have the GIL off
  while read -r spec; do
    [ "$(spec_env "$spec")" = host ] && [[ "$(build_kind "$spec")" == cp3*t ]] && pythons+=("$spec")
  done < <(BK_OFFLINE=1 scripts/pythons.sh 2>/dev/null | grep -v '^#')
fi
[ ${#pythons[@]} -gt 0 ] || { echo "no CPython 3.9-3.13 found" >&2; exit 1; }
log="$BK_ROOT/build/logs/stress"; mkdir -p "$log"

declare -A built=()
for py in "${pythons[@]}"; do
  kind=$(build_kind "$py") || exit 1
  if [ -z "${built[$kind]:-}" ]; then
    echo "==> building $kind"
    scripts/build.sh "$py" >"$log/build-$kind.txt" 2>&1 || { tail -n 20 "$log/build-$kind.txt"; exit 1; }
    built[$kind]=1
  fi
  ensure_venv "$py" >/dev/null || exit 1
done

stressrun() {
  local py=$1 tag kind vpy start
  tag=$(py_tag "$py"); kind=$(build_kind "$py"); vpy=$(ensure_venv "$py")
  [[ $kind == cp3*t ]] && export PYTHON_GIL=0
  start=$(date +%s)
  BUFFERKIT_STRESS=1 PYTHONPATH="build/$kind" timeout "${STRESS_TIMEOUT:-280}" \
    "$vpy" -m pytest -q -p no:cacheprovider --durations=5 python_tests/stress \
    >"$log/stress-$tag.txt" 2>&1
  echo "$? $(( $(date +%s) - start ))" >"$log/stress-$tag.rc"
}
# The children source lib.sh themselves: its functions call one another (pyx, in_env, ...)
export -f stressrun
export BK_ROOT log
echo "==> BUFFERKIT_STRESS=1 pytest python_tests/stress, two interpreters at a time"
printf '%s\n' "${pythons[@]}" | xargs -P 2 -I{} bash -c '. "$BK_ROOT/scripts/lib.sh"; stressrun "$@"' _ {}

passed=0 failed=0
for py in "${pythons[@]}"; do
  tag=$(py_tag "$py")
  read -r rc secs <"$log/stress-$tag.rc" 2>/dev/null || { rc=1; secs=?; }
  summary=$(tail -n 1 "$log/stress-$tag.txt")
  if [ "$rc" = 0 ]; then
    passed=$((passed + 1)); echo "pass  $tag (${secs}s): $summary"
  else
    failed=$((failed + 1))
    [ "$rc" = 124 ] && summary="timed out after ${STRESS_TIMEOUT:-280}s"
    echo "FAIL  $tag (${secs}s): $summary"
    grep -E '^E  |^FAILED' "$log/stress-$tag.txt" | head -n 20
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
