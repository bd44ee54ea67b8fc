//! The `bufferkit._bufferkit` module: multi-phase initialisation (PEP 489) with the heap types
//! kept in module state, as in CPython's `Modules/xxlimited.c` and pyo3-ffi's `sequential`
//! example. No type object is static: each module object (one per interpreter) makes its own
//! from the static specs, and module state owns them (traversed, cleared, freed with it).

use core::ffi::{c_int, c_void, CStr};
use core::ptr;

use pyo3_ffi as ffi;

use bufferkit::exporter::Gil;
use bufferkit::ffi::convert;
use bufferkit::ffi::{unwind, Borrowed, Error, Owned, Result};
use bufferkit::request::flags;

/// The error of a lookup in a module that `m_clear` emptied (interpreter exit), or of an
/// object whose class is being torn down with it.
pub const MODULE_CLEARED: &str =
    "bufferkit module has been cleared, or the object's class is being torn down";

/// What the module object holds: strong references to its types.
///
/// Readers get a copy ([`state_of_type`], [`state_of_module`]): no reference into the
/// module's memory outlives the lookup, so `exec` and `clear`, which write it, never alias a
/// reader's borrow. A copied pointer is borrowed from the module: a caller that runs Python
/// code before using it takes a reference of its own first (`clear` may drop the module's).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct State {
    /// `bufferkit.Buffer`
    pub buffer_type: *mut ffi::PyObject,
    /// `bufferkit.View`
    pub view_type: *mut ffi::PyObject,
    /// `bufferkit._bufferkit.HeldExport`, the export Views share (not in the namespace)
    pub held_type: *mut ffi::PyObject,
    /// `bufferkit.BufferInfo`, the named tuple `inspect()` returns
    pub info_type: *mut ffi::PyObject,
    /// `bufferkit.Exporter`
    pub exporter_type: *mut ffi::PyObject,
    /// `"__buffer__"`, interned
    pub buffer_name: *mut ffi::PyObject,
    /// `"__release_buffer__"`, interned
    pub release_name: *mut ffi::PyObject,
    /// `Exporter.__release_buffer__`, Exporter's own (which does nothing): a release whose
    /// lookup finds it skips the call
    pub exporter_release: *mut ffi::PyObject,
    /// `_rebuild_buffer`, the module function that unpickles a Buffer (`Buffer.__reduce_ex__`)
    pub rebuild_buffer: *mut ffi::PyObject,
}

impl State {
    fn objects(&mut self) -> [&mut *mut ffi::PyObject; 9] {
        [
            &mut self.buffer_type,
            &mut self.view_type,
            &mut self.held_type,
            &mut self.info_type,
            &mut self.exporter_type,
            &mut self.buffer_name,
            &mut self.release_name,
            &mut self.exporter_release,
            &mut self.rebuild_buffer,
        ]
    }
}

// `PyModule_GetState` returns NULL for `m_size == 0`, and the state comes from PyMem_Malloc
// (16-byte aligned); `traverse`/`clear` may see it all-zero before exec, which must be valid.
const _: () = assert!(core::mem::size_of::<State>() > 0 && core::mem::align_of::<State>() <= 16);
// SAFETY: evaluated at compile time; it fails to compile if a field ever stops admitting zero.
const _: State = unsafe { core::mem::zeroed() };

