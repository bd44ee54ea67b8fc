/*
 * objloop.c -- the callgrind window of bench/objbench.py (issue 15's object operations).
 *
 * `_bench_objloop.run(fn)` calls `fn()` through bk_obj_run(), a function that is never inlined,
 * cloned or merged (noipa). valgrind runs objbench.py with
 *   --tool=callgrind --collect-atstart=no --toggle-collect=bk_obj_run --dump-after=bk_obj_run
 * so that instructions are counted only while fn() runs and every call writes a dump of its
 * own. objbench.py passes a function that runs one statement N times (timeit's own loop), once
 * with N and once with 3N iterations: (Ir(3N) - Ir(N)) / 2N is the cost of one execution of
 * the statement plus one turn of the loop, every constant cost of the call cancelling.
 *
 * `_bench_objloop.exports(obj, n)` makes n PyObject_GetBuffer(PyBUF_SIMPLE) + PyBuffer_Release
 * pairs on obj in C, as bench/cbench.c's loop does: bench/threadbench.py calls it from several
 * threads at once on a free-threaded interpreter, where nothing serialises them, so what it
 * measures is the exporter's own cost under contention (its export counter), without the
 * allocation of a memoryview per export.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

__attribute__((noipa)) PyObject *
bk_obj_run(PyObject *fn)
{
    return PyObject_CallNoArgs(fn);
}

__attribute__((noipa)) static int
bk_export_loop(PyObject *obj, Py_ssize_t n)
{
    Py_buffer view;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) != 0) {
            return -1;
        }
        PyBuffer_Release(&view);
    }
    return 0;
}

static PyObject *
objloop_exports(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *obj;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "On:exports", &obj, &n)) {
        return NULL;
    }
    if (bk_export_loop(obj, n) != 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
objloop_run(PyObject *module, PyObject *fn)
{
    (void)module;
    return bk_obj_run(fn);
}

static PyMethodDef objloop_methods[] = {
    {"run", objloop_run, METH_O, "run(fn): fn() inside callgrind's collection window (bk_obj_run)"},
    {"exports", objloop_exports, METH_VARARGS, "exports(obj, n): n PyObject_GetBuffer + PyBuffer_Release pairs"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef objloop_module = {
    PyModuleDef_HEAD_INIT, "_bench_objloop", "callgrind window for bench/objbench.py", -1, objloop_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__bench_objloop(void)
{
    return PyModule_Create(&objloop_module);
}
