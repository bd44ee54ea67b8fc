//! `bufferkit.inspect(obj, flags=PyBUF_FULL_RO)`: the raw `Py_buffer` a consumer gets from
//! `obj` for `flags`, as a named tuple — a debugging tool for anyone writing or consuming
//! exporters. What `_testbuffer.ndarray(obj, getbuf=flags)` shows field by field, without the
//! test-only module.

use core::ffi::c_int;
use core::ptr;

use pyo3_ffi as ffi;

use super::common::{kwlist, KwList};
use bufferkit::exporter::Gil;
use bufferkit::ffi::convert::{self, new_bool, new_int, new_int_tuple, new_str};
use bufferkit::ffi::{Borrowed, Error, Owned, Result};
use bufferkit::request::flags;
use bufferkit::view::BufferView;

/// `inspect(obj, flags=PyBUF_FULL_RO)`
pub(crate) fn inspect(
    gil: Gil<'_>,
    module: *mut ffi::PyObject,
    args: Borrowed<'_>,
    kwargs: Option<Borrowed<'_>>,
) -> Result<Owned> {
    let mut names = kwlist([c"obj", c"flags"]);
    let mut obj: *mut ffi::PyObject = ptr::null_mut();
    let mut request: c_int = flags::FULL_RO;
    // SAFETY: `args` is a tuple and `kwargs` NULL or a dict, borrowed for the call; O stores a
    // borrowed PyObject*, i an int.
    let parsed = unsafe {
        ffi::PyArg_ParseTupleAndKeywords(
            args.as_ptr(),
            kwargs.map_or(ptr::null_mut(), Borrowed::as_ptr),
            c"O|i:inspect".as_ptr(),
            names.as_mut_ptr() as KwList,
            &mut obj,
            &mut request,
        )
    };
    if parsed == 0 {
        return Err(Error::Raised);
    }
    // SAFETY: a borrowed reference valid for this call.
    let obj = unsafe { Borrowed::from_ptr(obj) }.ok_or(Error::Raised)?;
    let view = BufferView::get(obj, request)?;
    let opt_tuple =
        |a: Option<&[isize]>| a.map_or_else(|| Ok(convert::none(gil)), |a| new_int_tuple(gil, a));
    let buf = if view.buf().is_null() {
        convert::none(gil)
    } else {
        // SAFETY: converting an address to an int; no dereference.
        unsafe { Owned::from_new(ffi::PyLong_FromVoidPtr(view.buf())) }?
    };
    let exporter = view
        .obj()
        .map_or_else(|| convert::none(gil), Owned::from_borrowed);
    let format = match view.format() {
        Some(f) => new_str(gil, &f.to_string_lossy())?,
        None => convert::none(gil),
    };
    let fields = [
        buf,
        exporter,
        new_int(gil, view.len())?,
        new_int(gil, view.itemsize())?,
        new_bool(gil, view.readonly())?,
        new_int(gil, view.as_raw().ndim as isize)?,
        format,
        opt_tuple(view.shape())?,
        opt_tuple(view.strides())?,
        opt_tuple(view.suboffsets())?,
    ];
    drop(view);
    // SAFETY: `module` is this module (module functions receive it as `self`), GIL held.
    let state = unsafe { crate::module::state_of_module(module) };
    // SAFETY: NULL, or the module state's strong reference to the BufferInfo class (after
    // exec, until m_clear), taken as our own before the call below runs Python code.
    let info = unsafe { Borrowed::from_ptr(state.info_type) }
        .map(Owned::from_borrowed)
        .ok_or_else(|| Error::value_error(crate::module::MODULE_CLEARED))?;
    let info = info.borrow();
    let borrowed: Vec<Borrowed<'_>> = fields.iter().map(Owned::borrow).collect();
    convert::call(info, &borrowed)
}
