//! The build-time half of the ABI checks, included by this crate's `build.rs`: reads the
//! selected interpreter's headers twice, once through bindgen (libclang) and once through the
//! C compiler, and leaves both answers in `OUT_DIR` for `src/lib.rs` to compare with pyo3-ffi.
//!
//! This is PyO3's `pyo3-ffi-check` (bindgen over a `wrapper.h`, then size, alignment and every
//! field's offset) with libc's `ctest` idea of asking the C compiler itself as a third witness:
//!
//! - `abi_bindings.rs`: bindgen's Rust declarations of the checked structs, allowlisted so that
//!   only they and what they reference are generated;
//! - `abi_bindgen.rs`: a function returning bindgen's witness: for each checked struct its
//!   `size_of`, `align_of` and every field's `offset_of` and size, with the field list taken
//!   from bindgen itself (a parse callback sees every field it generates), and the value of
//!   every integer macro of interest as bindgen evaluated it;
//! - `libbufferkit_abi_probe.a`: `c_tests/abi_probe.c` compiled by the `cc` crate against the
//!   same include directories: a table of `sizeof`, `_Alignof`, `offsetof` and macro values.
//!
//! The include directories are those of the interpreter pyo3-build-config selected
//! (`PYO3_PYTHON`, else `python3`), asked through its own `sysconfig`, as pyo3-ffi itself asks
//! it for everything else.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};

use bindgen::callbacks::{
    EnumVariantCustomBehavior, EnumVariantValue, FieldInfo, IntKind, ParseCallbacks,
};
use bindgen::FieldVisibilityKind;

// The names compared (shared with `src/lib.rs`: see `names.rs`). A struct bindgen does not
// produce is left out here and reported by `lib.rs`.
#[path = "names.rs"]
mod names;
use names::{MACROS, MACRO_FAMILIES, STRUCTS};

/// What the parse callbacks saw.
#[derive(Debug, Default)]
struct Seen {
    /// Every integer macro bindgen evaluated, by name (the last definition wins, as in C).
    macros: BTreeMap<String, i64>,
    /// Every field bindgen generated, by the canonical name of its struct or union, in order:
    /// (Rust field name, name of the field's type when it has one).
    fields: BTreeMap<String, Vec<(String, Option<String>)>>,
}

/// bindgen's parse callbacks, recording into a [`Seen`] shared with `generate`.
#[derive(Debug)]
struct Recorder(Arc<Mutex<Seen>>);

