"""The exporters the C request tests drive, described without asking them anything.

Both sides of the C request tests read this file:

* the C harness (``c_tests/requests.c``, ``c_tests/views.c``) builds each exporter from it, in
  the embedded interpreter (``c_tests`` is on its ``sys.path``), and checks the object's
  attributes against the facts stated here;
* the oracle (``python_tests/oracle.py c-table``) turns the same facts into a ``Layout`` and
  writes the expected outcome of every request the harness sends to each exporter into the
  table the harness compares with.

So the facts here are inputs stated by hand (how a Buffer was constructed, what shape and
strides a View was built to have) or read from CPython's own exporters; never an attribute of
a bufferkit object.  Importing this module needs neither bufferkit nor a build: the Buffers
and Views are made only when the harness calls ``buffer_cases``/``view_cases`` (the Python of
``c_tests/requests.c`` and ``c_tests/views.c``).
"""

from collections import namedtuple

# --------------------------------------------------------------------------------------------
# What each test sends
# --------------------------------------------------------------------------------------------

#: The malformed requests of the C tests (rule 1 of docs/semantics.md), in the order of
#: INVALID_REQUESTS in c_tests/requests.c: PyBUF_WRITE, PyBUF_READ, the unused bit 0x2, the
#: contiguity bit alone, the strides bit without PyBUF_ND, 0x400, -1 (every bit), INT_MAX,
#: 0x20|PyBUF_WRITE, the F- and ANY-contiguity bits alone, PyBUF_INDIRECT and
#: PyBUF_C_CONTIGUOUS without PyBUF_ND, PyBUF_WRITABLE|0x2, PyBUF_FULL|PyBUF_WRITE.
MALFORMED_REQUESTS = (0x200, 0x100, 0x2, 0x20, 0x10, 0x400, -1, 0x7FFFFFFF, 0x220, 0x40, 0x80,
                      0x110, 0x30, 0x3, 0x31D)

#: Each request test: (path, request set) in the order it sends them.  "call" is
#: PyObject_GetBuffer, "slot" the type's bf_getbuffer called directly; "standard" is the
#: oracle's REQUESTS (the 15 standard requests, each also with PyBUF_WRITABLE, PyBUF_FORMAT and
#: both), "malformed" MALFORMED_REQUESTS above.
_INVALID_THEN_STANDARD = (('call', 'malformed'), ('slot', 'malformed'), ('call', 'standard'))
TESTS = {
    'buffer_request_matrix': (('call', 'standard'),),
    'buffer_invalid_flags': _INVALID_THEN_STANDARD,
    'reference_exporters': (('call', 'standard'), ('call', 'malformed')),
    'view_request_matrix': (('call', 'standard'),),
    'view_invalid_flags': _INVALID_THEN_STANDARD,
}

# --------------------------------------------------------------------------------------------
# Buffers: (class, shape, format, order), each built writable and read-only
# --------------------------------------------------------------------------------------------

def _matrix_specs():
    specs = [('Buffer', 4096, 'B', 'C')]
    for fmt in ('b', 'h', '<i', 'd', '?', 'e', '2h', 'hi', '<B', '=B'):
        specs.append(('Buffer', (7,), fmt, 'C'))
    for fmt in ('i', 'd'):
        for order in ('C', 'F'):
            specs.append(('Buffer', (3, 4), fmt, order))
            specs.append(('Buffer', (2, 3, 4), fmt, order))
    specs += [
        ('Buffer', (), 'd', 'C'),
        ('Buffer', (0,), 'B', 'C'),
        ('Buffer', (3, 0), 'i', 'C'),
        ('Buffer', (3, 0), 'i', 'F'),
        ('Buffer', (1, 5), 'h', 'F'),
        ('SubBuffer', (3, 4), 'i', 'F'),
        ('SubBuffer', (5,), '<i', 'C'),
    ]
    return specs


BUFFER_SPECS = {
    'buffer_request_matrix': _matrix_specs(),
    'buffer_invalid_flags': [
        ('Buffer', 16, 'B', 'C'),
        ('Buffer', (3, 4), 'i', 'F'),
        ('Buffer', (), 'd', 'C'),
        ('SubBuffer', (2, 2), 'h', 'C'),
    ],
}


def buffer_subjects(test):
    """(label, class name, shape as passed, shape tuple, format, order, readonly) of every
    Buffer of ``test``; the label is the constructor call."""
    for cls, shape, fmt, order in BUFFER_SPECS[test]:
        for readonly in (False, True):
            label = '%s(%r, %r, order=%r, readonly=%r)' % (cls, shape, fmt, order, readonly)
            dims = (shape,) if isinstance(shape, int) else tuple(shape)
            yield label, cls, shape, dims, fmt, order, readonly


