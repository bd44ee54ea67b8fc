"""bufferkit.Buffer against docs/semantics.md.

Every export is judged by the oracle and verify() of conftest.py, and compared with
_testbuffer.ndarray over the same layout (the reference exporter).
"""

import array
import gc
import struct
import sys
import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _testbuffer
from _testbuffer import (
    ND_PIL, ND_WRITABLE, PyBUF_C_CONTIGUOUS, PyBUF_CONTIG,
    PyBUF_F_CONTIGUOUS, PyBUF_FORMAT, PyBUF_FULL, PyBUF_FULL_RO, PyBUF_ND, PyBUF_SIMPLE,
    PyBUF_STRIDES, PyBUF_WRITABLE,
)

import bufferkit
from bufferkit import Buffer, Exporter, View
from conftest import (
    ATTRS, BUFFERKIT, FORMATS, MALFORMED_REQUESTS, STRUCT_HAS_COMPLEX, Layout, RawView, Refused,
    check_each, check_like_memoryview, flat, raised, raises_message, contiguous_strides, format_shape_cases, layout_variants, nest, product,
    in_use, make_buffer, raw_refusal, reference_ndarray, verify, verify_all, write_contents, zero_item,
)

CLOSED = 'operation on closed Buffer'
SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def zero_layout(fmt, shape, order='C', readonly=False):
    shape = tuple(shape)
    return Layout(fmt, shape, nest([zero_item(fmt)] * product(shape), shape), order=order,
                  readonly=readonly)


# --------------------------------------------------------------------------------------------
# The request matrix
# --------------------------------------------------------------------------------------------

def _check_requests(layout, cls=Buffer):
    b = make_buffer(layout, cls)
    assert verify_all(b, layout, BUFFERKIT, reference=reference_ndarray(layout)) > 0
    assert b.exports == 0


@pytest.mark.parametrize('fmt, shape', format_shape_cases())
def test_request_matrix(fmt, shape):
    """Every request on the C/F, writable/read-only Buffers of one format and shape."""
    check_each(layout_variants(fmt, shape), _check_requests)


layouts = st.builds(
    Layout.generate,
    st.sampled_from(FORMATS + ('c', 'Q', 'f', '3B', 'xBx', '=h', 'n')),
    st.lists(st.integers(0, 4), max_size=4).map(tuple),
    order=st.sampled_from('CF'),
    readonly=st.booleans(),
    seed=st.integers(0, 2**32),
)


@SETTINGS
@given(layouts)
def test_request_matrix_random_layouts(layout):
    b = make_buffer(layout)
    verify_all(b, layout, BUFFERKIT, reference=reference_ndarray(layout))
    assert b.exports == 0


@pytest.mark.parametrize('fmt', FORMATS)
@pytest.mark.parametrize('readonly', [False, True], ids=['rw', 'ro'])
def test_constructed_readonly_and_zeroed(fmt, readonly):
    """Buffer(..., readonly=True) itself, not freeze(): zero contents, every request."""
    for shape in ((2, 3), (), (4,), (0, 2)):
        for order in 'CF':
            layout = zero_layout(fmt, shape, order, readonly)
            b = Buffer(shape, fmt, order=order, readonly=readonly)
            verify_all(b, layout, BUFFERKIT, reference=reference_ndarray(layout))


@pytest.mark.parametrize('flags', MALFORMED_REQUESTS + (-1,), ids=hex)
@pytest.mark.parametrize('readonly', [False, True], ids=['rw', 'ro'])
@pytest.mark.parametrize('fmt, shape, order', [('<i', (3, 4), 'C'), ('B', (5,), 'C'),
                                               ('d', (2, 3), 'F'), ('h', (), 'C')])
def test_malformed_requests_are_refused(flags, readonly, fmt, shape, order):
    layout = Layout.generate(fmt, shape, order=order, readonly=readonly)
    b = make_buffer(layout)
    m = memoryview(b)  # a live export: a refusal must not touch the count
    got = verify(b, flags, layout, BUFFERKIT)
    assert isinstance(got, Refused) and got.rule == 1
    assert b.exports == 1
    if hasattr(b, '__buffer__'):  # Python 3.12+: the request through the Python-level slot
        with pytest.raises(BufferError):
            b.__buffer__(flags)
    m.release()
    assert b.exports == 0


@pytest.mark.parametrize('flags, message', [
    (0x200, 'invalid buffer request flags 0x200: unknown bits 0x200'),
    (0x100, 'invalid buffer request flags 0x100: 0x100 needs PyBUF_STRIDES'),
])
def test_malformed_messages_of_the_page(flags, message):
    b = Buffer(4)
    # Through the slot itself: Python 3.13's PyObject_GetBuffer refuses these two first.
    assert raises_message(BufferError, RawView(b, flags).__enter__) == message
    assert b.exports == 0


def test_refusal_messages_of_the_page():
    ro = Buffer(3, 'i', readonly=True)
    f2 = Buffer((3, 4), 'i', order='F')
    c2 = Buffer((3, 4), 'i')
    cases = [
        (ro, PyBUF_WRITABLE, 'Buffer is not writable'),
        (f2, PyBUF_C_CONTIGUOUS, 'Buffer is not C-contiguous'),
        (c2, PyBUF_F_CONTIGUOUS, 'Buffer is not Fortran contiguous'),
        (f2, PyBUF_ND, 'Buffer is not C-contiguous and the request has no strides'),
        (c2, PyBUF_FORMAT,
         "Buffer has format 'i': a request for the format without the shape cannot be served"),
    ]
    for b, flags, message in cases:
        assert raises_message(BufferError, _testbuffer.ndarray, b, getbuf=flags) == message
        assert raises_message(BufferError, RawView(b, flags).__enter__) == message
        assert b.exports == 0


@pytest.mark.parametrize('fmt', ['B', '@B', '=B', '<B', '>B', '!B'])
def test_format_without_shape_served_for_unsigned_bytes(fmt):
    b = Buffer((2, 3), fmt)
    write_contents(b, Layout.generate(fmt, (2, 3)))
    for flags in (PyBUF_FORMAT, PyBUF_FORMAT | PyBUF_WRITABLE):
        nd = _testbuffer.ndarray(b, getbuf=flags)
        # Served with the Buffer's own format string, prefix included.
        assert (nd.format, nd.ndim, nd.shape, nd.strides, nd.nbytes) == (fmt, 1, (), (), 6)
        assert nd.tolist() == list(b.tobytes())
    # The documented difference: _testbuffer.ndarray refuses the same request.
    with pytest.raises(BufferError):
        _testbuffer.ndarray(reference_ndarray(Layout.generate(fmt, (2, 3))), getbuf=PyBUF_FORMAT)


