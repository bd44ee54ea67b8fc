"""Reads the raw records of one benchmark run and prints bufferkit's benchmark table.

Standard library only (any Python 3.8+ runs it). Subcommands, in the order bench/run.sh uses
them:

  report.py cgparse SEQ DUMPDIR N        callgrind dumps -> per-pair records (stdout)
  report.py report RUNDIR CSV TXT        the table and the PASS/MISS lines (stdout, TXT), the
                                         long-format CSV, and RUNDIR/misses.tsv
  report.py profile RUNDIR SEQ DUMPDIR OUT N SRCROOT
                                         callgrind_annotate excerpts of the missed rows
  report.py objreport RUNDIR CSV TXT PROFILE
                                         appends the object-operations tables (issue 15) and
                                         the threaded exports (issue 14) to TXT and CSV;
                                         excerpts of the rows above 1.0 to PROFILE
  report.py objmarkdown CSV              README's object-operations table from a results CSV
                                         (bufferkit and bench/ importable for the labels)

# How instructions per pair are computed (cgparse)

bench/cbench.c calls bk_bench_loop(obj, flags, n) for every served (row, request) with n = N
(a warm-up), then N, 2N and 3N, and valgrind runs it with

  --tool=callgrind --collect-atstart=no --toggle-collect=bk_bench_loop
  --dump-after=bk_bench_loop --dump-instr=no --compress-strings=no --compress-pos=no

so that events are collected only inside bk_bench_loop and each call writes a dump of its own
(numbered from 1 in call order; cbench prints the number of each). From the dumps' `totals:`
lines, instructions per pair = (Ir(3N) - Ir(N)) / 2N: start-up, the warm-up and the constant
cost of entering and leaving the loop cancel. `spread` is |(Ir(3N)-Ir(2N)) - (Ir(2N)-Ir(N))| / N,
0 when every pair costs exactly the same (the usual case: no allocation, no cache effect);
it is non-zero only where an allocator's slow path is hit every so many pairs.

Allocations per pair count call edges into the allocator family (malloc, calloc, realloc,
posix_memalign, aligned_alloc, PyMem_[Raw]Malloc/Calloc/Realloc, PyObject_Malloc/Calloc/Realloc
and CPython's internal _PyObject_/_PyMem_Raw* entries, Rust's __rust_alloc/__rdl_alloc) from a
function outside that family, so that one allocation counts once however many layers it goes
through; per pair as above. Python frames per pair count calls into _PyEval_EvalFrameDefault
from outside it (every C-to-Python call enters it once).
"""

import csv
import json
import os
import re
import statistics
import subprocess
import sys
import textwrap

REQUESTS = ["SIMPLE", "WRITABLE", "ND", "STRIDED_RO", "FULL_RO", "CONTIG_RO"]
ALLOC_RE = re.compile(
    r"^(malloc|calloc|realloc|posix_memalign|aligned_alloc|memalign|valloc|"
    r"PyMem_(Raw)?(Malloc|Calloc|Realloc)|PyObject_(Malloc|Calloc|Realloc)|"
    r"_PyObject_(Malloc|Calloc|Realloc)|_PyMem_Raw(Malloc|Calloc|Realloc)|"
    r"_PyMem_Debug(Raw)?(Malloc|Calloc|Realloc)|"
    r"__rust_alloc|__rust_alloc_zeroed|__rust_realloc|__rdl_alloc|__rdl_alloc_zeroed|__rdl_realloc)$"
)
FRAME_FN = "_PyEval_EvalFrameDefault"
MAX_LINES = 60  # per list in a profile excerpt


def base_name(fn):
    """'bufferkit::x::y' -> 'y'; 'malloc@@GLIBC' -> 'malloc'; "'2" suffixes (recursion) dropped."""
    fn = fn.split("'")[0].split("@")[0]
    return fn.rsplit("::", 1)[-1]


def is_alloc(fn):
    return bool(ALLOC_RE.match(base_name(fn)))


# ------------------------------------------------------------------------------------------
# cgparse


def parse_dump(path):
    """(total Ir, alloc entries, frame entries, {alloc fn: calls}) of one callgrind dump."""
    total = None
    allocs = frames = 0
    by_fn = {}
    fn = cfn = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("fn="):
                fn, cfn = line[3:].strip(), None
            elif line.startswith("cfn="):
                cfn = line[4:].strip()
            elif line.startswith("calls=") and cfn is not None and fn is not None:
                n = int(line[6:].split()[0])
                if is_alloc(cfn) and not is_alloc(fn):
                    allocs += n
                    by_fn[base_name(cfn)] = by_fn.get(base_name(cfn), 0) + n
                if base_name(cfn) == FRAME_FN and base_name(fn) != FRAME_FN:
                    frames += n
            elif line.startswith("totals:"):
                total = int(line.split()[1])
            elif line.startswith("summary:") and total is None:
                total = int(line.split()[1])
    if total is None:
        raise SystemExit(f"cgparse: no totals in {path}")
    return total, allocs, frames, by_fn


def cmd_cgparse(seq_path, dump_dir, n):
    n = int(n)
    dumps = {}  # (key, req) -> {size: parsed}
    order = []
    for line in open(seq_path):
        kind, seq, key, req, size = line.rstrip("\n").split("\t")
        if kind != "dump" or size == "warm":
            continue
        if (key, req) not in dumps:
            dumps[(key, req)] = {}
            order.append((key, req))
        dumps[(key, req)][int(size)] = parse_dump(os.path.join(dump_dir, f"cg.out.{seq}"))
    for key, req in order:
        d = dumps[(key, req)]
        (i1, a1, f1, b1), (i2, a2, f2, _), (i3, a3, f3, b3) = d[n], d[2 * n], d[3 * n]
        per = (i3 - i1) / (2 * n)
        spread = abs((i3 - i2) - (i2 - i1)) / n
        allocs = (a3 - a1) / (2 * n)
        frames = (f3 - f1) / (2 * n)
        fns = ",".join(f"{k}:{(b3.get(k, 0) - b1.get(k, 0)) / (2 * n):g}" for k in sorted(set(b1) | set(b3))
                       if b3.get(k, 0) != b1.get(k, 0))
        print(f"count\t{key}\t{req}\t{per:.3f}\t{spread:.3f}\t{allocs:.4f}\t{frames:.4f}\t{fns}")


