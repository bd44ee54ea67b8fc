# Shared shell helpers for the Makefile's scripts. Source it; it defines functions only.
# Layout of build outputs (documented in the README):
#   build/venv/<cpXY>/     one virtualenv per interpreter (pytest, numpy, hypothesis, maturin)
#   build/venv/fresh-*/    made anew by install_check.sh: the wheel (or `pip install .`) installed
#   build/wheels/<kind>/   the wheel of each build kind: abi3 (3.11+), cp39, cp310
#   build/<kind>/          that wheel unpacked: put it on PYTHONPATH to import bufferkit
#   build/target/<kind>/   cargo's target directory of that build kind

BK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Interpreters made by scripts/pythons.sh live here, outside the repository, so that a fresh
# clone on the same machine (CI) finds them made.
BK_CACHE=${BK_CACHE:-/var/cache/bufferkit}

# An interpreter spec is a PYTHON path on this machine, or ENV:PATH for an interpreter that runs
# in another environment: "sid:/usr/bin/python3.14" runs in the Debian sid chroot
# $BK_CACHE/sid. Every script takes a plain path and is run inside that environment by in_env,
# so none of them knows about chroots.

# A spec may end in "#abi3t": that interpreter, loading the abi3t build instead of the one
# build_kind picks for it (matrix.sh adds such a row for every CPython 3.15+).

