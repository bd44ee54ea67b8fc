"""Object operations (issue 15): what making, slicing, re-laying-out, reading, comparing,
releasing and pickling bufferkit's objects costs next to the built-in a user would otherwise
reach for, both measured in the same run of the same interpreter.

Every operation is one statement per side (the built-in, then bufferkit), run by timeit's own
compiled loop (`timeit.Timer(stmt, globals=NS).inner`), so both sides pay the same loop and the
same global-name lookups. Objects the statements use are made once in NS (a 4 KiB `ba`, its
`mv = memoryview(ba)` and `v = View(ba)`, 64 KiB and 1 MiB variants). Operations that consume
their object (`release`, `close`) take it from `_pool`, an iterator over objects made before
the measured window: `next(_pool).release()` on both sides.

  python objbench.py time [--repeats R] [--target S]
      interleaved timeit: each repeat times every (operation, side) once, about S seconds each
      (the side order alternates per repeat); the minimum over R repeats, ns per operation.
      Records: `time <op> <side> <ns> <number> <repeats>`
  python objbench.py count [--scale K]
      for valgrind --tool=callgrind --collect-atstart=no --toggle-collect=bk_obj_run
      --dump-after=bk_obj_run (bench/objloop.c): for every (operation, side) calls the loop with
      N iterations (a warm-up), then N and 3N, printing the number of the dump each call writes.
      bench/report.py objreport computes (Ir(3N) - Ir(N)) / 2N per operation. The loop row
      `pass` gives the cost of one turn of the loop itself, subtracted from every figure.
      Records: `dump <seq> <op> <side> <n|warm>`
  python objbench.py list
      the operations: `op <key> <label> <builtin stmt> <bufferkit stmt> <N>`
  --ops KEY,KEY  only these operations (and the empty loop), e.g. to look at one under callgrind

The clock is the process's CPU time (time.process_time) unless --wall (perf_counter).
"""

import argparse
import collections
import gc
import itertools
import pickle
import sys
import time
import timeit

import bufferkit
from bufferkit import Buffer, View

try:
    import numpy
except ImportError:  # the make-2-D row is then left out (said in the list)
    numpy = None

KIB4 = 4096
KIB64 = 65536
MIB1 = 1 << 20

# key, label, built-in side (label, stmt, pool), bufferkit side (label, stmt, pool), N for count
Side = collections.namedtuple("Side", "label stmt pool")
Op = collections.namedtuple("Op", "key label builtin bk n")


def _ops():
    def s(label, stmt, pool=None):
        return Side(label, stmt, pool)

    ops = [
        Op("loop", "empty loop (subtracted)", s("pass", "pass"), s("pass", "pass"), 1000),
        # issue 15's table
        Op("make16", "make 16 B zeroed", s("bytearray(16)", "bytearray(16)"), s("Buffer(16)", "Buffer(16)"), 300),
        Op("make64k", "make 64 KiB zeroed", s("bytearray(65536)", "bytearray(65536)"),
           s("Buffer(65536)", "Buffer(65536)"), 100),
        numpy is not None and Op("make2d", "make 64x64 float64", s("numpy.zeros((64, 64))", "zeros((64, 64))"),
                                 s("Buffer((64, 64), 'd')", "Buffer((64, 64), 'd')"), 100),
        Op("view", "view of an object", s("memoryview(ba)", "memoryview(ba)"), s("View(ba)", "View(ba)"), 300),
        Op("slice", "slice [8:4000:4]", s("mv[8:4000:4]", "mv[8:4000:4]"), s("v[8:4000:4]", "v[8:4000:4]"), 300),
        # A re-layout of a view one holds (the row compared it with View(ba, format='i'),
        # which also takes a new export of ba: that pair is the next row).
        Op("cast", "re-layout as 'i'", s("mv.cast('i')", "mv.cast('i')"), s("v.cast('i')", "v.cast('i')"), 300),
        Op("view_cast", "view + re-layout as 'i'", s("memoryview(ba).cast('i')", "memoryview(ba).cast('i')"),
           s("View(ba, format='i')", "View(ba, format='i')"), 300),
        Op("make_release", "make + release", s("memoryview(ba).release()", "memoryview(ba).release()"),
           s("View(ba).release()", "View(ba).release()"), 300),
        Op("tobytes", "tobytes() 64 KiB", s("mv64.tobytes()", "mv64.tobytes()"), s("v64.tobytes()", "v64.tobytes()"), 100),
        Op("tolist", "tolist() 64 KiB", s("mv64.tolist()", "mv64.tolist()"), s("v64.tolist()", "v64.tolist()"), 5),
        # what users do in loops that the table misses
        Op("shape", ".shape", s("mv.shape", "mv.shape"), s("v.shape", "v.shape"), 300),
        Op("nbytes", ".nbytes", s("mv.nbytes", "mv.nbytes"), s("v.nbytes", "v.nbytes"), 300),
        Op("readonly", ".readonly", s("mv.readonly", "mv.readonly"), s("v.readonly", "v.readonly"), 300),
        Op("len_view", "len() of a view", s("len(mv)", "len(mv)"), s("len(v)", "len(v)"), 300),
        Op("len_buffer", "len() of a buffer", s("len(ba)", "len(ba)"), s("len(buf)", "len(buf)"), 300),
        Op("eq_buffer", "== 4 KiB, equal", s("ba == ba2", "ba == ba2"), s("buf == ba2", "buf == ba2"), 300),
        Op("eq_view", "== 4 KiB view, equal", s("mv == mv2", "mv == mv2"), s("v == mv2", "v == mv2"), 300),
        Op("release", "release() alone", s("memoryview.release()", "next(_pool).release()", "mv_of_ba"),
           s("View.release()", "next(_pool).release()", "view_of_ba"), 300),
        Op("close", "Buffer.close() alone", s("memoryview.release()", "next(_pool).release()", "mv_of_ba"),
           s("Buffer.close()", "next(_pool).close()", "buffer4k"), 300),
        Op("pickle5", "pickle 1 MiB, protocol 5", s("dumps(bytearray, 5)", "dumps(ba1m, 5)"),
           s("dumps(Buffer, 5)", "dumps(buf1m, 5)"), 20),
        Op("pickle4", "pickle 1 MiB, protocol 4", s("dumps(bytearray, 4)", "dumps(ba1m, 4)"),
           s("dumps(Buffer, 4)", "dumps(buf1m, 4)"), 20),
    ]
    return [o for o in ops if o]


