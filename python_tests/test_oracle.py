"""The oracle of conftest.py, proven on CPython's own exporters before it judges bufferkit.

Three kinds of proof: the oracle says what docs/semantics.md says, word for word where the page
gives words; verify() passes on _testbuffer.ndarray, memoryview, bytes, bytearray and array over
test_ndarray_getbuf's structure table and over every layout of the Buffer matrix; and verify()
fails when the exporter does not match its description.
"""

import array
from dataclasses import replace

import pytest

import _testbuffer
from _testbuffer import (
    ND_FORTRAN, ND_WRITABLE, PyBUF_ANY_CONTIGUOUS, PyBUF_C_CONTIGUOUS, PyBUF_F_CONTIGUOUS,
    PyBUF_FORMAT, PyBUF_FULL, PyBUF_FULL_RO, PyBUF_ND, PyBUF_SIMPLE, PyBUF_STRIDES,
    PyBUF_WRITABLE,
)

from conftest import (
    ARRAY, BUFFERKIT, EXTRA_BITS, FILLINFO, KNOWN_BITS, MALFORMED_REQUESTS, MEMORYVIEW,
    REQUESTS, STANDARD_REQUESTS, TESTBUFFER, Fields, Layout, Refused, check_each, expected,
    format_shape_cases, layout_variants, malformation, reference_ndarray, verify, verify_all,
)

# --------------------------------------------------------------------------------------------
# The oracle says what the page says
# --------------------------------------------------------------------------------------------


def test_known_bits_are_the_bits_of_the_standard_requests():
    bits = 0
    for req in STANDARD_REQUESTS:
        for extra in EXTRA_BITS:
            bits |= req | extra
    assert bits == KNOWN_BITS == 0x1FD
    assert len(REQUESTS) == 28
    assert all(malformation(flags) is None for flags in REQUESTS)
    assert all(malformation(flags) is not None for flags in MALFORMED_REQUESTS)


@pytest.mark.parametrize('flags, message', [
    (0x200, 'invalid buffer request flags 0x200: unknown bits 0x200'),
    (0x100, 'invalid buffer request flags 0x100: 0x100 needs PyBUF_STRIDES'),
    (0x2, 'invalid buffer request flags 0x2: unknown bits 0x2'),
    (0x400, 'invalid buffer request flags 0x400: unknown bits 0x400'),
    (0x20, 'invalid buffer request flags 0x20: 0x20 needs PyBUF_STRIDES'),
    (0x108, 'invalid buffer request flags 0x108: 0x100 needs PyBUF_STRIDES'),
    (0x11f, 'invalid buffer request flags 0x11f: unknown bits 0x2'),
])
def test_page_messages_for_malformed_requests(flags, message):
    assert malformation(flags) == Refused(1, message=message)


@pytest.mark.parametrize('flags', [0x10, 0x14, 0x30, 0x120, 0x300])
def test_undocumented_malformed_messages_fix_only_the_prefix(flags):
    got = malformation(flags)
    assert got.message is None
    assert got.prefix == f'invalid buffer request flags {hex(flags)}: '


def test_page_messages_for_refused_requests():
    ro = Layout.generate('i', (3,), readonly=True)
    c2 = Layout.generate('i', (3, 4), order='C')
    f2 = Layout.generate('i', (3, 4), order='F')
    assert expected(ro, PyBUF_WRITABLE) == Refused(2, 'Buffer is not writable')
    assert expected(f2, PyBUF_C_CONTIGUOUS) == Refused(3, 'Buffer is not C-contiguous')
    assert expected(c2, PyBUF_F_CONTIGUOUS) == Refused(3, 'Buffer is not Fortran contiguous')
    assert expected(f2, PyBUF_ND, type_name='Waveform') == Refused(
        4, 'Waveform is not C-contiguous and the request has no strides')
    assert expected(c2, PyBUF_FORMAT) == Refused(
        5, "Buffer has format 'i': a request for the format without the shape cannot be served")
    # Rule order: the first failing rule names the refusal.
    assert expected(ro, 0x200 | PyBUF_WRITABLE).rule == 1
    assert expected(Layout.generate('i', (3, 4), order='F', readonly=True),
                    PyBUF_FULL).rule == 2
    assert expected(f2, PyBUF_FORMAT).rule == 4


