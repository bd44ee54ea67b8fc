/*
 * floor.c -- the floor of the benchmark: the cheapest correct buffer exporter CPython allows.
 *
 * `_bench_floor.Floor(nbytes)` owns `nbytes` zeroed, writable bytes and exports them with
 * `PyBuffer_FillInfo` (one contiguous unsigned-byte block, every request flag handled by
 * CPython's own helper, as `bytes` and `array` do) plus an export counter, the minimum that
 * makes an exporter correct (`Doc/c-api/typeobj.rst`, `bf_getbuffer` steps 1-5 and
 * `bf_releasebuffer` step 1). It is a static type, compiled like any extension module, so its
 * slots are reached through exactly the same `PyObject_GetBuffer` / `PyBuffer_Release`
 * dispatch as every other row of the benchmark. Nothing here is bufferkit's.
 *
 * Built by bench/run.sh as an extension module next to the C harness (bench/cbench.c imports
 * it) and for the Python-level benchmark (bench/pybench.py).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>

typedef struct {
    PyObject_HEAD
    char *buf;
    Py_ssize_t len;
    Py_ssize_t exports;
} Floor;

static int
Floor_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    Floor *f = (Floor *)self;
    /* PyBuffer_FillInfo refuses WRITABLE on read-only memory (not the case here), fills every
     * field by the request and takes the reference in view->obj. */
    if (PyBuffer_FillInfo(view, self, f->buf, f->len, 0, flags) < 0) {
        return -1;
    }
    f->exports++;
    return 0;
}

static void
Floor_releasebuffer(PyObject *self, Py_buffer *view)
{
    (void)view;
    ((Floor *)self)->exports--;
}

static PyObject *
Floor_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"nbytes", NULL};
    Py_ssize_t n;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:Floor", kwlist, &n)) {
        return NULL;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "nbytes must be >= 0");
        return NULL;
    }
    Floor *self = (Floor *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    /* calloc: large blocks come from mmap and stay untouched until a consumer writes them. */
    self->buf = calloc(n > 0 ? (size_t)n : 1, 1);
    if (self->buf == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->len = n;
    self->exports = 0;
    return (PyObject *)self;
}

static void
Floor_dealloc(PyObject *self)
{
    free(((Floor *)self)->buf);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *
Floor_get_exports(PyObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(((Floor *)self)->exports);
}

static PyObject *
Floor_len(PyObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(((Floor *)self)->len);
}

static PyGetSetDef Floor_getset[] = {
    {"exports", Floor_get_exports, NULL, "live exports", NULL},
    {"nbytes", Floor_len, NULL, "size in bytes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyBufferProcs Floor_as_buffer = {
    .bf_getbuffer = Floor_getbuffer,
    .bf_releasebuffer = Floor_releasebuffer,
};

static PyTypeObject Floor_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_bench_floor.Floor",
    .tp_basicsize = sizeof(Floor),
    .tp_dealloc = Floor_dealloc,
    .tp_as_buffer = &Floor_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Floor(nbytes): zeroed writable bytes exported with PyBuffer_FillInfo and a counter",
    .tp_getset = Floor_getset,
    .tp_new = Floor_new,
};

static struct PyModuleDef floor_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_bench_floor",
    .m_doc = "The floor exporter of bufferkit's benchmark (bench/floor.c).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__bench_floor(void)
{
    if (PyType_Ready(&Floor_Type) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&floor_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&Floor_Type);
    if (PyModule_AddObject(m, "Floor", (PyObject *)&Floor_Type) < 0) {
        Py_DECREF(&Floor_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
