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
//! `View(obj)` takes one export of `obj` (its *root*) and keeps it in a [`HeldExport`], a small
//! object of its own. Every View made from that View (a slice, `View(view)`, a re-layout of
//! it) shares the same `HeldExport`, as CPython's memoryviews share one managed buffer: the
//! root is locked until the last of them is released, no View ever chains to another, and
//! making one takes no export and runs no Python code. The `HeldExport` is a Python object so
//! that the garbage collector sees the reference the export holds exactly once, however many
//! Views share it. It also keeps the module's View type, which slices and casts are made with,
//! so making them reads no module state (issue 15: the lookup cost more than the slice's own
//! checks).
//!
//! # Re-entrancy and threads
//!
//! What changes in a View after construction is the counter and the two references (`held`,
//! `root`): `held` is given up by `release()` once the counter closed with no export, and both
//! by `tp_clear` (under the same condition) or on deallocation. A method that reads `held`
//! does so where `release()` cannot interleave (`View::pinned`: a critical section on the
//! View on free-threaded builds, which `release()` takes too; the GIL otherwise, the read
//! running no Python code); every other field is fixed at construction.
//! Taking the root's export (`View(obj)` only) may run Python code, which may drop the
//! argument: the new `HeldExport` holds the root by a reference of its own before anything
//! runs.

use core::cell::{Cell, UnsafeCell};
use core::ffi::{c_int, c_void};
use core::ptr::{self, NonNull};

use pyo3_ffi as ffi;

use super::common::{
    self, getset_table, method_table, slot, spec_flags, Shipped, IMMUTABLE, SLOT_END,
};
use crate::trampoline::{
    fastkw, getter, length, noargs, onearg, richcompare, unary, varkw, vectorcall, with_first,
};
use bufferkit::exporter::{BufferExporter, ExportCounter, Gil, Memory};
use bufferkit::ffi::convert::{self, new_bool, new_int, new_str};
use bufferkit::ffi::{unwind, Borrowed, Error, FastArgs, Object, Owned, Result, This};
use bufferkit::layout::{Format, Layout, Order};
use bufferkit::request::flags;

/// The value inside a `bufferkit.View` object.
pub struct View {
    // INVARIANTS:
    // - `held` is a strong reference to a filled `HeldExport` from construction until it is
    //   given up, exactly once, and only while the counter shows no export: by `release()`
    //   after the counter closed, by `tp_clear` after it closed the counter, or on drop with
    //   no export; `block..block + block_len` lies inside the memory that export describes,
    //   and `layout` fits `block_len`;
    // - `root` is a strong reference, dropped by `tp_clear` (after the counter closed) or on
    //   drop: non-NULL while the counter is open;
    // - `held` is read only by the collector (the GIL held or the world stopped) and inside
    //   `pinned`, which `release()` cannot interleave with (a critical section on the View on
    //   free-threaded builds, the GIL otherwise); `root` changes only when the View is
    //   unreachable. Every other field is fixed.
    held: UnsafeCell<*mut ffi::PyObject>,
    root: UnsafeCell<*mut ffi::PyObject>,
    root_start: *mut u8,
    block: NonNull<u8>,
    block_len: usize,
    layout: Layout,
    counter: ExportCounter,
    /// Weak references to the object (`__weaklistoffset__`).
    weaklist: common::WeakList,
}

// SAFETY: the one contract of `BufferExporter`. `memory()` returns `block`/`block_len` and
// `layout`, fixed at construction. The memory belongs to the root's export that `held` keeps,
// which the View gives up only after its counter closed (which refuses while exports are
// live), or when it is deallocated with no export live; a `tp_clear` with exports live gives
// nothing up. Consumers write through raw pointers into the root's memory, which Rust never
// borrows.
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

/// One export of a root, shared by the Views made from one another: the value inside a
/// `bufferkit._bufferkit.HeldExport` object (not exported by the module).
pub struct HeldExport {
    // INVARIANTS: `export` is all zero (`obj` NULL) until `acquire` fills it, once, while the
    // new object is referenced by `acquire` alone; it is then a filled export, given back on
    // drop. It lives in the object's memory and never moves (some exporters point `shape` into
    // the Py_buffer itself). `gc`, `guard` and `class_guard` are written once, by `acquire`,
    // after the export is filled; the guards are NULL or strong references the collector is
    // not shown, dropped after the export is given back. `view_type` is a strong reference
    // from the object's creation by `acquire` (the collector is shown it), dropped after the
    // export. The all-zero value is valid (nothing held), which is what a `HeldExport` made
    // any other way holds.
    export: UnsafeCell<ffi::Py_buffer>,
    gc: Cell<GcRefs>,
    guard: Cell<*mut ffi::PyObject>,
    // The root's class, where CPython's release of the export looks a method up on it: see
    // `class_guard`.
    class_guard: Cell<*mut ffi::PyObject>,
    // Whether the root (the object asked for the export) is shown to the collector by the
    // Views holding it; decided with `gc`.
    root_shown: Cell<bool>,
    // The module's View type, which the family's slices and casts are made with: a strong
    // reference, written once by `acquire` (NULL before), shown to the collector, dropped
    // after the export is given back. Reading it needs no module state.
    view_type: Cell<*mut ffi::PyObject>,
}

/// Whether the collector is shown the export's object, decided once, so that `tp_traverse`
/// only reads a flag (it must not allocate or call into Python).
#[derive(Clone, Copy, Debug, Default)]
struct GcRefs {
    export: bool,
}

impl Drop for HeldExport {
    fn drop(&mut self) {
        let export = self.export.get_mut();
        if !export.obj.is_null() {
            // SAFETY: a filled export (invariants), given back once: on drop.
            unsafe { unwind::release_buffer(export) };
        }
        for guard in [
            self.guard.replace(ptr::null_mut()),
            self.class_guard.replace(ptr::null_mut()),
            self.view_type.replace(ptr::null_mut()),
        ] {
            if !guard.is_null() {
                // SAFETY: our strong reference, dropped after the export it protected; drop
                // runs in tp_dealloc with the GIL held.
                unsafe { unwind::decref(guard) };
            }
        }
    }
}

