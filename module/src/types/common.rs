//! What `Buffer` and `View` share: the memoryview-compatible attributes of a [`Layout`],
//! `tobytes()`/`tolist()` through the object's own export, argument parsing for formats and
//! shapes, and the messages for objects that are closed or exported.

use core::ffi::{c_char, CStr};
use std::ffi::CString;

use pyo3_ffi as ffi;

use bufferkit::exporter::{BufferExporter, Gil};
use bufferkit::ffi::convert::{self, new_bool, new_int, new_int_tuple, new_str};
use bufferkit::ffi::{Borrowed, Error, FastArgs, Owned, Result, This};
use bufferkit::layout::{Format, Layout, LayoutError};
use bufferkit::request::flags;
use bufferkit::view::{BufferView, CopyOrder};

/// The keyword list `PyArg_ParseTupleAndKeywords` takes (its constness changed in 3.13).
#[cfg(Py_3_13)]
pub type KwList = *const *const c_char;
/// The keyword list `PyArg_ParseTupleAndKeywords` takes (its constness changed in 3.13).
#[cfg(not(Py_3_13))]
pub type KwList = *mut *mut c_char;

/// The arguments of a call `f(*args, **kwargs)` to a function whose parameters are `names`,
/// the first `max_positional` of which may be passed by position, the first `required` of
/// which must be given: each a borrowed reference valid for the call, or NULL where not given.
///
/// The common case only, without the argument parser's string format and keyword-list
/// scanning (about 1.8 µs of instructions per `View(obj, format='i')`). `None` for anything
/// else: more positional arguments than allowed, a keyword that is not a name, given twice
/// or not a str, a required argument missing; the caller then runs
/// `PyArg_ParseTupleAndKeywords` with the same signature, which raises CPython's own error.
pub fn simple_args<const N: usize>(
    args: Borrowed<'_>,
    kwargs: Option<Borrowed<'_>>,
    max_positional: usize,
    required: usize,
    names: [&CStr; N],
) -> Option<[*mut ffi::PyObject; N]> {
    // SAFETY: `args` is the call's tuple (tp_new and METH_VARARGS|METH_KEYWORDS receive one).
    let n = unsafe { ffi::PyTuple_Size(args.as_ptr()) };
    // SAFETY: 0 <= i < n; borrowed from the tuple, which the caller keeps alive.
    let positional = |i: usize| unsafe { ffi::PyTuple_GetItem(args.as_ptr(), i as isize) };
    let (mut pos, mut key, mut value) = (0, core::ptr::null_mut(), core::ptr::null_mut());
    let keywords = core::iter::from_fn(|| {
        let kwargs = kwargs?;
        // SAFETY: `kwargs` is the call's dict; PyDict_Next hands out borrowed references and
        // runs no Python code. The dict is the call's own (built by the call machinery), so
        // its items live for the call.
        (unsafe { ffi::PyDict_Next(kwargs.as_ptr(), &mut pos, &mut key, &mut value) } != 0)
            .then_some((key, value))
    });
    match_args(n, positional, keywords, max_positional, required, names)
}

/// [`simple_args`] for a vectorcall-style call (`METH_FASTCALL | METH_KEYWORDS`,
/// `tp_vectorcall`); `None` sends the caller to the same `PyArg_ParseTupleAndKeywords` path,
/// through [`FastArgs::to_tuple_dict`].
pub fn fast_args<const N: usize>(
    args: &FastArgs<'_>,
    max_positional: usize,
    required: usize,
    names: [&CStr; N],
) -> Option<[*mut ffi::PyObject; N]> {
    let positional = args.positional();
    let keywords = args
        .keywords()
        .map(|(name, value)| (name.as_ptr(), value.as_ptr()));
    match_args(
        positional.len() as isize,
        |i| positional[i],
        keywords,
        max_positional,
        required,
        names,
    )
}

