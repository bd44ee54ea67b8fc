//! `bufferkit.Buffer`: fixed-size, owned, zero-initialised memory that exports the buffer
//! protocol and nothing else a user did not ask for.
//!
//! The object struct, its slots and its `PyType_Spec`, in the manner of CPython's
//! `Modules/xxlimited.c`; the buffer slots are bufferkit's generic pair, instantiated for
//! [`Buffer`] through its [`BufferExporter`] implementation.

use core::ffi::{c_int, c_void};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};

use pyo3_ffi as ffi;

use super::common::{
    self, getset_table, kwlist, method_table, open, slot, spec_flags, KwList, Shipped, WeakList,
    IMMUTABLE, SLOT_END,
};
use crate::trampoline::{
    getter, length, noargs, onearg, richcompare, unary, varkw, vectorcall, with_first,
};
use bufferkit::exporter::{BufferExporter, ExportCounter, Gil, Memory};
use bufferkit::ffi::convert::{self, new_bool, new_str};
use bufferkit::ffi::{Borrowed, Error, FastArgs, Object, Owned, Result, This};
use bufferkit::layout::{Format, Layout, Order};
use bufferkit::request::flags;
use bufferkit::view::{BufferView, CopyOrder};

/// The value inside a `bufferkit.Buffer` object.
pub struct Buffer {
    // INVARIANTS: `data` points to an allocation of `max(layout.required_len(), 1)` bytes from
    // `PyMem_Calloc`, owned by this value, until it is freed and set to NULL, which happens
    // exactly once: in `close()` if the counter is closed and nothing was ever exported, else
    // in `drop`. It is never NULL while the counter is open.
    data: AtomicPtr<u8>,
    layout: Layout,
    order: Order,
    counter: ExportCounter,
    /// Weak references to the object (`__weaklistoffset__`).
    weaklist: WeakList,
}

// SAFETY: the one contract of `BufferExporter`. `memory()` returns the allocation in `data`
// and `layout`, neither of which changes after construction; the allocation is freed only in
// `close()` when the counter is closed with no export ever made, or in `drop`, when no export
// can be live (each holds a reference to the object). It is raw heap memory reached only
// through a raw pointer, so consumers may write to it. `layout` fits the allocation by
// construction (`Layout::contiguous`, `required_len` bytes).
unsafe impl BufferExporter for Buffer {
    fn counter(&self) -> &ExportCounter {
        &self.counter
    }

    #[inline]
    fn memory(&self) -> Option<Memory<'_>> {
        // NULL only once freed, which only happens to a closed Buffer.
        let base = NonNull::new(self.data.load(Ordering::Relaxed))?;
        Memory::new(base, self.alloc_len(), &self.layout)
    }
}

impl Shipped for Buffer {
    fn layout(&self) -> &Layout {
        &self.layout
    }
}

impl Buffer {
    /// Zero-initialised memory for `layout`.
    ///
    /// From CPython's "mem" allocator, as bytearray's data: pymalloc's pools for blocks up to
    /// 512 bytes (about 100 instructions fewer per `Buffer(16)` than the C library's `calloc`,
    /// which bypasses glibc's per-thread cache, and `free`), the C library's beyond;
    /// `tracemalloc` sees both.
    pub fn new(_gil: Gil<'_>, layout: Layout, order: Order, readonly: bool) -> Result<Self> {
        let len = layout.required_len().max(1);
        // SAFETY: the GIL is held (the token), as the "mem" domain requires; PyMem_Calloc with
        // a non-zero size returns NULL or a zeroed block of `len` bytes, aligned for any
        // fundamental type (16 bytes on 64-bit builds).
        let data = unsafe { ffi::PyMem_Calloc(len, 1) }.cast::<u8>();
        if data.is_null() {
            return Err(Error::memory_error(format!(
                "cannot allocate a Buffer of {len} bytes"
            )));
        }
        Ok(Self {
            data: AtomicPtr::new(data),
            layout,
            order,
            counter: ExportCounter::new(readonly),
            weaklist: WeakList::new(),
        })
    }

    fn alloc_len(&self) -> usize {
        self.layout.required_len().max(1)
    }