# --------------------------------------------------------------------------------------------
# The standard library's exporters: (expression, policy)
# --------------------------------------------------------------------------------------------

REFERENCE_SETUP = """\
import array
from _testbuffer import ndarray, ND_WRITABLE, ND_FORTRAN
items = list(range(24))
"""

REFERENCES = [
    ("bytearray(b'bufferkit reference exporter')", 'fillinfo'),
    ('bytearray()', 'fillinfo'),
    ('bytes(range(32))', 'fillinfo'),
    ("array.array('d', [0.5, 1.5, 2.5])", 'array'),
    ("array.array('B', range(10))", 'array'),
    ("array.array('h')", 'array'),
    ("ndarray(items, shape=[24], format='B', flags=ND_WRITABLE)", 'testbuffer'),
    ("ndarray(items, shape=[24], format='B')", 'testbuffer'),
    ("ndarray(items, shape=[4, 6], format='i', flags=ND_WRITABLE)", 'testbuffer'),
    ("ndarray(items, shape=[4, 6], format='i', flags=ND_WRITABLE|ND_FORTRAN)", 'testbuffer'),
    ("ndarray(items, shape=[2, 3, 4], format='d')", 'testbuffer'),
    ("ndarray(items, shape=[2, 3, 4], format='d', flags=ND_FORTRAN)", 'testbuffer'),
    ("ndarray(items, shape=[12], strides=[8], format='i', flags=ND_WRITABLE)", 'testbuffer'),
    ("ndarray(items, shape=[4, 6], format='i', flags=ND_WRITABLE)[::2, ::-1]", 'testbuffer'),
    ("ndarray(items, shape=[1, 6], format='h', flags=ND_FORTRAN)", 'testbuffer'),
    ("ndarray(1.5, shape=[], format='d', flags=ND_WRITABLE)", 'testbuffer'),
    ("ndarray(items, shape=[24], format='i', flags=ND_WRITABLE)[3:3]", 'testbuffer'),
    ("ndarray(items, shape=[4, 6], format='i')[:, 2:2]", 'testbuffer'),
    ("ndarray([(1, 2)] * 3, shape=[3], format='hi')", 'testbuffer'),
    ("ndarray(items, shape=[24], format='<B')", 'testbuffer'),
]


def reference_cases():
    """(expression, object, policy) of every reference exporter, each object made anew."""
    ns = {}
    exec(REFERENCE_SETUP, ns)
    return [(expr, eval(expr, ns), policy) for expr, policy in REFERENCES]


# --------------------------------------------------------------------------------------------
# Views: the roots, then each View with what it must be
# --------------------------------------------------------------------------------------------
#
# The roots' code runs in the namespace that VIEW_SETUP_PY of c_tests/views.c prepares
# (filled, mem_of, items_at, ndarray, struct, ...).  ``items`` is an expression evaluated there
# too: the View's tolist(), computed without bufferkit.View (items_at() over the root's bytes,
# or the root's own tolist()).  ``offset`` None: not pinned (an empty slice has no element 0).

ViewCase = namedtuple('ViewCase', 'expr root shape strides format readonly offset items')

VIEW_ROOTS = {
    'view_request_matrix': """\
ba = bytearray(range(48))
fb_c = filled((3, 4), 'i')
fb_f = filled((3, 4), 'i', 'F')
fb_ro = filled((2, 5), 'h', readonly=True)
fb_sub = filled((2, 3), 'h')
by = bytes(range(100, 132))
ba64 = bytearray(range(64))
ba16 = bytearray(range(16))
ba8 = bytearray(struct.pack('d', 2.5))
ba24 = bytearray(24)
nd_nc = ndarray(list(range(12)), shape=[3, 4], format='B')[::2, ::-1]
nd_c = ndarray(list(range(12)), shape=[3, 4], format='i', flags=ND_WRITABLE)
nd_f = ndarray(list(range(12)), shape=[3, 4], format='i', flags=ND_WRITABLE | ND_FORTRAN)
nd_s = ndarray(list(range(24)), shape=[12], strides=[8], format='i', flags=ND_WRITABLE)
nd_neg = ndarray(list(range(12)), shape=[3, 4], format='i', flags=ND_WRITABLE)[::-1, 1:3]
nd_0 = ndarray(1.5, shape=[], format='d', flags=ND_WRITABLE)
ba_m = bytearray(range(20))
mv_s = memoryview(ba_m)[::2]
M = {name: mem_of(obj) for name, obj in [('ba', ba), ('fb_c', fb_c), ('fb_f', fb_f),
     ('fb_ro', fb_ro), ('fb_sub', fb_sub), ('by', by), ('ba64', ba64), ('ba16', ba16),
     ('ba8', ba8), ('ba24', ba24)]}
def at(root, fmt, shape, strides, offset):
    return items_at(M[root], fmt, shape, strides, offset)
""",
    'view_invalid_flags': """\
ba = bytearray(range(16))
fb_f = filled((3, 4), 'i', 'F')
ba8 = bytearray(8)
fb_sub = filled((2, 2), 'h')
""",
}