/// A call's parameters: how many may be given by position, how many are required (the
/// first ones), their names, and the `PyArg_ParseTupleAndKeywords` format that says the same
/// with every converter `O`, through which the calls the fast matching declines get CPython's
/// own messages.
pub struct Params<const N: usize> {
    /// How many may be given by position.
    pub max_positional: usize,
    /// How many are required: the first ones.
    pub required: usize,
    /// Their names, in order.
    pub names: [&'static CStr; N],
    /// The same, for `PyArg_ParseTupleAndKeywords`: N `O` converters.
    pub format: &'static CStr,
}

/// A call with a tuple and a dict (`tp_new`, `METH_VARARGS | METH_KEYWORDS`): `matched` with
/// the arguments matched to `params` by [`simple_args`], or else by CPython's parser.
pub fn with_tuple_args<const N: usize, R>(
    args: Borrowed<'_>,
    kwargs: Option<Borrowed<'_>>,
    params: &Params<N>,
    matched: impl FnOnce([*mut ffi::PyObject; N]) -> Result<R>,
) -> Result<R> {
    let Params {
        max_positional,
        required,
        names,
        ..
    } = *params;
    let found = match simple_args(args, kwargs, max_positional, required, names) {
        Some(found) => found,
        None => parse_objects(args, kwargs, params)?,
    };
    matched(found)
}

/// A vectorcall-style call (`tp_vectorcall`, `METH_FASTCALL | METH_KEYWORDS`): `matched` with
/// the arguments matched to `params` by [`fast_args`], or else by CPython's parser, given
/// them as a tuple and a dict that live until `matched` returns.
pub fn with_fast_args<const N: usize, R>(
    gil: Gil<'_>,
    args: FastArgs<'_>,
    params: &Params<N>,
    matched: impl FnOnce([*mut ffi::PyObject; N]) -> Result<R>,
) -> Result<R> {
    // The parser's path: the tuple and dict its arguments are borrowed from, kept to the end.
    let mut parsed_from = None;
    let found = match fast_args(&args, params.max_positional, params.required, params.names) {
        Some(found) => found,
        None => {
            let (args, kwargs) = parsed_from.insert(args.to_tuple_dict(gil)?);
            parse_objects(args.borrow(), kwargs.as_ref().map(Owned::borrow), params)?
        }
    };
    matched(found)
}

/// `PyArg_ParseTupleAndKeywords(args, kwargs, params.format, params.names, ...)`: each
/// argument a reference borrowed from `args` or `kwargs` (alive while they are), NULL if not
/// given. A format with another converter than `O`, or another number of them than `N`, or
/// more than six, is refused with a `SystemError` before CPython reads it.
pub fn parse_objects<const N: usize>(
    args: Borrowed<'_>,
    kwargs: Option<Borrowed<'_>>,
    params: &Params<N>,
) -> Result<[*mut ffi::PyObject; N]> {
    const MAX: usize = 6;
    let converters = params
        .format
        .to_bytes()
        .iter()
        .take_while(|&&c| c != b':' && c != b';');
    let mut count = 0;
    for &c in converters {
        match c {
            b'O' => count += 1,
            b'|' | b'$' => {}
            _ => count = usize::MAX,
        }
    }
    if count != N || N > MAX {
        return Err(Error::system_error(format!(
            "argument format {:?} is not {N} O converters",
            params.format
        )));
    }
    let mut names = kwlist(params.names);
    let mut found = [core::ptr::null_mut(); MAX];
    let [a, b, c, d, e, f] = &mut found;
    // SAFETY: `args` and `kwargs` are live for the call (`Borrowed`); CPython refuses an
    // `args` that is not a tuple and a `kwargs` that is not a dict with a SystemError. The
    // format has exactly N converters, each `O` (checked above), which store a borrowed
    // PyObject* into the first N pointers; C's variadic call reads no more arguments than its
    // format asks for, so the unused ones are never read. `names` holds N names and a NULL.
    let parsed = unsafe {
        ffi::PyArg_ParseTupleAndKeywords(
            args.as_ptr(),
            kwargs.map_or(core::ptr::null_mut(), Borrowed::as_ptr),
            params.format.as_ptr(),
            names.as_mut_ptr() as KwList,
            a,
            b,
            c,
            d,
            e,
            f,
        )
    };
    if parsed == 0 {
        return Err(Error::Raised);
    }
    Ok(core::array::from_fn(|i| found[i]))
}

/// The matching of [`simple_args`] and [`fast_args`]: `n` positional arguments, read by
/// `positional(i)`, and the `(name, value)` pairs of the keyword ones, borrowed for the call.
fn match_args<const N: usize>(
    n: isize,
    positional: impl Fn(usize) -> *mut ffi::PyObject,
    keywords: impl Iterator<Item = (*mut ffi::PyObject, *mut ffi::PyObject)>,
    max_positional: usize,
    required: usize,
    names: [&CStr; N],
) -> Option<[*mut ffi::PyObject; N]> {
    let mut found = [core::ptr::null_mut(); N];
    if n < 0 || n as usize > max_positional.min(N) {
        return None;
    }
    for (i, slot) in found.iter_mut().take(n as usize).enumerate() {
        *slot = positional(i);
    }
    for (key, value) in keywords {
        // SAFETY: `key` is live (borrowed for the call).
        if unsafe { ffi::PyUnicode_Check(key) } == 0 {
            return None;
        }
        let mut size: ffi::Py_ssize_t = 0;
        // SAFETY: `key` is a live str; its UTF-8 form is cached in it (a pointer for the ASCII
        // names of keywords), valid while the call holds it, i.e. for this loop.
        let text = unsafe { ffi::PyUnicode_AsUTF8AndSize(key, &mut size) };
        if text.is_null() {
            // SAFETY: the GIL is held; the slow path reports a bad name itself.
            unsafe { ffi::PyErr_Clear() };
            return None;
        }
        // SAFETY: `text` points to `size` bytes (the call above).
        let key = unsafe { core::slice::from_raw_parts(text.cast::<u8>(), size as usize) };
        let at = names.iter().position(|name| name.to_bytes() == key)?;
        if !found[at].is_null() {
            return None;
        }
        found[at] = value;
    }
    found[..required]
        .iter()
        .all(|p| !p.is_null())
        .then_some(found)
}

/// A NULL-terminated keyword list for `PyArg_ParseTupleAndKeywords`.
pub fn kwlist<const N: usize>(names: [&'static CStr; N]) -> Vec<*mut c_char> {
    names
        .iter()
        .map(|n| n.as_ptr().cast_mut())
        .chain(core::iter::once(core::ptr::null_mut()))
        .collect()
}

/// The head of the list of weak references to the object a value is inside: a field of the
/// value that `tp_weaklistoffset` points at (set through [`weaklist_member`]), so that a type
/// made from a spec supports weak references under the limited API.
///
/// Drop the value's `WeakList` through [`WeakList::clear`] from the value's `Drop`: a type
/// with `tp_weaklistoffset` must clear the weak references in its `tp_dealloc`, before the
/// object's state goes (Doc/c-api/typeobj.rst, `tp_weaklistoffset`).
#[derive(Debug)]
pub struct WeakList(
    // INVARIANTS: NULL, or the head of the object's weak-reference list, written only by
    // CPython (through the object's `tp_weaklistoffset`, with the GIL held); never by Rust.
    core::sync::atomic::AtomicPtr<ffi::PyObject>,
);

impl WeakList {
    /// An empty list (what `tp_alloc`'s zeroed memory would hold).
    pub const fn new() -> Self {
        Self(core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()))
    }

    /// Clears the weak references to the object whose value `value` is, calling their
    /// callbacks, if there are any.
    ///
    /// # Safety
    ///
    /// `self` is a field of `*value`; if the list is not empty (only CPython fills it, through
    /// an object), `value` is the value of an `Object<T>` that its `tp_dealloc` is
    /// deallocating (the count is 0, the header intact, the GIL held).
    pub unsafe fn clear<T>(&self, value: *const T) {
        if self.0.load(core::sync::atomic::Ordering::Relaxed).is_null() {
            return;
        }
        #[cfg(not(abi3t))]
        let offset = const { value_offset::<T>() };
        // abi3t: where PyObject_GetTypeData put the value (checked for every instance).
        #[cfg(abi3t)]
        let offset = bufferkit::ffi::object::abi3t::data_offset();
        // SAFETY: `value` is inside an `Object<T>` (caller), `offset` bytes from its start.
        let obj = unsafe { value.byte_sub(offset) }
            .cast_mut()
            .cast::<ffi::PyObject>();
        // SAFETY: `obj` is an object being deallocated with the GIL held (caller), whose type
        // supports weak references (its list is not empty). The callbacks run get the weak
        // reference, which no longer reaches the object.
        unsafe { bufferkit::ffi::unwind::clear_weakrefs(obj) };
    }
}

impl Default for WeakList {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the value of an `Object<T>` starts: `Object<T>` is `repr(C)` (the header, then the
/// value), so the value follows the header at the value's alignment. Checked against the
/// type's basic size: nothing before the header, nothing between, no tail padding.
#[cfg(not(abi3t))]
pub const fn value_offset<T>() -> usize {
    let offset = core::mem::size_of::<ffi::PyObject>().next_multiple_of(core::mem::align_of::<T>());
    assert!(core::mem::align_of::<T>() >= core::mem::align_of::<ffi::PyObject>());
    assert!(offset + core::mem::size_of::<T>() == bufferkit::ffi::Object::<T>::BASICSIZE as usize);
    offset
}

/// The `PyMemberDef` `__weaklistoffset__` for a [`WeakList`] at `field` bytes into the value
/// of an `Object<T>` (`core::mem::offset_of!(T, weaklist)`): the limited API's way to set
/// `tp_weaklistoffset` (Doc/c-api/structures.rst, PyMemberDef).
pub const fn weaklist_member<T>(field: usize) -> ffi::PyMemberDef {
    // abi3t: the value's place is CPython's to choose (negative basicsize), so the offset is
    // relative to it (`Py_RELATIVE_OFFSET`, 3.12+, PEP 697).
    #[cfg(abi3t)]
    let (offset, flags) = (field, ffi::Py_READONLY | ffi::Py_RELATIVE_OFFSET);
    #[cfg(not(abi3t))]
    let (offset, flags) = (value_offset::<T>() + field, ffi::Py_READONLY);
    ffi::PyMemberDef {
        name: c"__weaklistoffset__".as_ptr(),
        type_code: ffi::Py_T_PYSSIZET,
        offset: offset as ffi::Py_ssize_t,
        flags,
        doc: core::ptr::null(),
    }
}

/// The `PyMemberDef` table terminator.
pub const MEMBER_END: ffi::PyMemberDef = ffi::PyMemberDef {
    name: core::ptr::null(),
    type_code: 0,
    offset: 0,
    flags: 0,
    doc: core::ptr::null(),
};

/// A shipped exporter type: its layout, and the word for "no longer usable".
pub trait Shipped: BufferExporter {
    /// The layout it exports: fixed from construction to deallocation (closing or releasing
    /// leaves it), so a borrow of it may span calls that run Python code while the object is
    /// kept alive.
    fn layout(&self) -> &Layout;
}

/// Refuses operations on a closed Buffer or released View: ValueError
/// "operation on closed Buffer".
pub fn open<'py, T: Shipped>(this: This<'py, T>) -> Result<&'py T> {
    if this.value.counter().snapshot().closed() {
        return Err(Error::value_error(format!(
            "operation on {} {}",
            T::ENDED,
            this.obj.type_name()
        )));
    }
    Ok(this.value)
}

/// The value of a memoryview-compatible attribute, refused once closed.
pub fn attr<T: Shipped>(this: This<'_, T>, attr: Attr) -> Result<Owned> {
    layout_attr(this.gil, open(this)?.layout(), attr)
}

/// `readonly`
pub fn readonly<T: Shipped>(this: This<'_, T>) -> Result<Owned> {
    new_bool(this.gil, open(this)?.counter().snapshot().readonly())
}

/// `exports` (0 once closed)
pub fn exports<T: Shipped>(this: This<'_, T>) -> Result<Owned> {
    convert::new_uint(this.gil, this.value.counter().count())
}

/// `tobytes(order='C')`
pub fn tobytes_method<T: Shipped>(
    this: This<'_, T>,
    args: Borrowed<'_>,
    kwargs: Option<Borrowed<'_>>,
) -> Result<Owned> {
    open(this)?;
    const PARAMS: Params<1> = Params {
        max_positional: 1,
        required: 0,
        names: [c"order"],
        format: c"|O:tobytes",
    };
    let [order] = parse_objects(args, kwargs, &PARAMS)?;
    // SAFETY: NULL or a borrowed reference valid for this call.
    let order = parse_copy_order(unsafe { Borrowed::from_ptr(order) })?;
    tobytes(this.obj, order)
}

/// `tolist()`
pub fn tolist_method<T: Shipped>(this: This<'_, T>) -> Result<Owned> {
    let value = open(this)?;
    tolist(this.obj, value.layout())
}

/// `__enter__()`: the object itself.
pub fn enter<T: Shipped>(this: This<'_, T>) -> Result<Owned> {
    open(this)?;
    Ok(Owned::from_borrowed(this.obj))
}

/// `__exit__(exc_type, exc, traceback)` of an object that `end` closes (Buffer's `close`,
/// View's `release`).
///
/// Leaving the block normally, a refusal of `end` is raised: the object is still exported.
/// Leaving it because the body raised, the user's exception is what the user must see, so a
/// BufferError from `end` is not raised: the object stays open (its memory is freed when it
/// dies, as for any object never closed), and on 3.11+ the user's exception gets a note that
/// says so (`add_note`). Other errors of `end` are raised either way.
pub fn exit_ending(
    obj: Borrowed<'_>,
    args: Borrowed<'_>,
    done: &str,
    end: impl FnOnce() -> Result<Owned>,
) -> Result<Owned> {
    // SAFETY: `args` is the call's argument tuple, live for the call; the GIL is held.
    let n = unsafe { ffi::PyTuple_Size(args.as_ptr()) };
    let raised = if n >= 2 {
        // SAFETY: 1 < n; a borrowed item of the tuple, which the call keeps alive. A strong
        // reference is taken at once: `end` and `add_note` below may run Python code.
        let exc = unsafe { Borrowed::from_ptr(ffi::PyTuple_GetItem(args.as_ptr(), 1)) }
            .ok_or(Error::Raised)?;
        // SAFETY: the GIL is held; Py_None is a static object.
        let is_none = unsafe { exc.as_ptr() == ffi::Py_None() };
        (!is_none).then(|| Owned::from_borrowed(exc))
    } else {
        None
    };
    match (end(), raised) {
        (Err(Error::New(bufferkit::ffi::Kind::Buffer, message)), Some(exc)) => {
            let note = new_str(
                obj.gil(),
                &format!(
                    "{} not {done} on leaving the with block: {message}",
                    obj.type_name()
                ),
            )?;
            // BaseException.add_note exists from 3.11; before, the exception goes on as is.
            if let Ok(add_note) = convert::getattr(exc.borrow(), c"add_note") {
                let added = convert::call(add_note.borrow(), &[note.borrow()]);
                drop(added);
            }
            // SAFETY: the GIL is held. Nothing to report if the exception has no notes: the
            // user's own exception is about to propagate, and a note must not replace it.
            unsafe { ffi::PyErr_Clear() };
            Ok(convert::none(obj.gil()))
        }
        (result, _) => result,
    }
}

/// `self == other` and `self != other` as memoryview compares (`memoryview(self) == other`):
/// equal when `other` exports a buffer of the same shape whose items compare equal, unpacked
/// by struct where the formats differ; NotImplemented for non-exporters. A closed (released)
/// object is equal only to itself, as a released memoryview. Orderings are NotImplemented.
pub fn compare<T: Shipped>(
    this: This<'_, T>,
    other: Borrowed<'_>,
    op: core::ffi::c_int,
) -> Result<Owned> {
    if op != ffi::Py_EQ && op != ffi::Py_NE {
        return not_implemented();
    }
    if this.value.counter().snapshot().closed() {
        let same = this.obj.as_ptr() == other.as_ptr();
        return new_bool(this.gil, same == (op == ffi::Py_EQ));
    }
    match same_integer_bytes(this, other)? {
        Compared::Decided(equal) => return new_bool(this.gil, equal == (op == ffi::Py_EQ)),
        Compared::Refused => return not_implemented(),
        Compared::Undecided => {}
    }
    // SAFETY: `this.obj` is live and the GIL is held; a new memoryview (holding one export of
    // the object) or NULL.
    let view = unsafe { Owned::from_new(ffi::PyMemoryView_FromObject(this.obj.as_ptr())) }?;
    let name = if op == ffi::Py_EQ {
        c"__eq__"
    } else {
        c"__ne__"
    };
    let result = convert::call_method(view.borrow(), name, &[other]);
    release_memoryview(view.borrow())?;
    result
}

/// `mv.release()` after a step that may have failed: the step's exception (pending, if any)
/// is set aside while `release()` runs and is pending again after it, since no call may be
/// made with an exception pending (a debug CPython asserts it). A failed release is the error
/// returned, and the step's exception is dropped.
fn release_memoryview(mv: Borrowed<'_>) -> Result<()> {
    let pending = bufferkit::ffi::error::Pending::take(mv.gil());
    if let Err(e) = convert::call_method(mv, c"release", &[]) {
        pending.discard();
        return Err(e);
    }
    pending.restore();
    Ok(())
}

/// The comparison memoryview would make, computed as one `memcmp` where that gives the same
/// answer: both sides C-contiguous with the same shape and the same format of one integer
/// item (a byte-for-byte equal pair of integers is an equal pair, and only such a pair is;
/// not so for floats, where NaN differs from itself and 0.0 equals -0.0, nor for `'?'`).
/// `Undecided` where memoryview must decide (it unpacks every item).
fn same_integer_bytes<T: Shipped>(this: This<'_, T>, other: Borrowed<'_>) -> Result<Compared> {
    // Read again after `other`'s export, which may run Python code: a shipped object's layout
    // is fixed from construction to deallocation (closing or releasing leaves it), and the
    // caller keeps `this` alive for the call.
    let layout = this.value.layout();
    // Bytes, not text: no UTF-8 check or substring search per comparison.
    let text = layout.format().as_c_str().to_bytes();
    let code = match text {
        [b'@' | b'=' | b'<' | b'>' | b'!', code] | [code] => Some(*code),
        _ => None,
    };
    let integer = code.is_some_and(|c| b"bBhHiIlLqQnNc".contains(&c));
    if !integer || !layout.is_c_contiguous() || !convert::check_buffer(other) {
        return Ok(Compared::Undecided);
    }
    // Both views on the stack (`BufferView::with`): an == allocates nothing.
    let compared = BufferView::with(other, flags::FULL_RO, |theirs| {
        let same_layout = theirs.format().map(CStr::to_bytes) == Some(text)
            && theirs.shape() == Some(layout.shape())
            && theirs.is_contiguous(CopyOrder::C);
        if !same_layout {
            return Ok(Compared::Undecided);
        }
        BufferView::with(this.obj, flags::FULL_RO, |ours| {
            let n = ours.len();
            if theirs.len() != n {
                return Compared::Decided(false);
            }
            // SAFETY: both exports are held for the comparison and C-contiguous, `n` bytes
            // each (`len` of a contiguous export); nothing runs in between that could end
            // them.
            Compared::Decided(
                n == 0 || unsafe { libc::memcmp(ours.buf(), theirs.buf(), n as usize) } == 0,
            )
        })
    });
    match compared {
        Ok(result) => result,
        Err(_) => {
            // As memoryview: an `other` that refuses its export is not comparable, and the
            // answer is NotImplemented at once (asking memoryview would ask `other` again).
            // SAFETY: the GIL is held; the refusal is not the comparison's error.
            unsafe { ffi::PyErr_Clear() };
            Ok(Compared::Refused)
        }
    }
}

/// What [`same_integer_bytes`] found.
enum Compared {
    /// Equal or not, by one `memcmp`.
    Decided(bool),
    /// `other` refused its export: not comparable (memoryview's NotImplemented).
    Refused,
    /// memoryview's comparison decides.
    Undecided,
}

/// A new reference to `NotImplemented`.
fn not_implemented() -> Result<Owned> {
    // SAFETY: the GIL is held by every caller; `NotImplemented` is a static object, so the
    // borrowed pointer is live for as long as the interpreter.
    let ptr = unsafe { ffi::Py_NotImplemented() };
    // SAFETY: as above.
    let obj = unsafe { Borrowed::from_ptr(ptr) }.ok_or(Error::Raised)?;
    Ok(Owned::from_borrowed(obj))
}

/// `len()`: `shape[0]`; TypeError for 0-d.
pub fn len<T: Shipped>(this: This<'_, T>) -> Result<isize> {
    match open(this)?.layout().shape().first() {
        Some(&n) => Ok(n),
        None => Err(Error::type_error(format!(
            "0-dim {} has no len()",
            this.obj.type_name()
        ))),
    }
}

/// `"bufferkit.View"`: the module and qualified name of the object's type, for `repr`.
pub fn qualified_type_name(obj: Borrowed<'_>) -> Result<String> {
    // SAFETY: the type of a live object is live.
    let tp = unsafe { Borrowed::from_ptr(obj.type_ptr().cast()) }.ok_or(Error::Raised)?;
    let module = convert::str_of(convert::getattr(tp, c"__module__")?.borrow())?;
    let name = convert::str_of(convert::getattr(tp, c"__qualname__")?.borrow())?;
    Ok(format!("{module}.{name}"))
}

/// The getset entries every shipped type has (memoryview's attributes, `readonly`,
/// `exports`), followed by the type's own, then the terminator.
macro_rules! getset_table {
    ($T:ty, [$($extra:expr),* $(,)?]) => {{
        use $crate::types::common::{attr, Attr};
        const fn entry(name: &'static core::ffi::CStr, get: pyo3_ffi::getter, doc: &'static core::ffi::CStr) -> pyo3_ffi::PyGetSetDef {
            pyo3_ffi::PyGetSetDef { name: name.as_ptr(), get: Some(get), set: None, doc: doc.as_ptr(), closure: core::ptr::null_mut() }
        }
        [
            entry(c"format", getter!($T, |t| attr(t, Attr::Format)), c"The struct-module format of one item."),
            entry(c"itemsize", getter!($T, |t| attr(t, Attr::Itemsize)), c"The size in bytes of one item."),
            entry(c"ndim", getter!($T, |t| attr(t, Attr::Ndim)), c"The number of dimensions."),
            entry(c"shape", getter!($T, |t| attr(t, Attr::Shape)), c"The length of each dimension, as a tuple."),
            entry(c"strides", getter!($T, |t| attr(t, Attr::Strides)), c"The bytes between neighbours in each dimension, as a tuple."),
            entry(c"suboffsets", getter!($T, |t| attr(t, Attr::Suboffsets)), c"Always (): bufferkit never exports PIL-style layouts."),
            entry(c"nbytes", getter!($T, |t| attr(t, Attr::Nbytes)), c"The size of the items in bytes (product(shape) * itemsize)."),
            entry(c"c_contiguous", getter!($T, |t| attr(t, Attr::CContiguous)), c"Whether the items are C-contiguous."),
            entry(c"f_contiguous", getter!($T, |t| attr(t, Attr::FContiguous)), c"Whether the items are Fortran-contiguous."),
            entry(c"contiguous", getter!($T, |t| attr(t, Attr::Contiguous)), c"Whether the items are C- or Fortran-contiguous."),
            entry(c"readonly", getter!($T, $crate::types::common::readonly), c"Whether exports are read-only."),
            entry(c"exports", getter!($T, $crate::types::common::exports), c"The number of buffer exports alive now."),
            $($extra,)*
            pyo3_ffi::PyGetSetDef { name: core::ptr::null(), get: None, set: None, doc: core::ptr::null(), closure: core::ptr::null_mut() },
        ]
    }};
}
pub(crate) use getset_table;

/// A `PyMethodDef` entry.
pub const fn method(
    name: &'static CStr,
    meth: ffi::PyMethodDefPointer,
    flags: core::ffi::c_int,
    doc: &'static CStr,
) -> ffi::PyMethodDef {
    ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: meth,
        ml_flags: flags,
        ml_doc: doc.as_ptr(),
    }
}

