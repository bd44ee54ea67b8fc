"""bufferkit.View and bufferkit.inspect against issue 3 and docs/semantics.md.

A View follows the request rules of Buffer (type name ``View``), so every export is judged by
the oracle and verify() of conftest.py, and compared with a ``_testbuffer.ndarray`` built over
the same layout (the reference exporter).  The View-specific rules come from the issue and
``help(bufferkit.View)``:

* no layout arguments: the base's layout is re-exported unchanged;
* layout arguments (offset/format/shape/strides): the base must be contiguous; ``offset`` is in
  bytes from the start of the base's block and is where element (0, ..., 0) lives; a layout is
  accepted only if every byte of every element lies inside the base (overflow-checked), and
  refusals are ValueError (OverflowError for a number that does not fit Py_ssize_t) naming the
  dimension or the offset at fault;
* slices are Views of the same root, never chained; the base stays locked while a View lives.
"""

import array
import ctypes
import gc
import mmap
import pickle
import random
import re
import struct
import sys
import weakref
import zlib
from typing import NamedTuple, Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import _testbuffer
from _testbuffer import (
    ND_FORTRAN, ND_PIL, ND_WRITABLE, PyBUF_ANY_CONTIGUOUS, PyBUF_C_CONTIGUOUS, PyBUF_CONTIG,
    PyBUF_FORMAT, PyBUF_FULL, PyBUF_FULL_RO, PyBUF_INDIRECT, PyBUF_ND, PyBUF_SIMPLE,
    PyBUF_STRIDED, PyBUF_STRIDES, PyBUF_WRITABLE,
)

import bufferkit
from bufferkit import Buffer, View
from conftest import (
    ATTRS, BUFFERKIT, FORMATS, REQUESTS, Layout, RawView, c_indices, check_each,
    PyBuffer, check_like_memoryview, contiguous_strides, flat, in_use, raises_message,
    format_shape_cases, layout_variants, nest, pack_item, product, random_items, raw_refusal,
    reference_ndarray, unpack_item, verify, verify_all, write_contents, make_buffer,
)

RELEASED = 'operation on released View'
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
#: A refusal message names the dimension or the offset at fault (issue 3, "Bounds").
NAMES_CULPRIT = re.compile(r'dimension \d+|shape\[\d+\]|strides\[\d+\]|offset')


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def element_offsets(shape, strides, offset):
    """The byte offset of every element, in C order."""
    return [offset + sum(i * s for i, s in zip(index, strides)) for index in c_indices(shape)]


def memory_layout(memory, fmt, shape, strides, offset, readonly=False):
    """The Layout of ``fmt``/``shape``/``strides`` with element (0, ..., 0) at ``offset`` of
    ``memory``: the items are what ``struct`` reads at each element's bytes."""
    itemsize = struct.calcsize(fmt)
    shape, strides = tuple(shape), tuple(strides)
    flat = [unpack_item(fmt, bytes(memory[a:a + itemsize]))
            for a in element_offsets(shape, strides, offset)]
    return Layout(fmt, shape, nest(flat, shape), strides=strides, offset=offset,
                  readonly=readonly)


def fits(length, itemsize, shape, strides, offset):
    """The bounds rule: every byte of every element lies in [0, length); an empty layout
    addresses nothing and needs 0 <= offset <= length."""
    if product(shape) == 0:
        return 0 <= offset <= length
    lo = offset + sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
    hi = offset + sum((n - 1) * s for n, s in zip(shape, strides) if s > 0) + itemsize
    return lo >= 0 and hi <= length


def base_layout(obj):
    """What ``obj`` exports for PyBUF_FULL_RO, as a Layout (offset 0: the first element)."""
    nd = _testbuffer.ndarray(obj, getbuf=PyBUF_FULL_RO)
    fmt = nd.format or 'B'
    shape = tuple(nd.shape)
    strides = tuple(nd.strides) or contiguous_strides(shape, nd.itemsize, 'C')  # NULL: C
    return Layout(fmt, shape, nd.tolist(), strides=strides, readonly=bool(nd.readonly))


def address_of(obj):
    """Address of element (0, ..., 0) of obj's PyBUF_FULL_RO export (None for NULL)."""
    with RawView(obj, PyBUF_FULL_RO) as view:
        return view.buf


def is_locked(ba):
    """Whether a bytearray refuses to resize (someone holds an export)."""
    try:
        ba.append(0)
    except BufferError:
        return True
    ba.pop()
    return False


def check_released(v):
    """After release(): everything but ``released``, ``exports`` and repr raises."""
    assert v.released is True
    assert v.exports == 0
    for name in ATTRS + ('base', 'offset'):
        assert raises_message(ValueError, getattr, v, name) == RELEASED, name
    for fn, args in [(v.tobytes, ()), (v.tobytes, ('F',)), (v.tolist, ()),
                     (v.__getitem__, (slice(None),)), (len, (v,)), (View, (v,)),
                     (v.__enter__, ()), (memoryview, (v,)), (bytes, (v,)),
                     (bufferkit.inspect, (v,)), (Buffer.from_buffer_copy, (v,))]:
        assert raises_message(ValueError, fn, *args) == RELEASED, fn
    for flags in (PyBUF_SIMPLE, PyBUF_FULL_RO, PyBUF_FULL, PyBUF_CONTIG):
        assert raises_message(ValueError, _testbuffer.ndarray, v, getbuf=flags) == RELEASED
        exc, obj_after = raw_refusal(v, flags)
        assert type(exc) is ValueError and str(exc) == RELEASED and obj_after is None
    assert 'released' in repr(v)


# --------------------------------------------------------------------------------------------
# The request matrix: packed layouts (conftest's table of test_ndarray_getbuf's structures)
# --------------------------------------------------------------------------------------------

def packed_view(layout, how):
    """A View showing the packed ``layout``, made in one of several ways."""
    fmt, shape = layout.format, layout.shape
    memory = layout.tobytes(layout.order)
    if how == 'ndarray':           # re-export of the reference exporter
        return View(reference_ndarray(layout))
    if how == 'buffer':            # re-export of a Buffer
        return View(make_buffer(layout))
    if how == 'view-of-view':      # a View of a temporary View of an ndarray
        return View(View(reference_ndarray(layout)))
    if how == 'bytes':             # layout arguments; read-only through the base
        base = bytes(memory) if layout.readonly else bytearray(memory)
        return View(base, format=fmt, shape=shape, strides=layout.strides)
    if how == 'readonly-arg':      # layout arguments; read-only through readonly=True
        strides = None if layout.order == 'C' else layout.strides  # default: C order
        return View(bytearray(memory), format=fmt, shape=shape, strides=strides,
                    readonly=layout.readonly or None)
    raise AssertionError(how)


PACKED_HOWS = ('ndarray', 'bytes', 'readonly-arg', 'buffer', 'view-of-view')


@pytest.mark.parametrize('fmt, shape', format_shape_cases())
def test_request_matrix_packed(fmt, shape):
    """Every request on Views of the C/F, writable/read-only layouts of one format and shape,
    each View made in two of the ways above (rotating, so every way meets every layout kind
    across the table), compared with _testbuffer.ndarray over the same layout."""
    cases = []
    for i, layout in enumerate(layout_variants(fmt, shape)):
        start = zlib.crc32(repr((fmt, shape)).encode()) % len(PACKED_HOWS)
        for k in (0, 1):
            cases.append((layout, PACKED_HOWS[(start + 2 * k + i) % len(PACKED_HOWS)]))

    def check(case):
        layout, how = case
        v = packed_view(layout, how)
        assert (v.format, v.shape, v.strides) == (layout.format, layout.shape, layout.strides)
        assert v.readonly is layout.readonly
        assert verify_all(v, layout, BUFFERKIT, reference=reference_ndarray(layout)) > 0
        assert v.exports == 0
    check_each(cases, check)


# --------------------------------------------------------------------------------------------
# The request matrix: CPython's test_ndarray_getbuf structures (offsets, negative strides)
# --------------------------------------------------------------------------------------------

#: (shape, strides in items, offset in items), as in CPython's test_ndarray_getbuf.
GETBUF_STRUCTURES = (
    ((), (), 0), ((1, 3, 1), (), 0), ((12,), (), 0), ((12,), (-1,), 11), ((6,), (2,), 0),
    ((6,), (-2,), 11), ((3, 4), (), 0), ((3, 4), (-4, -1), 11), ((2, 2), (4, 1), 4),
    ((2, 2), (-4, -1), 8),
)
GETBUF_ITEMS = {
    '?': [bool(x % 2) for x in range(12)],
    'b': list(range(1, 13)),
    'B': list(range(1, 13)),
    'l': [(2**31 - x) if x % 2 else (-2**31 + x) for x in range(12)],
    '<i': random_items('<i', 12, random.Random(1)),
    'hi': random_items('hi', 12, random.Random(2)),
}
GETBUF_NDFLAGS = (0, ND_WRITABLE, ND_FORTRAN, ND_FORTRAN | ND_WRITABLE, ND_PIL,
                  ND_PIL | ND_WRITABLE)


def _check_getbuf_structure(fmt, structure, ndflags):
    items = GETBUF_ITEMS[fmt]
    shape, steps, offset_items = structure
    itemsize = struct.calcsize(fmt)
    strides = [s * itemsize for s in steps]
    offset = offset_items * itemsize
    if (strides and ndflags & ND_FORTRAN) or (not shape and ndflags & ND_PIL):
        return
    ex1 = _testbuffer.ndarray(items if shape else items[0], format=fmt, flags=ndflags,
                              shape=list(shape), strides=strides, offset=offset)
    if ndflags & ND_PIL:
        # PIL-style suboffsets cannot be re-exported as a plain strided layout: refused, with
        # the export given back (no lingering reference on the base).
        refs = sys.getrefcount(ex1)
        with memoryview(ex1) as m:
            for base in (ex1, m):
                message = raises_message(BufferError, View, base)
                assert 'suboffsets' in message, message
            del base
        gc.collect()  # pytest.raises' traceback forms a cycle with the frame
        assert sys.getrefcount(ex1) == refs
        return
    readonly = not ndflags & ND_WRITABLE
    memory = b''.join(pack_item(fmt, it) for it in (items if shape else items[:1]))
    layout = memory_layout(memory, fmt, shape, ex1.strides, offset, readonly)
    assert layout.items == ex1.tolist()  # the helper reads what _testbuffer reads

    v1 = View(ex1)
    verify_all(v1, layout, BUFFERKIT, reference=ex1)
    base = bytes(memory) if readonly else bytearray(memory)
    v2 = View(base, format=fmt, shape=shape, strides=ex1.strides, offset=offset)
    assert (v2.offset, v2.strides, v2.readonly) == (offset, tuple(ex1.strides), readonly)
    verify_all(v2, layout, BUFFERKIT, reference=ex1)
    if shape:
        ex2 = ex1[::-2]
        start = slice(None, None, -2).indices(shape[0])[0]
        layout2 = memory_layout(memory, fmt, ex2.shape, ex2.strides,
                                offset + start * ex1.strides[0], readonly)
        assert layout2.items == ex2.tolist()
        for s in (v1[::-2], v2[::-2]):
            verify_all(s, layout2, BUFFERKIT, reference=ex2)
        assert v2[::-2].offset == offset + start * ex1.strides[0]


