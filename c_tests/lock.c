/*
 * lock.c -- buffer_lock: a Buffer's export count and the lock it is (c_tests/README.md,
 * "Locking"). Each step is one function and one or more checks in the tally, run in order.
 */

#include "harness.h"

#include <string.h>

#define N_LOCK_VIEWS 6

static const NamedFlags VIEW_FLAGS[N_LOCK_VIEWS] = {
    {"PyBUF_FULL_RO", PyBUF_FULL_RO}, {"PyBUF_CONTIG", PyBUF_CONTIG},
    {"PyBUF_SIMPLE", PyBUF_SIMPLE},   {"PyBUF_RECORDS", PyBUF_RECORDS},
    {"PyBUF_ND", PyBUF_ND},           {"PyBUF_WRITABLE", PyBUF_WRITABLE},
};

typedef struct {
    PyObject *ns;
    PyObject *b; /* a strong reference: Buffer((4, 4), 'i') */
    Py_ssize_t refs0;
    Py_buffer views[N_LOCK_VIEWS];
    int held[N_LOCK_VIEWS];
    Py_ssize_t n_held;
} Lock;

/* Several simultaneous views: exports counts each. */
static void
simultaneous_views(Lock *k)
{
    PyObject *b = k->b;
    Check c;
    check_begin(&c, "Buffer((4, 4), 'i'): %d simultaneous views", N_LOCK_VIEWS);
    for (int i = 0; i < N_LOCK_VIEWS; i++) {
        k->held[i] =
            take_view(&c, b, &k->views[i], VIEW_FLAGS[i].flags, VIEW_FLAGS[i].name) == 0;
        k->n_held += k->held[i];
        expect_exports(&c, b, k->n_held);
        if (Py_REFCNT(b) != k->refs0 + k->n_held) {
            check_fail(&c, "refcount is %zd with %zd views, expected %zd", Py_REFCNT(b),
                       k->n_held, k->refs0 + k->n_held);
        }
    }
    check_end(&c);
}

/* close() and freeze() refused while views live, also with a memoryview more. */
static void
refused_while_exported(Lock *k)
{
    PyObject *ns = k->ns, *b = k->b;
    Check c;
    char message[128];
    check_begin(&c, "Buffer with %zd views: close() and freeze() refused", k->n_held);
    snprintf(message, sizeof message, "cannot close: %zd exported buffers", k->n_held);
    expect_raised(&c, PyObject_CallMethod(b, "close", NULL), PyExc_BufferError, message, 1);
    snprintf(message, sizeof message, "cannot freeze: %zd exported buffers", k->n_held);
    expect_raised(&c, PyObject_CallMethod(b, "freeze", NULL), PyExc_BufferError, message, 1);
    expect_bool_attr(&c, b, "closed", 0);
    expect_bool_attr(&c, b, "readonly", 0);
    expect_exports(&c, b, k->n_held);
    check_end(&c);

    /* A Python-level memoryview is one more export. */
    check_begin(&c, "Buffer with %zd views and a memoryview", k->n_held);
    if (run_code(ns, "m = memoryview(b)\n", &c, "memoryview(b)") == 0) {
        expect_exports(&c, b, k->n_held + 1);
        snprintf(message, sizeof message, "cannot freeze: %zd exported buffers", k->n_held + 1);
        expect_raised(&c, PyObject_CallMethod(b, "freeze", NULL), PyExc_BufferError, message,
                      1);
        if (run_code(ns, "m.release()\ndel m\n", &c, "m.release()") == 0) {
            expect_exports(&c, b, k->n_held);
        }
    }
    check_end(&c);
}

