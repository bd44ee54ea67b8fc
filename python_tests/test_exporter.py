"""bufferkit.Exporter (issue 4): pure-Python classes export a buffer on 3.9-3.13.

One file for every version.  On 3.9-3.11 bufferkit's own getbuffer slot serves consumers; on
3.12+ CPython dispatches ``__buffer__`` itself (README, "Exporter on 3.12+").  Two things differ
by version, and the tests branch on them only, exactly as documented:

* what a consumer sees as ``view.obj``: the instance (3.9-3.11), CPython's internal
  ``_buffer_wrapper`` (3.12+): ``assert_seen_as_exporter``;
* whether ``__release_buffer__`` is called for a memoryview that refused the request: always on
  3.9-3.11 (issue 4); on 3.12+ whatever CPython does for a plain class with the same
  ``__buffer__`` / ``__release_buffer__`` (3.12.1 and 3.13.0 skip it), checked by running the
  same class body as a plain class (``twins``) and comparing every count.

Everything else is asserted identically on every version.
"""

import copy
import ctypes
import gc
import hashlib
import io
import os
import pickle
import struct
import sys
import tracemalloc
import weakref

import numpy as np
import pytest

import _testbuffer
from _testbuffer import (
    ND_PIL, ND_WRITABLE, PyBUF_CONTIG_RO, PyBUF_FULL, PyBUF_FULL_RO, PyBUF_ND, PyBUF_SIMPLE,
    PyBUF_WRITABLE,
)

import bufferkit._bufferkit
from bufferkit import Buffer, Exporter, View
from conftest import (
    EXTRA_BITS, INTERCEPTED_FLAGS, MALFORMED_REQUESTS, MEMORYVIEW, REQUESTS,
    STANDARD_REQUESTS, Layout, RawView, check_each, non_memoryview_message, refcounts,
    reference_ndarray, verify, write_contents,
)

#: bufferkit's own getbuffer slot serves consumers (3.9-3.11); on 3.12+ CPython dispatches
#: __buffer__ itself.
OWN_SLOT = sys.version_info < (3, 12)

#: The slot finds special methods with a type attribute lookup, which unwraps a staticmethod
#: before the slot sees it: only the stable-ABI build (3.11). Version-specific builds (3.9,
#: 3.10) look them up as CPython 3.12 does (``_PyType_Lookup``, then ``__get__``).
UNWRAPS_STATIC = OWN_SLOT and '.abi3.' in os.path.basename(bufferkit._bufferkit.__file__)

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def assert_seen_as_exporter(seen, exporter, where=''):
    """The one documented difference: what consumers see as ``view.obj``."""
    if OWN_SLOT:
        assert seen is exporter, f'{where}: view.obj is {seen!r}, not the instance'
    else:
        assert seen is not exporter, where
        assert type(seen).__name__ == '_buffer_wrapper', (
            f'{where}: view.obj is {type(seen).__name__}, not CPython\'s _buffer_wrapper')


def outcome(fn, *args, name=None):
    """('ok', result) or ('raised', type, message).  With ``name`` (the type of the object a
    consumer was given), "not <name>" and "'<name>'" in the message read "not T", "'T'"."""
    try:
        result = fn(*args)
    except BaseException as exc:  # noqa: BLE001 - compared by the caller
        message = str(exc)
        if name:
            message = message.replace(f'not {name}', 'not T').replace(f"'{name}'", "'T'")
        return ('raised', type(exc), message)
    return ('ok', result)


def object_at(address):
    """The object at a raw address (a new reference; only while something keeps it alive)."""
    return ctypes.cast(ctypes.c_void_p(address), ctypes.py_object).value


class Unraisables:
    """sys.unraisablehook that keeps what it is given, for the tests that expect some."""

    def __init__(self):
        self.seen = []

    def __call__(self, args):
        self.seen.append((args.exc_type, args.exc_value, args.object, args.err_msg))

    def take(self):
        seen, self.seen = self.seen, []
        return seen


@pytest.fixture(autouse=True)
def unraisables():
    """Every test runs with a hook; an unraisable exception nobody took fails the test (an
    assertion inside __release_buffer__ would otherwise vanish)."""
    hook = Unraisables()
    old = sys.unraisablehook
    sys.unraisablehook = hook
    try:
        yield hook
        gc.collect()
    finally:
        sys.unraisablehook = old
    leftover = hook.take()
    assert not leftover, f'unexpected unraisable exceptions: {leftover}'


def twins(body, name=None):
    """(direct Exporter subclass, plain class) with the body of ``body`` and the same name.

    The plain class exports only on 3.12+, where CPython dispatches __buffer__ itself: there the
    Exporter subclass must behave exactly like it.  (The bodies use no zero-argument super().)"""
    name = name or body.__name__
    namespace = {k: v for k, v in vars(body).items() if k not in ('__dict__', '__weakref__')}
    namespace.update(__module__=__name__, __qualname__=name)
    return (type(name, (Exporter,), dict(namespace)), type(name, (), dict(namespace)))


class Wrapper(Exporter):
    """The README's class: a view of what it wraps; counts calls; gives the view back."""

    def __init__(self, data):
        self.data = data
        self.buffers = 0
        self.releases = 0
        self.flags = []

    def __buffer__(self, flags):
        self.buffers += 1
        self.flags.append(flags)
        return memoryview(self.data)

    def __release_buffer__(self, view):
        self.releases += 1
        view.release()  # the consumer's export of `view` is already given back


# --------------------------------------------------------------------------------------------
# The request matrix: the exporter serves exactly what the returned memoryview serves
# --------------------------------------------------------------------------------------------

class Fixed:
    """Returns the same memoryview for every request and records every call."""

    def __init__(self, mv):
        self.mv = mv
        self.buffer_flags = []
        self.released = []   # for each __release_buffer__ call: was it given self.mv?

    def __buffer__(self, flags):
        self.buffer_flags.append(flags)
        return self.mv

    def __release_buffer__(self, view):
        self.released.append(view is self.mv)


FixedExporter, FixedPlain = twins(Fixed)


def nd_outcome(obj, flags):
    """What _testbuffer.ndarray(obj, getbuf=flags) shows; (outcome, view.obj or None)."""
    try:
        nd = _testbuffer.ndarray(obj, getbuf=flags)
    except Exception as exc:  # noqa: BLE001 - compared by the caller
        return ('raised', type(exc), str(exc)), None
    items = outcome(nd.tolist)
    fields = ('served', nd.format, nd.itemsize, nd.readonly, nd.ndim, nd.shape, nd.strides,
              nd.suboffsets, nd.nbytes, nd.c_contiguous, nd.f_contiguous, nd.contiguous,
              nd.tobytes(), items)
    return fields, nd.obj


def _pointer_array(pointer, n):
    return None if not pointer else tuple(pointer[i] for i in range(n))


def raw_outcome(obj, flags, exporter=None, where=''):
    """What PyObject_GetBuffer(obj, flags) fills, field by field (buf included).  With
    ``exporter``, view.obj is checked against it while the export is live."""
    try:
        with RawView(obj, flags) as view:
            if exporter is not None:
                assert_seen_as_exporter(object_at(view.obj), exporter, where)
            return ('served', view.buf, view.len, view.itemsize, view.readonly, view.ndim,
                    view.format, _pointer_array(view.shape, view.ndim),
                    _pointer_array(view.strides, view.ndim),
                    _pointer_array(view.suboffsets, view.ndim))
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - compared by the caller
        return ('raised', type(exc), str(exc))


class Case:
    def __init__(self, wrapped, mv, layout):
        self.wrapped = wrapped
        self.mv = mv
        self.layout = layout   # what the memoryview holds, for the oracle (None: not judged)


