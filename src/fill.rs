//! The one function that writes a `Py_buffer`: from a checked [`Memory`] and a [`Request`]
//! that [`Request::check`] accepted for it.
//!
//! Each field is written by itself and only holds what its flag asked for, as the field rules
//! of `Doc/c-api/buffer.rst` ("Buffer structure", "Buffer request types") and `verify_getbuf`
//! in `Lib/test/test_buffer.py` require: `format` NULL without `PyBUF_FORMAT`; `ndim` 1 and
//! `shape` NULL without `PyBUF_ND`; `strides` NULL without `PyBUF_STRIDES`; `suboffsets` always
//! NULL. `itemsize` is the format's item size even when the format was not asked for
//! ("the previous itemsize"), and `readonly` tells the truth whatever was asked.

use core::ptr;

use pyo3_ffi as ffi;

use crate::exporter::Memory;
use crate::request::Request;

/// Writes every field of `*view`, `obj` included (steps 2 and 4 of the `bf_getbuffer` contract,
/// in one write of the whole struct).
///
/// # Safety
///
/// `view` is valid for writes of a `Py_buffer` (the consumer's, as passed to `bf_getbuffer`),
/// `memory` describes memory whose exporter has already counted this export, so that the
/// pointers written here stay valid until the matching `bf_releasebuffer`, and `obj` is the
/// exporter, with the new reference the consumer's `PyBuffer_Release` gives back.
#[inline(always)]
pub(crate) unsafe fn fill(
    view: *mut ffi::Py_buffer,
    memory: &Memory<'_>,
    request: Request,
    readonly: bool,
    obj: *mut ffi::PyObject,
) {
    let layout = memory.layout();
    let ndim = layout.ndim();
    // ndim 0 is a scalar: shape and strides are NULL even when requested (buffer.rst, `ndim`).
    let shape = if request.shape() && ndim > 0 {
        layout.shape().as_ptr().cast_mut()
    } else {
        ptr::null_mut()
    };
    let strides = if request.strides() && ndim > 0 {
        layout.strides().as_ptr().cast_mut()
    } else {
        ptr::null_mut()
    };
    let format = if request.format() {
        layout.format().as_c_str().as_ptr().cast_mut()
    } else {
        ptr::null_mut()
    };
    // ndim <= MAX_NDIM (64) by the invariant of `Layout`, so the cast is exact.
    let ndim = if request.shape() {
        ndim as core::ffi::c_int
    } else {
        1
    };
    // The consumer treats shape, strides and format as read-only (buffer.rst: "read-only for
    // the consumer"), which is what makes handing out the layout's own arrays sound.
    let filled = ffi::Py_buffer {
        buf: memory.first_item().cast(),
        obj,
        len: layout.nbytes(),
        itemsize: layout.itemsize(),
        readonly: core::ffi::c_int::from(readonly),
        ndim,
        format,
        shape,
        strides,
        suboffsets: ptr::null_mut(),
        internal: ptr::null_mut(),
    };
    // SAFETY: `view` is valid for writes of a `Py_buffer` (contract); the consumer's struct
    // may be uninitialised, so it is written whole, never read.
    unsafe { view.write(filled) };
}
