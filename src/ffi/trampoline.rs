//! The panic boundary of every method, getter and type slot: a Rust function that returns a
//! [`Result`] becomes a C function that returns a value or NULL/-1 with an exception set, and
//! a panic becomes a `SystemError`.
//!
//! Mirrors PyO3's `src/impl_/trampoline.rs`. The macros at the end define the `extern "C"`
//! shims with the exact C signature of each kind of callable (`METH_NOARGS`,
//! `METH_VARARGS | METH_KEYWORDS`, `getter`, `newfunc`, ...) and hand everything to the
//! generic functions here; they hide no control flow of the functions they wrap.
//!
//! The macros are exported (`bufferkit::bufferkit_noargs!`, ...) for extension crates that
//! write their own method and slot tables; [`spec`](super::spec)'s `bufferkit_method!` and
//! `bufferkit_slot!` wrap them in values typed by `T`, which is what an author should use. A shim
//! made for `T` assumes what [`this`] assumes: it must be registered only on a type whose
//! instances are `Object<T>` (made with `Object::<T>::BASICSIZE` and `dealloc::<T>`), as
//! [`getbuffer`](super::getbuffer)`::<T>` must.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3_ffi as ffi;

use super::error::{Error, Result};
use super::object::{Borrowed, Object, Owned};
use crate::exporter::Gil;

/// A method's receiver: the GIL token, the object, and the Rust value inside it.
pub struct This<'py, T> {
    /// The GIL, held for the call.
    pub gil: Gil<'py>,
    /// The receiving object.
    pub obj: Borrowed<'py>,
    /// The value inside it.
    pub value: &'py T,
}

impl<T> Clone for This<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for This<'_, T> {}

/// Runs `body` inside the panic boundary; `failed` is what the C caller reads as "an exception
/// is set" (NULL or -1).
#[doc(hidden)]
#[inline(always)]
pub fn guard<'py, R>(gil: Gil<'py>, failed: R, body: impl FnOnce(Gil<'py>) -> Result<R>) -> R {
    let err = match catch_unwind(AssertUnwindSafe(|| body(gil))) {
        Ok(Ok(value)) => return value,
        Ok(Err(err)) => err,
        Err(panic) => Error::from_panic(panic),
    };
    err.restore(gil);
    failed
}

/// The receiver of a method of a type whose instances are `Object<T>`.
///
/// # Safety
///
/// The GIL is held for `'py`, and `slf` is a live instance of such a type (CPython checks the
/// receiver's type before calling a method or getter defined on it).
#[doc(hidden)]
#[inline(always)]
pub unsafe fn this<'py, T>(gil: Gil<'py>, slf: *mut ffi::PyObject) -> Result<This<'py, T>> {
    // SAFETY: `slf` is live for the call and the GIL is held (caller).
    let obj = unsafe { Borrowed::from_ptr(slf) }.ok_or(Error::Raised)?;
    // SAFETY: `slf` is an `Object<T>` (caller), alive for the call.
    let value = unsafe { Object::<T>::value_of(slf) };
    Ok(This { gil, obj, value })
}