# --------------------------------------------------------------------------------------------
# The constructor
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('args, kwargs, shape, fmt, order, readonly', [
    ((5,), {}, (5,), 'B', 'C', False),
    ((0,), {}, (0,), 'B', 'C', False),
    ((np.int64(4),), {}, (4,), 'B', 'C', False),
    (((2, 3), 'i'), {}, (2, 3), 'i', 'C', False),
    (((2, 3),), {'format': 'd', 'order': 'F', 'readonly': True}, (2, 3), 'd', 'F', True),
    (((),), {}, (), 'B', 'C', False),
    (((),), {'format': 'q'}, (), 'q', 'C', False),
    ((), {'shape': (2, 3)}, (2, 3), 'B', 'C', False),
    (((0, 5),), {'order': 'F'}, (0, 5), 'B', 'F', False),
    (((1,) * 64,), {}, (1,) * 64, 'B', 'C', False),
    (((3,), 'hi'), {'readonly': 1}, (3,), 'hi', 'C', True),
    (((3,), '2h'), {'readonly': 0}, (3,), '2h', 'C', False),
    (((3,),), {'readonly': []}, (3,), 'B', 'C', False),
    (((3,),), {'readonly': 'yes'}, (3,), 'B', 'C', True),
])
def test_constructor_good_forms(args, kwargs, shape, fmt, order, readonly):
    b = Buffer(*args, **kwargs)
    assert (b.shape, b.format, b.order, b.readonly) == (shape, fmt, order, readonly)
    assert b.itemsize == struct.calcsize(fmt)
    assert b.ndim == len(shape)
    assert b.nbytes == product(shape) * b.itemsize
    assert b.strides == contiguous_strides(shape, b.itemsize, order)
    assert b.exports == 0 and b.closed is False
    assert b.tobytes() == bytes(b.nbytes)


@pytest.mark.parametrize('fmt', FORMATS + ('c', 'f', 'Q', 'n', 'N', '3B', 'xB', '@i', '=q',
                                           '!h', '>d', '<e', '5s', '2p', 'ii', '?xxx'))
def test_constructor_every_struct_format(fmt):
    b = Buffer((2, 2), fmt)
    assert b.format == fmt and b.itemsize == struct.calcsize(fmt)
    layout = Layout.generate(fmt, (2, 2))
    write_contents(b, layout)
    assert b.tolist() == reference_ndarray(layout).tolist() == layout.items


