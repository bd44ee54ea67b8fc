//! One typed way to make an exporting type: [`ExportingType<T>`] builds the `PyType_Spec` of a
//! type whose instances hold a `T: BufferExporter`, with bufferkit's getbuffer, releasebuffer
//! and dealloc slots and the right basic size always in it, and hands back a [`TypeHandle<T>`]
//! that makes instances; [`bufferkit_module!`](crate::bufferkit_module) makes the module
//! around it. Methods and slots are typed by `T` ([`Method<T>`], [`Slot<T>`]), made by the
//! `bufferkit_method!`/`bufferkit_slot!` macros, so a shim made for one type cannot be
//! registered on another.
//!
//! Mirrors what CPython's `Modules/xxlimited.c` writes by hand: a slot table and a spec per
//! type, `PyType_FromModuleAndSpec` in `Py_mod_exec`, `PyModule_AddType`.
//!
//! ```
//! use bufferkit::ffi::spec::{Args, ExportingType};
//! use bufferkit::ffi::Result;
//! use bufferkit::{bufferkit_slot, BufferExporter, ExportCounter, Gil, Memory, SharedVec};
//!
//! pub struct Samples {
//!     data: SharedVec<f32>,
//! }
//!
//! // SAFETY: `SharedVec` changes its memory only under its lock, which refuses while
//! // exports are live.
//! unsafe impl BufferExporter for Samples {
//!     fn counter(&self) -> &ExportCounter {
//!         self.data.counter()
//!     }
//!     fn memory(&self) -> Option<Memory<'_>> {
//!         self.data.memory()
//!     }
//! }
//!
//! fn samples_new(_gil: Gil<'_>, args: Args<'_>) -> Result<Samples> {
//!     let [] = args.exactly("Samples")?;
//!     Ok(Samples { data: SharedVec::try_filled(4, 0.5, false)? })
//! }
//!
//! static SAMPLES: ExportingType<Samples> = ExportingType::new(c"demo.Samples")
//!     .doc(c"Four floats.")
//!     .slots(&[bufferkit_slot!(new, samples_new)]);
//!
//! fn demo_exec(gil: Gil<'_>, module: bufferkit::ffi::Borrowed<'_>) -> Result<()> {
//!     SAMPLES.add_to(gil, module).map(drop)
//! }
//!
//! bufferkit::bufferkit_module!(PyInit_demo: c"demo", c"A demo module.", demo_exec);
//! ```

use core::ffi::{c_int, c_void, CStr};
use core::marker::PhantomData;
use core::ptr;
use std::sync::Mutex;

use pyo3_ffi as ffi;

use super::error::{Error, Result};
use super::object::{
    dealloc, tp_clear, tp_traverse_with_type, Borrowed, Collectable, Object, Owned,
};
use super::slots::{getbuffer, releasebuffer};
use super::trampoline::This;
use crate::exporter::{BufferExporter, Gil};

/// A method of the type whose instances hold a `T`; made by
/// [`bufferkit_method!`](crate::bufferkit_method).
pub struct Method<T> {
    name: &'static CStr,
    meth: ffi::PyMethodDefPointer,
    flags: c_int,
    doc: &'static CStr,
    _for: PhantomData<fn(&T)>,
}

// SAFETY: a method is a name, a doc string and a function pointer, all immutable statics;
// `PyMethodDefPointer` is a union of function pointers, which are `Sync` (the union is not
// only because unions are not auto-`Sync`).
unsafe impl<T> Sync for Method<T> {}

impl<T> Method<T> {
    const fn of(
        name: &'static CStr,
        meth: ffi::PyMethodDefPointer,
        flags: c_int,
        doc: &'static CStr,
    ) -> Self {
        Self {
            name,
            meth,
            flags,
            doc,
            _for: PhantomData,
        }
    }

    /// A `METH_NOARGS` method; `f` only names `T`.
    ///
    /// # Safety
    ///
    /// `meth` has the `METH_NOARGS` signature and assumes that its receiver's instances are
    /// `Object<T>` (the shim `bufferkit_method!` makes does).
    #[doc(hidden)]
    pub const unsafe fn noargs<F>(
        _f: &F,
        name: &'static CStr,
        meth: ffi::PyMethodDefPointer,
        doc: &'static CStr,
    ) -> Self
    where
        F: for<'py> Fn(This<'py, T>) -> Result<Owned>,
    {
        Self::of(name, meth, ffi::METH_NOARGS, doc)
    }

    /// A `METH_O` method; `f` only names `T`.
    ///
    /// # Safety
    ///
    /// As for [`noargs`](Self::noargs), with the `METH_O` signature.
    #[doc(hidden)]
    pub const unsafe fn onearg<F>(
        _f: &F,
        name: &'static CStr,
        meth: ffi::PyMethodDefPointer,
        doc: &'static CStr,
    ) -> Self
    where
        F: for<'py> Fn(This<'py, T>, Borrowed<'py>) -> Result<Owned>,
    {
        Self::of(name, meth, ffi::METH_O, doc)
    }

    /// A `METH_VARARGS | METH_KEYWORDS` method; `f` only names `T`.
    ///
    /// # Safety
    ///
    /// As for [`noargs`](Self::noargs), with that signature.
    #[doc(hidden)]
    pub const unsafe fn varkw<F>(
        _f: &F,
        name: &'static CStr,
        meth: ffi::PyMethodDefPointer,
        doc: &'static CStr,
    ) -> Self
    where
        F: for<'py> Fn(This<'py, T>, Borrowed<'py>, Option<Borrowed<'py>>) -> Result<Owned>,
    {
        Self::of(name, meth, ffi::METH_VARARGS | ffi::METH_KEYWORDS, doc)
    }

    fn def(&self) -> ffi::PyMethodDef {
        ffi::PyMethodDef {
            ml_name: self.name.as_ptr(),
            ml_meth: self.meth,
            ml_flags: self.flags,
            ml_doc: self.doc.as_ptr(),
        }
    }
}

