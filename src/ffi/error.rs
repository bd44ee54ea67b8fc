//! Errors on their way to CPython: a Rust [`Error`] becomes a raised exception at the FFI
//! boundary, and a Rust panic becomes a `SystemError` there (the boundary itself is in
//! `trampoline.rs` and `slots.rs`).
//!
//! Mirrors the error half of PyO3's `src/impl_/trampoline.rs` and `panic.rs`: no panic crosses
//! an `extern "C"` function, and every refusal reaches Python as the exception CPython itself
//! would raise, with a message in CPython's style.

use core::any::Any;
use std::ffi::CString;

use pyo3_ffi as ffi;

use crate::exporter::{Busy, Exported, Gil};

/// The exception classes bufferkit raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `TypeError`: an argument of the wrong type.
    Type,
    /// `ValueError`: an argument of the right type and a wrong value; an operation on a
    /// closed or released object.
    Value,
    /// `OverflowError`: a size that cannot be represented.
    Overflow,
    /// `BufferError`: a refused buffer request, or a change refused while exported.
    Buffer,
    /// `MemoryError`: an allocation failed.
    Memory,
    /// `SystemError`: a bug, such as a Rust panic.
    System,
}

/// An error on its way to Python.
#[derive(Debug)]
pub enum Error {
    /// A Python exception is already set (a C-API call failed and raised it).
    Raised,
    /// An exception to raise.
    New(Kind, String),
}

/// The result of everything that may raise: `Ok`, or the [`Error`] to raise.
///
/// Named as `std::io::Result` is, and not `PyResult`, which is PyO3's: an extension crate
/// that uses both (feature `pyo3`) can import each without renaming. The error type defaults
/// to [`Error`] and can be given, so importing this alias does not hide `std`'s two-parameter
/// `Result`.
pub type Result<T, E = Error> = core::result::Result<T, E>;

impl Error {
    /// `TypeError(msg)`
    pub fn type_error(msg: impl Into<String>) -> Self {
        Self::New(Kind::Type, msg.into())
    }
    /// `ValueError(msg)`
    pub fn value_error(msg: impl Into<String>) -> Self {
        Self::New(Kind::Value, msg.into())
    }
    /// `OverflowError(msg)`
    pub fn overflow_error(msg: impl Into<String>) -> Self {
        Self::New(Kind::Overflow, msg.into())
    }
    /// `BufferError(msg)`
    pub fn buffer_error(msg: impl Into<String>) -> Self {
        Self::New(Kind::Buffer, msg.into())
    }
    /// `MemoryError(msg)`
    pub fn memory_error(msg: impl Into<String>) -> Self {
        Self::New(Kind::Memory, msg.into())
    }
    /// `SystemError(msg)`: a bug, bufferkit's or an exporter's, reported instead of crashing.
    pub fn system_error(msg: impl Into<String>) -> Self {
        Self::New(Kind::System, msg.into())
    }

    /// The error a caught panic becomes.
    pub fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with a non-string payload".to_owned());
        Self::system_error(format!("bufferkit: Rust panic: {what}"))
    }

    /// Makes this the current Python exception.
    pub fn restore(self, _gil: Gil<'_>) {
        let (kind, msg) = match self {
            Self::Raised => {
                // SAFETY: the GIL is held (`_gil`); PyErr_Occurred only reads the thread state.
                if unsafe { ffi::PyErr_Occurred() }.is_null() {
                    (
                        Kind::System,
                        "bufferkit: error return without an exception set".to_owned(),
                    )
                } else {
                    return;
                }
            }
            Self::New(kind, msg) => (kind, msg),
        };
        // A message with a NUL byte cannot be a C string: cut it there rather than lose it.
        let msg = CString::new(msg).unwrap_or_else(|e| {
            let end = e.nul_position();
            CString::new(&e.into_vec()[..end]).unwrap_or_default()
        });
        // SAFETY: the exception classes are statics CPython initialises before any module
        // loads (`Doc/c-api/exceptions.rst`, "Standard Exceptions"); reading them is a read of
        // an initialised pointer.
        let class = unsafe {
            match kind {
                Kind::Type => ffi::PyExc_TypeError,
                Kind::Value => ffi::PyExc_ValueError,
                Kind::Overflow => ffi::PyExc_OverflowError,
                Kind::Buffer => ffi::PyExc_BufferError,
                Kind::Memory => ffi::PyExc_MemoryError,
                Kind::System => ffi::PyExc_SystemError,
            }
        };
        // SAFETY: the GIL is held; `class` is an exception class and `msg` a valid C string,
        // which PyErr_SetString copies.
        unsafe { ffi::PyErr_SetString(class, msg.as_ptr()) };
    }
}

