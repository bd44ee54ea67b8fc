//! What `Buffer` and `View` share: the memoryview-compatible attributes of a [`Layout`],
//! `tobytes()`/`tolist()` through the object's own export, argument parsing for formats and
//! shapes, and the messages for objects that are closed or exported.

use core::ffi::{c_char, CStr};
use std::ffi::CString;

use pyo3_ffi as ffi;

use crate::exporter::BufferExporter;
use crate::ffi::convert::{self, new_bool, new_int, new_int_tuple, new_str};
use crate::ffi::{Borrowed, Error, Owned, PyResult, This};
use crate::layout::{Format, Layout, LayoutError};
use crate::request::flags;
use crate::view::{BufferView, CopyOrder};

/// The keyword list `PyArg_ParseTupleAndKeywords` takes (its constness changed in 3.13).
#[cfg(Py_3_13)]
pub type KwList = *const *const c_char;
/// The keyword list `PyArg_ParseTupleAndKeywords` takes (its constness changed in 3.13).
#[cfg(not(Py_3_13))]
pub type KwList = *mut *mut c_char;

/// A NULL-terminated keyword list for `PyArg_ParseTupleAndKeywords`.
pub fn kwlist<const N: usize>(names: [&'static CStr; N]) -> Vec<*mut c_char> {
    names
        .iter()
        .map(|n| n.as_ptr().cast_mut())
        .chain(core::iter::once(core::ptr::null_mut()))
        .collect()
}

/// A shipped exporter type: its layout, and the word for "no longer usable".
pub trait Shipped: BufferExporter {
    /// The layout it exports.
    fn layout(&self) -> &Layout;
}

/// Refuses operations on a closed Buffer or released View: ValueError
/// "operation on closed Buffer".
pub fn open<'py, T: Shipped>(this: This<'py, T>) -> PyResult<&'py T> {
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
pub fn attr<T: Shipped>(this: This<'_, T>, attr: Attr) -> PyResult<Owned> {
    layout_attr(open(this)?.layout(), attr)
}

/// `readonly`
pub fn readonly<T: Shipped>(this: This<'_, T>) -> PyResult<Owned> {
    new_bool(open(this)?.counter().snapshot().readonly())
}

/// `exports` (0 once closed)
pub fn exports<T: Shipped>(this: This<'_, T>) -> PyResult<Owned> {
    convert::new_uint(this.value.counter().count())
}

/// `tobytes(order='C')`
pub fn tobytes_method<T: Shipped>(
    this: This<'_, T>,
    args: Borrowed<'_>,
    kwargs: Option<Borrowed<'_>>,
) -> PyResult<Owned> {
    open(this)?;
    let mut names = kwlist([c"order"]);
    let mut order: *mut ffi::PyObject = core::ptr::null_mut();
    // SAFETY: `args` is a tuple and `kwargs` NULL or a dict, borrowed for the call; the
    // converter O stores a borrowed PyObject* into `order`.
    let parsed = unsafe {
        ffi::PyArg_ParseTupleAndKeywords(
            args.as_ptr(),
            kwargs.map_or(core::ptr::null_mut(), Borrowed::as_ptr),
            c"|O:tobytes".as_ptr(),
            names.as_mut_ptr() as KwList,
            &mut order,
        )
    };
    if parsed == 0 {
        return Err(Error::Raised);
    }
    // SAFETY: NULL or a borrowed reference valid for this call.
    let order = parse_copy_order(unsafe { Borrowed::from_ptr(order) })?;
    tobytes(this.obj, order)
}

/// `tolist()`
pub fn tolist_method<T: Shipped>(this: This<'_, T>) -> PyResult<Owned> {
    let value = open(this)?;
    tolist(this.obj, value.layout())
}

/// `__enter__()`: the object itself.
pub fn enter<T: Shipped>(this: This<'_, T>) -> PyResult<Owned> {
    open(this)?;
    Ok(Owned::from_borrowed(this.obj))
}

/// `len()`: `shape[0]`; TypeError for 0-d.
pub fn len<T: Shipped>(this: This<'_, T>) -> PyResult<isize> {
    match open(this)?.layout().shape().first() {
        Some(&n) => Ok(n),
        None => Err(Error::type_error(format!(
            "0-dim {} has no len()",
            this.obj.type_name()
        ))),
    }
}