def _numpy(arr, fmt):
    mv = memoryview(arr)
    assert mv.format == fmt
    # numpy reports strides (0, 0) for an empty array but exports packed ones.
    strides = arr.strides if arr.size else None
    return Case(arr, mv, Layout(fmt, arr.shape, arr.tolist(), strides=strides,
                                readonly=not arr.flags.writeable))


def _readonly(arr):
    arr.flags.writeable = False
    return arr


def _buffer(layout):
    b = Buffer(layout.shape, layout.format, order=layout.order)
    write_contents(b, layout)
    if layout.readonly:
        b.freeze()
    return Case(b, memoryview(b), layout)


def _bytes_case(data, readonly):
    return Case(data, memoryview(data), Layout('B', (len(data),), list(data), readonly=readonly))


def _view_slice():
    data = bytearray(range(64))
    v = View(data)[8:40:4]
    return Case(v, memoryview(v), Layout('B', (8,), list(data[8:40:4]), strides=(4,)))


def _view_layout():
    data = bytearray(struct.pack('<16i', *range(100, 116)))
    v = View(data, format='<i', shape=(2, 3), strides=(4, 8), offset=8)
    return Case(v, memoryview(v), Layout.from_memory('<i', (2, 3), list(range(100, 116)),
                                                     strides=(4, 8), offset=8))


def _ndarray_sliced():
    nd = _testbuffer.ndarray(list(range(24)), shape=[4, 6], format='i', flags=ND_WRITABLE)
    s = nd[::2, ::3]
    return Case(s, memoryview(s), Layout('i', (2, 2), s.tolist(), strides=(48, 12)))


def _ndarray(layout):
    nd = reference_ndarray(layout)
    return Case(nd, memoryview(nd), layout)


def _ndarray_pil():
    nd = _testbuffer.ndarray(list(range(12)), shape=[3, 4], format='i', flags=ND_PIL)
    return Case(nd, memoryview(nd), None)  # suboffsets: compared with the memoryview only


MATRIX_CASES = {
    'bytes': lambda: _bytes_case(bytes(range(1, 25)), readonly=True),
    'bytes-empty': lambda: _bytes_case(b'', readonly=True),
    'bytearray': lambda: _bytes_case(bytearray(range(24)), readonly=False),
    'numpy-C': lambda: _numpy(np.arange(12, dtype=np.int32).reshape(3, 4), 'i'),
    'numpy-F': lambda: _numpy(np.asfortranarray(np.arange(12.0).reshape(3, 4)), 'd'),
    'numpy-strided': lambda: _numpy(np.arange(48, dtype=np.int16).reshape(6, 8)[::2, 1::3],
                                    'h'),
    'numpy-negative-strides': lambda: _numpy(
        np.arange(12, dtype=np.int16).reshape(3, 4)[::-1, ::2], 'h'),
    'numpy-readonly-F': lambda: _numpy(
        _readonly(np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))), 'l'),
    'numpy-0d': lambda: _numpy(np.array(7, dtype=np.int64), 'l'),
    'numpy-empty': lambda: _numpy(np.zeros((0, 3), dtype=np.uint8), 'B'),
    'Buffer-C': lambda: _buffer(Layout.generate('<i', (3, 4))),
    'Buffer-F-readonly': lambda: _buffer(Layout.generate('d', (2, 3), order='F',
                                                         readonly=True)),
    'Buffer-0d': lambda: _buffer(Layout.generate('hi', ())),
    'View-slice': _view_slice,
    'View-layout': _view_layout,
    'ndarray-C': lambda: _ndarray(Layout.generate('hi', (2, 3))),
    'ndarray-F-readonly': lambda: _ndarray(Layout.generate('>q', (3, 2), order='F',
                                                           readonly=True)),
    'ndarray-sliced': _ndarray_sliced,
    'ndarray-PIL': _ndarray_pil,
    'memoryview-toreadonly': lambda: Case(
        None, memoryview(bytearray(range(8))).toreadonly(),
        Layout('B', (8,), list(range(8)), readonly=True)),
    'memoryview-sliced': lambda: Case(
        None, memoryview(bytearray(range(20)))[::3],
        Layout('B', (7,), list(range(0, 20, 3)), strides=(3,))),
    'memoryview-cast': lambda: Case(
        None, memoryview(bytearray(struct.pack('6i', *range(6)))).cast('i', (2, 3)),
        Layout('i', (2, 3), [[0, 1, 2], [3, 4, 5]])),
}

#: The 15 standard requests x {0, WRITABLE, FORMAT, WRITABLE|FORMAT}, then malformed ones
#: (the exporter must serve them exactly as the memoryview does, too).
MATRIX_FLAGS = REQUESTS + tuple(f for f in MALFORMED_REQUESTS if f not in REQUESTS)


def _release_delta(cls, mv, flags):
    """How many times ``cls``'s __release_buffer__ runs for one request."""
    obj = cls(mv)
    nd_outcome(obj, flags)
    return len(obj.released)


@pytest.mark.parametrize('name', sorted(MATRIX_CASES))
def test_request_matrix_equals_the_returned_memoryviews(name):
    case = MATRIX_CASES[name]()
    mv = case.mv
    e = FixedExporter(mv)
    # b'' and None are shared singletons: their refcounts say nothing.
    untracked = case.wrapped is None or isinstance(case.wrapped, bytes) and not case.wrapped
    wrapped = object() if untracked else case.wrapped
    watched = [e, mv, wrapped]
    refs = refcounts(watched)
    tally = {'served': 0, 'refused': 0}

    def check(flags):
        where = f'{name} flags={hex(flags)}'
        if case.layout is not None and flags in REQUESTS:
            verify(mv, flags, case.layout, MEMORYVIEW)  # the memoryview itself, on the oracle
        want = nd_outcome(mv, flags)[0]
        calls, released = len(e.buffer_flags), len(e.released)
        got, seen = nd_outcome(e, flags)
        assert got == want, f'{where}: _testbuffer sees {got}, through the memoryview {want}'
        served = want[0] == 'served'
        if served:
            assert_seen_as_exporter(seen, e, where)
        del seen
        if flags not in INTERCEPTED_FLAGS:
            assert e.buffer_flags[calls:] == [flags], f'{where}: __buffer__ calls'
            assert all(e.released[released:]), f'{where}: released another memoryview'
            delta = len(e.released) - released
            if served:
                assert delta == 1, f'{where}: __release_buffer__ ran {delta} times'
            elif OWN_SLOT:
                assert delta == 1, f'{where}: refused, __release_buffer__ ran {delta} times'
            else:
                want_delta = _release_delta(FixedPlain, mv, flags)
                assert delta == want_delta, (
                    f'{where}: refused, __release_buffer__ ran {delta} times; for a plain '
                    f'class CPython runs it {want_delta} times')
            # The raw consumer: every field, buf included, is the memoryview's.
            raw_want = raw_outcome(mv, flags)
            raw_got = raw_outcome(e, flags, exporter=e, where=where)
            assert raw_got == raw_want, f'{where}: PyObject_GetBuffer: {raw_got} != {raw_want}'
        gc.collect()
        now = refcounts(watched)
        assert now == refs, (
            f'{where}: refcounts of (instance, memoryview, wrapped) {now} != {refs}')
        if flags in REQUESTS:
            tally['served' if served else 'refused'] += 1

    check_each(MATRIX_FLAGS, check)
    assert tally['served'] > 0
    if mv.readonly:
        assert tally['refused'] > 0
    # Everything given out was given back: the memoryview can be released.
    mv.release()


def test_matrix_has_every_standard_request():
    """15 standard requests x {0, WRITABLE, FORMAT, WRITABLE|FORMAT} (28 distinct values)."""
    assert len(STANDARD_REQUESTS) == 15
    combos = {req | bits for req in STANDARD_REQUESTS for bits in EXTRA_BITS}
    assert combos <= set(MATRIX_FLAGS) and len(combos) == 28