/// The constants exported as module attributes, with CPython's values.
const CONSTANTS: [(&CStr, c_int); 19] = [
    (c"PyBUF_SIMPLE", flags::SIMPLE),
    (c"PyBUF_WRITABLE", flags::WRITABLE),
    (c"PyBUF_FORMAT", flags::FORMAT),
    (c"PyBUF_ND", flags::ND),
    (c"PyBUF_STRIDES", flags::STRIDES),
    (c"PyBUF_C_CONTIGUOUS", flags::C_CONTIGUOUS),
    (c"PyBUF_F_CONTIGUOUS", flags::F_CONTIGUOUS),
    (c"PyBUF_ANY_CONTIGUOUS", flags::ANY_CONTIGUOUS),
    (c"PyBUF_INDIRECT", flags::INDIRECT),
    (c"PyBUF_CONTIG", flags::CONTIG),
    (c"PyBUF_CONTIG_RO", flags::CONTIG_RO),
    (c"PyBUF_STRIDED", flags::STRIDED),
    (c"PyBUF_STRIDED_RO", flags::STRIDED_RO),
    (c"PyBUF_RECORDS", flags::RECORDS),
    (c"PyBUF_RECORDS_RO", flags::RECORDS_RO),
    (c"PyBUF_FULL", flags::FULL),
    (c"PyBUF_FULL_RO", flags::FULL_RO),
    (c"PyBUF_READ", flags::READ),
    (c"PyBUF_WRITE", flags::WRITE),
];

/// The module's state.
///
/// # Safety
///
/// `module` is a live `bufferkit._bufferkit` module object and the GIL is held.
unsafe fn state(module: *mut ffi::PyObject) -> *mut State {
    // SAFETY: the module was made from MODULE_DEF, whose m_size is size_of::<State>(), so
    // PyModule_GetState returns that (zero-initialised, suitably aligned) block.
    unsafe { ffi::PyModule_GetState(module).cast::<State>() }
}

/// `Py_mod_exec`: makes the types and fills the module.
pub fn exec(gil: Gil<'_>, module: Borrowed<'_>) -> Result<()> {
    // SAFETY: exec runs with the GIL on a module made from MODULE_DEF, before anything else
    // can reach its state: the only reference to it while exec runs.
    let state = unsafe { &mut *state(module.as_ptr()) };
    state.buffer_type = add_type(module, &raw mut crate::types::buffer::BUFFER_SPEC)?;
    state.view_type = add_type(module, &raw mut crate::types::view::VIEW_SPEC)?;
    state.held_type = new_type(module, &raw mut crate::types::view::HELD_SPEC)?.into_raw();
    state.info_type = info_type(module)?;
    state.exporter_type = add_type(module, &raw mut crate::types::exporter::EXPORTER_SPEC)?;
    state.buffer_name = interned(c"__buffer__")?;
    state.release_name = interned(c"__release_buffer__")?;
    // SAFETY: the Exporter type was just stored (a strong reference).
    let exporter = unsafe { Borrowed::from_ptr(state.exporter_type) }.ok_or(Error::Raised)?;
    state.exporter_release = convert::getattr(exporter, c"__release_buffer__")?.into_raw();
    // Added from MODULE_DEF's m_methods before exec runs.
    state.rebuild_buffer = convert::getattr(module, c"_rebuild_buffer")?.into_raw();
    for (name, value) in CONSTANTS {
        // SAFETY: the module is live, `name` a C string.
        convert_status(unsafe {
            ffi::PyModule_AddIntConstant(module.as_ptr(), name.as_ptr(), value.into())
        })?;
    }
    let mut names: Vec<&str> = vec!["Buffer", "View", "Exporter", "BufferInfo", "inspect"];
    names.extend(
        CONSTANTS
            .iter()
            .map(|(n, _)| n.to_str().unwrap_or_default()),
    );
    // SAFETY: the GIL is held; a new empty list.
    let all = unsafe { Owned::from_new(ffi::PyList_New(0)) }?;
    for name in names {
        let name = convert::new_str(gil, name)?;
        // SAFETY: `all` is a list, `name` a str; PyList_Append takes its own reference.
        convert_status(unsafe { ffi::PyList_Append(all.as_ptr(), name.as_ptr()) })?;
    }
    // SAFETY: the module is live; PyModule_AddObjectRef takes its own reference (3.10+), so we
    // use PyObject_SetAttrString, which does the same on every version.
    convert_status(unsafe {
        ffi::PyObject_SetAttrString(module.as_ptr(), c"__all__".as_ptr(), all.as_ptr())
    })?;
    Ok(())
}

