//! The module crate's `extern "C"` functions, each a shim inside bufferkit's panic boundary:
//! the module definition and its slots (`Py_mod_exec`, `m_traverse`, `m_clear`, `m_free`, over
//! `crate::module`), `bufferkit.Exporter`'s buffer slots (over `crate::types::exporter`), and
//! the lookup of the module from a type that slots and methods use to reach module state.

use core::ffi::{c_int, c_void};
use core::ptr;

use pyo3_ffi as ffi;

use bufferkit::__private::{getbuffer_boundary, releasebuffer_boundary};
use bufferkit::exporter::Gil;
use bufferkit::ffi::trampoline::guard;
use bufferkit::ffi::{dealloc, unwind, Borrowed, Error};

unsafe extern "C" fn module_exec(module: *mut ffi::PyObject) -> c_int {
    // SAFETY: CPython runs Py_mod_exec with the GIL held on the new module.
    let gil = unsafe { Gil::assume() };
    guard(gil, -1, |gil| {
        // SAFETY: the module is live for the call.
        let module = unsafe { Borrowed::from_ptr(module) }.ok_or(Error::Raised)?;
        crate::module::exec(gil, module).map(|()| 0)
    })
}

unsafe extern "C" fn module_traverse(
    module: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: the GC calls m_traverse with a live module of this definition; traverse cannot
    // panic (it only reads state and calls `visit`).
    unsafe { crate::module::traverse(module, visit, arg) }
}

unsafe extern "C" fn module_clear(module: *mut ffi::PyObject) -> c_int {
    // SAFETY: called with the GIL held on a live module of this definition.
    unsafe { crate::module::clear(module) };
    0
}

unsafe extern "C" fn module_free(module: *mut c_void) {
    // SAFETY: m_free gets the module being freed, with the GIL held.
    unsafe { crate::module::clear(module.cast()) };
}

static mut MODULE_METHODS: [ffi::PyMethodDef; 3] = [
    ffi::PyMethodDef {
        ml_name: c"inspect".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionWithKeywords: crate::trampoline::with_first!(
                ffi::PyObject,
                crate::types::inspect::inspect
            ),
        },
        ml_flags: ffi::METH_VARARGS | ffi::METH_KEYWORDS,
        ml_doc: c"inspect(obj, flags=PyBUF_FULL_RO)
--

The Py_buffer a consumer gets from obj for the request flags, as a
BufferInfo named tuple (released before returning):

    >>> bufferkit.inspect(bytearray(b'ab'), bufferkit.PyBUF_ND)
    BufferInfo(buf=..., obj=bytearray(b'ab'), len=2, itemsize=1, readonly=False,
               ndim=1, format=None, shape=(2,), strides=None, suboffsets=None)

Refused requests raise what the exporter raised (BufferError)."
            .as_ptr(),
    },
    ffi::PyMethodDef {
        ml_name: c"_rebuild_buffer".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionWithKeywords: crate::trampoline::with_first!(
                ffi::PyObject,
                crate::types::buffer::rebuild_buffer
            ),
        },
        ml_flags: ffi::METH_VARARGS | ffi::METH_KEYWORDS,
        ml_doc: c"_rebuild_buffer(cls, data, format, shape, order, readonly, /)
--

Rebuild a pickled Buffer of class cls (Buffer or a subclass) from a copy
of data, in memory order: what Buffer.__reduce_ex__ returns to pickle."
            .as_ptr(),
    },
    ffi::PyMethodDef::zeroed(),
];

#[cfg(not(abi3t))]
const EXEC_SLOT: ffi::PyModuleDef_Slot = ffi::PyModuleDef_Slot {
    slot: ffi::Py_mod_exec,
    value: module_exec as *mut c_void,
};

#[cfg(not(abi3t))]
const END_SLOT: ffi::PyModuleDef_Slot = ffi::PyModuleDef_Slot {
    slot: 0,
    value: ptr::null_mut(),
};

// bufferkit does not rely on the GIL (src/exporter.rs, "Threads"): a free-threaded CPython
// keeps it off when importing the module. Builds with a GIL ignore the slot; the stable ABI
// of 3.11 does not have it.
#[cfg(all(Py_3_13, not(Py_LIMITED_API)))]
static mut MODULE_SLOTS: [ffi::PyModuleDef_Slot; 3] = [
    EXEC_SLOT,
    ffi::PyModuleDef_Slot {
        slot: ffi::Py_mod_gil,
        value: ffi::Py_MOD_GIL_NOT_USED,
    },
    END_SLOT,
];

#[cfg(all(not(all(Py_3_13, not(Py_LIMITED_API))), not(abi3t)))]
static mut MODULE_SLOTS: [ffi::PyModuleDef_Slot; 2] = [EXEC_SLOT, END_SLOT];