# --------------------------------------------------------------------------------------------
# view.obj: the one documented difference
# --------------------------------------------------------------------------------------------

def test_view_obj_is_the_instance_before_312_and_cpythons_wrapper_after():
    data = bytearray(b'abcdef')
    e = Wrapper(data)
    m = memoryview(e)
    assert_seen_as_exporter(m.obj, e, 'memoryview(x).obj')
    if OWN_SLOT:
        assert m.obj is e
    else:
        assert m.obj is not e
        # The wrapper is CPython's: a plain class with __buffer__ gets the same type.
        class Plain:
            def __buffer__(self, flags):
                return memoryview(data)
        p = memoryview(Plain())
        assert type(p.obj) is type(m.obj)
        p.release()
    nd = _testbuffer.ndarray(e, getbuf=PyBUF_FULL_RO)
    assert_seen_as_exporter(nd.obj, e, '_testbuffer.ndarray')
    del nd
    raw_outcome(e, PyBUF_FULL_RO, exporter=e, where='PyObject_GetBuffer')
    m.release()
    assert e.releases == e.buffers == 3


# --------------------------------------------------------------------------------------------
# Real consumers
# --------------------------------------------------------------------------------------------

def _assert_all_released(e):
    gc.collect()
    assert e.releases == e.buffers, f'{e.buffers} exports, {e.releases} releases'


@pytest.mark.parametrize('data', [b'hello world', bytearray(b'hello world'),
                                  np.arange(6, dtype=np.int32).reshape(2, 3),
                                  np.asfortranarray(np.arange(6.0).reshape(2, 3))],
                         ids=['bytes', 'bytearray', 'numpy-C', 'numpy-F'])
def test_memoryview_consumer(data):
    e = Wrapper(data)
    m = memoryview(e)
    ref = memoryview(data)
    for attr in ('format', 'itemsize', 'ndim', 'shape', 'strides', 'suboffsets', 'readonly',
                 'nbytes', 'c_contiguous', 'f_contiguous', 'contiguous'):
        assert getattr(m, attr) == getattr(ref, attr), attr
    assert m.tolist() == ref.tolist()
    assert m.tobytes() == ref.tobytes()
    assert e.flags == [PyBUF_FULL_RO]
    assert e.buffers == 1 and e.releases == 0
    if not m.readonly:
        first, second = (0,) * m.ndim, (0,) * (m.ndim - 1) + (1,)
        assert ref[first] != ref[second]
        m[first] = m[second]
        assert ref[first] == ref[second]  # written through the export
    m.release()
    ref.release()
    assert e.releases == 1


def test_memoryview_writes_reach_the_wrapped_object():
    data = bytearray(8)
    e = Wrapper(data)
    with memoryview(e) as m:
        m[2:5] = b'xyz'
        m.cast('H')[3] = 0x4142
    assert data[2:5] == b'xyz' and data[6:8] == struct.pack('H', 0x4142)
    assert e.releases == e.buffers == 1


@pytest.mark.parametrize('data', [b'\x00\x01abc', bytearray(b'xyz\xff'),
                                  np.arange(12, dtype=np.int16).reshape(3, 4)[:, ::2],
                                  np.asfortranarray(np.arange(6).reshape(2, 3))],
                         ids=['bytes', 'bytearray', 'numpy-strided', 'numpy-F'])
def test_bytes_consumer(data):
    e = Wrapper(data)
    assert bytes(e) == bytes(memoryview(data))
    assert bytearray(e) == bytearray(memoryview(data))
    _assert_all_released(e)
    assert e.buffers == 2


def test_numpy_frombuffer_shares_memory():
    data = bytearray(range(16))
    e = Wrapper(data)
    a = np.frombuffer(e, dtype=np.uint8)
    assert a.tolist() == list(range(16))
    assert a.flags.writeable
    a[3] = 99
    assert data[3] == 99
    data[4] = 77
    assert a[4] == 77
    with pytest.raises(BufferError):
        data.append(0)      # locked while numpy holds the export
    assert e.releases == 0
    del a
    gc.collect()
    assert e.releases == e.buffers == 1
    data.append(0)


@pytest.mark.parametrize('make', [
    lambda: np.arange(12, dtype=np.int32).reshape(3, 4),
    lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    lambda: np.arange(48, dtype=np.int16).reshape(6, 8)[::2, 1::3],
], ids=['C', 'F', 'strided'])
def test_numpy_asarray_shares_memory(make):
    base = make()
    e = Wrapper(base)
    a = np.asarray(e)
    assert a.dtype == base.dtype and a.shape == base.shape and a.strides == base.strides
    assert np.shares_memory(a, base)
    assert a.tolist() == base.tolist()
    a[(0,) * a.ndim] = 42
    assert base[(0,) * base.ndim] == 42
    del a
    _assert_all_released(e)   # numpy's own retries included: every export is given back


def test_numpy_on_readonly_wrapped():
    e = Wrapper(b'\x01\x02\x03\x04')
    a = np.frombuffer(e, dtype=np.uint8)
    assert not a.flags.writeable
    assert a.tolist() == [1, 2, 3, 4]
    del a
    _assert_all_released(e)


def test_readinto_fills_a_writable_wrapped_object(tmp_path):
    path = tmp_path / 'data'
    path.write_bytes(bytes(range(200, 232)))
    for data in (bytearray(16), np.zeros(16, dtype=np.uint8), Buffer(16)):
        e = Wrapper(data)
        with open(path, 'rb', buffering=0) as f:
            assert f.readinto(e) == 16
        assert bytes(memoryview(data)) == bytes(range(200, 216))
        with open(path, 'rb') as f:    # buffered
            f.seek(16)
            assert f.readinto(e) == 16
        assert bytes(memoryview(data)) == bytes(range(216, 232))
        assert io.BytesIO(b'abc').readinto(e) == 3
        assert bytes(memoryview(data))[:3] == b'abc'
        _assert_all_released(e)
        assert e.buffers >= 3
        if isinstance(data, Buffer):
            assert data.exports == 0
            data.close()


def test_readinto_refused_for_a_readonly_wrapped_object(tmp_path):
    path = tmp_path / 'data'
    path.write_bytes(b'x' * 8)
    data = b'12345678'
    with open(path, 'rb', buffering=0) as f:
        want = outcome(f.readinto, memoryview(data), name='memoryview')
    assert want[:2] == ('raised', TypeError)
    body_outcomes = []
    for cls in (RecordingExporter,) if OWN_SLOT else (RecordingExporter, RecordingPlain):
        e = cls(lambda: memoryview(data))
        with open(path, 'rb', buffering=0) as f:
            got = outcome(f.readinto, e, name='Recording')
        assert got == want
        assert data == b'12345678'
        body_outcomes.append(check_ledger(e))
    if not OWN_SLOT:
        assert body_outcomes[0] == body_outcomes[1]


def test_struct_pack_into_and_unpack_from():
    data = bytearray(12)
    e = Wrapper(data)
    struct.pack_into('<hi', e, 2, -2, 70000)
    assert data[2:8] == struct.pack('<hi', -2, 70000)
    assert struct.unpack_from('<hi', e, 2) == (-2, 70000)
    assert list(struct.iter_unpack('<h', e))[1] == (-2,)
    ro = Wrapper(bytes(data))
    assert struct.unpack_from('<hi', ro, 2) == (-2, 70000)
    want = outcome(struct.pack_into, 'B', memoryview(bytes(4)), 0, 1, name='memoryview')
    assert outcome(struct.pack_into, 'B', ro, 0, 1, name='Wrapper') == want
    assert want[:2] == ('raised', TypeError)
    _assert_all_released(e)
    if OWN_SLOT:
        _assert_all_released(ro)   # the refused WRITABLE request included


