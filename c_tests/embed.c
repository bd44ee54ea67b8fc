/*
 * embed.c -- bufferkit's C-level test program.
 *
 * One binary embeds the interpreter it was linked against and holds a table of named tests, in
 * the manner of CPython's Programs/_testembed.c. The tests build objects with PyRun_String and
 * then act as a C extension would on the consumer side of the buffer protocol (PEP 3118):
 * PyObject_GetBuffer, PyBuffer_Release, and the bf_getbuffer slot itself. An oracle written
 * from docs/semantics.md predicts the outcome of every request from the exporter's
 * Python-visible attributes; the reference exporters of the standard library (bytearray,
 * bytes, array.array, _testbuffer.ndarray) are run through the same oracle, parametrised by the
 * few documented policies in which they differ from bufferkit, to show that the oracle itself
 * is right.
 *
 *   embed [-v] [TEST...]   run the named tests, or every test when none is named
 *   embed --list           print every test name, one a line
 *   embed --help           usage and the list of tests with what each proves
 *
 * Output: a "FAIL <subject>: <detail>" line for every field that differs from the oracle
 * (subject = the object, the request flags and the path taken), "PASS <subject>" lines with -v,
 * a summary line per test, and as the last line "N passed, M failed", where one check is one
 * request (or one step of a scenario) with all of its fields. The exit status is 0 only when
 * nothing failed.
 *
 * Tests that end the interpreter (finalize_*) run last; when more than one test is selected,
 * each of them runs in a child process of its own (this binary, re-executed with its name).
 */

#undef NDEBUG /* assert() guards the harness's own invariants: never compiled out */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define MAX_NDIM 64                   /* bufferkit's limit, and PyBUF_MAX_NDIM */
#define DETAIL_LINES_PER_TEST 200     /* FAIL lines printed per test without -v */
#define POISON_BYTE 0xA5              /* fills every Py_buffer before a request */

#define PRINTF_LIKE(fmt, first) __attribute__((format(printf, fmt, first)))

/* ------------------------------------------------------------------------------------------ */
/* Tally and reporting                                                                        */

static long checks_passed;
static long checks_failed;
static int verbose;
static int detail_lines_left = DETAIL_LINES_PER_TEST;
static int interpreter_finalized;
static long unraisable_count;

/* One check: a subject (what was done to which object) and the failures found about it. */
typedef struct {
    char subject[512];
    int failures;
} Check;

static void check_begin(Check *c, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void check_fail(Check *c, const char *fmt, ...) PRINTF_LIKE(2, 3);

static void
check_begin(Check *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->subject, sizeof c->subject, fmt, ap);
    va_end(ap);
    c->failures = 0;
}

static void
check_fail(Check *c, const char *fmt, ...)
{
    c->failures++;
    if (!verbose && detail_lines_left <= 0) {
        return;
    }
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    printf("FAIL %s: %s\n", c->subject, detail);
    if (!verbose && --detail_lines_left == 0) {
        printf("     (further FAIL lines of this test are not printed; run with -v to see them)\n");
    }
}

