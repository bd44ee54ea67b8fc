/*
 * harness.h -- what the C tests share: the tally and its reporting, Python helpers, the checks
 * every test uses, the expectation table of the request tests and the request checker.
 *
 * The program (harness.c: main, the test table, the runner) embeds the interpreter it was
 * linked against, in the manner of CPython's Programs/_testembed.c; each other file holds one
 * kind of test (README.md has a heading for each):
 *
 *   requests.c      the request checker, Buffer subjects, buffer_request_matrix,
 *                   buffer_invalid_flags, reference_exporters
 *   views.c         View subjects, view_request_matrix, view_invalid_flags
 *   lock.c          buffer_lock
 *   view_lifetime.c view_refcounts_and_lock
 *   finalize.c      finalize_with_live_exports, finalize_with_unreleased_view
 *   table.c         reading the expectation table that python_tests/oracle.py writes
 */

#ifndef BUFFERKIT_C_TESTS_HARNESS_H
#define BUFFERKIT_C_TESTS_HARNESS_H

#undef NDEBUG /* assert() guards the harness's own invariants: never compiled out */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <assert.h>
#include <stdint.h>
#include <stdio.h>

#define MAX_NDIM 64               /* bufferkit's limit, and PyBUF_MAX_NDIM */
#define DETAIL_LINES_PER_TEST 200 /* FAIL lines printed per test without -v */
#define POISON_BYTE 0xA5          /* fills every Py_buffer before a request */

#define PRINTF_LIKE(fmt, first) __attribute__((format(printf, fmt, first)))

/* Compound flags are tested as (flags & X) == X, never flags & X. */
#define REQ(flags, x) (((flags) & (x)) == (x))

/* ---- Tally and reporting (harness.c) ------------------------------------------------------ */

extern long checks_passed;
extern long checks_failed;
extern int verbose;
extern int interpreter_finalized;
extern long unraisable_count;

/* One check: a subject (what was done to which object) and the failures found about it. */
typedef struct {
    char subject[512];
    int failures;
} Check;

