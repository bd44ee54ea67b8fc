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
#[cfg(not(abi3t))]
#[repr(C)]
pub struct Object<T> {
    header: ffi::PyObject,
    value: T,
}

/// The layout of every bufferkit object under the stable ABI for free-threaded builds (PEP 803,
/// `abi3t`): `PyObject` is opaque there, so the value cannot follow a header of known size.
/// The type asks for `size_of::<T>()` bytes *beyond its base's* with a negative `basicsize`
/// (PEP 697), and CPython places them: [`abi3t::data_offset`] says where.
#[cfg(abi3t)]
pub struct Object<T>(PhantomData<T>);

impl<T> Object<T> {
    /// The `basicsize` of the type's `PyType_Spec`.
    #[cfg(not(abi3t))]
    pub const BASICSIZE: core::ffi::c_int = {
        assert!(core::mem::offset_of!(Self, header) == 0);
        // CPython's allocators align objects to two pointers (16 bytes on 64-bit targets);
        // `create` writes the value at its own alignment inside that.
        assert!(core::mem::align_of::<Self>() <= 2 * core::mem::size_of::<usize>());
        assert!(core::mem::size_of::<Self>() <= i32::MAX as usize);
        core::mem::size_of::<Self>() as core::ffi::c_int
    };

    /// The `basicsize` of the type's `PyType_Spec`: negative, "this many bytes beyond the
    /// base's" (PEP 697, `Doc/c-api/type.rst`, `PyType_Spec.basicsize`).
    #[cfg(abi3t)]
    pub const BASICSIZE: core::ffi::c_int = {
        // PyObject_GetTypeData's memory is aligned to `ALIGNOF_MAX_ALIGN_T` (16 on the 64-bit
        // targets bufferkit builds for), as CPython's allocators align objects.
        assert!(core::mem::align_of::<T>() <= 2 * core::mem::size_of::<usize>());
        assert!(core::mem::size_of::<T>() <= i32::MAX as usize);
        -(core::mem::size_of::<T>() as core::ffi::c_int)
    };

    /// Where the value of the instance `obj` is (initialised or not).
    ///
    /// # Safety
    ///
    /// `obj` is a live instance of a type whose instances are `Object<T>`.
    #[inline(always)]
    unsafe fn value_ptr(obj: *mut ffi::PyObject) -> *mut T {
        #[cfg(not(abi3t))]
        // SAFETY: per the contract, `obj` points to an `Object<T>`.
        return unsafe { core::ptr::addr_of_mut!((*obj.cast::<Self>()).value) };
        #[cfg(abi3t)]
        // SAFETY: every instance was made by `create`, which checked that its value is at
        // `data_offset()` (PyObject_GetTypeData), and the instance is at least that long.
        return unsafe { obj.byte_add(abi3t::data_offset()) }.cast::<T>();
    }

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
        // SAFETY: per the contract, `obj` is a live, initialised `Object<T>`.
        unsafe { &*Self::value_ptr(obj) }
    }

    /// A new instance of `tp` holding `value`.
    ///
    /// # Safety
    ///
    /// `tp` is a live heap type whose instances are `Object<T>` (see [`value_of`](Self::value_of)),
    /// and the GIL is held (`gil` stands for it). On free-threaded builds the value is reached
    /// from many threads at once and dropped on any: it must be `Send + Sync`, or the caller
    /// serialises every access ([`ExportingType`](super::spec::ExportingType) asks for
    /// [`ThreadShared`](super::spec::ThreadShared)).
    pub unsafe fn create(_gil: Gil<'_>, tp: *mut ffi::PyTypeObject, value: T) -> Result<Owned>
    where
        T: 'static,
    {
        // SAFETY: tp is a live heap type; PyType_GetSlot reads its tp_alloc (every type has
        // one after PyType_Ready: PyType_GenericAlloc unless overridden).
        let alloc = unsafe { ffi::PyType_GetSlot(tp, ffi::Py_tp_alloc) };
        if alloc.is_null() {
            return Err(Error::system_error("type has no tp_alloc"));
        }
        // SAFETY: `alloc` is tp's tp_alloc; tp_alloc(tp, 0) returns a zeroed instance of at least
        // tp_basicsize bytes with the header initialised, or NULL with an exception set.
        let obj = unsafe { Owned::from_new(super::unwind::alloc(alloc, tp)) }?;
        #[cfg(abi3t)]
        // SAFETY: `obj` is a new instance of `tp`, whose instances are `Object<T>` (caller).
        if let Err(e) = unsafe { abi3t::check_data_offset(obj.as_ptr(), tp) } {
            // No value was written: the instance is freed without `dealloc::<T>`, which would
            // drop a `T` that is not there.
            // SAFETY: `obj` is the only reference to a new instance of `tp` made by its
            // tp_alloc, holding no value; the GIL is held.
            unsafe { abi3t::free_without_value(obj.into_raw(), tp) };
            return Err(e);
        }
        // SAFETY: the instance is at least as long as the type's basic size says, which makes
        // room for a `T` where `value_ptr` points, suitably aligned (CPython's allocators
        // align to 16 and `T` is checked against that in BASICSIZE); the value is uninitialised
        // (zeroed) memory that nothing reads before this write.
        unsafe { Self::value_ptr(obj.as_ptr()).write(value) };
        Ok(obj)
    }
}