/// A type slot of the type whose instances hold a `T`; made by
/// [`bufferkit_slot!`](crate::bufferkit_slot).
pub struct Slot<T> {
    kind: SlotKind,
    _for: PhantomData<fn(&T)>,
}

#[derive(Clone, Copy)]
enum SlotKind {
    New(ffi::newfunc),
    Length(ffi::lenfunc),
    Repr(ffi::reprfunc),
}

impl SlotKind {
    fn id_and_pointer(self) -> (c_int, *mut c_void, &'static str) {
        match self {
            Self::New(f) => (ffi::Py_tp_new, f as *mut c_void, "new"),
            Self::Length(f) => (ffi::Py_mp_length, f as *mut c_void, "len"),
            Self::Repr(f) => (ffi::Py_tp_repr, f as *mut c_void, "repr"),
        }
    }
}

impl<T> Slot<T> {
    const fn of(kind: SlotKind) -> Self {
        Self {
            kind,
            _for: PhantomData,
        }
    }

    /// `tp_new`; `f` only names `T`.
    ///
    /// # Safety
    ///
    /// `shim` makes instances whose layout is `Object<T>` of the type it is given.
    #[doc(hidden)]
    pub const unsafe fn new<F>(_f: &F, shim: ffi::newfunc) -> Self
    where
        F: for<'py> Fn(Gil<'py>, Args<'py>) -> Result<T>,
    {
        Self::of(SlotKind::New(shim))
    }

    /// `mp_length`; `f` only names `T`.
    ///
    /// # Safety
    ///
    /// `shim` assumes that its argument's instances are `Object<T>`.
    #[doc(hidden)]
    pub const unsafe fn len<F>(_f: &F, shim: ffi::lenfunc) -> Self
    where
        F: for<'py> Fn(This<'py, T>) -> Result<isize>,
    {
        Self::of(SlotKind::Length(shim))
    }

    /// `tp_repr`; `f` only names `T`.
    ///
    /// # Safety
    ///
    /// As for [`len`](Self::len).
    #[doc(hidden)]
    pub const unsafe fn repr<F>(_f: &F, shim: ffi::reprfunc) -> Self
    where
        F: for<'py> Fn(This<'py, T>) -> Result<Owned>,
    {
        Self::of(SlotKind::Repr(shim))
    }
}

