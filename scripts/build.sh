#!/usr/bin/env bash
# build.sh PYTHON: build bufferkit for PYTHON through the PEP 517 backend (the same path as
# `pip wheel .`), then unpack the wheel into build/<kind>/. Prints that directory.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
py=${1:?usage: build.sh PYTHON}
kind=$(build_kind "$py")
vpy=$(ensure_venv "$py")
out="$BK_ROOT/build/wheels/$kind"
rm -rf "$out" && mkdir -p "$out"
echo "==> building bufferkit ($kind) with $("$py" -V 2>&1)" >&2
(cd "$BK_ROOT" && PATH="$(dirname "$vpy"):$PATH" CARGO_TARGET_DIR="$BK_ROOT/build/target/$kind" \
  "$vpy" -m pip wheel . --no-deps --no-build-isolation -q -w "$out" >&2)
whl=$(ls "$out"/bufferkit-*.whl)
dest="$BK_ROOT/build/$kind"
rm -rf "$dest" && mkdir -p "$dest"
"$vpy" -m zipfile -e "$whl" "$dest"
echo "$dest"
