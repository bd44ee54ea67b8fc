"""The call paths of issue 15: `View(...)` and `Buffer(...)` through `tp_vectorcall` on CPython
3.14+ and through `tp_new` everywhere (a subclass is always called through `tp_new`: CPython
never inherits `tp_vectorcall`), and `View.cast` as `METH_FASTCALL | METH_KEYWORDS`.

Each path has a fast argument matching and falls back to CPython's own parser for anything
else; both must give the same objects and the same errors. The reference for each call is
the same call on a trivial subclass, which takes `tp_new` (or, for `cast`, the same arguments
through `View(v, format=..., shape=...)`).
"""

import ctypes
import sys

import pytest

from bufferkit import Buffer, View

Py_tp_vectorcall = 82  # Include/typeslots.h (3.14+)


class SubView(View):
    pass


class SubBuffer(Buffer):
    pass


def outcome(call):
    """What a call gives: the layout of its object, or its exception's type and message."""
    try:
        obj = call()
    except Exception as e:  # noqa: BLE001 - the exception is the outcome compared
        return type(e), str(e).replace("SubView", "View").replace("SubBuffer", "Buffer")
    with memoryview(obj) as m:
        return (m.format, m.shape, m.strides, m.readonly, m.tobytes())


def type_slot(tp, slot):
    get = ctypes.pythonapi.PyType_GetSlot
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_int]
    return get(tp, slot)


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="reads a type slot through ctypes.pythonapi")
@pytest.mark.skipif(sys.version_info < (3, 14), reason="Py_tp_vectorcall is 3.14+ (PyType_GetSlot refuses it before)")
@pytest.mark.parametrize("tp", [View, Buffer])
def test_vectorcall_is_given_on_3_14_and_never_inherited(tp):
    # The one abi3 module also runs on 3.11-3.13, which refuse the slot in a spec.
    assert type_slot(tp, Py_tp_vectorcall) is not None
    # A subclass is made through tp_new (and runs its __init__).
    assert type_slot(SubView if tp is View else SubBuffer, Py_tp_vectorcall) is None


BA = bytearray(range(16))

VIEW_CALLS = [
    ((BA,), {}),
    ((), {"base": BA}),
    ((BA,), {"format": "i"}),
    ((BA,), {"format": "i", "shape": (2, 2)}),
    ((BA,), {"offset": 4, "format": "B", "shape": (2, 3), "strides": (6, 2)}),
    ((BA,), {"readonly": True}),
    ((BA,), {"readonly": False, "offset": 3}),
    ((bytes(8),), {"readonly": None}),
    ((bytes(8),), {"readonly": False}),
    ((), {}),
    ((BA, 4), {}),
    ((BA,), {"base": BA}),
    ((BA,), {"bad": 1}),
    ((BA,), {"format": "i", "format2": "i"}),
    ((42,), {}),
    ((BA,), {"format": 4}),
    ((BA,), {"shape": (32,)}),
    ((BA,), {"strides": (1,)}),
]


@pytest.mark.parametrize("args, kwargs", VIEW_CALLS)
def test_view_call_paths_agree(args, kwargs):
    direct = outcome(lambda: View(*args, **kwargs))
    assert direct == outcome(lambda: SubView(*args, **kwargs))
    # type.__call__ is tp_call (tuple and dict): the tp_new path of View itself.
    assert direct == outcome(lambda: type.__call__(View, *args, **kwargs))


BUFFER_CALLS = [
    ((16,), {}),
    ((), {"shape": 16}),
    (((2, 3), "d"), {}),
    (((2, 3),), {"format": "<i", "order": "F"}),
    ((4,), {"readonly": True}),
    ((4,), {"readonly": 0}),
    ((), {}),
    ((4, "B", "C"), {}),
    ((4,), {"shape": 4}),
    ((4,), {"nope": 1}),
    (([1, 2],), {}),
    ((-1,), {}),
    ((4,), {"order": "X"}),
]


@pytest.mark.parametrize("args, kwargs", BUFFER_CALLS)
def test_buffer_call_paths_agree(args, kwargs):
    direct = outcome(lambda: Buffer(*args, **kwargs))
    assert direct == outcome(lambda: SubBuffer(*args, **kwargs))
    assert direct == outcome(lambda: type.__call__(Buffer, *args, **kwargs))


def test_subclass_init_runs_and_sees_the_arguments():
    seen = []

    class Init(View):
        def __init__(self, base, **kwargs):
            seen.append((base, kwargs))

    v = Init(BA, format="i")
    assert type(v) is Init and v.format == "i" and seen == [(BA, {"format": "i"})]


CAST_CALLS = [
    (("i",), {}),
    ((), {"format": "i"}),
    (("i", (2, 2)), {}),
    (("i",), {"shape": (2, 2)}),
    ((), {"format": "B", "shape": [4, 4]}),
    (("B", None), {}),
    ((), {}),
    (("B", (16,), 1), {}),
    (("B",), {"format": "B"}),
    (("B",), {"strides": (1,)}),
    ((4,), {}),
    (("d", (3,)), {}),
]


def cast_signature(format, shape=None):
    return format, shape


@pytest.mark.parametrize("args, kwargs", CAST_CALLS)
def test_cast_fast_and_parsed_paths_agree(args, kwargs):
    v = View(bytearray(range(16)))
    got = outcome(lambda: v.cast(*args, **kwargs))
    try:
        fmt, shape = cast_signature(*args, **kwargs)
    except TypeError:
        # Arguments that do not fit the signature: CPython's parser's own TypeError.
        assert got[0] is TypeError and "cast()" in got[1]
    else:
        # Anything that fits is View(v, format=, shape=): the same View or the same refusal.
        assert got == outcome(lambda: View(v, format=fmt, shape=shape))
    assert v.exports == 0 and not v.released


@pytest.mark.parametrize("cls", [View, SubView])
def test_slices_and_casts_are_views_of_the_module_type(cls):
    # A slice or cast is made with the module's View type, which the shared export keeps (no
    # module-state lookup), for a subclass instance too: memoryview's slices are memoryviews.
    v = cls(bytearray(range(16)))
    s, c, t = v[2:10:2], v.cast("i"), v[1:][::3]
    assert (type(s), type(c), type(t)) == (View, View, View)
    assert bytes(s) == bytes(range(2, 10, 2)) and c.shape == (4,) and bytes(t) == bytes(range(1, 16, 3))
    assert s.base is c.base is v.base


class Name(str):
    """A keyword name whose hash and comparison are Python code."""

    def __hash__(self):
        return str.__hash__(self)

    def __eq__(self, other):
        return str.__eq__(self, other)


@pytest.mark.parametrize("call", [
    lambda k: View(BA, **{k("format"): "i", k("shape"): (2, 2)}),
    lambda k: View(BA).cast(**{k("format"): "i", k("shape"): (2, 2)}),
    lambda k: Buffer(**{k("shape"): (2, 2), k("format"): "i"}),
    lambda k: View(BA, **{k("nope"): 1}),
])
def test_keyword_names_of_a_str_subclass_match_as_their_text(call):
    # The fast matching reads a name's text; the parser's path hashes and compares it, which
    # runs the subclass's Python code.
    assert outcome(lambda: call(Name)) == outcome(lambda: call(str))
