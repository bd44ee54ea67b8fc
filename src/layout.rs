//! Shape, strides, format, contiguity and bounds: the arithmetic of a PEP 3118 layout, checked
//! once when a layout is made so that an export only copies what is already known.
//!
//! The contiguity rules are those of `PyBuffer_IsContiguous` in CPython's `Objects/abstract.c`
//! (dimensions of length 1 place no demand on their stride; an empty layout is contiguous in
//! both orders). The bounds rule is that of `verify_structure` in `Modules/_testbuffer.c`, made
//! overflow-proof: every byte of every element a layout can address must lie inside the block
//! of memory it describes, computed with checked arithmetic so that shapes and strides near
//! 2**63 are refused instead of wrapping.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::fmt;

/// The most dimensions a buffer may have (`PyBUF_MAX_NDIM`).
pub const MAX_NDIM: usize = 64;

/// Memory order of a contiguous layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Row-major: the last index varies fastest.
    C,
    /// Column-major: the first index varies fastest.
    F,
}

/// A `struct`-module format string and the size of one item of it.
///
/// bufferkit does not parse formats: the interpreter does (`struct.calcsize`), and this type
/// records the answer.
// INVARIANTS: `itemsize >= 1`; `byte_format` is true exactly when `text` names one unsigned byte.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C)] // `itemsize` first: see `Layout`
pub struct Format {
    itemsize: isize,
    // A format `struct` sizes by itself ('B', '<i': see `fixed_itemsize`) borrows a static
    // copy, so that making, cloning and dropping the formats of everyday layouts allocates
    // nothing (a View of a bytearray made three of them, 15% of its instructions); any other
    // text is owned. Both arms keep the pointer in the same place, so reading it for an export
    // is one load either way.
    text: Cow<'static, CStr>,
    byte_format: bool,
}

impl Format {
    /// A format whose item size the interpreter computed (`struct.calcsize`). Refuses an item
    /// size of 0 or one that does not fit `Py_ssize_t`, and, for a format of one character
    /// whose size `struct` fixes (`'f'`, `'<h'`, ...), any other size. For Rust number types
    /// [`Format::of`] gives both at once.
    ///
    /// ```
    /// use bufferkit::Format;
    /// assert!(Format::new(c"f".into(), 4).is_ok());
    /// let e = Format::new(c"f".into(), 2).unwrap_err();
    /// assert_eq!(e.to_string(), "format 'f' has itemsize 4, not 2");
    /// ```
    pub fn new(text: CString, itemsize: usize) -> Result<Self, LayoutError> {
        Self::with_text(Cow::Owned(text), itemsize)
    }

    /// [`Format::new`] for a borrowed format string, copied only if it is not one of the
    /// formats `struct` sizes by itself (`'d'`, `'<i'`, ...), which need no copy.
    ///
    /// ```
    /// use bufferkit::Format;
    /// let f = Format::from_c_str(c"<i", 4).unwrap();
    /// assert_eq!((f.as_str(), f.itemsize()), ("<i", 4));
    /// ```
    pub fn from_c_str(text: &CStr, itemsize: usize) -> Result<Self, LayoutError> {
        Self::with_text(Cow::Borrowed(text), itemsize)
    }

    fn with_text(text: Cow<'_, CStr>, itemsize: usize) -> Result<Self, LayoutError> {
        let itemsize = match isize::try_from(itemsize) {
            Ok(n) if n >= 1 => n,
            _ => return Err(LayoutError::ItemSize(itemsize)),
        };
        let bytes = text.to_bytes();
        if bytes == b"B" && itemsize == 1 {
            // Every bytes-like object's format, checked without the table.
            return Ok(Self::bytes());
        }
        if let Some(fixed) = fixed_itemsize(bytes) {
            if fixed as isize != itemsize {
                return Err(LayoutError::FormatSize {
                    format: text.to_string_lossy().into_owned(),
                    fixed,
                    itemsize: itemsize as usize,
                });
            }
        }
        let byte_format = is_byte_format(bytes);
        let text = match static_text(bytes) {
            Some(fixed) => Cow::Borrowed(fixed),
            None => Cow::Owned(text.into_owned()),
        };
        Ok(Self {
            text,
            itemsize,
            byte_format,
        })
    }

    /// Unsigned bytes, `"B"`.
    pub fn bytes() -> Self {
        Self {
            text: Cow::Borrowed(c"B"),
            itemsize: 1,
            byte_format: true,
        }
    }

    /// The format string.
    pub fn as_c_str(&self) -> &CStr {
        &self.text
    }

    /// The format string as text (formats are ASCII; a non-UTF-8 one reads as `"?"`).
    pub fn as_str(&self) -> &str {
        self.text.to_str().unwrap_or("?")
    }

    /// The size in bytes of one item.
    pub fn itemsize(&self) -> isize {
        self.itemsize
    }

    /// Whether the format is one unsigned byte (`B`, with or without a byte-order prefix).
    pub fn is_bytes(&self) -> bool {
        self.byte_format
    }
}

