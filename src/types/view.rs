//! `bufferkit.View`: a zero-copy view of another object's buffer, with its layout or any
//! layout the caller gives, that keeps the base locked while it lives.
//!
//! Two old wishes in one type: the "ByteBufferSlice" of the PEP 3118 discussions (a slice of
//! another object's buffer that holds the base's lock) and PyPy's `newmemoryview` (any
//! format/shape/strides over existing memory, which `memoryview.cast` cannot express). The
//! bounds rule is `layout.rs`'s: a layout is accepted only if every byte it addresses lies in
//! the base's memory.
//!
//! # Ownership
//!
//! A View holds exactly one export of its *root* (the object whose memory it shows) for its
//! whole life, and re-exports parts of that memory. Views never chain: a View of a View, or a
//! slice of a slice, takes its own export of the root, so the cost of an export and the
//! memory a View holds do not grow with depth. That new export must describe the same memory
//! as the parent's (an exporter may in principle hand out different memory each time); if it
//! does not, the new View exports the parent View instead (its `base` is still the root).
//!
//! # Re-entrancy and threads
//!
//! Taking the root's export may run Python code (a `__buffer__`), which may release, slice or
//! drop the very View being sliced, from this thread or (the GIL being dropped meanwhile)
//! another. So nothing a View method reads from the parent survives that call as a borrow:
//! the root is held by a strong reference of the call's own, the parent's facts are copies,
//! and the parent is checked to be open again afterwards. The fields a method reads are fixed
//! at construction; the two that change (`source`, given back once, and `root`, dropped by the
//! collector) change only when no method can be running: after the counter closed with no
//! export, or when the object is unreachable.

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::ptr::{self, NonNull};

use pyo3_ffi as ffi;

use super::common::{
    self, getset_table, kwlist, method_table, slot, spec_flags, KwList, Shipped, IMMUTABLE,
    SLOT_END,
};
use crate::exporter::{BufferExporter, ExportCounter, Gil, Memory};
use crate::ffi::convert::{self, new_bool, new_int, new_str};
use crate::ffi::trampoline::{getter, length, noargs, onearg, unary, varkw, with_first};
use crate::ffi::{unwind, Borrowed, Error, Object, Owned, PyResult, This};
use crate::layout::{Format, Layout, Order};
use crate::request::flags;

/// The value inside a `bufferkit.View` object.
pub struct View {
    // INVARIANTS:
    // - `source` holds a filled export (obtained by PyObject_GetBuffer) of `root` or of a View
    //   of `root`, from construction until it is given back,
    //   exactly once, and only while the counter shows no export: by `release()` after the
    //   counter closed, by `tp_clear` after it closed the counter, or on drop with no export;
    // - while `source` holds the export, `block..block + block_len` lies inside the memory that
    //   export describes, and `layout` fits `block_len`; `held_readonly` is whether that
    //   export is read-only, copied so that no method reads `source`;
    // - `root` is a strong reference, dropped on drop or by `tp_clear` (which close the
    //   counter first: `root` is non-NULL while the counter is open); `guard` is NULL or a
    //   strong reference the collector is not shown (see `GcRefs`), dropped with `root`;
    // - `source` and `root` are only written while no method can read them: after the counter
    //   closed with no export (`release_source`), or when the object is unreachable (tp_clear,
    //   drop). Every other field is fixed at construction.
    source: UnsafeCell<Option<Box<ffi::Py_buffer>>>,
    root: UnsafeCell<*mut ffi::PyObject>,
    guard: UnsafeCell<*mut ffi::PyObject>,
    held_readonly: bool,
    gc: GcRefs,
    root_start: *mut u8,
    block: NonNull<u8>,
    block_len: usize,
    layout: Layout,
    counter: ExportCounter,
}

// SAFETY (Send/Sync are not implemented): a View lives inside a Python object; its raw
// pointers are strong references and addresses the invariants above govern, and it is only
// reached through that object.

/// Which of its references a View shows the garbage collector, decided once at construction
/// so that `tp_traverse` only visits (it must not allocate or call into Python).
#[derive(Clone, Copy, Debug)]
struct GcRefs {
    root: bool,
    export: bool,
}

// SAFETY: the one contract of `BufferExporter`. `memory()` returns `block`/`block_len` and
// `layout`, fixed at construction. The memory belongs to the root's export held in `source`,
// which is released only after the counter was closed (which refuses while exports are live)
// or when the View dies or is cleared by the GC (when no consumer can reach it: each export
// holds a reference to the View). Consumers write through raw pointers into the root's
// memory, which Rust never borrows.
unsafe impl BufferExporter for View {
    const ENDED: &'static str = "released";

    fn counter(&self) -> &ExportCounter {
        &self.counter
    }

    #[inline]
    fn memory(&self) -> Option<Memory<'_>> {
        Memory::new(self.block, self.block_len, &self.layout)
    }
}

impl Shipped for View {
    fn layout(&self) -> &Layout {
        &self.layout
    }
}

/// Where a new View's memory comes from: an export of the root, the block of it the View may
/// address, and the layout it starts from.
struct Source {
    // Boxed: a filled Py_buffer must not move (see `BufferView`).
    export: Box<ffi::Py_buffer>,
    // The View's `base`: the object the user named, or the root of the View the user named.
    // An exporter may hand out another object as `view->obj` (CPython 3.12+ gives a
    // `_buffer_wrapper` for classes with `__buffer__`), which is not what a user calls the
    // base.
    root: Owned,
    root_start: *mut u8,
    block: NonNull<u8>,
    block_len: usize,
    layout: Layout,
    readonly: bool,
}