/// The type token of bufferkit's types (`Py_tp_token`, 3.14+): the address of one static,
/// shared by every type whose instances are an `Object<_>`. One address, defined once in this
/// crate, is unique in the process, which the address of a generic function is not (one
/// function may have several addresses across crates and codegen units). A type finds its
/// bufferkit base by it; every such base puts its value at the same offset ([`Object::create`]).
pub fn type_token<T: 'static>() -> *mut c_void {
    (&raw const TYPE_TOKEN).cast_mut().cast()
}

static TYPE_TOKEN: u8 = 0;

/// The `Py_tp_token` slot of a type whose instances are `Object<T>`, on builds that need it
/// (abi3t: [`Object::create`] finds the defining type of a subclass instance by it); on the
/// others a second end marker, so that slot tables have one length on every build (CPython
/// stops at the first).
pub const fn type_token_slot<T: 'static>() -> ffi::PyType_Slot {
    #[cfg(abi3t)]
    return ffi::PyType_Slot {
        slot: ffi::Py_tp_token,
        pfunc: (&raw const TYPE_TOKEN).cast_mut().cast(),
    };
    #[cfg(not(abi3t))]
    return ffi::PyType_Slot {
        slot: 0,
        pfunc: core::ptr::null_mut(),
    };
}

/// Where the value of an instance is under `abi3t`, where `PyObject` is opaque.
///
/// Every bufferkit type derives from `object` and reserves its value with a negative
/// `basicsize`, so `PyObject_GetTypeData(obj, defining_type)` puts the value at the same
/// distance from `obj` for every bufferkit type and instance: right after `object`'s instance
/// memory, at CPython's maximal alignment (PEP 697: the memory is reserved after the base's).
/// [`check_data_offset`] learns that distance from the first instance and holds every later
/// instance to it, through the documented call, so the hot paths (`value_of` in every export
/// and release) pay one addition instead of a type-token lookup and two calls.
#[cfg(abi3t)]
pub mod abi3t {
    use core::sync::atomic::{AtomicUsize, Ordering};

    use pyo3_ffi as ffi;

    use super::super::error::{Error, Result};

    // INVARIANTS: 0 until the first instance is made; then the distance from every instance
    // to its value, checked for each instance by `check_data_offset` before its value is
    // written (so it never changes once set).
    static DATA_OFFSET: AtomicUsize = AtomicUsize::new(0);

    /// The distance from an instance to its value.
    #[inline(always)]
    pub fn data_offset() -> usize {
        // Relaxed: the value is set once, before any instance it describes is published to
        // other threads (publishing an object synchronises).
        DATA_OFFSET.load(Ordering::Relaxed)
    }