/// The size `struct.calcsize` gives a one-character format, optionally prefixed by a byte-order
/// character, where the `struct` module fixes it (`Doc/library/struct.rst`, "Format
/// Characters": native sizes of a 64-bit or 32-bit platform CPython supports, standard sizes
/// with `<`, `>`, `=`, `!`); `None` for anything else, whose size only the interpreter knows.
pub(crate) fn fixed_itemsize(text: &[u8]) -> Option<usize> {
    let (standard, code) = match text {
        [code] | [b'@', code] => (false, *code),
        [b'<' | b'>' | b'=' | b'!', code] => (true, *code),
        _ => return None,
    };
    Some(match code {
        b'x' | b'c' | b'b' | b'B' | b'?' => 1,
        b'h' | b'H' | b'e' => 2,
        b'i' | b'I' | b'f' => 4,
        b'q' | b'Q' | b'd' => 8,
        b'l' | b'L' if standard => 4,
        b'l' | b'L' => size_of::<core::ffi::c_long>(),
        b'n' | b'N' | b'P' if !standard => size_of::<usize>(),
        _ => return None,
    })
}

/// The prefixes and codes of the formats [`fixed_itemsize`] knows, whose texts are kept in
/// [`STATIC_TEXTS`] (prefix `0`: none).
const PREFIXES: [u8; 6] = [0, b'@', b'<', b'>', b'=', b'!'];
const CODES: [u8; 19] = *b"xcbB?hHeiIfqQdlLnNP";

/// Every `[prefix]code` of [`PREFIXES`] x [`CODES`] as a NUL-terminated string (NUL-padded).
static STATIC_TEXTS: [[[u8; 3]; CODES.len()]; PREFIXES.len()] = {
    let mut texts = [[[0u8; 3]; CODES.len()]; PREFIXES.len()];
    let mut p = 0;
    while p < PREFIXES.len() {
        let mut c = 0;
        while c < CODES.len() {
            texts[p][c] = match PREFIXES[p] {
                0 => [CODES[c], 0, 0],
                prefix => [prefix, CODES[c], 0],
            };
            c += 1;
        }
        p += 1;
    }
    texts
};

/// Where each byte is in [`CODES`], plus one (0: not a code).
static CODE_INDEX: [u8; 128] = {
    let mut index = [0u8; 128];
    let mut c = 0;
    while c < CODES.len() {
        index[CODES[c] as usize] = c as u8 + 1;
        c += 1;
    }
    index
};

/// The static copy of `text` if it is one of the one-item formats `struct` sizes by itself.
fn static_text(text: &[u8]) -> Option<&'static CStr> {
    let (prefix, code) = match text {
        [code] => (0, *code),
        [prefix, code] => (*prefix, *code),
        _ => return None,
    };
    let p = match prefix {
        0 => 0,
        b'@' => 1,
        b'<' => 2,
        b'>' => 3,
        b'=' => 4,
        b'!' => 5,
        _ => return None,
    };
    debug_assert_eq!(PREFIXES[p], prefix);
    let c = usize::from(*CODE_INDEX.get(usize::from(code))?).checked_sub(1)?;
    CStr::from_bytes_until_nul(&STATIC_TEXTS[p][c]).ok()
}

/// Whether `text` is unsigned bytes (`'B'`, with or without a byte-order character):
/// `Facts::byte_format`, the one format a request may ask for without a shape.
#[inline(always)]
fn is_byte_format(text: &[u8]) -> bool {
    matches!(text, b"B" | [b'@' | b'=' | b'<' | b'>' | b'!', b'B'])
}

/// The format of `text` if it is one item of a size `struct` fixes by itself (`'B'`, `'<i'`,
/// `'d'`; not the pad byte `'x'`, which is no item), borrowing the static text: what
/// `Format::from_c_str(text, fixed_itemsize(text))` gives, found once.
pub(crate) fn fixed_format(text: &[u8]) -> Option<Format> {
    if text.last() == Some(&b'x') {
        return None;
    }
    let itemsize = fixed_itemsize(text)?;
    Some(Format {
        text: Cow::Borrowed(static_text(text)?),
        itemsize: itemsize as isize,
        byte_format: is_byte_format(text),
    })
}

/// A checked description of how items lie in one block of memory.
///
/// A `Layout` does not hold the memory; it holds everything about it that an export hands out
/// (format, shape, strides) and what the checks need (contiguity), and it knows the smallest
/// block length that contains every byte it addresses ([`Layout::required_len`]).
// INVARIANTS:
// - `dims` is `None` if `ndim == 0`, otherwise the shape followed by the strides, `ndim` each;
//   `ndim <= MAX_NDIM`, every `shape[i] >= 0`;
// - `nbytes == product(shape) * itemsize`, computed without overflow;
// - if `nbytes > 0`, every byte of every element, at `offset + sum(i_k * strides[k]) + b` for
//   `0 <= i_k < shape[k]` and `0 <= b < itemsize`, lies in `0..required_len`; if `nbytes == 0`,
//   `0 <= offset <= required_len`;
// - `c_contiguous`/`f_contiguous` are `PyBuffer_IsContiguous`'s answers for this layout.
#[derive(Clone, PartialEq, Eq)]
// `nbytes` and then the format's `itemsize`, in the order of `Py_buffer.len` and `itemsize`,
// so that an export copies the two with one 16-byte move.
#[repr(C)]
pub struct Layout {
    nbytes: isize,
    format: Format,
    // One allocation for both arrays, and none for a scalar: an export then reads a NULL shape
    // and strides pointer from it without a test (see `dims_ptrs`).
    dims: Option<Box<[isize]>>,
    // Half of `dims`' length, kept: deriving it on every export costs 8 instructions per pair
    // (96 -> 104, `make bench`).
    ndim: usize,
    offset: isize,
    required_len: usize,
    c_contiguous: bool,
    f_contiguous: bool,
    // The admission-table rows of `facts(..)`, found once: exports read them.
    admission: crate::request::Admission,
}

