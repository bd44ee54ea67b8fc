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
    FORMAT_ONLY_FOR_BYTES, /* bufferkit: served (as "B") only for unsigned bytes */
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
    if (!REQ(flags, PyBUF_ND) && p->format_without_shape == FORMAT_ONLY_FOR_BYTES) {
        return "B";
    }
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

static void
test_buffer_request_matrix(void)
{
    PyObject *ns = new_namespace();
    if (ns == NULL) {
        Check c;
        check_begin(&c, "setup");
        fail_with_exception(&c, "new_namespace()");
        check_end(&c);
        return;
    }
    PyObject *cases = setup_buffer_cases(ns, MATRIX_CASES_PY);
    if (cases != NULL) {
        for_each_buffer_case(cases, check_standard_requests);
    }
    Py_DECREF(ns);
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
    PyObject *ns = new_namespace();
    if (ns == NULL) {
        Check c;
        check_begin(&c, "setup");
        fail_with_exception(&c, "new_namespace()");
        check_end(&c);
        return;
    }
    PyObject *cases = setup_buffer_cases(ns, INVALID_CASES_PY);
    if (cases != NULL) {
        for_each_buffer_case(cases, check_invalid_then_standard);
    }
    Py_DECREF(ns);
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
    expect_raised(&c, PyObject_CallMethod(b, "close", NULL), PyExc_BufferError, message, 0);
    snprintf(message, sizeof message, "cannot freeze: %zd exported buffers", n_held);
    expect_raised(&c, PyObject_CallMethod(b, "freeze", NULL), PyExc_BufferError, message, 0);
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
                      0);
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
                      "cannot close: 2 exported buffers", 0);
        expect_raised(&c, PyObject_CallMethod(b, "freeze", NULL), PyExc_BufferError,
                      "cannot freeze: 2 exported buffers", 0);
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
/* Tests: finalize_with_live_exports, finalize_with_unreleased_view                           */

/* Objects left alive for finalization, in __main__: a Buffer the C side exports (`held`), a
 * Buffer only a memoryview keeps alive (`mv`), a cycle of plain objects holding a Buffer and an
 * export of it, and a Buffer subclass instance in a cycle with itself through its own export.
 * The collector is disabled so that the cycles are still there when finalization starts. */
static const char FINALIZE_SETUP_PY[] =
    "import gc\n"
    "import bufferkit\n"
    "from bufferkit import Buffer\n"
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
    "gc.disable()\n";

/* Held across Py_FinalizeEx by finalize_with_unreleased_view, on purpose: static storage, so a
 * leak checker sees the reference it keeps as reachable. */
static Py_buffer unreleased_view;

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

    /* Releasing a view after Py_FinalizeEx is not legal (it runs the exporter's code with no
     * interpreter): a view that is kept is abandoned, with its reference, for ever. */
    check_begin(&c, "Py_FinalizeEx() with %s",
                release_before_finalize
                    ? "a memoryview export in __main__ and exports inside garbage cycles"
                    : "an unreleased C-held view, a memoryview export and garbage cycles");
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