void check_begin(Check *c, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Records one failure of c and prints it (at most DETAIL_LINES_PER_TEST lines without -v). */
void check_fail(Check *c, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Counts the check once, as passed or failed. Returns 1 when it passed. */
int check_end(Check *c);

/* ---- Python helpers (harness.c) ----------------------------------------------------------- */

PyObject *take_exception(void);
void str_of(PyObject *obj, char *out, size_t n);
void repr_of(PyObject *obj, char *out, size_t n);
void describe_exception(PyObject *exc, char *out, size_t n);
void fail_with_exception(Check *c, const char *what);
void print_traceback(PyObject *exc);
PyObject *new_namespace(void);
PyObject *setup_namespace(void);
int run_code(PyObject *ns, const char *code, Check *c, const char *what);
PyObject *ns_get(PyObject *ns, const char *name, Check *c);
int get_ssize_attr(PyObject *o, const char *name, Py_ssize_t *out, Check *c);
int get_bool_attr(PyObject *o, const char *name, Check *c);
int get_str_attr(PyObject *o, const char *name, char *out, size_t n, Check *c);
int get_dims_attr(PyObject *o, const char *name, Py_ssize_t *out, int *n, Check *c);
void type_name_of(PyObject *o, char *out, size_t n);
void format_dims(char *out, size_t n, const Py_ssize_t *a, int len);

/* ---- Checks every test uses (harness.c) --------------------------------------------------- */

typedef struct {
    const char *name;
    int flags;
} NamedFlags;

void *poison_pointer(void);
int read_exports(PyObject *o, Py_ssize_t *out, Check *c);
void expect_raised(Check *c, PyObject *result, PyObject *exc_type, const char *message,
                   int prefix);
void expect_none(Check *c, PyObject *result, const char *what);
void expect_exports(Check *c, PyObject *o, Py_ssize_t want);
void expect_bool_attr(Check *c, PyObject *o, const char *name, int want);
int take_view(Check *c, PyObject *o, Py_buffer *v, int flags, const char *flags_name);
void expect_refused(Check *c, PyObject *o, int flags, const char *flags_name,
                    PyObject *exc_type, const char *message);

/* ---- The expectation table (table.c) ------------------------------------------------------ */

/* The table written by `python_tests/oracle.py c-table` (c_tests/README.md, "The expectation
 * table"): for each request test, each exporter it drives, each path and request, what the
 * oracle expects. */
extern const char *table_path; /* --table FILE */

typedef struct TableSubject TableSubject;
typedef struct TableRow TableRow;

/* The entry of `label` in `test`'s part of the table, marked as driven; NULL (reported to c)
 * when the table cannot be read or has no such exporter. */
const TableSubject *table_subject(const char *test, const char *label, Check *c);
/* Whether the table says the exporter counts its exports in an `exports` attribute. */
int table_subject_has_exports(const TableSubject *s);
/* The row of one request, marked as used; NULL when the table has none. */
const TableRow *table_row(const TableSubject *s, const char *path, int flags);
/* The tab-separated fields of a row after its key: fields[0] is "served" or "refused". */
int table_row_fields(const TableRow *r, const char ***fields);
/* One check: every row of s was used (a row no request matched is an extra row). */
void table_subject_done(const TableSubject *s);
/* One check: the table has exporters for `test`, and every one of them was driven. */
void table_test_done(const char *test);

/* ---- The request checker (requests.c) ----------------------------------------------------- */

/* An exporter's layout as its attributes describe it, with the contiguity computed from its
 * shape and strides (attributes and computation must agree). */
typedef struct {
    char type_name[128]; /* type(obj).__name__ */
    int ndim;            /* len(obj.shape) */
    Py_ssize_t shape[MAX_NDIM];
    Py_ssize_t strides[MAX_NDIM];
    char format[64];
    Py_ssize_t itemsize;
    Py_ssize_t nbytes;
    int readonly;
    int attr_c, attr_f, attr_any; /* obj.c_contiguous, f_contiguous, contiguous */
    int c, f, any;                /* the same, computed from shape, strides and itemsize */
} Layout;

/* The object under test and its entry in the expectation table. */
typedef struct {
    PyObject *obj; /* borrowed: kept alive by the test's namespace */
    const char *label;
    const TableSubject *entry;
    int has_exports; /* obj.exports counts live exports (a bufferkit exporter) */
    Layout layout;
    void *full_buf; /* buf of a PyBUF_FULL_RO view: the address of element (0, ..., 0) */
    PyObject *root; /* borrowed or NULL: for a View, its base, whose reference count (and
                     * exports, when root_has_exports) no request on obj may change */
    int root_has_exports;
} Subject;

/* The attributes of obj read into l (from memoryview(obj) unless from_attributes); -1 with
 * the failure reported to c. */
int read_layout(PyObject *o, int from_attributes, Layout *l, Check *c);
/* Fills the part of s every subject shares and looks s up in test's part of the table;
 * -1 (reported to c) when the table has no entry for it. */
int subject_begin(Subject *s, PyObject *obj, const char *label, const char *test, Check *c);
/* Contiguity attributes and nbytes against the layout. */
void check_layout_consistent(Check *c, const Layout *l);
/* One request to s->obj through PyObject_GetBuffer (via_slot 0) or the bf_getbuffer slot,
 * checked against its row of the table. One check in the tally. */
void check_request(const Subject *s, int flags, const char *flags_name, int via_slot);
/* Whether a subject was built: obj is not None; otherwise its construction error (err) is
 * reported as one failed check. */
int subject_built(const char *label, PyObject *obj, PyObject *err);
/* each(s), then the check that every row of s in the table was used. */
void drive_subject(const Subject *s, void (*each)(const Subject *s));
/* The 15 x 4 standard requests. */
void check_standard_requests(const Subject *s);
/* The malformed requests through both paths, then the standard ones. */
void check_invalid_then_standard(const Subject *s);

/* ---- The View namespace (views.c) -------------------------------------------------------- */

/* Runs the View tests' shared Python (VIEW_SETUP_PY: Buffer, View, SubView, inspect, filled,
 * items_at, mem_of, resizable, WBytes, raises, view_case, view_cases) and then `code` (may be
 * NULL) in ns; NULL (the failure counted) or the borrowed VIEW_CASES list. */
PyObject *setup_view_namespace(PyObject *ns, const char *code);
/* Clears and frees a View test's namespace, the Views before their bases. */
void drop_view_namespace(PyObject *ns);

/* ---- The tests ---------------------------------------------------------------------------- */

void test_buffer_request_matrix(void);
void test_buffer_invalid_flags(void);
void test_reference_exporters(void);
void test_buffer_lock(void);
void test_view_request_matrix(void);
void test_view_invalid_flags(void);
void test_view_refcounts_and_lock(void);
void test_finalize_with_live_exports(void);
void test_finalize_with_unreleased_view(void);

#endif /* BUFFERKIT_C_TESTS_HARNESS_H */
