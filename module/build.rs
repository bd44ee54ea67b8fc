//! Build script of the shipped module: the selected interpreter's configuration as `cfg`s
//! (`Py_3_13`, `Py_LIMITED_API`, `Py_GIL_DISABLED`, ...), as the library's build script gives
//! them; the library's build script refuses interpreters older than 3.9.

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    // `abi3t` (PEP 803): the library's build script gives it the same name.
    println!("cargo:rustc-check-cfg=cfg(abi3t)");
    if matches!(
        pyo3_build_config::get().target_abi().kind(),
        pyo3_build_config::PythonAbiKind::Stable(pyo3_build_config::StableAbi::Abi3t)
    ) {
        println!("cargo:rustc-cfg=abi3t");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=PYO3_CONFIG_FILE");
    println!("cargo:rerun-if-changed=build.rs");
}
