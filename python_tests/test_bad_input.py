"""The bad-input table (issue 6, item 7).

Every public constructor, method and attribute setter of bufferkit, given wrong types,
negative and huge numbers, bad formats, wrong order strings, non-buffer bases, hostile
exporters and closed or released objects, raises one of TypeError, ValueError,
OverflowError, BufferError or MemoryError (AttributeError for a read-only attribute, as for
every built-in type; the caller's own exception where the caller's code raised it) with a
message that says what was wrong -- and afterwards every object involved is still usable:
no export, reference or lock is left behind.

Each row is ``(id, call, exception, message regex)``. ``call`` gets a fresh ``Objects``
(a bytearray, a Buffer, a View of the bytearray, a closed Buffer, a released View) and may
use any of them; after the call, ``Objects.check_usable()`` proves that each still works and
holds exactly the exports and references it held before.
"""

import gc
import pickle
import re
import struct
import sys

import pytest

import _testbuffer
from _testbuffer import ND_GETBUF_FAIL, ND_PIL, ND_VAREXPORT, ND_WRITABLE, PyBUF_FULL

import bufferkit
from bufferkit import Buffer, Exporter, View, inspect
from bufferkit._bufferkit import _rebuild_buffer as _rebuild
from conftest import INTERCEPTED_FLAGS, STRUCT_HAS_COMPLEX, non_memoryview_message

ALLOWED = (TypeError, ValueError, OverflowError, BufferError, MemoryError)


class UserError(Exception):
    """Raised by the test's own hostile callbacks; must come out unchanged."""


class Raising:
    """An object whose truth value, index and length all fail."""

    def __bool__(self):
        raise UserError('bool')

    def __index__(self):
        raise UserError('index')

    def __len__(self):
        raise UserError('len')


class BigIndex:
    def __index__(self):
        return 2**70


class Objects:
    """Fresh objects for one row, and the proof that the row left them usable."""

    def __init__(self):
        self.ba = bytearray(range(16))
        self.buf = Buffer((2, 4), '<h')
        memoryview(self.buf).cast('B')[:] = bytes(range(16))
        self.view = View(self.ba)            # holds one export of ba
        self.vbuf = View(self.buf)[:, ::2]   # holds one export of buf
        self.closed = Buffer(4)
        self.closed.close()
        self.released = View(bytearray(4))
        self.released.release()
        gc.collect()
        self.refs = {name: sys.getrefcount(obj) for name, obj in self._objects()}

    def _objects(self):
        return [('ba', self.ba), ('buf', self.buf), ('view', self.view), ('vbuf', self.vbuf),
                ('closed', self.closed), ('released', self.released)]

    def check_usable(self, where):
        gc.collect()
        for name, obj in self._objects():
            assert sys.getrefcount(obj) == self.refs[name], (
                f'{where}: {name} has {sys.getrefcount(obj)} references, had '
                f'{self.refs[name]}')
        assert self.buf.exports == 1, f'{where}: buf.exports {self.buf.exports}'
        assert self.view.exports == 0 and self.vbuf.exports == 0, where
        assert self.view.tobytes() == bytes(range(16)), where
        assert memoryview(self.view)[3] == 3, where
        assert self.vbuf.tolist() == [[0x100, 0x504], [0x908, 0xd0c]], where
        assert struct.unpack('<8h', memoryview(self.buf).tobytes())[0] == 0x100, where
        s = self.view[2:6]
        assert s.tobytes() == bytes(range(2, 6)), where
        del s
        # the bytearray is locked by exactly the View, and unlocked when it goes
        with pytest.raises(BufferError):
            self.ba.append(0)
        self.view.release()
        self.ba.append(16)
        assert self.ba.pop() == 16
        self.vbuf.release()
        assert self.buf.exports == 0, where
        self.buf.freeze()
        self.buf.close()
        assert self.closed.closed and self.released.released
        assert self.closed.exports == 0 and self.released.exports == 0


def _closed(o):
    return o.closed


def _released(o):
    return o.released


class BadReturn(Exporter):
    def __buffer__(self, flags):
        return b'not a memoryview'


class RaisesInBuffer(Exporter):
    def __buffer__(self, flags):
        raise UserError('from __buffer__')


class NoFlags(Exporter):
    def __buffer__(self):
        return memoryview(b'x')


class ReleasedMemoryview(Exporter):
    def __buffer__(self, flags):
        m = memoryview(b'ab')
        m.release()
        return m


class NoneBuffer(Exporter):
    __buffer__ = None


class SelfRecursive(Exporter):
    def __buffer__(self, flags):
        return memoryview(self)


