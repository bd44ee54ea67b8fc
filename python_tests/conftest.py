"""One verify() for every bufferkit exporter, judged by the oracle of ``oracle.py``.

The model is CPython's ``Lib/test/test_buffer.py``: ``verify_getbuf`` decides from the exporter
and the request whether the request must be refused and, if not, which fields the consumer must
see; ``verify`` then compares what a consumer really got, field by field.  Here the two halves
are:

* ``expected(layout, flags, policy)`` of ``oracle.py``: the oracle.  ``layout`` describes what
  the exporter holds (format, shape, strides, where element (0, ..., 0) lies, read-only,
  logical contents); ``policy`` names the few documented ways exporters differ
  (docs/semantics.md: malformed flags, FORMAT without ND for unsigned bytes, ...).  It returns a
  ``Refused`` or a ``Fields``.  The C request tests take their expectations from the same
  function (``python oracle.py c-table``); this file re-exports the oracle's names, so tests
  import everything from ``conftest``.
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
import struct
import sys

import pytest

import _testbuffer
from _testbuffer import ND_FORTRAN, ND_WRITABLE, PyBUF_FULL, PyBUF_FULL_RO

from oracle import (  # noqa: F401 - re-exported for the test files
    ARRAY,
    BUFFERKIT,
    EXTRA_BITS,
    FILLINFO,
    INTERCEPTED_FLAGS,
    KNOWN_BITS,
    MALFORMED_REQUESTS,
    MEMORYVIEW,
    REQUESTS,
    STANDARD_REQUESTS,
    TESTBUFFER,
    UNSIGNED_BYTE_FORMATS,
    Fields,
    Layout,
    Policy,
    Refused,
    c_indices,
    contiguous_strides,
    expected,
    f_indices,
    is_contiguous,
    item_at,
    malformation,
    nest,
    pack_item,
    product,
    random_items,
    same_promise,
    unpack_item,
    zero_item,
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


def in_use(verb, n):
    """The refusal of close()/freeze() while n exports are alive, with what ends them."""
    if n == 1:
        return (f'cannot {verb}: 1 exported buffer is still in use; release it first: call '
                'memoryview.release() or leave its with block, or del the numpy array or '
                'other object that holds it')
    return (f'cannot {verb}: {n} exported buffers are still in use; release them first: call '
            'memoryview.release() or leave their with blocks, or del the numpy arrays or '
            'other objects that hold them')


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
