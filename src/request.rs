//! Request flags as a typed [`Request`] with named predicates, and the decision whether a
//! request can be served for an exporter in a given state.
//!
//! This mirrors the `REQ_*` predicates and the order of checks in `ndarray_getbuf` of CPython's
//! `Modules/_testbuffer.c`, and the refusal rules of `verify_getbuf` in
//! `Lib/test/test_buffer.py`. Compound flags are tested as `(flags & X) == X`, never
//! `flags & X`: `PyBUF_C_CONTIGUOUS` shares its strides and ND bits with `PyBUF_STRIDES`, so
//! a bitwise-and test would read a plain strided request as a contiguity demand.
//!
//! One deliberate difference from `_testbuffer` (see `docs/semantics.md`): `PyBUF_FORMAT`
//! without `PyBUF_ND` is served when the format is unsigned bytes, as `bytearray`, `bytes` and
//! `PyBuffer_FillInfo` serve it.
#![forbid(unsafe_code)]

use core::ffi::c_int;
use core::fmt;

/// The request flags of `Include/pybuffer.h`, with CPython's values.
///
/// They are re-declared here (rather than taken from pyo3-ffi) so that this module stays free
/// of FFI; `src/ffi/mod.rs` asserts at compile time that both agree, and the `abi-check`
/// feature compares them with the interpreter's own headers.
pub mod flags {
    use core::ffi::c_int;

    /// `PyBUF_SIMPLE`: a contiguous block of unsigned bytes, nothing else.
    pub const SIMPLE: c_int = 0;
    /// `PyBUF_WRITABLE`: the consumer will write.
    pub const WRITABLE: c_int = 0x0001;
    /// `PyBUF_FORMAT`: fill `format`.
    pub const FORMAT: c_int = 0x0004;
    /// `PyBUF_ND`: fill `ndim` and `shape`.
    pub const ND: c_int = 0x0008;
    /// `PyBUF_STRIDES`: fill `strides` (implies ND).
    pub const STRIDES: c_int = 0x0010 | ND;
    /// `PyBUF_C_CONTIGUOUS`: strides, and the layout must be C-contiguous.
    pub const C_CONTIGUOUS: c_int = 0x0020 | STRIDES;
    /// `PyBUF_F_CONTIGUOUS`: strides, and the layout must be Fortran-contiguous.
    pub const F_CONTIGUOUS: c_int = 0x0040 | STRIDES;
    /// `PyBUF_ANY_CONTIGUOUS`: strides, and the layout must be C- or Fortran-contiguous.
    pub const ANY_CONTIGUOUS: c_int = 0x0080 | STRIDES;
    /// `PyBUF_INDIRECT`: strides, and suboffsets are understood.
    pub const INDIRECT: c_int = 0x0100 | STRIDES;
    /// `PyBUF_CONTIG`
    pub const CONTIG: c_int = ND | WRITABLE;
    /// `PyBUF_CONTIG_RO`
    pub const CONTIG_RO: c_int = ND;
    /// `PyBUF_STRIDED`
    pub const STRIDED: c_int = STRIDES | WRITABLE;
    /// `PyBUF_STRIDED_RO`
    pub const STRIDED_RO: c_int = STRIDES;
    /// `PyBUF_RECORDS`
    pub const RECORDS: c_int = STRIDES | WRITABLE | FORMAT;
    /// `PyBUF_RECORDS_RO`
    pub const RECORDS_RO: c_int = STRIDES | FORMAT;
    /// `PyBUF_FULL`
    pub const FULL: c_int = INDIRECT | WRITABLE | FORMAT;
    /// `PyBUF_FULL_RO`
    pub const FULL_RO: c_int = INDIRECT | FORMAT;
    /// `PyBUF_READ`: an argument of `PyMemoryView_FromMemory`, not a request flag.
    pub const READ: c_int = 0x100;
    /// `PyBUF_WRITE`: an argument of `PyMemoryView_FromMemory`, not a request flag.
    pub const WRITE: c_int = 0x200;