impl fmt::Debug for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layout")
            .field("format", &self.format.as_str())
            .field("shape", &self.shape())
            .field("strides", &self.strides())
            .field("offset", &self.offset)
            .field("nbytes", &self.nbytes)
            .field("required_len", &self.required_len)
            .finish_non_exhaustive()
    }
}

impl Layout {
    /// A contiguous layout of `shape` in `order`, starting at offset 0 of its block.
    ///
    /// ```
    /// use bufferkit::layout::{Format, Layout, Order};
    /// let l = Layout::contiguous(Format::new(c"d".into(), 8).unwrap(), &[3, 4], Order::F).unwrap();
    /// assert_eq!(l.strides(), &[8, 24]);
    /// assert_eq!((l.nbytes(), l.is_f_contiguous(), l.is_c_contiguous()), (96, true, false));
    /// ```
    pub fn contiguous(format: Format, shape: &[isize], order: Order) -> Result<Self, LayoutError> {
        check_shape(shape)?;
        let nbytes = checked_nbytes(&format, shape)?;
        let mut scratch = Scratch::new(shape.len());
        let strides = contiguous_strides(format.itemsize, shape, order, scratch.get());
        let required_len = usize::try_from(nbytes).map_err(|_| LayoutError::TooLarge)?;
        Ok(Self::assemble(
            format,
            shape,
            strides,
            0,
            nbytes,
            required_len,
        ))
    }

    /// A contiguous layout of `shape` in `order` whose element `(0, ..., 0)` lies `offset`
    /// bytes into a block of `block_len` bytes: [`Layout::strided`] with the strides of
    /// [`Layout::contiguous`], refused unless every byte it addresses lies in the block.
    ///
    /// ```
    /// use bufferkit::layout::{Format, Layout, Order};
    /// let l = Layout::contiguous_in(Format::new(c"i".into(), 4).unwrap(), &[3], Order::C, 4, 16).unwrap();
    /// assert_eq!((l.offset(), l.strides(), l.required_len()), (4, &[4][..], 16));
    /// assert!(Layout::contiguous_in(Format::bytes(), &[3], Order::C, 14, 16).is_err());
    /// ```
    pub fn contiguous_in(
        format: Format,
        shape: &[isize],
        order: Order,
        offset: isize,
        block_len: usize,
    ) -> Result<Self, LayoutError> {
        check_shape(shape)?;
        // A size beyond `isize` is the diagnosis, as for `contiguous`, before the bounds.
        let nbytes = checked_nbytes(&format, shape)?;
        let mut scratch = Scratch::new(shape.len());
        let strides = contiguous_strides(format.itemsize, shape, order, scratch.get());
        // A non-empty contiguous layout addresses exactly the bytes [offset, offset + nbytes):
        // the proof `strided` makes dimension by dimension, in closed form. Anything else
        // (an empty layout, a range outside the block) goes to `strided` for its checks and
        // its diagnosis.
        let fits = nbytes > 0
            && isize::try_from(block_len).is_ok()
            && offset >= 0
            && (offset as usize) <= block_len
            && block_len - offset as usize >= nbytes as usize;
        if fits {
            return Ok(Self::assemble(
                format, shape, strides, offset, nbytes, block_len,
            ));
        }
        Self::strided(format, shape, strides, offset, block_len)
    }

    /// A layout with explicit strides whose element `(0, ..., 0)` lies `offset` bytes into a
    /// block of `block_len` bytes. Refused unless every byte it addresses lies in the block.
    ///
    /// ```
    /// use bufferkit::layout::{Format, Layout, LayoutError};
    /// // Reversed bytes of a 12-byte block.
    /// let l = Layout::strided(Format::bytes(), &[12], &[-1], 11, 12).unwrap();
    /// assert!(!l.is_c_contiguous());
    /// // One byte too far.
    /// let e = Layout::strided(Format::bytes(), &[12], &[-1], 12, 12).unwrap_err();
    /// assert!(matches!(e, LayoutError::Item { .. }));
    /// ```
    pub fn strided(
        format: Format,
        shape: &[isize],
        strides: &[isize],
        offset: isize,
        block_len: usize,
    ) -> Result<Self, LayoutError> {
        check_shape(shape)?;
        if strides.len() != shape.len() {
            return Err(LayoutError::StridesLength {
                shape: shape.len(),
                strides: strides.len(),
            });
        }
        let block = isize::try_from(block_len).map_err(|_| LayoutError::TooLarge)?;
        if offset < 0 || offset > block {
            return Err(LayoutError::Offset { offset, block_len });
        }
        // Bounds first: a dimension that reaches outside the block is the better diagnosis
        // than the byte count it implies.
        if !shape.contains(&0) {
            check_bounds(&format, shape, strides, offset, block)?;
        }
        let nbytes = checked_nbytes(&format, shape)?;
        Ok(Self::assemble(
            format, shape, strides, offset, nbytes, block_len,
        ))
    }

