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

# spec_env SPEC -> host | sid
spec_env() { case $1 in sid:*) echo sid ;; *) echo host ;; esac; }
# spec_exe SPEC -> the interpreter's path inside its environment
spec_exe() { echo "${1#sid:}"; }

# in_env SPEC CMD...: run CMD in the environment of SPEC's interpreter, in the current
# directory (the repository is at the same path in every environment).
in_env() {
  local spec=$1; shift
  case $(spec_env "$spec") in
    sid) sid_run "$BK_CACHE/sid" "$PWD" "$@" ;;
    *) "$@" ;;
  esac
}

# sid_run ROOT DIR CMD...: CMD in the chroot ROOT, working directory DIR. The mounts live in a
# mount namespace of this command's own (unshare), so they vanish with it and parallel runs do
# not share them: /proc, /dev, /sys; the repository at its own path; the Rust toolchain
# (/root/.cargo, /root/.rustup: host binaries run on sid's newer C library); the host's CA
# bundle (pip, behind this machine's TLS configuration), DNS configuration and local wheels.
sid_run() {
  local root=$1 dir=$2; shift 2
  [ -x "$root/bin/sh" ] || { echo "sid_run: no chroot at $root (scripts/pythons.sh makes it)" >&2; return 1; }
  local binds=(/dev /sys "$BK_ROOT")
  local d
  for d in "$HOME/.cargo" "$HOME/.rustup" /opt/wheels; do [ -d "$d" ] && binds+=("$d"); done
  unshare --mount --propagation private -- bash -c '
    set -e
    root=$1 dir=$2; shift 2
    n=$1; shift
    for ((i = 0; i < n; i++)); do
      mkdir -p "$root$1"; mount --rbind "$1" "$root$1"; shift
    done
    mount -t proc proc "$root/proc" 2>/dev/null || mount --rbind /proc "$root/proc"
    # Beside, not over, the chroot'"'"'s own bundle (its ca-certificates package rewrites that one)
    ca=/etc/ssl/certs/ca-certificates.crt host_ca=/usr/local/share/bufferkit/host-ca.crt
    if [ -f $ca ]; then
      mkdir -p "$root${host_ca%/*}"; touch "$root$host_ca"; mount --bind $ca "$root$host_ca"
      export SSL_CERT_FILE=$host_ca PIP_CERT=$host_ca REQUESTS_CA_BUNDLE=$host_ca CURL_CA_BUNDLE=$host_ca
    fi
    cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    exec chroot "$root" /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$dir" "$@"
  ' bk-sid "$root" "$dir" "${#binds[@]}" "${binds[@]}" "$@"
}

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
build_kind() {
  local info major minor impl ft
  info=$(pyx "$1" -c 'import sys, sysconfig
print(sys.version_info[0], sys.version_info[1], sys.implementation.name, int(bool(sysconfig.get_config_var("Py_GIL_DISABLED"))))') || return 1
  read -r major minor impl ft <<<"$info"
  if [ "$major" != 3 ] || [ "$minor" -lt 9 ]; then
    echo "bufferkit needs CPython 3.9 or newer; $1 is $(pyx "$1" -V 2>&1): before 3.9, PyType_FromSpec silently ignores buffer slots" >&2
    return 1
  fi
  if [ "$impl" = pypy ]; then echo "pp3$minor"
  elif [ "$ft" = 1 ]; then echo "cp3${minor}t"
  elif [ "$minor" -ge 11 ]; then echo abi3
  else echo "cp3$minor"; fi
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