/// The receiver of a method of an `ExportingType<T>`, and the call of `f` with it.
///
/// # Safety
///
/// The GIL is held for `'py` and `slf` is a live instance of an `ExportingType<T>` (or a
/// subclass).
#[doc(hidden)]
#[inline(always)]
pub unsafe fn call_noargs<'py, T: 'py, R>(
    gil: Gil<'py>,
    slf: *mut ffi::PyObject,
    f: impl FnOnce(This<'py, T>) -> Result<R>,
) -> Result<R> {
    // SAFETY: forwarded from the caller.
    f(unsafe { super::trampoline::this::<T>(gil, slf) }?)
}

/// As [`call_noargs`], for a method taking one argument.
///
/// # Safety
///
/// As for [`call_noargs`]; `arg` is a live argument borrowed for `'py`.
#[doc(hidden)]
#[inline(always)]
pub unsafe fn call_onearg<'py, T: 'py>(
    gil: Gil<'py>,
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    f: impl FnOnce(This<'py, T>, Borrowed<'py>) -> Result<Owned>,
) -> Result<Owned> {
    // SAFETY: forwarded from the caller.
    let arg = unsafe { Borrowed::from_ptr(arg) }.ok_or(Error::Raised)?;
    // SAFETY: forwarded from the caller.
    f(unsafe { super::trampoline::this::<T>(gil, slf) }?, arg)
}

/// As [`call_noargs`], for a method taking `*args, **kwargs`.
///
/// # Safety
///
/// As for [`call_noargs`]; `args` is a tuple and `kwargs` NULL or a dict, borrowed for `'py`.
#[doc(hidden)]
#[inline(always)]
pub unsafe fn call_varkw<'py, T: 'py>(
    gil: Gil<'py>,
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
    f: impl FnOnce(This<'py, T>, Borrowed<'py>, Option<Borrowed<'py>>) -> Result<Owned>,
) -> Result<Owned> {
    // SAFETY: forwarded from the caller.
    let args = unsafe { Borrowed::from_ptr(args) }.ok_or(Error::Raised)?;
    // SAFETY: forwarded from the caller.
    let kwargs = unsafe { Borrowed::from_ptr(kwargs) };
    // SAFETY: forwarded from the caller.
    f(
        unsafe { super::trampoline::this::<T>(gil, slf) }?,
        args,
        kwargs,
    )
}

/// `mp_length`'s body.
///
/// # Safety
///
/// As for [`call_noargs`].
#[doc(hidden)]
#[inline(always)]
pub unsafe fn call_len<'py, T: 'py>(
    gil: Gil<'py>,
    slf: *mut ffi::PyObject,
    f: impl FnOnce(This<'py, T>) -> Result<isize>,
) -> Result<isize> {
    // SAFETY: forwarded from the caller.
    unsafe { call_noargs(gil, slf, f) }
}

/// `tp_new`'s body for `T`: `make(gil, args)` and a new instance of `subtype` holding it.
///
/// # Safety
///
/// Called from a `tp_new` registered on an [`ExportingType<T>`] with the GIL held: `subtype`
/// is that type or a subclass (CPython checks it, `tp_new_wrapper`), `args` a tuple and
/// `kwargs` NULL or a dict.
#[doc(hidden)]
pub unsafe fn call_new<'py, T: 'static>(
    gil: Gil<'py>,
    subtype: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
    make: impl FnOnce(Gil<'py>, Args<'py>) -> Result<T>,
) -> Result<Owned> {
    // SAFETY: forwarded from the caller: live objects borrowed for the call.
    let args = unsafe { Borrowed::from_ptr(args) }.ok_or(Error::Raised)?;
    // SAFETY: as above.
    let kwargs = unsafe { Borrowed::from_ptr(kwargs) };
    // SAFETY: as above: `args` a tuple, `kwargs` a dict.
    let value = make(gil, unsafe { Args::from_raw(args, kwargs) })?;
    // SAFETY: `subtype` is a type made by `ExportingType<T>` or a subclass of it, whose
    // instances are `Object<T>` (caller); the GIL is held.
    unsafe { Object::create(gil, subtype, value) }
}

/// The positional and keyword arguments of a call (`tp_new`'s `args` and `kwargs`).
#[derive(Clone, Copy)]
pub struct Args<'py> {
    args: Borrowed<'py>,
    kwargs: Option<Borrowed<'py>>,
}

impl<'py> Args<'py> {
    /// # Safety
    ///
    /// `args` is a tuple and `kwargs` a dict, both borrowed for `'py` with the GIL held.
    #[doc(hidden)]
    pub unsafe fn from_raw(args: Borrowed<'py>, kwargs: Option<Borrowed<'py>>) -> Self {
        Self { args, kwargs }
    }

    /// Exactly `N` positional arguments and no keyword arguments, as CPython's own
    /// constructors say it: `"Waveform() takes exactly 1 argument (2 given)"`.
    pub fn exactly<const N: usize>(&self, callee: &str) -> Result<[Borrowed<'py>; N]> {
        if let Some(kwargs) = self.kwargs {
            // SAFETY: `kwargs` is a live dict and the GIL is held (contract of `from_raw`).
            if unsafe { ffi::PyDict_Size(kwargs.as_ptr()) } != 0 {
                return Err(Error::type_error(format!(
                    "{callee}() takes no keyword arguments"
                )));
            }
        }
        // SAFETY: `args` is a live tuple and the GIL is held (contract of `from_raw`).
        let given = unsafe { ffi::PyTuple_Size(self.args.as_ptr()) };
        if given != N as ffi::Py_ssize_t {
            let s = if N == 1 { "" } else { "s" };
            return Err(Error::type_error(format!(
                "{callee}() takes exactly {N} argument{s} ({given} given)"
            )));
        }
        let mut items = [self.args; N];
        for (i, item) in items.iter_mut().enumerate() {
            // SAFETY: `i < N == len(args)`; PyTuple_GetItem returns a borrowed reference the
            // tuple keeps alive for `'py` (the caller's borrow of `args`).
            let got = unsafe { ffi::PyTuple_GetItem(self.args.as_ptr(), i as ffi::Py_ssize_t) };
            // SAFETY: as above: a live item borrowed for `'py`, or NULL with an error.
            *item = unsafe { Borrowed::from_ptr(got) }.ok_or(Error::Raised)?;
        }
        Ok(items)
    }
}

/// What the value of an [`ExportingType`]'s instances must be to be reached from several
/// threads: on free-threaded builds (`Py_GIL_DISABLED`) `Send + Sync`, since an object's
/// methods, slots and exports run on many threads at once there, a [`Gil`] token orders
/// nothing, and the value is dropped on whichever thread lets go of the object last. With the
/// GIL, which orders every call that reaches the value, any `T` (as before this bound).
pub trait ThreadShared: thread_shared::Bound {}
impl<T: thread_shared::Bound + ?Sized> ThreadShared for T {}

/// The build's bound behind [`ThreadShared`] (sealed: nothing outside names it).
mod thread_shared {
    #[cfg(Py_GIL_DISABLED)]
    pub trait Bound: Send + Sync {}
    #[cfg(Py_GIL_DISABLED)]
    impl<T: Send + Sync + ?Sized> Bound for T {}
    #[cfg(not(Py_GIL_DISABLED))]
    pub trait Bound {}
    #[cfg(not(Py_GIL_DISABLED))]
    impl<T: ?Sized> Bound for T {}
}

/// The description of a heap type whose instances hold a `T` and export its memory; a `const`
/// builder, so it lives in a `static`.
///
/// The buffer slots, `tp_dealloc` and `basicsize` are always bufferkit's (there is no way to
/// leave one out or give another); [`make_type`](Self::make_type) refuses, with a
/// `SystemError` naming the slot, a table that sets one slot twice. It remembers the types it
/// made, so it also makes instances ([`create`](Self::create)) and recognises them
/// ([`downcast`](Self::downcast)).
pub struct ExportingType<T: 'static> {
    name: &'static CStr,
    doc: Option<&'static CStr>,
    methods: &'static [Method<T>],
    slots: &'static [Slot<T>],
    subclassable: bool,
    gc: Option<(ffi::traverseproc, ffi::inquiry)>,
    // INVARIANTS: every entry is `(interpreter, type)`: a type this description made in that
    // interpreter, whose instances are `Object<T>`, kept alive by a reference never given back.
    made: Mutex<Vec<(usize, usize)>>,
    _for: PhantomData<fn(T) -> T>,
}

impl<T: BufferExporter + ThreadShared + 'static> ExportingType<T> {
    /// A type named `name` (`"module.Type"`, as `PyType_Spec.name`), with no methods.
    pub const fn new(name: &'static CStr) -> Self {
        Self {
            name,
            doc: None,
            methods: &[],
            slots: &[],
            subclassable: false,
            gc: None,
            made: Mutex::new(Vec::new()),
            _for: PhantomData,
        }
    }

    /// The docstring (`tp_doc`); a first line `Type(n)\n--\n\n` is its text signature.
    pub const fn doc(mut self, doc: &'static CStr) -> Self {
        self.doc = Some(doc);
        self
    }

    /// The methods.
    pub const fn methods(mut self, methods: &'static [Method<T>]) -> Self {
        self.methods = methods;
        self
    }

    /// The other slots (`tp_new`, `mp_length`, `tp_repr`). Without a `new` slot, instances
    /// come from Rust only ([`create`](Self::create)) and `Type()` raises
    /// `TypeError("cannot create 'Type' instances")`.
    pub const fn slots(mut self, slots: &'static [Slot<T>]) -> Self {
        self.slots = slots;
        self
    }

    /// Python classes may subclass it (`Py_TPFLAGS_BASETYPE`).
    pub const fn subclassable(mut self) -> Self {
        self.subclassable = true;
        self
    }

    /// Makes the type (`PyType_FromModuleAndSpec`), associated with `module` if given.
    ///
    /// The method table lives as long as the type and CPython keeps a pointer to it, so it
    /// is allocated once per call and never freed; so is one reference to the type, by which
    /// this description remembers it ([`create`](Self::create), [`downcast`](Self::downcast)):
    /// a small block and a type per module execution.
    pub fn make_type(&self, gil: Gil<'_>, module: Option<Borrowed<'_>>) -> Result<TypeHandle<T>> {
        let mut slots = vec![
            slot(
                ffi::Py_bf_getbuffer,
                getbuffer::<T> as ffi::getbufferproc as *mut c_void,
            ),
            slot(
                ffi::Py_bf_releasebuffer,
                releasebuffer::<T> as ffi::releasebufferproc as *mut c_void,
            ),
            slot(
                ffi::Py_tp_dealloc,
                dealloc::<T> as ffi::destructor as *mut c_void,
            ),
        ];
        let mut seen: Vec<&str> = Vec::new();
        for s in self.slots {
            let (id, pointer, what) = s.kind.id_and_pointer();
            if seen.contains(&what) {
                return Err(Error::system_error(format!(
                    "{}: slot '{what}' is given twice",
                    self.name.to_string_lossy()
                )));
            }
            seen.push(what);
            slots.push(slot(id, pointer));
        }
        if !seen.contains(&"new") {
            // Without one, `tp_new` would be object's, and `Type()` from Python would make an
            // instance whose `T` was never written (zeroed memory read as a `T`).
            slots.push(slot(ffi::Py_tp_new, no_new as ffi::newfunc as *mut c_void));
        }
        if let Some(doc) = self.doc {
            // CPython copies the docstring into the type.
            slots.push(slot(ffi::Py_tp_doc, doc.as_ptr().cast_mut().cast()));
        }
        if !self.methods.is_empty() {
            let mut defs: Vec<ffi::PyMethodDef> = self.methods.iter().map(Method::def).collect();
            defs.push(ffi::PyMethodDef::zeroed());
            // The type keeps this pointer for its life: leaked on purpose (see above).
            let defs: &'static mut [ffi::PyMethodDef] = defs.leak();
            slots.push(slot(ffi::Py_tp_methods, defs.as_mut_ptr().cast()));
        }
        let mut flags = ffi::Py_TPFLAGS_DEFAULT;
        if self.subclassable {
            flags |= ffi::Py_TPFLAGS_BASETYPE;
        }
        if let Some((traverse, clear)) = self.gc {
            flags |= ffi::Py_TPFLAGS_HAVE_GC;
            slots.push(slot(ffi::Py_tp_traverse, traverse as *mut c_void));
            slots.push(slot(ffi::Py_tp_clear, clear as *mut c_void));
        }
        slots.push(super::object::type_token_slot::<T>());
        slots.push(slot(0, ptr::null_mut()));
        let mut spec = ffi::PyType_Spec {
            name: self.name.as_ptr(),
            basicsize: Object::<T>::BASICSIZE,
            itemsize: 0,
            flags: flags as _,
            slots: slots.as_mut_ptr(),
        };
        let module = module.map_or(ptr::null_mut(), Borrowed::as_ptr);
        // SAFETY: the GIL is held (`gil`); `spec` and `slots` are read during the call only,
        // except the name, the method table (static or leaked above) and the docstring
        // (copied), which outlive the type; `module` is NULL or a live module.
        let tp = unsafe {
            Owned::from_new(ffi::PyType_FromModuleAndSpec(
                module,
                &mut spec,
                ptr::null_mut(),
            ))
        }?;
        // The reference the registry keeps, never given back: the entry stays valid.
        core::mem::forget(Owned::from_borrowed(tp.borrow()));
        self.registry()
            .push((interpreter(gil), tp.as_ptr() as usize));
        Ok(TypeHandle {
            tp,
            _for: PhantomData,
        })
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Vec<(usize, usize)>> {
        // A panic while the lock was held left the list as valid as before (pushes only).
        self.made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new instance holding `value`, of the type this description made last in the
    /// current interpreter (by [`add_to`](Self::add_to) or [`make_type`](Self::make_type));
    /// a `SystemError` if it made none here.
    pub fn create(&self, gil: Gil<'_>, value: T) -> Result<Owned> {
        let here = interpreter(gil);
        let made = self
            .registry()
            .iter()
            .rev()
            .find(|e| e.0 == here)
            .map(|e| e.1);
        let Some(tp) = made else {
            return Err(Error::system_error(format!(
                "{}: the type was not made in this interpreter (its module was not executed)",
                self.name.to_string_lossy()
            )));
        };
        // SAFETY: a type this description made, kept alive by the registry, whose instances
        // are `Object<T>` (invariant); the GIL is held.
        unsafe { Object::create(gil, tp as *mut ffi::PyTypeObject, value) }
    }

    /// The `T` inside `obj`, if `obj` is an instance of a type this description made (or of
    /// a subclass of one): the typed way to take an argument of this type.
    pub fn downcast<'py>(&self, obj: Borrowed<'py>) -> Option<&'py T> {
        let tp = obj.type_ptr();
        // SAFETY: `tp` is `obj`'s live type and each entry a live type (invariant); the GIL
        // is held (`Borrowed`); PyType_IsSubtype only reads the types' MROs.
        let ours = self
            .registry()
            .iter()
            .any(|e| unsafe { ffi::PyType_IsSubtype(tp, e.1 as *mut ffi::PyTypeObject) } != 0);
        // SAFETY: an instance of a type made here, or of a subclass: its layout is
        // `Object<T>` (invariant), initialised by `Object::create`, alive for 'py.
        ours.then(|| unsafe { Object::<T>::value_of(obj.as_ptr()) })
    }

    /// [`make_type`](Self::make_type) with `module`, then adds the type to it under its short name
    /// (`PyModule_AddType`).
    pub fn add_to(&self, gil: Gil<'_>, module: Borrowed<'_>) -> Result<TypeHandle<T>> {
        let handle = self.make_type(gil, Some(module))?;
        // SAFETY: the GIL is held; `module` is a live module and the type a live type, of
        // which PyModule_AddType takes its own reference.
        let status = unsafe { ffi::PyModule_AddType(module.as_ptr(), handle.as_type_ptr()) };
        super::error::check_status(status)?;
        Ok(handle)
    }
}