# ------------------------------------------------------------------------------------------
# reading a run


def records(path, kind):
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if parts and parts[0] == kind:
            out.append(parts[1:])
    return out


class Interp:
    """The C-level results of one interpreter."""

    def __init__(self, rundir, tag):
        self.tag = tag
        self.served = {}
        self.refusal = {}
        self.rows = []
        for key, group, label, req, flags, status, why in records(f"{rundir}/c-{tag}-list.tsv", "case"):
            if key not in self.rows:
                self.rows.append(key)
            self.served[(key, req)] = status == "served"
            self.refusal[(key, req)] = why
        self.time = {(k, q): (float(mn), float(md)) for k, q, mn, md, *_ in records(f"{rundir}/c-{tag}-time.tsv", "time")}
        self.ir = {}
        self.spread = {}
        self.allocs = {}
        self.frames = {}
        self.alloc_fns = {}
        for k, q, per, spread, allocs, frames, fns in records(f"{rundir}/c-{tag}-count.tsv", "count"):
            self.ir[(k, q)] = float(per)
            self.spread[(k, q)] = float(spread)
            self.allocs[(k, q)] = float(allocs)
            self.frames[(k, q)] = float(frames)
            self.alloc_fns[(k, q)] = fns
        self.time_rounds = None
        for rec in records(f"{rundir}/c-{tag}-time.tsv", "time"):
            self.time_rounds = int(rec[5])
            break


def minor(tag):
    """'cp312' -> 12"""
    return int(tag[3:])


def fmt_num(x, digits=0):
    if x is None:
        return "-"
    if digits == 0:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}x"


class Table:
    """A plain-text table: a header, then rows or section lines, columns right-aligned."""

    def __init__(self, headers):
        self.headers = headers
        self.lines = []
        self.current = None

    def section(self, text):
        self.lines.append(("section", text))
        self.current = text

    def enter(self, text):
        """Starts section `text` unless the rows are in it already (rows come grouped)."""
        if text != self.current:
            self.section(text)

    def row(self, cells):
        self.lines.append(("row", [str(c) for c in cells]))

    def render(self):
        widths = [len(h) for h in self.headers]
        for kind, cells in self.lines:
            if kind == "row":
                for i, c in enumerate(cells):
                    widths[i] = max(widths[i], len(c))
        out = []

        def fmt(cells):
            parts = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
            return "  ".join(parts).rstrip()

        out.append(fmt(self.headers))
        out.append("-" * len(fmt(self.headers)))
        for kind, cells in self.lines:
            out.append(cells if kind == "section" else fmt(cells))
        return "\n".join(out)


# ------------------------------------------------------------------------------------------
# report


