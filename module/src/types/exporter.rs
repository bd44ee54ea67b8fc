//! `bufferkit.Exporter`: a base class through which classes written in Python export the
//! buffer protocol by delegating to a memoryview, on every supported Python (a backport of
//! PEP 688's `__buffer__` / `__release_buffer__`).
//!
//! # How it works on each version
//!
//! - **3.9-3.11**: `Exporter`'s own `bf_getbuffer` slot (inherited by every subclass) calls
//!   `type(self).__buffer__(self, flags)`, requires a memoryview, and serves the consumer
//!   exactly what `PyObject_GetBuffer(memoryview, flags)` gives, with `view.obj` set to the
//!   instance. The memoryview is kept in `view->internal` (the field the exporter owns). On
//!   `PyBuffer_Release` the memoryview's export is given back first and then
//!   `__release_buffer__(self, memoryview)` is called, once, with the same memoryview. When
//!   the memoryview cannot serve the request, `__release_buffer__` is still called for it, so
//!   nothing stays locked.
//! - **3.12+**: CPython dispatches `__buffer__` itself for subclasses that define it
//!   (`slot_bf_getbuffer`); results, errors and release calls are CPython's. The one
//!   difference that cannot be removed: CPython hands consumers an internal `_buffer_wrapper`
//!   object as `view.obj`, not the instance. (CPython 3.12.1 and 3.13.0 also skip
//!   `__release_buffer__` when the memoryview refuses the request; bufferkit's slot does not.)
//!
//! `Exporter` defines `__buffer__` (raising TypeError: a subclass must define it) and
//! `__release_buffer__` (doing nothing) as ordinary methods. That is what keeps 3.12+ from
//! recursing: the automatic `__buffer__` wrapper CPython would otherwise add for a C type
//! with a getbuffer slot points back at that slot, so a subclass without `__buffer__` would
//! call itself. With real methods, `super().__buffer__(flags)` and
//! `super().__release_buffer__(view)` behave the same everywhere.

use core::ffi::c_int;
use core::ptr;

use pyo3_ffi as ffi;

use bufferkit::exporter::Gil;
use bufferkit::ffi::convert;
use bufferkit::ffi::error::Pending;
use bufferkit::ffi::{unwind, Borrowed, Error, Owned, Result};

use crate::module::MODULE_CLEARED;

/// The interned names `"__buffer__"` and `"__release_buffer__"`, from module state.
///
/// Strong references of the caller's own: they are used across calls into Python code
/// (`__buffer__`, the memoryview's export), which may run while the module state is cleared.
struct Names {
    buffer: Owned,
    release: Owned,
    /// Exporter's own `__release_buffer__`, which does nothing
    own_release: Owned,
}

/// The names from the module state of `obj`'s type, or `None` once they cannot be reached:
/// the module has been cleared (interpreter exit: `m_clear` empties the state while the last
/// exports may still be given back), or the class is being torn down (the collector cleared
/// its MRO in a garbage cycle with its instances, and a mixin listed before Exporter hides
/// Exporter from the `tp_base` chain). Either way nothing is left to look methods up in.
fn names(obj: Borrowed<'_>) -> Result<Option<Names>> {
    // SAFETY: `obj` is live and the GIL is held; its type is a subclass of Exporter (the slot
    // was reached through it). The walk is a few slot reads and sets no exception: failing to
    // find the module is the teardown case above, not an error to report.
    let Ok(state) = (unsafe { crate::module::state_of_type(obj.type_ptr()) }) else {
        return Ok(None);
    };
    // SAFETY: module state holds strong references (NULL only after m_clear); each is taken
    // as a reference of our own before anything else runs.
    let get = |p: *mut ffi::PyObject| unsafe { Borrowed::from_ptr(p) }.map(Owned::from_borrowed);
    let (Some(buffer), Some(release), Some(own_release)) = (
        get(state.buffer_name),
        get(state.release_name),
        get(state.exporter_release),
    ) else {
        return Ok(None);
    };
    Ok(Some(Names {
        buffer,
        release,
        own_release,
    }))
}