    fn assemble(
        format: Format,
        shape: &[isize],
        strides: &[isize],
        offset: isize,
        nbytes: isize,
        required_len: usize,
    ) -> Self {
        let c_contiguous = is_contiguous(
            format.itemsize,
            nbytes,
            shape.iter().zip(strides.iter()).rev(),
        );
        let f_contiguous = is_contiguous(format.itemsize, nbytes, shape.iter().zip(strides.iter()));
        let facts = crate::request::Facts {
            readonly: false,
            c_contiguous,
            f_contiguous,
            byte_format: format.byte_format,
        };
        let admission = crate::request::Admission::of(facts.index());
        let ndim = shape.len();
        let dims = (ndim > 0).then(|| shape.iter().chain(strides).copied().collect());
        Self {
            format,
            dims,
            ndim,
            offset,
            nbytes,
            required_len,
            c_contiguous,
            f_contiguous,
            admission,
        }
    }

    /// The format.
    pub fn format(&self) -> &Format {
        &self.format
    }
    /// The size in bytes of one item.
    pub fn itemsize(&self) -> isize {
        self.format.itemsize
    }
    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.ndim
    }
    /// The length of each dimension.
    pub fn shape(&self) -> &[isize] {
        self.dims.as_deref().map_or(&[], |dims| &dims[..self.ndim])
    }
    /// The distance in bytes between neighbours in each dimension.
    pub fn strides(&self) -> &[isize] {
        self.dims.as_deref().map_or(&[], |dims| &dims[self.ndim..])
    }
    /// What `Py_buffer.shape` and `Py_buffer.strides` hold for this layout: the arrays, or
    /// NULL for a scalar (ndim 0), as `Doc/c-api/buffer.rst` requires (the strides of a scalar
    /// are NULL plus 0). Read on every export, so they cost a load and an add.
    #[inline(always)]
    pub(crate) fn dims_ptrs(&self) -> (*const isize, *const isize) {
        let shape = self
            .dims
            .as_deref()
            .map_or(core::ptr::null(), <[isize]>::as_ptr);
        (shape, shape.wrapping_add(self.ndim))
    }
    /// Where element `(0, ..., 0)` lies, in bytes from the start of the block.
    pub fn offset(&self) -> isize {
        self.offset
    }
    /// `product(shape) * itemsize`: the `len` of an export.
    pub fn nbytes(&self) -> isize {
        self.nbytes
    }
    /// The smallest block that holds every byte this layout addresses.
    pub fn required_len(&self) -> usize {
        self.required_len
    }
    /// `PyBuffer_IsContiguous(view, 'C')`.
    pub fn is_c_contiguous(&self) -> bool {
        self.c_contiguous
    }
    /// `PyBuffer_IsContiguous(view, 'F')`.
    pub fn is_f_contiguous(&self) -> bool {
        self.f_contiguous
    }
    /// [`Facts::index`](crate::request::Facts::index) of [`facts`](Self::facts): what
    /// [`Request::admit`](crate::request::Request::admit) takes.
    #[inline(always)]
    pub(crate) fn facts_index(&self, readonly: bool) -> u8 {
        self.facts(readonly).index()
    }

    /// The admission-table rows of this layout's facts (see
    /// [`Admission`](crate::request::Admission)).
    #[inline(always)]
    pub(crate) fn admission(&self) -> crate::request::Admission {
        self.admission
    }

    /// The facts a request is checked against, for an exporter that is `readonly` or not.
    pub fn facts(&self, readonly: bool) -> crate::request::Facts {
        crate::request::Facts {
            readonly,
            c_contiguous: self.c_contiguous,
            f_contiguous: self.f_contiguous,
            byte_format: self.format.byte_format,
        }
    }

    /// The same items seen through one slice per leading dimension, each given as
    /// `(start, step, length)` already clipped to the dimension (as `PySlice_AdjustIndices`
    /// gives them). The result addresses a subset of what `self` addresses, in the same block.
    ///
    /// ```
    /// use bufferkit::layout::{Format, Layout, Order};
    /// let l = Layout::contiguous(Format::bytes(), &[10], Order::C).unwrap();
    /// let s = l.sliced(&[(9, -3, 4)]).unwrap(); // [9, 6, 3, 0]
    /// assert_eq!((s.offset(), s.shape(), s.strides()), (9, &[4][..], &[-3][..]));
    /// ```
    pub fn sliced(&self, slices: &[(isize, isize, isize)]) -> Result<Self, LayoutError> {
        if slices.len() > self.ndim() {
            return Err(LayoutError::TooManySlices {
                slices: slices.len(),
                ndim: self.ndim(),
            });
        }
        // On the stack: slicing a View allocates nothing but the new layout's arrays.
        let ndim = self.ndim();
        let mut scratch = Scratch::new(2 * ndim);
        let (shape, strides) = scratch.get().split_at_mut(ndim);
        shape.copy_from_slice(self.shape());
        strides.copy_from_slice(self.strides());
        for (k, &(_, _, len)) in slices.iter().enumerate() {
            shape[k] = len;
        }
        // An empty result addresses nothing: element 0 stays where the parent had it and the
        // strides only need to be defined (they can overflow where the items they would step
        // over do not exist, e.g. a stride of 2**62 stepped by -1 from index 2).
        let empty = shape.contains(&0);
        let mut offset = self.offset;
        for (k, &(start, step, len)) in slices.iter().enumerate() {
            if empty {
                strides[k] = self.strides()[k].saturating_mul(step);
                continue;
            }
            if len > 0 {
                offset = start
                    .checked_mul(self.strides()[k])
                    .and_then(|d| offset.checked_add(d))
                    .ok_or(LayoutError::TooLarge)?;
            }
            strides[k] = self.strides()[k]
                .checked_mul(step)
                .ok_or(LayoutError::TooLarge)?;
        }
        Self::strided(
            self.format.clone(),
            shape,
            strides,
            offset,
            self.required_len,
        )
    }
}

