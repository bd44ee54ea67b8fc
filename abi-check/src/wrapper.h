/* What bindgen reads for the ABI checks (abi-check/, see src/lib.rs): the C API
 * of the interpreter pyo3-build-config selected (PYO3_PYTHON), exactly as an extension module
 * of that interpreter sees it. The include directories come from that interpreter's
 * `sysconfig` (src/generate.rs); the C compiler's witness, c_tests/abi_probe.c, includes
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

/* The values of macros whose expansion calls a function-like macro, which bindgen cannot
 * evaluate (PY_VERSION_HEX from 3.14, the slot ids from 3.15: _Py_PACK_FULL_VERSION,
 * _Py_SLOT_COMPAT_VALUE), as enum constants, which clang evaluates: generate.rs reads
 * `bufferkit_value_NAME` as the macro NAME wherever bindgen could not read NAME itself. */
enum bufferkit_values {
    bufferkit_value_PY_VERSION_HEX = PY_VERSION_HEX,
    bufferkit_value_Py_bf_getbuffer = Py_bf_getbuffer,
    bufferkit_value_Py_bf_releasebuffer = Py_bf_releasebuffer,
    bufferkit_value_Py_mp_length = Py_mp_length,
    bufferkit_value_Py_mp_subscript = Py_mp_subscript,
    bufferkit_value_Py_sq_length = Py_sq_length,
    bufferkit_value_Py_mod_exec = Py_mod_exec,
#ifdef Py_mod_gil
    bufferkit_value_Py_mod_gil = Py_mod_gil,
#endif
};
