"""Type stubs for bufferkit (the package re-exports the native module ``bufferkit._bufferkit``).

Every public name is declared here, in the package, because that is where the runtime objects
say they live (``Buffer.__module__ == 'bufferkit'``). A parameter that accepts "any object that
exports the buffer protocol" is typed with PEP 688's ``Buffer`` protocol:
``collections.abc.Buffer`` on 3.12+, ``typing_extensions.Buffer`` before.

``Buffer`` and ``View`` declare ``__buffer__``/``__release_buffer__`` on every version, as
typeshed does for ``bytes``: they export the buffer protocol everywhere, but the Python-level
methods exist only from 3.12 (see python_tests/typing/stubtest-allowlist-pre312.txt).
"""

import builtins
import sys
from types import TracebackType
from typing import Any, ClassVar, Final, Literal, NamedTuple, Protocol, SupportsIndex

from typing_extensions import Self, TypeAlias, disjoint_base

if sys.version_info >= (3, 12):
    from collections.abc import Buffer as _SupportsBuffer
else:
    from typing_extensions import Buffer as _SupportsBuffer

__version__: Final[str]

__all__ = [
    "Buffer",
    "View",
    "Exporter",
    "BufferInfo",
    "inspect",
    "PyBUF_SIMPLE",
    "PyBUF_WRITABLE",
    "PyBUF_FORMAT",
    "PyBUF_ND",
    "PyBUF_STRIDES",
    "PyBUF_C_CONTIGUOUS",
    "PyBUF_F_CONTIGUOUS",
    "PyBUF_ANY_CONTIGUOUS",
    "PyBUF_INDIRECT",
    "PyBUF_CONTIG",
    "PyBUF_CONTIG_RO",
    "PyBUF_STRIDED",
    "PyBUF_STRIDED_RO",
    "PyBUF_RECORDS",
    "PyBUF_RECORDS_RO",
    "PyBUF_FULL",
    "PyBUF_FULL_RO",
    "PyBUF_READ",
    "PyBUF_WRITE",
]

# An int, or a tuple or list of ints (anything with __index__): what Buffer and View accept
# for shape, and View for strides.
_Shape: TypeAlias = SupportsIndex | tuple[SupportsIndex, ...] | list[SupportsIndex]
_Dims: TypeAlias = tuple[SupportsIndex, ...] | list[SupportsIndex]
# Buffer's shape: a list is refused (bytearray([1, 2, 3]) would hold those values).
_BufferShape: TypeAlias = SupportsIndex | tuple[SupportsIndex, ...]

class _DType(Protocol):
    """A numpy dtype, as far as the stubs need one (numpy is not a dependency)."""

    @property
    def str(self) -> builtins.str: ...
    @property
    def itemsize(self) -> int: ...

# A struct format ('<i'), numpy's spelling of one ('<f8', 'int16'), a numpy dtype, or a numpy
# scalar type (numpy.float32).
_Format: TypeAlias = str | _DType | type

@disjoint_base
class Buffer:
    """Fixed-size, zero-initialised memory that exports the buffer protocol."""

    def __new__(
        cls,
        shape: _BufferShape,
        format: _Format = "B",
        *,
        order: Literal["C", "F"] = "C",
        readonly: bool = False,
    ) -> Self: ...
    # == as memoryview's (by value, format and shape); unhashable, as bytearray.
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]
    @property
    def format(self) -> str: ...
    @property
    def itemsize(self) -> int: ...
    @property
    def ndim(self) -> int: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def strides(self) -> tuple[int, ...]: ...
    @property
    def suboffsets(self) -> tuple[()]: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def c_contiguous(self) -> bool: ...
    @property
    def f_contiguous(self) -> bool: ...
    @property
    def contiguous(self) -> bool: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def exports(self) -> int: ...
    def tobytes(self, order: Literal["C", "F", "A"] | None = "C") -> bytes: ...
    # A (nested) list of items; for a 0-d object, the one item itself.
    def tolist(self) -> Any: ...
    def __len__(self) -> int: ...
    def __enter__(self) -> Self: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def order(self) -> Literal["C", "F"]: ...
    def freeze(self) -> None: ...
    def close(self) -> None: ...
    def __exit__(
        self,
        *exc_info: type[BaseException] | BaseException | TracebackType | None,
    ) -> None: ...
    @classmethod
    def from_buffer_copy(cls, obj: _SupportsBuffer, *, readonly: bool = False) -> Self: ...
    def __reduce_ex__(self, protocol: SupportsIndex, /) -> tuple[Any, ...]: ...