/// `obj.<name>(arg)`, with the method found as CPython 3.12 finds `__buffer__`
/// (`lookup_maybe_method` in `Objects/typeobject.c`): on the type, through the MRO, never in
/// the instance's `__dict__`. An attribute whose type is a method descriptor (a function,
/// Exporter's own C methods) is called unbound with `obj` first, as CPython does, without
/// building a bound method; anything else is bound by its `__get__` and called with `arg`
/// (see [`lookup`] for the one difference under the stable ABI).
///
/// When the method found is `skip` (Exporter's own no-op), nothing is called.
fn call_method(
    obj: Borrowed<'_>,
    name: Borrowed<'_>,
    arg: Borrowed<'_>,
    skip: Option<Borrowed<'_>>,
) -> Result<Owned> {
    let found = lookup(obj, name)?;
    call_found(obj, found, arg, skip)
}

/// A special method as [`lookup`] found it.
struct Found {
    method: Owned,
    /// Call with the instance first (a method descriptor, not bound).
    unbound: bool,
}

/// `type(obj).<name>`, bound for [`call_method`].
///
/// Version-specific builds (3.9, 3.10) do what CPython 3.12 does: `_PyType_Lookup` on the
/// type (the MRO's dicts, through the type's method cache; exported and unchanged in those
/// releases, which receive no new features), then the found object's own `__get__` with the
/// instance. The 3.11 stable-ABI build has no such lookup and asks for the type's attribute
/// instead, which has already bound it to the class: a `staticmethod` comes out unwrapped as a
/// plain function, is taken for a method and is called with the instance (README, "Exporter").
fn lookup(obj: Borrowed<'_>, name: Borrowed<'_>) -> Result<Found> {
    let tp = obj.type_ptr();
    #[cfg(not(Py_LIMITED_API))]
    {
        // SAFETY: `tp` is the type of the live `obj`, `name` an interned str from module
        // state; the GIL is held for `obj`'s lifetime (`Borrowed`).
        let res = unsafe { unwind::type_lookup(tp, name.as_ptr()) };
        // SAFETY: a borrowed reference from the type's MRO, which `tp` keeps alive.
        let Some(res) = (unsafe { Borrowed::from_ptr(res) }) else {
            // SAFETY: the GIL is held; `name` is live.
            unsafe { ffi::PyErr_SetObject(ffi::PyExc_AttributeError, name.as_ptr()) };
            return Err(Error::Raised);
        };
        let res_type = res.type_ptr();
        // SAFETY: `res_type` is a live type; its struct is this build's.
        // `PyType_GetFlags`: `tp_flags` is an atomic on free-threaded builds.
        let (flags, get) = unsafe { (ffi::PyType_GetFlags(res_type), (*res_type).tp_descr_get) };
        if flags & ffi::Py_TPFLAGS_METHOD_DESCRIPTOR != 0 {
            return Ok(Found {
                method: Owned::from_borrowed(res),
                unbound: true,
            });
        }
        let Some(get) = get else {
            return Ok(Found {
                method: Owned::from_borrowed(res),
                unbound: false,
            });
        };
        // The `__get__` may drop the last reference to `res` elsewhere: hold one meanwhile.
        let held = Owned::from_borrowed(res);
        // SAFETY: `get` is the tp_descr_get of `res`'s type; all objects are live.
        let bound = unsafe { unwind::descr_get(get, held.as_ptr(), obj.as_ptr(), tp.cast()) };
        // SAFETY: a new reference, or NULL with an exception set.
        let method = unsafe { Owned::from_new(bound) }?;
        Ok(Found {
            method,
            unbound: false,
        })
    }
    #[cfg(Py_LIMITED_API)]
    {
        // SAFETY: the type of a live object is live; a new reference or NULL with an exception.
        let method = unsafe { Owned::from_new(ffi::PyObject_GetAttr(tp.cast(), name.as_ptr())) }?;
        // SAFETY: `method` is live; reading its type's flags.
        let flags = unsafe { ffi::PyType_GetFlags(ffi::Py_TYPE(method.as_ptr())) };
        Ok(Found {
            method,
            unbound: flags & ffi::Py_TPFLAGS_METHOD_DESCRIPTOR != 0,
        })
    }
}

