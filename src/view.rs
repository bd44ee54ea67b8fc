//! The consumer side: [`BufferView`], an RAII view over `PyObject_GetBuffer` /
//! `PyBuffer_Release` that takes explicit request flags and exposes the fields safely.
//!
//! Mirrors the consumer half of `Doc/c-api/buffer.rst`: a view is obtained with a request,
//! read while held, and released exactly once (here: on drop). The `Py_buffer` never leaves
//! the `BufferView`, so it cannot be released twice or read after release.

use core::cell::Cell;
use core::ffi::{c_char, c_int, CStr};
use core::marker::PhantomData;
use core::ptr::NonNull;

use pyo3_ffi as ffi;

use crate::exporter::Gil;
use crate::ffi::{unwind, Borrowed, Error, Owned, Result};
use crate::request::Request;

/// A buffer obtained from an exporter, released on drop.
pub struct BufferView<'py> {
    // INVARIANTS: `raw` points to a `Py_buffer` filled by a successful `PyObject_GetBuffer`,
    // released exactly once, in `drop`; its pointers are valid until then. It never moves:
    // some exporters point `shape`/`strides` into the struct itself (`PyBuffer_FillInfo` sets
    // `shape = &view->len`, `array.array` sets `strides = &view->itemsize`). It is a `Box`
    // leaked by `get` (`boxed`, freed on drop), or a slot on the stack of `with`, which
    // outlives the view and is only lent to its closure by shared reference.
    raw: NonNull<ffi::Py_buffer>,
    boxed: bool,
    // Ties the view to the GIL (release needs it) and keeps it on this thread.
    _gil: PhantomData<Gil<'py>>,
}

/// Memory order for copies: `'C'`, `'F'` or `'A'` (Fortran if the view is
/// Fortran-contiguous, else C), as `PyBuffer_ToContiguous` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyOrder {
    /// Row-major.
    C,
    /// Column-major.
    F,
    /// Fortran order if the view is Fortran-contiguous, else C.
    A,
}

impl CopyOrder {
    fn as_c_char(self) -> c_char {
        (match self {
            Self::C => b'C',
            Self::F => b'F',
            Self::A => b'A',
        }) as c_char
    }
}

impl<'py> BufferView<'py> {
    /// `PyObject_GetBuffer(obj, &view, flags)`.
    pub fn get(obj: Borrowed<'py>, flags: c_int) -> Result<Self> {
        let mut raw = Box::new(ffi::Py_buffer::new());
        // SAFETY: `obj` is live and the GIL is held (`Borrowed`); `raw` is a writable
        // Py_buffer at an address that does not change until it is released.
        let status = unsafe { unwind::get_buffer(obj.as_ptr(), &mut *raw, flags) };
        if status == -1 {
            return Err(Error::Raised);
        }
        Ok(Self {
            raw: NonNull::from(Box::leak(raw)),
            boxed: true,
            _gil: PhantomData,
        })
    }

