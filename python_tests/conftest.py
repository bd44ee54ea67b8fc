"""One oracle and one verify() for every bufferkit exporter (Buffer today, View and Exporter later).

The model is CPython's ``Lib/test/test_buffer.py``: ``verify_getbuf`` decides from the exporter
and the request whether the request must be refused and, if not, which fields the consumer must
see; ``verify`` then compares what a consumer really got, field by field.  Here the two halves
are:

* ``expected(layout, flags, policy)``: the oracle.  ``layout`` describes what the exporter
  holds (format, shape, strides, where element (0, ..., 0) lies, read-only, logical contents);
  ``policy`` names the few documented ways exporters differ (docs/semantics.md: malformed flags,
  FORMAT without ND for unsigned bytes, ...).  It returns a ``Refused`` or a ``Fields``.
* ``verify(obj, flags, layout, policy, reference=...)``: asks ``obj`` for a buffer through two
  consumers and checks each against the oracle:

  - ``_testbuffer.ndarray(obj, getbuf=flags)``, CPython's test consumer, which shows the fields
    as attributes (NULL pointers appear as ``''`` / ``()``) and reads items through them;
  - a raw ``PyObject_GetBuffer`` through ctypes, which shows what ``_testbuffer`` hides: the
    address ``buf``, NULL versus empty, ``internal``, the reference taken on ``obj``, ``obj``
    being NULL after a refusal, and the bytes actually found at ``buf + sum(i * stride)``.

  With ``reference=`` (normally ``reference_ndarray(layout)``), the same request is also made
  to the reference exporter; wherever the two policies promise the same outcome, the two
  consumers must see exactly the same thing.

The oracle is itself proven on CPython's exporters in ``test_oracle.py``.
"""

import ctypes
import gc
import itertools
import random
import struct
import sys
from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple

import pytest

import _testbuffer
from _testbuffer import (
    ND_FORTRAN,
    ND_WRITABLE,
    PyBUF_ANY_CONTIGUOUS,
    PyBUF_C_CONTIGUOUS,
    PyBUF_CONTIG,
    PyBUF_CONTIG_RO,
    PyBUF_F_CONTIGUOUS,
    PyBUF_FORMAT,
    PyBUF_FULL,
    PyBUF_FULL_RO,
    PyBUF_INDIRECT,
    PyBUF_ND,
    PyBUF_RECORDS,
    PyBUF_RECORDS_RO,
    PyBUF_SIMPLE,
    PyBUF_STRIDED,
    PyBUF_STRIDED_RO,
    PyBUF_STRIDES,
    PyBUF_WRITABLE,
)

# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------

#: The fifteen requests of test_ndarray_getbuf: the distinct flags, then the compound ones.
STANDARD_REQUESTS = (
    PyBUF_INDIRECT, PyBUF_STRIDES, PyBUF_ND, PyBUF_SIMPLE,
    PyBUF_C_CONTIGUOUS, PyBUF_F_CONTIGUOUS, PyBUF_ANY_CONTIGUOUS,
    PyBUF_FULL, PyBUF_FULL_RO, PyBUF_RECORDS, PyBUF_RECORDS_RO,
    PyBUF_STRIDED, PyBUF_STRIDED_RO, PyBUF_CONTIG, PyBUF_CONTIG_RO,
)
#: The bits a consumer adds to any of them.
EXTRA_BITS = (0, PyBUF_WRITABLE, PyBUF_FORMAT, PyBUF_WRITABLE | PyBUF_FORMAT)


def _unique(values):
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return tuple(seen)


#: Every request of the matrix, each once (15 x 4 combinations, 28 distinct values).
REQUESTS = _unique(req | bits for req in STANDARD_REQUESTS for bits in EXTRA_BITS)

#: The bits a well-formed request may carry (docs/semantics.md, rule 1).
KNOWN_BITS = 0x1FD
_STRIDES_BIT = 0x10
_NEEDS_STRIDES_BITS = (0x20, 0x40, 0x80, 0x100)  # C, F, ANY contiguity; INDIRECT

#: Malformed requests of the brief and of the page, alone and on top of good requests.
#: (Not 0x10000 alone: _testbuffer.ndarray reads getbuf=0x10000 as "no getbuf given".)
MALFORMED_REQUESTS = _unique(
    [0x200, 0x100, 0x2, 0x20, 0x10, 0x400, 0x40, 0x80, 0x800, 0x20000, 0x30, 0x120]
    + [PyBUF_FULL | 0x200, PyBUF_FULL_RO | 0x2, PyBUF_ND | 0x20, PyBUF_ND | 0x100,
       PyBUF_FORMAT | 0x10, PyBUF_WRITABLE | 0x400, PyBUF_RECORDS | 0x10000]
)


