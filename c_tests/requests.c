/*
 * requests.c -- the request checker, and the request tests on Buffers and on the standard
 * library's exporters: buffer_request_matrix, buffer_invalid_flags, reference_exporters.
 *
 * check_request() sends one request to an exporter, through PyObject_GetBuffer or the type's
 * bf_getbuffer slot, and compares everything a C consumer can see with the exporter's row of
 * the expectation table (table.c): served or refused, the exception and its message, every
 * Py_buffer field, view->obj, the exporter's reference count and `exports` before, during and
 * after. The rows come from the oracle of the Python suite (python_tests/oracle.py); no rule of
 * docs/semantics.md is written here. The exporters are built from c_tests/subjects.py, the
 * file the oracle describes them from.
 */

#include "harness.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Request flags                                                                              */

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

/* Malformed requests (rule 1 of docs/semantics.md): MALFORMED_REQUESTS of c_tests/subjects.py,
 * in the same order (the table has rows for exactly those). */
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

/* ------------------------------------------------------------------------------------------ */
/* Layouts                                                                                    */

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

/* The memoryview attributes of src into l. */
static int
read_attributes(PyObject *src, Layout *l, Check *c)
{
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
    return ok ? 0 : -1;
}

int
read_layout(PyObject *o, int from_attributes, Layout *l, Check *c)
{
    memset(l, 0, sizeof *l);
    type_name_of(o, l->type_name, sizeof l->type_name);
    PyObject *src = o;
    if (from_attributes) {
        Py_INCREF(src);
    }
    else if ((src = PyMemoryView_FromObject(o)) == NULL) {
        fail_with_exception(c, "memoryview(obj)");
        return -1;
    }
    int rc = read_attributes(src, l, c);
    if (!from_attributes) {
        PyObject *r = PyObject_CallMethod(src, "release", NULL);
        if (r == NULL) {
            fail_with_exception(c, "memoryview(obj).release()");
            rc = -1;
        }
        Py_XDECREF(r);
    }
    Py_DECREF(src);
    if (rc == 0) {
        l->c = layout_is_contiguous(l, 'C');
        l->f = layout_is_contiguous(l, 'F');
        l->any = l->c || l->f;
    }
    return rc;
}

void
check_layout_consistent(Check *c, const Layout *l)
{
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
}

