//! The generic slots end to end, in an embedded interpreter: what an exporter whose
//! `BufferExporter::memory()` misbehaves gets, and that a refused export leaves nothing behind;
//! and a type made by `ExportingType` whose `SharedVec` is locked.
//!
//! The shipped types never return `None` from `memory()` nor panic in it, so their tests cannot
//! reach these paths; this exporter does on request. One `#[test]` starts the interpreter and
//! runs every part on its thread (the test harness runs tests on threads of its own).

use core::cell::Cell;
use core::ffi::{c_int, c_void};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};

use bufferkit::exporter::Busy;
use bufferkit::ffi::convert::{new_int, new_str};
use bufferkit::ffi::error::Pending;
use bufferkit::ffi::spec::ExportingType;
use bufferkit::ffi::{
    dealloc, getbuffer, releasebuffer, Borrowed, Collectable, Error, Kind, Object, Owned, Result,
    This,
};
use bufferkit::pyo3_ffi as ffi;
use bufferkit::{bufferkit_method, bufferkit_slot, BufferExporter, ExportCounter};
use bufferkit::{BufferView, Format, Gil, Layout, Memory, Order, SharedVec};

/// What `memory()` does next.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Serve,
    NoMemory,
    ShortBlock,
    Panic,
}

struct Faulty {
    data: Box<[Cell<u8>]>,
    layout: Layout,
    counter: ExportCounter,
    mode: Cell<Mode>,
}

// SAFETY: `data` is never freed, moved or resized while the object lives, and `layout` never
// changes; the bytes are `Cell`s, so consumers may write to them.
unsafe impl BufferExporter for Faulty {
    fn counter(&self) -> &ExportCounter {
        &self.counter
    }

    fn memory(&self) -> Option<Memory<'_>> {
        match self.mode.get() {
            Mode::Serve => Memory::new(
                NonNull::from(&*self.data).cast(),
                self.data.len(),
                &self.layout,
            ),
            Mode::NoMemory => None,
            // A block one byte too short for the layout: Memory::new refuses it.
            Mode::ShortBlock => Memory::new(
                NonNull::from(&*self.data).cast(),
                self.data.len() - 1,
                &self.layout,
            ),
            Mode::Panic => panic!("memory() was told to panic"),
        }
    }
}

/// Whether the pending exception is a `SystemError`, and its message, cleared; `None` if
/// nothing is pending.
///
/// # Safety
///
/// The GIL is held (`gil`).
unsafe fn take_error(gil: Gil<'_>) -> Option<(bool, String)> {
    // SAFETY: the GIL is held (caller).
    unsafe { take_error_of(gil, ffi::PyExc_SystemError) }
}

/// Whether the pending exception is an instance of `class`, and its message, cleared; `None`
/// if nothing is pending.
///
/// # Safety
///
/// The GIL is held (`gil`) and `class` is an exception class.
unsafe fn take_error_of(gil: Gil<'_>, class: *mut ffi::PyObject) -> Option<(bool, String)> {
    // SAFETY: the GIL is held (caller).
    unsafe {
        if ffi::PyErr_Occurred().is_null() {
            return None;
        }
        let matches = ffi::PyErr_ExceptionMatches(class) != 0;
        Some((matches, Pending::take(gil).message()))
    }
}

#[test]
fn embedded() {
    // SAFETY: this test is the only user of the interpreter it starts, and runs every part on
    // this thread with the GIL held (Py_Initialize takes it).
    unsafe {
        ffi::Py_Initialize();
        let gil = Gil::assume();
        a_missing_memory_and_a_panic_refuse_with_system_error(gil);
        a_locked_shared_vec_refuses_exports_and_says_why(gil);
        a_slot_given_twice_is_refused_at_type_creation(gil);
        a_collectable_value_in_a_cycle_is_collected(gil);
        buffer_views_hold_one_export_until_released(gil);
    }
}

