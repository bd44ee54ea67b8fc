//! Typed memory for exporters: the sealed [`Element`] trait (a Rust number type and its
//! `struct` format), and [`SharedVec`], a vector of elements that consumers may write through
//! an export, that Rust changes only under the counter's [`Locked`] guard, and that is `Sync`
//! (so a PyO3 `#[pyclass]` may hold it).
//!
//! The format characters and sizes are those of the `struct` module's native mode
//! (`Doc/library/struct.rst`, "Format Characters"), which is what `memoryview` and numpy read
//! from an export.

use core::cell::UnsafeCell;
use core::ffi::CStr;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::exporter::{Busy, ExportCounter, Gil, Locked, Memory};
use crate::ffi::{Error, Result};
use crate::layout::{Format, Layout, LayoutError, Order};

mod sealed {
    pub trait Sealed {}
}

/// A number type whose values consumers may read and write through an export: every bit
/// pattern of its size is a valid value, and its `struct` format (native mode) has its size.
///
/// Sealed: implemented for `u8`, `i8`, `u16`, `i16`, `u32`, `i32`, `u64`, `i64`, `f32` and
/// `f64`. `bool` is not an element: a consumer may store 2 into its byte, which is not a
/// `bool`.
pub trait Element: Copy + Send + Sync + sealed::Sealed + 'static {
    /// The `struct` format character (native mode, no prefix), e.g. `c"f"` for `f32`.
    const FORMAT: &'static CStr;
}

macro_rules! elements {
    ($($t:ty => $f:literal),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const FORMAT: &'static CStr = $f;
        }
    )*};
}

elements! {
    u8 => c"B", i8 => c"b", u16 => c"H", i16 => c"h", u32 => c"I", i32 => c"i",
    u64 => c"Q", i64 => c"q", f32 => c"f", f64 => c"d",
}

// The native sizes of those format characters on every platform CPython supports (`I`/`i`
// are C `int`, 4 bytes there); `Format::new` checks the same table.
const _: () = {
    assert!(size_of::<core::ffi::c_int>() == 4);
    assert!(size_of::<u64>() == 8 && size_of::<f64>() == 8 && size_of::<f32>() == 4);
};

impl Format {
    /// The format of `T` with its item size: `Format::of::<f32>()` is `'f'`, 4 bytes.
    ///
    /// ```
    /// use bufferkit::Format;
    /// assert_eq!((Format::of::<f32>().as_str(), Format::of::<f32>().itemsize()), ("f", 4));
    /// assert_eq!(Format::of::<u8>(), Format::bytes());
    /// ```
    pub fn of<T: Element>() -> Self {
        Self::from_c_str(T::FORMAT, size_of::<T>())
            .expect("an Element's format and size agree (checked by the tests of element.rs)")
    }
}

/// A vector of `T` that bufferkit exports: the elements, their 1-D layout and the export
/// counter, in one value.
///
/// `Sync` on every build, so a PyO3 `#[pyclass]` or an [`ExportingType`](crate::ffi::spec::ExportingType)
/// may hold it: with the GIL the GIL serialises Rust's reads and writes, on free-threaded
/// builds a lock held for each one does (a call that finds it held waits detached from the
/// interpreter, which suspends the caller's critical sections for that while). Consumers read and write the elements through exports at any
/// time, so Rust never holds a reference to them: it reads copies ([`get`](Self::get), [`to_vec`](Self::to_vec)) and
/// writes only through [`Writer`], the guard [`lock`](Self::lock) returns while nothing is
/// exported, which refuses every export while it lives (with `BufferError("<Type> is being
/// modified")`).
///
/// An exporter holding one implements [`BufferExporter`](crate::BufferExporter) by delegation:
///
/// ```
/// use bufferkit::{BufferExporter, ExportCounter, Memory, SharedVec};
///
/// pub struct Samples {
///     data: SharedVec<f32>,
/// }
///
/// // SAFETY: `SharedVec` keeps the contract: its memory changes only under its lock, which
/// // refuses while exports are live.
/// unsafe impl BufferExporter for Samples {
///     fn counter(&self) -> &ExportCounter {
///         self.data.counter()
///     }
///     fn memory(&self) -> Option<Memory<'_>> {
///         self.data.memory()
///     }
/// }
/// ```
pub struct SharedVec<T: Element> {
    // INVARIANTS: `inner` is written only through a `Writer`, whose `Locked` guard of
    // `counter` proves that no export is live and none starts, and read only with the GIL
    // held; every borrow of it (a reader's call, a writer's method) is made and ended
    // holding `access`, which no Python code runs under. `inner.layout` is 1-D, C order,
    // format `T`, shape `[inner.data.len()]`. `shown` mirrors `inner` (`Shown::of`), updated
    // by the writer after each change.
    inner: UnsafeCell<Inner<T>>,
    shown: Shown,
    counter: ExportCounter,
    access: Access,
}

