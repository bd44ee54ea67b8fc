//! The generic slots end to end, in an embedded interpreter: what an exporter whose
//! `BufferExporter::memory()` misbehaves gets, and that a refused export leaves nothing behind.
//!
//! The shipped types never return `None` from `memory()` nor panic in it, so their tests cannot
//! reach these paths; this exporter does on request.

use core::cell::Cell;
use core::ffi::{c_int, c_void};
use core::ptr::{self, NonNull};

use bufferkit::ffi::error::Pending;
use bufferkit::ffi::{dealloc, Object};
use bufferkit::pyo3_ffi as ffi;
use bufferkit::{getbuffer, releasebuffer, BufferExporter, ExportCounter, Format, Gil, Layout};
use bufferkit::{Memory, Order};

/// What `memory()` does next.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Serve,
    NoMemory,
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
    unsafe {
        if ffi::PyErr_Occurred().is_null() {
            return None;
        }
        let system = ffi::PyErr_ExceptionMatches(ffi::PyExc_SystemError) != 0;
        Some((system, Pending::take(gil).message()))
    }
}

#[test]
fn a_missing_memory_and_a_panic_refuse_with_system_error() {
    // SAFETY: this test is the only user of the interpreter it starts; every call below runs
    // on this thread with the GIL held (Py_Initialize takes it) and follows the C-API rules
    // noted at each step.
    unsafe {
        ffi::Py_Initialize();
        let gil = Gil::assume();

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
            (Mode::NoMemory, "Faulty has no memory to export"),
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
