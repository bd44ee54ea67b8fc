//! bufferkit's ABI checks, a crate of their own (as PyO3's `pyo3-ffi-check` is): pyo3-ffi's
//! declarations of the structs and constants bufferkit hands to CPython, compared with the
//! headers of the interpreter the crate is built for, through two independent readers of those
//! headers. Nothing depends on this crate; it depends on `bufferkit` only for the request flags
//! bufferkit declares itself.
//!
//! This is PyO3's `pyo3-ffi-check` (bindgen over a `wrapper.h`; size, alignment and every
//! field's offset) with the C compiler as a third witness, as libc's `ctest` does. Three
//! [`Witness`]es describe the same things:
//!
//! - **pyo3-ffi**: `size_of`, `align_of`, and `offset_of!`/size of every field of
//!   `pyo3_ffi::X`, from lists written here whose completeness the compiler checks (each list
//!   is also an exhaustive struct pattern), and the values of pyo3-ffi's constants;
//! - **bindgen**: the same numbers for bindgen's translation of `wrapper.h` (the field lists
//!   come from bindgen itself), and every integer macro as libclang evaluated it;
//! - **C**: `c_tests/abi_probe.c`, compiled by the `cc` crate against the same headers:
//!   `sizeof`, `_Alignof`, `offsetof` and `sizeof` of each field, and each macro's value;
//!
//! and a fourth, partial one for the request flags: **bufferkit**, [`bufferkit::request::flags`].
//!
//! [`compare`] reports every disagreement (a number that differs, a struct, field or constant
//! that one witness has and another lacks, a `PyBUF_*` macro of the headers that is not
//! compared) and `tests/abi.rs` fails if there is any. Compared are `Py_buffer`,
//! `PyBufferProcs`, `PyType_Spec`, `PyType_Slot`, `PyModuleDef`, `PyModuleDef_Base`,
//! `PyModuleDef_Slot`, `PyMethodDef`, `PyGetSetDef`, `PyMemberDef`, `PyObject` and
//! `PyVarObject`; every `PyBUF_*` constant; the slot ids, `Py_TPFLAGS_*` and `METH_*` flags
//! bufferkit uses; and `PYTHON_API_VERSION`/`PYTHON_ABI_VERSION`.
//!
//! The checks describe the *version-specific* build: under the limited API (feature `abi3`)
//! several of these structs are opaque or absent, so this crate refuses to build with `abi3`.
//! What the abi3 module links is checked by `scripts/abi3check.sh` instead. Run the checks
//! against each interpreter with `scripts/abicheck.sh PYTHON`; they need libclang.
//!
//! Naming: fields are named as C code names them. Two spellings differ between witnesses and
//! are mapped: `PyMemberDef.type` is `type_code` in pyo3-ffi and `type_` in bindgen; the
//! anonymous union that holds `ob_refcnt` in `PyObject` from 3.12 on is one field for bindgen
//! (`__bindgen_anon_1`) and is named here by its first member, `ob_refcnt`, which is what C's
//! `offsetof(PyObject, ob_refcnt)` and pyo3-ffi's union-typed `ob_refcnt` field both denote.

use core::ffi::{c_char, c_longlong, CStr};
use core::fmt;
use core::mem::{align_of, offset_of, size_of};

mod names;
pub use names::{MACROS, MACRO_FAMILIES, STRUCTS};

