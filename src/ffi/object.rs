//! Python object handles ([`Owned`], [`Borrowed`]), the generic object layout [`Object<T>`],
//! and allocation and deallocation of heap-type instances.
//!
//! Mirrors the instance half of CPython's `Modules/xxlimited.c`: instances are allocated by
//! their type's `tp_alloc`, freed by its `tp_free`, and a heap type's instance releases its
//! reference to the type on deallocation (`Doc/c-api/typeobj.rst`, `tp_dealloc`: "heap-allocated
//! types ... should decrement the reference count of their type object").

use core::ffi::c_void;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use pyo3_ffi as ffi;

use super::error::{Error, Result};
use crate::exporter::Gil;

/// A strong reference, released on drop.
///
/// Only made from a new reference while the GIL is held, kept only while it stays held (bufferkit
/// never releases the GIL), and never sent to another thread (`NonNull` makes it neither `Send`
/// nor `Sync`): so [`borrow`](Self::borrow) may hand out a [`Borrowed`], and its drop runs with
/// the GIL.
#[derive(Debug)]
pub struct Owned(NonNull<ffi::PyObject>);

impl Owned {
    /// Takes ownership of a new reference returned by a C-API call; `Err(Raised)` for NULL.
    ///
    /// # Safety
    ///
    /// `ptr` is NULL or a strong reference the caller owns and hands over, and the GIL is held
    /// for as long as the result exists.
    pub unsafe fn from_new(ptr: *mut ffi::PyObject) -> Result<Self> {
        NonNull::new(ptr).map(Self).ok_or(Error::Raised)
    }

    /// A new strong reference to a borrowed object.
    pub fn from_borrowed(obj: Borrowed<'_>) -> Self {
        // SAFETY: `obj` is a live object and the GIL is held for its lifetime (the invariants
        // of `Borrowed`); Py_INCREF makes the new reference this handle owns.
        unsafe { ffi::Py_INCREF(obj.as_ptr()) };
        Self(obj.0)
    }

    /// The object, borrowed for as long as this handle lives.
    pub fn as_ptr(&self) -> *mut ffi::PyObject {
        self.0.as_ptr()
    }

    /// Borrows the object.
    pub fn borrow(&self) -> Borrowed<'_> {
        Borrowed(self.0, PhantomData)
    }

    /// Hands the reference to the caller (for returning it to CPython).
    pub fn into_raw(self) -> *mut ffi::PyObject {
        ManuallyDrop::new(self).0.as_ptr()
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: we own this reference, and the GIL is held whenever an `Owned` is dropped
        // (contract of `from_new`).
        unsafe { super::unwind::decref(self.0.as_ptr()) }
    }
}

/// A borrowed reference to a live object, valid (with the GIL held) for `'py`.
#[derive(Clone, Copy, Debug)]
pub struct Borrowed<'py>(NonNull<ffi::PyObject>, PhantomData<&'py ffi::PyObject>);

impl<'py> Borrowed<'py> {
    /// Borrows `ptr` for `'py`.
    ///
    /// # Safety
    ///
    /// `ptr` points to a live object that some reference keeps alive for `'py`, and the GIL is
    /// held for `'py`.
    pub unsafe fn from_ptr(ptr: *mut ffi::PyObject) -> Option<Self> {
        NonNull::new(ptr).map(|p| Self(p, PhantomData))
    }

    /// The raw pointer.
    pub fn as_ptr(self) -> *mut ffi::PyObject {
        self.0.as_ptr()
    }

    /// The GIL token a borrowed object stands for: held for `'py` by the contract of
    /// [`from_ptr`](Self::from_ptr), the only way to make a `Borrowed`.
    pub fn gil(self) -> Gil<'py> {
        // SAFETY: `from_ptr`'s caller promised that the GIL is held for `'py`.
        unsafe { Gil::assume() }
    }

    /// The object's type (borrowed).
    pub fn type_ptr(self) -> *mut ffi::PyTypeObject {
        // SAFETY: a live object's header is readable, and the GIL is held (invariants).
        unsafe { ffi::Py_TYPE(self.as_ptr()) }
    }

    /// The short name of the object's type (`Buffer`, or a subclass's name), for messages.
    pub fn type_name(self) -> String {
        // SAFETY: type_ptr() is the live type of a live object.
        unsafe { type_name(self.type_ptr()) }
    }
}