    /// Every bit a request may carry.
    pub const KNOWN: c_int =
        WRITABLE | FORMAT | INDIRECT | C_CONTIGUOUS | F_CONTIGUOUS | ANY_CONTIGUOUS;

    /// The 15 standard requests of `test_buffer.py`'s `test_ndarray_getbuf`, with names.
    pub const STANDARD: [(&str, c_int); 15] = [
        ("PyBUF_INDIRECT", INDIRECT),
        ("PyBUF_STRIDES", STRIDES),
        ("PyBUF_ND", ND),
        ("PyBUF_SIMPLE", SIMPLE),
        ("PyBUF_C_CONTIGUOUS", C_CONTIGUOUS),
        ("PyBUF_F_CONTIGUOUS", F_CONTIGUOUS),
        ("PyBUF_ANY_CONTIGUOUS", ANY_CONTIGUOUS),
        ("PyBUF_FULL", FULL),
        ("PyBUF_FULL_RO", FULL_RO),
        ("PyBUF_RECORDS", RECORDS),
        ("PyBUF_RECORDS_RO", RECORDS_RO),
        ("PyBUF_STRIDED", STRIDED),
        ("PyBUF_STRIDED_RO", STRIDED_RO),
        ("PyBUF_CONTIG", CONTIG),
        ("PyBUF_CONTIG_RO", CONTIG_RO),
    ];
}

/// A well-formed set of request flags.
///
/// `Request` is only made by [`Request::new`], which refuses unknown bits and compound bits
/// that arrive without the bits they imply.
// INVARIANTS: `flags & !flags::KNOWN == 0`; the strides bit implies ND; each of the
// contiguity and indirect bits implies the strides bit and ND.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    flags: c_int,
}

/// Why a set of flags is not a request at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Bits no request defines (this includes `PyBUF_WRITE`).
    UnknownBits(c_int),
    /// The strides bit without `PyBUF_ND`.
    StridesWithoutNd,
    /// A contiguity or indirect bit without `PyBUF_STRIDES` (this includes `PyBUF_READ`).
    NeedsStrides(c_int),
}

impl Request {
    /// Validates raw request flags.
    ///
    /// ```
    /// use bufferkit::request::{flags, Malformed, Request};
    /// assert!(Request::new(flags::FULL_RO).unwrap().strides());
    /// assert_eq!(Request::new(flags::WRITE), Err(Malformed::UnknownBits(0x200)));
    /// assert_eq!(Request::new(flags::READ), Err(Malformed::NeedsStrides(0x100)));
    /// ```
    pub const fn new(flags: c_int) -> Result<Self, Malformed> {
        let unknown = flags & !flags::KNOWN;
        if unknown != 0 {
            return Err(Malformed::UnknownBits(unknown));
        }
        let strides_bit = flags::STRIDES & !flags::ND;
        if flags & strides_bit != 0 && flags & flags::ND == 0 {
            return Err(Malformed::StridesWithoutNd);
        }
        let needs_strides = flags & !(flags::STRIDES | flags::WRITABLE | flags::FORMAT);
        if needs_strides != 0 && flags & flags::STRIDES != flags::STRIDES {
            return Err(Malformed::NeedsStrides(needs_strides));
        }
        Ok(Self { flags })
    }

    /// The raw flags.
    pub const fn flags(self) -> c_int {
        self.flags
    }

    const fn has(self, mask: c_int) -> bool {
        self.flags & mask == mask
    }