impl Drop for Source {
    fn drop(&mut self) {
        // SAFETY: `export` is a filled view (Source is only made around one) and is released
        // once: moving it into a View forgets the Source (see `into_view`).
        unsafe { unwind::release_buffer(&mut *self.export) };
    }
}

impl Source {
    /// Acquires `base`'s buffer. For a View base, acquires the View's root instead and starts
    /// from the View's block and layout.
    fn acquire(gil: Gil<'_>, base: Borrowed<'_>, writable: bool) -> PyResult<Self> {
        match as_view(gil, base)? {
            Some(parent) => Self::of_view(parent, writable, parent.value.layout.clone()),
            None => Self::from_exporter(base, writable),
        }
    }

    /// A new export for a View of `parent` with `layout`, given relative to the parent's
    /// block: an export of the parent's root where that still addresses the parent's block,
    /// else of the parent itself; either way the root stays the base.
    fn of_view(parent: This<'_, View>, writable: bool, layout: Layout) -> PyResult<Self> {
        let layout = match Self::from_parent(parent, writable, layout)? {
            Ok(source) => return Ok(source),
            Err(layout) => layout,
        };
        let mut source = Self::from_exporter(parent.obj, writable)?;
        // The export just taken (of a View, by bufferkit's own slot) ran no Python code; the
        // parent is still open, since it exported.
        let value = parent.value;
        // The parent's first element is at the export's own offset in the new block.
        source.layout = sliced_against(
            &layout,
            &value.layout,
            source.layout.offset(),
            source.block_len,
        )?;
        source.root = value.root_ref()?;
        source.root_start = value.root_start;
        Ok(source)
    }

    fn from_exporter(base: Borrowed<'_>, writable: bool) -> PyResult<Self> {
        let guard = Holder::get(base, writable)?;
        let export = &guard.0;
        let ndim = export.ndim as usize;
        let format = if export.format.is_null() {
            Format::bytes()
        } else {
            // SAFETY: a non-NULL format is a C string valid while the export is held.
            let text = unsafe { core::ffi::CStr::from_ptr(export.format) }.to_owned();
            Format::new(text, export.itemsize as usize).map_err(common::layout_error)?
        };
        let shape: Vec<isize> = match (export.shape.is_null(), ndim) {
            // SAFETY: shape and strides are NULL or arrays of `ndim` entries valid while the
            // export is held (buffer.rst, "Buffer structure").
            (false, n) => unsafe { core::slice::from_raw_parts(export.shape, n) }.to_vec(),
            (true, 0) => Vec::new(),
            (true, _) => vec![export.len / export.itemsize],
        };
        let strides: Vec<isize> = if export.strides.is_null() {
            Layout::contiguous(format.clone(), &shape, Order::C)
                .map_err(common::layout_error)?
                .strides()
                .to_vec()
        } else {
            // SAFETY: as above.
            unsafe { core::slice::from_raw_parts(export.strides, shape.len()) }.to_vec()
        };
        // The block is the extent of the bytes the export addresses, [buf + lo, buf + hi).
        let (lo, hi) = guard.extent(base)?;
        let block_len = (hi - lo) as usize;
        let start = export.buf.cast::<u8>().wrapping_offset(lo);
        let block = NonNull::new(start).unwrap_or(NonNull::dangling());
        let layout = Layout::strided(format, &shape, &strides, -lo, block_len).map_err(|e| {
            Error::buffer_error(format!(
                "{} exported an inconsistent layout: {e}",
                base.type_name()
            ))
        })?;
        let readonly = export.readonly != 0;
        let export = guard.take();
        Ok(Self {
            export,
            root: Owned::from_borrowed(base),
            root_start: start,
            block,
            block_len,
            layout,
            readonly,
        })
    }

    /// A new export of `parent`'s root with `layout` (relative to the parent's block), if it
    /// addresses the parent's block (an exporter may hand out other memory each time);
    /// `Err(layout)`, the layout given back, if it does not.
    ///
    /// The root's getbuffer may run Python code that releases the parent (or drops every other
    /// reference to the root): the root is held by a reference of this call's own, nothing of
    /// the parent is borrowed across the call, and the parent must still be open after it.
    /// The new export is only taken, not described: the parent's layout already is.
    fn from_parent(
        parent: This<'_, View>,
        writable: bool,
        layout: Layout,
    ) -> PyResult<Result<Self, Layout>> {
        let value = common::open(parent)?;
        let root = value.root_ref()?;
        let fresh = Holder::get(root.borrow(), writable || !value.held_readonly)?;
        // Re-validated: `value`'s fields are fixed at construction, but the parent may have
        // been released meanwhile, and slicing a released View is refused.
        let value = common::open(parent)?;
        let (lo, hi) = fresh.extent(root.borrow())?;
        let buf = fresh.0.buf as isize;
        let block = value.block.as_ptr() as isize;
        // Pointers compared as addresses: `buf + lo` and `buf + hi` are in the address space
        // (`extent` checked), and so is the parent's block.
        let inside = buf.checked_add(lo).is_some_and(|start| start <= block)
            && buf.checked_add(hi).is_some_and(|end| {
                block
                    .checked_add(value.block_len as isize)
                    .is_some_and(|block_end| block_end <= end)
            });
        if !inside {
            return Ok(Err(layout));
        }
        let readonly = value.counter.snapshot().readonly() || fresh.0.readonly != 0;
        Ok(Ok(Self {
            export: fresh.take(),
            root,
            root_start: value.root_start,
            block: value.block,
            block_len: value.block_len,
            layout,
            readonly,
        }))
    }
}

