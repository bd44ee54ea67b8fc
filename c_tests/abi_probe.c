/* The C compiler's witness for bufferkit's ABI checks (the crate abi-check/).
 *
 * abi-check/build.rs (src/generate.rs) compiles this file with the `cc` crate against the
 * headers of the interpreter it builds for, and abi-check/src/lib.rs compares the table below
 * with pyo3-ffi's definitions and with bindgen's reading of the same headers, as libc's `ctest`
 * asks the C compiler itself. Each entry is one number the compiler computed: the `sizeof`,
 * `_Alignof` of a struct, the `offsetof` and `sizeof` of each of its fields, or the value of a macro.
 *
 * The field lists are written from the CPython headers, per version where they differ; a field
 * missing here, or one the headers do not have, is reported by the Rust side (bindgen's list of
 * fields is complete, pyo3-ffi's is checked to be complete at compile time). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* PyMemberDef before 3.12 */

#include <stddef.h>

#if defined(Py_LIMITED_API)
#error "the ABI checks compare the version-specific C API: build without Py_LIMITED_API"
#endif

/* One measured number. `kind` is "size", "align", "offset", "field_size" or "value"; `name` is
 * "Struct" for the first two, "Struct.field" for the next two, the macro's name for "value". */
struct bufferkit_abi_entry {
    const char *kind;
    const char *name;
    long long value;
};

