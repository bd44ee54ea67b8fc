#!/usr/bin/env bash
# pythons.sh [--tsan] [--list-only]: find, and where missing make, every interpreter `make test`
# runs on; print one interpreter spec a line (oldest first), and one line
#   # skipped NAME: WHY
# for each interpreter it could neither find nor make. A missing interpreter alone is not a
# failure: the matrix shows it as a skipped row. Progress and build output go to stderr.
#
# Specs (lib.sh's in_env runs a command in the environment a spec names):
#   /path/to/python3.12        an interpreter on this machine
#   sid:/usr/bin/python3.14    an interpreter inside the Debian sid chroot $BK_CACHE/sid
#
# Where the interpreters come from (issue 14):
#   CPython 3.9-3.13       pyenv, newest patch release of each minor (a glob, no patch versions)
#   CPython 3.14, 3.15     Debian sid's python3.X and python3.X-dbg, in a chroot made with
#   PyPy 3.11              `debootstrap --variant=minbase sid` (their glibc is newer than the
#                          host's, so they run there; host binaries run there too, not the reverse)
#   CPython 3.13t          Debian 13's python3.13 source package, configured --disable-gil and
#                          built on the host into $BK_CACHE/cpython-3.13t
#   3.14t, 3.15t, ...      wherever such an interpreter already exists (globs below)
#   --tsan                 also a 3.13t configured --with-thread-sanitizer ($BK_CACHE/cpython-3.13t-tsan),
#                          printed as the only spec (make sanitize asks for it)
#
# Everything made is cached outside the repository, in BK_CACHE (default /var/cache/bufferkit),
# so that a fresh clone on the same machine pays nothing the second time. Each product is made
# in a temporary directory and renamed into place when complete, with a stamp naming what it
# was made from: an interrupted run leaves nothing that a later run would mistake for done.
#   PYTHONS="spec ..."     use exactly these specs (no provisioning, no globbing)
#   BK_OFFLINE=1           make nothing; use only what exists
#   BK_DEBIAN_MIRROR=URL   this Debian mirror instead of the one /etc/apt/sources.list.d/ names
set -uo pipefail
. "$(dirname "$0")/lib.sh"

tsan=0 list_only=${BK_OFFLINE:-0}
for a in "$@"; do
  case $a in
    --tsan) tsan=1 ;;
    --list-only) list_only=1 ;;
    *) echo "usage: pythons.sh [--tsan] [--list-only]" >&2; exit 2 ;;
  esac
done

mkdir -p "$BK_CACHE" 2>/dev/null || true
# One provisioning run at a time per cache (the CI clone and a developer's tree share it).
if [ -w "$BK_CACHE" ]; then
  exec 8>"$BK_CACHE/.lock"
  flock 8
fi

skip() { echo "# skipped $1: $2"; echo "pythons.sh: skipped $1: $2" >&2; }
step() { echo "==> $*" >&2; }

# The sid chroot: the packages each interpreter needs, and what the columns need besides
# (gcc for the C tests and cc-rs, libclang for bindgen, pip's venv module, the test modules).
sid_packages() {
  local v
  for v in 3.14 3.15; do
    # _testbuffer/_testcapi: Debian ships them in libpython3.X-testsuite (release and debug)
    echo "python$v python$v-dev python$v-dbg python$v-venv libpython$v-testsuite"
  done
  echo pypy3 pypy3-dev pypy3-venv gcc libc6-dev libclang-dev pkg-config ca-certificates
}