/// Owns a filled `Py_buffer` until it is taken.
struct Holder(Box<ffi::Py_buffer>);

impl Holder {
    /// `base`'s export for the full request (writable or read-only), refused unless a View
    /// can re-export it: no suboffsets, sane ndim, itemsize and len.
    fn get(base: Borrowed<'_>, writable: bool) -> PyResult<Self> {
        let request = if writable {
            flags::FULL
        } else {
            flags::FULL_RO
        };
        let mut export = Box::new(ffi::Py_buffer::new());
        // SAFETY: `base` is live, the GIL is held, `export` is a writable Py_buffer at an
        // address that does not change until it is released.
        if unsafe { unwind::get_buffer(base.as_ptr(), &mut *export, request) } == -1 {
            return Err(Error::Raised);
        }
        // From here the export is released on every exit.
        let held = Self(export);
        let export = &held.0;
        if !export.suboffsets.is_null() {
            return Err(Error::buffer_error(format!(
                "View cannot re-export {}: its buffer has suboffsets (a PIL-style layout)",
                base.type_name()
            )));
        }
        let ndim = usize::try_from(export.ndim).unwrap_or(usize::MAX);
        if ndim > crate::layout::MAX_NDIM || export.itemsize < 1 || export.len < 0 {
            return Err(Error::buffer_error(format!(
                "{} exported an invalid buffer (ndim {}, itemsize {}, len {})",
                base.type_name(),
                export.ndim,
                export.itemsize,
                export.len
            )));
        }
        Ok(held)
    }

    /// `(lo, hi)`: the bytes the export addresses, `[buf + lo, buf + hi)`, read from its shape
    /// and strides (C order where it has none) without allocating; a `BufferError` naming
    /// `base` if they cannot be expressed in `isize`.
    fn extent(&self, base: Borrowed<'_>) -> PyResult<(isize, isize)> {
        let export = &self.0;
        let ndim = export.ndim as usize; // checked by `get`
        let dim = |i: usize| -> isize {
            if export.shape.is_null() {
                // One dimension of len / itemsize items, or a scalar (ndim 0).
                export.len / export.itemsize
            } else {
                // SAFETY: a non-NULL shape has `ndim` entries, valid while the export is
                // held (buffer.rst, "Buffer structure"); i < ndim.
                unsafe { *export.shape.add(i) }
            }
        };
        let beyond = || {
            Error::buffer_error(format!(
                "{} exported a layout beyond the address space",
                base.type_name()
            ))
        };
        if (0..ndim).any(|i| dim(i) == 0) {
            return Ok((0, 0));
        }
        let (mut lo, mut hi) = (0isize, export.itemsize);
        let mut c_stride = export.itemsize;
        for i in (0..ndim).rev() {
            let n = dim(i);
            if n < 0 {
                return Err(beyond());
            }
            let stride = if export.strides.is_null() {
                c_stride
            } else {
                // SAFETY: as for shape.
                unsafe { *export.strides.add(i) }
            };
            let span = (n - 1).checked_mul(stride).ok_or_else(beyond)?;
            if span < 0 {
                lo = lo.checked_add(span).ok_or_else(beyond)?;
            } else {
                hi = hi.checked_add(span).ok_or_else(beyond)?;
            }
            c_stride = c_stride.checked_mul(n).ok_or_else(beyond)?;
        }
        Ok((lo, hi))
    }

    fn take(self) -> Box<ffi::Py_buffer> {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again (ManuallyDrop), so the box moves out
        // exactly once; moving a Box does not move the Py_buffer it points to.
        unsafe { ptr::read(&this.0) }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // SAFETY: the held view is filled and released once (`take` skips this).
        unsafe { unwind::release_buffer(&mut *self.0) };
    }
}

/// `Some(view)` if `obj` is a bufferkit View (or subclass) of this interpreter's module.
fn as_view<'py>(gil: Gil<'py>, obj: Borrowed<'py>) -> PyResult<Option<This<'py, View>>> {
    // SAFETY: the type of a live object is live; the GIL is held.
    if unsafe { crate::ffi::module::module_of_type(obj.type_ptr()) }.is_none() {
        return Ok(None);
    }
    let view_type = view_type_of(obj.type_ptr())?;
    // SAFETY: both are live types; PyType_IsSubtype only reads their MROs.
    if unsafe { ffi::PyType_IsSubtype(obj.type_ptr(), view_type) } == 0 {
        return Ok(None);
    }
    // SAFETY: `obj` is an instance of View (or a subclass), whose instances are `Object<View>`.
    let value = unsafe { Object::<View>::value_of(obj.as_ptr()) };
    Ok(Some(This { gil, obj, value }))
}

/// The View type of the bufferkit module that made `tp` (or its bufferkit base).
fn view_type_of(tp: *mut ffi::PyTypeObject) -> PyResult<*mut ffi::PyTypeObject> {
    // SAFETY: `tp` is the live type of a live object and the GIL is held.
    let state = unsafe { crate::module::state_of_type(tp) }?;
    Ok(state.view_type.cast())
}