/// The definition of `bufferkit._bufferkit`.
#[cfg(not(abi3t))]
pub static mut MODULE_DEF: ffi::PyModuleDef = ffi::PyModuleDef {
    m_base: ffi::PyModuleDef_HEAD_INIT,
    m_name: c"bufferkit._bufferkit".as_ptr(),
    m_doc: c"The native part of bufferkit; import bufferkit instead.".as_ptr(),
    m_size: core::mem::size_of::<crate::module::State>() as ffi::Py_ssize_t,
    // SAFETY: only the address of the static is taken; CPython reads it during module
    // creation and never writes it.
    m_methods: (&raw mut MODULE_METHODS).cast(),
    // SAFETY: only the address of the static is taken; CPython reads it during module
    // creation and never writes it.
    m_slots: (&raw mut MODULE_SLOTS).cast(),
    m_traverse: Some(module_traverse),
    m_clear: Some(module_clear),
    m_free: Some(module_free),
};

/// The abi3t module: `PyModuleDef` is opaque under the stable ABI for free-threaded builds
/// (PEP 803), so the module is described by a slot array that `PyModExport__bufferkit` returns
/// (PEP 793); the same definition as `MODULE_DEF`'s, plus the ABI it was built for
/// (`Py_mod_abi`, checked by the importer) and `Py_mod_gil`.
#[cfg(abi3t)]
pub mod export {
    use core::ffi::c_void;

    use pyo3_ffi as ffi;

    /// What `PyABIInfo_VAR` gives a C extension built with `Py_TARGET_ABI3T = 3.15`: the
    /// stable ABI, loadable with and without the GIL, version 3.15 (`Include/modsupport.h`).
    static mut ABI_INFO: ffi::PyABIInfo = ffi::PyABIInfo {
        abiinfo_major_version: 1,
        abiinfo_minor_version: 0,
        flags: ffi::PyABIInfo_STABLE | ffi::PyABIInfo_FREETHREADING_AGNOSTIC,
        // PY_VERSION_HEX of the headers (pyo3-ffi's declarations are 3.15's) and the ABI
        // floor, Py_TARGET_ABI3T = 3.15.
        build_version: 0x030F_0000,
        abi_version: 0x030F_0000,
    };

    /// The slot array `PyModExport__bufferkit` returns; CPython reads it during import and
    /// keeps no pointer into it that it writes. The data slots point at statics and say so
    /// (`PySlot_STATIC`: CPython keeps the pointer instead of copying; `Py_mod_methods`
    /// requires it).
    pub static mut SLOTS: [ffi::PySlot; 11] = [
        // SAFETY: only the address of the static is taken; CPython only reads it.
        ffi::PySlot_PTR_STATIC(ffi::Py_mod_abi, (&raw mut ABI_INFO).cast()),
        ffi::PySlot_PTR_STATIC(
            ffi::Py_mod_name,
            c"bufferkit._bufferkit".as_ptr().cast_mut().cast(),
        ),
        ffi::PySlot_PTR_STATIC(
            ffi::Py_mod_doc,
            c"The native part of bufferkit; import bufferkit instead."
                .as_ptr()
                .cast_mut()
                .cast(),
        ),
        ffi::PySlot_SIZE(
            ffi::Py_mod_state_size,
            core::mem::size_of::<crate::module::State>() as ffi::Py_ssize_t,
        ),
        // SAFETY: only the address of the static is taken; CPython reads the table during
        // module creation and never writes it.
        ffi::PySlot_PTR_STATIC(ffi::Py_mod_methods, (&raw mut super::MODULE_METHODS).cast()),
        // SAFETY: a function of the slot's signature (`int (*)(PyObject *)`), not NULL.
        unsafe { ffi::PySlot_FUNC(ffi::Py_mod_exec, super::module_exec as *mut c_void) },
        // SAFETY: a `traverseproc`, not NULL.
        unsafe {
            ffi::PySlot_FUNC(
                ffi::Py_mod_state_traverse,
                super::module_traverse as *mut c_void,
            )
        },
        // SAFETY: an `inquiry`, not NULL.
        unsafe { ffi::PySlot_FUNC(ffi::Py_mod_state_clear, super::module_clear as *mut c_void) },
        // SAFETY: a `freefunc`, not NULL.
        unsafe { ffi::PySlot_FUNC(ffi::Py_mod_state_free, super::module_free as *mut c_void) },
        // bufferkit does not rely on the GIL (src/exporter.rs, "Threads").
        ffi::PySlot_DATA(ffi::Py_mod_gil, ffi::Py_MOD_GIL_NOT_USED),
        ffi::PySlot_END(),
    ];
}