impl<T: BufferExporter + Collectable + ThreadShared + 'static> ExportingType<T> {
    /// Instances take part in garbage collection (`Py_TPFLAGS_HAVE_GC`, with bufferkit's
    /// `tp_traverse`, which visits the instance's type and then calls `T`'s [`Collectable`]
    /// method, and `tp_clear`).
    pub const fn collectable(mut self) -> Self {
        self.gc = Some((tp_traverse_with_type::<T>, tp_clear::<T>));
        self
    }
}

/// `tp_new` of a type given no `new` slot: instances come from Rust only
/// ([`ExportingType::create`]); `Type()` raises `TypeError`, as for CPython's types that
/// disallow instantiation.
///
/// # Safety
///
/// CPython calls it as `tp_new`, with the GIL held and `subtype` a live type.
unsafe extern "C" fn no_new(
    subtype: *mut ffi::PyTypeObject,
    _args: *mut ffi::PyObject,
    _kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the GIL is held (caller).
    unsafe {
        super::trampoline::object_result(|_gil| {
            // SAFETY: `subtype` is a live type and the GIL is held (caller).
            let name = super::object::type_name(subtype);
            Err(Error::type_error(format!(
                "cannot create '{name}' instances"
            )))
        })
    }
}

/// The current interpreter, as a number that tells interpreters apart.
fn interpreter(_gil: Gil<'_>) -> usize {
    #[cfg(not(PyPy))]
    {
        // SAFETY: the GIL is held (`_gil`): the thread has a current interpreter.
        unsafe { ffi::PyInterpreterState_Get() as usize }
    }
    #[cfg(PyPy)]
    {
        0
    }
}

fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}

/// A type made by [`ExportingType<T>`]: makes instances holding a `T`.
pub struct TypeHandle<T> {
    // INVARIANTS: a type made by `ExportingType<T>::make_type`: its instances are `Object<T>`.
    tp: Owned,
    _for: PhantomData<fn(T) -> T>,
}

impl<T: BufferExporter + ThreadShared + 'static> TypeHandle<T> {
    /// A new instance holding `value`.
    pub fn create(&self, gil: Gil<'_>, value: T) -> Result<Owned> {
        // SAFETY: the type's instances are `Object<T>` (invariant); the GIL is held.
        unsafe { Object::create(gil, self.as_type_ptr(), value) }
    }

    /// The type object (borrowed from the handle).
    pub fn as_type_ptr(&self) -> *mut ffi::PyTypeObject {
        self.tp.as_ptr().cast()
    }

    /// The type object, as an owned reference.
    pub fn into_owned(self) -> Owned {
        self.tp
    }
}

/// A module definition (`PyModuleDef`) in a `static`, for
/// [`bufferkit_module!`](crate::bufferkit_module).
#[doc(hidden)]
#[cfg(not(abi3t))]
pub struct ModuleDef {
    // CPython writes the definition's header in `PyModuleDef_Init`, hence the cell.
    def: core::cell::UnsafeCell<ffi::PyModuleDef>,
}