/// # Safety
///
/// The GIL is held (`gil`) by the thread that initialised the interpreter.
unsafe fn a_missing_memory_and_a_panic_refuse_with_system_error(gil: Gil<'_>) {
    // SAFETY: every call below runs with the GIL held (caller) and follows the C-API rules
    // noted at each step.
    unsafe {
        let mut slots = [
            ffi::PyType_Slot {
                slot: ffi::Py_bf_getbuffer,
                pfunc: getbuffer::<Faulty> as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_bf_releasebuffer,
                pfunc: releasebuffer::<Faulty> as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_dealloc,
                pfunc: dealloc::<Faulty> as *mut c_void,
            },
            ffi::PyType_Slot {
                slot: 0,
                pfunc: ptr::null_mut(),
            },
        ];
        let mut spec = ffi::PyType_Spec {
            name: c"slots_test.Faulty".as_ptr(),
            basicsize: Object::<Faulty>::BASICSIZE,
            itemsize: 0,
            flags: ffi::Py_TPFLAGS_DEFAULT as _,
            slots: slots.as_mut_ptr(),
        };
        let tp = ffi::PyType_FromSpec(&mut spec).cast::<ffi::PyTypeObject>();
        assert!(!tp.is_null(), "{:?}", take_error(gil));

        let value = Faulty {
            data: (0..16).map(Cell::new).collect(),
            layout: Layout::contiguous(Format::bytes(), &[16], Order::C).unwrap(),
            counter: ExportCounter::new(false),
            mode: Cell::new(Mode::Serve),
        };
        let Ok(obj) = Object::create(gil, tp, value) else {
            panic!("no instance: {:?}", take_error(gil));
        };
        let obj = obj.into_raw();
        let this = Object::<Faulty>::value_of(obj);
        let mut view = core::mem::MaybeUninit::<ffi::Py_buffer>::uninit();
        let full = ffi::PyBUF_FULL_RO as c_int;

        // Served: the fast path, then given back.
        assert_eq!(
            ffi::PyObject_GetBuffer(obj, view.as_mut_ptr(), full),
            0,
            "{:?}",
            take_error(gil)
        );
        assert_eq!((*view.as_ptr()).len, 16);
        assert_eq!(*(*view.as_ptr()).buf.cast::<u8>().add(3), 3);
        assert_eq!(this.counter.count(), 1);
        ffi::PyBuffer_Release(view.as_mut_ptr());
        assert_eq!(this.counter.count(), 0);

        for (mode, want) in [
            (
                Mode::NoMemory,
                "Faulty has no memory to export (its BufferExporter::memory() returned None)",
            ),
            (
                Mode::ShortBlock,
                "Faulty has no memory to export: its BufferExporter::memory() returned None \
                 because its layout needs 16 bytes and the block it gave Memory::new has 15",
            ),
            (Mode::Panic, "memory() was told to panic"),
        ] {
            this.mode.set(mode);
            // A consumer's struct may hold anything: the refusal must clear `obj` itself.
            view.as_mut_ptr().write_bytes(0xAB, 1);
            assert_eq!(ffi::PyObject_GetBuffer(obj, view.as_mut_ptr(), full), -1);
            let (system, message) = take_error(gil).expect("an exception");
            assert!(system, "not a SystemError: {message}");
            assert!(message.contains(want), "{message}");
            assert!((*view.as_ptr()).obj.is_null());
            assert_eq!(this.counter.count(), 0, "a refused export is not counted");
        }

        // And it serves again once memory() does.
        this.mode.set(Mode::Serve);
        assert_eq!(
            ffi::PyObject_GetBuffer(obj, view.as_mut_ptr(), full),
            0,
            "{:?}",
            take_error(gil)
        );
        ffi::PyBuffer_Release(view.as_mut_ptr());

        ffi::Py_DecRef(obj);
        ffi::Py_DecRef(tp.cast());
        assert!(take_error(gil).is_none());
    }
}

/// An exporter made the typed way: a `SharedVec` and an `ExportingType`.
struct Locky {
    data: SharedVec<u8>,
}

// SAFETY: `SharedVec` changes its memory only under its lock, which refuses while exports live.
unsafe impl BufferExporter for Locky {
    fn counter(&self) -> &ExportCounter {
        self.data.counter()
    }
    fn memory(&self) -> Option<Memory<'_>> {
        self.data.memory()
    }
}

fn locky_len(this: This<'_, Locky>) -> Result<isize> {
    Ok(this.value.data.len() as isize)
}

/// `repr(obj)`: `Locky(<len>)`.
fn locky_repr(this: This<'_, Locky>) -> Result<Owned> {
    new_str(this.gil, &format!("Locky({})", this.value.data.len()))
}

/// `obj.count(*args, **kwargs)`: how many positional and keyword arguments it was given.
fn locky_count(
    _this: This<'_, Locky>,
    args: Borrowed<'_>,
    kwargs: Option<Borrowed<'_>>,
) -> Result<Owned> {
    // SAFETY: `args` is a live tuple and `kwargs` NULL or a live dict (the varkw shim), and
    // the GIL is held for the call.
    let (n, k) = unsafe {
        let k = kwargs.map_or(0, |kw| ffi::PyDict_Size(kw.as_ptr()));
        (ffi::PyTuple_Size(args.as_ptr()), k)
    };
    new_int(args.gil(), n * 10 + k)
}

