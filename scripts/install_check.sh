#!/usr/bin/env bash
# install_check.sh PYTHON [--from-source]: install bufferkit into a fresh virtualenv of PYTHON the
# way a user does, check what was installed, and run the Python test suite against that install
# (no PYTHONPATH: the tests import bufferkit from the venv's site-packages).
#   default        `pip install` of the wheel that build.sh made with `pip wheel .`
#                  (build/wheels/<kind>/: the one abi3 wheel for every 3.11+ interpreter)
#   --from-source  `pip install .` from the repository, with pip's build isolation (maturin
#                  comes from the registry); the test suite is not run again, only the checks
# The venv is build/venv/fresh-<cpXY>[-src], deleted and made again on every run.
# On a free-threaded build (cp313t, ...) the wheel's import must leave the GIL disabled (a
# module without Py_mod_gil = Py_MOD_GIL_NOT_USED turns it back on), and the suite runs with
# PYTHON_GIL=0.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT"
py=${1:?usage: install_check.sh PYTHON [--from-source]}
mode=${2:-wheel}
kind=$(build_kind "$py")
tag=$(py_tag "$py")
venv="build/venv/fresh-$tag"
[ "$kind" = abi3t ] && venv="$venv-abi3t" tag="$tag-abi3t"
[ "$mode" = --from-source ] && venv="$venv-src"
rm -rf "$venv"
"$py" -m venv "$venv"
vpy="$BK_ROOT/$venv/bin/python"
"$vpy" -m pip install -q --upgrade pip
if [ "$mode" = --from-source ]; then
  echo "==> $tag: pip install . (fresh venv $venv)"
  # Cargo's target directory is kept between runs (a user's first install compiles for about
  # a minute); everything else is as a user runs it.
  CARGO_TARGET_DIR="$BK_ROOT/build/target/src-$tag" "$vpy" -m pip install -q .
else
  whl=$(ls build/wheels/"$kind"/bufferkit-*.whl)
  echo "==> $tag: pip install $whl (fresh venv $venv)"
  "$vpy" -m pip install -q "$whl"
  pip_install_wheels "$vpy" python_tests/requirements.txt
fi

# What was installed: the package from site-packages, with its stub and marker, and the
# native module of the right kind (abi3 on 3.11+, version-specific before).
(cd /tmp && "$vpy" - "$kind" <<'EOF'
import importlib.util, pathlib, sys, sysconfig
import bufferkit, bufferkit._bufferkit as native
kind = sys.argv[1]
site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
pkg = pathlib.Path(bufferkit.__file__).resolve().parent
assert pkg.parent == site, f"bufferkit imported from {pkg}, not from {site}"
for name in ("py.typed", "__init__.pyi", "__main__.py"):
    assert (pkg / name).is_file(), f"{name} is not installed"
so = pathlib.Path(native.__file__).name
want = {"abi3": ".abi3.so", "abi3t": ".abi3t.so"}.get(kind, sysconfig.get_config_var("EXT_SUFFIX"))
assert want in so, f"native module {so}: expected {want!r}"
assert bufferkit.Buffer.__module__ == "bufferkit"
b = bufferkit.Buffer(8)
memoryview(b)[0] = 7
assert bytes(b)[0] == 7
print(f"installed: {pkg} ({so})")
import hashlib
with open(native.__file__, "rb") as f:
    print(f"native module sha256: {hashlib.sha256(f.read()).hexdigest()}")
EOF
)
"$vpy" -m bufferkit inspect 'bytearray(b"abc")' >/dev/null

echo "install_check $tag ($mode): installed as expected"
[ "$mode" = --from-source ] && exit 0
gil=0
if [[ "$kind" == cp3*t ]]; then
  # Free-threaded for real: importing bufferkit must not switch the GIL back on (CPython does,
  # with a RuntimeWarning, for a module that does not declare Py_mod_gil = Py_MOD_GIL_NOT_USED).
  echo "==> $tag: importing bufferkit leaves the GIL disabled"
  if (cd /tmp && env -u PYTHON_GIL "$vpy" -W error::RuntimeWarning -c '
import sys, bufferkit, bufferkit._bufferkit
assert not sys._is_gil_enabled(), "importing bufferkit enabled the GIL"
print("GIL disabled after import bufferkit")'); then :; else
    echo "install_check $tag: FAILED: importing bufferkit enables the GIL (Py_mod_gil)"; gil=1
  fi
  # The suite runs with the GIL forced off even so, to test the code without it.
  export PYTHON_GIL=0
fi
if [[ "$kind" == pp* ]]; then
  # PyPy (cpyext): the rest of the suite needs _testbuffer (its oracle), ctypes.pythonapi (its
  # raw Py_buffer reader) and numpy, none of which PyPy has; python_tests/pypy needs none of
  # them and pins where cpyext's consumers differ from CPython's (its module doc lists them).
  echo "==> $tag: python_tests/pypy against the installed wheel (no conftest)"
  "$vpy" -m pytest -q -p no:cacheprovider --noconftest python_tests/pypy
  exit
fi
echo "==> $tag: python tests against the installed wheel${PYTHON_GIL:+ (PYTHON_GIL=$PYTHON_GIL)}"
rc=0
"$vpy" -m pytest -q -p no:cacheprovider python_tests || rc=$?
[ "$gil" = 0 ] || echo "install_check $tag: FAILED: importing bufferkit enables the GIL (see above)"
[ "$rc" = 0 ] && [ "$gil" = 0 ]   # the last line: pytest's summary, or the GIL failure