@disjoint_base
class View:
    """A zero-copy view of another object's buffer that keeps the base locked while it lives."""

    def __new__(
        cls,
        base: _SupportsBuffer,
        *,
        offset: SupportsIndex = 0,
        format: _Format | None = None,
        shape: _Shape | None = None,
        strides: _Dims | None = None,
        readonly: bool | None = None,
    ) -> Self: ...
    @property
    def format(self) -> str: ...
    @property
    def itemsize(self) -> int: ...
    @property
    def ndim(self) -> int: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def strides(self) -> tuple[int, ...]: ...
    @property
    def suboffsets(self) -> tuple[()]: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def c_contiguous(self) -> bool: ...
    @property
    def f_contiguous(self) -> bool: ...
    @property
    def contiguous(self) -> bool: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def exports(self) -> int: ...
    def tobytes(self, order: Literal["C", "F", "A"] | None = "C") -> bytes: ...
    # A (nested) list of items; for a 0-d object, the one item itself.
    def tolist(self) -> Any: ...
    def __len__(self) -> int: ...
    def __enter__(self) -> Self: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...
    @property
    def base(self) -> _SupportsBuffer: ...
    @property
    def offset(self) -> int: ...
    @property
    def released(self) -> bool: ...
    def release(self) -> None: ...
    def __exit__(
        self,
        *exc_info: type[BaseException] | BaseException | TracebackType | None,
    ) -> None: ...
    # View(self, format=format, shape=shape), spelled as memoryview.cast.
    def cast(self, format: _Format, shape: _Shape | None = None) -> View: ...
    # Slices only (one per dimension): the result is a View of the same memory.
    def __getitem__(self, key: slice | tuple[slice, ...], /) -> View: ...

class Exporter:
    """Base class for Python classes that export the buffer protocol through __buffer__."""

    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, view: memoryview, /) -> None: ...

class BufferInfo(NamedTuple):
    """The Py_buffer a consumer got, as inspect() returns it (None where a pointer was NULL)."""

    buf: int | None
    obj: object
    len: int
    itemsize: int
    readonly: bool
    ndim: int
    format: str | None
    shape: tuple[int, ...] | None
    strides: tuple[int, ...] | None
    suboffsets: tuple[int, ...] | None

def inspect(obj: _SupportsBuffer, flags: int = 284) -> BufferInfo:
    """The Py_buffer a consumer gets from obj for the request flags (default PyBUF_FULL_RO)."""

PyBUF_SIMPLE: Final = 0
PyBUF_WRITABLE: Final = 0x0001
PyBUF_FORMAT: Final = 0x0004
PyBUF_ND: Final = 0x0008
PyBUF_STRIDES: Final = 0x0018
PyBUF_C_CONTIGUOUS: Final = 0x0038
PyBUF_F_CONTIGUOUS: Final = 0x0058
PyBUF_ANY_CONTIGUOUS: Final = 0x0098
PyBUF_INDIRECT: Final = 0x0118
PyBUF_CONTIG: Final = 0x0009
PyBUF_CONTIG_RO: Final = 0x0008
PyBUF_STRIDED: Final = 0x0019
PyBUF_STRIDED_RO: Final = 0x0018
PyBUF_RECORDS: Final = 0x001D
PyBUF_RECORDS_RO: Final = 0x001C
PyBUF_FULL: Final = 0x011D
PyBUF_FULL_RO: Final = 0x011C
PyBUF_READ: Final = 0x0100
PyBUF_WRITE: Final = 0x0200