/// The bufferkit module that defined `tp` or its nearest bufferkit base (Python subclasses of
/// bufferkit types are made by `class` statements and have no module of their own), or `None`
/// if `tp` is not a bufferkit type. Sets no exception.
///
/// A bufferkit type is recognised by its `tp_dealloc`, which is one of bufferkit's own (a
/// Python subclass has CPython's `subtype_dealloc`; on PyPy it may have bufferkit's, and no
/// module: `module_of`). `PyType_GetModuleByDef` does this walk
/// from 3.11 on, but it joined the limited API only in 3.13, after the abi3 floor.
///
/// # Safety
///
/// The GIL is held and `tp` is live.
pub unsafe fn module_of_type(tp: *mut ffi::PyTypeObject) -> Option<*mut ffi::PyObject> {
    let ours: [*mut c_void; 3] = [
        dealloc::<crate::types::Buffer> as *mut c_void,
        dealloc::<crate::types::View> as *mut c_void,
        dealloc::<crate::types::exporter::ExporterValue> as *mut c_void,
    ];
    let mut ty = tp;
    while !ty.is_null() {
        // SAFETY: `ty` is a live type (tp, then its bases); the GIL is held (caller).
        if ours.contains(&unsafe { type_dealloc(ty) }) {
            // SAFETY: `ty` is live and the GIL is held.
            if let Some(module) = unsafe { module_of(ty) } {
                return Some(module);
            }
        }
        // SAFETY: as above.
        ty = unsafe { type_base(ty) };
    }
    // Not on the `tp_base` chain: a mixin listed before the bufferkit base becomes `__base__`
    // when the bufferkit type adds nothing to the instance size (Exporter). Walk the MRO; a
    // static type (bytearray, numpy.ndarray...) cannot have a heap-type base, so skip those.
    // SAFETY: `tp` is live and the GIL is held (caller).
    if unsafe { type_flags(tp) } & ffi::Py_TPFLAGS_HEAPTYPE == 0 {
        return None;
    }
    // SAFETY: forwarded from the caller.
    unsafe { module_in_mro(tp, &ours) }
}

// The three type fields the walk reads. Under the stable ABI `PyTypeObject` is opaque and they
// take a call each (`PyType_GetFlags`, `PyType_GetSlot`); a version-specific build knows the
// struct and reads them, which makes Exporter's walk (run on every export and release on
// 3.9/3.10) a few loads.

/// `tp_flags`.
///
/// # Safety
///
/// `ty` is a live type and the GIL is held.
#[inline(always)]
unsafe fn type_flags(ty: *mut ffi::PyTypeObject) -> core::ffi::c_ulong {
    #[cfg(Py_LIMITED_API)]
    // SAFETY: forwarded from the caller.
    return unsafe { ffi::PyType_GetFlags(ty) };
    #[cfg(all(not(Py_LIMITED_API), not(Py_GIL_DISABLED)))]
    // SAFETY: forwarded from the caller; the struct's layout is this build's (`make abicheck`).
    return unsafe { (*ty).tp_flags };
    // Free-threaded builds: another thread may change a type's flags (CPython writes them
    // atomically), so the field is an atomic; a relaxed load is what `PyType_GetFlags` does.
    #[cfg(all(not(Py_LIMITED_API), Py_GIL_DISABLED))]
    // SAFETY: forwarded from the caller; the struct's layout is this build's (`make abicheck`).
    return unsafe { (*ty).tp_flags.load(core::sync::atomic::Ordering::Relaxed) };
}

/// `tp_dealloc`, as an untyped pointer (NULL if unset).
///
/// # Safety
///
/// `ty` is a live type and the GIL is held.
#[inline(always)]
unsafe fn type_dealloc(ty: *mut ffi::PyTypeObject) -> *mut c_void {
    #[cfg(Py_LIMITED_API)]
    // SAFETY: forwarded from the caller. The stable-ABI build needs 3.11+, whose
    // PyType_GetSlot accepts static types too (3.10+; 3.9's refused them).
    return unsafe { ffi::PyType_GetSlot(ty, ffi::Py_tp_dealloc) };
    #[cfg(not(Py_LIMITED_API))]
    // SAFETY: as in `type_flags`.
    return unsafe { (*ty).tp_dealloc }.map_or(core::ptr::null_mut(), |f| f as *mut c_void);
}

/// `tp_base` (borrowed; NULL for `object`).
///
/// # Safety
///
/// `ty` is a live type and the GIL is held.
#[inline(always)]
unsafe fn type_base(ty: *mut ffi::PyTypeObject) -> *mut ffi::PyTypeObject {
    #[cfg(Py_LIMITED_API)]
    // SAFETY: as in `type_dealloc`.
    return unsafe { ffi::PyType_GetSlot(ty, ffi::Py_tp_base) }.cast();
    #[cfg(not(Py_LIMITED_API))]
    // SAFETY: as in `type_flags`.
    return unsafe { (*ty).tp_base };
}