/// Builds a View of the given type from a source.
fn make(
    gil: Gil<'_>,
    tp: *mut ffi::PyTypeObject,
    source: Source,
    readonly: bool,
) -> PyResult<Owned> {
    let source = core::mem::ManuallyDrop::new(source);
    // SAFETY: `source` is never used again (ManuallyDrop); each field is moved out once.
    let (export, layout, root) = unsafe {
        (
            ptr::read(&source.export),
            ptr::read(&source.layout),
            ptr::read(&source.root),
        )
    };
    let (gc, guard) = gc_refs(root.borrow(), &export);
    let value = View {
        held_readonly: source.readonly,
        source: UnsafeCell::new(Some(export)),
        // The View's own strong reference to the root, independent of the export's.
        root: UnsafeCell::new(root.into_raw()),
        guard: UnsafeCell::new(guard.map_or(ptr::null_mut(), Owned::into_raw)),
        gc,
        root_start: source.root_start,
        block: source.block,
        block_len: source.block_len,
        layout,
        counter: ExportCounter::new(readonly),
    };
    // SAFETY: `tp` is View or a subclass (callers pass the type `tp_new` got or the module's
    // View type), whose instances are `Object<View>`; the GIL is held. If creation fails,
    // `value` is dropped, releasing the export.
    unsafe { Object::create(gil, tp, value) }
}

impl Drop for View {
    fn drop(&mut self) {
        if self.counter.count() != 0 {
            // Each export holds a reference to the View, so this is a consumer that gave its
            // reference back before its export. Its pointer must stay valid: the root's export
            // and the references are leaked rather than given back under it.
            return;
        }
        self.release_source();
        self.drop_refs();
    }
}

impl View {
    /// A strong reference to the root, for a call that may run Python code.
    fn root_ref(&self) -> PyResult<Owned> {
        // SAFETY: `root` is only written when no method can run (invariants): a View a method
        // reaches holds a live strong reference there, or NULL after tp_clear.
        let root = unsafe { *self.root.get() };
        // SAFETY: as above; the GIL is held for the method call.
        let root = unsafe { Borrowed::from_ptr(root) }
            .ok_or_else(|| Error::value_error("operation on released View"))?;
        Ok(Owned::from_borrowed(root))
    }

    /// Gives the export back if still held.
    ///
    /// Callers guarantee exclusivity: the counter is closed with no export live, or the View
    /// is being dropped with no export live.
    fn release_source(&self) {
        // SAFETY: exclusive access to `source` (see above, and the invariants).
        let held = unsafe { (*self.source.get()).take() };
        if let Some(mut export) = held {
            // SAFETY: a filled export, released once: it was taken out of `source`.
            unsafe { unwind::release_buffer(&mut *export) };
        }
    }

    /// Drops the strong references (`root`, `guard`) once the export was given back.
    ///
    /// Callers guarantee exclusivity, as for [`release_source`](Self::release_source), and
    /// that the export was given back (the guard protects the export's memoryview).
    fn drop_refs(&self) {
        for field in [&self.root, &self.guard] {
            // SAFETY: exclusive access (caller).
            let obj = unsafe { core::mem::replace(&mut *field.get(), ptr::null_mut()) };
            if !obj.is_null() {
                // SAFETY: our strong reference; the GIL is held (tp_clear, tp_dealloc).
                unsafe { unwind::decref(obj) };
            }
        }
    }
}

/// `View(base, *, offset=0, format=None, shape=None, strides=None, readonly=None)`
fn view_new(
    gil: Gil<'_>,
    subtype: *mut ffi::PyTypeObject,
    args: Borrowed<'_>,
    kwargs: Option<Borrowed<'_>>,
) -> PyResult<Owned> {
    let mut names = kwlist([
        c"base",
        c"offset",
        c"format",
        c"shape",
        c"strides",
        c"readonly",
    ]);
    let mut base: *mut ffi::PyObject = ptr::null_mut();
    let mut offset: *mut ffi::PyObject = ptr::null_mut();
    let mut format: *mut ffi::PyObject = ptr::null_mut();
    let mut shape: *mut ffi::PyObject = ptr::null_mut();
    let mut strides: *mut ffi::PyObject = ptr::null_mut();
    let mut readonly: *mut ffi::PyObject = ptr::null_mut();
    // SAFETY: `args` is a tuple and `kwargs` NULL or a dict, borrowed for the call; every
    // converter is O, storing a borrowed PyObject*.
    let parsed = unsafe {
        ffi::PyArg_ParseTupleAndKeywords(
            args.as_ptr(),
            kwargs.map_or(ptr::null_mut(), Borrowed::as_ptr),
            c"O|$OOOOO:View".as_ptr(),
            names.as_mut_ptr() as KwList,
            &mut base,
            &mut offset,
            &mut format,
            &mut shape,
            &mut strides,
            &mut readonly,
        )
    };
    if parsed == 0 {
        return Err(Error::Raised);
    }
    // SAFETY: (all six) NULL or borrowed references valid for this call.
    let base = unsafe { Borrowed::from_ptr(base) }.ok_or(Error::Raised)?;
    let arg = |p: *mut ffi::PyObject| -> Option<Borrowed<'_>> {
        // SAFETY: as above; None counts as not given.
        unsafe { Borrowed::from_ptr(p) }.filter(|o| o.as_ptr() != unsafe { ffi::Py_None() })
    };
    let (offset, format, shape, strides, readonly) = (
        arg(offset),
        arg(format),
        arg(shape),
        arg(strides),
        arg(readonly),
    );
    let readonly = match readonly {
        None => None,
        // SAFETY: a live object; PyObject_IsTrue may run Python code and fail.
        Some(r) => match unsafe { ffi::PyObject_IsTrue(r.as_ptr()) } {
            -1 => return Err(Error::Raised),
            v => Some(v != 0),
        },
    };
    // SAFETY: reading the type's flags.
    if unsafe { ffi::PyObject_CheckBuffer(base.as_ptr()) } == 0 {
        return Err(Error::type_error(format!(
            "View() argument 'base' must support the buffer protocol, not {}",
            base.type_name()
        )));
    }
    // Ask for a read-only export first: every exporter serves it, and it says whether the
    // base is writable. Only a caller who insists on writing asks again with PyBUF_WRITABLE
    // (an exporter may grant writes only when asked).
    let mut source = Source::acquire(gil, base, false)?;
    if readonly == Some(false) && source.readonly {
        drop(source);
        source = Source::acquire(gil, base, true).map_err(|_| {
            // SAFETY: the GIL is held; the exporter's own refusal is replaced by ours.
            unsafe { ffi::PyErr_Clear() };
            Error::buffer_error(format!(
                "View(readonly=False) needs a writable base, but {} is read-only",
                base.type_name()
            ))
        })?;
    }
    let base_readonly = source.readonly;
    if readonly == Some(false) && base_readonly {
        return Err(Error::buffer_error(format!(
            "View(readonly=False) needs a writable base, but {} is read-only",
            base.type_name()
        )));
    }
    let readonly = readonly.unwrap_or(base_readonly) || base_readonly;
    let relayout = offset.is_some() || format.is_some() || shape.is_some() || strides.is_some();
    let source = if relayout {
        relayout_source(source, base, offset, format, shape, strides)?
    } else {
        source
    };
    make(gil, subtype, source, readonly)
}