    /// `PyObject_GetBuffer(obj, &view, flags)`, `f(&view)`, then the release: the same as
    /// [`get`](Self::get) for a view used in one scope, without its allocation (the
    /// `Py_buffer` lives on this function's stack, which outlives the view).
    ///
    /// The view is lent to `f`, so nothing borrowed from it can outlive the release.
    pub fn with<R>(
        obj: Borrowed<'py>,
        flags: c_int,
        f: impl FnOnce(&BufferView<'py>) -> R,
    ) -> Result<R> {
        let mut slot = ffi::Py_buffer::new();
        // SAFETY: `obj` is live and the GIL is held (`Borrowed`); `slot` is a writable
        // Py_buffer that does not move until this function returns, after the release.
        let status = unsafe { unwind::get_buffer(obj.as_ptr(), &mut slot, flags) };
        if status == -1 {
            return Err(Error::Raised);
        }
        // Declared after `slot`, so dropped (released) before it, also when `f` panics.
        let view = Self {
            raw: NonNull::from(&mut slot),
            boxed: false,
            _gil: PhantomData,
        };
        Ok(f(&view))
    }

    /// The filled `Py_buffer` (invariants).
    fn raw(&self) -> &ffi::Py_buffer {
        // SAFETY: `raw` points to a filled Py_buffer that lives at least as long as `self`
        // and that only `drop` changes (invariants).
        unsafe { self.raw.as_ref() }
    }

    /// `PyObject_GetBuffer(obj, &view, request.flags())`: a request made with
    /// [`Request::new`], so flags that are not a request are refused before the exporter
    /// sees them.
    ///
    /// ```
    /// use bufferkit::request::{flags, Request};
    /// let contig = Request::new(flags::CONTIG_RO).unwrap();
    /// assert!(contig.shape() && !contig.strides() && !contig.writable());
    /// ```
    pub fn request(obj: Borrowed<'py>, request: Request) -> Result<Self> {
        Self::get(obj, request.flags())
    }

    /// The raw struct, for passing to C-API functions that read it.
    pub fn as_raw(&self) -> &ffi::Py_buffer {
        self.raw()
    }
    /// `buf`: the address of the first element.
    pub fn buf(&self) -> *mut core::ffi::c_void {
        self.raw().buf
    }
    /// `obj`: the exporter (may be NULL for views made by `PyBuffer_FillInfo` with no object).
    pub fn obj(&self) -> Option<Borrowed<'_>> {
        // SAFETY: `raw.obj` is NULL or a strong reference the view holds until release.
        unsafe { Borrowed::from_ptr(self.raw().obj) }
    }
    /// `len`: the number of bytes the view covers.
    pub fn len(&self) -> isize {
        self.raw().len
    }
    /// Whether the view covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.raw().len == 0
    }
    /// `itemsize`.
    pub fn itemsize(&self) -> isize {
        self.raw().itemsize
    }
    /// `readonly`.
    pub fn readonly(&self) -> bool {
        self.raw().readonly != 0
    }
    /// `ndim`.
    pub fn ndim(&self) -> usize {
        usize::try_from(self.raw().ndim).unwrap_or(0)
    }
    /// `format`, if the request asked for it.
    pub fn format(&self) -> Option<&CStr> {
        // SAFETY: a non-NULL format is a C string valid until release (buffer.rst, `format`).
        (!self.raw().format.is_null()).then(|| unsafe { CStr::from_ptr(self.raw().format) })
    }
    /// `shape`, if present.
    pub fn shape(&self) -> Option<&[isize]> {
        self.array(self.raw().shape)
    }
    /// `strides`, if present.
    pub fn strides(&self) -> Option<&[isize]> {
        self.array(self.raw().strides)
    }
    /// `suboffsets`, if present.
    pub fn suboffsets(&self) -> Option<&[isize]> {
        self.array(self.raw().suboffsets)
    }

    fn array(&self, ptr: *mut ffi::Py_ssize_t) -> Option<&[isize]> {
        // SAFETY: shape, strides and suboffsets, when not NULL, are arrays of `ndim` entries
        // valid until release (buffer.rst, "Buffer structure").
        (!ptr.is_null()).then(|| unsafe { core::slice::from_raw_parts(ptr, self.ndim()) })
    }

    /// Whether the view is contiguous in `order` (`PyBuffer_IsContiguous`).
    pub fn is_contiguous(&self, order: CopyOrder) -> bool {
        // SAFETY: `raw` is a filled view (invariant); the call only reads it.
        unsafe { ffi::PyBuffer_IsContiguous(self.raw(), order.as_c_char()) != 0 }
    }

    /// The bytes, if the view is one C-contiguous block. `Cell` because other holders of the
    /// same memory (Python code, other views) may write to it while this borrow lives.
    pub fn as_cells(&self) -> Option<&[Cell<u8>]> {
        if !self.is_contiguous(CopyOrder::C) || self.raw().len < 0 {
            return None;
        }
        if self.raw().len == 0 {
            return Some(&[]);
        }
        // SAFETY: a C-contiguous view covers `len` bytes from `buf` (buffer.rst), valid until
        // release; `Cell<u8>` has the layout of `u8` and admits writes by others while shared.
        Some(unsafe {
            core::slice::from_raw_parts(self.raw().buf.cast::<Cell<u8>>(), self.raw().len as usize)
        })
    }

    /// Copies the view's items into `dst` (of exactly `len()` bytes) in `order`.
    pub fn copy_to(&self, dst: &mut [u8], order: CopyOrder) -> Result<()> {
        if dst.len() as isize != self.raw().len {
            return Err(Error::value_error(format!(
                "destination has {} bytes, the buffer {}",
                dst.len(),
                self.raw().len
            )));
        }
        // The full API before 3.11 declares the view `*mut`; the function only reads it.
        let raw = self.raw.as_ptr();
        // SAFETY: `dst` is writable for `len` bytes and `raw` is a filled view; the call
        // follows shape/strides/suboffsets, which the exporter guarantees are in bounds.
        let status = unsafe {
            ffi::PyBuffer_ToContiguous(
                dst.as_mut_ptr().cast(),
                raw,
                self.raw().len,
                order.as_c_char(),
            )
        };
        if status == -1 {
            Err(Error::Raised)
        } else {
            Ok(())
        }
    }

    /// A new `bytes` with the view's items in `order` (`memoryview.tobytes(order)`).
    pub fn to_bytes(&self, order: CopyOrder) -> Result<Owned> {
        // SAFETY: a NULL source asks for an uninitialised bytes object of `len` bytes.
        let bytes = unsafe {
            Owned::from_new(ffi::PyBytes_FromStringAndSize(
                core::ptr::null(),
                self.raw().len,
            ))
        }?;
        // SAFETY: `bytes` is a fresh bytes object; its buffer is ours to fill before it is
        // shared (bytesobject.rst, PyBytes_FromStringAndSize with a NULL `v`).
        let data = unsafe { ffi::PyBytes_AsString(bytes.as_ptr()) };
        if data.is_null() {
            return Err(Error::Raised);
        }
        // SAFETY: `data` holds `len` writable bytes owned by `bytes`, which nothing else sees yet.
        let dst =
            unsafe { core::slice::from_raw_parts_mut(data.cast::<u8>(), self.raw().len as usize) };
        self.copy_to(dst, order)?;
        Ok(bytes)
    }
}

impl Drop for BufferView<'_> {
    fn drop(&mut self) {
        // SAFETY: `raw` was filled by PyObject_GetBuffer and is released once, here, with the
        // GIL held (the view cannot outlive `'py` nor leave the thread).
        unsafe { unwind::release_buffer(self.raw.as_ptr()) };
        if self.boxed {
            // SAFETY: made by `Box::leak` in `get` and freed once, here, after the release.
            drop(unsafe { Box::from_raw(self.raw.as_ptr()) });
        }
    }
}