/// The methods every shipped type has (`tobytes`, `tolist`, `__enter__`), followed by the
/// type's own, then the terminator.
macro_rules! method_table {
    ($T:ty, [$($extra:expr),* $(,)?]) => {{
        use $crate::types::common::method;
        [
            method(
                c"tobytes",
                pyo3_ffi::PyMethodDefPointer { PyCFunctionWithKeywords: varkw!($T, $crate::types::common::tobytes_method) },
                pyo3_ffi::METH_VARARGS | pyo3_ffi::METH_KEYWORDS,
                c"tobytes($self, /, order='C')\n--\n\nThe items as bytes, in order 'C', 'F' or 'A' (as memoryview.tobytes).",
            ),
            method(
                c"tolist",
                pyo3_ffi::PyMethodDefPointer { PyCFunction: noargs!($T, $crate::types::common::tolist_method) },
                pyo3_ffi::METH_NOARGS,
                c"tolist($self, /)\n--\n\nThe items as (nested) lists, as memoryview.tolist() gives them; formats\nmemoryview does not know are unpacked with struct (a tuple per item for\nformats of several values).",
            ),
            method(
                c"__enter__",
                pyo3_ffi::PyMethodDefPointer { PyCFunction: noargs!($T, $crate::types::common::enter) },
                pyo3_ffi::METH_NOARGS,
                c"__enter__($self, /)\n--\n\nReturn the object itself.",
            ),
            $($extra,)*
            pyo3_ffi::PyMethodDef::zeroed(),
        ]
    }};
}
pub(crate) use method_table;

