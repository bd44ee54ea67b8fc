"""The request oracle: what a buffer request must give, from docs/semantics.md alone.

The model is ``verify_getbuf`` of CPython's ``Lib/test/test_buffer.py``: from what an exporter
holds (a ``Layout``) and how its kind applies the rules (a ``Policy``: bufferkit, or one of the
standard library's exporters), ``expected(layout, flags, policy)`` says whether a request is
refused (``Refused``: the rule, and the message where the page fixes it) or served (``Fields``:
every ``Py_buffer`` field a consumer must see).  It is written from the page and proven on
CPython's own exporters (``test_oracle.py``); it never reads bufferkit's code or asks a bufferkit
object for an answer.

Two test suites take their expectations from here and from nowhere else:

* the Python suite, through ``verify()`` of ``conftest.py``, which imports this module;
* the C request tests of ``c_tests/`` (the exporters they drive are described in
  ``c_tests/subjects.py``): ``python oracle.py c-table`` prints one row per exporter, path and
  request, which ``scripts/ctest.sh`` writes into the build directory for the C harness to read.

``python oracle.py semantics-table`` prints the request table of docs/semantics.md as the
oracle computes it (``test_semantics_table.py`` holds the page to it).

This module needs neither pytest nor bufferkit: ``_testbuffer`` (for the constants and for
probing the interpreter) and the standard library.
"""

import argparse
import importlib.util
import itertools
import os
import random
import struct
import sys
from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple

import _testbuffer
from _testbuffer import (
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
# What the interpreter decides before an exporter is asked
# --------------------------------------------------------------------------------------------

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



# --------------------------------------------------------------------------------------------
# Layouts stated by their fields
# --------------------------------------------------------------------------------------------

def layout_of(format, shape, *, strides=None, order='C', readonly=False):
    """The Layout of an exporter given by its format, shape, strides (default: packed in
    ``order``) and read-only flag.  Its items are zero: the request rules never read them."""
    shape = tuple(shape)
    items = nest([zero_item(format)] * product(shape), shape)
    return Layout(format, shape, items, order=order, strides=strides, readonly=readonly)


def cpython_layout(obj):
    """The Layout of one of CPython's own exporters, as its memoryview describes it (never
    used on a bufferkit object: that would take the answer from the code under test)."""
    with memoryview(obj) as m:
        return layout_of(m.format, m.shape, strides=m.strides, readonly=m.readonly)


#: The policies by the short names c_tests/subjects.py uses.
POLICIES = {'bufferkit': BUFFERKIT, 'testbuffer': TESTBUFFER, 'memoryview': MEMORYVIEW,
            'fillinfo': FILLINFO, 'array': ARRAY}


# --------------------------------------------------------------------------------------------
# The table of the C request tests
# --------------------------------------------------------------------------------------------
#
# One line per fact, fields separated by tabs (c_tests/README.md, "The expectation table"):
#
#   subject  TEST  LABEL  policy=NAME  exports=0|1
#   served   TEST  LABEL  PATH  FLAGS  len=N itemsize=N readonly=0|1 ndim=N format=F|NULL
#                                      shape=A,B|NULL strides=A,B|NULL suboffsets=NULL
#                                      internal=NULL|any            (one tab-separated field each)
#   refused  TEST  LABEL  PATH  FLAGS  EXCEPTION  obj=NULL|any  exact|prefix|any  MESSAGE
#
# PATH is "call" (PyObject_GetBuffer) or "slot" (the type's bf_getbuffer, called directly);
# FLAGS is the request as 32 unsigned bits in hex (-1 is 0xffffffff).  Arrays are written in
# the C API's form: a 0-d layout's shape and strides are NULL (Doc/c-api/buffer.rst, ndim).

C_TABLE_VERSION = 'bufferkit request table 1'


def c_flags(flags):
    return f'0x{flags & 0xFFFFFFFF:x}'


def _c_dims(dims):
    return 'NULL' if not dims else ','.join(str(d) for d in dims)


def c_outcome(exp, policy, path, flags):
    """The tab-separated kind and fields of one row: what ``exp`` (an answer of ``expected``)
    means to a C consumer taking the request along ``path``."""
    if path == 'call' and flags in INTERCEPTED_FLAGS:
        # The interpreter answers before the exporter is asked: the view is not touched.
        return ['refused', 'SystemError', 'obj=any', 'any', '']
    if isinstance(exp, Refused):
        if exp.message is not None:
            check, text = 'exact', exp.message
        elif exp.prefix is not None:
            check, text = 'prefix', exp.prefix
        else:
            check, text = 'any', ''
        return ['refused', 'BufferError', 'obj=NULL' if policy.clears_obj else 'obj=any',
                check, text]
    return ['served', f'len={exp.len}', f'itemsize={exp.itemsize}',
            f'readonly={int(exp.readonly)}', f'ndim={exp.ndim}',
            f"format={'NULL' if exp.format is None else exp.format}",
            f'shape={_c_dims(exp.shape)}', f'strides={_c_dims(exp.strides)}',
            'suboffsets=NULL', 'internal=NULL' if policy.internal_null else 'internal=any']


def load_subjects(path=None):
    """c_tests/subjects.py (or ``path``) as a module."""
    if path is None:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(os.path.dirname(here), 'c_tests', 'subjects.py')
    spec = importlib.util.spec_from_file_location('subjects', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def c_table(subjects):
    """Every line of the C request tests' table: for each test of ``subjects.TESTS``, each
    exporter it drives, each path and each request of its plan."""
    requests = {'standard': REQUESTS, 'malformed': subjects.MALFORMED_REQUESTS}
    intercepted = ', '.join(hex(f) for f in sorted(INTERCEPTED_FLAGS)) or 'none'
    yield f'# {C_TABLE_VERSION}: written by python_tests/oracle.py c-table'
    yield f'# Python {sys.version.split()[0]}; refused by PyObject_GetBuffer itself: {intercepted}'
    for test, plan in subjects.TESTS.items():
        for label, policy_name, type_name, layout in subjects.described(test, cpython_layout,
                                                                        layout_of):
            policy = POLICIES[policy_name]
            yield '\t'.join(['subject', test, label, f'policy={policy_name}',
                             f'exports={int(policy.has_exports)}'])
            seen = set()
            for path, which in plan:
                for flags in requests[which]:
                    if (path, flags) in seen:
                        continue
                    seen.add((path, flags))
                    exp = expected(layout, flags, policy, type_name)
                    kind, *fields = c_outcome(exp, policy, path, flags)
                    yield '\t'.join([kind, test, label, path, c_flags(flags), *fields])


# --------------------------------------------------------------------------------------------
# The request table of docs/semantics.md
# --------------------------------------------------------------------------------------------

_REQUEST_NAMES = (
    ('PyBUF_INDIRECT', PyBUF_INDIRECT), ('PyBUF_STRIDES', PyBUF_STRIDES), ('PyBUF_ND', PyBUF_ND),
    ('PyBUF_SIMPLE', PyBUF_SIMPLE), ('PyBUF_C_CONTIGUOUS', PyBUF_C_CONTIGUOUS),
    ('PyBUF_F_CONTIGUOUS', PyBUF_F_CONTIGUOUS), ('PyBUF_ANY_CONTIGUOUS', PyBUF_ANY_CONTIGUOUS),
    ('PyBUF_FULL', PyBUF_FULL), ('PyBUF_FULL_RO', PyBUF_FULL_RO),
    ('PyBUF_RECORDS', PyBUF_RECORDS), ('PyBUF_RECORDS_RO', PyBUF_RECORDS_RO),
    ('PyBUF_STRIDED', PyBUF_STRIDED), ('PyBUF_STRIDED_RO', PyBUF_STRIDED_RO),
    ('PyBUF_CONTIG', PyBUF_CONTIG), ('PyBUF_CONTIG_RO', PyBUF_CONTIG_RO),
)
_EXTRA_NAMES = {0: '', PyBUF_WRITABLE: ' + WRITABLE', PyBUF_FORMAT: ' + FORMAT',
                PyBUF_WRITABLE | PyBUF_FORMAT: ' + WRITABLE + FORMAT'}

#: The columns of the page's table: one bufferkit exporter of each kind that a rule tells
#: apart (read-only, C/Fortran/no contiguity, unsigned bytes, 0-d).
SEMANTICS_COLUMNS = (
    ("C 'i' (3, 4)", layout_of('i', (3, 4))),
    ("C 'i' (3, 4) read-only", layout_of('i', (3, 4), readonly=True)),
    ("F 'i' (3, 4)", layout_of('i', (3, 4), order='F')),
    ("'i' (3, 2) strides (16, 8)", layout_of('i', (3, 2), strides=(16, 8))),
    ("'B' (12,)", layout_of('B', (12,))),
    ("'d' 0-d", layout_of('d', ())),
)

SEMANTICS_BEGIN = '<!-- begin: python python_tests/oracle.py semantics-table -->'
SEMANTICS_END = '<!-- end: python python_tests/oracle.py semantics-table -->'


def _semantics_cell(exp):
    if isinstance(exp, Refused):
        return f'refused ({exp.rule})'
    fields = [name for name, value in (('shape', exp.shape), ('strides', exp.strides),
                                       ('format', exp.format)) if value is not None]
    return ', '.join(fields) if fields else 'bytes'


def semantics_table():
    """The request table of docs/semantics.md: every standard request (also with WRITABLE,
    FORMAT and both) against one Buffer of each kind, as the oracle answers for bufferkit."""
    standard = {}
    for name, value in _REQUEST_NAMES:  # PyBUF_STRIDES and PyBUF_STRIDED_RO are one value
        standard[value] = f'{standard[value]} (= {name})' if value in standard else name
    names = {}
    for req in STANDARD_REQUESTS:
        for extra in EXTRA_BITS:
            names.setdefault(req | extra, standard[req] + _EXTRA_NAMES[extra])
    yield SEMANTICS_BEGIN
    yield '| request | flags | ' + ' | '.join(label for label, _ in SEMANTICS_COLUMNS) + ' |'
    yield '|---|---|' + '---|' * len(SEMANTICS_COLUMNS)
    for flags in REQUESTS:
        cells = [_semantics_cell(expected(layout, flags, BUFFERKIT))
                 for _, layout in SEMANTICS_COLUMNS]
        yield f'| {names[flags]} | {flags:#x} | ' + ' | '.join(cells) + ' |'
    yield SEMANTICS_END


SEMANTICS_DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             'docs', 'semantics.md')


def semantics_doc_table(text):
    """The generated block of docs/semantics.md (markers included), or None."""
    begin, end = text.find(SEMANTICS_BEGIN), text.find(SEMANTICS_END)
    if begin < 0 or end < begin:
        return None
    return text[begin:end + len(SEMANTICS_END)]


def write_semantics_table():
    with open(SEMANTICS_DOC, encoding='utf-8') as f:
        text = f.read()
    old = semantics_doc_table(text)
    if old is None:
        raise SystemExit(f'{SEMANTICS_DOC} has no {SEMANTICS_BEGIN} ... {SEMANTICS_END} block')
    with open(SEMANTICS_DOC, 'w', encoding='utf-8') as f:
        f.write(text.replace(old, '\n'.join(semantics_table())))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description='Print a table of the request oracle.')
    commands = parser.add_subparsers(dest='command', required=True)
    c = commands.add_parser('c-table', help="the C request tests' expectation table")
    c.add_argument('--subjects', help='the exporters (default: c_tests/subjects.py)')
    m = commands.add_parser('semantics-table',
                            help='the request table of docs/semantics.md (Markdown)')
    m.add_argument('--write', action='store_true',
                   help='replace the table in docs/semantics.md instead of printing it')
    args = parser.parse_args(argv)
    if args.command == 'c-table':
        lines = c_table(load_subjects(args.subjects))
    elif args.write:
        write_semantics_table()
        return
    else:
        lines = semantics_table()
    for line in lines:
        print(line)


if __name__ == '__main__':
    main()
