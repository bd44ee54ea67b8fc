//! Conversions between Rust values and Python objects, and the few calls into Python that
//! bufferkit makes (none of them on an export path).
//!
//! Every function here calls the C-API, so each takes its proof that the GIL is held: a
//! [`Gil`] token, or a [`Borrowed`] object (which cannot outlive the GIL it was made under;
//! [`Borrowed::gil`]).

use core::ffi::{c_char, CStr};

use pyo3_ffi as ffi;

use super::error::{check_ptr, Error, Result};
use super::object::{Borrowed, Owned};
use super::unwind;
use crate::exporter::Gil;
use std::borrow::Cow;

/// The text of a `str`.
pub fn str_of(obj: Borrowed<'_>) -> Result<String> {
    str_ref(obj).map(Cow::into_owned)
}

/// The text of a `str`, borrowed from the UTF-8 form the object keeps: no allocation.
/// (`PyUnicode_AsUTF8AndSize` refuses lone surrogates, so the text is always valid UTF-8 and
/// the lossy conversion never copies.)
pub fn str_ref<'a>(obj: Borrowed<'a>) -> Result<Cow<'a, str>> {
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: `obj` is live and the GIL is held (`Borrowed`); PyUnicode_AsUTF8AndSize raises
    // TypeError for a non-str and returns a buffer owned by `obj`, valid while `obj` lives:
    // for 'a, and a str never changes.
    let data =
        check_ptr(unsafe { ffi::PyUnicode_AsUTF8AndSize(obj.as_ptr(), &mut size) }.cast_mut())?;
    // SAFETY: `data` points to `size` bytes of UTF-8 (the call above), alive for 'a.
    let bytes: &'a [u8] = unsafe { core::slice::from_raw_parts(data.cast::<u8>(), size as usize) };
    if bytes.is_ascii() {
        // Formats and keyword names: no UTF-8 validation (about 50 instructions per call).
        // SAFETY: ASCII bytes are UTF-8.
        return Ok(Cow::Borrowed(unsafe {
            core::str::from_utf8_unchecked(bytes)
        }));
    }
    Ok(String::from_utf8_lossy(bytes))
}

/// Whether `obj` is a `str`.
pub fn is_str(obj: Borrowed<'_>) -> bool {
    // SAFETY: `obj` is live and the GIL is held.
    unsafe { ffi::PyUnicode_Check(obj.as_ptr()) != 0 }
}

/// A new `str`.
pub fn new_str(_gil: Gil<'_>, text: &str) -> Result<Owned> {
    // SAFETY: the GIL is held (`Gil`); `text` is valid UTF-8 of the given length; the call
    // copies it.
    unsafe {
        Owned::from_new(ffi::PyUnicode_FromStringAndSize(
            text.as_ptr().cast::<c_char>(),
            text.len() as ffi::Py_ssize_t,
        ))
    }
}

/// A new `int`.
pub fn new_int(_gil: Gil<'_>, value: isize) -> Result<Owned> {
    // SAFETY: plain constructor; the GIL is held (`Gil`).
    unsafe { Owned::from_new(ffi::PyLong_FromSsize_t(value)) }
}

/// A new `int` from an unsigned value.
pub fn new_uint(_gil: Gil<'_>, value: usize) -> Result<Owned> {
    // SAFETY: as in `new_int`.
    unsafe { Owned::from_new(ffi::PyLong_FromSize_t(value)) }
}

/// `True` or `False`.
pub fn new_bool(_gil: Gil<'_>, value: bool) -> Result<Owned> {
    // SAFETY: as in `new_int`.
    unsafe { Owned::from_new(ffi::PyBool_FromLong(core::ffi::c_long::from(value))) }
}

/// `None`.
pub fn none(_gil: Gil<'_>) -> Owned {
    // SAFETY: the GIL is held (`Gil`); Py_None is the immortal None singleton; from_borrowed
    // takes a new reference.
    Owned::from_borrowed(unsafe { Borrowed::from_ptr(ffi::Py_None()) }.expect("None is not NULL"))
}

/// A new tuple of the given objects.
pub fn new_tuple(_gil: Gil<'_>, items: &[Borrowed<'_>]) -> Result<Owned> {
    // SAFETY: the GIL is held (`Gil`); PyTuple_New returns a new tuple.
    let tuple = unsafe { Owned::from_new(ffi::PyTuple_New(items.len() as ffi::Py_ssize_t)) }?;
    for (i, item) in items.iter().enumerate() {
        let item = Owned::from_borrowed(*item);
        // SAFETY: `tuple` is a fresh tuple of this length; PyTuple_SetItem steals `item`.
        unsafe { ffi::PyTuple_SetItem(tuple.as_ptr(), i as ffi::Py_ssize_t, item.into_raw()) };
    }
    Ok(tuple)
}

/// A new tuple of ints.
pub fn new_int_tuple(gil: Gil<'_>, values: &[isize]) -> Result<Owned> {
    // SAFETY: the GIL is held (`Gil`).
    let tuple = unsafe { Owned::from_new(ffi::PyTuple_New(values.len() as ffi::Py_ssize_t)) }?;
    for (i, &v) in values.iter().enumerate() {
        let item = new_int(gil, v)?;
        // SAFETY: `tuple` is a fresh tuple of this length; PyTuple_SetItem steals `item`.
        unsafe { ffi::PyTuple_SetItem(tuple.as_ptr(), i as ffi::Py_ssize_t, item.into_raw()) };
    }
    Ok(tuple)
}