/// A callable returning an object: NULL on error.
///
/// # Safety
///
/// Called from a C slot or method with the GIL held.
#[doc(hidden)]
#[inline(always)]
pub unsafe fn object_result(body: impl FnOnce(Gil<'_>) -> Result<Owned>) -> *mut ffi::PyObject {
    // SAFETY: the GIL is held (caller).
    let gil = unsafe { Gil::assume() };
    guard(gil, core::ptr::null_mut(), |gil| {
        body(gil).map(Owned::into_raw)
    })
}

/// A callable returning a `Py_ssize_t` or an int status: -1 on error.
///
/// # Safety
///
/// Called from a C slot with the GIL held.
#[doc(hidden)]
#[inline(always)]
pub unsafe fn int_result<R: From<i8>>(body: impl FnOnce(Gil<'_>) -> Result<R>) -> R {
    // SAFETY: the GIL is held (caller).
    let gil = unsafe { Gil::assume() };
    guard(gil, R::from(-1), body)
}

/// Borrows an optional argument (`kwargs` may be NULL).
///
/// # Safety
///
/// `ptr` is NULL or a live object borrowed for `'py` with the GIL held.
#[doc(hidden)]
#[inline(always)]
pub unsafe fn optional<'py>(ptr: *mut ffi::PyObject) -> Option<Borrowed<'py>> {
    // SAFETY: forwarded from the caller.
    unsafe { Borrowed::from_ptr(ptr) }
}

/// The arguments of a vectorcall-style call (`METH_FASTCALL | METH_KEYWORDS` methods and
/// `tp_vectorcall`): the positional ones, then the values of the keyword ones, whose names are
/// the tuple `kwnames`. All borrowed for the call.
#[derive(Clone, Copy)]
pub struct FastArgs<'py> {
    // INVARIANTS: `args` points to `nargs + len(kwnames)` live borrowed references (or is
    // dangling with nothing to read); `kwnames` is NULL or a tuple of str.
    args: *const *mut ffi::PyObject,
    nargs: usize,
    kwnames: Option<Borrowed<'py>>,
}

impl<'py> FastArgs<'py> {
    /// # Safety
    ///
    /// What CPython passes to a `METH_FASTCALL | METH_KEYWORDS` method or a `vectorcallfunc`
    /// (with `nargs` already stripped of `PY_VECTORCALL_ARGUMENTS_OFFSET`), valid for `'py`.
    #[doc(hidden)]
    #[inline(always)]
    pub unsafe fn new(
        args: *const *mut ffi::PyObject,
        nargs: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> Self {
        Self {
            args,
            nargs: nargs as usize,
            // SAFETY: NULL or a live tuple borrowed for the call (caller).
            kwnames: unsafe { Borrowed::from_ptr(kwnames) },
        }
    }

    /// The positional arguments.
    pub fn positional(&self) -> &[*mut ffi::PyObject] {
        if self.nargs == 0 {
            return &[];
        }
        // SAFETY: `args` holds `nargs` references first (invariants).
        unsafe { core::slice::from_raw_parts(self.args, self.nargs) }
    }

    /// The number of keyword arguments.
    fn keyword_count(&self) -> usize {
        self.kwnames.map_or(0, |names| {
            // SAFETY: a live tuple (invariants).
            unsafe { ffi::PyTuple_Size(names.as_ptr()) }.max(0) as usize
        })
    }

    /// The keyword arguments: `(name, value)` pairs, borrowed; the names are str.
    pub fn keywords(&self) -> impl Iterator<Item = (Borrowed<'py>, Borrowed<'py>)> + '_ {
        (0..self.keyword_count()).filter_map(move |i| {
            let names = self.kwnames?;
            // SAFETY: 0 <= i < len(kwnames); the tuple and its items live for the call. The
            // value follows the positional ones (invariants).
            unsafe {
                let name = Borrowed::from_ptr(ffi::PyTuple_GetItem(names.as_ptr(), i as isize))?;
                let value = Borrowed::from_ptr(*self.args.add(self.nargs + i))?;
                Some((name, value))
            }
        })
    }

    /// Whether any keyword argument was given.
    pub fn has_keywords(&self) -> bool {
        self.keyword_count() > 0
    }

    /// The same arguments as `tp_call` gets them: a tuple and a dict (or `None`), for a slow
    /// path that hands them to `PyArg_ParseTupleAndKeywords`.
    pub fn to_tuple_dict(&self, _gil: Gil<'py>) -> Result<(Owned, Option<Owned>)> {
        let positional = self.positional();
        // SAFETY: the GIL is held; PyTuple_New returns a new reference or NULL with an error.
        let tuple = unsafe { Owned::from_new(ffi::PyTuple_New(positional.len() as isize)) }?;
        for (i, &item) in positional.iter().enumerate() {
            // SAFETY: a live reference borrowed for the call (invariants).
            let item = unsafe { Borrowed::from_ptr(item) }.ok_or(Error::Raised)?;
            // SAFETY: PyTuple_SetItem steals the new reference, into the fresh tuple's empty
            // slot `i < len`.
            unsafe {
                ffi::PyTuple_SetItem(
                    tuple.as_ptr(),
                    i as isize,
                    Owned::from_borrowed(item).into_raw(),
                )
            };
        }
        if !self.has_keywords() {
            return Ok((tuple, None));
        }
        // SAFETY: the GIL is held.
        let dict = unsafe { Owned::from_new(ffi::PyDict_New()) }?;
        for (name, value) in self.keywords() {
            // SAFETY: live objects; PyDict_SetItem takes references of its own. A name may be
            // a str subclass whose `__hash__` or `__eq__` runs Python code: nothing here is
            // borrowed from an object's state (the arguments are the caller's, alive for the
            // call, and only the new dict is written).
            if unsafe { ffi::PyDict_SetItem(dict.as_ptr(), name.as_ptr(), value.as_ptr()) } < 0 {
                return Err(Error::Raised);
            }
        }
        Ok((tuple, Some(dict)))
    }
}

/// `extern "C" fn(self, unused) -> PyObject*` for `METH_NOARGS`, from
/// `fn(This<T>) -> Result<Owned>`. Also fits `getter` (the closure argument is ignored) and
/// unary slots such as `tp_repr` and `tp_iter` (the shim takes one argument).
#[macro_export]
macro_rules! bufferkit_noargs {
    ($T:ty, $f:expr) => {{
        unsafe extern "C" fn shim(
            slf: *mut $crate::pyo3_ffi::PyObject,
            _: *mut $crate::pyo3_ffi::PyObject,
        ) -> *mut $crate::pyo3_ffi::PyObject {
            // SAFETY: CPython calls methods with the GIL held and `slf` an instance of the
            // defining type, whose instances are `Object<$T>`.
            unsafe {
                $crate::ffi::trampoline::object_result(|gil| {
                    $f($crate::ffi::trampoline::this::<$T>(gil, slf)?)
                })
            }
        }
        shim
    }};
}

/// `extern "C" fn(self, closure) -> PyObject*` (`getter`), from `fn(This<T>) -> Result<Owned>`.
#[macro_export]
macro_rules! bufferkit_getter {
    ($T:ty, $f:expr) => {{
        unsafe extern "C" fn shim(
            slf: *mut $crate::pyo3_ffi::PyObject,
            _: *mut core::ffi::c_void,
        ) -> *mut $crate::pyo3_ffi::PyObject {
            // SAFETY: CPython calls getters with the GIL held and `slf` an instance of the
            // defining type, whose instances are `Object<$T>`.
            unsafe {
                $crate::ffi::trampoline::object_result(|gil| {
                    $f($crate::ffi::trampoline::this::<$T>(gil, slf)?)
                })
            }
        }
        shim
    }};
}

/// `extern "C" fn(self) -> PyObject*` (`reprfunc` and other unary slots), from
/// `fn(This<T>) -> Result<Owned>`.
#[macro_export]
macro_rules! bufferkit_unary {
    ($T:ty, $f:expr) => {{
        unsafe extern "C" fn shim(
            slf: *mut $crate::pyo3_ffi::PyObject,
        ) -> *mut $crate::pyo3_ffi::PyObject {
            // SAFETY: CPython calls type slots with the GIL held and `slf` an instance of the
            // type, whose instances are `Object<$T>`.
            unsafe {
                $crate::ffi::trampoline::object_result(|gil| {
                    $f($crate::ffi::trampoline::this::<$T>(gil, slf)?)
                })
            }
        }
        shim
    }};
}

/// `extern "C" fn(self, arg) -> PyObject*` for `METH_O` and `mp_subscript`, from
/// `fn(This<T>, Borrowed) -> Result<Owned>`.
#[macro_export]
macro_rules! bufferkit_onearg {
    ($T:ty, $f:expr) => {{
        unsafe extern "C" fn shim(
            slf: *mut $crate::pyo3_ffi::PyObject,
            arg: *mut $crate::pyo3_ffi::PyObject,
        ) -> *mut $crate::pyo3_ffi::PyObject {
            // SAFETY: CPython calls these with the GIL held, `slf` an instance of the type
            // (whose instances are `Object<$T>`) and `arg` a live borrowed argument.
            unsafe {
                $crate::ffi::trampoline::object_result(|gil| {
                    let arg =
                        $crate::ffi::trampoline::optional(arg).ok_or($crate::ffi::Error::Raised)?;
                    $f($crate::ffi::trampoline::this::<$T>(gil, slf)?, arg)
                })
            }
        }
        shim
    }};
}

/// `extern "C" fn(self, args, kwargs) -> PyObject*` for `METH_VARARGS | METH_KEYWORDS`, from
/// `fn(This<T>, Borrowed, Option<Borrowed>) -> Result<Owned>`.
#[macro_export]
macro_rules! bufferkit_varkw {
    ($T:ty, $f:expr) => {{
        unsafe extern "C" fn shim(
            slf: *mut $crate::pyo3_ffi::PyObject,
            args: *mut $crate::pyo3_ffi::PyObject,
            kwargs: *mut $crate::pyo3_ffi::PyObject,
        ) -> *mut $crate::pyo3_ffi::PyObject {
            // SAFETY: CPython calls methods with the GIL held, `slf` an instance of the
            // defining type (whose instances are `Object<$T>`), `args` a tuple and `kwargs`
            // NULL or a dict, all borrowed for the call.
            unsafe {
                $crate::ffi::trampoline::object_result(|gil| {
                    let args = $crate::ffi::trampoline::optional(args)
                        .ok_or($crate::ffi::Error::Raised)?;
                    let kwargs = $crate::ffi::trampoline::optional(kwargs);
                    $f($crate::ffi::trampoline::this::<$T>(gil, slf)?, args, kwargs)
                })
            }
        }
        shim
    }};
}

/// `extern "C" fn(self, args, nargs, kwnames) -> PyObject*` for `METH_FASTCALL |
/// METH_KEYWORDS`, from `fn(This<T>, FastArgs) -> Result<Owned>`: no argument tuple or
/// keyword dict is made for the call.
#[macro_export]
macro_rules! bufferkit_fastkw {
    ($T:ty, $f:expr) => {{
        unsafe extern "C" fn shim(
            slf: *mut $crate::pyo3_ffi::PyObject,
            args: *const *mut $crate::pyo3_ffi::PyObject,
            nargs: $crate::pyo3_ffi::Py_ssize_t,
            kwnames: *mut $crate::pyo3_ffi::PyObject,
        ) -> *mut $crate::pyo3_ffi::PyObject {
            // SAFETY: CPython calls methods with the GIL held, `slf` an instance of the
            // defining type (whose instances are `Object<$T>`), and the arguments as
            // `METH_FASTCALL | METH_KEYWORDS` has them, all borrowed for the call.
            unsafe {
                $crate::ffi::trampoline::object_result(|gil| {
                    let args = $crate::ffi::trampoline::FastArgs::new(args, nargs, kwnames);
                    $f($crate::ffi::trampoline::this::<$T>(gil, slf)?, args)
                })
            }
        }
        shim
    }};
}

/// `extern "C" fn(callable, args, nargsf, kwnames) -> PyObject*` (`vectorcallfunc`) for a
/// type's `tp_vectorcall` (`Py_tp_vectorcall`, CPython 3.14+), from
/// `fn(Gil, *mut PyTypeObject, FastArgs) -> Result<Owned>`. CPython never inherits
/// `tp_vectorcall`: a subclass is called through its `tp_new` (and `__init__`), and `callable`
/// is the type whose slot this is.
#[macro_export]
macro_rules! bufferkit_vectorcall {
    ($f:expr) => {{
        unsafe extern "C" fn shim(
            callable: *mut $crate::pyo3_ffi::PyObject,
            args: *const *mut $crate::pyo3_ffi::PyObject,
            nargsf: usize,
            kwnames: *mut $crate::pyo3_ffi::PyObject,
        ) -> *mut $crate::pyo3_ffi::PyObject {
            // The argument count without PY_VECTORCALL_ARGUMENTS_OFFSET (the top bit), as
            // PyVectorcall_NARGS computes it.
            let nargs = (nargsf & !(1usize << (usize::BITS - 1))) as $crate::pyo3_ffi::Py_ssize_t;
            // SAFETY: CPython calls a type's vectorcall with the GIL held, `callable` the type,
            // and the arguments as PEP 590 has them, all borrowed for the call.
            unsafe {
                $crate::ffi::trampoline::object_result(|gil| {
                    let args = $crate::ffi::trampoline::FastArgs::new(args, nargs, kwnames);
                    $f(gil, callable.cast::<$crate::pyo3_ffi::PyTypeObject>(), args)
                })
            }
        }
        shim
    }};
}

/// `extern "C" fn(first, args, kwargs) -> PyObject*` where `first` is not an instance: a type
/// (`tp_new`, `METH_CLASS` methods) or a module (module functions). From
/// `fn(Gil, *mut PyObject, Borrowed, Option<Borrowed>) -> Result<Owned>`.
#[macro_export]
macro_rules! bufferkit_with_first {
    ($First:ty, $f:expr) => {{
        unsafe extern "C" fn shim(
            first: *mut $First,
            args: *mut $crate::pyo3_ffi::PyObject,
            kwargs: *mut $crate::pyo3_ffi::PyObject,
        ) -> *mut $crate::pyo3_ffi::PyObject {
            // SAFETY: CPython calls these with the GIL held, `first` live, `args` a tuple and
            // `kwargs` NULL or a dict, all borrowed for the call.
            unsafe {
                $crate::ffi::trampoline::object_result(|gil| {
                    let args = $crate::ffi::trampoline::optional(args)
                        .ok_or($crate::ffi::Error::Raised)?;
                    let kwargs = $crate::ffi::trampoline::optional(kwargs);
                    $f(gil, first, args, kwargs)
                })
            }
        }
        shim
    }};
}

/// `extern "C" fn(self, other, op) -> PyObject*` (`richcmpfunc`, the `Py_tp_richcompare`
/// slot), from `fn(This<T>, Borrowed, c_int) -> Result<Owned>`.
#[macro_export]
macro_rules! bufferkit_richcompare {
    ($T:ty, $f:expr) => {{
        unsafe extern "C" fn shim(
            slf: *mut $crate::pyo3_ffi::PyObject,
            other: *mut $crate::pyo3_ffi::PyObject,
            op: core::ffi::c_int,
        ) -> *mut $crate::pyo3_ffi::PyObject {
            // SAFETY: CPython calls tp_richcompare with the GIL held, `slf` an instance of the
            // type whose slot it is (instances are `Object<$T>`; `do_richcompare` in
            // Objects/object.c passes first the object whose type's slot it calls) and `other`
            // a live borrowed object.
            unsafe {
                $crate::ffi::trampoline::object_result(|gil| {
                    let other = $crate::ffi::trampoline::optional(other)
                        .ok_or($crate::ffi::Error::Raised)?;
                    $f($crate::ffi::trampoline::this::<$T>(gil, slf)?, other, op)
                })
            }
        }
        shim
    }};
}

/// `extern "C" fn(self) -> Py_ssize_t` (`lenfunc`), from `fn(This<T>) -> Result<isize>`.
#[macro_export]
macro_rules! bufferkit_length {
    ($T:ty, $f:expr) => {{
        unsafe extern "C" fn shim(
            slf: *mut $crate::pyo3_ffi::PyObject,
        ) -> $crate::pyo3_ffi::Py_ssize_t {
            // SAFETY: CPython calls lenfunc with the GIL held and `slf` an instance of the
            // type, whose instances are `Object<$T>`.
            unsafe {
                $crate::ffi::trampoline::int_result(|gil| {
                    $f($crate::ffi::trampoline::this::<$T>(gil, slf)?)
                })
            }
        }
        shim
    }};
}