def test_hashlib():
    data = bytes(range(256)) * 3
    e = Wrapper(data)
    assert hashlib.sha256(e).digest() == hashlib.sha256(data).digest()
    h = hashlib.md5()
    h.update(e)
    h.update(Wrapper(bytearray(data)))
    assert h.digest() == hashlib.md5(data + data).digest()
    _assert_all_released(e)
    # Non-contiguous: refused as for the memoryview itself.
    strided = np.arange(16, dtype=np.uint8)[::2]
    want = outcome(hashlib.sha256, memoryview(strided))
    assert want[0] == 'raised'
    assert outcome(hashlib.sha256, Wrapper(strided)) == want


def test_os_write():
    data = bytearray(b'through a pipe')
    e = Wrapper(data)
    r, w = os.pipe()
    try:
        assert os.write(w, e) == len(data)
        assert os.read(r, 100) == bytes(data)
        assert os.writev(w, [e, Wrapper(b'!')]) == len(data) + 1
        assert os.read(r, 100) == bytes(data) + b'!'
    finally:
        os.close(r)
        os.close(w)
    _assert_all_released(e)


def test_nested_memoryviews():
    data = bytearray(range(12))
    e = Wrapper(data)
    m1 = memoryview(e)
    m2 = memoryview(m1)            # shares m1's export of e
    m3 = m2[2:10:2]
    m4 = m1.cast('H')
    m5 = memoryview(m4)[1:]
    assert e.buffers == 1
    assert m3.tolist() == [2, 4, 6, 8]
    m3[0] = 200
    assert data[2] == 200
    assert m5.tolist() == list(struct.unpack('5H', bytes(data[2:])))
    assert_seen_as_exporter(m1.obj, e)
    assert_seen_as_exporter(m5.obj, e)
    for m in (m1, m2, m3, m4):
        m.release()
        assert e.releases == 0         # m5 still holds the export
        with pytest.raises(BufferError):
            data.append(0)
    m5.release()
    assert e.releases == 1
    data.append(0)
    # Exporters of exporters: each level releases its own view.
    inner = Wrapper(bytearray(b'abc'))
    outer = Wrapper(inner)
    with memoryview(outer) as m:
        assert m.tobytes() == b'abc'
        assert (outer.buffers, inner.buffers, outer.releases, inner.releases) == (1, 1, 0, 0)
    assert (outer.releases, inner.releases) == (1, 1)


def test_wrapped_object_locked_while_exported_and_unlocked_after():
    data = bytearray(b'0123')
    e = Wrapper(data)
    consumers = [
        lambda: memoryview(e),
        lambda: np.frombuffer(e, dtype=np.uint8),
        lambda: _testbuffer.ndarray(e, getbuf=PyBUF_CONTIG_RO),
    ]
    for make in consumers:
        held = make()
        for resize in (lambda: data.append(1), lambda: data.extend(b'xx'), data.pop,
                       lambda: data.__delitem__(slice(0, 1)), data.clear):
            with pytest.raises(BufferError):
                resize()
        assert data == b'0123'
        del held                       # no gc needed: unlocked at once
        data.append(ord('4'))
        data.pop()
    assert e.releases == e.buffers == 3
    # A wrapped Buffer counts the export until the consumer releases.
    b = Buffer(4)
    eb = Wrapper(b)
    m = memoryview(eb)
    assert b.exports == 1
    with pytest.raises(BufferError):
        b.close()
    m.release()
    assert b.exports == 0
    b.close()


# --------------------------------------------------------------------------------------------
# Release accounting
# --------------------------------------------------------------------------------------------

class _Handout:
    __slots__ = ('ref', 'id', 'served', 'releases')

    def __init__(self, mv, served):
        self.ref = weakref.ref(mv)
        self.id = id(mv)
        self.served = served   # what the memoryview itself answers to the same request
        self.releases = 0

    def was(self, view):
        """The weak reference is dead, but ``view`` (alive) lives at this handout's address."""
        return self.ref() is None and self.id == id(view) and not self.releases


class _RecordingBody:
    """One class body for the accounting tests (twinned as an Exporter subclass and a plain
    class): every memoryview handed out is remembered (weakly) with the verdict the memoryview
    itself gives to the request, and every __release_buffer__ call is matched to it."""

    def __init__(self, make):
        self.make = make
        self.handouts = []
        self.problems = []
        self.release_calls = 0

    def __buffer__(self, flags):
        mv = self.make()
        if isinstance(mv, memoryview):
            served = nd_outcome(mv, flags)[0][0] == 'served'
            self.handouts.append(_Handout(mv, served))
        return mv

    def __release_buffer__(self, view):
        self.release_calls += 1
        matches = [h for h in self.handouts if h.ref() is view]
        if not matches:
            # Collecting a cycle clears weak references to the garbage (the memoryview
            # included) before the export is released: then the latest handout at the
            # address of `view`, which is alive, is the one.
            matches = [h for h in self.handouts if h.was(view)][-1:]
        if len(matches) != 1:
            self.problems.append(f'__release_buffer__ got {view!r}, not a memoryview handed out')
            return
        matches[0].releases += 1
        try:
            view.release()
        except Exception as exc:  # noqa: BLE001 - reported
            self.problems.append(f'view.release() inside __release_buffer__: {exc!r}')


RecordingExporter, RecordingPlain = twins(_RecordingBody, 'Recording')


def check_ledger(rec):
    """The accounting every scenario must leave; returns its summary (for the twins)."""
    gc.collect()
    assert not rec.problems, rec.problems
    served = sum(h.served for h in rec.handouts)
    refused = len(rec.handouts) - served
    for h in rec.handouts:
        if h.served:
            assert h.releases == 1, f'a successful export released {h.releases} times'
        elif OWN_SLOT:
            assert h.releases == 1, f'a refused export released {h.releases} times (issue 4)'
        else:
            assert h.releases in (0, 1)   # CPython's choice: compared with the plain twin
        assert h.ref() is None, 'a memoryview handed out outlives its export'
    assert rec.release_calls == sum(h.releases for h in rec.handouts)
    refused_releases = sum(h.releases for h in rec.handouts if not h.served)
    if OWN_SLOT:
        assert rec.release_calls == served + refused
    return (served, refused, refused_releases, rec.release_calls,
            [(h.served, h.releases) for h in rec.handouts])


def _s_memoryview_release(obj):
    m = memoryview(obj)
    result = (m.nbytes, m.tobytes())
    m.release()
    return result


def _s_memoryview_dropped(obj):
    return memoryview(obj).tobytes()


def _s_with_exception(obj):
    try:
        with memoryview(obj) as m:
            raise ValueError(m.nbytes)
    except ValueError as exc:
        return exc.args


def _s_traceback_holds_consumer(obj):
    def consume():
        m = memoryview(obj)   # noqa: F841 - kept alive by the traceback
        raise KeyError('in consumer')
    try:
        consume()
    except KeyError as exc:
        tb = exc.__traceback__
        alive = tb.tb_next.tb_frame.f_locals['m'].nbytes
        del tb
        return alive


def _s_cycle(obj):
    holder = [memoryview(obj)]
    holder.append(holder)
    del holder
    gc.collect()


def _s_writable_request(obj):
    return nd_outcome(obj, PyBUF_WRITABLE)[0]


def _s_every_request(obj):
    return [nd_outcome(obj, flags)[0] for flags in REQUESTS]


def _s_readinto(obj):
    return io.BytesIO(b'0123456789' * 4).readinto(obj)


def _s_pack_into(obj):
    struct.pack_into('B', obj, 1, 250)
    return struct.unpack_from('2B', obj, 0)