/// The constants compared besides every `PyBUF_*` macro of the headers: the slot ids, type
/// flags and calling conventions bufferkit uses (`grep -rn 'ffi::Py_\|METH_' src/`), and the
/// API/ABI versions that `PyModule_Create2`-style callers pass.
pub const CONSTANTS: [&str; 46] = [
    "Py_bf_getbuffer",
    "Py_bf_releasebuffer",
    "Py_mp_length",
    "Py_mp_subscript",
    "Py_sq_length",
    "Py_tp_alloc",
    "Py_tp_base",
    "Py_tp_clear",
    "Py_tp_dealloc",
    "Py_tp_doc",
    "Py_tp_free",
    "Py_tp_getset",
    "Py_tp_members",
    "Py_tp_methods",
    "Py_tp_new",
    "Py_tp_repr",
    "Py_tp_richcompare",
    "Py_tp_traverse",
    "Py_tp_token",
    "Py_tp_vectorcall",
    "Py_mod_exec",
    "Py_mod_gil",
    "Py_mod_abi",
    "Py_mod_name",
    "Py_mod_doc",
    "Py_mod_state_size",
    "Py_mod_methods",
    "Py_mod_state_traverse",
    "Py_mod_state_clear",
    "Py_mod_state_free",
    "Py_TPFLAGS_DEFAULT",
    "Py_TPFLAGS_BASETYPE",
    "Py_TPFLAGS_DISALLOW_INSTANTIATION",
    "Py_TPFLAGS_HAVE_GC",
    "Py_TPFLAGS_HEAPTYPE",
    "Py_TPFLAGS_IMMUTABLETYPE",
    "Py_TPFLAGS_METHOD_DESCRIPTOR",
    "METH_VARARGS",
    "METH_KEYWORDS",
    "METH_NOARGS",
    "METH_O",
    "METH_FASTCALL",
    "METH_CLASS",
    "METH_COEXIST",
    "PYTHON_API_VERSION",
    "PYTHON_ABI_VERSION",
];

/// One field of a struct as one witness sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The C name of the field.
    pub name: &'static str,
    /// `offsetof`.
    pub offset: usize,
    /// `sizeof` of the field (catches an `int` declared as a pointer-sized integer, which
    /// padding can hide from the offsets).
    pub size: usize,
}

/// One struct as one witness sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The C (typedef) name of the struct.
    pub name: &'static str,
    /// `sizeof`.
    pub size: usize,
    /// `_Alignof`.
    pub align: usize,
    /// Every field, in declaration order.
    pub fields: Vec<Field>,
}

/// What one reader of the C API says about the checked structs and constants.
#[derive(Clone, Debug)]
pub struct Witness {
    /// Who says it: `pyo3-ffi`, `bindgen`, `C`, `bufferkit`.
    pub name: &'static str,
    /// The structs it describes.
    pub layouts: Vec<Layout>,
    /// Constants by C name, widened to `i128` (their C types range from `int` to
    /// `unsigned long`).
    pub constants: Vec<(&'static str, i128)>,
    /// A partial witness is compared only on what it describes; a missing struct or constant
    /// is a mismatch for every other witness.
    pub partial: bool,
    /// What the witness could not say (an unreadable probe row): each is a mismatch.
    pub problems: Vec<String>,
}

impl Witness {
    fn layout(&self, name: &str) -> Option<&Layout> {
        self.layouts.iter().find(|l| l.name == name)
    }

    fn constant(&self, name: &str) -> Option<i128> {
        self.constants
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v)
    }
}

/// The outcome of [`compare`].
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One line per struct and a closing count, for the test log.
    pub summary: Vec<String>,
    /// How many numbers (or presences) were compared across the witnesses.
    pub compared: usize,
    /// Every disagreement, one line each.
    pub mismatches: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.summary {
            writeln!(f, "{line}")?;
        }
        for line in &self.mismatches {
            writeln!(f, "MISMATCH {line}")?;
        }
        write!(
            f,
            "{} comparisons, {} mismatches",
            self.compared,
            self.mismatches.len()
        )
    }
}

/// `size_of` the field a projection reaches, without a value of the struct.
fn field_size<S, F>(_project: fn(&S) -> &F) -> usize {
    size_of::<F>()
}

#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc,
    reason = "bindgen's translation of the C headers, generated by build.rs"
)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/abi_bindings.rs"));
}

/// bindgen's witness, generated by `src/generate.rs` from bindgen's own field lists.
mod from_bindgen {
    use super::{bindings, field_size, Field, Layout, Witness};
    include!(concat!(env!("OUT_DIR"), "/abi_bindgen.rs"));
}