/// A `PyType_Slot` entry.
pub const fn slot(slot: core::ffi::c_int, pfunc: *mut core::ffi::c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}

/// The slot table terminator.
pub const SLOT_END: ffi::PyType_Slot = ffi::PyType_Slot {
    slot: 0,
    pfunc: core::ptr::null_mut(),
};

/// `PyType_Spec.flags` (a C `unsigned int`) from the `unsigned long` `Py_TPFLAGS_*` values,
/// refusing at compile time any flag that would not fit.
pub const fn spec_flags(flags: core::ffi::c_ulong) -> core::ffi::c_uint {
    assert!(flags <= core::ffi::c_uint::MAX as core::ffi::c_ulong);
    flags as core::ffi::c_uint
}

/// `Py_TPFLAGS_IMMUTABLETYPE` where it exists (3.10+): the class's attributes cannot be
/// reassigned, as for built-in types.
#[cfg(Py_3_10)]
pub const IMMUTABLE: core::ffi::c_ulong = ffi::Py_TPFLAGS_IMMUTABLETYPE;
/// `Py_TPFLAGS_IMMUTABLETYPE` does not exist before 3.10.
#[cfg(not(Py_3_10))]
pub const IMMUTABLE: core::ffi::c_ulong = 0;

/// The memoryview-compatible attributes every bufferkit exporter has.
#[derive(Clone, Copy, Debug)]
pub enum Attr {
    /// `format`
    Format,
    /// `itemsize`
    Itemsize,
    /// `ndim`
    Ndim,
    /// `shape`
    Shape,
    /// `strides`
    Strides,
    /// `suboffsets` (always `()`)
    Suboffsets,
    /// `nbytes`
    Nbytes,
    /// `c_contiguous`
    CContiguous,
    /// `f_contiguous`
    FContiguous,
    /// `contiguous`
    Contiguous,
}