def cmd_report(rundir, csv_path, txt_path):
    meta = {k: v for k, v in records(f"{rundir}/meta.tsv", "meta")}
    rows_meta = json.load(open(f"{rundir}/rows.json"))
    labels = {r["key"]: r["label"] for r in rows_meta["rows"]}
    groups_of = {r["key"]: r["group"] for r in rows_meta["rows"]}
    is_bk = {r["key"]: r["bufferkit"] for r in rows_meta["rows"]}
    groups = rows_meta["groups"]  # group -> [title, ref key]
    floor = rows_meta["floor"]
    main_tag = meta["main_tag"]
    tags = meta["tags"].split()
    interps = {t: Interp(rundir, t) for t in tags}
    main = interps[main_tag]
    cpu = meta.get("clock", "cpu") == "cpu"
    clock_desc = "thread CPU time" if cpu else "wall time"
    out = []
    csv_rows = []
    stamp = meta["date"]

    def emit_csv(interp, section, row, metric, item, value, unit, status="ok"):
        csv_rows.append([stamp, interp, section, row, groups_of.get(row, ""), metric, item,
                         "" if value is None else (f"{value:.4g}" if isinstance(value, float) else value), unit, status])

    def ref_of(key):
        return groups[groups_of[key]][1]

    def label(key):
        return ("*" if is_bk.get(key) else " ") + labels.get(key, key)

    out.append(f"bufferkit benchmark  {meta['date']}  {meta['host']}  ({meta['cpu']}, {meta['ncpu']} CPUs)")
    out.append(f"command: {meta['command']}")
    out.append(f"bufferkit {meta['git']}  numpy {meta.get('numpy', '?')}  pinning: {meta['pin']}  "
               f"load average at start: {meta['load']}")
    out.append("interpreters: " + ", ".join(f"{t} = {meta['version_' + t]}" for t in tags) + f"  (main: {main_tag})")
    out.append("* = bufferkit row; every other row is a reference measured in the same run")
    out.append("")

    # ---- C level: instructions
    def c_tables(it, keys, title):
        t = Table(["instructions / pair"] + REQUESTS + ["allocs", "py-frames"])
        out.append(f"== C level, {it.tag} ({meta['version_' + it.tag]}): {title}")
        out.append("   one PyObject_GetBuffer + PyBuffer_Release pair through bk_bench_loop (bench/cbench.c);")
        out.append("   callgrind Ir per pair = (Ir(3N) - Ir(N)) / 2N with N = " + meta["cg_n"]
                   + "; allocs, py-frames: calls into the allocators / the eval loop per pair")
        for key in keys:
            name, ref = groups[groups_of[key]]
            t.enter(f"{name}  (ref: {labels.get(ref, ref)})")
            cells = [label(key)]
            allocs = frames = 0.0
            for q in REQUESTS:
                if not it.served.get((key, q)):
                    cells.append("refused")
                    emit_csv(it.tag, "c", key, "instructions", q, None, "Ir/pair", "refused")
                    continue
                v = it.ir.get((key, q))
                s = it.spread.get((key, q), 0)
                cells.append(fmt_num(v) + ("~" if s >= 1 else ""))
                allocs = max(allocs, it.allocs.get((key, q), 0))
                frames = max(frames, it.frames.get((key, q), 0))
                emit_csv(it.tag, "c", key, "instructions", q, v, "Ir/pair")
                emit_csv(it.tag, "c", key, "allocs", q, it.allocs.get((key, q)), "calls/pair")
                emit_csv(it.tag, "c", key, "py_frames", q, it.frames.get((key, q)), "calls/pair")
            cells += [f"{allocs:g}", f"{frames:g}"]
            t.row(cells)
        out.append(t.render())
        out.append("   (~: the per-pair count varies between the N..2N and 2N..3N halves by >= 1 Ir;"
                   " allocs/py-frames: the largest over the requests)")
        out.append("")

        t = Table(["ns / pair  min/median"] + REQUESTS)
        out.append(f"   {clock_desc}, {it.time_rounds} interleaved rounds (each round times every case once, shuffled),"
                   f" {meta['pin']}")
        for key in keys:
            t.enter(groups[groups_of[key]][0])
            cells = [label(key)]
            for q in REQUESTS:
                if not it.served.get((key, q)):
                    cells.append("refused")
                    continue
                mn, md = it.time.get((key, q), (None, None))
                cells.append(f"{mn:.1f}/{md:.1f}" if mn is not None else "-")
                emit_csv(it.tag, "c", key, "ns_min", q, mn, "ns/pair")
                emit_csv(it.tag, "c", key, "ns_median", q, md, "ns/pair")
            t.row(cells)
        out.append(t.render())
        out.append("")

    c_tables(main, main.rows, "every row")

    # ---- ratios of the bufferkit rows
    t = Table(["bufferkit / ref | / floor"] + REQUESTS)
    out.append(f"== C level ratios, {main_tag}: instructions (Ir) and min time (ns) of each bufferkit row"
               " divided by its group's reference row and by the floor")
    for key in main.rows:
        if not is_bk.get(key):
            continue
        ref = ref_of(key)
        for metric in ("Ir", "ns"):
            cells = [f"{label(key)} {metric}"]
            for q in REQUESTS:
                if not main.served.get((key, q)):
                    cells.append("refused")
                    continue
                if metric == "Ir":
                    v, r, fl = main.ir.get((key, q)), main.ir.get((ref, q)), main.ir.get((floor, q))
                else:
                    v, r, fl = (main.time.get((k, q), (None,))[0] for k in (key, ref, floor))
                if not main.served.get((ref, q)):
                    r = None
                rr, rf = ratio(v, r), ratio(v, fl)
                cells.append(f"{fmt_ratio(rr)}|{fmt_ratio(rf)}")
                emit_csv(main_tag, "c_ratio", key, f"{metric}_vs_{ref}", q, rr, "ratio")
                emit_csv(main_tag, "c_ratio", key, f"{metric}_vs_floor", q, rf, "ratio")
            t.row(cells)
    out.append(t.render())
    out.append(f"   (refs: {', '.join(f'{groups[g][0]} -> {labels.get(groups[g][1], groups[g][1])}' for g in groups)};"
               f" floor: {labels[floor]})")
    out.append("")

    # ---- other interpreters (the Exporter comparison)
    for tag in tags:
        if tag == main_tag:
            continue
        c_tables(interps[tag], interps[tag].rows, "rows for the Exporter comparison")

    t = Table(["Exporter Ir/pair (ns min)"] + REQUESTS)
    out.append("== Exporter subclass across interpreters (same class, same harness): bufferkit's slot on 3.9-3.11,"
               " CPython's native __buffer__ dispatch on 3.12+")
    for tag in tags:
        it = interps[tag]
        if "bk_exporter" not in it.rows:
            continue
        cells = [f"{tag} ({'bufferkit slot' if minor(tag) < 12 else 'native 3.12+'})"]
        for q in REQUESTS:
            if not it.served.get(("bk_exporter", q)):
                cells.append("refused")
                continue
            mn = it.time.get(("bk_exporter", q), (None,))[0]
            cells.append(f"{fmt_num(it.ir.get(('bk_exporter', q)))} ({fmt_num(mn, 0)})")
        t.row(cells)
        for tg in (floor, "bytearray"):
            if tg in it.rows:
                cells = [f"  {tag} {labels[tg]}"]
                for q in REQUESTS:
                    mn = it.time.get((tg, q), (None,))[0]
                    cells.append(f"{fmt_num(it.ir.get((tg, q)))} ({fmt_num(mn, 0)})")
                t.row(cells)
    out.append(t.render())
    out.append("")

    # ---- Python level
    py = {}
    py_refused = {}
    for key, op, value, unit, status, detail in records(f"{rundir}/py-{main_tag}.tsv", "py"):
        if key == "-":
            continue
        if status == "ok":
            py[(key, op)] = float(value)
        else:
            py_refused[(key, op)] = detail
        emit_csv(main_tag, "python", key, op, "", float(value) if value else None, unit, status)
    ops = [("memoryview", "ns"), ("frombuffer", "ns"), ("bytes", "ns"), ("readinto", "GB/s"), ("sha256", "GB/s")]
    pykeys = [k for k in main.rows if any((k, op) in py or (k, op) in py_refused for op, _ in ops)]
    if "bytearray#2" in {k for k, _ in py}:
        pykeys.insert(pykeys.index("bytearray") + 1, "bytearray#2")
        labels["bytearray#2"] = "bytearray (again)"
        groups_of["bytearray#2"] = "1d"
    out.append(f"== Python level, {main_tag}: min over interleaved repeats of {'process CPU time' if cpu else 'wall time'}"
               f" (small ops: {meta.get('py_small', '?')}; 64 MiB ops: {meta.get('py_big', '?')})")
    t = Table(["row", "memoryview ns", "frombuffer ns", "bytes(o) ns", "readinto GB/s", "sha256 GB/s",
               "ratios vs ref|floor: mv, frombuffer, readinto, sha256"])
    for key in pykeys:
        name, ref = groups[groups_of[key]]
        t.enter(f"{name} (64 MiB for readinto/sha256; ref: {labels.get(ref, ref)})")
        cells = [label(key)]
        for op, unit in ops:
            if (key, op) in py:
                cells.append(f"{py[(key, op)]:.1f}" if unit == "ns" else f"{py[(key, op)]:.2f}")
            elif (key, op) in py_refused:
                cells.append("refused")
            else:
                cells.append("-")
        rat = ""
        if is_bk.get(key):
            ref = ref_of(key)
            parts = []
            for op, unit in ops:
                if op == "bytes":
                    continue
                v, r, fl = py.get((key, op)), py.get((ref, op)), py.get((floor, op))
                if unit == "GB/s":  # higher is better: cost ratio = ref / v
                    rr, rf = ratio(r, v), ratio(fl, v)
                else:
                    rr, rf = ratio(v, r), ratio(v, fl)
                parts.append(f"{fmt_ratio(rr)}|{fmt_ratio(rf)}")
                emit_csv(main_tag, "python_ratio", key, f"{op}_cost_vs_{ref}", "", rr, "ratio")
                emit_csv(main_tag, "python_ratio", key, f"{op}_cost_vs_floor", "", rf, "ratio")
            rat = " ".join(parts)
        t.row(cells + [rat])
    out.append(t.render())
    out.append("   (ratios are cost ratios: time / reference time, or reference GB/s / GB/s; >1 = slower)")
    out.append("")

    # ---- memory
    mem = {k: (int(n), int(rss), int(tr)) for k, n, rss, tr in records(f"{rundir}/c-{main_tag}-mem.tsv", "mem")}
    memobj = {k: (int(n), float(rss), float(tr), desc) for k, n, rss, tr, desc in records(f"{rundir}/pymem-{main_tag}.tsv", "mem_obj")}
    out.append(f"== Memory, {main_tag}")
    t = Table(["10^4 live exports of 256 MiB", "RSS growth", "tracemalloc growth"])
    for k, (n, rss, tr) in mem.items():
        t.row([label(k), f"{rss} B", f"{tr} B"])
        emit_csv(main_tag, "memory", k, "exports_rss_growth", str(n), rss, "bytes")
        emit_csv(main_tag, "memory", k, "exports_traced_growth", str(n), tr, "bytes")
    out.append(t.render())
    out.append("   (cbench mem: PyObject_GetBuffer(PyBUF_FULL_RO) into a preallocated, touched Py_buffer array;"
               " growth while held minus growth with none held)")
    t = Table(["10^5 objects over one base", "RSS B/object", "tracemalloc B/object"])
    for k, (n, rss, tr, desc) in memobj.items():
        t.row([("*" if k.startswith("bk_") else " ") + desc, f"{rss:.0f}", f"{tr:.0f}"])
        emit_csv(main_tag, "memory", k, "rss_per_object", str(n), rss, "bytes")
        emit_csv(main_tag, "memory", k, "traced_per_object", str(n), tr, "bytes")
    out.append(t.render())
    out.append("   (bench/pymem.py: each figure from a fresh interpreter; RSS sees Rust's allocations,"
               " tracemalloc only CPython's)")
    out.append("")

    # ---- targets
    lines, misses = targets(main, interps, py, py_refused, mem, memobj, is_bk, groups_of, floor, main_tag)
    out.append("== Targets (issue 7), computed from this run")
    out.extend(lines)
    npass = sum(1 for l in lines if l.startswith("PASS"))
    nmiss = sum(1 for l in lines if l.startswith("MISS"))
    out.append(f"targets: {npass} PASS, {nmiss} MISS")
    for l in lines:
        if l[:4] in ("PASS", "MISS"):
            emit_csv(main_tag, "target", "", l[:4], l[6:].split(":")[0], None, "", l[:4])

    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    with open(txt_path, "w") as f:
        f.write(text)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["date", "interpreter", "section", "row", "group", "metric", "item", "value", "unit", "status"])
        w.writerows(csv_rows)
    with open(f"{rundir}/misses.tsv", "w") as f:
        for key, q in misses:
            f.write(f"{key}\t{q}\n")