/* Release out of order, down to two views (the documented message), then one. */
static void
release_out_of_order(Lock *k)
{
    PyObject *b = k->b;
    Check c;
    check_begin(&c, "releasing views out of order");
    for (int i = 1; i < N_LOCK_VIEWS && k->n_held > 2; i += 2) {
        if (k->held[i]) {
            PyBuffer_Release(&k->views[i]);
            k->held[i] = 0;
            k->n_held--;
            expect_exports(&c, b, k->n_held);
        }
    }
    for (int i = 0; i < N_LOCK_VIEWS && k->n_held > 2; i++) {
        if (k->held[i]) {
            PyBuffer_Release(&k->views[i]);
            k->held[i] = 0;
            k->n_held--;
            expect_exports(&c, b, k->n_held);
        }
    }
    if (k->n_held == 2) {
        expect_raised(&c, PyObject_CallMethod(b, "close", NULL), PyExc_BufferError,
                      "cannot close: 2 exported buffers", 1);
        expect_raised(&c, PyObject_CallMethod(b, "freeze", NULL), PyExc_BufferError,
                      "cannot freeze: 2 exported buffers", 1);
    }
    for (int i = 0; i < N_LOCK_VIEWS && k->n_held > 1; i++) {
        if (k->held[i]) {
            PyBuffer_Release(&k->views[i]);
            k->held[i] = 0;
            k->n_held--;
        }
    }
    if (k->n_held == 1) {
        expect_exports(&c, b, 1);
        expect_raised(&c, PyObject_CallMethod(b, "close", NULL), PyExc_BufferError,
                      "cannot close: 1 exported buffer", 1);
        expect_raised(&c, PyObject_CallMethod(b, "freeze", NULL), PyExc_BufferError,
                      "cannot freeze: 1 exported buffer", 1);
    }
    for (int i = 0; i < N_LOCK_VIEWS; i++) {
        if (k->held[i]) {
            PyBuffer_Release(&k->views[i]);
            k->held[i] = 0;
            k->n_held--;
        }
    }
    expect_exports(&c, b, 0);
    if (Py_REFCNT(b) != k->refs0) {
        check_fail(&c, "refcount is %zd after every view was released, expected %zd",
                   Py_REFCNT(b), k->refs0);
    }
    check_end(&c);
}

/* `with` closes at exit, which a live export refuses. */
static void
with_exit_refused(Lock *k)
{
    PyObject *ns = k->ns;
    Check c;
    check_begin(&c, "with-statement exit while a memoryview is alive");
    if (run_code(ns,
                 "w = bufferkit.Buffer(8)\n"
                 "with_error = None\n"
                 "try:\n"
                 "    with w:\n"
                 "        wm = memoryview(w)\n"
                 "except BufferError as e:\n"
                 "    with_error = str(e)\n"
                 "with_closed_while_exported = w.closed\n"
                 "wm.release()\n"
                 "with w as w2:\n"
                 "    same = w2 is w\n"
                 "with_closed_after = w.closed\n",
                 &c, "the with-statement code") == 0) {
        PyObject *err = PyDict_GetItemString(ns, "with_error");
        char text[256] = "None";
        if (err != NULL && err != Py_None) {
            str_of(err, text, sizeof text);
        }
        if (strncmp(text, "cannot close: 1 exported buffer", 31) != 0) {
            check_fail(&c, "leaving `with` with a live export: expected BufferError 'cannot "
                       "close: 1 exported buffer...', got %s", text);
        }
        PyObject *v = PyDict_GetItemString(ns, "with_closed_while_exported");
        if (v != Py_False) {
            check_fail(&c, "closed after the refused exit is not False");
        }
        v = PyDict_GetItemString(ns, "same");
        if (v != Py_True) {
            check_fail(&c, "`with w as w2` did not bind w itself");
        }
        v = PyDict_GetItemString(ns, "with_closed_after");
        if (v != Py_True) {
            check_fail(&c, "closed is not True after a normal `with` exit");
        }
    }
    check_end(&c);
}