# debian_mirror -> the machine's own configured Debian mirror (deb822 .sources or one-line
# lists), never a host named here.
debian_mirror() {
  local f
  [ -n "${BK_DEBIAN_MIRROR:-}" ] && { echo "$BK_DEBIAN_MIRROR"; return 0; }
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN{RS=""} /Suites:[^\n]*(bookworm|trixie|forky|sid|stable|testing|unstable)( |\n|$)/ && !/-security/ {
           if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { u = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", u); print u; exit } }' "$f"
  done | head -n 1 | grep . && return 0
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' | head -n 1 | grep .
}

# ensure_sid: the chroot with sid_packages installed; prints nothing, returns non-zero with the
# reason on stderr when it cannot be made.
ensure_sid() {
  local dir=$BK_CACHE/sid want mirror tmp t0
  want=$(sid_packages)
  [ "$(cat "$dir/.bufferkit-packages" 2>/dev/null)" = "$want" ] && return 0
  [ "$list_only" = 1 ] && { echo "no chroot at $dir and BK_OFFLINE is set" >&2; return 1; }
  [ "$(id -u)" = 0 ] || { echo "making a chroot needs root" >&2; return 1; }
  if [ ! -x "$dir/usr/bin/apt-get" ]; then
    mirror=$(debian_mirror) || { echo "no Debian mirror configured in /etc/apt/sources.list.d/" >&2; return 1; }
    if ! command -v debootstrap >/dev/null; then
      step "installing debootstrap"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2 ||
        { echo "apt-get install debootstrap failed" >&2; return 1; }
    fi
    tmp=$BK_CACHE/sid.tmp
    rm -rf "$tmp"
    step "debootstrap --variant=minbase sid $tmp $mirror (log: $BK_CACHE/debootstrap.log)"
    t0=$SECONDS
    debootstrap --variant=minbase sid "$tmp" "$mirror" >"$BK_CACHE/debootstrap.log" 2>&1 ||
      { tail -n 5 "$BK_CACHE/debootstrap.log" >&2
        echo "debootstrap failed: $(grep -m 1 '^E:' "$BK_CACHE/debootstrap.log" | cut -c4-) (log: $BK_CACHE/debootstrap.log)" >&2
        return 1; }
    rm -rf "$dir" && mv "$tmp" "$dir"
    step "debootstrap: $((SECONDS - t0)) s"
  fi
  # The configured mirror may serve a frozen copy of sid whose Release file is past its
  # Valid-Until date (this machine's is): accept it, in this chroot only.
  echo 'Acquire::Check-Valid-Until "false";' >"$dir/etc/apt/apt.conf.d/99bufferkit"
  step "installing into the sid chroot: $(echo $want) (log: $BK_CACHE/sid-apt.log)"
  t0=$SECONDS
  # shellcheck disable=SC2086
  sid_run "$dir" / env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends $(echo $want)" \
    >"$BK_CACHE/sid-apt.log" 2>&1 ||
    { tail -n 20 "$BK_CACHE/sid-apt.log" >&2; echo "apt-get install in the sid chroot failed (log: $BK_CACHE/sid-apt.log)" >&2; return 1; }
  step "sid packages: $((SECONDS - t0)) s"
  printf '%s' "$want" >"$dir/.bufferkit-packages"
}

# cpython_source DIR: unpack Debian 13's python3.13 source (the upstream tarball; Debian's
# patches are for Debian's own layout) into DIR. The download goes through an apt
# configuration of its own under BK_CACHE, so the host's apt sources are left as they are.
cpython_source() {
  local dest=$1 apt=$BK_CACHE/apt-trixie-src mirror tarball
  tarball=$(ls "$BK_CACHE"/src/python3.13_3.13.*.orig.tar.xz 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$tarball" ]; then
    mirror=$(debian_mirror) || { echo "no Debian mirror configured in /etc/apt/sources.list.d/" >&2; return 1; }
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$BK_CACHE/src"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$apt/sources.list"
    local o=(-o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
             -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache")
    step "apt-get source --download-only python3.13 (trixie)"
    { apt-get "${o[@]}" update -qq && (cd "$BK_CACHE/src" && apt-get "${o[@]}" source --download-only python3.13); } \
      >"$apt/apt.log" 2>&1 ||
      { cat "$apt/apt.log" >&2
        echo "downloading the python3.13 source package of trixie failed: $(grep -m 1 -E '^(W: Failed|E:)' "$apt/apt.log" | cut -c4-)" >&2
        return 1; }
    tarball=$(ls "$BK_CACHE"/src/python3.13_3.13.*.orig.tar.xz 2>/dev/null | sort -V | tail -n 1)
    [ -n "$tarball" ] || { echo "no python3.13 orig tarball after apt-get source" >&2; return 1; }
  fi
  mkdir -p "$dest" && tar -xJf "$tarball" -C "$dest" --strip-components=1 || return 1
  basename "$tarball"
}

# ensure_cpython_ft NAME CONFIGURE_ARGS...: a free-threaded CPython 3.13 in $BK_CACHE/NAME,
# built once. Prints the interpreter's path.
ensure_cpython_ft() {
  local name=$1; shift
  local prefix=$BK_CACHE/$name want have src tmp
  local exe=$prefix/bin/python3.13t
  local needed=(build-essential libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev
                libsqlite3-dev libreadline-dev uuid-dev libncurses-dev)
  want="configure $*"
  if [ -x "$exe" ] && [ "$(sed -n 2p "$prefix/.bufferkit-stamp" 2>/dev/null)" = "$want" ]; then
    echo "$exe"; return 0
  fi
  [ "$list_only" = 1 ] && { echo "not built yet ($prefix) and BK_OFFLINE is set" >&2; return 1; }
  [ -w "$BK_CACHE" ] || { echo "$BK_CACHE is not writable" >&2; return 1; }
  local missing=() p
  for p in "${needed[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "build dependencies missing (${missing[*]}) and installing them needs root" >&2; return 1; }
    step "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 ||
      { echo "apt-get install ${missing[*]} failed" >&2; return 1; }
  fi
  tmp=$BK_CACHE/$name.build
  rm -rf "$tmp" "$prefix.tmp"
  src=$(cpython_source "$tmp/src") || return 1
  local log=$BK_CACHE/$name.log t0=$SECONDS
  step "building $name from $src: ./configure $* (log: $log)"
  # The prefix is final from the start (the rpath and sysconfig name it); it is installed
  # through DESTDIR and renamed into place only when make install succeeded.
  if ! (cd "$tmp/src" &&
        ./configure --prefix="$prefix" --enable-shared LDFLAGS="-Wl,-rpath,$prefix/lib" "$@" &&
        make -j"$(nproc)" &&
        make install DESTDIR="$tmp/root") >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "building $name failed (log: $log)" >&2
    return 1
  fi
  # The test modules the suite relies on (CPython's reference exporter and its C API helpers)
  local mod
  for mod in _testbuffer _testcapi; do
    LD_LIBRARY_PATH="$tmp/root$prefix/lib" PYTHONHOME="$tmp/root$prefix" \
      "$tmp/root$exe" -c "import $mod" >&2 || { echo "$name built without $mod (log: $log)" >&2; return 1; }
  done
  rm -rf "$prefix" && mv "$tmp/root$prefix" "$prefix" || return 1
  printf '%s\n%s\n' "$src" "$want" >"$prefix/.bufferkit-stamp"
  rm -rf "$tmp"
  step "$name built in $((SECONDS - t0)) s"
  echo "$exe"
}

# The default configuration of each free-threaded build. Optimised, no pydebug: the suite
# checks bufferkit, not CPython's assertions (the -dbg builds of 3.14/3.15 do that).
FT_ARGS=(--disable-gil --with-ensurepip=install)
TSAN_ARGS=(--disable-gil --with-thread-sanitizer --with-ensurepip=install)

if [ "$tsan" = 1 ]; then
  if exe=$(ensure_cpython_ft cpython-3.13t-tsan "${TSAN_ARGS[@]}" 2>"$BK_CACHE/.why-tsan"); then
    echo "$exe"
  else
    cat "$BK_CACHE/.why-tsan" >&2; skip "cp313t-tsan" "$(tail -n 1 "$BK_CACHE/.why-tsan")"
  fi
  exit 0
fi

if [ -n "${PYTHONS:-}" ]; then
  for p in $PYTHONS; do echo "$p"; done
  exit 0
fi

# 1. pyenv's CPython 3.9-3.13
find_pythons

# 2. 3.13t, built here
if exe=$(ensure_cpython_ft cpython-3.13t "${FT_ARGS[@]}" 2>"$BK_CACHE/.why-313t"); then
  echo "$exe"
else
  cat "$BK_CACHE/.why-313t" >&2; skip cp313t "$(tail -n 1 "$BK_CACHE/.why-313t")"
fi

# 3. any other free-threaded interpreter already on this machine (3.14t, 3.15t, ...)
for exe in $(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.1[4-9]*t/bin/python3.1[4-9]t \
                   /usr/local/bin/python3.1[4-9]t /usr/bin/python3.1[4-9]t \
                   "$BK_CACHE"/cpython-3.1[4-9]t/bin/python3.1[4-9]t 2>/dev/null | sort -uV); do
  [ -x "$exe" ] && echo "$exe"
done

# 4. the sid chroot: 3.14, 3.15, their debug builds, PyPy 3.11, and any free-threaded build
if ensure_sid 2>"$BK_CACHE/.why-sid"; then
  cat "$BK_CACHE/.why-sid" >&2
  root=$BK_CACHE/sid
  for v in 3.14 3.15; do
    for exe in /usr/bin/python$v /usr/bin/python$v-dbg; do
      if [ -x "$root$exe" ]; then echo "sid:$exe"; else skip "$(basename "$exe")" "not installed in $root"; fi
    done
  done
  for exe in $(cd "$root" && ls -d usr/bin/python3.1[4-9]t 2>/dev/null); do echo "sid:/$exe"; done
  if [ -x "$root/usr/bin/pypy3" ]; then echo "sid:/usr/bin/pypy3"; else skip pypy3 "not installed in $root"; fi
else
  cat "$BK_CACHE/.why-sid" >&2
  why=$(tail -n 1 "$BK_CACHE/.why-sid")
  for n in python3.14 python3.14-dbg python3.15 python3.15-dbg pypy3; do skip "$n" "no sid chroot: $why"; done
fi
exit 0
