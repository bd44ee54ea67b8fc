"""The rows of bufferkit's benchmark: one exporter each, built the same way for every part.

Both the C harness (bench/cbench.c, which imports this module inside the interpreter it embeds)
and the Python-level benchmark (bench/pybench.py) take their objects from here, so a row means
the same object everywhere. Three groups, each with its reference row (the row bufferkit's rows
are divided by) and the floor exporter (bench/floor.c) as the second reference of every group:

  1d   1-D unsigned bytes, 4 KiB ('B'; array('d') is the same 4 KiB as 512 doubles)  ref: bytearray
  2d   2-D 'd' 64x64, C-contiguous                                                  ref: memoryview
  2ds  2-D 'd' 64x64, every other column of a 64x128 block (strides (1024, 16))     ref: memoryview

`make(big)` builds the row's object: the sizes above, or with big=True the 64 MiB variant used
for readinto and hashlib (1d: 64 MiB of bytes; 2d: 2048x4096 doubles). Rows marked bufferkit are
the ones under test; every other row is a reference measured in the same run.
"""

import array
import collections
import os

import bufferkit

try:
    import numpy
except ImportError:  # the C harness can run without numpy; its rows are then skipped
    numpy = None

try:
    import _testbuffer
except ImportError:
    _testbuffer = None

import _bench_floor

KIB4 = 4096
MIB64 = 64 << 20
DEPTH = 100  # levels of the deep slice
STEP = 8     # bytes cut per level (keeps every level 8-aligned)

Row = collections.namedtuple("Row", "key label group bufferkit make")

GROUPS = {
    "1d": ("1-D 'B' 4 KiB", "bytearray"),
    "2d": ("2-D 'd' 64x64", "mv_2d"),
    "2ds": ("2-D 'd' 64x64 strided", "mv_2ds"),
}
FLOOR = "floor"


def nbytes_1d(big):
    return MIB64 if big else KIB4


def shape_2d(big):
    return (2048, 4096) if big else (64, 64)


class BenchExporter(bufferkit.Exporter):
    """A pure-Python exporter wrapping a memoryview of a bytearray (returned as is)."""

    def __init__(self, n):
        self._mv = memoryview(bytearray(n))

    def __buffer__(self, flags):
        return self._mv


def _array_d(n):
    a = array.array("d")
    a.frombytes(bytes(n))
    return a


def _testbuffer_1d(big):
    n = nbytes_1d(big)
    if big:  # a list of 64 Mi items would take minutes: re-export a bytearray instead
        return _testbuffer.ndarray(bytearray(n), getbuf=_testbuffer.PyBUF_FULL)
    return _testbuffer.ndarray([0] * n, shape=[n], format="B", flags=_testbuffer.ND_WRITABLE)


def _testbuffer_2d(big):
    r, c = shape_2d(big)
    if big:
        mv = memoryview(bytearray(r * c * 8)).cast("d", (r, c))
        return _testbuffer.ndarray(mv, getbuf=_testbuffer.PyBUF_FULL)
    return _testbuffer.ndarray([0.0] * (r * c), shape=[r, c], format="d", flags=_testbuffer.ND_WRITABLE)


def _testbuffer_2ds(big):
    r, c = shape_2d(big)
    base = _testbuffer.ndarray([0.0] * (r * 2 * c), shape=[r, 2 * c], format="d", flags=_testbuffer.ND_WRITABLE)
    return base[:, ::2]


def _view_slice(big):
    n = nbytes_1d(big)
    return bufferkit.View(bytearray(n + DEPTH * STEP))[DEPTH * STEP:]


def _view_deep(big):
    n = nbytes_1d(big)
    v = bufferkit.View(bytearray(n + DEPTH * STEP))
    for _ in range(DEPTH):
        v = v[STEP:]
    return v


def _view_strided(big):
    r, c = shape_2d(big)
    return bufferkit.View(bytearray(r * 2 * c * 8), format="d", shape=(r, c), strides=(2 * c * 8, 16))