/// What orders Rust's borrows of a [`SharedVec`]'s elements against each other: with the GIL,
/// the GIL itself (nothing to hold); on free-threaded builds, where a [`Gil`] token orders
/// nothing and a reader on one thread could meet a writer replacing the elements on another,
/// a lock held for each borrow.
#[cfg(not(Py_GIL_DISABLED))]
struct Access;

#[cfg(not(Py_GIL_DISABLED))]
impl Access {
    const fn new() -> Self {
        Access
    }

    /// Nothing to hold: the caller's GIL orders the borrow.
    #[inline(always)]
    fn hold(&self, _gil: Gil<'_>) -> Held {
        Held
    }
}

/// What [`Access::hold`] gives with the GIL: nothing to let go.
#[cfg(not(Py_GIL_DISABLED))]
struct Held;

/// On free-threaded builds: a flag set by the thread that holds it, which is always attached
/// to the interpreter while it does. A thread that finds it set detaches and waits for it to
/// clear without setting it, then attaches and tries again. So a stop-the-world pause (a
/// collection, `os.fork()`) never waits for a thread that waits here, and never meets the
/// flag set: the holder reaches no safe point before it clears it (no Python code runs while
/// it is set), and a detached thread never holds it (a fork would copy it set, with no
/// owner in the child; an exit could end or park the thread holding it).
#[cfg(Py_GIL_DISABLED)]
struct Access(core::sync::atomic::AtomicBool);

/// The held flag of [`Access`], cleared when dropped.
#[cfg(Py_GIL_DISABLED)]
struct Held<'a>(&'a core::sync::atomic::AtomicBool);

#[cfg(Py_GIL_DISABLED)]
impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(Py_GIL_DISABLED)]
impl Access {
    const fn new() -> Self {
        Access(core::sync::atomic::AtomicBool::new(false))
    }

    fn hold(&self, _gil: Gil<'_>) -> Held<'_> {
        loop {
            if self
                .0
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Held(&self.0);
            }
            // SAFETY: the thread is attached (`_gil`); it touches no Python object until it
            // attaches again below.
            let state = unsafe { pyo3_ffi::PyEval_SaveThread() };
            // A holder keeps it for one read or one change: yield at first, then sleep, so a
            // long copy (`to_vec` of a large vector) is not waited for at full speed.
            let mut waited = 0u32;
            while self.0.load(Ordering::Relaxed) {
                if waited < 100 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
                waited = waited.saturating_add(1);
            }
            // SAFETY: `state` is this thread's, saved just above; nothing is held.
            unsafe { crate::ffi::unwind::restore_thread(state) };
        }
    }
}

struct Inner<T> {
    // `UnsafeCell`: consumers write the elements through the exported pointer.
    data: Box<[UnsafeCell<T>]>,
    // Boxed: `shown` points to it, and a `SharedVec` may move.
    layout: Box<Layout>,
}

/// What `memory()` and `len()` read: the block and the layout of `inner`, as atomics, so that
/// those two (which `BufferExporter` lets anyone call, with or without the GIL) never race a
/// writer that replaces `inner`. A `Memory` is only read by bufferkit's export path, with the
/// GIL held, when no writer runs; without the GIL a reader may see a mix of old and new
/// values, which it cannot dereference.
struct Shown {
    base: AtomicPtr<u8>,
    nbytes: AtomicUsize,
    layout: AtomicPtr<Layout>,
}

impl Shown {
    fn of<T>(inner: &Inner<T>) -> Self {
        let (base, nbytes, layout) = Self::parts(inner);
        Self {
            base: AtomicPtr::new(base),
            nbytes: AtomicUsize::new(nbytes),
            layout: AtomicPtr::new(layout),
        }
    }

    fn parts<T>(inner: &Inner<T>) -> (*mut u8, usize, *mut Layout) {
        let base = UnsafeCell::raw_get(inner.data.as_ptr()).cast::<u8>();
        let layout = core::ptr::from_ref::<Layout>(&inner.layout).cast_mut();
        (base, size_of_val(&*inner.data), layout)
    }