@pytest.fixture(scope='session', autouse=True)
def _freeze_long_lived_objects():
    """Move everything alive after collection (the parametrised layouts...) out of the cycle
    collector's reach, so that the gc.collect() of refcount tests stays fast."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(params=REQUESTS, ids=hex)
def request_flags(request):
    """Each request of the standard matrix."""
    return request.param


@pytest.fixture(params=MALFORMED_REQUESTS, ids=hex)
def malformed_flags(request):
    """Each malformed request."""
    return request.param


# --------------------------------------------------------------------------------------------
# Layouts: what an exporter holds
# --------------------------------------------------------------------------------------------

def contiguous_strides(shape, itemsize, order):
    """Strides of a packed array, as PyBuffer_FillContiguousStrides computes them."""
    strides = [0] * len(shape)
    step = itemsize
    dims = range(len(shape)) if order == 'F' else reversed(range(len(shape)))
    for i in dims:
        strides[i] = step
        step *= shape[i]
    return tuple(strides)


def is_contiguous(shape, strides, itemsize, order):
    """PyBuffer_IsContiguous for a layout without suboffsets ('C', 'F' or 'A')."""
    if order == 'A':
        return (is_contiguous(shape, strides, itemsize, 'C')
                or is_contiguous(shape, strides, itemsize, 'F'))
    if product(shape) == 0:
        return True
    step = itemsize
    dims = range(len(shape)) if order == 'F' else reversed(range(len(shape)))
    for i in dims:
        if shape[i] > 1 and strides[i] != step:
            return False
        step *= shape[i]
    return True


def product(values):
    result = 1
    for v in values:
        result *= v
    return result


def c_indices(shape):
    """Every index of ``shape`` in C order (one empty index for 0-d)."""
    return itertools.product(*(range(n) for n in shape))


def f_indices(shape):
    """Every index of ``shape`` in Fortran order."""
    return (tuple(reversed(i)) for i in c_indices(tuple(reversed(shape))))


def item_at(items, index):
    for i in index:
        items = items[i]
    return items


def nest(flat, shape):
    """The nested list of ``shape`` whose C-order items are ``flat`` (the item itself for 0-d)."""
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = product(shape[1:])
    return [nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def pack_item(fmt, item):
    return struct.pack(fmt, *item) if isinstance(item, tuple) else struct.pack(fmt, item)


def unpack_item(fmt, raw):
    values = struct.unpack(fmt, raw)
    return values[0] if len(values) == 1 else values


def random_items(fmt, count, rng):
    """``count`` items of ``fmt`` as struct.unpack returns them, from random bytes; no NaN."""
    size = struct.calcsize(fmt)
    items = []
    while len(items) < count:
        item = unpack_item(fmt, bytes(rng.getrandbits(8) for _ in range(size)))
        values = item if isinstance(item, tuple) else (item,)
        if any(v != v for v in values):  # NaN compares unequal to itself
            continue
        items.append(unpack_item(fmt, pack_item(fmt, item)))  # canonical ('?' -> 0/1 byte)
    return items


class Layout:
    """What an exporter holds.

    ``items`` is the logical contents: nested lists of items as ``struct.unpack`` returns them
    (tuples for multi-value formats such as 'hi'), the bare item for 0-d.  ``strides`` default
    to the packed strides of ``order``; ``offset`` is the byte offset of element (0, ..., 0)
    from the start of the exporter's memory.
    """

    def __init__(self, format, shape, items, *, order='C', strides=None, offset=0,
                 readonly=False):
        self.format = format
        self.itemsize = struct.calcsize(format)
        self.shape = tuple(shape)
        self.ndim = len(self.shape)
        self.order = order
        self.strides = (contiguous_strides(self.shape, self.itemsize, order)
                        if strides is None else tuple(strides))
        self.offset = offset
        self.readonly = bool(readonly)
        self.items = items
        self.nbytes = product(self.shape) * self.itemsize
        self.c_contiguous = is_contiguous(self.shape, self.strides, self.itemsize, 'C')
        self.f_contiguous = is_contiguous(self.shape, self.strides, self.itemsize, 'F')
        self.contiguous = self.c_contiguous or self.f_contiguous

    @classmethod
    def generate(cls, format, shape, *, order='C', readonly=False, seed=0):
        """A packed layout with reproducible random contents."""
        shape = tuple(shape)
        flat = random_items(format, product(shape), random.Random(f'{format}{shape}{seed}'))
        return cls(format, shape, nest(flat, shape), order=order, readonly=readonly)

    @classmethod
    def from_memory(cls, format, shape, memory_items, *, strides=None, offset=0, order='C',
                    readonly=False):
        """The layout of ``_testbuffer.ndarray(memory_items, shape, strides, offset, format)``:
        items fill the memory in turn; element i lies at offset + sum(i * strides)."""
        itemsize = struct.calcsize(format)
        shape = tuple(shape)
        if strides is None:
            strides = contiguous_strides(shape, itemsize, order)
        if not shape:
            return cls(format, shape, memory_items, strides=(), offset=offset,
                       readonly=readonly)
        flat = [memory_items[(offset + sum(i * s for i, s in zip(index, strides))) // itemsize]
                for index in c_indices(shape)]
        return cls(format, shape, nest(flat, shape), order=order, strides=strides,
                   offset=offset, readonly=readonly)

    def flat_items(self, order='C'):
        indices = f_indices(self.shape) if order == 'F' else c_indices(self.shape)
        return [item_at(self.items, index) for index in indices]

    def tobytes(self, order='C'):
        """The contents packed in C or Fortran order (memoryview.tobytes semantics)."""
        return b''.join(pack_item(self.format, item) for item in self.flat_items(order))

    def tolist(self):
        return self.items

    @property
    def packed(self):
        """True when the memory is exactly the items in ``order``, from offset 0."""
        return (self.offset == 0
                and self.strides == contiguous_strides(self.shape, self.itemsize, self.order))

    def __repr__(self):
        return (f'Layout({self.format!r}, shape={self.shape}, order={self.order!r}, '
                f'strides={self.strides}, offset={self.offset}, readonly={self.readonly})')


def zero_item(fmt):
    return unpack_item(fmt, bytes(struct.calcsize(fmt)))


# --------------------------------------------------------------------------------------------
# Policies: the documented differences between exporters
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """How one kind of exporter applies the rules of docs/semantics.md.

    messages           the refusal messages are bufferkit's (T = type(obj).__name__)
    refuses_malformed  rule 1: malformed requests are refused (CPython's exporters read the
                       flags through (flags & X) == X and serve them)
    format_without_nd  rule 5: 'unsigned-bytes' (bufferkit, PyBuffer_FillInfo: served for a
                       'B' format, as format 'B'), 'never' (_testbuffer.ndarray, memoryview)
                       or 'always' (array.array: served with the real format)
    clears_obj         view->obj is NULL after a refusal (PyBuffer_FillInfo leaves it alone)
    internal_null      view->internal is NULL (None: not checked)
    has_exports        the exporter has an ``exports`` attribute counting live exports
    """
    name: str
    messages: bool
    refuses_malformed: bool
    format_without_nd: str
    clears_obj: bool = True
    internal_null: Optional[bool] = True
    has_exports: bool = False


BUFFERKIT = Policy('bufferkit', messages=True, refuses_malformed=True,
                   format_without_nd='unsigned-bytes', has_exports=True)
TESTBUFFER = Policy('_testbuffer.ndarray', messages=False, refuses_malformed=False,
                    format_without_nd='never', internal_null=False)
MEMORYVIEW = Policy('memoryview', messages=False, refuses_malformed=False,
                    format_without_nd='never', internal_null=None)
FILLINFO = Policy('PyBuffer_FillInfo (bytes, bytearray)', messages=False,
                  refuses_malformed=False, format_without_nd='unsigned-bytes',
                  clears_obj=False)
ARRAY = Policy('array.array', messages=False, refuses_malformed=False,
               format_without_nd='always')

UNSIGNED_BYTE_FORMATS = ('B', '@B', '=B', '<B', '>B', '!B')


class Refused(NamedTuple):
    """The request must fail with BufferError.

    ``message`` is the exact message when the page fixes it; otherwise ``prefix`` is what the
    page fixes of it (None: nothing is known about the message)."""
    rule: int
    message: Optional[str] = None
    prefix: Optional[str] = None

    def check_message(self, text):
        if self.message is not None:
            assert text == self.message, f'rule {self.rule}: got {text!r}, want {self.message!r}'
        elif self.prefix is not None:
            assert text.startswith(self.prefix), (
                f'rule {self.rule}: got {text!r}, want it to start with {self.prefix!r}')


class Fields(NamedTuple):
    """The Py_buffer a served request must fill.  None stands for a NULL pointer."""
    buf_offset: int           # buf - start of the exporter's memory
    len: int
    itemsize: int
    readonly: bool
    ndim: int
    format: Optional[str]
    shape: Optional[Tuple[int, ...]]
    strides: Optional[Tuple[int, ...]]
    suboffsets: Optional[Tuple[int, ...]]
    tolist: object            # what a consumer reading items through the fields finds
    tobytes: bytes            # the items in C order


def malformation(flags):
    """Rule 1 of docs/semantics.md: None, or Refused with as much of the message as is fixed."""
    problems = []
    unknown = flags & ~KNOWN_BITS
    if unknown:
        problems.append(('documented', f'unknown bits {hex(unknown)}'))
    if flags & _STRIDES_BIT and not flags & PyBUF_ND:
        problems.append(('undocumented', None))  # the page gives no message for this case
    for bit in _NEEDS_STRIDES_BITS:
        if flags & bit and (flags & PyBUF_STRIDES) != PyBUF_STRIDES:
            problems.append(('documented', f'{hex(bit)} needs PyBUF_STRIDES'))
    if not problems:
        return None
    prefix = f'invalid buffer request flags {hex(flags)}: ' if flags >= 0 else (
        'invalid buffer request flags ')
    if len(problems) == 1 and problems[0][0] == 'documented' and flags >= 0:
        return Refused(1, message=prefix + problems[0][1])
    return Refused(1, prefix=prefix)


def expected(layout, flags, policy=BUFFERKIT, type_name='Buffer'):
    """The oracle: what ``flags`` must give on an exporter holding ``layout``."""
    def asks(x):
        return flags & x == x

    def refused(rule, message):
        return Refused(rule, message=message if policy.messages else None)

    t = type_name
    if policy.refuses_malformed:
        bad = malformation(flags)
        if bad is not None:
            return bad if policy.messages else Refused(1)
    if asks(PyBUF_WRITABLE) and layout.readonly:
        return refused(2, f'{t} is not writable')
    if asks(PyBUF_C_CONTIGUOUS) and not layout.c_contiguous:
        return refused(3, f'{t} is not C-contiguous')
    if asks(PyBUF_F_CONTIGUOUS) and not layout.f_contiguous:
        return refused(3, f'{t} is not Fortran contiguous')
    if asks(PyBUF_ANY_CONTIGUOUS) and not layout.contiguous:
        return refused(3, f'{t} is not contiguous')
    if not asks(PyBUF_STRIDES) and not layout.c_contiguous:
        return refused(4, f'{t} is not C-contiguous and the request has no strides')

    fmt = None
    if asks(PyBUF_FORMAT):
        fmt = layout.format
        if not asks(PyBUF_ND):
            rule = policy.format_without_nd
            if rule == 'never' or (rule == 'unsigned-bytes'
                                   and layout.format not in UNSIGNED_BYTE_FORMATS):
                return refused(5, f'{t} has format {layout.format!r}: a request for the format '
                                  'without the shape cannot be served')
            # Served with the exporter's own format string ('<B' stays '<B'): see
            # docs/semantics.md, rule 5.

    if asks(PyBUF_ND):
        ndim, shape, contents = layout.ndim, layout.shape, layout.tolist()
    else:
        ndim, shape, contents = 1, None, layout.flat_items()
    return Fields(
        buf_offset=layout.offset,
        len=layout.nbytes,
        itemsize=layout.itemsize,
        readonly=layout.readonly,
        ndim=ndim,
        format=fmt,
        shape=shape,
        strides=layout.strides if asks(PyBUF_STRIDES) else None,
        suboffsets=None,
        tolist=contents,
        tobytes=layout.tobytes('C'),
    )


def same_promise(a, b):
    """Two oracle answers promise the same consumer-visible outcome."""
    if isinstance(a, Refused) or isinstance(b, Refused):
        return isinstance(a, Refused) and isinstance(b, Refused)
    return a == b


# --------------------------------------------------------------------------------------------
# The raw consumer: PyObject_GetBuffer through ctypes
# --------------------------------------------------------------------------------------------

class PyBuffer(ctypes.Structure):
    """Py_buffer (Include/pybuffer.h; unchanged since 3.3, in the limited API since 3.11)."""
    _fields_ = [
        ('buf', ctypes.c_void_p),
        ('obj', ctypes.c_void_p),          # a raw address: ctypes must not touch refcounts
        ('len', ctypes.c_ssize_t),
        ('itemsize', ctypes.c_ssize_t),
        ('readonly', ctypes.c_int),
        ('ndim', ctypes.c_int),
        ('format', ctypes.c_char_p),
        ('shape', ctypes.POINTER(ctypes.c_ssize_t)),
        ('strides', ctypes.POINTER(ctypes.c_ssize_t)),
        ('suboffsets', ctypes.POINTER(ctypes.c_ssize_t)),
        ('internal', ctypes.c_void_p),
    ]


_object_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_object_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(PyBuffer), ctypes.c_int]
_object_get_buffer.restype = ctypes.c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(PyBuffer)]
_release_buffer.restype = None
_type_get_slot = ctypes.pythonapi.PyType_GetSlot
_type_get_slot.argtypes = [ctypes.py_object, ctypes.c_int]
_type_get_slot.restype = ctypes.c_void_p
_PY_BF_GETBUFFER = 1  # Include/typeslots.h
# PYFUNCTYPE: the slot runs with the GIL held and a raised exception is re-raised here.
_GetBufferSlot = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.POINTER(PyBuffer),
                                   ctypes.c_int)


def _intercepted_by_python(flags):
    try:
        _testbuffer.ndarray(bytearray(1), getbuf=flags)
    except SystemError:
        return True
    return False


#: Requests that PyObject_GetBuffer refuses itself, before asking the exporter: Python 3.13
#: answers PyBUF_READ and PyBUF_WRITE alone with SystemError (PyErr_BadInternalCall).  They
#: reach the exporter only through its bf_getbuffer slot, which RawView then calls directly.
INTERCEPTED_FLAGS = frozenset(f for f in (0x100, 0x200) if _intercepted_by_python(f))


def _get_buffer(obj, view, flags):
    if flags in INTERCEPTED_FLAGS:
        slot = _type_get_slot(type(obj), _PY_BF_GETBUFFER)
        assert slot, f'{type(obj).__name__} has no bf_getbuffer slot'
        return _GetBufferSlot(slot)(obj, view, flags)
    return _object_get_buffer(obj, view, flags)

#: What view->obj holds before an exporter is asked; never dereferenced.
OBJ_SENTINEL = 0x5E17


class RawView:
    """``with RawView(obj, flags) as view:`` holds one export; ``view`` is the Py_buffer."""

    def __init__(self, obj, flags):
        self.obj = obj
        self.flags = flags
        self.view = PyBuffer()

    def __enter__(self):
        self.view.obj = OBJ_SENTINEL
        obj, self.obj = self.obj, None  # hold no reference of our own while exported
        _get_buffer(obj, ctypes.byref(self.view), self.flags)  # raises on refusal
        return self.view

    def __exit__(self, *exc):
        _release_buffer(ctypes.byref(self.view))
        return False


def raw_refusal(obj, flags):
    """Make a request that must fail; return (exception, view->obj afterwards)."""
    view = PyBuffer()
    view.obj = OBJ_SENTINEL
    try:
        _get_buffer(obj, ctypes.byref(view), flags)
    except Exception as exc:  # noqa: BLE001 - the caller checks the type
        return exc.with_traceback(None), view.obj  # the traceback would hold obj
    _release_buffer(ctypes.byref(view))
    return None, None


def _array(pointer, n):
    return None if not pointer else tuple(pointer[i] for i in range(n))


def memory_address(obj, layout):
    """The start of the exporter's memory, from a PyBUF_FULL_RO export."""
    with RawView(obj, PyBUF_FULL_RO) as view:
        return (view.buf or 0) - layout.offset