static LOCKY: ExportingType<Locky> = ExportingType::new(c"slots_test.Locky")
    .slots(&[bufferkit_slot!(repr, locky_repr)])
    .methods(&[bufferkit_method!(
        varkw,
        c"count",
        locky_count,
        c"Counts its arguments."
    )]);

static TWICE: ExportingType<Locky> = ExportingType::new(c"slots_test.Twice").slots(&[
    bufferkit_slot!(len, locky_len),
    bufferkit_slot!(len, locky_len),
]);

/// # Safety
///
/// The GIL is held (`gil`).
unsafe fn a_locked_shared_vec_refuses_exports_and_says_why(gil: Gil<'_>) {
    let handle = match LOCKY.make_type(gil, None) {
        Ok(handle) => handle,
        Err(e) => panic!("no type: {e:?}"),
    };
    let data = SharedVec::new((0..8).collect(), false).unwrap();
    let obj: Owned = match handle.create(gil, Locky { data }) {
        Ok(obj) => obj,
        Err(e) => panic!("no instance: {e:?}"),
    };
    // SAFETY: `obj` is an instance of a type made by `ExportingType<Locky>`, whose instances
    // are `Object<Locky>`; it lives until the end of this function.
    let this = unsafe { Object::<Locky>::value_of(obj.as_ptr()) };
    let mut view = core::mem::MaybeUninit::<ffi::Py_buffer>::uninit();
    let full = ffi::PyBUF_FULL as c_int;
    // SAFETY: the GIL is held (caller); `view` is a writable Py_buffer, released below.
    unsafe {
        assert_eq!(
            ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), full),
            0
        );
        assert_eq!((*view.as_ptr()).len, 8);
        assert_eq!(*(*view.as_ptr()).buf.cast::<u8>().add(5), 5);
    }
    assert_eq!(this.data.lock(gil).err(), Some(Busy::Exported(1)));
    // SAFETY: the view was filled above and is released once.
    unsafe { ffi::PyBuffer_Release(view.as_mut_ptr()) };

    let mut writer = this.data.lock(gil).expect("nothing is exported");
    writer.set(5, 55);
    // SAFETY: the GIL is held (caller); a consumer's struct may hold anything: the refusal
    // must clear `obj` itself.
    unsafe {
        view.as_mut_ptr().write_bytes(0xAB, 1);
        assert_eq!(
            ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), full),
            -1
        );
        let (buffer_error, message) =
            take_error_of(gil, ffi::PyExc_BufferError).expect("an exception");
        assert!(buffer_error, "not a BufferError: {message}");
        assert_eq!(message, "Locky is being modified");
        assert!((*view.as_ptr()).obj.is_null());
    }
    assert_eq!(
        this.data.counter().count(),
        0,
        "a refused export is not counted"
    );
    drop(writer);

    // SAFETY: as for the first export.
    unsafe {
        assert_eq!(
            ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), full),
            0
        );
        assert_eq!(*(*view.as_ptr()).buf.cast::<u8>().add(5), 55);
        ffi::PyBuffer_Release(view.as_mut_ptr());
    }

    // The `repr` slot and a `varkw` method, through bufferkit's shims.
    // SAFETY: the GIL is held (caller); new references or NULL, each checked and released.
    unsafe {
        let repr = ffi::PyObject_Repr(obj.as_ptr());
        assert!(!repr.is_null(), "{:?}", take_error(gil));
        assert_eq!(
            bufferkit::ffi::convert::str_of(Borrowed::from_ptr(repr).unwrap()).unwrap(),
            "Locky(8)"
        );
        ffi::Py_DecRef(repr);
        let method = ffi::PyObject_GetAttrString(obj.as_ptr(), c"count".as_ptr());
        assert!(!method.is_null(), "{:?}", take_error(gil));
        let args = ffi::Py_BuildValue(c"(iii)".as_ptr(), 1, 2, 3);
        let kwargs = ffi::Py_BuildValue(c"{s:i}".as_ptr(), c"x".as_ptr(), 4);
        let counted = ffi::PyObject_Call(method, args, kwargs);
        assert!(!counted.is_null(), "{:?}", take_error(gil));
        assert_eq!(ffi::PyLong_AsLong(counted), 31);
        for o in [counted, kwargs, args, method] {
            ffi::Py_DecRef(o);
        }
    }

    // No `new` slot: Python cannot make an instance whose value Rust never wrote.
    // SAFETY: the GIL is held (caller); a new reference or NULL with an exception.
    unsafe {
        let made = ffi::PyObject_CallNoArgs(handle.as_type_ptr().cast());
        assert!(made.is_null(), "Locky() made an instance");
        let (type_error, message) = take_error_of(gil, ffi::PyExc_TypeError).expect("an exception");
        assert!(type_error, "not a TypeError: {message}");
        assert_eq!(message, "cannot create 'Locky' instances");
    }

    // The description remembers its type: it makes instances and recognises them.
    let data = SharedVec::new(vec![9; 3], false).unwrap();
    let other = match LOCKY.create(gil, Locky { data }) {
        Ok(obj) => obj,
        Err(e) => panic!("no instance: {e:?}"),
    };
    // SAFETY: both are live instances (made above), borrowed while `obj`/`other` live.
    let (mine, theirs) = unsafe { (Object::<Locky>::value_of(other.as_ptr()), this) };
    let found = LOCKY
        .downcast(other.borrow())
        .expect("an instance of the type it made");
    assert!(core::ptr::eq(found, mine) && found.data.len() == 3);
    assert!(core::ptr::eq(LOCKY.downcast(obj.borrow()).unwrap(), theirs));
    assert!(
        HOLDER.downcast(obj.borrow()).is_none(),
        "another description's instance"
    );
    assert!(TWICE
        .create(
            gil,
            Locky {
                data: SharedVec::new(vec![], false).unwrap()
            }
        )
        .is_err());
    drop(other);
    drop(obj);
    drop(handle);
    // SAFETY: the GIL is held (caller).
    assert!(unsafe { take_error(gil) }.is_none());
}

