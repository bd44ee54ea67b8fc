//! The one function that writes a `Py_buffer`: from a checked [`Memory`] and a [`Request`]
//! that [`Request::check`] accepted for it.
//!
//! Each field is written by itself and only holds what its flag asked for, as the field rules
//! of `Doc/c-api/buffer.rst` ("Buffer structure", "Buffer request types") and `verify_getbuf`
//! in `Lib/test/test_buffer.py` require: `format` NULL without `PyBUF_FORMAT`; `ndim` 1 and
//! `shape` NULL without `PyBUF_ND`; `strides` NULL without `PyBUF_STRIDES`; `suboffsets` always
//! NULL. `itemsize` is the format's item size even when the format was not asked for
//! ("the previous itemsize"), and `readonly` tells the truth whatever was asked.

use core::ffi::c_int;
use core::ptr::{self, addr_of_mut};

use pyo3_ffi as ffi;

use crate::exporter::Memory;
use crate::request::Request;

/// Writes every field of `*view`, `obj` included (steps 2 and 4 of the `bf_getbuffer`
/// contract).
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
    // SAFETY: the export was counted (contract), so the layout is alive until its release.
    let layout = unsafe { memory.layout() };
    // Each field is stored as soon as it is known, in the order of the struct (which keeps
    // few values live at once): the consumer's struct may be uninitialised, so it is only
    // written, never read. The consumer treats shape, strides and format as read-only
    // (buffer.rst: "read-only for the consumer"), which is what makes handing out the layout's
    // own arrays sound; a scalar's shape and strides pointers are NULL already.
    let v = view;
    // SAFETY: `view` (`v`) is valid for writes of a `Py_buffer` (contract).
    unsafe {
        // (`first_item` reads the layout: alive, as above.)
        addr_of_mut!((*v).buf).write(memory.first_item().cast());
        addr_of_mut!((*v).obj).write(obj);
        // Both read before either is written (the consumer's struct could, as far as the
        // compiler knows, overlap the layout), which lets them move as one 16-byte pair.
        let (len, itemsize) = (layout.nbytes(), layout.itemsize());
        addr_of_mut!((*v).len).write(len);
        addr_of_mut!((*v).itemsize).write(itemsize);
        addr_of_mut!((*v).readonly).write(c_int::from(readonly));
        // Each value is read unconditionally, then picked: a conditional move, not a branch.
        // (The format goes first so that ndim and shape share one test of the ND bit.)
        let format = layout.format().as_c_str().as_ptr();
        addr_of_mut!((*v).format).write(pick(request.format(), format).cast_mut());
        // ndim <= MAX_NDIM (64) by the invariant of `Layout`, so the cast is exact.
        let ndim = core::hint::select_unpredictable(request.shape(), layout.ndim() as c_int, 1);
        addr_of_mut!((*v).ndim).write(ndim);
        let (shape, strides) = layout.dims_ptrs();
        addr_of_mut!((*v).shape).write(pick(request.shape(), shape).cast_mut());
        addr_of_mut!((*v).strides).write(pick(request.strides(), strides).cast_mut());
        addr_of_mut!((*v).suboffsets).write(ptr::null_mut());
        addr_of_mut!((*v).internal).write(ptr::null_mut());
    }
}

/// `value` if the request asked for the field, NULL otherwise: a conditional move, not a
/// branch (which the compiler would otherwise make of a select whose value is a load).
#[inline(always)]
fn pick<T>(asked: bool, value: *const T) -> *const T {
    core::hint::select_unpredictable(asked, value, ptr::null())
}
