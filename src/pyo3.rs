//! PyO3 support (feature `pyo3`): a `#[pyclass]` that implements [`BufferExporter`] exports
//! its memory through two one-line delegations in `#[pymethods]`, and a [`BufferView`] is
//! taken from a `&Bound<PyAny>` with a typed [`Request`].
//!
//! PyO3 offers `__getbuffer__`/`__releasebuffer__` with a raw `*mut Py_buffer` and leaves the
//! protocol to the author. [`getbuffer`] and [`releasebuffer`] are that protocol: the same
//! export core as bufferkit's own slots ([`export_value`]), which takes the Rust value and the
//! object separately and so does not depend on how PyO3 lays out the object (`extends=`,
//! Python subclasses, `frozen` or not).
//!
//! ```
//! use std::ffi::c_int;
//!
//! use bufferkit::{BufferExporter, ExportCounter, Memory, SharedVec};
//! use pyo3::prelude::*;
//!
//! #[pyclass(frozen)]
//! struct Samples {
//!     data: SharedVec<f32>,
//! }
//!
//! // SAFETY: `SharedVec` changes its memory only under its lock, which refuses while
//! // exports are live.
//! unsafe impl BufferExporter for Samples {
//!     fn counter(&self) -> &ExportCounter {
//!         self.data.counter()
//!     }
//!     fn memory(&self) -> Option<Memory<'_>> {
//!         self.data.memory()
//!     }
//! }
//!
//! #[pymethods]
//! impl Samples {
//!     unsafe fn __getbuffer__(
//!         slf: Bound<'_, Self>,
//!         view: *mut pyo3::ffi::Py_buffer,
//!         flags: c_int,
//!     ) -> PyResult<()> {
//!         // SAFETY: PyO3 passes the consumer's `Py_buffer` (bf_getbuffer).
//!         unsafe { bufferkit::pyo3::getbuffer(&slf, view, flags) }
//!     }
//!     unsafe fn __releasebuffer__(slf: Bound<'_, Self>, view: *mut pyo3::ffi::Py_buffer) {
//!         // SAFETY: PyO3 calls it once per export `__getbuffer__` made (bf_releasebuffer).
//!         unsafe { bufferkit::pyo3::releasebuffer(&slf, view) }
//!     }
//! }
//! ```
//!
//! Make the class `frozen` and keep the memory in a [`SharedVec`](crate::SharedVec) (or
//! another type that changes it only under [`ExportCounter::lock`](crate::ExportCounter::lock)):
//! a `&mut self` method of a class that is not frozen could replace the memory while it is
//! exported, which the `unsafe impl` promises never happens.

use core::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{
    PyBufferError, PyMemoryError, PyOverflowError, PySystemError, PyTypeError, PyValueError,
};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::PyClass;

use crate::exporter::{BufferExporter, Gil};
use crate::ffi::{export_value, release, Borrowed, Error, Kind};
use crate::request::Request;
use crate::view::BufferView;

