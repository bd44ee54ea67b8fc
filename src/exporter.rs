//! The safe exporter side: the [`BufferExporter`] trait, the [`ExportCounter`] and
//! [`Memory`].
//!
//! # Who owns what
//!
//! A buffer export hands a consumer a raw pointer into memory the exporter owns, and the
//! buffer protocol's only promise about that pointer is temporal: it stays valid from a
//! successful `bf_getbuffer` until the matching `bf_releasebuffer`. Nothing else ties the
//! consumer to the memory. So every exporter must answer one question before anything that
//! would move, shrink or free its memory: *is anything exported right now?* That is what the
//! [`ExportCounter`] is for. The getbuffer slot increments it after the request passed every
//! check and before the pointer leaves; the releasebuffer slot decrements it. An owner that
//! wants to close, resize or freeze asks the counter, and the counter says no while the count
//! is not zero.
//!
//! The counter also holds the two states an export depends on, *read-only* and *closed*, in
//! the same word as the count. That makes "check the state, then count the export" and "check
//! the count, then change the state" single steps: a close can never slip between a
//! getbuffer's check and its increment, and a freeze can never let a writable export through.
//!
//! Shape, strides and format are not per-export data: they live in the exporting object (in a
//! [`Layout`]) and every export points at the same arrays, so an export allocates nothing.
//! They must therefore not change while anything is exported, which is part of the one
//! contract of [`BufferExporter`].
//!
//! A consumer's `view->obj` holds a strong reference to the exporter, so the object, and with
//! it the counter and the layout, outlives every export. Memory may still outlive the last
//! export: some consumers (`numpy.ndarray(shape, buffer=obj)`) release the export at once and
//! keep only a reference to the object and the raw pointer. An owner that frees memory before
//! the object dies must decide whether such a consumer can exist; bufferkit's `Buffer` frees at
//! `close()` only memory that was never exported, and otherwise when it is deallocated.
//!
//! # Threads
//!
//! With the GIL, every slot call and every Python-level method runs with the GIL held, and the
//! GIL orders them: a load followed by a store of the counter cannot be interleaved with
//! another thread's. The counter's hot path (acquire and release) therefore uses relaxed loads
//! and stores of an atomic word, which cost what a plain integer costs, and is only reachable
//! with a [`Gil`] token. On free-threaded builds (`Py_GIL_DISABLED`) the same operations are
//! compare-and-swap loops, so the guarantees hold without the GIL.
//!
//! # Calls into Python code
//!
//! Many C-API calls run Python code: another exporter's getbuffer/releasebuffer, `__buffer__`,
//! an argument's `__index__`, a decref that ends an object, an allocation that collects. That
//! code may release, close or drop the object being worked on (from another thread too, the
//! GIL being dropped inside it). The rule: **nothing borrowed from an object's state is held
//! across such a call**: hold a strong reference of your own, copy the facts you need, or read
//! only fields fixed at construction, and check the object's state again after the call. The
//! counter makes the last step cheap: `snapshot().closed()` says whether the object was
//! released meanwhile. `docs/guarantees.md` ("The re-entrancy rule") lists every such place in
//! bufferkit and how it keeps the rule.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::layout::Layout;

/// Proof that the current thread holds the GIL (or, on a free-threaded build, is attached to
/// the interpreter), for as long as `'py`.
///
/// bufferkit's trampolines make one for every slot and method call; there is no other safe way
/// to get one.
#[derive(Clone, Copy, Debug)]
pub struct Gil<'py> {
    _held: PhantomData<&'py ()>,
    // Not Send and not Sync: the token must not leave the thread that holds the GIL. A
    // `PyObject` pointer rather than `*mut ()`: PyO3's `Ungil` check (its `nightly` feature,
    // an auto trait) refuses it, so a token cannot be carried into `py.detach(...)` either.
    _not_send: PhantomData<*mut pyo3_ffi::PyObject>,
}

impl Gil<'_> {
    /// Asserts that the calling thread holds the GIL for the lifetime of the token.
    ///
    /// # Safety
    ///
    /// The calling thread must hold the GIL (be attached to the interpreter) for as long as
    /// the returned token or any copy of it exists.
    pub const unsafe fn assume() -> Self {
        Self {
            _held: PhantomData,
            _not_send: PhantomData,
        }
    }
}