/// Calls what [`lookup`] found, as [`call_method`] describes.
fn call_found(
    obj: Borrowed<'_>,
    found: Found,
    arg: Borrowed<'_>,
    skip: Option<Borrowed<'_>>,
) -> Result<Owned> {
    let Found { method, unbound } = found;
    if skip.is_some_and(|own| own.as_ptr() == method.as_ptr()) {
        return Ok(convert::none(obj.gil()));
    }
    // SAFETY: all objects are live and the GIL is held; the result is a new reference or NULL
    // with an exception set.
    unsafe {
        Owned::from_new(if unbound {
            unwind::call2(method.as_ptr(), obj.as_ptr(), arg.as_ptr())
        } else {
            unwind::call1(method.as_ptr(), arg.as_ptr())
        })
    }
}

/// The body of Exporter's getbuffer slot (3.9-3.11; on 3.12+ only for instances of a class
/// that does not define `__buffer__`, which raise TypeError).
///
/// # Safety
///
/// `view` is the consumer's `Py_buffer`, writable, with `obj` already NULL; the GIL is held.
pub unsafe fn export(
    gil: Gil<'_>,
    obj: Borrowed<'_>,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> Result<()> {
    let names = names(obj)?.ok_or_else(|| Error::value_error(MODULE_CLEARED))?;
    let flags_obj = convert::new_int(gil, flags as isize)?;
    // A class without its own __buffer__ reaches Exporter.__buffer__, which raises TypeError.
    let mv = call_method(obj, names.buffer.borrow(), flags_obj.borrow(), None)?;
    // SAFETY: `mv` is live.
    if unsafe { ffi::PyMemoryView_Check(mv.as_ptr()) } == 0 {
        return Err(Error::type_error(
            "__buffer__ returned non-memoryview object",
        ));
    }
    // SAFETY: `mv` is live and `view` writable (caller).
    if unsafe { unwind::get_buffer(mv.as_ptr(), view, flags) } == -1 {
        // The memoryview refused: give the user's resource back anyway, keeping the refusal
        // as the error the consumer sees.
        let refusal = Pending::take(gil);
        release_call(obj, &names, mv.borrow());
        refusal.restore();
        // SAFETY: `view` is writable; a failed export leaves no object.
        unsafe { ptr::addr_of_mut!((*view).obj).write(ptr::null_mut()) };
        return Err(Error::Raised);
    }
    // The `__release_buffer__` this export will call, found now (see `Held`). An error here
    // gives the memoryview's export back and calls nothing: the export never happened.
    let release = match lookup(obj, names.release.borrow()) {
        Ok(found) => found,
        Err(e) => {
            // SAFETY: `view` was filled by the memoryview and is given back once, here.
            unsafe { unwind::release_buffer(view) };
            // SAFETY: `view` is writable; a failed export leaves no object.
            unsafe { ptr::addr_of_mut!((*view).obj).write(ptr::null_mut()) };
            return Err(e);
        }
    };
    let held = match Held::store(mv.borrow(), release, names.own_release.borrow()) {
        Ok(held) => held,
        Err(e) => {
            // SAFETY: as above.
            unsafe { unwind::release_buffer(view) };
            // SAFETY: as above.
            unsafe { ptr::addr_of_mut!((*view).obj).write(ptr::null_mut()) };
            // `__buffer__` succeeded and a `__release_buffer__` exists: it is called, as when
            // the memoryview refuses, so that what `__buffer__` took is given back; the error
            // of the failed store (a MemoryError) is the one the consumer sees.
            let failure = Pending::take(gil);
            release_call(obj, &names, mv.borrow());
            failure.restore();
            return Err(e);
        }
    };
    // The memoryview filled `view` and holds `view->obj`, a reference to itself. Re-point the
    // view at the instance; `internal`, which the exporter owns, keeps the memoryview (and the
    // release method) instead.
    // SAFETY: `view` was just filled; its `obj` is that new reference to `mv`.
    let mv_ref = unsafe { (*view).obj };
    // `internal` holds its own reference (`held`); the memoryview's to itself goes.
    // SAFETY: `mv_ref` is a strong reference we own (the view's); `mv` keeps the object alive.
    unsafe { unwind::decref(mv_ref) };
    // SAFETY: `obj` is live; the consumer's reference to the instance.
    unsafe { ffi::Py_INCREF(obj.as_ptr()) };
    // SAFETY: `view` is writable; `internal` takes over `held`'s reference.
    unsafe {
        ptr::addr_of_mut!((*view).internal).write(held.into_raw().cast());
    }
    // SAFETY: as above.
    unsafe { ptr::addr_of_mut!((*view).obj).write(obj.as_ptr()) };
    Ok(())
}