def _rows():
    np_ok = numpy is not None
    tb_ok = _testbuffer is not None
    rows = [
        # 1-D bytes
        Row("floor", "floor (C, FillInfo)", "1d", False, lambda big: _bench_floor.Floor(nbytes_1d(big))),
        Row("bytearray", "bytearray", "1d", False, lambda big: bytearray(nbytes_1d(big))),
        Row("array_B", "array('B')", "1d", False, lambda big: array.array("B", bytes(nbytes_1d(big)))),
        Row("array_d", "array('d') 512", "1d", False, lambda big: _array_d(nbytes_1d(big))),
        Row("mv_1d", "memoryview", "1d", False, lambda big: memoryview(bytearray(nbytes_1d(big)))),
        np_ok and Row("np_1d", "numpy uint8", "1d", False, lambda big: numpy.zeros(nbytes_1d(big), numpy.uint8)),
        tb_ok and Row("tb_1d", "_testbuffer", "1d", False, _testbuffer_1d),
        Row("bk_buffer_1d", "Buffer", "1d", True, lambda big: bufferkit.Buffer(nbytes_1d(big), "B")),
        Row("bk_view_slice", "View slice", "1d", True, _view_slice),
        Row("bk_view_deep", "View slice x100", "1d", True, _view_deep),
        Row("bk_exporter", "Exporter subcls", "1d", True, lambda big: BenchExporter(nbytes_1d(big))),
        # 2-D doubles, C-contiguous
        Row("mv_2d", "memoryview.cast", "2d", False,
            lambda big: memoryview(bytearray(8 * shape_2d(big)[0] * shape_2d(big)[1])).cast("d", shape_2d(big))),
        np_ok and Row("np_2d", "numpy float64", "2d", False, lambda big: numpy.zeros(shape_2d(big))),
        tb_ok and Row("tb_2d", "_testbuffer", "2d", False, _testbuffer_2d),
        Row("bk_buffer_2d", "Buffer 2-D", "2d", True, lambda big: bufferkit.Buffer(shape_2d(big), "d")),
        # 2-D doubles, strided
        np_ok and Row("mv_2ds", "memoryview(np)", "2ds", False,
                      lambda big: memoryview(numpy.zeros((shape_2d(big)[0], 2 * shape_2d(big)[1]))[:, ::2])),
        np_ok and Row("np_2ds", "numpy [:, ::2]", "2ds", False,
                      lambda big: numpy.zeros((shape_2d(big)[0], 2 * shape_2d(big)[1]))[:, ::2]),
        tb_ok and Row("tb_2ds", "_testbuffer", "2ds", False, _testbuffer_2ds),
        Row("bk_view_strided", "View strided", "2ds", True, _view_strided),
    ]
    return [r for r in rows if r]


ROWS = _rows()
BY_KEY = {r.key: r for r in ROWS}


def selected():
    """The rows named in $BENCH_ROWS (comma-separated keys), or every row."""
    want = [k for k in os.environ.get("BENCH_ROWS", "").split(",") if k]
    unknown = [k for k in want if k not in BY_KEY]
    if unknown:
        raise SystemExit(f"BENCH_ROWS: unknown rows {unknown}; known: {list(BY_KEY)}")
    return [r for r in ROWS if not want or r.key in want]


def c_rows():
    """(key, label, group, object) of each selected row at its small size, for bench/cbench.c."""
    return [(r.key, r.label, r.group, r.make(False)) for r in selected()]


def mem_objects():
    """The 256 MiB exporters of the live-exports memory test (bench/cbench.c `mem`)."""
    n = 256 << 20
    return [
        ("floor", _bench_floor.Floor(n)),
        ("bytearray", bytearray(n)),
        ("bk_buffer_1d", bufferkit.Buffer(n, "B")),
        ("bk_view_slice", bufferkit.View(bytearray(n + DEPTH * STEP))[DEPTH * STEP:]),
    ]
