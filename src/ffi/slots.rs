//! The generic buffer slots registered for every [`BufferExporter`]: `bf_getbuffer` and
//! `bf_releasebuffer`.
//!
//! Mirrors `ndarray_getbuf`/`ndarray_releasebuf` of CPython's `Modules/_testbuffer.c` (the
//! reference exporter) and the shape of nanobind's `nb_ndarray_getbuffer`: `view->obj` is
//! cleared first, every refusal says why, every field is filled only when its flag asks.

use core::ffi::c_int;
use core::ptr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3_ffi as ffi;

use super::error::{Error, Result};
use super::object::{Borrowed, Object};
use crate::exporter::{BufferExporter, Gil};
use crate::fill::fill;
use crate::request::{Refusal, Request};

/// `bf_getbuffer` for instances of `Object<T>`.
///
/// The contract of `Doc/c-api/typeobj.rst` (`PyBufferProcs.bf_getbuffer`), and where each step
/// happens below:
///
/// > 1. Check if the request can be met. If not, raise `BufferError`, set `view->obj` to
/// >    NULL and return -1.
/// > 2. Fill in the requested fields.
/// > 3. Increment an internal counter for the number of exports.
/// > 4. Set `view->obj` to exporter and increment `view->obj`.
/// > 5. Return 0.
///
/// Steps 1 and 3 are one step here: the counter's state (closed, read-only) is what the
/// request is checked against, and the export is counted only if that state has not changed
/// since (see [`ExportCounter`](crate::exporter::ExportCounter)). Step 2 follows; nothing can
/// fail after the count.
///
/// # Safety
///
/// CPython calls it with the GIL held, `obj` an instance of a type whose instances are
/// `Object<T>` (the slot is registered only on such types), and `view` the consumer's
/// `Py_buffer`.
pub unsafe extern "C" fn getbuffer<T: BufferExporter>(
    obj: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> c_int {
    if view.is_null() {
        // SAFETY: forwarded from the caller.
        return unsafe { getbuffer_in_full::<T>(obj, view, flags) };
    }
    // SAFETY: CPython calls slots with the GIL held (caller).
    let gil = unsafe { Gil::assume() };
    // SAFETY: forwarded from the caller, with `view` non-NULL; `obj` is a live `Object<T>`
    // (caller) that the consumer's reference keeps alive.
    match catch_unwind(AssertUnwindSafe(|| unsafe {
        try_export(gil, Object::<T>::value_of(obj), obj, view, flags)
    })) {
        Ok(true) => 0, // step 5
        // Nothing was written or counted: the full path decides again and says why.
        // SAFETY: forwarded from the caller.
        Ok(false) => unsafe { getbuffer_in_full::<T>(obj, view, flags) },
        // SAFETY: forwarded from the caller.
        Err(panic) => unsafe { failed(gil, view, Error::from_panic(panic)) },
    }
}

/// The common case of [`getbuffer`], which makes no error: an open exporter, a request the
/// table admits and (on a free-threaded build) no race with another thread. Returns `false`,
/// having written and counted nothing, for anything else; [`getbuffer_in_full`] then takes the
/// same decision again and builds the error. Keeping errors out of this function is what
/// lets it run without a stack frame: every value it handles fits in registers.
///
/// This is the export core every bufferkit exporter shares, whatever its object layout: it
/// takes the Rust value (`this`) and the object it lives in (`obj`) separately.
///
/// # Safety
///
/// The GIL is held (`gil`), `view` is non-NULL and valid for writes, `obj` is a live object
/// that owns `this` and keeps it alive (and in place) for as long as a reference to `obj`
/// exists, so that the consumer's reference taken here keeps the export's memory alive.
#[inline(always)]
unsafe fn try_export<T: BufferExporter + ?Sized>(
    gil: Gil<'_>,
    this: &T,
    obj: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> bool {
    let counter = this.counter();
    let seen = counter.snapshot();
    // Closed or locked, in one test.
    if seen.refuses() {
        return false;
    }
    // Without the GIL the export is counted first: from then on `lock()`, `close()` and
    // `freeze()` refuse until its release, so the memory and the read-only bit read below stay
    // what they are. Read before counting, they could belong to memory that another thread
    // replaced under a lock taken and dropped in between (a lock leaves the state word as it
    // found it, so the count would still succeed). With the GIL nothing runs in between, and
    // the count is taken last, once the request is known to be served.
    #[cfg(Py_GIL_DISABLED)]
    if !counter.acquire(gil, seen) {
        return false;
    }
    let declined = || {
        #[cfg(Py_GIL_DISABLED)]
        counter.release(gil);
        false
    };
    let Some(memory) = this.memory() else {
        return declined();
    };
    // SAFETY: `memory()` just returned it, and nothing that could change it ran since (the
    // GIL; without it, the export counted above holds it still).
    let admission = unsafe { memory.layout() }.admission();
    let Some(request) = admission.admit(flags, seen.readonly_row()) else {
        return declined();
    };
    #[cfg(not(Py_GIL_DISABLED))]
    if !counter.acquire(gil, seen) {
        return false;
    }
    // Steps 4 and 2: the consumer's reference, then every field, `obj` included.
    // SAFETY: `obj` is live and the GIL is held (caller), so it may be increfed; the new
    // reference is the one `view->obj` holds and `PyBuffer_Release` gives back. `view` is
    // non-NULL and writable (caller). The export was counted just above (`acquire` returned
    // true), so by the contract of `BufferExporter` `memory` stays valid until the matching
    // release.
    unsafe {
        incref_exporter(obj);
        fill(view, &memory, request, seen.readonly(), obj);
    }
    true
}

/// [`getbuffer`] with every check and every error: a NULL view, a closed exporter, a refused
/// request (with its reason), a panic. Off the hot path.
///
/// `extern "C"` (which cannot unwind) so that [`getbuffer`] can jump to it as its last act
/// rather than call it: a call that might unwind out of an `extern "C"` function needs a
/// landing pad, and with it a stack frame on the hot path too.
///
/// # Safety
///
/// As for [`getbuffer`].
#[cold]
#[inline(never)]
unsafe extern "C" fn getbuffer_in_full<T: BufferExporter>(
    obj: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded from the caller: GIL held, `obj` a live `Object<T>` that owns the
    // value and is kept alive by the consumer's reference, `view` the consumer's Py_buffer
    // (checked for NULL by the boundary).
    unsafe {
        getbuffer_boundary(view, |gil| {
            export(gil, Object::<T>::value_of(obj), obj, view, flags)
        })
    }
}

/// The part every `bf_getbuffer` of bufferkit shares: refuse a NULL view, run `body` inside
/// the panic boundary, and on any failure (an error or a panic, which may come after `body`
/// wrote to the view) clear `view->obj` and set the exception: "view->obj is NULL on failure"
/// (typeobj.rst, bf_getbuffer, step 1). `view->obj` is not cleared before `body` runs (one
/// store fewer on the hot path): a `body` that reads it must clear it first.
///
/// # Safety
///
/// Called from a `bf_getbuffer` slot: the GIL is held and `view` is NULL or the consumer's
/// `Py_buffer`, valid for writes; `body` may rely on `view` being non-NULL.
#[inline(always)]
pub(crate) unsafe fn getbuffer_boundary(
    view: *mut ffi::Py_buffer,
    body: impl FnOnce(Gil<'_>) -> Result<()>,
) -> c_int {
    // SAFETY: CPython calls slots with the GIL held (caller).
    let gil = unsafe { Gil::assume() };
    if view.is_null() {
        return null_view(gil);
    }
    match catch_unwind(AssertUnwindSafe(|| body(gil))) {
        Ok(Ok(())) => 0, // step 5
        // SAFETY: forwarded from the caller.
        Ok(Err(err)) => unsafe { failed(gil, view, err) },
        // SAFETY: forwarded from the caller.
        Err(panic) => unsafe { failed(gil, view, Error::from_panic(panic)) },
    }
}

/// A NULL view: Python 2's "lock without a view" form; CPython 3's bytearray refuses it the
/// same way. Out of line, as [`failed`] is, so that the hot path keeps no registers for them.
#[cold]
#[inline(never)]
fn null_view(gil: Gil<'_>) -> c_int {
    Error::buffer_error("getbuffer: a NULL view is not supported").restore(gil);
    -1
}

/// A failed getbuffer: "view->obj is NULL on failure", whatever the body wrote before it failed
/// or panicked, and the exception set.
///
/// # Safety
///
/// `view` is the consumer's Py_buffer, valid for writes, and the GIL is held.
#[cold]
#[inline(never)]
unsafe fn failed(gil: Gil<'_>, view: *mut ffi::Py_buffer, err: Error) -> c_int {
    // SAFETY: `view` is valid for writes (caller).
    unsafe { ptr::addr_of_mut!((*view).obj).write(ptr::null_mut()) };
    err.restore(gil);
    -1
}

/// The body of [`getbuffer_in_full`]: [`try_export`] once more, and when it declines, why.
///
/// With the GIL nothing can change the exporter between the two, so a declined export has a
/// reason and the first round finds it. A free-threaded build can also lose the race to count
/// (another thread's export or release moved the counter on) and then tries again; the bound
/// only stops an exporter whose `memory()` changes its answer on every call.
///
/// # Safety
///
/// As for [`try_export`].
unsafe fn export<T: BufferExporter + ?Sized>(
    gil: Gil<'_>,
    this: &T,
    obj: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> Result<()> {
    const TRIES: usize = 1 << 16;
    for _ in 0..TRIES {
        // SAFETY: forwarded from the caller.
        if unsafe { try_export(gil, this, obj, view, flags) } {
            return Ok(());
        }
        let seen = this.counter().snapshot();
        if seen.closed() {
            return Err(ended::<T>(obj));
        }
        if seen.locked() {
            return Err(being_modified(obj));
        }
        // Without the GIL the memory is read under a count of its own, as in `try_export`;
        // losing the race to take it means the state moved on: try again.
        #[cfg(Py_GIL_DISABLED)]
        if !this.counter().acquire(gil, seen) {
            continue;
        }
        let why = why_declined(this, obj, flags, seen);
        #[cfg(Py_GIL_DISABLED)]
        this.counter().release(gil);
        if let Some(error) = why {
            return Err(error);
        }
    }
    Err(Error::system_error(format!(
        "{}: the export was declined {TRIES} times without a reason (its memory() changes \
             its answer from call to call)",
        type_name(obj)
    )))
}

/// Why `try_export` declined, if the exporter gives a reason now: no memory, or a request its
/// layout does not serve. The caller keeps the memory still (the GIL, or a count).
fn why_declined<T: BufferExporter + ?Sized>(
    this: &T,
    obj: *mut ffi::PyObject,
    flags: c_int,
    seen: crate::exporter::Snapshot,
) -> Option<Error> {
    crate::exporter::take_short_block();
    let Some(memory) = this.memory() else {
        return Some(no_memory(obj, crate::exporter::take_short_block()));
    };
    // SAFETY: `memory()` just returned it, and the caller keeps it still.
    let layout = unsafe { memory.layout() };
    if Request::admit(flags, layout.facts_index(seen.readonly())).is_none() {
        return Some(refusal(obj, flags, layout, seen.readonly()));
    }
    None
}

/// Why `flags` were refused: `Request::new` and `check` again, for the message.
#[cold]
fn refusal(
    obj: *mut ffi::PyObject,
    flags: c_int,
    layout: &crate::layout::Layout,
    readonly: bool,
) -> Error {
    let why = match Request::new(flags) {
        Err(why) => Refusal::Malformed(flags, why),
        Ok(request) => match request.check(layout.facts(readonly)) {
            Err(refusal) => refusal,
            Ok(()) => unreachable!("Request::admit refused what new() and check() accept"),
        },
    };
    refuse(obj, why, layout.format().as_str())
}

/// `Py_INCREF` of an exporter object (a bufferkit heap-type instance, never immortal).
///
/// Under the 3.11 stable ABI pyo3-ffi makes every incref a call into `_Py_IncRef`; the C
/// headers of that ABI increment `ob_refcnt` in place, and every later CPython accepts that
/// from stable-ABI extensions (it is what 3.11-built abi3 modules do). For a mortal object on
/// a build with the GIL, that is exactly what `_Py_IncRef` does.
///
/// # Safety
///
/// `obj` is a live bufferkit instance and the GIL is held.
#[inline(always)]
unsafe fn incref_exporter(obj: *mut ffi::PyObject) {
    #[cfg(all(Py_LIMITED_API, not(Py_3_12), not(Py_GIL_DISABLED)))]
    {
        // SAFETY: the object is live and the GIL serialises refcount changes; under the 3.11
        // stable ABI `ob_refcnt` is a plain Py_ssize_t at the start of the object.
        unsafe { (*obj).ob_refcnt += 1 };
    }
    #[cfg(not(all(Py_LIMITED_API, not(Py_3_12), not(Py_GIL_DISABLED))))]
    {
        // SAFETY: the object is live and the GIL is held.
        unsafe { ffi::Py_INCREF(obj) };
    }
}

/// The exporter's type name, for a message.
#[cold]
fn type_name(obj: *mut ffi::PyObject) -> String {
    // SAFETY: `obj` is the live exporter and the GIL is held (we are inside its getbuffer).
    unsafe { Borrowed::from_ptr(obj) }.map_or_else(|| "object".into(), Borrowed::type_name)
}

#[cold]
fn refuse(obj: *mut ffi::PyObject, refusal: Refusal, format: &str) -> Error {
    let name = type_name(obj);
    Error::buffer_error(refusal.message(&name, format).to_string())
}

#[cold]
fn no_memory(obj: *mut ffi::PyObject, short: Option<(usize, usize)>) -> Error {
    let name = type_name(obj);
    match short {
        Some((needed, given)) => Error::system_error(format!(
            "{name} has no memory to export: its BufferExporter::memory() returned None because \
             its layout needs {needed} bytes and the block it gave Memory::new has {given}"
        )),
        None => Error::system_error(format!(
            "{name} has no memory to export (its BufferExporter::memory() returned None)"
        )),
    }
}

#[cold]
fn being_modified(obj: *mut ffi::PyObject) -> Error {
    let name = type_name(obj);
    Error::buffer_error(format!("{name} is being modified"))
}

#[cold]
fn ended<T: BufferExporter + ?Sized>(obj: *mut ffi::PyObject) -> Error {
    let name = type_name(obj);
    Error::value_error(format!("operation on {} {name}", T::ENDED))
}

/// `bf_releasebuffer` for instances of `Object<T>`: gives the export back to the counter.
///
/// `Doc/c-api/typeobj.rst` (`bf_releasebuffer`): "1. Decrement an internal counter for the
/// number of exports. 2. If the counter is 0, free all memory associated with view." bufferkit
/// allocates nothing per export, so step 2 has nothing to free. `view->obj` is not touched:
/// `PyBuffer_Release` releases that reference after this returns.
///
/// # Safety
///
/// CPython calls it with the GIL held, for a view that [`getbuffer`] filled for `obj`.
pub unsafe extern "C" fn releasebuffer<T: BufferExporter>(
    obj: *mut ffi::PyObject,
    _view: *mut ffi::Py_buffer,
) {
    // SAFETY: forwarded from the caller: the GIL is held and `obj` is live.
    unsafe {
        releasebuffer_boundary(obj, |gil| {
            // SAFETY: `obj` is a live `Object<T>` kept alive by the view being released
            // (caller).
            let this = Object::<T>::value_of(obj);
            // SAFETY: CPython calls bf_releasebuffer once per export `getbuffer` counted.
            release(gil, this);
        })
    }
}

/// The panic boundary of a `bf_releasebuffer`, which cannot fail: `body` runs, and a panic in
/// it goes to `sys.unraisablehook` (`PyErr_WriteUnraisable(obj)`).
///
/// # Safety
///
/// Called from a `bf_releasebuffer` slot: the GIL is held and `obj` is live.
#[inline(always)]
pub(crate) unsafe fn releasebuffer_boundary(obj: *mut ffi::PyObject, body: impl FnOnce(Gil<'_>)) {
    // SAFETY: CPython calls slots with the GIL held (caller).
    let gil = unsafe { Gil::assume() };
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(gil))) {
        Error::from_panic(panic).restore(gil);
        // SAFETY: an exception is set and `obj` is live (caller); releasebuffer cannot fail,
        // so the error goes to sys.unraisablehook.
        unsafe { ffi::PyErr_WriteUnraisable(obj) };
    }
}

/// The export of `this`, the Rust value inside the Python object `obj`, whatever the object's
/// layout: what [`getbuffer`] does for `Object<T>`, for objects bufferkit did not lay out
/// (a PyO3 `#[pyclass]`, a C struct with a Rust field). On success the view is filled, the
/// export counted and `view->obj` holds a new reference to `obj`; on failure nothing is
/// counted, `view->obj` is NULL and the error is returned, not raised.
///
/// A panic in `this`'s `memory()` or `counter()` unwinds out of this function: call it inside
/// a panic boundary (PyO3's `__getbuffer__` is one).
///
/// # Safety
///
/// The GIL is held (`gil`); `view` is the consumer's `Py_buffer`, valid for writes; `obj` is
/// a live object that owns `this` and keeps it alive, in place, for as long as any reference
/// to `obj` exists; and the matching release of the export calls [`release`] on the same
/// value.
pub unsafe fn export_value<T: BufferExporter + ?Sized>(
    gil: Gil<'_>,
    this: &T,
    obj: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> Result<()> {
    if view.is_null() {
        return Err(Error::buffer_error(
            "getbuffer: a NULL view is not supported",
        ));
    }
    // SAFETY: forwarded from the caller, with `view` non-NULL.
    if unsafe { try_export(gil, this, obj, view, flags) } {
        return Ok(());
    }
    // SAFETY: as above.
    let done = unsafe { export(gil, this, obj, view, flags) };
    if done.is_err() {
        // SAFETY: `view` is non-NULL and valid for writes (caller): "view->obj is NULL on
        // failure" (typeobj.rst, bf_getbuffer, step 1).
        unsafe { ptr::addr_of_mut!((*view).obj).write(ptr::null_mut()) };
    }
    done
}

/// Gives back one export of `this` counted by [`export_value`] (or by [`getbuffer`]): the
/// body of every bufferkit `bf_releasebuffer`.
///
/// # Safety
///
/// Called once for each export of `this` that [`export_value`] counted, when the consumer
/// releases it (from `bf_releasebuffer`): a release too many would let the owner change
/// memory that a consumer still points into.
pub unsafe fn release<T: BufferExporter + ?Sized>(gil: Gil<'_>, this: &T) {
    this.counter().release(gil);
}
