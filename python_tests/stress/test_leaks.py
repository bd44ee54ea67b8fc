"""No leaks (issue 6, item 3): export/release cycles leave reference counts, tracemalloc
totals and the process's RSS flat.

``make stress`` (``BUFFERKIT_STRESS=1``) runs 10**6 cycles of each kind, twice: once plain,
measuring reference counts and RSS (which must stay within 1 MiB of where it was after a
warm-up), and once under ``tracemalloc``, whose traced total must come back to where it was
(within a few KiB of tracemalloc's own bookkeeping). ``make test`` runs the same code with
2 * 10**4 cycles, a smoke test of the harness and of gross leaks.
"""

import gc
import io
import os
import sys
import tracemalloc

import numpy as np
import pytest

from bufferkit import Buffer, Exporter, View, inspect
from conftest import RawView, PyBUF_FULL, PyBUF_FULL_RO

STRESS = os.environ.get('BUFFERKIT_STRESS') == '1'
CYCLES = 10**6 if STRESS else 2 * 10**4
RSS_SLACK = 1 << 20              # 1 MiB, the bound
TRACED_SLACK = 16 << 10          # tracemalloc's own frames/traces may move a little
PAGE = os.sysconf('SC_PAGE_SIZE')


def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * PAGE


class Wrap(Exporter):
    def __init__(self, base):
        self.base = base

    def __buffer__(self, flags):
        return memoryview(self.base)

    def __release_buffer__(self, view):
        pass


def _subjects():
    ba = bytearray(range(256)) * 4
    buf = Buffer((32, 32), 'B')
    view = View(ba)
    wrap = Wrap(bytearray(1024))
    return ba, buf, view, wrap


def cycle_buffer_memoryview(s, n):
    buf = s[1]
    for _ in range(n):
        m = memoryview(buf)
        m.release()


def cycle_buffer_numpy(s, n):
    buf = s[1]
    for _ in range(n):
        a = np.asarray(buf)
        del a


def cycle_buffer_raw(s, n):
    buf = s[1]
    for i in range(n):
        with RawView(buf, PyBUF_FULL if i & 1 else PyBUF_FULL_RO):
            pass


def cycle_view_export(s, n):
    view = s[2]
    for _ in range(n):
        m = memoryview(view)
        m.release()


def cycle_view_create(s, n):
    ba = s[0]
    for _ in range(n):
        v = View(ba, format='<i', shape=(4, 8), strides=(32, 4), offset=8)
        v.release()


def cycle_view_slice(s, n):
    view = s[2]
    for i in range(n):
        sl = view[i & 15::3]
        m = memoryview(sl)
        m.release()
        del sl


def cycle_view_cast_compare(s, n):
    """View.cast (a View sharing the export) and == (both exports on the stack)."""
    ba, view = s[0], s[2]
    equal = 0
    for i in range(n):
        c = view.cast('<I', (16, 16)) if i & 1 else view.cast('h')
        equal += (c == c) + (view == ba)             # memcmp through two exports each
        c.release()
    assert equal == 2 * n


def cycle_exporter(s, n):
    wrap = s[3]
    for _ in range(n):
        m = memoryview(wrap)
        m.release()


def cycle_exporter_view(s, n):
    wrap = s[3]
    for _ in range(n):
        v = View(wrap)
        v.release()


def cycle_buffer_lifecycle(s, n):
    for i in range(n):
        b = Buffer(64, 'h')
        m = memoryview(b)
        m.release()
        b.close()


def cycle_refused(s, n):
    """Refused requests and failed constructions leave nothing behind either."""
    buf, view, ba = s[1], s[2], s[0]
    refused = 0
    for i in range(n):
        try:
            inspect(buf, 0x400)
        except BufferError:
            refused += 1
        try:
            View(ba, shape=(2000,))
        except ValueError:
            refused += 1
    # Every round was refused twice: otherwise this measured the success path.
    assert refused == 2 * n


def cycle_readinto(s, n):
    buf = s[1]
    src = io.BytesIO(bytes(1024))
    for _ in range(n):
        src.seek(0)
        src.readinto(buf)


KINDS = {f.__name__[len('cycle_'):]: f for f in (
    cycle_buffer_memoryview, cycle_buffer_numpy, cycle_buffer_raw, cycle_view_export,
    cycle_view_create, cycle_view_slice, cycle_view_cast_compare, cycle_exporter,
    cycle_exporter_view,
    cycle_buffer_lifecycle, cycle_refused, cycle_readinto)}


def refcounts(subjects):
    return [sys.getrefcount(o) for o in subjects]


def exports(subjects):
    return [getattr(o, 'exports', None) for o in subjects]


@pytest.mark.parametrize('kind', list(KINDS))
def test_cycles_leave_refcounts_and_rss_flat(kind):
    run = KINDS[kind]
    subjects = _subjects()
    run(subjects, max(CYCLES // 10, 1000))          # warm-up: caches, free lists, arenas
    gc.collect()
    before_refs, before_rss = refcounts(subjects), rss()
    run(subjects, CYCLES)
    gc.collect()
    after_rss = rss()
    assert refcounts(subjects) == before_refs, kind
    assert exports(subjects) == [None, 0, 0, None], kind
    assert after_rss - before_rss <= RSS_SLACK, (
        f'{kind}: RSS grew by {after_rss - before_rss} bytes over {CYCLES} cycles')


@pytest.mark.parametrize('kind', list(KINDS))
def test_cycles_leave_tracemalloc_flat(kind):
    run = KINDS[kind]
    subjects = _subjects()
    run(subjects, 1000)
    gc.collect()
    tracemalloc.start()
    try:
        run(subjects, 1000)                          # tracemalloc's own first allocations
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        run(subjects, CYCLES)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before <= TRACED_SLACK, (
        f'{kind}: tracemalloc total grew by {after - before} bytes over {CYCLES} cycles')