/// Makes a heap type of the module from `spec`.
///
/// A `Py_tp_vectorcall` slot is given to CPython 3.14+ only: earlier versions refuse the
/// spec ("invalid slot offset"), and the one abi3 module runs on both. There the type is made
/// from a copy of the spec without that slot (CPython keeps none of the slot array).
fn new_type(module: Borrowed<'_>, spec: *mut ffi::PyType_Spec) -> Result<Owned> {
    // SAFETY: the spec is a static that lives for the program, with a slot array ended by a
    // zero slot, which only CPython reads (during PyType_FromModuleAndSpec, on one thread).
    let mut spec = unsafe { *spec };
    let mut slots = Vec::new();
    if !type_vectorcall_supported() {
        let mut at = spec.slots;
        loop {
            // SAFETY: inside the slot array, up to and including its zero end (above).
            let slot = unsafe { *at };
            if slot.slot != ffi::Py_tp_vectorcall {
                slots.push(slot);
            }
            if slot.slot == 0 {
                break;
            }
            // SAFETY: not past the zero end.
            at = unsafe { at.add(1) };
        }
        spec.slots = slots.as_mut_ptr();
    }
    // SAFETY: `spec` and the slots it names live across the call; PyType_FromModuleAndSpec
    // reads them (and copies what it keeps; `name` is the static's) and returns a new
    // reference to a heap type.
    unsafe {
        Owned::from_new(ffi::PyType_FromModuleAndSpec(
            module.as_ptr(),
            &mut spec,
            ptr::null_mut(),
        ))
    }
}

/// Whether the running interpreter takes `Py_tp_vectorcall` in a type spec (3.14+, gh-100554).
fn type_vectorcall_supported() -> bool {
    #[cfg(Py_3_14)]
    return true;
    // The abi3 module: the version it runs on.
    #[cfg(all(not(Py_3_14), Py_LIMITED_API, not(PyPy)))]
    // SAFETY: a constant of the interpreter (stable ABI, 3.11+).
    return unsafe { ffi::Py_Version } >= 0x030E_0000;
    // A version-specific build for an earlier version.
    #[cfg(all(not(Py_3_14), any(not(Py_LIMITED_API), PyPy)))]
    return false;
}

/// Makes a heap type from `spec`, adds it to the module, and returns a strong reference for
/// module state.
fn add_type(module: Borrowed<'_>, spec: *mut ffi::PyType_Spec) -> Result<*mut ffi::PyObject> {
    let tp = new_type(module, spec)?;
    // SAFETY: the module and the type are live; PyModule_AddType takes its own reference.
    convert_status(unsafe { ffi::PyModule_AddType(module.as_ptr(), tp.as_ptr().cast()) })?;
    Ok(tp.into_raw())
}

/// An interned `str`, for attribute lookups on the export path.
fn interned(text: &CStr) -> Result<*mut ffi::PyObject> {
    // SAFETY: `text` is a C string; the GIL is held during exec.
    Ok(unsafe { Owned::from_new(ffi::PyUnicode_InternFromString(text.as_ptr())) }?.into_raw())
}

/// The fields of `inspect()`'s result, in `Py_buffer` order.
pub const INFO_FIELDS: [&str; 10] = [
    "buf",
    "obj",
    "len",
    "itemsize",
    "readonly",
    "ndim",
    "format",
    "shape",
    "strides",
    "suboffsets",
];

