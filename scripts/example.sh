#!/usr/bin/env bash
# example.sh PYTHON: build the example crate examples/waveform/ for PYTHON and run its tests.
#
# The crate is what a Rust user of bufferkit copies, so it is built the way they would build
# it: plain `cargo build --release`, PYO3_PYTHON naming the interpreter, and
# PYO3_BUILD_EXTENSION_MODULE=1 so that the module does not link libpython. The cdylib
# (libwaveform.so) is copied to build/example/<cpXY>/waveform<EXT_SUFFIX>, which the tests
# import through PYTHONPATH. Cargo's target directory: build/target/example/<cpXY>/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT"
py=${1:?usage: example.sh PYTHON}
build_kind "$py" >/dev/null  # refuses interpreters bufferkit cannot serve
pyo3_gate "$py"
tag=$(py_tag "$py")
vpy=$(ensure_venv "$py")
target="$BK_ROOT/build/target/example/$tag"
out="$BK_ROOT/build/example/$tag"
echo "==> building examples/waveform for $("$py" -V 2>&1)" >&2
PYO3_PYTHON="$py" PYO3_BUILD_EXTENSION_MODULE=1 \
  cargo build --release --manifest-path examples/waveform/Cargo.toml --target-dir "$target" >&2
suffix=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
rm -rf "$out" && mkdir -p "$out"
cp "$target/release/libwaveform.so" "$out/waveform$suffix"
echo "==> $tag: pytest examples/waveform" >&2
PYTHONPATH="$out" "$vpy" -m pytest -q -p no:cacheprovider examples/waveform/test_waveform.py