// The state word, low bits first:
// - bit 0, `EVER`: set by the first export;
// - bit 1, `LOCKED`: an owner holds a [`Locked`] guard and changes the memory;
// - bits 2..=8: always 0;
// - bit 9, `READONLY`: where an index into a layout's admission rows wants the read-only
//   fact (past the flags), so that an export takes `state & READONLY` as it is
//   (`Admission::admit`);
// - bit 10, `CLOSED`;
// - bits 11.., the count: `ONE` per export, so that it cannot carry into the other bits.
//
// An export is refused while `CLOSED` or `LOCKED` is set: the hot path tests both with one
// mask (`Snapshot::refuses`), so the lock costs it nothing.
const EVER: usize = 1;
const LOCKED: usize = 1 << 1;
const READONLY: usize = 1 << crate::request::FLAG_BITS;
const CLOSED: usize = READONLY << 1;
const COUNT_SHIFT: u32 = crate::request::FLAG_BITS + 2;
const ONE: usize = 1 << COUNT_SHIFT;
const _: () = assert!(LOCKED < READONLY && LOCKED != EVER);

/// Counts live exports, and holds the read-only, closed and locked states they depend on.
#[derive(Debug)]
pub struct ExportCounter {
    // INVARIANTS: `state >> COUNT_SHIFT` is the number of exports granted by `acquire` and not
    // yet given back by `release`; `CLOSED` and `READONLY`, once set, are never cleared;
    // `CLOSED` is only set while the count is 0 and the count never leaves 0 after it;
    // `LOCKED` is only set while the count is 0, the count stays 0 while it is set, and it
    // is cleared only by the drop of the one [`Locked`] guard that set it; `EVER` is set by
    // the first `acquire`; bits 2..=8 are 0.
    state: AtomicUsize,
}

/// What a counter looked like at one moment; see [`ExportCounter::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot(usize);

impl Snapshot {
    /// No more exports: the owner has closed (or released) the object.
    pub const fn closed(self) -> bool {
        self.0 & CLOSED != 0
    }
    /// An owner holds the [`Locked`] guard: exports are refused until it is dropped.
    pub const fn locked(self) -> bool {
        self.0 & LOCKED != 0
    }
    /// An export is refused in this state (closed or locked): one test of the word, which is
    /// all the export hot path pays for both.
    #[inline(always)]
    pub(crate) const fn refuses(self) -> bool {
        self.0 & (CLOSED | LOCKED) != 0
    }
    /// Exports are read-only.
    pub const fn readonly(self) -> bool {
        self.0 & READONLY != 0
    }
    /// Live exports.
    pub const fn count(self) -> usize {
        self.0 >> COUNT_SHIFT
    }
    /// The read-only part of an index into a layout's admission rows (see
    /// `request::Admission::admit`): `1 << FLAG_BITS` when read-only, 0 when writable.
    #[inline(always)]
    pub(crate) const fn readonly_row(self) -> usize {
        self.0 & READONLY
    }
    /// Whether anything was ever exported (and so may still hold a pointer obtained then).
    pub const fn ever_exported(self) -> bool {
        self.0 & EVER != 0
    }
}

/// An owner's request to change state was refused because exports are live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exported(pub usize);

/// Why [`ExportCounter::lock`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    /// This many exports are live.
    Exported(usize),
    /// Another [`Locked`] guard is alive (the owner's change is not finished: typically a
    /// call into Python code made while holding the guard came back here).
    Locked,
}

/// Proof that an [`ExportCounter`] counts no export and refuses every new one, for as long
/// as it lives: the owner may change, move or free the memory it exports. Made by
/// [`ExportCounter::lock`]; dropping it lets exports in again.
///
/// Tied to the GIL token it was made with (`'py`) and not `Send`: on a build with the GIL,
/// the counter's export path stores without compare-and-swap, which is sound only while
/// every change of the word is made by a thread that holds the GIL.
#[derive(Debug)]
#[must_use = "exports are refused only while the guard lives"]
pub struct Locked<'a> {
    // INVARIANTS: `counter`'s `LOCKED` bit was set by this guard and is cleared by its drop.
    counter: &'a ExportCounter,
    _gil: PhantomData<Gil<'a>>,
}

impl Locked<'_> {
    /// The counter this guard locks.
    pub fn counter(&self) -> &ExportCounter {
        self.counter
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.counter.state.fetch_and(!LOCKED, Ordering::Release);
    }
}

impl ExportCounter {
    /// A counter with no exports, open, writable or not.
    pub const fn new(readonly: bool) -> Self {
        Self {
            state: AtomicUsize::new(if readonly { READONLY } else { 0 }),
        }
    }