// The owner's refusals as the exceptions Python sees. Here rather than in `exporter.rs`, which
// stays free of the FFI layer (dependencies point from `ffi` to `exporter`).

impl Exported {
    /// The `BufferError` for an owner's operation `what` (`"resize"`) refused by this:
    /// `"cannot resize: 2 exported buffers"`.
    pub fn to_error(self, what: &str) -> Error {
        let s = if self.0 == 1 { "" } else { "s" };
        Error::buffer_error(format!("cannot {what}: {} exported buffer{s}", self.0))
    }
}

impl Busy {
    /// The `BufferError` for an owner's operation `what` (`"resize"`) refused by this:
    /// `"cannot resize: 1 exported buffer"` or `"cannot resize: already being modified"`.
    pub fn to_error(self, what: &str) -> Error {
        match self {
            Self::Exported(n) => Exported(n).to_error(what),
            Self::Locked => Error::buffer_error(format!("cannot {what}: already being modified")),
        }
    }
}

/// A layout that cannot be: `OverflowError` for a size beyond `Py_ssize_t`, `ValueError`
/// otherwise, as bufferkit's own types raise them.
impl From<crate::layout::LayoutError> for Error {
    fn from(e: crate::layout::LayoutError) -> Self {
        if e.is_overflow() {
            Self::overflow_error(e.to_string())
        } else {
            Self::value_error(e.to_string())
        }
    }
}

/// `Err(Error::Raised)` if `ptr` is NULL (the C-API call that returned it raised), else
/// `Ok(ptr)`.
#[inline]
pub fn check_ptr<T>(ptr: *mut T) -> Result<*mut T> {
    if ptr.is_null() {
        Err(Error::Raised)
    } else {
        Ok(ptr)
    }
}

/// `Err(Error::Raised)` if a C-API status is -1.
#[inline]
pub fn check_status(status: core::ffi::c_int) -> Result<core::ffi::c_int> {
    if status == -1 {
        Err(Error::Raised)
    } else {
        Ok(status)
    }
}

/// The pending exception, taken out of the thread state and put back (or read) later.
///
/// Uses `PyErr_GetRaisedException`/`PyErr_SetRaisedException` where they exist (3.12+;
/// `PyErr_Fetch`/`PyErr_Restore` are deprecated there) and the triple API before.
pub struct Pending<'py> {
    /// The GIL, held for `'py`: while the taken references are owned here.
    _gil: Gil<'py>,
    #[cfg(Py_3_12)]
    exc: *mut ffi::PyObject,
    #[cfg(not(Py_3_12))]
    triple: [*mut ffi::PyObject; 3],
}