/// The `__name__` of a type, for messages; `"object"` if it cannot be read.
///
/// # Safety
///
/// `tp` is a live type object and the GIL is held.
pub unsafe fn type_name(tp: *mut ffi::PyTypeObject) -> String {
    #[cfg(Py_3_11)]
    {
        // SAFETY: tp is a live type (caller); PyType_GetName returns a new reference or NULL.
        let name = unsafe { Owned::from_new(ffi::PyType_GetName(tp)) };
        match name {
            Ok(name) => super::convert::str_of(name.borrow()).unwrap_or_else(|_| "object".into()),
            Err(_) => {
                // SAFETY: the GIL is held; forget the lookup's error, the message needs a name.
                unsafe { ffi::PyErr_Clear() };
                "object".into()
            }
        }
    }
    #[cfg(not(Py_3_11))]
    {
        // SAFETY: before 3.11 bufferkit builds against the full API, where `tp_name` is a
        // field of the type object and a valid C string for the type's life.
        let full = unsafe { std::ffi::CStr::from_ptr((*tp).tp_name) };
        let full = full.to_string_lossy();
        full.rsplit('.').next().unwrap_or("object").to_owned()
    }
}

/// The layout of every bufferkit object: CPython's object header, then the Rust value.
///
/// `repr(C)` puts the header at offset 0, where CPython expects it; the value follows at its
/// own alignment. Python subclasses append their `__dict__` and weak-reference slots after
/// `size_of::<Object<T>>()`, the type's basic size.
#[repr(C)]
pub struct Object<T> {
    header: ffi::PyObject,
    value: T,
}

impl<T> Object<T> {
    /// The `basicsize` of the type's `PyType_Spec`.
    pub const BASICSIZE: core::ffi::c_int = {
        assert!(core::mem::offset_of!(Self, header) == 0);
        // CPython's allocators align objects to two pointers (16 bytes on 64-bit targets);
        // `create` writes the value at its own alignment inside that.
        assert!(core::mem::align_of::<Self>() <= 2 * core::mem::size_of::<usize>());
        assert!(core::mem::size_of::<Self>() <= i32::MAX as usize);
        core::mem::size_of::<Self>() as core::ffi::c_int
    };

    /// The value inside an instance.
    ///
    /// # Safety
    ///
    /// `obj` is an instance of a type whose instances are `Object<T>` (a type made from a spec
    /// with [`BASICSIZE`](Self::BASICSIZE) and bufferkit's [`dealloc`]`::<T>`,
    /// or a subclass of it), whose value was initialised by [`create`](Self::create), and it
    /// stays alive for `'a`.
    #[inline(always)]
    pub unsafe fn value_of<'a>(obj: *mut ffi::PyObject) -> &'a T {
        // SAFETY: per the contract, `obj` points to a live, initialised `Object<T>`.
        unsafe { &(*obj.cast::<Self>()).value }
    }

    /// A new instance of `tp` holding `value`.
    ///
    /// # Safety
    ///
    /// `tp` is a live heap type whose instances are `Object<T>` (see [`value_of`](Self::value_of)),
    /// and the GIL is held (`gil` stands for it).
    pub unsafe fn create(_gil: Gil<'_>, tp: *mut ffi::PyTypeObject, value: T) -> Result<Owned> {
        // SAFETY: tp is a live heap type; PyType_GetSlot reads its tp_alloc (every type has
        // one after PyType_Ready: PyType_GenericAlloc unless overridden).
        let alloc = unsafe { ffi::PyType_GetSlot(tp, ffi::Py_tp_alloc) };
        if alloc.is_null() {
            return Err(Error::system_error("type has no tp_alloc"));
        }
        // SAFETY: `alloc` is tp's tp_alloc; tp_alloc(tp, 0) returns a zeroed instance of at least
        // tp_basicsize bytes with the header initialised, or NULL with an exception set.
        let obj = unsafe { Owned::from_new(super::unwind::alloc(alloc, tp)) }?;
        // SAFETY: the instance is at least `size_of::<Object<T>>()` bytes (the type's basic
        // size, contract) and suitably aligned (CPython's allocators align to 16 and `T` is
        // checked against that where the spec is made); the value field is uninitialised
        // (zeroed) memory that nothing reads before this write.
        unsafe { core::ptr::addr_of_mut!((*obj.as_ptr().cast::<Self>()).value).write(value) };
        Ok(obj)
    }
}

