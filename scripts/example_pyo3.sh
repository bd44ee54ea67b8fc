#!/usr/bin/env bash
# example_pyo3.sh PYTHON: build the PyO3 example crate examples/pyo3-samples/ for PYTHON and run
# its tests.
#
# Built as a PyO3 user builds an extension module: plain `cargo build --release`, PYO3_PYTHON
# naming the interpreter and PYO3_BUILD_EXTENSION_MODULE=1 (the module does not link
# libpython). The cdylib (libsamples.so) is copied to build/example-pyo3/<cpXY>/samples<EXT_SUFFIX>,
# which the tests import through PYTHONPATH. Cargo's target directory:
# build/target/example-pyo3/<cpXY>/. PyO3 0.30 serves CPython 3.9 and later.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BK_ROOT"
py=${1:?usage: example_pyo3.sh PYTHON}
build_kind "$py" >/dev/null  # refuses interpreters bufferkit cannot serve
tag=$(py_tag "$py")
vpy=$(ensure_venv "$py")
target="$BK_ROOT/build/target/example-pyo3/$tag"
out="$BK_ROOT/build/example-pyo3/$tag"
echo "==> building examples/pyo3-samples for $("$py" -V 2>&1)" >&2
PYO3_PYTHON="$py" PYO3_BUILD_EXTENSION_MODULE=1 \
  cargo build --release --manifest-path examples/pyo3-samples/Cargo.toml --target-dir "$target" >&2
suffix=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
rm -rf "$out" && mkdir -p "$out"
cp "$target/release/libsamples.so" "$out/samples$suffix"
echo "==> $tag: pytest examples/pyo3-samples" >&2
PYTHONPATH="$out" "$vpy" -m pytest -q -p no:cacheprovider examples/pyo3-samples/test_samples.py