def _s_numpy(obj):
    a = np.frombuffer(obj, dtype=np.uint8)
    b = np.asarray(obj)
    return (a.tolist(), a.flags.writeable, b.dtype.str, b.shape,
            b.tolist() if b.dtype != object else None)


def _s_nested(obj):
    m = memoryview(obj)
    m2 = memoryview(m)[1:]
    m.release()
    result = m2.tolist()
    m2.release()
    return result


def _s_bytes_hash_write(obj):
    r, w = os.pipe()
    try:
        os.write(w, obj)
        written = os.read(r, 1000)
    finally:
        os.close(r)
        os.close(w)
    return bytes(obj), hashlib.sha1(obj).hexdigest(), written


SCENARIOS = {f.__name__[3:]: f for f in (
    _s_memoryview_release, _s_memoryview_dropped, _s_with_exception,
    _s_traceback_holds_consumer, _s_cycle, _s_writable_request, _s_every_request,
    _s_readinto, _s_pack_into, _s_numpy, _s_nested, _s_bytes_hash_write)}


def _released(data):
    mv = memoryview(data)
    mv.release()
    return mv


#: Each entry makes one piece of data and returns a ``make()`` of memoryviews of it.
MAKES = {
    'bytearray': lambda: (lambda data: lambda: memoryview(data))(
        bytearray(b'0123456789abcdef')),
    'bytes': lambda: (lambda data: lambda: memoryview(data))(b'0123456789abcdef'),
    'numpy-strided': lambda: (lambda data: lambda: memoryview(data))(
        np.arange(32, dtype=np.uint8)[::2]),
    'released-memoryview': lambda: (lambda data: lambda: _released(data))(bytearray(4)),
}


@pytest.mark.parametrize('make_name', sorted(MAKES))
@pytest.mark.parametrize('scenario_name', sorted(SCENARIOS))
def test_release_accounting(scenario_name, make_name, unraisables):
    """Consumers see what they would see on the memoryview itself; __release_buffer__ runs
    once per export with the memoryview __buffer__ returned, after the consumer is done; on
    3.9-3.11 also for requests the memoryview refused, on 3.12+ as for a plain class."""
    scenario = SCENARIOS[scenario_name]
    want = outcome(scenario, MAKES[make_name]()(), name='memoryview')
    summaries = []
    for cls in (RecordingExporter,) if OWN_SLOT else (RecordingExporter, RecordingPlain):
        rec = cls(MAKES[make_name]())
        got = outcome(scenario, rec, name='Recording')
        gc.collect()
        stray = [r[:2] for r in unraisables.take()]
        kind = 'Exporter subclass' if issubclass(cls, Exporter) else 'plain class'
        assert got == want, f'{kind}: consumers got {got}; on the memoryview itself {want}'
        assert not stray, f'{kind}: sent to sys.unraisablehook: {stray}'
        summaries.append(check_ledger(rec))
    assert summaries[0][0] + summaries[0][1] > 0, 'the scenario exported nothing'
    if not OWN_SLOT:
        assert summaries[0] == summaries[1], (
            f'Exporter subclass {summaries[0]} != plain class {summaries[1]}')


def test_release_accounting_of_one_refused_request():
    """The documented counts of one refused request (README, "Exporter on 3.12+")."""
    exp, plain = twins(_RecordingBody, 'Recording')
    e = exp(lambda: memoryview(b'read-only'))
    assert nd_outcome(e, PyBUF_WRITABLE)[0][:2] == ('raised', BufferError)
    summary = check_ledger(e)
    if OWN_SLOT:
        assert summary[:4] == (0, 1, 1, 1)
    else:
        p = plain(lambda: memoryview(b'read-only'))
        nd_outcome(p, PyBUF_WRITABLE)
        assert summary == check_ledger(p)


def test_release_buffer_is_called_after_the_consumer_released():
    order = []

    class Logged(Exporter):
        def __buffer__(self, flags):
            self.mv = memoryview(bytearray(4))
            return self.mv

        def __release_buffer__(self, view):
            order.append(('release', view is self.mv))
            view.release()           # raises BufferError if the export were still held
            order.append('released')

    e = Logged()
    m = memoryview(e)
    order.append('consumer done')
    m.release()
    assert order == ['consumer done', ('release', True), 'released']


class _Quiet:
    """Defines __release_buffer__ (it does nothing)."""

    def __init__(self, data):
        self.data = data
        self.releases = 0

    def __buffer__(self, flags):
        return memoryview(self.data)

    def __release_buffer__(self, view):
        self.releases += 1


class _Inherits:
    """Inherits Exporter's own __release_buffer__."""

    def __init__(self, data):
        self.data = data

    def __buffer__(self, flags):
        return memoryview(self.data)


FAILING_CONSUMERS = {
    'struct.unpack_from-too-short': lambda obj: struct.unpack_from('<q', obj),
    'zlib.decompress-bad-data': lambda obj: __import__('zlib').decompress(obj),
    'numpy.frombuffer-count': lambda obj: np.frombuffer(obj, dtype=np.uint8, count=99),
    'numpy.frombuffer-noncontiguous': lambda obj: np.frombuffer(obj, dtype=np.uint8),
}


@pytest.mark.parametrize('body', [_Quiet, _Inherits], ids=lambda b: b.__name__[1:])
@pytest.mark.parametrize('consumer', sorted(FAILING_CONSUMERS))
def test_consumer_errors_raised_while_exported_survive_the_release(consumer, body,
                                                                   unraisables):
    """A consumer that fails while it holds the export releases it with its exception set
    (PyBuffer_Release on the error path): the consumer's exception must reach the caller as
    it does for the memoryview itself, and __release_buffer__ still runs once."""
    fn = FAILING_CONSUMERS[consumer]
    make = ((lambda: np.arange(8, dtype=np.uint8)[::2]) if consumer.endswith('noncontiguous')
            else (lambda: bytes(b'\xff\xfe\xfd\xfc')))
    want = outcome(fn, memoryview(make()), name='memoryview')
    assert want[0] == 'raised' and want[1] is not SystemError
    exp, _ = twins(body, 'Consumed')
    e = exp(make())
    got = outcome(fn, e, name='Consumed')
    gc.collect()
    stray = [r[:2] for r in unraisables.take()]
    assert got == want, (f'the consumer raised {got}; on the memoryview itself {want}; '
                         f'sent to sys.unraisablehook: {stray}')
    assert not stray, f'sent to sys.unraisablehook: {stray}'
    if body is _Quiet:
        assert e.releases == 1


def test_one_python_call_per_export():
    """No Python-level machinery around the user's methods (issue 4: at most one Python-level
    call per export besides __release_buffer__)."""
    calls = []

    def profile(frame, event, arg):
        if event == 'call':
            calls.append(frame.f_code.co_name)

    class WithRelease(Exporter):
        def __buffer__(self, flags):
            return memoryview(b'x')

        def __release_buffer__(self, view):
            pass

    class WithoutRelease(Exporter):
        def __buffer__(self, flags):
            return memoryview(b'x')

    for cls, want in ((WithRelease, ['__buffer__', '__release_buffer__']),
                      (WithoutRelease, ['__buffer__'])):
        obj = cls()
        calls.clear()
        sys.setprofile(profile)
        try:
            memoryview(obj).release()
        finally:
            sys.setprofile(None)
        assert calls == want, cls.__name__


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

class CustomError(Exception):
    def __init__(self, *args):
        super().__init__(*args)
        self.extra = 'kept'


class CustomBase(BaseException):
    pass


RAISED = [ValueError('value'), KeyError('k', 1), BufferError('mine'), TypeError('t'),
          CustomError('custom', 2), CustomBase('base'), RecursionError('fake')]

