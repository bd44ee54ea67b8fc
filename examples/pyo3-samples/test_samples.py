"""samples.Samples from Python: a PyO3 #[pyclass] whose f32 samples bufferkit exports.

Run by scripts/example_pyo3.sh PYTHON, which builds the module and puts it on PYTHONPATH.
"""

import sys

import numpy as np
import pytest

import samples
from samples import Samples, Signal

# Every request of CPython's test_buffer (test_ndarray_getbuf), answered as CPython's own
# reference exporter answers it for the same items: _testbuffer.ndarray is the oracle.
REQUESTS = [
    "PyBUF_SIMPLE", "PyBUF_WRITABLE", "PyBUF_FORMAT", "PyBUF_ND", "PyBUF_STRIDES",
    "PyBUF_C_CONTIGUOUS", "PyBUF_F_CONTIGUOUS", "PyBUF_ANY_CONTIGUOUS", "PyBUF_INDIRECT",
    "PyBUF_CONTIG", "PyBUF_CONTIG_RO", "PyBUF_STRIDED", "PyBUF_STRIDED_RO", "PyBUF_RECORDS",
    "PyBUF_RECORDS_RO", "PyBUF_FULL", "PyBUF_FULL_RO",
]
FIELDS = ("format", "itemsize", "ndim", "shape", "strides", "suboffsets", "readonly", "nbytes",
          "c_contiguous", "f_contiguous", "contiguous")


def answer(tb, obj, flags):
    """What a consumer asking `flags` gets from `obj`: the fields and bytes, or the error."""
    try:
        nd = tb.ndarray(obj, getbuf=flags)
    except BufferError as e:
        return BufferError, type(e)
    return {f: getattr(nd, f) for f in FIELDS}, nd.tobytes()


class Sub(Samples):
    """A Python subclass: its instances get a __dict__ after the PyO3 layout."""

    def double_peak(self):
        return 2 * self.peak()


@pytest.mark.parametrize("cls", [Samples, Sub])
@pytest.mark.parametrize("n", [0, 1, 5])
@pytest.mark.parametrize("name", REQUESTS)
def test_every_request_is_answered_as_the_reference_exporter_answers_it(name, n, cls):
    import _testbuffer as tb

    flags = getattr(tb, name)
    s = cls(n, 8000)
    values = [(-1) ** i * 0.5 * i for i in range(n)]
    np.asarray(s)[:] = values
    # (_testbuffer wants a non-empty initializer, even for a shape of 0 items)
    reference = tb.ndarray(values or [0.0], shape=[n], format="f", flags=tb.ND_WRITABLE)
    assert answer(tb, s, flags) == answer(tb, reference, flags)


def test_numpy_and_rust_see_the_same_samples():
    s = Samples(4, 44100)
    a = np.asarray(s)
    assert a.dtype == np.float32 and a.shape == (4,) and a.flags.writeable
    a[2] = -2.25
    assert s.peak() == 2.25
    with memoryview(s) as m:
        assert (m.format, m.itemsize, m.readonly) == ("f", 4, False)
        m[0] = 3.0
    assert a[0] == 3.0 and s.peak() == 3.0


def test_extends_a_plain_class():
    s = Samples(2, 48000)
    assert isinstance(s, Signal) and s.rate == 48000
    assert memoryview(s).nbytes == 8


def test_the_lock_refuses_a_resize_while_exported_and_allows_it_after():
    s = Samples(3, 1)
    a = np.asarray(s)
    with pytest.raises(BufferError, match=r"^cannot resize: 1 exported buffer$"):
        s.resize(1)
    m = memoryview(s)
    with pytest.raises(BufferError, match=r"^cannot resize: 2 exported buffers$"):
        s.resize(1)
    assert len(s) == 3
    m.release()
    del a
    s.resize(5)
    assert len(s) == 5 and memoryview(s).shape == (5,)


def test_a_python_subclass_exports_and_locks_the_same():
    s = Sub(2, 10)
    np.asarray(s)[:] = [1.5, -4.0]
    assert s.double_peak() == 8.0
    s.extra = "a __dict__ after the Rust value"
    with memoryview(s) as m:
        with pytest.raises(BufferError, match=r"^cannot resize: 1 exported buffer$"):
            s.resize(0)
        assert m.tolist() == [1.5, -4.0]
    s.resize(0)
    assert len(s) == 0 and s.extra.startswith("a __dict__")


def test_frozen():
    with pytest.raises(AttributeError):
        Samples(1, 1).rate = 2


def test_exports_hold_a_reference_and_give_it_back():
    s = Samples(3, 1)
    before = sys.getrefcount(s)
    m = memoryview(s)
    assert sys.getrefcount(s) > before
    m.release()
    assert sys.getrefcount(s) == before


def test_too_many_samples():
    with pytest.raises(OverflowError, match=r"2\*\*63-1 bytes"):
        Samples(2**62, 1)  # 2**64 bytes
    with pytest.raises(MemoryError):
        Samples(2**60, 1)  # 4 EiB


def test_the_consumer_side_asks_a_typed_request():
    assert samples.nbytes(Samples(3, 1)) == 12
    assert samples.nbytes(b"abcd") == 4
    import _testbuffer as tb

    strided = tb.ndarray(list(range(12)), shape=[3, 4], format="B")[::2]
    with pytest.raises(BufferError):
        samples.nbytes(strided)  # CONTIG_RO on a non-contiguous exporter
    with pytest.raises(TypeError):
        samples.nbytes(1)


def test_a_class_that_is_not_frozen_refuses_exports_while_mutably_borrowed():
    s = samples.Scratch(4)
    with pytest.raises(BufferError, match=r"^Scratch is being modified$"):
        s.while_borrowed(lambda: memoryview(s))
    with memoryview(s) as m:
        assert m.nbytes == 4  # served again once the borrow ended
    s.resize(2)


def test_a_release_while_mutably_borrowed_keeps_the_export_counted(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    s = samples.Scratch(4)
    m = memoryview(s)
    s.while_borrowed(m.release)  # bf_releasebuffer cannot read the class now
    assert len(seen) == 1 and isinstance(seen[0].exc_value, BufferError)
    assert "stays counted" in str(seen[0].exc_value)
    # the count stayed up: the memory is never changed under a consumer that might remain
    with pytest.raises(BufferError, match=r"^cannot resize: 1 exported buffer$"):
        s.resize(1)