/// The module of `ty`, a type with one of bufferkit's `tp_dealloc`s, or `None` with nothing
/// raised: a bufferkit type has one (PyType_FromModuleAndSpec), but a Python subclass can
/// have bufferkit's `tp_dealloc` too (PyPy's cpyext copies it where CPython installs
/// `subtype_dealloc`) and no module, and then the walk goes on to its base.
///
/// # Safety
///
/// `ty` is a live type and the GIL is held.
unsafe fn module_of(ty: *mut ffi::PyTypeObject) -> Option<*mut ffi::PyObject> {
    // SAFETY: forwarded; a borrowed reference, or NULL with an exception set.
    let module = unsafe { ffi::PyType_GetModule(ty) };
    if module.is_null() {
        // SAFETY: the GIL is held; the lookup's TypeError is not the caller's business.
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    Some(module)
}

/// The slow path of [`module_of_type`]: every class of `tp.__mro__`.
///
/// # Safety
///
/// The GIL is held and `tp` is live.
unsafe fn module_in_mro(
    tp: *mut ffi::PyTypeObject,
    ours: &[*mut c_void],
) -> Option<*mut ffi::PyObject> {
    // SAFETY: `tp` is live; a new reference to its MRO tuple, or NULL (cleared below).
    let mro = unsafe { ffi::PyObject_GetAttrString(tp.cast(), c"__mro__".as_ptr()) };
    if mro.is_null() {
        // SAFETY: the GIL is held; a type without an MRO is not a bufferkit type.
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    // A metaclass may give `__mro__` any value: only a tuple is walked.
    // SAFETY: `mro` is a live object we own.
    if unsafe { ffi::PyTuple_Check(mro) } == 0 {
        // SAFETY: our reference.
        unsafe { unwind::decref(mro) };
        return None;
    }
    let mut found = None;
    // SAFETY: `mro` is a tuple (checked above).
    let n = unsafe { ffi::PyTuple_Size(mro) };
    for i in 0..n {
        // SAFETY: 0 <= i < n; a borrowed type from the tuple we hold.
        let ty = unsafe { ffi::PyTuple_GetItem(mro, i) }.cast::<ffi::PyTypeObject>();
        // SAFETY: `ty` is a live type (from the tuple we hold); the GIL is held (caller).
        if !ty.is_null() && ours.contains(&unsafe { type_dealloc(ty) }) {
            // SAFETY: `ty` is live (from the tuple we hold) and the GIL is held.
            found = unsafe { module_of(ty) };
            if found.is_some() {
                break;
            }
        }
    }
    // SAFETY: our reference to the MRO tuple.
    unsafe { unwind::decref(mro) };
    found
}

/// `bf_getbuffer` of `bufferkit.Exporter`: delegates to `__buffer__` (see
/// `crate::types::exporter`), inside the same panic boundary as [`bufferkit::ffi::getbuffer`].
///
/// # Safety
///
/// CPython calls it with the GIL held, `obj` an Exporter instance and `view` the consumer's
/// `Py_buffer`.
pub unsafe extern "C" fn exporter_getbuffer(
    obj: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded from the caller: GIL held, `view` the consumer's Py_buffer (checked
    // for NULL by the boundary), `obj` live for the call.
    unsafe {
        getbuffer_boundary(view, |gil| {
            // `export` relies on `view->obj` being NULL until it fills the view.
            // SAFETY: `view` is non-NULL (the boundary) and writable (caller).
            ptr::addr_of_mut!((*view).obj).write(ptr::null_mut());
            // SAFETY: `obj` is live for the call (caller).
            let this = Borrowed::from_ptr(obj).ok_or(Error::Raised)?;
            // SAFETY: `view` is writable with `obj` NULL (just written); the GIL is held.
            crate::types::exporter::export(gil, this, view, flags)
        })
    }
}

/// `bf_releasebuffer` of `bufferkit.Exporter`.
///
/// # Safety
///
/// CPython calls it with the GIL held for a view being released whose `obj` is `obj`.
pub unsafe extern "C" fn exporter_releasebuffer(
    obj: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
) {
    // SAFETY: forwarded from the caller: the GIL is held and `obj` is live.
    unsafe {
        releasebuffer_boundary(obj, |gil| {
            // SAFETY: `obj` is live for the call (caller).
            if let Some(this) = Borrowed::from_ptr(obj) {
                // SAFETY: `view` is being released for `obj` (caller); GIL held.
                crate::types::exporter::release(gil, this, view);
            }
        })
    }
}