def test_any_contiguous_refusal():
    # A packed layout is always C or F contiguous: the ANY rule needs a strided one.
    strided = Layout.from_memory('B', (6,), list(range(12)), strides=(2,))
    assert expected(strided, PyBUF_ANY_CONTIGUOUS) == Refused(3, 'Buffer is not contiguous')


@pytest.mark.parametrize('fmt', ['B', '@B', '=B', '<B', '>B', '!B'])
def test_format_without_shape_is_served_for_unsigned_bytes(fmt):
    layout = Layout.generate(fmt, (2, 3))
    got = expected(layout, PyBUF_FORMAT)
    assert isinstance(got, Fields)
    # Served with the exporter's own format string (docs/semantics.md, rule 5).
    assert (got.format, got.ndim, got.shape, got.strides, got.len) == (fmt, 1, None, None, 6)
    assert got.tolist == layout.flat_items()
    # The reference exporters refuse it, array.array serves its own format.
    assert isinstance(expected(layout, PyBUF_FORMAT, TESTBUFFER), Refused)
    assert expected(layout, PyBUF_FORMAT, ARRAY).format == fmt


@pytest.mark.parametrize('fmt', ['b', 'c', '?', '2B', 'H'])
def test_format_without_shape_is_refused_for_other_formats(fmt):
    assert expected(Layout.generate(fmt, (4,)), PyBUF_FORMAT).rule == 5


def test_fields_of_a_full_request():
    layout = Layout.generate('<i', (3, 4), order='F')
    got = expected(layout, PyBUF_FULL_RO)
    assert got.format == '<i' and got.ndim == 2 and got.shape == (3, 4)
    assert got.strides == (4, 12) and got.len == 48 and got.itemsize == 4
    assert got.readonly is False and got.suboffsets is None and got.buf_offset == 0
    simple = expected(layout.__class__.generate('<i', (3, 4)), PyBUF_SIMPLE)
    assert (simple.format, simple.ndim, simple.shape, simple.strides) == (None, 1, None, None)
    assert simple.itemsize == 4 and simple.len == 48  # the "previous itemsize" rule


def test_contiguity_of_packed_layouts():
    assert Layout.generate('i', (1, 3, 1), order='F').c_contiguous
    assert Layout.generate('i', (3, 0), order='F').c_contiguous  # empty: both
    assert not Layout.generate('i', (3, 4), order='F').c_contiguous
    assert Layout.generate('i', (3, 4), order='F').f_contiguous
    assert Layout.generate('i', (3, 0), order='C').strides == (0, 4)
    assert Layout.generate('i', (2, 0, 3), order='F').strides == (4, 8, 0)


# --------------------------------------------------------------------------------------------
# verify() passes on CPython's exporters
# --------------------------------------------------------------------------------------------

# test_ndarray_getbuf's items, formats and structure table: (shape, strides, offset) in items.
ITEMS_FMT = (
    ([True if x % 2 else False for x in range(12)], '?'),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 'b'),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 'B'),
    ([(2**31 - x) if x % 2 else (-2**31 + x) for x in range(12)], 'l'),
)
STRUCTURE = (
    ([], [], 0), ([1, 3, 1], [], 0), ([12], [], 0), ([12], [-1], 11), ([6], [2], 0),
    ([6], [-2], 11), ([3, 4], [], 0), ([3, 4], [-4, -1], 11), ([2, 2], [4, 1], 4),
    ([2, 2], [-4, -1], 8),
)
ND_FLAGS = (0, ND_WRITABLE, ND_FORTRAN, ND_FORTRAN | ND_WRITABLE)