def targets(main, interps, py, py_refused, mem, memobj, is_bk, groups_of, floor, main_tag):
    """The PASS/MISS lines, and the (row, request) cases whose instruction targets missed."""
    lines = []
    misses = []

    def verdict(ok, text):
        lines.append(("PASS  " if ok else "MISS  ") + text)
        return ok

    served = lambda it, k, q: it.served.get((k, q), False)  # noqa: E731

    # noise of the min-time statistic: ND and CONTIG_RO are the same request measured twice
    rel = []
    for k in main.rows:
        if is_bk.get(k) or not served(main, k, "ND"):
            continue
        a, b = main.time.get((k, "ND"), (None,))[0], main.time.get((k, "CONTIG_RO"), (None,))[0]
        if a and b:
            rel.append(abs(a - b) / min(a, b))
    noise = statistics.median(rel) if rel else 0.0
    tol = max(0.05, 2 * noise)

    def instr_vs(key, ref, limit, what):
        worst = None
        for q in REQUESTS:
            if not served(main, key, q) or not served(main, ref, q):
                continue
            v, r = main.ir.get((key, q)), main.ir.get((ref, q))
            if v is None or r is None:
                continue
            x = v / (r * limit)
            if worst is None or x > worst[0]:
                worst = (x, q, v, r)
        if worst is None:
            return verdict(False, f"{what}: not measured")
        x, q, v, r = worst
        ok = x <= 1.0
        if not ok:
            misses.extend((key, qq) for qq in REQUESTS if served(main, key, qq))
        return verdict(ok, f"{what}: worst {q} {v:.0f} vs {r:.0f}{'' if limit == 1 else f' x {limit}'} "
                           f"= {v / r:.2f}x")

    for key, name in (("bk_buffer_1d", "Buffer 1-D"), ("bk_view_slice", "View slice")):
        if key not in main.rows:
            continue
        instr_vs(key, "bytearray", 1.0, f"{name} Ir/pair <= bytearray's, every request")
        instr_vs(key, floor, 1.15, f"{name} Ir/pair <= 1.15x floor, every request")
        worst = max(((main.time[(key, q)][0] / main.time[(floor, q)][0], q) for q in REQUESTS
                     if (key, q) in main.time and (floor, q) in main.time), default=None)
        if worst:
            verdict(worst[0] <= 1 + tol, f"{name} time/pair within noise of the floor (min ns, tolerance "
                                          f"{tol * 100:.0f}%): worst {worst[1]} {worst[0]:.2f}x")
    if "bk_buffer_2d" in main.rows:
        instr_vs("bk_buffer_2d", "mv_2d", 1.0, "Buffer 2-D Ir/pair <= memoryview's, every request")
        if "np_2d" in main.rows:
            v, r = main.ir.get(("bk_buffer_2d", "FULL_RO")), main.ir.get(("np_2d", "FULL_RO"))
            if v and r:
                verdict(v <= r / 3, f"Buffer 2-D FULL_RO Ir/pair <= 1/3 numpy's: {v:.0f} vs {r:.0f} / 3 = {r / 3:.0f}"
                                    f" ({v / r:.2f}x numpy)")
    # allocation and Python calls
    for key in main.rows:
        if not is_bk.get(key) or key == "bk_exporter":
            continue
        a = max((main.allocs.get((key, q), 0) for q in REQUESTS if served(main, key, q)), default=0)
        f = max((main.frames.get((key, q), 0) for q in REQUESTS if served(main, key, q)), default=0)
        verdict(a == 0 and f == 0, f"{key}: no allocation and no Python-level call per export "
                                   f"(callgrind: {a:g} allocator calls, {f:g} eval-loop entries per pair)")
    if "bk_view_deep" in main.rows and "bk_view_slice" in main.rows:
        worst = max((main.ir[("bk_view_deep", q)] / main.ir[("bk_view_slice", q)], q) for q in REQUESTS
                    if served(main, "bk_view_deep", q))
        tw = max((main.time[("bk_view_deep", q)][0] / main.time[("bk_view_slice", q)][0], q) for q in REQUESTS
                 if served(main, "bk_view_deep", q))
        verdict(worst[0] <= 1.05, f"View slice x100 Ir/pair within 5% of a direct slice: worst {worst[1]} "
                                  f"{worst[0]:.3f}x (min time: worst {tw[1]} {tw[0]:.2f}x)")
    # Exporter: bufferkit's slot (< 3.12) against CPython's native dispatch (3.12)
    natives = [t for t in interps if minor(t) >= 12 and "bk_exporter" in interps[t].rows]
    own = [t for t in interps if minor(t) < 12 and "bk_exporter" in interps[t].rows]
    if natives and own:
        nat = natives[0]
        for t in own:
            worst = None
            for q in REQUESTS:
                a, b = interps[t].ir.get(("bk_exporter", q)), interps[nat].ir.get(("bk_exporter", q))
                if a is None or b is None:
                    continue
                if worst is None or a / b > worst[0]:
                    worst = (a / b, q, a, b)
            if worst:
                ok = verdict(worst[0] <= 1.0, f"Exporter on {t} (bufferkit slot) Ir/pair <= {nat}'s native __buffer__ "
                                              f"dispatch: worst {worst[1]} {worst[2]:.0f} vs {worst[3]:.0f} = {worst[0]:.3f}x")
                if not ok and t == main_tag:
                    misses.extend(("bk_exporter", q) for q in REQUESTS if served(main, "bk_exporter", q))
    else:
        lines.append("SKIP  Exporter vs 3.12 native dispatch: needs a 3.12+ interpreter and one before 3.12")
    # Python level
    if py:
        # Noise: for memoryview() and frombuffer, the bytearray row measured twice; for the 64 MiB
        # operations, whose cost the export itself cannot move by more than a few ns in tens of
        # ms, the spread of every reference row of the group around bytearray.
        ctl = {}
        for op in ("memoryview", "frombuffer"):
            a, b = py.get(("bytearray", op)), py.get(("bytearray#2", op))
            if a and b:
                ctl[op] = abs(a - b) / min(a, b)
        for op in ("readinto", "sha256"):
            r = py.get(("bytearray", op))
            devs = [abs(py[(k, op)] / r - 1) for k in list(groups_of) + ["bytearray#2"]
                    if (k, op) in py and not is_bk.get(k) and groups_of.get(k) == "1d" and r]
            if devs:
                ctl[op] = max(devs)
        noise_txt = (" [noise: " + ", ".join(f"{op} {v * 100:.1f}%" for op, v in ctl.items()) + "]") if ctl else ""
        for key in ("bk_buffer_1d", "bk_view_slice", "bk_view_deep"):
            worst = None
            for op in ("memoryview", "frombuffer", "readinto", "sha256"):
                v, r = py.get((key, op)), py.get(("bytearray", op))
                if v is None or r is None:
                    continue
                cost = r / v if op in ("readinto", "sha256") else v / r
                if worst is None or cost > worst[0]:
                    worst = (cost, op)
            if worst:
                cost, op = worst
                within = "" if cost <= 1.03 or cost - 1 > ctl.get(op, 0) else \
                    f" (inside this run's noise for {op}, {ctl[op] * 100:.1f}%)"
                verdict(cost <= 1.03, f"{key} Python level within 3% of bytearray (memoryview, frombuffer, readinto,"
                                      f" sha256): worst {op} {cost:.3f}x{within}{noise_txt}")
        for key in ("bk_exporter",):
            parts = []
            for op in ("memoryview", "frombuffer", "readinto", "sha256"):
                v, r = py.get((key, op)), py.get(("bytearray", op))
                if v and r:
                    parts.append(f"{op} {(r / v if op in ('readinto', 'sha256') else v / r):.2f}x")
            lines.append(f"INFO  {key} Python level vs bytearray (a Python-level __buffer__ call per export, not a target): "
                         + ", ".join(parts))
    # memory
    for key in ("bk_buffer_1d", "bk_view_slice"):
        if key in mem:
            n, rss, tr = mem[key]
            verdict(rss < (1 << 20) and tr < (1 << 20), f"{key}: 10^4 live exports of 256 MiB grow RSS by {rss} B, "
                                                        f"tracemalloc by {tr} B (< 1 MiB)")
    for key, ndim in (("bk_view", 1), ("bk_view_slice", 1), ("bk_view_2d", 2)):
        if key in memobj:
            n, rss, tr, desc = memobj[key]
            limit = 400 + 16 * ndim
            verdict(rss <= limit, f"{desc}: {rss:.0f} B per View (RSS; tracemalloc {tr:.0f} B) <= a few hundred bytes"
                                  f" plus shape/strides (read as 400 + 16 x ndim = {limit} B)")
    return lines, list(dict.fromkeys(misses))