impl Recorder {
    fn with<R>(&self, f: impl FnOnce(&mut Seen) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ParseCallbacks for Recorder {
    fn int_macro(&self, name: &str, value: i64) -> Option<IntKind> {
        self.with(|seen| seen.macros.insert(name.to_owned(), value));
        None
    }

    /// `wrapper.h`'s `bufferkit_value_NAME` enum constants, read as the macro `NAME`: the
    /// macros whose expansion calls a function-like macro, which bindgen cannot evaluate but
    /// clang can (PY_VERSION_HEX from 3.14, the slot ids from 3.15).
    fn enum_variant_behavior(
        &self,
        _enum_name: Option<&str>,
        variant: &str,
        value: EnumVariantValue,
    ) -> Option<EnumVariantCustomBehavior> {
        let value = match value {
            EnumVariantValue::Signed(v) => Some(v),
            EnumVariantValue::Unsigned(v) => i64::try_from(v).ok(),
            EnumVariantValue::Boolean(_) => None,
        };
        if let (Some(name), Some(value)) = (variant.strip_prefix("bufferkit_value_"), value) {
            self.with(|seen| {
                seen.macros.entry(name.to_owned()).or_insert(value);
            });
        }
        None
    }

    fn field_visibility(&self, info: FieldInfo<'_>) -> Option<FieldVisibilityKind> {
        self.with(|seen| {
            let fields = seen.fields.entry(info.type_name.to_owned()).or_default();
            if !fields.iter().any(|(name, _)| name == info.field_name) {
                fields.push((
                    info.field_name.to_owned(),
                    info.field_type_name.map(str::to_owned),
                ));
            }
        });
        None
    }
}

/// Runs bindgen and the C compiler over the headers of `config`'s interpreter and writes the
/// witnesses into `OUT_DIR`. Exits the build with a message when that cannot be done.
pub fn generate(config: &pyo3_build_config::InterpreterConfig) {
    let root = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env("OUT_DIR"));
    let wrapper = root.join("src/wrapper.h");
    // c_tests/ is the repository's (the C tests build the same probe); this crate is one
    // directory below the repository root.
    let probe = root.join("../c_tests/abi_probe.c");
    for path in [
        &wrapper,
        &probe,
        &root.join("src/generate.rs"),
        &root.join("src/names.rs"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for var in ["LIBCLANG_PATH", "BINDGEN_EXTRA_CLANG_ARGS", "CC", "CFLAGS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    if matches!(
        config.target_abi().kind(),
        pyo3_build_config::PythonAbiKind::Stable(_)
    ) {
        fail(
            "the ABI checks compare the version-specific C API and cannot be built for the stable \
             ABI (under the limited API PyObject, PyVarObject, PyBufferProcs and the module \
             definition are opaque or absent); build them without `abi3`",
        );
    }
    let includes = include_dirs(config);
    let version = config.version();

    // bindgen's witness.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut builder = bindgen::Builder::default()
        .header(wrapper.to_string_lossy())
        .parse_callbacks(Box::new(Recorder(Arc::clone(&seen))))
        .allowlist_type(format!("^({})$", STRUCTS.join("|")))
        .allowlist_type("bufferkit_values")
        // PyObject points at the type object; its own layout is not checked here, so keep it
        // a blob instead of generating the whole of PyTypeObject and its method tables.
        .opaque_type("_typeobject")
        .layout_tests(false)
        .generate_comments(false)
        .derive_debug(false)
        .derive_default(false)
        .formatter(bindgen::Formatter::None);
    for dir in &includes {
        builder = builder.clang_arg(format!("-I{}", dir.display()));
    }
    // bindgen panics (rather than erring) when it cannot load libclang: turn both into one
    // message that says what to install.
    let generated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.generate()));
    let bindings = generated
        .map_err(|panic| panic_text(&panic))
        .and_then(|r| r.map_err(|e| e.to_string()));
    let bindings = bindings.unwrap_or_else(|e| {
        fail(&format!(
            "bindgen could not read {} with the headers of Python {}.{} ({}): {e} \
             (bindgen needs libclang: install libclang-dev, or set LIBCLANG_PATH)",
            wrapper.display(),
            version.major,
            version.minor,
            join(&includes),
        ))
    });
    let code = bindings.to_string();
    write(&out.join("abi_bindings.rs"), &code);
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
    write(
        &out.join("abi_bindgen.rs"),
        &bindgen_witness(&code, &seen, (version.major, version.minor)),
    );

    // The C compiler's witness.
    let mut cc = cc::Build::new();
    cc.file(&probe)
        .std("c11")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true);
    for dir in &includes {
        cc.include(dir);
    }
    cc.try_compile("bufferkit_abi_probe").unwrap_or_else(|e| {
        fail(&format!(
            "the C compiler could not build {} against {}: {e}",
            probe.display(),
            join(&includes)
        ))
    });
}