@pytest.mark.parametrize('structure', GETBUF_STRUCTURES, ids=repr)
@pytest.mark.parametrize('fmt', sorted(GETBUF_ITEMS))
def test_request_matrix_getbuf_structures(fmt, structure):
    """The structures of test_ndarray_getbuf with every ndarray flag: View(ndarray), a View
    with the same layout arguments over the packed memory, and both sliced [::-2]."""
    check_each(GETBUF_NDFLAGS,
               lambda ndflags: _check_getbuf_structure(fmt, structure, ndflags))


# --------------------------------------------------------------------------------------------
# The request matrix: random strided layouts (hypothesis)
# --------------------------------------------------------------------------------------------

RANDOM_FORMATS = FORMATS + ('c', 'Q', 'f', '3B', 'xBx', '=h', 'n', '5s')


class StridedCase(NamedTuple):
    format: str
    shape: Tuple[int, ...]
    strides: Tuple[int, ...]
    offset: int
    nitems: int
    readonly: bool
    seed: int
    how: str


@st.composite
def strided_cases(draw):
    """A layout _testbuffer.ndarray accepts: 0-4 dimensions (0-d and empty ones included),
    strides any multiple of itemsize (negative and zero included), an offset, and memory with
    up to two spare items on either side."""
    fmt = draw(st.sampled_from(RANDOM_FORMATS))
    itemsize = struct.calcsize(fmt)
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim)))
    steps = draw(st.lists(st.integers(-3, 3), min_size=ndim, max_size=ndim))
    if ndim == 0:
        nitems, offset_items = 1, 0  # a 0-d ndarray holds exactly one item
    elif product(shape) == 0:
        nitems = draw(st.integers(1, 6))
        offset_items = draw(st.integers(0, nitems - 1))
    else:
        lo = sum((n - 1) * k for n, k in zip(shape, steps) if k < 0)
        hi = sum((n - 1) * k for n, k in zip(shape, steps) if k > 0)
        offset_items = -lo + draw(st.integers(0, 2))
        nitems = offset_items + hi + 1 + draw(st.integers(0, 2))
    return StridedCase(fmt, shape, tuple(k * itemsize for k in steps), offset_items * itemsize,
                       nitems, draw(st.booleans()), draw(st.integers(0, 2**32)),
                       draw(st.sampled_from(['bytes', 'ndarray', 'buffer'])))


@SETTINGS
@given(strided_cases())
def test_request_matrix_random_strided_layouts(case):
    fmt, shape, strides, offset = case.format, case.shape, case.strides, case.offset
    items = random_items(fmt, case.nitems, random.Random(case.seed))
    memory = b''.join(pack_item(fmt, it) for it in items)
    ex = _testbuffer.ndarray(items if shape else items[0], shape=list(shape),
                             strides=list(strides), offset=offset, format=fmt,
                             flags=0 if case.readonly else ND_WRITABLE)
    layout = memory_layout(memory, fmt, shape, strides, offset, case.readonly)
    assert ex.tolist() == layout.items
    if case.how == 'ndarray':
        v = View(ex)
    elif case.how == 'bytes':
        v = View(bytes(memory) if case.readonly else bytearray(memory), format=fmt,
                 shape=shape, strides=strides, offset=offset)
        assert v.offset == offset
    else:  # a writable Buffer of raw bytes, made read-only by the View
        raw = Buffer(len(memory))
        with memoryview(raw) as m:
            m[:] = memory
        v = View(raw, format=fmt, shape=shape, strides=strides, offset=offset,
                 readonly=case.readonly)
        assert raw.exports == 1 and v.offset == offset
    assert (v.shape, v.strides, v.format, v.readonly) == (shape, strides, fmt, case.readonly)
    verify_all(v, layout, BUFFERKIT, reference=ex)
    assert v.tolist() == layout.items


# --------------------------------------------------------------------------------------------
# Re-export of every kind of base, without layout arguments
# --------------------------------------------------------------------------------------------

def _grid():
    return np.arange(-30, 30, dtype=np.int32).reshape(6, 10)


def _readonly(arr):
    arr.flags.writeable = False
    return arr


def _mmap():
    m = mmap.mmap(-1, 4096)
    m[:] = bytes(range(256)) * 16
    return m


def _buffer(shape, fmt, order='C', readonly=False):
    layout = Layout.generate(fmt, shape, order=order, readonly=readonly)
    return make_buffer(layout)


def _ndarray(**kwargs):
    return _testbuffer.ndarray(list(range(1, 13)), **kwargs)


#: name -> a fresh base object. Built per test: tests write into some of them.
BASES = {
    'bytes': lambda: bytes(range(100, 160)),
    'bytes-empty': lambda: b'',
    'bytearray': lambda: bytearray(range(64)),
    'bytearray-empty': lambda: bytearray(),
    'array-h': lambda: array.array('h', range(-8, 8)),
    'array-d': lambda: array.array('d', [0.5 * x for x in range(9)]),
    'array-Q': lambda: array.array('Q', [2**64 - 1, 0, 7]),
    'memoryview': lambda: memoryview(bytes(range(32))),
    'memoryview-step3': lambda: memoryview(bytearray(range(40)))[1::3],
    'memoryview-reversed': lambda: memoryview(bytearray(range(40)))[::-1],
    'memoryview-neg-step': lambda: memoryview(array.array('i', range(20)))[-2::-3],
    'memoryview-2d': lambda: memoryview(bytearray(range(24))).cast('i', (2, 3)),
    'memoryview-0d': lambda: memoryview(bytearray(b'\x01\x02\x03\x04')).cast('i', ()),
    'mmap': _mmap,
    'mmap-readonly': lambda: mmap.mmap(-1, 64, access=mmap.ACCESS_READ),
    'numpy-C': _grid,
    'numpy-F': lambda: np.asfortranarray(_grid()),
    'numpy-strided': lambda: _grid()[::2, ::-3],
    'numpy-transposed': lambda: _grid().T[1:, ::2],
    'numpy-3d-neg': lambda: np.arange(60, dtype='<f8').reshape(3, 4, 5)[::-1, 1::2, ::-2],
    'numpy-readonly': lambda: _readonly(_grid()[:, 1::4]),
    'numpy-big-endian': lambda: _grid().astype('>i8')[:, ::3],
    'numpy-bool': lambda: _grid() % 3 == 0,
    'numpy-0d': lambda: np.array(-7, dtype=np.int16),
    'numpy-empty': lambda: np.zeros((0, 3), dtype=np.float64),
    'numpy-empty-strided': lambda: np.zeros((4, 3))[::2, 3:],
    'buffer-C': lambda: _buffer((3, 4), '<i'),
    'buffer-F-readonly': lambda: _buffer((3, 4), 'hi', 'F', readonly=True),
    'buffer-0d': lambda: _buffer((), 'd'),
    'view': lambda: View(bytearray(range(64)), format='<h', shape=(4, 3), strides=(-16, 4),
                         offset=50),
    'view-slice': lambda: View(_grid())[::-2, 1::3],
    'ndarray-strided': lambda: _ndarray(shape=[6], strides=[2], format='B'),
    'ndarray-reversed-2d': lambda: _ndarray(shape=[3, 4], strides=[-4, -1], offset=11,
                                            format='B', flags=ND_WRITABLE),
    'ndarray-offset-2d': lambda: _ndarray(shape=[2, 2], strides=[4, 1], offset=4, format='B'),
    'ndarray-fortran-l': lambda: _ndarray(shape=[3, 4], format='l', flags=ND_FORTRAN),
    'ndarray-0d': lambda: _testbuffer.ndarray(5, shape=[], format='q'),
    'ctypes-array': lambda: (ctypes.c_int16 * 6)(*range(6)),
}


def _root_of(base):
    """The object a View of ``base`` shows: the base, or a View base's own root."""
    return base.base if isinstance(base, View) else base


@pytest.mark.parametrize('name', sorted(BASES))
def test_reexport_of_every_base_kind(name):
    base = BASES[name]()
    root = _root_of(base)
    want = base_layout(base)
    root_exports = getattr(root, 'exports', None)
    v = View(base)
    # The layout is the base's, unchanged, and the View shows the same memory (zero copy).
    assert (v.format, v.itemsize, v.ndim, v.shape, v.strides, v.suboffsets, v.nbytes) == (
        want.format, want.itemsize, want.ndim, want.shape, want.strides, (), want.nbytes)
    assert v.readonly is want.readonly
    assert (v.c_contiguous, v.f_contiguous, v.contiguous) == (
        want.c_contiguous, want.f_contiguous, want.contiguous)
    assert address_of(v) == address_of(base)
    assert v.base is root and not isinstance(v.base, View)
    # Every element reads the same.
    assert v.tolist() == want.items
    assert _testbuffer.ndarray(v, getbuf=PyBUF_FULL_RO).tolist() == want.items
    with memoryview(base) as mb, memoryview(v) as mv:
        assert mv.tobytes() == mb.tobytes() == v.tobytes()
        try:
            expected_list = mb.tolist()
        except NotImplementedError:
            pass
        else:
            assert mv.tolist() == expected_list == v.tolist()
    verify_all(v, want, BUFFERKIT)
    if root_exports is not None:
        assert root.exports == root_exports + 1
    v.release()
    if root_exports is not None:
        assert root.exports == root_exports