def write_contents(obj, layout):
    """Store ``layout.items`` in the memory of a writable exporter, through its strides."""
    with RawView(obj, PyBUF_FULL) as view:
        strides = _array(view.strides, view.ndim) or ()
        for index in c_indices(layout.shape):
            raw = pack_item(layout.format, item_at(layout.items, index))
            address = view.buf + sum(i * s for i, s in zip(index, strides))
            ctypes.memmove(address, raw, len(raw))


def make_buffer(layout, cls=None):
    """A bufferkit Buffer (or ``cls``, a subclass) holding ``layout``: written through an export,
    then frozen if the layout is read-only."""
    import bufferkit
    b = (cls or bufferkit.Buffer)(layout.shape, layout.format, order=layout.order)
    write_contents(b, layout)
    if layout.readonly:
        b.freeze()
    return b


def exports_of(obj, policy):
    return obj.exports if policy.has_exports else None


# --------------------------------------------------------------------------------------------
# verify()
# --------------------------------------------------------------------------------------------

def consumer_outcome(obj, flags):
    """What ``_testbuffer.ndarray(obj, getbuf=flags)`` shows, as one comparable tuple."""
    try:
        nd = _testbuffer.ndarray(obj, getbuf=flags)
    except BufferError:
        return 'refused'
    items = None
    if nd.format and (nd.shape or nd.itemsize == 1 or nd.ndim == 0):
        items = nd.tolist()
    return (nd.format, nd.itemsize, nd.readonly, nd.ndim, nd.shape, nd.strides,
            nd.suboffsets, nd.nbytes, nd.tobytes(), items)