    fn set<T>(&self, inner: &Inner<T>) {
        let (base, nbytes, layout) = Self::parts(inner);
        self.base.store(base, Ordering::Release);
        self.nbytes.store(nbytes, Ordering::Release);
        self.layout.store(layout, Ordering::Release);
    }
}

// SAFETY: the elements are plain numbers (`Element: Send`). Rust reaches them and `inner`
// only with a `Gil` (reads in `get`/`to_vec`, writes in `Writer`), and every such borrow is
// made and ended holding `access`: with the GIL the GIL serialises them (no Python code runs
// inside one, so the GIL is not given up in the middle), on free-threaded builds the lock
// does. A write also needs the `Locked` guard, which excludes exports and other writers;
// `memory()` and `len()`, callable without the GIL, read atomics (`Shown`); what consumers
// do through an export is outside Rust's view, as for every buffer.
unsafe impl<T: Element> Sync for SharedVec<T> {}

// SAFETY: owning the elements and the counter on another thread is owning numbers.
unsafe impl<T: Element> Send for SharedVec<T> {}

fn layout_of<T: Element>(len: usize) -> Result<Layout, LayoutError> {
    let len = isize::try_from(len).map_err(|_| LayoutError::TooLarge)?;
    Layout::contiguous(Format::of::<T>(), &[len], Order::C)
}

#[cold]
fn no_memory<T: Element>(len: usize) -> Error {
    Error::memory_error(format!(
        "cannot allocate {len} items of format '{}'",
        T::FORMAT.to_string_lossy()
    ))
}

fn cells<T: Element>(values: impl Iterator<Item = T>) -> Box<[UnsafeCell<T>]> {
    values.map(UnsafeCell::new).collect()
}

impl<T: Element> SharedVec<T> {
    /// The values, writable by consumers (`readonly` false) or not. Refused when their bytes
    /// do not fit `Py_ssize_t` (an `OverflowError` in Python: [`LayoutError::is_overflow`]).
    pub fn new(values: Vec<T>, readonly: bool) -> Result<Self, LayoutError> {
        let layout = layout_of::<T>(values.len())?;
        Ok(Self::of(cells(values.into_iter()), layout, readonly))
    }

    fn of(data: Box<[UnsafeCell<T>]>, layout: Layout, readonly: bool) -> Self {
        let inner = Inner {
            data,
            layout: Box::new(layout),
        };
        Self {
            shown: Shown::of(&inner),
            inner: UnsafeCell::new(inner),
            counter: ExportCounter::new(readonly),
            access: Access::new(),
        }
    }

    /// `len` copies of `value`, without aborting when the memory cannot be had: a
    /// `MemoryError` then, and an `OverflowError` for a length whose bytes do not fit
    /// `Py_ssize_t`.
    pub fn try_filled(len: usize, value: T, readonly: bool) -> Result<Self> {
        let layout = layout_of::<T>(len)?;
        let mut data = Vec::new();
        data.try_reserve_exact(len)
            .map_err(|_| no_memory::<T>(len))?;
        data.resize_with(len, || UnsafeCell::new(value));
        Ok(Self::of(data.into_boxed_slice(), layout, readonly))
    }

    /// Runs `f` on the elements, holding `access` (see the invariants).
    fn read<R>(&self, gil: Gil<'_>, f: impl FnOnce(&Inner<T>) -> R) -> R {
        let _access = self.access.hold(gil);
        // SAFETY: `inner` is changed only by a `Writer`'s methods, each holding `access` for
        // its whole borrow, as this read does; `f` runs no Python code and the reference does
        // not outlive it.
        f(unsafe { &*self.inner.get() })
    }

    /// The export counter ([`BufferExporter::counter`](crate::BufferExporter::counter)).
    pub fn counter(&self) -> &ExportCounter {
        &self.counter
    }