#define STRUCT(T) {"size", #T, (long long)sizeof(T)}, {"align", #T, (long long)_Alignof(T)}
#define FIELD(T, f) \
    {"offset", #T "." #f, (long long)offsetof(T, f)}, {"field_size", #T "." #f, (long long)sizeof(((T *)0)->f)}
#define VALUE(c) {"value", #c, (long long)(c)}

const struct bufferkit_abi_entry bufferkit_abi_probe[] = {
    /* Include/pybuffer.h (3.11+), Include/cpython/object.h before */
    STRUCT(Py_buffer),
    FIELD(Py_buffer, buf),
    FIELD(Py_buffer, obj),
    FIELD(Py_buffer, len),
    FIELD(Py_buffer, itemsize),
    FIELD(Py_buffer, readonly),
    FIELD(Py_buffer, ndim),
    FIELD(Py_buffer, format),
    FIELD(Py_buffer, shape),
    FIELD(Py_buffer, strides),
    FIELD(Py_buffer, suboffsets),
    FIELD(Py_buffer, internal),

    /* Include/cpython/object.h */
    STRUCT(PyBufferProcs),
    FIELD(PyBufferProcs, bf_getbuffer),
    FIELD(PyBufferProcs, bf_releasebuffer),

    /* Include/object.h */
    STRUCT(PyType_Spec),
    FIELD(PyType_Spec, name),
    FIELD(PyType_Spec, basicsize),
    FIELD(PyType_Spec, itemsize),
    FIELD(PyType_Spec, flags),
    FIELD(PyType_Spec, slots),

    STRUCT(PyType_Slot),
    FIELD(PyType_Slot, slot),
    FIELD(PyType_Slot, pfunc),

    /* Include/moduleobject.h */
    STRUCT(PyModuleDef),
    FIELD(PyModuleDef, m_base),
    FIELD(PyModuleDef, m_name),
    FIELD(PyModuleDef, m_doc),
    FIELD(PyModuleDef, m_size),
    FIELD(PyModuleDef, m_methods),
    FIELD(PyModuleDef, m_slots),
    FIELD(PyModuleDef, m_traverse),
    FIELD(PyModuleDef, m_clear),
    FIELD(PyModuleDef, m_free),

    STRUCT(PyModuleDef_Base),
    FIELD(PyModuleDef_Base, ob_base),
    FIELD(PyModuleDef_Base, m_init),
    FIELD(PyModuleDef_Base, m_index),
    FIELD(PyModuleDef_Base, m_copy),

    STRUCT(PyModuleDef_Slot),
    FIELD(PyModuleDef_Slot, slot),
    FIELD(PyModuleDef_Slot, value),

    /* Include/methodobject.h */
    STRUCT(PyMethodDef),
    FIELD(PyMethodDef, ml_name),
    FIELD(PyMethodDef, ml_meth),
    FIELD(PyMethodDef, ml_flags),
    FIELD(PyMethodDef, ml_doc),

    /* Include/descrobject.h */
    STRUCT(PyGetSetDef),
    FIELD(PyGetSetDef, name),
    FIELD(PyGetSetDef, get),
    FIELD(PyGetSetDef, set),
    FIELD(PyGetSetDef, doc),
    FIELD(PyGetSetDef, closure),

    /* Include/descrobject.h (3.12+), Include/structmember.h before */
    STRUCT(PyMemberDef),
    FIELD(PyMemberDef, name),
    FIELD(PyMemberDef, type),
    FIELD(PyMemberDef, offset),
    FIELD(PyMemberDef, flags),
    FIELD(PyMemberDef, doc),

    /* Include/object.h. From 3.12 on `ob_refcnt` is the first member of an anonymous union (with
     * `ob_refcnt_split`): the union is the field, named by its first member. */
    STRUCT(PyObject),
#if defined(Py_TRACE_REFS) && PY_VERSION_HEX < 0x030D0000
    FIELD(PyObject, _ob_next),
    FIELD(PyObject, _ob_prev),
#endif
#ifdef Py_GIL_DISABLED
    FIELD(PyObject, ob_tid),
    FIELD(PyObject, _padding),
    FIELD(PyObject, ob_mutex),
    FIELD(PyObject, ob_gc_bits),
    FIELD(PyObject, ob_ref_local),
    FIELD(PyObject, ob_ref_shared),
#elif PY_VERSION_HEX >= 0x030E0000 && SIZEOF_VOID_P > 4
    /* 3.14+: the union starts with the 8-byte `ob_refcnt_full`, beside a struct holding a
     * 4-byte `ob_refcnt`; the union is the field the other witnesses call `ob_refcnt`. */
    {"offset", "PyObject.ob_refcnt", (long long)offsetof(PyObject, ob_refcnt_full)},
    {"field_size", "PyObject.ob_refcnt", (long long)sizeof(((PyObject *)0)->ob_refcnt_full)},
#else
    FIELD(PyObject, ob_refcnt),
#endif
    FIELD(PyObject, ob_type),

    STRUCT(PyVarObject),
    FIELD(PyVarObject, ob_base),
    FIELD(PyVarObject, ob_size),

    /* Request flags, Include/pybuffer.h (3.11+), Include/cpython/object.h before */
    VALUE(PyBUF_MAX_NDIM),
    VALUE(PyBUF_SIMPLE),
    VALUE(PyBUF_WRITABLE),
    VALUE(PyBUF_WRITEABLE),
    VALUE(PyBUF_FORMAT),
    VALUE(PyBUF_ND),
    VALUE(PyBUF_STRIDES),
    VALUE(PyBUF_C_CONTIGUOUS),
    VALUE(PyBUF_F_CONTIGUOUS),
    VALUE(PyBUF_ANY_CONTIGUOUS),
    VALUE(PyBUF_INDIRECT),
    VALUE(PyBUF_CONTIG),
    VALUE(PyBUF_CONTIG_RO),
    VALUE(PyBUF_STRIDED),
    VALUE(PyBUF_STRIDED_RO),
    VALUE(PyBUF_RECORDS),
    VALUE(PyBUF_RECORDS_RO),
    VALUE(PyBUF_FULL),
    VALUE(PyBUF_FULL_RO),
    VALUE(PyBUF_READ),
    VALUE(PyBUF_WRITE),

    /* Slot ids, Include/typeslots.h and Include/moduleobject.h */
    VALUE(Py_bf_getbuffer),
    VALUE(Py_bf_releasebuffer),
    VALUE(Py_mp_length),
    VALUE(Py_mp_subscript),
    VALUE(Py_sq_length),
    VALUE(Py_tp_alloc),
    VALUE(Py_tp_base),
    VALUE(Py_tp_clear),
    VALUE(Py_tp_dealloc),
    VALUE(Py_tp_doc),
    VALUE(Py_tp_free),
    VALUE(Py_tp_getset),
    VALUE(Py_tp_members),
    VALUE(Py_tp_methods),
    VALUE(Py_tp_new),
    VALUE(Py_tp_repr),
    VALUE(Py_tp_richcompare),
    VALUE(Py_tp_traverse),
#ifdef Py_tp_token /* 3.14+ */
    VALUE(Py_tp_token),
#endif
#ifdef Py_tp_vectorcall /* 3.14+ */
    VALUE(Py_tp_vectorcall),
#endif
    VALUE(Py_mod_exec),
#ifdef Py_mod_gil /* 3.13+ */
    VALUE(Py_mod_gil),
#endif
#ifdef Py_mod_abi /* 3.15+: the module slots of PEP 793 */
    VALUE(Py_mod_abi),
    VALUE(Py_mod_name),
    VALUE(Py_mod_doc),
    VALUE(Py_mod_state_size),
    VALUE(Py_mod_methods),
    VALUE(Py_mod_state_traverse),
    VALUE(Py_mod_state_clear),
    VALUE(Py_mod_state_free),
#endif

    /* Type flags, Include/object.h */
    VALUE(Py_TPFLAGS_DEFAULT),
    VALUE(Py_TPFLAGS_BASETYPE),
#ifdef Py_TPFLAGS_DISALLOW_INSTANTIATION /* 3.10+ */
    VALUE(Py_TPFLAGS_DISALLOW_INSTANTIATION),
#endif
    VALUE(Py_TPFLAGS_HAVE_GC),
    VALUE(Py_TPFLAGS_HEAPTYPE),
#ifdef Py_TPFLAGS_IMMUTABLETYPE /* 3.10+ */
    VALUE(Py_TPFLAGS_IMMUTABLETYPE),
#endif
    VALUE(Py_TPFLAGS_METHOD_DESCRIPTOR),

    /* Calling conventions, Include/methodobject.h */
    VALUE(METH_VARARGS),
    VALUE(METH_KEYWORDS),
    VALUE(METH_NOARGS),
    VALUE(METH_O),
    VALUE(METH_FASTCALL),
    VALUE(METH_CLASS),
    VALUE(METH_COEXIST),

    /* Include/modsupport.h, Include/patchlevel.h */
    VALUE(PYTHON_API_VERSION),
    VALUE(PYTHON_ABI_VERSION),
    VALUE(PY_VERSION_HEX),
};

const size_t bufferkit_abi_probe_len = sizeof bufferkit_abi_probe / sizeof bufferkit_abi_probe[0];