def _check_consumer(obj, flags, exp, policy):
    """Through _testbuffer.ndarray(obj, getbuf=flags)."""
    before = exports_of(obj, policy)
    where = f'{policy.name} {type(obj).__name__} flags={hex(flags)}'
    if flags in INTERCEPTED_FLAGS:
        # Python itself refuses these before the exporter sees them; _check_raw() asks the
        # exporter's slot directly.
        try:
            _testbuffer.ndarray(obj, getbuf=flags)
        except SystemError:
            return
        raise AssertionError(f'{where}: PyObject_GetBuffer was expected to refuse the flags')
    if isinstance(exp, Refused):
        # No pytest.raises: its traceback would keep obj in a reference cycle, and the
        # refcount checks of _check_raw() must not see the cycle collector at work.
        try:
            _testbuffer.ndarray(obj, getbuf=flags)
        except BufferError as exc:
            message = str(exc)
        else:
            raise AssertionError(f'{where}: served, but rule {exp.rule} refuses it')
        exp.check_message(message)
        assert exports_of(obj, policy) == before, f'{where}: a refusal changed exports'
        return

    try:
        nd = _testbuffer.ndarray(obj, getbuf=flags)
    except BufferError as exc:
        raise AssertionError(f'{where}: refused ({exc}), but the oracle serves it') from None
    assert nd.obj is obj, where
    assert nd.nbytes == exp.len, where
    assert nd.itemsize == exp.itemsize, where
    assert nd.readonly is exp.readonly, where
    assert nd.ndim == exp.ndim, where
    assert nd.format == (exp.format or ''), where
    assert nd.shape == (exp.shape or ()), where
    assert nd.strides == (exp.strides or ()), where
    assert nd.suboffsets == (), where
    assert nd.tobytes() == exp.tobytes, where
    if exp.format is not None and (exp.shape is not None or exp.itemsize == 1):
        assert nd.tolist() == exp.tolist, where
        # PyBuffer_GetPointer is the definition of where an item is.
        if exp.shape is not None and exp.len and (exp.strides is not None or not exp.ndim):
            for index in (tuple(0 for _ in exp.shape), tuple(n - 1 for n in exp.shape)):
                want = item_at(exp.tolist, index)
                assert _testbuffer.get_pointer(nd, list(index)) == want, (where, index)
    if policy.has_exports:
        assert exports_of(obj, policy) == before + 1, f'{where}: exports while exported'
    del nd
    if policy.has_exports:
        assert exports_of(obj, policy) == before, f'{where}: exports after release'