    /// The memory to export ([`BufferExporter::memory`](crate::BufferExporter::memory)).
    #[inline]
    pub fn memory(&self) -> Option<Memory<'_>> {
        let base = NonNull::new(self.shown.base.load(Ordering::Acquire))?;
        let layout = NonNull::new(self.shown.layout.load(Ordering::Acquire))?;
        let nbytes = self.shown.nbytes.load(Ordering::Acquire);
        // The layout fits the block: `inner`'s invariant, which `shown` mirrors.
        Some(Memory::from_parts(base, nbytes, layout))
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shown.nbytes.load(Ordering::Acquire) / size_of::<T>()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of element `i` (consumers may change it at any time).
    pub fn get(&self, gil: Gil<'_>, i: usize) -> Option<T> {
        self.read(gil, |inner| {
            let cell = inner.data.get(i)?;
            // SAFETY: the cell is a live element; no Rust writer runs now (`read`), and a
            // copy keeps no reference.
            Some(unsafe { cell.get().read() })
        })
    }

    /// A copy of every element.
    pub fn to_vec(&self, gil: Gil<'_>) -> Vec<T> {
        self.read(gil, |inner| {
            inner
                .data
                .iter()
                // SAFETY: as in `get`.
                .map(|cell| unsafe { cell.get().read() })
                .collect()
        })
    }

    /// The writer: refused while exports are live ([`Busy::Exported`]) or another writer
    /// lives ([`Busy::Locked`]); every export is refused while it lives.
    ///
    /// ```
    /// # use bufferkit::{SharedVec, Gil};
    /// # fn demo(gil: Gil<'_>) -> Result<(), bufferkit::exporter::Busy> {
    /// let v = SharedVec::new(vec![1i16, 2, 3], false).unwrap();
    /// let mut w = v.lock(gil)?;
    /// w.set(0, -1);
    /// w.resize(4, 0).unwrap();
    /// drop(w);
    /// assert_eq!(v.to_vec(gil), [-1, 2, 3, 0]);
    /// # Ok(()) }
    /// ```
    pub fn lock<'a>(&'a self, gil: Gil<'a>) -> Result<Writer<'a, T>, Busy> {
        Ok(Writer {
            vec: self,
            gil,
            _locked: self.counter.lock(gil)?,
        })
    }
}

impl<T: Element> SharedVec<T> {
    /// [`lock`](Self::lock), refused with the `BufferError` of the owner's operation `what`:
    /// `"cannot resize: 1 exported buffer"` (see [`Busy::to_error`]).
    pub fn lock_for<'a>(&'a self, gil: Gil<'a>, what: &str) -> Result<Writer<'a, T>> {
        self.lock(gil).map_err(|busy| busy.to_error(what))
    }
}

impl<T: Element + core::fmt::Debug> core::fmt::Debug for SharedVec<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedVec")
            .field("len", &self.len())
            .field("counter", &self.counter)
            .finish()
    }
}

/// Exclusive access to a [`SharedVec`]'s elements while nothing is exported: every export is
/// refused until it is dropped.
pub struct Writer<'a, T: Element> {
    // INVARIANTS: `_locked` locks `vec.counter`: no export of `vec` is live or starts, and no
    // other `Writer` of `vec` exists.
    vec: &'a SharedVec<T>,
    gil: Gil<'a>,
    _locked: Locked<'a>,
}