OPS = _ops()

# Why a row stays above 1.0 (bufferkit slower than the built-in): where the remaining
# instructions go, from callgrind profiles of these statements on CPython 3.11 (inclusive
# instructions per operation, measured 2026-12-04; the profile file of a run has that run's
# own figures), each tied to the rule of the project that makes it necessary (RULES, printed
# once above the ABOVE lines). `report.py` prints the text under the row's ABOVE line.
RULES = {
    "stable ABI": "the types are heap types made from a PyType_Spec, one abi3 module for 3.11+ "
                  "(the project's design): the type is opaque, so tp_alloc and tp_free are read "
                  "through PyType_GetSlot; each instance holds a reference to its type; a heap "
                  "type gets tp_vectorcall only from 3.14 (used there), so on 3.11-3.13 a call "
                  "goes through type.__call__, keywords in a dict. "
                  "memoryview and bytearray are static types allocated with CPython's internal "
                  "calls.",
    "proved layouts": "every layout is proved to lie inside its memory when it is made (issue 15: "
                      "'every layout is still proved in bounds'), and its contiguity and request "
                      "row are found once for the exports; memoryview takes its exporter's "
                      "shape and strides on trust and derives a slice's or a cast's without a "
                      "proof.",
    "export floor": "an export reads shape and strides through one pointer of the layout (96 "
                    "instructions per pair, which must not regress), so the arrays have an "
                    "allocation of their own, made with the layout and freed with it; arrays "
                    "inside the object would cost every export a test for where they are, or "
                    "need a self-referential layout pinned in the object.",
    "shared export": "a View and its slices share one export of the root (issue 13) in an "
                     "object of its own, which the collector sees once per holder and which "
                     "gives the root back when its last user goes; View(obj) makes two objects, "
                     "as memoryview(obj) does (its managed buffer), both heap-type instances.",
    "module isolation": "types live in their module's state (PEP 489/630: one module per "
                        "interpreter, subinterpreters), so View(obj) finds its types from the "
                        "called type's module; PyType_GetModuleByDef, one call, is in the stable "
                        "ABI only from 3.13.",
    "panic boundary": "every call from C into Rust catches panics (unwinding into C is undefined "
                      "behaviour) and refuses a released View or a closed Buffer.",
}