/// The value of `attr` for `layout`.
pub fn layout_attr(gil: Gil<'_>, layout: &Layout, attr: Attr) -> Result<Owned> {
    match attr {
        Attr::Format => new_str(gil, layout.format().as_str()),
        Attr::Itemsize => new_int(gil, layout.itemsize()),
        Attr::Ndim => new_int(gil, layout.ndim() as isize),
        Attr::Shape => new_int_tuple(gil, layout.shape()),
        Attr::Strides => new_int_tuple(gil, layout.strides()),
        Attr::Suboffsets => new_int_tuple(gil, &[]),
        Attr::Nbytes => new_int(gil, layout.nbytes()),
        Attr::CContiguous => new_bool(gil, layout.is_c_contiguous()),
        Attr::FContiguous => new_bool(gil, layout.is_f_contiguous()),
        Attr::Contiguous => new_bool(gil, layout.is_c_contiguous() || layout.is_f_contiguous()),
    }
}

/// "cannot release: 2 exported buffers"
pub fn exported_error(action: &str, count: usize) -> Error {
    let s = if count == 1 { "" } else { "s" };
    Error::buffer_error(format!("cannot {action}: {count} exported buffer{s}"))
}

/// "cannot close: 1 exported buffer is still in use; release it first (...)": the refusal of
/// `close()`/`freeze()` while exported, with what ends an export, for users who do not know
/// which object holds it.
pub fn in_use_error(action: &str, count: usize) -> Error {
    let message = if count == 1 {
        format!(
            "cannot {action}: 1 exported buffer is still in use; release it first: call \
             memoryview.release() or leave its with block, or del the numpy array or other \
             object that holds it"
        )
    } else {
        format!(
            "cannot {action}: {count} exported buffers are still in use; release them first: \
             call memoryview.release() or leave their with blocks, or del the numpy arrays or \
             other objects that hold them"
        )
    };
    Error::buffer_error(message)
}

/// A `format` argument: a `struct` format string; a numpy type string or name that means
/// exactly one struct format (`'f4'`, `'<f8'`, `'u1'`, `'int16'`, `'float32'`); or a numpy
/// dtype or scalar type (`numpy.dtype('<i4')`, `numpy.float64`), whose format is the one numpy
/// itself exports for it (its buffer's `format`). numpy is never imported for this: an object
/// can only be a dtype if numpy is already loaded.
///
/// Refused with ValueError: strings neither `struct` nor the numpy table accept, formats with
/// no size or no items (pad bytes only), dtypes without a struct format (complex, datetime,
/// str, object, structured); TypeError for anything else. The messages say what to pass.
pub fn parse_format(arg: Borrowed<'_>) -> Result<Format> {
    if convert::is_str(arg) {
        let text = convert::str_ref(arg)?;
        let why = match struct_format(arg.gil(), &text)? {
            Ok(format) => return Ok(format),
            Err(why) => why,
        };
        let shown = escaped(&text);
        return match numpy_typestr(&text) {
            Some(Ok(mapped)) => match struct_format(arg.gil(), &mapped)? {
                Ok(format) => Ok(format),
                Err(_) if mapped.ends_with("Zf") || mapped.ends_with("Zd") => Err(
                    Error::value_error(format!("bad format '{shown}': {}", no_complex(&mapped))),
                ),
                Err(why) => Err(Error::value_error(format!(
                    "bad format '{shown}': numpy's '{shown}' is struct's '{mapped}', and {}",
                    why.text()
                ))),
            },
            Some(Err(why)) => Err(Error::value_error(format!("bad format '{shown}': {why}"))),
            None if why.is_struct_error() => Err(Error::value_error(format!(
                "bad format '{shown}': {}; pass a struct format ('B', 'd', '<i', '2h'), a numpy \
                 type string ('<f8', 'i2', 'u1', 'float32') or a numpy dtype",
                why.text()
            ))),
            None => Err(Error::value_error(format!(
                "bad format '{shown}': {}",
                why.text()
            ))),
        };
    }
    if let Some((exported, name)) = numpy_dtype_format(arg)? {
        let shown = escaped(&exported);
        return match struct_format(arg.gil(), &exported)? {
            Ok(format) => Ok(format),
            Err(why) => Err(Error::value_error(format!(
                "bad format: numpy dtype {name} exports format '{shown}', which struct cannot \
                 describe ({})",
                why.text()
            ))),
        };
    }
    Err(Error::type_error(format!(
        "format must be a str (a struct format such as 'd' or '<i') or a numpy dtype, not {}",
        arg.type_name()
    )))
}