/// `tp_dealloc` of a type whose instances are `Object<T>`: drops the value, frees the instance
/// with the type's `tp_free`, and releases the instance's reference to its heap type.
///
/// # Safety
///
/// CPython calls it as `tp_dealloc` with the GIL held and the last reference to `obj` gone,
/// for an instance of a type whose instances are `Object<T>` (see [`Object::value_of`]).
pub unsafe extern "C" fn dealloc<T>(obj: *mut ffi::PyObject) {
    // SAFETY: `obj` is the instance being deallocated (caller); its type is live (the instance
    // holds a reference to it until the end of this function).
    let tp = unsafe { ffi::Py_TYPE(obj) };
    // SAFETY: tp is a live type.
    if unsafe { ffi::PyType_GetFlags(tp) } & ffi::Py_TPFLAGS_HAVE_GC != 0 {
        // SAFETY: obj is a GC object of this type; untracking an untracked object is allowed.
        unsafe { ffi::PyObject_GC_UnTrack(obj.cast()) };
    }
    // SAFETY: the value was initialised by `Object::create` and nothing uses it after this.
    let value = unsafe { core::ptr::addr_of_mut!((*obj.cast::<Object<T>>()).value) };
    // SAFETY: `value` points to an initialised `T` dropped exactly once, here.
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
        value.drop_in_place()
    }));
    if let Err(payload) = dropped {
        // SAFETY: tp_dealloc runs with the GIL held.
        let gil = unsafe { Gil::assume() };
        Error::from_panic(payload).restore(gil);
        // SAFETY: an exception is set; a NULL object means "no object to name".
        unsafe { ffi::PyErr_WriteUnraisable(core::ptr::null_mut()) };
    }
    // SAFETY: every type has a tp_free after PyType_Ready.
    let free = unsafe { ffi::PyType_GetSlot(tp, ffi::Py_tp_free) };
    // SAFETY: the tp_free slot holds a `freefunc`.
    let free: ffi::freefunc = unsafe { core::mem::transmute::<*mut c_void, ffi::freefunc>(free) };
    // SAFETY: the instance was allocated by this type's tp_alloc and is dead.
    unsafe { free(obj.cast()) };
    // SAFETY: heap-type instances own a reference to their type (typeobj.rst, tp_dealloc).
    unsafe { super::unwind::decref(tp.cast()) };
}

/// A Rust value inside an `Object<T>` that holds Python references, so that its type takes
/// part in garbage collection (`Py_TPFLAGS_HAVE_GC` with [`tp_traverse`] and [`tp_clear`]).
pub trait Collectable {
    /// Calls `visit(obj, arg)` for every strong reference the value holds that the collector
    /// may see, and returns the first non-zero result (`tp_traverse`'s contract,
    /// `Doc/c-api/gcsupport.rst`).
    fn traverse(&self, visit: ffi::visitproc, arg: *mut c_void) -> core::ffi::c_int;

    /// Drops the references that may form a cycle; the object stays valid but unusable.
    fn clear(&self, gil: Gil<'_>);
}

/// `tp_traverse` of a type whose instances are `Object<T>`.
///
/// # Safety
///
/// The collector calls it on live, initialised instances of such a type.
pub unsafe extern "C" fn tp_traverse<T: Collectable>(
    obj: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> core::ffi::c_int {
    // SAFETY: a live, initialised `Object<T>` (caller). Traversal only reads fields and calls
    // `visit`; it does not panic, so it needs no panic boundary.
    unsafe { Object::<T>::value_of(obj) }.traverse(visit, arg)
}

/// `tp_traverse` of a type whose instances are `Object<T>` that also visits the instance's
/// type, as "heap-allocated types are expected to" (3.9+, `Doc/c-api/typeobj.rst`,
/// tp_traverse): each instance holds a reference to its type, which the collector must see to
/// collect a cycle through the type. [`ExportingType`](super::spec::ExportingType) and the
/// shipped GC types (View, HeldExport) register this one.
///
/// # Safety
///
/// The collector calls it on live, initialised instances of such a type.
pub unsafe extern "C" fn tp_traverse_with_type<T: Collectable>(
    obj: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> core::ffi::c_int {
    // SAFETY: `obj` is a live instance (caller); its type is a live heap type it references.
    let tp = unsafe { ffi::Py_TYPE(obj) };
    // SAFETY: `visit` is the collector's callback, called with a live object it may visit.
    let status = unsafe { visit(tp.cast(), arg) };
    if status != 0 {
        return status;
    }
    // SAFETY: forwarded from the caller.
    unsafe { tp_traverse::<T>(obj, visit, arg) }
}

/// `tp_clear` of a type whose instances are `Object<T>`.
///
/// # Safety
///
/// The collector calls it with the GIL held on live, initialised instances of such a type.
pub unsafe extern "C" fn tp_clear<T: Collectable>(obj: *mut ffi::PyObject) -> core::ffi::c_int {
    // SAFETY: the collector holds the GIL (caller).
    let gil = unsafe { Gil::assume() };
    // SAFETY: a live, initialised `Object<T>` (caller).
    let value = unsafe { Object::<T>::value_of(obj) };
    if let Err(payload) =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| value.clear(gil)))
    {
        Error::from_panic(payload).restore(gil);
        // SAFETY: an exception is set and `obj` is live; tp_clear reports no errors.
        unsafe { ffi::PyErr_WriteUnraisable(obj) };
    }
    0
}
