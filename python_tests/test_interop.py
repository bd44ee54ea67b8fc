"""bufferkit.Buffer with real consumers: memoryview, bytes, numpy, io, socket, struct, hashlib,
zlib, os, ctypes.

Where a consumer refuses a Buffer (read-only, or Fortran order for a consumer that needs
C-contiguous bytes), it must refuse the reference exporter (_testbuffer.ndarray over the same
layout) in the same way; and a Buffer it refuses is left unchanged with no export alive.
"""

import ctypes
import hashlib
import io
import os
import socket
import struct
import zlib

import numpy as np
import pytest

import _testbuffer
from _testbuffer import PyBUF_FULL_RO

from bufferkit import Buffer
from conftest import Layout, make_buffer, product, reference_ndarray, write_contents

DATA = bytes((i * 7 + 3) % 256 for i in range(4096))


def outcome(fn, *args):
    """('ok', result) or ('raises', exception type): what to compare across exporters."""
    try:
        return ('ok', fn(*args))
    except Exception as exc:  # noqa: BLE001 - compared by type
        return ('raises', type(exc))


# --------------------------------------------------------------------------------------------
# Consumers that write into a buffer, and consumers that only read one
# --------------------------------------------------------------------------------------------

def _file_readinto(buf, path):
    with io.FileIO(path, 'r') as f:
        return f.readinto(buf)


def _buffered_readinto(buf, path):
    with open(path, 'rb') as f:
        return f.readinto(buf)


def _bytesio_readinto(buf, path):
    return io.BytesIO(DATA).readinto(buf)


def _socket_recv_into(buf, path):
    a, c = socket.socketpair()
    with a, c:
        a.sendall(DATA)
        return c.recv_into(buf)


def _os_readv(buf, path):
    r, w = os.pipe()
    try:
        os.write(w, DATA)
        return os.readv(r, [buf])
    finally:
        os.close(r)
        os.close(w)


def _struct_pack_into(buf, path):
    struct.pack_into('<bb', buf, 0, -2, 77)


def _memoryview_cast_write(buf, path):
    with memoryview(buf) as m, m.cast('B') as raw:
        raw[0] = 0xAB


def _ctypes_from_buffer(buf, path):
    with memoryview(buf) as m:
        n = m.nbytes
    arr = (ctypes.c_ubyte * n).from_buffer(buf)
    arr[0] = 0xCD


WRITERS = {
    'FileIO.readinto': _file_readinto,
    'BufferedReader.readinto': _buffered_readinto,
    'BytesIO.readinto': _bytesio_readinto,
    'socket.recv_into': _socket_recv_into,
    'os.readv': _os_readv,
    'struct.pack_into': _struct_pack_into,
    'memoryview.cast write': _memoryview_cast_write,
    'ctypes.from_buffer': _ctypes_from_buffer,
}

READERS = {
    'bytes': bytes,
    'bytearray': lambda b: bytes(bytearray(b)),
    'hashlib.sha256': lambda b: hashlib.sha256(b).hexdigest(),
    'hashlib.md5-update': lambda b: _md5_update(b),
    'zlib.crc32': zlib.crc32,
    'zlib.compress': lambda b: zlib.decompress(zlib.compress(b)),
    'struct.unpack_from': lambda b: struct.unpack_from('<b', b) if _nbytes(b) else None,
    'os.write': lambda b: _pipe_roundtrip(b),
    'socket.sendall': lambda b: _socket_roundtrip(b),
    'int.from_bytes': lambda b: int.from_bytes(b, 'little'),
    'bytes.join': lambda b: b'-'.join([b, b]),
    'memoryview.tobytes': lambda b: memoryview(b).tobytes(),
}


def _nbytes(b):
    with memoryview(b) as m:
        return m.nbytes


def _md5_update(b):
    h = hashlib.md5()
    h.update(b)
    return h.hexdigest()


def _pipe_roundtrip(b):
    r, w = os.pipe()
    try:
        n = os.write(w, b)
        return n, os.read(r, 8192) if n else b''
    finally:
        os.close(r)
        os.close(w)