def _check_raw(obj, flags, exp, policy, layout):
    """Through PyObject_GetBuffer itself."""
    where = f'{policy.name} {type(obj).__name__} flags={hex(flags)} (raw)'
    refs = sys.getrefcount(obj)
    before = exports_of(obj, policy)
    if isinstance(exp, Refused):
        exc, obj_after = raw_refusal(obj, flags)
        assert isinstance(exc, BufferError), f'{where}: want BufferError, got {exc!r}'
        exp.check_message(str(exc))
        if policy.clears_obj:
            assert obj_after is None, f'{where}: view->obj not NULL after a refusal'
        assert sys.getrefcount(obj) == refs, f'{where}: a refusal changed the refcount'
        assert exports_of(obj, policy) == before, where
        return

    start = memory_address(obj, layout)
    with RawView(obj, flags) as view:
        assert view.obj == id(obj), f'{where}: view->obj is not the exporter'
        assert sys.getrefcount(obj) == refs + 1, f'{where}: view->obj is not a new reference'
        assert (view.buf or 0) == start + exp.buf_offset, f'{where}: buf'
        assert view.len == exp.len, where
        assert view.itemsize == exp.itemsize, where
        assert view.readonly == int(exp.readonly), where
        assert view.ndim == exp.ndim, where
        assert view.format == (None if exp.format is None else exp.format.encode()), where
        # For ndim 0 a consumer reads neither array; their pointers are not part of the rules.
        if exp.ndim or exp.shape is None:
            assert _array(view.shape, view.ndim) == exp.shape, f'{where}: shape'
        if exp.ndim or exp.strides is None:
            assert _array(view.strides, view.ndim) == exp.strides, f'{where}: strides'
        assert not view.suboffsets, f'{where}: suboffsets must be NULL'
        if policy.internal_null:
            assert view.internal is None, f'{where}: internal must be NULL'
        if policy.has_exports:
            assert exports_of(obj, policy) == before + 1, where
        # The bytes really at buf, read as PyBuffer_GetPointer does.
        if exp.strides is None:
            found = ctypes.string_at(view.buf, view.len) if view.len else b''
            assert found == exp.tobytes, f'{where}: memory'
        else:
            for index in c_indices(layout.shape):
                address = view.buf + sum(i * s for i, s in zip(index, exp.strides))
                got = ctypes.string_at(address, exp.itemsize)
                want = pack_item(layout.format, item_at(layout.items, index))
                assert got == want, f'{where}: memory at {index}'
    assert view.obj is None, f'{where}: PyBuffer_Release did not clear obj'
    assert sys.getrefcount(obj) == refs, f'{where}: refcount after release'
    assert exports_of(obj, policy) == before, f'{where}: exports after release'


