#!/usr/bin/env bash
# typecheck.sh PYTHON: check bufferkit's type stubs (python/bufferkit/__init__.pyi) for PYTHON,
# as the wheel ships them (build/<kind>/, rebuilt if its Python files differ from python/):
#   1. mypy --strict on python_tests/typing/example.py, which uses every public name, and on
#      the package itself (the stub and bufferkit/__main__.py);
#   2. the example itself runs (its asserts restate what the stub promises);
#   3. python -m mypy.stubtest bufferkit: the stub against the imported module.
# Installs python_tests/typing/requirements.txt (mypy, typing_extensions) into PYTHON's venv.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT"
py=${1:?usage: typecheck.sh PYTHON}
kind=$(build_kind "$py")
tag=$(py_tag "$py")
vpy=$(ensure_venv "$py")
pip_install_wheels "$vpy" python_tests/typing/requirements.txt
# Where mypy cannot be had or cannot run, the column is skipped (exit 3), saying why: mypy
# 1.19+ depends on compiled packages with no 3.13t wheel, and on PyPy it needs the _symtable
# module PyPy does not have. The stub is the same file every other row checks.
if ! why=$("$vpy" -c 'import mypy.api, mypy.stubtest' 2>&1); then
  why=$(echo "$why" | tail -n 1)
  if grep -qx mypy "${vpy%/bin/*}/.no-wheel" 2>/dev/null; then
    why="pip finds no mypy>=1.19 whose compiled dependencies all have a wheel for it"
  fi
  echo "typecheck $tag: skipped: mypy cannot run on $("$vpy" -V 2>&1 | head -n 1): $why"
  exit 3
fi
if ! diff -rq -x '*.so' -x __pycache__ python/bufferkit "build/$kind/bufferkit" >/dev/null 2>&1; then
  scripts/build.sh "$py" >/dev/null
fi
typing=python_tests/typing
allow=()
if [ "$(py_minor "$py")" -lt 12 ]; then
  allow=(--allowlist "$BK_ROOT/$typing/stubtest-allowlist-pre312.txt")
fi
fail=0
echo "==> $tag: mypy --strict $typing/example.py build/$kind/bufferkit"
MYPYPATH="build/$kind" "$vpy" -m mypy --strict --cache-dir "build/mypy-cache/$tag" \
  "$typing/example.py" "build/$kind/bufferkit" || fail=1
echo "==> $tag: run $typing/example.py"
PYTHONPATH="build/$kind" "$vpy" "$typing/example.py" >/dev/null || fail=1
echo "==> $tag: stubtest bufferkit"
# stubtest imports bufferkit from build/<kind> and reads the stub next to it. It runs in a
# scratch directory because it leaves a .mypy_cache/ in its working directory.
scratch="build/mypy-cache/$tag-stubtest"
mkdir -p "$scratch"
(cd "$scratch" && PYTHONPATH="$BK_ROOT/build/$kind" "$vpy" -m mypy.stubtest bufferkit "${allow[@]}") \
  || fail=1
if [ $fail = 0 ]; then echo "typecheck $tag: passed"; else echo "typecheck $tag: FAILED"; fi
exit $fail