/// `"bufferkit.View"`: the module and qualified name of the object's type, for `repr`.
pub fn qualified_type_name(obj: Borrowed<'_>) -> PyResult<String> {
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
pub fn layout_attr(layout: &Layout, attr: Attr) -> PyResult<Owned> {
    match attr {
        Attr::Format => new_str(layout.format().as_str()),
        Attr::Itemsize => new_int(layout.itemsize()),
        Attr::Ndim => new_int(layout.ndim() as isize),
        Attr::Shape => new_int_tuple(layout.shape()),
        Attr::Strides => new_int_tuple(layout.strides()),
        Attr::Suboffsets => new_int_tuple(&[]),
        Attr::Nbytes => new_int(layout.nbytes()),
        Attr::CContiguous => new_bool(layout.is_c_contiguous()),
        Attr::FContiguous => new_bool(layout.is_f_contiguous()),
        Attr::Contiguous => new_bool(layout.is_c_contiguous() || layout.is_f_contiguous()),
    }
}

/// "cannot close: 2 exported buffers"
pub fn exported_error(action: &str, count: usize) -> Error {
    let s = if count == 1 { "" } else { "s" };
    Error::buffer_error(format!("cannot {action}: {count} exported buffer{s}"))
}

/// The item size of a `struct` format, as the interpreter computes it; refuses formats that
/// `struct` rejects, that have no size, or that unpack to no value (pad bytes only).
pub fn parse_format(text: Borrowed<'_>) -> PyResult<Format> {
    if !convert::is_str(text) {
        return Err(Error::type_error(format!(
            "format must be a str, not {}",
            text.type_name()
        )));
    }
    let fmt = convert::str_of(text)?;
    let shown = escaped(&fmt);
    let bad = |why: &str| Error::value_error(format!("bad format '{shown}': {why}"));
    if !fmt.is_ascii() {
        return Err(bad("formats are ASCII"));
    }
    let c_fmt = CString::new(fmt.clone()).map_err(|_| bad("embedded NUL"))?;
    let module = convert::import(c"struct")?;
    let packer = match convert::call_method(module.borrow(), c"Struct", &[text]) {
        Ok(packer) => packer,
        Err(_) => {
            let why = pending_message(text.gil());
            return Err(bad(&why));
        }
    };
    let size = convert::getattr(packer.borrow(), c"size")?;
    let size = convert::index_arg(size.borrow(), &|| "struct size".into())?;
    if size <= 0 {
        return Err(bad("it has no size"));
    }
    // A format of pad bytes only ('x', '4x', '0i4x') describes no value: nothing to read or
    // write.
    if !has_items(&fmt) {
        return Err(bad("it has no items, only pad bytes"));
    }
    Format::new(c_fmt, size as usize).map_err(|e| bad(&e.to_string()))
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
pub fn pending_message(gil: crate::exporter::Gil<'_>) -> String {
    crate::ffi::error::Pending::take(gil).message()
}

/// A shape argument: an int, or a tuple or list of ints.
pub fn parse_shape(obj: Borrowed<'_>) -> PyResult<Vec<isize>> {
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
        return Ok(vec![convert::index_arg(obj, &|| "shape".into())?]);
    }
    // SAFETY: `obj` is a tuple or list.
    let n = unsafe { ffi::PyObject_Size(obj.as_ptr()) };
    if n < 0 {
        return Err(Error::Raised);
    }
    if n as usize > crate::layout::MAX_NDIM {
        return Err(Error::value_error(
            LayoutError::TooManyDims(n as usize).to_string(),
        ));
    }
    (0..n)
        .map(|i| {
            // SAFETY: `obj` is a sequence of length `n`; PySequence_GetItem returns a new
            // reference (the list may not change under us: no Python code runs in between).
            let item = unsafe { Owned::from_new(ffi::PySequence_GetItem(obj.as_ptr(), i)) }?;
            convert::index_arg(item.borrow(), &|| format!("shape[{i}]"))
        })
        .collect()
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
pub fn parse_copy_order(obj: Option<Borrowed<'_>>) -> PyResult<CopyOrder> {
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
pub fn tobytes(obj: Borrowed<'_>, order: CopyOrder) -> PyResult<Owned> {
    let view = BufferView::get(obj, flags::FULL_RO)?;
    view.to_bytes(order)
}

/// `obj.tolist()`: memoryview's answer where memoryview knows the format, else the items
/// unpacked by `struct` (a tuple per item for formats of several values, like
/// `_testbuffer.ndarray.tolist()`).
pub fn tolist(obj: Borrowed<'_>, layout: &Layout) -> PyResult<Owned> {
    // SAFETY: `obj` is live and the GIL is held; a memoryview is a new reference.
    let mv = unsafe { Owned::from_new(ffi::PyMemoryView_FromObject(obj.as_ptr())) }?;
    let listed = convert::call_method(mv.borrow(), c"tolist", &[]);
    let released = convert::call_method(mv.borrow(), c"release", &[]);
    match listed {
        Ok(list) => {
            released?;
            return Ok(list);
        }
        // SAFETY: the GIL is held; the exception class statics are initialised before any
        // module loads.
        Err(_) if unsafe { convert::error_matches(ffi::PyExc_NotImplementedError) } => {
            // SAFETY: the GIL is held; memoryview does not know this format: unpack it.
            unsafe { ffi::PyErr_Clear() };
            released?;
        }
        Err(e) => return Err(e),
    }
    let bytes = tobytes(obj, CopyOrder::C)?;
    let module = convert::import(c"struct")?;
    let fmt = new_str(layout.format().as_str())?;
    let packer = convert::call_method(module.borrow(), c"Struct", &[fmt.borrow()])?;
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

fn nest(items: &mut impl Iterator<Item = Owned>, shape: &[isize]) -> PyResult<Owned> {
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