# spec_env SPEC -> host | sid
spec_env() { case $1 in sid:*) echo sid ;; *) echo host ;; esac; }
# spec_exe SPEC -> the interpreter's path inside its environment
spec_exe() { local s=${1%%#*}; echo "${s#sid:}"; }
# spec_kind SPEC -> the build kind the spec asks for ("abi3t"), or nothing
spec_kind() { case $1 in *#abi3t) echo abi3t ;; esac; }

# in_env SPEC CMD...: run CMD in the environment of SPEC's interpreter, in the current
# directory (the repository is at the same path in every environment).
in_env() {
  local spec=$1; shift
  case $(spec_env "$spec") in
    sid) sid_run "$BK_CACHE/sid" "$PWD" "$@" ;;
    *) "$@" ;;
  esac
}

# sid_run ROOT DIR CMD...: CMD in the chroot ROOT, working directory DIR (scripts/chroot-run.sh
# says what is mounted there and why)
sid_run() { "$BK_ROOT/scripts/chroot-run.sh" "$@"; }

# pyx SPEC ARGS...: run SPEC's interpreter with ARGS, in its environment
pyx() { local spec=$1; shift; in_env "$spec" "$(spec_exe "$spec")" "$@"; }

# py_tag PYTHON -> cp311; with the ABI flags of debug (cp314d) and free-threaded (cp313t)
# builds, which need venvs and build products of their own; pp311 for PyPy 3.11
py_tag() {
  pyx "$1" -c 'import sys
v = sys.version_info
if sys.implementation.name == "pypy": print("pp%d%d" % v[:2])
else: print("cp%d%d%s" % (v[0], v[1], getattr(sys, "abiflags", "")))'
}

# py_minor PYTHON -> 11
py_minor() { pyx "$1" -c 'import sys; print(sys.version_info[1])'; }

# build_kind PYTHON -> the build of bufferkit PYTHON loads (refuses anything older than 3.9):
#   abi3     CPython 3.11+ with the GIL, debug builds included (one module for all of them)
#   cp39, cp310                     version-specific: the buffer slots are not in their limited API
#   cp313t, cp314t, ...             free-threaded builds: abi3 does not exist for them (PEP 703)
#   pp311                           PyPy: cpyext has no stable ABI
#   abi3t    only when asked (a spec ending in #abi3t, or BK_KIND=abi3t in the environment, which
#            is how matrix.sh tells the scripts it runs): the stable ABI for free-threaded builds
#            (PEP 803), which CPython 3.15+ loads with and without the GIL
build_kind() {
  local info major minor impl ft want=${BK_KIND:-}
  [ -n "$(spec_kind "$1")" ] && want=$(spec_kind "$1")
  info=$(pyx "$1" -c 'import sys, sysconfig
print(sys.version_info[0], sys.version_info[1], sys.implementation.name, int(bool(sysconfig.get_config_var("Py_GIL_DISABLED"))))') || return 1
  read -r major minor impl ft <<<"$info"
  if [ "$major" != 3 ] || [ "$minor" -lt 9 ]; then
    echo "bufferkit needs CPython 3.9 or newer; $1 is $(pyx "$1" -V 2>&1): before 3.9, PyType_FromSpec silently ignores buffer slots" >&2
    return 1
  fi
  if [ "$want" = abi3t ]; then
    if [ "$impl" != cpython ] || [ "$minor" -lt 15 ]; then
      echo "the abi3t build needs CPython 3.15 or newer (PEP 803); $1 is $(pyx "$1" -V 2>&1)" >&2
      return 1
    fi
    echo abi3t
  elif [ -n "$want" ]; then
    echo "unknown build kind '$want' (BK_KIND or #KIND: only abi3t can be asked for)" >&2; return 1
  elif [ "$impl" = pypy ]; then echo "pp3$minor"
  elif [ "$ft" = 1 ]; then echo "cp3${minor}t"
  elif [ "$minor" -ge 11 ]; then echo abi3
  else echo "cp3$minor"; fi
}

# py_build_config SPEC -> what a C program embedding SPEC's interpreter needs from its own
# sysconfig, one value a line: include, platinclude, LIBDIR, LIBPL, LDVERSION, 1 if libpython is
# shared, LIBS and SYSLIBS, sys.base_prefix. The paths are those of SPEC's environment (its
# chroot for sid: specs): compile there.
py_build_config() {
  pyx "$1" -c 'import sys, sysconfig
v = sysconfig.get_config_var
p = sysconfig.get_paths()
print(p["include"]); print(p["platinclude"]); print(v("LIBDIR") or ""); print(v("LIBPL") or "")
print(v("LDVERSION") or v("VERSION")); print(int(bool(v("Py_ENABLE_SHARED"))))
print(" ".join(x for x in (v("LIBS"), v("SYSLIBS")) if x)); print(sys.base_prefix)'
}

# _py_build_config_line SPEC N -> line N (0-based) of py_build_config; fails unless all 8 came
_py_build_config_line() {
  local cfg
  mapfile -t cfg < <(py_build_config "$1")
  [ "${#cfg[@]}" -eq 8 ] || { echo "cannot read the sysconfig of $1" >&2; return 1; }
  echo "${cfg[$2]}"
}

# py_cflags SPEC -> the compiler flags for SPEC's headers (-I include -I platinclude)
py_cflags() {
  local inc plat
  inc=$(_py_build_config_line "$1" 0) && plat=$(_py_build_config_line "$1" 1) || return 1
  echo "-I$inc -I$plat"
}

# py_ldflags SPEC -> the linker flags for SPEC's libpython: the shared library with an rpath,
# or the static one with its system libraries and -export-dynamic (extension modules then
# resolve libpython's symbols from the executable). Works for debug, free-threaded and TSan
# builds alike (LDVERSION carries their ABI flags).
py_ldflags() {
  local cfg
  mapfile -t cfg < <(py_build_config "$1")
  [ "${#cfg[@]}" -eq 8 ] || { echo "cannot read the sysconfig of $1" >&2; return 1; }
  if [ "${cfg[5]}" = 1 ]; then
    echo "-L${cfg[2]} -lpython${cfg[4]} -Wl,-rpath,${cfg[2]}"
  else
    echo "-L${cfg[3]} -lpython${cfg[4]} ${cfg[6]} -Wl,-export-dynamic"
  fi
}

# py_home SPEC -> sys.base_prefix: PYTHONHOME for a program embedding SPEC's interpreter, so
# that it finds its standard library even when SPEC is a venv's python
py_home() { _py_build_config_line "$1" 7; }

# build_embed SPEC EXE GCC_FLAGS...: compile the C tests' program (every c_tests/*.c but the
# ABI probe) against SPEC's interpreter into EXE, with GCC_FLAGS (warnings, sanitizers)
build_embed() {
  local spec=$1 exe=$2 cflags ldflags srcs
  shift 2
  cflags=$(py_cflags "$spec") && ldflags=$(py_ldflags "$spec") || return 1
  mapfile -t srcs < <(ls "$BK_ROOT"/c_tests/*.c | grep -v '/abi_probe\.c$')
  mkdir -p "$(dirname "$exe")"
  # shellcheck disable=SC2086 # the flags are words
  gcc -std=c11 "$@" $cflags -DC_TESTS_DIR="\"$BK_ROOT/c_tests\"" "${srcs[@]}" -o "$exe" \
    $ldflags -lm
}

# write_request_table SPEC FILE: the expectation table of the C request tests, from the oracle
# of python_tests/ run by SPEC's interpreter (the interpreter decides some outcomes itself)
write_request_table() {
  pyx "$1" "$BK_ROOT/python_tests/oracle.py" c-table >"$2.tmp" && mv "$2.tmp" "$2"
}

# pyo3_gate PYTHON: export what pyo3-ffi needs to accept PYTHON. pyo3-ffi 0.30.1 refuses
# free-threaded builds before 3.14 (its MIN_FREE_THREADED_VERSION) unless
# UNSAFE_PYO3_SKIP_VERSION_CHECK=1; bufferkit skips that gate for 3.13t only, with
# `make abicheck` on the 3.13t headers as the evidence that pyo3-ffi's layouts are right there.
pyo3_gate() {
  if [ "$(build_kind "$1")" = cp313t ]; then export UNSAFE_PYO3_SKIP_VERSION_CHECK=1; fi
}

# valgrind_for SPEC -> the valgrind command line start for SPEC's environment (`make bench`'s
# callgrind, `make sanitize`'s memcheck). In the sid chroot, a copy of this machine's valgrind
# under build/vg (its launcher runs on sid's newer C library; the tools are static
# executables), found through VALGRIND_LIB. Non-zero, with the reason on stderr, when there is
# none to copy.
valgrind_for() {
  if [ "$(spec_env "$1")" = host ]; then echo valgrind; return; fi
  local real lib d vg="$BK_ROOT/build/vg"
  real=$(command -v valgrind.bin || command -v valgrind) || { echo "no valgrind on this machine" >&2; return 1; }
  for d in /usr/libexec/valgrind /usr/lib/x86_64-linux-gnu/valgrind /usr/lib/valgrind /usr/local/libexec/valgrind; do
    [ -x "$d/callgrind-amd64-linux" ] && { lib=$d; break; }
  done
  [ -n "${lib:-}" ] || { echo "no valgrind tools (callgrind-amd64-linux) found to copy into the chroot" >&2; return 1; }
  mkdir -p "$vg/lib"
  cp -u "$real" "$vg/valgrind.bin"
  cp -u "$lib"/callgrind-amd64-linux "$lib"/memcheck-amd64-linux "$lib"/vgpreload_core-amd64-linux.so \
    "$lib"/vgpreload_memcheck-amd64-linux.so "$lib"/default.supp "$vg/lib/"
  echo "env VALGRIND_LIB=$vg/lib $vg/valgrind.bin"
}

# find_pythons -> the newest installed patch release of each CPython 3.9 ... 3.13 (pyenv),
# one path a line, oldest minor first. Never hard-codes a patch version.
find_pythons() {
  local root minor best
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for minor in 9 10 11 12 13; do
    best=$(ls -d "$root"/versions/3."$minor".*/ 2>/dev/null | grep -E "/3\.$minor\.[0-9]+/$" | sort -V | tail -n 1)
    [ -n "$best" ] && [ -x "$best/bin/python3" ] && echo "${best%/}/bin/python3"
  done
}

# pip_install_wheels VENV_PYTHON REQUIREMENTS_FILE: install the requirements from wheels only,
# each at the newest version that has a wheel for this interpreter (numpy 2.5 has none for
# 3.13t, 2.4 has). A requirement with no wheel at any version (numpy on PyPy) is left out:
# said on stderr and named in the venv's .no-wheel file; the tests that need it skip, saying
# so. Building numpy from source would take longer than the whole test run.
pip_install_wheels() {
  local vpy=$1 req=$2 line name missing=()
  "$vpy" -m pip install -q --only-binary :all: -r "$req" >&2 && { rm -f "${vpy%/bin/*}/.no-wheel"; return 0; }
  while read -r line; do
    line=${line%%#*}; line=$(echo "$line" | xargs)
    [ -n "$line" ] || continue
    name=$(echo "$line" | sed -E 's/[ <>=!~;\[].*//')
    if ! "$vpy" -m pip install -q --only-binary :all: "$line" >&2; then
      echo "pip_install_wheels: no wheel of $name (or of a dependency) for $("$vpy" -V 2>&1 | head -n 1): left out" >&2
      missing+=("$name")
    fi
  done <"$req"
  printf '%s\n' "${missing[@]}" >"${vpy%/bin/*}/.no-wheel"
}

# ensure_venv PYTHON -> prints the venv's python; creates/refreshes it when requirements change
ensure_venv() {
  local py=$1 tag venv stamp want
  tag=$(py_tag "$py") || return 1
  venv="$BK_ROOT/build/venv/$tag"
  stamp="$venv/.requirements"
  want=$(cat "$BK_ROOT/python_tests/requirements.txt")
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> creating $venv" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv" >&2 || return 1
    "$venv/bin/python" -m pip install -q --upgrade pip >&2 || return 1
    pip_install_wheels "$venv/bin/python" "$BK_ROOT/python_tests/requirements.txt" || return 1
    printf '%s' "$want" > "$stamp"
  fi
  echo "$venv/bin/python"
}