#[cold]
fn not_defined(obj: Borrowed<'_>) -> Error {
    Error::type_error(format!(
        "{} does not define __buffer__: a bufferkit.Exporter subclass must define \
         __buffer__(self, flags) returning a memoryview",
        obj.type_name()
    ))
}

/// The body of Exporter's releasebuffer slot.
///
/// # Safety
///
/// `view` is a view [`export`] filled for `obj`, being released; the GIL is held.
pub unsafe fn release(gil: Gil<'_>, obj: Borrowed<'_>, view: *mut ffi::Py_buffer) {
    // Release runs inside the consumer's PyBuffer_Release, which may come while the consumer
    // is propagating an exception (a failed struct.unpack_from, say): set it aside while
    // Python code runs here, and put it back (as CPython 3.12's releasebuffer_call_python does).
    let pending = Pending::take(gil);
    // SAFETY: forwarded from the caller.
    unsafe { release_view(obj, view) };
    pending.restore();
}

/// [`release`] with no exception pending.
///
/// # Safety
///
/// As for [`release`].
unsafe fn release_view(obj: Borrowed<'_>, view: *mut ffi::Py_buffer) {
    // SAFETY: `view` is readable (caller).
    let (view_obj, internal) = unsafe { ((*view).obj, (*view).internal.cast::<ffi::PyObject>()) };
    // Only views this slot filled carry what `export` stored; anything else (CPython 3.12's
    // `releasebuffer_maybe_call_super` passes other views to a base's C slot) is not ours.
    if view_obj != obj.as_ptr() || internal.is_null() {
        return;
    }
    // SAFETY: `internal` is not NULL; a view whose `obj` is this instance was filled by
    // `export`, which stores a live memoryview or `Held` tuple there.
    let Some((mv, release)) = (unsafe { Held::take(internal) }) else {
        return;
    };
    // SAFETY: `view` is writable; cleared so that what `internal` held cannot be taken twice.
    unsafe { ptr::addr_of_mut!((*view).internal).write(ptr::null_mut()) };
    // Give the memoryview's export back: a copy of the view pointing at the memoryview, with
    // a reference for PyBuffer_Release to drop.
    // SAFETY: `view` is a filled view (caller); copying it is how CPython passes views around.
    let mut theirs = unsafe { ptr::read(view) };
    theirs.obj = Owned::from_borrowed(mv.borrow()).into_raw();
    // SAFETY: `theirs` is the export the memoryview made, released once, here.
    unsafe { unwind::release_buffer(&mut theirs) };
    let Some(release) = release else { return };
    // Errors of the call itself, whatever their type, go to sys.unraisablehook.
    if let Err(e) = call_found(obj, release, mv.borrow(), None) {
        e.restore(obj.gil());
        // SAFETY: an exception is set and `obj` is live.
        unsafe { ffi::PyErr_WriteUnraisable(obj.as_ptr()) };
    }
}

/// What an export keeps in `view->internal`: the memoryview `__buffer__` returned and, when
/// the class has a `__release_buffer__` of its own, that method, as found at export time.
///
/// Found at export time, not at release, because a release may come while the collector
/// tears the classes down: when a class and its base are garbage together (a class made per
/// instance, or any class at interpreter exit), the base's `tp_clear` frees its methods but
/// cannot invalidate the subclass's entries in CPython's method cache (the subclass's weak
/// reference in `__subclasses__` is already cleared), and a lookup then returns a freed
/// function (3.11, found by `test_safety.py`). A reference taken at export time keeps the
/// method alive for as long as the export. (CPython 3.12+ looks it up at release; on those
/// versions CPython, not this slot, dispatches.)
///
/// Stored as the memoryview alone (no method: Exporter's own no-op was found) or as a tuple
/// `(memoryview, method, unbound)`, so that a release can tell its own views from others.
struct Held;

impl Held {
    /// The object for `internal`.
    fn store(mv: Borrowed<'_>, release: Found, own: Borrowed<'_>) -> Result<Owned> {
        if release.method.as_ptr() == own.as_ptr() {
            return Ok(Owned::from_borrowed(mv));
        }
        let unbound = convert::new_bool(mv.gil(), release.unbound)?;
        convert::new_tuple(mv.gil(), &[mv, release.method.borrow(), unbound.borrow()])
    }

