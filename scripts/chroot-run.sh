#!/usr/bin/env bash
# chroot-run.sh ROOT DIR CMD...: run CMD in the chroot ROOT (scripts/pythons.sh makes
# $BK_CACHE/sid), working directory DIR. lib.sh's in_env calls it for an interpreter spec
# "sid:PATH". The mounts live in a mount namespace of this command's own (unshare), so they
# vanish with it and parallel runs do not share them:
#   /proc, /dev, /sys;
#   the repository at its own path (so every script and build path means the same inside);
#   the Rust toolchain, $HOME/.cargo and $HOME/.rustup (host binaries run on sid's newer C
#   library; the reverse does not hold, which is why the sid interpreters run in there);
#   /opt/wheels when it exists (a local wheel directory PIP_FIND_LINKS may name);
#   the host's CA bundle beside, not over, the chroot's own (its ca-certificates package
#   rewrites that one), named by SSL_CERT_FILE/PIP_CERT/REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE:
#   pip inside reaches the registry through this machine's TLS configuration.
set -euo pipefail
if [ -z "${BK_CHROOT_NS:-}" ]; then
  exec env BK_CHROOT_NS=1 unshare --mount --propagation private -- "$0" "$@"
fi
unset BK_CHROOT_NS
root=${1:?usage: chroot-run.sh ROOT DIR CMD...} dir=${2:?usage: chroot-run.sh ROOT DIR CMD...}
shift 2
[ -x "$root/bin/sh" ] || { echo "chroot-run.sh: no chroot at $root (scripts/pythons.sh makes it)" >&2; exit 1; }
repo=$(cd "$(dirname "$0")/.." && pwd)
for d in /dev /sys "$repo" "$HOME/.cargo" "$HOME/.rustup" /opt/wheels; do
  [ -d "$d" ] || continue
  mkdir -p "$root$d"
  mount --rbind "$d" "$root$d"
done
mount -t proc proc "$root/proc" 2>/dev/null || mount --rbind /proc "$root/proc"
ca=/etc/ssl/certs/ca-certificates.crt host_ca=/usr/local/share/bufferkit/host-ca.crt
if [ -f "$ca" ]; then
  mkdir -p "$root${host_ca%/*}"
  touch "$root$host_ca"
  mount --bind "$ca" "$root$host_ca"
  export SSL_CERT_FILE=$host_ca PIP_CERT=$host_ca REQUESTS_CA_BUNDLE=$host_ca CURL_CA_BUNDLE=$host_ca
fi
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
exec chroot "$root" /bin/sh -c 'cd "$0" && exec "$@"' "$dir" "$@"