def structure_cases():
    for items, fmt in ITEMS_FMT:
        for shape, strides, offset in STRUCTURE:
            for flags in ND_FLAGS:
                if strides and flags & ND_FORTRAN:
                    continue
                yield pytest.param(items, fmt, shape, strides, offset, flags,
                                   id=f'{fmt}-{shape}-{strides}-{offset}-{flags}')


@pytest.mark.parametrize('items, fmt, shape, strides, offset, ndflags', list(structure_cases()))
def test_structure_table_on_testbuffer_and_memoryview(items, fmt, shape, strides, offset,
                                                      ndflags):
    size = Layout.generate(fmt, ()).itemsize
    strides = [s * size for s in strides]
    offset *= size
    order = 'F' if ndflags & ND_FORTRAN else 'C'
    readonly = not ndflags & ND_WRITABLE
    ex = _testbuffer.ndarray(items if shape else items[0], format=fmt, flags=ndflags,
                             shape=shape, strides=strides, offset=offset)
    layout = Layout.from_memory(fmt, shape, items if shape else items[0],
                                strides=strides or None, offset=offset, order=order,
                                readonly=readonly)
    assert ex.tolist() == layout.items and ex.strides == layout.strides  # description is right
    assert verify_all(ex, layout, TESTBUFFER) > 0
    assert verify_all(memoryview(ex), layout, MEMORYVIEW) > 0
    if shape:
        # test_ndarray_getbuf's second exporter: ex[::-2], negative strides and an offset.
        sliced = ex[::-2]
        n = len(range(0, shape[0], 2))
        new_strides = (-2 * layout.strides[0],) + layout.strides[1:]
        sliced_layout = Layout.from_memory(
            fmt, (n,) + tuple(shape[1:]), items, strides=new_strides,
            offset=offset + (shape[0] - 1) * layout.strides[0] if shape[0] else offset,
            readonly=readonly)
        assert sliced.tolist() == sliced_layout.items
        verify_all(sliced, sliced_layout, TESTBUFFER)
        verify_all(memoryview(sliced), sliced_layout, MEMORYVIEW)


@pytest.mark.parametrize('fmt, shape', format_shape_cases())
def test_reference_ndarray_over_every_layout_of_the_matrix(fmt, shape):
    def check(layout):
        ref = reference_ndarray(layout)
        assert ref.tolist() == layout.items
        assert ref.strides == layout.strides and ref.readonly is layout.readonly
        served = verify_all(ref, layout, TESTBUFFER)
        assert served > 0
        if layout.format in ('?', 'b', 'B', 'h', 'd', 'l'):
            assert verify_all(memoryview(ref), layout, MEMORYVIEW) == served
    check_each(layout_variants(fmt, shape), check)


def test_bytes_and_bytearray():
    data = bytes(range(7, 60, 3))
    layout = Layout.from_memory('B', (len(data),), list(data), readonly=True)
    read_only = [f for f in REQUESTS if not f & PyBUF_WRITABLE]
    assert verify_all(data, layout, FILLINFO) == len(read_only)
    writable = Layout.from_memory('B', (len(data),), list(data))
    assert verify_all(bytearray(data), writable, FILLINFO) == len(REQUESTS)
    # memoryview also refuses the format without the shape (PyBUF_FORMAT alone).
    assert verify_all(memoryview(data), layout, MEMORYVIEW) == len(read_only) - 1


@pytest.mark.parametrize('code', ['B', 'i', 'd', 'q'])
def test_array(code):
    values = [3, 1, 4, 1, 5, 9, 2, 6]
    arr = array.array(code, values)
    layout = Layout.from_memory(code, (len(values),), list(arr))
    assert verify_all(arr, layout, ARRAY) == len(REQUESTS)


def test_memoryview_casts():
    data = bytearray(range(24))
    view = memoryview(data).cast('i', (2, 3))
    layout = Layout.from_memory('i', (2, 3), list(memoryview(data).cast('i')))
    verify_all(view, layout, MEMORYVIEW)
    with memoryview(data).cast('h') as flat:
        layout = Layout.from_memory('h', (12,), flat.tolist())
        verify_all(flat, layout, MEMORYVIEW)