    /// Checks, with `PyObject_GetTypeData` on the defining type (found by type token), that
    /// `obj`'s value is at [`data_offset`] (setting it for the first instance).
    ///
    /// # Safety
    ///
    /// `obj` is a new, live instance of `tp`, whose instances are `Object<T>`; the GIL is held
    /// (or, free-threaded, the thread is attached).
    pub unsafe fn check_data_offset(
        obj: *mut ffi::PyObject,
        tp: *mut ffi::PyTypeObject,
    ) -> Result<()> {
        let mut defining: *mut ffi::PyTypeObject = core::ptr::null_mut();
        // SAFETY: `tp` is live; on 1 `defining` is a new reference to the first class of
        // tp's MRO whose token is T's (the bufferkit type itself, or the base a Python
        // subclass derives from); on 0 nothing is set, on -1 an exception.
        let found =
            unsafe { ffi::PyType_GetBaseByToken(tp, super::type_token::<()>(), &mut defining) };
        if found < 0 {
            return Err(Error::Raised);
        }
        if found == 0 {
            return Err(Error::system_error(
                "bufferkit: the type has no bufferkit base with this value type (type token)",
            ));
        }
        // SAFETY: `obj` is an instance of `defining` (a class of its type's MRO), a type made
        // with a negative basicsize.
        let data = unsafe { ffi::PyObject_GetTypeData(obj, defining) };
        // SAFETY: our reference from PyType_GetBaseByToken; `tp`'s MRO keeps the type alive.
        unsafe { super::super::unwind::decref(defining.cast()) };
        let offset = (data as usize).wrapping_sub(obj as usize);
        // Checked before it can become the offset of every instance: a value where no data
        // is, or where no type's alignment (CPython's 16) holds, is never recorded.
        if data.is_null() || offset == 0 || !offset.is_multiple_of(16) {
            return Err(Error::system_error(format!(
                "bufferkit: PyObject_GetTypeData puts this instance's value at {data:p}, \
                 offset {offset} from the instance: not an aligned place after its header"
            )));
        }
        let known =
            match DATA_OFFSET.compare_exchange(0, offset, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => offset,
                Err(known) => known,
            };
        if offset != known {
            return Err(Error::system_error(format!(
                "bufferkit: PyObject_GetTypeData puts this instance's value at offset {offset}, \
                 not {known} as for every earlier one"
            )));
        }
        Ok(())
    }

    /// Frees a new instance of `tp` whose value was never written: untracked if the type is
    /// collected, then `tp_free`, then the instance's reference to its heap type, as `dealloc`
    /// does but without dropping a value.
    ///
    /// # Safety
    ///
    /// `obj` is the only reference to a new instance of `tp` made by `tp`'s `tp_alloc`, no
    /// value was written into it, and the GIL is held (or the thread attached).
    pub unsafe fn free_without_value(obj: *mut ffi::PyObject, tp: *mut ffi::PyTypeObject) {
        // SAFETY: tp is a live type.
        if unsafe { ffi::PyType_GetFlags(tp) } & ffi::Py_TPFLAGS_HAVE_GC != 0 {
            // SAFETY: obj is a GC object of this type (tp_alloc tracked it).
            unsafe { ffi::PyObject_GC_UnTrack(obj.cast()) };
        }
        // SAFETY: every type has a tp_free after PyType_Ready; the slot holds a `freefunc`.
        let free: ffi::freefunc = unsafe {
            core::mem::transmute::<*mut core::ffi::c_void, ffi::freefunc>(ffi::PyType_GetSlot(
                tp,
                ffi::Py_tp_free,
            ))
        };
        // SAFETY: allocated by tp's tp_alloc, unreferenced (caller).
        unsafe { free(obj.cast()) };
        // SAFETY: a heap-type instance owns a reference to its type (taken by tp_alloc).
        unsafe { super::super::unwind::decref(tp.cast()) };
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
    let value = unsafe { Object::<T>::value_ptr(obj) };
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