/// # Safety
///
/// The GIL is held (`gil`).
unsafe fn a_slot_given_twice_is_refused_at_type_creation(gil: Gil<'_>) {
    match TWICE.make_type(gil, None) {
        Err(Error::New(Kind::System, message)) => {
            assert_eq!(message, "slots_test.Twice: slot 'len' is given twice")
        }
        Err(other) => panic!("not the SystemError wanted: {other:?}"),
        Ok(_) => panic!("a slot given twice was accepted"),
    }
    // SAFETY: the GIL is held (caller).
    assert!(unsafe { take_error(gil) }.is_none(), "nothing was raised");
}

/// How many `Holder`s were dropped.
static HOLDER_DROPS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// An exporter that holds a Python reference, so its type takes part in garbage collection.
struct Holder {
    data: SharedVec<u8>,
    // NULL or a strong reference this value owns (atomic: on free-threaded builds an
    // `ExportingType`'s value is shared by threads, `Send + Sync`).
    held: AtomicPtr<ffi::PyObject>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        let held = self.held.swap(ptr::null_mut(), Ordering::AcqRel);
        if !held.is_null() {
            // SAFETY: our strong reference; values are dropped in tp_dealloc, with the GIL.
            unsafe { ffi::Py_DecRef(held) };
        }
        HOLDER_DROPS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
}

// SAFETY: `SharedVec` changes its memory only under its lock, which refuses while exports live.
unsafe impl BufferExporter for Holder {
    fn counter(&self) -> &ExportCounter {
        self.data.counter()
    }
    fn memory(&self) -> Option<Memory<'_>> {
        self.data.memory()
    }
}

impl Collectable for Holder {
    fn traverse(&self, visit: ffi::visitproc, arg: *mut c_void) -> c_int {
        let held = self.held.load(Ordering::Acquire);
        if held.is_null() {
            return 0;
        }
        // SAFETY: a strong reference this value owns; `visit` is the collector's callback.
        unsafe { visit(held, arg) }
    }

    fn clear(&self, _gil: Gil<'_>) {
        let held = self.held.swap(ptr::null_mut(), Ordering::AcqRel);
        if !held.is_null() {
            // SAFETY: our strong reference; tp_clear runs with the GIL held.
            unsafe { ffi::Py_DecRef(held) };
        }
    }
}

static HOLDER: ExportingType<Holder> = ExportingType::new(c"slots_test.Holder").collectable();