    /// `PyBUF_WRITABLE`: the consumer wants to write.
    pub const fn writable(self) -> bool {
        self.has(flags::WRITABLE)
    }
    /// `PyBUF_FORMAT`: fill `format`.
    pub const fn format(self) -> bool {
        self.has(flags::FORMAT)
    }
    /// `PyBUF_ND`: fill `ndim` and `shape`.
    pub const fn shape(self) -> bool {
        self.has(flags::ND)
    }
    /// `PyBUF_STRIDES`: fill `strides`.
    pub const fn strides(self) -> bool {
        // The strides bit alone: a `Request` has ND with it (invariant), which saves the
        // second test on every export.
        self.flags & (flags::STRIDES & !flags::ND) != 0
    }
    /// `PyBUF_C_CONTIGUOUS`
    pub const fn c_contiguous(self) -> bool {
        self.has(flags::C_CONTIGUOUS)
    }
    /// `PyBUF_F_CONTIGUOUS`
    pub const fn f_contiguous(self) -> bool {
        self.has(flags::F_CONTIGUOUS)
    }
    /// `PyBUF_ANY_CONTIGUOUS`
    pub const fn any_contiguous(self) -> bool {
        self.has(flags::ANY_CONTIGUOUS)
    }
    /// `PyBUF_INDIRECT`: the consumer understands suboffsets.
    pub const fn indirect(self) -> bool {
        self.has(flags::INDIRECT)
    }

    /// Decides whether this request can be served for an exporter with these facts, in the
    /// order of `ndarray_getbuf`. bufferkit never exports suboffsets, so `PyBUF_INDIRECT` never
    /// refuses anything.
    ///
    /// ```
    /// use bufferkit::request::{flags, Facts, Refusal, Request};
    /// let strided = Facts { readonly: false, c_contiguous: false, f_contiguous: false, byte_format: false };
    /// assert_eq!(Request::new(flags::STRIDED).unwrap().check(strided), Ok(()));
    /// assert_eq!(Request::new(flags::CONTIG).unwrap().check(strided), Err(Refusal::NeedsStrides));
    /// ```
    pub const fn check(self, facts: Facts) -> Result<(), Refusal> {
        if self.writable() && facts.readonly {
            return Err(Refusal::NotWritable);
        }
        if self.c_contiguous() && !facts.c_contiguous {
            return Err(Refusal::NotCContiguous);
        }
        if self.f_contiguous() && !facts.f_contiguous {
            return Err(Refusal::NotFContiguous);
        }
        if self.any_contiguous() && !(facts.c_contiguous || facts.f_contiguous) {
            return Err(Refusal::NotContiguous);
        }
        if !self.strides() && !facts.c_contiguous {
            return Err(Refusal::NeedsStrides);
        }
        if !self.shape() && self.format() && !facts.byte_format {
            return Err(Refusal::FormatWithoutShape);
        }
        Ok(())
    }
}

impl Request {
    /// Admits `flags` for an exporter whose facts are `facts` (see [`Facts::index`]): the
    /// answer of [`Request::new`] followed by [`Request::check`], read from a table computed
    /// from them at compile time. `None` means refused; the caller asks `new`/`check` again
    /// (off the hot path) for the reason. Crate-private: the export path's plumbing
    /// (`admit_agrees_with_new_and_check` tests it against `new` and `check`).
    #[inline(always)]
    pub(crate) const fn admit(flags: c_int, facts: u8) -> Option<Self> {
        Admission::of(facts).admit(flags, ((facts & 1) as usize) << FLAG_BITS)
    }
}

/// How many low bits of a table index hold the flags: every known flag is below `1 << 9`.
pub(crate) const FLAG_BITS: u32 = 9;
const _: () = assert!(flags::KNOWN < 1 << FLAG_BITS);