CONSUMERS = {
    'memoryview': memoryview,
    'bytes': bytes,
    'ndarray': lambda obj: _testbuffer.ndarray(obj, getbuf=PyBUF_FULL_RO),
    'PyObject_GetBuffer': lambda obj: RawView(obj, PyBUF_SIMPLE).__enter__(),
}


class _Raising(Exporter):
    def __init__(self, exc):
        self.exc = exc
        self.data = bytearray(4)
        self.releases = 0

    def __buffer__(self, flags):
        raise self.exc

    def __release_buffer__(self, view):
        self.releases += 1


@pytest.mark.parametrize('consumer', sorted(CONSUMERS))
@pytest.mark.parametrize('exc', RAISED, ids=lambda e: type(e).__name__)
def test_buffer_exception_propagates_unchanged(exc, consumer):
    e = _Raising(exc)
    watched = [e, e.data]
    refs = refcounts(watched)
    args = exc.args
    try:
        CONSUMERS[consumer](e)
    except BaseException as caught:  # noqa: BLE001
        got = caught
    else:
        raise AssertionError('no exception')
    assert got is exc
    assert type(got) is type(exc) and got.args == args
    assert got.__context__ is None and got.__cause__ is None
    if isinstance(exc, CustomError):
        assert got.extra == 'kept'
    got.with_traceback(None)
    exc.with_traceback(None)
    del got
    gc.collect()
    assert e.releases == 0
    assert refcounts(watched) == refs


# Objects made at run time, so that their refcounts are this test's alone: literals are
# shared code constants, small ints and short strs are cached or interned (and immortal on
# 3.12+), and CPython's caches move their counts.
@pytest.mark.parametrize('returned', [bytes(bytearray(b'bytes')), bytearray(b'ba'), None,
                                      int('4' * 25), np.zeros(3), Buffer(2), '-'.join('str')],
                         ids=['bytes', 'bytearray', 'None', 'int', 'numpy', 'Buffer', 'str'])
def test_non_memoryview_is_a_type_error(returned):
    class Bad(Exporter):
        releases = 0

        def __buffer__(self, flags):
            return returned

        def __release_buffer__(self, view):
            type(self).releases += 1

    e = Bad()
    tracked = object() if returned is None else returned   # None's refcount says nothing
    gc.collect()
    watched = [e, tracked]
    refs = refcounts(watched)
    for consumer in sorted(CONSUMERS):
        with pytest.raises(TypeError) as info:
            CONSUMERS[consumer](e)
        assert type(info.value) is TypeError
        assert str(info.value) == non_memoryview_message(e, returned), consumer
        del info
    gc.collect()
    assert Bad.releases == 0
    assert refcounts(watched) == refs
    if isinstance(returned, bytearray):
        returned.append(0)      # not locked
    if isinstance(returned, Buffer):
        assert returned.exports == 0


def test_another_exporter_is_not_a_memoryview():
    inner = Wrapper(b'abc')

    class Outer(Exporter):
        def __buffer__(self, flags):
            return inner

    outer = Outer()
    with pytest.raises(TypeError) as info:
        memoryview(outer)
    assert str(info.value) == non_memoryview_message(outer, inner)
    assert inner.buffers == 0


class NoBuffer(Exporter):
    pass


class OnlyRelease(Exporter):
    def __release_buffer__(self, view):
        raise AssertionError('never called: nothing was exported')


class NoBufferChild(NoBuffer):
    data = b'class attribute'


class InstanceAttribute(Exporter):
    def __init__(self):
        self.__buffer__ = lambda flags: memoryview(b'special methods are looked up on the type')


class SuperBuffer(Exporter):
    def __buffer__(self, flags):
        return super().__buffer__(flags)


@pytest.mark.parametrize('cls', [NoBuffer, OnlyRelease, NoBufferChild, InstanceAttribute,
                                 SuperBuffer, Exporter], ids=lambda c: c.__name__)
def test_missing_buffer_is_a_clear_type_error(cls):
    obj = cls()
    watched = [obj]
    refs = refcounts(watched)
    for consumer in sorted(CONSUMERS):
        try:
            CONSUMERS[consumer](obj)
        except BaseException as exc:  # noqa: BLE001 - checked below
            kind, message = type(exc), str(exc)
            exc.with_traceback(None)
            del exc
        else:
            raise AssertionError(f'{consumer}: exported')
        assert kind is TypeError, f'{consumer}: {kind.__name__}: {message}'
        assert cls.__name__ in message and '__buffer__' in message, message
    gc.collect()
    assert refcounts(watched) == refs
    # Called directly, Exporter's own __buffer__ says the same.
    with pytest.raises(TypeError) as info:
        type(obj).__buffer__(obj, PyBUF_SIMPLE)
    assert type(info.value) is TypeError
    assert cls.__name__ in str(info.value) and '__buffer__' in str(info.value)


def test_missing_buffer_never_recurses_even_near_the_recursion_limit():
    def deep(n):
        if n:
            return deep(n - 1)
        with pytest.raises(TypeError):
            memoryview(NoBuffer())
        return True

    assert deep(sys.getrecursionlimit() - 100)


def test_super_release_buffer_is_a_no_op():
    log = []

    class Chained(Exporter):
        def __buffer__(self, flags):
            return memoryview(bytearray(b'abc'))

        def __release_buffer__(self, view):
            log.append(super().__release_buffer__(view))
            view.release()

    e = Chained()
    memoryview(e).release()
    bytes(e)
    assert log == [None, None]
    assert Exporter.__release_buffer__(e, memoryview(b'')) is None


class _RaisingRelease:
    def __init__(self, data):
        self.data = data
        self.errors = []

    def __buffer__(self, flags):
        return memoryview(self.data)

    def __release_buffer__(self, view):
        err = ValueError('from __release_buffer__', len(self.errors))
        self.errors.append(err)
        raise err      # without view.release(): the view dies with the traceback


RaisingReleaseExporter, RaisingReleasePlain = twins(_RaisingRelease, 'RaisingRelease')


def _unraisable_summary(records, instance):
    return [(t, type(v), v.args, 'instance' if o is instance else o, m)
            for t, v, o, m in records]


@pytest.mark.parametrize('flags', [PyBUF_FULL_RO, PyBUF_WRITABLE], ids=['served', 'refused'])
def test_release_buffer_exceptions_go_to_unraisablehook(flags, unraisables):
    summaries = []
    for cls in (RaisingReleaseExporter,) if OWN_SLOT else (RaisingReleaseExporter,
                                                             RaisingReleasePlain):
        data = bytes(8) if flags == PyBUF_WRITABLE else bytearray(8)
        e = cls(data)
        watched = [e, data]
        refs = refcounts(watched)
        consumer_saw = []
        for _ in range(3):
            consumer_saw.append(nd_outcome(e, flags)[0][:2])
            if flags == PyBUF_FULL_RO:
                m = memoryview(e)
                m.release()                       # does not raise
                del m
        want = ('raised', BufferError) if flags == PyBUF_WRITABLE else None
        if want:
            assert consumer_saw == [want] * 3     # the refusal, not the release's error
        records = unraisables.take()
        gc.collect()
        released = len(e.errors)
        if flags == PyBUF_FULL_RO:
            assert released == 6
        elif OWN_SLOT:
            assert released == 3
        assert len(records) == released
        assert [r[0] for r in records] == [ValueError] * released
        assert all(r[1] is err for r, err in zip(records, e.errors))
        if OWN_SLOT:
            # bufferkit's slot reports each error against the instance.
            assert all(r[2] is e for r in records)
        summaries.append(_unraisable_summary(records, e))
        [setattr(err, '__traceback__', None) for err in e.errors]  # the frames hold views
        del records
        e.errors.clear()
        if isinstance(data, bytearray):
            data.append(0)                        # nothing stays locked
            data.pop()
        gc.collect()
        assert refcounts(watched) == refs
    if not OWN_SLOT:
        assert summaries[0] == summaries[1]