/// # Safety
///
/// The GIL is held (`gil`).
unsafe fn a_collectable_value_in_a_cycle_is_collected(gil: Gil<'_>) {
    let handle = match HOLDER.make_type(gil, None) {
        Ok(handle) => handle,
        Err(e) => panic!("no type: {e:?}"),
    };
    // SAFETY: the GIL is held (caller); the type is live.
    let flags = unsafe { ffi::PyType_GetFlags(handle.as_type_ptr()) };
    assert_ne!(flags & ffi::Py_TPFLAGS_HAVE_GC, 0);
    let value = Holder {
        data: SharedVec::new(vec![1, 2, 3], false).unwrap(),
        held: AtomicPtr::new(ptr::null_mut()),
    };
    let obj = match handle.create(gil, value) {
        Ok(obj) => obj,
        Err(e) => panic!("no instance: {e:?}"),
    };
    // SAFETY: the GIL is held (caller); a new list (or NULL), then `obj` appended to it (the
    // list takes its own reference); the list's reference moves into the value: a cycle.
    unsafe {
        let list = ffi::PyList_New(0);
        assert!(!list.is_null());
        assert_eq!(ffi::PyList_Append(list, obj.as_ptr()), 0);
        Object::<Holder>::value_of(obj.as_ptr())
            .held
            .store(list, Ordering::Release);
    }
    // The collector sees the instance's type and its value's reference (tp_traverse).
    // SAFETY: the GIL is held (caller); new references or NULL, each checked.
    unsafe {
        let gc = ffi::PyImport_ImportModule(c"gc".as_ptr());
        assert!(!gc.is_null());
        let seen =
            ffi::PyObject_CallMethod(gc, c"get_referents".as_ptr(), c"O".as_ptr(), obj.as_ptr());
        assert!(!seen.is_null(), "{:?}", take_error(gil));
        let tp = handle.as_type_ptr().cast::<ffi::PyObject>();
        assert_eq!(ffi::PySequence_Contains(seen, tp), 1, "the type is visited");
        let list = Object::<Holder>::value_of(obj.as_ptr())
            .held
            .load(Ordering::Acquire);
        assert_eq!(
            ffi::PySequence_Contains(seen, list),
            1,
            "the value's reference is visited"
        );
        ffi::Py_DecRef(seen);
        ffi::Py_DecRef(gc);
    }
    let before = HOLDER_DROPS.load(core::sync::atomic::Ordering::Relaxed);
    drop(obj);
    assert_eq!(
        HOLDER_DROPS.load(core::sync::atomic::Ordering::Relaxed),
        before,
        "in a cycle"
    );
    // SAFETY: the GIL is held (caller).
    unsafe { ffi::PyGC_Collect() };
    assert_eq!(
        HOLDER_DROPS.load(core::sync::atomic::Ordering::Relaxed),
        before + 1,
        "collected"
    );
    drop(handle);
    // SAFETY: the GIL is held (caller).
    assert!(unsafe { take_error(gil) }.is_none());
}

/// `BufferView::get` (boxed) and `BufferView::with` (on the stack) each hold one export while
/// they live and give it back once; `with` also when its closure panics.
fn buffer_views_hold_one_export_until_released(gil: Gil<'_>) {
    let handle = match LOCKY.make_type(gil, None) {
        Ok(handle) => handle,
        Err(e) => panic!("no type: {e:?}"),
    };
    let data = SharedVec::new((10..18).collect(), false).unwrap();
    let obj: Owned = match handle.create(gil, Locky { data }) {
        Ok(obj) => obj,
        Err(e) => panic!("no instance: {e:?}"),
    };
    // SAFETY: an instance of a type made by `ExportingType<Locky>` (`Object<Locky>`), alive
    // until the end of this function.
    let this = unsafe { Object::<Locky>::value_of(obj.as_ptr()) };
    let full = ffi::PyBUF_FULL_RO as c_int;

    let boxed = BufferView::get(obj.borrow(), full).expect("an export");
    assert_eq!((boxed.len(), this.data.counter().count()), (8, 1));
    let seen = BufferView::with(obj.borrow(), full, |view| {
        let first = view.as_cells().map(|cells| cells[0].get());
        (
            first,
            view.shape().map(<[isize]>::to_vec),
            this.data.counter().count(),
        )
    })
    .expect("an export");
    assert_eq!(seen, (Some(10), Some(vec![8]), 2));
    assert_eq!(this.data.counter().count(), 1);
    drop(boxed);
    assert_eq!(this.data.counter().count(), 0);

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        BufferView::with(obj.borrow(), full, |_| panic!("inside with"))
    }));
    assert!(panicked.is_err());
    assert_eq!(
        this.data.counter().count(),
        0,
        "the unwind released the export"
    );
}
