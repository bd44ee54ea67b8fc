"""Every public name of bufferkit, used as a typed program would: `mypy --strict` checks this
file against the package's stubs (scripts/typecheck.sh), and running it checks that the stubs
describe what the module really does (each `assert` restates a type the stub promises).
"""

from __future__ import annotations

import pickle
import sys
import weakref
from typing import Optional

import bufferkit
from bufferkit import BufferInfo

if sys.version_info >= (3, 12):
    from collections.abc import Buffer as SupportsBuffer
else:
    from typing_extensions import Buffer as SupportsBuffer


def describe(obj: SupportsBuffer, flags: int = bufferkit.PyBUF_FULL_RO) -> str:
    info: BufferInfo = bufferkit.inspect(obj, flags)
    shape: Optional[tuple[int, ...]] = info.shape
    fmt: Optional[str] = info.format
    address: Optional[int] = info.buf
    assert address is None or address > 0
    return f"len={info.len} itemsize={info.itemsize} ndim={info.ndim} format={fmt} shape={shape}"


def use_buffer() -> bytes:
    buf = bufferkit.Buffer((2, 3), "h", order="F", readonly=False)
    shape: tuple[int, ...] = buf.shape
    strides: tuple[int, ...] = buf.strides
    assert (shape, strides) == ((2, 3), (2, 4))
    assert buf.format == "h" and buf.itemsize == 2 and buf.ndim == 2 and buf.nbytes == 12
    assert buf.suboffsets == () and buf.f_contiguous and buf.contiguous and not buf.c_contiguous
    assert buf.order == "F" and not buf.readonly and not buf.closed and len(buf) == 2
    with memoryview(buf) as m:
        assert buf.exports == 1
        m[1, 2] = 7
    items: list[list[int]] = buf.tolist()
    assert items == [[0, 0, 0], [0, 0, 7]]
    data = buf.tobytes("A") + buf.tobytes(order=None)
    copy = bufferkit.Buffer.from_buffer_copy(buf, readonly=True)
    assert isinstance(copy, bufferkit.Buffer) and copy.readonly
    buf.freeze()
    buf.close()
    with bufferkit.Buffer(4) as scratch:  # __enter__/__exit__ close it
        scratch_view = memoryview(scratch)
        scratch_view.release()
    return data


def use_buffer_like_a_python_user() -> None:
    samples = bufferkit.Buffer((2, 2), "<f8")  # numpy's spelling: struct's '<d'
    assert samples.format == "<d" and samples.itemsize == 8
    same: bool = samples == bufferkit.Buffer.from_buffer_copy(samples)
    assert same and samples != bytes(32)  # equal bytes, but not the same shape
    ref: weakref.ref[bufferkit.Buffer] = weakref.ref(samples)
    assert ref() is samples
    again = pickle.loads(pickle.dumps(samples))
    assert isinstance(again, bufferkit.Buffer) and again.shape == (2, 2)
    version: str = bufferkit.__version__
    assert version.count(".") == 2


def use_view() -> None:
    data = bytearray(range(16))
    with bufferkit.View(data) as whole:
        assert whole.base is data and whole.offset == 0 and not whole.released
        every_other: bufferkit.View = whole[1::2]
        assert every_other.tobytes() == bytes(range(1, 16, 2))
        every_other.release()
    grid = bufferkit.View(
        data, offset=4, format="<i", shape=(2, 1), strides=[8, 4], readonly=True
    )
    assert grid.shape == (2, 1) and grid.readonly and grid[:, :].ndim == 2
    print(describe(grid, bufferkit.PyBUF_RECORDS_RO))
    grid.release()
    assert grid.released


class Samples(bufferkit.Exporter):
    """A pure-Python exporter: delegates to the memory it wraps."""

    def __init__(self, data: bytes) -> None:
        self._data = bytearray(data)
        self.released = 0

    def __buffer__(self, flags: int, /) -> memoryview:
        return memoryview(self._data)

    def __release_buffer__(self, view: memoryview, /) -> None:
        self.released += 1
        view.release()


def use_exporter() -> None:
    samples = Samples(b"abc")
    assert bytes(samples) == b"abc"
    assert bufferkit.View(samples).tobytes() == b"abc"


FLAGS: tuple[int, ...] = (
    bufferkit.PyBUF_SIMPLE,
    bufferkit.PyBUF_WRITABLE,
    bufferkit.PyBUF_FORMAT,
    bufferkit.PyBUF_ND,
    bufferkit.PyBUF_STRIDES,
    bufferkit.PyBUF_C_CONTIGUOUS,
    bufferkit.PyBUF_F_CONTIGUOUS,
    bufferkit.PyBUF_ANY_CONTIGUOUS,
    bufferkit.PyBUF_INDIRECT,
    bufferkit.PyBUF_CONTIG,
    bufferkit.PyBUF_CONTIG_RO,
    bufferkit.PyBUF_STRIDED,
    bufferkit.PyBUF_STRIDED_RO,
    bufferkit.PyBUF_RECORDS,
    bufferkit.PyBUF_RECORDS_RO,
    bufferkit.PyBUF_FULL,
    bufferkit.PyBUF_FULL_RO,
    bufferkit.PyBUF_READ,
    bufferkit.PyBUF_WRITE,
)


def main() -> None:
    print(len(use_buffer()), "bytes copied out of a Buffer")
    use_buffer_like_a_python_user()
    use_view()
    use_exporter()
    print(describe(b"xyz"), len(FLAGS), "flag constants")
    names: list[str] = bufferkit.__all__
    assert sorted(names) == sorted(n for n in dir(bufferkit) if not n.startswith("_"))


if __name__ == "__main__":
    main()