@pytest.mark.parametrize('make', [
    lambda: _ndarray(shape=[3, 4], format='B', flags=ND_PIL),
    lambda: _ndarray(shape=[3, 4], format='h', flags=ND_PIL | ND_WRITABLE),
    lambda: _ndarray(shape=[2, 2], strides=[-4, -1], offset=8, format='B', flags=ND_PIL),
    lambda: memoryview(_ndarray(shape=[3, 4], format='B', flags=ND_PIL)),
], ids=['pil-B', 'pil-h-writable', 'pil-negative', 'memoryview-of-pil'])
def test_pil_style_base_refused(make):
    base = make()
    gc.collect()
    refs = sys.getrefcount(base)
    for kwargs in ({}, {'readonly': True}, {'format': 'B'}):
        message = raises_message(BufferError, View, base, **kwargs)
        assert 'suboffsets' in message, message
    gc.collect()
    assert sys.getrefcount(base) == refs
    if isinstance(base, memoryview):
        base.release()  # would raise BufferError if the View had kept an export


@pytest.mark.parametrize('obj', [1, 'text', None, object(), [1, 2], 3.5], ids=repr)
def test_base_must_export_a_buffer(obj):
    with pytest.raises(TypeError):
        View(obj)


def test_view_of_view_never_chains():
    data = bytearray(range(64))
    root = Buffer(64)
    with memoryview(root) as m:
        m[:] = data
    v1 = View(root)[8:40]
    v2 = View(v1)
    v3 = View(v2, offset=4, shape=(3,), strides=(-2,))
    for v in (v1, v2, v3):
        assert v.base is root and type(v.base) is Buffer
    assert root.exports == 1   # one export of the root, shared by the family
    assert (v2.shape, v2.strides, v2.offset) == (v1.shape, v1.strides, v1.offset) == (
        (32,), (1,), 8)
    assert (v3.offset, v3.tolist()) == (12, [12, 10, 8])
    v1.release()           # the children keep the shared export, and the root locked
    assert root.exports == 1 and v2.tolist() == list(range(8, 40))
    with pytest.raises(BufferError):
        root.close()
    del v2
    assert root.exports == 1 and v3.tolist() == [12, 10, 8]
    v3.release()           # the last of the family: the root is unlocked at once
    assert root.exports == 0
    root.close()


# --------------------------------------------------------------------------------------------
# Layout arguments
# --------------------------------------------------------------------------------------------

def test_layout_defaults():
    data = bytes(range(64))
    ba = bytearray(data)
    v = View(ba, offset=8)                       # format of the base, as many items as fit
    assert (v.format, v.shape, v.strides, v.offset) == ('B', (56,), (1,), 8)
    assert v.tolist() == list(data[8:])
    v = View(ba, format='<i')                    # strides C order
    assert (v.shape, v.strides, v.offset) == ((16,), (4,), 0)
    assert v.tolist() == list(struct.unpack('<16i', data))
    v = View(ba, format='<i', offset=6)          # items need not be aligned to the itemsize
    assert v.shape == ((64 - 6) // 4,)
    assert v.tolist() == list(struct.unpack_from('<14i', data, 6))
    v = View(ba, format='<h', shape=(2, 3), offset=10)
    assert (v.strides, v.tolist()) == ((6, 2), [list(struct.unpack_from('<3h', data, 10)),
                                                list(struct.unpack_from('<3h', data, 16))])
    v = View(ba, offset=64)                      # nothing fits after the offset
    assert (v.shape, v.nbytes, v.tolist()) == ((0,), 0, [])
    v = View(bytes(10), format='i')              # the remainder is not part of the View
    assert (v.shape, v.nbytes) == ((2,), 8)
    v = View(bytes(3), format='i')
    assert v.shape == (0,)

    arr = array.array('h', range(-8, 8))
    v = View(arr, offset=4)                      # the base's format
    assert (v.format, v.shape, v.strides) == ('h', (14,), (2,))
    assert v.tolist() == arr.tolist()[2:]

    b = _buffer((4, 4), 'd')
    v = View(b, format='f')
    assert (v.shape, v.strides) == ((32,), (4,))
    assert v.tobytes() == b.tobytes()
    v = View(b, shape=(2, 8))                    # format 'd' of the base, strides C order
    assert (v.format, v.strides) == ('d', (64, 8))
    assert v.tolist() == np.asarray(b).reshape(2, 8).tolist()
    v = View(b, shape=(4, 0))                    # contiguous strides of an empty layout
    assert v.strides == contiguous_strides((4, 0), 8, 'C') == (0, 8)


def test_layout_zero_dimensional():
    data = bytes(range(16))
    v = View(data, shape=())
    assert (v.ndim, v.shape, v.strides, v.format, v.nbytes) == (0, (), (), 'B', 1)
    assert v.tolist() == 0 and v.tobytes() == b'\x00'
    v = View(data, shape=(), offset=15)
    assert v.tolist() == 15
    v = View(data, format='<i', shape=(), offset=12)
    assert v.tolist() == struct.unpack_from('<i', data, 12)[0]
    v = View(data, format='<q', shape=[], offset=3)
    assert v.tolist() == struct.unpack_from('<q', data, 3)[0]
    with memoryview(v) as m:
        assert (m.ndim, m.shape, m.nbytes, m.tobytes()) == (0, (), 8, data[3:11])
    assert raises_message(TypeError, len, v) == '0-dim View has no len()'
    for kwargs in ({'offset': 16}, {'format': '<i', 'offset': 13}, {'offset': -1}):
        message = raises_message(ValueError, View, data, shape=(), **kwargs)
        assert NAMES_CULPRIT.search(message), message
    # The one 0-d layout _testbuffer.ndarray can express: its memory is a single item.
    ex = _testbuffer.ndarray(-5, shape=[], format='<i')
    v = View(struct.pack('<i', -5), format='<i', shape=())
    verify_all(v, memory_layout(struct.pack('<i', -5), '<i', (), (), 0, True), BUFFERKIT,
               reference=ex)


def test_layout_strides_negative_zero_and_unaligned():
    data = bytes(range(48))
    v = View(data, shape=(12,), strides=(-1,), offset=11)
    assert v.tolist() == list(range(11, -1, -1))
    v = View(data, format='<h', shape=(3, 4), strides=(-16, 2), offset=32)
    assert v.tolist() == [[struct.unpack_from('<h', data, 32 - 16 * i + 2 * j)[0]
                           for j in range(4)] for i in range(3)]
    v = View(data, format='<i', shape=(5,), strides=(0,), offset=8)   # one item, five times
    assert v.tolist() == [struct.unpack_from('<i', data, 8)[0]] * 5
    assert (v.nbytes, v.c_contiguous, v.contiguous) == (20, False, False)
    v = View(data, format='<i', shape=(3, 4), strides=(0, 4))          # broadcast rows
    assert v.tolist() == [list(struct.unpack_from('<4i', data))] * 3
    v = View(data, format='<h', shape=(10,), strides=(1,), offset=3)   # overlapping items
    assert v.tolist() == [struct.unpack_from('<h', data, 3 + i)[0] for i in range(10)]
    v = View(data, format='<q', shape=(4,), strides=(-3,), offset=20)  # unaligned, backwards
    assert v.tolist() == [struct.unpack_from('<q', data, 20 - 3 * i)[0] for i in range(4)]
    layout = memory_layout(data, '<q', (4,), (-3,), 20, True)
    verify_all(v, layout, BUFFERKIT)
    # Lists are accepted as well as tuples.
    assert View(data, shape=[2, 3], strides=[3, 1]).tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize('make', [
    lambda: memoryview(bytearray(16))[::2],
    lambda: memoryview(bytes(16))[::-1],
    lambda: _grid()[:, ::2],
    lambda: _grid()[::-1],
    lambda: _ndarray(shape=[6], strides=[2], format='B'),
    lambda: View(bytearray(16))[::3],
    lambda: View(bytes(16), shape=(2, 2), strides=(1, 4)),
], ids=['memoryview-step', 'memoryview-reversed', 'numpy-strided', 'numpy-reversed',
        'ndarray-strided', 'view-slice', 'view-transposed'])
def test_layout_arguments_need_a_contiguous_base(make):
    base = make()
    root = _root_of(base)
    refs = sys.getrefcount(root)
    View(base)  # no layout arguments: fine
    for kwargs in ({'offset': 0}, {'format': 'B'}, {'shape': (2,)},
                   {'shape': (2,), 'strides': (1,)}):
        message = raises_message(ValueError, View, base, **kwargs)
        assert 'contiguous' in message, message
    gc.collect()
    assert sys.getrefcount(root) == refs


def test_layout_arguments_on_fortran_and_sliced_bases():
    f = np.asfortranarray(np.arange(12, dtype='<i4').reshape(3, 4))
    v = View(f, format='B')                       # the block is the memory, in memory order
    assert v.tobytes() == f.tobytes(order='F')
    v = View(f, shape=(12,))                      # format of the base ('i')
    assert v.tolist() == f.flatten(order='F').tolist()
    # A contiguous View is a block: its offset argument is relative to the View's first byte,
    # its offset attribute to the root's memory.
    ba = bytearray(range(64))
    part = View(ba)[16:48]
    v = View(part, offset=4, shape=(4,))
    assert (v.tolist(), v.offset, v.base) == ([20, 21, 22, 23], 20, ba)
    assert View(part, offset=32).shape == (0,)
    message = raises_message(ValueError, View, part, offset=33)
    assert NAMES_CULPRIT.search(message), message
    message = raises_message(ValueError, View, part, shape=(4,), strides=(-1,), offset=2)
    assert NAMES_CULPRIT.search(message), message   # would reach byte 15 of the root
    # A contiguous memoryview slice is a block too.
    m = memoryview(ba)[10:20]
    assert View(m, offset=2, shape=(3,)).tolist() == [12, 13, 14]


READONLY_CASES = [
    # base, readonly argument, the View's readonly (or BufferError)
    ('bytearray', None, False), ('bytearray', True, True), ('bytearray', False, False),
    ('bytes', None, True), ('bytes', True, True), ('bytes', False, BufferError),
    ('buffer', None, False), ('buffer', False, False), ('buffer', True, True),
    ('buffer-ro', None, True), ('buffer-ro', False, BufferError),
    ('numpy-ro', None, True), ('numpy-ro', False, BufferError),
    ('ndarray-ro', None, True), ('ndarray-ro', False, BufferError),
    ('memoryview-bytes', None, True), ('memoryview-bytes', False, BufferError),
    ('mmap-ro', False, BufferError), ('mmap', None, False),
    ('view-ro-of-rw', None, True), ('view-ro-of-rw', False, BufferError),
    ('view-rw', True, True), ('view-rw', None, False),
]
READONLY_BASES = {
    'bytearray': lambda: bytearray(range(16)),
    'bytes': lambda: bytes(range(16)),
    'buffer': lambda: Buffer(16),
    'buffer-ro': lambda: Buffer(16, readonly=True),
    'numpy-ro': lambda: _readonly(np.arange(16, dtype=np.uint8)),
    'ndarray-ro': lambda: _testbuffer.ndarray(list(range(16)), shape=[16], format='B'),
    'memoryview-bytes': lambda: memoryview(bytes(16)),
    'mmap-ro': lambda: mmap.mmap(-1, 16, access=mmap.ACCESS_READ),
    'mmap': lambda: mmap.mmap(-1, 16),
    'view-ro-of-rw': lambda: View(bytearray(16), readonly=True),
    'view-rw': lambda: View(bytearray(16)),
}


@pytest.mark.parametrize('name, readonly, want', READONLY_CASES, ids=repr)
@pytest.mark.parametrize('layout_args', [False, True], ids=['reexport', 'layout'])
def test_readonly_argument(name, readonly, want, layout_args):
    base = READONLY_BASES[name]()
    root = _root_of(base)
    kwargs = {'offset': 2, 'format': 'h'} if layout_args else {}
    if readonly is not None or name.startswith('bytes'):
        kwargs['readonly'] = readonly
    if want is BufferError:
        message = raises_message(BufferError, View, base, **kwargs)
        assert 'read-only' in message or 'writable' in message, message
        if isinstance(base, View):
            assert base.exports == 0
        elif isinstance(root, bytearray):
            assert not is_locked(root)
        elif hasattr(root, 'exports'):
            assert root.exports == 0
        return
    v = View(base, **kwargs)
    assert v.readonly is want
    assert v[::2].readonly is want and View(v).readonly is want  # children follow the View
    if want:
        assert raises_message(BufferError, _testbuffer.ndarray, v,
                              getbuf=PyBUF_WRITABLE) == 'View is not writable'
        with memoryview(v) as m:
            assert m.readonly
            with pytest.raises(TypeError):
                m[0] = 1
        with pytest.raises(BufferError):
            View(v, readonly=False)
    else:
        with memoryview(v) as m:
            m[0] = 99              # writes go to the base's memory
        with memoryview(root) as m:
            assert m.cast('B')[2 if layout_args else 0] == 99


def test_readonly_view_of_writable_base_sees_writes():
    ba = bytearray(8)
    v = View(ba, readonly=True)
    ba[3] = 7                     # the base itself stays writable (only resizing is locked)
    assert v.tolist()[3] == 7 and v.readonly is True


@pytest.mark.parametrize('kwargs, exc_type', [
    ({'format': 3}, TypeError), ({'format': b'B'}, TypeError),
    ({'format': ''}, ValueError), ({'format': 'x'}, ValueError), ({'format': '&'}, ValueError),
    ({'format': 'T{i}'}, ValueError), ({'format': '0i'}, ValueError),
    ({'shape': 'ab'}, TypeError), ({'shape': (2.0,)}, TypeError), ({'shape': (None,)}, TypeError),
    ({'shape': (-1,)}, ValueError), ({'shape': (2, -3)}, ValueError),
    ({'shape': (2,), 'strides': 1.5}, TypeError), ({'shape': (2,), 'strides': (1.0,)}, TypeError),
    ({'shape': (2, 3), 'strides': (1,)}, ValueError),
    ({'shape': (2,), 'strides': (1, 1)}, ValueError),
    ({'offset': 1.0}, TypeError), ({'offset': '1'}, TypeError),
    ({'offset': -1}, ValueError), ({'offset': 65}, ValueError),
], ids=repr)
def test_layout_argument_errors(kwargs, exc_type):
    ba = bytearray(64)
    gc.collect()
    refs = sys.getrefcount(ba)
    for _ in range(20):
        message = raises_message(exc_type, View, ba, **kwargs)
    if exc_type is ValueError and ('offset' in kwargs or 'shape' in kwargs) and \
            'format' not in kwargs:
        assert NAMES_CULPRIT.search(message) or 'strides' in message, message
    assert not is_locked(ba)
    gc.collect()
    assert sys.getrefcount(ba) == refs


def test_keyword_only_arguments():
    with pytest.raises(TypeError):
        View(b'abc', 1)
    with pytest.raises(TypeError):
        View()
    with pytest.raises(TypeError):
        View(b'abc', size=3)
    assert View(base=b'abc').tolist() == [97, 98, 99]


# --------------------------------------------------------------------------------------------
# Bounds
# --------------------------------------------------------------------------------------------

#: Formats whose items read back exactly from any bytes at any address (no padding, no
#: NaN, no bool): a layout with unaligned strides reads and compares exactly.
EXACT_FORMATS = ('B', 'b', '<h', '>H', '<i', '>q', '2h', '3s', 'c')


class AnyLayout(NamedTuple):
    length: int
    format: str
    shape: Optional[Tuple[int, ...]]     # None: not given
    strides: Optional[Tuple[int, ...]]   # None: not given
    offset: Optional[int]                # None: not given
    seed: int


@st.composite
def any_layouts(draw):
    """Any layout arguments over a base of 0-48 bytes: strides of any sign and size (mostly
    small, sometimes large), offsets in and around the base, 0-4 dimensions."""
    length = draw(st.integers(0, 48))
    fmt = draw(st.sampled_from(EXACT_FORMATS))
    shape = strides = None
    if draw(st.integers(0, 5)):
        ndim = draw(st.integers(0, 4))
        shape = tuple(draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim)))
        if draw(st.booleans()):
            stride = st.one_of(st.integers(-12, 12), st.integers(-10**4, 10**4))
            strides = tuple(draw(st.lists(stride, min_size=ndim, max_size=ndim)))
    offset = draw(st.one_of(st.none(), st.integers(-6, length + 6)))
    return AnyLayout(length, fmt, shape, strides, offset, draw(st.integers(0, 2**32)))