    /// The current state.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.state.load(Ordering::Acquire))
    }

    /// Live exports now.
    pub fn count(&self) -> usize {
        self.snapshot().count()
    }

    /// Counts one more export, if the state is still `seen` (the caller decided on that
    /// snapshot). Returns false when the state moved on; the caller takes a new snapshot and
    /// decides again.
    pub(crate) fn acquire(&self, _gil: Gil<'_>, seen: Snapshot) -> bool {
        debug_assert!(!seen.refuses() && seen.count() < usize::MAX >> COUNT_SHIFT);
        #[cfg(not(Py_GIL_DISABLED))]
        {
            // The GIL orders this load/store pair against every other change of the word.
            self.state.store((seen.0 + ONE) | EVER, Ordering::Relaxed);
            true
        }
        #[cfg(Py_GIL_DISABLED)]
        {
            self.state
                .compare_exchange(
                    seen.0,
                    (seen.0 + ONE) | EVER,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        }
    }

    /// Gives back one export counted by [`acquire`](Self::acquire).
    pub(crate) fn release(&self, _gil: Gil<'_>) {
        #[cfg(not(Py_GIL_DISABLED))]
        {
            let now = self.state.load(Ordering::Relaxed);
            debug_assert!(now >= ONE, "release without an export");
            self.state.store(now.wrapping_sub(ONE), Ordering::Relaxed);
        }
        #[cfg(Py_GIL_DISABLED)]
        {
            let before = self.state.fetch_sub(ONE, Ordering::AcqRel);
            debug_assert!(before >= ONE, "release without an export");
        }
    }

    fn set_if_unexported(&self, bit: usize) -> Result<bool, Exported> {
        let mut now = self.state.load(Ordering::Acquire);
        loop {
            if now & bit != 0 {
                return Ok(false);
            }
            if now >= ONE {
                return Err(Exported(now >> COUNT_SHIFT));
            }
            match self.state.compare_exchange_weak(
                now,
                now | bit,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(true),
                Err(actual) => now = actual,
            }
        }
    }

    /// Locks out exports while the owner changes the memory, if nothing is exported and no
    /// other guard is alive: the one sound way to write to, resize or replace exported
    /// memory from Rust. An export tried while the guard lives is refused with
    /// `BufferError("<Type> is being modified")`.
    ///
    /// ```
    /// # use bufferkit::{ExportCounter, Gil};
    /// # use bufferkit::exporter::Busy;
    /// # fn demo(gil: Gil<'_>) {
    /// let counter = ExportCounter::new(false);
    /// let guard = counter.lock(gil).unwrap();
    /// assert!(counter.snapshot().locked());
    /// assert_eq!(counter.lock(gil).unwrap_err(), Busy::Locked);
    /// drop(guard);
    /// assert!(!counter.snapshot().locked());
    /// # }
    /// ```
    pub fn lock<'a>(&'a self, _gil: Gil<'a>) -> Result<Locked<'a>, Busy> {
        let mut now = self.state.load(Ordering::Acquire);
        loop {
            if now & LOCKED != 0 {
                return Err(Busy::Locked);
            }
            if now >= ONE {
                return Err(Busy::Exported(now >> COUNT_SHIFT));
            }
            match self.state.compare_exchange_weak(
                now,
                now | LOCKED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Ok(Locked {
                        counter: self,
                        _gil: PhantomData,
                    })
                }
                Err(actual) => now = actual,
            }
        }
    }

    /// Ends exporting for good, if nothing is exported. Returns `Ok(true)` if this call closed
    /// it, `Ok(false)` if it was closed already.
    pub fn close(&self, _gil: Gil<'_>) -> Result<bool, Exported> {
        self.set_if_unexported(CLOSED)
    }

    /// Makes every later export read-only, if nothing is exported now (every live export of a
    /// writable object may be written through). Returns `Ok(false)` if it was read-only
    /// already.
    pub fn freeze(&self, _gil: Gil<'_>) -> Result<bool, Exported> {
        if self.snapshot().readonly() {
            return Ok(false);
        }
        self.set_if_unexported(READONLY)
    }
}

/// The memory an exporter hands out: a block and a layout inside it.
///
/// Made by an exporter's [`memory()`](BufferExporter::memory) and read at once by bufferkit's
/// export path. Safe code outside bufferkit may hold one longer (it is `Copy`), past a change
/// of the memory that replaced the layout, so it keeps the layout as a pointer, not a
/// reference, and only bufferkit reads it (right after `memory()` returned, with nothing in
/// between that could change the exporter).
#[derive(Clone, Copy, Debug)]
pub struct Memory<'a> {
    // INVARIANTS: when made, `layout` pointed to a live `Layout` borrowed for 'a with
    // `required_len() <= len`.
    base: NonNull<u8>,
    len: usize,
    layout: NonNull<Layout>,
    _layout: PhantomData<&'a Layout>,
}