    /// Takes back what [`store`](Self::store) stored: the memoryview, and the method to call.
    /// `None` if `internal` is not such an object.
    ///
    /// # Safety
    ///
    /// `internal` is a live object whose reference the caller hands over when this returns
    /// `Some` (the reference `export` stored), and the GIL is held.
    unsafe fn take(internal: *mut ffi::PyObject) -> Option<(Owned, Option<Found>)> {
        // SAFETY: `internal` is live (caller); these only read its type.
        if unsafe { ffi::PyMemoryView_Check(internal) } != 0 {
            // SAFETY: the reference the caller hands over.
            return Some((unsafe { Owned::from_new(internal) }.ok()?, None));
        }
        // SAFETY: as above.
        if unsafe { ffi::PyTuple_Check(internal) } == 0 {
            return None;
        }
        // SAFETY: a tuple.
        if unsafe { ffi::PyTuple_Size(internal) } != 3 {
            return None;
        }
        // SAFETY: a 3-tuple; its items are borrowed from it, and taken as references of our own
        // before the tuple's reference is dropped.
        let item = |i| unsafe { Borrowed::from_ptr(ffi::PyTuple_GetItem(internal, i)) };
        let (mv, method, unbound) = (item(0)?, item(1)?, item(2)?);
        // SAFETY: `mv` is live.
        if unsafe { ffi::PyMemoryView_Check(mv.as_ptr()) } == 0 {
            return None;
        }
        // SAFETY: `unbound` is live; Py_True is a static object.
        let unbound = unbound.as_ptr() == unsafe { ffi::Py_True() };
        let taken = (
            Owned::from_borrowed(mv),
            Some(Found {
                method: Owned::from_borrowed(method),
                unbound,
            }),
        );
        // SAFETY: the reference the caller hands over, dropped now that its items are ours.
        drop(unsafe { Owned::from_new(internal) });
        Some(taken)
    }
}

/// `self.__release_buffer__(mv)`; errors go to `sys.unraisablehook`. A class without its own
/// reaches Exporter's, which does nothing.
fn release_call(obj: Borrowed<'_>, names: &Names, mv: Borrowed<'_>) {
    let gil = obj.gil();
    let found = match lookup(obj, names.release.borrow()) {
        Ok(found) => found,
        Err(e) => {
            e.restore(gil);
            // Exporter defines __release_buffer__, so a failed lookup means the classes are
            // being torn down (interpreter exit clears heap types' dicts before the last
            // exports go): nothing is left to call, and the export was already given back.
            // SAFETY: the GIL is held; an exception is set; the class static is initialised.
            if unsafe { bufferkit::ffi::convert::error_matches(ffi::PyExc_AttributeError) } {
                // SAFETY: the GIL is held.
                unsafe { ffi::PyErr_Clear() };
            } else {
                // SAFETY: an exception is set and `obj` is live.
                unsafe { ffi::PyErr_WriteUnraisable(obj.as_ptr()) };
            }
            return;
        }
    };
    // Errors of the call itself, whatever their type, go to sys.unraisablehook.
    if let Err(e) = call_found(obj, found, mv, Some(names.own_release.borrow())) {
        e.restore(gil);
        // SAFETY: an exception is set and `obj` is live.
        unsafe { ffi::PyErr_WriteUnraisable(obj.as_ptr()) };
    }
}

/// `Exporter.__buffer__(self, flags)`: refuses, naming the class that should define it.
pub fn exporter_buffer(this: Borrowed<'_>, _flags: Borrowed<'_>) -> Result<Owned> {
    Err(not_defined(this))
}

/// `Exporter.__release_buffer__(self, view)`: nothing to release.
pub fn exporter_release_buffer(this: Borrowed<'_>, _view: Borrowed<'_>) -> Result<Owned> {
    Ok(convert::none(this.gil()))
}

/// The Rust value of an `Exporter` instance: nothing. Subclasses keep what they wrap in their
/// `__dict__` or `__slots__`, and the instance keeps `object`'s size, so that subclasses
/// pickle and copy like any class (`copyreg` refuses objects larger than `object` that define
/// no `__getstate__`).
pub struct ExporterValue;

