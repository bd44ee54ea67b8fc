#!/usr/bin/env bash
# abi3tcheck.sh SPEC...: check that the abi3t wheel (build/wheels/abi3t/, made by
# `BK_KIND=abi3t scripts/build.sh PYTHON3.15`) is what PEP 803 asks of a stable-ABI module for
# free-threaded builds, against each CPython 3.15+ SPEC given (lib.sh specs; "#abi3t" suffixes
# are ignored, debug and free-threaded builds read their release/own lists alike):
#   1. the wheel is tagged abi3t and holds `bufferkit/_bufferkit.abi3t.so`, the suffix every
#      CPython 3.15+ imports (gh-146636; Debian's multiarch variant only where patched in);
#   2. the module's dynamic symbols: exactly one entry point, `PyModExport__bufferkit` (PEP 793;
#      `PyModuleDef` is opaque in abi3t, so there is no `PyInit__bufferkit`);
#   3. every undefined Py/_Py symbol is in the interpreter's stable ABI list (SYMBOL_NAMES of
#      Lib/test/test_stable_abi_ctypes.py, generated from Misc/stable_abi.toml; 3.15 ships no
#      separate abi3t list: abi3t 3.15 and abi3 3.15 export the same symbols, PEP 803);
#   4. a second witness, the C compiler: each of those symbols is declared by that
#      interpreter's Python.h with `Py_TARGET_ABI3T=0x030f0000` (what a C extension built for
#      abi3t may use), checked by compiling a reference to each with gcc -Werror.
# Prints every check, then `abi3tcheck: N passed, M failed` as the last line; exits 3 (skip)
# when no 3.15+ interpreter was given.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT"
export LC_ALL=C

passed=0 failed=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() { echo "abi3tcheck: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }

pythons=()
for spec in "$@"; do
  spec=${spec%%#*}
  pyx "$spec" -c 'import sys; sys.exit(not (sys.implementation.name == "cpython" and sys.version_info >= (3, 15)))' 2>/dev/null \
    && pythons+=("$spec")
done
if [ ${#pythons[@]} -eq 0 ]; then
  echo "abi3tcheck: skipped: no CPython 3.15+ among the interpreters (abi3t starts at 3.15, PEP 803)"
  exit 3
fi

mapfile -t wheels < <(ls build/wheels/abi3t/bufferkit-*.whl 2>/dev/null)
[ ${#wheels[@]} -eq 1 ] || { fail "expected one wheel in build/wheels/abi3t/, found ${#wheels[@]}"; finish; }
whl=${wheels[0]}
echo "==> $(basename "$whl")"
tmp=$(mktemp -d "$BK_ROOT/build/.abi3tcheck.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# 1. tag and file name
case $(basename "$whl") in
  *-abi3.abi3t-* | *-abi3t-*) pass "wheel tag names abi3t" ;;
  *) fail "wheel tag does not name abi3t: $(basename "$whl")" ;;
esac
python3 -m zipfile -e "$whl" "$tmp/wheel" || { fail "cannot unpack $whl"; finish; }
so=$tmp/wheel/bufferkit/_bufferkit.abi3t.so
if [ -f "$so" ]; then pass "the module is bufferkit/_bufferkit.abi3t.so"
else fail "no bufferkit/_bufferkit.abi3t.so in the wheel: $(cd "$tmp/wheel" && echo bufferkit/*.so)"; finish; fi

# 2. entry points
defined=$(nm -D --defined-only "$so" | awk '{print $NF}' | grep -E '^(PyInit|PyModExport)' | sort | tr '\n' ' ')
if [ "$defined" = "PyModExport__bufferkit " ]; then pass "entry point: PyModExport__bufferkit only (PEP 793)"
else fail "entry points: '${defined}', expected exactly PyModExport__bufferkit"; fi
others=$(nm -D --defined-only "$so" | awk '{print $NF}' | grep -vE '^(PyModExport__bufferkit)$' | tr '\n' ' ')
if [ -z "$others" ]; then pass "no other exported symbol"
else fail "other exported symbols: $others"; fi

# 3. and 4., per interpreter
nm -D --undefined-only "$so" | awk '{print $NF}' | sed 's/@.*//' | grep -E '^_?Py' | sort -u >"$tmp/used.txt"
used=$(wc -l <"$tmp/used.txt")
[ "$used" -gt 0 ] || { fail "nm found no Py/_Py symbol undefined in the module"; finish; }
echo "==> $used Py/_Py symbols undefined in _bufferkit.abi3t.so"
for py in "${pythons[@]}"; do
  tag=$(py_tag "$py")
  if ! pyx "$py" -c 'from test.test_stable_abi_ctypes import SYMBOL_NAMES as n; print("\n".join(sorted(set(n))))' \
      >"$tmp/stable-$tag.txt" 2>"$tmp/stable-$tag.err"; then
    fail "$tag: cannot read SYMBOL_NAMES (libpython3.X-testsuite): $(tail -n 1 "$tmp/stable-$tag.err")"
    continue
  fi
  missing=$(comm -23 "$tmp/used.txt" "$tmp/stable-$tag.txt")
  if [ -z "$missing" ]; then pass "$tag: all $used symbols are in its stable ABI list ($(wc -l <"$tmp/stable-$tag.txt") symbols)"
  else fail "$tag: not in its stable ABI list: $(echo $missing)"; fi

  # One translation unit referring to every symbol; with -Werror an undeclared one fails it.
  {
    echo '#define Py_TARGET_ABI3T 0x030f0000'
    echo '#include <Python.h>'
    echo 'void *bufferkit_abi3t_uses[] = {'
    sed 's/.*/    (void *)\&&,/' "$tmp/used.txt"
    echo '};'
  } >"$tmp/uses-$tag.c"
  inc=$(pyx "$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  if in_env "$py" gcc -std=c11 -fsyntax-only -Werror -Wall -I"$inc" "$tmp/uses-$tag.c" >"$tmp/cc-$tag.txt" 2>&1; then
    pass "$tag: Python.h declares each of them under Py_TARGET_ABI3T=3.15 (gcc -Werror)"
  else
    grep -E "error" "$tmp/cc-$tag.txt" | head -n 20 | sed 's/^/    /'
    fail "$tag: symbols the abi3t API does not declare (above)"
  fi
done
finish
