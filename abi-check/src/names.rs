//! What the ABI checks compare, by name: one list, read by the build script (which runs bindgen
//! over the headers, `generate.rs`) and by the library and its tests (`lib.rs`,
//! `tests/abi.rs`). The build script cannot depend on the library, so it includes this file
//! with `#[path]`; it holds constants only.

/// The structs compared, by their C API (typedef) names.
pub const STRUCTS: [&str; 12] = [
    "Py_buffer",
    "PyBufferProcs",
    "PyType_Spec",
    "PyType_Slot",
    "PyModuleDef",
    "PyModuleDef_Base",
    "PyModuleDef_Slot",
    "PyMethodDef",
    "PyGetSetDef",
    "PyMemberDef",
    "PyObject",
    "PyVarObject",
];

/// The families of integer macros bindgen hands over: every name with one of these prefixes.
/// Every `PyBUF_*` is compared; of the others, the ones bufferkit uses (`CONSTANTS` in
/// `mod.rs`, and `tests/abi.rs` fails if the source uses one of these families' names that is
/// not compared).
pub const MACRO_FAMILIES: [&str; 11] = [
    "PyBUF_",
    "Py_TPFLAGS_",
    "METH_",
    "Py_tp_",
    "Py_bf_",
    "Py_mp_",
    "Py_sq_",
    "Py_nb_",
    "Py_am_",
    "Py_mod_",
    "PYTHON_",
];

/// Single macros handed over as well.
pub const MACROS: [&str; 1] = ["PY_VERSION_HEX"];