/// The admission table's two rows for one layout: for every `flags` in `0..512`, whether
/// [`Request::new`] and [`Request::check`] accept it, first for a writable exporter and then
/// for a read-only one. A layout keeps a reference to its rows, made once, so that an export
/// finds its answer at `rows[readonly_row | flags]`, where `readonly_row` is the read-only
/// bit already in place (the export counter keeps it there).
#[derive(Clone, Copy)]
pub(crate) struct Admission(&'static [bool; 2 << FLAG_BITS]);

impl Admission {
    /// The rows for a layout with the facts of `facts` (a [`Facts::index`]; its read-only bit
    /// is not a layout fact and is ignored).
    pub(crate) const fn of(facts: u8) -> Self {
        Self(&ADMITTED[((facts >> 1) & 7) as usize])
    }

    /// `Request::new(flags)` followed by `check` for these rows' facts, read from the table.
    /// `readonly_row` is `1 << FLAG_BITS` for a read-only exporter, 0 for a writable one.
    #[inline(always)]
    pub(crate) const fn admit(self, flags: c_int, readonly_row: usize) -> Option<Request> {
        if flags & !flags::KNOWN != 0 {
            return None;
        }
        // `flags` is within 0..=0x1fd here, and the mask keeps `readonly_row` to its one bit:
        // the index is inside the two rows.
        if self.0[(readonly_row & (1 << FLAG_BITS)) | flags as usize] {
            Some(Request { flags })
        } else {
            None
        }
    }
}

impl PartialEq for Admission {
    fn eq(&self, other: &Self) -> bool {
        core::ptr::eq(self.0, other.0)
    }
}
impl Eq for Admission {}

/// `ADMITTED[facts >> 1][(facts & 1) << FLAG_BITS | flags]`: whether `Request::new(flags)` and
/// `check` accept the request for `facts` (a [`Facts::index`]), for every `flags` in `0..512`.
/// Made from those two functions at compile time, so it cannot disagree with them; 8 KiB of
/// which an export reads one byte.
static ADMITTED: [[bool; 2 << FLAG_BITS]; 8] = {
    let mut table = [[false; 2 << FLAG_BITS]; 8];
    let mut facts = 0;
    while facts < 16 {
        let mut flags = 0;
        while flags < 1 << FLAG_BITS {
            if let Ok(r) = Request::new(flags as c_int) {
                table[facts >> 1][(facts & 1) << FLAG_BITS | flags] =
                    r.check(Facts::from_index(facts as u8)).is_ok();
            }
            flags += 1;
        }
        facts += 1;
    }
    table
};

/// What a request is checked against: the exporter's state at the moment of the export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The exporter refuses writers.
    pub readonly: bool,
    /// The layout is C-contiguous (in the sense of `PyBuffer_IsContiguous(view, 'C')`).
    pub c_contiguous: bool,
    /// The layout is Fortran-contiguous.
    pub f_contiguous: bool,
    /// The format is unsigned bytes (`B`, with or without a byte-order prefix).
    pub byte_format: bool,
}

impl Facts {
    /// The facts as 4 bits (readonly 1, C-contiguous 2, Fortran-contiguous 4, bytes 8), the
    /// index [`Request::admit`] takes.
    pub(crate) const fn index(self) -> u8 {
        self.readonly as u8
            | (self.c_contiguous as u8) << 1
            | (self.f_contiguous as u8) << 2
            | (self.byte_format as u8) << 3
    }

    /// The inverse of [`index`](Self::index).
    pub(crate) const fn from_index(index: u8) -> Self {
        Self {
            readonly: index & 1 != 0,
            c_contiguous: index & 2 != 0,
            f_contiguous: index & 4 != 0,
            byte_format: index & 8 != 0,
        }
    }
}

/// Why a request was refused. Every refusal is a `BufferError` (an exporter that is closed is
/// a different matter: that is a `ValueError`, raised before any request is looked at).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The flags are not a request.
    Malformed(c_int, Malformed),
    /// `PyBUF_WRITABLE` on a read-only exporter.
    NotWritable,
    /// `PyBUF_C_CONTIGUOUS` on a layout that is not.
    NotCContiguous,
    /// `PyBUF_F_CONTIGUOUS` on a layout that is not.
    NotFContiguous,
    /// `PyBUF_ANY_CONTIGUOUS` on a layout that is neither.
    NotContiguous,
    /// No `PyBUF_STRIDES`, and the layout cannot be described without them.
    NeedsStrides,
    /// `PyBUF_FORMAT` without `PyBUF_ND` for a format that is not unsigned bytes.
    FormatWithoutShape,
}

impl Refusal {
    /// The message of the `BufferError`, in CPython's style: `what` is the exporter's type
    /// name, `format` its format string.
    ///
    /// ```
    /// use bufferkit::request::Refusal;
    /// assert_eq!(Refusal::NotWritable.message("Buffer", "B").to_string(), "Buffer is not writable");
    /// ```
    pub const fn message<'a>(self, what: &'a str, format: &'a str) -> RefusalMessage<'a> {
        RefusalMessage {
            refusal: self,
            what,
            format,
        }
    }
}

