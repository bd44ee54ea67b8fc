//! Build script: turns the selected interpreter's configuration into `cfg`s and refuses
//! interpreters whose `PyType_Spec` ignores buffer slots.
//!
//! The interpreter is the one pyo3-ffi selects: `PYO3_PYTHON`, else `python3` on `PATH`.

/// The first CPython whose `PyType_FromSpec` honours `Py_bf_getbuffer`/`Py_bf_releasebuffer`
/// (bpo-40724, CPython 3.9). Earlier versions accept the slots and silently drop them.
const MIN_MINOR: u8 = 9;

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    let config = pyo3_build_config::get();
    let version = config.version();
    if version.major != 3 || version.minor < MIN_MINOR {
        eprintln!(
            "error: bufferkit needs CPython 3.{MIN_MINOR} or newer, but the selected interpreter is \
             {}.{}: before 3.{MIN_MINOR}, PyType_FromSpec silently ignores the buffer slots, so the \
             types would build and then export nothing (set PYO3_PYTHON to a newer interpreter)",
            version.major, version.minor
        );
        std::process::exit(1);
    }
    // Integration tests that embed the interpreter (tests/slots.rs) need its libpython at run
    // time, and a pyenv or venv interpreter's library directory is not on the loader's path.
    if let Some(lib_dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{lib_dir}");
    }
    // `abi3t`: the stable ABI for free-threaded builds (PEP 803), where pyo3-ffi sets both
    // Py_LIMITED_API and Py_GIL_DISABLED and makes `PyObject` and `PyModuleDef` opaque. One
    // name for that pair, which decides the object layout and the module's entry point.
    println!("cargo:rustc-check-cfg=cfg(abi3t)");
    if matches!(
        config.target_abi().kind(),
        pyo3_build_config::PythonAbiKind::Stable(pyo3_build_config::StableAbi::Abi3t)
    ) {
        println!("cargo:rustc-cfg=abi3t");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=PYO3_CONFIG_FILE");
    println!("cargo:rerun-if-changed=build.rs");
}