impl<'a> Memory<'a> {
    /// A block of `len` bytes at `base` seen through `layout`. `None` if the layout addresses
    /// bytes past `len`.
    ///
    /// Making a `Memory` is safe: it promises nothing by itself. The promise is made by the
    /// [`BufferExporter`] that returns it.
    #[inline]
    pub fn new(base: NonNull<u8>, len: usize, layout: &'a Layout) -> Option<Self> {
        if layout.required_len() > len {
            short_block(layout.required_len(), len);
            return None;
        }
        Some(Self {
            base,
            len,
            layout: NonNull::from(layout),
            _layout: PhantomData,
        })
    }

    /// A block and a layout known to fit it, unchecked: the caller's invariant says that
    /// `layout` (while it is alive) addresses no byte past `len`. Nothing is read here.
    #[inline(always)]
    pub(crate) fn from_parts(base: NonNull<u8>, len: usize, layout: NonNull<Layout>) -> Self {
        Self {
            base,
            len,
            layout,
            _layout: PhantomData,
        }
    }

    /// The start of the block.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }
    /// The block's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the block is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The layout.
    ///
    /// # Safety
    ///
    /// The layout this was made with is still alive: the exporter has not changed since its
    /// `memory()` returned this (no Python code ran in between), or an export it counted
    /// holds it.
    #[inline(always)]
    pub(crate) unsafe fn layout(&self) -> &'a Layout {
        // SAFETY: the caller guarantees the layout is alive; it was borrowed for 'a when made.
        unsafe { self.layout.as_ref() }
    }
    /// The address of element `(0, ..., 0)`, which is what `Py_buffer.buf` holds.
    ///
    /// # Safety
    ///
    /// As for [`layout`](Self::layout).
    #[inline(always)]
    pub(crate) unsafe fn first_item(&self) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        let offset = unsafe { self.layout() }.offset();
        // `wrapping_add` keeps this free of unsafe; the offset is inside the block (or one
        // past its end for an empty layout) by the invariant of `Layout`, so it does not wrap.
        self.base.as_ptr().wrapping_add(offset as usize)
    }
}

std::thread_local! {
    /// The sizes of the last block [`Memory::new`] refused on this thread: what the layout
    /// needs and what was given, for the `SystemError` of an export whose `memory()` returned
    /// `None` (read and cleared around that one call, off the export path).
    static SHORT_BLOCK: core::cell::Cell<Option<(usize, usize)>> =
        const { core::cell::Cell::new(None) };
}

#[cold]
#[inline(never)]
fn short_block(needed: usize, given: usize) {
    SHORT_BLOCK.with(|s| s.set(Some((needed, given))));
}

/// Takes (and clears) the sizes of the last block [`Memory::new`] refused on this thread.
pub(crate) fn take_short_block() -> Option<(usize, usize)> {
    SHORT_BLOCK.with(|s| s.take())
}

/// A Rust type whose memory bufferkit exports through the buffer protocol.
///
/// Implement it for the value that a bufferkit Python object holds
/// ([`Object<T>`](crate::ffi::Object)); bufferkit's generic slots
/// ([`getbuffer`](crate::ffi::getbuffer), [`releasebuffer`](crate::ffi::releasebuffer))
/// do everything else: they check each request against the layout and the counter, fill the
/// `Py_buffer`, count the export and give it back. The implementor writes no unsafe code other
/// than the `unsafe impl` line.
///
/// # Safety
///
/// The one contract: **while [`counter()`](Self::counter) counts a live export, the memory
/// returned by [`memory()`](Self::memory) stays allocated, at the same address, readable, and
/// writable unless the counter is read-only; and `memory()` keeps returning the same block and
/// the same layout.** Concretely, do not free, move, shrink or re-layout the memory, and do not
/// write to it through Rust references that assume exclusive access, unless the counter shows
/// no exports (its [`lock`](ExportCounter::lock), [`close`](ExportCounter::close) and
/// [`freeze`](ExportCounter::freeze) refuse while exports are live, which is the tool for
/// this). Consumers write through the pointer without Rust's knowledge: memory handed out
/// writable must be behind `UnsafeCell` or a raw pointer, never a `&[u8]` that Rust assumes
/// immutable. [`SharedVec`](crate::SharedVec) is such memory and keeps the contract: an
/// implementation that returns its `counter()` and `memory()` is correct.
///
/// # Errors and panics
///
/// `memory()` returns `None` when it has no memory to give: the export is refused with a
/// `SystemError` naming the type. That is a bug of the exporter (an open exporter should always
/// have its memory), reported instead of exported. The usual body is one call of
/// [`Memory::new`], whose `None` (a layout that does not fit the block) is passed on as is.
///
/// A panic in `memory()` or `counter()` does not unwind into CPython either: the slot turns it
/// into a `SystemError` and refuses the export. Returning `None` is the cheaper of the two: an
/// exporter whose `memory()` cannot panic leaves the slot's hot path without an unwinding edge.
///
/// # Implementer notes
///
/// `memory()` runs on every export: return references to fields, compute nothing. A
/// [`Layout`] made once at construction answers every question an export asks.
pub unsafe trait BufferExporter {
    /// The word in `"operation on {ENDED} {type}"`, the `ValueError` raised when exporting
    /// after the counter was closed.
    const ENDED: &'static str = "closed";

