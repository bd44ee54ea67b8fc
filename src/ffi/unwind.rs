//! Calls into Python code that may never return: CPython 3.9-3.13 end a thread with
//! `pthread_exit()` when it asks for the GIL back while the interpreter finalizes.
//!
//! `pthread_exit()` on glibc is a *forced unwind* of the thread's stack. If it starts inside
//! Python code that a bufferkit frame called (an Exporter's `__buffer__`, the getbuffer slot of
//! a Python-level exporter that a View wraps, a `__del__` run by a decref), it unwinds towards
//! that frame, and Rust cannot let it pass: an `extern "C"` function aborts on any unwind, a
//! `catch_unwind` aborts on a foreign one ("FATAL: exception not rethrown"), and a destructor on
//! the way would run without the GIL. CPython 3.14 parks such threads instead (gh-87135).
//!
//! bufferkit does the same, one frame earlier. The calls through which it runs Python code by
//! design are declared here again with the `"C-unwind"` ABI (pyo3-ffi declares them `"C"`,
//! which tells the compiler they never unwind), and are made through `reenter`. Its guard is
//! the innermost destructor on the way: it runs only when the call is left by an unwind, and it
//! never returns. The thread stays parked, holding no GIL (CPython drops it before
//! `pthread_exit()`), until the process exits, which is what 3.14 does to it a few frames
//! deeper. No bufferkit frame is unwound and no destructor runs without the GIL.
//!
//! What this does not cover is Python code run from a C-API call that is not one of these:
//! an argument's `__index__` or `__len__` while a method converts it, or a finalizer the cyclic
//! collector runs inside an allocation (README, "Daemon threads at exit").

use core::ffi::c_int;

use pyo3_ffi as ffi;

// The same symbols as pyo3-ffi's, with an ABI that lets an unwind out of them; `signatures`
// below checks that every parameter type is pyo3-ffi's, whose layouts `make abicheck` compares.
// PyPy's cpyext exports each under a `PyPy` prefix (its headers `#define` the CPython names),
// as pyo3-ffi's own declarations link them.
#[allow(non_snake_case)]
mod imports {
    use super::{c_int, ffi};