def _socket_roundtrip(b):
    a, c = socket.socketpair()
    with a, c:
        a.sendall(b)
        a.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = c.recv(8192)
            if not chunk:
                return b''.join(chunks)
            chunks.append(chunk)


C_LAYOUTS = [(fmt, shape) for fmt in ('B', 'h', '<i', 'd', 'hi')
             for shape in ((48,), (3, 4), (2, 3, 4), (), (0,), (3, 0))]
F_LAYOUTS = [(fmt, shape) for fmt in ('B', '<i', 'd') for shape in ((3, 4), (2, 3, 4))]


def _ids(cases):
    return [f"{fmt}-{'x'.join(map(str, shape)) or '0d'}" for fmt, shape in cases]


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / 'data.bin'
    path.write_bytes(DATA)
    return path


@pytest.mark.parametrize('name', sorted(WRITERS))
@pytest.mark.parametrize('fmt, shape', C_LAYOUTS, ids=_ids(C_LAYOUTS))
def test_writers_fill_c_buffers(name, fmt, shape, data_file):
    writer = WRITERS[name]
    layout = Layout.generate(fmt, shape)
    b = make_buffer(layout)
    twin = reference_ndarray(layout)  # the same layout in CPython's reference exporter
    got = outcome(writer, b, data_file)
    assert got == outcome(writer, twin, data_file)
    assert b.tobytes() == twin.tobytes()
    if got[0] == 'ok' and layout.nbytes:
        assert b.tobytes() != layout.tobytes()  # the writer did write
    assert b.exports == 0


REFUSED_CASES = ([(fmt, shape, 'C', True) for fmt, shape in C_LAYOUTS]
                 + [(fmt, shape, 'F', ro) for fmt, shape in F_LAYOUTS for ro in (True, False)])


@pytest.mark.parametrize('name', sorted(WRITERS))
@pytest.mark.parametrize('fmt, shape, order, readonly', REFUSED_CASES, ids=[
    f"{o}-{'ro' if r else 'rw'}-{i}" for (f, s, o, r), i in zip(
        REFUSED_CASES, _ids([(f, s) for f, s, _, _ in REFUSED_CASES]))])
def test_writers_refuse_as_for_cpython_exporters(name, fmt, shape, order, readonly, data_file):
    """Read-only or Fortran-order Buffers: the same outcome as for _testbuffer.ndarray."""
    writer = WRITERS[name]
    layout = Layout.generate(fmt, shape, order=order, readonly=readonly)
    b = make_buffer(layout)
    ref = reference_ndarray(layout)
    mine, theirs = outcome(writer, b, data_file), outcome(writer, ref, data_file)
    assert mine == theirs
    if readonly:
        assert mine[0] == 'raises' and mine[1] in (BufferError, TypeError), mine
        assert b.tobytes() == layout.tobytes()  # untouched
    else:
        # Fortran order: whatever CPython's consumer does with the reference, same result.
        assert b.tobytes() == ref.tobytes()
    assert b.exports == 0


@pytest.mark.parametrize('name', sorted(READERS))
@pytest.mark.parametrize('fmt, shape', C_LAYOUTS, ids=_ids(C_LAYOUTS))
@pytest.mark.parametrize('readonly', [False, True], ids=['rw', 'ro'])
def test_readers_see_the_c_bytes(name, fmt, shape, readonly):
    reader = READERS[name]
    layout = Layout.generate(fmt, shape, readonly=readonly)
    b = make_buffer(layout)
    assert outcome(reader, b) == outcome(reader, layout.tobytes())
    assert outcome(reader, b) == outcome(reader, reference_ndarray(layout))
    assert b.exports == 0


@pytest.mark.parametrize('name', sorted(READERS))
@pytest.mark.parametrize('fmt, shape', F_LAYOUTS, ids=_ids(F_LAYOUTS))
def test_readers_on_fortran_buffers_as_on_the_reference(name, fmt, shape):
    reader = READERS[name]
    layout = Layout.generate(fmt, shape, order='F')
    b = make_buffer(layout)
    assert outcome(reader, b) == outcome(reader, reference_ndarray(layout))
    assert b.exports == 0


def test_bytes_of_a_fortran_buffer_is_c_order():
    layout = Layout.generate('<i', (3, 4), order='F')
    b = make_buffer(layout)
    assert bytes(b) == layout.tobytes('C') != layout.tobytes('F')