/// A reference to `root`'s class, kept from the collector for as long as the export, when
/// CPython's own release of the export will look `__release_buffer__` up on that class
/// (3.12+: the export's object is CPython's `_buffer_wrapper`, not the root).
///
/// Such a release may come while the collector tears the class and its base down together (a
/// class made per instance, any class at interpreter exit): the base's `tp_clear` frees its
/// methods but cannot invalidate the class's entries in CPython's method cache (the class's
/// weak reference in `__subclasses__` is already cleared), and the lookup returns a freed
/// function (valgrind: `lookup_maybe_method` after `type_clear`, found by `test_safety.py`).
/// A class referenced from outside the garbage is not torn down, and neither are its bases:
/// the class is freed once the export is given back, by the next collection. Bufferkit's own
/// slot (3.9–3.11) keeps the method itself instead (`types/exporter.rs`, `Held`).
fn class_guard(root: Borrowed<'_>, export: &ffi::Py_buffer) -> Option<Owned> {
    if export.obj.is_null() || export.obj == root.as_ptr() {
        return None;
    }
    let tp = root.type_ptr();
    // SAFETY: `tp` is the live type of a live object; PyType_GetFlags reads its flags.
    if unsafe { ffi::PyType_GetFlags(tp) } & ffi::Py_TPFLAGS_HEAPTYPE == 0 {
        return None; // a static type is never torn down by the collector
    }
    // SAFETY: as above.
    unsafe { Borrowed::from_ptr(tp.cast()) }.map(Owned::from_borrowed)
}

impl HeldExport {
    /// A new `HeldExport` (of type `tp`, the module's) of `base`'s buffer for the full request
    /// (writable or read-only), refused unless a View can re-export it: no suboffsets, a sane
    /// ndim, itemsize and len.
    fn acquire(gil: Gil<'_>, types: &Types, base: Borrowed<'_>, writable: bool) -> Result<Owned> {
        let tp = types.held.as_ptr().cast::<ffi::PyTypeObject>();
        let empty = HeldExport {
            // SAFETY: an all-zero Py_buffer is the empty one (`Py_buffer::new` is the same).
            export: UnsafeCell::new(ffi::Py_buffer::new()),
            gc: Cell::new(GcRefs::default()),
            guard: Cell::new(ptr::null_mut()),
            class_guard: Cell::new(ptr::null_mut()),
            root_shown: Cell::new(false),
            view_type: Cell::new(Owned::from_borrowed(types.view.borrow()).into_raw()),
        };
        // SAFETY: `tp` is the module's HeldExport type (caller), whose instances are
        // `Object<HeldExport>`; the GIL is held.
        let held = unsafe { Object::create(gil, tp, empty) }?;
        // SAFETY: `held` was made just above as an `Object<HeldExport>` and is kept alive by
        // the reference this function owns.
        let value = unsafe { Object::<HeldExport>::value_of(held.as_ptr()) };
        let request = if writable {
            flags::FULL
        } else {
            flags::FULL_RO
        };
        // SAFETY: `base` is live, the GIL is held; `export` is the object's empty Py_buffer,
        // which nothing else references and which does not move. On failure the exporter
        // leaves `obj` NULL, and dropping `held` gives nothing back.
        if unsafe { unwind::get_buffer(base.as_ptr(), value.export.get(), request) } == -1 {
            return Err(Error::Raised);
        }
        let export = value.export();
        if !export.suboffsets.is_null() {
            return Err(Error::buffer_error(format!(
                "View cannot re-export {}: its buffer has suboffsets (a PIL-style layout)",
                base.type_name()
            )));
        }
        let ndim = usize::try_from(export.ndim).unwrap_or(usize::MAX);
        if ndim > bufferkit::layout::MAX_NDIM || export.itemsize < 1 || export.len < 0 {
            return Err(Error::buffer_error(format!(
                "{} exported an invalid buffer (ndim {}, itemsize {}, len {})",
                base.type_name(),
                export.ndim,
                export.itemsize,
                export.len
            )));
        }
        // Without a shape only one dimension is implied (len / itemsize): more would make the
        // block `extent` computes larger than the memory the export describes.
        if export.shape.is_null() && ndim > 1 {
            return Err(Error::buffer_error(format!(
                "{} exported an invalid buffer (ndim {} without a shape)",
                base.type_name(),
                export.ndim
            )));
        }
        let (gc, root_shown, guard) = gc_refs(base, export);
        value.gc.set(gc);
        value.root_shown.set(root_shown);
        value
            .guard
            .set(guard.map_or(ptr::null_mut(), Owned::into_raw));
        value
            .class_guard
            .set(class_guard(base, export).map_or(ptr::null_mut(), Owned::into_raw));
        Ok(held)
    }

    /// The filled export.
    fn export(&self) -> &ffi::Py_buffer {
        // SAFETY: written only by `acquire` before any other reference exists, and by drop
        // (invariants): shared reads are sound.
        unsafe { &*self.export.get() }
    }

    /// `(lo, hi)`: the bytes the export addresses, `[buf + lo, buf + hi)`, from its shape and
    /// strides (C order where it has none); a `BufferError` naming `base` if they cannot be
    /// expressed in `isize`.
    fn extent(&self, base: Borrowed<'_>) -> Result<(isize, isize)> {
        let export = self.export();
        let ndim = export.ndim as usize; // checked by `acquire`
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
}

/// `tp_traverse` of a HeldExport: the export's reference, unless [`gc_refs`] hid it.
fn held_traverse(value: &HeldExport, visit: ffi::visitproc, arg: *mut c_void) -> c_int {
    let view_type = value.view_type.get();
    if !view_type.is_null() {
        // SAFETY: our strong reference to a type; `visit` is the GC's callback.
        let r = unsafe { visit(view_type, arg) };
        if r != 0 {
            return r;
        }
    }
    let obj = value.export().obj;
    if value.gc.get().export && !obj.is_null() {
        // SAFETY: the export's strong reference; `visit` is the GC's callback.
        return unsafe { visit(obj, arg) };
    }
    0
}

impl bufferkit::ffi::Collectable for HeldExport {
    fn traverse(&self, visit: ffi::visitproc, arg: *mut c_void) -> c_int {
        held_traverse(self, visit, arg)
    }