def verify(obj, flags, layout, policy=BUFFERKIT, *, reference=None,
           reference_policy=TESTBUFFER):
    """Check one request on ``obj`` against the oracle; return the oracle's answer.

    With ``reference``, the same request on the reference exporter is checked against the
    oracle under ``reference_policy`` too, and wherever the two policies promise the same
    outcome, both consumers must see identical fields and contents.
    """
    exp = expected(layout, flags, policy, type(obj).__name__)
    _check_consumer(obj, flags, exp, policy)
    _check_raw(obj, flags, exp, policy, layout)
    if reference is not None:
        ref_exp = verify(reference, flags, layout, reference_policy)
        if same_promise(exp, ref_exp):
            mine, theirs = consumer_outcome(obj, flags), consumer_outcome(reference, flags)
            assert mine == theirs, (
                f'flags={hex(flags)}: {type(obj).__name__} and the reference disagree')
    return exp


def verify_all(obj, layout, policy=BUFFERKIT, requests=REQUESTS, **kwargs):
    """verify() for every request; return how many were served."""
    served = 0
    for flags in requests:
        served += not isinstance(verify(obj, flags, layout, policy, **kwargs), Refused)
    return served


# --------------------------------------------------------------------------------------------
# The reference exporter and the layouts of the matrix
# --------------------------------------------------------------------------------------------