@SETTINGS
@given(any_layouts())
def test_bounds_accepted_layouts_stay_inside_the_base(case):
    """Accepted exactly when every byte of every element is inside the base, and then every
    address the export really hands out lies in [base, base + nbytes)."""
    memory = bytes(random.Random(case.seed).getrandbits(8) for _ in range(case.length))
    base = bytearray(memory)
    fmt, itemsize = case.format, struct.calcsize(case.format)
    offset = 0 if case.offset is None else case.offset
    shape = case.shape
    if shape is None:  # as many items as fit after the offset
        shape = ((case.length - offset) // itemsize,) if 0 <= offset <= case.length else None
    strides = case.strides
    if strides is None and shape is not None:
        strides = contiguous_strides(shape, itemsize, 'C')
    model = shape is not None and fits(case.length, itemsize, shape, strides, offset)
    kwargs = {'format': fmt}
    for name in ('shape', 'strides', 'offset'):
        if getattr(case, name) is not None:
            kwargs[name] = getattr(case, name)
    try:
        v = View(base, **kwargs)
    except ValueError as exc:
        event('refused')
        assert not model, f'refused a layout inside the base: {exc}'
        assert NAMES_CULPRIT.search(str(exc)), f'message names no culprit: {exc}'
        assert not is_locked(base), 'a refused View left the base locked'
        return
    event('accepted')
    assert model, f'accepted a layout outside the base: {v!r}'
    assert (v.shape, v.strides, v.offset, v.format) == (shape, strides, offset, fmt)
    start = address_of(base)
    info = bufferkit.inspect(v, PyBUF_FULL_RO)
    # (for 0-d, NULL and empty arrays are both right: a consumer reads neither)
    assert (info.shape or (), info.strides or (), info.itemsize) == (shape, strides, itemsize)
    assert info.buf - start == offset
    assert info.len == product(shape) * itemsize
    for first in element_offsets(shape, strides, info.buf - start):
        assert 0 <= first and first + itemsize <= case.length, (first, itemsize)
    layout = memory_layout(memory, fmt, shape, strides, offset)
    assert v.tolist() == layout.items
    for flags in (PyBUF_FULL_RO, PyBUF_STRIDED):
        verify(v, flags, layout, BUFFERKIT)
    v.release()
    assert not is_locked(base)


class GridLayout(NamedTuple):
    format: str
    nitems: int
    shape: Tuple[int, ...]
    steps: Tuple[int, ...]
    offset_items: int


@st.composite
def grid_layouts(draw):
    fmt = draw(st.sampled_from(('B', '<h', '<i', 'd', 'hi', '3s')))
    ndim = draw(st.integers(1, 4))
    nitems = draw(st.integers(1, 24))
    return GridLayout(
        fmt, nitems,
        tuple(draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim))),
        tuple(draw(st.lists(st.integers(-6, 6), min_size=ndim, max_size=ndim))),
        draw(st.integers(-2, nitems + 1)))