/// The rendered message of a [`Refusal`]; see [`Refusal::message`].
#[derive(Clone, Copy, Debug)]
pub struct RefusalMessage<'a> {
    refusal: Refusal,
    what: &'a str,
    format: &'a str,
}

impl fmt::Display for RefusalMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = self.what;
        match self.refusal {
            Refusal::Malformed(raw, why) => {
                // Print the bits as the C `int` holds them (0xffffffff for -1).
                let raw = raw as u32;
                write!(f, "invalid buffer request flags {raw:#x}: ")?;
                match why {
                    Malformed::UnknownBits(bits) => write!(f, "unknown bits {:#x}", bits as u32),
                    Malformed::StridesWithoutNd => f.write_str("PyBUF_STRIDES bit without PyBUF_ND"),
                    Malformed::NeedsStrides(bits) => write!(f, "{:#x} needs PyBUF_STRIDES", bits as u32),
                }
            }
            Refusal::NotWritable => write!(f, "{what} is not writable"),
            Refusal::NotCContiguous => write!(f, "{what} is not C-contiguous"),
            Refusal::NotFContiguous => write!(f, "{what} is not Fortran contiguous"),
            Refusal::NotContiguous => write!(f, "{what} is not contiguous"),
            Refusal::NeedsStrides => {
                write!(f, "{what} is not C-contiguous and the request has no strides")
            }
            Refusal::FormatWithoutShape => write!(
                f,
                "{what} has format '{}': a request for the format without the shape cannot be served",
                self.format
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::flags::*;
    use super::*;

    const C: Facts = Facts {
        readonly: false,
        c_contiguous: true,
        f_contiguous: false,
        byte_format: false,
    };
    const F: Facts = Facts {
        readonly: false,
        c_contiguous: false,
        f_contiguous: true,
        byte_format: false,
    };
    const STRIDED: Facts = Facts {
        readonly: false,
        c_contiguous: false,
        f_contiguous: false,
        byte_format: false,
    };
    const BOTH: Facts = Facts {
        readonly: false,
        c_contiguous: true,
        f_contiguous: true,
        byte_format: false,
    };

    const fn ro(f: Facts) -> Facts {
        Facts {
            readonly: true,
            ..f
        }
    }
    const fn bytes(f: Facts) -> Facts {
        Facts {
            byte_format: true,
            ..f
        }
    }

    fn check(flags: c_int, facts: Facts) -> Result<(), Refusal> {
        match Request::new(flags) {
            Ok(r) => r.check(facts),
            Err(m) => Err(Refusal::Malformed(flags, m)),
        }
    }

    /// The outcome table, in the order the rules are checked.
    #[test]
    fn table() {
        use Refusal::*;
        let cases: &[(c_int, Facts, Result<(), Refusal>)] = &[
            (SIMPLE, C, Ok(())),
            (SIMPLE, STRIDED, Err(NeedsStrides)),
            (SIMPLE, F, Err(NeedsStrides)),
            (WRITABLE, ro(C), Err(NotWritable)),
            (FULL_RO, ro(STRIDED), Ok(())),
            (FULL, ro(STRIDED), Err(NotWritable)),
            (ND, C, Ok(())),
            (ND, F, Err(NeedsStrides)),
            (CONTIG_RO, STRIDED, Err(NeedsStrides)),
            (STRIDES, STRIDED, Ok(())),
            (C_CONTIGUOUS, C, Ok(())),
            (C_CONTIGUOUS, F, Err(NotCContiguous)),
            (F_CONTIGUOUS, F, Ok(())),
            (F_CONTIGUOUS, C, Err(NotFContiguous)),
            (F_CONTIGUOUS, BOTH, Ok(())),
            (ANY_CONTIGUOUS, F, Ok(())),
            (ANY_CONTIGUOUS, STRIDED, Err(NotContiguous)),
            (C_CONTIGUOUS | WRITABLE, ro(F), Err(NotWritable)),
            (INDIRECT, STRIDED, Ok(())),
            (SIMPLE | FORMAT, C, Err(FormatWithoutShape)),
            (WRITABLE | FORMAT, C, Err(FormatWithoutShape)),
            (SIMPLE | FORMAT, bytes(C), Ok(())),
            (SIMPLE | FORMAT, bytes(STRIDED), Err(NeedsStrides)),
            (ND | FORMAT, C, Ok(())),
            (RECORDS_RO, STRIDED, Ok(())),
        ];
        for &(flags, facts, want) in cases {
            assert_eq!(check(flags, facts), want, "flags {flags:#x}, {facts:?}");
        }
    }

    #[test]
    fn malformed() {
        use Malformed::*;
        let cases: &[(c_int, Malformed)] = &[
            (WRITE, UnknownBits(0x200)),
            (0x2, UnknownBits(0x2)),
            (0x400, UnknownBits(0x400)),
            (-1, UnknownBits(!KNOWN)),
            (c_int::MAX, UnknownBits(c_int::MAX & !KNOWN)),
            (READ, NeedsStrides(0x100)),
            (0x10, StridesWithoutNd),
            (0x20, NeedsStrides(0x20)),
            (0x20 | ND, NeedsStrides(0x20)),
            (0x80 | WRITABLE, NeedsStrides(0x80)),
        ];
        for &(flags, want) in cases {
            assert_eq!(Request::new(flags), Err(want), "flags {flags:#x}");
        }
    }

    /// Every standard request, alone and with WRITABLE/FORMAT, is well formed, and the named
    /// predicates agree with `(flags & X) == X`.
    #[test]
    fn standard_requests_are_well_formed() {
        for (name, base) in STANDARD {
            for extra in [0, WRITABLE, FORMAT, WRITABLE | FORMAT] {
                let flags = base | extra;
                let r = Request::new(flags).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert_eq!(r.flags(), flags);
                assert_eq!(r.strides(), flags & STRIDES == STRIDES, "{name}");
                assert_eq!(
                    r.c_contiguous(),
                    flags & C_CONTIGUOUS == C_CONTIGUOUS,
                    "{name}"
                );
                assert_eq!(r.indirect(), flags & INDIRECT == INDIRECT, "{name}");
                assert_eq!(r.shape(), flags & ND == ND, "{name}");
            }
        }
        // A plain strided request is not a contiguity demand even though it shares bits.
        assert!(!Request::new(STRIDES).unwrap().c_contiguous());
    }

    /// The table agrees with `new` + `check` for every flag value a C `int` can carry in the
    /// low 12 bits, every sign, and every state.
    #[test]
    fn admit_agrees_with_new_and_check() {
        let values = (-0x1000..0x1000).chain([c_int::MIN, c_int::MAX, 0x10000, 0x20000 | FULL]);
        for flags in values {
            for index in 0..16u8 {
                let facts = Facts::from_index(index);
                assert_eq!(facts.index(), index);
                let slow = Request::new(flags).ok().filter(|r| r.check(facts).is_ok());
                assert_eq!(
                    Request::admit(flags, index),
                    slow,
                    "flags {flags:#x}, {facts:?}"
                );
            }
        }
    }

    #[test]
    fn messages() {
        let m = |r: Refusal| r.message("View", "<i").to_string();
        assert_eq!(m(Refusal::NotFContiguous), "View is not Fortran contiguous");
        assert_eq!(
            m(Refusal::FormatWithoutShape),
            "View has format '<i': a request for the format without the shape cannot be served"
        );
        assert_eq!(
            m(Refusal::Malformed(-1, Malformed::UnknownBits(!KNOWN))),
            "invalid buffer request flags 0xffffffff: unknown bits 0xfffffe02"
        );
        assert_eq!(
            m(Refusal::Malformed(READ, Malformed::NeedsStrides(READ))),
            "invalid buffer request flags 0x100: 0x100 needs PyBUF_STRIDES"
        );
    }
}
