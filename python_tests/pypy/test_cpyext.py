"""bufferkit through consumers every interpreter has: the part of the suite that runs on PyPy.

PyPy 3.11 (cpyext) ships no ``_testbuffer`` (the suite's oracle), no ``ctypes.pythonapi`` (its
raw ``Py_buffer`` reader) and no numpy wheel, so the main suite cannot run there; this file
needs none of them and no conftest (``pytest --noconftest python_tests/pypy``). It runs on
CPython too, in every ``make test`` row, so that what it asserts is checked against CPython's
behaviour as well. Each test states a rule of docs/semantics.md through ``memoryview``,
``bytes``, ``struct`` and file I/O.

Where PyPy 8's cpyext behaves differently from CPython, the test says so and pins what PyPy
does (``PYPY`` branches), so that a change on either side is noticed:
- ``memoryview.release()`` does not give a cpyext export back: the memoryview's collection
  does (``gc.collect()``);
- ``struct.unpack_from`` refuses a cpyext exporter ("a bytes-like object is required");
- ``bytes()`` and ``memoryview.tobytes()`` of a strided cpyext export read the memory as if it
  were contiguous (bufferkit's own ``tobytes()`` is right);
- PyPy dispatches ``__buffer__`` itself (its own PEP 688 support, as CPython 3.12+ does:
  consumers see the returned memoryview as ``view.obj``) and does not call
  ``__release_buffer__``; the wrapped memoryview is released when it is collected, so
  nothing stays locked;
- a Python subclass of a bufferkit type has bufferkit's ``tp_dealloc`` (CPython gives it
  ``subtype_dealloc``): bufferkit's module lookup walks on to the base (``View(Sub(3))``
  raised SystemError before).
"""

import gc
import io
import pickle
import struct
import sys

import pytest

import bufferkit
from bufferkit import Buffer, Exporter, View

PYPY = sys.implementation.name == 'pypy'


def release(m):
    """Gives a memoryview's export back: release(), and on PyPy the collection as well (the
    caller drops its own reference first)."""
    m.release()
    if PYPY:
        del m
        gc.collect()


def filled(n):
    b = Buffer(n)
    with memoryview(b) as m:
        m[:] = bytes(range(n))
    del m
    gc.collect()   # PyPy: the memoryview's export goes with its collection
    return b


def test_buffer_is_zeroed_and_writable_through_memoryview():
    b = Buffer(8)
    assert bytes(b) == bytes(8)
    with memoryview(b) as m:
        assert (m.format, m.itemsize, m.shape, m.readonly) == ('B', 1, (8,), False)
        m[2] = 7
    assert bytes(b)[2] == 7


def test_buffer_layouts_match_memoryview():
    b = Buffer((2, 3), 'i')
    with memoryview(b) as m:
        assert (m.format, m.itemsize, m.shape, m.strides) == ('i', 4, (2, 3), (12, 4))
        assert m.nbytes == b.nbytes == 24
    f = Buffer((2, 3), 'd', order='F')
    with memoryview(f) as m:
        assert m.strides == (8, 16)
        assert m.f_contiguous and not m.c_contiguous


def test_exports_are_counted_and_lock_the_buffer():
    b = Buffer(4)
    m = memoryview(b)
    assert b.exports == 1
    with pytest.raises(BufferError, match='cannot close: 1 exported buffer'):
        b.close()
    with pytest.raises(BufferError, match='cannot freeze: 1 exported buffer'):
        b.freeze()
    m.release()
    assert b.exports == (1 if PYPY else 0)   # PyPy: until the memoryview is collected
    del m
    gc.collect()
    assert b.exports == 0
    b.freeze()
    assert memoryview(b).readonly
    with pytest.raises(TypeError, match='read-only'):
        memoryview(b)[0:1] = b'x'
    gc.collect()
    b.close()
    with pytest.raises(ValueError, match='operation on closed Buffer'):
        memoryview(b)


def test_readinto_fills_a_buffer_in_place():
    b = Buffer(5)
    assert io.BytesIO(b'hello world').readinto(b) == 5
    assert bytes(b) == b'hello'
    assert struct.unpack_from('<2B', memoryview(b), 1) == (ord('e'), ord('l'))
    if PYPY:
        with pytest.raises(TypeError, match='bytes-like object is required'):
            struct.unpack_from('<2B', b, 1)
    else:
        assert struct.unpack_from('<2B', b, 1) == (ord('e'), ord('l'))