@SETTINGS
@given(grid_layouts())
def test_bounds_accepts_what_testbuffer_accepts(case):
    """For strides and offsets that are multiples of itemsize, View accepts exactly the
    layouts ``_testbuffer.ndarray(items, shape, strides, offset, format)`` accepts.

    The differences between the two rules, mapped explicitly:

    * _testbuffer needs offset % itemsize == 0 and strides % itemsize == 0 (bufferkit does
      not); the strategy only draws such values.
    * _testbuffer needs a non-empty memory (at least one item) and a 0-d array's memory is
      exactly one item: the strategy draws 1-4 dimensions and >= 1 item (0-d: see
      test_layout_zero_dimensional).
    * _testbuffer's ndbuf_new requires 0 <= offset <= len - itemsize for every array, and its
      verify_structure skips the extent check when a dimension is 0 (so any strides go).
      bufferkit requires 0 <= offset <= len for an empty layout (an empty View may start at
      the end of its base) and also ignores strides then.  The only layout on which they
      differ within this domain: an empty layout at offset == len, accepted by bufferkit and
      refused by _testbuffer.
    * _testbuffer computes extents without overflow checks; the strategy keeps values small
      (overflow: test_bounds_overflow_*).
    """
    itemsize = struct.calcsize(case.format)
    length = case.nitems * itemsize
    strides = tuple(k * itemsize for k in case.steps)
    offset = case.offset_items * itemsize
    items = random_items(case.format, case.nitems, random.Random(length))
    memory = b''.join(pack_item(case.format, it) for it in items)
    try:
        _testbuffer.ndarray(items, shape=list(case.shape), strides=list(strides), offset=offset,
                            format=case.format)
    except ValueError:
        theirs = False
    else:
        theirs = True
    try:
        v = View(memory, format=case.format, shape=case.shape, strides=strides, offset=offset)
    except ValueError as exc:
        ours = False
        assert NAMES_CULPRIT.search(str(exc)), str(exc)
    else:
        ours = True
        assert v.tolist() == memory_layout(memory, case.format, case.shape, strides,
                                           offset).items
    assert ours == fits(length, itemsize, case.shape, strides, offset)
    event(f'bufferkit {ours}, _testbuffer {theirs}')
    if product(case.shape) == 0 and offset == length:
        assert ours and not theirs  # the one documented difference (see above)
    else:
        assert ours == theirs, f'bufferkit {ours}, _testbuffer {theirs}'


def test_bounds_overflow_testbuffer_deviation():
    """shape (2**62, 4), strides (4, 1) over 64 bytes: dimension 0 spans (2**62 - 1) * 4 bytes,
    which wraps in _testbuffer's unchecked Py_ssize_t arithmetic, so _testbuffer.ndarray
    accepts the layout (and its len wraps too).  This is the documented deviation from the
    differential rule: bufferkit must refuse it."""
    theirs = _testbuffer.ndarray(list(range(64)), shape=[2**62, 4], strides=[4, 1],
                                 format='B')
    assert theirs.shape == (2**62, 4)  # accepted by the reference, wrongly
    base = bytearray(64)
    with pytest.raises(ValueError, match='^dimension 0 .* reaches beyond the address space$'):
        View(base, shape=(2**62, 4), strides=(4, 1))
    assert not is_locked(base)


#: (kwargs, exception): a value that does not fit Py_ssize_t, or a layout of more than 2**63-1
#: bytes, is an OverflowError; a layout that reaches outside the base's memory (however far) is
#: a ValueError.
OVERFLOW_CASES = [
    (dict(shape=(2**62, 4), strides=(4, 1)), ValueError),
    (dict(shape=(2**63 - 1,), strides=(2,)), ValueError),
    (dict(shape=(2**62 + 1,), strides=(2,)), ValueError),
    (dict(shape=(2,), strides=(2**63 - 1,)), ValueError),
    (dict(shape=(2, 2), strides=(2**62, 2**62)), ValueError),
    (dict(shape=(2, 2), strides=(2**62, -(2**62))), ValueError),
    (dict(shape=(3,), strides=(-(2**62),), offset=63), ValueError),
    (dict(shape=(2,), strides=(-(2**63),), offset=63), ValueError),
    # nbytes overflows, addresses do not
    (dict(shape=(2**61, 4), strides=(0, 0), format='<i'), OverflowError),
    (dict(shape=(2**32, 2**32), strides=(0, 0)), OverflowError),
    (dict(shape=(4, 2**62), strides=(1, 0)), OverflowError),
    (dict(shape=(2**62,), strides=(0,), format='1000000000000s'), ValueError),
    (dict(shape=(1,), offset=2**63 - 1), ValueError),
    (dict(shape=(0,), offset=2**63 - 1), ValueError),
    (dict(shape=(1,), offset=-(2**63)), ValueError),
    (dict(offset=2**63 - 1), ValueError),
    (dict(offset=2**63), OverflowError),
    (dict(offset=-(2**64)), OverflowError),
    (dict(shape=(2**63,)), OverflowError),
    (dict(shape=(2, 2**64)), OverflowError),
    (dict(shape=(2,), strides=(2**63,)), OverflowError),
    (dict(shape=(2, 2), strides=(1, -(2**63) - 1)), OverflowError),
]


@pytest.mark.parametrize('kwargs, exc_type', OVERFLOW_CASES, ids=repr)
def test_bounds_overflow_refused(kwargs, exc_type):
    base = bytearray(64)
    with pytest.raises(Exception) as info:
        View(base, **kwargs)
    assert type(info.value) is exc_type, f'{type(info.value).__name__}: {info.value}'
    assert NAMES_CULPRIT.search(str(info.value)), (
        f'{type(info.value).__name__}: {info.value} names neither a dimension nor the offset')
    assert not is_locked(base)


def test_bounds_near_the_limits_accepted():
    """Layouts whose numbers are huge but whose bytes lie inside the base are accepted."""
    base = bytes(range(64))
    v = View(base, shape=(2**62,), strides=(0,))           # one byte, 2**62 times
    assert (v.shape, v.nbytes) == ((2**62,), 2**62)
    with memoryview(v) as m:
        assert (m[0], m[2**62 - 1]) == (0, 0)
    v = View(base, shape=(1, 2**63 - 1), strides=(0, 0), offset=63)   # len is PY_SSIZE_T_MAX
    assert v.nbytes == 2**63 - 1
    with memoryview(v) as m:
        assert m[0, 2**63 - 2] == 63
    v = View(base, shape=(1,), strides=(2**63 - 1,), offset=5)   # the stride is never taken
    assert v.tolist() == [5]
    v = View(base, shape=(0, 3), strides=(2**63 - 1, -(2**63)))  # empty: strides irrelevant
    assert (v.nbytes, v.tolist()) == (0, [])


def test_bounds_large_itemsize():
    """A valid struct format whose item is larger than the base: nothing fits (shape (0,)),
    an explicit shape of one item is refused with the usual ValueError.  Nothing of itemsize
    bytes needs to be allocated for that."""
    base = bytearray(64)
    fmt = '1000000000000s'                 # struct.calcsize: 10**12
    v = View(base, format=fmt)
    assert (v.shape, v.itemsize, v.nbytes) == ((0,), 10**12, 0)
    v.release()
    assert View(base, format=fmt, shape=(0, 3)).nbytes == 0
    message = raises_message(ValueError, View, base, format=fmt, shape=(1,))
    assert NAMES_CULPRIT.search(message), message
    message = raises_message(ValueError, View, base, format=fmt, shape=())
    assert NAMES_CULPRIT.search(message), message
    assert not is_locked(base)


def test_bounds_ndim_limit():
    base = bytearray(64)
    v = View(base, shape=(1,) * 64)
    assert v.ndim == 64 and v.tolist() == nest([0], (1,) * 64)
    with memoryview(v) as m:
        assert m.ndim == 64
    v.release()
    assert View(base, shape=(1,) * 64, strides=(-5,) * 64, offset=3).ndim == 64
    for kwargs in ({'shape': (1,) * 65}, {'shape': (0,) * 100},
                   {'shape': (1,) * 65, 'strides': (1,) * 65}):
        message = raises_message(ValueError, View, base, **kwargs)
        assert '64' in message, message
    assert not is_locked(base)


# --------------------------------------------------------------------------------------------
# Slicing
# --------------------------------------------------------------------------------------------

def _slices(draw, ndim):
    bound = st.one_of(st.none(), st.integers(-8, 8))
    step = st.one_of(st.none(), st.sampled_from([1, 2, 3, -1, -2, -3]))
    count = draw(st.integers(0 if ndim > 1 else 1, ndim))
    return tuple(slice(draw(bound), draw(bound), draw(step)) for _ in range(count))


@st.composite
def numpy_slicings(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(['u1', '<i2', '<i4', '>i8', '<f8']))
    pre = _slices(draw, ndim)          # the base itself may be strided already
    first, second = _slices(draw, ndim), _slices(draw, ndim)
    tuple_key = draw(st.booleans())
    return shape, dtype, pre, first, second, tuple_key


def _key(slices, tuple_key):
    return slices[0] if len(slices) == 1 and not tuple_key else slices


@SETTINGS
@given(numpy_slicings())
def test_slicing_equals_numpy(case):
    shape, dtype, pre, first, second, tuple_key = case
    arr = np.arange(product(shape), dtype=dtype).reshape(shape)[pre]
    v = View(arr)
    start = address_of(v) - v.offset if arr.size else None   # the root's memory
    for keys in ((first,), (first, second)):
        s, want = v, arr
        for k in keys:
            s, want = s[_key(k, tuple_key)], want[_key(k, tuple_key)]
        assert isinstance(s, View) and s.base is arr
        assert (s.shape, s.format, s.readonly) == (want.shape, v.format, v.readonly)
        assert s.tolist() == want.tolist()
        assert s.tobytes() == want.tobytes()
        assert s.c_contiguous is want.flags.c_contiguous
        assert s.f_contiguous is want.flags.f_contiguous
        if want.size:
            # The same memory: the address of the first element, and the strides of every
            # dimension that has a second element (numpy keeps arbitrary strides for
            # dimensions of length 1, and zeroes the strides of empty arrays).
            assert address_of(s) == want.ctypes.data
            assert s.offset == want.ctypes.data - start
            assert [st for n, st in zip(s.shape, s.strides) if n > 1] == [
                st for n, st in zip(want.shape, want.strides) if n > 1]
            for index in (tuple(0 for _ in want.shape), tuple(n - 1 for n in want.shape)):
                address = address_of(s) + sum(i * st for i, st in zip(index, s.strides))
                assert address == want[tuple(slice(i, i + 1) for i in index)].ctypes.data
        with memoryview(s) as m:
            try:
                assert m.tolist() == want.tolist()
            except NotImplementedError:  # memoryview does not know '>q'
                pass


@SETTINGS
@given(st.integers(0, 40), st.sampled_from(['B', 'h', 'i', 'd']),
       st.lists(st.tuples(st.one_of(st.none(), st.integers(-45, 45)),
                          st.one_of(st.none(), st.integers(-45, 45)),
                          st.one_of(st.none(), st.integers(-5, 5).filter(bool))),
                min_size=1, max_size=3))
