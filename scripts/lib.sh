# Shared shell helpers for the Makefile's scripts. Source it; it defines functions only.
# Layout of build outputs (documented in the README):
#   build/venv/<cpXY>/     one virtualenv per interpreter (pytest, numpy, hypothesis, maturin)
#   build/venv/fresh-*/    made anew by install_check.sh: the wheel (or `pip install .`) installed
#   build/wheels/<kind>/   the wheel of each build kind: abi3 (3.11+), cp39, cp310
#   build/<kind>/          that wheel unpacked: put it on PYTHONPATH to import bufferkit
#   build/target/<kind>/   cargo's target directory of that build kind

BK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# py_tag PYTHON -> cp311
py_tag() { "$1" -c 'import sys; print("cp%d%d" % sys.version_info[:2])'; }

# py_minor PYTHON -> 11
py_minor() { "$1" -c 'import sys; print(sys.version_info[1])'; }

# build_kind PYTHON -> abi3 | cp39 | cp310 (refuses anything older than 3.9)
build_kind() {
  local minor
  minor=$(py_minor "$1") || return 1
  if [ "$("$1" -c 'import sys; print(sys.version_info[0])')" != 3 ] || [ "$minor" -lt 9 ]; then
    echo "bufferkit needs CPython 3.9 or newer; $1 is $("$1" -V 2>&1): before 3.9, PyType_FromSpec silently ignores buffer slots" >&2
    return 1
  fi
  if [ "$minor" -ge 11 ]; then echo abi3; else py_tag "$1"; fi
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
    "$venv/bin/python" -m pip install -q -r "$BK_ROOT/python_tests/requirements.txt" >&2 || return 1
    printf '%s' "$want" > "$stamp"
  fi
  echo "$venv/bin/python"
}
