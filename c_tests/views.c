/*
 * views.c -- the request tests on Views: view_request_matrix and view_invalid_flags, and the
 * namespace every View test starts from (view_lifetime.c uses it too).
 *
 * Each View is built from c_tests/subjects.py (its roots, the expression that makes it, and
 * what it must be: shape, strides, format, readonly, offset, items, stated without reading the
 * View) and checked against those facts, its base and the address rule before the requests,
 * which check_request() (requests.c) compares with the expectation table.
 */

#include "harness.h"

#include <string.h>

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
    "import subjects\n"
    "VIEW_CASES = []\n"
    "def view_case(expr, root, shape, strides, fmt, readonly, offset, items):\n"
    "    try:\n"
    "        obj, err = eval(expr), None\n"
    "    except Exception as e:\n"
    "        obj, err = None, '%s: %s' % (type(e).__name__, e)\n"
    "    VIEW_CASES.append((expr, obj, err, root, tuple(shape), tuple(strides), fmt,\n"
    "                       struct.calcsize(fmt), readonly, offset, items))\n"
    "def view_cases(test):\n"
    "    exec(subjects.VIEW_ROOTS[test], globals())\n"
    "    for c in subjects.VIEW_CASES[test]:\n"
    "        view_case(c.expr, eval(c.root), c.shape, c.strides, c.format, c.readonly,\n"
    "                  c.offset, eval(c.items))\n";

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
PyObject *
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