# --------------------------------------------------------------------------------------------
# Descriptors: one class body, the same special-method lookup everywhere
# --------------------------------------------------------------------------------------------

class _CallableObject:
    def __call__(self, *args):
        return memoryview(b'%d args' % len(args))


class _StaticBuffer:
    @staticmethod
    def __buffer__(flags):
        return memoryview(b'static')


class _ClassBuffer:
    @classmethod
    def __buffer__(cls, flags):
        return memoryview(cls.__name__.encode())


class _CallableBuffer:
    __buffer__ = _CallableObject()


@pytest.mark.parametrize('body, want', [(_StaticBuffer, b'static'),
                                        (_ClassBuffer, b'Special'),
                                        (_CallableBuffer, b'1 args')],
                         ids=['staticmethod', 'classmethod', 'callable-object'])
def test_buffer_is_looked_up_as_a_special_method(body, want):
    """``__buffer__`` binds like every special method (``type(x).__buffer__.__get__(x)``), as
    CPython 3.12+ does: the same class body must give the same bytes on every version.

    The one documented exception (README, "Exporter on 3.12+"): on 3.11, whose build uses the
    stable ABI, bufferkit's slot finds the method with a type-level lookup, where a
    staticmethod has already been unwrapped into a plain function, which is then called
    unbound with the instance. Telling the two apart needs CPython's private
    ``_PyType_Lookup`` (not in the stable ABI), which the 3.9 and 3.10 builds use, or a walk
    of the MRO's dicts on every export."""
    exp, plain = twins(body, 'Special')
    if UNWRAPS_STATIC and body is _StaticBuffer:
        kind, exc_type, message = outcome(bytes, exp())
        assert (kind, exc_type) == ('raised', TypeError) and 'positional argument' in message
        return
    assert outcome(bytes, exp()) == ('ok', want)
    if not OWN_SLOT:
        assert outcome(bytes, plain()) == ('ok', want)


def test_static_release_buffer_is_looked_up_as_a_special_method(unraisables):
    log = []

    class StaticRelease(Exporter):
        def __buffer__(self, flags):
            return memoryview(b'x')

        @staticmethod
        def __release_buffer__(view):
            log.append(type(view))

    memoryview(StaticRelease()).release()
    gc.collect()
    stray = [r[:2] for r in unraisables.take()]
    if UNWRAPS_STATIC:
        # The documented 3.11 exception (see test_buffer_is_looked_up_as_a_special_method):
        # the unwrapped staticmethod is called with the instance too, and the TypeError goes
        # where every __release_buffer__ error goes.
        assert log == [] and [t for t, _ in stray] == [TypeError]
        return
    assert log == [memoryview], f'sent to sys.unraisablehook instead: {stray}'
    assert not stray


# --------------------------------------------------------------------------------------------
# Subclasses: __slots__, __dict__, further subclasses, pickle, copy, gc
# --------------------------------------------------------------------------------------------

class Slotted(Exporter):
    __slots__ = ('data',)

    def __init__(self, data):
        self.data = data

    def __buffer__(self, flags):
        return memoryview(self.data)


class SlottedPlain:
    __slots__ = ('data',)

    def __init__(self, data):
        self.data = data

    def __buffer__(self, flags):
        return memoryview(self.data)


class SlottedWithDict(Exporter):
    __slots__ = ('data', '__dict__', '__weakref__')

    def __init__(self, data):
        self.data = data

    def __buffer__(self, flags):
        return memoryview(self.data)


class WithDict(Exporter):
    def __init__(self, data):
        self.data = data

    def __buffer__(self, flags):
        return memoryview(self.data)


class WithDictPlain:
    def __init__(self, data):
        self.data = data

    def __buffer__(self, flags):
        return memoryview(self.data)


class WithState(Exporter):
    __slots__ = ('data', 'note')

    def __init__(self, data, note='n'):
        self.data = data
        self.note = note

    def __getstate__(self):
        return {'data': self.data, 'note': self.note}

    def __setstate__(self, state):
        self.data = state['data']
        self.note = state['note']

    def __buffer__(self, flags):
        return memoryview(self.data)


class WithStatePlain:
    __slots__ = ('data', 'note')

    def __init__(self, data, note='n'):
        self.data = data
        self.note = note

    def __getstate__(self):
        return {'data': self.data, 'note': self.note}

    def __setstate__(self, state):
        self.data = state['data']
        self.note = state['note']

    def __buffer__(self, flags):
        return memoryview(self.data)


def test_slots():
    s = Slotted(bytearray(b'slots'))
    assert bytes(s) == b'slots'
    assert not hasattr(s, '__dict__')
    with pytest.raises(AttributeError):
        s.other = 1
    # As an ordinary slotted class: no weakrefs either.
    assert outcome(weakref.ref, s, name='Slotted')[:2] == outcome(
        weakref.ref, SlottedPlain(b''), name='SlottedPlain')[:2]
    sd = SlottedWithDict(b'both')
    sd.extra = 1
    assert weakref.ref(sd)() is sd
    assert bytes(sd) == b'both' and sd.__dict__ == {'extra': 1}


def test_dict_and_weakref():
    w = WithDict(b'dict')
    w.anything = [1]
    assert w.__dict__ == {'data': b'dict', 'anything': [1]}
    assert weakref.ref(w)() is w
    assert bytes(w) == b'dict'
    assert isinstance(w, Exporter)
    assert Exporter.__module__ == 'bufferkit'


def test_further_subclasses_chain_with_super():
    log = []

    class Base(Exporter):
        def __init__(self, data):
            self.data = data

        def __buffer__(self, flags):
            log.append(('Base.__buffer__', flags))
            return memoryview(self.data)

        def __release_buffer__(self, view):
            log.append('Base.__release_buffer__')
            super().__release_buffer__(view)

    class Middle(Base):
        def __buffer__(self, flags):
            log.append('Middle.__buffer__')
            return super().__buffer__(flags)[1:]

        def __release_buffer__(self, view):
            log.append('Middle.__release_buffer__')
            super().__release_buffer__(view)

    class Leaf(Middle):
        pass

    assert bytes(Leaf(b'abcdef')) == b'bcdef'
    assert log == ['Middle.__buffer__', ('Base.__buffer__', PyBUF_FULL_RO),
                   'Middle.__release_buffer__', 'Base.__release_buffer__']
    log.clear()
    with memoryview(Leaf(bytearray(b'abcdef'))) as m:
        assert m.tobytes() == b'bcdef' and not m.readonly
    assert len(log) == 4


class _BufferMixin:
    def __init__(self, data):
        self.data = data

    def __buffer__(self, flags):
        return memoryview(self.data)


class _TrimMixin:
    def __buffer__(self, flags):
        return super().__buffer__(flags)[1:]


class _Direct(Exporter):
    def __init__(self, data):
        self.data = data

    def __buffer__(self, flags):
        return memoryview(self.data)


@pytest.mark.parametrize('bases, want', [
    ((_BufferMixin, Exporter), b'abcdef'),
    ((_TrimMixin, _Direct), b'bcdef'),
], ids=['mixin-defines-__buffer__', 'mixin-chains-with-super'])
def test_mixins_listed_before_exporter(bases, want):
    """An ordinary mixin listed first (so that CPython picks it as ``__base__``: Exporter
    has object's size) must not hide that the class is an Exporter."""
    cls = type('Mixed', bases, {})
    assert issubclass(cls, Exporter)
    assert outcome(bytes, cls(bytearray(b'abcdef'))) == ('ok', want)