# --------------------------------------------------------------------------------------------
# verify() fails when the exporter is not what the description says
# --------------------------------------------------------------------------------------------


def _nd(layout):
    return reference_ndarray(layout)


def test_verify_catches_wrong_contents():
    layout = Layout.generate('<i', (3, 4))
    other = Layout.generate('<i', (3, 4), seed=1)
    with pytest.raises(AssertionError):
        verify(_nd(layout), PyBUF_FULL_RO, other, TESTBUFFER)
    with pytest.raises(AssertionError):
        verify(_nd(layout), PyBUF_SIMPLE, other, TESTBUFFER)  # raw memory, no format


def test_verify_catches_wrong_readonly_and_order():
    layout = Layout.generate('h', (3, 4))
    ro = Layout(layout.format, layout.shape, layout.items, readonly=True)
    with pytest.raises(AssertionError):
        verify(_nd(layout), PyBUF_FULL_RO, ro, TESTBUFFER)
    with pytest.raises(AssertionError):  # served, but the oracle wants a refusal
        verify(_nd(layout), PyBUF_FULL, ro, TESTBUFFER)
    f = Layout(layout.format, layout.shape, layout.items, order='F')
    with pytest.raises(AssertionError):
        verify(_nd(layout), PyBUF_STRIDES, f, TESTBUFFER)


def test_verify_catches_a_policy_difference():
    # _testbuffer refuses FORMAT without ND for 'B'; bufferkit must serve it.
    layout = Layout.generate('B', (5,))
    with pytest.raises(AssertionError):
        verify(_nd(layout), PyBUF_FORMAT, layout, replace(BUFFERKIT, has_exports=False))
    # bufferkit refuses malformed requests; _testbuffer serves them.
    with pytest.raises(AssertionError):
        verify(_nd(layout), PyBUF_ND | 0x200, layout, replace(TESTBUFFER,
                                                              refuses_malformed=True))


def test_verify_catches_raw_field_faults():
    # bytes leaves view->obj alone after a refusal; bufferkit's policy forbids that.
    data = b'abc'
    layout = Layout.from_memory('B', (3,), list(data), readonly=True)
    with pytest.raises(AssertionError):
        verify(data, PyBUF_WRITABLE, layout, replace(FILLINFO, clears_obj=True))
    # _testbuffer uses view->internal; bufferkit's policy wants it NULL.
    nd_layout = Layout.generate('B', (3,))
    with pytest.raises(AssertionError):
        verify(_nd(nd_layout), PyBUF_ND, nd_layout, replace(TESTBUFFER, internal_null=True))


def test_verify_catches_a_reference_disagreement():
    # Two exporters that both obey their oracle but hold different contents.
    layout = Layout.generate('B', (4,))
    other = _nd(Layout.generate('B', (4,), seed=3))
    with pytest.raises(AssertionError):
        verify(_nd(layout), PyBUF_FULL_RO, layout, TESTBUFFER, reference=other)
    assert isinstance(verify(_nd(layout), PyBUF_STRIDES, layout, TESTBUFFER,
                             reference=_nd(layout)), Fields)


def test_ndim_and_format_names_in_consumer():
    # The consumer shows NULL format/shape/strides as '' and (); verify() relies on it.
    nd = _testbuffer.ndarray(_nd(Layout.generate('i', (2, 3))), getbuf=PyBUF_SIMPLE)
    assert (nd.format, nd.shape, nd.strides, nd.ndim, nd.itemsize) == ('', (), (), 1, 4)
    nd = _testbuffer.ndarray(_nd(Layout.generate('i', (2, 3))), getbuf=PyBUF_ND)
    assert (nd.format, nd.shape, nd.strides) == ('', (2, 3), ())
    nd = _testbuffer.ndarray(_nd(Layout.generate('i', (2, 3))), getbuf=PyBUF_STRIDES)
    assert nd.strides == (12, 4)