class ViaView(Exporter):
    def __buffer__(self, flags):
        return memoryview(View(self))


CLOSED = r'^operation on closed Buffer$'
#: What close()/freeze() say while one export is alive: the count, then what ends an export.
IN_USE = (r'^cannot {}: 1 exported buffer is still in use; release it first: call '
          r'memoryview\.release\(\) or leave its with block, or del the numpy array or other '
          r'object that holds it$')
#: The end of a message for a format string struct refuses: what to pass instead.
PASS_INSTEAD = (r"; pass a struct format \('B', 'd', '<i', '2h'\), a numpy type string "
                r"\('<f8', 'i2', 'u1', 'float32'\) or a numpy dtype$")
FORMAT_TYPE = r"^format must be a str \(a struct format such as 'd' or '<i'\) or a numpy dtype, "
RELEASED = r'^operation on released View$'

#: (id, call(objects), exception, message regex)
ROWS = [
    # --- Buffer(shape, format='B', *, order='C', readonly=False) -------------------------
    ('Buffer()', lambda o: Buffer(), TypeError, r"missing required argument 'shape'"),
    ('Buffer(str)', lambda o: Buffer('3'), TypeError,
     r'^shape must be an int or a tuple of ints, not str$'),
    ('Buffer(float)', lambda o: Buffer(3.0), TypeError, r'not float$'),
    ('Buffer(None)', lambda o: Buffer(None), TypeError, r'not NoneType$'),
    ('Buffer(dict)', lambda o: Buffer({1: 2}), TypeError, r'not dict$'),
    ('Buffer((1, str))', lambda o: Buffer((1, 'a')), TypeError,
     r'^shape\[1\] must be an int, not str$'),
    ('Buffer([1, str])', lambda o: Buffer([1, 'a']), TypeError,
     r'^shape must be an int or a tuple of ints, not list: for a shape pass a tuple, as in '
     r'Buffer\(\(2, 3\)\); to copy values'),
    ('Buffer([1, 2])', lambda o: Buffer([1, 2]), TypeError,
     r'not list: for a Buffer of that shape pass a tuple, Buffer\(\(1, 2\)\); for a Buffer '
     r'holding those values, Buffer\.from_buffer_copy\(bytes\(\[1, 2\]\)\)$'),
    ("Buffer(shape=[4])", lambda o: Buffer(shape=[4]), TypeError,
     r'Buffer\(\(4,\)\); for a Buffer holding those values, '
     r'Buffer\.from_buffer_copy\(bytes\(\[4\]\)\)$'),
    ('Buffer(-1)', lambda o: Buffer(-1), ValueError, r'^shape\[0\] must be >= 0, not -1$'),
    ('Buffer((2, -3))', lambda o: Buffer((2, -3)), ValueError,
     r'^shape\[1\] must be >= 0, not -3$'),
    ('Buffer(2**63)', lambda o: Buffer(2**63), OverflowError, r'Py_ssize_t'),
    ('Buffer(-2**63-1)', lambda o: Buffer(-2**63 - 1), OverflowError, r'Py_ssize_t'),
    ('Buffer(index raises)', lambda o: Buffer(Raising()), UserError, r'^index$'),
    ('Buffer((index raises,))', lambda o: Buffer((Raising(),)), UserError, r'^index$'),
    ('Buffer(huge __index__)', lambda o: Buffer((BigIndex(),)), OverflowError,
     r'^shape\[0\] does not fit in Py_ssize_t$'),
    ('Buffer((2**62, 4))', lambda o: Buffer((2**62, 4)), OverflowError, r'2\*\*63-1 bytes'),
    ('Buffer(2**62, "d")', lambda o: Buffer(2**62, 'd'), OverflowError, r'2\*\*63-1 bytes'),
    ('Buffer(2**50)', lambda o: Buffer(2**50), MemoryError,
     r'^cannot allocate a Buffer of 1125899906842624 bytes$'),
    ('Buffer(1, "9223372036854775807s")', lambda o: Buffer(1, '9223372036854775807s'),
     MemoryError, r'cannot allocate'),
    ('Buffer((1,)*65)', lambda o: Buffer((1,) * 65), ValueError,
     r'^ndim 65 exceeds the maximum of 64$'),
    ('Buffer((0,)*65)', lambda o: Buffer((0,) * 65), ValueError, r'ndim 65'),
    ("format ''", lambda o: Buffer(1, ''), ValueError, r"^bad format '': it has no size$"),
    ("format 'x'", lambda o: Buffer(1, 'x'), ValueError,
     r"^bad format 'x': it has no items, only pad bytes$"),
    ("format '4x'", lambda o: Buffer(1, '4x'), ValueError, r"^bad format '4x': it has no items"),
    ("format '0i'", lambda o: Buffer(1, '0i'), ValueError, r"^bad format '0i': it has no size$"),
    ("format 'T{i}'", lambda o: Buffer(1, 'T{i}'), ValueError,
     r"^bad format 'T\{i\}': bad char in struct format" + PASS_INSTEAD),
    ("format '&'", lambda o: Buffer(1, '&'), ValueError, r"^bad format '&': bad char"),
    ("format '<'", lambda o: Buffer(1, '<'), ValueError, r"^bad format '<': it has no size$"),
    ("format '0P'", lambda o: Buffer(1, '0P'), ValueError, r"^bad format '0P': it has no size$"),
    ("format '<P'", lambda o: Buffer(1, '<P'), ValueError, r"^bad format '<P': bad char"),
    ("format 'é'", lambda o: Buffer(1, 'é'), ValueError, r"^bad format 'é': formats are ASCII$"),
    ('format with NUL', lambda o: Buffer(1, 'B\0'), ValueError,
     r"^bad format 'B\\x00': "),
    ('format surrogate', lambda o: Buffer(1, '\ud800'), ValueError, r'surrogates not allowed'),
    ("format '99999999999999999999s'", lambda o: Buffer(1, '99999999999999999999s'),
     ValueError, r'total struct size too long'),
    ("format '2**62 s', shape 2", lambda o: Buffer(2, '%ds' % 2**62), OverflowError,
     r'2\*\*63-1 bytes'),
    ('format bytes', lambda o: Buffer(1, b'B'), TypeError, FORMAT_TYPE + 'not bytes$'),
    ('format int', lambda o: Buffer(1, 3), TypeError, FORMAT_TYPE + 'not int$'),
    ('format type', lambda o: Buffer(1, float), TypeError, FORMAT_TYPE + 'not type$'),
] + ([] if STRUCT_HAS_COMPLEX else [
    ("format 'c8'", lambda o: Buffer(1, 'c8'), ValueError,
     r"^bad format 'c8': struct has no complex format before Python 3.15; '2f' describes the "
     r"\(real, imag\) pairs$"),
]) + [
    ("format 'float128'", lambda o: Buffer(1, 'float128'), ValueError,
     r"^bad format 'float128': bad char in struct format" + PASS_INSTEAD),
    ("format 'f16'", lambda o: Buffer(1, 'f16'), ValueError,
     r"^bad format 'f16': numpy's 'f16' has no struct format of that size$"),
    ("format 'U3'", lambda o: Buffer(1, 'U3'), ValueError,
     r"^bad format 'U3': numpy's 'U' types have no struct format$"),
    ('format None', lambda o: Buffer(1, None), TypeError, r'not NoneType$'),
    ("order 'X'", lambda o: Buffer(1, order='X'), ValueError,
     r"^order must be 'C' or 'F', not 'X'$"),
    ("order ''", lambda o: Buffer(1, order=''), ValueError, r"not ''$"),
    ("order 'c'", lambda o: Buffer(1, order='c'), ValueError, r"not 'c'$"),
    ("order 'A'", lambda o: Buffer(1, order='A'), ValueError, r"not 'A'$"),
    ("order 'CF'", lambda o: Buffer(1, order='CF'), ValueError, r"not 'CF'$"),
    ('order None', lambda o: Buffer(1, order=None), TypeError, r'not NoneType$'),
    ('order int', lambda o: Buffer(1, order=1), TypeError, r'not int$'),
    ('readonly raises', lambda o: Buffer(1, readonly=Raising()), UserError, r'^bool$'),
    ('unknown keyword', lambda o: Buffer(1, foo=1), TypeError, r'foo'),
    ('order positional', lambda o: Buffer(1, 'B', 'C'), TypeError, r'positional'),
    ('Buffer.__new__(View)', lambda o: Buffer.__new__(View, 3), TypeError, r'not a subtype'),
    ('object.__new__(Buffer)', lambda o: object.__new__(Buffer), TypeError, r'not safe'),
    # --- Buffer methods and attributes ---------------------------------------------------
    ('from_buffer_copy(int)', lambda o: Buffer.from_buffer_copy(1), TypeError, r'int'),
    ('from_buffer_copy(str)', lambda o: Buffer.from_buffer_copy('ab'), TypeError, r'str'),
    ('from_buffer_copy(closed)', lambda o: Buffer.from_buffer_copy(o.closed), ValueError,
     CLOSED),
    ('from_buffer_copy(released)', lambda o: Buffer.from_buffer_copy(o.released), ValueError,
     RELEASED),
    ('from_buffer_copy(getbuf fails)', lambda o: Buffer.from_buffer_copy(
        _testbuffer.ndarray([1, 2], shape=[2], flags=ND_GETBUF_FAIL)), BufferError,
     r'ND_GETBUF_FAIL'),
    ('from_buffer_copy(readonly raises)',
     lambda o: Buffer.from_buffer_copy(o.ba, readonly=Raising()), UserError, r'^bool$'),
    ("tobytes('X')", lambda o: o.buf.tobytes('X'), ValueError,
     r"^order must be 'C', 'F', 'A' or None, not 'X'$"),
    ('tobytes(1)', lambda o: o.buf.tobytes(1), TypeError, r'not int$'),
    ('tobytes(2 args)', lambda o: o.buf.tobytes('C', 'x'), TypeError, r'at most 1 argument'),
    ('tolist(arg)', lambda o: o.buf.tolist(1), TypeError, r'argument'),
    ('freeze(arg)', lambda o: o.buf.freeze(1), TypeError, r'argument'),
    ('len(0-d Buffer)', lambda o: len(Buffer(())), TypeError, r'^0-dim Buffer has no len\(\)$'),
    ('__reduce_ex__(str)', lambda o: o.buf.__reduce_ex__('x'), TypeError,
     r'^protocol must be an int, not str$'),
    ('__reduce_ex__(2**70)', lambda o: o.buf.__reduce_ex__(2**70), OverflowError, r'protocol'),
    ('_rebuild_buffer()', lambda o: _rebuild(), TypeError, r'6 arguments'),
    ('_rebuild_buffer(short data)', lambda o: _rebuild(Buffer, b'ab', 'i', (1,), 'C', False),
     ValueError, r'^pickled Buffer data has 2 bytes, its shape and format need 4$'),
    ('_rebuild_buffer(long data)', lambda o: _rebuild(Buffer, b'abcdef', 'B', (4,), 'C', 0),
     ValueError, r'has 6 bytes'),
    ('_rebuild_buffer(non-buffer)', lambda o: _rebuild(Buffer, 1, 'B', (2,), 'C', False),
     TypeError, r'int'),
    ('_rebuild_buffer(order)', lambda o: _rebuild(Buffer, b'ab', 'B', (2,), 'X', False),
     ValueError, r"not 'X'"),
    ('_rebuild_buffer(negative shape)', lambda o: _rebuild(Buffer, b'ab', 'B', (-2,), 'C', 0),
     ValueError, r'shape\[0\] must be >= 0'),
    ('_rebuild_buffer(keyword)',
     lambda o: _rebuild(Buffer, b'ab', 'B', (2,), 'C', False, bogus=1), TypeError,
     r'keyword'),
    ('_rebuild_buffer(View)', lambda o: _rebuild(View, b'ab', 'B', (2,), 'C', False), TypeError,
     r'^_rebuild_buffer\(\) argument 1 must be Buffer or a subclass of it, not class View$'),
    ('_rebuild_buffer(instance)', lambda o: _rebuild(o.buf, b'ab', 'B', (2,), 'C', False),
     TypeError, r'must be Buffer or a subclass of it, not Buffer$'),
    ('set Buffer.shape', lambda o: setattr(o.buf, 'shape', (8,)), AttributeError,
     r'not writable'),
    ('del Buffer.format', lambda o: delattr(o.buf, 'format'), AttributeError, r'not writable'),
    ('set Buffer.exports', lambda o: setattr(o.buf, 'exports', 0), AttributeError,
     r'not writable'),
    ('set Buffer.readonly', lambda o: setattr(o.buf, 'readonly', True), AttributeError,
     r'not writable'),
    ('set Buffer.closed', lambda o: setattr(o.buf, 'closed', True), AttributeError,
     r'not writable'),
    ('set Buffer attribute', lambda o: setattr(o.buf, 'foo', 1), AttributeError, r'foo'),
    ('close() while exported', lambda o: o.buf.close(), BufferError, IN_USE.format('close')),
    ('freeze() while exported', lambda o: o.buf.freeze(), BufferError, IN_USE.format('freeze')),
    ('with-exit while exported', lambda o: o.buf.__exit__(None, None, None), BufferError,
     IN_USE.format('close')),
    # every attribute and method of a closed Buffer
    *[(f'closed Buffer.{name}', (lambda name: lambda o: getattr(o.closed, name))(name),
       ValueError, CLOSED)
      for name in ('format', 'itemsize', 'ndim', 'shape', 'strides', 'suboffsets', 'nbytes',
                   'readonly', 'c_contiguous', 'f_contiguous', 'contiguous', 'order')],
    *[(f'closed Buffer.{name}()', (lambda name: lambda o: getattr(o.closed, name)())(name),
       ValueError, CLOSED)
      for name in ('tobytes', 'tolist', 'freeze', '__enter__')],
    ('len(closed Buffer)', lambda o: len(o.closed), ValueError, CLOSED),
    ('memoryview(closed Buffer)', lambda o: memoryview(o.closed), ValueError, CLOSED),
    ('pickle(closed Buffer)', lambda o: pickle.dumps(o.closed), ValueError, CLOSED),
    ('inspect(closed Buffer)', lambda o: inspect(o.closed), ValueError, CLOSED),
    # --- View(base, *, offset, format, shape, strides, readonly) -------------------------
    ('View()', lambda o: View(), TypeError, r"missing required argument 'base'"),
    ('View(int)', lambda o: View(1), TypeError,
     r"^View\(\) argument 'base' must support the buffer protocol, not int$"),
    ('View(str)', lambda o: View('s'), TypeError, r'not str$'),
    ('View(None)', lambda o: View(None), TypeError, r'not NoneType$'),
    ('View(base, 1)', lambda o: View(o.ba, 1), TypeError, r'positional'),
    ('offset -1', lambda o: View(o.ba, offset=-1), ValueError,
     r"^offset -1 is outside the base's 16 bytes$"),
    ('offset 17', lambda o: View(o.ba, offset=17), ValueError, r'offset 17 is outside'),
    ('offset 2**64', lambda o: View(o.ba, offset=2**64), OverflowError,
     r'^offset does not fit in Py_ssize_t$'),
    ('offset -2**64', lambda o: View(o.ba, offset=-2**64), OverflowError, r'offset'),
    ('offset str', lambda o: View(o.ba, offset='1'), TypeError,
     r'^offset must be an int, not str$'),
    ('offset float', lambda o: View(o.ba, offset=1.0), TypeError, r'not float$'),
    ('offset index raises', lambda o: View(o.ba, offset=Raising()), UserError, r'^index$'),
    ("View format ''", lambda o: View(o.ba, format=''), ValueError, r"^bad format ''"),
    ("View format 'x'", lambda o: View(o.ba, format='x'), ValueError, r"^bad format 'x'"),
    ("View format '0i'", lambda o: View(o.ba, format='0i'), ValueError, r"^bad format '0i'"),
    ("View format 'T{i}'", lambda o: View(o.ba, format='T{i}'), ValueError, r'bad char'),
    ("View format '&'", lambda o: View(o.ba, format='&'), ValueError, r'bad char'),
    ("View format '<'", lambda o: View(o.ba, format='<'), ValueError, r'no size'),
    ('View format bytes', lambda o: View(o.ba, format=b'B'), TypeError, r'not bytes$'),
    ("View format 'P' over 16 bytes, shape 3",
     lambda o: View(o.ba, format='P', shape=(3,)), ValueError, r'past the end'),
    ("View format '17s'", lambda o: View(o.ba, format='17s', shape=(1,)), ValueError,
     r"does not fit in the base's 16 bytes"),
    ('View shape -1', lambda o: View(o.ba, shape=-1), ValueError, r'^shape\[0\] must be >= 0'),
    ('View shape (1, -1)', lambda o: View(o.ba, shape=(1, -1)), ValueError, r'shape\[1\]'),
    ('View shape str', lambda o: View(o.ba, shape='x'), TypeError, r'not str$'),
    ('View shape (2**63,)', lambda o: View(o.ba, shape=(2**63,)), OverflowError,
     r'^shape\[0\] does not fit in Py_ssize_t$'),
    ('View shape (17,)', lambda o: View(o.ba, shape=(17,)), ValueError,
     r"^dimension 0 \(length 17, stride 1\) reaches byte 16, past the end of the base's 16 "
     r"bytes$"),
    ('View shape 65 dims', lambda o: View(o.ba, shape=(1,) * 65), ValueError, r'ndim 65'),
    ('View shape (2**62, 4)', lambda o: View(o.ba, shape=(2**62, 4), strides=(0, 0)),
     OverflowError, r'2\*\*63-1 bytes'),
    ('View strides without shape', lambda o: View(o.ba, strides=(1,)), ValueError,
     r'^strides need a shape: pass shape= as well$'),
    ('View strides length', lambda o: View(o.ba, shape=(1,), strides=(1, 2)), ValueError,
     r'^strides has 2 entries but shape has 1$'),
    ('View strides str', lambda o: View(o.ba, shape=(1,), strides='x'), TypeError,
     r'^strides must be a tuple of ints, not str$'),
    ('View strides int', lambda o: View(o.ba, shape=(1,), strides=1), TypeError, r'not int$'),
    ('View strides float', lambda o: View(o.ba, shape=(1,), strides=(1.0,)), TypeError,
     r'^strides\[0\] must be an int, not float$'),
    ('View strides 2**63', lambda o: View(o.ba, shape=(1,), strides=(2**63,)), OverflowError,
     r'^strides\[0\] does not fit in Py_ssize_t$'),
    ('View strides reach before the base', lambda o: View(o.ba, shape=(2,), strides=(-1,)),
     ValueError, r'before the start of the base'),
    ('View strides huge', lambda o: View(o.ba, shape=(3,), strides=(2**63 - 1,)), ValueError,
     r'beyond the address space'),
    ('View readonly=False over bytes', lambda o: View(b'abc', readonly=False), BufferError,
     r'^View\(readonly=False\) needs a writable base, but bytes is read-only$'),
    ('View readonly=False over frozen Buffer',
     lambda o: View((lambda b: (b.freeze(), b)[1])(Buffer(2)), readonly=False), BufferError,
     r'but Buffer is read-only$'),
    ('View readonly raises', lambda o: View(o.ba, readonly=Raising()), UserError, r'^bool$'),
    ('View(closed Buffer)', lambda o: View(o.closed), ValueError, CLOSED),
    ('View(released View)', lambda o: View(o.released), ValueError, RELEASED),
    ('View(released memoryview)',
     lambda o: View((lambda m: (m.release(), m)[1])(memoryview(b'ab'))), ValueError,
     r'released memoryview'),
    ('View(getbuf fails)',
     lambda o: View(_testbuffer.ndarray([1, 2], shape=[2], flags=ND_GETBUF_FAIL)),
     BufferError, r'ND_GETBUF_FAIL'),
    ('View(PIL-style base)',
     lambda o: View(_testbuffer.ndarray([1, 2, 3, 4], shape=[2, 2], format='B', flags=ND_PIL)),
     BufferError, r'^View cannot re-export ndarray: its buffer has suboffsets'),
    ('View relayout of a strided base',
     lambda o: View(o.vbuf, format='B'), ValueError, r'needs a contiguous base'),
    ('View relayout of a strided ndarray',
     lambda o: View(_testbuffer.ndarray(list(range(8)), shape=[8], format='B')[::2], offset=1),
     ValueError, r'needs a contiguous base, but ndarray is not contiguous$'),
    ('View.__new__(Buffer)', lambda o: View.__new__(Buffer, o.ba), TypeError, r'not a subtype'),
    # --- View methods, slicing and attributes --------------------------------------------
    ('v[0]', lambda o: o.view[0], TypeError,
     r'^View indices must be slices, not int \(index items with memoryview\(view\)\[...\]\)$'),
    ("v['a']", lambda o: o.view['a'], TypeError, r'not str'),
    ('v[...]', lambda o: o.view[...], TypeError, r'not ellipsis'),
    ('v[None]', lambda o: o.view[None], TypeError, r'not NoneType'),
    ('v[::0]', lambda o: o.view[::0], ValueError, r'^slice step cannot be zero$'),
    ('v[:, :] (1-d)', lambda o: o.view[:, :], TypeError,
     r'^too many indices: 2 slices for a 1-dimensional View$'),
    ('v[65 slices]', lambda o: o.view[(slice(None),) * 65], TypeError, r'65 slices'),
    ("v[slice('a')]", lambda o: o.view[slice('a')], TypeError, r'slice indices'),
    ('v[index raises]', lambda o: o.view[slice(Raising())], UserError, r'^index$'),
    ('len(0-d View)', lambda o: len(View(o.ba, format='B', shape=())), TypeError,
     r'^0-dim View has no len\(\)$'),
    ('pickle View', lambda o: pickle.dumps(o.view), TypeError, r"^cannot pickle 'View' object"),
    ('set View.base', lambda o: setattr(o.view, 'base', 1), AttributeError, r'not writable'),
    ('set View.offset', lambda o: setattr(o.view, 'offset', 1), AttributeError,
     r'not writable'),
    ('set View.released', lambda o: setattr(o.view, 'released', True), AttributeError,
     r'not writable'),
    ('release(arg)', lambda o: o.view.release(1), TypeError, r'argument'),
    ('release() while exported',
     lambda o: (lambda m: o.view.release())(memoryview(o.view)), BufferError,
     r'^cannot release: 1 exported buffer$'),
    *[(f'released View.{name}', (lambda name: lambda o: getattr(o.released, name))(name),
       ValueError, RELEASED)
      for name in ('format', 'itemsize', 'ndim', 'shape', 'strides', 'suboffsets', 'nbytes',
                   'readonly', 'c_contiguous', 'f_contiguous', 'contiguous', 'base',
                   'offset')],
    *[(f'released View.{name}()', (lambda name: lambda o: getattr(o.released, name)())(name),
       ValueError, RELEASED)
      for name in ('tobytes', 'tolist', '__enter__')],
    ('released View[:]', lambda o: o.released[:], ValueError, RELEASED),
    ('len(released View)', lambda o: len(o.released), ValueError, RELEASED),
    ('memoryview(released View)', lambda o: memoryview(o.released), ValueError, RELEASED),
    ('inspect(released View)', lambda o: inspect(o.released), ValueError, RELEASED),
    # --- Exporter ------------------------------------------------------------------------
    ('Exporter(1)', lambda o: Exporter(1), TypeError, r'takes no arguments'),
    ('Exporter(x=1)', lambda o: Exporter(x=1), TypeError, r'takes no arguments'),
    ('memoryview(Exporter())', lambda o: memoryview(Exporter()), TypeError,
     r'^Exporter does not define __buffer__: a bufferkit.Exporter subclass must define '
     r'__buffer__\(self, flags\) returning a memoryview$'),
    ('View(Exporter())', lambda o: View(Exporter()), TypeError, r'does not define __buffer__'),
    ('Exporter.__buffer__(int)', lambda o: Exporter.__buffer__(1, 0), TypeError,
     r"doesn't apply to a 'int' object"),
    ('__buffer__ returns bytes', lambda o: memoryview(BadReturn()), TypeError,
     '^' + re.escape(non_memoryview_message(BadReturn(), b'')) + '$'),
    ('View: __buffer__ returns bytes', lambda o: View(BadReturn()), TypeError,
     '^' + re.escape(non_memoryview_message(BadReturn(), b'')) + '$'),
    ('__buffer__ raises', lambda o: memoryview(RaisesInBuffer()), UserError,
     r'^from __buffer__$'),
    ('View: __buffer__ raises', lambda o: View(RaisesInBuffer()), UserError, r'__buffer__'),
    ('__buffer__ without flags', lambda o: memoryview(NoFlags()), TypeError,
     r'positional argument'),
    ('__buffer__ returns a released memoryview', lambda o: memoryview(ReleasedMemoryview()),
     ValueError, r'released memoryview'),
    ('__buffer__ = None', lambda o: memoryview(NoneBuffer()), TypeError, r'not callable'),
    ('__buffer__ exports itself', lambda o: memoryview(SelfRecursive()), RecursionError,
     r'recursion'),
    ('__buffer__ exports a View of itself', lambda o: memoryview(ViaView()), RecursionError,
     r'recursion'),
    # --- inspect(obj, flags=PyBUF_FULL_RO) -----------------------------------------------
    ('inspect()', lambda o: inspect(), TypeError, r"missing required argument 'obj'"),
    ('inspect(int)', lambda o: inspect(1), TypeError, r'int'),
    ('inspect(flags str)', lambda o: inspect(o.ba, 'x'), TypeError, r'integer'),
    ('inspect(flags 2**40)', lambda o: inspect(o.ba, 2**40), OverflowError, r'.'),
    ('inspect(Buffer, flags -1)', lambda o: inspect(o.buf, -1), BufferError,
     r'^invalid buffer request flags 0xffffffff: unknown bits 0xfffffe02$'),
    # PyObject_GetBuffer itself refuses PyBUF_WRITE alone on 3.13+ (INTERCEPTED_FLAGS), before
    # any exporter is asked; earlier versions ask bufferkit, which names the bit.
    ('inspect(Buffer, WRITE)', lambda o: inspect(o.buf, bufferkit.PyBUF_WRITE),
     *((SystemError, r'bad argument to internal function$')
       if bufferkit.PyBUF_WRITE in INTERCEPTED_FLAGS
       else (BufferError, r'^invalid buffer request flags 0x200: unknown bits 0x200$'))),
    ('inspect(View, 0x400)', lambda o: inspect(o.view, 0x400), BufferError,
     r'^invalid buffer request flags 0x400: unknown bits 0x400$'),
    ('inspect(strided View, CONTIG)', lambda o: inspect(o.vbuf, bufferkit.PyBUF_CONTIG),
     BufferError, r'^View is not C-contiguous and the request has no strides$'),
]

