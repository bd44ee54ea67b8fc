/*
 * view_lifetime.c -- view_refcounts_and_lock: what a View holds of its base, step by step
 * (c_tests/README.md, "View references and the lock").
 *
 * The steps share one namespace and one family of Views over the Buffer `b`; each step is one
 * function and one or more checks in the tally, run in order by the test.
 */

#include "harness.h"

#include <string.h>

/* The family's one export of b: every View, slice and View of a View made from View(b) shares
 * it (a HeldExport). */
#define N_FAMILY_EXPORTS 1

typedef struct {
    PyObject *ns;
    PyObject *b, *ba; /* strong references, taken by the test */
    PyObject *v;      /* borrowed from ns: View(b) */
    Py_ssize_t b_refs0, ba_refs0;
    Py_buffer held; /* a view C holds across steps */
    int have_held;
} Family;

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

/* View(b), its slices and the Views of them share one export of b, which locks b */
static void
one_export_per_family(Family *f)
{
    PyObject *ns = f->ns, *b = f->b;
    Check c;
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
    for (int i = 0; i < n_derived; i++) {
        check_begin(&c, "%.*s: shares the export of the root; base is the root", 
                    (int)strlen(derived[i].code) - 1, derived[i].code);
        if (step(&c, ns, derived[i].code) == 0) {
            expect_exports(&c, b, N_FAMILY_EXPORTS);
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
    check_begin(&c, "b locked by a family of Views (%d export): close() and freeze() refused", N_FAMILY_EXPORTS);
    char message[128];
    snprintf(message, sizeof message, "cannot close: %d exported buffer", N_FAMILY_EXPORTS);
    expect_raised(&c, PyObject_CallMethod(b, "close", NULL), PyExc_BufferError, message, 1);
    snprintf(message, sizeof message, "cannot freeze: %d exported buffer", N_FAMILY_EXPORTS);
    expect_raised(&c, PyObject_CallMethod(b, "freeze", NULL), PyExc_BufferError, message, 1);
    expect_exports(&c, b, N_FAMILY_EXPORTS);
    check_end(&c);
}

/* release() of a View while C holds a view of it, and of a slice while a memoryview holds it */
static void
release_while_exported(Family *f)
{
    PyObject *ns = f->ns, *b = f->b;
    Check c;
    PyObject *v = f->v = PyDict_GetItemString(ns, "v"); /* borrowed */
    check_begin(&c, "v.release() while C holds a view of v");
    if (v != NULL && take_view(&c, v, &f->held, PyBUF_FULL_RO, "PyBUF_FULL_RO") == 0) {
        f->have_held = 1;
        expect_exports(&c, v, 1);
        expect_eval_raises(&c, ns, "v.release()", PyExc_BufferError, NULL);
        expect_bool_attr(&c, v, "released", 0);
        expect_exports(&c, v, 1);
        expect_exports(&c, b, N_FAMILY_EXPORTS);
        expect_view_items(&c, ns, &f->held, "i", "b_items");
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
}

/* release() once the last export of the View is back */
static void
release_after_last_export(Family *f)
{
    PyObject *b = f->b, *v = f->v;
    Check c;
    check_begin(&c, "v.release() after the last export of v: b stays locked by the family, idempotent");
    if (f->have_held) {
        PyBuffer_Release(&f->held);
        expect_exports(&c, v, 0);
        expect_exports(&c, b, N_FAMILY_EXPORTS);
        expect_none(&c, PyObject_CallMethod(v, "release", NULL), "v.release()");
        expect_bool_attr(&c, v, "released", 1);
        expect_exports(&c, b, N_FAMILY_EXPORTS);   /* s1, s2, vv, vs, vr share the export */
        expect_none(&c, PyObject_CallMethod(v, "release", NULL), "v.release() again");
        expect_bool_attr(&c, v, "released", 1);
        expect_exports(&c, b, N_FAMILY_EXPORTS);
        expect_exports(&c, v, 0);
    }
    check_end(&c);
}

/* a released View refuses requests and operations */
static void
released_view_refuses(Family *f)
{
    PyObject *ns = f->ns, *b = f->b, *v = f->v;
    Check c;
    check_begin(&c, "a released View: requests and operations raise ValueError");
    if (f->have_held) {
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
        expect_exports(&c, b, N_FAMILY_EXPORTS);
        /* the Views made from v share the export: unaffected */
        expect_eval(&c, ns, "[x.tolist() for x in (s1, s2, vv, vs)]",
                    "[b_items[1:3], [r[::2] for r in b_items[1:3]], b_items, "
                    "[r[::2] for r in b_items[1:3]]]");
        expect_eval(&c, ns, "vr.tolist()", "list(mem_of(b))[4:]");
    }
    check_end(&c);
}

/* with View(b) releases at exit; a slice whose last reference is a C view */
static void
with_and_c_held_slice(Family *f)
{
    PyObject *ns = f->ns, *b = f->b;
    Check c;
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
    if (s2 != NULL && take_view(&c, s2, &f->held, PyBUF_STRIDED_RO, "PyBUF_STRIDED_RO") == 0) {
        if (step(&c, ns, "del s2, vs\n") == 0) {
            expect_exports(&c, b, N_FAMILY_EXPORTS); /* s1, vv, vr and the C-held s2 share it */
            expect_view_items(&c, ns, &f->held, "i", "[r[::2] for r in b_items[1:3]]");
        }
        PyBuffer_Release(&f->held);
        expect_exports(&c, b, N_FAMILY_EXPORTS);
    }
    check_end(&c);
}

/* the last reference gone (also in a cycle, also after failed constructions): b unlocked */
static void
back_to_baseline(Family *f)
{
    PyObject *ns = f->ns, *b = f->b;
    Check c;
    check_begin(&c, "the last reference to every View gone: b back to its baseline");
    if (step(&c, ns, "del v, s1, vv, vr, w\n") == 0) {
        expect_exports(&c, b, 0);
        expect_refcount(&c, b, f->b_refs0, "b");
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
        expect_refcount(&c, b, f->b_refs0, "b");
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
        expect_refcount(&c, b, f->b_refs0, "b");
    }
    check_end(&c);

    check_begin(&c, "b unlocked: close() succeeds");
    expect_none(&c, PyObject_CallMethod(b, "close", NULL), "b.close()");
    expect_bool_attr(&c, b, "closed", 1);
    expect_refcount(&c, b, f->b_refs0, "b");
    check_end(&c);
}

/* a bytearray base is locked by each View, slice and View of a slice */
static void
bytearray_base(Family *f)
{
    PyObject *ns = f->ns, *ba = f->ba;
    Check c;
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
        expect_refcount(&c, ba, f->ba_refs0, "ba");
    }
    check_end(&c);
}

/* a View that alone keeps its base alive */
static void
view_outlives_base_references(Family *f)
{
    PyObject *ns = f->ns;
    Check c;
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
        if (o_sl != NULL && take_view(&c, o_sl, &f->held, PyBUF_FULL_RO, "PyBUF_FULL_RO") == 0) {
            step(&c, ns, "del o_sl\ngc.collect()\n");
            expect_eval(&c, ns, "o_root() is not None", "True");
            expect_view_items(&c, ns, &f->held, "B", "list(range(0, 32, 4))");
            PyBuffer_Release(&f->held); /* the last reference to the slice, and so to the root */
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
}

/* A View of a memoryview in a garbage cycle */
static void
memoryview_in_cycle(Family *f)
{
    /* A View of a memoryview in a garbage cycle: the collector may clear the memoryview while
     * the View still holds its export. Only interpreters with the fix of CPython gh-77894
     * (3.12.7, 3.13.0) survive that; bufferkit's part is to give the export back in tp_clear. */
#if PY_VERSION_HEX >= 0x030C07F0
    PyObject *ns = f->ns;
    Check c;
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
    (void)f;
    printf("note: not testing a View of a memoryview in a garbage cycle: this CPython (before "
           "3.12.7) has gh-77894 and may crash when the collector clears the memoryview first\n");
#endif
}

void
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
    Family f = {.ns = ns, .b = ns_get(ns, "b", &c), .ba = ns_get(ns, "ba", &c)};
    if (!check_end(&c)) {
        Py_DECREF(ns);
        return;
    }
    Py_INCREF(f.b);
    Py_INCREF(f.ba);
    f.b_refs0 = Py_REFCNT(f.b);
    f.ba_refs0 = Py_REFCNT(f.ba);
    one_export_per_family(&f);
    release_while_exported(&f);
    release_after_last_export(&f);
    released_view_refuses(&f);
    with_and_c_held_slice(&f);
    back_to_baseline(&f);
    bytearray_base(&f);
    view_outlives_base_references(&f);
    memoryview_in_cycle(&f);
    Py_DECREF(f.b);
    Py_DECREF(f.ba);
    drop_view_namespace(ns);
}