# ------------------------------------------------------------------------------------------
# profile


def cmd_profile(rundir, seq_path, dump_dir, out_path, n, src_root):
    """callgrind_annotate excerpts of the N-pair dump of each case in RUNDIR/misses.tsv."""
    n = int(n)
    wanted = [tuple(l.rstrip("\n").split("\t")) for l in open(f"{rundir}/misses.tsv") if l.strip()]
    seqs = {}
    for line in open(seq_path):
        kind, seq, key, req, size = line.rstrip("\n").split("\t")
        if kind == "dump" and size == str(n):
            seqs[(key, req)] = seq
    # one request per row shows where the instructions go: FULL_RO (every field) if served
    chosen = {}
    for key, req in wanted:
        if (key, req) in seqs:
            chosen.setdefault(key, []).append(req)
    for key in ("floor", "bytearray"):
        if (key, "FULL_RO") in seqs:
            chosen.setdefault(key, ["FULL_RO"])
    keep = re.compile(r"bufferkit|PyObject_GetBuffer|PyBuffer_Release|PyBuffer_FillInfo|_Py_IncRef|_Py_DecRef|"
                      r"Floor_|bytearray_|bk_bench_loop|PyObject_GetAttr|PyObject_Vectorcall|_PyObject_Call|"
                      r"PyObject_Call|PyLong_From|PyMemoryView|memory_getbuf|memory_releasebuf|"
                      r"_PyEval_EvalFrameDefault|_PyEval_Vector|_PyFunction_Vectorcall|_PyType_Lookup|slot_bf|"
                      r"_PyObject_Malloc|_PyObject_Free|PyErr_|method_vectorcall|buffer_wrapper|wrapper_|"
                      r"_PyObject_MakeTpCall|PyMethodDescr|cfunction|type_getattro|_PyObject_GenericGetAttr")
    out = [f"Counts are Ir per {n} pairs (so 1,000 = 1 Ir per pair when N = 1000), plus bk_bench_loop's",
           "constant 22 Ir. Function lists: callgrind_annotate --inclusive=yes --threshold=100, filtered to",
           "bufferkit and buffer-protocol symbols. Source lines: callgrind_annotate --auto=yes of the",
           "profiling build (only lines with a count; Rust attributes inlined code to its source line).", ""]
    for key, reqs in chosen.items():
        req = "FULL_RO" if "FULL_RO" in reqs else reqs[0]
        path = os.path.join(dump_dir, f"cg.out.{seqs[(key, req)]}")
        ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", "--auto=no", path],
                             capture_output=True, text=True).stdout
        body = ann.split("file:function", 1)[-1].splitlines()
        out.append(f"=== {key} {req}: inclusive Ir per {n} pairs")
        listed = [line.rstrip() for line in body if keep.search(line) and not line.startswith("--")]
        out.extend("  " + line for line in listed[:MAX_LINES])
        if len(listed) > MAX_LINES:
            out.append(f"  ... {len(listed) - MAX_LINES} more lines")
        src = subprocess.run(["callgrind_annotate", "--auto=yes", "--threshold=100", "--context=0",
                              f"--include={src_root}", path], capture_output=True, text=True).stdout
        lines = annotated_src_lines(src, src_root)
        if lines:
            out.append(f"--- {key} {req}: self Ir per {n} pairs by source line of bufferkit")
            out.extend(lines[:MAX_LINES])
            if len(lines) > MAX_LINES:
                out.append(f"  ... {len(lines) - MAX_LINES} more lines")
        out.append("")
    text = "\n".join(out) + "\n"
    with open(out_path, "w") as f:
        f.write(text)
    sys.stdout.write(text)