WHY = {
    "make16": "a heap-type instance (tp_alloc through PyType_GetSlot, the type's reference: "
              "~190 Ir to make, ~80 to free) [stable ABI]; the layout (Layout::contiguous ~290: "
              "nbytes, strides, contiguity facts and request row [proved layouts], with the "
              "shape/strides array's malloc ~40, and its free ~90 on dealloc [export floor]); "
              "the shape argument through __index__ (~90). bytearray(16) is a static type with "
              "no layout.",
    "make64k": "the fixed costs of make16 (~700 Ir, see it) next to zeroing 64 KiB.",
    "make2d": "the fixed costs of make16 (~300-500 Ir, see it) next to zeroing 32 KiB.",
    "view": "two heap-type instances, the View and the export it shares (~320 Ir to make, ~430 "
            "to free) [stable ABI, shared export]; the layout's proof that every byte lies in "
            "the base (Layout::strided ~300 with the shape/strides array's malloc, its free "
            "~85 on dealloc) [proved layouts, export floor]; the module's View and HeldExport "
            "types (~120) [module isolation]; the checks of the export the base gave (extent, "
            "collector flags, class guard ~80) [proved layouts]. Reaching further: one object per "
            "View(obj) until its first slice (~-280) would redesign issue 13's sharing; with it "
            "and the arrays inside the object the ratio would still be ~1.6x; the layout, "
            "the types and the heap types alone keep it at or above ~1.5x.",
    "slice": "the slice's layout (Layout::sliced, then the bounds proof: ~300 Ir with the "
             "shape/strides array's malloc, ~85 to free it) [proved layouts, export floor], a "
             "heap-type View (~250 to make, ~250 to free) [stable ABI], and a reference to the "
             "parent's export and View type (~80) [shared export]; memoryview's slice writes "
             "its arrays into its own object without a proof (~100 Ir of layout work), so the "
             "layout alone keeps the ratio at or above ~1.27x.",
    "cast": "a new layout (Layout::contiguous_in ~300 Ir with the shape/strides array's malloc, "
            "~85 to free it) [proved layouts, export floor], the format's parse into a struct "
            "format checked against its size (~190; memoryview's cast reads one character) and "
            "a heap-type View (~250 to make, ~250 to free) [stable ABI].",
    "view_cast": "View(ba)'s costs, a second layout for the new format (~300 Ir) and its parse "
                 "(~190) [proved layouts], and on 3.11-3.13 the keyword dict of a type call "
                 "(~310) [stable ABI; tp_vectorcall removes it on 3.14+].",
    "make_release": "View(ba)'s costs (see 'view of an object'); release() moves the "
                    "HeldExport's dealloc into the call.",
    "release": "View.release() gives the shared export back at once (the HeldExport's dealloc: "
               "the root's releasebuffer, the collector's untrack and the free, ~160 Ir) [shared "
               "export], where memoryview.release() keeps its managed buffer until the "
               "memoryview dies: work moved, not added ('make + release' counts both).",
    "close": "Buffer.close() frees the Buffer's 4 KiB (~200 Ir); memoryview.release() frees "
             "nothing (the bytearray owns its memory).",
    "eq_buffer": "the slot's boundary (~20 Ir) [panic boundary], and what == means here: items "
                 "compared as memoryview compares them, not bytes as bytearray does, so the other "
                 "side is asked for a full export (format, shape, strides) and both layouts are "
                 "tested (same shape, one integer format, C-contiguous) before the same memcmp "
                 "(~190 with the exports taken and released through BufferView::with).",
    "shape": "the getter's boundary and released check (~20 Ir) [panic boundary] and the tuple "
             "filled through PyTuple_SetItem calls, not a macro (~20) [stable ABI].",
    "nbytes": "the getter's boundary and released check (~10 Ir) [panic boundary].",
    "readonly": "the getter's boundary and released check (~10 Ir) [panic boundary].",
    "len_view": "the slot's boundary and released check (~15 Ir) [panic boundary].",
    "len_buffer": "the slot's boundary and closed check (~25 Ir) [panic boundary].",
    "tobytes": "the export and the View's checks (~600 Ir) next to a 64 KiB copy.",
    "tolist": "the export and the View's checks (~3700 Ir) next to building 65536 ints.",
    "pickle5": "__reduce_ex__'s fixed cost (importing pickle, a PickleBuffer, the rebuild tuple) "
               "next to a 1 MiB copy; in time it is at or below bytearray's.",
    "pickle4": "__reduce_ex__'s fixed cost next to a 1 MiB copy; in time it is at or below "
               "bytearray's.",
}


def select(keys):
    """The operations named in KEYS (comma-separated; the empty loop always), or every one."""
    want = [k for k in keys.split(",") if k]
    unknown = [k for k in want if k not in {o.key for o in OPS}]
    if unknown:
        raise SystemExit(f"--ops: unknown operations {unknown}; known: {[o.key for o in OPS]}")
    return [o for o in OPS if not want or o.key in want or o.key == "loop"]


