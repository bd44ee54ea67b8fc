#!/usr/bin/env bash
# abi3check.sh [PYTHON...]: check that the abi3 wheel links only the stable ABI of its floor,
# CPython 3.11, two independent ways:
#   1. abi3audit (from PyPI, installed here into the venv of the oldest 3.11+ interpreter) on
#      the wheel, with --strict;
#   2. the undefined dynamic symbols of bufferkit/_bufferkit.abi3.so (`nm -D --undefined-only`)
#      whose names start with Py or _Py, each looked up in SYMBOL_NAMES of
#      Lib/test/test_stable_abi_ctypes.py (the stable ABI's symbol list, generated from
#      Misc/stable_abi.toml) of every 3.11+ interpreter given (default: every CPython 3.11+
#      that find_pythons lists; pyenv's 3.11 is added when none was given); a symbol missing
#      from 3.11's list fails even if a later list has it (it would not load on 3.11).
# The wheel is the one in build/wheels/abi3/ (made by scripts/build.sh PYTHON3.11+), or
# WHEEL=path. Prints every check, then `abi3check: N passed, M failed` as the last line; exits
# non-zero when anything failed.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT"
export LC_ALL=C # sort and comm must agree on the order (byte order, as Python's sorted())

passed=0 failed=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() { echo "abi3check: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }

candidates=("$@")
[ ${#candidates[@]} -gt 0 ] || mapfile -t candidates < <(find_pythons)
pythons=()
for py in "${candidates[@]}"; do
  # Interpreter specs (lib.sh) are welcome; free-threaded builds and PyPy have no stable ABI,
  # and a debug build's list is its release build's.
  kind=$(build_kind "$py") || { fail "cannot run $py"; continue; }
  [ "$kind" = abi3 ] && [[ "$(py_tag "$py")" != *d ]] && pythons+=("$py")
done
[ ${#pythons[@]} -gt 0 ] || { fail "no CPython 3.11+ interpreter to read the stable ABI from"; finish; }
# The floor's list is needed even when no 3.11 was named: take pyenv's 3.11 then.
has_floor=0
for py in "${pythons[@]}"; do [ "$(py_minor "$py")" = 11 ] && has_floor=1; done
if [ "$has_floor" = 0 ]; then
  floor_py=$(find_pythons | while read -r py; do [ "$(py_minor "$py")" = 11 ] && echo "$py"; done | head -n 1)
  [ -n "$floor_py" ] && pythons=("$floor_py" "${pythons[@]}")
fi

whl=${WHEEL:-}
if [ -z "$whl" ]; then
  mapfile -t wheels < <(ls "$BK_ROOT"/build/wheels/abi3/bufferkit-*-abi3-*.whl 2>/dev/null)
  if [ ${#wheels[@]} -ne 1 ]; then
    fail "expected one abi3 wheel in build/wheels/abi3/, found ${#wheels[@]} (build it with scripts/build.sh ${pythons[0]})"
    finish
  fi
  whl=${wheels[0]}
fi
echo "==> $(basename "$whl")"

# The oldest 3.11+ interpreter's venv runs abi3audit and unpacks the wheel.
vpy=$(ensure_venv "${pythons[0]}") || { fail "cannot make the venv of ${pythons[0]}"; finish; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bufferkit-abi3check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# 1. abi3audit
if ! "$vpy" -m abi3audit --version >/dev/null 2>&1; then
  echo "==> installing abi3audit into $(dirname "$(dirname "$vpy")")"
  "$vpy" -m pip install -q abi3audit || { fail "pip install abi3audit"; finish; }
fi
if "$vpy" -m abi3audit --strict --verbose --summary "$whl" >"$tmp/abi3audit.txt" 2>&1; then
  sed 's/^/    /' "$tmp/abi3audit.txt"
  pass "abi3audit --strict: no ABI violation and no ABI version mismatch"
else
  sed 's/^/    /' "$tmp/abi3audit.txt"
  fail "abi3audit --strict $(basename "$whl")"
fi

# 2. nm against each interpreter's stable ABI list
"$vpy" -m zipfile -e "$whl" "$tmp/wheel" || { fail "cannot unpack $whl"; finish; }
so=$(find "$tmp/wheel" -name '_bufferkit.abi3.so' | head -n 1)
[ -n "$so" ] || { fail "no _bufferkit.abi3.so in $(basename "$whl")"; finish; }
# `nm -D --undefined-only`: "   U name" or "   w name", maybe with @VERSION; keep Py*/_Py*
nm -D --undefined-only "$so" | awk '{print $NF}' | sed 's/@.*//' | grep -E '^_?Py' | sort -u >"$tmp/used.txt"
used=$(wc -l <"$tmp/used.txt")
if [ "$used" -eq 0 ]; then
  fail "nm found no Py/_Py symbol undefined in $so: not an extension module?"
  finish
fi
echo "==> $used Py/_Py symbols undefined in $(basename "$so")"

floor_seen=0
for py in "${pythons[@]}"; do
  tag=$(py_tag "$py")
  # SYMBOL_NAMES as this interpreter's own test module computes it for this platform; if the
  # module cannot be imported (no _testcapi), its literal tuples, with the conditional ones of
  # the features a Linux build has.
  if ! pyx "$py" - >"$tmp/stable-$tag.txt" <<'EOF'
import ast, os, sys, sysconfig
try:
    from test.test_stable_abi_ctypes import SYMBOL_NAMES as names
except Exception as e:
    path = os.path.join(sysconfig.get_paths()["stdlib"], "test", "test_stable_abi_ctypes.py")
    print(f"(cannot import test.test_stable_abi_ctypes: {e!r}; parsing {path})", file=sys.stderr)
    tree = ast.parse(open(path, encoding="utf-8").read())
    on = {"HAVE_FORK", "PY_HAVE_THREAD_NATIVE_ID"}
    names = ()
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SYMBOL_NAMES":
            names = ast.literal_eval(node.value)
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Subscript):
            if ast.literal_eval(node.test.slice) in on:
                for stmt in node.body:
                    if isinstance(stmt, ast.AugAssign) and getattr(stmt.target, "id", "") == "SYMBOL_NAMES":
                        names += ast.literal_eval(stmt.value)
if not names:
    sys.exit("SYMBOL_NAMES is empty")
sys.stdout.write("\n".join(sorted(set(names))) + "\n")
EOF
  then
    fail "$tag: cannot read the stable ABI list (Lib/test/test_stable_abi_ctypes.py) of $py"
    continue
  fi
  missing=$(comm -23 "$tmp/used.txt" "$tmp/stable-$tag.txt")
  if [ -z "$missing" ]; then
    pass "$tag: all $used symbols are in its stable ABI list ($(wc -l <"$tmp/stable-$tag.txt") symbols)"
  else
    fail "$tag: not in its stable ABI list: $(echo $missing)"
  fi
  [ "$(py_minor "$py")" = 11 ] && floor_seen=1 && cp "$tmp/stable-$tag.txt" "$tmp/stable-floor.txt"
done

if [ "$floor_seen" = 1 ]; then
  missing=$(comm -23 "$tmp/used.txt" "$tmp/stable-floor.txt")
  if [ -z "$missing" ]; then
    pass "floor 3.11: every symbol the abi3 module links is in the stable ABI of 3.11"
  else
    for s in $missing; do
      since=
      for py in "${pythons[@]}"; do
        tag=$(py_tag "$py")
        if [ -z "$since" ] && grep -qx "$s" "$tmp/stable-$tag.txt" 2>/dev/null; then since=" (stable ABI from $tag)"; fi
      done
      echo "    $s$since"
    done
    fail "floor 3.11: the symbols above are not in the stable ABI of 3.11"
  fi
else
  fail "floor 3.11: no CPython 3.11 among ${pythons[*]}: cannot check the abi3 floor"
fi
finish