/// Applies explicit layout arguments to a contiguous base.
fn relayout_source(
    mut source: Source,
    base: Borrowed<'_>,
    offset: Option<Borrowed<'_>>,
    format: Option<Borrowed<'_>>,
    shape: Option<Borrowed<'_>>,
    strides: Option<Borrowed<'_>>,
) -> PyResult<Source> {
    let parent = &source.layout;
    if !(parent.is_c_contiguous() || parent.is_f_contiguous()) {
        return Err(Error::value_error(format!(
            "a View with offset, format, shape or strides needs a contiguous base, but {} is not contiguous",
            base.type_name()
        )));
    }
    // The base's items as one block: a contiguous layout covers [first item, + nbytes).
    let block_len = parent.nbytes() as usize;
    let block = NonNull::new(source.block.as_ptr().wrapping_offset(parent.offset()))
        .unwrap_or(source.block);
    let offset = match offset {
        Some(o) => convert::index_arg(o, &|| "offset".into())?,
        None => 0,
    };
    let format = match format {
        Some(f) => common::parse_format(f)?,
        None => parent.format().clone(),
    };
    let itemsize = format.itemsize();
    let shape = match shape {
        Some(s) => common::parse_shape(s)?,
        None if strides.is_some() => {
            return Err(Error::value_error(
                "strides need a shape: pass shape= as well",
            ));
        }
        None => {
            if offset < 0 || offset as usize > block_len {
                return Err(common::layout_error(crate::layout::LayoutError::Offset {
                    offset,
                    block_len,
                }));
            }
            vec![(block_len as isize - offset) / itemsize]
        }
    };
    let layout = match strides {
        Some(s) => {
            let strides = parse_strides(s)?;
            Layout::strided(format, &shape, &strides, offset, block_len)
        }
        None => Layout::contiguous(format, &shape, Order::C).and_then(|c| {
            Layout::strided(c.format().clone(), &shape, c.strides(), offset, block_len)
        }),
    }
    .map_err(common::layout_error)?;
    source.block = block;
    source.block_len = block_len;
    source.layout = layout;
    Ok(source)
}

fn parse_strides(obj: Borrowed<'_>) -> PyResult<Vec<isize>> {
    // SAFETY: `obj` is live and the GIL is held.
    let is_seq =
        unsafe { ffi::PyTuple_Check(obj.as_ptr()) != 0 || ffi::PyList_Check(obj.as_ptr()) != 0 };
    if !is_seq {
        return Err(Error::type_error(format!(
            "strides must be a tuple of ints, not {}",
            obj.type_name()
        )));
    }
    convert::index_items(obj, "strides")
}