    /// Frees the memory if it is still held. Only called when no export can reach it, with
    /// the GIL held (`close()`, deallocation).
    fn free(&self) {
        let data = self.data.swap(ptr::null_mut(), Ordering::AcqRel);
        if !data.is_null() {
            // SAFETY: `data` came from PyMem_Calloc and is freed once: the swap took it out;
            // the GIL is held (above), as the "mem" domain requires.
            unsafe { ffi::PyMem_Free(data.cast::<c_void>()) };
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // Weak references die before the memory.
        // SAFETY: `weaklist` is a field of `self`, which, once something made a weak reference
        // to it, is the value of the `Object<Buffer>` that `dealloc::<Buffer>` is dropping.
        unsafe { self.weaklist.clear(self as *const Self) };
        self.free();
    }
}

/// The parameters of `Buffer(...)`.
const BUFFER_PARAMS: common::Params<4> = common::Params {
    max_positional: 2,
    required: 1,
    names: [c"shape", c"format", c"order", c"readonly"],
    format: c"O|O$OO:Buffer",
};

/// `Buffer(shape, format='B', *, order='C', readonly=False)`: `tp_new`, which calls of a
/// subclass take.
fn buffer_new(
    gil: bufferkit::exporter::Gil<'_>,
    subtype: *mut ffi::PyTypeObject,
    args: Borrowed<'_>,
    kwargs: Option<Borrowed<'_>>,
) -> Result<Owned> {
    common::with_tuple_args(args, kwargs, &BUFFER_PARAMS, |found| {
        buffer_matched(gil, subtype, found)
    })
}

/// `Buffer(...)` itself on CPython 3.14+ (`tp_vectorcall`, never inherited): no argument
/// tuple, keyword dict or `type.__call__` in between.
fn buffer_vectorcall(
    gil: bufferkit::exporter::Gil<'_>,
    tp: *mut ffi::PyTypeObject,
    args: FastArgs<'_>,
) -> Result<Owned> {
    common::with_fast_args(gil, args, &BUFFER_PARAMS, |found| {
        buffer_matched(gil, tp, found)
    })
}

/// `Buffer(...)` with its arguments matched to [`BUFFER_PARAMS`] (each NULL or borrowed for
/// the call): `readonly` read as the `p` converter reads it.
fn buffer_matched(
    gil: bufferkit::exporter::Gil<'_>,
    subtype: *mut ffi::PyTypeObject,
    [shape, format, order, readonly]: [*mut ffi::PyObject; 4],
) -> Result<Owned> {
    // SAFETY: NULL or a borrowed reference valid for this call; PyObject_IsTrue may run Python
    // code (`__bool__`), as the `p` converter does.
    let readonly = !readonly.is_null()
        && match unsafe { ffi::PyObject_IsTrue(readonly) } {
            -1 => return Err(Error::Raised),
            v => v != 0,
        };
    buffer_with(gil, subtype, shape, format, order, readonly)
}

/// `Buffer(...)` with its arguments: `shape` borrowed, `format` and `order` borrowed or NULL.
fn buffer_with(
    gil: bufferkit::exporter::Gil<'_>,
    subtype: *mut ffi::PyTypeObject,
    shape: *mut ffi::PyObject,
    format: *mut ffi::PyObject,
    order: *mut ffi::PyObject,
    readonly: bool,
) -> Result<Owned> {
    // SAFETY: (shape, format, order) NULL or borrowed references valid for this call.
    let shape = unsafe { Borrowed::from_ptr(shape) }.ok_or(Error::Raised)?;
    // SAFETY: `shape` is live and the GIL is held.
    if unsafe { ffi::PyList_Check(shape.as_ptr()) } != 0 {
        return Err(list_shape_error(shape));
    }
    let shape = common::parse_shape(shape)?;
    // SAFETY: as above (NULL when not given).
    let format = match unsafe { Borrowed::from_ptr(format) } {
        Some(f) => common::parse_format(f)?,
        None => Format::bytes(),
    };
    // SAFETY: as above.
    let order = parse_order(unsafe { Borrowed::from_ptr(order) })?;
    let layout = Layout::contiguous(format, &shape, order).map_err(common::layout_error)?;
    let value = Buffer::new(gil, layout, order, readonly)?;
    // SAFETY: `subtype` is Buffer or a subclass (tp_new and tp_vectorcall are only reached
    // through them; tp_vectorcall, never inherited, through Buffer itself), whose
    // instances are `Object<Buffer>`; the GIL is held.
    unsafe { Object::create(gil, subtype, value) }
}

/// `Buffer([1, 2, 3])` is refused: `bytearray([1, 2, 3])` and `array('B', [1, 2, 3])` hold
/// those values, `numpy.zeros([1, 2, 3])` has that shape; neither reading is safe to guess.
/// The message shows both spellings, with the user's numbers where they are a few small ints.
fn list_shape_error(list: Borrowed<'_>) -> Error {
    let mut ints = Vec::new();
    // SAFETY: `list` is a live list and the GIL is held.
    let n = unsafe { ffi::PyList_Size(list.as_ptr()) };
    for i in 0..n.min(9) {
        // SAFETY: 0 <= i < len(list); the item is borrowed and read at once, before anything
        // that could run Python code (PyLong_CheckExact and PyLong_AsSsize_t on an exact int
        // run none).
        let item = unsafe { ffi::PyList_GetItem(list.as_ptr(), i) };
        // SAFETY: as above; `item` is a live object.
        if item.is_null() || unsafe { ffi::PyLong_CheckExact(item) } == 0 {
            break;
        }
        // SAFETY: `item` is an exact int.
        let value = unsafe { ffi::PyLong_AsSsize_t(item) };
        // SAFETY: the GIL is held.
        if value == -1 && !unsafe { ffi::PyErr_Occurred() }.is_null() {
            // SAFETY: the GIL is held; an int too large to show is not shown.
            unsafe { ffi::PyErr_Clear() };
            break;
        }
        ints.push(value);
    }
    if ints.len() as isize != n || !(1..=8).contains(&n) {
        return Error::type_error(
            "shape must be an int or a tuple of ints, not list: for a shape pass a tuple, as \
             in Buffer((2, 3)); to copy values into a Buffer, \
             Buffer.from_buffer_copy(bytes(values)) or array.array(typecode, values)",
        );
    }
    let text = ints
        .iter()
        .map(isize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let values = if ints.iter().all(|v| (0..=255).contains(v)) {
        format!("bytes([{text}])")
    } else {
        format!("array.array('q', [{text}])")
    };
    let head = "shape must be an int or a tuple of ints, not list:";
    if ints.iter().any(|&v| v < 0) {
        // Not a shape at all.
        return Error::type_error(format!(
            "{head} for a Buffer holding those values, Buffer.from_buffer_copy({values})"
        ));
    }
    Error::type_error(format!(
        "{head} for a Buffer of that shape pass a tuple, Buffer({}); for a Buffer holding \
         those values, Buffer.from_buffer_copy({values})",
        common::shape_text(&ints)
    ))
}

fn parse_order(obj: Option<Borrowed<'_>>) -> Result<Order> {
    let Some(obj) = obj else { return Ok(Order::C) };
    if !convert::is_str(obj) {
        return Err(Error::type_error(format!(
            "order must be 'C' or 'F', not {}",
            obj.type_name()
        )));
    }
    match convert::str_of(obj)?.as_str() {
        "C" => Ok(Order::C),
        "F" => Ok(Order::F),
        other => Err(Error::value_error(format!(
            "order must be 'C' or 'F', not '{other}'"
        ))),
    }
}

/// `Buffer.from_buffer_copy(obj, *, readonly=False)`
fn buffer_from_buffer_copy(
    gil: bufferkit::exporter::Gil<'_>,
    cls: *mut ffi::PyObject,
    args: Borrowed<'_>,
    kwargs: Option<Borrowed<'_>>,
) -> Result<Owned> {
    let mut names = kwlist([c"obj", c"readonly"]);
    let mut source: *mut ffi::PyObject = ptr::null_mut();
    let mut readonly: c_int = 0;
    // SAFETY: as in `buffer_new`: O -> PyObject**, p -> int*.
    let parsed = unsafe {
        ffi::PyArg_ParseTupleAndKeywords(
            args.as_ptr(),
            kwargs.map_or(ptr::null_mut(), Borrowed::as_ptr),
            c"O|$p:from_buffer_copy".as_ptr(),
            names.as_mut_ptr() as KwList,
            &mut source,
            &mut readonly,
        )
    };
    if parsed == 0 {
        return Err(Error::Raised);
    }
    // SAFETY: a borrowed reference valid for this call (PyArg_ParseTupleAndKeywords).
    let source = unsafe { Borrowed::from_ptr(source) }.ok_or(Error::Raised)?;
    let view = BufferView::get(source, flags::FULL_RO)?;
    let format = match view.format() {
        Some(f) => {
            let text = new_str(gil, &f.to_string_lossy())?;
            common::parse_format(text.borrow())?
        }
        None => Format::bytes(),
    };
    if format.itemsize() != view.itemsize() {
        return Err(Error::value_error(format!(
            "the exporter's format '{}' has itemsize {}, but it reports itemsize {}",
            format.as_str(),
            format.itemsize(),
            view.itemsize()
        )));
    }
    let shape = match view.shape() {
        Some(s) => s.to_vec(),
        None if view.ndim() == 0 => Vec::new(),
        None => vec![view.len() / view.itemsize().max(1)],
    };
    let layout = Layout::contiguous(format, &shape, Order::C).map_err(common::layout_error)?;
    if layout.nbytes() != view.len() {
        return Err(Error::value_error(format!(
            "the exporter reports len {} for shape {} and itemsize {}",
            view.len(),
            common::shape_text(&shape),
            view.itemsize()
        )));
    }
    let value = Buffer::new(gil, layout, Order::C, readonly != 0)?;
    let len = value.layout.nbytes() as usize;
    let data = value.data.load(Ordering::Relaxed);
    // SAFETY: `data` is the new Buffer's zeroed allocation of at least `len` bytes, not yet
    // shared with anything.
    let dst = unsafe { core::slice::from_raw_parts_mut(data, len) };
    view.copy_to(dst, CopyOrder::C)?;
    drop(view);
    // SAFETY: `cls` is the class the classmethod was called on: Buffer or a subclass, whose
    // instances are `Object<Buffer>`; the GIL is held.
    unsafe { Object::create(gil, cls.cast(), value) }
}

fn buffer_closed(this: This<'_, Buffer>) -> Result<Owned> {
    new_bool(this.gil, this.value.counter.snapshot().closed())
}

fn buffer_order(this: This<'_, Buffer>) -> Result<Owned> {
    new_str(
        this.gil,
        match open(this)?.order {
            Order::C => "C",
            Order::F => "F",
        },
    )
}

fn buffer_freeze(this: This<'_, Buffer>) -> Result<Owned> {
    open(this)?;
    this.value
        .counter
        .freeze(this.gil)
        .map_err(|e| common::in_use_error("freeze", e.0))?;
    Ok(convert::none(this.gil))
}

fn buffer_close(this: This<'_, Buffer>) -> Result<Owned> {
    let closed_now = this
        .value
        .counter
        .close(this.gil)
        .map_err(|e| common::in_use_error("close", e.0))?;
    // Memory that was never exported cannot be pointed into: free it now. Once exported, a
    // consumer may hold its address with only a reference to the Buffer (numpy does, for
    // `numpy.ndarray(shape, buffer=b)`), so it lives until the Buffer does.
    if closed_now && !this.value.counter.snapshot().ever_exported() {
        this.value.free();
    }
    Ok(convert::none(this.gil))
}

/// `Buffer.__reduce_ex__(protocol)`: `(bufferkit._bufferkit._rebuild_buffer, (type(self),
/// data, format, shape, order, readonly), state)`, `state` only where a subclass instance has
/// some (see [`instance_state`]). With protocol 5 `data` is a `pickle.PickleBuffer`
/// of the Buffer itself, so `pickle.dumps(b, protocol=5, buffer_callback=...)` hands the memory
/// out of band without a copy; below 5 it is the bytes in memory order. The rebuilding function
/// lives in the native module, not on the class, to keep it out of `dir(Buffer)`.
fn buffer_reduce_ex(this: This<'_, Buffer>, protocol: Borrowed<'_>) -> Result<Owned> {
    let value = open(this)?;
    let protocol = convert::index_arg(protocol, &|| "protocol".into())?;
    let data = if protocol >= 5 {
        let pickle = convert::import(this.gil, c"pickle")?;
        convert::call_method(pickle.borrow(), c"PickleBuffer", &[this.obj])?
    } else {
        common::tobytes(this.obj, CopyOrder::A)?
    };
    let layout = &value.layout;
    let format = new_str(this.gil, layout.format().as_str())?;
    let shape = convert::new_int_tuple(this.gil, layout.shape())?;
    let order = new_str(this.gil, if value.order == Order::F { "F" } else { "C" })?;
    let readonly = new_bool(this.gil, value.counter.snapshot().readonly())?;
    // SAFETY: the type of a live object is live.
    let tp = unsafe { Borrowed::from_ptr(this.obj.type_ptr().cast()) }.ok_or(Error::Raised)?;
    let args = convert::new_tuple(
        this.gil,
        &[
            tp,
            data.borrow(),
            format.borrow(),
            shape.borrow(),
            order.borrow(),
            readonly.borrow(),
        ],
    )?;
    // SAFETY: a Buffer's type is one of this module's types (or a subclass of one).
    let state = unsafe { crate::module::state_of_type(this.obj.type_ptr()) }?;
    // SAFETY: NULL, or the module state's strong reference to the function (after exec,
    // until m_clear), taken as our own on the next line.
    let rebuild = unsafe { Borrowed::from_ptr(state.rebuild_buffer) }
        .ok_or_else(|| Error::value_error(crate::module::MODULE_CLEARED))?;
    let rebuild = Owned::from_borrowed(rebuild);
    match instance_state(this.obj)? {
        Some(state) => {
            convert::new_tuple(this.gil, &[rebuild.borrow(), args.borrow(), state.borrow()])
        }
        None => convert::new_tuple(this.gil, &[rebuild.borrow(), args.borrow()]),
    }
}

/// What pickle and copy restore into a subclass instance after `_rebuild_buffer`: its
/// `__getstate__()` where it has one (every object from 3.11; a subclass's own before), else
/// what `object.__getstate__` gives from 3.11: the `__dict__`, or `(__dict__ or None, {slot:
/// value})` for `__slots__` (`copyreg._slotnames`). `None` when there is nothing to restore.
fn instance_state(obj: Borrowed<'_>) -> Result<Option<Owned>> {
    let state = match convert::getattr(obj, c"__getstate__") {
        Ok(getstate) => convert::call(getstate.borrow(), &[])?,
        // SAFETY: the GIL is held; the exception class static is initialised.
        Err(_) if unsafe { convert::error_matches(ffi::PyExc_AttributeError) } => {
            // SAFETY: the GIL is held.
            unsafe { ffi::PyErr_Clear() };
            default_state(obj)?
        }
        Err(e) => return Err(e),
    };
    // SAFETY: the GIL is held; Py_None is a static object.
    let is_none = unsafe { state.as_ptr() == ffi::Py_None() };
    Ok((!is_none).then_some(state))
}

/// `object.__getstate__()` of 3.11+, for 3.9 and 3.10.
fn default_state(obj: Borrowed<'_>) -> Result<Owned> {
    let dict = match convert::getattr(obj, c"__dict__") {
        // SAFETY: `d` is live; PyObject_Size of a dict (or whatever __dict__ gave) may fail.
        Ok(d) => match unsafe { ffi::PyObject_Size(d.as_ptr()) } {
            n if n < 0 => return Err(Error::Raised),
            0 => None,
            _ => Some(d),
        },
        // SAFETY: the GIL is held; the exception class static is initialised.
        Err(_) if unsafe { convert::error_matches(ffi::PyExc_AttributeError) } => {
            // SAFETY: the GIL is held.
            unsafe { ffi::PyErr_Clear() };
            None
        }
        Err(e) => return Err(e),
    };
    let gil = obj.gil();
    let copyreg = convert::import(gil, c"copyreg")?;
    // SAFETY: the type of a live object is live.
    let tp = unsafe { Borrowed::from_ptr(obj.type_ptr().cast()) }.ok_or(Error::Raised)?;
    let tp = Owned::from_borrowed(tp);
    let names = convert::call_method(copyreg.borrow(), c"_slotnames", &[tp.borrow()])?;
    // SAFETY: the GIL is held; a new dict or NULL.
    let slots = unsafe { Owned::from_new(ffi::PyDict_New()) }?;
    // The names are read from a tuple taken first: a getattr below may run any Python code.
    // SAFETY: `names` is live; a new tuple or NULL.
    let names = unsafe { Owned::from_new(ffi::PySequence_Tuple(names.as_ptr())) }?;
    // SAFETY: `names` is a tuple.
    let n = unsafe { ffi::PyTuple_Size(names.as_ptr()) };
    for i in 0..n {
        // SAFETY: 0 <= i < n; borrowed from the tuple, which `names` keeps alive unchanged.
        let name = unsafe { Borrowed::from_ptr(ffi::PyTuple_GetItem(names.as_ptr(), i)) }
            .ok_or(Error::Raised)?;
        // SAFETY: `obj` and `name` are live; a new reference or NULL.
        let value = unsafe { Owned::from_new(ffi::PyObject_GetAttr(obj.as_ptr(), name.as_ptr())) };
        match value {
            Ok(value) => {
                // SAFETY: `slots` is a dict; the call adds its own references.
                let set =
                    unsafe { ffi::PyDict_SetItem(slots.as_ptr(), name.as_ptr(), value.as_ptr()) };
                if set < 0 {
                    return Err(Error::Raised);
                }
            }
            // An unset slot is not part of the state.
            // SAFETY: the GIL is held; the exception class static is initialised.
            Err(_) if unsafe { convert::error_matches(ffi::PyExc_AttributeError) } => {
                // SAFETY: the GIL is held.
                unsafe { ffi::PyErr_Clear() };
            }
            Err(e) => return Err(e),
        }
    }
    // SAFETY: `slots` is a dict.
    let has_slots = unsafe { ffi::PyDict_Size(slots.as_ptr()) } > 0;
    match (dict, has_slots) {
        (dict, true) => {
            let dict = dict.unwrap_or_else(|| convert::none(gil));
            convert::new_tuple(gil, &[dict.borrow(), slots.borrow()])
        }
        (Some(dict), false) => Ok(dict),
        (None, false) => Ok(convert::none(gil)),
    }
}

/// `bufferkit._bufferkit._rebuild_buffer(cls, data, format, shape, order, readonly)`: the
/// inverse of `__reduce_ex__`: a new `cls` (Buffer or a subclass) with `data` (any exporter, in
/// memory order) copied in.
pub(crate) fn rebuild_buffer(
    gil: bufferkit::exporter::Gil<'_>,
    module: *mut ffi::PyObject,
    args: Borrowed<'_>,
    kwargs: Option<Borrowed<'_>>,
) -> Result<Owned> {
    // SAFETY: `kwargs` is NULL or a dict, borrowed for the call.
    if kwargs.is_some_and(|k| unsafe { ffi::PyObject_Size(k.as_ptr()) } > 0) {
        return Err(Error::type_error(
            "_rebuild_buffer() takes no keyword arguments",
        ));
    }
    let (mut cls, mut data, mut format, mut shape, mut order) = (
        ptr::null_mut(),
        ptr::null_mut(),
        ptr::null_mut(),
        ptr::null_mut(),
        ptr::null_mut(),
    );
    let mut readonly: c_int = 0;
    // SAFETY: `args` is a tuple; O stores borrowed PyObject*, p an int.
    let parsed = unsafe {
        ffi::PyArg_ParseTuple(
            args.as_ptr(),
            c"OOOOOp:_rebuild_buffer".as_ptr(),
            &mut cls,
            &mut data,
            &mut format,
            &mut shape,
            &mut order,
            &mut readonly,
        )
    };
    if parsed == 0 {
        return Err(Error::Raised);
    }
    // SAFETY: `module` is this module, live for the call.
    let state = unsafe { crate::module::state_of_module(module) };
    // SAFETY: `cls` is a borrowed reference valid for this call; the GIL is held.
    let is_buffer_class = unsafe {
        ffi::PyType_Check(cls) != 0
            && ffi::PyType_IsSubtype(cls.cast(), state.buffer_type.cast()) != 0
    };
    if !is_buffer_class {
        // SAFETY: as above; a type's name is read only when `cls` is a type.
        let what = unsafe {
            if ffi::PyType_Check(cls) != 0 {
                format!("class {}", bufferkit::ffi::object::type_name(cls.cast()))
            } else {
                Borrowed::from_ptr(cls).map_or_else(|| "NULL".into(), |c| c.type_name())
            }
        };
        return Err(Error::type_error(format!(
            "_rebuild_buffer() argument 1 must be Buffer or a subclass of it, not {what}"
        )));
    }
    // SAFETY: (all four) borrowed references valid for this call.
    let (data, format, shape, order) = unsafe {
        (
            Borrowed::from_ptr(data),
            Borrowed::from_ptr(format),
            Borrowed::from_ptr(shape),
            Borrowed::from_ptr(order),
        )
    };
    let (data, format, shape, order) = (
        data.ok_or(Error::Raised)?,
        format.ok_or(Error::Raised)?,
        shape.ok_or(Error::Raised)?,
        order.ok_or(Error::Raised)?,
    );
    let format = common::parse_format(format)?;
    let shape = common::parse_shape(shape)?;
    let order = parse_order(Some(order))?;
    let layout = Layout::contiguous(format, &shape, order).map_err(common::layout_error)?;
    // `data` is in memory order: bytes, or a PickleBuffer of a C- or Fortran-ordered Buffer.
    let view = BufferView::get(data, flags::FULL_RO)?;
    if view.len() != layout.nbytes() {
        return Err(Error::value_error(format!(
            "pickled Buffer data has {} bytes, its shape and format need {}",
            view.len(),
            layout.nbytes()
        )));
    }
    let value = Buffer::new(gil, layout, order, readonly != 0)?;
    let data_ptr = value.data.load(Ordering::Relaxed);
    // SAFETY: the new Buffer's allocation holds at least nbytes bytes and is not shared yet.
    let dst = unsafe { core::slice::from_raw_parts_mut(data_ptr, value.layout.nbytes() as usize) };
    // 'A': a Fortran-contiguous source is copied in Fortran order, i.e. as it lies in memory.
    view.copy_to(dst, CopyOrder::A)?;
    drop(view);
    // SAFETY: `cls` is Buffer or a subclass of it (checked above); the GIL is held.
    unsafe { Object::create(gil, cls.cast(), value) }
}

/// `__exit__(*exc_info)`: `close()`, except that a BufferError does not replace an exception
/// the block raised (see [`common::exit_ending`]).
fn buffer_exit(
    this: This<'_, Buffer>,
    args: Borrowed<'_>,
    _kwargs: Option<Borrowed<'_>>,
) -> Result<Owned> {
    common::exit_ending(this.obj, args, "closed", || buffer_close(this))
}

fn buffer_repr(this: This<'_, Buffer>) -> Result<Owned> {
    let name = common::qualified_type_name(this.obj)?;
    let state = this.value.counter.snapshot();
    if state.closed() {
        return new_str(this.gil, &format!("<closed {name}>"));
    }
    let layout = &this.value.layout;
    let order = match this.value.order {
        Order::C => 'C',
        Order::F => 'F',
    };
    new_str(
        this.gil,
        &format!(
            "<{name} shape={} format='{}' order='{order}' readonly={} exports={}>",
            common::shape_text(layout.shape()),
            layout.format().as_str(),
            if state.readonly() { "True" } else { "False" },
            state.count()
        ),
    )
}

static mut BUFFER_GETSET: [ffi::PyGetSetDef; 15] = getset_table!(
    Buffer,
    [
        entry(
            c"closed",
            getter!(Buffer, buffer_closed),
            c"Whether close() was called."
        ),
        entry(
            c"order",
            getter!(Buffer, buffer_order),
            c"'C' or 'F': the memory order chosen at construction."
        ),
    ]
);

static mut BUFFER_METHODS: [ffi::PyMethodDef; 9] = method_table!(
    Buffer,
    [
        method(
            c"freeze",
            ffi::PyMethodDefPointer { PyCFunction: noargs!(Buffer, buffer_freeze) },
            ffi::METH_NOARGS,
            c"freeze($self, /)\n--\n\nMake the Buffer read-only from now on.\n\nRaises BufferError while anything is exported (every export of a writable\nBuffer may be written through).",
        ),
        method(
            c"close",
            ffi::PyMethodDefPointer { PyCFunction: noargs!(Buffer, buffer_close) },
            ffi::METH_NOARGS,
            c"close($self, /)\n--\n\nEnd the Buffer's use: later exports and operations raise ValueError.\n\nRaises BufferError while anything is exported. Memory that was never\nexported is freed now, otherwise when the Buffer is deallocated.",
        ),
        method(
            c"__exit__",
            ffi::PyMethodDefPointer { PyCFunctionWithKeywords: varkw!(Buffer, buffer_exit) },
            ffi::METH_VARARGS | ffi::METH_KEYWORDS,
            c"__exit__($self, /, *exc_info)\n--\n\nclose() the Buffer.",
        ),
        method(
            c"from_buffer_copy",
            ffi::PyMethodDefPointer { PyCFunctionWithKeywords: with_first!(ffi::PyObject, buffer_from_buffer_copy) },
            ffi::METH_VARARGS | ffi::METH_KEYWORDS | ffi::METH_CLASS,
            c"from_buffer_copy($type, /, obj, *, readonly=False)\n--\n\nA new Buffer holding a copy of any exporter's items, with its format\n('B' if it gives none) and shape, in C order.",
        ),
        method(
            c"__reduce_ex__",
            ffi::PyMethodDefPointer { PyCFunction: onearg!(Buffer, buffer_reduce_ex) },
            ffi::METH_O,
            c"__reduce_ex__($self, protocol, /)\n--\n\nPickle support: out-of-band (pickle.PickleBuffer) with protocol 5, a copy\nof the bytes below; format, shape, order and readonly are kept.",
        ),
    ]
);

/// `__weaklistoffset__`: the one member, which makes instances weakly referenceable.
static mut BUFFER_MEMBERS: [ffi::PyMemberDef; 2] = [
    common::weaklist_member::<Buffer>(core::mem::offset_of!(Buffer, weaklist)),
    common::MEMBER_END,
];

static mut BUFFER_SLOTS: [ffi::PyType_Slot; 15] = [
    slot(
        ffi::Py_tp_new,
        with_first!(ffi::PyTypeObject, buffer_new) as *mut c_void,
    ),
    slot(
        ffi::Py_tp_dealloc,
        bufferkit::ffi::dealloc::<Buffer> as *mut c_void,
    ),
    slot(
        ffi::Py_bf_getbuffer,
        bufferkit::ffi::getbuffer::<Buffer> as *mut c_void,
    ),
    slot(
        ffi::Py_bf_releasebuffer,
        bufferkit::ffi::releasebuffer::<Buffer> as *mut c_void,
    ),
    slot(ffi::Py_tp_repr, unary!(Buffer, buffer_repr) as *mut c_void),
    // len() asks sq_length first (PyObject_Size), then the mapping protocol: both, as
    // memoryview has, so that len() takes one call.
    slot(
        ffi::Py_sq_length,
        length!(Buffer, common::len) as *mut c_void,
    ),
    slot(
        ffi::Py_mp_length,
        length!(Buffer, common::len) as *mut c_void,
    ),
    // SAFETY: only the address of the static is taken; CPython reads the table during
    // PyType_FromModuleAndSpec, on one thread, and never writes it.
    slot(ffi::Py_tp_getset, (&raw mut BUFFER_GETSET).cast()),
    // SAFETY: as above.
    slot(ffi::Py_tp_methods, (&raw mut BUFFER_METHODS).cast()),
    // SAFETY: as above.
    slot(ffi::Py_tp_members, (&raw mut BUFFER_MEMBERS).cast()),
    // No Py_tp_hash: with tp_richcompare defined, PyType_Ready sets `__hash__ = None`, so a
    // Buffer is unhashable, as bytearray (its contents may change, and equality is by value).
    slot(
        ffi::Py_tp_richcompare,
        richcompare!(Buffer, common::compare) as *mut c_void,
    ),
    slot(ffi::Py_tp_doc, DOC.as_ptr().cast_mut().cast()),
    // abi3t: how Object::create finds this type under a Python subclass.
    // 3.14+ only: `module::new_type` leaves it out on earlier versions.
    slot(
        ffi::Py_tp_vectorcall,
        vectorcall!(buffer_vectorcall) as *mut c_void,
    ),
    // (On builds other than abi3t an end marker: keep it last.)
    bufferkit::ffi::object::type_token_slot::<Buffer>(),
    SLOT_END,
];

const DOC: &core::ffi::CStr = c"Buffer(shape, format='B', *, order='C', readonly=False)
--

Fixed-size, zero-initialised memory that exports the buffer protocol.

shape is an int or a tuple of ints (() makes a 0-d Buffer); format any
single-item struct format ('B', '<i', 'd', '2h', ...); order 'C' or 'F'
decides the strides. Exports are counted (see exports): while any is
alive, close() and freeze() raise BufferError.";

/// The type's spec, for `PyType_FromModuleAndSpec`.
pub static mut BUFFER_SPEC: ffi::PyType_Spec = ffi::PyType_Spec {
    name: c"bufferkit.Buffer".as_ptr(),
    basicsize: Object::<Buffer>::BASICSIZE,
    itemsize: 0,
    flags: spec_flags(ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_BASETYPE | IMMUTABLE),
    // SAFETY: only the address of the static is taken (see BUFFER_SLOTS).
    slots: (&raw mut BUFFER_SLOTS).cast(),
};

// The value follows the object header at an alignment CPython's allocators provide.

// The slot table stores untyped pointers; these twins make the compiler check each signature.
const _: ffi::getbufferproc = bufferkit::ffi::getbuffer::<Buffer>;
const _: ffi::releasebufferproc = bufferkit::ffi::releasebuffer::<Buffer>;
const _: ffi::destructor = bufferkit::ffi::dealloc::<Buffer>;