    /// Nothing: a `HeldExport` is only reachable from Views, which give it up when they are
    /// cleared (and never while they are exported). Its type registers no `tp_clear`.
    fn clear(&self, _gil: Gil<'_>) {}
}

/// Where a new View's memory comes from: the shared export of the root, the block of it the
/// View may address, and the layout it starts from.
struct Source {
    // A `HeldExport` object.
    held: Owned,
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

impl Source {
    /// `base`'s memory: for a View base, the View's own (its held export, block and layout),
    /// else a new export of `base`, held by a new HeldExport (`types`: the module's that made
    /// the View being built).
    fn acquire(gil: Gil<'_>, types: &Types, base: Borrowed<'_>, writable: bool) -> Result<Self> {
        match as_view(gil, types.view.as_ptr().cast(), base) {
            Some(parent) => Self::of_view(parent, parent.value.layout.clone()),
            None => Self::from_exporter(gil, types, base, writable),
        }
    }

    /// `parent`'s memory with `layout` (relative to the parent's block), sharing its export.
    fn of_view(parent: This<'_, View>, layout: Layout) -> Result<Self> {
        View::pinned(parent, |value, held, root| Self {
            held: Owned::from_borrowed(held),
            root: Owned::from_borrowed(root),
            root_start: value.root_start,
            block: value.block,
            block_len: value.block_len,
            layout,
            readonly: value.counter.snapshot().readonly(),
        })
    }

    /// The module's View type, which a View made from this source's export shares with the
    /// View the export was taken for: kept by the held export, so no module state is read.
    fn view_type(&self) -> Result<Owned> {
        // SAFETY: `held` is an `Object<HeldExport>` (see the field), kept alive by this source.
        let value = unsafe { Object::<HeldExport>::value_of(self.held.as_ptr()) };
        // SAFETY: NULL or the HeldExport's strong reference, alive while it is; a reference of
        // our own is taken before anything runs.
        unsafe { Borrowed::from_ptr(value.view_type.get()) }
            .map(Owned::from_borrowed)
            .ok_or_else(|| Error::system_error("a View's shared export has no View type"))
    }

