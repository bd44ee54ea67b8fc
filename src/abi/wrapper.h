/* What bindgen reads for the ABI checks (feature `abi-check`, see src/abi/mod.rs): the C API
 * of the interpreter pyo3-build-config selected (PYO3_PYTHON), exactly as an extension module
 * of that interpreter sees it. The include directories come from that interpreter's
 * `sysconfig` (src/abi/generate.rs); the C compiler's witness, c_tests/abi_probe.c, includes
 * the same two headers.
 *
 * Py_LIMITED_API is deliberately not defined: the checks are about the version-specific
 * build, where PyObject, PyVarObject, PyBufferProcs and the module definition are complete
 * types (under the limited API some of them are opaque or absent). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
/* PyMemberDef: declared here before 3.12, which moved it into descrobject.h (and so into
 * Python.h); including it on 3.12+ is harmless. */
#include <structmember.h>
