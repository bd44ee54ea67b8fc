//! bufferkit: export the CPython buffer protocol (PEP 3118) correctly, safely and fast.
//!
//! A native object that hands its memory to Python (to `readinto`, `numpy.frombuffer`,
//! `hashlib`, a device driver) implements two slots, `bf_getbuffer` and `bf_releasebuffer`,
//! and must get a dozen request flags right, count its exports, and never free memory a
//! consumer still points into. bufferkit does all of that once, and ships it in layers:
//!
//! | module | role |
//! |---|---|
//! | [`request`] | request flags -> a typed [`Request`]; the refusal rules (no unsafe) |
//! | [`layout`] | shape/strides/format/contiguity/bounds arithmetic, checked once (no unsafe) |
//! | [`exporter`] | the [`BufferExporter`] trait, the [`ExportCounter`] and its [`Locked`] guard, [`Memory`] |
//! | [`element`] | [`Element`] number types and [`SharedVec`], memory consumers write and Rust changes under the lock |
//! | `fill` | the one function that writes a `Py_buffer` |
//! | [`ffi`] | the library's `extern "C"`: generic slots, trampolines, panic boundary, object handles; [`ffi::spec`] makes exporting types and modules |
//! | `pyo3` | (feature `pyo3`) a `#[pyclass]`'s `__getbuffer__`/`__releasebuffer__`, errors as `PyErr` |
//! | [`view`] | the consumer side: [`BufferView`], RAII over `PyObject_GetBuffer`/`PyBuffer_Release` |
//!
//! Dependencies point one way: `ffi` -> `fill` -> {`request`, `layout`, `exporter`}; `element`
//! on `exporter`, `layout` and `ffi::error`; `pyo3` on `ffi`.
//!
//! This crate is the library only, one layer of a Cargo workspace whose crates are the layers.
//! The shipped Python module `bufferkit._bufferkit` (`Buffer`, `View`, `Exporter`, `inspect`,
//! its `PyInit__bufferkit`) is the crate `bufferkit-module` (`module/` in the repository),
//! which depends on this one as any extension crate does; the ABI checks are the crate
//! `bufferkit-abi-check` (`abi-check/`). A crate that depends on `bufferkit` gets neither.
//!
//! Where to start: with raw pyo3-ffi, [`ffi::spec::ExportingType`] and `docs/rust.md`; with
//! PyO3, the `pyo3` module (feature `pyo3`) and `docs/pyo3.md`.
//!
//! # The safety contract
//!
//! An implementor of [`BufferExporter`] promises one thing: while its [`ExportCounter`] counts
//! a live export, the memory it returned stays valid, in place, with the same layout. The
//! counter's `lock()`, `close()` and `freeze()` refuse while exports are live, and a lock
//! refuses every export while it lives, which is how an owner keeps that promise;
//! [`SharedVec`] keeps it for you. Everything else (checking requests, filling the `Py_buffer`, counting,
//! references, panics) is bufferkit's.
//!
//! # Unsafe code policy
//!
//! `unsafe_op_in_unsafe_fn`, `clippy::undocumented_unsafe_blocks` and
//! `clippy::missing_safety_doc` are denied crate-wide (see `Cargo.toml`). Every `unsafe` block
//! carries a `// SAFETY:` comment naming the precondition and where it is guaranteed; every
//! `unsafe fn` has a `# Safety` section. `request` and `layout` forbid unsafe code outright.
//! `extern "C"` functions live in `ffi` only.
//!
//! # Threads and free-threaded Python
//!
//! With the GIL, slot calls are serialised by it and the export counter uses plain atomic
//! loads and stores. On free-threaded CPython (3.13t and later, `Py_GIL_DISABLED`) the counter
//! uses compare-and-swap for every change, so "check the state, then count the export" and
//! "check the count, then close or freeze" stay indivisible without the GIL: an object can
//! never be closed or frozen while an export obtained before it is alive. The pyo3-ffi version
//! bufferkit builds on supports free-threaded builds from 3.14; none is tested here.

pub mod element;
pub mod exporter;
pub mod ffi;
mod fill;
pub mod layout;
#[cfg(feature = "pyo3")]
pub mod pyo3;
pub mod request;
pub mod view;