/// `v[a:b:c]`, `v[s0, s1, ...]`: a new View of the same root.
fn view_subscript(this: This<'_, View>, key: Borrowed<'_>) -> PyResult<Owned> {
    let value = common::open(this)?;
    let layout = &value.layout;
    let keys: Vec<Borrowed<'_>>;
    let tuple_holder;
    // SAFETY: `key` is live and the GIL is held.
    if unsafe { ffi::PyTuple_Check(key.as_ptr()) } != 0 {
        // SAFETY: a tuple; its items are borrowed from it, which we keep alive.
        let n = unsafe { ffi::PyTuple_Size(key.as_ptr()) };
        tuple_holder = Owned::from_borrowed(key);
        keys = (0..n)
            // SAFETY: 0 <= i < n; borrowed from the tuple, which `tuple_holder` keeps alive.
            .filter_map(|i| unsafe {
                Borrowed::from_ptr(ffi::PyTuple_GetItem(tuple_holder.as_ptr(), i))
            })
            .collect();
    } else {
        keys = vec![key];
    }
    if keys.len() > layout.ndim() {
        return Err(Error::type_error(format!(
            "too many indices: {} slices for a {}-dimensional View",
            keys.len(),
            layout.ndim()
        )));
    }
    let mut slices = Vec::with_capacity(keys.len());
    for (dim, k) in keys.iter().enumerate() {
        // SAFETY: `k` is live.
        if unsafe { ffi::PySlice_Check(k.as_ptr()) } == 0 {
            return Err(Error::type_error(format!(
                "View indices must be slices, not {} (index items with memoryview(view)[...])",
                k.type_name()
            )));
        }
        let (mut start, mut stop, mut step) = (0, 0, 0);
        // SAFETY: `k` is a slice; the out-pointers are valid.
        if unsafe { ffi::PySlice_Unpack(k.as_ptr(), &mut start, &mut stop, &mut step) } < 0 {
            return Err(Error::Raised);
        }
        // SAFETY: plain arithmetic on the unpacked values.
        let len =
            unsafe { ffi::PySlice_AdjustIndices(layout.shape()[dim], &mut start, &mut stop, step) };
        slices.push((start, step, len));
    }
    // `PySlice_Unpack` ran the slices' `__index__`, which may have released this View: `from_parent`
    // checks again. `layout` is fixed at construction, so it is still this View's.
    let sliced = layout.sliced(&slices).map_err(common::layout_error)?;
    let readonly = value.counter.snapshot().readonly();
    let source = Source::of_view(this, false, sliced)?;
    let view_type = view_type_of(this.obj.type_ptr())?;
    make(this.gil, view_type, source, readonly)
}

/// `sliced`, expressed relative to a block in which `parent`'s first element is at
/// `first_offset`.
fn sliced_against(
    sliced: &Layout,
    parent: &Layout,
    first_offset: isize,
    block_len: usize,
) -> PyResult<Layout> {
    let offset = sliced.offset() - parent.offset() + first_offset;
    Layout::strided(
        sliced.format().clone(),
        sliced.shape(),
        sliced.strides(),
        offset,
        block_len,
    )
    .map_err(common::layout_error)
}

fn view_release(this: This<'_, View>) -> PyResult<Owned> {
    let closed_now = this
        .value
        .counter
        .close(this.gil)
        .map_err(|e| common::exported_error("release", e.0))?;
    if closed_now {
        // The counter is closed with nothing exported: `source` is ours alone.
        this.value.release_source();
    }
    Ok(convert::none())
}

/// `View.__reduce_ex__(protocol)`: refuses. A View is a window on another object's memory;
/// a pickled copy would silently stop being one. Pickle `Buffer.from_buffer_copy(view)`.
fn view_reduce_ex(this: This<'_, View>, _protocol: Borrowed<'_>) -> PyResult<Owned> {
    Err(Error::type_error(format!(
        "cannot pickle '{}' object: it views another object's memory; pickle \
         bufferkit.Buffer.from_buffer_copy(view) for a copy",
        this.obj.type_name()
    )))
}

fn view_exit(
    this: This<'_, View>,
    _args: Borrowed<'_>,
    _kwargs: Option<Borrowed<'_>>,
) -> PyResult<Owned> {
    view_release(this)
}

fn view_base(this: This<'_, View>) -> PyResult<Owned> {
    let value = common::open(this)?;
    // SAFETY: open, so `root` is a live strong reference (invariants).
    let root = unsafe { *value.root.get() };
    // SAFETY: as above.
    match unsafe { Borrowed::from_ptr(root) } {
        Some(root) => Ok(Owned::from_borrowed(root)),
        None => Ok(convert::none()),
    }
}

fn view_offset(this: This<'_, View>) -> PyResult<Owned> {
    let value = common::open(this)?;
    let first = value.block.as_ptr().wrapping_offset(value.layout.offset());
    new_int((first as isize).wrapping_sub(value.root_start as isize))
}

fn view_released(this: This<'_, View>) -> PyResult<Owned> {
    new_bool(this.value.counter.snapshot().closed())
}

fn view_repr(this: This<'_, View>) -> PyResult<Owned> {
    let name = common::qualified_type_name(this.obj)?;
    let state = this.value.counter.snapshot();
    if state.closed() {
        return new_str(&format!("<released {name}>"));
    }
    // SAFETY: open, so `root` is live.
    let root = unsafe { Borrowed::from_ptr(*this.value.root.get()) }
        .map_or_else(|| "None".into(), Borrowed::type_name);
    let layout = &this.value.layout;
    new_str(&format!(
        "<{name} of {root} shape={} strides={} format='{}' offset={} readonly={} exports={}>",
        common::shape_text(layout.shape()),
        common::shape_text(layout.strides()),
        layout.format().as_str(),
        (this.value.block.as_ptr().wrapping_offset(layout.offset()) as isize)
            .wrapping_sub(this.value.root_start as isize),
        if state.readonly() { "True" } else { "False" },
        state.count()
    ))
}

/// Whether the running CPython's garbage collector may clear a memoryview that still has
/// exports. Before the fix of gh-77894 (3.12.7, and every 3.13) `memory_clear` released such
/// a memoryview anyway, and a View of a memoryview in a garbage cycle is exactly that case.
fn memoryview_clear_is_safe() -> bool {
    #[cfg(Py_3_11)]
    {
        // SAFETY: Py_Version is a constant the interpreter exports (3.11+, limited API).
        let version = unsafe { ffi::Py_Version };
        version >= 0x030C_07F0 // 3.12.7 final
    }
    #[cfg(not(Py_3_11))]
    {
        false
    }
}