def reference_ndarray(layout):
    """A ``_testbuffer.ndarray`` with the format, shape, order, read-only flag and contents of
    the packed ``layout``."""
    if not layout.packed:
        raise ValueError(f'{layout} is not packed')
    flags = 0 if layout.readonly else ND_WRITABLE
    if layout.ndim == 0:
        return _testbuffer.ndarray(layout.items, shape=[], format=layout.format, flags=flags)
    if layout.order == 'F':
        flags |= ND_FORTRAN
    memory = layout.flat_items(layout.order)
    if not memory:  # ndarray refuses empty initialisers; a 0 dimension never reads the item
        memory = [zero_item(layout.format)]
    return _testbuffer.ndarray(memory, shape=list(layout.shape), format=layout.format,
                               flags=flags)


#: The shapes of test_ndarray_getbuf's structure table that an owning, packed exporter can
#: have (0-d, [1,3,1], [12], [3,4], [2,2]), plus 3-D, single-element and empty dimensions.
SHAPES = ((), (1, 3, 1), (12,), (3, 4), (2, 2), (2, 3, 4), (1,), (4, 1), (1, 4),
          (0,), (3, 0), (0, 3), (2, 0, 3))

#: The formats of the matrix: test_ndarray_getbuf's ('?', 'b', 'B', 'l') and more.
FORMATS = ('?', 'b', 'B', 'h', '<i', '>q', 'd', 'e', 'P', '2h', 'hi', 'l', '<B')


def packed_layouts(shapes=SHAPES, formats=FORMATS, readonly=(False, True)):
    """Every (format, shape, order, readonly) of the matrix as a packed Layout."""
    for fmt in formats:
        for shape in shapes:
            yield from layout_variants(fmt, shape, readonly)


def layout_variants(fmt, shape, readonly=(False, True)):
    """The C and Fortran, writable and read-only layouts of one format and shape."""
    return [Layout.generate(fmt, shape, order=order, readonly=ro)
            for order in ('C', 'F') for ro in readonly]


def format_shape_cases(formats=FORMATS, shapes=SHAPES):
    """pytest params (fmt, shape) with readable ids, one per group of layout_variants()."""
    return [pytest.param(fmt, shape, id=f"{fmt}-{'x'.join(map(str, shape)) or '0d'}")
            for fmt in formats for shape in shapes]


def check_each(cases, check):
    """Run check(case) for every case, then fail once, listing every case that failed.

    Lets one test item cover several layouts without one failure hiding the others."""
    failures = []
    for case in cases:
        try:
            check(case)
        except Exception as exc:  # noqa: BLE001 - reported below, with the case
            failures.append(f'{case!r}:\n    {type(exc).__name__}: {exc}')
    if failures:
        raise AssertionError(f'{len(failures)} of {len(cases)} cases failed:\n'
                             + '\n'.join(failures))