/* freeze() once nothing is exported; then WRITABLE is refused. */
static void
freeze_then_requests(Lock *k)
{
    PyObject *b = k->b;
    Check c;
    check_begin(&c, "freeze() with no exports, then requests");
    expect_none(&c, PyObject_CallMethod(b, "freeze", NULL), "freeze()");
    expect_bool_attr(&c, b, "readonly", 1);
    expect_none(&c, PyObject_CallMethod(b, "freeze", NULL), "freeze() again");
    expect_refused(&c, b, PyBUF_CONTIG, "PyBUF_CONTIG", PyExc_BufferError,
                   "Buffer is not writable");
    expect_refused(&c, b, PyBUF_WRITABLE, "PyBUF_WRITABLE", PyExc_BufferError,
                   "Buffer is not writable");
    Py_buffer v;
    if (take_view(&c, b, &v, PyBUF_FULL_RO, "PyBUF_FULL_RO") == 0) {
        if (v.readonly != 1) {
            check_fail(&c, "PyBUF_FULL_RO after freeze(): readonly is %d, expected 1",
                       v.readonly);
        }
        expect_exports(&c, b, 1);
        PyBuffer_Release(&v);
    }
    expect_exports(&c, b, 0);
    check_end(&c);
}

/* close(): idempotent; afterwards attributes, methods and exports raise ValueError. */
static void
close_then_use(Lock *k)
{
    PyObject *b = k->b;
    Check c;
    check_begin(&c, "close() with no exports, then use");
    expect_none(&c, PyObject_CallMethod(b, "close", NULL), "close()");
    expect_bool_attr(&c, b, "closed", 1);
    expect_none(&c, PyObject_CallMethod(b, "close", NULL), "close() again");
    expect_exports(&c, b, 0);
    expect_raised(&c, PyObject_GetAttrString(b, "shape"), PyExc_ValueError,
                  "operation on closed Buffer", 0);
    expect_raised(&c, PyObject_GetAttrString(b, "nbytes"), PyExc_ValueError,
                  "operation on closed Buffer", 0);
    expect_raised(&c, PyObject_CallMethod(b, "tobytes", NULL), PyExc_ValueError,
                  "operation on closed Buffer", 0);
    expect_raised(&c, PyObject_CallMethod(b, "freeze", NULL), PyExc_ValueError,
                  "operation on closed Buffer", 0);
    PyObject *r = PyObject_Repr(b);
    if (r == NULL) {
        fail_with_exception(&c, "repr() of a closed Buffer");
    }
    Py_XDECREF(r);
    expect_refused(&c, b, PyBUF_SIMPLE, "PyBUF_SIMPLE", PyExc_ValueError,
                   "operation on closed Buffer");
    expect_refused(&c, b, PyBUF_FULL_RO, "PyBUF_FULL_RO", PyExc_ValueError,
                   "operation on closed Buffer");
    expect_refused(&c, b, PyBUF_FULL, "PyBUF_FULL", PyExc_ValueError,
                   "operation on closed Buffer");
    if (Py_REFCNT(b) != k->refs0) {
        check_fail(&c, "refcount is %zd, expected %zd", Py_REFCNT(b), k->refs0);
    }
    check_end(&c);
}

void
test_buffer_lock(void)
{
    Check c;
    PyObject *ns = new_namespace();
    check_begin(&c, "buffer_lock setup: b = Buffer((4, 4), 'i')");
    if (ns == NULL) {
        fail_with_exception(&c, "new_namespace()");
        check_end(&c);
        return;
    }
    if (run_code(ns, "import bufferkit\nb = bufferkit.Buffer((4, 4), 'i')\n", &c,
                 "creating the Buffer") < 0) {
        check_end(&c);
        Py_DECREF(ns);
        return;
    }
    PyObject *b = ns_get(ns, "b", &c);
    if (b == NULL || !check_end(&c)) {
        if (b == NULL) {
            check_end(&c);
        }
        Py_DECREF(ns);
        return;
    }
    Py_INCREF(b);
    Lock k = {.ns = ns, .b = b, .refs0 = Py_REFCNT(b)};
    simultaneous_views(&k);
    refused_while_exported(&k);
    release_out_of_order(&k);
    with_exit_refused(&k);
    freeze_then_requests(&k);
    close_then_use(&k);
    Py_DECREF(b);
    Py_DECREF(ns);
}