int
subject_begin(Subject *s, PyObject *obj, const char *label, const char *test, Check *c)
{
    memset(s, 0, sizeof *s);
    s->obj = obj;
    s->label = label;
    s->entry = table_subject(test, label, c);
    if (s->entry == NULL) {
        return -1;
    }
    s->has_exports = table_subject_has_exports(s->entry);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* What the table expects of one request                                                      */

typedef enum { MSG_ANY, MSG_EXACT, MSG_PREFIX } MessageCheck;

typedef struct {
    int served;
    /* refused */
    PyObject *exc_type; /* borrowed */
    int obj_null;       /* view->obj must be NULL afterwards */
    MessageCheck message_check;
    const char *message;
    /* served */
    Py_ssize_t len, itemsize;
    int readonly, ndim;
    const char *format;  /* NULL: the field must be NULL */
    int shape_n, strides_n; /* -1: the field must be NULL */
    Py_ssize_t shape[MAX_NDIM], strides[MAX_NDIM];
    int internal_null;
} Expect;

/* The value of "key=value" among fields, or NULL. */
static const char *
field_value(const char **fields, int n, const char *key)
{
    size_t k = strlen(key);
    for (int i = 1; i < n; i++) {
        if (strncmp(fields[i], key, k) == 0 && fields[i][k] == '=') {
            return fields[i] + k + 1;
        }
    }
    return NULL;
}

/* "3,4" into out (count in *n), "NULL" as *n = -1. */
static int
parse_dims(const char *text, Py_ssize_t *out, int *n)
{
    if (strcmp(text, "NULL") == 0) {
        *n = -1;
        return 0;
    }
    *n = 0;
    for (const char *p = text; *n < MAX_NDIM;) {
        char *end;
        out[(*n)++] = (Py_ssize_t)strtoll(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0')) {
            return -1;
        }
        if (*end == '\0') {
            return 0;
        }
        p = end + 1;
    }
    return -1;
}

static int
parse_refused(const char **f, int n, Expect *e)
{
    if (n != 5) {
        return -1;
    }
    e->exc_type = strcmp(f[1], "BufferError") == 0   ? PyExc_BufferError
                  : strcmp(f[1], "SystemError") == 0 ? PyExc_SystemError
                                                     : NULL;
    e->obj_null = strcmp(f[2], "obj=NULL") == 0;
    e->message_check = strcmp(f[3], "exact") == 0    ? MSG_EXACT
                       : strcmp(f[3], "prefix") == 0 ? MSG_PREFIX
                                                     : MSG_ANY;
    e->message = f[4];
    return e->exc_type != NULL && (e->obj_null || strcmp(f[2], "obj=any") == 0) &&
                   (e->message_check != MSG_ANY || strcmp(f[3], "any") == 0)
               ? 0
               : -1;
}

static int
parse_served(const char **f, int n, Expect *e)
{
    const char *len = field_value(f, n, "len"), *itemsize = field_value(f, n, "itemsize");
    const char *readonly = field_value(f, n, "readonly"), *ndim = field_value(f, n, "ndim");
    const char *format = field_value(f, n, "format"), *shape = field_value(f, n, "shape");
    const char *strides = field_value(f, n, "strides"), *sub = field_value(f, n, "suboffsets");
    const char *internal = field_value(f, n, "internal");
    if (n != 10 || !len || !itemsize || !readonly || !ndim || !format || !shape || !strides ||
        !sub || strcmp(sub, "NULL") != 0 || !internal) {
        return -1;
    }
    e->len = (Py_ssize_t)strtoll(len, NULL, 10);
    e->itemsize = (Py_ssize_t)strtoll(itemsize, NULL, 10);
    e->readonly = atoi(readonly);
    e->ndim = atoi(ndim);
    e->format = strcmp(format, "NULL") == 0 ? NULL : format;
    e->internal_null = strcmp(internal, "NULL") == 0;
    return parse_dims(shape, e->shape, &e->shape_n) == 0 &&
                   parse_dims(strides, e->strides, &e->strides_n) == 0
               ? 0
               : -1;
}

/* The row of a request as an Expect; -1 (reported to c) when it is missing or unreadable. */
static int
expectation(const Subject *s, int flags, int via_slot, Expect *e, Check *c)
{
    memset(e, 0, sizeof *e);
    const char *path = via_slot ? "slot" : "call";
    const TableRow *row = table_row(s->entry, path, flags);
    if (row == NULL) {
        check_fail(c, "the expectation table has no row for %s 0x%x (missing row)", path,
                   (unsigned)flags);
        return -1;
    }
    const char **f;
    int n = table_row_fields(row, &f);
    e->served = strcmp(f[0], "served") == 0;
    if ((e->served ? parse_served(f, n, e) : parse_refused(f, n, e)) < 0) {
        check_fail(c, "the table's row for %s 0x%x is not understood (%s, %d fields)", path,
                   (unsigned)flags, f[0], n);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Checking one request                                                                       */

/* Compares a shape or strides array of a served view with the table's (want_n -1: NULL). */
static void
check_dims_field(Check *c, const char *field, const Py_ssize_t *got, int got_n,
                 const Py_ssize_t *want, int want_n)
{
    char ws[512], gs[512];
    if ((const void *)got == poison_pointer()) {
        check_fail(c, "%s: never written (still the poison pattern)", field);
        return;
    }
    if (want_n < 0) {
        if (got != NULL) {
            check_fail(c, "%s: expected NULL, got %p", field, (const void *)got);
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

static void
check_format_field(Check *c, const char *want, const char *got)
{
    if ((const void *)got == poison_pointer()) {
        check_fail(c, "format: never written (still the poison pattern)");
    }
    else if (want == NULL) {
        if (got != NULL) {
            check_fail(c, "format: expected NULL, got %p", (const void *)got);
        }
    }
    else if (got == NULL) {
        check_fail(c, "format: expected '%s', got NULL", want);
    }
    else {
        size_t len = strnlen(got, 256);
        if (len == 256 || strcmp(got, want) != 0) {
            check_fail(c, "format: expected '%s', got '%.*s'%s", want, (int)len, got,
                       len == 256 ? "... (not terminated within 256 bytes)" : "");
        }
    }
}

/* Every field of a served view against the table. */
static void
check_served_fields(Check *c, const Subject *s, const Expect *e, const Py_buffer *v)
{
    if (v->buf != s->full_buf) {
        check_fail(c, "buf: expected %p (the buf of a PyBUF_FULL_RO view), got %p", s->full_buf,
                   v->buf);
    }
    if (v->len != e->len) {
        check_fail(c, "len: expected %zd, got %zd", e->len, v->len);
    }
    if (v->itemsize != e->itemsize) {
        check_fail(c, "itemsize: expected %zd, got %zd", e->itemsize, v->itemsize);
    }
    if (v->readonly != e->readonly) {
        check_fail(c, "readonly: expected %d, got %d", e->readonly, v->readonly);
    }
    if (v->ndim != e->ndim) {
        check_fail(c, "ndim: expected %d, got %d", e->ndim, v->ndim);
    }
    check_format_field(c, e->format, v->format);
    check_dims_field(c, "shape", v->shape, v->ndim, e->shape, e->shape_n);
    check_dims_field(c, "strides", v->strides, v->ndim, e->strides, e->strides_n);
    if (v->suboffsets != NULL) {
        check_fail(c, "suboffsets: expected NULL, got %p", (void *)v->suboffsets);
    }
    if (e->internal_null && v->internal != NULL) {
        check_fail(c, "internal: expected NULL, got %p", v->internal);
    }
}

/* The exception of a refusal against the table's. */
static void
check_refusal_exception(Check *c, const Expect *e, PyObject *exc)
{
    const char *want = ((PyTypeObject *)e->exc_type)->tp_name;
    if (exc == NULL) {
        check_fail(c, "returned -1 without setting an exception (expected %s)", want);
        return;
    }
    char desc[600];
    describe_exception(exc, desc, sizeof desc);
    if (!PyErr_GivenExceptionMatches(exc, e->exc_type)) {
        check_fail(c, "expected %s, got %s", want, desc);
        return;
    }
    if (e->message_check == MSG_ANY) {
        return;
    }
    char msg[512];
    str_of(exc, msg, sizeof msg);
    int ok = e->message_check == MSG_EXACT
                 ? strcmp(msg, e->message) == 0
                 : strncmp(msg, e->message, strlen(e->message)) == 0;
    if (!ok) {
        check_fail(c, "message: expected %s'%s', got '%s'",
                   e->message_check == MSG_PREFIX ? "a message starting with " : "", e->message,
                   msg);
    }
}

/* What a request must not change: the exporter's reference count and exports, and for a View
 * those of its root. */
typedef struct {
    Py_ssize_t refs, exports;
    Py_ssize_t root_refs, root_exports;
} Baseline;

static int
take_baseline(Check *c, const Subject *s, Baseline *b)
{
    memset(b, 0, sizeof *b);
    if (s->has_exports) {
        if (read_exports(s->obj, &b->exports, c) < 0) {
            return -1;
        }
        if (b->exports != 0) {
            check_fail(c, "exports is %zd before the request, expected 0", b->exports);
        }
    }
    /* A View re-exports the one export of its root that it holds: no request on it may take
     * or give back a reference to, or an export of, the root. */
    b->root_refs = s->root != NULL ? Py_REFCNT(s->root) : 0;
    if (s->root_has_exports && read_exports(s->root, &b->root_exports, c) < 0) {
        return -1;
    }
    b->refs = Py_REFCNT(s->obj);
    return 0;
}

/* For a subject with a root (a View): the root's reference count and exports are as before. */
static void
check_root_unchanged(Check *c, const Subject *s, const Baseline *b, const char *when)
{
    if (s->root == NULL) {
        return;
    }
    if (Py_REFCNT(s->root) != b->root_refs) {
        check_fail(c, "refcount of the View's base is %zd %s, expected %zd (a request on a View "
                   "must not touch its base)", Py_REFCNT(s->root), when, b->root_refs);
    }
    Py_ssize_t now;
    if (s->root_has_exports && read_exports(s->root, &now, c) == 0 && now != b->root_exports) {
        check_fail(c, "exports of the View's base is %zd %s, expected %zd (a View holds one "
                   "export of its base for its whole life)", now, when, b->root_exports);
    }
}

/* A request the table refuses: the return value, the exception, view->obj. */
static void
check_refused(Check *c, const Subject *s, const Expect *e, int rc, PyObject *exc, Py_buffer *v)
{
    if (rc != -1) {
        check_fail(c, "returned %d, expected -1: refused with %s '%s'", rc,
                   ((PyTypeObject *)e->exc_type)->tp_name, e->message);
    }
    if (rc == -1 || exc != NULL) {
        check_refusal_exception(c, e, exc);
    }
    if (v->obj != NULL && e->obj_null) {
        check_fail(c, "view.obj is %p after the refusal, expected NULL", (void *)v->obj);
    }
    if (rc == 0 && v->obj == s->obj) {
        PyBuffer_Release(v); /* served against the table: give it back */
    }
    else if (rc == 0) {
        check_fail(c, "served with view.obj %p instead of the exporter; view not released",
                   (void *)v->obj);
    }
}

/* A request the table serves: the fields, one reference and one export while it is held, both
 * given back by PyBuffer_Release. */
static void
check_served(Check *c, const Subject *s, const Expect *e, const Baseline *b, int rc,
             PyObject *exc, Py_buffer *v)
{
    char desc[600];
    if (rc != 0) {
        describe_exception(exc, desc, sizeof desc);
        check_fail(c, "refused (returned %d, %s), expected it served", rc, desc);
        if (v->obj != NULL) {
            check_fail(c, "view.obj is %p after the refusal, expected NULL", (void *)v->obj);
        }
        return;
    }
    if (exc != NULL) {
        describe_exception(exc, desc, sizeof desc);
        check_fail(c, "returned 0 but left an exception set: %s", desc);
    }
    if (v->obj != s->obj) {
        check_fail(c, "view.obj: expected the exporter %p, got %p; view not released",
                   (void *)s->obj, (void *)v->obj);
        return;
    }
    if (Py_REFCNT(s->obj) != b->refs + 1) {
        check_fail(c, "refcount of the exporter is %zd while exported, expected %zd "
                   "(baseline + 1)", Py_REFCNT(s->obj), b->refs + 1);
    }
    Py_ssize_t exports;
    if (s->has_exports && read_exports(s->obj, &exports, c) == 0 && exports != b->exports + 1) {
        check_fail(c, "exports is %zd while exported, expected %zd", exports, b->exports + 1);
    }
    check_served_fields(c, s, e, v);
    check_root_unchanged(c, s, b, "while exported");
    PyBuffer_Release(v);
    if (v->obj != NULL) {
        check_fail(c, "view.obj is %p after PyBuffer_Release, expected NULL", (void *)v->obj);
    }
}

void
check_request(const Subject *s, int flags, const char *flags_name, int via_slot)
{
    Check c;
    check_begin(&c, "%s flags=%s (0x%x)%s", s->label, flags_name, (unsigned)flags,
                via_slot ? " [bf_getbuffer called directly]" : "");
    Expect e;
    Baseline b;
    if (expectation(s, flags, via_slot, &e, &c) < 0 || take_baseline(&c, s, &b) < 0) {
        check_end(&c);
        return;
    }
    getbufferproc slot = NULL;
    if (via_slot) {
        PyBufferProcs *pb = Py_TYPE(s->obj)->tp_as_buffer;
        slot = pb != NULL ? pb->bf_getbuffer : NULL;
        if (slot == NULL) {
            check_fail(&c, "the type has no bf_getbuffer slot");
            check_end(&c);
            return;
        }
    }
    Py_buffer view;
    memset(&view, POISON_BYTE, sizeof view);
    int rc = via_slot ? slot(s->obj, &view, flags) : PyObject_GetBuffer(s->obj, &view, flags);
    PyObject *exc = take_exception();
    if (e.served) {
        check_served(&c, s, &e, &b, rc, exc, &view);
    }
    else {
        check_refused(&c, s, &e, rc, exc, &view);
    }
    Py_XDECREF(exc);

    if (Py_REFCNT(s->obj) != b.refs) {
        check_fail(&c, "refcount of the exporter is %zd afterwards, expected %zd (baseline)",
                   Py_REFCNT(s->obj), b.refs);
    }
    Py_ssize_t exports_after;
    if (s->has_exports && read_exports(s->obj, &exports_after, &c) == 0 &&
        exports_after != b.exports) {
        check_fail(&c, "exports is %zd afterwards, expected %zd (baseline)", exports_after,
                   b.exports);
    }
    check_root_unchanged(&c, s, &b, "afterwards");
    check_end(&c);
}

int
subject_built(const char *label, PyObject *obj, PyObject *err)
{
    if (obj != Py_None) {
        return 1;
    }
    Check c;
    char e[512];
    str_of(err, e, sizeof e);
    check_begin(&c, "%s", label);
    check_fail(&c, "construction raised %s", e);
    check_end(&c);
    return 0;
}

void
drive_subject(const Subject *s, void (*each)(const Subject *s))
{
    each(s);
    table_subject_done(s->entry);
}

void
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

void
check_invalid_then_standard(const Subject *s)
{
    for (int i = 0; i < N_INVALID_REQUESTS; i++) {
        check_request(s, INVALID_REQUESTS[i].flags, INVALID_REQUESTS[i].name, 0);
        check_request(s, INVALID_REQUESTS[i].flags, INVALID_REQUESTS[i].name, 1);
    }
    /* the object must serve normally after all those refusals */
    check_standard_requests(s);
}

/* ------------------------------------------------------------------------------------------ */
/* Buffer subjects                                                                            */

/* How a Buffer was constructed: what its attributes must say, known without reading them. */
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

/* The strides of a non-empty Buffer are the standard strides of its order. The strides of an
 * empty array address nothing, and conventions differ (memoryview gives (0, 4) for (3, 0) 'i',
 * NumPy 1 (4, 4), NumPy 2 (0, 0)); docs/semantics.md fixes none, so empty layouts are not
 * held to them. */
static void
check_buffer_strides(Check *c, const Layout *l, const Facts *f)
{
    for (int i = 0; i < f->ndim; i++) {
        if (f->shape[i] == 0) {
            return;
        }
    }
    Py_ssize_t want[MAX_NDIM];
    standard_strides(f, want);
    int eq = 1;
    for (int i = 0; eq && i < l->ndim; i++) {
        eq = l->strides[i] == want[i];
    }
    if (!eq) {
        char a[512], b[512];
        format_dims(a, sizeof a, want, l->ndim);
        format_dims(b, sizeof b, l->strides, l->ndim);
        check_fail(c, "strides are %s, expected %s for order '%c'", b, a, f->order);
    }
}

/* The layout attributes of a Buffer against how it was constructed. */
static void
check_buffer_layout(Check *c, const Layout *l, const Facts *f, PyObject *o)
{
    char a[512], b[512];
    Py_ssize_t ndim;
    if (get_ssize_attr(o, "ndim", &ndim, c) == 0 && ndim != f->ndim) {
        check_fail(c, "ndim is %zd, expected %d", ndim, f->ndim);
    }
    int same = l->ndim == f->ndim;
    for (int i = 0; same && i < l->ndim; i++) {
        same = l->shape[i] == f->shape[i];
    }
    if (!same) {
        format_dims(a, sizeof a, f->shape, f->ndim);
        format_dims(b, sizeof b, l->shape, l->ndim);
        check_fail(c, "shape is %s, expected %s", b, a);
    }
    if (strcmp(l->format, f->format) != 0) {
        check_fail(c, "format is '%s', expected '%s'", l->format, f->format);
    }
    if (l->itemsize != f->itemsize) {
        check_fail(c, "itemsize is %zd, expected struct.calcsize('%s') = %zd", l->itemsize,
                   f->format, f->itemsize);
    }
    if (l->readonly != f->readonly) {
        check_fail(c, "readonly is %d, expected %d", l->readonly, f->readonly);
    }
    if (same && l->itemsize == f->itemsize) {
        check_buffer_strides(c, l, f);
    }
}

/* The state attributes of a fresh Buffer: order, suboffsets, exports, closed. */
static void
check_buffer_state(Check *c, const Facts *f, PyObject *o)
{
    char order[8], r[512];
    if (get_str_attr(o, "order", order, sizeof order, c) == 0 &&
        (order[0] != f->order || order[1] != '\0')) {
        check_fail(c, "order is '%s', expected '%c'", order, f->order);
    }
    PyObject *sub = PyObject_GetAttrString(o, "suboffsets");
    if (sub == NULL) {
        fail_with_exception(c, "getattr(obj, 'suboffsets')");
    }
    else if (!PyTuple_Check(sub) || PyTuple_GET_SIZE(sub) != 0) {
        repr_of(sub, r, sizeof r);
        check_fail(c, "suboffsets is %s, expected ()", r);
    }
    Py_XDECREF(sub);
    Py_ssize_t exports;
    if (read_exports(o, &exports, c) == 0 && exports != 0) {
        check_fail(c, "exports is %zd on a fresh object, expected 0", exports);
    }
    if (get_bool_attr(o, "closed", c) > 0) {
        check_fail(c, "closed is True on a fresh object");
    }
}

/* s->full_buf from a PyBUF_FULL_RO view of s->obj; -1 with the failure reported. */
static int
take_full_buf(Check *c, Subject *s)
{
    Py_buffer view;
    memset(&view, POISON_BYTE, sizeof view);
    if (PyObject_GetBuffer(s->obj, &view, PyBUF_FULL_RO) < 0) {
        fail_with_exception(c, "PyObject_GetBuffer(obj, PyBUF_FULL_RO)");
        return -1;
    }
    if (view.obj != s->obj) {
        check_fail(c, "PyBUF_FULL_RO view.obj is %p, expected %p; not released",
                   (void *)view.obj, (void *)s->obj);
        return -1;
    }
    s->full_buf = view.buf;
    PyBuffer_Release(&view);
    return 0;
}

/* Looks the exporter up in the table, reads its layout and the buf of its PyBUF_FULL_RO view,
 * and checks its attributes (against facts, for a Buffer): one check in the tally. Returns -1
 * when the object cannot be tested further. */
static int
subject_init(Subject *s, PyObject *obj, const char *label, const char *test, const Facts *facts)
{
    Check c;
    check_begin(&c, "%s attributes and PyBUF_FULL_RO reference view", label);
    if (subject_begin(s, obj, label, test, &c) < 0 ||
        read_layout(obj, s->has_exports, &s->layout, &c) < 0) {
        check_end(&c);
        return -1;
    }
    check_layout_consistent(&c, &s->layout);
    if (facts != NULL) {
        check_buffer_layout(&c, &s->layout, facts, obj);
        check_buffer_state(&c, facts, obj);
    }
    if (take_full_buf(&c, s) < 0) {
        check_end(&c);
        return -1;
    }
    return check_end(&c) ? 0 : -1;
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

/* Python that defines Buffer, SubBuffer and buffer_cases(test): the Buffers subjects.py lists
 * for the test, each as (label, obj or None, construction error or None, shape tuple, format,
 * order, readonly, struct.calcsize(format)). */
static const char BUFFER_SETUP_PY[] =
    "import struct\n"
    "import bufferkit\n"
    "import subjects\n"
    "Buffer = bufferkit.Buffer\n"
    "class SubBuffer(Buffer):\n"
    "    pass\n"
    "CLASSES = {'Buffer': Buffer, 'SubBuffer': SubBuffer}\n"
    "def buffer_cases(test):\n"
    "    cases = []\n"
    "    for label, cls, shape, dims, fmt, order, readonly in subjects.buffer_subjects(test):\n"
    "        try:\n"
    "            obj = CLASSES[cls](shape, fmt, order=order, readonly=readonly)\n"
    "            err = None\n"
    "        except Exception as e:\n"
    "            obj, err = None, '%s: %s' % (type(e).__name__, e)\n"
    "        cases.append((label, obj, err, dims, fmt, order, readonly, struct.calcsize(fmt)))\n"
    "    return cases\n";

/* Sets up ns with BUFFER_SETUP_PY and builds the Buffers of `test`. Returns the borrowed list,
 * or NULL with the failure counted. */
static PyObject *
setup_buffer_cases(PyObject *ns, const char *test)
{
    Check c;
    check_begin(&c, "setup: import bufferkit and build the Buffer cases of %s", test);
    char code[128];
    snprintf(code, sizeof code, "BUFFER_CASES = buffer_cases('%s')\n", test);
    if (run_code(ns, BUFFER_SETUP_PY, &c, "import bufferkit, subjects") < 0 ||
        run_code(ns, code, &c, "building the cases") < 0) {
        check_end(&c);
        return NULL;
    }
    PyObject *cases = ns_get(ns, "BUFFER_CASES", &c);
    check_end(&c);
    return cases;
}

/* Runs `each` on every Buffer subjects.py lists for `test`; construction errors are failures;
 * then checks that the test used the table's rows exactly. */
static void
run_buffer_cases(const char *test, void (*each)(const Subject *s))
{
    PyObject *ns = setup_namespace();
    PyObject *cases = ns != NULL ? setup_buffer_cases(ns, test) : NULL;
    for (Py_ssize_t i = 0; cases != NULL && i < PyList_GET_SIZE(cases); i++) {
        Check c;
        check_begin(&c, "BUFFER_CASES[%zd]", i);
        const char *label;
        PyObject *obj, *err;
        Facts facts;
        if (parse_buffer_case(PyList_GET_ITEM(cases, i), &label, &obj, &err, &facts, &c) < 0) {
            check_end(&c);
            continue;
        }
        if (!subject_built(label, obj, err)) {
            continue;
        }
        Subject s;
        if (subject_init(&s, obj, label, test, &facts) == 0) {
            drive_subject(&s, each);
        }
    }
    table_test_done(test);
    Py_XDECREF(ns);
}

/* ------------------------------------------------------------------------------------------ */
/* Tests: buffer_request_matrix, buffer_invalid_flags                                         */

void
test_buffer_request_matrix(void)
{
    run_buffer_cases("buffer_request_matrix", check_standard_requests);
}

void
test_buffer_invalid_flags(void)
{
    run_buffer_cases("buffer_invalid_flags", check_invalid_then_standard);
}

/* ------------------------------------------------------------------------------------------ */
/* Test: reference_exporters                                                                  */

/* The standard requests, then the malformed ones through PyObject_GetBuffer. */
static void
check_reference_requests(const Subject *s)
{
    check_standard_requests(s);
    for (int k = 0; k < N_INVALID_REQUESTS; k++) {
        check_request(s, INVALID_REQUESTS[k].flags, INVALID_REQUESTS[k].name, 0);
    }
}

void
test_reference_exporters(void)
{
    const char *test = "reference_exporters";
    Check c;
    check_begin(&c, "setup: build the reference exporters of subjects.py");
    PyObject *ns = new_namespace();
    PyObject *cases = NULL;
    if (ns == NULL) {
        fail_with_exception(&c, "new_namespace()");
    }
    else if (run_code(ns, "import subjects\nREF_CASES = subjects.reference_cases()\n", &c,
                      "subjects.reference_cases()") == 0) {
        cases = ns_get(ns, "REF_CASES", &c);
    }
    check_end(&c);
    for (Py_ssize_t i = 0; cases != NULL && i < PyList_GET_SIZE(cases); i++) {
        const char *label, *policy_name;
        PyObject *obj;
        check_begin(&c, "REF_CASES[%zd]", i);
        if (!PyArg_ParseTuple(PyList_GET_ITEM(cases, i), "sOs", &label, &obj, &policy_name)) {
            fail_with_exception(&c, "parsing a REF_CASES entry");
            check_end(&c);
            continue;
        }
        Subject s;
        if (subject_init(&s, obj, label, test, NULL) == 0) {
            drive_subject(&s, check_reference_requests);
        }
    }
    table_test_done(test);
    Py_XDECREF(ns);
}