    fn from_exporter(
        gil: Gil<'_>,
        types: &Types,
        base: Borrowed<'_>,
        writable: bool,
    ) -> Result<Self> {
        let held = HeldExport::acquire(gil, types, base, writable)?;
        // SAFETY: `acquire` returns an `Object<HeldExport>`, kept alive by `held`.
        let value = unsafe { Object::<HeldExport>::value_of(held.as_ptr()) };
        let export = value.export();
        let ndim = export.ndim as usize; // checked by `acquire`
        let format = if export.format.is_null() {
            Format::bytes()
        } else {
            // SAFETY: a non-NULL format is a C string valid while the export is held.
            let text = unsafe { core::ffi::CStr::from_ptr(export.format) };
            Format::from_c_str(text, export.itemsize as usize).map_err(common::layout_error)?
        };
        // Shape and strides are read in place (no copies: they live as long as the export).
        let one_dim = [export.len / export.itemsize];
        let shape: &[isize] = match (export.shape.is_null(), ndim) {
            // SAFETY: shape and strides are NULL or arrays of `ndim` entries valid while the
            // export is held (buffer.rst, "Buffer structure").
            (false, n) => unsafe { core::slice::from_raw_parts(export.shape, n) },
            (true, 0) => &[],
            (true, _) => &one_dim,
        };
        // The block is the extent of the bytes the export addresses, [buf + lo, buf + hi).
        let (lo, hi) = value.extent(base)?;
        let block_len = (hi - lo) as usize;
        let start = export.buf.cast::<u8>().wrapping_offset(lo);
        let block = NonNull::new(start).unwrap_or(NonNull::dangling());
        let layout = if export.strides.is_null() {
            Layout::contiguous_in(format, shape, Order::C, -lo, block_len)
        } else {
            // SAFETY: as above.
            let strides = unsafe { core::slice::from_raw_parts(export.strides, shape.len()) };
            Layout::strided(format, shape, strides, -lo, block_len)
        }
        .map_err(|e| {
            Error::buffer_error(format!(
                "{} exported an inconsistent layout: {e}",
                base.type_name()
            ))
        })?;
        let readonly = export.readonly != 0;
        Ok(Self {
            held,
            root: Owned::from_borrowed(base),
            root_start: start,
            block,
            block_len,
            layout,
            readonly,
        })
    }
}

/// `Some(view)` if `obj` is a View (or subclass) of the module whose View type is `view_type`.
///
/// A View of another instance of the module is an exporter like any other. Asking the View
/// type directly (a pointer compare, or a walk of `obj`'s MRO) is what keeps `View(bytearray)`
/// from looking for a bufferkit base in bytearray's type chain (180 instructions on abi3).
fn as_view<'py>(
    gil: Gil<'py>,
    view_type: *mut ffi::PyTypeObject,
    obj: Borrowed<'py>,
) -> Option<This<'py, View>> {
    let tp = obj.type_ptr();
    // SAFETY: both are live types (the caller holds a reference to `view_type`);
    // PyType_IsSubtype only reads their MROs.
    if tp != view_type && unsafe { ffi::PyType_IsSubtype(tp, view_type) } == 0 {
        return None;
    }
    // SAFETY: `obj` is an instance of View (or a subclass), whose instances are `Object<View>`.
    let value = unsafe { Object::<View>::value_of(obj.as_ptr()) };
    Some(This { gil, obj, value })
}

/// The View and HeldExport types of the bufferkit module that made `tp` (View or a subclass),
/// as references of our own: making a View may run Python code (the base's `__buffer__`),
/// which may clear the module (interpreter exit) and with it the module's references.
struct Types {
    view: Owned,
    held: Owned,
}

/// The module's [`Types`] for `tp`; ValueError once the module was cleared.
fn types_of(tp: *mut ffi::PyTypeObject) -> Result<Types> {
    // SAFETY: `tp` is the live type of a live object (or the type being called) and the GIL
    // is held.
    let state = unsafe { crate::module::state_of_type(tp) }?;
    // SAFETY: NULL, or the module's strong references, live while the state holds them:
    // each becomes a reference of our own here, before anything runs.
    let get = |p: *mut ffi::PyObject| unsafe { Borrowed::from_ptr(p) }.map(Owned::from_borrowed);
    match (get(state.view_type), get(state.held_type)) {
        (Some(view), Some(held)) => Ok(Types { view, held }),
        _ => Err(Error::value_error(crate::module::MODULE_CLEARED)),
    }
}

/// Builds a View of the given type from a source.
fn make(gil: Gil<'_>, tp: *mut ffi::PyTypeObject, source: Source, readonly: bool) -> Result<Owned> {
    let Source {
        held,
        root,
        root_start,
        block,
        block_len,
        layout,
        readonly: _,
    } = source;
    let value = View {
        held: UnsafeCell::new(held.into_raw()),
        // The View's own strong reference to the root, independent of the export's.
        root: UnsafeCell::new(root.into_raw()),
        root_start,
        block,
        block_len,
        layout,
        counter: ExportCounter::new(readonly),
        weaklist: common::WeakList::new(),
    };
    // SAFETY: `tp` is View or a subclass (callers pass the type `tp_new` or `tp_vectorcall`
    // got, or the module's View type, which a source's held export keeps), alive for the
    // call, whose instances are `Object<View>`; the GIL is held. If
    // creation fails, `value` is dropped, giving its references up.
    unsafe { Object::create(gil, tp, value) }
}

impl Drop for View {
    fn drop(&mut self) {
        // Weak references die first, whatever is given up below.
        // SAFETY: `weaklist` is a field of `self`, which, once something made a weak reference
        // to it, is the value of the `Object<View>` that `dealloc::<View>` is dropping.
        unsafe { self.weaklist.clear(self as *const Self) };
        if self.counter.count() != 0 {
            // Each export holds a reference to the View, so this is a consumer that gave its
            // reference back before its export. Its pointer must stay valid: the held export
            // and the references are leaked rather than given up under it.
            return;
        }
        self.release_source();
        self.drop_root();
    }
}

impl View {
    /// Runs `f` with this View and its held export and root, while `release()` cannot give
    /// the held export up: inside a critical section on the View on free-threaded builds
    /// (`release()` takes the same), under the GIL otherwise (`f` runs no Python code, so
    /// nothing else runs meanwhile). `ValueError` once released.
    fn pinned<R>(
        this: This<'_, View>,
        f: impl FnOnce(&View, Borrowed<'_>, Borrowed<'_>) -> R,
    ) -> Result<R> {
        critical_section(this.obj, || {
            common::open(this)?;
            // SAFETY: the View is open and `release()` cannot run until this returns (see
            // above), so `held` and `root` are the strong references of the invariants.
            let (held, root) = unsafe { (*this.value.held.get(), *this.value.root.get()) };
            // SAFETY: as above.
            match unsafe { (Borrowed::from_ptr(held), Borrowed::from_ptr(root)) } {
                (Some(held), Some(root)) => Ok(f(this.value, held, root)),
                _ => Err(Error::system_error("View holds no export while open")),
            }
        })
    }

    /// Gives the held export up, if still held.
    ///
    /// Callers guarantee exclusivity: the counter is closed with no export live, or the View
    /// is being dropped with no export live.
    fn release_source(&self) {
        // The HeldExport gives the root's export back when its last View lets go.
        drop(self.take_held());
    }

    /// Takes the held reference out of the View (NULL after), for the caller to drop.
    ///
    /// Callers guarantee exclusivity, as for [`release_source`](Self::release_source).
    fn take_held(&self) -> Option<Owned> {
        // SAFETY: exclusive access to `held` (caller, and the invariants).
        let held = unsafe { core::mem::replace(&mut *self.held.get(), ptr::null_mut()) };
        // SAFETY: our strong reference, taken out of the field; the GIL is held.
        unsafe { Owned::from_new(held) }.ok()
    }