# --------------------------------------------------------------------------------------------
# memoryview
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('order', 'CF')
@pytest.mark.parametrize('fmt', ['h', 'd', 'B', '?', 'l'])
def test_memoryview_read_write(fmt, order):
    layout = Layout.generate(fmt, (3, 4), order=order)
    b = make_buffer(layout)
    ref = reference_ndarray(layout)
    with memoryview(b) as m:
        assert m.obj is b and m == memoryview(ref)
        assert m.tolist() == layout.items
        m[2, 1] = layout.items[0][0]
        m[0, 3] = layout.items[1][2]
        assert b.exports == 1
    want = [row[:] for row in layout.items]
    want[2][1], want[0][3] = layout.items[0][0], layout.items[1][2]
    assert b.tolist() == want
    assert b.exports == 0


def test_memoryview_cast_and_slices():
    layout = Layout.generate('<i', (3, 4))
    b = make_buffer(layout)
    with memoryview(b) as m:
        with m.cast('B') as raw:
            assert raw.tobytes() == layout.tobytes()
            raw[0:4] = struct.pack('<i', -123456)
            with raw.cast('i', [4, 3]) as again:
                assert again.shape == (4, 3)
                again[3, 2] = 99
        assert b.exports == 1
    flat = [x for row in layout.items for x in row]
    flat[0], flat[-1] = -123456, 99
    assert b.tolist() == [flat[i:i + 4] for i in (0, 4, 8)]

    one = Buffer(10, 'B')
    with memoryview(one) as m:
        m[2:5] = b'\x01\x02\x03'
        m[::3] = b'\x09\x09\x09\x09'
    assert one.tobytes() == bytes([9, 0, 1, 9, 3, 0, 9, 0, 0, 9])


def test_memoryview_cast_of_fortran_buffer_refused_as_for_reference():
    layout = Layout.generate('h', (3, 4), order='F')
    b = make_buffer(layout)
    with memoryview(b) as m, memoryview(reference_ndarray(layout)) as r:
        assert outcome(m.cast, 'B') == outcome(r.cast, 'B') == ('raises', TypeError)


def test_nested_memoryviews():
    layout = Layout.generate('h', (24,))
    b = make_buffer(layout)
    m = memoryview(b)
    m2 = memoryview(m)
    m3 = m2[1::2]
    m4 = memoryview(m3)[::-3]
    assert m4.obj is b and b.exports == 1
    assert m4.tolist() == layout.items[1::2][::-3]
    m4[1] = -1  # m3[-4] = m2[17] = b[17]
    assert b.tolist()[17] == -1 and b.exports == 1
    m.release()
    m2.release()
    m3.release()
    assert b.exports == 1  # m4 still holds the export
    with pytest.raises(BufferError):
        b.close()
    m4.release()
    assert b.exports == 0
    b.close()


def test_memoryview_of_readonly_buffer():
    layout = Layout.generate('B', (8,), readonly=True)
    b = make_buffer(layout)
    with memoryview(b) as m, memoryview(b'12345678') as r:
        assert m.readonly is True
        assert outcome(m.__setitem__, 0, 1) == outcome(r.__setitem__, 0, 1)
        assert outcome(m.__setitem__, 0, 1)[1] is TypeError
    assert b.tobytes() == layout.tobytes()


# --------------------------------------------------------------------------------------------
# numpy
# --------------------------------------------------------------------------------------------

NUMPY_FORMATS = [('?', np.bool_), ('b', np.int8), ('B', np.uint8), ('h', np.int16),
                 ('<i', '<i4'), ('>q', '>i8'), ('d', np.float64), ('e', np.float16),
                 ('l', np.dtype('l'))]