def annotated_src_lines(text, src_root):
    """Lines of bufferkit's own sources that carry a count, under their file's name."""
    out = []
    current = None
    for line in text.splitlines():
        m = re.match(r"-- Auto-annotated source: (.*)", line)
        if m:
            path = m.group(1).strip()
            rel = os.path.relpath(path, src_root) if os.path.isabs(path) else path
            current = rel if rel.startswith("src/") else None
            if current:
                out.append(f"  {current}")
            continue
        if current is None or line.startswith("--"):
            continue
        m = re.match(r"\s*([\d,]+)\s+(?:\([\s\d.%]+\)\s+)?(.*)$", line)
        if m:
            code = m.group(2).strip()
            if code.startswith("<counts for unidentified"):
                out.append(f"    {m.group(1):>8}  (no line information)")
            elif code.startswith("=>"):
                out.append(f"    {m.group(1):>8}      {code[:100]}")
            elif code:
                out.append(f"    {m.group(1):>8}  {code[:110]}")
    return out

# ------------------------------------------------------------------------------------------
# object operations (issue 15) and threaded exports (issue 14)

OBJ_KEEP = re.compile(r"bufferkit|_bufferkit|PyObject_GetBuffer|PyBuffer_Release|PyArg_|_PyArg_|vectorcall|"
                      r"PyType_GetModule|PyType_GetModuleByDef|_PyType_Lookup|PyObject_GetAttr|PyUnicode_|"
                      r"PyObject_Malloc|PyObject_Calloc|PyObject_Free|malloc|calloc|free|memset|memcpy|"
                      r"PyLong_|PyTuple_|PyDict_|PyImport_|PyErr_|PyMemoryView|memory_|bytearray_|PyBytes_")


def obj_counts(rundir, tag):
    """{(op, side): (Ir per op, allocs per op, eval entries per op, dump of N)} from callgrind."""
    seq_path, dump_dir = f"{rundir}/obj-{tag}-seq.tsv", f"{rundir}/cg-obj-{tag}"
    runs = {}
    for rec in records(seq_path, "dump"):
        seq, op, side, size = rec
        if size != "warm":
            runs.setdefault((op, side), []).append((int(size), seq))
    out = {}
    for key, lst in runs.items():
        (n1, s1), (n3, s3) = sorted(lst)
        i1, a1, f1, _ = parse_dump(os.path.join(dump_dir, f"cg.out.{s1}"))
        i3, a3, f3, _ = parse_dump(os.path.join(dump_dir, f"cg.out.{s3}"))
        d = n3 - n1
        out[key] = ((i3 - i1) / d, (a3 - a1) / d, (f3 - f1) / d, os.path.join(dump_dir, f"cg.out.{s1}"), n1)
    return out


