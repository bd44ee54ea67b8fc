"""waveform.Waveform from Python: the samples a Rust struct owns, seen and written in place.

Run by scripts/example.sh PYTHON, which builds the module and puts it on PYTHONPATH.
"""

import os
import sys

import numpy as np
import pytest

from waveform import Waveform


def test_exports_its_samples_as_int16():
    w = Waveform(8)
    with memoryview(w) as m:
        assert (m.format, m.itemsize, m.shape, m.strides) == ("h", 2, (8,), (2,))
        assert not m.readonly and m.c_contiguous
        assert m.tolist() == [0] * 8
    assert len(w) == 8


def test_numpy_sees_the_samples_without_a_copy():
    w = Waveform(16)
    a = np.asarray(w)
    assert a.dtype == np.int16 and a.shape == (16,) and a.flags.writeable
    b = np.frombuffer(w, dtype=np.int16)
    assert np.shares_memory(a, b)  # both point into the Rust-owned samples
    with memoryview(w) as m:
        assert a.ctypes.data == np.frombuffer(m, dtype=np.int16).ctypes.data
        m[5] = -77  # written through one consumer ...
        assert a[5] == -77 and b[5] == -77  # ... seen by the others
    a[3] = -1200
    assert w.peak() == 1200  # and by Rust
    b[0] = -32768
    assert w.peak() == 32768


def test_peak_of_silence_and_of_nothing():
    assert Waveform(4).peak() == 0
    assert Waveform(0).peak() == 0


def test_resize_is_refused_while_exported():
    w = Waveform(4)
    a = np.asarray(w)
    a[:] = [1, -2, 3, -4]
    with pytest.raises(BufferError, match=r"^cannot resize: 1 exported buffer$"):
        w.resize(2)
    m = memoryview(w)
    with pytest.raises(BufferError, match=r"^cannot resize: 2 exported buffers$"):
        w.resize(2)
    assert len(w) == 4 and a.tolist() == [1, -2, 3, -4]  # untouched
    m.release()
    del a  # the array's buffer goes back with it
    w.resize(6)  # nothing exported now
    assert len(w) == 6
    with memoryview(w) as m:
        assert m.shape == (6,) and m.tolist() == [1, -2, 3, -4, 0, 0]
    w.resize(2)
    assert np.asarray(w).tolist() == [1, -2]


def test_exports_hold_a_reference_and_give_it_back():
    w = Waveform(3)
    before = sys.getrefcount(w)
    a = np.asarray(w)
    assert sys.getrefcount(w) > before
    del a
    assert sys.getrefcount(w) == before
    w.resize(5)


def test_bad_arguments():
    with pytest.raises(ValueError):
        Waveform(-1)
    with pytest.raises(TypeError):
        Waveform("8")
    w = Waveform(2)
    with pytest.raises(ValueError):
        w.resize(-3)
    with pytest.raises(TypeError):
        w.resize(2.5)
    assert len(w) == 2


def test_every_consumer_locks_the_size():
    import _testbuffer  # CPython's test consumer: asks for exactly the flags it is given

    w = Waveform(2)
    nd = _testbuffer.ndarray(w, getbuf=_testbuffer.PyBUF_FULL)
    assert (nd.format, nd.shape, nd.strides, nd.readonly) == ("h", (2,), (2,), False)
    with pytest.raises(BufferError):
        w.resize(1)
    del nd
    w.resize(1)


def test_too_many_samples():
    with pytest.raises(OverflowError, match='larger than 2\\*\\*63-1 bytes'):
        Waveform(2**62)  # 2**63 bytes of samples
    with pytest.raises(MemoryError):
        Waveform(2**61)  # fits isize as bytes, but no machine has 4 EiB


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
    """What a consumer asking `flags` gets from `obj`: the fields and items, or the error."""
    try:
        nd = tb.ndarray(obj, getbuf=flags)
    except BufferError as e:
        return BufferError, type(e)
    return {f: getattr(nd, f) for f in FIELDS}, nd.tobytes()


@pytest.mark.parametrize("n", [0, 1, 5])
@pytest.mark.parametrize("name", REQUESTS)
def test_every_request_is_answered_as_the_reference_exporter_answers_it(name, n):
    import _testbuffer as tb

    flags = getattr(tb, name)
    w = Waveform(n)
    values = [(-1) ** i * 1000 * i for i in range(n)]
    np.asarray(w)[:] = values
    # (_testbuffer wants a non-empty initializer, even for a shape of 0 items)
    reference = tb.ndarray(values or [0], shape=[n], format="h", flags=tb.ND_WRITABLE)
    assert answer(tb, w, flags) == answer(tb, reference, flags)