impl<T: Element> Writer<'_, T> {
    // No method hands out a reference into the elements (no `&mut [T]`): a reader (`get`,
    // `to_vec`) may run between two writer calls, and must not meet a live exclusive borrow.
    /// Runs `f` on the elements and then updates `shown` (also if `f` unwinds), holding the
    /// vector's `access`.
    fn change<R>(&mut self, f: impl FnOnce(&mut Inner<T>) -> R) -> R {
        /// Sets `shown` from `inner` when dropped: after `f`, however it ends.
        struct Mirror<'v, T: Element>(&'v SharedVec<T>);
        impl<T: Element> Drop for Mirror<'_, T> {
            fn drop(&mut self) {
                // SAFETY: `f`'s borrow has ended; `access` is still held (declared before).
                self.0.shown.set(unsafe { &*self.0.inner.get() });
            }
        }
        let _access = self.vec.access.hold(self.gil);
        let _mirror = Mirror(self.vec);
        // SAFETY: no export is live and no other writer exists (invariant), and `&mut self`
        // makes this the only reference made through this writer; readers (`get`, `to_vec`)
        // borrow `inner` only holding `access`, as this does, and `f` runs no Python code
        // and ends its borrow before `access` is let go. (`len` and `memory` read `shown`.)
        f(unsafe { &mut *self.vec.inner.get() })
    }

    /// Sets every element to `value`.
    pub fn fill(&mut self, value: T) {
        self.change(|inner| inner.data.iter_mut().for_each(|c| *c.get_mut() = value));
    }

    /// Copies `values` into the first elements; `false` (and nothing copied) if there are more
    /// values than elements.
    pub fn copy_from_slice(&mut self, values: &[T]) -> bool {
        self.change(|inner| {
            let data = &mut inner.data;
            if values.len() > data.len() {
                return false;
            }
            data.iter_mut()
                .zip(values)
                .for_each(|(c, v)| *c.get_mut() = *v);
            true
        })
    }

    /// A copy of element `i`.
    pub fn get(&mut self, i: usize) -> Option<T> {
        self.vec.get(self.gil, i)
    }

    /// Sets element `i`; `false` if there is none.
    pub fn set(&mut self, i: usize, value: T) -> bool {
        self.change(|inner| match inner.data.get_mut(i) {
            Some(cell) => {
                *cell.get_mut() = value;
                true
            }
            None => false,
        })
    }

    /// Keeps the first `len` elements and pads with `value`. Refused like
    /// [`SharedVec::try_filled`]; the vector is unchanged then.
    pub fn resize(&mut self, len: usize, value: T) -> Result<()> {
        let layout = layout_of::<T>(len)?;
        let mut data = Vec::new();
        data.try_reserve_exact(len)
            .map_err(|_| no_memory::<T>(len))?;
        self.change(|inner| {
            let old = &mut inner.data;
            data.extend(
                (0..len).map(|i| UnsafeCell::new(old.get_mut(i).map_or(value, |c| *c.get_mut()))),
            );
            inner.data = data.into_boxed_slice();
            *inner.layout = layout;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gil() -> Gil<'static> {
        // SAFETY: nothing here calls into Python; single-threaded tests order the calls.
        unsafe { Gil::assume() }
    }

    #[test]
    fn formats_and_sizes_agree() {
        fn check<T: Element>(text: &str, size: isize) {
            let f = Format::of::<T>();
            assert_eq!((f.as_str(), f.itemsize()), (text, size));
        }
        check::<u8>("B", 1);
        check::<i8>("b", 1);
        check::<u16>("H", 2);
        check::<i16>("h", 2);
        check::<u32>("I", 4);
        check::<i32>("i", 4);
        check::<u64>("Q", 8);
        check::<i64>("q", 8);
        check::<f32>("f", 4);
        check::<f64>("d", 8);
        assert!(Format::of::<u8>().is_bytes());
    }

    #[test]
    fn the_writer_locks_out_exports_and_is_refused_while_exported() {
        let v = SharedVec::new(vec![1.5f32, 2.5], false).unwrap();
        let m = v.memory().unwrap();
        // SAFETY: `v` is unchanged since `memory()`.
        let layout = unsafe { m.layout() };
        let format = layout.format().as_str();
        assert_eq!((m.len(), layout.shape(), format), (8, &[2][..], "f"));
        let seen = v.counter().snapshot();
        assert!(v.counter().acquire(gil(), seen));
        assert_eq!(v.lock(gil()).err(), Some(Busy::Exported(1)));
        v.counter().release(gil());
        let mut w = v.lock(gil()).unwrap();
        assert!(v.counter().snapshot().locked());
        assert_eq!(v.lock(gil()).err(), Some(Busy::Locked));
        assert!(w.copy_from_slice(&[0.0, -1.0]) && !w.copy_from_slice(&[0.0; 3]));
        assert!(w.set(0, 4.0) && !w.set(2, 0.0));
        w.resize(3, 9.0).unwrap();
        drop(w);
        assert!(!v.counter().snapshot().locked());
        assert_eq!(v.to_vec(gil()), [4.0, -1.0, 9.0]);
        assert_eq!((v.get(gil(), 2), v.get(gil(), 3)), (Some(9.0), None));
        // SAFETY: `v` is unchanged since `memory()`.
        assert_eq!(unsafe { v.memory().unwrap().layout() }.shape(), &[3]);
    }

    #[test]
    fn too_many_elements_are_refused() {
        let kind = |len| match SharedVec::<u64>::try_filled(len, 0, false) {
            Err(Error::New(kind, _)) => kind,
            _ => panic!("{len} elements were accepted"),
        };
        assert_eq!(kind(usize::MAX / 4), crate::ffi::Kind::Overflow);
        assert_eq!(kind(1 << 59), crate::ffi::Kind::Memory);
    }
}