/* Counts the check once, as passed or failed. Returns 1 when it passed. */
static int
check_end(Check *c)
{
    if (c->failures == 0) {
        checks_passed++;
        if (verbose) {
            printf("PASS %s\n", c->subject);
        }
        return 1;
    }
    checks_failed++;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Python helpers                                                                             */

/* Takes the current exception and clears the indicator; NULL when none is set. */
static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* str(obj) into out; "<str() failed>" when it raises. */
static void
str_of(PyObject *obj, char *out, size_t n)
{
    PyObject *s = PyObject_Str(obj);
    const char *u = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
    if (u == NULL) {
        PyErr_Clear();
        u = "<str() failed>";
    }
    snprintf(out, n, "%s", u);
    Py_XDECREF(s);
}

/* repr(obj) into out; "<repr() failed>" when it raises. */
static void
repr_of(PyObject *obj, char *out, size_t n)
{
    PyObject *s = PyObject_Repr(obj);
    const char *u = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
    if (u == NULL) {
        PyErr_Clear();
        u = "<repr() failed>";
    }
    snprintf(out, n, "%s", u);
    Py_XDECREF(s);
}

/* "TypeName: message" of an exception instance. */
static void
describe_exception(PyObject *exc, char *out, size_t n)
{
    if (exc == NULL) {
        snprintf(out, n, "no exception set");
        return;
    }
    char msg[512];
    str_of(exc, msg, sizeof msg);
    snprintf(out, n, "%s: %s", Py_TYPE(exc)->tp_name, msg);
}

/* Takes the current exception and reports it as a failure of c: "<what> raised T: msg". */
static void
fail_with_exception(Check *c, const char *what)
{
    PyObject *exc = take_exception();
    char desc[600];
    describe_exception(exc, desc, sizeof desc);
    check_fail(c, "%s raised %s", what, desc);
    Py_XDECREF(exc);
}

/* Prints the traceback of exc to stderr (best effort, for setup code that failed). */
static void
print_traceback(PyObject *exc)
{
    PyObject *tb_mod = PyImport_ImportModule("traceback");
    PyObject *tb = exc != NULL ? PyException_GetTraceback(exc) : NULL;
    PyObject *r = NULL;
    if (tb_mod != NULL && exc != NULL) {
        r = PyObject_CallMethod(tb_mod, "print_exception", "OOO", (PyObject *)Py_TYPE(exc), exc,
                                tb != NULL ? tb : Py_None);
    }
    if (r == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(r);
    Py_XDECREF(tb);
    Py_XDECREF(tb_mod);
    fflush(stderr);
}

/* A fresh globals dict for PyRun_String, with builtins. NULL with an exception on failure. */
static PyObject *
new_namespace(void)
{
    PyObject *ns = PyDict_New();
    PyObject *builtins = PyImport_ImportModule("builtins");
    if (ns == NULL || builtins == NULL ||
        PyDict_SetItemString(ns, "__builtins__", builtins) < 0) {
        Py_XDECREF(ns);
        Py_XDECREF(builtins);
        return NULL;
    }
    Py_DECREF(builtins);
    return ns;
}

/* new_namespace() for a test's setup: on failure the exception is reported as a failed "setup"
 * check, and NULL returned (the test has nothing more to do). */
static PyObject *
setup_namespace(void)
{
    PyObject *ns = new_namespace();
    if (ns == NULL) {
        Check c;
        check_begin(&c, "setup");
        fail_with_exception(&c, "new_namespace()");
        check_end(&c);
    }
    return ns;
}

/* Runs statements in ns. On failure, reports the exception (with traceback) as a failure of c
 * and returns -1. */
static int
run_code(PyObject *ns, const char *code, Check *c, const char *what)
{
    PyObject *r = PyRun_String(code, Py_file_input, ns, ns);
    if (r == NULL) {
        PyObject *exc = take_exception();
        char desc[600];
        describe_exception(exc, desc, sizeof desc);
        check_fail(c, "%s raised %s (traceback on stderr)", what, desc);
        print_traceback(exc);
        Py_XDECREF(exc);
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* A borrowed item of ns that the setup code defined; NULL (reported to c) when missing. */
static PyObject *
ns_get(PyObject *ns, const char *name, Check *c)
{
    PyObject *v = PyDict_GetItemString(ns, name);
    if (v == NULL) {
        check_fail(c, "the setup code did not define %s", name);
    }
    return v;
}

/* Reads an int attribute; -1 with the failure reported to c. */
static int
get_ssize_attr(PyObject *o, const char *name, Py_ssize_t *out, Check *c)
{
    PyObject *v = PyObject_GetAttrString(o, name);
    if (v == NULL) {
        char what[128];
        snprintf(what, sizeof what, "getattr(obj, '%s')", name);
        fail_with_exception(c, what);
        return -1;
    }
    Py_ssize_t n = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    if (n == -1 && PyErr_Occurred()) {
        char what[128];
        snprintf(what, sizeof what, "int(obj.%s)", name);
        fail_with_exception(c, what);
        return -1;
    }
    *out = n;
    return 0;
}

/* Reads the truth value of an attribute (0/1); -1 with the failure reported to c. */
static int
get_bool_attr(PyObject *o, const char *name, Check *c)
{
    PyObject *v = PyObject_GetAttrString(o, name);
    if (v == NULL) {
        char what[128];
        snprintf(what, sizeof what, "getattr(obj, '%s')", name);
        fail_with_exception(c, what);
        return -1;
    }
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    if (t < 0) {
        char what[128];
        snprintf(what, sizeof what, "bool(obj.%s)", name);
        fail_with_exception(c, what);
    }
    return t;
}

/* Reads a str attribute into out; -1 with the failure reported to c. */
static int
get_str_attr(PyObject *o, const char *name, char *out, size_t n, Check *c)
{
    PyObject *v = PyObject_GetAttrString(o, name);
    if (v == NULL) {
        char what[128];
        snprintf(what, sizeof what, "getattr(obj, '%s')", name);
        fail_with_exception(c, what);
        return -1;
    }
    if (!PyUnicode_Check(v)) {
        check_fail(c, "obj.%s is a %s, expected str", name, Py_TYPE(v)->tp_name);
        Py_DECREF(v);
        return -1;
    }
    Py_ssize_t len;
    const char *u = PyUnicode_AsUTF8AndSize(v, &len);
    if (u == NULL) {
        Py_DECREF(v);
        fail_with_exception(c, "PyUnicode_AsUTF8AndSize");
        return -1;
    }
    if ((size_t)len >= n) {
        check_fail(c, "obj.%s is %zd characters long, more than this harness handles", name, len);
        Py_DECREF(v);
        return -1;
    }
    memcpy(out, u, (size_t)len + 1);
    Py_DECREF(v);
    return 0;
}

/* Reads a sequence of ints (shape, strides) into out[0..*n); -1 with the failure reported. */
static int
get_dims_attr(PyObject *o, const char *name, Py_ssize_t *out, int *n, Check *c)
{
    PyObject *v = PyObject_GetAttrString(o, name);
    if (v == NULL) {
        char what[128];
        snprintf(what, sizeof what, "getattr(obj, '%s')", name);
        fail_with_exception(c, what);
        return -1;
    }
    if (!PyTuple_Check(v)) {
        check_fail(c, "obj.%s is a %s, expected a tuple", name, Py_TYPE(v)->tp_name);
        Py_DECREF(v);
        return -1;
    }
    Py_ssize_t len = PyTuple_GET_SIZE(v);
    if (len > MAX_NDIM) {
        check_fail(c, "obj.%s has %zd entries, more than %d", name, len, MAX_NDIM);
        Py_DECREF(v);
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        Py_ssize_t x = PyLong_AsSsize_t(PyTuple_GET_ITEM(v, i));
        if (x == -1 && PyErr_Occurred()) {
            char what[128];
            snprintf(what, sizeof what, "int(obj.%s[%zd])", name, i);
            fail_with_exception(c, what);
            Py_DECREF(v);
            return -1;
        }
        out[i] = x;
    }
    *n = (int)len;
    Py_DECREF(v);
    return 0;
}

/* type(o).__name__ into out: the T of docs/semantics.md's messages. */
static void
type_name_of(PyObject *o, char *out, size_t n)
{
    PyObject *name = PyObject_GetAttrString((PyObject *)Py_TYPE(o), "__name__");
    if (name == NULL) {
        PyErr_Clear();
        snprintf(out, n, "%s", Py_TYPE(o)->tp_name);
        return;
    }
    str_of(name, out, n);
    Py_DECREF(name);
}

/* "(3, 4)", "(7,)" or "()" */
static void
format_dims(char *out, size_t n, const Py_ssize_t *a, int len)
{
    size_t used = 0;
    used += (size_t)snprintf(out, n, "(");
    for (int i = 0; i < len && used < n; i++) {
        used += (size_t)snprintf(out + used, n - used, i ? ", %zd" : "%zd", a[i]);
    }
    if (used < n) {
        snprintf(out + used, n - used, len == 1 ? ",)" : ")");
    }
}

/* sys.unraisablehook while the tests run: an error that nobody could raise (for instance one
 * reported by a releasebuffer slot) is printed and makes the running test fail. */
static PyObject *
embed_unraisablehook(PyObject *self, PyObject *args)
{
    (void)self;
    unraisable_count++;
    char msg[256] = "Exception ignored";
    char exc_text[600] = "?";
    char obj_text[256] = "?";
    PyObject *err_msg = PyObject_GetAttrString(args, "err_msg");
    if (err_msg != NULL && err_msg != Py_None) {
        str_of(err_msg, msg, sizeof msg);
    }
    PyObject *value = PyObject_GetAttrString(args, "exc_value");
    if (value != NULL) {
        describe_exception(value == Py_None ? NULL : value, exc_text, sizeof exc_text);
    }
    PyObject *object = PyObject_GetAttrString(args, "object");
    if (object != NULL) {
        repr_of(object, obj_text, sizeof obj_text);
    }
    PyErr_Clear();
    Py_XDECREF(err_msg);
    Py_XDECREF(value);
    Py_XDECREF(object);
    printf("UNRAISABLE %s: %s (object: %s)\n", msg, exc_text, obj_text);
    Py_RETURN_NONE;
}

static PyMethodDef unraisablehook_def = {
    "embed_unraisablehook", embed_unraisablehook, METH_O,
    "Counts and prints unraisable exceptions for the embed test program.",
};

/* ------------------------------------------------------------------------------------------ */
/* Request flags                                                                              */

/* Compound flags are tested as (flags & X) == X, never flags & X. */
#define REQ(flags, x) (((flags) & (x)) == (x))

typedef struct {
    const char *name;
    int flags;
} NamedFlags;

/* The fifteen standard requests of Doc/c-api/buffer.rst. */
static const NamedFlags STANDARD_REQUESTS[] = {
    {"PyBUF_INDIRECT", PyBUF_INDIRECT},
    {"PyBUF_STRIDES", PyBUF_STRIDES},
    {"PyBUF_ND", PyBUF_ND},
    {"PyBUF_SIMPLE", PyBUF_SIMPLE},
    {"PyBUF_C_CONTIGUOUS", PyBUF_C_CONTIGUOUS},
    {"PyBUF_F_CONTIGUOUS", PyBUF_F_CONTIGUOUS},
    {"PyBUF_ANY_CONTIGUOUS", PyBUF_ANY_CONTIGUOUS},
    {"PyBUF_FULL", PyBUF_FULL},
    {"PyBUF_FULL_RO", PyBUF_FULL_RO},
    {"PyBUF_RECORDS", PyBUF_RECORDS},
    {"PyBUF_RECORDS_RO", PyBUF_RECORDS_RO},
    {"PyBUF_STRIDED", PyBUF_STRIDED},
    {"PyBUF_STRIDED_RO", PyBUF_STRIDED_RO},
    {"PyBUF_CONTIG", PyBUF_CONTIG},
    {"PyBUF_CONTIG_RO", PyBUF_CONTIG_RO},
};
#define N_STANDARD_REQUESTS ((int)(sizeof STANDARD_REQUESTS / sizeof STANDARD_REQUESTS[0]))

/* Each standard request is also sent with these added. */
static const NamedFlags MODIFIERS[] = {
    {"", 0},
    {"|PyBUF_WRITABLE", PyBUF_WRITABLE},
    {"|PyBUF_FORMAT", PyBUF_FORMAT},
    {"|PyBUF_WRITABLE|PyBUF_FORMAT", PyBUF_WRITABLE | PyBUF_FORMAT},
};
#define N_MODIFIERS ((int)(sizeof MODIFIERS / sizeof MODIFIERS[0]))

/* Malformed requests (rule 1 of docs/semantics.md). */
static const NamedFlags INVALID_REQUESTS[] = {
    {"PyBUF_WRITE", PyBUF_WRITE},
    {"PyBUF_READ", PyBUF_READ},
    {"0x2 (the unused bit)", 0x2},
    {"0x20 (C-contiguity bit alone)", 0x20},
    {"0x10 (strides bit without PyBUF_ND)", 0x10},
    {"0x400 (above PyBUF_WRITE)", 0x400},
    {"-1 (every bit)", -1},
    {"INT_MAX", INT_MAX},
    {"0x20|PyBUF_WRITE", 0x20 | PyBUF_WRITE},
    {"0x40 (Fortran-contiguity bit alone)", 0x40},
    {"0x80 (any-contiguity bit alone)", 0x80},
    {"PyBUF_INDIRECT without PyBUF_ND", PyBUF_INDIRECT & ~PyBUF_ND},
    {"PyBUF_C_CONTIGUOUS without PyBUF_ND", PyBUF_C_CONTIGUOUS & ~PyBUF_ND},
    {"PyBUF_WRITABLE|0x2", PyBUF_WRITABLE | 0x2},
    {"PyBUF_FULL|PyBUF_WRITE", PyBUF_FULL | PyBUF_WRITE},
};
#define N_INVALID_REQUESTS ((int)(sizeof INVALID_REQUESTS / sizeof INVALID_REQUESTS[0]))

/* Set at start-up: whether this interpreter's PyObject_GetBuffer itself refuses a request of
 * exactly PyBUF_READ or PyBUF_WRITE with SystemError before any exporter sees it (CPython
 * 3.13 does; 3.9 ... 3.12 pass it on). Probed with a bytearray, which never validates flags. */
static int interpreter_refuses_read_write;

/* ------------------------------------------------------------------------------------------ */
/* The oracle                                                                                 */

/* What an exporter does with PyBUF_FORMAT when PyBUF_ND is absent. */
typedef enum {
    FORMAT_ONLY_FOR_BYTES, /* bufferkit: served (with its own format) only for unsigned bytes */
    FORMAT_NEVER,          /* _testbuffer.ndarray: refused for every format */
    FORMAT_ALWAYS,         /* PyBuffer_FillInfo, array.array: served with the real format */
} FormatWithoutShape;

/* The documented ways an exporter may differ from bufferkit; everything else is shared. */
typedef struct {
    const char *name;
    int rejects_malformed;                 /* applies rule 1 (malformed requests) */
    FormatWithoutShape format_without_shape; /* rule 5 */
    int exact_messages;                    /* raises the texts of docs/semantics.md */
    int has_exports_attr;                  /* obj.exports counts live exports */
    int attrs_from_memoryview;             /* layout attributes read from memoryview(obj) */
    int internal_is_null;                  /* leaves Py_buffer.internal NULL */
    int nulls_obj_on_refusal;              /* sets view->obj = NULL when it refuses */
} Policy;

static const Policy BUFFERKIT_POLICY = {
    .name = "bufferkit",
    .rejects_malformed = 1,
    .format_without_shape = FORMAT_ONLY_FOR_BYTES,
    .exact_messages = 1,
    .has_exports_attr = 1,
    .attrs_from_memoryview = 0,
    .internal_is_null = 1,
    .nulls_obj_on_refusal = 1,
};

/* bytearray, bytes (both through PyBuffer_FillInfo) and array.array. */
static const Policy FILLINFO_POLICY = {
    .name = "fillinfo",
    .rejects_malformed = 0,
    .format_without_shape = FORMAT_ALWAYS,
    .exact_messages = 0,
    .has_exports_attr = 0,
    .attrs_from_memoryview = 1,
    .internal_is_null = 1,
    .nulls_obj_on_refusal = 0, /* PyBuffer_FillInfo returns -1 before touching the view */
};

static const Policy TESTBUFFER_POLICY = {
    .name = "testbuffer",
    .rejects_malformed = 0,
    .format_without_shape = FORMAT_NEVER,
    .exact_messages = 0,
    .has_exports_attr = 0,
    .attrs_from_memoryview = 0,
    .internal_is_null = 0, /* ndarray_getbuf copies its base view, internal included */
    .nulls_obj_on_refusal = 1,
};

/* An exporter's layout as its attributes describe it, plus what the oracle derives. */
typedef struct {
    char type_name[128];  /* type(obj).__name__ */
    int ndim;             /* len(obj.shape) */
    Py_ssize_t shape[MAX_NDIM];
    Py_ssize_t strides[MAX_NDIM];
    char format[64];
    Py_ssize_t itemsize;
    Py_ssize_t nbytes;
    int readonly;
    int attr_c, attr_f, attr_any; /* obj.c_contiguous, f_contiguous, contiguous */
    int c, f, any;                /* the same, computed from shape, strides and itemsize */
} Layout;

/* The object under test, with everything the oracle needs about it. */
typedef struct {
    PyObject *obj; /* borrowed: kept alive by the test's namespace */
    const char *label;
    const Policy *policy;
    Layout layout;
    void *full_buf; /* buf of a PyBUF_FULL_RO view: the address of element (0, ..., 0) */
    PyObject *root; /* borrowed or NULL: for a View, its base, whose reference count (and
                     * exports, when root_has_exports) no request on obj may change */
    int root_has_exports;
} Subject;

/* Contiguity in the sense of CPython's PyBuffer_IsContiguous: an empty array is contiguous in
 * every order; dimensions of extent 1 do not constrain their stride. */
static int
layout_is_contiguous(const Layout *l, char order)
{
    for (int i = 0; i < l->ndim; i++) {
        if (l->shape[i] == 0) {
            return 1;
        }
    }
    Py_ssize_t want = l->itemsize;
    for (int k = 0; k < l->ndim; k++) {
        int i = order == 'C' ? l->ndim - 1 - k : k;
        if (l->shape[i] > 1 && l->strides[i] != want) {
            return 0;
        }
        want *= l->shape[i];
    }
    return 1;
}

/* Reads o's layout (rule inputs) from its attributes, or from memoryview(o) for exporters
 * without them. Failures are reported to c; returns -1 then. */
static int
read_layout(PyObject *o, const Policy *p, Layout *l, Check *c)
{
    memset(l, 0, sizeof *l);
    type_name_of(o, l->type_name, sizeof l->type_name);
    PyObject *src;
    if (p->attrs_from_memoryview) {
        src = PyMemoryView_FromObject(o);
        if (src == NULL) {
            fail_with_exception(c, "memoryview(obj)");
            return -1;
        }
    }
    else {
        src = o;
        Py_INCREF(src);
    }
    int nstrides = -1;
    int ok = get_dims_attr(src, "shape", l->shape, &l->ndim, c) == 0 &&
             get_dims_attr(src, "strides", l->strides, &nstrides, c) == 0 &&
             get_str_attr(src, "format", l->format, sizeof l->format, c) == 0 &&
             get_ssize_attr(src, "itemsize", &l->itemsize, c) == 0 &&
             get_ssize_attr(src, "nbytes", &l->nbytes, c) == 0 &&
             (l->readonly = get_bool_attr(src, "readonly", c)) >= 0 &&
             (l->attr_c = get_bool_attr(src, "c_contiguous", c)) >= 0 &&
             (l->attr_f = get_bool_attr(src, "f_contiguous", c)) >= 0 &&
             (l->attr_any = get_bool_attr(src, "contiguous", c)) >= 0;
    if (ok && nstrides != l->ndim) {
        check_fail(c, "len(obj.strides) is %d but len(obj.shape) is %d", nstrides, l->ndim);
        ok = 0;
    }
    if (ok && l->itemsize <= 0) {
        check_fail(c, "obj.itemsize is %zd", l->itemsize);
        ok = 0;
    }
    if (p->attrs_from_memoryview) {
        PyObject *r = PyObject_CallMethod(src, "release", NULL);
        if (r == NULL) {
            fail_with_exception(c, "memoryview(obj).release()");
            ok = 0;
        }
        Py_XDECREF(r);
    }
    Py_DECREF(src);
    if (!ok) {
        return -1;
    }
    l->c = layout_is_contiguous(l, 'C');
    l->f = layout_is_contiguous(l, 'F');
    l->any = l->c || l->f;
    return 0;
}

/* What docs/semantics.md says a request gets. */
typedef enum { MSG_UNCHECKED, MSG_EXACT, MSG_PREFIX } MessageCheck;

typedef struct {
    int served;
    int exporter_sees_it; /* 0 when the interpreter refuses before calling the exporter */
    PyObject *exc_type;   /* borrowed; when refused */
    const char *rule;   /* which rule refuses it */
    char message[320];
    MessageCheck message_check;
} Outcome;

static void refuse(Outcome *out, PyObject *type, const char *rule, MessageCheck mc,
                   const char *fmt, ...) PRINTF_LIKE(5, 6);

static void
refuse(Outcome *out, PyObject *type, const char *rule, MessageCheck mc, const char *fmt, ...)
{
    out->served = 0;
    out->exc_type = type;
    out->rule = rule;
    out->message_check = mc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->message, sizeof out->message, fmt, ap);
    va_end(ap);
}

/* 'B' with an optional byte-order prefix: the formats served for FORMAT without ND. */
static int
is_unsigned_byte_format(const char *f)
{
    if (*f != '\0' && strchr("@=<>!", *f) != NULL) {
        f++;
    }
    return strcmp(f, "B") == 0;
}

/* Rule 1: whether flags are malformed; why (as the documented messages word it) into why. */
static int
flags_are_malformed(int flags, char *why, size_t n)
{
    unsigned f = (unsigned)flags;
    unsigned unknown = f & ~0x1fdu;
    if (unknown != 0) {
        snprintf(why, n, "unknown bits 0x%x", unknown);
        return 1;
    }
    if ((f & 0x10u) != 0 && (f & (unsigned)PyBUF_ND) == 0) {
        snprintf(why, n, "0x10 needs PyBUF_ND");
        return 1;
    }
    unsigned shape_bits = f & 0x1e0u;
    if (shape_bits != 0 && !REQ(flags, PyBUF_STRIDES)) {
        snprintf(why, n, "0x%x needs PyBUF_STRIDES", shape_bits);
        return 1;
    }
    return 0;
}

/* The oracle: the outcome of `flags` on an exporter of layout l under policy p, through
 * PyObject_GetBuffer (via_slot == 0) or the bf_getbuffer slot itself. Rules in the order of
 * docs/semantics.md; T is type(obj).__name__. */
static void
predict(const Policy *p, const Layout *l, int flags, int via_slot, Outcome *out)
{
    const char *t = l->type_name;
    memset(out, 0, sizeof *out);
    out->served = 1;
    out->exporter_sees_it = 1;
    out->rule = "served";

    if (!via_slot && interpreter_refuses_read_write &&
        (flags == PyBUF_READ || flags == PyBUF_WRITE)) {
        refuse(out, PyExc_SystemError, "PyObject_GetBuffer's own PyBUF_READ/WRITE check",
               MSG_UNCHECKED, "bad argument to internal function");
        out->exporter_sees_it = 0; /* so nothing writes view->obj */
        return;
    }
    char why[96];
    if (p->rejects_malformed && flags_are_malformed(flags, why, sizeof why)) {
        /* docs/semantics.md words two of these messages; the others are checked up to ':'. */
        if (flags == PyBUF_WRITE || flags == PyBUF_READ) {
            refuse(out, PyExc_BufferError, "rule 1 (malformed)", MSG_EXACT,
                   "invalid buffer request flags 0x%x: %s", (unsigned)flags, why);
        }
        else if (flags > 0) {
            refuse(out, PyExc_BufferError, "rule 1 (malformed)", MSG_PREFIX,
                   "invalid buffer request flags 0x%x: ", (unsigned)flags);
        }
        else {
            refuse(out, PyExc_BufferError, "rule 1 (malformed)", MSG_PREFIX,
                   "invalid buffer request flags ");
        }
        return;
    }
    if (REQ(flags, PyBUF_WRITABLE) && l->readonly) {
        refuse(out, PyExc_BufferError, "rule 2 (read-only)", MSG_EXACT, "%s is not writable", t);
        return;
    }
    if (REQ(flags, PyBUF_C_CONTIGUOUS) && !l->c) {
        refuse(out, PyExc_BufferError, "rule 3 (C_CONTIGUOUS)", MSG_EXACT,
               "%s is not C-contiguous", t);
        return;
    }
    if (REQ(flags, PyBUF_F_CONTIGUOUS) && !l->f) {
        refuse(out, PyExc_BufferError, "rule 3 (F_CONTIGUOUS)", MSG_EXACT,
               "%s is not Fortran contiguous", t);
        return;
    }
    if (REQ(flags, PyBUF_ANY_CONTIGUOUS) && !l->any) {
        refuse(out, PyExc_BufferError, "rule 3 (ANY_CONTIGUOUS)", MSG_EXACT,
               "%s is not contiguous", t);
        return;
    }
    if (!REQ(flags, PyBUF_STRIDES) && !l->c) {
        refuse(out, PyExc_BufferError, "rule 4 (no strides, not C-contiguous)", MSG_EXACT,
               "%s is not C-contiguous and the request has no strides", t);
        return;
    }
    if (REQ(flags, PyBUF_FORMAT) && !REQ(flags, PyBUF_ND)) {
        int refused = p->format_without_shape == FORMAT_NEVER ||
                      (p->format_without_shape == FORMAT_ONLY_FOR_BYTES &&
                       !is_unsigned_byte_format(l->format));
        if (refused) {
            refuse(out, PyExc_BufferError, "rule 5 (FORMAT without ND)", MSG_EXACT,
                   "%s has format '%s': a request for the format without the shape cannot be "
                   "served",
                   t, l->format);
            return;
        }
    }
}

/* predict() with the message check dropped for exporters whose wording is their own. */
static void
predict_for(const Policy *p, const Layout *l, int flags, int via_slot, Outcome *out)
{
    predict(p, l, flags, via_slot, out);
    if (!out->served && !p->exact_messages && out->message_check != MSG_UNCHECKED) {
        out->message_check = MSG_UNCHECKED;
    }
}

/* The format a served request carries (NULL when none is due). */
static const char *
expected_format(const Policy *p, const Layout *l, int flags)
{
    if (!REQ(flags, PyBUF_FORMAT)) {
        return NULL;
    }
    /* Rule 5: a request served without PyBUF_ND carries the object's own format string too
     * (docs/semantics.md: "'<B' stays '<B'"). */
    (void)p;
    return l->format;
}

/* ------------------------------------------------------------------------------------------ */
/* Checking one request                                                                       */

static void *
poison_pointer(void)
{
    void *p;
    memset(&p, POISON_BYTE, sizeof p);
    return p;
}

static int
read_exports(PyObject *o, Py_ssize_t *out, Check *c)
{
    return get_ssize_attr(o, "exports", out, c);
}

/* Compares a shape or strides array of a served view. */
static void
check_dims_field(Check *c, const char *field, const Py_ssize_t *got, int got_n,
                 const Py_ssize_t *want, int want_n, const char *why_null)
{
    char ws[512], gs[512];
    if ((const void *)got == poison_pointer()) {
        check_fail(c, "%s: never written (still the poison pattern)", field);
        return;
    }
    if (want == NULL) {
        if (got != NULL) {
            check_fail(c, "%s: expected NULL (%s), got %p", field, why_null, (const void *)got);
        }
        return;
    }
    format_dims(ws, sizeof ws, want, want_n);
    if (got == NULL) {
        check_fail(c, "%s: expected %s, got NULL", field, ws);
        return;
    }
    int n = got_n < 0 ? 0 : got_n > MAX_NDIM ? MAX_NDIM : got_n;
    int same = n == want_n;
    for (int i = 0; same && i < n; i++) {
        same = got[i] == want[i];
    }
    if (!same) {
        format_dims(gs, sizeof gs, got, n);
        check_fail(c, "%s: expected %s, got %s", field, ws, gs);
    }
}

/* Every field of a served view against the oracle. */
static void
check_served_fields(Check *c, const Subject *s, int flags, const Py_buffer *v)
{
    const Layout *l = &s->layout;
    int nd = REQ(flags, PyBUF_ND);
    int strided = REQ(flags, PyBUF_STRIDES);

    if (v->buf != s->full_buf) {
        check_fail(c, "buf: expected %p (the buf of a PyBUF_FULL_RO view), got %p", s->full_buf,
                   v->buf);
    }
    if (v->len != l->nbytes) {
        check_fail(c, "len: expected %zd (nbytes), got %zd", l->nbytes, v->len);
    }
    if (v->itemsize != l->itemsize) {
        check_fail(c, "itemsize: expected %zd, got %zd", l->itemsize, v->itemsize);
    }
    if (v->readonly != l->readonly) {
        check_fail(c, "readonly: expected %d, got %d", l->readonly, v->readonly);
    }
    int want_ndim = nd ? l->ndim : 1;
    if (v->ndim != want_ndim) {
        check_fail(c, "ndim: expected %d%s, got %d", want_ndim,
                   nd ? "" : " (no PyBUF_ND: one dimension of bytes)", v->ndim);
    }

    const char *want_fmt = expected_format(s->policy, l, flags);
    if ((void *)v->format == poison_pointer()) {
        check_fail(c, "format: never written (still the poison pattern)");
    }
    else if (want_fmt == NULL) {
        if (v->format != NULL) {
            check_fail(c, "format: expected NULL (no PyBUF_FORMAT), got %p", (void *)v->format);
        }
    }
    else if (v->format == NULL) {
        check_fail(c, "format: expected '%s', got NULL", want_fmt);
    }
    else {
        size_t len = strnlen(v->format, 256);
        if (len == 256 || strcmp(v->format, want_fmt) != 0) {
            check_fail(c, "format: expected '%s', got '%.*s'%s", want_fmt, (int)len, v->format,
                       len == 256 ? "... (not terminated within 256 bytes)" : "");
        }
    }

    check_dims_field(c, "shape", v->shape, v->ndim, nd && l->ndim > 0 ? l->shape : NULL,
                     l->ndim, nd ? "ndim 0: the C API requires NULL" : "no PyBUF_ND");
    check_dims_field(c, "strides", v->strides, v->ndim,
                     strided && l->ndim > 0 ? l->strides : NULL, l->ndim,
                     strided ? "ndim 0: the C API requires NULL" : "no PyBUF_STRIDES");
    if (v->suboffsets != NULL) {
        check_fail(c, "suboffsets: expected NULL, got %p", (void *)v->suboffsets);
    }
    if (s->policy->internal_is_null && v->internal != NULL) {
        check_fail(c, "internal: expected NULL, got %p", v->internal);
    }
}

/* The exception of a refusal against the oracle's. */
static void
check_refusal_exception(Check *c, const Outcome *want, PyObject *exc)
{
    if (exc == NULL) {
        check_fail(c, "returned -1 without setting an exception (expected %s, %s)",
                   ((PyTypeObject *)want->exc_type)->tp_name, want->rule);
        return;
    }
    char desc[600];
    describe_exception(exc, desc, sizeof desc);
    if (!PyErr_GivenExceptionMatches(exc, want->exc_type)) {
        check_fail(c, "expected %s (%s), got %s", ((PyTypeObject *)want->exc_type)->tp_name,
                   want->rule, desc);
        return;
    }
    if (want->message_check == MSG_UNCHECKED) {
        return;
    }
    char msg[512];
    str_of(exc, msg, sizeof msg);
    int ok = want->message_check == MSG_EXACT
                 ? strcmp(msg, want->message) == 0
                 : strncmp(msg, want->message, strlen(want->message)) == 0;
    if (!ok) {
        check_fail(c, "message: expected %s'%s', got '%s'",
                   want->message_check == MSG_PREFIX ? "a message starting with " : "",
                   want->message, msg);
    }
}

/* For a subject with a root (a View): the root's reference count and exports are as before. */
static void
check_root_unchanged(Check *c, const Subject *s, Py_ssize_t refs, Py_ssize_t exports,
                     const char *when)
{
    if (s->root == NULL) {
        return;
    }
    if (Py_REFCNT(s->root) != refs) {
        check_fail(c, "refcount of the View's base is %zd %s, expected %zd (a request on a View "
                   "must not touch its base)", Py_REFCNT(s->root), when, refs);
    }
    Py_ssize_t now;
    if (s->root_has_exports && read_exports(s->root, &now, c) == 0 && now != exports) {
        check_fail(c, "exports of the View's base is %zd %s, expected %zd (a View holds one "
                   "export of its base for its whole life)", now, when, exports);
    }
}

/* Sends one request to s->obj and checks the outcome, the fields, the reference count and
 * obj.exports against the oracle; releases what was served. One check in the tally. */
static void
check_request(const Subject *s, int flags, const char *flags_name, int via_slot)
{
    PyObject *o = s->obj;
    const Policy *p = s->policy;
    Outcome want;
    Check c;
    predict_for(p, &s->layout, flags, via_slot, &want);
    check_begin(&c, "%s flags=%s (0x%x)%s", s->label, flags_name, (unsigned)flags,
                via_slot ? " [bf_getbuffer called directly]" : "");

    Py_ssize_t exports_before = 0;
    if (p->has_exports_attr) {
        if (read_exports(o, &exports_before, &c) < 0) {
            check_end(&c);
            return;
        }
        if (exports_before != 0) {
            check_fail(&c, "exports is %zd before the request, expected 0", exports_before);
        }
    }
    getbufferproc slot = NULL;
    if (via_slot) {
        PyBufferProcs *pb = Py_TYPE(o)->tp_as_buffer;
        slot = pb != NULL ? pb->bf_getbuffer : NULL;
        if (slot == NULL) {
            check_fail(&c, "the type has no bf_getbuffer slot");
            check_end(&c);
            return;
        }
    }

    /* A View re-exports the one export of its root that it holds: no request on it may take
     * or give back a reference to, or an export of, the root. */
    Py_ssize_t root_refs_before = s->root != NULL ? Py_REFCNT(s->root) : 0;
    Py_ssize_t root_exports_before = 0;
    if (s->root_has_exports && read_exports(s->root, &root_exports_before, &c) < 0) {
        check_end(&c);
        return;
    }

    Py_ssize_t refs_before = Py_REFCNT(o);
    Py_buffer view;
    memset(&view, POISON_BYTE, sizeof view);
    int rc = via_slot ? slot(o, &view, flags) : PyObject_GetBuffer(o, &view, flags);
    PyObject *exc = take_exception();

    if (!want.served) {
        if (rc != -1) {
            check_fail(&c, "returned %d, expected -1: refused by %s with %s '%s'", rc, want.rule,
                       ((PyTypeObject *)want.exc_type)->tp_name, want.message);
        }
        if (rc == -1 || exc != NULL) {
            check_refusal_exception(&c, &want, exc);
        }
        if (view.obj != NULL && want.exporter_sees_it && p->nulls_obj_on_refusal) {
            check_fail(&c, "view.obj is %p after the refusal, expected NULL", (void *)view.obj);
        }
        if (rc == 0 && view.obj == o) {
            PyBuffer_Release(&view); /* served against the rules: give it back */
        }
        else if (rc == 0) {
            check_fail(&c, "served with view.obj %p instead of the exporter; view not released",
                       (void *)view.obj);
        }
    }
    else if (rc != 0) {
        char desc[600];
        describe_exception(exc, desc, sizeof desc);
        check_fail(&c, "refused (returned %d, %s), expected it served", rc, desc);
        if (view.obj != NULL) {
            check_fail(&c, "view.obj is %p after the refusal, expected NULL", (void *)view.obj);
        }
    }
    else {
        if (exc != NULL) {
            char desc[600];
            describe_exception(exc, desc, sizeof desc);
            check_fail(&c, "returned 0 but left an exception set: %s", desc);
        }
        if (view.obj != o) {
            check_fail(&c, "view.obj: expected the exporter %p, got %p; view not released",
                       (void *)o, (void *)view.obj);
        }
        else {
            Py_ssize_t refs_during = Py_REFCNT(o);
            if (refs_during != refs_before + 1) {
                check_fail(&c, "refcount of the exporter is %zd while exported, expected %zd "
                           "(baseline + 1)", refs_during, refs_before + 1);
            }
            Py_ssize_t exports_during;
            if (p->has_exports_attr && read_exports(o, &exports_during, &c) == 0 &&
                exports_during != exports_before + 1) {
                check_fail(&c, "exports is %zd while exported, expected %zd", exports_during,
                           exports_before + 1);
            }
            check_served_fields(&c, s, flags, &view);
            check_root_unchanged(&c, s, root_refs_before, root_exports_before, "while exported");
            PyBuffer_Release(&view);
            if (view.obj != NULL) {
                check_fail(&c, "view.obj is %p after PyBuffer_Release, expected NULL",
                           (void *)view.obj);
            }
        }
    }
    Py_XDECREF(exc);

    Py_ssize_t refs_after = Py_REFCNT(o);
    if (refs_after != refs_before) {
        check_fail(&c, "refcount of the exporter is %zd afterwards, expected %zd (baseline)",
                   refs_after, refs_before);
    }
    Py_ssize_t exports_after;
    if (p->has_exports_attr && read_exports(o, &exports_after, &c) == 0 &&
        exports_after != exports_before) {
        check_fail(&c, "exports is %zd afterwards, expected %zd (baseline)", exports_after,
                   exports_before);
    }
    check_root_unchanged(&c, s, root_refs_before, root_exports_before, "afterwards");
    check_end(&c);
}

/* All 15 x 4 standard requests on one subject. */
static void
check_standard_requests(const Subject *s)
{
    for (int i = 0; i < N_STANDARD_REQUESTS; i++) {
        for (int j = 0; j < N_MODIFIERS; j++) {
            char name[96];
            snprintf(name, sizeof name, "%s%s", STANDARD_REQUESTS[i].name, MODIFIERS[j].name);
            check_request(s, STANDARD_REQUESTS[i].flags | MODIFIERS[j].flags, name, 0);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Subjects                                                                                   */

/* How a Buffer was constructed: an oracle for its attributes that does not read them. */
typedef struct {
    int ndim;
    Py_ssize_t shape[MAX_NDIM];
    const char *format;
    char order;
    int readonly;
    Py_ssize_t itemsize; /* struct.calcsize(format) */
} Facts;

/* Strides of a contiguous array of the given order. */
static void
standard_strides(const Facts *f, Py_ssize_t *out)
{
    Py_ssize_t step = f->itemsize;
    for (int k = 0; k < f->ndim; k++) {
        int i = f->order == 'F' ? k : f->ndim - 1 - k;
        out[i] = step;
        step *= f->shape[i];
    }
}

/* Checks the attributes of s against each other and, for a Buffer, against facts. */
static void
check_attributes(Check *c, const Subject *s, const Facts *facts)
{
    const Layout *l = &s->layout;
    char a[512], b[512];
    if (l->attr_c != l->c || l->attr_f != l->f || l->attr_any != l->any) {
        format_dims(a, sizeof a, l->shape, l->ndim);
        format_dims(b, sizeof b, l->strides, l->ndim);
        check_fail(c, "contiguity attributes (c, f, any) = (%d, %d, %d), but shape %s, strides %s "
                   "and itemsize %zd give (%d, %d, %d)", l->attr_c, l->attr_f, l->attr_any, a, b,
                   l->itemsize, l->c, l->f, l->any);
    }
    Py_ssize_t items = 1;
    for (int i = 0; i < l->ndim; i++) {
        items *= l->shape[i];
    }
    if (l->nbytes != items * l->itemsize) {
        check_fail(c, "nbytes is %zd, expected product(shape) * itemsize = %zd", l->nbytes,
                   items * l->itemsize);
    }
    if (facts == NULL) {
        return;
    }
    PyObject *o = s->obj;
    Py_ssize_t ndim, exports;
    char order[8];
    if (get_ssize_attr(o, "ndim", &ndim, c) == 0 && ndim != facts->ndim) {
        check_fail(c, "ndim is %zd, expected %d", ndim, facts->ndim);
    }
    int same = l->ndim == facts->ndim;
    for (int i = 0; same && i < l->ndim; i++) {
        same = l->shape[i] == facts->shape[i];
    }
    if (!same) {
        format_dims(a, sizeof a, facts->shape, facts->ndim);
        format_dims(b, sizeof b, l->shape, l->ndim);
        check_fail(c, "shape is %s, expected %s", b, a);
    }
    if (strcmp(l->format, facts->format) != 0) {
        check_fail(c, "format is '%s', expected '%s'", l->format, facts->format);
    }
    if (l->itemsize != facts->itemsize) {
        check_fail(c, "itemsize is %zd, expected struct.calcsize('%s') = %zd", l->itemsize,
                   facts->format, facts->itemsize);
    }
    if (l->readonly != facts->readonly) {
        check_fail(c, "readonly is %d, expected %d", l->readonly, facts->readonly);
    }
    int empty = 0;
    for (int i = 0; i < facts->ndim; i++) {
        empty |= facts->shape[i] == 0;
    }
    /* The strides of an empty array address nothing, and conventions differ (memoryview gives
     * (0, 4) for (3, 0) 'i', NumPy 1 (4, 4), NumPy 2 (0, 0)); docs/semantics.md fixes none, so
     * only non-empty layouts are held to the standard strides of their order. */
    if (same && !empty && l->itemsize == facts->itemsize) {
        Py_ssize_t want[MAX_NDIM];
        standard_strides(facts, want);
        int eq = 1;
        for (int i = 0; eq && i < l->ndim; i++) {
            eq = l->strides[i] == want[i];
        }
        if (!eq) {
            format_dims(a, sizeof a, want, l->ndim);
            format_dims(b, sizeof b, l->strides, l->ndim);
            check_fail(c, "strides are %s, expected %s for order '%c'", b, a, facts->order);
        }
    }
    if (get_str_attr(o, "order", order, sizeof order, c) == 0 &&
        (order[0] != facts->order || order[1] != '\0')) {
        check_fail(c, "order is '%s', expected '%c'", order, facts->order);
    }
    PyObject *sub = PyObject_GetAttrString(o, "suboffsets");
    if (sub == NULL) {
        fail_with_exception(c, "getattr(obj, 'suboffsets')");
    }
    else if (!PyTuple_Check(sub) || PyTuple_GET_SIZE(sub) != 0) {
        repr_of(sub, a, sizeof a);
        check_fail(c, "suboffsets is %s, expected ()", a);
    }
    Py_XDECREF(sub);
    if (read_exports(o, &exports, c) == 0 && exports != 0) {
        check_fail(c, "exports is %zd on a fresh object, expected 0", exports);
    }
    int closed = get_bool_attr(o, "closed", c);
    if (closed > 0) {
        check_fail(c, "closed is True on a fresh object");
    }
}

/* Reads the layout of obj and the buf of its PyBUF_FULL_RO view, and checks its attributes:
 * one check in the tally. Returns -1 when the object cannot be tested further. */
static int
subject_init(Subject *s, PyObject *obj, const char *label, const Policy *p, const Facts *facts)
{
    Check c;
    check_begin(&c, "%s attributes and PyBUF_FULL_RO reference view", label);
    s->obj = obj;
    s->label = label;
    s->policy = p;
    s->full_buf = NULL;
    s->root = NULL;
    s->root_has_exports = 0;
    if (read_layout(obj, p, &s->layout, &c) < 0) {
        check_end(&c);
        return -1;
    }
    check_attributes(&c, s, facts);
    Py_buffer view;
    memset(&view, POISON_BYTE, sizeof view);
    if (PyObject_GetBuffer(obj, &view, PyBUF_FULL_RO) < 0) {
        fail_with_exception(&c, "PyObject_GetBuffer(obj, PyBUF_FULL_RO)");
        check_end(&c);
        return -1;
    }
    if (view.obj != obj) {
        check_fail(&c, "PyBUF_FULL_RO view.obj is %p, expected %p; not released",
                   (void *)view.obj, (void *)obj);
        check_end(&c);
        return -1;
    }
    s->full_buf = view.buf;
    PyBuffer_Release(&view);
    return check_end(&c) ? 0 : -1;
}

static const Policy *
policy_named(const char *name)
{
    if (strcmp(name, "bufferkit") == 0) {
        return &BUFFERKIT_POLICY;
    }
    if (strcmp(name, "fillinfo") == 0) {
        return &FILLINFO_POLICY;
    }
    if (strcmp(name, "testbuffer") == 0) {
        return &TESTBUFFER_POLICY;
    }
    return NULL;
}

/* Parses one BUFFER_CASES entry: (label, obj, error, shape, format, order, readonly, itemsize).
 * The strings stay valid while the entry lives. */
static int
parse_buffer_case(PyObject *item, const char **label, PyObject **obj, PyObject **err,
                  Facts *f, Check *c)
{
    PyObject *dims;
    const char *order;
    int readonly;
    if (!PyArg_ParseTuple(item, "sOOO!sspn", label, obj, err, &PyTuple_Type, &dims, &f->format,
                          &order, &readonly, &f->itemsize)) {
        fail_with_exception(c, "parsing a BUFFER_CASES entry");
        return -1;
    }
    f->order = order[0];
    f->readonly = readonly;
    f->ndim = (int)PyTuple_GET_SIZE(dims);
    assert(f->ndim <= MAX_NDIM);
    for (int i = 0; i < f->ndim; i++) {
        f->shape[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(dims, i));
        if (f->shape[i] == -1 && PyErr_Occurred()) {
            fail_with_exception(c, "parsing a BUFFER_CASES shape");
            return -1;
        }
    }
    return 0;
}

/* Python that defines Buffer, SubBuffer and buffer_cases(specs). Each case is
 * (label, obj or None, construction error or None, shape tuple, format, order, readonly,
 * struct.calcsize(format)). */
static const char BUFFER_SETUP_PY[] =
    "import struct\n"
    "import bufferkit\n"
    "Buffer = bufferkit.Buffer\n"
    "class SubBuffer(Buffer):\n"
    "    pass\n"
    "def buffer_cases(specs):\n"
    "    cases = []\n"
    "    for cls, shape, fmt, order in specs:\n"
    "        for readonly in (False, True):\n"
    "            label = '%s(%r, %r, order=%r, readonly=%r)' % (\n"
    "                cls.__name__, shape, fmt, order, readonly)\n"
    "            dims = (shape,) if isinstance(shape, int) else tuple(shape)\n"
    "            try:\n"
    "                obj, err = cls(shape, fmt, order=order, readonly=readonly), None\n"
    "            except Exception as e:\n"
    "                obj, err = None, '%s: %s' % (type(e).__name__, e)\n"
    "            cases.append((label, obj, err, dims, fmt, order, readonly,\n"
    "                          struct.calcsize(fmt)))\n"
    "    return cases\n";

/* Sets up ns with BUFFER_SETUP_PY and then `code`, which must define BUFFER_CASES. Returns the
 * borrowed list, or NULL with the failure counted. */
static PyObject *
setup_buffer_cases(PyObject *ns, const char *code)
{
    Check c;
    check_begin(&c, "setup: import bufferkit and build the Buffer cases");
    if (run_code(ns, BUFFER_SETUP_PY, &c, "import bufferkit") < 0 ||
        run_code(ns, code, &c, "building the cases") < 0) {
        check_end(&c);
        return NULL;
    }
    PyObject *cases = ns_get(ns, "BUFFER_CASES", &c);
    if (cases != NULL && !PyList_Check(cases)) {
        check_fail(&c, "BUFFER_CASES is not a list");
        cases = NULL;
    }
    check_end(&c);
    return cases;
}

/* Runs `each` on every constructed Buffer of cases; construction errors are failures. */
static void
for_each_buffer_case(PyObject *cases, void (*each)(const Subject *s))
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(cases); i++) {
        Check c;
        check_begin(&c, "BUFFER_CASES[%zd]", i);
        const char *label;
        PyObject *obj, *err;
        Facts facts;
        if (parse_buffer_case(PyList_GET_ITEM(cases, i), &label, &obj, &err, &facts, &c) < 0) {
            check_end(&c);
            continue;
        }
        if (obj == Py_None) {
            char e[512];
            str_of(err, e, sizeof e);
            check_begin(&c, "%s", label);
            check_fail(&c, "construction raised %s", e);
            check_end(&c);
            continue;
        }
        Subject s;
        if (subject_init(&s, obj, label, &BUFFERKIT_POLICY, &facts) < 0) {
            continue;
        }
        each(&s);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Test: buffer_request_matrix                                                                */

static const char MATRIX_CASES_PY[] =
    "specs = [(Buffer, 4096, 'B', 'C')]\n"
    "for fmt in ('b', 'h', '<i', 'd', '?', 'e', '2h', 'hi', '<B', '=B'):\n"
    "    specs.append((Buffer, (7,), fmt, 'C'))\n"
    "for fmt in ('i', 'd'):\n"
    "    for order in ('C', 'F'):\n"
    "        specs.append((Buffer, (3, 4), fmt, order))\n"
    "        specs.append((Buffer, (2, 3, 4), fmt, order))\n"
    "specs += [\n"
    "    (Buffer, (), 'd', 'C'),\n"
    "    (Buffer, (0,), 'B', 'C'),\n"
    "    (Buffer, (3, 0), 'i', 'C'),\n"
    "    (Buffer, (3, 0), 'i', 'F'),\n"
    "    (Buffer, (1, 5), 'h', 'F'),\n"
    "    (SubBuffer, (3, 4), 'i', 'F'),\n"
    "    (SubBuffer, (5,), '<i', 'C'),\n"
    "]\n"
    "BUFFER_CASES = buffer_cases(specs)\n";

/* Runs `each` on every case `code` defines (see setup_buffer_cases). */
static void
run_buffer_cases(const char *code, void (*each)(const Subject *s))
{
    PyObject *ns = setup_namespace();
    if (ns == NULL) {
        return;
    }
    PyObject *cases = setup_buffer_cases(ns, code);
    if (cases != NULL) {
        for_each_buffer_case(cases, each);
    }
    Py_DECREF(ns);
}

static void
test_buffer_request_matrix(void)
{
    run_buffer_cases(MATRIX_CASES_PY, check_standard_requests);
}

/* ------------------------------------------------------------------------------------------ */
/* Test: buffer_invalid_flags                                                                 */

static void
check_invalid_then_standard(const Subject *s)
{
    for (int i = 0; i < N_INVALID_REQUESTS; i++) {
        check_request(s, INVALID_REQUESTS[i].flags, INVALID_REQUESTS[i].name, 0);
        check_request(s, INVALID_REQUESTS[i].flags, INVALID_REQUESTS[i].name, 1);
    }
    /* the object must serve normally after all those refusals */
    check_standard_requests(s);
}

static const char INVALID_CASES_PY[] =
    "BUFFER_CASES = buffer_cases([\n"
    "    (Buffer, 16, 'B', 'C'),\n"
    "    (Buffer, (3, 4), 'i', 'F'),\n"
    "    (Buffer, (), 'd', 'C'),\n"
    "    (SubBuffer, (2, 2), 'h', 'C'),\n"
    "])\n";

static void
test_buffer_invalid_flags(void)
{
    run_buffer_cases(INVALID_CASES_PY, check_invalid_then_standard);
}

/* ------------------------------------------------------------------------------------------ */
/* Test: buffer_lock                                                                          */

/* Expects `result` (a call's return) to be NULL with exc_type whose message equals `message`
 * (or starts with it, when prefix). Consumes result and the exception. */
static void
expect_raised(Check *c, PyObject *result, PyObject *exc_type, const char *message, int prefix)
{
    if (result != NULL) {
        char r[256];
        repr_of(result, r, sizeof r);
        check_fail(c, "returned %s, expected %s '%s%s'", r, ((PyTypeObject *)exc_type)->tp_name,
                   message, prefix ? "...'" : "");
        Py_DECREF(result);
        return;
    }
    PyObject *exc = take_exception();
    char desc[600];
    describe_exception(exc, desc, sizeof desc);
    if (exc == NULL || !PyErr_GivenExceptionMatches(exc, exc_type)) {
        check_fail(c, "expected %s '%s', got %s", ((PyTypeObject *)exc_type)->tp_name, message,
                   desc);
    }
    else {
        char msg[512];
        str_of(exc, msg, sizeof msg);
        int ok = prefix ? strncmp(msg, message, strlen(message)) == 0 : strcmp(msg, message) == 0;
        if (!ok) {
            check_fail(c, "message: expected %s'%s', got '%s'",
                       prefix ? "a message starting with " : "", message, msg);
        }
    }
    Py_XDECREF(exc);
}

/* Expects `result` to be None (a method that succeeds). Consumes it. */
static void
expect_none(Check *c, PyObject *result, const char *what)
{
    if (result == NULL) {
        fail_with_exception(c, what);
        return;
    }
    if (result != Py_None) {
        char r[256];
        repr_of(result, r, sizeof r);
        check_fail(c, "%s returned %s, expected None", what, r);
    }
    Py_DECREF(result);
}

static void
expect_exports(Check *c, PyObject *o, Py_ssize_t want)
{
    Py_ssize_t got;
    if (read_exports(o, &got, c) == 0 && got != want) {
        check_fail(c, "exports is %zd, expected %zd", got, want);
    }
}

static void
expect_bool_attr(Check *c, PyObject *o, const char *name, int want)
{
    int got = get_bool_attr(o, name, c);
    if (got >= 0 && got != want) {
        check_fail(c, "%s is %s, expected %s", name, got ? "True" : "False",
                   want ? "True" : "False");
    }
}

/* Takes a view that must be served; returns 0 when it was (view.obj == o). */
static int
take_view(Check *c, PyObject *o, Py_buffer *v, int flags, const char *flags_name)
{
    memset(v, POISON_BYTE, sizeof *v);
    if (PyObject_GetBuffer(o, v, flags) < 0) {
        char what[128];
        snprintf(what, sizeof what, "PyObject_GetBuffer(obj, %s)", flags_name);
        fail_with_exception(c, what);
        return -1;
    }
    if (v->obj != o) {
        check_fail(c, "%s: view.obj is %p, expected %p; not released", flags_name,
                   (void *)v->obj, (void *)o);
        return -1;
    }
    return 0;
}

/* Expects a refusal of exc_type with message (exact); view.obj must be NULL afterwards. */
static void
expect_refused(Check *c, PyObject *o, int flags, const char *flags_name, PyObject *exc_type,
               const char *message)
{
    Py_ssize_t refs = Py_REFCNT(o);
    Py_buffer v;
    memset(&v, POISON_BYTE, sizeof v);
    int rc = PyObject_GetBuffer(o, &v, flags);
    if (rc == 0) {
        check_fail(c, "%s was served, expected %s '%s'", flags_name,
                   ((PyTypeObject *)exc_type)->tp_name, message);
        if (v.obj == o) {
            PyBuffer_Release(&v);
        }
        return;
    }
    if (rc != -1) {
        check_fail(c, "%s: returned %d, expected -1", flags_name, rc);
    }
    expect_raised(c, NULL, exc_type, message, 0);
    if (v.obj != NULL) {
        check_fail(c, "%s: view.obj is %p after the refusal, expected NULL", flags_name,
                   (void *)v.obj);
    }
    if (Py_REFCNT(o) != refs) {
        check_fail(c, "%s: refcount went from %zd to %zd over a refusal", flags_name, refs,
                   Py_REFCNT(o));
    }
}

#define N_LOCK_VIEWS 6

static void
test_buffer_lock(void)
{
    static const NamedFlags view_flags[N_LOCK_VIEWS] = {
        {"PyBUF_FULL_RO", PyBUF_FULL_RO}, {"PyBUF_CONTIG", PyBUF_CONTIG},
        {"PyBUF_SIMPLE", PyBUF_SIMPLE},   {"PyBUF_RECORDS", PyBUF_RECORDS},
        {"PyBUF_ND", PyBUF_ND},           {"PyBUF_WRITABLE", PyBUF_WRITABLE},
    };
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
    Py_ssize_t refs0 = Py_REFCNT(b);

    /* Several simultaneous views: exports counts each. */
    Py_buffer views[N_LOCK_VIEWS];
    int held[N_LOCK_VIEWS] = {0};
    check_begin(&c, "Buffer((4, 4), 'i'): %d simultaneous views", N_LOCK_VIEWS);
    for (int i = 0; i < N_LOCK_VIEWS; i++) {
        held[i] = take_view(&c, b, &views[i], view_flags[i].flags, view_flags[i].name) == 0;
        Py_ssize_t n_held = 0;
        for (int k = 0; k <= i; k++) {
            n_held += held[k];
        }
        expect_exports(&c, b, n_held);
        if (Py_REFCNT(b) != refs0 + n_held) {
            check_fail(&c, "refcount is %zd with %zd views, expected %zd", Py_REFCNT(b), n_held,
                       refs0 + n_held);
        }
    }
    check_end(&c);

    Py_ssize_t n_held = 0;
    for (int i = 0; i < N_LOCK_VIEWS; i++) {
        n_held += held[i];
    }
    char message[128];
    check_begin(&c, "Buffer with %zd views: close() and freeze() refused", n_held);
    snprintf(message, sizeof message, "cannot close: %zd exported buffers", n_held);
    expect_raised(&c, PyObject_CallMethod(b, "close", NULL), PyExc_BufferError, message, 1);
    snprintf(message, sizeof message, "cannot freeze: %zd exported buffers", n_held);
    expect_raised(&c, PyObject_CallMethod(b, "freeze", NULL), PyExc_BufferError, message, 1);
    expect_bool_attr(&c, b, "closed", 0);
    expect_bool_attr(&c, b, "readonly", 0);
    expect_exports(&c, b, n_held);
    check_end(&c);

    /* A Python-level memoryview is one more export. */
    check_begin(&c, "Buffer with %zd views and a memoryview", n_held);
    if (run_code(ns, "m = memoryview(b)\n", &c, "memoryview(b)") == 0) {
        expect_exports(&c, b, n_held + 1);
        snprintf(message, sizeof message, "cannot freeze: %zd exported buffers", n_held + 1);
        expect_raised(&c, PyObject_CallMethod(b, "freeze", NULL), PyExc_BufferError, message,
                      1);
        if (run_code(ns, "m.release()\ndel m\n", &c, "m.release()") == 0) {
            expect_exports(&c, b, n_held);
        }
    }
    check_end(&c);

    /* Release out of order, down to two views (the documented message), then one. */
    check_begin(&c, "releasing views out of order");
    for (int i = 1; i < N_LOCK_VIEWS && n_held > 2; i += 2) {
        if (held[i]) {
            PyBuffer_Release(&views[i]);
            held[i] = 0;
            n_held--;
            expect_exports(&c, b, n_held);
        }
    }
    for (int i = 0; i < N_LOCK_VIEWS && n_held > 2; i++) {
        if (held[i]) {
            PyBuffer_Release(&views[i]);
            held[i] = 0;
            n_held--;
            expect_exports(&c, b, n_held);
        }
    }
    if (n_held == 2) {
        expect_raised(&c, PyObject_CallMethod(b, "close", NULL), PyExc_BufferError,
                      "cannot close: 2 exported buffers", 1);
        expect_raised(&c, PyObject_CallMethod(b, "freeze", NULL), PyExc_BufferError,
                      "cannot freeze: 2 exported buffers", 1);
    }
    for (int i = 0; i < N_LOCK_VIEWS && n_held > 1; i++) {
        if (held[i]) {
            PyBuffer_Release(&views[i]);
            held[i] = 0;
            n_held--;
        }
    }
    if (n_held == 1) {
        expect_exports(&c, b, 1);
        expect_raised(&c, PyObject_CallMethod(b, "close", NULL), PyExc_BufferError,
                      "cannot close: 1 exported buffer", 1);
        expect_raised(&c, PyObject_CallMethod(b, "freeze", NULL), PyExc_BufferError,
                      "cannot freeze: 1 exported buffer", 1);
    }
    for (int i = 0; i < N_LOCK_VIEWS; i++) {
        if (held[i]) {
            PyBuffer_Release(&views[i]);
            held[i] = 0;
            n_held--;
        }
    }
    expect_exports(&c, b, 0);
    if (Py_REFCNT(b) != refs0) {
        check_fail(&c, "refcount is %zd after every view was released, expected %zd",
                   Py_REFCNT(b), refs0);
    }
    check_end(&c);

    /* `with` closes at exit, which a live export refuses. */
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

    /* freeze() once nothing is exported; then WRITABLE is refused. */
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

    /* close(): idempotent; afterwards attributes, methods and exports raise ValueError. */
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
    if (Py_REFCNT(b) != refs0) {
        check_fail(&c, "refcount is %zd, expected %zd", Py_REFCNT(b), refs0);
    }
    check_end(&c);

    Py_DECREF(b);
    Py_DECREF(ns);
}

/* ------------------------------------------------------------------------------------------ */
/* Test: reference_exporters                                                                  */

/* Every REF_CASES entry is (label, obj, policy name); label is the expression itself. */
static const char REFERENCE_CASES_PY[] =
    "import array\n"
    "from _testbuffer import ndarray, ND_WRITABLE, ND_FORTRAN\n"
    "items = list(range(24))\n"
    "REF_CASES = []\n"
    "def case(expr, policy):\n"
    "    REF_CASES.append((expr, eval(expr), policy))\n"
    "case(\"bytearray(b'bufferkit reference exporter')\", 'fillinfo')\n"
    "case('bytearray()', 'fillinfo')\n"
    "case('bytes(range(32))', 'fillinfo')\n"
    "case(\"array.array('d', [0.5, 1.5, 2.5])\", 'fillinfo')\n"
    "case(\"array.array('B', range(10))\", 'fillinfo')\n"
    "case(\"array.array('h')\", 'fillinfo')\n"
    "case(\"ndarray(items, shape=[24], format='B', flags=ND_WRITABLE)\", 'testbuffer')\n"
    "case(\"ndarray(items, shape=[24], format='B')\", 'testbuffer')\n"
    "case(\"ndarray(items, shape=[4, 6], format='i', flags=ND_WRITABLE)\", 'testbuffer')\n"
    "case(\"ndarray(items, shape=[4, 6], format='i', flags=ND_WRITABLE|ND_FORTRAN)\", "
    "'testbuffer')\n"
    "case(\"ndarray(items, shape=[2, 3, 4], format='d')\", 'testbuffer')\n"
    "case(\"ndarray(items, shape=[2, 3, 4], format='d', flags=ND_FORTRAN)\", 'testbuffer')\n"
    "case(\"ndarray(items, shape=[12], strides=[8], format='i', flags=ND_WRITABLE)\", "
    "'testbuffer')\n"
    "case(\"ndarray(items, shape=[4, 6], format='i', flags=ND_WRITABLE)[::2, ::-1]\", "
    "'testbuffer')\n"
    "case(\"ndarray(items, shape=[1, 6], format='h', flags=ND_FORTRAN)\", 'testbuffer')\n"
    "case(\"ndarray(1.5, shape=[], format='d', flags=ND_WRITABLE)\", 'testbuffer')\n"
    "case(\"ndarray(items, shape=[24], format='i', flags=ND_WRITABLE)[3:3]\", 'testbuffer')\n"
    "case(\"ndarray(items, shape=[4, 6], format='i')[:, 2:2]\", 'testbuffer')\n"
    "case(\"ndarray([(1, 2)] * 3, shape=[3], format='hi')\", 'testbuffer')\n"
    "case(\"ndarray(items, shape=[24], format='<B')\", 'testbuffer')\n";

static void
test_reference_exporters(void)
{
    Check c;
    check_begin(&c, "setup: build the reference exporters");
    PyObject *ns = new_namespace();
    if (ns == NULL) {
        fail_with_exception(&c, "new_namespace()");
        check_end(&c);
        return;
    }
    if (run_code(ns, REFERENCE_CASES_PY, &c, "building the reference exporters") < 0) {
        check_end(&c);
        Py_DECREF(ns);
        return;
    }
    PyObject *cases = ns_get(ns, "REF_CASES", &c);
    if (cases == NULL || !check_end(&c)) {
        if (cases == NULL) {
            check_end(&c);
        }
        Py_DECREF(ns);
        return;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(cases); i++) {
        const char *label, *policy_name;
        PyObject *obj;
        check_begin(&c, "REF_CASES[%zd]", i);
        if (!PyArg_ParseTuple(PyList_GET_ITEM(cases, i), "sOs", &label, &obj, &policy_name)) {
            fail_with_exception(&c, "parsing a REF_CASES entry");
            check_end(&c);
            continue;
        }
        const Policy *p = policy_named(policy_name);
        assert(p != NULL);
        Subject s;
        if (subject_init(&s, obj, label, p, NULL) < 0) {
            continue;
        }
        check_standard_requests(&s);
        for (int k = 0; k < N_INVALID_REQUESTS; k++) {
            check_request(&s, INVALID_REQUESTS[k].flags, INVALID_REQUESTS[k].name, 0);
        }
    }
    Py_DECREF(ns);
}

/* ------------------------------------------------------------------------------------------ */
/* View subjects                                                                              */

/* Python that defines what the View tests share: Buffer, View, SubView, inspect, the
 * _testbuffer names, and
 *   items_at(mem, fmt, shape, strides, offset)  the items of a strided layout over the bytes
 *                                               mem (a model independent of bufferkit)
 *   mem_of(obj)       the bytes of a contiguous exporter, in memory order
 *   filled(shape, fmt, order='C', readonly=False)  a Buffer whose items are 1, 2, 3, ... in
 *                                               C index order, written through a memoryview
 *   resizable(ba)     whether bytearray ba may change size now (no export holds it)
 *   WBytes            a bytearray subclass, so that a weakref can tell when a root dies
 *   raises(f)         the name of the exception f() raises, or None
 *   view_case(expr, root, shape, strides, fmt, readonly, offset, items)  appends to
 *       VIEW_CASES (label, View or None, construction error or None, root, shape, strides,
 *       format, struct.calcsize(format), readonly, offset, items): what the View built by expr
 *       must be, stated independently of its attributes. offset None: not pinned (an empty
 *       slice, whose element 0 does not exist); the address rule is checked all the same. */
static const char VIEW_SETUP_PY[] =
    "import gc, itertools, struct, weakref\n"
    "import bufferkit\n"
    "from bufferkit import Buffer, View, inspect\n"
    "from _testbuffer import ndarray, ND_WRITABLE, ND_FORTRAN\n"
    "class SubView(View):\n"
    "    pass\n"
    "class WBytes(bytearray):\n"
    "    pass\n"
    "def items_at(mem, fmt, shape, strides, offset):\n"
    "    def rec(dim, pos):\n"
    "        if dim == len(shape):\n"
    "            values = struct.unpack_from(fmt, mem, pos)\n"
    "            return values[0] if len(values) == 1 else values\n"
    "        return [rec(dim + 1, pos + i * strides[dim]) for i in range(shape[dim])]\n"
    "    return rec(0, offset)\n"
    "def mem_of(obj):\n"
    "    with memoryview(obj) as m:\n"
    "        return m.tobytes('A')\n"
    "def filled(shape, fmt, order='C', readonly=False):\n"
    "    b = Buffer(shape, fmt, order=order)\n"
    "    with memoryview(b) as m:\n"
    "        for n, idx in enumerate(itertools.product(*[range(k) for k in shape])):\n"
    "            m[idx] = n + 1\n"
    "    if readonly:\n"
    "        b.freeze()\n"
    "    return b\n"
    "def resizable(ba):\n"
    "    try:\n"
    "        ba.append(0)\n"
    "    except BufferError:\n"
    "        return False\n"
    "    ba.pop()\n"
    "    return True\n"
    "def raises(f):\n"
    "    try:\n"
    "        f()\n"
    "    except Exception as e:\n"
    "        return type(e).__name__\n"
    "    return None\n"
    "VIEW_CASES = []\n"
    "def view_case(expr, root, shape, strides, fmt, readonly, offset, items):\n"
    "    try:\n"
    "        obj, err = eval(expr), None\n"
    "    except Exception as e:\n"
    "        obj, err = None, '%s: %s' % (type(e).__name__, e)\n"
    "    VIEW_CASES.append((expr, obj, err, root, tuple(shape), tuple(strides), fmt,\n"
    "                       struct.calcsize(fmt), readonly, offset, items))\n";

/* How a View was built: its layout, base, offset and items as the test states them. */
typedef struct {
    PyObject *root; /* borrowed: what view.base must be */
    int ndim;
    Py_ssize_t shape[MAX_NDIM];
    Py_ssize_t strides[MAX_NDIM];
    const char *format;
    Py_ssize_t itemsize; /* struct.calcsize(format) */
    int readonly;
    int offset_known; /* 0: offset not pinned (None in the case), only the address rule holds */
    Py_ssize_t offset;
    PyObject *items; /* borrowed: what view.tolist() must return */
} ViewFacts;

/* Names the View checks need from the test's namespace (borrowed while the test runs). */
static PyObject *view_ns_view_type;
static PyObject *view_ns_buffer_type;
static PyObject *view_ns_inspect;

/* Runs VIEW_SETUP_PY and then `code` in ns; NULL (the failure counted) or the borrowed
 * VIEW_CASES list. */
static PyObject *
setup_view_namespace(PyObject *ns, const char *code)
{
    Check c;
    check_begin(&c, "setup: import bufferkit and build the View cases");
    if (run_code(ns, VIEW_SETUP_PY, &c, "the View setup") < 0 ||
        (code != NULL && run_code(ns, code, &c, "building the View cases") < 0)) {
        check_end(&c);
        return NULL;
    }
    view_ns_view_type = ns_get(ns, "View", &c);
    view_ns_buffer_type = ns_get(ns, "Buffer", &c);
    view_ns_inspect = ns_get(ns, "inspect", &c);
    PyObject *cases = ns_get(ns, "VIEW_CASES", &c);
    if (cases != NULL && !PyList_Check(cases)) {
        check_fail(&c, "VIEW_CASES is not a list");
    }
    return check_end(&c) ? cases : NULL;
}

static int
parse_dims_tuple(PyObject *t, Py_ssize_t *out, int *n, Check *c, const char *what)
{
    Py_ssize_t len = PyTuple_GET_SIZE(t);
    assert(len <= MAX_NDIM);
    for (Py_ssize_t i = 0; i < len; i++) {
        out[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, i));
        if (out[i] == -1 && PyErr_Occurred()) {
            fail_with_exception(c, what);
            return -1;
        }
    }
    *n = (int)len;
    return 0;
}

/* Parses one VIEW_CASES entry; the strings stay valid while the entry lives. */
static int
parse_view_case(PyObject *item, const char **label, PyObject **obj, PyObject **err,
                ViewFacts *f, Check *c)
{
    PyObject *shape, *strides, *offset;
    int nstrides;
    if (!PyArg_ParseTuple(item, "sOOOO!O!snpOO", label, obj, err, &f->root, &PyTuple_Type,
                          &shape, &PyTuple_Type, &strides, &f->format, &f->itemsize,
                          &f->readonly, &offset, &f->items)) {
        fail_with_exception(c, "parsing a VIEW_CASES entry");
        return -1;
    }
    f->offset_known = offset != Py_None;
    f->offset = f->offset_known ? PyLong_AsSsize_t(offset) : 0;
    if (f->offset == -1 && PyErr_Occurred()) {
        fail_with_exception(c, "VIEW_CASES offset");
        return -1;
    }
    if (parse_dims_tuple(shape, f->shape, &f->ndim, c, "VIEW_CASES shape") < 0 ||
        parse_dims_tuple(strides, f->strides, &nstrides, c, "VIEW_CASES strides") < 0) {
        return -1;
    }
    assert(nstrides == f->ndim);
    return 0;
}

/* The lowest address a served view addresses: the start of an exporter's memory in the sense
 * of View.offset. buf itself when the layout is empty or has no negative stride. */
static intptr_t
lowest_address(const Py_buffer *v)
{
    intptr_t p = (intptr_t)v->buf;
    if (v->shape == NULL || v->strides == NULL) {
        return p;
    }
    for (int i = 0; i < v->ndim; i++) {
        if (v->shape[i] == 0) {
            return p;
        }
    }
    for (int i = 0; i < v->ndim; i++) {
        if (v->strides[i] < 0) {
            p += (v->shape[i] - 1) * v->strides[i];
        }
    }
    return p;
}

/* bufferkit.inspect(obj).buf (a PyBUF_FULL_RO request from Python); 0 with c failed. */
static intptr_t
inspect_buf(PyObject *obj, Check *c, const char *what)
{
    PyObject *info = PyObject_CallFunctionObjArgs(view_ns_inspect, obj, NULL);
    PyObject *buf = info != NULL ? PyObject_GetAttrString(info, "buf") : NULL;
    void *p = buf != NULL ? PyLong_AsVoidPtr(buf) : NULL;
    Py_XDECREF(info);
    Py_XDECREF(buf);
    if (PyErr_Occurred()) {
        fail_with_exception(c, what);
        return 0;
    }
    return (intptr_t)p;
}

/* Compares obj.<name> (or obj.<name>() when call) with want; reprs on a difference. */
static void
expect_attr_equals(Check *c, PyObject *obj, const char *name, int call, PyObject *want)
{
    PyObject *got = call ? PyObject_CallMethod(obj, name, NULL) : PyObject_GetAttrString(obj, name);
    if (got == NULL) {
        char what[96];
        snprintf(what, sizeof what, call ? "obj.%s()" : "obj.%s", name);
        fail_with_exception(c, what);
        return;
    }
    int eq = PyObject_RichCompareBool(got, want, Py_EQ);
    if (eq < 0) {
        fail_with_exception(c, "comparing");
    }
    else if (!eq) {
        char g[300], w[300];
        repr_of(got, g, sizeof g);
        repr_of(want, w, sizeof w);
        check_fail(c, "%s%s is %s, expected %s", name, call ? "()" : "", g, w);
    }
    Py_DECREF(got);
}

/* Checks a View's attributes against facts, its base against the root, and the address rule:
 * buf of the View's PyBUF_FULL_RO view == lowest_address(PyBUF_FULL_RO view of view.base) +
 * view.offset, and both bufs equal what bufferkit.inspect() reports. One check in the tally;
 * -1 when the View cannot be tested further. */
static int
view_subject_init(Subject *s, PyObject *obj, const char *label, const ViewFacts *f)
{
    Check c;
    check_begin(&c, "%s: attributes, base, offset, items, address of element 0", label);
    s->obj = obj;
    s->label = label;
    s->policy = &BUFFERKIT_POLICY;
    s->full_buf = NULL;
    s->root = NULL;
    s->root_has_exports = 0;
    if (read_layout(obj, s->policy, &s->layout, &c) < 0) {
        check_end(&c);
        return -1;
    }
    check_attributes(&c, s, NULL); /* contiguity attributes and nbytes agree with the layout */
    const Layout *l = &s->layout;
    char a[512], b[512];
    int same = l->ndim == f->ndim;
    for (int i = 0; same && i < l->ndim; i++) {
        same = l->shape[i] == f->shape[i] && l->strides[i] == f->strides[i];
    }
    if (!same) {
        format_dims(a, sizeof a, l->shape, l->ndim);
        format_dims(b, sizeof b, l->strides, l->ndim);
        char wa[512], wb[512];
        format_dims(wa, sizeof wa, f->shape, f->ndim);
        format_dims(wb, sizeof wb, f->strides, f->ndim);
        check_fail(&c, "shape, strides are %s, %s; expected %s, %s", a, b, wa, wb);
    }
    Py_ssize_t ndim, offset, exports;
    if (get_ssize_attr(obj, "ndim", &ndim, &c) == 0 && ndim != f->ndim) {
        check_fail(&c, "ndim is %zd, expected %d", ndim, f->ndim);
    }
    if (strcmp(l->format, f->format) != 0) {
        check_fail(&c, "format is '%s', expected '%s'", l->format, f->format);
    }
    if (l->itemsize != f->itemsize) {
        check_fail(&c, "itemsize is %zd, expected struct.calcsize('%s') = %zd", l->itemsize,
                   f->format, f->itemsize);
    }
    if (l->readonly != f->readonly) {
        check_fail(&c, "readonly is %d, expected %d", l->readonly, f->readonly);
    }
    int offset_ok = get_ssize_attr(obj, "offset", &offset, &c) == 0;
    if (offset_ok && f->offset_known && offset != f->offset) {
        check_fail(&c, "offset is %zd, expected %zd", offset, f->offset);
    }
    if (read_exports(obj, &exports, &c) == 0 && exports != 0) {
        check_fail(&c, "exports is %zd on a fresh View, expected 0", exports);
    }
    expect_bool_attr(&c, obj, "released", 0);
    PyObject *sub = PyObject_GetAttrString(obj, "suboffsets");
    if (sub == NULL) {
        fail_with_exception(&c, "getattr(obj, 'suboffsets')");
    }
    else if (!PyTuple_Check(sub) || PyTuple_GET_SIZE(sub) != 0) {
        repr_of(sub, a, sizeof a);
        check_fail(&c, "suboffsets is %s, expected ()", a);
    }
    Py_XDECREF(sub);
    expect_attr_equals(&c, obj, "tolist", 1, f->items);

    PyObject *base = PyObject_GetAttrString(obj, "base");
    if (base == NULL) {
        fail_with_exception(&c, "getattr(obj, 'base')");
    }
    else {
        if (base != f->root) {
            repr_of(base, a, sizeof a);
            repr_of(f->root, b, sizeof b);
            check_fail(&c, "base is %s, expected the root %s", a, b);
        }
        int is_view = PyObject_IsInstance(base, view_ns_view_type);
        if (is_view < 0) {
            fail_with_exception(&c, "isinstance(view.base, View)");
        }
        else if (is_view) {
            check_fail(&c, "base is a View (the root is never a View)");
        }
        Py_DECREF(base);
    }
    int is_buffer = PyObject_IsInstance(f->root, view_ns_buffer_type);
    if (is_buffer < 0) {
        fail_with_exception(&c, "isinstance(root, Buffer)");
    }

    /* The address rule, with both views taken here from C. */
    Py_buffer rv, vv;
    if (take_view(&c, f->root, &rv, PyBUF_FULL_RO, "PyBUF_FULL_RO of view.base") == 0) {
        if (take_view(&c, obj, &vv, PyBUF_FULL_RO, "PyBUF_FULL_RO of the View") == 0) {
            s->full_buf = vv.buf;
            intptr_t lowest = lowest_address(&rv);
            if (offset_ok && (intptr_t)vv.buf != lowest + offset) {
                check_fail(&c, "buf is %p, expected %p = lowest byte of view.base's buffer %p "
                           "(its buf %p) + offset %zd", vv.buf, (void *)(lowest + offset),
                           (void *)lowest, rv.buf, offset);
            }
            intptr_t ib = inspect_buf(obj, &c, "bufferkit.inspect(view)");
            if (ib != 0 && ib != (intptr_t)vv.buf) {
                check_fail(&c, "bufferkit.inspect(view).buf is %p, the C request got %p",
                           (void *)ib, vv.buf);
            }
            ib = inspect_buf(f->root, &c, "bufferkit.inspect(view.base)");
            if (ib != 0 && ib != (intptr_t)rv.buf) {
                check_fail(&c, "bufferkit.inspect(view.base).buf is %p, the C request got %p",
                           (void *)ib, rv.buf);
            }
            PyBuffer_Release(&vv);
        }
        PyBuffer_Release(&rv);
    }
    s->root = f->root;
    s->root_has_exports = is_buffer == 1;
    return check_end(&c) && s->full_buf != NULL ? 0 : -1;
}

/* Runs `each` on every View of cases; construction errors are failures. */
static void
for_each_view_case(PyObject *cases, void (*each)(const Subject *s))
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(cases); i++) {
        Check c;
        check_begin(&c, "VIEW_CASES[%zd]", i);
        const char *label;
        PyObject *obj, *err;
        ViewFacts facts;
        if (parse_view_case(PyList_GET_ITEM(cases, i), &label, &obj, &err, &facts, &c) < 0) {
            check_end(&c);
            continue;
        }
        if (obj == Py_None) {
            char e[512];
            str_of(err, e, sizeof e);
            check_begin(&c, "%s", label);
            check_fail(&c, "construction raised %s", e);
            check_end(&c);
            continue;
        }
        Subject s;
        if (view_subject_init(&s, obj, label, &facts) < 0) {
            continue;
        }
        each(&s);
    }
}

/* Frees a View test's namespace without leaving it to the collector: the Views go first, then
 * their bases. The namespace is a reference cycle (its functions' __globals__), and when the
 * collector breaks a cycle that holds a memoryview together with a View exporting it, CPython
 * before 3.12.7 may clear the memoryview first and crash (CPython gh-77894; see
 * view_refcounts_and_lock for the test of that case where the interpreter has the fix). */
static void
drop_view_namespace(PyObject *ns)
{
    PyObject *cases = PyDict_GetItemString(ns, "VIEW_CASES");
    if (cases != NULL && PyList_Check(cases) &&
        PyList_SetSlice(cases, 0, PY_SSIZE_T_MAX, NULL) < 0) {
        PyErr_Clear();
    }
    PyDict_Clear(ns);
    view_ns_view_type = view_ns_buffer_type = view_ns_inspect = NULL;
    Py_DECREF(ns);
}

/* Runs a View test body: a namespace with VIEW_SETUP_PY and `code`, then each() on every case
 * (when each is not NULL). */
static void
run_view_cases(const char *code, void (*each)(const Subject *s))
{
    PyObject *ns = setup_namespace();
    if (ns == NULL) {
        return;
    }
    PyObject *cases = setup_view_namespace(ns, code);
    if (cases != NULL) {
        for_each_view_case(cases, each);
    }
    drop_view_namespace(ns);
}

/* ------------------------------------------------------------------------------------------ */
/* Test: view_request_matrix                                                                  */

/* The roots, then the Views over them. Expected items are computed without bufferkit.View:
 * items_at() over the root's bytes, or the root's own tolist() (memoryview, _testbuffer). */
static const char VIEW_MATRIX_CASES_PY[] =
    "ba = bytearray(range(48))\n"
    "fb_c = filled((3, 4), 'i')\n"
    "fb_f = filled((3, 4), 'i', 'F')\n"
    "fb_ro = filled((2, 5), 'h', readonly=True)\n"
    "fb_sub = filled((2, 3), 'h')\n"
    "by = bytes(range(100, 132))\n"
    "ba64 = bytearray(range(64))\n"
    "ba16 = bytearray(range(16))\n"
    "ba8 = bytearray(struct.pack('d', 2.5))\n"
    "ba24 = bytearray(24)\n"
    "nd_nc = ndarray(list(range(12)), shape=[3, 4], format='B')[::2, ::-1]\n"
    "nd_c = ndarray(list(range(12)), shape=[3, 4], format='i', flags=ND_WRITABLE)\n"
    "nd_f = ndarray(list(range(12)), shape=[3, 4], format='i', flags=ND_WRITABLE | ND_FORTRAN)\n"
    "nd_s = ndarray(list(range(24)), shape=[12], strides=[8], format='i', flags=ND_WRITABLE)\n"
    "nd_neg = ndarray(list(range(12)), shape=[3, 4], format='i', flags=ND_WRITABLE)[::-1, 1:3]\n"
    "nd_0 = ndarray(1.5, shape=[], format='d', flags=ND_WRITABLE)\n"
    "ba_m = bytearray(range(20))\n"
    "mv_s = memoryview(ba_m)[::2]\n"
    "M = {name: mem_of(obj) for name, obj in [('ba', ba), ('fb_c', fb_c), ('fb_f', fb_f),\n"
    "     ('fb_ro', fb_ro), ('fb_sub', fb_sub), ('by', by), ('ba64', ba64), ('ba16', ba16),\n"
    "     ('ba8', ba8), ('ba24', ba24)]}\n"
    "def at(root, fmt, shape, strides, offset):\n"
    "    return items_at(M[root], fmt, shape, strides, offset)\n"
    "view_case('View(ba)', ba, (48,), (1,), 'B', False, 0, list(range(48)))\n"
    "view_case('View(ba)[2:10:3]', ba, (3,), (3,), 'B', False, 2, [2, 5, 8])\n"
    "view_case('View(ba)[::-1]', ba, (48,), (-1,), 'B', False, 47, list(range(47, -1, -1)))\n"
    "view_case('View(ba)[40:8:-4]', ba, (8,), (-4,), 'B', False, 40, list(range(40, 8, -4)))\n"
    "view_case('View(ba, offset=40)', ba, (8,), (1,), 'B', False, 40, list(range(40, 48)))\n"
    "view_case('View(ba, offset=48)', ba, (0,), (1,), 'B', False, 48, [])\n"
    "view_case('View(ba)[5:5]', ba, (0,), (1,), 'B', False, None, [])\n"
    "view_case(\"View(ba, format='<h', shape=(2, 2), strides=(-2, 8), offset=2)\", ba, (2, 2),\n"
    "          (-2, 8), '<h', False, 2, at('ba', '<h', (2, 2), (-2, 8), 2))\n"
    "view_case(\"View(ba, format='<B')\", ba, (48,), (1,), '<B', False, 0, list(range(48)))\n"
    "view_case('View(ba, readonly=True)', ba, (48,), (1,), 'B', True, 0, list(range(48)))\n"
    "view_case('View(View(ba)[4:20:2])', ba, (8,), (2,), 'B', False, 4, list(range(4, 20, 2)))\n"
    "view_case(\"View(View(ba)[8:24], format='<h', shape=(2, 3), offset=2)\", ba, (2, 3), (6, 2),\n"
    "          '<h', False, 10, at('ba', '<h', (2, 3), (6, 2), 10))\n"
    "view_case('View(fb_c)', fb_c, (3, 4), (16, 4), 'i', False, 0, memoryview(fb_c).tolist())\n"
    "view_case('View(fb_f)', fb_f, (3, 4), (4, 12), 'i', False, 0, memoryview(fb_f).tolist())\n"
    "view_case('View(fb_c)[::2, 1:]', fb_c, (2, 3), (32, 4), 'i', False, 4,\n"
    "          at('fb_c', 'i', (2, 3), (32, 4), 4))\n"
    "view_case('View(fb_f)[:, ::-1]', fb_f, (3, 4), (4, -12), 'i', False, 36,\n"
    "          at('fb_f', 'i', (3, 4), (4, -12), 36))\n"
    "view_case('View(fb_c, readonly=True)[1:]', fb_c, (2, 4), (16, 4), 'i', True, 16,\n"
    "          memoryview(fb_c).tolist()[1:])\n"
    "view_case(\"View(fb_c, format='B')\", fb_c, (48,), (1,), 'B', False, 0, list(M['fb_c']))\n"
    "view_case('View(fb_ro)', fb_ro, (2, 5), (10, 2), 'h', True, 0, memoryview(fb_ro).tolist())\n"
    "view_case('SubView(fb_sub)', fb_sub, (2, 3), (6, 2), 'h', False, 0,\n"
    "          memoryview(fb_sub).tolist())\n"
    "view_case(\"SubView(ba, format='<i', shape=(3, 2), strides=(4, 12))\", ba, (3, 2), (4, 12),\n"
    "          '<i', False, 0, at('ba', '<i', (3, 2), (4, 12), 0))\n"
    "view_case('View(by)', by, (32,), (1,), 'B', True, 0, list(by))\n"
    "view_case('View(by)[::4]', by, (8,), (4,), 'B', True, 0, list(by[::4]))\n"
    "view_case(\"View(ba64, format='<i', shape=(2, 3), strides=(24, 4), offset=4)\", ba64,\n"
    "          (2, 3), (24, 4), '<i', False, 4, at('ba64', '<i', (2, 3), (24, 4), 4))\n"
    "view_case(\"View(ba16, shape=(4,), strides=(-4,), offset=12, format='i')\", ba16, (4,),\n"
    "          (-4,), 'i', False, 12, at('ba16', 'i', (4,), (-4,), 12))\n"
    "view_case(\"View(ba16, format='i', shape=(3,), strides=(0,), offset=4)\", ba16, (3,), (0,),\n"
    "          'i', False, 4, at('ba16', 'i', (3,), (0,), 4))\n"
    "view_case(\"View(ba8, format='d', shape=())\", ba8, (), (), 'd', False, 0, 2.5)\n"
    "view_case(\"View(ba24, format='i', shape=(0, 3))\", ba24, (0, 3), (12, 4), 'i', False, 0,\n"
    "          [])\n"
    "view_case('View(nd_nc)', nd_nc, (2, 4), (8, -1), 'B', True, 3, nd_nc.tolist())\n"
    "view_case('View(nd_nc)[::-1, 1:3]', nd_nc, (2, 2), (-8, -1), 'B', True, 10,\n"
    "          nd_nc[::-1, 1:3].tolist())\n"
    "view_case(\"View(View(nd_nc)[0:1, ::-1], format='<i', shape=())\", nd_nc, (), (), '<i',\n"
    "          True, 0, struct.unpack('<i', bytes([0, 1, 2, 3]))[0])\n"
    "view_case('View(nd_c)', nd_c, (3, 4), (16, 4), 'i', False, 0, nd_c.tolist())\n"
    "view_case('View(nd_f)', nd_f, (3, 4), (4, 12), 'i', False, 0, nd_f.tolist())\n"
    "view_case('View(nd_s)', nd_s, (12,), (8,), 'i', False, 0, nd_s.tolist())\n"
    "view_case('View(nd_neg)', nd_neg, (3, 2), (-16, 4), 'i', False, 32, nd_neg.tolist())\n"
    "view_case('View(nd_0)', nd_0, (), (), 'd', False, 0, 1.5)\n"
    "view_case('View(mv_s)', mv_s, (10,), (2,), 'B', False, 0, mv_s.tolist())\n";

static void
test_view_request_matrix(void)
{
    run_view_cases(VIEW_MATRIX_CASES_PY, check_standard_requests);
}

/* ------------------------------------------------------------------------------------------ */
/* Test: view_invalid_flags                                                                   */

static const char VIEW_INVALID_CASES_PY[] =
    "ba = bytearray(range(16))\n"
    "fb_f = filled((3, 4), 'i', 'F')\n"
    "ba8 = bytearray(8)\n"
    "fb_sub = filled((2, 2), 'h')\n"
    "view_case('View(ba)', ba, (16,), (1,), 'B', False, 0, list(range(16)))\n"
    "view_case('View(fb_f)', fb_f, (3, 4), (4, 12), 'i', False, 0, memoryview(fb_f).tolist())\n"
    "view_case(\"View(ba8, format='d', shape=())\", ba8, (), (), 'd', False, 0, 0.0)\n"
    "view_case('SubView(fb_sub)', fb_sub, (2, 2), (4, 2), 'h', False, 0,\n"
    "          memoryview(fb_sub).tolist())\n"
    "view_case('View(ba)[::-3]', ba, (6,), (-3,), 'B', False, 15, list(range(15, -1, -3)))\n"
    "view_case('View(ba, readonly=True)', ba, (16,), (1,), 'B', True, 0, list(range(16)))\n";

static void
test_view_invalid_flags(void)
{
    run_view_cases(VIEW_INVALID_CASES_PY, check_invalid_then_standard);
}

/* ------------------------------------------------------------------------------------------ */
/* Test: view_refcounts_and_lock                                                              */

/* Evaluates `expr` in ns and expects it equal to the value of `want`; reprs on a difference. */
static void
expect_eval(Check *c, PyObject *ns, const char *expr, const char *want)
{
    PyObject *got = PyRun_String(expr, Py_eval_input, ns, ns);
    if (got == NULL) {
        char what[256];
        snprintf(what, sizeof what, "`%s`", expr);
        fail_with_exception(c, what);
        return;
    }
    PyObject *w = PyRun_String(want, Py_eval_input, ns, ns);
    if (w == NULL) {
        char what[256];
        snprintf(what, sizeof what, "`%s` (the expected value)", want);
        fail_with_exception(c, what);
        Py_DECREF(got);
        return;
    }
    int eq = PyObject_RichCompareBool(got, w, Py_EQ);
    if (eq < 0) {
        fail_with_exception(c, "comparing");
    }
    else if (!eq) {
        char g[300], ws[300];
        repr_of(got, g, sizeof g);
        repr_of(w, ws, sizeof ws);
        check_fail(c, "`%s` is %s, expected `%s` = %s", expr, g, want, ws);
    }
    Py_DECREF(got);
    Py_DECREF(w);
}

/* Expects `expr` to raise exc_type with exactly `message` (any message when NULL). */
static void
expect_eval_raises(Check *c, PyObject *ns, const char *expr, PyObject *exc_type,
                   const char *message)
{
    const char *tname = ((PyTypeObject *)exc_type)->tp_name;
    PyObject *r = PyRun_String(expr, Py_eval_input, ns, ns);
    if (r != NULL) {
        char g[256];
        repr_of(r, g, sizeof g);
        check_fail(c, "`%s` returned %s, expected %s%s%s", expr, g, tname,
                   message != NULL ? ": " : "", message != NULL ? message : "");
        Py_DECREF(r);
        return;
    }
    PyObject *exc = take_exception();
    char desc[600];
    describe_exception(exc, desc, sizeof desc);
    if (exc == NULL || !PyErr_GivenExceptionMatches(exc, exc_type)) {
        check_fail(c, "`%s` raised %s, expected %s", expr, desc, tname);
    }
    else if (message != NULL) {
        char msg[512];
        str_of(exc, msg, sizeof msg);
        if (strcmp(msg, message) != 0) {
            check_fail(c, "`%s`: message '%s', expected '%s'", expr, msg, message);
        }
    }
    Py_XDECREF(exc);
}

/* Builds the nested list of the items of format f ('B' or native 'i') of a served view with
 * shape and strides, walking them from C: what a consumer reads. NULL with an exception. */
static PyObject *
items_from_view(const Py_buffer *v, const char *f, int dim, const char *p)
{
    if (dim == v->ndim) {
        if (strcmp(f, "i") == 0) {
            int x;
            memcpy(&x, p, sizeof x);
            return PyLong_FromLong(x);
        }
        if (strcmp(f, "B") == 0) {
            return PyLong_FromLong(*(const unsigned char *)p);
        }
        PyErr_Format(PyExc_NotImplementedError, "items_from_view: format '%s'", f);
        return NULL;
    }
    PyObject *list = PyList_New(v->shape[dim]);
    for (Py_ssize_t i = 0; list != NULL && i < v->shape[dim]; i++) {
        PyObject *item = items_from_view(v, f, dim + 1, p + i * v->strides[dim]);
        if (item == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

/* The items (of format f) a C consumer reads through v equal the value of `want` in ns. */
static void
expect_view_items(Check *c, PyObject *ns, const Py_buffer *v, const char *f, const char *want)
{
    PyObject *got = items_from_view(v, f, 0, v->buf);
    PyObject *w = got != NULL ? PyRun_String(want, Py_eval_input, ns, ns) : NULL;
    if (w == NULL) {
        fail_with_exception(c, "reading the items through the C view");
        Py_XDECREF(got);
        return;
    }
    int eq = PyObject_RichCompareBool(got, w, Py_EQ);
    if (eq != 1) {
        char g[300], ws[300];
        repr_of(got, g, sizeof g);
        repr_of(w, ws, sizeof ws);
        check_fail(c, "the C view reads %s, expected `%s` = %s", g, want, ws);
        PyErr_Clear();
    }
    Py_DECREF(got);
    Py_DECREF(w);
}

/* Runs code as one step of c; 0 when it ran. */
static int
step(Check *c, PyObject *ns, const char *code)
{
    return run_code(ns, code, c, code);
}

static void
expect_refcount(Check *c, PyObject *o, Py_ssize_t want, const char *what)
{
    if (Py_REFCNT(o) != want) {
        check_fail(c, "refcount of %s is %zd, expected %zd (baseline)", what, Py_REFCNT(o), want);
    }
}

static void
test_view_refcounts_and_lock(void)
{
    Check c;
    PyObject *ns = setup_namespace();
    if (ns == NULL) {
        return;
    }
    if (setup_view_namespace(ns, "b = filled((4, 6), 'i')\n"
                                 "b_items = memoryview(b).tolist()\n"
                                 "ba = bytearray(range(32))\n") == NULL) {
        Py_DECREF(ns);
        return;
    }
    check_begin(&c, "view_refcounts_and_lock setup");
    PyObject *b = ns_get(ns, "b", &c);
    PyObject *ba = ns_get(ns, "ba", &c);
    if (!check_end(&c)) {
        Py_DECREF(ns);
        return;
    }
    Py_INCREF(b);
    Py_INCREF(ba);
    Py_ssize_t b_refs0 = Py_REFCNT(b), ba_refs0 = Py_REFCNT(ba);

    check_begin(&c, "View(b): exactly one export of b");
    if (step(&c, ns, "v = View(b)\n") == 0) {
        expect_exports(&c, b, 1);
        expect_eval(&c, ns, "v.base is b", "True");
        expect_eval(&c, ns, "v.exports", "0");
        expect_eval(&c, ns, "v.tolist()", "b_items");
    }
    check_end(&c);

    /* Each slice and each View of a View shares v's one export of the root (a HeldExport):
     * b.exports stays 1 for the whole family, and none of them exports v. */
    static const struct {
        const char *code, *name, *offset, *items;
    } derived[] = {
        {"s1 = v[1:3]\n", "s1", "24", "b_items[1:3]"},
        {"s2 = s1[:, ::2]\n", "s2", "24", "[r[::2] for r in b_items[1:3]]"},
        {"vv = View(v)\n", "vv", "0", "b_items"},
        {"vs = View(s2)\n", "vs", "24", "[r[::2] for r in b_items[1:3]]"},
        {"vr = View(vv, format='B', offset=4)\n", "vr", "4", "list(mem_of(b))[4:]"},
    };
    const int n_derived = (int)(sizeof derived / sizeof derived[0]);
    const int n_exports = 1; /* the family's one export of b */
    for (int i = 0; i < n_derived; i++) {
        check_begin(&c, "%.*s: shares the export of the root; base is the root", 
                    (int)strlen(derived[i].code) - 1, derived[i].code);
        if (step(&c, ns, derived[i].code) == 0) {
            expect_exports(&c, b, n_exports);
            char expr[128];
            snprintf(expr, sizeof expr, "%s.base is b and type(%s.base) is Buffer",
                     derived[i].name, derived[i].name);
            expect_eval(&c, ns, expr, "True");
            snprintf(expr, sizeof expr, "%s.offset", derived[i].name);
            expect_eval(&c, ns, expr, derived[i].offset);
            snprintf(expr, sizeof expr, "%s.tolist()", derived[i].name);
            expect_eval(&c, ns, expr, derived[i].items);
            snprintf(expr, sizeof expr, "%s.exports", derived[i].name);
            expect_eval(&c, ns, expr, "0");
            expect_eval(&c, ns, "(v.exports, s1.exports)", "(0, 0)");
        }
        check_end(&c);
    }
    check_begin(&c, "b locked by a family of Views (%d export): close() and freeze() refused", n_exports);
    char message[128];
    snprintf(message, sizeof message, "cannot close: %d exported buffer", n_exports);
    expect_raised(&c, PyObject_CallMethod(b, "close", NULL), PyExc_BufferError, message, 1);
    snprintf(message, sizeof message, "cannot freeze: %d exported buffer", n_exports);
    expect_raised(&c, PyObject_CallMethod(b, "freeze", NULL), PyExc_BufferError, message, 1);
    expect_exports(&c, b, n_exports);
    check_end(&c);

    /* release() while the View itself is exported */
    PyObject *v = PyDict_GetItemString(ns, "v"); /* borrowed */
    Py_buffer held;
    int have_held = 0;
    check_begin(&c, "v.release() while C holds a view of v");
    if (v != NULL && take_view(&c, v, &held, PyBUF_FULL_RO, "PyBUF_FULL_RO") == 0) {
        have_held = 1;
        expect_exports(&c, v, 1);
        expect_eval_raises(&c, ns, "v.release()", PyExc_BufferError, NULL);
        expect_bool_attr(&c, v, "released", 0);
        expect_exports(&c, v, 1);
        expect_exports(&c, b, n_exports);
        expect_view_items(&c, ns, &held, "i", "b_items");
        /* still serves further requests */
        Py_buffer more;
        if (take_view(&c, v, &more, PyBUF_SIMPLE, "PyBUF_SIMPLE") == 0) {
            expect_exports(&c, v, 2);
            PyBuffer_Release(&more);
        }
        expect_exports(&c, v, 1);
        /* leaving a with-block runs release(): refused the same way */
        if (step(&c, ns, "try:\n"
                         "    with v:\n"
                         "        pass\n"
                         "    with_error = None\n"
                         "except BufferError as e:\n"
                         "    with_error = 'BufferError'\n") == 0) {
            expect_eval(&c, ns, "(with_error, v.released, b.exports)",
                        "('BufferError', False, 1)");
        }
        /* a memoryview is an export of a slice just the same */
        if (step(&c, ns, "m2 = memoryview(s2)\n") == 0) {
            expect_eval(&c, ns, "s2.exports", "1");
            expect_eval_raises(&c, ns, "s2.release()", PyExc_BufferError, NULL);
            expect_eval(&c, ns, "s2.released", "False");
            step(&c, ns, "m2.release()\n");
            expect_eval(&c, ns, "s2.exports", "0");
        }
    }
    check_end(&c);

    check_begin(&c, "v.release() after the last export of v: b stays locked by the family, idempotent");
    if (have_held) {
        PyBuffer_Release(&held);
        expect_exports(&c, v, 0);
        expect_exports(&c, b, n_exports);
        expect_none(&c, PyObject_CallMethod(v, "release", NULL), "v.release()");
        expect_bool_attr(&c, v, "released", 1);
        expect_exports(&c, b, n_exports);   /* s1, s2, vv, vs, vr share the export */
        expect_none(&c, PyObject_CallMethod(v, "release", NULL), "v.release() again");
        expect_bool_attr(&c, v, "released", 1);
        expect_exports(&c, b, n_exports);
        expect_exports(&c, v, 0);
    }
    check_end(&c);

    check_begin(&c, "a released View: requests and operations raise ValueError");
    if (have_held) {
        const char *msg = "operation on released View";
        expect_refused(&c, v, PyBUF_SIMPLE, "PyBUF_SIMPLE", PyExc_ValueError, msg);
        expect_refused(&c, v, PyBUF_FULL_RO, "PyBUF_FULL_RO", PyExc_ValueError, msg);
        expect_refused(&c, v, PyBUF_FULL, "PyBUF_FULL", PyExc_ValueError, msg);
        expect_eval_raises(&c, ns, "v.shape", PyExc_ValueError, msg);
        expect_eval_raises(&c, ns, "v.nbytes", PyExc_ValueError, msg);
        expect_eval_raises(&c, ns, "v.tobytes()", PyExc_ValueError, msg);
        expect_eval_raises(&c, ns, "v[1:2]", PyExc_ValueError, msg);
        expect_eval_raises(&c, ns, "View(v)", PyExc_ValueError, msg);
        expect_eval_raises(&c, ns, "memoryview(v)", PyExc_ValueError, msg);
        expect_eval(&c, ns, "(v.released, v.exports)", "(True, 0)");
        PyObject *r = PyObject_Repr(v);
        if (r == NULL) {
            fail_with_exception(&c, "repr() of a released View");
        }
        Py_XDECREF(r);
        expect_exports(&c, b, n_exports);
        /* the Views made from v share the export: unaffected */
        expect_eval(&c, ns, "[x.tolist() for x in (s1, s2, vv, vs)]",
                    "[b_items[1:3], [r[::2] for r in b_items[1:3]], b_items, "
                    "[r[::2] for r in b_items[1:3]]]");
        expect_eval(&c, ns, "vr.tolist()", "list(mem_of(b))[4:]");
    }
    check_end(&c);

    check_begin(&c, "with View(b) as w: a family of its own, released at exit");
    if (step(&c, ns, "with View(b) as w:\n"
                     "    w_inside = (w.released, b.exports, w.base is b)\n"
                     "w_after = (w.released, b.exports)\n") == 0) {
        expect_eval(&c, ns, "w_inside", "(False, 2, True)");
        expect_eval(&c, ns, "w_after", "(True, 1)");
    }
    check_end(&c);

    /* C holds the last reference to a slice */
    check_begin(&c, "a slice whose last reference is a C view");
    PyObject *s2 = PyDict_GetItemString(ns, "s2");
    if (s2 != NULL && take_view(&c, s2, &held, PyBUF_STRIDED_RO, "PyBUF_STRIDED_RO") == 0) {
        if (step(&c, ns, "del s2, vs\n") == 0) {
            expect_exports(&c, b, n_exports); /* s1, vv, vr and the C-held s2 share it */
            expect_view_items(&c, ns, &held, "i", "[r[::2] for r in b_items[1:3]]");
        }
        PyBuffer_Release(&held);
        expect_exports(&c, b, n_exports);
    }
    check_end(&c);

    check_begin(&c, "the last reference to every View gone: b back to its baseline");
    if (step(&c, ns, "del v, s1, vv, vr, w\n") == 0) {
        expect_exports(&c, b, 0);
        expect_refcount(&c, b, b_refs0, "b");
    }
    check_end(&c);

    check_begin(&c, "Views in a garbage cycle: b back to its baseline after gc.collect()");
    if (step(&c, ns, "cyc = [View(b), View(b)[::2], SubView(b)]\n"
                     "cyc[2].me = cyc[2]\n"
                     "cyc.append(cyc)\n"
                     "del cyc\n") == 0) {
        expect_exports(&c, b, 3);
        step(&c, ns, "gc.collect()\n");
        expect_exports(&c, b, 0);
        expect_refcount(&c, b, b_refs0, "b");
    }
    check_end(&c);

    check_begin(&c, "failed View constructions leave no export behind");
    if (step(&c, ns, "ro = filled((8,), 'B', readonly=True)\n") == 0) {
        PyObject *ro = PyDict_GetItemString(ns, "ro");
        Py_ssize_t ro_refs0 = ro != NULL ? Py_REFCNT(ro) : 0;
        expect_eval(&c, ns, "raises(lambda: View(ro, readonly=False)) is not None", "True");
        expect_eval(&c, ns, "raises(lambda: View(b, shape=(100,))) is not None", "True");
        expect_eval(&c, ns, "raises(lambda: View(b, offset=97)) is not None", "True");
        expect_eval(&c, ns, "raises(lambda: View(View(b)[::2], format='B')) is not None", "True");
        expect_eval(&c, ns, "raises(lambda: View(b, format='i', shape=(2,), strides=(-4,)))"
                            " is not None", "True");
        step(&c, ns, "gc.collect()\n");
        expect_exports(&c, ro, 0);
        expect_exports(&c, b, 0);
        if (ro != NULL) {
            expect_refcount(&c, ro, ro_refs0, "ro");
        }
        expect_refcount(&c, b, b_refs0, "b");
    }
    check_end(&c);

    check_begin(&c, "b unlocked: close() succeeds");
    expect_none(&c, PyObject_CallMethod(b, "close", NULL), "b.close()");
    expect_bool_attr(&c, b, "closed", 1);
    expect_refcount(&c, b, b_refs0, "b");
    check_end(&c);

    /* bytearray: its export count is seen through resizing */
    check_begin(&c, "View(bytearray): one export per View, slice and View of a View");
    if (step(&c, ns, "bv = View(ba)\n") == 0) {
        expect_eval(&c, ns, "resizable(ba)", "False");
        expect_eval(&c, ns, "bv.base is ba", "True");
        if (step(&c, ns, "bs = bv[::2]\nbv.release()\n") == 0) {
            expect_eval(&c, ns, "(bv.released, resizable(ba), bs.base is ba)",
                        "(True, False, True)");
            expect_eval(&c, ns, "bs.tolist()", "list(range(0, 32, 2))");
        }
        if (step(&c, ns, "bs2 = View(bs)\ndel bs\n") == 0) {
            expect_eval(&c, ns, "(resizable(ba), bs2.base is ba)", "(False, True)");
        }
        if (step(&c, ns, "del bs2\n") == 0) {
            expect_eval(&c, ns, "resizable(ba)", "True");
        }
        step(&c, ns, "del bv\n");
        expect_refcount(&c, ba, ba_refs0, "ba");
    }
    check_end(&c);

    /* A View outliving every other reference to its base */
    check_begin(&c, "a View that alone keeps its base alive reads the right bytes");
    if (step(&c, ns, "o = View(WBytes(b'outlive:' + bytes(range(40))))\n"
                     "o_root = weakref.ref(o.base)\n"
                     "o_sl = o[8:40:4]\n"
                     "del o\n"
                     "gc.collect()\n") == 0) {
        expect_eval(&c, ns, "o_root() is not None", "True");
        expect_eval(&c, ns, "(o_sl.tolist(), o_sl.tobytes())",
                    "(list(range(0, 32, 4)), bytes(range(0, 32, 4)))");
        PyObject *o_sl = PyDict_GetItemString(ns, "o_sl");
        if (o_sl != NULL && take_view(&c, o_sl, &held, PyBUF_FULL_RO, "PyBUF_FULL_RO") == 0) {
            step(&c, ns, "del o_sl\ngc.collect()\n");
            expect_eval(&c, ns, "o_root() is not None", "True");
            expect_view_items(&c, ns, &held, "B", "list(range(0, 32, 4))");
            PyBuffer_Release(&held); /* the last reference to the slice, and so to the root */
            expect_eval(&c, ns, "o_root() is None", "True");
        }
    }
    if (step(&c, ns, "n_v = View(ndarray(list(range(12)), shape=[3, 4], format='B')[::2, ::-1])\n"
                     "bb = filled((3,), 'i')\n"
                     "bb_v = View(bb)[::-1]\n"
                     "del bb\n"
                     "gc.collect()\n") == 0) {
        expect_eval(&c, ns, "n_v.tolist()", "[[3, 2, 1, 0], [11, 10, 9, 8]]");
        expect_eval(&c, ns, "(bb_v.tolist(), bb_v.base.exports)", "([3, 2, 1], 1)");
        step(&c, ns, "del n_v, bb_v\n");
    }
    check_end(&c);

    /* A View of a memoryview in a garbage cycle: the collector may clear the memoryview while
     * the View still holds its export. Only interpreters with the fix of CPython gh-77894
     * (3.12.7, 3.13.0) survive that; bufferkit's part is to give the export back in tp_clear. */
#if PY_VERSION_HEX >= 0x030C07F0
    check_begin(&c, "a View of a memoryview in a garbage cycle");
    if (step(&c, ns, "def mv_cycle():\n"
                     "    root = WBytes(range(16))\n"
                     "    mv = memoryview(root)[::2]\n"
                     "    d = {'mv': mv, 'v': View(mv), 's': View(mv)[1:]}\n"
                     "    d['d'] = d\n"
                     "    return weakref.ref(root)\n"
                     "mv_cycle_ref = mv_cycle()\n"
                     "gc.collect()\n") == 0) {
        expect_eval(&c, ns, "mv_cycle_ref() is None", "True");
    }
    check_end(&c);
#else
    printf("note: not testing a View of a memoryview in a garbage cycle: this CPython (before "
           "3.12.7) has gh-77894 and may crash when the collector clears the memoryview first\n");
#endif

    Py_DECREF(b);
    Py_DECREF(ba);
    drop_view_namespace(ns);
}

/* ------------------------------------------------------------------------------------------ */
/* Tests: finalize_with_live_exports, finalize_with_unreleased_view                           */

/* Objects left alive for finalization, in __main__: a Buffer the C side exports (`held`), a
 * Buffer only a memoryview keeps alive (`mv`), a cycle of plain objects holding a Buffer and an
 * export of it, and a Buffer subclass instance in a cycle with itself through its own export.
 * Views: a View, a slice of it and a View of the slice in globals (`gv`, `gs`, `gvv`; the C
 * side also exports `gs`), a plain object in a cycle with itself holding a View, a slice of it
 * and a memoryview of the slice, and a View subclass instance in a cycle with itself through its
 * own export and a slice of itself. The collector is disabled first, so that the cycles are
 * still there when finalization starts. */
static const char FINALIZE_SETUP_PY[] =
    "import gc\n"
    "gc.disable()\n"
    "import bufferkit\n"
    "from bufferkit import Buffer, View\n"
    "held = Buffer((64,), 'd')\n"
    "mv = memoryview(Buffer((8, 8), 'i', order='F'))\n"
    "class Node:\n"
    "    pass\n"
    "a, b = Node(), Node()\n"
    "a.peer, b.peer = b, a\n"
    "a.buf = Buffer((16,), 'B')\n"
    "b.view = memoryview(a.buf)\n"
    "class Sub(Buffer):\n"
    "    pass\n"
    "s = Sub((4, 4), 'h')\n"
    "s.me = s\n"
    "s.view = memoryview(s)\n"
    "cycle_exports = (a.buf.exports, s.exports, mv.obj.exports)\n"
    "del a, b, s\n"
    "gv = View(Buffer((32,), 'B'))\n"
    "gs = gv[4:20:2]\n"
    "gvv = View(gs)\n"
    "c = Node()\n"
    "c.me = c\n"
    "c.view = View(Buffer((16,), 'i'))\n"
    "c.slice = c.view[::2]\n"
    "c.mv = memoryview(c.slice)\n"
    "class SubView(View):\n"
    "    pass\n"
    "sv = SubView(bytearray(range(32)))\n"
    "sv.me = sv\n"
    "sv.mv = memoryview(sv)\n"
    "sv.slice = sv[::4]\n"
    "view_exports = (gv.base.exports, gvv.base is gv.base, c.view.base.exports, c.slice.exports,\n"
    "                sv.exports, sv.slice.tolist())\n"
    "del c, sv\n";

/* Held across Py_FinalizeEx by finalize_with_unreleased_view, on purpose: static storage, so a
 * leak checker sees the reference it keeps as reachable. */
static Py_buffer unreleased_view;
static Py_buffer unreleased_slice_view;

static void
finalize_scenario(int release_before_finalize)
{
    Check c;
    check_begin(&c, "finalization setup in __main__");
    PyObject *main_mod = PyImport_AddModule("__main__"); /* borrowed */
    PyObject *ns = main_mod != NULL ? PyModule_GetDict(main_mod) : NULL;
    if (ns == NULL) {
        fail_with_exception(&c, "the __main__ namespace");
        check_end(&c);
        return;
    }
    if (run_code(ns, FINALIZE_SETUP_PY, &c, "the finalization setup") < 0) {
        check_end(&c);
        return;
    }
    PyObject *counts = ns_get(ns, "cycle_exports", &c);
    if (counts != NULL) {
        PyObject *want = Py_BuildValue("(nnn)", (Py_ssize_t)1, (Py_ssize_t)1, (Py_ssize_t)1);
        int eq = want != NULL ? PyObject_RichCompareBool(counts, want, Py_EQ) : -1;
        if (eq < 0) {
            fail_with_exception(&c, "comparing cycle_exports");
        }
        else if (!eq) {
            char r[128];
            repr_of(counts, r, sizeof r);
            check_fail(&c, "exports of the Buffers held by memoryviews are %s, expected (1, 1, 1)",
                       r);
        }
        Py_XDECREF(want);
    }
    PyObject *held = ns_get(ns, "held", &c); /* borrowed from __main__ */
    Py_buffer local;
    Py_buffer *view = release_before_finalize ? &local : &unreleased_view;
    int have_view = 0;
    if (held != NULL && take_view(&c, held, view, PyBUF_FULL_RO, "PyBUF_FULL_RO") == 0) {
        have_view = 1;
        expect_exports(&c, held, 1);
        if (view->len != 64 * 8 || view->buf == NULL) {
            check_fail(&c, "held view: len %zd buf %p, expected 512 bytes", view->len, view->buf);
        }
        else {
            double *d = (double *)view->buf; /* zero-initialised memory, readable */
            if (d[0] != 0.0 || d[63] != 0.0) {
                check_fail(&c, "held view: memory is not zero-initialised");
            }
        }
    }
    if (release_before_finalize && have_view) {
        PyBuffer_Release(view);
        expect_exports(&c, held, 0);
    }
    check_end(&c);

    check_begin(&c, "finalization setup: Views in __main__ and in garbage cycles");
    PyObject *vcounts = ns_get(ns, "view_exports", &c);
    if (vcounts != NULL) {
        /* gv, gs and gvv share one export of gv's base; c.view and c.slice one of theirs */
        PyObject *want = Py_BuildValue("(nOnnn[nnnnnnnn])", (Py_ssize_t)1, Py_True,
                                       (Py_ssize_t)1, (Py_ssize_t)1, (Py_ssize_t)1,
                                       (Py_ssize_t)0, (Py_ssize_t)4, (Py_ssize_t)8,
                                       (Py_ssize_t)12, (Py_ssize_t)16, (Py_ssize_t)20,
                                       (Py_ssize_t)24, (Py_ssize_t)28);
        int eq = want != NULL ? PyObject_RichCompareBool(vcounts, want, Py_EQ) : -1;
        if (eq < 0) {
            fail_with_exception(&c, "comparing view_exports");
        }
        else if (!eq) {
            char r[256], w[256];
            repr_of(vcounts, r, sizeof r);
            repr_of(want, w, sizeof w);
            check_fail(&c, "(gv.base.exports, gvv.base is gv.base, c.view.base.exports, "
                       "c.slice.exports, sv.exports, sv.slice.tolist()) is %s, expected %s", r, w);
        }
        Py_XDECREF(want);
    }
    /* the C side exports the slice gs too: released before finalizing, or abandoned */
    PyObject *gs = ns_get(ns, "gs", &c);
    PyObject *gv = ns_get(ns, "gv", &c);
    Py_buffer slice_local;
    Py_buffer *sview = release_before_finalize ? &slice_local : &unreleased_slice_view;
    if (gs != NULL && gv != NULL &&
        take_view(&c, gs, sview, PyBUF_FULL_RO, "PyBUF_FULL_RO of gs") == 0) {
        expect_exports(&c, gs, 1);
        if (sview->ndim != 1 || sview->shape == NULL || sview->shape[0] != 8 ||
            sview->strides == NULL || sview->strides[0] != 2 || sview->len != 8) {
            check_fail(&c, "gs view: expected shape (8,), strides (2,), len 8");
        }
        else {
            const unsigned char *p = sview->buf; /* zero-initialised memory, readable */
            if (p[0] != 0 || p[7 * 2] != 0) {
                check_fail(&c, "gs view: memory is not zero-initialised");
            }
        }
        if (release_before_finalize) {
            PyBuffer_Release(sview);
            expect_exports(&c, gs, 0);
        }
        PyObject *base = PyObject_GetAttrString(gv, "base");
        if (base == NULL) {
            fail_with_exception(&c, "gv.base");
        }
        else {
            expect_exports(&c, base, 1); /* gv, gs, gvv: one shared export */
            Py_DECREF(base);
        }
    }
    check_end(&c);

    /* Releasing a view after Py_FinalizeEx is not legal (it runs the exporter's code with no
     * interpreter): a view that is kept is abandoned, with its reference, for ever. */
    check_begin(&c, "Py_FinalizeEx() with %s",
                release_before_finalize
                    ? "a memoryview export and Views in __main__, exports and Views inside "
                      "garbage cycles"
                    : "unreleased C-held views of a Buffer and of a View slice, a memoryview "
                      "export, Views in __main__ and garbage cycles");
    long unraisable_before = unraisable_count;
    fflush(stdout);
    int rc = Py_FinalizeEx();
    interpreter_finalized = 1;
    if (rc != 0) {
        check_fail(&c, "Py_FinalizeEx() returned %d, expected 0", rc);
    }
    if (unraisable_count != unraisable_before) {
        check_fail(&c, "%ld unraisable exception(s) during finalization",
                   unraisable_count - unraisable_before);
    }
    check_end(&c);
}

static void
test_finalize_with_live_exports(void)
{
    finalize_scenario(1);
}

static void
test_finalize_with_unreleased_view(void)
{
    finalize_scenario(0);
}

/* ------------------------------------------------------------------------------------------ */
/* The test table and the runner                                                              */

typedef struct {
    const char *name;
    void (*func)(void);
    int finalizes; /* ends the interpreter: runs last, in its own process when not alone */
    const char *doc;
} Test;

static const Test TESTS[] = {
    {"buffer_request_matrix", test_buffer_request_matrix, 0,
     "15 standard requests x {0, WRITABLE, FORMAT, both} on Buffers of many layouts"},
    {"buffer_invalid_flags", test_buffer_invalid_flags, 0,
     "malformed flags are refused, through PyObject_GetBuffer and the slot itself"},
    {"buffer_lock", test_buffer_lock, 0,
     "exports count live views; close()/freeze() refused while exported; closed Buffers"},
    {"reference_exporters", test_reference_exporters, 0,
     "the same oracle on bytearray, bytes, array.array and _testbuffer.ndarray"},
    {"view_request_matrix", test_view_request_matrix, 0,
     "the same matrix on Views of many bases and layouts; buf against view.base + offset"},
    {"view_invalid_flags", test_view_invalid_flags, 0,
     "malformed flags are refused by Views, through PyObject_GetBuffer and the slot"},
    {"view_refcounts_and_lock", test_view_refcounts_and_lock, 0,
     "one export of the root per View/slice; release(); references back to baseline"},
    {"finalize_with_live_exports", test_finalize_with_live_exports, 1,
     "Py_FinalizeEx with exports alive in __main__ and in garbage cycles"},
    {"finalize_with_unreleased_view", test_finalize_with_unreleased_view, 1,
     "Py_FinalizeEx while C still holds a view it never releases"},
};
#define N_TESTS ((int)(sizeof TESTS / sizeof TESTS[0]))

static void
usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [-v] [TEST...]   run the named tests (every test when none is named)\n"
            "       %s --list           print the test names, one a line\n"
            "\n"
            "  -v   print a PASS line for every check and every FAIL line\n"
            "\n"
            "tests:\n",
            prog, prog);
    for (int i = 0; i < N_TESTS; i++) {
        fprintf(out, "  %-30s %s\n", TESTS[i].name, TESTS[i].doc);
    }
}

static const Test *
find_test(const char *name)
{
    for (int i = 0; i < N_TESTS; i++) {
        if (strcmp(TESTS[i].name, name) == 0) {
            return &TESTS[i];
        }
    }
    return NULL;
}

/* Whether a line is the final tally "N passed, M failed". */
static int
parse_tally(const char *line, long *passed, long *failed)
{
    char rest[4];
    int n = sscanf(line, "%ld passed, %ld failed%3s", passed, failed, rest);
    return n == 2;
}

/* Runs a finalizing test in a child process (this program, re-executed with the test's name),
 * relays its output and adds its tally to ours. */
static void
run_in_child(const char *prog, const Test *t)
{
    printf("== %s (in a child process)\n", t->name);
    fflush(stdout);
    Check c;
    check_begin(&c, "%s child process", t->name);
    int fds[2];
    if (pipe(fds) < 0) {
        check_fail(&c, "pipe(): %s", strerror(errno));
        check_end(&c);
        return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    char *argv[4];
    int argc = 0;
    argv[argc++] = (char *)prog;
    if (verbose) {
        argv[argc++] = "-v";
    }
    argv[argc++] = (char *)t->name;
    argv[argc] = NULL;
    const char *self = access("/proc/self/exe", X_OK) == 0 ? "/proc/self/exe" : prog;
    pid_t pid;
    int err = posix_spawn(&pid, self, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (err != 0) {
        close(fds[0]);
        check_fail(&c, "posix_spawn(%s): %s", self, strerror(err));
        check_end(&c);
        return;
    }
    FILE *in = fdopen(fds[0], "r");
    long passed = -1, failed = -1;
    if (in == NULL) {
        close(fds[0]);
    }
    else {
        char line[4096];
        while (fgets(line, sizeof line, in) != NULL) {
            long p, f;
            if (parse_tally(line, &p, &f)) {
                passed = p;
                failed = f;
            }
            else {
                fputs(line, stdout);
            }
        }
        fclose(in);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            check_fail(&c, "waitpid(): %s", strerror(errno));
            check_end(&c);
            return;
        }
    }
    if (WIFSIGNALED(status)) {
        check_fail(&c, "killed by signal %d", WTERMSIG(status));
    }
    else if (passed < 0) {
        check_fail(&c, "exited with status %d without printing its tally", WEXITSTATUS(status));
    }
    else {
        checks_passed += passed;
        checks_failed += failed;
        if (WEXITSTATUS(status) != (failed != 0)) {
            check_fail(&c, "exit status %d does not match its tally", WEXITSTATUS(status));
        }
    }
    if (c.failures != 0) {
        check_end(&c);
    }
}

static void
run_test(const Test *t)
{
    long passed0 = checks_passed, failed0 = checks_failed, unraisable0 = unraisable_count;
    detail_lines_left = DETAIL_LINES_PER_TEST;
    printf("== %s\n", t->name);
    t->func();
    if (!interpreter_finalized) {
        Check c;
        check_begin(&c, "%s left the interpreter clean", t->name);
        if (PyErr_Occurred()) {
            fail_with_exception(&c, "the test itself (an exception was left set)");
        }
        /* collect the test's garbage now, so that errors it causes are counted here */
        if (PyGC_Collect() < 0) {
            fail_with_exception(&c, "gc.collect()");
        }
        if (unraisable_count != unraisable0) {
            check_fail(&c, "%ld unraisable exception(s) were reported",
                       unraisable_count - unraisable0);
        }
        if (c.failures != 0) { /* counted only when it fails: it is not the test's subject */
            check_end(&c);
        }
    }
    long failed = checks_failed - failed0;
    printf("-- %s: %s (%ld checks passed, %ld failed)\n", t->name, failed ? "FAIL" : "PASS",
           checks_passed - passed0, failed);
}

/* Installs the unraisable hook and probes how PyObject_GetBuffer treats PyBUF_READ. */
static int
prepare_interpreter(void)
{
    Check c;
    check_begin(&c, "interpreter set-up");
    PyObject *hook = PyCFunction_New(&unraisablehook_def, NULL);
    if (hook == NULL || PySys_SetObject("unraisablehook", hook) < 0) {
        fail_with_exception(&c, "installing sys.unraisablehook");
    }
    Py_XDECREF(hook);
    PyObject *probe = PyByteArray_FromStringAndSize("probe", 5);
    if (probe == NULL) {
        fail_with_exception(&c, "bytearray(b'probe')");
        check_end(&c);
        return -1;
    }
    Py_buffer v;
    memset(&v, 0, sizeof v);
    if (PyObject_GetBuffer(probe, &v, PyBUF_READ) == 0) {
        PyBuffer_Release(&v);
    }
    else {
        PyObject *exc = take_exception();
        if (exc != NULL && PyErr_GivenExceptionMatches(exc, PyExc_SystemError)) {
            interpreter_refuses_read_write = 1;
        }
        else {
            char desc[600];
            describe_exception(exc, desc, sizeof desc);
            check_fail(&c, "bytearray refused PyBUF_READ with %s", desc);
        }
        Py_XDECREF(exc);
    }
    Py_DECREF(probe);
    printf("note: %s; PyObject_GetBuffer %s\n", Py_GetVersion(),
           interpreter_refuses_read_write
               ? "itself refuses exactly PyBUF_READ/PyBUF_WRITE with SystemError"
               : "passes PyBUF_READ/PyBUF_WRITE on to the exporter");
    if (c.failures == 0) {
        return 0;
    }
    check_end(&c);
    return -1;
}

int
main(int argc, char **argv)
{
    /* line-buffered, so that the output before a crash is not lost in a pipe or file */
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *prog = argc > 0 ? argv[0] : "embed";
    const Test *selected[N_TESTS];
    int n_selected = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (int k = 0; k < N_TESTS; k++) {
                printf("%s\n", TESTS[k].name);
            }
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout, prog);
            return 0;
        }
        if (strcmp(argv[i], "-v") == 0) {
            verbose = 1;
            continue;
        }
        const Test *t = find_test(argv[i]);
        if (t == NULL) {
            fprintf(stderr, "%s: no test named '%s'\n\n", prog, argv[i]);
            usage(stderr, prog);
            return 2;
        }
        int dup = 0;
        for (int k = 0; k < n_selected; k++) {
            dup |= selected[k] == t;
        }
        if (!dup) {
            selected[n_selected++] = t;
        }
    }
    if (n_selected == 0) {
        for (int k = 0; k < N_TESTS; k++) {
            selected[n_selected++] = &TESTS[k];
        }
    }
    /* A finalizing test runs in this process only when it is the only test selected. */
    int in_process = n_selected == 1;

    Py_InitializeEx(0);
    if (prepare_interpreter() == 0) {
        for (int pass = 0; pass < 2; pass++) { /* finalizing tests last */
            for (int k = 0; k < n_selected; k++) {
                const Test *t = selected[k];
                if (t->finalizes != pass) {
                    continue;
                }
                if (t->finalizes && !in_process) {
                    run_in_child(prog, t);
                }
                else {
                    run_test(t);
                }
            }
        }
    }
    if (!interpreter_finalized && Py_FinalizeEx() < 0) {
        checks_failed++;
        printf("FAIL Py_FinalizeEx() at exit returned -1\n");
    }
    printf("%ld passed, %ld failed\n", checks_passed, checks_failed);
    return checks_failed != 0;
}