def cmd_objreport(rundir, csv_path, txt_path, profile_path):
    """Appends the object-operations table of every interpreter measured (obj-<tag>-*.tsv) and
    the threaded-exports table (threads-*.tsv) to TXT and CSV; profile excerpts of the
    bufferkit side of every operation whose instruction ratio is above 1.0 go to PROFILE."""
    meta = {k: v for k, v in records(f"{rundir}/meta.tsv", "meta")}
    stamp = meta.get("date", "")
    tags = meta.get("obj_tags", "").split()
    out, csv_rows, prof = [], [], []

    def emit_csv(interp, row, side, metric, value, unit, status="ok"):
        csv_rows.append([stamp, interp, "objects", row, side, metric, "",
                         "" if value is None else f"{value:.10g}", unit, status])

    above, whys, rules = [], {}, {}
    for tag in tags:
        ops = records(f"{rundir}/obj-{tag}-list.tsv", "op")
        version = dict(records(f"{rundir}/obj-{tag}-list.tsv", "meta")).get("python", "?")
        notes = records(f"{rundir}/obj-{tag}-list.tsv", "note")
        whys.update({key: why for key, why in records(f"{rundir}/obj-{tag}-list.tsv", "why")})
        rules.update({name: text for name, text in records(f"{rundir}/obj-{tag}-list.tsv", "rule")})
        times = {(op, side): float(ns) for op, side, ns, *_ in records(f"{rundir}/obj-{tag}-time.tsv", "time")}
        reps = next((r[4] for r in records(f"{rundir}/obj-{tag}-time.tsv", "time")), "?")
        counts = obj_counts(rundir, tag)
        loop_ir = counts.get(("loop", "builtin"), (0,))[0]
        loop_ns = times.get(("loop", "builtin"), 0.0)
        out.append(f"== Object operations (issue 15), {tag} ({version}): built-in vs bufferkit in one run")
        out.append(f"   callgrind Ir per operation = (Ir(3N) - Ir(N)) / 2N of timeit's loop (bench/objloop.c window), minus"
                   f" the empty loop's {loop_ir:.0f} Ir; ns: min of {reps} interleaved timeit repeats of"
                   f" {'process CPU time' if meta.get('clock', 'cpu') == 'cpu' else 'wall time'}, minus the empty loop's"
                   f" {loop_ns:.1f} ns")
        t = Table(["operation", "built-in", "bufferkit", "Ir", "Ir", "Ir ratio", "allocs", "ns", "ns", "ns ratio"])
        for key, label, bl, kl, n in ops:
            if key == "loop":
                continue
            cb, ck = counts.get((key, "builtin")), counts.get((key, "bufferkit"))
            tb, tk = times.get((key, "builtin")), times.get((key, "bufferkit"))
            ib = cb[0] - loop_ir if cb else None
            ik = ck[0] - loop_ir if ck else None
            nb = tb - loop_ns if tb is not None else None
            nk = tk - loop_ns if tk is not None else None
            ri, rn = ratio(ik, ib), ratio(nk, nb)
            allocs = f"{cb[1]:.3g}|{ck[1]:.3g}" if cb and ck else "-"
            t.row([label, bl, kl, fmt_num(ib), fmt_num(ik), fmt_ratio(ri), allocs,
                   fmt_num(nb, 1), fmt_num(nk, 1), fmt_ratio(rn)])
            for side, c, ns in (("builtin", cb, nb), ("bufferkit", ck, nk)):
                if c:
                    emit_csv(tag, key, side, "ir_per_op", c[0] - loop_ir, "Ir")
                    emit_csv(tag, key, side, "allocs_per_op", c[1], "calls")
                if ns is not None:
                    emit_csv(tag, key, side, "ns_per_op", ns, "ns")
            emit_csv(tag, key, "bufferkit/builtin", "ir_ratio", ri, "ratio")
            emit_csv(tag, key, "bufferkit/builtin", "ns_ratio", rn, "ratio")
            if (ri is not None and ri > 1.0) or (rn is not None and rn > 1.0):
                extra = ""
                if cb and ck:
                    extra = f" ({ik - ib:+.0f} Ir and {ck[1] - cb[1]:+.3g} allocations per operation)"
                above.append((tag, key, label, ri, rn, ck, extra))
        out.append(t.render())
        out.append("   (Ir, ns: built-in then bufferkit; allocs: allocator entries per operation, built-in|bufferkit;"
                   " ratios bufferkit / built-in, > 1 = bufferkit slower)")
        for key, why in notes:
            out.append(f"   {key}: {why}")
        out.append("")
    if above:
        out.append("== Object operations above 1.0 (bufferkit slower than the built-in), by instructions or time")
        if rules:
            out.append("   Each 'why' names where the instructions go and, in [brackets], the rule that makes them necessary:")
            for name, text in rules.items():
                out.extend(textwrap.wrap(f"[{name}] {text}", 110, initial_indent="   ", subsequent_indent="      "))
        for tag, key, label, ri, rn, ck, extra in above:
            out.append(f"ABOVE {tag} {label}: Ir {fmt_ratio(ri)}{extra}, ns {fmt_ratio(rn)}"
                       + (f" (profile: {os.path.basename(profile_path)})" if ck and ri and ri > 1.0 else ""))
            if key in whys:
                out.append(f"      why: {whys[key]}")
            if ck and ri and ri > 1.0:
                path, n = ck[3], ck[4]
                ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=99", "--auto=no", path],
                                     capture_output=True, text=True).stdout
                body = ann.split("file:function", 1)[-1].splitlines()
                listed = [line.rstrip() for line in body if OBJ_KEEP.search(line) and not line.startswith("--")]
                prof.append(f"=== {tag} {key} ({label}), bufferkit side: inclusive Ir per {n} operations"
                            f" (divide by {n} for Ir per operation; the ratio is {ri:.2f}x)")
                prof.extend("  " + line for line in listed[:25])
                if len(listed) > 25:
                    prof.append(f"  ... {len(listed) - 25} more lines")
                prof.append("")
        out.append("")
    # threaded exports
    th = records(f"{rundir}/threads.tsv", "threads")
    if th:
        info = dict(records(f"{rundir}/threads.tsv", "meta"))
        out.append(f"== Threaded exports (issue 14), {info.get('python', '?')}, PYTHON_GIL={info.get('gil', '?')}:"
                   f" exports in a loop, every thread on the SAME object; [python]: memoryview(o).release(),"
                   f" [c]: PyObject_GetBuffer + PyBuffer_Release (bench/objloop.c)")
        out.append(f"   ({info.get('method', '')})")
        acc = dict(records(f"{rundir}/threads.tsv", "accounting"))
        if info.get("note"):
            out.append(f"   {info['note']}")
        t = Table(["object", "1 thread Mexp/s", "2 threads Mexp/s", "2 vs 1", "CPU ns/export: owner", "1", "2",
                   "cores used 1", "2", "accounting after"])
        for obj, one, two, ns1, ns2, u1, u2, own in th:
            r = ratio(float(two), float(one))
            t.row([obj, f"{float(one) / 1e6:.2f}", f"{float(two) / 1e6:.2f}", fmt_ratio(r), own, ns1, ns2, u1, u2,
                   acc.get(obj, "?")])
            csv_rows.append([stamp, info.get("tag", "?"), "threads", obj, "", "cpu_ns_per_export_owner", "", own, "ns", "ok"])
            csv_rows.append([stamp, info.get("tag", "?"), "threads", obj, "", "cores_used_2", "", u2, "cores", "ok"])
            csv_rows.append([stamp, info.get("tag", "?"), "threads", obj, "", "cpu_ns_per_export_1", "", ns1, "ns", "ok"])
            csv_rows.append([stamp, info.get("tag", "?"), "threads", obj, "", "cpu_ns_per_export_2", "", ns2, "ns", "ok"])
            csv_rows.append([stamp, info.get("tag", "?"), "threads", obj, "", "exports_per_s_1", "", one, "1/s", "ok"])
            csv_rows.append([stamp, info.get("tag", "?"), "threads", obj, "", "exports_per_s_2", "", two, "1/s", "ok"])
        failed = records(f"{rundir}/threads.tsv", "failed")
        for obj, why in failed:
            t.row([obj, "failed", "-", "-", "-", "-", "-", "-", "-", "see below"])
            csv_rows.append([stamp, info.get("tag", "?"), "threads", obj, "", "failed", "", "", "", why])
        out.append(t.render())
        for obj, why in failed:
            out.append(f"   {obj} failed with {why}")
        out.append("   (2 vs 1: total exports per second of 2 threads / of 1 thread; 2.00x = perfect scaling,"
                   " < 1.00x = two threads together do fewer exports than one alone; CPU ns/export: CPU time per export,"
                   " in the thread that made the object (owner) and in 1 or 2 other threads, higher with 2 = contention;"
                   f" cores used: the threads' CPU time / wall time, 2.00 = both ran"
                   f" throughout; load: {info.get('load', '?')})")
        out.append("")
    for skip in records(f"{rundir}/meta.tsv", "skip"):
        out.append(f"SKIPPED {skip[0]}: {skip[1]}")
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    with open(txt_path, "a") as f:
        f.write(text)
    with open(csv_path, "a", newline="") as f:
        csv.writer(f).writerows(csv_rows)
    if prof:
        with open(profile_path, "a") as f:
            f.write("Object operations above 1.0 by instructions (issue 15): callgrind_annotate --inclusive=yes of the\n"
                    "shipped build's N-iteration dump, filtered to bufferkit and the CPython calls it makes\n\n")
            f.write("\n".join(prof) + "\n")