VIEW_CASES = {
    'view_request_matrix': [
    ViewCase('View(ba)', 'ba', (48,), (1,), 'B', False, 0, 'list(range(48))'),
    ViewCase('View(ba)[2:10:3]', 'ba', (3,), (3,), 'B', False, 2, '[2, 5, 8]'),
    ViewCase('View(ba)[::-1]', 'ba', (48,), (-1,), 'B', False, 47, 'list(range(47, -1, -1))'),
    ViewCase('View(ba)[40:8:-4]', 'ba', (8,), (-4,), 'B', False, 40, 'list(range(40, 8, -4))'),
    ViewCase('View(ba, offset=40)', 'ba', (8,), (1,), 'B', False, 40, 'list(range(40, 48))'),
    ViewCase('View(ba, offset=48)', 'ba', (0,), (1,), 'B', False, 48, '[]'),
    ViewCase('View(ba)[5:5]', 'ba', (0,), (1,), 'B', False, None, '[]'),
    ViewCase("View(ba, format='<h', shape=(2, 2), strides=(-2, 8), offset=2)",
             'ba', (2, 2), (-2, 8), '<h', False, 2,
             "at('ba', '<h', (2, 2), (-2, 8), 2)"),
    ViewCase("View(ba, format='<B')", 'ba', (48,), (1,), '<B', False, 0, 'list(range(48))'),
    ViewCase('View(ba, readonly=True)', 'ba', (48,), (1,), 'B', True, 0, 'list(range(48))'),
    ViewCase('View(View(ba)[4:20:2])', 'ba', (8,), (2,), 'B', False, 4, 'list(range(4, 20, 2))'),
    ViewCase("View(View(ba)[8:24], format='<h', shape=(2, 3), offset=2)",
             'ba', (2, 3), (6, 2), '<h', False, 10,
             "at('ba', '<h', (2, 3), (6, 2), 10)"),
    ViewCase('View(fb_c)', 'fb_c', (3, 4), (16, 4), 'i', False, 0, 'memoryview(fb_c).tolist()'),
    ViewCase('View(fb_f)', 'fb_f', (3, 4), (4, 12), 'i', False, 0, 'memoryview(fb_f).tolist()'),
    ViewCase('View(fb_c)[::2, 1:]', 'fb_c', (2, 3), (32, 4), 'i', False, 4,
             "at('fb_c', 'i', (2, 3), (32, 4), 4)"),
    ViewCase('View(fb_f)[:, ::-1]', 'fb_f', (3, 4), (4, -12), 'i', False, 36,
             "at('fb_f', 'i', (3, 4), (4, -12), 36)"),
    ViewCase('View(fb_c, readonly=True)[1:]', 'fb_c', (2, 4), (16, 4), 'i', True, 16,
             'memoryview(fb_c).tolist()[1:]'),
    ViewCase("View(fb_c, format='B')", 'fb_c', (48,), (1,), 'B', False, 0, "list(M['fb_c'])"),
    ViewCase('View(fb_ro)', 'fb_ro', (2, 5), (10, 2), 'h', True, 0, 'memoryview(fb_ro).tolist()'),
    ViewCase('SubView(fb_sub)', 'fb_sub', (2, 3), (6, 2), 'h', False, 0,
             'memoryview(fb_sub).tolist()'),
    ViewCase("SubView(ba, format='<i', shape=(3, 2), strides=(4, 12))",
             'ba', (3, 2), (4, 12), '<i', False, 0,
             "at('ba', '<i', (3, 2), (4, 12), 0)"),
    ViewCase('View(by)', 'by', (32,), (1,), 'B', True, 0, 'list(by)'),
    ViewCase('View(by)[::4]', 'by', (8,), (4,), 'B', True, 0, 'list(by[::4])'),
    ViewCase("View(ba64, format='<i', shape=(2, 3), strides=(24, 4), offset=4)",
             'ba64', (2, 3), (24, 4), '<i', False, 4,
             "at('ba64', '<i', (2, 3), (24, 4), 4)"),
    ViewCase("View(ba16, shape=(4,), strides=(-4,), offset=12, format='i')",
             'ba16', (4,), (-4,), 'i', False, 12,
             "at('ba16', 'i', (4,), (-4,), 12)"),
    ViewCase("View(ba16, format='i', shape=(3,), strides=(0,), offset=4)",
             'ba16', (3,), (0,), 'i', False, 4,
             "at('ba16', 'i', (3,), (0,), 4)"),
    ViewCase("View(ba8, format='d', shape=())", 'ba8', (), (), 'd', False, 0, '2.5'),
    ViewCase("View(ba24, format='i', shape=(0, 3))", 'ba24', (0, 3), (12, 4), 'i', False, 0, '[]'),
    ViewCase('View(nd_nc)', 'nd_nc', (2, 4), (8, -1), 'B', True, 3, 'nd_nc.tolist()'),
    ViewCase('View(nd_nc)[::-1, 1:3]', 'nd_nc', (2, 2), (-8, -1), 'B', True, 10,
             'nd_nc[::-1, 1:3].tolist()'),
    ViewCase("View(View(nd_nc)[0:1, ::-1], format='<i', shape=())", 'nd_nc', (), (), '<i', True, 0,
             "struct.unpack('<i', bytes([0, 1, 2, 3]))[0]"),
    ViewCase('View(nd_c)', 'nd_c', (3, 4), (16, 4), 'i', False, 0, 'nd_c.tolist()'),
    ViewCase('View(nd_f)', 'nd_f', (3, 4), (4, 12), 'i', False, 0, 'nd_f.tolist()'),
    ViewCase('View(nd_s)', 'nd_s', (12,), (8,), 'i', False, 0, 'nd_s.tolist()'),
    ViewCase('View(nd_neg)', 'nd_neg', (3, 2), (-16, 4), 'i', False, 32, 'nd_neg.tolist()'),
    ViewCase('View(nd_0)', 'nd_0', (), (), 'd', False, 0, '1.5'),
    ViewCase('View(mv_s)', 'mv_s', (10,), (2,), 'B', False, 0, 'mv_s.tolist()'),
    ],
    'view_invalid_flags': [
    ViewCase('View(ba)', 'ba', (16,), (1,), 'B', False, 0, 'list(range(16))'),
    ViewCase('View(fb_f)', 'fb_f', (3, 4), (4, 12), 'i', False, 0, 'memoryview(fb_f).tolist()'),
    ViewCase("View(ba8, format='d', shape=())", 'ba8', (), (), 'd', False, 0, '0.0'),
    ViewCase('SubView(fb_sub)', 'fb_sub', (2, 2), (4, 2), 'h', False, 0,
             'memoryview(fb_sub).tolist()'),
    ViewCase('View(ba)[::-3]', 'ba', (6,), (-3,), 'B', False, 15, 'list(range(15, -1, -3))'),
    ViewCase('View(ba, readonly=True)', 'ba', (16,), (1,), 'B', True, 0, 'list(range(16))'),
    ],
}


# --------------------------------------------------------------------------------------------
# For the oracle
# --------------------------------------------------------------------------------------------

def described(test, cpython_layout, layout_of):
    """(label, policy name, type name, layout) of every exporter ``test`` drives, in order.

    ``layout_of(format, shape, strides=, order=, readonly=)`` makes a layout from stated facts,
    ``cpython_layout(obj)`` reads one from a CPython exporter (both are the oracle's)."""
    if test in BUFFER_SPECS:
        for label, cls, _, dims, fmt, order, readonly in buffer_subjects(test):
            yield label, 'bufferkit', cls, layout_of(fmt, dims, order=order, readonly=readonly)
    elif test in VIEW_CASES:
        for case in VIEW_CASES[test]:
            type_name = case.expr.split('(', 1)[0]  # View or SubView
            yield case.expr, 'bufferkit', type_name, layout_of(
                case.format, case.shape, strides=case.strides, readonly=case.readonly)
    elif test == 'reference_exporters':
        for expr, obj, policy in reference_cases():
            yield expr, policy, type(obj).__name__, cpython_layout(obj)
    else:
        raise KeyError(f'no exporters described for {test}')