/// Why a complex format (`'Zf'`, `'Zd'`) is refused by a `struct` older than CPython 3.15, and
/// what to pass instead.
fn no_complex(mapped: &str) -> String {
    let half = if mapped.ends_with("Zf") { "f" } else { "d" };
    format!("struct has no complex format before Python 3.15; '2{half}' describes the (real, imag) pairs")
}

/// Why `struct` (or bufferkit after it) refused a format string.
enum Rejected {
    /// `struct.Struct(text)` raised; its message.
    Struct(String),
    /// Not ASCII, or an embedded NUL.
    Text(&'static str),
    /// `struct` accepted it, but its size is 0.
    NoSize,
    /// `struct` accepted it, but it has pad bytes only.
    NoItems,
}

impl Rejected {
    fn is_struct_error(&self) -> bool {
        matches!(self, Self::Struct(_))
    }

    fn text(&self) -> String {
        match self {
            Self::Struct(message) => message.clone(),
            Self::Text(why) => (*why).to_owned(),
            Self::NoSize => "it has no size".to_owned(),
            Self::NoItems => "it has no items, only pad bytes".to_owned(),
        }
    }
}

/// `text` as a [`Format`] if the interpreter's `struct` module accepts it and it describes at
/// least one value of non-zero size; otherwise why not. Errors other than `struct`'s own
/// (the import failing, say) are the outer `Err`.
fn struct_format(
    gil: bufferkit::exporter::Gil<'_>,
    text: &str,
) -> Result<Result<Format, Rejected>> {
    if !text.is_ascii() {
        return Ok(Err(Rejected::Text("formats are ASCII")));
    }
    // The common case, one item of a fixed size ('d', '<i'), is struct's answer without
    // asking struct (about 1 µs of Python calls), with a static text; pad bytes ('x') are
    // not an item.
    if let Some(format) = bufferkit::__private::fixed_format(text.as_bytes()) {
        return Ok(Ok(format));
    }
    let Ok(c_fmt) = CString::new(text) else {
        return Ok(Err(Rejected::Text("embedded NUL")));
    };
    let module = convert::import(gil, c"struct")?;
    let arg = new_str(gil, text)?;
    let packer = match convert::call_method(module.borrow(), c"Struct", &[arg.borrow()]) {
        Ok(packer) => packer,
        Err(_) => return Ok(Err(Rejected::Struct(pending_message(gil)))),
    };
    let size = convert::getattr(packer.borrow(), c"size")?;
    let size = convert::index_arg(size.borrow(), &|| "struct size".into())?;
    if size <= 0 {
        return Ok(Err(Rejected::NoSize));
    }
    // A format of pad bytes only ('x', '4x', '0i4x') describes no value: nothing to read or
    // write.
    if !has_items(text) {
        return Ok(Err(Rejected::NoItems));
    }
    Ok(Format::new(c_fmt, size as usize).map_err(|e| Rejected::Struct(e.to_string())))
}

/// numpy's spelling of a type (an array-protocol type string such as `'<f8'`, `'i2'`, `'u1'`,
/// `'S5'`, or a sized name such as `'float32'`, `'uint8'`, `'bool'`) as the one struct format
/// that means the same item: `Some(Ok(format))`; `Some(Err(why))` for numpy types that have
/// none (complex, long double, str, datetime, object, void); `None` if `text` is not numpy's.
///
/// The byte order is kept: `'<'`, `'>'` and `'='` as struct's prefixes of the same meaning,
/// none (numpy's native order) as no prefix, and `'|'` ("not applicable") as no prefix. Sized
/// codes map to the struct codes of that size (`b h i q`, `e f d`), which have it in native
/// and in standard mode on every platform CPython supports. Only strings `struct` itself
/// refuses get here: where both read a string ('b', 'd', '2i'), struct's meaning is numpy's.
pub fn numpy_typestr(text: &str) -> Option<Result<String, String>> {
    let named = match text {
        "bool" => Some("b1"),
        "int8" => Some("i1"),
        "int16" => Some("i2"),
        "int32" => Some("i4"),
        "int64" => Some("i8"),
        "uint8" => Some("u1"),
        "uint16" => Some("u2"),
        "uint32" => Some("u4"),
        "uint64" => Some("u8"),
        "float16" => Some("f2"),
        "float32" => Some("f4"),
        "float64" => Some("f8"),
        "complex64" => Some("c8"),
        "complex128" => Some("c16"),
        _ => None,
    };
    let typestr = named.unwrap_or(text);
    let (order, rest) = match typestr.as_bytes().first() {
        Some(b'<' | b'>' | b'=') => typestr.split_at(1),
        Some(b'|') => ("", &typestr[1..]),
        _ => ("", typestr),
    };
    let mut chars = rest.chars();
    let kind = chars.next()?;
    let digits = chars.as_str();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let size: u64 = digits.parse().ok()?;
    let code = match (kind, size) {
        ('b', 1) => "?",
        ('i', 1) => "b",
        ('i', 2) => "h",
        ('i', 4) => "i",
        ('i', 8) => "q",
        ('u', 1) => "B",
        ('u', 2) => "H",
        ('u', 4) => "I",
        ('u', 8) => "Q",
        ('f', 2) => "e",
        ('f', 4) => "f",
        ('f', 8) => "d",
        ('S' | 'a', n) if n > 0 => return Some(Ok(format!("{order}{n}s"))),
        // struct's complex codes (CPython 3.15+); where struct lacks them, parse_format says
        // what to pass instead (`no_complex`).
        ('c', 8) => return Some(Ok(format!("{order}Zf"))),
        ('c', 16) => return Some(Ok(format!("{order}Zd"))),
        ('b' | 'i' | 'u' | 'f' | 'c', _) => {
            return Some(Err(format!(
                "numpy's '{kind}{size}' has no struct format of that size"
            )));
        }
        ('U' | 'M' | 'm' | 'O' | 'V' | 'S' | 'a', _) => {
            return Some(Err(format!("numpy's '{kind}' types have no struct format")));
        }
        _ => return None,
    };
    Some(Ok(format!("{order}{code}")))
}

/// The buffer format numpy exports for `arg` if `arg` is a numpy dtype or scalar type, with
/// the dtype's name for messages; `None` for anything else.
fn numpy_dtype_format(arg: Borrowed<'_>) -> Result<Option<(String, String)>> {
    let gil = arg.gil();
    let name = new_str(gil, "numpy")?;
    // SAFETY: `name` is a live str and the GIL is held; a new reference to the module if it
    // is in sys.modules, else NULL (with an exception only if the lookup itself failed).
    let numpy = match unsafe { Owned::from_new(ffi::PyImport_GetModule(name.as_ptr())) } {
        Ok(numpy) => numpy,
        // SAFETY: the GIL is held.
        Err(_) if unsafe { ffi::PyErr_Occurred() }.is_null() => return Ok(None),
        Err(e) => return Err(e),
    };
    // `sys.modules['numpy']` may be anything (None blocks the import; a stub module): then
    // nothing is a numpy dtype.
    let classes = convert::getattr(numpy.borrow(), c"dtype").and_then(|dtype_class| {
        convert::getattr(numpy.borrow(), c"generic").map(|generic| (dtype_class, generic))
    });
    let Ok((dtype_class, generic)) = classes else {
        // SAFETY: the GIL is held; the failed lookup's exception is dropped.
        unsafe { ffi::PyErr_Clear() };
        return Ok(None);
    };
    // SAFETY: all three objects are live (owned or borrowed for the call); the GIL is held.
    let is_dtype = unsafe { ffi::PyObject_IsInstance(arg.as_ptr(), dtype_class.as_ptr()) };
    if is_dtype < 0 {
        return Err(Error::Raised);
    }
    // SAFETY: as above; PyType_Check only reads the object's type.
    let is_scalar_type = is_dtype == 0
        && unsafe { ffi::PyType_Check(arg.as_ptr()) } != 0
        && match unsafe { ffi::PyObject_IsSubclass(arg.as_ptr(), generic.as_ptr()) } {
            n if n < 0 => return Err(Error::Raised),
            n => n == 1,
        };
    if is_dtype == 0 && !is_scalar_type {
        return Ok(None);
    }
    let dtype = convert::call(dtype_class.borrow(), &[arg])?;
    // SAFETY: `dtype` is live; PyObject_Str returns a new reference or NULL.
    let dtype_name = unsafe { Owned::from_new(ffi::PyObject_Str(dtype.as_ptr())) }?;
    let dtype_name = convert::str_of(dtype_name.borrow())?;
    // The format numpy's own export of an array of this dtype carries: what every consumer of
    // such an array already sees.
    let zero = new_int(gil, 0)?;
    let empty = convert::call_method(numpy.borrow(), c"empty", &[zero.borrow(), dtype.borrow()])?;
    // SAFETY: `empty` is live and the GIL is held; a new reference or NULL.
    let view = match unsafe { Owned::from_new(ffi::PyMemoryView_FromObject(empty.as_ptr())) } {
        Ok(view) => view,
        Err(_) => {
            let why = pending_message(arg.gil());
            return Err(Error::value_error(format!(
                "bad format: numpy dtype {dtype_name} has no buffer format ({why})"
            )));
        }
    };
    let format = convert::getattr(view.borrow(), c"format");
    release_memoryview(view.borrow())?;
    let format = convert::str_of(format?.borrow())?;
    Ok(Some((format, dtype_name)))
}

/// `text` with control characters escaped as Python's `repr` would, so that a message can
/// show it whole (a NUL would otherwise end the C string of the message).
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if !c.is_control() => out.push(c),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
    }
    out
}

