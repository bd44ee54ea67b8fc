"""The memory part of bufferkit's benchmark at the Python level: bytes per View.

Creates 10^5 objects over one base and reports the growth per object, twice: RSS (VmRSS of
/proc/self/status, which sees every allocator, Rust's included) in a pass without tracemalloc,
then tracemalloc's traced memory in a second pass (it sees only CPython's allocators, and its
own bookkeeping would inflate RSS). References: memoryview and numpy views of the same base.
The live-exports test (10^4 exports of 256 MiB) is the C harness's `cbench mem`.

Output: tab-separated records `mem_obj <key> <count> <rss_bytes_per_obj> <traced_bytes_per_obj>`.

    python bench/pymem.py [--count N]
"""

import argparse
import gc
import subprocess
import sys
import tracemalloc

import numpy

import bufferkit


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


BASE = bytearray(4096)
MAKERS = {
    # key: (description, factory)
    "bk_view": ("View(base)", lambda: bufferkit.View(BASE)),
    "bk_view_slice": ("View(base)[8:]", None),  # filled in below: slices of one View
    "bk_view_2d": ("View(base, 'd', (16, 32))", lambda: bufferkit.View(BASE, format="d", shape=(16, 32))),
    "memoryview": ("memoryview(base)", lambda: memoryview(BASE)),
    "np_view": ("numpy.frombuffer(base)", lambda: numpy.frombuffer(BASE, numpy.uint8)),
}


def measure(factory, count, traced):
    gc.collect()
    if traced:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = rss_bytes()
    objs = [factory() for _ in range(count)]
    after = tracemalloc.get_traced_memory()[0] if traced else rss_bytes()
    if traced:
        tracemalloc.stop()
    # the list itself: count pointers, the same for every row; subtracted
    growth = after - before - count * 8
    del objs
    gc.collect()
    return growth / count


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=10**5)
    ap.add_argument("--one", nargs=2, metavar=("KEY", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # one measurement in this fresh process
        key, mode = args.one
        parent = bufferkit.View(BASE)
        MAKERS["bk_view_slice"] = (MAKERS["bk_view_slice"][0], lambda: parent[8:])
        factory = MAKERS[key][1]
        factory()  # warm: types, caches
        print(measure(factory, args.count, traced=(mode == "traced")))
        return
    # Each figure from a fresh interpreter: memory freed by one measurement would otherwise be
    # reused by the next and hide its growth from RSS.
    for key, (desc, _) in MAKERS.items():
        fig = []
        for mode in ("rss", "traced"):
            out = subprocess.run([sys.executable, __file__, "--count", str(args.count), "--one", key, mode],
                                 check=True, capture_output=True, text=True).stdout
            fig.append(float(out.strip()))
        print(f"mem_obj\t{key}\t{args.count}\t{fig[0]:.1f}\t{fig[1]:.1f}\t{desc}", flush=True)


if __name__ == "__main__":
    main()