def test_slicing_equals_memoryview(n, code, keys):
    """1-D: slices (of slices) of a View of an array.array equal memoryview's."""
    arr = array.array(code, range(n))
    v = View(arr)
    m = memoryview(arr)
    for start, stop, step in keys:
        v, m = v[start:stop:step], m[start:stop:step]
        assert (v.shape, v.strides, v.format, v.nbytes) == (m.shape, m.strides, m.format,
                                                            m.nbytes)
        assert v.tolist() == m.tolist()
        assert v.tobytes() == m.tobytes()
        if len(m):
            assert address_of(v) == address_of(m)
    m.release()


def test_slicing_a_relayout_view_equals_numpy_over_it():
    data = bytearray(range(96))
    v = View(data, format='<h', shape=(4, 5), strides=(-20, 2), offset=70)
    arr = np.asarray(v)                      # numpy over the View's own export
    assert arr.tolist() == v.tolist() and arr.strides == v.strides
    for key in [slice(None, None, -1), (slice(1, 3), slice(None, None, -2)),
                (slice(None), slice(4, 0, -3)), slice(5, 0), (slice(-1, None), slice(1, 2))]:
        s = v[key]
        assert (s.shape, s.strides, s.tolist()) == (arr[key].shape, arr[key].strides,
                                                     arr[key].tolist())
        if arr[key].size:
            assert address_of(s) == arr[key].ctypes.data
    assert v[()].shape == v.shape            # no slice at all: the same layout


def test_slices_of_slices_share_one_export_of_the_root():
    root = Buffer(64)
    with memoryview(root) as m:
        m[:] = bytes(range(64))
    expected = list(range(64))
    chain = [View(root)]
    for i in range(100):
        key = [slice(None, None, -1), slice(1, None), slice(None)][i % 3]
        chain.append(chain[-1][key])
        expected = expected[key]
    assert root.exports == 1
    for s in chain:
        assert s.base is root and type(s.base) is Buffer
    assert chain[-1].tolist() == expected
    last = chain[-1]
    del chain, s
    assert root.exports == 1                 # no intermediate View keeps anything alive
    assert last.tolist() == expected and last.base is root
    # Views of Views, 100 deep, likewise.
    views = [View(root)]
    for _ in range(100):
        views.append(View(views[-1]))
    assert root.exports == 2 and all(v.base is root for v in views)
    del views
    assert root.exports == 1
    last.release()
    assert root.exports == 0
    root.close()


def test_slices_of_slices_of_a_bytearray_root():
    ba = bytearray(range(50))
    chain = [View(ba)]
    for _ in range(100):
        chain.append(chain[-1][::-1])
    assert all(s.base is ba for s in chain)
    assert chain[-1].tolist() == list(range(50))
    del chain
    assert not is_locked(ba)


@pytest.mark.parametrize('key', [0, -1, np.int64(1), True, (0,), (0, slice(None)),
                                 (slice(None), 1), Ellipsis, (Ellipsis, slice(None))],
                         ids=repr)
def test_integer_indexing_raises_type_error(key):
    base = Buffer(12)
    v = View(base, shape=(3, 4))
    with pytest.raises(TypeError):
        v[key]
    assert base.exports == 1          # a refused subscript takes no export


def test_slice_errors():
    v = View(_grid())
    with pytest.raises(ValueError):
        v[::0]
    with pytest.raises(TypeError, match='^too many indices'):
        v[1:, 1:, 1:]                 # more slices than dimensions
    with pytest.raises(TypeError, match='^too many indices'):
        View(b'ab', shape=())[:]


# --------------------------------------------------------------------------------------------
# Attributes and methods, against memoryview
# --------------------------------------------------------------------------------------------

def _attribute_views():
    """(View, Layout) pairs: packed layouts, strided relayouts, slices, re-exports."""
    pairs = []
    for fmt in ('B', '<i', 'd', 'c', '?', 'e', 'hi', 'l'):
        for shape in ((), (5,), (3, 4), (2, 0, 3)):
            for layout in layout_variants(fmt, shape):
                pairs.append((packed_view(layout, 'ndarray'), layout))
    data = bytes(range(96))
    for fmt, shape, strides, offset in [('<h', (4, 5), (-20, 2), 70), ('B', (3, 3), (1, 3), 0),
                                        ('<i', (5,), (0,), 8), ('<q', (4,), (-3,), 20),
                                        ('h', (2, 3), (2, 12), 1)]:
        v = View(data, format=fmt, shape=shape, strides=strides, offset=offset)
        pairs.append((v, memory_layout(data, fmt, shape, strides, offset, True)))
    arr = np.arange(60, dtype='<f8').reshape(3, 4, 5)[::-1, 1::2, ::-2]
    pairs.append((View(arr), base_layout(arr)))
    pairs.append((View(arr)[1:, ::-1], base_layout(arr[1:, ::-1])))
    return pairs


def test_attributes_and_methods_equal_memoryview():
    def check(pair):
        v, layout = pair
        with memoryview(v) as m:
            check_like_memoryview(v, m)
            assert (v.format, v.shape, v.strides, v.suboffsets) == (
                layout.format, layout.shape, layout.strides, ())
            assert v.readonly is layout.readonly
            assert v.exports == 1 and v.released is False
            assert type(v.offset) is int and not isinstance(v.base, View)
            assert v.tobytes() == layout.tobytes('C')
            assert v.tobytes('F') == layout.tobytes('F')
            assert v.tolist() == layout.items
        assert v.exports == 0
    check_each(_attribute_views(), check)


def test_repr():
    ba = bytearray(64)
    v = View(ba, format='<i', shape=(2, 3), strides=(4, 8), offset=8, readonly=True)
    text = repr(v)
    assert 'View' in text and 'bytearray' in text, text
    for part in ('(2, 3)', '(4, 8)', "'<i'", '8', 'True'):
        assert part in text, (part, text)
    s = View(ba)[8:40:4]
    assert '(8,)' in repr(s) and '(4,)' in repr(s) and "'B'" in repr(s)
    v.release()
    assert 'released' in repr(v) and 'View' in repr(v)


@pytest.mark.parametrize('name', ATTRS + ('exports', 'base', 'offset', 'released'))
def test_attributes_are_read_only(name):
    v = View(bytearray(12), format='<h')
    before = getattr(v, name)
    with pytest.raises(AttributeError):
        setattr(v, name, before)
    with pytest.raises(AttributeError):
        delattr(v, name)
    assert getattr(v, name) == before


# --------------------------------------------------------------------------------------------
# Lifetime
# --------------------------------------------------------------------------------------------

def test_base_locked_while_the_view_lives():
    ba = bytearray(range(16))
    v = View(ba)
    assert is_locked(ba)
    with pytest.raises(BufferError):
        ba.extend(b'xx')
    v.release()
    assert not is_locked(ba)
    v = View(ba)[2:5]                  # the parent was a temporary: the slice holds the lock
    assert is_locked(ba)
    del v
    assert not is_locked(ba)

    arr = array.array('i', range(4))
    v = View(arr, format='B')
    with pytest.raises(BufferError):
        arr.append(1)
    del v
    arr.append(1)

    b = Buffer(8)
    v = View(b)
    assert b.exports == 1
    assert raises_message(BufferError, b.close) == in_use('close', 1)
    assert b.closed is False
    v.release()
    b.close()
    assert b.closed

    mm = mmap.mmap(-1, 4096)
    v = View(mm, offset=100, shape=(10,))
    with pytest.raises(BufferError):
        mm.close()
    v.release()
    mm.close()


def test_release():
    ba = bytearray(range(32))
    v = View(ba, format='<i')
    m = memoryview(v)
    assert v.exports == 1
    assert raises_message(BufferError, v.release).startswith('cannot release: 1 exported')
    assert v.released is False and is_locked(ba)
    assert v.tolist()[0] == struct.unpack_from('<i', ba)[0]   # still usable
    child = v[1:3]                    # a child holds its own export of the root, not of v
    nd = _testbuffer.ndarray(v, getbuf=PyBUF_FULL_RO)
    assert v.exports == 2
    m.release()
    del nd
    assert v.exports == 0
    assert v.release() is None
    check_released(v)
    assert v.release() is None        # idempotent
    assert is_locked(ba)              # the child still holds the root
    assert child.tolist() == list(struct.unpack_from('<2i', ba, 4))
    child.release()
    assert not is_locked(ba)


def test_context_manager():
    ba = bytearray(8)
    with View(ba, format='h') as v:
        assert isinstance(v, View) and v.released is False
        with memoryview(v) as m:
            m[1] = -2
        assert is_locked(ba)
    check_released(v)
    assert not is_locked(ba) and ba[2:4] == struct.pack('h', -2)

    outer = View(ba)
    with outer as inner:
        assert inner is outer
    assert outer.released

    with pytest.raises(KeyError):
        with View(ba) as v2:
            raise KeyError('inside')
    assert v2.released and not is_locked(ba)

    v3 = View(ba)
    with pytest.raises(BufferError):
        with v3:
            m = memoryview(v3)     # still exported when the block ends
    assert v3.released is False and is_locked(ba)
    m.release()
    v3.release()
    assert not is_locked(ba)

    # The block raised while the View is still exported: that exception is the one seen, the
    # View stays unreleased (the base locked), and on 3.11+ the exception says so in a note.
    v4 = View(ba)
    with pytest.raises(KeyError) as info:
        with v4:
            m = memoryview(v4)
            raise KeyError('from the block')
    assert v4.released is False and is_locked(ba)
    if sys.version_info >= (3, 11):
        assert info.value.__notes__ == [
            'View not released on leaving the with block: cannot release: 1 exported buffer']
    m.release()
    v4.release()
    assert not is_locked(ba)


class TrackedBuffer(Buffer):
    """A subclass only to have weak references and attributes."""


class TrackedBytearray(bytearray):
    pass


def test_garbage_collection_unlocks_the_base():
    ba = bytearray(16)
    v = View(ba)
    del v                                   # refcount drop
    assert not is_locked(ba)

    cycle = [View(ba)[::2]]                 # a View held in a reference cycle
    cycle.append(cycle)
    del cycle
    gc.collect()
    assert not is_locked(ba)

    holder = TrackedBuffer(8)               # a View inside the base's own cycle
    holder.view = View(holder)
    holder.export = memoryview(holder.view)  # with an export of the View in the cycle too
    ref = weakref.ref(holder)
    del holder
    gc.collect()
    assert ref() is None

    tb = TrackedBytearray(b'abc')           # bytearray subclass base, cycle through its dict
    tb.view = View(tb)[1:]
    ref = weakref.ref(tb)
    del tb
    gc.collect()
    assert ref() is None