/// `BufferInfo = collections.namedtuple('BufferInfo', INFO_FIELDS, module='bufferkit')`
fn info_type(module: Borrowed<'_>) -> Result<*mut ffi::PyObject> {
    let gil = module.gil();
    let collections = convert::import(gil, c"collections")?;
    let namedtuple = convert::getattr(collections.borrow(), c"namedtuple")?;
    let name = convert::new_str(gil, "BufferInfo")?;
    let fields = convert::new_str(gil, &INFO_FIELDS.join(" "))?;
    let args = convert::new_tuple(gil, &[name.borrow(), fields.borrow()])?;
    // SAFETY: the GIL is held; a new dict.
    let kwargs = unsafe { Owned::from_new(ffi::PyDict_New()) }?;
    let module_name = convert::new_str(gil, "bufferkit")?;
    // SAFETY: a dict, a C-string key and a str value.
    convert_status(unsafe {
        ffi::PyDict_SetItemString(kwargs.as_ptr(), c"module".as_ptr(), module_name.as_ptr())
    })?;
    // SAFETY: callable, tuple and dict are live.
    let tp = unsafe {
        Owned::from_new(unwind::call(
            namedtuple.as_ptr(),
            args.as_ptr(),
            kwargs.as_ptr(),
        ))
    }?;
    let doc = convert::new_str(
        gil,
        "The Py_buffer a consumer got, as inspect() returns it: buf is the address as an\n\
         int; buf, format, shape, strides and suboffsets are None where the pointer was NULL.",
    )?;
    // SAFETY: the new class is live; setting its docstring.
    convert_status(unsafe {
        ffi::PyObject_SetAttrString(tp.as_ptr(), c"__doc__".as_ptr(), doc.as_ptr())
    })?;
    // SAFETY: the module is live; PyObject_SetAttrString takes its own reference.
    convert_status(unsafe {
        ffi::PyObject_SetAttrString(module.as_ptr(), c"BufferInfo".as_ptr(), tp.as_ptr())
    })?;
    Ok(tp.into_raw())
}

fn convert_status(status: c_int) -> Result<()> {
    if status < 0 {
        Err(Error::Raised)
    } else {
        Ok(())
    }
}

/// `m_traverse`: visits the types module state owns.
///
/// # Safety
///
/// Called by the GC with a live module from MODULE_DEF, a valid `visit` and its `arg`.
pub unsafe fn traverse(
    module: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: m_traverse may be called before exec ran, when state is still zeroed: NULL
    // entries are skipped below. The collector runs with the world stopped (or the GIL
    // held) and nothing writes the state meanwhile; the reference lives for this loop.
    let state = unsafe { &mut *state(module) };
    for ty in state.objects() {
        if !ty.is_null() {
            // SAFETY: a strong reference we own; `visit` is the GC's callback.
            let r = unsafe { visit(*ty, arg) };
            if r != 0 {
                return r;
            }
        }
    }
    0
}

/// `m_clear` and `m_free`: drops the types module state owns.
///
/// # Safety
///
/// Called with the GIL held on a live module from MODULE_DEF.
pub unsafe fn clear(module: *mut ffi::PyObject) {
    // SAFETY: as in `traverse`; readers hold copies, never a reference into the state.
    let state = unsafe { &mut *state(module) };
    for ty in state.objects() {
        let old = core::mem::replace(ty, ptr::null_mut());
        if !old.is_null() {
            // SAFETY: a strong reference we owned and no longer point to.
            unsafe { unwind::decref(old) };
        }
    }
}

/// The state of a module object.
///
/// # Safety
///
/// `module` is a live `bufferkit._bufferkit` module and the GIL is held.
pub unsafe fn state_of_module(module: *mut ffi::PyObject) -> State {
    // SAFETY: forwarded; a copy, read with the GIL held (or the module being collected
    // only with the world stopped), so no `clear` writes it meanwhile.
    unsafe { state(module).read() }
}

/// The state of the bufferkit module that made `tp` (or one of its bases).
///
/// # Safety
///
/// The GIL is held and `tp` is live.
pub unsafe fn state_of_type(tp: *mut ffi::PyTypeObject) -> Result<State> {
    // SAFETY: forwarded.
    let module = unsafe { crate::shims::module_of_type(tp) };
    let module = module.ok_or_else(|| Error::type_error("not a bufferkit type"))?;
    // SAFETY: module_of_type returns a live bufferkit module.
    Ok(unsafe { state_of_module(module) })
}