/// Scratch space for the arrays a layout is made from: on the stack up to 8 entries (shape
/// and strides of up to 4 dimensions), where a zeroed `[isize; 2 * MAX_NDIM]` would cost a
/// 1 KiB memset per slice and a `Vec` an allocation.
enum Scratch {
    Few(usize, [isize; 8]),
    Many(Vec<isize>),
}

impl Scratch {
    fn new(len: usize) -> Self {
        if len <= 8 {
            Scratch::Few(len, [0; 8])
        } else {
            Scratch::Many(vec![0; len])
        }
    }

    fn get(&mut self) -> &mut [isize] {
        match self {
            Scratch::Few(len, items) => &mut items[..*len],
            Scratch::Many(items) => items,
        }
    }
}

/// The strides of a contiguous `shape` in `order`, written to `out` (as long as `shape`).
///
/// CPython's strides (`PyBuffer_FillContiguousStrides`): the running product of the
/// dimensions, so a dimension of length 0 zeroes every stride beyond it. Without a zero the
/// product cannot overflow once `checked_nbytes` passed; with one nothing is addressed, and
/// saturation only keeps the arithmetic defined.
fn contiguous_strides<'a>(
    itemsize: isize,
    shape: &[isize],
    order: Order,
    strides: &'a mut [isize],
) -> &'a [isize] {
    let mut step = itemsize;
    let mut fill = |k: usize| {
        strides[k] = step;
        step = step.saturating_mul(shape[k]);
    };
    match order {
        Order::C => (0..shape.len()).rev().for_each(&mut fill),
        Order::F => (0..shape.len()).for_each(&mut fill),
    }
    strides
}

/// Why a layout was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// More than [`MAX_NDIM`] dimensions.
    TooManyDims(usize),
    /// A negative dimension.
    NegativeDim {
        /// which dimension
        dim: usize,
        /// its length
        len: isize,
    },
    /// An item size of 0 or beyond `Py_ssize_t`.
    ItemSize(usize),
    /// A one-character format given another item size than the one `struct` fixes for it.
    FormatSize {
        /// the format
        format: String,
        /// its size
        fixed: usize,
        /// the size given
        itemsize: usize,
    },
    /// A size does not fit `Py_ssize_t`.
    TooLarge,
    /// `product(shape) * itemsize` does not fit `Py_ssize_t`, from this dimension on.
    TooManyBytes {
        /// the dimension whose length makes the product overflow
        dim: usize,
        /// its length
        len: isize,
    },
    /// `strides` and `shape` differ in length.
    StridesLength {
        /// `len(shape)`
        shape: usize,
        /// `len(strides)`
        strides: usize,
    },
    /// The offset lies outside the block.
    Offset {
        /// the offset asked for
        offset: isize,
        /// the block's length
        block_len: usize,
    },
    /// The element at the offset does not fit in the block (checked before any dimension).
    Item {
        /// the offset
        offset: isize,
        /// the item size
        itemsize: isize,
        /// the block's length
        block_len: usize,
    },
    /// A dimension reaches outside the block (or beyond what arithmetic can express).
    Dim {
        /// which dimension
        dim: usize,
        /// its length
        len: isize,
        /// its stride
        stride: isize,
        /// the first byte outside the block it reaches (`None`: beyond 2**63)
        reach: Option<isize>,
        /// the block's length
        block_len: usize,
    },
    /// More slices than dimensions.
    TooManySlices {
        /// slices given
        slices: usize,
        /// dimensions there are
        ndim: usize,
    },
}

impl LayoutError {
    /// Whether this is a size that cannot be represented (an `OverflowError`), rather than a
    /// layout that does not fit its memory (a `ValueError`).
    pub fn is_overflow(&self) -> bool {
        matches!(self, Self::TooLarge | Self::TooManyBytes { .. })
    }
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooManyDims(n) => write!(f, "ndim {n} exceeds the maximum of {MAX_NDIM}"),
            Self::NegativeDim { dim, len } => write!(f, "shape[{dim}] must be >= 0, not {len}"),
            Self::ItemSize(n) => write!(f, "itemsize must be between 1 and 2**63-1, not {n}"),
            Self::FormatSize {
                ref format,
                fixed,
                itemsize,
            } => write!(f, "format '{format}' has itemsize {fixed}, not {itemsize}"),
            Self::TooLarge => f.write_str("the layout has more than 2**63-1 bytes"),
            Self::TooManyBytes { dim, len } => {
                write!(
                    f,
                    "dimension {dim} (length {len}) makes the layout larger than 2**63-1 bytes"
                )
            }
            Self::StridesLength { shape, strides } => {
                write!(f, "strides has {strides} entries but shape has {shape}")
            }
            Self::Offset { offset, block_len } => {
                write!(f, "offset {offset} is outside the base's {block_len} bytes")
            }
            Self::Item {
                offset,
                itemsize,
                block_len,
            } => write!(
                f,
                "the item at offset {offset} (itemsize {itemsize}) does not fit in the base's \
                 {block_len} bytes"
            ),
            Self::Dim {
                dim,
                len,
                stride,
                reach,
                block_len,
            } => {
                write!(
                    f,
                    "dimension {dim} (length {len}, stride {stride}) reaches "
                )?;
                match reach {
                    Some(r) if r < 0 => write!(f, "byte {r}, before the start of the base"),
                    Some(r) => write!(f, "byte {r}, past the end of the base's {block_len} bytes"),
                    None => f.write_str("beyond the address space"),
                }
            }
            Self::TooManySlices { slices, ndim } => {
                write!(f, "{slices} slices given for {ndim} dimensions")
            }
        }
    }
}