use super::common::{method, slot, spec_flags, IMMUTABLE, SLOT_END};
use crate::trampoline::onearg;
use bufferkit::ffi::Object;
use core::ffi::c_void;

static mut EXPORTER_METHODS: [ffi::PyMethodDef; 3] = [
    method(
        c"__buffer__",
        ffi::PyMethodDefPointer { PyCFunction: onearg!(ExporterValue, |this: bufferkit::ffi::This<'_, ExporterValue>, flags| exporter_buffer(this.obj, flags)) },
        // METH_COEXIST: on 3.12+ PyType_Ready adds a `__buffer__` slot wrapper for the
        // getbuffer slot before the method table, and without the flag the wrapper would win.
        ffi::METH_O | ffi::METH_COEXIST,
        c"__buffer__($self, flags, /)\n--\n\nSubclasses define this: return a memoryview of what the object wraps.\n\nExporter's own raises TypeError.",
    ),
    method(
        c"__release_buffer__",
        ffi::PyMethodDefPointer { PyCFunction: onearg!(ExporterValue, |this: bufferkit::ffi::This<'_, ExporterValue>, view| exporter_release_buffer(this.obj, view)) },
        ffi::METH_O | ffi::METH_COEXIST,
        c"__release_buffer__($self, view, /)\n--\n\nCalled once per export with the memoryview __buffer__ returned, after the\nconsumer released it. Exporter's own does nothing; subclasses may define it.",
    ),
    ffi::PyMethodDef::zeroed(),
];

static mut EXPORTER_SLOTS: [ffi::PyType_Slot; 7] = [
    // No Py_tp_new: Exporter inherits object.__new__, so that copyreg pickles subclasses like
    // ordinary classes (with protocols 0 and 1 it would otherwise pickle `Exporter(self)`).
    slot(
        ffi::Py_tp_dealloc,
        bufferkit::ffi::dealloc::<ExporterValue> as *mut c_void,
    ),
    slot(
        ffi::Py_bf_getbuffer,
        crate::shims::exporter_getbuffer as *mut c_void,
    ),
    slot(
        ffi::Py_bf_releasebuffer,
        crate::shims::exporter_releasebuffer as *mut c_void,
    ),
    // SAFETY: only the address of the static is taken; CPython reads the table during
    // PyType_FromModuleAndSpec and never writes it.
    slot(ffi::Py_tp_methods, (&raw mut EXPORTER_METHODS).cast()),
    slot(ffi::Py_tp_doc, DOC.as_ptr().cast_mut().cast()),
    // abi3t: how Object::create finds this type under a Python subclass.
    bufferkit::ffi::object::type_token_slot::<ExporterValue>(),
    SLOT_END,
];

const DOC: &core::ffi::CStr = c"Exporter()
--

Base class for Python classes that export the buffer protocol by delegating
to an object they wrap (PEP 688's __buffer__, on every supported Python):

    class Samples(bufferkit.Exporter):
        def __init__(self, data):
            self._data = numpy.asarray(data)
        def __buffer__(self, flags):
            return memoryview(self._data)
        def __release_buffer__(self, view):   # optional
            ...

__buffer__(flags) must return a memoryview; the consumer gets exactly what that
memoryview serves for its request flags. __release_buffer__(view) is called
once per export, with the same memoryview, after the consumer released it
(also when the memoryview refused the request, on 3.9-3.11). On 3.12+ CPython
dispatches __buffer__ itself; consumers then see an internal wrapper object
as the exporter (view.obj) instead of the instance.";

/// The type's spec, for `PyType_FromModuleAndSpec`.
pub static mut EXPORTER_SPEC: ffi::PyType_Spec = ffi::PyType_Spec {
    name: c"bufferkit.Exporter".as_ptr(),
    basicsize: Object::<ExporterValue>::BASICSIZE,
    itemsize: 0,
    flags: spec_flags(ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_BASETYPE | IMMUTABLE),
    // SAFETY: only the address of the static is taken (see EXPORTER_SLOTS).
    slots: (&raw mut EXPORTER_SLOTS).cast(),
};

// The slot table stores untyped pointers; these twins make the compiler check each signature.
const _: ffi::getbufferproc = crate::shims::exporter_getbuffer;
const _: ffi::releasebufferproc = crate::shims::exporter_releasebuffer;
const _: ffi::destructor = bufferkit::ffi::dealloc::<ExporterValue>;