/// Which references the collector may see, and the reference it must not see, for a View of
/// `root` holding `export`. Decided once, here, so that `tp_traverse` only reads two flags.
///
/// Before the fix of gh-77894 (CPython 3.12.7; every 3.13), a memoryview's `tp_clear` gave its
/// buffer back even while exported. A View holding an export of such a memoryview must then
/// keep the collector from clearing it:
/// - a memoryview root or export object is not shown (a cycle through it is leaked, not
///   crashed);
/// - a memoryview that the export object holds (CPython 3.12's `_buffer_wrapper` holds the
///   memoryview `__buffer__` returned) is kept by a reference the collector is not shown, the
///   guard, so that the export object itself can still be shown and a cycle through it
///   collected. The memoryviews are found through the export object's own `tp_traverse`, as
///   `gc.get_referents` finds them, not by a type name.
fn gc_refs(root: Borrowed<'_>, export: &ffi::Py_buffer) -> (GcRefs, Option<Owned>) {
    let is_memoryview = |obj: *mut ffi::PyObject| {
        // SAFETY: `obj` is a live strong reference; only its type is read.
        !obj.is_null() && unsafe { ffi::PyMemoryView_Check(obj) } != 0
    };
    if memoryview_clear_is_safe() {
        return (
            GcRefs {
                root: true,
                export: true,
            },
            None,
        );
    }
    let gc = GcRefs {
        root: !is_memoryview(root.as_ptr()),
        export: !is_memoryview(export.obj),
    };
    let guard = if gc.export && export.obj != root.as_ptr() && !export.obj.is_null() {
        // SAFETY: `export.obj` is the live object the export holds a reference to.
        unsafe { held_memoryview(export.obj) }
    } else {
        None
    };
    (gc, guard)
}

/// The first memoryview `obj` references, as its type's `tp_traverse` reports it.
///
/// # Safety
///
/// `obj` is live and the GIL is held.
unsafe fn held_memoryview(obj: *mut ffi::PyObject) -> Option<Owned> {
    unsafe extern "C" fn find(o: *mut ffi::PyObject, arg: *mut c_void) -> c_int {
        // SAFETY: the collector protocol passes live objects; `arg` is the `found` below.
        if unsafe { ffi::PyMemoryView_Check(o) } != 0 {
            // SAFETY: `arg` points to the `*mut PyObject` of `held_memoryview`'s frame.
            unsafe { *arg.cast::<*mut ffi::PyObject>() = o };
            return 1;
        }
        0
    }
    // SAFETY: `obj` is live (caller); PyType_GetSlot reads its type's slot (static types
    // included, 3.10+: bufferkit's 3.9 build is not limited and reads the same field).
    let traverse = unsafe { ffi::PyType_GetSlot(ffi::Py_TYPE(obj), ffi::Py_tp_traverse) };
    if traverse.is_null() {
        return None;
    }
    // SAFETY: the tp_traverse slot holds a `traverseproc`.
    let traverse: ffi::traverseproc = unsafe { core::mem::transmute(traverse) };
    let mut found: *mut ffi::PyObject = ptr::null_mut();
    // SAFETY: tp_traverse only calls `find` on the object's references (gcsupport.rst: it must
    // not run Python code); `found` outlives the call.
    unsafe { traverse(obj, find, (&raw mut found).cast()) };
    // SAFETY: a live object `obj` references, kept alive by it for this call.
    unsafe { Borrowed::from_ptr(found) }.map(Owned::from_borrowed)
}

/// `tp_traverse`: the root reference and the export's reference, as [`gc_refs`] decided.
fn view_traverse(value: &View, visit: ffi::visitproc, arg: *mut c_void) -> c_int {
    // SAFETY: traverse runs with the GIL held (or the world stopped); `source` and `root` are
    // only written by tp_clear, drop and `release_source`, none of which runs meanwhile
    // (`release_source` takes the export out before it calls into Python).
    let (root, export_obj) = unsafe {
        (
            *value.root.get(),
            (*value.source.get())
                .as_ref()
                .map_or(ptr::null_mut(), |b| b.obj),
        )
    };
    let shown = [
        if value.gc.root { root } else { ptr::null_mut() },
        if value.gc.export {
            export_obj
        } else {
            ptr::null_mut()
        },
    ];
    for obj in shown {
        if !obj.is_null() {
            // SAFETY: a strong reference the View owns; `visit` is the GC's callback.
            let r = unsafe { visit(obj, arg) };
            if r != 0 {
                return r;
            }
        }
    }
    0
}

/// `tp_clear`: drops the references that may form a cycle, unless the View is still exported.
///
/// The collector clears the members of a garbage cycle in no set order, and a consumer in the
/// same cycle (a memoryview of this View, say) may still read through its export until its own
/// `tp_clear` or deallocation gives it back. So a View with live exports gives nothing back:
/// the cycle is broken at those consumers instead, and the View releases the root's export
/// when it is deallocated.
fn view_clear(gil: Gil<'_>, value: &View) {
    if value.counter.close(gil).is_err() {
        return;
    }
    value.release_source();
    value.drop_refs();
}