impl std::error::Error for LayoutError {}

fn check_shape(shape: &[isize]) -> Result<(), LayoutError> {
    if shape.len() > MAX_NDIM {
        return Err(LayoutError::TooManyDims(shape.len()));
    }
    match shape.iter().position(|&n| n < 0) {
        Some(dim) => Err(LayoutError::NegativeDim {
            dim,
            len: shape[dim],
        }),
        None => Ok(()),
    }
}

fn checked_nbytes(format: &Format, shape: &[isize]) -> Result<isize, LayoutError> {
    // A zero dimension makes the product 0 whatever the others are; test for it first so that
    // (2**62, 4, 0) is an empty layout and not an overflow.
    if shape.contains(&0) {
        return Ok(0);
    }
    let mut bytes = format.itemsize;
    for (dim, &len) in shape.iter().enumerate() {
        bytes = bytes
            .checked_mul(len)
            .ok_or(LayoutError::TooManyBytes { dim, len })?;
    }
    Ok(bytes)
}

/// Walks the dimensions, widening `[lo, hi)` (the bytes addressed so far) by each one, and
/// blames the first dimension that takes it outside `[0, block)`.
fn check_bounds(
    format: &Format,
    shape: &[isize],
    strides: &[isize],
    offset: isize,
    block: isize,
) -> Result<(), LayoutError> {
    let block_len = block as usize; // `block` came from a usize
    let mut lo = offset;
    let mut hi = match offset.checked_add(format.itemsize) {
        Some(end) if end <= block => end,
        _ => {
            return Err(LayoutError::Item {
                offset,
                itemsize: format.itemsize,
                block_len,
            })
        }
    };
    for (dim, (&len, &stride)) in shape.iter().zip(strides).enumerate() {
        let fail = |reach| LayoutError::Dim {
            dim,
            len,
            stride,
            reach,
            block_len,
        };
        // `len >= 1` here: empty layouts are not bounds-checked.
        let span = (len - 1).checked_mul(stride).ok_or_else(|| fail(None))?;
        if span < 0 {
            lo = lo.checked_add(span).ok_or_else(|| fail(None))?;
            if lo < 0 {
                return Err(fail(Some(lo)));
            }
        } else {
            hi = hi.checked_add(span).ok_or_else(|| fail(None))?;
            if hi > block {
                return Err(fail(Some(hi - 1)));
            }
        }
    }
    Ok(())
}

