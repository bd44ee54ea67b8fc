/*
 * finalize.c -- finalize_with_live_exports, finalize_with_unreleased_view: Py_FinalizeEx()
 * with Buffers and Views alive in __main__ and in garbage cycles, and C-held views released
 * before it or abandoned (c_tests/README.md, "Finalization").
 */

#include "harness.h"

#include <string.h>


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

/* The Buffers of FINALIZE_SETUP_PY: their export counts, and a C view of `held`. */
static void
check_buffers_before(PyObject *ns, int release_before_finalize)
{
    Check c;
    check_begin(&c, "finalization setup in __main__");
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
}

/* The Views of FINALIZE_SETUP_PY: their export counts, and a C view of the slice `gs`. */
static void
check_views_before(PyObject *ns, int release_before_finalize)
{
    Check c;
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
}

static void
finalize_scenario(int release_before_finalize)
{
    Check c;
    check_begin(&c, "finalization setup: running FINALIZE_SETUP_PY in __main__");
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
    check_buffers_before(ns, release_before_finalize);
    check_views_before(ns, release_before_finalize);

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

void
test_finalize_with_live_exports(void)
{
    finalize_scenario(1);
}

void
test_finalize_with_unreleased_view(void)
{
    finalize_scenario(0);
}
