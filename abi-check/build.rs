//! Build script of the ABI checks: the selected interpreter's configuration as `cfg`s (as the
//! library's build script gives them), then bindgen and the C compiler over that interpreter's
//! headers (`src/generate.rs`).
//!
//! The interpreter is the one pyo3-ffi selects: `PYO3_PYTHON`, else `python3` on `PATH`.

#[path = "src/generate.rs"]
mod generate;

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    let config = pyo3_build_config::get();
    // The test binary links the interpreter's libpython (pyo3-ffi), which a pyenv or venv
    // interpreter keeps off the loader's path.
    if let Some(lib_dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{lib_dir}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-changed=build.rs");
    generate::generate(config);
}
