"""Threads (issue 6, item 5): 4 threads share Buffers and Views, exporting, releasing and
slicing, with numpy consumers in some threads and ``readinto`` in others, while another
object is being closed and frozen under them.

``make stress`` (``BUFFERKIT_STRESS=1``) runs 10**5 iterations per thread with a tiny
switch interval, so that the GIL moves between threads inside every operation that can drop
it; ``make test`` runs 2000. Checked: no crash; no export of the victim Buffer is ever held
while it reports itself closed or (for a writable export) frozen; after the join every
``exports`` is exactly what the threads still hold (zero), every lock is given back, and every
refused operation raised the documented exception.
"""

import gc
import io
import os
import sys
import threading

import numpy as np

from bufferkit import Buffer, Exporter, View, inspect

STRESS = os.environ.get('BUFFERKIT_STRESS') == '1'
ITERATIONS = int(os.environ.get('BUFFERKIT_THREAD_ITERATIONS', 10**5 if STRESS else 2000))
THREADS = 4


class Wrap(Exporter):
    def __init__(self, base):
        self.base = base

    def __buffer__(self, flags):
        return memoryview(self.base)


def test_shared_objects_under_four_threads():
    shared_buf = Buffer(4096)
    # The View's root is a Buffer, not a bytearray: on free-threaded 3.13 CPython's bytearray
    # counts its exports without a lock (gh-129107), and this test is about bufferkit's counts.
    shared_root = Buffer(4096)
    shared_view = View(shared_root)
    wrap = Wrap(shared_buf)
    victims = [Buffer(256) for _ in range(THREADS)]   # closed/frozen while others export
    payload = bytes(range(256)) * 16
    errors = []
    start = threading.Barrier(THREADS)

    def use_victim(v, i, writable):
        """Export the victim; while the export lives it must be open (and writable)."""
        try:
            m = memoryview(v)
        except ValueError as exc:
            assert str(exc) == 'operation on closed Buffer', exc
            return
        try:
            assert not v.closed, 'an export is live on a closed Buffer'
            if writable and not m.readonly:
                m[i % 256] = i & 0xFF
                assert not v.readonly, 'a writable export is live on a frozen Buffer'
        finally:
            m.release()

    def numpy_worker(k):
        for i in range(ITERATIONS):
            a = np.asarray(shared_buf)
            a[i % 4096] = i & 0xFF
            # numpy sees the Buffer's own memory, whatever the other threads do to it.
            assert a.shape == (4096,) and a.dtype == np.uint8
            assert a.__array_interface__['data'][0] == inspect(shared_buf).buf
            del a
            s = shared_view[i % 64::7]
            b = np.asarray(s)
            assert b.shape == s.shape
            del b
            s.release()
            use_victim(victims[(k + i) % THREADS], i, True)

    def readinto_worker(k):
        src = io.BytesIO(payload)
        for i in range(ITERATIONS):
            src.seek(0)
            assert src.readinto(shared_buf) == 4096
            src.seek(0)
            window = shared_view[i % 2048:i % 2048 + 512]
            assert src.readinto(window) == 512
            window.release()
            m = memoryview(wrap)
            assert m.nbytes == 4096
            m.release()
            use_victim(victims[(k + i) % THREADS], i, True)

    def closer_worker(k):
        for i in range(ITERATIONS):
            v = victims[i % THREADS]
            if i % 3 == 0:
                try:
                    v.freeze()
                except BufferError as exc:
                    assert str(exc).startswith('cannot freeze: '), exc
                except ValueError as exc:
                    assert str(exc) == 'operation on closed Buffer', exc
            elif i % 97 == 0:
                try:
                    v.close()
                except BufferError as exc:
                    assert str(exc).startswith('cannot close: '), exc
            use_victim(v, i, False)
            s = shared_view[::-(1 + i % 5)]
            assert s.nbytes == len(range(4095, -1, -(1 + i % 5)))
            s.release()

    def run(target, k):
        try:
            start.wait()
            target(k)
        except BaseException as exc:  # noqa: BLE001 - reported after the join
            errors.append((target.__name__, k, exc))

    workers = [numpy_worker, readinto_worker, numpy_worker, closer_worker]
    threads = [threading.Thread(target=run, args=(w, k)) for k, w in enumerate(workers)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[:3]
    assert shared_buf.exports == 0
    assert shared_view.exports == 0
    for v in victims:
        assert v.exports == 0
    # the root is locked by exactly the shared View (and the slices that share its export)
    assert shared_root.exports == 1, shared_root
    try:
        shared_root.close()
    except BufferError:
        pass
    else:
        raise AssertionError('the root was not locked by its View')
    shared_view.release()
    gc.collect()   # slices taken by the workers share the export until they are collected
    assert shared_root.exports == 0, shared_root
    shared_root.close()
    shared_buf.close()
    for v in victims:
        v.close()
    assert sum(v.closed for v in victims) == THREADS
