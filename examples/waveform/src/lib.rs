//! `waveform`: a Python extension module whose `Waveform` type holds a Rust vector of `i16`
//! samples and exports it through the buffer protocol as format `'h'`, so that
//! `numpy.asarray(w)`, `memoryview(w)` and `f.readinto(w)` work on the samples in place.
//!
//! bufferkit does the protocol (request flags, filling the `Py_buffer`, counting exports,
//! references, panics); this file describes the memory in one `unsafe impl BufferExporter` and
//! registers bufferkit's generic slots. The rest is the usual boilerplate of a heap type in a
//! multi-phase-init module, as in CPython's `Modules/xxlimited.c`.

use core::cell::{Cell, UnsafeCell};
use core::ffi::{c_int, c_void};
use core::ptr::{self, NonNull};

use bufferkit::ffi::convert::{index_arg, new_int, none};
use bufferkit::ffi::{Borrowed, Error, Owned, PyResult, This};
use bufferkit::{BufferExporter, ExportCounter, Format, Gil, Layout, Memory, Object, Order};
use pyo3_ffi as ffi;

/// The samples and the layout that describes them; `resize` replaces both at once.
struct Samples {
    // `Cell`: consumers write through the export, so no sample may be behind a plain `&i16`.
    data: Box<[Cell<i16>]>,
    // INVARIANTS: format 'h', shape `[data.len()]`, C order.
    layout: Layout,
}

impl Samples {
    /// `len` zero samples, or the first `len` of `old` followed by zeros.
    fn new(len: isize, old: &[Cell<i16>]) -> PyResult<Self> {
        let format = Format::new(c"h".into(), size_of::<i16>()).expect("itemsize 2 is valid");
        // A size beyond Py_ssize_t is an OverflowError, as for Python's own sequences.
        let layout = Layout::contiguous(format, &[len], Order::C).map_err(|e| {
            if e.is_overflow() {
                Error::overflow_error(e.to_string())
            } else {
                Error::value_error(e.to_string())
            }
        })?;
        // The layout checked `len` (not negative, bytes fit `isize`); ask for the memory
        // without aborting the process when there is not enough of it.
        let mut data = Vec::new();
        data.try_reserve_exact(len as usize)
            .map_err(|_| Error::memory_error(format!("cannot allocate {len} samples")))?;
        data.extend((0..len as usize).map(|i| Cell::new(old.get(i).map_or(0, Cell::get))));
        Ok(Self {
            data: data.into_boxed_slice(),
            layout,
        })
    }
}

/// The value inside a `waveform.Waveform` object.
pub struct Waveform {
    // INVARIANTS: replaced only by `resize`, while `counter` counts no export and no
    // reference from `samples()` is alive.
    samples: UnsafeCell<Samples>,
    counter: ExportCounter,
}

impl Waveform {
    fn samples(&self) -> &Samples {
        // SAFETY: the only writer is `resize`, which runs with the GIL held, as does every
        // caller of this function; no caller keeps the reference past its own call, so none
        // is alive while `resize` writes.
        unsafe { &*self.samples.get() }
    }
}

// SAFETY: the one contract of `BufferExporter`. `memory()` returns the boxed samples and their
// layout, which only `resize` replaces, and `resize` refuses while the counter counts an
// export. The samples are `Cell`s, so consumers may write to them.
unsafe impl BufferExporter for Waveform {
    fn counter(&self) -> &ExportCounter {
        &self.counter
    }

    fn memory(&self) -> Option<Memory<'_>> {
        let samples = self.samples();
        let base = NonNull::from(&*samples.data).cast::<u8>();
        // The layout covers exactly the samples, so this is never None.
        Memory::new(base, size_of_val(&*samples.data), &samples.layout)
    }
}