def cmd_objmarkdown(csv_path):
    """The README's object-operations table (markdown) from a results CSV: 3.11's Ir and ns
    per side, and the ratios of every interpreter measured."""
    val = {}
    tags = []
    for row in csv.reader(open(csv_path)):
        if len(row) < 10 or row[2] != "objects":
            continue
        _, tag, _, op, side, metric, _, value, _, _ = row
        if tag not in tags:
            tags.append(tag)
        val[(tag, op, side, metric)] = float(value) if value else None
    labels = {}
    try:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import objbench  # noqa: PLC0415 - only for the labels; needs bufferkit importable
        labels = {o.key: (o.label, o.builtin.label, o.bk.label) for o in objbench.OPS}
    except ImportError:
        pass
    main = tags[0]
    head = ["operation", "built-in", "bufferkit", f"{main} Ir", f"{main} ns"] + [f"{t} ratio Ir / ns" for t in tags]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    ops = list(dict.fromkeys(op for (t, op, side, m) in val if t == main))
    for op in ops:
        label, bl, kl = labels.get(op, (op, "", ""))
        g = lambda t, side, m: val.get((t, op, side, m))  # noqa: E731
        ir = f"{fmt_num(g(main, 'builtin', 'ir_per_op'))} / {fmt_num(g(main, 'bufferkit', 'ir_per_op'))}"
        ns = f"{fmt_num(g(main, 'builtin', 'ns_per_op'), 1)} / {fmt_num(g(main, 'bufferkit', 'ns_per_op'), 1)}"
        cells = [label, f"`{bl}`", f"`{kl}`", ir, ns]
        for t in tags:
            ri, rn = g(t, "bufferkit/builtin", "ir_ratio"), g(t, "bufferkit/builtin", "ns_ratio")
            txt = f"{fmt_ratio(ri)} / {fmt_ratio(rn)}"
            cells.append(f"**{txt}**" if (ri or 0) <= 1.0 and (rn or 0) <= 1.0 else txt)
        print("| " + " | ".join(cells) + " |")


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "cgparse" and len(args) == 3:
        cmd_cgparse(*args)
    elif cmd == "report" and len(args) == 3:
        cmd_report(*args)
    elif cmd == "profile" and len(args) == 6:
        cmd_profile(*args)
    elif cmd == "objreport" and len(args) == 4:
        cmd_objreport(*args)
    elif cmd == "objmarkdown" and len(args) == 1:
        cmd_objmarkdown(*args)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