def _state(obj):
    if hasattr(obj, '__dict__'):
        return dict(obj.__dict__)
    return {name: getattr(obj, name) for name in type(obj).__slots__}


def _round_trip(obj, protocol):
    copy_ = pickle.loads(pickle.dumps(obj, protocol))
    return type(copy_).__name__, _state(copy_)


@pytest.mark.parametrize('protocol', range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize('cls, plain', [(WithDict, WithDictPlain), (Slotted, SlottedPlain),
                                        (WithState, WithStatePlain)],
                         ids=['dict', 'slots', 'getstate'])
def test_pickle_like_ordinary_classes(cls, plain, protocol):
    data = bytearray(b'pickled')
    mine = outcome(_round_trip, cls(data), protocol, name=cls.__name__)
    theirs = outcome(_round_trip, plain(data), protocol, name=plain.__name__)
    if theirs[0] == 'ok':
        theirs = ('ok', (cls.__name__, theirs[1][1]))
    assert mine == theirs, f'protocol {protocol}: {cls.__name__} {mine}, ordinary class {theirs}'
    if mine[0] == 'ok':
        assert bytes(pickle.loads(pickle.dumps(cls(data), protocol))) == b'pickled'


@pytest.mark.parametrize('cls', [WithDict, Slotted, SlottedWithDict, WithState],
                         ids=lambda c: c.__name__)
def test_copy_and_deepcopy(cls):
    data = bytearray(b'copied')
    obj = cls(data)
    shallow = copy.copy(obj)
    deep = copy.deepcopy(obj)
    assert type(shallow) is cls and type(deep) is cls
    assert shallow.data is data
    assert deep.data == data and deep.data is not data
    assert bytes(shallow) == bytes(deep) == b'copied'


class _Owned(bytearray):
    """A wrapped object that can point back at its exporter."""


class _Owner(Exporter):
    def __init__(self, data):
        self.data = data
        self.releases = 0

    def __buffer__(self, flags):
        return memoryview(self.data)

    def __release_buffer__(self, view):
        self.releases += 1
        view.release()


class _SlottedOwner(Exporter):
    __slots__ = ('data', '__weakref__')

    def __init__(self, data):
        self.data = data

    def __buffer__(self, flags):
        return memoryview(self.data)


def _collected(make):
    obj = make()
    ref = weakref.ref(obj)
    del obj
    gc.collect()
    return ref() is None


def test_cycle_through_the_wrapped_object_is_collected():
    def make():
        data = _Owned(b'cycle')
        e = _Owner(data)
        data.owner = e
        return e
    assert _collected(make)


def test_cycle_through_slots_is_collected():
    def make():
        data = _Owned(b'cycle')
        e = _SlottedOwner(data)
        data.owner = e
        return e
    assert _collected(make)


class _CountedOwner(Exporter):
    """Counts releases outside the instance: collecting a cycle may clear the instance's
    __dict__ before the consumer's memoryview in the same cycle is released."""
    releases = []

    def __init__(self, data):
        self.data = data

    def __buffer__(self, flags):
        return memoryview(self.data)

    def __release_buffer__(self, view):
        _CountedOwner.releases.append(view.nbytes)
        view.release()


def test_cycle_through_a_live_export_of_itself_is_collected():
    _CountedOwner.releases.clear()

    def make():
        e = _CountedOwner(bytearray(b'cycle'))
        e.view = memoryview(e)
        return e
    assert _collected(make)
    assert _CountedOwner.releases == [5]


def test_cycle_through_the_wrapped_object_holding_a_live_export_is_collected():
    """instance -> wrapped -> consumer's memoryview -> (export) -> instance: on 3.12+ gc sees
    the whole cycle (CPython's _buffer_wrapper holds the returned memoryview) and releases the
    export while collecting it.

    Documented 3.9-3.11 limitation (README, "Exporter on 3.12+"): bufferkit's slot keeps the
    returned memoryview in the consumer's ``view->internal``, which the GC cannot see, so such
    a cycle is kept alive (never freed early, never crashing); releasing the consumer's view
    breaks it."""
    _CountedOwner.releases.clear()
    data = _Owned(b'cycle')
    e = _CountedOwner(data)
    data.view = memoryview(e)
    ref_e, ref_data = weakref.ref(e), weakref.ref(data)
    del e, data
    gc.collect()
    if OWN_SLOT:
        e, data = ref_e(), ref_data()
        assert e is not None and data is not None, 'collected: update the README'
        assert bytes(data.view) == b'cycle' and _CountedOwner.releases == []
        data.view.release()
        del e, data
        gc.collect()
    assert ref_e() is None and ref_data() is None, 'the cycle was not collected'
    assert _CountedOwner.releases == [5]


# --------------------------------------------------------------------------------------------
# No recursion, no leak
# --------------------------------------------------------------------------------------------

class _Counting:
    def __init__(self, data, mode='memoryview'):
        self.data = data
        self.mode = mode
        self.buffers = 0
        self.releases = 0

    def __buffer__(self, flags):
        self.buffers += 1
        if self.mode == 'raise':
            raise LookupError('no buffer today')
        if self.mode == 'bytes':
            return bytes(self.data)
        return memoryview(self.data)

    def __release_buffer__(self, view):
        self.releases += 1


CountingExporter, CountingPlain = twins(_Counting, 'Counting')

N = 10_000


def _many_exports(cls):
    """10**4 rounds of served and refused exports and failing __buffer__ calls."""
    writable = cls(bytearray(b'0123456789'))
    readonly = cls(bytes(bytearray(b'0123456789')))  # its own bytes, not a code constant
    raising = cls(bytearray(4), 'raise')
    wrong = cls(bytearray(4), 'bytes')
    objs = (writable, readonly, raising, wrong)
    watched = [x for o in objs for x in (o, o.data)]
    baseline = refcounts(watched)

    def one_round():
        memoryview(writable).release()
        bytes(readonly)
        _testbuffer.ndarray(writable, getbuf=PyBUF_FULL)
        for obj, flags in ((readonly, PyBUF_WRITABLE), (readonly, PyBUF_FULL),
                           (raising, PyBUF_SIMPLE), (wrong, PyBUF_ND), (writable, PyBUF_ND | 2)):
            try:
                _testbuffer.ndarray(obj, getbuf=flags)
            except (BufferError, LookupError, TypeError):
                pass

    for _ in range(200):
        one_round()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(N):
            one_round()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    gc.collect()
    after = refcounts(watched)
    writable.data.append(0)       # not locked
    return {
        'refcounts': after == baseline,
        'grown': grown,
        'counts': [(o.buffers, o.releases) for o in objs],
    }


def test_no_leak_after_many_exports():
    result = _many_exports(CountingExporter)
    assert result['refcounts'], 'refcounts of the instances or wrapped objects changed'
    assert result['grown'] < 64 * 1024, f'traced memory grew by {result["grown"]} bytes'
    rounds = N + 200
    (w_buf, w_rel), (r_buf, r_rel), (x_buf, x_rel), (b_buf, b_rel) = result['counts']
    assert (w_buf, w_rel) == (3 * rounds, 3 * rounds)   # PyBUF_ND | 2: served by memoryview
    assert r_buf == 3 * rounds
    assert (x_buf, x_rel) == (rounds, 0)
    assert (b_buf, b_rel) == (rounds, 0)
    if OWN_SLOT:
        assert r_rel == 3 * rounds                      # the two refusals are released too
    else:
        assert result['counts'] == _many_exports(CountingPlain)['counts']


def test_refcounts_of_a_held_export():
    data = bytearray(16)
    e = Wrapper(data)
    watched = [e, data]
    refs = refcounts(watched)
    held = [memoryview(e) for _ in range(100)]
    assert e.buffers == 100
    del held
    assert refcounts(watched) == refs
    assert e.releases == 100