def test_a_python_subclass_exports_and_locks_the_same():
    class Loud(Waveform):
        def shout(self):
            return self.peak() * 2

    w = Loud(3)
    np.asarray(w)[:] = [1, -7, 2]
    assert w.shout() == 14 and isinstance(w, Waveform)
    m = memoryview(w)
    with pytest.raises(BufferError, match=r"^cannot resize: 1 exported buffer$"):
        w.resize(1)
    m.release()
    w.resize(1)
    assert memoryview(w).tolist() == [1]


def test_constructor_arguments():
    with pytest.raises(TypeError, match=r"^Waveform\(\) takes exactly 1 argument \(2 given\)$"):
        Waveform(1, 2)
    with pytest.raises(TypeError, match=r"^Waveform\(\) takes no keyword arguments$"):
        Waveform(n=1)
    with pytest.raises(ValueError, match=r"^n must be >= 0, not -1$"):
        Waveform(-1)
    assert Waveform.__doc__.startswith("n zero samples")
    assert Waveform.__module__ == "waveform"


RACE = """
import threading
from waveform import Waveform

w = Waveform(1000)
stop = threading.Event()
seen, errors = set(), []

def resize():
    sizes = (1000, 3000, 20, 70000)
    i = 0
    while not stop.is_set():
        try:
            w.resize(sizes[i % len(sizes)])
        except BufferError as e:
            errors.append(e)
        i += 1

def read():
    while not stop.is_set():
        seen.add(w.peak())
        len(w)

threads = [threading.Thread(target=resize)] + [threading.Thread(target=read) for _ in range(3)]
for t in threads:
    t.start()
stop.wait(2.0)
stop.set()
for t in threads:
    t.join()
print(sorted(seen)[:5], errors)
"""


def test_readers_on_other_threads_never_see_a_resize_in_progress():
    # peak() copies the samples in Rust while resize() on another thread replaces them. With
    # the GIL off (a free-threaded build, run with -X gil=0, since the example module does not
    # declare it can do without the GIL) only SharedVec's own lock keeps the copy off the
    # freed samples, whose first bytes the allocator reuses for its lists: a peak above 0
    # (every sample here is 0) or a crash is a read of freed memory. With the GIL, the GIL
    # orders the two, and the test checks the same.
    import subprocess
    import sysconfig

    gil_off = ["-X", "gil=0"] if sysconfig.get_config_var("Py_GIL_DISABLED") else []
    run = subprocess.run([sys.executable, *gil_off, "-c", RACE], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout.strip(), run.stderr) == (0, "[0] []", "")


FORKS = """
import os, threading, time
from waveform import Waveform

w = Waveform(1000)
stop = threading.Event()

def resize():
    i = 0
    while not stop.is_set():
        w.resize((1000, 70000)[i % 2])
        i += 1

def read():
    while not stop.is_set():
        w.peak()

threads = [threading.Thread(target=resize)] + [threading.Thread(target=read) for _ in range(3)]
for t in threads:
    t.start()
hung = 0
for _ in range(60):
    pid = os.fork()
    if pid == 0:
        w.peak()
        os._exit(0)
    start = time.monotonic()
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() - start > 5:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            hung += 1
            break
        time.sleep(0.001)
stop.set()
for t in threads:
    t.join()
print("hung", hung)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")
def test_a_fork_while_threads_read_and_resize_leaves_the_child_a_usable_vector():
    # os.fork() stops the world first. A thread waiting for the samples' lock must not hold
    # it while detached (waiting to attach again): the child would inherit it locked with no
    # owner, and its first peak() would wait forever. SharedVec's lock is held only by
    # attached threads, so every child returns at once. (With the GIL the GIL orders them.)
    import subprocess
    import sysconfig

    gil_off = ["-X", "gil=0"] if sysconfig.get_config_var("Py_GIL_DISABLED") else []
    run = subprocess.run([sys.executable, *gil_off, "-W", "ignore", "-c", FORKS], capture_output=True,
                         text=True, timeout=400)
    assert (run.returncode, run.stdout.strip(), run.stderr) == (0, "hung 0", "")