pub use element::{Element, SharedVec, Writer};
pub use exporter::{BufferExporter, ExportCounter, Gil, Locked, Memory};
// The raw slots (`ffi::getbuffer`, `ffi::releasebuffer`, `ffi::Object`) stay in `ffi`, for
// hand-written type specs; `ExportingType` is the way to make a type.
pub use ffi::spec::{ExportingType, TypeHandle};
pub use layout::{Format, Layout, Order};
pub use request::Request;
pub use view::BufferView;

/// The pyo3-ffi bufferkit is built on, for extension crates and for the exported trampoline
/// macros (one version of the C declarations in the whole build).
#[doc(no_inline)]
pub use pyo3_ffi;

// The Rust blocks of the README and the guides, compiled as they stand there.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
mod readme_md {}
#[doc = include_str!("../docs/rust.md")]
#[cfg(doctest)]
mod rust_md {}
#[doc = include_str!("../docs/pyo3.md")]
#[cfg(all(doctest, feature = "pyo3"))]
mod pyo3_md {}

/// Plumbing for the `bufferkit-module` crate (the shipped `bufferkit._bufferkit`, `module/`)
/// and the fuzz targets (`fuzz/`) only: not part of bufferkit's API, no semver promise, may
/// change or go in any release. Extension crates use the documented items instead.
#[doc(hidden)]
pub mod __private {
    use core::ffi::c_int;

    use crate::exporter::Gil;
    use crate::ffi::Result;
    use pyo3_ffi::{PyObject, Py_buffer};

    /// The panic and error boundary of bufferkit's own `bf_getbuffer`, for a getbuffer slot
    /// whose body is not [`crate::ffi::getbuffer`] (`bufferkit.Exporter`'s delegates to
    /// `__buffer__`): 0, or -1 with the exception set and `view->obj` NULL.
    ///
    /// # Safety
    ///
    /// As for the crate-private function it forwards to: called from a `bf_getbuffer` slot,
    /// the GIL is held and `view` is NULL or the consumer's `Py_buffer`, valid for writes.
    #[inline(always)]
    pub unsafe fn getbuffer_boundary(
        view: *mut Py_buffer,
        body: impl FnOnce(Gil<'_>) -> Result<()>,
    ) -> c_int {
        // SAFETY: forwarded from the caller.
        unsafe { crate::ffi::slots::getbuffer_boundary(view, body) }
    }

    /// The panic boundary of bufferkit's own `bf_releasebuffer`, for a releasebuffer slot
    /// whose body is not [`crate::ffi::releasebuffer`]: a panic in `body` goes to
    /// `sys.unraisablehook`.
    ///
    /// # Safety
    ///
    /// Called from a `bf_releasebuffer` slot: the GIL is held and `obj` is live.
    #[inline(always)]
    pub unsafe fn releasebuffer_boundary(obj: *mut PyObject, body: impl FnOnce(Gil<'_>)) {
        // SAFETY: forwarded from the caller.
        unsafe { crate::ffi::slots::releasebuffer_boundary(obj, body) }
    }

    /// The format of `text` if `struct` fixes its size by itself and it is an item (one
    /// format character, optionally after a byte-order character, not the pad byte `'x'`),
    /// borrowing a static text; `None` otherwise. The shipped constructors' fast path.
    #[inline]
    pub fn fixed_format(text: &[u8]) -> Option<crate::Format> {
        crate::layout::fixed_format(text)
    }

    /// The export path's admission table (`Request::admit`): the request of `flags` if the
    /// facts of index `facts` serve it, for the fuzz target that checks it against
    /// `Request::check`.
    pub fn admit(flags: c_int, facts: u8) -> Option<crate::Request> {
        crate::Request::admit(flags, facts)
    }

    /// `Facts::index`, and back: the admission table's row of a set of facts (0..16).
    pub fn facts_index(facts: crate::request::Facts) -> u8 {
        facts.index()
    }

    /// The facts of admission-table row `index` (0..16).
    pub fn facts_from_index(index: u8) -> crate::request::Facts {
        crate::request::Facts::from_index(index)
    }
}