def test_view_of_a_memoryview_in_a_garbage_cycle():
    """A View whose root is a memoryview, in a cycle through the memoryview's own base.  Before
    CPython's fix of gh-77894 (3.12.7, 3.13) the collector clears a memoryview even while it is
    exported, which crashed; there the cycle must be left alone (leaked, still readable);
    with the fix it is collected.  Never an exception from gc.collect(), never a crash."""
    base = TrackedBytearray(bytes(range(64)))
    ref = weakref.ref(base)
    base.v = View(memoryview(base))[::2]
    base.w = View(memoryview(base), format='<i')
    del base
    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert unraisable == []
    fixed = sys.version_info >= (3, 13) or (3, 12, 7) <= sys.version_info < (3, 13)
    if fixed:
        assert ref() is None
    else:
        # Left alone (leaked), and still readable.
        assert ref() is not None, 'collected on a CPython without the gh-77894 fix'
        assert ref().v.tolist() == list(range(0, 64, 2))


def test_refcounts_back_to_baseline():
    ba = bytearray(range(64))
    b = Buffer((4, 4), 'i')
    ro = bytes(bytearray(b'0123456789abcdef'))  # not a code constant shared with the module
    gc.collect()
    baseline = [sys.getrefcount(o) for o in (ba, b, ro, View)]
    for _ in range(200):
        v = View(ba, format='h', shape=(2, 3), strides=(-12, 2), offset=20)
        v[::-1][1:, ::2].tolist()
        memoryview(v).release()
        with View(v) as w, memoryview(w) as m:
            m[0, 0] = 1
        View(b)[1:, ::-1].tobytes('F')
        View(View(b, readonly=True), shape=(2,)).tolist()
        bufferkit.inspect(v, PyBUF_STRIDES)
        _testbuffer.ndarray(v, getbuf=PyBUF_FULL)
        np.asarray(v).sum()
        raw_refusal(View(ro), PyBUF_WRITABLE)
        for bad in ({'offset': 65}, {'shape': (100,)}, {'readonly': False}, {'format': 'x'}):
            try:
                View(ro if 'readonly' in bad else ba, **bad)
            except (ValueError, BufferError):
                pass
        repr(v)
        v.release()
        repr(v)
    del v, w, m
    gc.collect()
    assert [sys.getrefcount(o) for o in (ba, b, ro, View)] == baseline
    assert b.exports == 0 and not is_locked(ba)


def _scribble(size, count=30):
    junk = []
    for _ in range(count):
        j = bytearray(b'\xee' * size)
        junk.append(j)
    return junk