/// `operator.index(obj)` as a `Py_ssize_t`; `what` names the argument in error messages.
///
/// An object without `__index__` is a `TypeError` naming `what`; whatever an `__index__` of the
/// caller's raises is the caller's exception and goes through unchanged, as CPython's own
/// argument parsing lets it.
pub fn index_arg(obj: Borrowed<'_>, what: &dyn Fn() -> String) -> Result<isize> {
    // SAFETY: `obj` is live and the GIL is held; PyIndex_Check only reads its type's slots.
    if unsafe { ffi::PyIndex_Check(obj.as_ptr()) } == 0 {
        return Err(Error::type_error(format!(
            "{} must be an int, not {}",
            what(),
            obj.type_name()
        )));
    }
    // SAFETY: `obj` is live and the GIL is held; a new reference or NULL with an exception.
    let index = unsafe { Owned::from_new(ffi::PyNumber_Index(obj.as_ptr())) }?;
    // SAFETY: `index` is an int.
    let value = unsafe { ffi::PyLong_AsSsize_t(index.as_ptr()) };
    // SAFETY: the GIL is held.
    if value == -1 && !unsafe { ffi::PyErr_Occurred() }.is_null() {
        // SAFETY: the GIL is held; the OverflowError is replaced by one naming `what`.
        unsafe { ffi::PyErr_Clear() };
        return Err(Error::overflow_error(format!(
            "{} does not fit in Py_ssize_t",
            what()
        )));
    }
    Ok(value)
}

/// The items of a tuple or list as `Py_ssize_t`s, each through [`index_arg`] named
/// `"{what}[i]"`.
///
/// The items are read from a tuple taken of `seq` first: an item's `__index__` may change a
/// list it belongs to, and the call then sees the items as they were when it started (as
/// `memoryview.cast` does, which reads a tuple).
pub fn index_items(seq: Borrowed<'_>, what: &str) -> Result<Vec<isize>> {
    // SAFETY: `seq` is live and the GIL is held; a new reference (a tuple holding its own
    // references to the items) or NULL with an exception set.
    let items = unsafe { Owned::from_new(ffi::PySequence_Tuple(seq.as_ptr())) }?;
    // SAFETY: `items` is a tuple.
    let n = unsafe { ffi::PyTuple_Size(items.as_ptr()) };
    (0..n)
        .map(|i| {
            // SAFETY: 0 <= i < n; borrowed from the tuple, which `items` keeps alive and
            // nothing can change (tuples are immutable).
            let item = unsafe { Borrowed::from_ptr(ffi::PyTuple_GetItem(items.as_ptr(), i)) }
                .ok_or(Error::Raised)?;
            index_arg(item, &|| format!("{what}[{i}]"))
        })
        .collect()
}

/// `PyObject_CheckBuffer(obj)`: whether `obj`'s type has a getbuffer slot. A function of the
/// C-API on CPython; a macro over the type's `tp_as_buffer` on PyPy (cpyext), which exports no
/// such symbol.
pub fn check_buffer(obj: Borrowed<'_>) -> bool {
    #[cfg(not(PyPy))]
    {
        // SAFETY: `obj` is live and the GIL is held; only its type's slots are read.
        unsafe { ffi::PyObject_CheckBuffer(obj.as_ptr()) != 0 }
    }
    #[cfg(PyPy)]
    {
        // SAFETY: `obj`'s type is live; PyPy builds are not limited, so the type struct is
        // readable, and `tp_as_buffer` is NULL or points to the type's buffer procs (the
        // expansion of PyPy's `PyObject_CheckBuffer` macro).
        unsafe {
            let procs = (*obj.type_ptr()).tp_as_buffer;
            !procs.is_null() && (*procs).bf_getbuffer.is_some()
        }
    }
}

/// `getattr(obj, name)`.
pub fn getattr(obj: Borrowed<'_>, name: &CStr) -> Result<Owned> {
    // SAFETY: `obj` is live, `name` a C string, the GIL is held.
    unsafe { Owned::from_new(ffi::PyObject_GetAttrString(obj.as_ptr(), name.as_ptr())) }
}

/// `import name`.
pub fn import(_gil: Gil<'_>, name: &CStr) -> Result<Owned> {
    // SAFETY: `name` is a C string; the GIL is held (`Gil`).
    unsafe { Owned::from_new(ffi::PyImport_ImportModule(name.as_ptr())) }
}

/// `callable(*args)`.
pub fn call(callable: Borrowed<'_>, args: &[Borrowed<'_>]) -> Result<Owned> {
    let args = new_tuple(callable.gil(), args)?;
    // SAFETY: `callable` is live, `args` a tuple, the GIL is held.
    unsafe {
        Owned::from_new(unwind::call(
            callable.as_ptr(),
            args.as_ptr(),
            core::ptr::null_mut(),
        ))
    }
}

/// `obj.name(*args)`.
pub fn call_method(obj: Borrowed<'_>, name: &CStr, args: &[Borrowed<'_>]) -> Result<Owned> {
    let method = getattr(obj, name)?;
    call(method.borrow(), args)
}

/// Whether the current exception is an instance of `class`.
///
/// # Safety
///
/// The GIL is held and `class` is a live exception class.
pub unsafe fn error_matches(class: *mut ffi::PyObject) -> bool {
    // SAFETY: the GIL is held and `class` is an exception class (caller).
    unsafe { ffi::PyErr_ExceptionMatches(class) != 0 }
}
