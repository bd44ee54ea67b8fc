"""The Python level of bufferkit's benchmark: what consumers written in Python pay per row.

For every row of bench_rows (the same objects the C harness measures):

  memoryview   `with memoryview(o): pass`             ns per call  (4 KiB / 32 KiB objects)
  frombuffer   `numpy.frombuffer(o, dtype)`           ns per call  (uint8 for 1d, float64 for 2-D)
  bytes        `bytes(o)`                             ns per call
  readinto     `f.readinto(o)` from a page-cached 64 MiB file, unbuffered   GB/s (64 MiB objects)
  sha256       `hashlib.sha256(o)` on 64 MiB          GB/s

timeit-style, with the process's CPU time as the clock (time.process_time; --wall for
perf_counter): each statement is timed `number` times per repeat (about --target seconds), the
repeats of every row are interleaved (round r times every row once), and the minimum over the
repeats is reported. The bytearray row is measured twice (`bytearray#2`, a control): how much
the two differ is the noise the 3% targets have to be read against. An
operation the row refuses (e.g. a strided layout given to hashlib) is reported as refused with
the exception. Output: tab-separated records `py <key> <op> <value> <unit> <status> <detail>` on
stdout, for bench/report.py.

    python bench/pybench.py [--repeats N] [--big-repeats N] [--file PATH] [--quick]
"""

import argparse
import gc
import hashlib
import os
import sys
import time
import timeit

import numpy

import bench_rows

MIB64 = 64 << 20
# CPU time of the process (user + system, so readinto's copy in the kernel counts): time the
# scheduler gives to other processes on a shared machine is not counted. --wall: perf_counter.
CLOCK = time.process_time


def emit(key, op, value, unit, status="ok", detail=""):
    detail = detail.replace("\t", " ").replace("\n", " ")
    print(f"py\t{key}\t{op}\t{value}\t{unit}\t{status}\t{detail}", flush=True)


def dtype_of(row):
    return numpy.uint8 if row.group == "1d" else numpy.float64


def small_ops(row, o):
    dt = dtype_of(row)
    return {
        "memoryview": ("with memoryview(o): pass", {"o": o}),
        "frombuffer": ("frombuffer(o, dt)", {"o": o, "frombuffer": numpy.frombuffer, "dt": dt}),
        "bytes": ("bytes(o)", {"o": o}),
    }


def refusal(fn):
    """None if fn() runs, else 'ExcType: message'."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - any refusal is reported as such
        return f"{type(e).__name__}: {e}"
    return None


def ensure_file(path):
    """A 64 MiB file of non-zero bytes at path, written once, read once so it is page-cached."""
    if not os.path.exists(path) or os.path.getsize(path) != MIB64:
        block = bytes(range(256)) * 4096  # 1 MiB
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            for _ in range(64):
                f.write(block)
        os.replace(tmp, path)
    with open(path, "rb", buffering=0) as f:
        while f.read(8 << 20):
            pass


def bench_small(rows, repeats, target):
    """Interleaved timeit of the small operations; returns nothing, emits records."""
    timers = []  # (row, op, Timer, number)
    for row in rows:
        o = row.make(False)
        for op, (stmt, glb) in small_ops(row, o).items():
            why = refusal(lambda: eval(stmt.replace("with memoryview(o): pass", "memoryview(o).release()"), glb))
            if why is not None:
                emit(row.key, op, "", "ns", "refused", why)
                continue
            t = timeit.Timer(stmt, globals=glb, timer=CLOCK)
            # number: about `target` seconds per repeat, as timeit.autorange does
            number = 1
            while True:
                if t.timeit(number) >= target / 5 or number >= 1 << 24:
                    break
                number *= 2
            number = max(1, int(number * (target / max(t.timeit(number), 1e-9))))
            timers.append([row, op, t, number, []])
    for _ in range(repeats):
        for entry in timers:
            row, op, t, number, samples = entry
            samples.append(t.timeit(number) / number)
    for row, op, t, number, samples in timers:
        emit(row.key, op, f"{min(samples) * 1e9:.2f}", "ns", "ok", f"number={number} repeats={repeats}")


def bench_big(rows, repeats, path):
    """Interleaved readinto and sha256 of 64 MiB objects; emits GB/s (GiB-free: 1e9 bytes/s)."""
    ensure_file(path)
    f = open(path, "rb", buffering=0)
    live = []  # (row, object, {op: samples})
    for row in rows:
        small = row.make(False)  # refusals depend on the layout, not the size: ask cheaply
        why_read = refusal(lambda: (f.seek(0), f.readinto(small)))
        why_hash = refusal(lambda: hashlib.sha256(small))
        if why_read and why_hash:
            emit(row.key, "readinto", "", "GB/s", "refused", why_read)
            emit(row.key, "sha256", "", "GB/s", "refused", why_hash)
            continue
        o = row.make(True)
        nbytes = memoryview(o).nbytes
        ops = {}
        f.seek(0)
        why = why_read or refusal(lambda: f.readinto(o))
        if why is None:
            ops["readinto"] = []
        else:
            emit(row.key, "readinto", "", "GB/s", "refused", why)
        why = why_hash or refusal(lambda: hashlib.sha256(o))
        if why is None:
            ops["sha256"] = []
        else:
            emit(row.key, "sha256", "", "GB/s", "refused", why)
        live.append((row, o, nbytes, ops))
    for row, o, nbytes, ops in live:  # warm: fault in every page (calloc'ed memory is untouched)
        if "readinto" in ops:
            f.seek(0)
            f.readinto(o)
    for _ in range(repeats):
        for row, o, nbytes, ops in live:
            if "readinto" in ops:
                f.seek(0)
                t0 = CLOCK()
                n = f.readinto(o)
                ops["readinto"].append(CLOCK() - t0)
                assert n == min(nbytes, MIB64), (row.key, n)
            if "sha256" in ops:
                t0 = CLOCK()
                hashlib.sha256(o)
                ops["sha256"].append(CLOCK() - t0)
    for row, o, nbytes, ops in live:
        for op, samples in ops.items():
            moved = min(nbytes, MIB64) if op == "readinto" else nbytes
            best = min(samples)
            emit(row.key, op, f"{moved / best / 1e9:.3f}", "GB/s", "ok",
                 f"bytes={moved} best_s={best:.5f} repeats={repeats}")
    f.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=41)
    ap.add_argument("--target", type=float, default=0.002, help="seconds per repeat of a small op")
    ap.add_argument("--big-repeats", type=int, default=7)
    ap.add_argument("--file", default="/tmp/bufferkit-bench-64MiB.bin")
    ap.add_argument("--wall", action="store_true", help="time with perf_counter instead of CPU time")
    args = ap.parse_args()
    global CLOCK
    if args.wall:
        CLOCK = time.perf_counter
    gc.disable()
    rows = bench_rows.selected()
    if any(r.key == "bytearray" for r in rows):  # a control: the same row twice shows the noise
        i = next(i for i, r in enumerate(rows) if r.key == "bytearray")
        rows.insert(i + 1, rows[i]._replace(key="bytearray#2", label="bytearray (again)"))
    emit("-", "python", sys.version.split()[0], "", "ok",
         f"numpy {numpy.__version__}; clock {'perf_counter' if args.wall else 'process_time'}")
    bench_small(rows, args.repeats, args.target)
    bench_big(rows, args.big_repeats, args.file)


if __name__ == "__main__":
    main()