# SystemError for PyBUF_WRITE/PyBUF_READ alone comes from PyObject_GetBuffer itself on 3.13+
# (before any exporter is asked), not from bufferkit: see c_tests/README.md.
_INTERNAL = {'inspect(Buffer, WRITE)'}


@pytest.mark.parametrize('row', ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(row):
    name, call, exc_type, pattern = row
    objects = Objects()
    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: unraisable.append(u.exc_type)
    try:
        try:
            call(objects)
        except Exception as exc:  # noqa: BLE001 - judged below
            got_type, message = type(exc), str(exc)
        else:
            raise AssertionError(f'{name}: no exception, want {exc_type}')
    finally:
        sys.unraisablehook = old_hook
    want = exc_type if isinstance(exc_type, tuple) else (exc_type,)
    assert issubclass(got_type, want), f'{name}: {got_type.__name__}: {message}'
    if got_type is SystemError:
        assert name in _INTERNAL, f'{name}: SystemError: {message}'
    assert message, f'{name}: {got_type.__name__} without a message'
    assert re.search(pattern, message), f'{name}: message {message!r} !~ {pattern!r}'
    assert not unraisable, f'{name}: unraisable exceptions {unraisable}'
    objects.check_usable(name)


def test_every_row_raises_an_allowed_type():
    """The table itself keeps to the promise: only the five types (plus AttributeError for
    read-only attributes, RecursionError for self-exporting Exporters, and the caller's own
    exceptions)."""
    for name, _, exc_type, _ in ROWS:
        for t in exc_type if isinstance(exc_type, tuple) else (exc_type,):
            assert issubclass(t, ALLOWED + (AttributeError, RecursionError, UserError,
                                            SystemError)), name


# --- hostile exporters under a View -------------------------------------------------------

def test_release_buffer_that_raises_is_reported_and_the_export_still_ends():
    class BadRelease(Exporter):
        def __init__(self):
            self.data = bytearray(b'ab')

        def __buffer__(self, flags):
            return memoryview(self.data)

        def __release_buffer__(self, view):
            raise UserError('from __release_buffer__')

    seen = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append((u.exc_type, str(u.exc_value)))
    try:
        e = BadRelease()
        m = memoryview(e)
        assert m.tobytes() == b'ab'
        m.release()
        v = View(e)
        assert v.tobytes() == b'ab'
        v.release()
    finally:
        sys.unraisablehook = old_hook
    assert seen == [(UserError, 'from __release_buffer__')] * 2
    e.data.append(0)  # the bytearray is no longer exported by anyone
    assert bytes(e.data) == b'ab\x00'


def test_base_whose_layout_changes_while_viewed():
    """ND_VAREXPORT ndarrays may change their memory while exported (a broken exporter by
    the protocol's rules). A View keeps the export it took and keeps reading that memory;
    slices and Views of it never mix two exports' memory."""
    nd = _testbuffer.ndarray(list(range(8)), shape=[8], format='B',
                             flags=ND_VAREXPORT | ND_WRITABLE)
    v = View(nd)
    assert v.tobytes() == bytes(range(8))
    nd.push(list(range(100, 104)), shape=[4], format='B', flags=ND_WRITABLE)
    assert nd.tolist() == [100, 101, 102, 103]
    assert v.tobytes() == bytes(range(8))          # still the first export's memory
    s = v[2:6]                                     # the root now exports other memory
    assert s.tobytes() == bytes(range(2, 6))
    w = View(v)
    assert w.tobytes() == bytes(range(8))
    for obj in (s, w):
        obj.release()
    v.release()
    assert nd.tolist() == [100, 101, 102, 103]


def test_objects_are_still_usable_after_every_refusal_on_a_subclass():
    """Messages name a subclass, and subclasses stay usable too."""
    class Sub(Buffer):
        pass

    b = Sub(4)
    m = memoryview(b)
    with pytest.raises(BufferError, match=IN_USE.format('close')):
        b.close()
    with pytest.raises(BufferError, match=r'^invalid buffer request flags 0x400'):
        inspect(b, 0x400)
    m.release()
    b.freeze()
    with pytest.raises(BufferError, match=r'^Sub is not writable$'):
        inspect(b, bufferkit.PyBUF_WRITABLE)
    assert bytes(b) == bytes(4)
    b.close()