/// `Waveform(n)`: `n` zero samples.
fn waveform_new(
    gil: Gil<'_>,
    tp: *mut ffi::PyTypeObject,
    args: Borrowed<'_>,
    _kwargs: Option<Borrowed<'_>>,
) -> PyResult<Owned> {
    let mut len: ffi::Py_ssize_t = 0;
    // SAFETY: `args` is the call's argument tuple; the converter `n` stores a Py_ssize_t.
    if unsafe { ffi::PyArg_ParseTuple(args.as_ptr(), c"n:Waveform".as_ptr(), &mut len) } == 0 {
        return Err(Error::Raised);
    }
    let value = Waveform {
        samples: UnsafeCell::new(Samples::new(len, &[])?),
        counter: ExportCounter::new(false),
    };
    // SAFETY: `tp` is Waveform or a subclass, whose instances are `Object<Waveform>` (the spec
    // below); the GIL is held.
    unsafe { Object::create(gil, tp, value) }
}

/// `peak()`: the largest absolute sample value.
fn waveform_peak(this: This<'_, Waveform>) -> PyResult<Owned> {
    let data = &this.value.samples().data;
    let peak = data
        .iter()
        .map(|s| i32::from(s.get()).abs())
        .max()
        .unwrap_or(0);
    new_int(peak as isize)
}

/// `resize(n)`: keep the first `n` samples, pad with zeros; refused while exported.
fn waveform_resize(this: This<'_, Waveform>, n: Borrowed<'_>) -> PyResult<Owned> {
    let len = index_arg(n, &|| "n".into())?;
    let new = Samples::new(len, &this.value.samples().data)?;
    // No Python code runs from this check to the write below, and the GIL is held, so no
    // export can start in between.
    let exports = this.value.counter.count();
    if exports > 0 {
        let s = if exports == 1 { "" } else { "s" };
        return Err(Error::buffer_error(format!(
            "cannot resize: {exports} exported buffer{s}"
        )));
    }
    // SAFETY: nothing is exported, so no consumer points into the old samples or layout; no
    // reference from `samples()` is alive (the one above ended with `Samples::new`).
    unsafe { *this.value.samples.get() = new };
    Ok(none())
}

fn waveform_len(this: This<'_, Waveform>) -> PyResult<ffi::Py_ssize_t> {
    Ok(this.value.samples().data.len() as ffi::Py_ssize_t)
}

// The C entry points, made by bufferkit's trampoline macros: each is an `extern "C"` function
// with the C signature CPython expects that runs the Rust function above inside bufferkit's
// panic boundary (a panic becomes SystemError, an `Err` the exception). The typed constants
// make the compiler check each signature against the slot or method kind it is registered as.
const TP_NEW: ffi::newfunc = bufferkit::with_first!(ffi::PyTypeObject, waveform_new);
const PEAK: ffi::PyCFunction = bufferkit::noargs!(Waveform, waveform_peak);
const RESIZE: ffi::PyCFunction = bufferkit::onearg!(Waveform, waveform_resize);
const MP_LENGTH: ffi::lenfunc = bufferkit::length!(Waveform, waveform_len);

static mut METHODS: [ffi::PyMethodDef; 3] = [
    ffi::PyMethodDef {
        ml_name: c"peak".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunction: PEAK },
        ml_flags: ffi::METH_NOARGS,
        ml_doc: c"peak($self, /)\n--\n\nThe largest absolute sample value.".as_ptr(),
    },
    ffi::PyMethodDef {
        ml_name: c"resize".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunction: RESIZE },
        ml_flags: ffi::METH_O,
        ml_doc: c"resize($self, n, /)\n--\n\nKeep the first n samples, pad with zeros.\n\nRaises BufferError while the samples are exported."
            .as_ptr(),
    },
    ffi::PyMethodDef::zeroed(),
];

