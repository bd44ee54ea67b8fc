//! The ABI checks of this crate: pyo3-ffi, bindgen and the C compiler must agree on every
//! checked struct layout and constant of the interpreter this crate is built for
//! (`PYO3_PYTHON`). Every mismatch is printed, then the test fails. Run it for one interpreter
//! with `scripts/abicheck.sh PYTHON`.

use bufferkit_abi_check as abi;

use std::path::Path;

#[test]
fn pyo3_ffi_bindgen_and_the_c_compiler_agree() {
    let report = abi::check();
    println!("{report}");
    let mut mismatches = report.mismatches;
    mismatches.extend(uncompared_constants());
    assert!(
        mismatches.is_empty(),
        "{} ABI mismatch(es) against the headers of Python {}.{}:\n{}",
        mismatches.len(),
        abi::HEADERS_OF.0,
        abi::HEADERS_OF.1,
        mismatches.join("\n")
    );
}

/// Every slot id, type flag, calling convention, request flag or API version the source of
/// the library and of the shipped module takes from pyo3-ffi (`ffi::NAME` or
/// `pyo3_ffi::NAME`) must be one the checks compare, so that the lists in `src/lib.rs` cannot
/// fall behind a new slot or flag.
fn uncompared_constants() -> Vec<String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["src", "module/src"] {
        rust_files(&repo.join(dir), &mut files);
    }
    let compared: Vec<&str> = abi::CONSTANTS
        .iter()
        .copied()
        .chain(abi::pyo3_ffi().constants.iter().map(|c| c.0))
        .collect();
    let mut missing = Vec::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (i, _) in text.match_indices("ffi::") {
            let name: String = text[i + 5..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = abi::MACRO_FAMILIES.iter().any(|p| name.starts_with(p));
            let line = format!(
                "{name}: used by bufferkit ({}) but not compared by the ABI checks",
                file.display()
            );
            if family && !compared.contains(&name.as_str()) && !missing.contains(&line) {
                missing.push(line);
            }
        }
    }
    missing
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_witness_describes_every_struct() {
    for witness in [abi::pyo3_ffi(), abi::bindgen(), abi::c_compiler()] {
        for name in abi::STRUCTS {
            let layout = witness.layouts.iter().find(|l| l.name == name);
            let layout =
                layout.unwrap_or_else(|| panic!("{} does not describe {name}", witness.name));
            assert!(
                layout.size > 0 && layout.align > 0 && !layout.fields.is_empty(),
                "{}: {layout:?}",
                witness.name
            );
        }
    }
}

/// The comparison itself reports what it should, independently of the real witnesses: two
/// copies of the pyo3-ffi witness agree; plant one wrong offset, one wrong field size, one
/// missing field, one wrong struct size, one missing struct and one wrong constant in one copy,
/// and expect exactly those mismatches, each naming both witnesses.
#[test]
fn planted_mismatches_are_each_reported() {
    let reference = abi::pyo3_ffi();
    let mut copy = reference.clone();
    copy.name = "copy";
    assert!(abi::compare(&[reference.clone(), copy.clone()])
        .mismatches
        .is_empty());

    let layout = |w: &mut abi::Witness, name: &str| {
        w.layouts
            .iter()
            .position(|l| l.name == name)
            .expect("struct")
    };
    let i = layout(&mut copy, "Py_buffer");
    copy.layouts[i]
        .fields
        .iter_mut()
        .find(|f| f.name == "ndim")
        .expect("ndim")
        .offset += 4;
    let i = layout(&mut copy, "PyType_Slot");
    copy.layouts[i].fields[0].size = 8;
    let i = layout(&mut copy, "PyMethodDef");
    copy.layouts[i].fields.retain(|f| f.name != "ml_doc");
    let i = layout(&mut copy, "PyType_Spec");
    copy.layouts[i].size += 8;
    copy.layouts.retain(|l| l.name != "PyGetSetDef");
    copy.constants
        .iter_mut()
        .find(|(n, _)| *n == "Py_bf_getbuffer")
        .expect("constant")
        .1 += 1;

    // Py_bf_getbuffer is 1 before 3.15 and 88 from 3.15 (_Py_SLOT_COMPAT_VALUE).
    let getbuffer = pyo3_ffi::Py_bf_getbuffer;
    let planted_constant = format!(
        "Py_bf_getbuffer: pyo3-ffi {getbuffer}, copy {}",
        getbuffer + 1
    );
    let report = abi::compare(&[reference, copy]);
    let expected = [
        "Py_buffer.ndim: offset: pyo3-ffi 36, copy 40",
        "PyType_Slot.slot: size: pyo3-ffi 4, copy 8",
        "PyMethodDef.ml_doc: offset: pyo3-ffi 24, copy (none)",
        "PyMethodDef.ml_doc: size: pyo3-ffi 8, copy (none)",
        "PyType_Spec: size: pyo3-ffi 32, copy 40",
        "PyGetSetDef: present: pyo3-ffi 1, copy (none)",
        "PyGetSetDef: size: pyo3-ffi 40, copy (none)",
        "PyGetSetDef: align: pyo3-ffi 8, copy (none)",
        "PyGetSetDef.name: offset: pyo3-ffi 0, copy (none)",
        planted_constant.as_str(),
    ];
    for line in expected {
        assert!(
            report.mismatches.iter().any(|m| m == line),
            "not reported: {line}\n{report}"
        );
    }
    let unexpected: Vec<&String> = report
        .mismatches
        .iter()
        .filter(|m| !expected.contains(&m.as_str()) && !m.starts_with("PyGetSetDef."))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected mismatches {unexpected:?}\n{report}"
    );
}