impl<'py> Pending<'py> {
    /// Takes the pending exception (if any) out of the thread state.
    ///
    /// Exporter's releasebuffer takes and restores on every release, almost always with
    /// nothing pending: that case is one `PyErr_Occurred` here and one in
    /// [`restore`](Self::restore), instead of moving three (or one) NULL references out and
    /// back in.
    pub fn take(gil: Gil<'py>) -> Self {
        // SAFETY: the GIL is held (`gil`); a borrowed read of the thread's exception.
        if unsafe { ffi::PyErr_Occurred() }.is_null() {
            return Self::none(gil);
        }
        #[cfg(Py_3_12)]
        {
            // SAFETY: the GIL is held (`gil`); returns a new reference or NULL and clears the
            // thread's exception state.
            let exc = unsafe { ffi::PyErr_GetRaisedException() };
            Self { _gil: gil, exc }
        }
        #[cfg(not(Py_3_12))]
        {
            let mut triple = [core::ptr::null_mut(); 3];
            let [t, v, tb] = &mut triple;
            // SAFETY: the GIL is held (`gil`); moves the exception (new references or NULL) out.
            unsafe { ffi::PyErr_Fetch(t, v, tb) };
            Self { _gil: gil, triple }
        }
    }

    /// No exception.
    fn none(gil: Gil<'py>) -> Self {
        Self {
            _gil: gil,
            #[cfg(Py_3_12)]
            exc: core::ptr::null_mut(),
            #[cfg(not(Py_3_12))]
            triple: [core::ptr::null_mut(); 3],
        }
    }

    fn is_none(&self) -> bool {
        #[cfg(Py_3_12)]
        return self.exc.is_null();
        #[cfg(not(Py_3_12))]
        return self.triple[0].is_null();
    }

    /// Makes it the pending exception again (nothing, if there was none: an exception raised
    /// since is cleared).
    pub fn restore(self) {
        if self.is_none() {
            // SAFETY: the GIL is held (for `'py`).
            if unsafe { !ffi::PyErr_Occurred().is_null() } {
                // SAFETY: as above.
                unsafe { ffi::PyErr_Clear() };
            }
            return;
        }
        #[cfg(Py_3_12)]
        // SAFETY: the GIL is held (for `'py`); takes over our reference (NULL clears).
        unsafe {
            ffi::PyErr_SetRaisedException(self.exc)
        };
        #[cfg(not(Py_3_12))]
        // SAFETY: the GIL is held (for `'py`); takes over the three references `take` fetched.
        unsafe {
            ffi::PyErr_Restore(self.triple[0], self.triple[1], self.triple[2])
        };
    }

    /// Drops the exception (if any) without making it pending: for when another exception,
    /// raised since, is the one to report.
    pub fn discard(self) {
        #[cfg(Py_3_12)]
        // SAFETY: our reference or NULL; the GIL is held (for `'py`).
        drop(unsafe { super::object::Owned::from_new(self.exc) });
        #[cfg(not(Py_3_12))]
        for p in self.triple {
            // SAFETY: new references or NULL from PyErr_Fetch; the GIL is held (for `'py`).
            drop(unsafe { super::object::Owned::from_new(p) });
        }
    }

    /// `str()` of the exception, consuming it; empty if there was none.
    pub fn message(self) -> String {
        #[cfg(Py_3_12)]
        // SAFETY: our reference to the exception instance, or NULL; the GIL is held
        // (for `'py`) while it is owned and dropped.
        let value = unsafe { super::object::Owned::from_new(self.exc) };
        #[cfg(not(Py_3_12))]
        let value = {
            let [t, v, tb] = self.triple;
            // SAFETY: new references or NULL from PyErr_Fetch; the GIL is held (for `'py`)
            // while they are owned and dropped.
            let _others = unsafe {
                (
                    super::object::Owned::from_new(t),
                    super::object::Owned::from_new(tb),
                )
            };
            // SAFETY: as above.
            unsafe { super::object::Owned::from_new(v) }
        };
        let text = value.ok().and_then(|v| {
            // SAFETY: the GIL is held (for `'py`); `v` is live; PyObject_Str returns a new
            // reference or NULL.
            unsafe { super::object::Owned::from_new(ffi::PyObject_Str(v.as_ptr())) }.ok()
        });
        let text = text
            .and_then(|t| super::convert::str_of(t.borrow()).ok())
            .unwrap_or_default();
        // SAFETY: the GIL is held (for `'py`); a failed str() must not leave an exception.
        unsafe { ffi::PyErr_Clear() };
        text
    }
}