/// Whether a format that `struct` accepted unpacks to at least one value: some code other than
/// the pad byte `x` with a count that is not 0 (for `s` and `p` the count is a length, and the
/// item exists whatever it is). Scanning the text avoids unpacking `itemsize` zero bytes,
/// which for a format like '1000000000000s' would be a terabyte.
fn has_items(fmt: &str) -> bool {
    let body = fmt.strip_prefix(['@', '=', '<', '>', '!']).unwrap_or(fmt);
    let mut count: Option<u128> = None;
    for c in body.chars() {
        match c {
            '0'..='9' => {
                let digit = u128::from(c as u8 - b'0');
                count = Some(count.unwrap_or(0).saturating_mul(10).saturating_add(digit));
            }
            c if c.is_whitespace() => count = None,
            'x' => count = None,
            's' | 'p' => return true,
            _ if count == Some(0) => count = None,
            _ => return true,
        }
    }
    false
}

/// Takes the pending exception and returns its message (for re-raising with context).
pub fn pending_message(gil: bufferkit::exporter::Gil<'_>) -> String {
    bufferkit::ffi::error::Pending::take(gil).message()
}

/// A shape argument: an int, or a tuple or list of ints.
pub fn parse_shape(obj: Borrowed<'_>) -> Result<Dims> {
    // SAFETY: `obj` is live and the GIL is held.
    let is_seq =
        unsafe { ffi::PyTuple_Check(obj.as_ptr()) != 0 || ffi::PyList_Check(obj.as_ptr()) != 0 };
    if !is_seq {
        // SAFETY: as above.
        if unsafe { ffi::PyIndex_Check(obj.as_ptr()) } == 0 {
            return Err(Error::type_error(format!(
                "shape must be an int or a tuple of ints, not {}",
                obj.type_name()
            )));
        }
        return Ok(Dims::one(convert::index_arg(obj, &|| "shape".into())?));
    }
    index_dims(obj, "shape")
}

/// Lengths or strides: what `shape=` and `strides=` arguments become, on the stack up to
/// four (no allocation per call for everyday shapes).
pub enum Dims {
    /// Up to four, in front.
    Few(usize, [isize; 4]),
    /// More.
    Many(Vec<isize>),
}

impl Default for Dims {
    fn default() -> Self {
        Dims::Few(0, [0; 4])
    }
}

impl Dims {
    /// One dimension of `n`.
    pub fn one(n: isize) -> Self {
        Dims::Few(1, [n, 0, 0, 0])
    }

    /// Appends `n`.
    fn push(&mut self, n: isize) {
        match self {
            Dims::Few(len, items) if *len < items.len() => {
                items[*len] = n;
                *len += 1;
            }
            Dims::Few(len, items) => {
                let mut all = items[..*len].to_vec();
                all.push(n);
                *self = Dims::Many(all);
            }
            Dims::Many(all) => all.push(n),
        }
    }
}

impl core::ops::Deref for Dims {
    type Target = [isize];
    fn deref(&self) -> &[isize] {
        match self {
            Dims::Few(len, items) => &items[..*len],
            Dims::Many(all) => all,
        }
    }
}