/// The interpreter's `include` and `platinclude` directories, from its own `sysconfig`.
fn include_dirs(config: &pyo3_build_config::InterpreterConfig) -> Vec<PathBuf> {
    let python = config
        .executable()
        .map(str::to_owned)
        .or_else(|| std::env::var("PYO3_PYTHON").ok())
        .unwrap_or_else(|| fail("the ABI checks need the interpreter itself (set PYO3_PYTHON)"));
    let script =
        "import sysconfig; p = sysconfig.get_paths(); print(p['include']); print(p['platinclude'])";
    let output = Command::new(&python)
        .args(["-c", script])
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {python}: {e}")));
    if !output.status.success() {
        fail(&format!(
            "{python} could not report its include directories: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let dir = PathBuf::from(line.trim());
        if !dir.as_os_str().is_empty() && !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    if !dirs.iter().any(|d| d.join("Python.h").is_file()) {
        fail(&format!(
            "no Python.h in the include directories of {python} ({}): install its headers",
            join(&dirs)
        ));
    }
    for dir in &dirs {
        println!("cargo:rerun-if-changed={}", dir.join("Python.h").display());
    }
    dirs
}

/// The source of `abi_bindgen.rs`: `fn witness() -> Witness` built from what bindgen generated.
fn bindgen_witness(code: &str, seen: &Seen, version: (u8, u8)) -> String {
    let aliases = type_aliases(code);
    let mut src = String::new();
    let _ = writeln!(
        src,
        "// @generated by abi-check/src/generate.rs from bindgen's output; do not edit."
    );
    let _ = writeln!(
        src,
        "/// Python {}.{}, the interpreter whose headers were read.",
        version.0, version.1
    );
    let _ = writeln!(
        src,
        "pub(crate) const HEADERS_OF: (u8, u8) = ({}, {});",
        version.0, version.1
    );
    let _ = writeln!(src, "/// bindgen's witness.");
    let _ = writeln!(src, "pub(crate) fn witness() -> Witness {{");
    let _ = writeln!(src, "    let mut layouts = Vec::new();");
    for name in STRUCTS {
        // `typedef struct bufferinfo {...} Py_buffer;` is generated as `struct bufferinfo`
        // plus `type Py_buffer = bufferinfo;`; the callbacks name the struct.
        let canonical = resolve(&aliases, name);
        let Some(fields) = seen.fields.get(canonical) else {
            continue;
        };
        let _ = writeln!(src, "    layouts.push(Layout {{");
        let _ = writeln!(src, "        name: {name:?},");
        let _ = writeln!(
            src,
            "        size: core::mem::size_of::<bindings::{canonical}>(),"
        );
        let _ = writeln!(
            src,
            "        align: core::mem::align_of::<bindings::{canonical}>(),"
        );
        let _ = writeln!(src, "        fields: vec![");
        for (field, field_type) in fields {
            let c_name = c_field_name(field, field_type.as_deref(), canonical, seen);
            let _ = writeln!(
                src,
                "            Field {{ name: {c_name:?}, offset: core::mem::offset_of!(bindings::{canonical}, {field}), \
                 size: field_size(|s: &bindings::{canonical}| &s.{field}) }},"
            );
        }
        let _ = writeln!(src, "        ],");
        let _ = writeln!(src, "    }});");
    }
    let _ = writeln!(src, "    let constants = vec![");
    for (name, value) in &seen.macros {
        if MACRO_FAMILIES.iter().any(|p| name.starts_with(p)) || MACROS.contains(&name.as_str()) {
            let _ = writeln!(src, "        ({name:?}, {value}_i128),");
        }
    }
    let _ = writeln!(src, "    ];");
    let _ =
        writeln!(src, "    Witness {{ name: \"bindgen\", layouts, constants, partial: false, problems: Vec::new() }}");
    let _ = writeln!(src, "}}");
    src
}

/// `pub type NAME = TARGET;` items of bindgen's output, NAME -> TARGET.
fn type_aliases(code: &str) -> BTreeMap<String, String> {
    // Without a formatter bindgen prints its token stream with a space between tokens; split
    // on whitespace and on `;` so that a formatted output reads the same.
    let tokens: Vec<&str> = code
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|t| !t.is_empty())
        .collect();
    let mut aliases = BTreeMap::new();
    for w in tokens.windows(5) {
        if w[0] == "pub" && w[1] == "type" && w[3] == "=" && is_ident(w[2]) && is_ident(w[4]) {
            aliases.insert(w[2].to_owned(), w[4].to_owned());
        }
    }
    aliases
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Follows type aliases to the struct they name.
fn resolve<'a>(aliases: &'a BTreeMap<String, String>, mut name: &'a str) -> &'a str {
    for _ in 0..8 {
        match aliases.get(name) {
            Some(target) => name = target,
            None => break,
        }
    }
    name
}

/// The C name of a field bindgen generated: Rust keywords come back without bindgen's `_`
/// suffix (`type_` is C's `type`); an anonymous member (`__bindgen_anon_N`, e.g. the union
/// around `ob_refcnt` of 3.12+) is named by its first member, through which C code reaches it.
fn c_field_name(field: &str, field_type: Option<&str>, parent: &str, seen: &Seen) -> String {
    // 3.14+ (64-bit, with the GIL): the union around the reference count starts with the
    // 8-byte `ob_refcnt_full`; the union is the field the other witnesses call `ob_refcnt`.
    if field == "ob_refcnt_full" {
        return "ob_refcnt".to_owned();
    }
    if field.starts_with("__bindgen_anon_") {
        // bindgen names anonymous member types `<parent>__bindgen_ty_<N>`; the field's type name
        // says which one when bindgen knows it, else the parent's first anonymous type.
        let ty = field_type.map(str::to_owned).or_else(|| {
            seen.fields
                .keys()
                .find(|k| k.starts_with(&format!("{parent}__bindgen_ty_")))
                .cloned()
        });
        if let Some(first) = ty.and_then(|t| seen.fields.get(&t)).and_then(|f| f.first()) {
            return c_field_name(&first.0, first.1.as_deref(), parent, seen);
        }
        return field.to_owned();
    }
    const KEYWORDS: [&str; 12] = [
        "type", "match", "ref", "mod", "move", "fn", "impl", "loop", "self", "super", "crate",
        "where",
    ];
    match field.strip_suffix('_') {
        Some(base) if KEYWORDS.contains(&base) => base.to_owned(),
        _ => field.to_owned(),
    }
}

fn panic_text(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "bindgen panicked".to_owned())
}

fn join(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| fail(&format!("cargo did not set {name}")))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
}

/// Stops the build with `message` (cargo shows a build script's stderr when it fails).
fn fail(message: &str) -> ! {
    eprintln!("error: bufferkit abi-check: {message}");
    std::process::exit(1);
}