/// The module's slot table, in a `static`, for [`bufferkit_module!`](crate::bufferkit_module).
#[doc(hidden)]
#[cfg(not(abi3t))]
pub struct ModuleSlots(pub [ffi::PyModuleDef_Slot; 2]);

// SAFETY: the table is immutable: CPython only reads it.
#[cfg(not(abi3t))]
unsafe impl Sync for ModuleSlots {}
// SAFETY: CPython writes the definition only in `PyModuleDef_Init`, which the import
// machinery calls with the GIL held (and the import lock), so no two threads do it at once;
// everything else reads it.
#[cfg(not(abi3t))]
unsafe impl Sync for ModuleDef {}

#[cfg(not(abi3t))]
impl ModuleSlots {
    /// The table with one `Py_mod_exec` slot.
    pub const fn new(exec: unsafe extern "C" fn(*mut ffi::PyObject) -> c_int) -> Self {
        Self([
            ffi::PyModuleDef_Slot {
                slot: ffi::Py_mod_exec,
                value: exec as *mut c_void,
            },
            ffi::PyModuleDef_Slot {
                slot: 0,
                value: ptr::null_mut(),
            },
        ])
    }
}

#[cfg(not(abi3t))]
impl ModuleDef {
    /// The definition of module `name` with `slots` (a `static`).
    pub const fn new(name: &'static CStr, doc: &'static CStr, slots: &'static ModuleSlots) -> Self {
        Self {
            def: core::cell::UnsafeCell::new(ffi::PyModuleDef {
                m_base: ffi::PyModuleDef_HEAD_INIT,
                m_name: name.as_ptr(),
                m_doc: doc.as_ptr(),
                m_size: 0,
                m_methods: ptr::null_mut(),
                m_slots: ptr::addr_of!(slots.0).cast_mut().cast(),
                m_traverse: None,
                m_clear: None,
                m_free: None,
            }),
        }
    }