impl crate::ffi::Collectable for View {
    fn traverse(&self, visit: ffi::visitproc, arg: *mut c_void) -> c_int {
        view_traverse(self, visit, arg)
    }

    fn clear(&self, gil: Gil<'_>) {
        view_clear(gil, self);
    }
}

static mut VIEW_GETSET: [ffi::PyGetSetDef; 16] = getset_table!(
    View,
    [
        entry(
            c"base",
            getter!(View, view_base),
            c"The object whose memory the View shows (the root: never a View)."
        ),
        entry(
            c"offset",
            getter!(View, view_offset),
            c"Where element (0, ..., 0) lies, in bytes from the start of the base's memory."
        ),
        entry(
            c"released",
            getter!(View, view_released),
            c"Whether release() was called."
        ),
    ]
);

static mut VIEW_METHODS: [ffi::PyMethodDef; 7] = method_table!(
    View,
    [
        method(
            c"release",
            ffi::PyMethodDefPointer { PyCFunction: noargs!(View, view_release) },
            ffi::METH_NOARGS,
            c"release($self, /)\n--\n\nGive the base's buffer back: the base is unlocked and the View unusable.\n\nRaises BufferError while the View itself is exported; does nothing if\nalready released.",
        ),
        method(
            c"__exit__",
            ffi::PyMethodDefPointer { PyCFunctionWithKeywords: varkw!(View, view_exit) },
            ffi::METH_VARARGS | ffi::METH_KEYWORDS,
            c"__exit__($self, /, *exc_info)\n--\n\nrelease() the View.",
        ),
        method(
            c"__reduce_ex__",
            ffi::PyMethodDefPointer { PyCFunction: onearg!(View, view_reduce_ex) },
            ffi::METH_O,
            c"__reduce_ex__($self, protocol, /)\n--\n\nViews do not pickle (TypeError): pickle Buffer.from_buffer_copy(view).",
        ),
    ]
);

static mut VIEW_SLOTS: [ffi::PyType_Slot; 13] = [
    slot(
        ffi::Py_tp_new,
        with_first!(ffi::PyTypeObject, view_new) as *mut c_void,
    ),
    slot(
        ffi::Py_tp_dealloc,
        crate::ffi::dealloc::<View> as *mut c_void,
    ),
    slot(
        ffi::Py_tp_traverse,
        crate::ffi::tp_traverse::<View> as *mut c_void,
    ),
    slot(
        ffi::Py_tp_clear,
        crate::ffi::tp_clear::<View> as *mut c_void,
    ),
    slot(
        ffi::Py_bf_getbuffer,
        crate::ffi::getbuffer::<View> as *mut c_void,
    ),
    slot(
        ffi::Py_bf_releasebuffer,
        crate::ffi::releasebuffer::<View> as *mut c_void,
    ),
    slot(ffi::Py_tp_repr, unary!(View, view_repr) as *mut c_void),
    slot(ffi::Py_mp_length, length!(View, common::len) as *mut c_void),
    slot(
        ffi::Py_mp_subscript,
        onearg!(View, view_subscript) as *mut c_void,
    ),
    // SAFETY: only the address of the static is taken; CPython reads the table during
    // PyType_FromModuleAndSpec, on one thread, and never writes it.
    slot(ffi::Py_tp_getset, (&raw mut VIEW_GETSET).cast()),
    // SAFETY: as above.
    slot(ffi::Py_tp_methods, (&raw mut VIEW_METHODS).cast()),
    slot(ffi::Py_tp_doc, DOC.as_ptr().cast_mut().cast()),
    SLOT_END,
];

const DOC: &core::ffi::CStr =
    c"View(base, *, offset=0, format=None, shape=None, strides=None, readonly=None)
--

A zero-copy view of another object's buffer that keeps the base locked
while it lives.

With no layout arguments the View re-exports the base's layout as it is
(also non-contiguous ones). With any of offset/format/shape/strides the base
must be contiguous; offset is where element (0, ..., 0) lies, in bytes from
the start of its memory; format defaults to the base's, shape to as many
items as fit after offset, strides (bytes, may be negative or zero) to C
order. A layout is accepted only if every byte it addresses lies inside the
base's memory. readonly=None follows the base; True makes a read-only View
of a writable base; False requires a writable base.

v[a:b:c] and v[s0, s1, ...] (slices only; read single items through
memoryview(v)[i]) are new Views of the same memory.";

/// The type's spec, for `PyType_FromModuleAndSpec`.
pub static mut VIEW_SPEC: ffi::PyType_Spec = ffi::PyType_Spec {
    name: c"bufferkit.View".as_ptr(),
    basicsize: Object::<View>::BASICSIZE,
    itemsize: 0,
    flags: spec_flags(
        ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_BASETYPE | ffi::Py_TPFLAGS_HAVE_GC | IMMUTABLE,
    ),
    // SAFETY: only the address of the static is taken (see VIEW_SLOTS).
    slots: (&raw mut VIEW_SLOTS).cast(),
};

// The slot table stores untyped pointers; these twins make the compiler check each signature.
const _: ffi::getbufferproc = crate::ffi::getbuffer::<View>;
const _: ffi::releasebufferproc = crate::ffi::releasebuffer::<View>;
const _: ffi::destructor = crate::ffi::dealloc::<View>;
const _: ffi::traverseproc = crate::ffi::tp_traverse::<View>;
const _: ffi::inquiry = crate::ffi::tp_clear::<View>;