def _expect_no_leftovers(exc_type, args, kwargs, keywords=()):
    """Construct many times, always failing; nothing may be left behind: not a reference to
    the type (a half-made instance holds one), nor to any argument."""
    watched = [o for o in [Buffer] + list(args) + list(kwargs.values()) if o is not None]
    gc.collect()  # earlier garbage may still hold references to the type or the arguments
    before = [sys.getrefcount(o) for o in watched]
    messages = set()
    for _ in range(50):
        try:
            Buffer(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - checked just below
            assert type(exc) is exc_type, f'{type(exc).__name__}: {exc}'
            messages.add(str(exc))
        else:
            raise AssertionError(f'Buffer(*{args!r}, **{kwargs!r}) did not raise')
    gc.collect()
    assert [sys.getrefcount(o) for o in watched] == before
    (message,) = messages
    for word in keywords:
        assert word in message.lower(), f'{word!r} not in {message!r}'
    return message


@pytest.mark.parametrize('shape', [2.0, '3', None, [1, 2.5], (2, '3'), (None,), object(),
                                   [[2]]], ids=repr)
def test_constructor_shape_of_wrong_type(shape):
    _expect_no_leftovers(TypeError, (shape,), {})


def test_constructor_negative_dimension():
    message = _expect_no_leftovers(ValueError, ((2, -3),), {})
    assert message == 'shape[1] must be >= 0, not -3'
    message = _expect_no_leftovers(ValueError, (-3,), {})
    assert '>= 0' in message and '-3' in message
    _expect_no_leftovers(ValueError, ((4, 5, -1),), {'format': 'i'})


def test_constructor_too_many_dimensions():
    # The page fixes the limit (64), not the exception type; ValueError as memoryview/numpy.
    _expect_no_leftovers(ValueError, ((1,) * 65,), {}, keywords=['64'])
    _expect_no_leftovers(ValueError, ((0,) * 100,), {}, keywords=['64'])


@pytest.mark.parametrize('args', [
    ((2**63,),), ((2**64,),), ((2**62, 4),), ((2**40, 2**40),), ((2**62,), 'q'),
    ((2**31, 2**31, 2),), ((sys.maxsize, 2), 'B'), ((3, 2**200),),
], ids=repr)
def test_constructor_total_size_overflows(args):
    _expect_no_leftovers(OverflowError, args, {})


@pytest.mark.parametrize('args', [((2**62,),), ((sys.maxsize,),), ((2**61, 2), 'B')],
                         ids=repr)
def test_constructor_allocation_failure(args):
    _expect_no_leftovers(MemoryError, args, {})


@pytest.mark.parametrize('fmt', ['', 'x', '4x', '0i', '<', '>', 'T{i}', '&', 'B\x00', 'Z',
                                 '2', 'i!', '{', '<<i'], ids=repr)
def test_constructor_bad_format(fmt):
    _expect_no_leftovers(ValueError, ((3,), fmt), {}, keywords=['format'])


@pytest.mark.parametrize('fmt', [b'B', 1, None, ['B'], bytearray(b'i')], ids=repr)
def test_constructor_format_not_a_str(fmt):
    _expect_no_leftovers(TypeError, ((3,), fmt), {})


@pytest.mark.parametrize('order', ['A', 'c', 'f', '', 'CF', 'K', 'F '], ids=repr)
def test_constructor_bad_order(order):
    _expect_no_leftovers(ValueError, ((3,),), {'order': order}, keywords=['order'])


@pytest.mark.parametrize('order', [b'C', 1, None, ['C']], ids=repr)
def test_constructor_order_not_a_str(order):
    _expect_no_leftovers(TypeError, ((3,),), {'order': order})


@pytest.mark.parametrize('args, kwargs', [
    ((), {}), (((3,), 'B', 'C'), {}), (((3,), 'B', 'C', False), {}),
    (((3,),), {'size': 3}), (((3,),), {'shape': 3}),
], ids=repr)
def test_constructor_bad_call(args, kwargs):
    # order and readonly are keyword-only.
    _expect_no_leftovers(TypeError, args, kwargs)


# --------------------------------------------------------------------------------------------
# Attributes and methods, against memoryview(b) and _testbuffer.ndarray
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('fmt, shape', format_shape_cases(FORMATS + ('c',)))
def test_attributes_and_methods(fmt, shape):
    check_each(layout_variants(fmt, shape), _check_attributes_and_methods)


def _check_attributes_and_methods(layout):
    b = make_buffer(layout)
    ref = reference_ndarray(layout)
    with memoryview(b) as m:
        check_like_memoryview(b, m)
        assert b.format == layout.format and b.shape == layout.shape
        assert b.strides == layout.strides and b.suboffsets == ()
        assert b.readonly is layout.readonly and b.order == layout.order
        assert b.c_contiguous is layout.c_contiguous
        assert b.f_contiguous is layout.f_contiguous
        assert b.contiguous is True
        assert b.exports == 1
        assert b.tobytes() == layout.tobytes('C')
        assert b.tobytes('F') == layout.tobytes('F')
        assert b.tobytes('A') == layout.tobytes(layout.order if layout.ndim else 'C')
        assert b.tolist() == ref.tolist() == layout.items

        text = repr(b)
        shape = layout.shape
        forms = [repr(shape), repr(list(shape))] + (['x'.join(map(str, shape))] if shape else [])
        assert any(form in text for form in forms), text
        fmt = layout.format
        assert any(form in text for form in (repr(fmt), f'"{fmt}"', f'format={fmt}')), text
    assert b.exports == 0



@pytest.mark.parametrize('name', ATTRS + ('order', 'exports', 'closed'))
def test_attributes_are_read_only(name):
    b = Buffer((2, 3), 'h')
    before = getattr(b, name)
    with pytest.raises(AttributeError):
        setattr(b, name, before)
    with pytest.raises(AttributeError):
        delattr(b, name)
    assert getattr(b, name) == before


@SETTINGS
@given(layouts)
def test_tobytes_tolist_random_layouts(layout):
    b = make_buffer(layout)
    assert b.tolist() == layout.items
    for order in ('C', 'F'):
        assert b.tobytes(order) == layout.tobytes(order)
    with memoryview(b) as m:
        for order in ('C', 'F', 'A', None):
            assert b.tobytes(order) == m.tobytes(order)


def test_zero_initialised_after_reuse():
    """Fill and free many Buffers, then allocate the same sizes again: all zero."""
    sizes = [(16,), (1000,), (4096,), (3, 333), (1 << 14,), (1 << 18,)]
    for _ in range(3):
        dirty = []
        for shape in sizes:
            b = Buffer(shape, 'q')
            with memoryview(b) as m, m.cast('B') as raw:
                raw[:] = b'\xa5' * len(raw)
            dirty.append(b)
        del dirty, b
        gc.collect()
        for shape in sizes:
            for fmt in ('q', 'B', 'd'):
                fresh = Buffer(shape, fmt)
                assert fresh.tobytes() == bytes(fresh.nbytes)
                if fresh.nbytes <= 8192:
                    assert set(flat(fresh.tolist())) <= {0}


# --------------------------------------------------------------------------------------------
# from_buffer_copy
# --------------------------------------------------------------------------------------------

def _check_copy(src, fmt, shape, items, *, readonly=False):
    """from_buffer_copy(src): same format, shape and items, C order, every request right."""
    if readonly:
        copy = Buffer.from_buffer_copy(src, readonly=True)
    else:
        copy = Buffer.from_buffer_copy(src)
    assert type(copy) is Buffer
    assert copy.format == fmt and copy.shape == shape and copy.order == 'C'
    assert copy.itemsize == struct.calcsize(fmt)
    assert copy.strides == contiguous_strides(shape, copy.itemsize, 'C')
    assert copy.c_contiguous and copy.readonly is readonly
    assert copy.tolist() == items
    assert copy.exports == 0
    layout = Layout(fmt, shape, items, readonly=readonly)
    verify_all(copy, layout, BUFFERKIT, reference=reference_ndarray(layout))
    return copy


def test_copy_of_bytes():
    data = bytes(range(200, 256))
    _check_copy(data, 'B', (56,), list(data))
    _check_copy(data, 'B', (56,), list(data), readonly=True)
    _check_copy(b'', 'B', (0,), [])


def test_copy_of_bytearray():
    data = bytes(range(200, 256))
    ba = bytearray(data)
    c = _check_copy(ba, 'B', (56,), list(data))
    ba[:] = bytes(56)  # the copy holds its own memory
    assert c.tobytes() == data
    with memoryview(c) as m:
        m[0] = 1
    assert ba[0] == 0


@pytest.mark.parametrize('code', ['b', 'B', 'h', 'i', 'l', 'q', 'f', 'd', 'Q'])
def test_copy_of_array(code):
    arr = array.array(code, [0, 1, 3, 7, 15, 31, 63, 127])
    c = _check_copy(arr, code, (8,), arr.tolist())
    arr[0] = 99
    assert c.tolist()[0] == 0
    _check_copy(arr, code, (8,), arr.tolist(), readonly=True)


@pytest.mark.parametrize('readonly', [False, True])
def test_copy_readonly_keyword(readonly):
    c = Buffer.from_buffer_copy(b'xyz', readonly=readonly)
    assert c.readonly is readonly
    assert Buffer.from_buffer_copy(b'xyz').readonly is False  # not the source's
    with pytest.raises(TypeError):
        Buffer.from_buffer_copy(b'xyz', True)  # keyword-only


def _int_grid():
    return np.arange(-30, 30, dtype=np.int32).reshape(6, 10)


# Built afresh for each test: the test writes into its source.
NUMPY_SOURCES = {
    'C': _int_grid,
    'F': lambda: np.asfortranarray(_int_grid()),
    'strided': lambda: _int_grid()[::2, ::-3],
    'transposed': lambda: _int_grid().T[1:, ::2],
    'float16': lambda: np.linspace(-2, 2, 12, dtype=np.float16).reshape(3, 4),
    'bool': lambda: _int_grid() % 3 == 0,
    'big-endian': lambda: _int_grid().astype('>i8')[:, 1::4],
    '0-d': lambda: np.array(-7, dtype=np.int16),
    'empty': lambda: np.zeros((0, 3), dtype=np.float64),
    'uint8-3d': lambda: np.arange(24, dtype=np.uint8).reshape(2, 3, 4)[:, ::-1, 1:3],
}


@pytest.mark.parametrize('name', sorted(NUMPY_SOURCES))
def test_copy_of_numpy(name):
    arr = NUMPY_SOURCES[name]()
    fmt = memoryview(arr).format
    c = _check_copy(arr, fmt, arr.shape, arr.tolist())
    if arr.size:
        before = arr.tolist()
        arr[...] = 0  # the source changes, the copy does not
        assert c.tolist() == before
        np.asarray(c)[...] = 1  # the copy changes, the source does not
        assert not arr.any()


NUMPY_DTYPES = ('u1', 'i1', '<i2', '>i4', '<u8', '<f2', 'f4', '>f8', '?')


@st.composite
def numpy_slices(draw):
    """A numpy array of random shape and dtype, then a random strided slice of it."""
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
    dtype = np.dtype(draw(st.sampled_from(NUMPY_DTYPES)))
    order = draw(st.sampled_from('CF'))
    seed = draw(st.integers(0, 2**32 - 1))
    raw = np.random.default_rng(seed).integers(0, 256, size=product(shape) * dtype.itemsize,
                                               dtype=np.uint8)
    arr = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(shape, order=order).copy(order)
    if dtype.kind == 'f':
        arr[np.isnan(arr)] = 0
    index = tuple(slice(draw(st.integers(0, n)), None, draw(st.sampled_from([1, 2, -1, -2])))
                  for n in shape)
    return arr[index] if shape else arr


@SETTINGS
@given(numpy_slices())
def test_copy_of_random_numpy_slices(arr):
    c = Buffer.from_buffer_copy(arr)
    assert c.format == memoryview(arr).format and c.shape == arr.shape
    assert c.tolist() == arr.tolist() and c.tobytes() == arr.tobytes(order='C')
    assert c.c_contiguous and c.readonly is False and c.exports == 0


ND_ITEMS = list(range(1, 13))
TESTBUFFER_SOURCES = [
    ('strided', dict(shape=[6], strides=[2], format='B')),
    ('reversed', dict(shape=[12], strides=[-1], offset=11, format='B')),
    ('2d-negative', dict(shape=[3, 4], strides=[-4, -1], offset=11, format='B')),
    ('2d-offset', dict(shape=[2, 2], strides=[4, 1], offset=4, format='B')),
    ('pil', dict(shape=[3, 4], format='B', flags=ND_PIL)),
    ('pil-h', dict(shape=[3, 4], format='h', flags=ND_PIL | ND_WRITABLE)),
    ('fortran-l', dict(shape=[3, 4], format='l', flags=_testbuffer.ND_FORTRAN)),
]


@pytest.mark.parametrize('name, kwargs', TESTBUFFER_SOURCES, ids=[n for n, _ in
                                                                   TESTBUFFER_SOURCES])
def test_copy_of_testbuffer_ndarray(name, kwargs):
    src = _testbuffer.ndarray(ND_ITEMS, **kwargs)
    c = _check_copy(src, src.format, tuple(src.shape), src.tolist())
    if src.suboffsets:
        assert c.suboffsets == ()
    sliced = src[::-2] if src.ndim == 1 else src[::-1, 1::2]
    _check_copy(sliced, src.format, tuple(sliced.shape), sliced.tolist())


def test_copy_of_multi_value_format_and_of_buffers():
    layout = Layout.generate('hi', (3, 2))
    ref = reference_ndarray(layout)
    _check_copy(ref, 'hi', (3, 2), layout.items)
    _check_copy(memoryview(ref), 'hi', (3, 2), layout.items)
    f = make_buffer(Layout.generate('<i', (3, 4), order='F'))
    c = _check_copy(f, '<i', (3, 4), f.tolist())
    assert c.strides == (16, 4) and f.exports == 0
    before = sys.getrefcount(f)
    for _ in range(100):
        Buffer.from_buffer_copy(f)
    assert sys.getrefcount(f) == before and f.exports == 0


@pytest.mark.parametrize('obj', [1, 'text', None, object(), [1, 2]], ids=repr)
def test_copy_of_non_exporter(obj):
    with pytest.raises(TypeError):
        Buffer.from_buffer_copy(obj)


# --------------------------------------------------------------------------------------------
# Exports, freeze(), close()
# --------------------------------------------------------------------------------------------

def test_exports_count_live_exports():
    b = Buffer((4, 4), 'd')
    assert b.exports == 0
    m1 = memoryview(b)
    m2 = memoryview(b)
    assert b.exports == 2
    nested = memoryview(m1)          # shares m1's export
    part = m1[1:3]                   # and so does a slice
    assert b.exports == 2
    m1.release()                     # the export lives on in nested and part
    assert b.exports == 2
    nested.release()
    part.release()
    assert b.exports == 1
    a = np.frombuffer(b, dtype=np.float64)
    assert b.exports == 2
    c = np.asarray(b)
    assert b.exports == 3 and np.shares_memory(a, c)
    del a, c
    assert b.exports == 1
    nd1 = _testbuffer.ndarray(b, getbuf=PyBUF_FULL_RO)
    nd2 = _testbuffer.ndarray(nd1, getbuf=PyBUF_FULL_RO)  # a re-export of the re-exporter
    assert b.exports == 2
    del nd1
    assert b.exports == 2
    del nd2
    assert b.exports == 1
    m2.release()
    assert b.exports == 0


def test_freeze():
    b = Buffer(6, 'h')
    m1, m2 = memoryview(b), memoryview(b).toreadonly()  # every export of a writable Buffer
    assert raises_message(BufferError, b.freeze) == in_use('freeze', 2)
    assert b.readonly is False
    m2.release()
    assert raises_message(BufferError, b.freeze) == in_use('freeze', 1)
    m1[0] = 7
    m1.release()
    b.freeze()
    assert b.readonly is True and b.exports == 0
    assert raises_message(BufferError, _testbuffer.ndarray, b,
                          getbuf=PyBUF_WRITABLE) == 'Buffer is not writable'
    with memoryview(b) as m:
        assert m.readonly is True and m[0] == 7
        b.freeze()  # idempotent, even while exported: nothing can write any more
    b.freeze()
    assert b.readonly is True and b.tolist()[0] == 7


def test_freeze_readonly_buffer_while_exported():
    b = Buffer(3, readonly=True)
    with memoryview(b):
        b.freeze()
    assert b.readonly is True


def test_close_while_exported():
    b = Buffer(5)
    m1, m2 = memoryview(b), memoryview(b)
    assert raises_message(BufferError, b.close) == in_use('close', 2)
    assert b.closed is False
    m1[0] = 3
    m1.release()
    assert raises_message(BufferError, b.close) == in_use('close', 1)
    m2.release()
    b.close()
    assert b.closed is True and b.exports == 0


CLOSED_ATTRS = ATTRS + ('order',)


@pytest.mark.parametrize('readonly', [False, True])
def test_after_close(readonly):
    b = Buffer((2, 3), 'i', readonly=readonly)
    with memoryview(b):
        pass  # exported once: memory is kept until the object dies
    b.close()
    assert b.closed is True and b.exports == 0
    for name in CLOSED_ATTRS:
        assert raises_message(ValueError, getattr, b, name) == CLOSED, name
    for method, args in [('tobytes', ()), ('tobytes', ('F',)), ('tolist', ()),
                         ('freeze', ()), ('__enter__', ())]:
        assert raises_message(ValueError, getattr(b, method), *args) == CLOSED, method
    assert raises_message(ValueError, len, b) == CLOSED
    for flags in (PyBUF_SIMPLE, PyBUF_FULL_RO, PyBUF_FULL, PyBUF_FORMAT, PyBUF_CONTIG):
        assert raises_message(ValueError, _testbuffer.ndarray, b, getbuf=flags) == CLOSED
        exc, obj_after = raw_refusal(b, flags)
        assert type(exc) is ValueError and str(exc) == CLOSED and obj_after is None
    for consumer in (memoryview, bytes, Buffer.from_buffer_copy):
        assert raises_message(ValueError, consumer, b) == CLOSED
    assert b.exports == 0
    repr(b)
    b.close()  # idempotent
    b.close()
    assert b.closed is True


def test_context_manager():
    with Buffer((2, 2), 'f') as b:
        assert isinstance(b, Buffer) and b.closed is False
        with memoryview(b) as m:
            m[0, 0] = 1.5
        assert b.tolist() == [[1.5, 0.0], [0.0, 0.0]]
    assert b.closed is True

    outer = Buffer(3)
    with outer as inner:
        assert inner is outer

    with pytest.raises(KeyError):
        with Buffer(3) as b2:
            raise KeyError('inside')
    assert b2.closed is True

    b3 = Buffer(4)
    with pytest.raises(BufferError) as info:
        with b3:
            m = memoryview(b3)
    assert str(info.value) == in_use('close', 1)
    assert b3.closed is False
    m.release()
    b3.close()
    assert b3.closed


class Inside(Exception):
    pass


@pytest.mark.parametrize('exc_type', [Inside, KeyboardInterrupt, BufferError])
def test_with_body_error_while_exported_is_the_one_raised(exc_type):
    """The body's exception comes out, not a BufferError from __exit__; the Buffer stays open
    (and says so in a note on 3.11+), usable, and closes once the export is gone."""
    b = Buffer(4)
    error = exc_type('from the body')
    with pytest.raises(exc_type) as info:
        with b:
            m = memoryview(b)
            m[0] = 9
            raise error
    assert info.value is error
    assert info.value.__context__ is None and info.value.__cause__ is None
    notes = getattr(info.value, '__notes__', [])
    if sys.version_info >= (3, 11):
        assert notes == ['Buffer not closed on leaving the with block: ' + in_use('close', 1)]
    else:
        assert notes == []
    assert b.closed is False and b.exports == 1 and b.tolist() == [9, 0, 0, 0]
    m.release()
    b.close()
    assert b.closed is True


def test_with_body_error_without_exports_closes():
    with pytest.raises(Inside) as info:
        with Buffer(4) as b:
            raise Inside
    assert b.closed is True and not hasattr(info.value, '__notes__')


def test_exit_called_directly():
    """__exit__(*exc_info) as contextlib.ExitStack calls it: the same decisions."""
    b = Buffer(2)
    m = memoryview(b)
    error = Inside('x')
    assert b.__exit__(Inside, error, None) is None  # the exception is not swallowed
    assert b.closed is False
    assert raises_message(BufferError, b.__exit__, None, None, None) == in_use('close', 1)
    with pytest.raises(Inside):
        with __import__('contextlib').ExitStack() as stack:
            stack.enter_context(b)
            raise Inside
    m.release()
    assert b.__exit__(None, None, None) is None and b.closed


def test_close_message_names_the_fix():
    """Each remedy the message names does end the export."""
    b = Buffer(8, 'd')
    m = memoryview(b)
    assert 'memoryview.release()' in raises_message(BufferError, b.close)
    m.release()
    with memoryview(b):
        assert 'leave its with block' in raises_message(BufferError, b.close)
    a = np.frombuffer(b, dtype=np.float64)
    assert 'del the numpy array' in raises_message(BufferError, b.close)
    del a
    b.close()
    assert b.closed


class Tracked(Buffer):
    """A subclass with an instance dict (weak references work on Buffer itself too)."""


def test_numpy_buffer_argument_survives_close():
    """numpy.ndarray(shape, buffer=b) keeps a reference and a raw pointer, not an export."""
    n = 1 << 16
    b = Tracked(n)
    with memoryview(b) as m:
        m[:] = bytes(range(256)) * (n // 256)
    a = np.ndarray((n,), dtype=np.uint8, buffer=b)
    assert b.exports == 0 and a.base is b
    ref = weakref.ref(b)
    b.close()
    assert b.closed
    # Allocate and scribble over memory of the same size: freed memory would be reused.
    junk = []
    for _ in range(20):
        j = Buffer(n)
        with memoryview(j) as m:
            m[:] = b'\xee' * n
        junk.append(j)
    assert a.tobytes() == bytes(range(256)) * (n // 256)
    del b
    gc.collect()
    assert ref() is not None  # the array holds it
    assert int(a[255]) == 255
    del a
    gc.collect()
    assert ref() is None


def test_closed_buffer_never_exported_frees_now_and_survives():
    b = Buffer(1 << 20)
    b.close()
    assert b.closed and b.exports == 0
    del b
    gc.collect()


# --------------------------------------------------------------------------------------------
# Subclasses
# --------------------------------------------------------------------------------------------

class Waveform(Buffer):
    """A subclass with its own method."""

    def peak(self):
        return max(abs(x) for x in flat(self.tolist()))


class Stereo(Waveform):
    channels = 2


SUB_LAYOUTS = [Layout.generate(fmt, shape, order=order, readonly=ro)
               for fmt in ('h', 'B', '<i') for shape in ((6,), (3, 4), ())
               for order in 'CF' for ro in (False, True)]


@pytest.mark.parametrize('cls', [Waveform, Stereo])
def test_subclass_keeps_the_protocol(cls):
    def check(layout):
        w = make_buffer(layout, cls)
        assert isinstance(w, Buffer) and type(w) is cls
        # verify() names the subclass in every refusal message ("Waveform is not writable").
        verify_all(w, layout, BUFFERKIT, reference=reference_ndarray(layout))
        if layout.format == 'h' and layout.shape:
            assert w.peak() == max(abs(x) for x in flat(layout.items))
    check_each(SUB_LAYOUTS, check)


def test_subclass_dict_and_messages():
    w = Stereo((4,), 'h')
    w.rate = 44100
    assert w.__dict__ == {'rate': 44100} and w.channels == 2
    with memoryview(w) as m:
        m[1] = -300
    assert w.peak() == 300
    w.freeze()
    assert raises_message(BufferError, _testbuffer.ndarray, w,
                          getbuf=PyBUF_WRITABLE) == 'Stereo is not writable'
    assert raises_message(TypeError, len, Waveform(())).startswith('0-dim')
    w.close()
    assert raises_message(ValueError, getattr, w, 'shape').startswith('operation on closed')
    assert w.rate == 44100  # the instance dict is not the Buffer's state


def test_subclass_cycles_are_collected():
    w = Waveform(8)
    w.me = w
    w.view = memoryview(w)  # an export inside the cycle
    ref = weakref.ref(w)
    del w
    gc.collect()
    assert ref() is None


def test_subclass_failed_construction_leaves_nothing():
    gc.collect()
    before = sys.getrefcount(Waveform)
    for _ in range(50):
        with pytest.raises(ValueError):
            Waveform((-1,))
    gc.collect()
    assert sys.getrefcount(Waveform) == before


# --------------------------------------------------------------------------------------------
# Reference counts and the module
# --------------------------------------------------------------------------------------------

def test_refcounts_back_to_baseline():
    b = Buffer((8, 8), 'd')
    ro = Buffer(16, readonly=True)
    gc.collect()
    base_b, base_ro, base_type = sys.getrefcount(b), sys.getrefcount(ro), sys.getrefcount(Buffer)
    for _ in range(300):
        memoryview(b).release()
        with memoryview(b) as m, memoryview(m) as n:
            n[0, 0] = 1.0
        _testbuffer.ndarray(b, getbuf=PyBUF_FULL)
        _testbuffer.ndarray(_testbuffer.ndarray(b, getbuf=PyBUF_STRIDES), getbuf=PyBUF_ND)
        np.frombuffer(b, dtype=np.uint8).sum()
        with RawView(b, PyBUF_FULL_RO):
            pass
        raw_refusal(b, PyBUF_FORMAT)        # refused: format without shape
        raw_refusal(b, 0x200)               # refused: malformed
        raw_refusal(ro, PyBUF_WRITABLE)     # refused: read-only
        bytes(ro)
        Buffer.from_buffer_copy(b)
        b.shape, b.strides, b.format, b.tolist(), b.tobytes('F')
        Buffer((3, 3), 'hi').tolist()
    gc.collect()
    assert (sys.getrefcount(b), sys.getrefcount(ro)) == (base_b, base_ro)
    assert sys.getrefcount(Buffer) == base_type
    assert b.exports == ro.exports == 0


def test_constructor_arguments_are_not_leaked():
    fmt = ''.join(['<', 'i'])        # a fresh, non-interned str
    shape = tuple([3, 1000 + 7])     # a fresh tuple of fresh ints
    gc.collect()
    refs = sys.getrefcount(fmt), sys.getrefcount(shape), sys.getrefcount(shape[1])
    for _ in range(100):
        b = Buffer(shape, fmt, order='F')
        assert b.format == fmt
    del b
    gc.collect()
    assert (sys.getrefcount(fmt), sys.getrefcount(shape), sys.getrefcount(shape[1])) == refs


CONSTANTS = {
    'PyBUF_SIMPLE': 0, 'PyBUF_WRITABLE': 0x1, 'PyBUF_FORMAT': 0x4, 'PyBUF_ND': 0x8,
    'PyBUF_STRIDES': 0x18, 'PyBUF_C_CONTIGUOUS': 0x38, 'PyBUF_F_CONTIGUOUS': 0x58,
    'PyBUF_ANY_CONTIGUOUS': 0x98, 'PyBUF_INDIRECT': 0x118, 'PyBUF_CONTIG': 0x9,
    'PyBUF_CONTIG_RO': 0x8, 'PyBUF_STRIDED': 0x19, 'PyBUF_STRIDED_RO': 0x18,
    'PyBUF_RECORDS': 0x1d, 'PyBUF_RECORDS_RO': 0x1c, 'PyBUF_FULL': 0x11d,
    'PyBUF_FULL_RO': 0x11c, 'PyBUF_READ': 0x100, 'PyBUF_WRITE': 0x200,
}


@pytest.mark.parametrize('name', sorted(CONSTANTS))
def test_module_constants(name):
    value = getattr(bufferkit, name)
    assert type(value) is int
    assert value == CONSTANTS[name] == getattr(_testbuffer, name)
    try:
        import inspect
        flags = inspect.BufferFlags  # Python 3.12+
    except AttributeError:
        return
    assert value == flags[name[len('PyBUF_'):]]


def test_module_layout():
    import bufferkit._bufferkit as native
    assert native.Buffer is bufferkit.Buffer
    assert Buffer.__module__ == 'bufferkit' and Buffer.__name__ == 'Buffer'
    assert 'Buffer' in bufferkit.__all__
    assert all(hasattr(bufferkit, name) for name in bufferkit.__all__)


@pytest.mark.parametrize('cls', [Buffer, View, Exporter], ids=lambda c: c.__name__)
def test_dir_is_tidy(cls):
    # Nothing private on the public types: the pickle helper lives in the native module.
    assert [n for n in dir(cls) if n.startswith('_') and not n.startswith('__')] == []
    for name in dir(cls):
        if not name.startswith('__') or name in ('__buffer__', '__release_buffer__'):
            assert getattr(cls, name).__doc__, f'{cls.__name__}.{name} has no docstring'


def test_dir_of_the_package():
    public = [n for n in dir(bufferkit) if not n.startswith('_')]
    assert sorted(public) == sorted(bufferkit.__all__)


def test_pickle_helper_is_found_by_pickle():
    import bufferkit._bufferkit as native
    b = Buffer((2, 2), format='i')
    func, args = b.__reduce_ex__(2)
    assert func is native._rebuild_buffer and args[0] is Buffer
    assert func.__module__ == 'bufferkit._bufferkit' and func.__qualname__ == '_rebuild_buffer'


# --------------------------------------------------------------------------------------------
# What a Python user reaches for (issue 16): list shapes, numpy formats, ==, weakref, pickle
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('values', [[1, 2, 3], [7], [0, 255], [300, -1], [2, 3, 4, 5, 6, 7, 8, 9]],
                         ids=repr)
def test_list_shape_is_refused_with_both_readings(values):
    """bytearray([1, 2, 3]) holds those values, numpy.zeros([1, 2, 3]) has that shape: a list
    is refused, and both spellings the message offers run and mean what it says."""
    message = raises_message(TypeError, Buffer, values)
    assert message.startswith('shape must be an int or a tuple of ints, not list: ')
    namespace = {'Buffer': Buffer, 'array': array}
    if min(values) >= 0:
        shape_call = message.split('pass a tuple, ')[1].split('; ')[0]
        shaped = eval(shape_call, namespace)
        assert shaped.shape == tuple(values)
    else:  # not a shape: only the values are offered
        assert 'pass a tuple' not in message
    values_call = message.split('those values, ')[1]
    copied = eval(values_call, namespace)
    assert copied.tolist() == values and copied.shape == (len(values),)


@pytest.mark.parametrize('values', [list(range(9)), [1, 2**70], [1, 'a'], [1.0], []], ids=repr)
def test_list_shape_generic_message(values):
    message = raises_message(TypeError, Buffer, values)
    assert message == ("shape must be an int or a tuple of ints, not list: for a shape pass a "
                       "tuple, as in Buffer((2, 3)); to copy values into a Buffer, "
                       "Buffer.from_buffer_copy(bytes(values)) or array.array(typecode, values)")


def test_list_shape_runs_no_item_code():
    class Loud:
        def __index__(self):
            raise AssertionError('converted')
    with pytest.raises(TypeError, match='not list'):
        Buffer([Loud(), 2])


#: numpy's spellings and the struct format each becomes (numpy's native order is no prefix).
NUMPY_STRINGS = [
    ('f4', 'f'), ('<f8', '<d'), ('>f8', '>d'), ('=f2', '=e'), ('i2', 'h'), ('>i4', '>i'),
    ('<i8', '<q'), ('i1', 'b'), ('u1', 'B'), ('|u1', 'B'), ('<u2', '<H'), ('u4', 'I'),
    ('>u8', '>Q'), ('b1', '?'), ('|b1', '?'), ('S5', '5s'), ('|S3', '3s'),
    ('float16', 'e'), ('float32', 'f'), ('float64', 'd'), ('int8', 'b'), ('int16', 'h'),
    ('int32', 'i'), ('int64', 'q'), ('uint8', 'B'), ('uint16', 'H'), ('uint32', 'I'),
    ('uint64', 'Q'), ('bool', '?'),
]


@pytest.mark.parametrize('spelling, fmt', NUMPY_STRINGS)
def test_numpy_type_strings(spelling, fmt):
    """The format means what numpy means by the string: numpy reads the Buffer back as
    exactly that dtype, and the items are its items."""
    b = Buffer((2, 3), spelling)
    assert b.format == fmt and b.itemsize == np.dtype(spelling).itemsize
    a = np.asarray(b)
    assert a.dtype == np.dtype(spelling) and a.shape == (2, 3)
    a[...] = np.arange(6).reshape(2, 3).astype(spelling)
    assert b.tobytes() == a.tobytes()
    if a.dtype.kind != 'S':  # numpy strips the padding of bytes items, struct keeps it
        assert b.tolist() == a.tolist()
    assert View(bytearray(12), format=spelling, shape=(12 // b.itemsize,)).format == fmt \
        if 12 % b.itemsize == 0 else True


@pytest.mark.parametrize('dtype', ['f4', '>f8', '<i2', 'u1', '?', 'S4', 'int64', 'e', 'l',
                                   np.float32, np.uint16, np.bool_]
                         # struct's complex codes (3.15+): numpy's 'Zf'/'Zd' then describe them
                         + (['c8', '>c16', np.complex64] if STRUCT_HAS_COMPLEX else []),
                         ids=str)
def test_numpy_dtypes(dtype):
    """A dtype (or scalar type) gives the format numpy itself exports for it."""
    dt = np.dtype(dtype)
    for arg in (dt, dtype) if isinstance(dtype, type) else (dt,):
        b = Buffer(3, arg)
        assert b.format == memoryview(np.empty(0, dt)).format
        assert np.asarray(b).dtype == dt
    assert View(np.zeros(6, dt), format=dt).format == memoryview(np.empty(0, dt)).format


@pytest.mark.parametrize('fmt, message', ([
    ('c8', 'Zf'), ('complex128', 'Zd'), ('>c16', '>Zd'),  # struct's complex codes (3.15+)
] if STRUCT_HAS_COMPLEX else [
    ('c8', "bad format 'c8': struct has no complex format before Python 3.15; '2f' describes "
           "the (real, imag) pairs"),
    ('complex128', "bad format 'complex128': struct has no complex format before Python 3.15; "
                   "'2d' describes the (real, imag) pairs"),
]) + [
    ('f16', "bad format 'f16': numpy's 'f16' has no struct format of that size"),
    ('i3', "bad format 'i3': numpy's 'i3' has no struct format of that size"),
    ('U3', "bad format 'U3': numpy's 'U' types have no struct format"),
    ('M8', "bad format 'M8': numpy's 'M' types have no struct format"),
    ('float', "bad format 'float': bad char in struct format; pass a struct format ('B', 'd', "
              "'<i', '2h'), a numpy type string ('<f8', 'i2', 'u1', 'float32') or a numpy "
              "dtype"),
    ('f', None), ('d', None), ('2i', None),  # struct's own: never translated
])
def test_numpy_strings_without_a_struct_format(fmt, message):
    if message is None:
        assert Buffer(1, fmt).format == fmt
        return
    if ' ' not in message:  # translated to this struct format
        b = Buffer(1, fmt)
        assert (b.format, b.itemsize) == (message, struct.calcsize(message))
        return
    got = raises_message(ValueError, Buffer, 1, fmt)
    assert got == message
    assert 'repeat count' not in got


@pytest.mark.parametrize('dtype, message', ([] if STRUCT_HAS_COMPLEX else [
    (np.dtype('c8'), "bad format: numpy dtype complex64 exports format 'Zf', which struct "
                     "cannot describe (bad char in struct format)"),
]) + [
    (np.dtype('M8[ns]'), "bad format: numpy dtype datetime64[ns] has no buffer format (cannot "
                         "include dtype 'M' in a buffer)"),
    (np.dtype([('a', '<i4')]), None),
    (np.dtype('U2'), None),
    (np.dtype('O'), None),
], ids=str)
def test_numpy_dtypes_without_a_struct_format(dtype, message):
    got = raises_message(ValueError, Buffer, 1, dtype)
    if message is not None:
        assert got == message
    assert got.startswith('bad format: numpy dtype ')


@pytest.mark.parametrize('fmt', [float, int, bytes, object(), np, ['f4']], ids=repr)
def test_format_of_another_type_says_what_to_pass(fmt):
    got = raises_message(TypeError, Buffer, 1, fmt)
    assert got == ("format must be a str (a struct format such as 'd' or '<i') or a numpy "
                   f"dtype, not {type(fmt).__name__}")


def test_numpy_blocked_or_not_a_module():
    """sys.modules['numpy'] = None (how code hides numpy) or a stand-in: nothing is a dtype."""
    import subprocess
    for stand_in in ('None', 'object()', "type(sys)('numpy')"):
        code = ("import sys\n"
                f"sys.modules['numpy'] = {stand_in}\n"
                "import bufferkit\n"
                "assert bufferkit.Buffer(2, 'f4').format == 'f'\n"
                "try:\n    bufferkit.Buffer(2, object())\n"
                "except TypeError as e:\n    assert 'numpy dtype, not object' in str(e), e\n"
                "else:\n    raise AssertionError('accepted')\n")
        subprocess.run([sys.executable, '-c', code], check=True, timeout=60)


def test_numpy_strings_do_not_import_numpy():
    code = ("import sys, bufferkit\n"
            "assert bufferkit.Buffer(2, '<f8').format == '<d'\n"
            "assert bufferkit.Buffer(2, 'int16').format == 'h'\n"
            "try:\n    bufferkit.Buffer(2, object())\nexcept TypeError:\n    pass\n"
            "assert 'numpy' not in sys.modules, 'numpy was imported'\n")
    import subprocess
    subprocess.run([sys.executable, '-c', code], check=True, timeout=60)


#: (a, b): pairs a Buffer is compared with; memoryview(a) == b is the oracle.
def _comparisons():
    b = Buffer((2, 3), 'i')
    with memoryview(b) as m:
        m[1, 2] = 5
    nan = Buffer(2, 'd')
    with memoryview(nan) as m:
        m[0] = float('nan')
    return [
        (b, b),
        (b, Buffer.from_buffer_copy(b)),
        (b, Buffer.from_buffer_copy(np.asarray(b).astype('q'))),  # other format, equal values
        (b, np.asarray(b).astype('d')),
        (b, Buffer((3, 2), 'i')),                                 # other shape
        (b, Buffer((2, 3), 'i')),                                 # other values
        (b, np.asfortranarray(np.asarray(b))),                    # other memory order
        (b, b.tobytes()),                                         # 1-D bytes: shape differs
        (Buffer(3), b'\0\0\0'), (Buffer(3), bytearray(3)), (Buffer(3), array.array('B', [0] * 3)),
        (Buffer(3), b'\0\0\1'), (Buffer(3, 'h'), array.array('h', [0, 0, 0])),
        (Buffer(()), Buffer(())), (Buffer(0), b''),
        (nan, nan), (nan, Buffer.from_buffer_copy(nan)),
        (b, 'text'), (b, 3), (b, None), (b, [[0, 0, 0], [0, 0, 5]]),
        (Buffer(2, readonly=True), Buffer(2)),
    ]


def test_equality_is_memoryviews():
    b = Buffer((2, 2), 'h')
    assert b == Buffer.from_buffer_copy(b) and not (b != Buffer.from_buffer_copy(b))
    assert b == np.zeros((2, 2), 'q') and b != np.zeros(4, 'h') and b == Buffer((2, 2), 'e')
    assert Buffer(3) == b'\0\0\0' and Buffer(3) != b'\0\0'
    for a, other in _comparisons():
        with memoryview(a) as m:
            want_eq, want_ne = m == other, m != other
        assert (a == other) is want_eq, (a, other)
        assert (a != other) is want_ne, (a, other)
        if not isinstance(other, np.ndarray):  # numpy's own == is elementwise
            assert (other == a) is want_eq and (other != a) is want_ne, (other, a)
        assert a.exports == 0
        if isinstance(other, Buffer):
            assert other.exports == 0


def test_equality_of_closed_buffers_is_identity():
    a, b = Buffer(3), Buffer(3)
    assert a == b
    a.close()
    assert a == a and not (a != a)
    assert a != b and b != a and not (a == b)
    with memoryview(b'\0\0\0') as m:
        assert (a == m) is False and (m == a) is False


@pytest.mark.parametrize('op', ['<', '<=', '>', '>='])
def test_orderings_are_refused(op):
    with pytest.raises(TypeError):
        eval(f'a {op} b', {'a': Buffer(2), 'b': Buffer(2)})


@pytest.mark.parametrize('readonly', [False, True])
def test_unhashable_like_bytearray(readonly):
    b = Buffer(3, readonly=readonly)
    assert Buffer.__hash__ is None and Waveform.__hash__ is None
    with pytest.raises(TypeError, match='unhashable'):
        hash(b)
    with pytest.raises(TypeError, match='unhashable'):
        {Waveform(3)}
    assert not isinstance(b, __import__('collections').abc.Hashable)


def test_weak_references():
    import weakref
    called = []
    b = Buffer(16, 'd')
    ref = weakref.ref(b, called.append)
    proxy = weakref.proxy(b)
    assert ref() is b and proxy.shape == (16,)
    cache = weakref.WeakValueDictionary({'b': b})
    m = memoryview(b)
    del b
    assert ref() is not None and cache['b'].exports == 1  # the export keeps it alive
    m.release()
    del m
    assert ref() is None and called == [ref] and 'b' not in cache
    with pytest.raises(ReferenceError):
        proxy.shape
    # A closed Buffer, a Buffer in a garbage cycle and subclasses with and without a dict.
    closed = Buffer(2)
    closed.close()
    r2 = weakref.ref(closed)
    del closed
    assert r2() is None

    class Slotted(Buffer):
        __slots__ = ('x',)

    for cls in (Buffer, Tracked, Slotted):
        obj = cls(4)
        r = weakref.ref(obj)
        holder = [obj, memoryview(obj)]
        holder.append(holder)
        del obj, holder
        gc.collect()
        assert r() is None, cls


class Stated(Buffer):
    __slots__ = ('label', '__dict__')


class CustomState(Buffer):
    def __getstate__(self):
        return {'only': 'this'}

    def __setstate__(self, state):
        self.restored = state


@pytest.mark.parametrize('protocol', range(0, __import__('pickle').HIGHEST_PROTOCOL + 1))
def test_pickle_and_copy_keep_subclass_state(protocol):
    import copy
    import pickle
    s = Stated((2, 2), 'h')
    s.label = 'slot'
    s.extra = [1, 2]
    with memoryview(s) as m:
        m[1, 1] = -3
    for c in (pickle.loads(pickle.dumps(s, protocol)), copy.copy(s), copy.deepcopy(s)):
        assert type(c) is Stated and c.tolist() == [[0, 0], [0, -3]]
        assert (c.label, c.extra) == ('slot', [1, 2])
    c = pickle.loads(pickle.dumps(CustomState(1), protocol))
    assert c.restored == {'only': 'this'}
    # A plain Buffer (or a subclass without state) pickles without a state.
    assert len(Buffer(2).__reduce_ex__(protocol)) == 2
    assert len(Waveform(2).__reduce_ex__(protocol)) == 2


def test_tolist_of_formats_struct_does_not_know_is_not_implemented():
    """As memoryview.tolist(): NotImplementedError, naming the format."""
    arr = np.array(['ab', 'c'])
    with pytest.raises(NotImplementedError):
        memoryview(arr).tolist()
    v = View(arr)
    message = raises_message(NotImplementedError, v.tolist)
    assert message.startswith(f'View: unsupported format {memoryview(arr).format} (')
    assert v.tobytes() == arr.tobytes()


def test_version():
    """bufferkit.__version__ is the version of Cargo.toml and pyproject.toml (and of the
    installed distribution, where there is one)."""
    import os
    import re
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    versions = set()
    for name, section in (('Cargo.toml', 'package'), ('pyproject.toml', 'project')):
        with open(os.path.join(root, name)) as f:
            text = f.read()
        body = text.split(f'[{section}]', 1)[1].split('\n[', 1)[0]
        versions.add(re.search(r'^version\s*=\s*"([^"]+)"', body, re.M).group(1))
    assert versions == {bufferkit.__version__}
    assert re.fullmatch(r'\d+\.\d+\.\d+([ab]|rc)?\d*', bufferkit.__version__)
    # Installed (make test installs the wheel): the metadata says the same. Imported from a
    # build directory instead, the metadata of some other installed copy is not this one's.
    from importlib import metadata
    try:
        dist = metadata.distribution('bufferkit')
    except metadata.PackageNotFoundError:
        return
    installed_init = os.path.realpath(str(dist.locate_file('bufferkit/__init__.py')))
    if installed_init == os.path.realpath(bufferkit.__file__):
        assert dist.version == bufferkit.__version__


def test_subclass_slots_cannot_add_a_second_weakref():
    """Buffer has weak references itself: like set's subclasses, no second __weakref__."""
    with pytest.raises(TypeError, match='__weakref__ slot disallowed'):
        type('Twice', (Buffer,), {'__slots__': ('__weakref__',)})
    once = type('Once', (Buffer,), {'__slots__': ('x',)})(2)
    import weakref
    assert weakref.ref(once)() is once


@pytest.mark.parametrize('prefix', ['', '@', '=', '<', '>', '!'])
def test_single_item_formats_have_structs_itemsize(prefix):
    """Formats of one fixed-size item are sized without asking struct (a fast path in
    common.rs): every code, with every byte-order prefix, must still get exactly struct's
    answer, and a format struct refuses (or pad bytes only) must still be refused."""
    for code in 'xcbB?hHiIlLqQnNefdPspgwOTZ':
        fmt = prefix + code
        try:
            size = struct.calcsize(fmt)
        except struct.error:
            with pytest.raises(ValueError, match='bad format'):
                Buffer((1,), fmt)
            continue
        if code == 'x':
            with pytest.raises(ValueError, match='pad bytes'):
                Buffer((1,), fmt)
            continue
        b = Buffer((1,), fmt)
        assert (b.itemsize, b.format, b.nbytes) == (size, fmt, size), fmt


def test_eq_with_a_refusing_exporter_asks_it_once():
    """== against an object whose export is refused is NotImplemented, as for memoryview, and
    asks that object once: the fast path used to fall back to memoryview's comparison, which
    asked again (found in review)."""
    class Refusing(Exporter):
        asked = 0

        def __buffer__(self, flags):
            type(self).asked += 1
            raise BufferError('not now')

    b, r = Buffer(4), Refusing()
    assert (b == r, b != r) == (False, True)
    assert Refusing.asked == 2                      # once for ==, once for !=
    assert b.__eq__(r) is NotImplemented and Refusing.asked == 3
