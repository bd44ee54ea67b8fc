//! `bufferkit._bufferkit`, the Python module of the `bufferkit` package: the shipped types
//! `Buffer`, `View`, `Exporter` and the function `inspect`, built on the `bufferkit` crate the
//! way any extension crate would build on it.
//!
//! | module | role |
//! |---|---|
//! | `types` | one file per shipped Python type (object struct, slots, spec), and `inspect` |
//! | `module` | multi-phase init, module state holding the heap types |
//! | `shims` | this crate's `extern "C"`: the module definition and its slots, Exporter's buffer slots |
//!
//! This crate sits on top of the library: it names the library's items, the library cannot
//! name its types (Cargo refuses the cycle). It uses the library's public API, plus the few
//! items of `bufferkit::__private` that are for this crate only.
//!
//! The unsafe code policy is the library's (`Cargo.toml`'s `[workspace.lints]`): every
//! `unsafe` block has a `// SAFETY:` comment, every `unsafe fn` a `# Safety` section.

pub mod module;
pub mod shims;
pub mod types;

/// The library's trampoline macros under the short names the shipped types use; a user of the
/// library sees the `bufferkit_` prefixed ones.
mod trampoline {
    pub(crate) use bufferkit::{
        bufferkit_fastkw as fastkw, bufferkit_getter as getter, bufferkit_length as length,
        bufferkit_noargs as noargs, bufferkit_onearg as onearg,
        bufferkit_richcompare as richcompare, bufferkit_unary as unary, bufferkit_varkw as varkw,
        bufferkit_vectorcall as vectorcall, bufferkit_with_first as with_first,
    };
}

/// The entry point CPython looks up when importing `bufferkit._bufferkit`: returns the module
/// definition for multi-phase initialisation (PEP 489).
///
/// # Safety
///
/// Called by the import machinery with the GIL held.
#[cfg(not(abi3t))]
#[no_mangle]
pub unsafe extern "C" fn PyInit__bufferkit() -> *mut pyo3_ffi::PyObject {
    // SAFETY: MODULE_DEF is a static that lives for the program; PyModuleDef_Init only
    // initialises its header and returns it as an object.
    unsafe { pyo3_ffi::PyModuleDef_Init(&raw mut shims::MODULE_DEF) }
}

/// The entry point CPython 3.15+ looks up first when importing `bufferkit._bufferkit` (PEP 793),
/// and the only one of the `abi3t` build, where `PyModuleDef` is opaque: returns the module's
/// slot array.
///
/// # Safety
///
/// Called by the import machinery.
#[cfg(abi3t)]
#[no_mangle]
pub unsafe extern "C" fn PyModExport__bufferkit() -> *mut pyo3_ffi::PySlot {
    // Only the address of the static is taken (no unsafe needed); CPython only reads it.
    (&raw mut shims::export::SLOTS).cast()
}
