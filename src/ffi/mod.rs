//! The FFI edge, and the only home of `extern "C"`: the generic buffer slots, the trampolines
//! that turn Rust results into CPython's NULL/-1 conventions, the panic boundary, and object
//! handles.
//!
//! Everything here follows one rule: no panic crosses into CPython. Slots and methods run
//! their bodies under `catch_unwind`; a panic becomes a `SystemError` (getbuffer also leaves
//! `view->obj` NULL), and where no error can be returned (releasebuffer, dealloc) it goes to
//! `sys.unraisablehook` through `PyErr_WriteUnraisable`. And no unwind crosses out of CPython
//! into Rust: the calls through which bufferkit runs Python code go through [`unwind`], which
//! parks a thread that CPython < 3.14 ends inside them with `pthread_exit()`.

pub mod convert;
pub mod error;
pub mod object;
pub mod slots;
pub mod spec;
#[macro_use]
pub mod trampoline;
pub mod unwind;

pub use error::{Error, Kind, Result};
pub use object::{
    dealloc, tp_clear, tp_traverse, tp_traverse_with_type, Borrowed, Collectable, Object, Owned,
};
pub use slots::{export_value, getbuffer, release, releasebuffer};
pub use trampoline::{FastArgs, This};

use crate::request::flags;
use pyo3_ffi as ffi;

// The request flags that `request.rs` re-declares (to stay free of FFI) are CPython's.
const _: () = {
    assert!(flags::SIMPLE == ffi::PyBUF_SIMPLE);
    assert!(flags::WRITABLE == ffi::PyBUF_WRITABLE);
    assert!(flags::FORMAT == ffi::PyBUF_FORMAT);
    assert!(flags::ND == ffi::PyBUF_ND);
    assert!(flags::STRIDES == ffi::PyBUF_STRIDES);
    assert!(flags::C_CONTIGUOUS == ffi::PyBUF_C_CONTIGUOUS);
    assert!(flags::F_CONTIGUOUS == ffi::PyBUF_F_CONTIGUOUS);
    assert!(flags::ANY_CONTIGUOUS == ffi::PyBUF_ANY_CONTIGUOUS);
    assert!(flags::INDIRECT == ffi::PyBUF_INDIRECT);
    assert!(flags::CONTIG == ffi::PyBUF_CONTIG);
    assert!(flags::CONTIG_RO == ffi::PyBUF_CONTIG_RO);
    assert!(flags::STRIDED == ffi::PyBUF_STRIDED);
    assert!(flags::STRIDED_RO == ffi::PyBUF_STRIDED_RO);
    assert!(flags::RECORDS == ffi::PyBUF_RECORDS);
    assert!(flags::RECORDS_RO == ffi::PyBUF_RECORDS_RO);
    assert!(flags::FULL == ffi::PyBUF_FULL);
    assert!(flags::FULL_RO == ffi::PyBUF_FULL_RO);
    assert!(flags::READ == ffi::PyBUF_READ);
    assert!(flags::WRITE == ffi::PyBUF_WRITE);
    // pyo3-ffi declares PyBUF_MAX_NDIM as i32 for some versions and usize for others.
    assert!(crate::layout::MAX_NDIM as i64 == ffi::PyBUF_MAX_NDIM as i64);
};