    /// Drops the root reference. Callers guarantee exclusivity: the View is unreachable
    /// (tp_clear, drop).
    fn drop_root(&self) {
        // SAFETY: exclusive access (caller).
        let root = unsafe { core::mem::replace(&mut *self.root.get(), ptr::null_mut()) };
        if !root.is_null() {
            // SAFETY: our strong reference; the GIL is held (tp_clear, tp_dealloc).
            unsafe { unwind::decref(root) };
        }
    }
}

/// The parameters of `View(...)`.
const VIEW_PARAMS: common::Params<6> = common::Params {
    max_positional: 1,
    required: 1,
    names: [
        c"base",
        c"offset",
        c"format",
        c"shape",
        c"strides",
        c"readonly",
    ],
    format: c"O|$OOOOO:View",
};

/// `View(base, *, offset=0, format=None, shape=None, strides=None, readonly=None)`: `tp_new`,
/// which calls of a subclass take.
fn view_new(
    gil: Gil<'_>,
    subtype: *mut ffi::PyTypeObject,
    args: Borrowed<'_>,
    kwargs: Option<Borrowed<'_>>,
) -> Result<Owned> {
    common::with_tuple_args(args, kwargs, &VIEW_PARAMS, |found| {
        view_with(gil, subtype, found)
    })
}

/// `View(...)` itself on CPython 3.14+ (`tp_vectorcall`, never inherited): no argument tuple,
/// keyword dict or `type.__call__` in between.
fn view_vectorcall(gil: Gil<'_>, tp: *mut ffi::PyTypeObject, args: FastArgs<'_>) -> Result<Owned> {
    common::with_fast_args(gil, args, &VIEW_PARAMS, |found| view_with(gil, tp, found))
}

/// `View(...)` with its arguments matched to [`VIEW_PARAMS`]: each NULL (not given) or a
/// reference borrowed for the call.
// Inlined into each call path: as a call of its own, `View(ba)` cost 23 instructions more
// (`make bench`, 2491 against 2468 on 3.11).
#[inline(always)]
fn view_with(
    gil: Gil<'_>,
    subtype: *mut ffi::PyTypeObject,
    [base, offset, format, shape, strides, readonly]: [*mut ffi::PyObject; 6],
) -> Result<Owned> {
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
    if !convert::check_buffer(base) {
        return Err(Error::type_error(format!(
            "View() argument 'base' must support the buffer protocol, not {}",
            base.type_name()
        )));
    }
    // Ask for a read-only export first: every exporter serves it, and it says whether the
    // base is writable. Only a caller who insists on writing asks again with PyBUF_WRITABLE
    // (an exporter may grant writes only when asked).
    let types = types_of(subtype)?;
    let mut source = Source::acquire(gil, &types, base, false)?;
    if readonly == Some(false) && source.readonly {
        drop(source);
        source = Source::acquire(gil, &types, base, true).map_err(|e| {
            // The exporter's refusal of the writable request is replaced by ours, which says
            // what was asked: a BufferError, as the protocol has it, or a ValueError, as
            // numpy refuses ("buffer source array is read-only"). Any other error (a
            // MemoryError, an interrupt) is the caller's to see.
            // SAFETY: the GIL is held; PyErr_ExceptionMatches only reads the pending error.
            let refused = matches!(e, Error::Raised)
                && unsafe {
                    ffi::PyErr_ExceptionMatches(ffi::PyExc_BufferError) != 0
                        || ffi::PyErr_ExceptionMatches(ffi::PyExc_ValueError) != 0
                };
            if !refused {
                return e;
            }
            // SAFETY: the GIL is held; the pending BufferError is the one checked above.
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

/// What a re-layout needs of the layout it starts from, copied before any argument is read
/// (reading one may run Python code).
struct Parent {
    contiguous: bool,
    nbytes: isize,
    offset: isize,
    format: Format,
}

impl Parent {
    fn of(layout: &Layout) -> Self {
        Parent {
            contiguous: layout.is_c_contiguous() || layout.is_f_contiguous(),
            nbytes: layout.nbytes(),
            offset: layout.offset(),
            format: layout.format().clone(),
        }
    }
}

/// Applies explicit layout arguments to a contiguous base.
fn relayout_source(
    mut source: Source,
    base: Borrowed<'_>,
    offset: Option<Borrowed<'_>>,
    format: Option<Borrowed<'_>>,
    shape: Option<Borrowed<'_>>,
    strides: Option<Borrowed<'_>>,
) -> Result<Source> {
    let parent = Parent::of(&source.layout);
    let (block, block_len, layout) =
        relayout(&parent, source.block, base, offset, format, shape, strides)?;
    source.block = block;
    source.block_len = block_len;
    source.layout = layout;
    Ok(source)
}

/// The block and layout of a re-layout of `parent` (whose block starts at `block`): the
/// parent's items as one block, and the layout the arguments give over it.
fn relayout(
    parent: &Parent,
    block: NonNull<u8>,
    base: Borrowed<'_>,
    offset: Option<Borrowed<'_>>,
    format: Option<Borrowed<'_>>,
    shape: Option<Borrowed<'_>>,
    strides: Option<Borrowed<'_>>,
) -> Result<(NonNull<u8>, usize, Layout)> {
    if !parent.contiguous {
        return Err(Error::value_error(format!(
            "a View with offset, format, shape or strides needs a contiguous base, but {} is not contiguous",
            base.type_name()
        )));
    }
    // The base's items as one block: a contiguous layout covers [first item, + nbytes).
    let block_len = parent.nbytes as usize;
    let block = NonNull::new(block.as_ptr().wrapping_offset(parent.offset)).unwrap_or(block);
    let offset = match offset {
        Some(o) => convert::index_arg(o, &|| "offset".into())?,
        None => 0,
    };
    let format = match format {
        Some(f) => common::parse_format(f)?,
        None => parent.format.clone(),
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
                return Err(common::layout_error(
                    bufferkit::layout::LayoutError::Offset { offset, block_len },
                ));
            }
            common::Dims::one((block_len as isize - offset) / itemsize)
        }
    };
    let layout = match strides {
        Some(s) => {
            let strides = parse_strides(s)?;
            Layout::strided(format, &shape, &strides, offset, block_len)
        }
        None => Layout::contiguous_in(format, &shape, Order::C, offset, block_len),
    }
    .map_err(common::layout_error)?;
    Ok((block, block_len, layout))
}

fn parse_strides(obj: Borrowed<'_>) -> Result<common::Dims> {
    // SAFETY: `obj` is live and the GIL is held.
    let is_seq =
        unsafe { ffi::PyTuple_Check(obj.as_ptr()) != 0 || ffi::PyList_Check(obj.as_ptr()) != 0 };
    if !is_seq {
        return Err(Error::type_error(format!(
            "strides must be a tuple of ints, not {}",
            obj.type_name()
        )));
    }
    common::index_dims(obj, "strides")
}

/// `v[a:b:c]`, `v[s0, s1, ...]`: a new View of the same root.
fn view_subscript(this: This<'_, View>, key: Borrowed<'_>) -> Result<Owned> {
    let value = common::open(this)?;
    let layout = &value.layout;
    // SAFETY: `key` is live and the GIL is held.
    let is_tuple = unsafe { ffi::PyTuple_Check(key.as_ptr()) } != 0;
    let n = if is_tuple {
        // SAFETY: a tuple.
        unsafe { ffi::PyTuple_Size(key.as_ptr()) as usize }
    } else {
        1
    };
    if n > layout.ndim() {
        return Err(Error::type_error(format!(
            "too many indices: {n} slices for a {}-dimensional View",
            layout.ndim()
        )));
    }
    // On the stack for up to 4 dimensions: slicing allocates nothing else but the new View and
    // its layout (zeroing MAX_NDIM entries instead cost 125 instructions per slice).
    let mut few = [(0isize, 0isize, 0isize); 4];
    let mut many = Vec::new();
    let slices: &mut [(isize, isize, isize)] = if n <= few.len() {
        &mut few[..n]
    } else {
        many.resize(n, (0, 0, 0));
        &mut many
    };
    for (dim, slot) in slices.iter_mut().enumerate() {
        let k = if is_tuple {
            // SAFETY: 0 <= dim < n, the size of the tuple `key`, which the caller keeps alive
            // (tuples are immutable: the item stays for the call too).
            unsafe { Borrowed::from_ptr(ffi::PyTuple_GetItem(key.as_ptr(), dim as isize)) }
                .ok_or(Error::Raised)?
        } else {
            key
        };
        // SAFETY: `k` is live.
        if unsafe { ffi::PySlice_Check(k.as_ptr()) } == 0 {
            return Err(Error::type_error(format!(
                "View indices must be slices, not {} (index items with memoryview(view)[...])",
                k.type_name()
            )));
        }
        let (mut start, mut stop, mut step) = (0, 0, 0);
        // SAFETY: `k` is a slice; the out-pointers are valid. May run the bounds' `__index__`.
        if unsafe { ffi::PySlice_Unpack(k.as_ptr(), &mut start, &mut stop, &mut step) } < 0 {
            return Err(Error::Raised);
        }
        // SAFETY: plain arithmetic on the unpacked values.
        let len =
            unsafe { ffi::PySlice_AdjustIndices(layout.shape()[dim], &mut start, &mut stop, step) };
        *slot = (start, step, len);
    }
    let slices = &*slices;
    // `PySlice_Unpack` ran the slices' `__index__`, which may have released this View:
    // `of_view` checks again. `layout` is fixed at construction, so it is still this View's.
    let sliced = layout.sliced(slices).map_err(common::layout_error)?;
    let readonly = value.counter.snapshot().readonly();
    let source = Source::of_view(this, sliced)?;
    let view_type = source.view_type()?;
    make(this.gil, view_type.as_ptr().cast(), source, readonly)
}

/// `v.cast(format, shape=None)`: memoryview's spelling of `View(v, format=format,
/// shape=shape)`, a View of the same items with another format (and shape); any struct
/// format, C or Fortran order. Like a slice, it shares this View's export.
fn view_cast(this: This<'_, View>, args: FastArgs<'_>) -> Result<Owned> {
    const PARAMS: common::Params<2> = common::Params {
        max_positional: 2,
        required: 1,
        names: [c"format", c"shape"],
        format: c"O|O:cast",
    };
    common::with_fast_args(this.gil, args, &PARAMS, |[format, shape]| {
        cast_with(this, format, shape)
    })
}

/// `view_cast` with its arguments: `format` a borrowed reference, `shape` one or NULL, both
/// valid for the call.
fn cast_with(
    this: This<'_, View>,
    format: *mut ffi::PyObject,
    shape: *mut ffi::PyObject,
) -> Result<Owned> {
    // SAFETY: NULL or borrowed references valid for this call; None counts as not given.
    let format = unsafe { Borrowed::from_ptr(format) }.ok_or(Error::Raised)?;
    // SAFETY: as above.
    let shape =
        unsafe { Borrowed::from_ptr(shape) }.filter(|o| o.as_ptr() != unsafe { ffi::Py_None() });
    // The parent's facts are copied before the arguments are read (which may run Python code,
    // even release this View: `of_view` checks afterwards, and the source it returns holds
    // the export by a reference of its own).
    let value = common::open(this)?;
    let parent = Parent::of(&value.layout);
    if !parent.contiguous {
        return Err(Error::value_error(
            "cast() needs a contiguous View (C or Fortran order), but this View is not contiguous",
        ));
    }
    let readonly = value.counter.snapshot().readonly();
    let (block, block_len, layout) = relayout(
        &parent,
        value.block,
        this.obj,
        None,
        Some(format),
        shape,
        None,
    )?;
    let mut source = Source::of_view(this, layout)?;
    source.block = block;
    source.block_len = block_len;
    let view_type = source.view_type()?;
    make(this.gil, view_type.as_ptr().cast(), source, readonly)
}

fn view_release(this: This<'_, View>) -> Result<Owned> {
    // Closing and taking the held reference out are one step against `pinned` (a slice on
    // another thread); dropping it, which may run Python code, comes after.
    let held = critical_section(this.obj, || {
        let closed_now = this
            .value
            .counter
            .close(this.gil)
            .map_err(|e| common::exported_error("release", e.0))?;
        // The counter is closed with nothing exported: `held` is ours alone.
        Ok::<_, Error>(closed_now.then(|| this.value.take_held()).flatten())
    })?;
    drop(held);
    Ok(convert::none(this.gil))
}

/// Runs `f` in a critical section on `obj` on free-threaded builds (CPython 3.13t+'s
/// per-object lock, which the interpreter suspends if `f` blocks); as is with the GIL, which
/// already orders `f` against every other method call while `f` runs no Python code.
fn critical_section<R>(obj: Borrowed<'_>, f: impl FnOnce() -> R) -> R {
    #[cfg(Py_GIL_DISABLED)]
    {
        struct Section(core::mem::MaybeUninit<ffi::PyCriticalSection>);
        impl Drop for Section {
            fn drop(&mut self) {
                // SAFETY: begun below on this thread; ended once, here (also on a panic).
                unsafe { ffi::PyCriticalSection_End(self.0.as_mut_ptr()) };
            }
        }
        let mut section = Section(core::mem::MaybeUninit::uninit());
        // SAFETY: `obj` is live and the thread attached (a method call); the section's
        // storage lives on this frame until `Section` ends it.
        unsafe { ffi::PyCriticalSection_Begin(section.0.as_mut_ptr(), obj.as_ptr()) };
        f()
    }
    #[cfg(not(Py_GIL_DISABLED))]
    {
        let _ = obj;
        f()
    }
}

/// `View.__reduce_ex__(protocol)`: refuses. A View is a window on another object's memory;
/// a pickled copy would silently stop being one. Pickle `Buffer.from_buffer_copy(view)`.
fn view_reduce_ex(this: This<'_, View>, _protocol: Borrowed<'_>) -> Result<Owned> {
    Err(Error::type_error(format!(
        "cannot pickle '{}' object: it views another object's memory; pickle \
         bufferkit.Buffer.from_buffer_copy(view) for a copy",
        this.obj.type_name()
    )))
}

fn view_exit(
    this: This<'_, View>,
    args: Borrowed<'_>,
    _kwargs: Option<Borrowed<'_>>,
) -> Result<Owned> {
    common::exit_ending(this.obj, args, "released", || view_release(this))
}

fn view_base(this: This<'_, View>) -> Result<Owned> {
    let value = common::open(this)?;
    // SAFETY: open, so `root` is a live strong reference (invariants).
    let root = unsafe { *value.root.get() };
    // SAFETY: as above.
    match unsafe { Borrowed::from_ptr(root) } {
        Some(root) => Ok(Owned::from_borrowed(root)),
        None => Ok(convert::none(this.gil)),
    }
}

fn view_offset(this: This<'_, View>) -> Result<Owned> {
    let value = common::open(this)?;
    let first = value.block.as_ptr().wrapping_offset(value.layout.offset());
    new_int(
        this.gil,
        (first as isize).wrapping_sub(value.root_start as isize),
    )
}

fn view_released(this: This<'_, View>) -> Result<Owned> {
    new_bool(this.gil, this.value.counter.snapshot().closed())
}

fn view_repr(this: This<'_, View>) -> Result<Owned> {
    let name = common::qualified_type_name(this.obj)?;
    let state = this.value.counter.snapshot();
    if state.closed() {
        return new_str(this.gil, &format!("<released {name}>"));
    }
    // SAFETY: open, so `root` is live.
    let root = unsafe { Borrowed::from_ptr(*this.value.root.get()) }
        .map_or_else(|| "None".into(), Borrowed::type_name);
    let layout = &this.value.layout;
    new_str(
        this.gil,
        &format!(
            "<{name} of {root} shape={} strides={} format='{}' offset={} readonly={} exports={}>",
            common::shape_text(layout.shape()),
            common::shape_text(layout.strides()),
            layout.format().as_str(),
            (this.value.block.as_ptr().wrapping_offset(layout.offset()) as isize)
                .wrapping_sub(this.value.root_start as isize),
            if state.readonly() { "True" } else { "False" },
            state.count()
        ),
    )
}

/// Whether the running CPython's garbage collector may clear a memoryview that still has
/// exports. Before the fix of gh-77894 (3.12.7, and every 3.13) `memory_clear` released such
/// a memoryview anyway, and a View of a memoryview in a garbage cycle is exactly that case.
fn memoryview_clear_is_safe() -> bool {
    // PyPy's memoryview is PyPy's own; the collector bug is CPython's.
    #[cfg(PyPy)]
    {
        true
    }
    #[cfg(all(Py_3_11, not(PyPy)))]
    {
        // SAFETY: Py_Version is a constant the interpreter exports (3.11+, limited API).
        let version = unsafe { ffi::Py_Version };
        version >= 0x030C_07F0 // 3.12.7 final
    }
    #[cfg(all(not(Py_3_11), not(PyPy)))]
    {
        false
    }
}

/// Whether the collector is shown the export's object and the root, and the reference it
/// must not see, for `root`'s `export`. Decided once, here, so that `tp_traverse` only reads
/// flags.
///
/// Before the fix of gh-77894 (CPython 3.12.7; every 3.13), a memoryview's `tp_clear` gave its
/// buffer back even while exported. An export of such a memoryview must then keep the
/// collector from clearing it:
/// - a memoryview root or export object is not shown (a cycle through it is leaked, not
///   crashed);
/// - a memoryview that the export object holds (CPython 3.12's `_buffer_wrapper` holds the
///   memoryview `__buffer__` returned) is kept by a reference the collector is not shown, the
///   guard, so that the export object itself can still be shown and a cycle through it
///   collected. The memoryviews are found through the export object's own `tp_traverse`, as
///   `gc.get_referents` finds them, not by a type name.
fn gc_refs(root: Borrowed<'_>, export: &ffi::Py_buffer) -> (GcRefs, bool, Option<Owned>) {
    let is_memoryview = |obj: *mut ffi::PyObject| {
        // SAFETY: `obj` is a live strong reference; only its type is read.
        !obj.is_null() && unsafe { ffi::PyMemoryView_Check(obj) } != 0
    };
    if memoryview_clear_is_safe() {
        return (GcRefs { export: true }, true, None);
    }
    let gc = GcRefs {
        export: !is_memoryview(export.obj),
    };
    let root_shown = !is_memoryview(root.as_ptr());
    let guard = if gc.export && export.obj != root.as_ptr() && !export.obj.is_null() {
        // SAFETY: `export.obj` is the live object the export holds a reference to.
        unsafe { held_memoryview(export.obj) }
    } else {
        None
    };
    (gc, root_shown, guard)
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
        // No traverse: nothing to find. (PyType_GetSlot may have raised for a type it cannot
        // read, as SystemError; nothing else is pending here, so that one is ours to clear.)
        // SAFETY: the GIL is held (caller).
        unsafe { ffi::PyErr_Clear() };
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

/// `tp_traverse`: the held export and the root (unless [`gc_refs`] hid it).
fn view_traverse(value: &View, visit: ffi::visitproc, arg: *mut c_void) -> c_int {
    // SAFETY: traverse runs with the GIL held (or the world stopped); `held` and `root` are
    // only written by tp_clear, drop and `release_source`, none of which runs meanwhile
    // (`release_source` takes the reference out before it decrefs it).
    let (held, root) = unsafe { (*value.held.get(), *value.root.get()) };
    let root_shown = held.is_null() || {
        // SAFETY: a live `Object<HeldExport>` this View holds.
        unsafe { Object::<HeldExport>::value_of(held) }
            .root_shown
            .get()
    };
    let shown = [held, if root_shown { root } else { ptr::null_mut() }];
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
/// the cycle is broken at those consumers instead, and the View gives its held export up
/// when it is deallocated.
fn view_clear(gil: Gil<'_>, value: &View) {
    if value.counter.close(gil).is_err() {
        return;
    }
    value.release_source();
    value.drop_root();
}

impl bufferkit::ffi::Collectable for View {
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

static mut VIEW_METHODS: [ffi::PyMethodDef; 8] = method_table!(
    View,
    [
        method(
            c"cast",
            ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: fastkw!(View, view_cast) },
            ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            c"cast($self, /, format, shape=None)\n--\n\nA View of the same items with another format (any struct format) and shape:\nView(self, format=format, shape=shape), spelled as memoryview.cast. The View\nmust be contiguous (C or Fortran order); the new one shares its export.",
        ),
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

static mut VIEW_MEMBERS: [ffi::PyMemberDef; 2] = [
    common::weaklist_member::<View>(core::mem::offset_of!(View, weaklist)),
    common::MEMBER_END,
];

static mut VIEW_SLOTS: [ffi::PyType_Slot; 18] = [
    slot(
        ffi::Py_tp_new,
        with_first!(ffi::PyTypeObject, view_new) as *mut c_void,
    ),
    slot(
        ffi::Py_tp_dealloc,
        bufferkit::ffi::dealloc::<View> as *mut c_void,
    ),
    slot(
        ffi::Py_tp_traverse,
        bufferkit::ffi::tp_traverse_with_type::<View> as *mut c_void,
    ),
    slot(
        ffi::Py_tp_clear,
        bufferkit::ffi::tp_clear::<View> as *mut c_void,
    ),
    slot(
        ffi::Py_bf_getbuffer,
        bufferkit::ffi::getbuffer::<View> as *mut c_void,
    ),
    slot(
        ffi::Py_bf_releasebuffer,
        bufferkit::ffi::releasebuffer::<View> as *mut c_void,
    ),
    slot(ffi::Py_tp_repr, unary!(View, view_repr) as *mut c_void),
    // Both, as for Buffer (len() asks sq_length first).
    slot(ffi::Py_sq_length, length!(View, common::len) as *mut c_void),
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
    // SAFETY: as above.
    slot(ffi::Py_tp_members, (&raw mut VIEW_MEMBERS).cast()),
    slot(
        ffi::Py_tp_richcompare,
        richcompare!(View, common::compare) as *mut c_void,
    ),
    slot(ffi::Py_tp_doc, DOC.as_ptr().cast_mut().cast()),
    // 3.14+ only: `module::new_type` leaves it out on earlier versions.
    slot(
        ffi::Py_tp_vectorcall,
        vectorcall!(view_vectorcall) as *mut c_void,
    ),
    // abi3t: how Object::create finds this type under a Python subclass (on the other builds
    // an end marker: keep it last).
    bufferkit::ffi::object::type_token_slot::<View>(),
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
const _: ffi::getbufferproc = bufferkit::ffi::getbuffer::<View>;
const _: ffi::releasebufferproc = bufferkit::ffi::releasebuffer::<View>;
const _: ffi::destructor = bufferkit::ffi::dealloc::<View>;
const _: ffi::traverseproc = bufferkit::ffi::tp_traverse_with_type::<View>;
const _: ffi::inquiry = bufferkit::ffi::tp_clear::<View>;

static mut HELD_SLOTS: [ffi::PyType_Slot; 5] = [
    slot(
        ffi::Py_tp_dealloc,
        bufferkit::ffi::dealloc::<HeldExport> as *mut c_void,
    ),
    slot(
        ffi::Py_tp_traverse,
        bufferkit::ffi::tp_traverse_with_type::<HeldExport> as *mut c_void,
    ),
    slot(
        ffi::Py_tp_doc,
        c"One export of a View's root, shared by the Views made from one another."
            .as_ptr()
            .cast_mut()
            .cast(),
    ),
    // abi3t: how Object::create finds this type under a Python subclass.
    bufferkit::ffi::object::type_token_slot::<HeldExport>(),
    SLOT_END,
];

/// `Py_TPFLAGS_DISALLOW_INSTANTIATION` where it exists (3.10+): only bufferkit makes a
/// HeldExport. Before 3.10 `type(h)()` makes an all-zero one, which is valid and holds nothing.
#[cfg(Py_3_10)]
const NO_NEW: core::ffi::c_ulong = ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION;
#[cfg(not(Py_3_10))]
const NO_NEW: core::ffi::c_ulong = 0;

/// The spec of the (unexported) type of [`HeldExport`] objects. No `tp_clear`: see
/// [`HeldExport`]'s `Collectable::clear`.
pub static mut HELD_SPEC: ffi::PyType_Spec = ffi::PyType_Spec {
    name: c"bufferkit._bufferkit.HeldExport".as_ptr(),
    basicsize: Object::<HeldExport>::BASICSIZE,
    itemsize: 0,
    flags: spec_flags(ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_HAVE_GC | IMMUTABLE | NO_NEW),
    // SAFETY: only the address of the static is taken (see VIEW_SLOTS).
    slots: (&raw mut HELD_SLOTS).cast(),
};

const _: ffi::destructor = bufferkit::ffi::dealloc::<HeldExport>;
const _: ffi::traverseproc = bufferkit::ffi::tp_traverse_with_type::<HeldExport>;