    extern "C-unwind" {
        #[cfg_attr(PyPy, link_name = "PyPyObject_GetBuffer")]
        pub fn PyObject_GetBuffer(
            obj: *mut ffi::PyObject,
            view: *mut ffi::Py_buffer,
            flags: c_int,
        ) -> c_int;
        #[cfg_attr(PyPy, link_name = "PyPyBuffer_Release")]
        pub fn PyBuffer_Release(view: *mut ffi::Py_buffer);
        #[cfg_attr(PyPy, link_name = "PyPyObject_Call")]
        pub fn PyObject_Call(
            callable: *mut ffi::PyObject,
            args: *mut ffi::PyObject,
            kwargs: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject;
        #[cfg_attr(PyPy, link_name = "PyPyObject_CallFunctionObjArgs")]
        pub fn PyObject_CallFunctionObjArgs(
            callable: *mut ffi::PyObject,
            ...
        ) -> *mut ffi::PyObject;
        #[cfg_attr(PyPy, link_name = "PyPy_DecRef")]
        pub fn Py_DecRef(obj: *mut ffi::PyObject);
        #[cfg_attr(PyPy, link_name = "PyPyObject_ClearWeakRefs")]
        pub fn PyObject_ClearWeakRefs(obj: *mut ffi::PyObject);
        // Asking for the interpreter back is where CPython 3.9-3.13 end a thread at exit.
        #[cfg(Py_GIL_DISABLED)]
        pub fn PyEval_RestoreThread(state: *mut ffi::PyThreadState);
        // Not in the stable ABI before 3.12: version-specific builds only.
        // Include/cpython/object.h, exported by every version-specific build's libpython (not
        // in the stable ABI). A dict lookup in the MRO may call a key's `__eq__`.
        #[cfg(not(Py_LIMITED_API))]
        #[cfg_attr(PyPy, link_name = "_PyPyType_Lookup")]
        pub fn _PyType_Lookup(
            tp: *mut ffi::PyTypeObject,
            name: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject;
        #[cfg(not(Py_LIMITED_API))]
        #[cfg_attr(PyPy, link_name = "PyPyObject_VectorcallDict")]
        pub fn PyObject_VectorcallDict(
            callable: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargsf: libc::size_t,
            kwdict: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject;
    }
}

/// Compile-time proof that each import above has pyo3-ffi's signature but for the ABI.
#[allow(dead_code)]
fn signatures() {
    fn same3<A, B, C, R>(
        _: unsafe extern "C" fn(A, B, C) -> R,
        _: unsafe extern "C-unwind" fn(A, B, C) -> R,
    ) {
    }
    fn same1<A, R>(_: unsafe extern "C" fn(A) -> R, _: unsafe extern "C-unwind" fn(A) -> R) {}
    fn same_variadic<A, R>(
        _: unsafe extern "C" fn(A, ...) -> R,
        _: unsafe extern "C-unwind" fn(A, ...) -> R,
    ) {
    }
    same3(ffi::PyObject_GetBuffer, imports::PyObject_GetBuffer);
    same1(ffi::PyBuffer_Release, imports::PyBuffer_Release);
    same3(ffi::PyObject_Call, imports::PyObject_Call);
    same_variadic(
        ffi::PyObject_CallFunctionObjArgs,
        imports::PyObject_CallFunctionObjArgs,
    );
    same1(ffi::Py_DecRef, imports::Py_DecRef);
    same1(ffi::PyObject_ClearWeakRefs, imports::PyObject_ClearWeakRefs);
    #[cfg(Py_GIL_DISABLED)]
    same1(ffi::PyEval_RestoreThread, imports::PyEval_RestoreThread);
    #[cfg(not(Py_LIMITED_API))]
    {
        fn same4<A, B, C, D, R>(
            _: unsafe extern "C" fn(A, B, C, D) -> R,
            _: unsafe extern "C-unwind" fn(A, B, C, D) -> R,
        ) {
        }
        same4(
            ffi::PyObject_VectorcallDict,
            imports::PyObject_VectorcallDict,
        );
    }
}

/// Parks the thread if dropped: see the module docs. Forgotten after a call that returned.
struct ParkIfUnwound;

impl Drop for ParkIfUnwound {
    #[cold]
    fn drop(&mut self) {
        // Only an unwind out of the call reaches here. A Rust panic cannot be one: every
        // bufferkit entry point catches its own, and no other Rust code runs in between. So
        // this is CPython ending the thread (or a foreign exception, which could not have been
        // unwound through CPython's frames either).
        if std::thread::panicking() {
            std::process::abort();
        }
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Runs `call`, a C-API call from [`imports`] that may run Python code, such that a thread
/// ended inside it is parked here instead of unwinding bufferkit's frames.
///
/// `call` must own nothing with a destructor (it is a single C-API call on raw pointers): it is
/// the frame a forced unwind leaves before it reaches the guard.
#[inline(always)]
fn reenter<R>(call: impl FnOnce() -> R) -> R {
    let guard = ParkIfUnwound;
    let result = call();
    core::mem::forget(guard);
    result
}

/// `PyEval_RestoreThread`: attaches the thread again after `PyEval_SaveThread`. At exit it
/// may end the thread (3.13) or never return (3.14+, the thread parked).
///
/// # Safety
///
/// `state` is this thread's, returned by its `PyEval_SaveThread`, and the thread is detached.
#[cfg(Py_GIL_DISABLED)]
#[inline(always)]
pub unsafe fn restore_thread(state: *mut ffi::PyThreadState) {
    // SAFETY: forwarded from the caller.
    reenter(|| unsafe { imports::PyEval_RestoreThread(state) })
}

/// `PyObject_GetBuffer`, which runs the exporter's getbuffer slot (Python code for an exporter
/// written in Python).
///
/// # Safety
///
/// As `PyObject_GetBuffer`: the GIL is held, `obj` is live and `view` is writable.
#[inline(always)]
pub unsafe fn get_buffer(
    obj: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded from the caller.
    reenter(|| unsafe { imports::PyObject_GetBuffer(obj, view, flags) })
}

/// `PyBuffer_Release`, which runs the exporter's releasebuffer slot and drops `view->obj`.
///
/// # Safety
///
/// As `PyBuffer_Release`: the GIL is held and `view` was filled by a successful getbuffer (or
/// has `obj` NULL).
#[inline(always)]
pub unsafe fn release_buffer(view: *mut ffi::Py_buffer) {
    // SAFETY: forwarded from the caller.
    reenter(|| unsafe { imports::PyBuffer_Release(view) })
}

/// `PyObject_ClearWeakRefs`, which runs the weak references' callbacks.
///
/// # Safety
///
/// As `PyObject_ClearWeakRefs`: the GIL is held and `obj` is being deallocated by its
/// `tp_dealloc`, its type supporting weak references.
#[inline(always)]
pub unsafe fn clear_weakrefs(obj: *mut ffi::PyObject) {
    // SAFETY: forwarded from the caller.
    reenter(|| unsafe { imports::PyObject_ClearWeakRefs(obj) })
}

/// `PyObject_Call`.
///
/// # Safety
///
/// As `PyObject_Call`: the GIL is held, `callable` and `args` (a tuple) are live, `kwargs` is
/// NULL or a live dict.
#[inline(always)]
pub unsafe fn call(
    callable: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: forwarded from the caller.
    reenter(|| unsafe { imports::PyObject_Call(callable, args, kwargs) })
}

/// `callable(a)`.
///
/// # Safety
///
/// The GIL is held and every object is live.
#[inline(always)]
pub unsafe fn call1(callable: *mut ffi::PyObject, a: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: forwarded from the caller.
    unsafe { call_args(callable, &[a]) }
}

/// `callable(a, b)`.
///
/// # Safety
///
/// The GIL is held and every object is live.
#[inline(always)]
pub unsafe fn call2(
    callable: *mut ffi::PyObject,
    a: *mut ffi::PyObject,
    b: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: forwarded from the caller.
    unsafe { call_args(callable, &[a, b]) }
}

/// `callable(*args)` for one or two positional arguments: a vectorcall where the ABI has one
/// (version-specific builds: `PyObject_VectorcallDict`, the exported function behind
/// `PyObject_Vectorcall`), `PyObject_CallFunctionObjArgs` under the 3.11 stable ABI, which
/// offers nothing cheaper (`PyObject_Vectorcall` joined it in 3.12).
///
/// # Safety
///
/// The GIL is held and every object is live.
#[inline(always)]
unsafe fn call_args(
    callable: *mut ffi::PyObject,
    args: &[*mut ffi::PyObject],
) -> *mut ffi::PyObject {
    #[cfg(not(Py_LIMITED_API))]
    {
        let null = core::ptr::null_mut();
        // SAFETY: forwarded from the caller; `args` holds `args.len()` live objects.
        reenter(|| unsafe {
            imports::PyObject_VectorcallDict(callable, args.as_ptr(), args.len(), null)
        })
    }
    #[cfg(Py_LIMITED_API)]
    {
        let end = core::ptr::null_mut::<ffi::PyObject>();
        match *args {
            // SAFETY: forwarded from the caller; the argument list is NULL-terminated.
            [a] => reenter(|| unsafe { imports::PyObject_CallFunctionObjArgs(callable, a, end) }),
            [a, b] => {
                // SAFETY: as above.
                reenter(|| unsafe { imports::PyObject_CallFunctionObjArgs(callable, a, b, end) })
            }
            _ => unreachable!("call1 and call2 pass one or two arguments"),
        }
    }
}

/// `_PyType_Lookup(tp, name)`: `name` in the dicts of `tp`'s MRO, through the type's method
/// cache, as CPython looks up special methods. A borrowed reference, or NULL with no exception
/// set.
///
/// # Safety
///
/// `tp` is a live type, `name` a live `str`, and the GIL is held.
#[cfg(not(Py_LIMITED_API))]
#[inline(always)]
pub unsafe fn type_lookup(
    tp: *mut ffi::PyTypeObject,
    name: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: forwarded from the caller.
    reenter(|| unsafe { imports::_PyType_Lookup(tp, name) })
}

/// `descr_get(descr, obj, tp)`: a type's `tp_descr_get` slot, which may be Python code (a
/// class defining `__get__`).
///
/// # Safety
///
/// `descr_get` is the `tp_descr_get` of `descr`'s type, every object is live and the GIL is
/// held.
#[cfg(not(Py_LIMITED_API))]
#[inline(always)]
pub unsafe fn descr_get(
    descr_get: ffi::descrgetfunc,
    descr: *mut ffi::PyObject,
    obj: *mut ffi::PyObject,
    tp: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    type DescrGet = unsafe extern "C-unwind" fn(
        *mut ffi::PyObject,
        *mut ffi::PyObject,
        *mut ffi::PyObject,
    ) -> *mut ffi::PyObject;
    // SAFETY: the same C function pointer type but for the ABI string, which does not change
    // the calling convention (as in `alloc`).
    let f = unsafe { core::mem::transmute::<ffi::descrgetfunc, DescrGet>(descr_get) };
    // SAFETY: forwarded from the caller.
    reenter(|| unsafe { f(descr, obj, tp) })
}

/// Calls a type's `tp_alloc` slot (`slot`, as `PyType_GetSlot` returns it) for one instance of
/// `tp`. Allocating a collected object may run the cyclic collector, and with it finalizers
/// written in Python (3.9-3.11; later versions defer the collection to the eval loop).
///
/// # Safety
///
/// `slot` is `tp`'s `tp_alloc`, `tp` is a live type and the GIL is held.
#[inline(always)]
pub unsafe fn alloc(
    slot: *mut core::ffi::c_void,
    tp: *mut ffi::PyTypeObject,
) -> *mut ffi::PyObject {
    type Alloc =
        unsafe extern "C-unwind" fn(*mut ffi::PyTypeObject, ffi::Py_ssize_t) -> *mut ffi::PyObject;
    // SAFETY: the tp_alloc slot holds an `allocfunc`, a C function pointer with this signature
    // (pyo3-ffi's `allocfunc`, but for the ABI string, which does not change the calling
    // convention).
    let alloc = unsafe { core::mem::transmute::<*mut core::ffi::c_void, Alloc>(slot) };
    // SAFETY: forwarded from the caller.
    reenter(|| unsafe { alloc(tp, 0) })
}

/// `Py_DECREF`: inline while other references remain; the last one, whose deallocation may
/// run any Python code (`__del__`, a releasebuffer, weakref callbacks), goes through
/// `reenter`.
///
/// # Safety
///
/// The GIL is held and the caller owns a reference to the live `obj`.
#[inline(always)]
pub unsafe fn decref(obj: *mut ffi::PyObject) {
    // Under the 3.12+ limited API the count is opaque; everywhere else it can be read, and
    // pyo3-ffi's Py_DECREF is what the C headers do (inline under the 3.11 stable ABI too).
    #[cfg(not(any(all(Py_LIMITED_API, Py_3_12), Py_GIL_DISABLED)))]
    {
        // SAFETY: `obj` is live and the GIL serialises its reference count. With more than one
        // reference (or an immortal object's count, 3.12+), Py_DECREF only decrements.
        if unsafe { ffi::Py_REFCNT(obj) } > 1 {
            // SAFETY: the caller owns this reference.
            unsafe { ffi::Py_DECREF(obj) };
            return;
        }
    }
    // SAFETY: the caller owns this reference and the GIL is held.
    reenter(|| unsafe { imports::Py_DecRef(obj) })
}