    /// This object's export counter.
    fn counter(&self) -> &ExportCounter;

    /// The memory to export, or `None` if there is none (refused with a `SystemError`; see
    /// above). Called only while the counter is open.
    fn memory(&self) -> Option<Memory<'_>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gil() -> Gil<'static> {
        // SAFETY: the counter never calls into Python; the token only stands for "the caller
        // orders these calls", which a single-threaded test does.
        unsafe { Gil::assume() }
    }

    #[test]
    fn close_and_freeze_refuse_while_exported() {
        let c = ExportCounter::new(false);
        let s = c.snapshot();
        assert!(c.acquire(gil(), s));
        assert!(c.acquire(gil(), c.snapshot()));
        assert_eq!(c.count(), 2);
        assert_eq!(c.close(gil()), Err(Exported(2)));
        assert_eq!(c.freeze(gil()), Err(Exported(2)));
        c.release(gil());
        c.release(gil());
        assert_eq!(c.freeze(gil()), Ok(true));
        assert_eq!(c.freeze(gil()), Ok(false));
        assert!(c.snapshot().readonly());
        assert_eq!(c.close(gil()), Ok(true));
        assert_eq!(c.close(gil()), Ok(false));
        assert!(c.snapshot().closed());
        assert_eq!(c.count(), 0);
    }

    #[test]
    fn a_lock_refuses_exports_and_is_refused_while_exported() {
        let c = ExportCounter::new(false);
        assert!(c.acquire(gil(), c.snapshot()));
        assert_eq!(c.lock(gil()).unwrap_err(), Busy::Exported(1));
        c.release(gil());
        let guard = c.lock(gil()).unwrap();
        let seen = c.snapshot();
        assert!(seen.locked() && seen.refuses() && !seen.closed());
        assert_eq!(c.lock(gil()).unwrap_err(), Busy::Locked);
        // close and freeze do not touch memory: they are allowed under the lock
        assert_eq!(c.freeze(gil()), Ok(true));
        drop(guard);
        let seen = c.snapshot();
        assert!(!seen.locked() && !seen.refuses() && seen.readonly());
        assert_eq!(seen.count(), 0);
        assert!(c.acquire(gil(), seen));
        assert_eq!(c.count(), 1);
    }

    #[test]
    fn busy_messages() {
        let msg = |e: crate::ffi::Error| match e {
            crate::ffi::Error::New(crate::ffi::Kind::Buffer, m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            msg(Busy::Exported(1).to_error("resize")),
            "cannot resize: 1 exported buffer"
        );
        assert_eq!(
            msg(Exported(2).to_error("close")),
            "cannot close: 2 exported buffers"
        );
        assert_eq!(
            msg(Busy::Locked.to_error("resize")),
            "cannot resize: already being modified"
        );
    }

    #[test]
    fn readonly_counter_freezes_trivially() {
        let c = ExportCounter::new(true);
        assert!(c.acquire(gil(), c.snapshot()));
        assert_eq!(c.freeze(gil()), Ok(false));
        c.release(gil());
    }

    #[test]
    fn memory_refuses_a_layout_that_does_not_fit() {
        use crate::layout::{Format, Order};
        let l = Layout::contiguous(Format::bytes(), &[16], Order::C).unwrap();
        let base = NonNull::<u8>::dangling();
        assert!(Memory::new(base, 15, &l).is_none());
        // SAFETY: `l` lives until the end of the test.
        let first = unsafe { Memory::new(base, 16, &l).unwrap().first_item() };
        assert_eq!(first, base.as_ptr());
    }
}