def test_view_outlives_every_other_reference_to_its_base():
    payload = bytes(range(256)) * 64
    v = View(bytearray(payload))                     # the only reference to the bytearray
    s = View(memoryview(bytearray(payload))[::3])[::-1]   # memoryview, View: temporaries
    a = View(np.frombuffer(payload, dtype='<u4').copy()[::2])
    mm = mmap.mmap(-1, len(payload))
    mm[:] = payload
    mv = View(mm)[100:200]
    del mm
    gc.collect()
    junk = _scribble(len(payload))
    assert v.tobytes() == payload
    assert s.tolist() == list(payload[::3][::-1])
    assert a.tolist() == np.frombuffer(payload, dtype='<u4')[::2].tolist()
    assert mv.tobytes() == payload[100:200]
    with memoryview(v) as m:
        assert m[1000] == payload[1000]
    del junk

    base = TrackedBuffer(len(payload))
    with memoryview(base) as m:
        m[:] = payload
    ref = weakref.ref(base)
    child = View(base)[::-2]
    del base
    gc.collect()
    assert ref() is not None and ref().exports == 1
    _scribble(len(payload))
    assert child.tobytes() == payload[::-2]
    del child
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize('protocol', range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_a_view_raises_type_error(protocol):
    v = View(bytearray(8))[::2]
    with pytest.raises(TypeError):
        pickle.dumps(v, protocol)
    with pytest.raises(TypeError):
        pickle.dumps([v], protocol)


# --------------------------------------------------------------------------------------------
# inspect()
# --------------------------------------------------------------------------------------------

BUFFERINFO_FIELDS = ('buf', 'obj', 'len', 'itemsize', 'readonly', 'ndim', 'format', 'shape',
                     'strides', 'suboffsets')

INSPECT_OBJECTS = dict(BASES)
INSPECT_OBJECTS.update({
    'ndarray-pil': lambda: _ndarray(shape=[3, 4], format='B', flags=ND_PIL),
    'ndarray-pil-neg': lambda: _ndarray(shape=[2, 2], strides=[-8, -2], offset=10,
                                        format='h', flags=ND_PIL | ND_WRITABLE),
    'buffer-readonly': lambda: Buffer((2, 3), 'i', readonly=True),
    'view-readonly-F': lambda: View(np.asfortranarray(_grid()), readonly=True),
    'ctypes-null': lambda: (ctypes.c_char * 0).from_address(0),
})


def _pointer_array(pointer, n):
    return None if not pointer else tuple(pointer[i] for i in range(n))


@pytest.mark.parametrize('name', sorted(INSPECT_OBJECTS))
def test_inspect_equals_what_consumers_get(name):
    """For every request: the fields _testbuffer.ndarray(obj, getbuf=flags) shows, the raw
    Py_buffer (None for each NULL pointer), the export given back afterwards."""
    obj = INSPECT_OBJECTS[name]()
    exports = getattr(obj, 'exports', None)
    gc.collect()
    refs = sys.getrefcount(obj)
    for flags in REQUESTS + (PyBUF_FORMAT | PyBUF_SIMPLE,):
        try:
            nd = _testbuffer.ndarray(obj, getbuf=flags)
        except (BufferError, ValueError) as exc:  # numpy refuses with ValueError
            want = (type(exc), str(exc))
            with pytest.raises(type(exc)) as info:
                bufferkit.inspect(obj, flags)
            assert (type(info.value), str(info.value)) == want, hex(flags)
            continue
        info = bufferkit.inspect(obj, flags)
        assert type(info) is bufferkit.BufferInfo and info._fields == BUFFERINFO_FIELDS
        where = f'{name} flags={hex(flags)}'
        assert info.obj is nd.obj is obj, where
        assert (info.len, info.itemsize, info.ndim) == (nd.nbytes, nd.itemsize, nd.ndim), where
        assert info.readonly is bool(nd.readonly), where
        assert (info.format or '', info.shape or (), info.strides or (),
                info.suboffsets or ()) == (nd.format, nd.shape, nd.strides, nd.suboffsets), where
        del nd
        with RawView(obj, flags) as raw:
            assert info.buf == raw.buf, where          # None for NULL
            assert info.format == (None if raw.format is None else raw.format.decode()), where
            assert info.shape == _pointer_array(raw.shape, raw.ndim), where
            assert info.strides == _pointer_array(raw.strides, raw.ndim), where
            assert info.suboffsets == _pointer_array(raw.suboffsets, raw.ndim), where
        for field in ('shape', 'strides', 'suboffsets'):
            value = getattr(info, field)
            assert value is None or type(value) is tuple, where
        del info
        if exports is not None:
            assert obj.exports == exports, where
        if isinstance(obj, bytearray):
            assert not is_locked(obj), where
    gc.collect()
    if name != 'bytes-empty':  # b'' is the interpreter's shared singleton
        assert sys.getrefcount(obj) == refs


def test_inspect_buf_is_the_address_ctypes_computes():
    ba = bytearray(range(32))
    assert bufferkit.inspect(ba).buf == ctypes.addressof(ctypes.c_char.from_buffer(ba))
    data = b'some bytes'
    assert bufferkit.inspect(data).buf == ctypes.cast(ctypes.c_char_p(data),
                                                      ctypes.c_void_p).value
    arr = array.array('d', [1.0, 2.0])
    assert bufferkit.inspect(arr).buf == arr.buffer_info()[0]
    carr = (ctypes.c_int32 * 5)()
    assert bufferkit.inspect(carr).buf == ctypes.addressof(carr)
    grid = _grid()
    for sliced in (grid, grid[::-1, ::-3], grid[2:, 5:].T):
        assert bufferkit.inspect(sliced).buf == sliced.ctypes.data
        assert bufferkit.inspect(View(grid)[(slice(None, None, -1), slice(None, None, -3))]
                                 ).buf == grid[::-1, ::-3].ctypes.data
    v = View(ba, format='<h', shape=(3,), strides=(-4,), offset=10)
    assert bufferkit.inspect(v).buf == ctypes.addressof(ctypes.c_char.from_buffer(ba)) + 10
    assert bufferkit.inspect(v[1:]).buf == bufferkit.inspect(v).buf - 4
    mm = mmap.mmap(-1, 64)
    c = ctypes.c_char.from_buffer(mm)
    assert bufferkit.inspect(mm).buf == ctypes.addressof(c)
    del c
    mm.close()


def test_inspect_null_pointers_are_none():
    info = bufferkit.inspect(bytearray(b'ab'), PyBUF_SIMPLE)
    assert (info.format, info.shape, info.strides, info.suboffsets) == (None, None, None, None)
    info = bufferkit.inspect(Buffer((2, 3), 'h'), PyBUF_ND)
    assert (info.format, info.shape, info.strides) == (None, (2, 3), None)
    # A NULL buf: a zero-length ctypes array at address 0 exports buf = NULL.
    null = (ctypes.c_char * 0).from_address(0)
    with RawView(null, PyBUF_FULL_RO) as raw:
        assert raw.buf is None        # ctypes' own reading: the pointer really is NULL
    for flags in (PyBUF_FULL_RO, PyBUF_SIMPLE):
        info = bufferkit.inspect(null, flags)
        assert info.buf is None, f'buf of a NULL pointer: got {info.buf!r}, want None'
        assert info.len == 0


def test_inspect_documented_examples():
    info = bufferkit.inspect(bytearray(b'ab'), bufferkit.PyBUF_ND)
    assert info[1:] == (bytearray(b'ab'), 2, 1, False, 1, None, (2,), None, None)
    v = View(bytearray(64))[8:40:4]                      # README
    info = bufferkit.inspect(v, bufferkit.PyBUF_STRIDES)
    assert info.obj is v
    assert info[2:] == (8, 1, False, 1, None, (8,), (4,), None)
    assert 'BufferInfo(' in repr(info) and 'buf=' in repr(info)
    # The default request is PyBUF_FULL_RO, flags may be given by keyword.
    b = Buffer((2, 3), '<i')
    assert bufferkit.inspect(b) == bufferkit.inspect(b, PyBUF_FULL_RO) == bufferkit.inspect(
        b, flags=PyBUF_FULL_RO)
    assert bufferkit.inspect(obj=b, flags=PyBUF_SIMPLE).format is None
    assert b.exports == 0


def test_inspect_refusals_are_the_exporters():
    ro = Buffer(4, readonly=True)
    assert raises_message(BufferError, bufferkit.inspect, ro,
                          PyBUF_WRITABLE) == 'Buffer is not writable'
    f = Buffer((3, 4), 'i', order='F')
    assert raises_message(BufferError, bufferkit.inspect, f,
                          PyBUF_C_CONTIGUOUS) == 'Buffer is not C-contiguous'
    v = View(_grid())[::2]
    assert raises_message(BufferError, bufferkit.inspect, v, PyBUF_ND) == (
        'View is not C-contiguous and the request has no strides')
    assert raises_message(BufferError, bufferkit.inspect, v, PyBUF_ANY_CONTIGUOUS) == (
        'View is not contiguous')
    assert raises_message(BufferError, bufferkit.inspect, Buffer(3),
                          0x200 | PyBUF_FULL).startswith('invalid buffer request flags')
    for obj in (b'abc', _readonly(_grid()), memoryview(b'x'),
                _testbuffer.ndarray([1, 2], shape=[2], format='B')):
        with pytest.raises((BufferError, ValueError)) as theirs:  # numpy: ValueError
            _testbuffer.ndarray(obj, getbuf=PyBUF_WRITABLE)
        assert raises_message(type(theirs.value), bufferkit.inspect, obj,
                              PyBUF_WRITABLE) == str(theirs.value)
    pil = _ndarray(shape=[3, 4], format='B', flags=ND_PIL)
    with pytest.raises(BufferError):
        bufferkit.inspect(pil, PyBUF_STRIDED)          # the exporter's refusal: suboffsets
    assert bufferkit.inspect(pil, PyBUF_INDIRECT).suboffsets == (0, -1)
    for bad in (1, 'text', None, object()):
        with pytest.raises(TypeError):
            bufferkit.inspect(bad)
    for b in (ro, f):
        assert b.exports == 0


def test_module_layout():
    assert View.__module__ == 'bufferkit' and View.__name__ == 'View'
    assert bufferkit.BufferInfo.__module__ == 'bufferkit'
    for name in ('View', 'inspect', 'BufferInfo'):
        assert name in bufferkit.__all__
    import bufferkit._bufferkit as native
    assert native.View is View and native.inspect is bufferkit.inspect


# View.cast: View(v, format=..., shape=...) spelled as memoryview.cast.

@pytest.mark.parametrize("fmt, shape", [
    ("i", None), ("<h", None), ("B", (4, 16)), ("d", (2, 4)), ("2h", None), ("f", [2, 8]),
])
def test_cast_equals_view_with_format_and_shape(fmt, shape):
    ba = bytearray(range(64))
    v = View(ba)
    cast = v.cast(fmt) if shape is None else v.cast(fmt, shape)
    made = View(v, format=fmt, shape=shape)
    for got in (cast, v.cast(format=fmt, shape=shape)):
        assert type(got) is View and got.base is ba
        assert (got.format, got.itemsize, got.shape, got.strides, got.offset, got.readonly) == (
            made.format, made.itemsize, made.shape, made.strides, made.offset, made.readonly)
        assert got.tobytes() == made.tobytes() == bytes(ba)
        if len(fmt.lstrip("<")) == 1:
            assert got.tolist() == memoryview(ba).cast(fmt.lstrip("<"), shape or [64 // got.itemsize]).tolist()


def test_cast_may_cover_part_of_the_view_as_view_does():
    # Unlike memoryview.cast (product(shape) * itemsize must equal the size), a cast is any
    # layout inside the View's items, as View(v, format=, shape=) is.
    c = View(bytearray(range(16))).cast("B", (3,))
    assert (c.shape, c.nbytes, c.tolist()) == ((3,), 3, [0, 1, 2])


def test_cast_shares_the_export_and_sees_writes():
    root = Buffer(16)
    v = View(root)
    c = v.cast("I")
    assert root.exports == 1 and v.exports == 0 and c.base is root
    with memoryview(root) as m:
        m[:4] = (7).to_bytes(4, sys.byteorder)
    assert c.tolist()[0] == 7
    v.release()
    assert root.exports == 1 and c.tolist()[0] == 7    # the cast keeps the shared export
    c.release()
    assert root.exports == 0


def test_cast_of_a_fortran_view_and_of_a_slice():
    f = View(bytearray(range(24)), shape=(4, 6), strides=(1, 4))   # Fortran-contiguous
    assert bytes(f.cast("B").tolist()) == memoryview(f).tobytes("A") and len(f.cast("h")) == 12
    s = View(bytearray(range(32)))[8:24]
    assert s.cast("I").tolist() == memoryview(bytes(range(8, 24))).cast("I").tolist()


@pytest.mark.parametrize("call, exc, message", [
    (lambda v: v[::2].cast("B"), ValueError,
     "cast() needs a contiguous View (C or Fortran order), but this View is not contiguous"),
    (lambda v: v.cast("d", (3,)), ValueError, "past the end of the base"),
    (lambda v: v.cast("i", (-1,)), ValueError, None),
    (lambda v: v.cast("not a format"), ValueError, "bad format"),
    (lambda v: v.cast(), TypeError, None),
    (lambda v: v.cast("B", (16,), 1), TypeError, None),
    (lambda v: v.cast("B", strides=(1,)), TypeError, None),
    (lambda v: v.cast(4), TypeError, None),
])
def test_cast_refusals(call, exc, message):
    ba = bytearray(16)
    v = View(ba)
    with pytest.raises(exc) as info:
        call(v)
    if message:
        assert message in str(info.value)
    assert v.exports == 0 and not v.released
    v.release()
    ba.append(0)                                      # nothing else holds the base


def test_cast_of_a_released_view_raises_value_error():
    v = View(bytearray(8))
    v.release()
    with pytest.raises(ValueError, match="released"):
        v.cast("B")


def test_cast_releasing_the_view_while_its_shape_is_read():
    # A shape item's __index__ releases the View mid-call: the cast then refuses (the View is
    # released), and nothing of the base stays locked.
    ba = bytearray(16)
    v = View(ba)

    class Sneaky:
        def __index__(self):
            v.release()
            return 16

    with pytest.raises(ValueError, match="released"):
        v.cast("B", (Sneaky(),))
    ba.append(0)


def test_readonly_false_reports_the_exporters_own_failure():
    """View(readonly=False) asks a read-only base again for a writable export. A BufferError
    (or numpy's ValueError) from that request is the base's refusal and becomes the View's
    message; any other error (here a MemoryError) is the caller's to see, not relabelled
    "read-only" (found in review)."""
    class Failing(bufferkit.Exporter):
        def __buffer__(self, flags):
            if flags & PyBUF_WRITABLE:
                raise MemoryError('no memory for a writable export')
            return memoryview(bytes(8))

    class Refusing(bufferkit.Exporter):
        def __buffer__(self, flags):
            if flags & PyBUF_WRITABLE:
                raise BufferError('read-only here')
            return memoryview(bytes(8))

    with pytest.raises(MemoryError, match='^no memory for a writable export$'):
        View(Failing(), readonly=False)
    with pytest.raises(BufferError) as info:
        View(Refusing(), readonly=False)
    assert str(info.value) == 'View(readonly=False) needs a writable base, but Refusing is read-only'


class _TypeSlot(ctypes.Structure):
    _fields_ = [('slot', ctypes.c_int), ('pfunc', ctypes.c_void_p)]


class _TypeSpec(ctypes.Structure):
    _fields_ = [('name', ctypes.c_char_p), ('basicsize', ctypes.c_int), ('itemsize', ctypes.c_int),
                ('flags', ctypes.c_uint), ('slots', ctypes.POINTER(_TypeSlot))]


def _hostile_exporter(name, fill):
    """An instance of a C type (made with PyType_FromSpec through ctypes) whose bf_getbuffer
    is ``fill(view)`` after the fields every exporter sets: a layout no Python exporter can
    return (its memoryview would refuse it)."""
    memory = ctypes.create_string_buffer(64)

    @ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.POINTER(PyBuffer), ctypes.c_int)
    def getbuffer(obj, view, flags):
        v = view.contents
        v.buf, v.len, v.itemsize, v.readonly, v.ndim = ctypes.addressof(memory), 8, 1, 1, 1
        v.format, v.shape, v.strides, v.suboffsets, v.internal = None, None, None, None, None
        fill(v)
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
        v.obj = id(obj)
        return 0

    slots = (_TypeSlot * 2)((1, ctypes.cast(getbuffer, ctypes.c_void_p)), (0, None))  # Py_bf_getbuffer
    spec = _TypeSpec(f'test_view.{name}'.encode(), 0, 0, 0, slots)
    from_spec = ctypes.pythonapi.PyType_FromSpec
    from_spec.argtypes, from_spec.restype = [ctypes.POINTER(_TypeSpec)], ctypes.py_object
    tp = from_spec(ctypes.byref(spec))
    tp._keep = (getbuffer, memory, spec, slots)      # alive as long as the type
    return tp()


@pytest.mark.parametrize('name, fill, message', [
    ('NoShape2D', lambda v: setattr(v, 'ndim', 2), 'ndim 2 without a shape'),
    ('TooManyDims', lambda v: setattr(v, 'ndim', 65), 'ndim 65, itemsize 1, len 8'),
])
def test_invalid_exports_are_refused_with_what_is_wrong(name, fill, message):
    """A base whose export View cannot describe in bounds is refused by name (found in review:
    an ndim above 1 without a shape made the block it computes larger than the export's
    memory)."""
    obj = _hostile_exporter(name, fill)
    with pytest.raises(BufferError) as info:
        View(obj)
    assert str(info.value) == f'{name} exported an invalid buffer ({message})'