# --------------------------------------------------------------------------------------------
# Buffer and View against memoryview
# --------------------------------------------------------------------------------------------

#: The attributes Buffer and View share with memoryview, value and type.
ATTRS = ('format', 'itemsize', 'ndim', 'shape', 'strides', 'suboffsets', 'nbytes', 'readonly',
         'c_contiguous', 'f_contiguous', 'contiguous')


def raises_message(exc_type, fn, *args, **kwargs):
    """Call fn, which must raise exactly exc_type; return the message."""
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    assert type(info.value) is exc_type, f'{type(info.value).__name__}: {info.value}'
    return str(info.value)


def raised(fn, *args):
    """The type of the exception fn(*args) raises, None if it returns."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - compared by type
        return type(exc)
    return None


def flat(items):
    """A nested tolist() flattened, in order."""
    if isinstance(items, list):
        return [x for sub in items for x in flat(sub)]
    return [items]


def check_like_memoryview(obj, m):
    """What a Buffer or View shares with ``m``, a memoryview of it: every attribute of ATTRS
    with its type, ``len()``, ``tobytes`` in every order (and the same refusals), and
    ``tolist`` with the item types, where memoryview knows the format."""
    for name in ATTRS:
        assert getattr(obj, name) == getattr(m, name), name
        assert type(getattr(obj, name)) is type(getattr(m, name)), name
    if obj.ndim:
        assert len(obj) == len(m) == obj.shape[0]
    else:
        message = raises_message(TypeError, len, obj)
        assert message == f'0-dim {type(obj).__name__} has no len()'
    for order in ('C', 'F', 'A', None):
        assert obj.tobytes(order) == m.tobytes(order), order
        assert obj.tobytes(order=order) == m.tobytes(order=order), order
    for bad in ('X', 'c', '', 1, b'C'):  # refused as memoryview refuses them
        assert raised(obj.tobytes, bad) is raised(m.tobytes, bad) is not None, bad
    try:
        want = m.tolist()
    except NotImplementedError:  # memoryview does not know this format
        return
    assert obj.tolist() == want
    assert [type(x) for x in flat(obj.tolist())] == [type(x) for x in flat(want)]


# --------------------------------------------------------------------------------------------
# What differs between interpreters
# --------------------------------------------------------------------------------------------


def refcounts(objs):
    """``sys.getrefcount`` of each object in the list ``objs``, measured the same way wherever
    the call stands.

    Since CPython 3.14 the compiler pushes a local variable as a borrowed reference
    (``LOAD_FAST_BORROW``, gh-130704) where it can prove the frame outlives the use, so
    ``sys.getrefcount(local)`` counts its own argument or not depending on the bytecode around
    the call: after a ``try``/``except`` the load is a plain ``LOAD_FAST`` again, and the same
    object in the same state reads one higher. An item read out of a list is always a new
    reference, so comparing two ``refcounts(watched)`` compares the objects' real counts (the
    list adds one to each, the same both times).
    """
    return tuple(sys.getrefcount(objs[i]) for i in range(len(objs)))


def type_name(cls):
    """A type as CPython's ``%T`` format names it: ``module.qualname``, the bare qualname for
    builtins and ``__main__``."""
    if cls.__module__ in ('builtins', '__main__'):
        return cls.__qualname__
    return f'{cls.__module__}.{cls.__qualname__}'


def non_memoryview_message(exporter, returned):
    """The TypeError message when ``exporter``'s ``__buffer__`` returned ``returned``, which is
    not a memoryview.

    On 3.12+ CPython calls ``__buffer__`` itself; on 3.9-3.11 bufferkit's slot does and says what
    3.12-3.14 say. CPython 3.15 names both types, as it does for every special method that
    returns the wrong type (gh-130821, "Add type information to wrong type error messages").
    """
    if sys.version_info >= (3, 15):
        return (f'{type_name(type(exporter))}.__buffer__() must return a memoryview, '
                f'not {type_name(type(returned))}')
    return '__buffer__ returned non-memoryview object'


def _struct_has_complex():
    try:
        struct.calcsize('Zd')
    except struct.error:
        return False
    return True


#: Whether this interpreter's ``struct`` knows the complex codes ``'Zf'``/``'Zd'`` (CPython
#: 3.15+): numpy's complex dtypes and ``'c8'``/``'c16'`` then have a struct format.
STRUCT_HAS_COMPLEX = _struct_has_complex()
