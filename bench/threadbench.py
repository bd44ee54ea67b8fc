"""Threaded exports (issue 14): exports per second from 1 and from 2 threads on ONE object.

Meant for a free-threaded interpreter with the GIL off (PYTHON_GIL=0, e.g. the 3.13t that
scripts/pythons.sh makes); it runs anywhere, and says whether the GIL was on.

Each thread runs, per turn, one export and one release of `o`, at one of two levels:
  python   `memoryview(o).release()` (what a Python consumer pays: a memoryview is made and
           freed per export)
  c        `PyObject_GetBuffer(o, PyBUF_SIMPLE)` + `PyBuffer_Release` in C, 1000 pairs per call
           of `_bench_objloop.exports` (bench/objloop.c): the exporter's own cost, the part that
           contends on its export counter
in a loop until the main thread sets a stop flag; every thread starts at a barrier, so the threads
overlap for the whole of the measured interval. Exports per second = all threads' turns /
wall time of the interval; CPU ns per export = all threads' CPU time (time.thread_time) / all
turns, which shows contention (a cache line bouncing between cores costs CPU time) even when
the scheduler did not give both threads a core for the whole interval; cores used = all
threads' CPU time / wall time (2.00 when both threads ran the whole interval on cores of their
own: below that, the machine's other load took part of a core and the threads overlapped less).
The figures of a case are those of its round with the most exports per second. The threads
are not the thread that made the object; "owner" is the same loop in the main thread, which
made it (a free-threaded build changes the owner's reference counts without atomics). Each (object, threads) case runs --rounds times, interleaved with
the others; the best round is reported (the machine is shared: the best round is the one the
scheduler disturbed least). Objects: a 4 KiB bytearray, a memoryview of one, bufferkit's
Buffer(4096) and View(bytearray(4096)).

After all rounds, each object's export accounting is checked: every export was released, so
the object must accept what it refuses while exported (bytearray: a resize; memoryview:
release(); Buffer: close(); View: release()). A failure there is printed as `broken`. An export or release that raises in a thread (CPython
3.13t's memoryview counts the exports of its managed buffer without atomics: two threads
releasing views of one memoryview at once can drop the count to zero and release the
memoryview under both) ends that object's measurement: `failed <object> <what was raised>`.

    python threadbench.py [--seconds S] [--rounds R]
Records: `threads <object> <exports/s, 1 thread> <2 threads> <CPU ns/export, 1 thread> <2 threads>
<cores used, 1 thread> <2 threads> <CPU ns/export in the owner thread>`, `meta <k> <v>`,
`accounting <object> <ok|broken: why>`.
"""

import argparse
import sys
import sysconfig
import threading
import time

from bufferkit import Buffer, View

try:
    import _bench_objloop
except ImportError:  # the C level is then left out, and said so
    _bench_objloop = None


KEEP = []  # the bases, referenced here too: a racing exporter must not free them under a thread


def objects():
    ba_mv, ba_view = bytearray(4096), bytearray(4096)
    KEEP.extend([ba_mv, ba_view])
    return [
        ("bytearray", bytearray(4096)),
        ("memoryview", memoryview(ba_mv)),
        ("*Buffer", Buffer(4096)),
        ("*View", View(ba_view)),
    ]


def check(name, o):
    """None when o has no export left (it accepts what an export forbids), else why not."""
    try:
        if name == "bytearray":
            o.append(0)
            del o[-1]
        elif name == "memoryview" or name == "*View":
            o.release()
        else:
            o.close()
    except Exception as e:  # noqa: BLE001 - reported as the result
        return f"{type(e).__name__}: {e}"
    return None


def run_case(o, nthreads, seconds, level):
    stop = False
    counts = [0] * nthreads
    cpu = [0.0] * nthreads
    errors = []
    barrier = threading.Barrier(nthreads + 1)

    def work(i):
        n = 0
        mv = memoryview
        exports = _bench_objloop.exports if level == "c" else None
        barrier.wait()
        c0 = time.thread_time()
        try:
            while not stop:
                if exports is not None:
                    exports(o, 1000)
                    n += 1000
                    continue
                for _ in range(100):
                    mv(o).release()
                n += 100
        except Exception as e:  # noqa: BLE001 - an exporter that races fails here; reported
            errors.append(f"{type(e).__name__}: {e}")
        cpu[i] = time.thread_time() - c0
        counts[i] = n

    threads = [threading.Thread(target=work, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop = True
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(errors[0])
    return sum(counts) / wall, sum(cpu) / max(sum(counts), 1) * 1e9, sum(cpu) / wall


def owner_ns(o, level, seconds):
    """CPU ns per export when the thread that made o exports it (main thread, no other thread
    running): on a free-threaded build, the thread that owns an object changes its reference
    count without atomics (biased reference counting, PEP 703), every other thread with them."""
    n = 0
    c0 = time.thread_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if level == "c":
            _bench_objloop.exports(o, 1000)
            n += 1000
        else:
            for _ in range(100):
                memoryview(o).release()
            n += 100
    return (time.thread_time() - c0) / n * 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    gil = sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True
    ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    print(f"meta\tpython\t{sys.version.split()[0]}{'t' if ft else ''}")
    print(f"meta\tgil\t{'1 (on)' if gil else '0 (off)'}")
    print(f"meta\tmethod\tbench/threadbench.py --seconds {args.seconds} --rounds {args.rounds}: best of"
          f" {args.rounds} interleaved rounds of {args.seconds} s wall time each")
    levels = ["python"] + (["c"] if _bench_objloop is not None else [])
    if _bench_objloop is None:
        print("meta\tnote\tC level left out: _bench_objloop (bench/objloop.c) cannot be imported")
    # fresh objects per level: a race in one level's reference row must not carry into the next
    cases = [(f"{name} [{level}]", o, level) for level in levels for name, o in objects()]
    best = {}
    failed = {}
    owner = {}
    for _ in range(args.rounds):
        for name, o, level in cases:
            if name in failed:
                continue
            try:
                owner[name] = min(owner.get(name, float("inf")), owner_ns(o, level, args.seconds / 4))
            except Exception as e:  # noqa: BLE001 - a race left the object unusable; reported
                failed[name] = f"in the owner thread, after the threaded rounds: {type(e).__name__}: {e}"
                continue
            for k in (1, 2):
                if name in failed:
                    continue
                try:
                    rate, ns, used = run_case(o, k, args.seconds, level)
                except RuntimeError as e:
                    failed[name] = f"{k} thread{'s' if k > 1 else ''}: {e}"
                    continue
                if rate > best.get((name, k), (0.0,))[0]:
                    best[(name, k)] = (rate, ns, used)
    for name, o, level in cases:
        if name in failed:
            print(f"failed\t{name}\t{failed[name]}")
            continue
        (r1, n1, u1), (r2, n2, u2) = best[(name, 1)], best[(name, 2)]
        print(f"threads\t{name}\t{r1:.0f}\t{r2:.0f}\t{n1:.1f}\t{n2:.1f}\t{u1:.2f}\t{u2:.2f}\t{owner[name]:.1f}")
    print(f"meta\tload\t{open('/proc/loadavg').read().split()[0]} (1-minute load average at the end)")
    for name, o, level in cases:
        if name in failed:
            continue
        why = check(name.split(" [")[0], o)
        print(f"accounting\t{name}\t{'ok' if why is None else 'broken: ' + why}")


if __name__ == "__main__":
    main()
