#!/usr/bin/env bash
# build.sh PYTHON: build bufferkit for PYTHON through the PEP 517 backend (the same path as
# `pip wheel .`), then unpack the wheel into build/<kind>/. Prints that directory.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
py=${1:?usage: build.sh PYTHON}
kind=$(build_kind "$py")
pyo3_gate "$py"
vpy=$(ensure_venv "$py")
out="$BK_ROOT/build/wheels/$kind"
# One build of a kind at a time: cargo locks its target directory, but maturin's staging
# directory inside it is not covered by that lock.
exec 9>"$BK_ROOT/build/.lock-$kind"
flock 9
stage=$(mktemp -d "$BK_ROOT/build/.stage-$kind.XXXXXX")
trap 'rm -rf "$stage"' EXIT
echo "==> building bufferkit ($kind) with $("$py" -V 2>&1)" >&2
# The backend adds `--features abi3` on CPython 3.11+ unless features are given; the abi3t build
# asks for its own (maturin 1.14+ tags the wheel abi3.abi3t and names the module .abi3t.so).
features=()
[ "$kind" = abi3t ] && features=(MATURIN_PEP517_ARGS="--features abi3t")
(cd "$BK_ROOT" && env "${features[@]}" PATH="$(dirname "$vpy"):$PATH" CARGO_TARGET_DIR="$BK_ROOT/build/target/$kind" \
  "$vpy" -m pip wheel . --no-deps --no-build-isolation -q -w "$stage/wheel" >&2)
whl=$(ls "$stage"/wheel/bufferkit-*.whl)
"$vpy" -m zipfile -e "$whl" "$stage/unpacked"
# Swap the new build in with renames, so that a test run importing from build/<kind> while
# this runs sees the old or the new tree, never a half-written one.
dest="$BK_ROOT/build/$kind"
mkdir -p "$out" && rm -f "$out"/bufferkit-*.whl && mv "$whl" "$out/"
[ -d "$dest" ] && mv "$dest" "$stage/old"
mv "$stage/unpacked" "$dest"
echo "$dest"