def namespace():
    """The objects every statement reads (made once; the statements do not change them)."""
    ba = bytearray(range(256)) * (KIB4 // 256)
    ba64 = bytearray(range(256)) * (KIB64 // 256)
    ns = {
        "bytearray": bytearray, "memoryview": memoryview, "Buffer": Buffer, "View": View,
        "dumps": pickle.dumps,
        "ba": ba, "mv": memoryview(ba), "v": View(ba), "buf": Buffer(KIB4),
        "ba2": bytearray(KIB4), "mv2": memoryview(bytearray(ba)),
        "mv64": memoryview(ba64), "v64": View(ba64),
        "ba1m": bytearray(MIB1), "buf1m": Buffer(MIB1),
    }
    memoryview(ns["buf"])[:] = ba  # equal content for ==: buf == ba2 compares against a copy of ba
    ns["ba2"][:] = ba
    if numpy is not None:
        ns["zeros"] = numpy.zeros
    assert ns["buf"] == ns["ba2"] and ns["v"] == ns["mv2"] and ns["mv"] == ns["mv2"]
    return ns


POOLS = {
    "mv_of_ba": lambda ns: memoryview(ns["ba"]),
    "view_of_ba": lambda ns: View(ns["ba"]),
    "buffer4k": lambda ns: Buffer(KIB4),
}


def emit(*fields):
    print("\t".join(str(f) for f in fields), flush=True)


def make_timer(side, ns, clock):
    return timeit.Timer(side.stmt, globals=ns, timer=clock)


def fill_pool(side, ns, n):
    if side.pool:
        ns["_pool"] = iter([POOLS[side.pool](ns) for _ in range(n)])


def drop_pool(ns):
    ns.pop("_pool", None)


def run_inner(t, side, ns, n, clock):
    fill_pool(side, ns, n)
    try:
        return t.inner(itertools.repeat(None, n), clock)
    finally:
        drop_pool(ns)


def cmd_time(ops, repeats, target, clock):
    ns = namespace()
    cases = []  # [op, which, side, timer, number, samples]
    for op in ops:
        for which, side in (("builtin", op.builtin), ("bufferkit", op.bk)):
            t = make_timer(side, ns, clock)
            number = 1
            while True:  # about target / 5 seconds, then scaled to target (as timeit.autorange)
                took = run_inner(t, side, ns, number, clock)
                if took >= target / 5 or number >= 1 << 22:
                    break
                number *= 2
            number = max(1, int(number * target / max(took, 1e-9)))
            cases.append([op, which, side, t, number, []])
    for r in range(repeats):
        # both sides of one operation back to back, their order alternating per repeat
        for i in range(0, len(cases), 2):
            pair = cases[i:i + 2] if r % 2 == 0 else cases[i:i + 2][::-1]
            for op, which, side, t, number, samples in pair:
                samples.append(run_inner(t, side, ns, number, clock) / number)
    for op, which, side, t, number, samples in cases:
        emit("time", op.key, which, f"{min(samples) * 1e9:.2f}", number, repeats)


def cmd_count(ops, scale):
    import _bench_objloop

    ns = namespace()
    clock = time.perf_counter
    seq = 0
    for op in ops:
        n = max(1, int(op.n * scale))
        for which, side in (("builtin", op.builtin), ("bufferkit", op.bk)):
            t = make_timer(side, ns, clock)
            for size, label in ((n, "warm"), (n, str(n)), (3 * n, str(3 * n))):
                fill_pool(side, ns, size)  # outside the window: made before run() is entered
                inner = t.inner
                it = itertools.repeat(None, size)
                _bench_objloop.run(lambda: inner(it, clock))
                drop_pool(ns)
                seq += 1
                emit("dump", seq, op.key, which, label)


def cmd_list(ops):
    for op in ops:
        emit("op", op.key, op.label, op.builtin.label, op.bk.label, op.n)
        if op.key in WHY:
            emit("why", op.key, WHY[op.key])
    for name, text in RULES.items():
        emit("rule", name, text)
    if numpy is None:
        emit("note", "make2d", "left out: numpy cannot be imported")
    emit("meta", "python", sys.version.split()[0])
    emit("meta", "bufferkit", getattr(bufferkit, "__file__", "?"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["time", "count", "list"])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--target", type=float, default=0.001, help="seconds per timed repeat")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every operation's N (count)")
    ap.add_argument("--wall", action="store_true")
    ap.add_argument("--ops", default="", help="comma-separated operation keys (default: every one)")
    args = ap.parse_args()
    ops = select(args.ops)
    gc.disable()  # no collection inside a measurement; every statement frees what it makes
    if args.cmd == "time":
        cmd_time(ops, args.repeats, args.target, time.perf_counter if args.wall else time.process_time)
    elif args.cmd == "count":
        cmd_count(ops, args.scale)
    else:
        cmd_list(ops)


if __name__ == "__main__":
    main()