    /// `PyModuleDef_Init`: what `PyInit_<name>` returns.
    ///
    /// # Safety
    ///
    /// Called from the module's `PyInit_` function, by the import machinery, with the GIL
    /// held.
    pub unsafe fn init(&'static self) -> *mut ffi::PyObject {
        // SAFETY: the definition lives for the program; the GIL is held (caller), and only
        // this call writes to it.
        unsafe { ffi::PyModuleDef_Init(self.def.get()) }
    }
}

/// `Py_mod_exec`'s body: runs `exec` inside the panic boundary.
///
/// # Safety
///
/// Called by CPython as `Py_mod_exec` with the GIL held and `module` the new module.
#[doc(hidden)]
pub unsafe fn run_exec(
    module: *mut ffi::PyObject,
    exec: impl FnOnce(Gil<'_>, Borrowed<'_>) -> Result<()>,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        super::trampoline::int_result(|gil| {
            let module = Borrowed::from_ptr(module).ok_or(Error::Raised)?;
            exec(gil, module).map(|()| 0)
        })
    }
}

/// Defines the module's entry point `PyInit_<name>`: a multi-phase-init module (PEP 489)
/// named `$name` whose `Py_mod_exec` runs `$exec`, a
/// `fn(Gil<'_>, Borrowed<'_>) -> Result<()>`, inside bufferkit's panic boundary.
///
/// ```ignore
/// bufferkit::bufferkit_module!(PyInit_waveform: c"waveform", c"The doc.", waveform_exec);
/// ```
#[cfg(not(abi3t))]
#[macro_export]
macro_rules! bufferkit_module {
    ($init:ident: $name:expr, $doc:expr, $exec:expr) => {
        /// The module's entry point (multi-phase initialisation, PEP 489).
        ///
        /// # Safety
        ///
        /// Called by the import machinery with the GIL held.
        #[no_mangle]
        pub unsafe extern "C" fn $init() -> *mut $crate::pyo3_ffi::PyObject {
            unsafe extern "C" fn exec(module: *mut $crate::pyo3_ffi::PyObject) -> core::ffi::c_int {
                // SAFETY: CPython runs Py_mod_exec with the GIL held on the new module.
                unsafe { $crate::ffi::spec::run_exec(module, $exec) }
            }
            static SLOTS: $crate::ffi::spec::ModuleSlots =
                $crate::ffi::spec::ModuleSlots::new(exec);
            static DEF: $crate::ffi::spec::ModuleDef =
                $crate::ffi::spec::ModuleDef::new($name, $doc, &SLOTS);
            // SAFETY: called by the import machinery with the GIL held (this function's
            // contract).
            unsafe { DEF.init() }
        }
    };
}

/// Not available in the `abi3t` build: `PyModuleDef` is opaque there and the entry point is
/// `PyModExport_<name>` returning a slot array (PEP 793), which this macro's `PyInit_<name>`
/// argument cannot name. The shipped module does it by hand (`PyModExport__bufferkit`).
#[cfg(abi3t)]
#[macro_export]
macro_rules! bufferkit_module {
    ($($any:tt)*) => {
        compile_error!("bufferkit_module! is not available in the abi3t build (PEP 793: export PyModExport_<name> instead)");
    };
}