@pytest.mark.parametrize('order', 'CF')
@pytest.mark.parametrize('fmt, dtype', NUMPY_FORMATS, ids=[f for f, _ in NUMPY_FORMATS])
def test_numpy_asarray_shares_memory_both_ways(fmt, dtype, order):
    layout = Layout.generate(fmt, (3, 4), order=order)
    b = make_buffer(layout)
    a = np.asarray(b)
    assert b.exports == 1
    assert a.dtype == np.dtype(dtype) and a.shape == b.shape and a.strides == b.strides
    assert a.flags.c_contiguous == b.c_contiguous and a.flags.f_contiguous == b.f_contiguous
    assert a.flags.writeable and a.tolist() == layout.items
    # numpy writes, the Buffer reads.
    a[2, 3] = a[0, 0]
    a[1, 0] = a[0, 1]
    want = [row[:] for row in layout.items]
    want[2][3], want[1][0] = want[0][0], want[0][1]
    assert b.tolist() == want
    # The Buffer's export is written, numpy reads.
    other = Layout.generate(fmt, (3, 4), order=order, seed=7)
    write_contents(b, other)
    assert a.tolist() == other.items
    # Two exports, one memory; a copy is another memory.
    c = np.asarray(b)
    assert np.shares_memory(a, c) and b.exports == 2
    assert not np.shares_memory(a, np.asarray(Buffer.from_buffer_copy(b)))
    del a, c
    assert b.exports == 0


def test_numpy_frombuffer_shares_memory():
    b = Buffer(16, 'B')
    a = np.frombuffer(b, dtype=np.uint32)
    assert a.shape == (4,) and a.flags.writeable and b.exports == 1
    a[1] = 0x01020304
    assert b.tobytes()[4:8] == struct.pack('=I', 0x01020304)
    with memoryview(b) as m:
        m[0] = 255
    assert a[0] == struct.unpack('=I', bytes([255, 0, 0, 0]))[0]
    assert np.shares_memory(a, np.asarray(b))
    del a
    assert b.exports == 0


def test_numpy_structured_format():
    layout = Layout.generate('hi', (2, 3))
    b = make_buffer(layout)
    a = np.asarray(b)
    assert a.dtype.names is not None and a.dtype.itemsize == struct.calcsize('hi')
    assert a.tolist() == layout.items
    del a


@pytest.mark.parametrize('order', 'CF')
def test_numpy_on_readonly_buffer(order):
    layout = Layout.generate('d', (3, 4), order=order, readonly=True)
    b = make_buffer(layout)
    a = np.asarray(b)
    assert not a.flags.writeable and a.tolist() == layout.items and b.exports == 1
    with pytest.raises(ValueError):
        a[0, 0] = 1.0
    assert not np.asarray(reference_ndarray(layout)).flags.writeable

    def flat(x):
        f = np.frombuffer(x, dtype=np.uint8)
        return f.tolist(), f.flags.writeable
    assert outcome(flat, b) == outcome(flat, reference_ndarray(layout))
    del a
    assert b.exports == 0
    assert b.tobytes() == layout.tobytes()


def test_numpy_frombuffer_fortran_as_reference():
    layout = Layout.generate('<i', (3, 4), order='F')
    b = make_buffer(layout)
    mine = outcome(lambda x: np.frombuffer(x, dtype=np.uint8).tolist(), b)
    theirs = outcome(lambda x: np.frombuffer(x, dtype=np.uint8).tolist(),
                     reference_ndarray(layout))
    assert mine == theirs
    assert b.exports == 0


# --------------------------------------------------------------------------------------------
# Python 3.12+: the Python-level buffer slot
# --------------------------------------------------------------------------------------------

def test_dunder_buffer_when_available():
    b = Buffer((2, 3), 'h')
    if not hasattr(b, '__buffer__'):  # Python < 3.12 has no Python-level slot to test
        assert not hasattr(memoryview(b''), '__buffer__')
        return
    with b.__buffer__(PyBUF_FULL_RO) as m:
        assert m.shape == (2, 3) and m.format == 'h' and b.exports == 1
    ro = Buffer(3, readonly=True)
    with pytest.raises(BufferError):
        ro.__buffer__(_testbuffer.PyBUF_WRITABLE)
    assert b.exports == ro.exports == 0


def test_layouts_of_this_module_are_consistent():
    # Guard against a silently empty parametrisation.
    assert len(WRITERS) == 8 and len(READERS) == 12
    assert all(product(s) * struct.calcsize(f) <= len(DATA) for f, s in C_LAYOUTS + F_LAYOUTS)