/// bufferkit's GIL token for PyO3's.
pub fn gil(_py: Python<'_>) -> Gil<'_> {
    // SAFETY: a `Python<'py>` proves that the thread is attached to the interpreter for 'py
    // (PyO3's `Python` docs), which is what a `Gil<'py>` stands for.
    unsafe { Gil::assume() }
}

/// bufferkit's borrowed handle for a PyO3 one.
pub fn borrowed<'a>(obj: &'a Bound<'_, PyAny>) -> Borrowed<'a> {
    // SAFETY: `obj` is a live object kept alive by the `Bound` for 'a, and the thread is
    // attached for as long as a `Bound` exists.
    unsafe { Borrowed::from_ptr(obj.as_ptr()) }.expect("a Bound is never NULL")
}

impl From<Error> for PyErr {
    fn from(err: Error) -> Self {
        match err {
            Error::Raised => Python::attach(|py| {
                PyErr::take(py).unwrap_or_else(|| {
                    PySystemError::new_err("bufferkit: error return without an exception set")
                })
            }),
            Error::New(kind, msg) => match kind {
                Kind::Type => PyTypeError::new_err(msg),
                Kind::Value => PyValueError::new_err(msg),
                Kind::Overflow => PyOverflowError::new_err(msg),
                Kind::Buffer => PyBufferError::new_err(msg),
                Kind::Memory => PyMemoryError::new_err(msg),
                Kind::System => PySystemError::new_err(msg),
            },
        }
    }
}

/// The body of a `#[pyclass]`'s `__getbuffer__`: checks the request against `slf`'s layout
/// and export counter, fills the view, counts the export and takes the consumer's
/// reference; on a refusal the view's `obj` is NULL and the error says why, in CPython's
/// words.
///
/// A class that is not `frozen` and is mutably borrowed now (a `&mut self` method is running)
/// refuses with `BufferError("<Type> is being modified")`.
///
/// # Safety
///
/// `view` is the consumer's `Py_buffer` that PyO3 passes to `__getbuffer__` (valid for
/// writes), and the class's `__releasebuffer__` calls [`releasebuffer`].
pub unsafe fn getbuffer<T>(
    slf: &Bound<'_, T>,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> PyResult<()>
where
    T: PyClass + BufferExporter,
{
    let gil = gil(slf.py());
    let Ok(this) = slf.try_borrow() else {
        if !view.is_null() {
            // SAFETY: `view` is valid for writes (caller): "view->obj is NULL on failure".
            unsafe { core::ptr::addr_of_mut!((*view).obj).write(core::ptr::null_mut()) };
        }
        let name = borrowed(slf.as_any()).type_name();
        return Err(PyBufferError::new_err(format!("{name} is being modified")));
    };
    // A panic in `memory()` or `counter()` becomes bufferkit's SystemError with `view->obj`
    // NULL, as in bufferkit's own slots, rather than PyO3's PanicException with the view as
    // the panic left it.
    let exported = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `view` is the consumer's (caller); `slf` owns `this` and keeps it in place
        // for as long as it lives (PyO3 stores a class's value inside its object and frees it
        // only in tp_dealloc), and the view's reference keeps `slf` alive; the class's
        // `__releasebuffer__` calls `releasebuffer` (caller). The borrow ends here, the export
        // does not: the memory's stability comes from the counter (BufferExporter's contract).
        unsafe { export_value(gil, &*this, slf.as_ptr(), view, flags) }
    }));
    exported
        .unwrap_or_else(|panic| {
            if !view.is_null() {
                // SAFETY: `view` is valid for writes (caller): "view->obj is NULL on failure".
                unsafe { core::ptr::addr_of_mut!((*view).obj).write(core::ptr::null_mut()) };
            }
            Err(Error::from_panic(panic))
        })
        .map_err(PyErr::from)
}

/// The body of a `#[pyclass]`'s `__releasebuffer__`: gives the export back.
///
/// A class that is not `frozen` and is mutably borrowed at that moment cannot be read: the
/// export is then never given back (the counter keeps counting it, so the memory stays as it
/// is, which is safe) and a `BufferError` goes to `sys.unraisablehook`.
///
/// # Safety
///
/// Called from the class's `__releasebuffer__`, for a view that [`getbuffer`] filled.
pub unsafe fn releasebuffer<T>(slf: &Bound<'_, T>, _view: *mut ffi::Py_buffer)
where
    T: PyClass + BufferExporter,
{
    let gil = gil(slf.py());
    match slf.try_borrow() {
        // SAFETY: one release per export `getbuffer` counted (caller).
        Ok(this) => unsafe { release(gil, &*this) },
        Err(_) => {
            let name = borrowed(slf.as_any()).type_name();
            let err = PyBufferError::new_err(format!(
                "{name}: an export was released while the object was mutably borrowed; \
                 it stays counted"
            ));
            err.write_unraisable(slf.py(), Some(slf.as_any()));
        }
    }
}

impl<'py> BufferView<'py> {
    /// `PyObject_GetBuffer(obj, &view, request)` on a PyO3 object.
    pub fn from_bound(obj: &Bound<'py, PyAny>, request: Request) -> PyResult<Self> {
        // SAFETY: `obj` is live and attached for 'py; the view holds its own reference.
        let obj = unsafe { Borrowed::from_ptr(obj.as_ptr()) }.expect("a Bound is never NULL");
        BufferView::request(obj, request).map_err(PyErr::from)
    }
}