def test_view_slices_share_the_base_and_its_lock():
    base = filled(16)
    v = View(base)
    s = v[2:10:2]
    assert s.tobytes() == bytes(range(2, 10, 2))
    # PyPy reads a strided cpyext export as if it were contiguous
    assert bytes(s) == (bytes(range(2, 6)) if PYPY else bytes(range(2, 10, 2)))
    assert s.base is base and v.base is base
    assert base.exports == 1   # one export of the base for the whole family
    with pytest.raises(BufferError):
        base.close()
    gc.collect()   # PyPy: bytes(s) above held an export until its memoryview was collected
    v.release()
    assert s.tobytes() == bytes(range(2, 10, 2))
    with pytest.raises(BufferError):
        base.close()
    s.release()
    assert base.exports == 0
    base.close()


def test_view_relayout_is_bounds_checked():
    ba = bytearray(range(16))
    v = View(ba, format='h', shape=(2, 2), strides=(8, 2), offset=2)
    assert v.tolist() == [[struct.unpack_from('h', ba, 2)[0], struct.unpack_from('h', ba, 4)[0]],
                          [struct.unpack_from('h', ba, 10)[0], struct.unpack_from('h', ba, 12)[0]]]
    assert (v.shape, v.strides, v.offset) == ((2, 2), (8, 2), 2)
    gc.collect()   # PyPy: tolist()'s memoryview holds an export of v until collected
    with pytest.raises(ValueError):
        View(ba, format='i', shape=(5,))
    with pytest.raises(ValueError):
        View(ba, offset=17)
    v.release()


def test_view_locks_a_bytearray_base():
    ba = bytearray(8)
    v = View(ba)
    with pytest.raises(BufferError):
        ba.extend(b'x')
    v.release()
    ba.extend(b'x')
    assert len(ba) == 9


def test_released_view_refuses_everything_but_release():
    v = View(bytearray(4))
    v.release()
    v.release()
    assert v.released
    with pytest.raises(ValueError, match='released'):
        memoryview(v)
    with pytest.raises(ValueError, match='released'):
        v[1:]


class Wrapped(Exporter):
    def __init__(self, data):
        self.data = data
        self.released = 0

    def __buffer__(self, flags):
        return memoryview(self.data)

    def __release_buffer__(self, view):
        self.released += 1


def test_exporter_delegates_to_a_memoryview_and_is_told_of_the_release():
    w = Wrapped(bytearray(b'abc'))
    with memoryview(w) as m:
        assert bytes(m) == b'abc'
        m[0] = ord('x')
    assert w.data == bytearray(b'xbc')
    del m
    gc.collect()
    assert w.released == (0 if PYPY else 1)   # PyPy: never called (see the module doc)
    w.data.extend(b'!')                       # nothing stays locked either way
    v = View(w)
    assert v[1:].tobytes() == b'bc!'
    v.release()


def test_exporter_without_buffer_says_what_to_define():
    class Empty(Exporter):
        pass
    with pytest.raises(TypeError, match='does not define __buffer__'):
        memoryview(Empty())


def test_bad_arguments_are_typed_errors():
    with pytest.raises(TypeError):
        Buffer([1, 2, 3])
    with pytest.raises(ValueError):
        Buffer(-1)
    with pytest.raises(ValueError):
        Buffer(1, 'not a format')
    with pytest.raises(TypeError):
        View(42)


def test_equality_and_pickling_by_value():
    a = filled(6)
    b = Buffer.from_buffer_copy(a)
    assert a == b and a is not b
    c = pickle.loads(pickle.dumps(a, protocol=4))
    assert bytes(c) == bytes(a) and c.format == a.format


def test_views_of_subclass_instances():
    class Sub(Buffer):
        pass

    s = Sub(3)
    v = View(s)
    assert v.base is s and v.tobytes() == bytes(3)
    v.release()


def test_version_is_a_string():
    assert isinstance(bufferkit.__version__, str) and bufferkit.__version__