/// A method of an [`ExportingType<T>`](crate::ffi::spec::ExportingType):
/// `bufferkit_method!(kind, c"name", f, c"doc")`, `kind` one of
///
/// | kind | Python call | `f` |
/// |---|---|---|
/// | `noargs` | `obj.name()` | `fn(This<T>) -> Result<Owned>` |
/// | `onearg` | `obj.name(x)` | `fn(This<T>, Borrowed) -> Result<Owned>` |
/// | `varkw` | `obj.name(*args, **kwargs)` | `fn(This<T>, Borrowed, Option<Borrowed>) -> Result<Owned>` |
///
/// `T` is read from `f`'s receiver, so the method cannot be registered on another type. `f`
/// runs inside bufferkit's panic boundary: an `Err` becomes the exception, a panic a
/// `SystemError`.
#[macro_export]
macro_rules! bufferkit_method {
    (noargs, $name:expr, $f:expr, $doc:expr) => {
        const {
            unsafe extern "C" fn shim(
                slf: *mut $crate::pyo3_ffi::PyObject,
                _: *mut $crate::pyo3_ffi::PyObject,
            ) -> *mut $crate::pyo3_ffi::PyObject {
                // SAFETY: CPython calls a method with the GIL held and `slf` an instance of the
                // type it is defined on: an `ExportingType<T>` for the `T` of `$f`'s receiver.
                unsafe {
                    $crate::ffi::trampoline::object_result(|gil| {
                        $crate::ffi::spec::call_noargs(gil, slf, $f)
                    })
                }
            }
            let meth = $crate::pyo3_ffi::PyMethodDefPointer { PyCFunction: shim };
            // SAFETY: `shim` has the METH_NOARGS signature and serves the `T` of `$f`.
            unsafe { $crate::ffi::spec::Method::noargs(&$f, $name, meth, $doc) }
        }
    };
    (onearg, $name:expr, $f:expr, $doc:expr) => {
        const {
            unsafe extern "C" fn shim(
                slf: *mut $crate::pyo3_ffi::PyObject,
                arg: *mut $crate::pyo3_ffi::PyObject,
            ) -> *mut $crate::pyo3_ffi::PyObject {
                // SAFETY: as for `noargs`; `arg` is a live argument borrowed for the call.
                unsafe {
                    $crate::ffi::trampoline::object_result(|gil| {
                        $crate::ffi::spec::call_onearg(gil, slf, arg, $f)
                    })
                }
            }
            let meth = $crate::pyo3_ffi::PyMethodDefPointer { PyCFunction: shim };
            // SAFETY: `shim` has the METH_O signature and serves the `T` of `$f`.
            unsafe { $crate::ffi::spec::Method::onearg(&$f, $name, meth, $doc) }
        }
    };
    (varkw, $name:expr, $f:expr, $doc:expr) => {
        const {
            unsafe extern "C" fn shim(
                slf: *mut $crate::pyo3_ffi::PyObject,
                args: *mut $crate::pyo3_ffi::PyObject,
                kwargs: *mut $crate::pyo3_ffi::PyObject,
            ) -> *mut $crate::pyo3_ffi::PyObject {
                // SAFETY: as for `noargs`; `args` is a tuple and `kwargs` NULL or a dict,
                // borrowed for the call.
                unsafe {
                    $crate::ffi::trampoline::object_result(|gil| {
                        $crate::ffi::spec::call_varkw(gil, slf, args, kwargs, $f)
                    })
                }
            }
            let meth = $crate::pyo3_ffi::PyMethodDefPointer {
                PyCFunctionWithKeywords: shim,
            };
            // SAFETY: `shim` has the METH_VARARGS | METH_KEYWORDS signature and serves the `T`
            // of `$f`.
            unsafe { $crate::ffi::spec::Method::varkw(&$f, $name, meth, $doc) }
        }
    };
}

/// A slot of an [`ExportingType<T>`](crate::ffi::spec::ExportingType); `T` is read from `f`:
///
/// | `bufferkit_slot!(kind, f)` | slot | `f` |
/// |---|---|---|
/// | `new` | `tp_new`: `T(...)` | `fn(Gil, Args) -> Result<T>` |
/// | `len` | `mp_length`: `len(obj)` | `fn(This<T>) -> Result<isize>` |
/// | `repr` | `tp_repr`: `repr(obj)` | `fn(This<T>) -> Result<Owned>` |
#[macro_export]
macro_rules! bufferkit_slot {
    (new, $f:expr) => {
        const {
            unsafe extern "C" fn shim(
                subtype: *mut $crate::pyo3_ffi::PyTypeObject,
                args: *mut $crate::pyo3_ffi::PyObject,
                kwargs: *mut $crate::pyo3_ffi::PyObject,
            ) -> *mut $crate::pyo3_ffi::PyObject {
                // SAFETY: CPython calls tp_new with the GIL held, `subtype` the type the slot is
                // on (an `ExportingType<T>` for the `T` `$f` makes) or a subclass, `args` a tuple
                // and `kwargs` NULL or a dict.
                unsafe {
                    $crate::ffi::trampoline::object_result(|gil| {
                        $crate::ffi::spec::call_new(gil, subtype, args, kwargs, $f)
                    })
                }
            }
            // SAFETY: `shim` makes `Object<T>` instances for the `T` `$f` makes.
            unsafe { $crate::ffi::spec::Slot::new(&$f, shim) }
        }
    };
    (len, $f:expr) => {
        const {
            unsafe extern "C" fn shim(slf: *mut $crate::pyo3_ffi::PyObject) -> isize {
                // SAFETY: CPython calls mp_length with the GIL held and `slf` an instance of the
                // type: an `ExportingType<T>` for the `T` of `$f`'s receiver.
                unsafe {
                    $crate::ffi::trampoline::int_result(|gil| {
                        $crate::ffi::spec::call_len(gil, slf, $f)
                    })
                }
            }
            // SAFETY: `shim` serves the `T` of `$f`.
            unsafe { $crate::ffi::spec::Slot::len(&$f, shim) }
        }
    };
    (repr, $f:expr) => {
        const {
            unsafe extern "C" fn shim(
                slf: *mut $crate::pyo3_ffi::PyObject,
            ) -> *mut $crate::pyo3_ffi::PyObject {
                // SAFETY: as for `len`.
                unsafe {
                    $crate::ffi::trampoline::object_result(|gil| {
                        $crate::ffi::spec::call_noargs(gil, slf, $f)
                    })
                }
            }
            // SAFETY: `shim` serves the `T` of `$f`.
            unsafe { $crate::ffi::spec::Slot::repr(&$f, shim) }
        }
    };
}