/// The pyo3-ffi witness.
pub fn pyo3_ffi() -> Witness {
    /// `Layout` of `pyo3_ffi::$ty`, listing its fields by their pyo3-ffi names (`= "c"` when C
    /// names a field otherwise). The list must be the whole struct: it is also used as a struct
    /// pattern without `..`, which compiles only if it names every field pyo3-ffi declares.
    macro_rules! layout {
        ($ty:ident { $( $(#[$cfg:meta])* $field:ident $(= $c_name:literal)? ),* $(,)? }) => {{
            #[allow(dead_code, reason = "only compiled: the pattern proves the field list complete")]
            fn exhaustive(value: &pyo3_ffi::$ty) {
                let pyo3_ffi::$ty { $( $(#[$cfg])* $field: _ ),* } = value;
            }
            let mut fields = Vec::new();
            $(
                $(#[$cfg])*
                fields.push(Field {
                    name: c_name!($field $(, $c_name)?),
                    offset: offset_of!(pyo3_ffi::$ty, $field),
                    size: field_size(|s: &pyo3_ffi::$ty| &s.$field),
                });
            )*
            Layout { name: stringify!($ty), size: size_of::<pyo3_ffi::$ty>(), align: align_of::<pyo3_ffi::$ty>(), fields }
        }};
    }
    macro_rules! c_name {
        ($field:ident) => {
            stringify!($field)
        };
        ($field:ident, $c_name:literal) => {
            $c_name
        };
    }
    /// `(name, value)` of pyo3-ffi constants, widened losslessly.
    macro_rules! constants {
        ($( $(#[$cfg:meta])* $name:ident ),* $(,)?) => {{
            let constants: Vec<(&'static str, i128)> =
                vec![$( $(#[$cfg])* (stringify!($name), pyo3_ffi::$name as i128) ),*];
            constants
        }};
    }

    let layouts = vec![
        layout!(Py_buffer {
            buf,
            obj,
            len,
            itemsize,
            readonly,
            ndim,
            format,
            shape,
            strides,
            suboffsets,
            internal
        }),
        layout!(PyBufferProcs {
            bf_getbuffer,
            bf_releasebuffer
        }),
        layout!(PyType_Spec {
            name,
            basicsize,
            itemsize,
            flags,
            slots
        }),
        layout!(PyType_Slot { slot, pfunc }),
        layout!(PyModuleDef {
            m_base,
            m_name,
            m_doc,
            m_size,
            m_methods,
            m_slots,
            m_traverse,
            m_clear,
            m_free
        }),
        layout!(PyModuleDef_Base {
            ob_base,
            m_init,
            m_index,
            m_copy
        }),
        layout!(PyModuleDef_Slot { slot, value }),
        layout!(PyMethodDef {
            ml_name,
            ml_meth,
            ml_flags,
            ml_doc
        }),
        layout!(PyGetSetDef {
            name,
            get,
            set,
            doc,
            closure
        }),
        layout!(PyMemberDef { name, type_code = "type", offset, flags, doc }),
        layout!(PyObject {
            #[cfg(Py_GIL_DISABLED)]
            ob_tid,
            #[cfg(Py_GIL_DISABLED)]
            _padding,
            #[cfg(Py_GIL_DISABLED)]
            ob_mutex,
            #[cfg(Py_GIL_DISABLED)]
            ob_gc_bits,
            #[cfg(Py_GIL_DISABLED)]
            ob_ref_local,
            #[cfg(Py_GIL_DISABLED)]
            ob_ref_shared,
            #[cfg(not(Py_GIL_DISABLED))]
            ob_refcnt,
            ob_type,
        }),
        layout!(PyVarObject { ob_base, ob_size }),
    ];
    let constants = constants!(
        PyBUF_MAX_NDIM,
        PyBUF_SIMPLE,
        PyBUF_WRITABLE,
        PyBUF_WRITEABLE,
        PyBUF_FORMAT,
        PyBUF_ND,
        PyBUF_STRIDES,
        PyBUF_C_CONTIGUOUS,
        PyBUF_F_CONTIGUOUS,
        PyBUF_ANY_CONTIGUOUS,
        PyBUF_INDIRECT,
        PyBUF_CONTIG,
        PyBUF_CONTIG_RO,
        PyBUF_STRIDED,
        PyBUF_STRIDED_RO,
        PyBUF_RECORDS,
        PyBUF_RECORDS_RO,
        PyBUF_FULL,
        PyBUF_FULL_RO,
        PyBUF_READ,
        PyBUF_WRITE,
        Py_bf_getbuffer,
        Py_bf_releasebuffer,
        Py_mp_length,
        Py_mp_subscript,
        Py_sq_length,
        Py_tp_alloc,
        Py_tp_base,
        Py_tp_clear,
        Py_tp_dealloc,
        Py_tp_doc,
        Py_tp_free,
        Py_tp_getset,
        Py_tp_members,
        Py_tp_methods,
        Py_tp_new,
        Py_tp_repr,
        Py_tp_richcompare,
        Py_tp_traverse,
        // The header defines it from 3.14 (pyo3-ffi on every version); the abi3t build's
        // type token.
        #[cfg(Py_3_14)]
        Py_tp_token,
        // The header defines it from 3.14 (pyo3-ffi on every version); View's and Buffer's
        // `tp_vectorcall`, given to CPython 3.14+ only.
        #[cfg(Py_3_14)]
        Py_tp_vectorcall,
        Py_mod_exec,
        // The header defines it from 3.13 (pyo3-ffi on every version).
        #[cfg(Py_3_13)]
        Py_mod_gil,
        // 3.15's module slots (PEP 793), which the abi3t build's PyModExport array uses.
        #[cfg(Py_3_15)]
        Py_mod_abi,
        #[cfg(Py_3_15)]
        Py_mod_name,
        #[cfg(Py_3_15)]
        Py_mod_doc,
        #[cfg(Py_3_15)]
        Py_mod_state_size,
        #[cfg(Py_3_15)]
        Py_mod_methods,
        #[cfg(Py_3_15)]
        Py_mod_state_traverse,
        #[cfg(Py_3_15)]
        Py_mod_state_clear,
        #[cfg(Py_3_15)]
        Py_mod_state_free,
        Py_TPFLAGS_DEFAULT,
        Py_TPFLAGS_BASETYPE,
        #[cfg(Py_3_10)]
        Py_TPFLAGS_DISALLOW_INSTANTIATION,
        Py_TPFLAGS_HAVE_GC,
        Py_TPFLAGS_HEAPTYPE,
        #[cfg(Py_3_10)]
        Py_TPFLAGS_IMMUTABLETYPE,
        Py_TPFLAGS_METHOD_DESCRIPTOR,
        METH_VARARGS,
        METH_KEYWORDS,
        METH_NOARGS,
        METH_O,
        METH_FASTCALL,
        METH_CLASS,
        METH_COEXIST,
        PYTHON_API_VERSION,
        PYTHON_ABI_VERSION,
    );
    Witness {
        name: "pyo3-ffi",
        layouts,
        constants,
        partial: false,
        problems: Vec::new(),
    }
}

/// bindgen's witness: its translation of `src/wrapper.h`, made by `build.rs`.
pub fn bindgen() -> Witness {
    from_bindgen::witness()
}

/// The (major, minor) version of the interpreter whose headers `build.rs` read.
pub const HEADERS_OF: (u8, u8) = from_bindgen::HEADERS_OF;

/// One row of `c_tests/abi_probe.c`'s table (`struct bufferkit_abi_entry`).
#[repr(C)]
struct ProbeEntry {
    kind: *const c_char,
    name: *const c_char,
    value: c_longlong,
}

extern "C" {
    /// `c_tests/abi_probe.c`: `bufferkit_abi_probe_len` entries, each pointing to string
    /// literals of that translation unit.
    static bufferkit_abi_probe: [ProbeEntry; 0];
    static bufferkit_abi_probe_len: usize;
}

/// The C compiler's witness: the table `c_tests/abi_probe.c` was compiled into (a row that
/// cannot be read is one of its [`problems`](Witness::problems)).
pub fn c_compiler() -> Witness {
    // SAFETY: a `const size_t` defined by abi_probe.c, linked into this crate by build.rs
    // (src/generate.rs); it is never written.
    let len = unsafe { bufferkit_abi_probe_len };
    let first = (&raw const bufferkit_abi_probe).cast::<ProbeEntry>();
    // SAFETY: abi_probe.c defines `bufferkit_abi_probe` as an array of exactly
    // `bufferkit_abi_probe_len` entries of `struct bufferkit_abi_entry`, whose layout
    // `ProbeEntry` repeats (two pointers and a long long, repr(C)); it is const and lives for
    // the program.
    let rows = unsafe { core::slice::from_raw_parts(first, len) };
    let mut witness = Witness {
        name: "C",
        layouts: Vec::new(),
        constants: Vec::new(),
        partial: false,
        problems: Vec::new(),
    };
    for row in rows {
        // SAFETY: both pointers are string literals of abi_probe.c: NUL-terminated, never
        // written, and alive for the whole program, hence `'static`.
        let kind: &'static CStr = unsafe { CStr::from_ptr(row.kind) };
        // SAFETY: as above.
        let name: &'static CStr = unsafe { CStr::from_ptr(row.name) };
        let added = match (kind.to_str(), name.to_str()) {
            (Ok(kind), Ok(name)) => add_probe_row(&mut witness, kind, name, row.value),
            _ => false,
        };
        if !added {
            witness.problems.push(format!(
                "unreadable probe row {{{kind:?}, {name:?}, {}}}",
                row.value
            ));
        }
    }
    witness
}

/// Files one probe row into `witness`; false if the row makes no sense.
fn add_probe_row(witness: &mut Witness, kind: &str, name: &'static str, value: c_longlong) -> bool {
    if kind == "value" {
        witness.constants.push((name, i128::from(value)));
        return true;
    }
    let Ok(value) = usize::try_from(value) else {
        return false;
    };
    let (struct_name, field_name) = match name.split_once('.') {
        Some((s, f)) => (s, Some(f)),
        None => (name, None),
    };
    let index = match witness.layouts.iter().position(|l| l.name == struct_name) {
        Some(i) => i,
        None => {
            witness.layouts.push(Layout {
                name: struct_name,
                size: 0,
                align: 0,
                fields: Vec::new(),
            });
            witness.layouts.len() - 1
        }
    };
    let layout = &mut witness.layouts[index];
    match (kind, field_name) {
        ("size", None) => layout.size = value,
        ("align", None) => layout.align = value,
        ("offset" | "field_size", Some(field_name)) => {
            let field = match layout.fields.iter().position(|f| f.name == field_name) {
                Some(i) => &mut layout.fields[i],
                None => {
                    layout.fields.push(Field {
                        name: field_name,
                        offset: 0,
                        size: 0,
                    });
                    layout.fields.last_mut().expect("just pushed")
                }
            };
            if kind == "offset" {
                field.offset = value;
            } else {
                field.size = value;
            }
        }
        _ => return false,
    }
    true
}

/// The partial witness of bufferkit's own request flags ([`bufferkit::request::flags`], and
/// [`bufferkit::layout::MAX_NDIM`]), which bufferkit declares without pyo3-ffi.
pub fn bufferkit() -> Witness {
    use bufferkit::request::flags;
    let constants: Vec<(&'static str, i128)> = vec![
        ("PyBUF_MAX_NDIM", bufferkit::layout::MAX_NDIM as i128),
        ("PyBUF_SIMPLE", flags::SIMPLE.into()),
        ("PyBUF_WRITABLE", flags::WRITABLE.into()),
        ("PyBUF_FORMAT", flags::FORMAT.into()),
        ("PyBUF_ND", flags::ND.into()),
        ("PyBUF_STRIDES", flags::STRIDES.into()),
        ("PyBUF_C_CONTIGUOUS", flags::C_CONTIGUOUS.into()),
        ("PyBUF_F_CONTIGUOUS", flags::F_CONTIGUOUS.into()),
        ("PyBUF_ANY_CONTIGUOUS", flags::ANY_CONTIGUOUS.into()),
        ("PyBUF_INDIRECT", flags::INDIRECT.into()),
        ("PyBUF_CONTIG", flags::CONTIG.into()),
        ("PyBUF_CONTIG_RO", flags::CONTIG_RO.into()),
        ("PyBUF_STRIDED", flags::STRIDED.into()),
        ("PyBUF_STRIDED_RO", flags::STRIDED_RO.into()),
        ("PyBUF_RECORDS", flags::RECORDS.into()),
        ("PyBUF_RECORDS_RO", flags::RECORDS_RO.into()),
        ("PyBUF_FULL", flags::FULL.into()),
        ("PyBUF_FULL_RO", flags::FULL_RO.into()),
        ("PyBUF_READ", flags::READ.into()),
        ("PyBUF_WRITE", flags::WRITE.into()),
    ];
    Witness {
        name: "bufferkit",
        layouts: Vec::new(),
        constants,
        partial: true,
        problems: Vec::new(),
    }
}

/// The four witnesses for the interpreter this crate was built for.
pub fn witnesses() -> Vec<Witness> {
    vec![pyo3_ffi(), bindgen(), c_compiler(), bufferkit()]
}

/// Compares the witnesses of this build: [`compare`] over [`witnesses`], plus the check that
/// bindgen and the C compiler read the headers of the interpreter `build.rs` was configured for.
pub fn check() -> Report {
    let witnesses = witnesses();
    let mut report = compare(&witnesses);
    let header_version = |w: &Witness| w.constant("PY_VERSION_HEX");
    let configured = (i128::from(HEADERS_OF.0) << 24) | (i128::from(HEADERS_OF.1) << 16);
    for w in witnesses
        .iter()
        .filter(|w| w.name == "bindgen" || w.name == "C")
    {
        report.compared += 1;
        match header_version(w) {
            Some(hex) if hex & !0xffff == configured => {}
            Some(hex) => report.mismatches.push(format!(
                "{} read the headers of PY_VERSION_HEX {hex:#010x}, but the build is configured for Python {}.{}",
                w.name, HEADERS_OF.0, HEADERS_OF.1
            )),
            None => report.mismatches.push(format!("{} did not report PY_VERSION_HEX", w.name)),
        }
    }
    let hex = witnesses.iter().find_map(header_version).unwrap_or(0);
    report.summary.insert(
        0,
        format!(
            "headers of Python {}.{}.{} (PY_VERSION_HEX {hex:#010x}); witnesses: {}",
            (hex >> 24) & 0xff,
            (hex >> 16) & 0xff,
            (hex >> 8) & 0xff,
            witnesses
                .iter()
                .map(|w| w.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    report
}

/// One quantity as each witness states it (`None`: the witness does not have it).
struct Claims<'a> {
    what: String,
    values: Vec<(&'a Witness, Option<i128>)>,
}

impl Claims<'_> {
    /// A mismatch line if a full witness lacks what another has, or two values differ.
    fn disagreement(&self) -> Option<String> {
        let present: Vec<i128> = self.values.iter().filter_map(|&(_, v)| v).collect();
        let first = *present.first()?;
        let missing = self.values.iter().any(|&(w, v)| v.is_none() && !w.partial);
        if !missing && present.iter().all(|&v| v == first) {
            return None;
        }
        let stated: Vec<String> = self
            .values
            .iter()
            .filter(|&&(w, v)| v.is_some() || !w.partial)
            .map(|&(w, v)| match v {
                Some(v) => format!("{} {v}", w.name),
                None => format!("{} (none)", w.name),
            })
            .collect();
        Some(format!("{}: {}", self.what, stated.join(", ")))
    }
}

/// Compares every struct of [`STRUCTS`] and every constant of [`CONSTANTS`] (plus every
/// `PyBUF_*` any witness has) across `witnesses`, and reports each disagreement.
pub fn compare(witnesses: &[Witness]) -> Report {
    let mut report = Report::default();
    for w in witnesses {
        report.compared += 1;
        report
            .mismatches
            .extend(w.problems.iter().map(|p| format!("{}: {p}", w.name)));
    }
    let record = |report: &mut Report, claims: Claims<'_>| {
        report.compared += 1;
        let line = claims.disagreement();
        report.mismatches.extend(line.clone());
        line.is_none()
    };
    let with_layouts: Vec<&Witness> = witnesses
        .iter()
        .filter(|w| !w.partial || !w.layouts.is_empty())
        .collect();

    for name in STRUCTS {
        let layouts: Vec<(&Witness, Option<&Layout>)> =
            with_layouts.iter().map(|&w| (w, w.layout(name))).collect();
        let mut agree = true;
        let claim = |what: String, get: &dyn Fn(&Layout) -> usize| Claims {
            what,
            values: layouts
                .iter()
                .map(|&(w, l)| (w, l.map(|l| get(l) as i128)))
                .collect(),
        };
        if layouts.iter().all(|(_, l)| l.is_none()) {
            report.compared += 1;
            report
                .mismatches
                .push(format!("{name}: no witness describes it"));
            continue;
        }
        agree &= record(&mut report, claim(format!("{name}: present"), &|_| 1));
        agree &= record(&mut report, claim(format!("{name}: size"), &|l| l.size));
        agree &= record(&mut report, claim(format!("{name}: align"), &|l| l.align));
        // Every field any witness names, in the order the first witness that has it lists it.
        let mut fields: Vec<&str> = Vec::new();
        for (_, layout) in &layouts {
            for field in layout.iter().flat_map(|l| &l.fields) {
                if !fields.contains(&field.name) {
                    fields.push(field.name);
                }
            }
        }
        for field in &fields {
            let find = |l: &Layout| l.fields.iter().find(|f| f.name == *field).cloned();
            let claim = |what: &str, get: &dyn Fn(&Field) -> usize| Claims {
                what: format!("{name}.{field}: {what}"),
                values: layouts
                    .iter()
                    .map(|&(w, l)| (w, l.and_then(find).map(|f| get(&f) as i128)))
                    .collect(),
            };
            agree &= record(&mut report, claim("offset", &|f| f.offset));
            agree &= record(&mut report, claim("size", &|f| f.size));
        }
        let size = layouts
            .iter()
            .find_map(|(_, l)| l.map(|l| (l.size, l.align)))
            .unwrap_or_default();
        report.summary.push(format!(
            "{name:<17} size {:>3}, align {:>2}, {:>2} fields: {}",
            size.0,
            size.1,
            fields.len(),
            if agree { "agree" } else { "MISMATCH" }
        ));
    }

    let mut constants: Vec<&str> = CONSTANTS.to_vec();
    for w in witnesses {
        for &(name, _) in &w.constants {
            if (name.starts_with("PyBUF_") || !w.partial && !is_known_extra(name))
                && !constants.contains(&name)
            {
                constants.push(name);
            }
        }
    }
    let mut constants_agree = 0;
    for name in &constants {
        let claims = Claims {
            what: (*name).to_owned(),
            values: witnesses.iter().map(|w| (w, w.constant(name))).collect(),
        };
        if claims.values.iter().all(|(_, v)| v.is_none()) {
            // e.g. Py_TPFLAGS_IMMUTABLETYPE before 3.10: nobody has it, nothing to compare
            continue;
        }
        constants_agree += usize::from(record(&mut report, claims));
    }
    report.summary.push(format!(
        "constants: {constants_agree} of {} agree",
        constants
            .iter()
            .filter(|n| witnesses.iter().any(|w| w.constant(n).is_some()))
            .count()
    ));
    report
}

/// Macros a full witness may report without their being compared: bindgen hands over every
/// macro of [`MACRO_FAMILIES`], of which only [`CONSTANTS`] and `PyBUF_*` matter.
fn is_known_extra(name: &str) -> bool {
    MACROS.contains(&name) || MACRO_FAMILIES.iter().any(|p| name.starts_with(p))
}