/* The layout attributes of a View against how the test built it. */
static void
check_view_layout(Check *c, const Layout *l, const ViewFacts *f, PyObject *obj)
{
    char a[512], b[512], wa[512], wb[512];
    int same = l->ndim == f->ndim;
    for (int i = 0; same && i < l->ndim; i++) {
        same = l->shape[i] == f->shape[i] && l->strides[i] == f->strides[i];
    }
    if (!same) {
        format_dims(a, sizeof a, l->shape, l->ndim);
        format_dims(b, sizeof b, l->strides, l->ndim);
        format_dims(wa, sizeof wa, f->shape, f->ndim);
        format_dims(wb, sizeof wb, f->strides, f->ndim);
        check_fail(c, "shape, strides are %s, %s; expected %s, %s", a, b, wa, wb);
    }
    Py_ssize_t ndim;
    if (get_ssize_attr(obj, "ndim", &ndim, c) == 0 && ndim != f->ndim) {
        check_fail(c, "ndim is %zd, expected %d", ndim, f->ndim);
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
}

/* The state of a fresh View: exports, released, suboffsets, its items. */
static void
check_view_state(Check *c, const ViewFacts *f, PyObject *obj)
{
    Py_ssize_t exports;
    if (read_exports(obj, &exports, c) == 0 && exports != 0) {
        check_fail(c, "exports is %zd on a fresh View, expected 0", exports);
    }
    expect_bool_attr(c, obj, "released", 0);
    PyObject *sub = PyObject_GetAttrString(obj, "suboffsets");
    if (sub == NULL) {
        fail_with_exception(c, "getattr(obj, 'suboffsets')");
    }
    else if (!PyTuple_Check(sub) || PyTuple_GET_SIZE(sub) != 0) {
        char a[512];
        repr_of(sub, a, sizeof a);
        check_fail(c, "suboffsets is %s, expected ()", a);
    }
    Py_XDECREF(sub);
    expect_attr_equals(c, obj, "tolist", 1, f->items);
}

/* view.base is the root, and never a View; returns whether the root is a Buffer (-1: unknown). */
static int
check_view_base(Check *c, const ViewFacts *f, PyObject *obj)
{
    char a[512], b[512];
    PyObject *base = PyObject_GetAttrString(obj, "base");
    if (base == NULL) {
        fail_with_exception(c, "getattr(obj, 'base')");
    }
    else {
        if (base != f->root) {
            repr_of(base, a, sizeof a);
            repr_of(f->root, b, sizeof b);
            check_fail(c, "base is %s, expected the root %s", a, b);
        }
        int is_view = PyObject_IsInstance(base, view_ns_view_type);
        if (is_view < 0) {
            fail_with_exception(c, "isinstance(view.base, View)");
        }
        else if (is_view) {
            check_fail(c, "base is a View (the root is never a View)");
        }
        Py_DECREF(base);
    }
    int is_buffer = PyObject_IsInstance(f->root, view_ns_buffer_type);
    if (is_buffer < 0) {
        fail_with_exception(c, "isinstance(root, Buffer)");
    }
    return is_buffer;
}

/* The address rule, with both views taken here from C: buf of the View's PyBUF_FULL_RO view ==
 * lowest_address(PyBUF_FULL_RO view of view.base) + view.offset, and both bufs equal what
 * bufferkit.inspect() reports. Sets s->full_buf. */
static void
check_view_address(Check *c, Subject *s, const ViewFacts *f)
{
    Py_ssize_t offset;
    int offset_ok = get_ssize_attr(s->obj, "offset", &offset, c) == 0;
    if (offset_ok && f->offset_known && offset != f->offset) {
        check_fail(c, "offset is %zd, expected %zd", offset, f->offset);
    }
    Py_buffer rv, vv;
    if (take_view(c, f->root, &rv, PyBUF_FULL_RO, "PyBUF_FULL_RO of view.base") < 0) {
        return;
    }
    if (take_view(c, s->obj, &vv, PyBUF_FULL_RO, "PyBUF_FULL_RO of the View") == 0) {
        s->full_buf = vv.buf;
        intptr_t lowest = lowest_address(&rv);
        if (offset_ok && (intptr_t)vv.buf != lowest + offset) {
            check_fail(c, "buf is %p, expected %p = lowest byte of view.base's buffer %p "
                       "(its buf %p) + offset %zd", vv.buf, (void *)(lowest + offset),
                       (void *)lowest, rv.buf, offset);
        }
        intptr_t ib = inspect_buf(s->obj, c, "bufferkit.inspect(view)");
        if (ib != 0 && ib != (intptr_t)vv.buf) {
            check_fail(c, "bufferkit.inspect(view).buf is %p, the C request got %p", (void *)ib,
                       vv.buf);
        }
        ib = inspect_buf(f->root, c, "bufferkit.inspect(view.base)");
        if (ib != 0 && ib != (intptr_t)rv.buf) {
            check_fail(c, "bufferkit.inspect(view.base).buf is %p, the C request got %p",
                       (void *)ib, rv.buf);
        }
        PyBuffer_Release(&vv);
    }
    PyBuffer_Release(&rv);
}

/* Looks the View up in the table and checks its attributes against facts, its base against the
 * root, and the address rule. One check in the tally; -1 when the View cannot be tested
 * further. */
static int
view_subject_init(Subject *s, PyObject *obj, const char *label, const char *test,
                  const ViewFacts *f)
{
    Check c;
    check_begin(&c, "%s: attributes, base, offset, items, address of element 0", label);
    if (subject_begin(s, obj, label, test, &c) < 0 ||
        read_layout(obj, 1, &s->layout, &c) < 0) {
        check_end(&c);
        return -1;
    }
    check_layout_consistent(&c, &s->layout);
    check_view_layout(&c, &s->layout, f, obj);
    check_view_state(&c, f, obj);
    int is_buffer = check_view_base(&c, f, obj);
    check_view_address(&c, s, f);
    s->root = f->root;
    s->root_has_exports = is_buffer == 1;
    return check_end(&c) && s->full_buf != NULL ? 0 : -1;
}

/* Runs `each` on every View of cases; construction errors are failures. */
static void
for_each_view_case(PyObject *cases, const char *test, void (*each)(const Subject *s))
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
        if (!subject_built(label, obj, err)) {
            continue;
        }
        Subject s;
        if (view_subject_init(&s, obj, label, test, &facts) == 0) {
            drive_subject(&s, each);
        }
    }
}

/* Frees a View test's namespace without leaving it to the collector: the Views go first, then
 * their bases. The namespace is a reference cycle (its functions' __globals__), and when the
 * collector breaks a cycle that holds a memoryview together with a View exporting it, CPython
 * before 3.12.7 may clear the memoryview first and crash (CPython gh-77894; see
 * view_refcounts_and_lock for the test of that case where the interpreter has the fix). */
void
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

/* A View request test: the Views subjects.py lists for `test`, each() on every one, then the
 * check that the test used the table's rows exactly. */
static void
run_view_cases(const char *test, void (*each)(const Subject *s))
{
    PyObject *ns = setup_namespace();
    if (ns == NULL) {
        return;
    }
    char code[128];
    snprintf(code, sizeof code, "view_cases('%s')\n", test);
    PyObject *cases = setup_view_namespace(ns, code);
    if (cases != NULL) {
        for_each_view_case(cases, test, each);
    }
    table_test_done(test);
    drop_view_namespace(ns);
}

/* ------------------------------------------------------------------------------------------ */
/* Tests: view_request_matrix, view_invalid_flags                                             */

void
test_view_request_matrix(void)
{
    run_view_cases("view_request_matrix", check_standard_requests);
}

void
test_view_invalid_flags(void)
{
    run_view_cases("view_invalid_flags", check_invalid_then_standard);
}