/// The items of a tuple or list as `Dims` (`what` names them in errors), refused beyond
/// `MAX_NDIM`. A list is read from a tuple taken first: an item's `__index__` may change a
/// list it is in; a tuple cannot change.
pub fn index_dims(seq: Borrowed<'_>, what: &str) -> Result<Dims> {
    // SAFETY: `seq` is live and the GIL is held.
    let items = if unsafe { ffi::PyTuple_Check(seq.as_ptr()) } != 0 {
        Owned::from_borrowed(seq)
    } else {
        // SAFETY: as above; a new reference (a tuple holding its own references to the items)
        // or NULL with an exception set.
        unsafe { Owned::from_new(ffi::PySequence_Tuple(seq.as_ptr())) }?
    };
    // SAFETY: `items` is a tuple.
    let n = unsafe { ffi::PyTuple_Size(items.as_ptr()) } as usize;
    if n > bufferkit::layout::MAX_NDIM {
        return Err(layout_error(LayoutError::TooManyDims(n)));
    }
    let mut dims = Dims::default();
    for i in 0..n {
        // SAFETY: 0 <= i < n; borrowed from the tuple, which `items` keeps alive and nothing
        // can change (tuples are immutable).
        let item = unsafe { Borrowed::from_ptr(ffi::PyTuple_GetItem(items.as_ptr(), i as isize)) }
            .ok_or(Error::Raised)?;
        dims.push(convert::index_arg(item, &|| format!("{what}[{i}]"))?);
    }
    Ok(dims)
}

/// A `LayoutError` as the exception CPython would raise for it.
pub fn layout_error(e: LayoutError) -> Error {
    if e.is_overflow() {
        Error::overflow_error(e.to_string())
    } else {
        Error::value_error(e.to_string())
    }
}

/// An `order` argument of `tobytes()`: `None`, `'C'`, `'F'` or `'A'`.
pub fn parse_copy_order(obj: Option<Borrowed<'_>>) -> Result<CopyOrder> {
    let Some(obj) = obj else {
        return Ok(CopyOrder::C);
    };
    // SAFETY: `obj` is live and the GIL is held.
    if unsafe { obj.as_ptr() == ffi::Py_None() } {
        return Ok(CopyOrder::C);
    }
    if !convert::is_str(obj) {
        return Err(Error::type_error(format!(
            "order must be a str or None, not {}",
            obj.type_name()
        )));
    }
    match convert::str_of(obj)?.as_str() {
        "C" => Ok(CopyOrder::C),
        "F" => Ok(CopyOrder::F),
        "A" => Ok(CopyOrder::A),
        other => Err(Error::value_error(format!(
            "order must be 'C', 'F', 'A' or None, not '{other}'"
        ))),
    }
}

/// `obj.tobytes(order)` through the object's own export.
pub fn tobytes(obj: Borrowed<'_>, order: CopyOrder) -> Result<Owned> {
    BufferView::with(obj, flags::FULL_RO, |view| view.to_bytes(order))?
}

/// `obj.tolist()`: memoryview's answer where memoryview knows the format, else the items
/// unpacked by `struct` (a tuple per item for formats of several values, like
/// `_testbuffer.ndarray.tolist()`).
pub fn tolist(obj: Borrowed<'_>, layout: &Layout) -> Result<Owned> {
    // SAFETY: `obj` is live and the GIL is held; a memoryview is a new reference.
    let mv = unsafe { Owned::from_new(ffi::PyMemoryView_FromObject(obj.as_ptr())) }?;
    let listed = convert::call_method(mv.borrow(), c"tolist", &[]);
    release_memoryview(mv.borrow())?;
    match listed {
        Ok(list) => return Ok(list),
        // SAFETY: the GIL is held; the exception class statics are initialised before any
        // module loads.
        Err(_) if unsafe { convert::error_matches(ffi::PyExc_NotImplementedError) } => {
            // SAFETY: the GIL is held; memoryview does not know this format: unpack it.
            unsafe { ffi::PyErr_Clear() };
        }
        Err(e) => return Err(e),
    }
    let module = convert::import(obj.gil(), c"struct")?;
    let fmt = new_str(obj.gil(), layout.format().as_str())?;
    let packer = match convert::call_method(module.borrow(), c"Struct", &[fmt.borrow()]) {
        Ok(packer) => packer,
        Err(_) => {
            // A View's format is its base's, which struct may not know ('w', 'T{...}'): as
            // memoryview.tolist(), NotImplementedError ("memoryview: unsupported format w").
            let why = pending_message(obj.gil());
            let message = format!(
                "{}: unsupported format {} ({why})",
                obj.type_name(),
                layout.format().as_str()
            );
            let message = CString::new(escaped(&message)).map_err(|_| Error::Raised)?;
            // SAFETY: the GIL is held; the exception class static is initialised before any
            // module loads; PyErr_SetString copies the message.
            unsafe { ffi::PyErr_SetString(ffi::PyExc_NotImplementedError, message.as_ptr()) };
            return Err(Error::Raised);
        }
    };
    let bytes = tobytes(obj, CopyOrder::C)?;
    let items = convert::call_method(packer.borrow(), c"iter_unpack", &[bytes.borrow()])?;
    // SAFETY: `items` is an iterator; PySequence_List drains it into a new list.
    let items = unsafe { Owned::from_new(ffi::PySequence_List(items.as_ptr())) }?;
    let mut flat = Vec::new();
    // SAFETY: `items` is a list; its length does not change (no Python code runs below).
    let n = unsafe { ffi::PyList_Size(items.as_ptr()) };
    for i in 0..n {
        // SAFETY: 0 <= i < len(items); PyList_GetItem returns a borrowed reference.
        let t = unsafe { Borrowed::from_ptr(ffi::PyList_GetItem(items.as_ptr(), i)) }
            .ok_or(Error::Raised)?;
        // SAFETY: `t` is a tuple produced by iter_unpack.
        let item = if unsafe { ffi::PyObject_Size(t.as_ptr()) } == 1 {
            // SAFETY: `t` is a 1-tuple.
            unsafe { Owned::from_new(ffi::PySequence_GetItem(t.as_ptr(), 0)) }?
        } else {
            Owned::from_borrowed(t)
        };
        flat.push(item);
    }
    let mut next = flat.into_iter();
    nest(&mut next, layout.shape())
}

fn nest(items: &mut impl Iterator<Item = Owned>, shape: &[isize]) -> Result<Owned> {
    let Some((&len, rest)) = shape.split_first() else {
        return items
            .next()
            .ok_or_else(|| Error::value_error("fewer items than the shape needs"));
    };
    // SAFETY: the GIL is held by callers; a new list of `len` NULL slots, each set below.
    let list = unsafe { Owned::from_new(ffi::PyList_New(len)) }?;
    for i in 0..len {
        let item = nest(items, rest)?;
        // SAFETY: `list` is fresh with `len` slots; PyList_SetItem steals `item`.
        unsafe { ffi::PyList_SetItem(list.as_ptr(), i, item.into_raw()) };
    }
    Ok(list)
}

/// `"(3, 4)"` / `"(5,)"` / `"()"`: a shape as Python prints a tuple.
pub fn shape_text(shape: &[isize]) -> String {
    match shape {
        [] => "()".into(),
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(isize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
