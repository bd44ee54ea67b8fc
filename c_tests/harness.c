/*
 * harness.c -- bufferkit's C-level test program: the tally, the helpers every test uses, the
 * test table and the runner.
 *
 * One binary embeds the interpreter it was linked against and holds a table of named tests, in
 * the manner of CPython's Programs/_testembed.c. The tests build objects with PyRun_String and
 * then act as a C extension would on the consumer side of the buffer protocol (PEP 3118):
 * PyObject_GetBuffer, PyBuffer_Release, and the bf_getbuffer slot itself. The request tests take
 * the expected outcome of every request from the table python_tests/oracle.py writes (the
 * oracle of the Python suite, written from docs/semantics.md): no rule of the page is written
 * here. The reference exporters of the standard library (bytearray, bytes, array.array,
 * _testbuffer.ndarray) go through the same table, to show that the oracle itself is right.
 *
 *   embed --table FILE [-v] [TEST...]   run the named tests, or every test when none is named
 *   embed --list                        print every test name, one a line
 *   embed --help                        usage and the list of tests with what each proves
 *
 * Output: a "FAIL <subject>: <detail>" line for every field that differs from the table
 * (subject = the object, the request flags and the path taken), "PASS <subject>" lines with -v,
 * a summary line per test, and as the last line "N passed, M failed", where one check is one
 * request (or one step of a scenario) with all of its fields. The exit status is 0 only when
 * nothing failed.
 *
 * Tests that end the interpreter (finalize_*) run last; when more than one test is selected,
 * each of them runs in a child process of its own (this binary, re-executed with its name).
 */

#include "harness.h"

#include <errno.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#ifndef C_TESTS_DIR
#error "C_TESTS_DIR must name the c_tests directory (subjects.py is imported from there)"
#endif

/* ------------------------------------------------------------------------------------------ */
/* Tally and reporting                                                                        */

long checks_passed;
long checks_failed;
int verbose;
static int detail_lines_left = DETAIL_LINES_PER_TEST;
int interpreter_finalized;
long unraisable_count;



void
check_begin(Check *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->subject, sizeof c->subject, fmt, ap);
    va_end(ap);
    c->failures = 0;
}

void
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
int
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
PyObject *
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
void
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
void
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
void
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
void
fail_with_exception(Check *c, const char *what)
{
    PyObject *exc = take_exception();
    char desc[600];
    describe_exception(exc, desc, sizeof desc);
    check_fail(c, "%s raised %s", what, desc);
    Py_XDECREF(exc);
}

/* Prints the traceback of exc to stderr (best effort, for setup code that failed). */
void
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
PyObject *
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
PyObject *
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
int
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
PyObject *
ns_get(PyObject *ns, const char *name, Check *c)
{
    PyObject *v = PyDict_GetItemString(ns, name);
    if (v == NULL) {
        check_fail(c, "the setup code did not define %s", name);
    }
    return v;
}

/* Reads an int attribute; -1 with the failure reported to c. */
int
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
int
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
int
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
int
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
void
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
void
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
/* Checks every test uses                                                                     */

/* An address no exporter writes: what every pointer of a poisoned Py_buffer holds. */
void *
poison_pointer(void)
{
    void *p;
    memset(&p, POISON_BYTE, sizeof p);
    return p;
}

int
read_exports(PyObject *o, Py_ssize_t *out, Check *c)
{
    return get_ssize_attr(o, "exports", out, c);
}

/* Expects `result` (a call's return) to be NULL with exc_type whose message equals `message`
 * (or starts with it, when prefix). Consumes result and the exception. */
void
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
void
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

void
expect_exports(Check *c, PyObject *o, Py_ssize_t want)
{
    Py_ssize_t got;
    if (read_exports(o, &got, c) == 0 && got != want) {
        check_fail(c, "exports is %zd, expected %zd", got, want);
    }
}

void
expect_bool_attr(Check *c, PyObject *o, const char *name, int want)
{
    int got = get_bool_attr(o, name, c);
    if (got >= 0 && got != want) {
        check_fail(c, "%s is %s, expected %s", name, got ? "True" : "False",
                   want ? "True" : "False");
    }
}

/* Takes a view that must be served; returns 0 when it was (view.obj == o). */
int
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
void
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
            "usage: %s --table FILE [-v] [TEST...]   run the named tests (every test when "
            "none is named)\n"
            "       %s --list                        print the test names, one a line\n"
            "\n"
            "  --table FILE  the expectation table of the request tests, as\n"
            "                `python python_tests/oracle.py c-table` writes it\n"
            "  -v            print a PASS line for every check and every FAIL line\n"
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
    char *argv[6];
    int argc = 0;
    argv[argc++] = (char *)prog;
    if (verbose) {
        argv[argc++] = "-v";
    }
    if (table_path != NULL) {
        argv[argc++] = "--table";
        argv[argc++] = (char *)table_path;
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

/* Installs the unraisable hook and puts c_tests/ (subjects.py) first on sys.path. */
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
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    PyObject *dir = PyUnicode_FromString(C_TESTS_DIR);
    if (path == NULL || dir == NULL || PyList_Insert(path, 0, dir) < 0) {
        fail_with_exception(&c, "sys.path.insert(0, C_TESTS_DIR)");
    }
    Py_XDECREF(dir);
    printf("note: %s; expectation table %s\n", Py_GetVersion(),
           table_path != NULL ? table_path : "(none: the request tests fail)");
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
        if (strcmp(argv[i], "--table") == 0) {
            if (i + 1 == argc) {
                fprintf(stderr, "%s: --table needs a file\n\n", prog);
                usage(stderr, prog);
                return 2;
            }
            table_path = argv[++i];
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
