//! Build script of the shipped module: the selected interpreter's configuration as `cfg`s
//! (`Py_3_13`, `Py_LIMITED_API`, `Py_GIL_DISABLED`, ...), as the library's build script gives
//! them; the library's build script refuses interpreters older than 3.9.

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-changed=build.rs");
}