static mut SLOTS: [ffi::PyType_Slot; 7] = [
    ffi::PyType_Slot {
        slot: ffi::Py_tp_new,
        pfunc: TP_NEW as *mut c_void,
    },
    // bufferkit's generic slots, instantiated for Waveform: the whole buffer protocol.
    ffi::PyType_Slot {
        slot: ffi::Py_bf_getbuffer,
        pfunc: bufferkit::getbuffer::<Waveform> as *mut c_void,
    },
    ffi::PyType_Slot {
        slot: ffi::Py_bf_releasebuffer,
        pfunc: bufferkit::releasebuffer::<Waveform> as *mut c_void,
    },
    ffi::PyType_Slot {
        slot: ffi::Py_tp_dealloc,
        pfunc: bufferkit::ffi::dealloc::<Waveform> as *mut c_void,
    },
    ffi::PyType_Slot {
        slot: ffi::Py_mp_length,
        pfunc: MP_LENGTH as *mut c_void,
    },
    // SAFETY: only the address of the static is taken; CPython reads the table while making
    // the type and never writes it.
    ffi::PyType_Slot {
        slot: ffi::Py_tp_methods,
        pfunc: (&raw mut METHODS).cast(),
    },
    ffi::PyType_Slot {
        slot: 0,
        pfunc: ptr::null_mut(),
    },
];

// The slot table stores untyped pointers: these make the compiler check each signature.
const _: ffi::getbufferproc = bufferkit::getbuffer::<Waveform>;
const _: ffi::releasebufferproc = bufferkit::releasebuffer::<Waveform>;
const _: ffi::destructor = bufferkit::ffi::dealloc::<Waveform>;

static mut SPEC: ffi::PyType_Spec = ffi::PyType_Spec {
    name: c"waveform.Waveform".as_ptr(),
    basicsize: Object::<Waveform>::BASICSIZE,
    itemsize: 0,
    flags: ffi::Py_TPFLAGS_DEFAULT as _,
    // SAFETY: only the address of the static is taken (see SLOTS).
    slots: (&raw mut SLOTS).cast(),
};

/// `Py_mod_exec`: makes the type and adds it to the module.
unsafe extern "C" fn exec(module: *mut ffi::PyObject) -> c_int {
    // SAFETY: CPython runs Py_mod_exec with the GIL held on the new module; the spec is a
    // static that outlives the type; the result is a new reference or NULL.
    let tp = unsafe { ffi::PyType_FromModuleAndSpec(module, &raw mut SPEC, ptr::null_mut()) };
    if tp.is_null() {
        return -1;
    }
    // SAFETY: both are live; PyModule_AddType takes its own reference to the type.
    let status = unsafe { ffi::PyModule_AddType(module, tp.cast()) };
    // SAFETY: drops the reference PyType_FromModuleAndSpec returned.
    unsafe { ffi::Py_DECREF(tp) };
    status
}

static mut MODULE_SLOTS: [ffi::PyModuleDef_Slot; 2] = [
    ffi::PyModuleDef_Slot {
        slot: ffi::Py_mod_exec,
        value: exec as *mut c_void,
    },
    ffi::PyModuleDef_Slot {
        slot: 0,
        value: ptr::null_mut(),
    },
];

static mut MODULE_DEF: ffi::PyModuleDef = ffi::PyModuleDef {
    m_base: ffi::PyModuleDef_HEAD_INIT,
    m_name: c"waveform".as_ptr(),
    m_doc: c"A Rust i16 sample vector that exports the buffer protocol (format 'h').".as_ptr(),
    m_size: 0,
    m_methods: ptr::null_mut(),
    // SAFETY: only the address of the static is taken; CPython reads it and never writes it.
    m_slots: (&raw mut MODULE_SLOTS).cast(),
    m_traverse: None,
    m_clear: None,
    m_free: None,
};

/// The module's entry point (multi-phase initialisation, PEP 489).
///
/// # Safety
///
/// Called by the import machinery with the GIL held.
#[no_mangle]
pub unsafe extern "C" fn PyInit_waveform() -> *mut ffi::PyObject {
    // SAFETY: MODULE_DEF is a static that lives for the program; PyModuleDef_Init only
    // initialises its header and returns it.
    unsafe { ffi::PyModuleDef_Init(&raw mut MODULE_DEF) }
}