/// `PyBuffer_IsContiguous` for one order: `dims` yields (length, stride) fastest-varying first.
fn is_contiguous<'a>(
    itemsize: isize,
    nbytes: isize,
    dims: impl Iterator<Item = (&'a isize, &'a isize)>,
) -> bool {
    if nbytes == 0 {
        return true;
    }
    let mut expected = itemsize;
    for (&len, &stride) in dims {
        if len > 1 && stride != expected {
            return false;
        }
        // No overflow: the product of all lengths times itemsize is nbytes, which fits.
        expected *= len;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(text: &str, itemsize: usize) -> Format {
        Format::new(CString::new(text).unwrap(), itemsize).unwrap()
    }

    #[test]
    fn fixed_formats_borrow_a_static_text() {
        // Every one-item text `fixed_itemsize` sizes, found by trying every byte (not from
        // `CODES`, so that a code added there and not to the table is caught here).
        for prefix in ["", "@", "<", ">", "=", "!"] {
            for code in 1..=127u8 {
                let text = format!("{prefix}{}", code as char);
                let Some(size) = fixed_itemsize(text.as_bytes()) else {
                    continue;
                };
                let f = Format::from_c_str(&CString::new(text.clone()).unwrap(), size).unwrap();
                assert_eq!(f.as_str(), text);
                // The shipped constructors' fast path: the same format, found at once.
                match fixed_format(text.as_bytes()) {
                    Some(fast) => {
                        assert_eq!((&fast, fast.byte_format), (&f, f.byte_format), "{text}");
                        assert!(matches!(fast.text, Cow::Borrowed(_)), "{text}");
                    }
                    None => assert!(text.ends_with('x'), "{text}"),
                }
                assert!(matches!(f.text, Cow::Borrowed(_)), "{text}");
                assert_eq!(
                    f,
                    Format::new(CString::new(text.clone()).unwrap(), size).unwrap()
                );
            }
        }
        for (text, size) in [("3f", 12), ("T{i:x:}", 4), ("<Zd", 16)] {
            let f = Format::from_c_str(&CString::new(text).unwrap(), size).unwrap();
            assert_eq!((f.as_str(), f.itemsize()), (text, size as isize));
            assert!(matches!(f.text, Cow::Owned(_)), "{text}");
        }
    }

    #[test]
    fn contiguous_in_is_contiguous_placed_in_a_block() {
        let l = Layout::contiguous_in(fmt("h", 2), &[3, 2], Order::F, 2, 14).unwrap();
        let c = Layout::contiguous(fmt("h", 2), &[3, 2], Order::F).unwrap();
        assert_eq!(
            (l.strides(), l.offset(), l.required_len()),
            (c.strides(), 2, 14)
        );
        assert!(l.is_f_contiguous() && !l.is_c_contiguous());
        // One byte short, and a size beyond isize reported as such (not as a bound).
        assert!(matches!(
            Layout::contiguous_in(fmt("h", 2), &[3, 2], Order::F, 3, 14),
            Err(LayoutError::Dim { .. } | LayoutError::Item { .. })
        ));
        assert!(matches!(
            Layout::contiguous_in(fmt("d", 8), &[1 << 62, 4], Order::C, 0, 16),
            Err(LayoutError::TooManyBytes { .. })
        ));
    }

    #[test]
    fn contiguous_in_decides_as_strided_does() {
        // The closed-form bounds test of `contiguous_in` against the dimension-by-dimension
        // proof of `strided` with the same strides: the same layout, or the same refusal.
        let shapes: &[&[isize]] = &[
            &[],
            &[0],
            &[1],
            &[5],
            &[3, 2],
            &[2, 0, 3],
            &[1, 4, 1],
            &[2, 2, 2],
        ];
        for (text, size) in [("B", 1), ("h", 2), ("d", 8)] {
            for &shape in shapes {
                for order in [Order::C, Order::F] {
                    let strides = Layout::contiguous(fmt(text, size), shape, order)
                        .unwrap()
                        .strides()
                        .to_vec();
                    for block_len in [0usize, 1, 7, 8, 16, 40, 64] {
                        for offset in [-1isize, 0, 1, 2, 8, 16, 40, 64, 65] {
                            let fast = Layout::contiguous_in(
                                fmt(text, size),
                                shape,
                                order,
                                offset,
                                block_len,
                            );
                            let slow = Layout::strided(
                                fmt(text, size),
                                shape,
                                &strides,
                                offset,
                                block_len,
                            );
                            assert_eq!(
                                fast, slow,
                                "{text} {shape:?} {order:?} {offset} {block_len}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    #[allow(clippy::type_complexity, reason = "a table of cases reads best inline")]
    fn contiguous_strides_and_flags() {
        let cases: &[(&[isize], Order, &[isize], bool, bool)] = &[
            (&[], Order::C, &[], true, true),
            (&[5], Order::C, &[4], true, true),
            (&[3, 4], Order::C, &[16, 4], true, false),
            (&[3, 4], Order::F, &[4, 12], false, true),
            (&[2, 3, 4], Order::F, &[4, 8, 24], false, true),
            (&[1, 3, 1], Order::C, &[12, 4, 4], true, true),
            (&[3, 0], Order::C, &[0, 4], true, true),
            (&[0, 3], Order::F, &[4, 0], true, true),
        ];
        for &(shape, order, strides, c, f) in cases {
            let l = Layout::contiguous(fmt("i", 4), shape, order).unwrap();
            assert_eq!(l.strides(), strides, "{shape:?} {order:?}");
            assert_eq!(
                (l.is_c_contiguous(), l.is_f_contiguous()),
                (c, f),
                "{shape:?} {order:?}"
            );
            assert_eq!(l.nbytes(), shape.iter().product::<isize>() * 4);
        }
    }

    #[test]
    fn contiguous_refusals() {
        let e = |shape: &[isize]| Layout::contiguous(fmt("d", 8), shape, Order::C).unwrap_err();
        assert_eq!(e(&[3, -1]), LayoutError::NegativeDim { dim: 1, len: -1 });
        assert_eq!(
            e(&[1 << 62, 4]),
            LayoutError::TooManyBytes {
                dim: 0,
                len: 1 << 62
            }
        );
        assert_eq!(
            e(&[isize::MAX]),
            LayoutError::TooManyBytes {
                dim: 0,
                len: isize::MAX
            }
        );
        assert_eq!(
            e(&[1 << 30, 1 << 30]).to_string(),
            "dimension 1 (length 1073741824) makes the layout larger than 2**63-1 bytes"
        );
        assert_eq!(e(&[1; 65]), LayoutError::TooManyDims(65));
        assert!(e(&[1 << 62]).is_overflow());
        // A zero dimension makes any other length harmless.
        assert_eq!(
            Layout::contiguous(fmt("d", 8), &[isize::MAX, 0], Order::C)
                .unwrap()
                .nbytes(),
            0
        );
        assert_eq!(Format::new(c"x".into(), 0), Err(LayoutError::ItemSize(0)));
    }

    #[test]
    fn fixed_sizes_are_checked() {
        for (text, size) in [
            ("f", 4),
            ("<h", 2),
            ("!q", 8),
            ("@d", 8),
            ("=l", 4),
            ("?", 1),
        ] {
            assert!(
                Format::new(CString::new(text).unwrap(), size).is_ok(),
                "{text}"
            );
            let e = Format::new(CString::new(text).unwrap(), size + 1).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("format '{text}' has itemsize {size}, not {}", size + 1)
            );
        }
        // sizes only the interpreter knows are taken as given
        for text in ["2f", "T{h}", "<n", "Zd", "hh"] {
            assert!(
                Format::new(CString::new(text).unwrap(), 3).is_ok(),
                "{text}"
            );
        }
        assert_eq!(fixed_itemsize(b"l"), Some(size_of::<core::ffi::c_long>()));
        assert_eq!(fixed_itemsize(b"P"), Some(size_of::<usize>()));
    }

    #[test]
    #[allow(clippy::type_complexity, reason = "a table of cases reads best inline")]
    fn strided_bounds() {
        // (shape, strides, offset, block, ok?) with itemsize 4.
        let cases: &[(&[isize], &[isize], isize, usize, bool)] = &[
            (&[], &[], 0, 4, true),
            (&[], &[], 1, 4, false),
            (&[4], &[4], 0, 16, true),
            (&[4], &[4], 4, 16, false),
            (&[4], &[-4], 12, 16, true),
            (&[4], &[-4], 8, 16, false),
            (&[4], &[0], 12, 16, true),
            (&[2, 2], &[8, 4], 0, 16, true),
            (&[2, 2], &[-8, -4], 12, 16, true),
            (&[3], &[1], 0, 6, true), // strides need not be multiples of itemsize
            (&[3], &[1], 0, 5, false),
            (&[0], &[4], 16, 16, true), // empty: offset may be one past the end
            (&[0, 7], &[4, 1 << 60], 3, 16, true),
            (&[1 << 62, 4], &[4, 1], 0, 64, false), // _testbuffer overflows here
            (&[2, isize::MAX], &[1, isize::MAX], 0, 64, false),
            (&[2], &[isize::MIN], isize::MAX, usize::MAX >> 1, false),
            (&[isize::MAX], &[0], 0, 4, false), // nbytes overflows even if one item is addressed
        ];
        for &(shape, strides, offset, block, ok) in cases {
            let r = Layout::strided(fmt("i", 4), shape, strides, offset, block);
            assert_eq!(
                r.is_ok(),
                ok,
                "{shape:?} {strides:?} {offset} {block}: {r:?}"
            );
        }
    }

    #[test]
    fn bounds_messages_name_the_culprit() {
        let e = Layout::strided(fmt("i", 4), &[2, 5], &[4, 8], 0, 32).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dimension 1 (length 5, stride 8) reaches byte 39, past the end of the base's 32 bytes"
        );
        let e = Layout::strided(fmt("i", 4), &[3], &[-8], 8, 32).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dimension 0 (length 3, stride -8) reaches byte -8, before the start of the base"
        );
        let e = Layout::strided(fmt("i", 4), &[1], &[4], -4, 32).unwrap_err();
        assert_eq!(e.to_string(), "offset -4 is outside the base's 32 bytes");
        let e = Layout::strided(fmt("i", 4), &[2], &[isize::MAX], 0, 32).unwrap_err();
        assert!(
            e.to_string().ends_with("beyond the address space")
                || e.to_string().contains("past the end"),
            "{e}"
        );
    }

    /// Every element of an accepted layout lies inside the block: brute force over a grid.
    #[test]
    fn accepted_layouts_stay_inside() {
        let block = 24usize;
        for itemsize in [1usize, 2, 3] {
            for s0 in -7isize..=7 {
                for s1 in -7isize..=7 {
                    for n0 in 0isize..=3 {
                        for n1 in 0isize..=3 {
                            for offset in -2isize..=26 {
                                let Ok(l) = Layout::strided(
                                    fmt(["b", "2b", "3b"][itemsize - 1], itemsize),
                                    &[n0, n1],
                                    &[s0, s1],
                                    offset,
                                    block,
                                ) else {
                                    continue;
                                };
                                for i in 0..n0 {
                                    for j in 0..n1 {
                                        let start = offset + i * s0 + j * s1;
                                        assert!(
                                            start >= 0
                                                && start + itemsize as isize <= block as isize
                                        );
                                    }
                                }
                                assert_eq!(l.nbytes(), n0 * n1 * itemsize as isize);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn slicing() {
        let l = Layout::contiguous(fmt("h", 2), &[4, 6], Order::C).unwrap();
        // [::-1, 1::2]
        let s = l.sliced(&[(3, -1, 4), (1, 2, 3)]).unwrap();
        assert_eq!(
            (s.offset(), s.shape(), s.strides()),
            (3 * 12 + 2, &[4, 3][..], &[-12, 4][..])
        );
        assert!(!s.is_c_contiguous());
        // An empty slice keeps the parent's offset.
        let e = l.sliced(&[(4, 1, 0)]).unwrap();
        assert_eq!((e.offset(), e.nbytes()), (0, 0));
        assert!(l.sliced(&[(0, 1, 4), (0, 1, 6), (0, 1, 1)]).is_err());
        // Slicing an empty layout never overflows: nothing is addressed.
        let empty = Layout::strided(Format::bytes(), &[0, 3], &[0, 1 << 62], 0, 0).unwrap();
        let s = empty.sliced(&[(0, 1, 0), (2, -1, 2)]).unwrap();
        assert_eq!((s.nbytes(), s.offset(), s.shape()), (0, 0, &[0, 2][..]));
    }

    #[test]
    fn byte_formats() {
        for (text, bytes) in [
            ("B", true),
            ("<B", true),
            ("!B", true),
            ("b", false),
            ("2B", false),
            ("BB", false),
        ] {
            assert_eq!(fmt(text, 1).is_bytes(), bytes, "{text}");
        }
    }
}
